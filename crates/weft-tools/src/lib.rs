//! # weft-tools
//!
//! weft's built-in tools, as five tool modules for the kernel's
//! [`ModuleRegistry`]:
//!
//! | module | tools | config |
//! |---|---|---|
//! | `tool-filesystem` | `read_file`, `write_file`, `edit_file` | [`FilesystemConfig`]: `allow_outside_workdir` |
//! | `tool-search` | `glob`, `grep` | none |
//! | `tool-bash` | `bash` (approval required) | [`BashConfig`]: `allow`, `deny`, `timeout_secs`, `max_timeout_secs`, `max_output_chars`, `approval_timeout_secs` |
//! | `tool-task` | `task` (delegate to a sub-agent) | none |
//! | `tool-state` | `state_get`, `state_set` (the session's keyed state, shared by its agents) | none |
//!
//! ```no_run
//! use weft_core::registry::ModuleRegistry;
//!
//! let mut registry = ModuleRegistry::with_core_modules();
//! weft_tools::register(&mut registry);
//! assert!(registry.knows("tool-bash"));
//! ```
//!
//! Rules every tool follows:
//! - Relative paths resolve against the session's working directory
//!   (`ToolContext::working_dir`). Writing and editing outside the working
//!   directory are refused unless `tool-filesystem` is configured with
//!   `allow_outside_workdir: true`.
//! - The embedder registers the modules with a [`ToolAccess`]
//!   ([`register_with`]): paths it protects (weft's home) are never read,
//!   listed, searched or written, whatever the path, link or pattern; reads
//!   outside the working directory are allowed (the CLI) or need approval
//!   (the daemon), as it says. [`register`] protects nothing.
//! - Input is validated; bad input is a failed [`ToolOutput`] with one clear
//!   sentence, never a panic. Unknown input fields are refused too, so a
//!   misspelt option is noticed.
//! - Module configs refuse unknown keys: a misspelt safety setting stops the
//!   module from mounting (the kernel reports it and leaves the module out)
//!   instead of being silently ignored.
//! - Blocking file-system work runs off the async runtime and stops when the
//!   turn is cancelled.
//!
//! [`ToolOutput`]: weft_core::tool::ToolOutput

#![warn(missing_docs)]

pub mod access;
mod args;
pub mod bash;
pub mod filesystem;
mod paths;
pub mod policy;
mod process;
pub mod search;
pub mod state;
pub mod task;
mod util;

use weft_core::mount::MountError;
use weft_core::registry::ModuleRegistry;

pub use access::{OutsideReads, ToolAccess};
pub use bash::{Bash, BashConfig};
pub use filesystem::{EditFile, FilesystemConfig, ReadFile, WriteFile};
pub use policy::{CommandPolicy, CommandRule, PolicyDecision};
pub use search::{Glob, Grep, SearchConfig};
pub use task::{Task, TaskConfig};

/// The module that provides `read_file`, `write_file` and `edit_file`.
pub const FILESYSTEM_MODULE: &str = "tool-filesystem";
/// The module that provides `glob` and `grep`.
pub const SEARCH_MODULE: &str = "tool-search";
/// The module that provides `bash`.
pub const BASH_MODULE: &str = "tool-bash";
/// The module that provides `task`.
pub const TASK_MODULE: &str = "tool-task";
/// The module that provides `state_get` and `state_set`.
pub const STATE_MODULE: &str = "tool-state";

/// Registers the five tool modules (`tool-filesystem`, `tool-search`,
/// `tool-bash`, `tool-task`, `tool-state`) in `registry` with unrestricted file access
/// (nothing protected, every read allowed): for tests and embedders that
/// have no home to protect. weft's CLI and daemon use [`register_with`].
pub fn register(registry: &mut ModuleRegistry) {
    register_with(registry, ToolAccess::default());
}

/// Registers the five tool modules in `registry`; the file tools follow
/// `access` (protected paths, the read policy). Each module reads its
/// settings from the mount plan's `config` for it; a bad config is a
/// [`MountError::Module`].
pub fn register_with(registry: &mut ModuleRegistry, access: ToolAccess) {
    let access = std::sync::Arc::new(access);
    let fs_access = access.clone();
    registry.register_tool(FILESYSTEM_MODULE, move |spec, _env| {
        Ok(filesystem::filesystem_tools(
            util::parse_config(spec)?,
            std::sync::Arc::new((*fs_access).clone()),
        ))
    });
    registry.register_tool(SEARCH_MODULE, move |spec, _env| {
        Ok(search::search_tools(
            util::parse_config(spec)?,
            std::sync::Arc::new((*access).clone()),
        ))
    });
    registry.register_tool(BASH_MODULE, |spec, _env| {
        bash::bash_tools(util::parse_config(spec)?).map_err(|message| MountError::Module {
            module: spec.module.clone(),
            message,
        })
    });
    registry.register_tool(TASK_MODULE, |spec, env| {
        Ok(task::task_tools(util::parse_config(spec)?, &env.agents))
    });
    registry.register_tool(STATE_MODULE, |spec, _env| {
        Ok(state::state_tools(util::parse_config(spec)?))
    });
}
