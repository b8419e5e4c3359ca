//! Validated identifiers.
//!
//! Every id that arrives from outside (a CLI argument, an HTTP path, a file
//! name on disk) is also a directory name and a storage key, so it is checked
//! against `^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$` before it is used. `..`, `a/b`,
//! the empty string, over-long ids and non-ASCII ids are rejected with an
//! [`IdError`] that names the offending value.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

/// The longest id accepted, in bytes.
pub const MAX_ID_LEN: usize = 128;

/// Why an id was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The id was empty.
    #[error(
        "invalid id: the id is empty; ids are 1-128 characters of A-Z, a-z, 0-9, '.', '_' or '-'"
    )]
    Empty,
    /// The id was longer than [`MAX_ID_LEN`].
    #[error("invalid id {shown:?}: it is {len} characters long, the limit is 128")]
    TooLong {
        /// The first characters of the id, for the message.
        shown: String,
        /// The id's length in bytes.
        len: usize,
    },
    /// The id contained a character outside the allowed set, or started with
    /// a character that may not start an id.
    #[error(
        "invalid id {id:?}: ids start with a letter or digit and contain only A-Z, a-z, 0-9, '.', '_' or '-'"
    )]
    BadCharacter {
        /// The rejected id.
        id: String,
    },
}

/// Checks `id` against `^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`.
pub fn validate_id(id: &str) -> Result<(), IdError> {
    if id.is_empty() {
        return Err(IdError::Empty);
    }
    if id.len() > MAX_ID_LEN {
        let shown: String = id.chars().take(32).collect();
        return Err(IdError::TooLong {
            shown: format!("{shown}..."),
            len: id.len(),
        });
    }
    let bytes = id.as_bytes();
    let first_ok = bytes[0].is_ascii_alphanumeric();
    let rest_ok = bytes
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !first_ok || !rest_ok {
        return Err(IdError::BadCharacter { id: id.to_string() });
    }
    Ok(())
}

macro_rules! validated_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Validates `id` and wraps it.
            pub fn parse(id: impl Into<String>) -> Result<Self, IdError> {
                let id = id.into();
                validate_id(&id)?;
                Ok(Self(id))
            }

            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// Consumes the id, returning the inner string.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::parse(s)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = IdError;
            fn try_from(s: &str) -> Result<Self, Self::Error> {
                Self::parse(s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

validated_id!(
    /// A session id: a UUIDv7 string for top-level sessions (sortable by
    /// creation time), or `{parent_span16}-{child_span16}_{agent}` for a
    /// session delegated to a sub-agent.
    SessionId
);

validated_id!(
    /// A branch id, unique within its session. Every session has the branch
    /// [`BranchId::MAIN`] (`main`) from the start.
    BranchId
);

validated_id!(
    /// A turn id: a UUIDv7 string allocated when a turn is started, before
    /// it writes anything, unique within its session. The records and
    /// events of the turn carry it.
    TurnId
);

validated_id!(
    /// A message id (a UUIDv7 string for messages weft creates; imported
    /// messages keep theirs when valid).
    MessageId
);

impl SessionId {
    /// A fresh UUIDv7 session id.
    pub fn new_v7() -> Self {
        Self(uuid::Uuid::now_v7().to_string())
    }

    /// The id of a session delegated by `parent` to the sub-agent `agent`, in
    /// Amplifier's `{parent_span16}-{child_span16}_{agent}` form.
    ///
    /// The parent span is the first 16 hex digits of the parent id (dashes
    /// removed); the child span is 16 fresh random hex digits. Characters of
    /// `agent` outside the id alphabet become `-`, and the result is cut to
    /// [`MAX_ID_LEN`].
    pub fn child_of(parent: &SessionId, agent: &str) -> Self {
        let parent_span: String = parent
            .0
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(16)
            .collect();
        let parent_span = format!("{parent_span:0<16}");
        let child_span: String = uuid::Uuid::now_v7()
            .simple()
            .to_string()
            .chars()
            .rev()
            .take(16)
            .collect();
        let agent: String = agent
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        let mut id = format!("{parent_span}-{child_span}_{agent}");
        id.truncate(MAX_ID_LEN);
        Self(id)
    }
}

impl BranchId {
    /// The name of every session's initial default branch.
    pub const MAIN: &'static str = "main";

    /// The `main` branch id.
    pub fn main() -> Self {
        Self(Self::MAIN.to_string())
    }
}

impl Default for BranchId {
    fn default() -> Self {
        Self::main()
    }
}

impl TurnId {
    /// A fresh UUIDv7 turn id.
    pub fn new_v7() -> Self {
        Self(uuid::Uuid::now_v7().to_string())
    }
}

impl MessageId {
    /// A fresh UUIDv7 message id.
    pub fn new_v7() -> Self {
        Self(uuid::Uuid::now_v7().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_uuids_and_child_ids() {
        let id = SessionId::new_v7();
        assert!(SessionId::parse(id.as_str()).is_ok());
        let child = SessionId::child_of(&id, "zen-architect");
        assert!(SessionId::parse(child.as_str()).is_ok(), "{child}");
        assert!(child.as_str().ends_with("_zen-architect"));
        let parts: Vec<&str> = child.as_str().splitn(2, '_').collect();
        let spans: Vec<&str> = parts[0].split('-').collect();
        assert_eq!(spans.len(), 2);
        assert_eq!(spans[0].len(), 16);
        assert_eq!(spans[1].len(), 16);
    }

    #[test]
    fn rejects_bad_ids() {
        for bad in [
            "..", "../x", "a/b", "", ".hidden", "-x", "a b", "é", "日本", "a\\b", "a\0",
        ] {
            let err = SessionId::parse(bad).unwrap_err();
            if !bad.is_empty() {
                assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
            }
        }
        let long = "a".repeat(200);
        assert!(matches!(
            SessionId::parse(long),
            Err(IdError::TooLong { len: 200, .. })
        ));
        assert!(SessionId::parse("a".repeat(128)).is_ok());
        assert!(SessionId::parse("a".repeat(129)).is_err());
    }

    #[test]
    fn child_id_sanitises_agent_names() {
        let parent = SessionId::parse("p").unwrap();
        let child = SessionId::child_of(&parent, "my agent/../x");
        assert!(SessionId::parse(child.as_str()).is_ok());
        let long = SessionId::child_of(&parent, &"z".repeat(300));
        assert_eq!(long.as_str().len(), MAX_ID_LEN);
    }

    #[test]
    fn deserialising_validates() {
        let ok: Result<SessionId, _> = serde_json::from_str("\"abc\"");
        assert!(ok.is_ok());
        let bad: Result<SessionId, _> = serde_json::from_str("\"../etc\"");
        assert!(bad.is_err());
    }
}
