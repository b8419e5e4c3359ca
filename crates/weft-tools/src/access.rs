//! What the tools may touch, beyond their module config: [`ToolAccess`].
//!
//! The embedder (the CLI, the daemon) knows things a mount plan does not —
//! where weft's own home is, and whether a person is at a terminal — and
//! hands them to [`crate::register_with`]:
//!
//! - **Protected paths** (weft's home: `config.toml` with the server token,
//!   tokens, every session's log) are never read, listed, searched or
//!   written by any file tool. Paths are compared **physically** (symlinks
//!   and `..` resolved, see [`crate::paths`]), so a link inside the project
//!   or a `../..` cannot reach them, and `glob`/`grep` skip them even when
//!   the home lies inside the directory they walk.
//! - **Reads outside the allowed roots** (the session's working directory
//!   plus any extra roots): [`OutsideReads::Allow`] lets them happen (the
//!   CLI's behaviour: a person started the session in their own account),
//!   [`OutsideReads::Ask`] asks the session's approval system first (the
//!   daemon's: requests can come from anywhere, and without `--approve`
//!   there is no approval system, so such reads are denied).
//!
//! The approval flow shared by every tool that asks (`bash`, the reads)
//! lives here too: [`ask_approval`].

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};
use weft_core::tool::ToolContext;

use crate::paths;

/// How long a read outside the allowed roots waits for an approval answer.
pub const READ_APPROVAL_TIMEOUT: Duration = Duration::from_secs(300);

/// What happens to a read outside the allowed roots.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OutsideReads {
    /// Allowed without asking (the CLI default).
    #[default]
    Allow,
    /// Asked about through the session's approval system; denied when
    /// there is none (the daemon).
    Ask,
}

/// The protected paths and read policy of the file tools (see the module
/// docs). `ToolAccess::default()` protects nothing and allows every read.
#[derive(Debug, Default)]
pub struct ToolAccess {
    protected: Vec<PathBuf>,
    outside_reads: OutsideReads,
    roots: Vec<PathBuf>,
    /// Paths a person allowed with "allow always".
    approved: Mutex<HashSet<PathBuf>>,
}

/// A clone has the same rules but remembers no "allow always" answers:
/// each mounted module (so each session) starts with none.
impl Clone for ToolAccess {
    fn clone(&self) -> Self {
        Self {
            protected: self.protected.clone(),
            outside_reads: self.outside_reads,
            roots: self.roots.clone(),
            approved: Mutex::default(),
        }
    }
}

/// Both spellings of a directory: as given (made absolute) and physical.
fn spellings(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![paths::absolute_dir(dir)];
    let canonical = paths::canonical_dir(dir);
    if !out.contains(&canonical) {
        out.push(canonical);
    }
    out
}

impl ToolAccess {
    /// Unrestricted access: nothing protected, every read allowed.
    pub fn new() -> Self {
        Self::default()
    }

    /// Never lets a tool touch `dir` or anything under it.
    pub fn protect(mut self, dir: impl AsRef<Path>) -> Self {
        self.protected.extend(spellings(dir.as_ref()));
        self
    }

    /// Sets what happens to reads outside the allowed roots.
    pub fn outside_reads(mut self, policy: OutsideReads) -> Self {
        self.outside_reads = policy;
        self
    }

    /// Adds a directory reads may go to without asking (besides the
    /// session's working directory).
    pub fn read_root(mut self, dir: impl AsRef<Path>) -> Self {
        self.roots.extend(spellings(dir.as_ref()));
        self
    }

    /// The read policy.
    pub fn read_policy(&self) -> OutsideReads {
        self.outside_reads
    }

