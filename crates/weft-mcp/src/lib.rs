//! # weft-mcp
//!
//! The `tool-mcp` module: tools from [MCP](https://modelcontextprotocol.io)
//! servers, through the `rmcp` SDK's client, over a child process's stdio
//! or streamable HTTP.
//!
//! ```yaml
//! tools:
//!   - module: tool-mcp
//!     config:
//!       approval_timeout_secs: 300       # optional
//!       servers:
//!         files:                         # stdio: a child process
//!           command: npx
//!           args: ["-y", "@modelcontextprotocol/server-filesystem", "."]
//!           env: { LOG_LEVEL: info }     # added to weft's environment
//!           cwd: tools                   # default: the session's working directory
//!           trust: false                 # true: calls need no approval
//!           timeout_secs: 60             # start, list, one call
//!         search:                        # streamable HTTP
//!           url: https://mcp.example.org/mcp
//!           headers: { Authorization: "Bearer ${SEARCH_TOKEN}" }
//! ```
//!
//! The same servers can be set in weft's `config.toml` (`[mcp.servers.NAME]`,
//! added to every session's plan by the CLI and daemon) or in a profile
//! (a mount plan). `${VAR}` in `env` and `headers` values is read from the
//! environment when the server starts, so secrets stay out of plans,
//! session records and logs.
//!
//! How it behaves:
//! - **Started when the session mounts** (its tools must be listed for the
//!   model), shared by every turn of the session, and stopped at session
//!   cleanup (`session:end`) or when the session is dropped: the child runs
//!   in its own process group, which gets SIGTERM then SIGKILL, so nothing
//!   it started survives.
//! - **Names**: each tool is offered as `mcp__<server>__<tool>`, made valid
//!   for every provider as [`names`] documents.
//! - **Failures never fail the session**: a server that cannot start is
//!   left out with a warning naming it and the tail of its stderr (in
//!   weft's log, which the CLI prints on stderr; when every server of the
//!   module fails, the module is left out with a mount warning); a crash, a
//!   transport error or a timeout during a call is a tool error naming the
//!   server with its stderr tail, and the server is started again on the
//!   next call.
//! - **Approval**: every call asks, like `bash` (the `approval:*` hooks,
//!   then the session's approval system, fail-closed); `trust: true` on a
//!   server skips it. An `allow_always` answer covers the same tool with
//!   the same arguments for the rest of the session.
//! - **Results**: see [`tool`] for how MCP content maps to tool output.
//!
//! [`inspect`] connects to each configured server and lists its tools
//! (`weft mcp list`).

#![warn(missing_docs)]

pub mod config;
pub mod names;
pub mod server;
pub mod tool;

use std::path::Path;
use std::sync::{Arc, Weak};

use serde::Serialize;
use weft_core::hooks::{HookResult, events, hook_fn};
use weft_core::mount::{ModuleSpec, MountError};
use weft_core::registry::{ModuleEnv, ModuleRegistry};
use weft_core::tool::Tool;

pub use config::{ConfigError, MODULE, McpConfig, ServerConfig};
pub use server::McpServer;
pub use tool::McpTool;

/// Registers `tool-mcp` in `registry` (the CLI and daemon do, next to
/// `weft_tools::register_with`).
pub fn register(registry: &mut ModuleRegistry) {
    registry.register_tool_async(MODULE, |spec, env| Box::pin(mount(spec, env)));
}

/// A tool as [`inspect`] reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolInfo {
    /// The name offered to the model.
    pub name: String,
    /// Its name on the server.
    pub remote_name: String,
    /// Its description.
    pub description: String,
}

/// A server as [`inspect`] reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerReport {
    /// Its name.
    pub name: String,
    /// `stdio` or `http`.
    pub transport: String,
    /// The command line or URL (no env values or headers).
    pub target: String,
    /// Whether calls skip approval.
    pub trust: bool,
    /// Its tools, when it answered.
    pub tools: Vec<ToolInfo>,
    /// Why it could not be listed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The servers of `config` (not started) and what listing each gave,
