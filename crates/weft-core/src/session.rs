//! Session metadata, status and lifecycle, projects, branches and mail.
//!
//! [`SessionMeta`] is a fold of the session log (see [`crate::record`]): every
//! backend keeps it up to date with [`SessionMeta::apply`] so that listing
//! never has to read a log. The fold itself lives with the view's fold in
//! [`crate::view`]; this module holds the data and knows nothing of records.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::id::{BranchId, SessionId};
use crate::message::Usage;

/// The version written in every [`SessionMeta`] (`"v": 1`).
pub const META_VERSION: u32 = 1;

/// The longest session name, in characters (Amplifier's limit). The CLI,
/// the daemon and the library all check names with [`check_name`].
pub const MAX_NAME_CHARS: usize = 50;

/// A session name longer than [`MAX_NAME_CHARS`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the name is {chars} characters long: session names are at most {MAX_NAME_CHARS} characters"
)]
pub struct NameTooLong {
    /// How many characters the name had.
    pub chars: usize,
}

/// Checks a session name: returns it trimmed, or [`NameTooLong`] when the
/// trimmed name has more than [`MAX_NAME_CHARS`] characters. An empty name
/// is returned as is (callers decide whether it clears the name or is
/// refused).
pub fn check_name(name: &str) -> Result<&str, NameTooLong> {
    let name = name.trim();
    let chars = name.chars().count();
    if chars > MAX_NAME_CHARS {
        return Err(NameTooLong { chars });
    }
    Ok(name)
}

/// Makes a session name out of free text (a model's suggested title): its
/// first non-empty line, trimmed, without surrounding quotes or a trailing
/// period, cut to [`MAX_NAME_CHARS`] characters (on a character boundary).
/// None when nothing is left.
pub fn clip_name(text: &str) -> Option<String> {
    let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
    let line = ["Title:", "title:", "TITLE:"]
        .iter()
        .find_map(|p| line.strip_prefix(p))
        .unwrap_or(line);
    let line = line
        .trim()
        .trim_matches(|c: char| matches!(c, '"' | '\'' | '`' | '*' | '#'))
        .trim();
    let line = line.strip_suffix('.').unwrap_or(line).trim();
    let cut: String = line.chars().take(MAX_NAME_CHARS).collect();
    let cut = cut.trim_end().to_string();
    (!cut.is_empty()).then_some(cut)
}

/// The `metadata` key holding a delegated session's merged mount plan
/// (Amplifier's sub-session `config`).
pub const META_AGENT_CONFIG: &str = "config";
/// The `metadata` key holding the agent's own part of a delegated
/// session's plan (Amplifier's `agent_overlay`).
pub const META_AGENT_OVERLAY: &str = "agent_overlay";
/// The `metadata` key holding the tenant a session belongs to (the daemon's
/// `weft token create --tenant`); forks and delegated sessions take their
/// source's. A session without one was made outside any tenant (by the CLI,
/// or by a daemon without a token file) and only admin tokens see it.
pub const META_TENANT: &str = "tenant";

/// Where a session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    /// Made, not yet run.
    Created,
    /// Running or ready to take more prompts.
    Active,
    /// Ended normally.
    Completed,
    /// Ended with an error.
    Failed,
    /// Stopped from outside.
    Terminated,
    /// Its last [`crate::Session`] handle was dropped while it was active,
    /// without cleanup (a library user's bug or a cancelled task); a turn
    /// reactivates it like any ended session.
    EndedUncleanly,
}

impl SessionStatus {
    /// The lower-case name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Created => "created",
            SessionStatus::Active => "active",
            SessionStatus::Completed => "completed",
            SessionStatus::Failed => "failed",
            SessionStatus::Terminated => "terminated",
            SessionStatus::EndedUncleanly => "ended_uncleanly",
        }
    }

    /// Whether the session has ended (completed, failed, terminated or
    /// ended uncleanly).
    pub fn is_ended(self) -> bool {
        matches!(
            self,
            SessionStatus::Completed
                | SessionStatus::Failed
                | SessionStatus::Terminated
                | SessionStatus::EndedUncleanly
        )
    }

    /// The lifecycle's explicit transitions (the daemon's rules):
    /// created → active | terminated, active → completed | failed | terminated.
    pub fn can_become(self, to: SessionStatus) -> bool {
        use SessionStatus::*;
        matches!(
            (self, to),
            (Created, Active)
                | (Created, Terminated)
                | (Active, Completed)
                | (Active, Failed)
                | (Active, Terminated)
        )
    }
}

