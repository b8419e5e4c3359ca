//! Session state scopes (agentkernel's `Session.set/get`, ADK's prefixes).
//!
//! A state key's prefix says where it lives:
//!
//! | prefix | scope | stored |
//! |---|---|---|
//! | `app:` | every session of the same profile | shared state `app:<profile>` in the store |
//! | `user:` | every session of the same owner | shared state `user:<owner>` in the store |
//! | `temp:` | this process, until the end of the turn | never |
//! | anything else (e.g. `agent:<name>:…`) | this session | `state` records in the session log |
//!
//! Deletes and clears are records too, so they stick. Which owner a
//! session's `user:` keys belong to, and the reads and writes on a stored
//! session every front end shares, are in [`crate::stored`].

/// Where a state key lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateScope {
    /// In memory, for the current turn only.
    Temp,
    /// Shared through the store under this namespace.
    Shared(String),
    /// In the session's log.
    Session,
}

/// The user name used for `user:` keys when a session has no owner.
pub const DEFAULT_USER: &str = "default";

/// The scope of `key` for a session of `profile` owned by `user`.
pub fn scope_of(key: &str, profile: &str, user: Option<&str>) -> StateScope {
    if key.starts_with("temp:") {
        StateScope::Temp
    } else if key.starts_with("app:") {
        StateScope::Shared(format!("app:{profile}"))
    } else if key.starts_with("user:") {
        StateScope::Shared(format!("user:{}", user.unwrap_or(DEFAULT_USER)))
    } else {
        StateScope::Session
    }
}

/// Checks a key: 1 to 256 characters, no control characters.
pub fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.chars().count() > 256 || key.chars().any(char::is_control) {
        return Err(format!(
            "invalid state key {key:?}: keys are 1 to 256 characters without control characters"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes() {
        assert_eq!(scope_of("temp:x", "base", None), StateScope::Temp);
        assert_eq!(
            scope_of("app:x", "dev", None),
            StateScope::Shared("app:dev".into())
        );
        assert_eq!(
            scope_of("user:x", "dev", Some("ann")),
            StateScope::Shared("user:ann".into())
        );
        assert_eq!(
            scope_of("user:x", "dev", None),
            StateScope::Shared("user:default".into())
        );
        assert_eq!(
            scope_of("agent:planner:step", "dev", None),
            StateScope::Session
        );
        assert!(check_key("").is_err());
        assert!(check_key("a\nb").is_err());
        assert!(check_key("ok").is_ok());
    }
}