/// named as the model will see them.
struct Listed {
    server: Arc<McpServer>,
    tools: Result<Vec<(String, rmcp::model::Tool)>, String>,
}

async fn list_all(config: &McpConfig, working_dir: &Path) -> Vec<Listed> {
    let servers: Vec<Arc<McpServer>> = config
        .servers
        .iter()
        .map(|(name, c)| Arc::new(McpServer::new(name.clone(), c.clone(), working_dir)))
        .collect();
    let listed = futures::future::join_all(servers.iter().map(|s| s.list_tools())).await;
    // Name every tool of every server together, so collisions are resolved.
    let raw: Vec<String> = servers
        .iter()
        .zip(&listed)
        .flat_map(|(s, l)| match l {
            Ok(tools) => tools
                .iter()
                .map(|t| names::tool_name(s.name(), &t.name))
                .collect::<Vec<_>>(),
            Err(_) => Vec::new(),
        })
        .collect();
    let mut unique = names::unique(raw).into_iter();
    servers
        .into_iter()
        .zip(listed)
        .map(|(server, listed)| Listed {
            server,
            tools: listed.map(|tools| {
                tools
                    .into_iter()
                    .map(|t| (unique.next().unwrap_or_default(), t))
                    .collect()
            }),
        })
        .collect()
}

/// Connects to every server of `config`, lists its tools and stops it
/// again (`weft mcp list`). Servers are reached concurrently; one that
/// fails is reported with its error.
pub async fn inspect(config: &McpConfig, working_dir: &Path) -> Vec<ServerReport> {
    let listed = list_all(config, working_dir).await;
    let mut reports = Vec::new();
    for l in listed {
        l.server.stop().await;
        let c = l.server.config();
        let (tools, error) = match l.tools {
            Ok(tools) => (
                tools
                    .into_iter()
                    .map(|(name, t)| ToolInfo {
                        name,
                        remote_name: t.name.to_string(),
                        description: t.description.as_deref().unwrap_or_default().to_string(),
                    })
                    .collect(),
                None,
            ),
            Err(e) => (Vec::new(), Some(e)),
        };
        reports.push(ServerReport {
            name: l.server.name().to_string(),
            transport: c.kind().to_string(),
            target: c.target(),
            trust: c.trust,
            tools,
            error,
        });
    }
    reports
}

/// Builds the module's tools for a session: starts every server, lists
/// its tools, and stops them all at `session:end`.
async fn mount(spec: ModuleSpec, env: ModuleEnv) -> Result<Vec<Arc<dyn Tool>>, MountError> {
    let module_error = |message: String| MountError::Module {
        module: spec.module.clone(),
        message,
    };
    let config = McpConfig::from_map(&spec.config).map_err(|e| module_error(e.to_string()))?;
    let listed = list_all(&config, &env.working_dir).await;
    let mut tools: Vec<Arc<dyn Tool>> = Vec::new();
    let mut errors = Vec::new();
    let mut running: Vec<Weak<McpServer>> = Vec::new();
    for l in listed {
        match l.tools {
            Ok(list) => {
                running.push(Arc::downgrade(&l.server));
                for (name, t) in list {
                    tools.push(Arc::new(McpTool::new(
                        l.server.clone(),
                        t.name.to_string(),
                        name,
                        t.description.as_deref().map(str::to_string),
                        serde_json::Value::Object((*t.input_schema).clone()),
                        config.approval_timeout(),
                    )));
                }
            }
            Err(e) => {
                tracing::warn!(server = l.server.name(), "{e}");
                errors.push(e);
            }
        }
    }
    if !running.is_empty() {
        env.hooks.register(
            events::SESSION_END,
            hook_fn(move |_, _| {
                let servers: Vec<Arc<McpServer>> =
                    running.iter().filter_map(Weak::upgrade).collect();
                async move {
                    for s in servers {
                        s.stop().await;
                    }
                    Ok(HookResult::proceed())
                }
            }),
            0,
            MODULE,
        );
    }
    if tools.is_empty() && !errors.is_empty() {
        return Err(module_error(errors.join("\n")));
    }
    Ok(tools)
}