impl std::fmt::Display for SessionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for SessionStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "created" => Ok(SessionStatus::Created),
            "active" => Ok(SessionStatus::Active),
            "completed" => Ok(SessionStatus::Completed),
            "failed" => Ok(SessionStatus::Failed),
            "terminated" => Ok(SessionStatus::Terminated),
            "ended_uncleanly" => Ok(SessionStatus::EndedUncleanly),
            other => Err(format!(
                "unknown status {other:?}: use created, active, completed, failed, terminated or ended_uncleanly"
            )),
        }
    }
}

/// The project (working directory) a session belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Project {
    /// The canonical working directory.
    pub dir: String,
    /// Its slug, the name of the project's directory in the fs store.
    pub slug: String,
}

impl Project {
    /// The project of `dir` (canonicalised when it exists).
    pub fn from_dir(dir: &Path) -> Self {
        let canonical: PathBuf = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        let dir = canonical.to_string_lossy().into_owned();
        Project {
            slug: project_slug(&dir),
            dir,
        }
    }

    /// The project of the current working directory.
    pub fn current() -> Self {
        let dir = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        Self::from_dir(&dir)
    }
}

/// Amplifier's project slug: `/` and `\` become `-`, `:` is removed, and the
/// result starts with `-` (`/home/u/proj` → `-home-u-proj`). Characters that
/// are unsafe in a directory name (control characters, NUL) are dropped.
pub fn project_slug(dir: &str) -> String {
    let mut slug: String = dir
        .chars()
        .filter(|c| *c != ':' && !c.is_control())
        .map(|c| if c == '/' || c == '\\' { '-' } else { c })
        .collect();
    if !slug.starts_with('-') {
        slug.insert(0, '-');
    }
    if slug.chars().all(|c| c == '-' || c == '.') {
        // "/" or "." alone: keep it a plain, safe directory name.
        slug = "-root".to_string();
    }
    slug
}

/// Where a forked session came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForkedFrom {
    /// The source session.
    pub session_id: SessionId,
    /// The last turn copied (turns count from 1).
    pub turn: u64,
    /// The last log seq of the source that was copied.
    #[serde(default)]
    pub seq: u64,
}

/// A session's metadata: identity, lifecycle and running totals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionMeta {
    /// Format version ([`META_VERSION`]).
    #[serde(default = "meta_version")]
    pub v: u32,
    /// The session id.
    pub id: SessionId,
    /// A human name (at most [`MAX_NAME_CHARS`] characters, see
    /// [`check_name`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A longer description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The project it belongs to.
    pub project: Project,
    /// The profile (named mount plan) it was built from.
    pub profile: String,
    /// The model it talks to, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Lifecycle status.
    pub status: SessionStatus,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it first became active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// When it last ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<DateTime<Utc>>,
    /// When its log last changed.
    pub updated_at: DateTime<Utc>,
    /// The session that delegated to this one (an agent's child). A fork
    /// has none: it is a session of its own, its lineage is in
    /// [`SessionMeta::forked_from`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<SessionId>,
    /// The root session of its delegation tree (itself for a root).
    pub trace_id: SessionId,
    /// The sub-agent it runs, for delegated sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_name: Option<String>,
    /// Where it was forked from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forked_from: Option<ForkedFrom>,
    /// The default branch.
    #[serde(default)]
    pub default_branch: BranchId,
    /// Messages in the log (all branches).
    #[serde(default)]
    pub message_count: u64,
    /// User messages in the log (all branches): the number of turns.
    #[serde(default)]
    pub turn_count: u64,
    /// Token usage totals.
    #[serde(default)]
    pub usage: Usage,
    /// The error that failed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// The start of the most recent user prompt (≤ 200 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_prompt: Option<String>,
    /// The owner, for `user:`-scoped state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The seq of the last record in the log.
    #[serde(default)]
    pub last_seq: u64,
    /// Free-form metadata.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub metadata: Map<String, Value>,
}

fn meta_version() -> u32 {
    META_VERSION
}

/// The longest `last_prompt` kept in [`SessionMeta`], in characters.
pub const LAST_PROMPT_CHARS: usize = 200;

impl SessionMeta {
    /// New metadata for a top-level session in `project`, status `created`.
    pub fn new(id: SessionId, project: Project, profile: impl Into<String>) -> Self {
        let now = Utc::now();
        Self {
            v: META_VERSION,
            trace_id: id.clone(),
            id,
            name: None,
            description: None,
            project,
            profile: profile.into(),
            model: None,
            status: SessionStatus::Created,
            created_at: now,
            started_at: None,
            ended_at: None,
            updated_at: now,
            parent_id: None,
            agent_name: None,
            forked_from: None,
            default_branch: BranchId::main(),
            message_count: 0,
            turn_count: 0,
            usage: Usage::default(),
            error_message: None,
            last_prompt: None,
            user: None,
            last_seq: 0,
            metadata: Map::new(),
        }
    }

