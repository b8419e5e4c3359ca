//! The key layout (see the module docs of `redis`): every key name is
//! built here and nowhere else.

use weft_core::{BranchId, SessionId};

/// Builds key names under one prefix.
#[derive(Debug, Clone)]
pub(super) struct Keys {
    prefix: String,
}

impl Keys {
    pub(super) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_string(),
        }
    }

    /// The common start of a session's keys: `<p>s:<id>:`.
    pub(super) fn session_base(&self, id: &SessionId) -> String {
        format!("{}s:{id}:", self.prefix)
    }

    pub(super) fn meta(&self, id: &SessionId) -> String {
        format!("{}meta", self.session_base(id))
    }

    pub(super) fn log(&self, id: &SessionId) -> String {
        format!("{}log", self.session_base(id))
    }

    pub(super) fn events(&self, id: &SessionId) -> String {
        format!("{}events", self.session_base(id))
    }

    /// The hash of last holders by branch.
    pub(super) fn turns(&self, id: &SessionId) -> String {
        format!("{}turns", self.session_base(id))
    }

    /// The prefix of the turn-lock keys (`<p>s:<id>:turn:`); a branch's key
    /// is this plus the branch.
    pub(super) fn turn_prefix(&self, id: &SessionId) -> String {
        format!("{}turn:", self.session_base(id))
    }

    pub(super) fn turn(&self, id: &SessionId, branch: &BranchId) -> String {
        format!("{}{branch}", self.turn_prefix(id))
    }

    pub(super) fn all_sessions(&self) -> String {
        format!("{}sessions", self.prefix)
    }

    pub(super) fn project(&self, slug: &str) -> String {
        format!("{}project:{slug}", self.prefix)
    }

    pub(super) fn ids(&self) -> String {
        format!("{}ids", self.prefix)
    }

    pub(super) fn state(&self, namespace: &str) -> String {
        format!("{}state:{namespace}", self.prefix)
    }
}