    fn approved_set(&self) -> HashSet<PathBuf> {
        self.approved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The protected directory `path` (physical, absolute) lies in, if any.
    pub fn protected_dir(&self, path: &Path) -> Option<&Path> {
        self.protected
            .iter()
            .find(|p| path.starts_with(p))
            .map(PathBuf::as_path)
    }

    /// Whether `path` (physical) is inside the working directory or a read
    /// root, or was allowed for good.
    fn inside_roots(&self, path: &Path, working_dir: &Path) -> bool {
        spellings(working_dir)
            .iter()
            .chain(&self.roots)
            .any(|root| path.starts_with(root))
            || self
                .approved
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .any(|a| path.starts_with(a))
    }

    /// The refusal for a protected path, as one sentence.
    fn refusal(&self, verb: &str, shown: &str, dir: &Path) -> String {
        format!(
            "refusing to {verb} {shown}: it is inside weft's home ({}), which holds its \
             configuration, tokens and other sessions; tools never touch it",
            dir.display()
        )
    }

    /// Checks a path a tool is about to write: refused inside a protected
    /// directory. `target` is physical.
    pub(crate) fn check_write(&self, target: &Path, shown: &str) -> Result<(), String> {
        match self.protected_dir(target) {
            Some(dir) => Err(self.refusal("write", shown, dir)),
            None => Ok(()),
        }
    }

    /// Checks a read of `path` (absolute, as resolved from the model's
    /// input) by tool `tool`: refused inside a protected directory (after
    /// resolving symlinks and `..`), asked about outside the allowed roots
    /// when the policy says so. Returns the physical path.
    pub(crate) async fn check_read(
        &self,
        tool: &str,
        path: &Path,
        ctx: &ToolContext,
    ) -> Result<PathBuf, String> {
        let shown = paths::display(path, &ctx.working_dir);
        let physical = paths::physical(path)?;
        if let Some(dir) = self
            .protected_dir(&physical)
            .or_else(|| self.protected_dir(path))
        {
            return Err(self.refusal("read", &shown, dir));
        }
        if self.outside_reads == OutsideReads::Allow
            || self.inside_roots(&physical, &ctx.working_dir)
        {
            return Ok(physical);
        }
        let event = json!({
            "tool_name": tool,
            "call_id": ctx.call_id,
            "branch": ctx.branch,
            "path": physical,
            "working_dir": ctx.working_dir,
        });
        let prompt = format!(
            "Let {tool} read {}?\nIt is outside the session's working directory {}.",
            physical.display(),
            ctx.working_dir.display()
        );
        match ask_approval(ctx, tool, prompt, event, READ_APPROVAL_TIMEOUT).await {
            Ok(always) => {
                if always {
                    self.approved
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(physical.clone());
                }
                Ok(physical)
            }
            Err(reason) => Err(format!(
                "{tool} did not read {shown}: it is outside the working directory and approval \
                 was denied ({reason}); read files inside {} instead",
                ctx.working_dir.display()
            )),
        }
    }

    /// A filter for directory walks: false for entries that must be
    /// skipped (protected, or — for a symlink — pointing into a protected
    /// path or, under [`OutsideReads::Ask`], outside `allowed`).
    pub(crate) fn walk_entry_allowed(
        &self,
        path: &Path,
        is_symlink: bool,
        allowed: &[PathBuf],
    ) -> bool {
        if self.protected_dir(path).is_some() {
            return false;
        }
        if !is_symlink {
            return true;
        }
        let Ok(target) = std::fs::canonicalize(path) else {
            return true;
        };
        if self.protected_dir(&target).is_some() {
            return false;
        }
        self.outside_reads == OutsideReads::Allow
            || allowed.iter().any(|root| target.starts_with(root))
    }

    /// Checks a directory (or file) `glob`/`grep` is about to search, as
    /// [`check_read`](Self::check_read) does; returns the physical root and
    /// the roots its walk may follow symlinks into.
    pub(crate) async fn check_search(
        &self,
        tool: &str,
        root: &Path,
        ctx: &ToolContext,
    ) -> Result<(PathBuf, Vec<PathBuf>), String> {
        let physical = self.check_read(tool, root, ctx).await?;
        let mut allowed = spellings(&ctx.working_dir);
        allowed.extend(self.roots.iter().cloned());
        allowed.extend(self.approved_set());
        allowed.push(physical.clone());
        Ok((physical, allowed))
    }
}

/// The approval flow for an action of `subject` (a tool name): see
/// [`ToolContext::ask_approval`]. Ok(true) means "allow always".
pub(crate) async fn ask_approval(
    ctx: &ToolContext,
    subject: &str,
    prompt: String,
    event: Value,
    timeout: Duration,
) -> Result<bool, String> {
    ctx.ask_approval(subject, prompt, event, timeout).await
}