    /// The tenant the session belongs to ([`META_TENANT`]), if any.
    pub fn tenant(&self) -> Option<&str> {
        self.metadata.get(META_TENANT).and_then(Value::as_str)
    }

    /// Records the tenant the session belongs to ([`META_TENANT`]).
    pub fn set_tenant(&mut self, tenant: &str) {
        self.metadata
            .insert(META_TENANT.into(), Value::String(tenant.to_string()));
    }

    /// Whether it is a top-level session: not a delegated sub-session.
    /// Forks are top-level (the user goes on with them).
    pub fn is_top_level(&self) -> bool {
        !self.is_sub_session()
    }

    /// Whether it is a delegated sub-session (an agent's child, with a
    /// `parent_id`): the one definition of what listings hide unless asked
    /// for every session. Every store backend decides it this way (the SQL
    /// ones index `parent_id` for it), and the conformance suite checks it.
    pub fn is_sub_session(&self) -> bool {
        self.parent_id.is_some()
    }

    /// A short label for lists: the name, or the first 8 characters of the id.
    pub fn label(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| self.id.as_str().chars().take(8).collect())
    }
}

/// Where a split branch was cloned from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitFrom {
    /// The source branch.
    pub branch: BranchId,
    /// The last log seq of the source that was cloned.
    pub upto_seq: u64,
}

/// One conversation line within a session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Branch {
    /// The branch id (unique in the session).
    pub id: BranchId,
    /// Its name (unique in the session).
    pub name: String,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// Where it was split from, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_from: Option<SplitFrom>,
    /// Its system message (with its `System Time:` line when
    /// `system_datetime` is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// Who sent the system message (LionAGI `system_sender`; default
    /// `system`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_sender: Option<String>,
    /// The time stamped into the system message (LionAGI
    /// `system_datetime`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_datetime: Option<String>,
    /// The branch's owner (LionAGI `user`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Tools made available to it (by name), beyond the session's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<String>,
    /// The model it talks to, when it differs from the session's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The provider module it talks to, when it differs from the session's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
}

impl Branch {
    /// The `main` branch every session starts with.
    pub fn main(created_at: DateTime<Utc>) -> Self {
        Self {
            id: BranchId::main(),
            name: BranchId::MAIN.to_string(),
            created_at,
            created_from: None,
            system: None,
            system_sender: None,
            system_datetime: None,
            user: None,
            tools: Vec::new(),
            model: None,
            provider: None,
        }
    }
}

/// What a piece of mail carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MailCategory {
    /// A message to append to the recipient's conversation.
    Message,
    /// A tool of the sender's (by name) to make available to the recipient.
    Tool,
    /// A provider/model setting to hand over.
    Model,
}

/// Mail from one branch to others; it waits in each recipient's inbox until
/// collected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mail {
    /// The mail id.
    pub id: String,
    /// The sending branch.
    pub from: BranchId,
    /// The recipients, resolved at send time (a broadcast names every other
    /// branch).
    pub to: Vec<BranchId>,
    /// Whether it was sent as a broadcast.
    #[serde(default)]
    pub broadcast: bool,
    /// What it carries.
    pub category: MailCategory,
    /// The payload: message text or content blocks, a tool name, or a model
    /// setting.
    pub item: Value,
    /// When it was sent.
    pub sent_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_in_characters() {
        assert_eq!(check_name("  ok  "), Ok("ok"));
        let fifty = "é".repeat(MAX_NAME_CHARS);
        assert_eq!(check_name(&fifty), Ok(fifty.as_str()));
        let long = "é".repeat(MAX_NAME_CHARS + 1);
        assert_eq!(
            check_name(&long),
            Err(NameTooLong {
                chars: MAX_NAME_CHARS + 1
            })
        );
        assert!(
            NameTooLong { chars: 51 }
                .to_string()
                .contains("at most 50 characters")
        );
    }

    #[test]
    fn titles_become_names() {
        assert_eq!(
            clip_name("\n  \"Fixing the parser.\"\nmore").as_deref(),
            Some("Fixing the parser")
        );
        assert_eq!(clip_name("Title: Rust help").as_deref(), Some("Rust help"));
        assert_eq!(clip_name("  \n \"\" "), None);
        let long = format!("{}ü tail", "a".repeat(49));
        let cut = clip_name(&long).unwrap();
        assert_eq!(cut.chars().count(), MAX_NAME_CHARS);
        assert!(cut.ends_with('ü'));
    }
}
