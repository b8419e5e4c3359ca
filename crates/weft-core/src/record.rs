//! The session log: records and batches.
//!
//! Everything that changes a session is a [`Record`] appended to its log with
//! a per-session sequence number `seq` (1, 2, 3, … no gaps). The first record
//! of every log is [`RecordKind::SessionCreated`]; the current state of the
//! session is a fold of the log ([`crate::session::SessionMeta::apply`],
//! [`crate::view::SessionView`]). History is never rewritten: rewind and
//! compaction are records too.
//!
//! # Wire format (version 1)
//!
//! One JSON object per record, the shape written to `log.jsonl` and sent as
//! SSE event data:
//!
//! ```json
//! {"v":1,"seq":7,"ts":"2026-11-25T10:00:00Z","kind":{"type":"message","data":{…}}}
//! ```
//!
//! `kind.type` is one of `session_created`, `message`, `state`, `status`,
//! `meta`, `branch_created`, `branch_removed`, `default_branch`, `mail_sent`,
//! `mail_collected`, `rewind`, `compaction`, `usage`; `kind.data` holds that
//! kind's fields. New kinds and new optional fields may be added within
//! version 1; anything else bumps `v`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::id::{BranchId, TurnId};
use crate::message::{Message, Usage};
use crate::session::{Branch, Mail, SessionMeta, SessionStatus};

/// The record format version written by this build.
pub const RECORD_VERSION: u32 = 1;

/// One entry of a session log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Format version ([`RECORD_VERSION`]).
    pub v: u32,
    /// Position in the session's log, from 1, without gaps.
    pub seq: u64,
    /// When the record was made.
    #[serde(deserialize_with = "crate::wire_de::timestamp")]
    pub ts: DateTime<Utc>,
    /// The turn that wrote the record (None: written outside a turn).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turn: Option<TurnId>,
    /// The branch that turn ran on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<BranchId>,
    /// What happened.
    pub kind: RecordKind,
}

/// A change to a session's key/value state. Applied in order: `clear`, then
/// `delete`, then `set`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StateDelta {
    /// Remove every key first.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub clear: bool,
    /// Keys to remove.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delete: Vec<String>,
    /// Keys to set.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub set: Map<String, Value>,
}

impl StateDelta {
    /// Applies the delta to `state`.
    pub fn apply_to(&self, state: &mut Map<String, Value>) {
        if self.clear {
            state.clear();
        }
        for key in &self.delete {
            state.remove(key);
        }
        for (k, v) in &self.set {
            state.insert(k.clone(), v.clone());
        }
    }

    /// Whether the delta changes nothing.
    pub fn is_empty(&self) -> bool {
        !self.clear && self.delete.is_empty() && self.set.is_empty()
    }
}

/// A lifecycle transition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusChange {
    /// The status before.
    pub from: SessionStatus,
    /// The status after.
    pub to: SessionStatus,
    /// The error message, for `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Structured error details, for `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}

/// A change to a session's descriptive metadata. `None` leaves a field as it
/// is; an empty string clears `name` / `description`; a `null` value in
/// `metadata` removes that key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetaPatch {
    /// New name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// New description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// New model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Metadata keys to merge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
}

impl MetaPatch {
    /// Whether the patch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.description.is_none()
            && self.model.is_none()
            && self.metadata.is_none()
    }
}

/// What a record says happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum RecordKind {
    /// The session was made (always seq 1), with its initial metadata.
    SessionCreated(Box<SessionMeta>),
    /// A message was appended to a branch.
    Message(Box<Message>),
    /// The session-local state changed.
    State(StateDelta),
    /// The lifecycle status changed.
    Status(StatusChange),
    /// Name, description, model or metadata changed.
    Meta(MetaPatch),
    /// A branch was made (new or split).
    BranchCreated(Branch),
    /// A branch was removed.
    BranchRemoved {
        /// The removed branch.
        branch: BranchId,
        /// Deleted too (LionAGI `remove_branch(…, delete=True)`): its
        /// messages leave every view and export and its undelivered mail is
        /// dropped; the records stay in the log.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        delete: bool,
    },
    /// The default branch changed.
    DefaultBranch {
        /// The new default branch.
        branch: BranchId,
    },
    /// Mail was sent.
    MailSent(Mail),
    /// Mail was collected by one of its recipients.
    MailCollected {
        /// The mail id.
        mail_id: String,
        /// The recipient that collected it.
        recipient: BranchId,
    },
    /// A branch's conversation was rewound: messages after `to_seq` no longer
    /// belong to it (they stay in the log).
    Rewind {
        /// The branch.
        branch: BranchId,
        /// The last seq that stays.
        to_seq: u64,
    },
    /// The context manager summarised a branch's history up to `upto_seq`.
    Compaction {
        /// The branch.
        branch: BranchId,
        /// The last seq the summary covers.
        upto_seq: u64,
        /// The summary text.
        summary: String,
    },
    /// Token usage not attached to a message (for example a failed call).
    Usage {
        /// The usage.
        usage: Usage,
        /// The model that used it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        model: Option<String>,
    },
}

impl RecordKind {
    /// The kind's wire name (`"message"`, `"status"`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            RecordKind::SessionCreated(_) => "session_created",
            RecordKind::Message(_) => "message",
            RecordKind::State(_) => "state",
            RecordKind::Status(_) => "status",
            RecordKind::Meta(_) => "meta",
            RecordKind::BranchCreated(_) => "branch_created",
            RecordKind::BranchRemoved { .. } => "branch_removed",
            RecordKind::DefaultBranch { .. } => "default_branch",
            RecordKind::MailSent(_) => "mail_sent",
            RecordKind::MailCollected { .. } => "mail_collected",
            RecordKind::Rewind { .. } => "rewind",
            RecordKind::Compaction { .. } => "compaction",
            RecordKind::Usage { .. } => "usage",
        }
    }

    /// A message record.
    pub fn message(message: Message) -> Self {
        RecordKind::Message(Box::new(message))
    }

    /// The branch whose conversation the record changes, if it changes
    /// one (a message, a rewind, a compaction).
    pub fn branch(&self) -> Option<&BranchId> {
        match self {
            RecordKind::Message(m) => Some(&m.branch),
            RecordKind::Rewind { branch, .. } | RecordKind::Compaction { branch, .. } => {
                Some(branch)
            }
            _ => None,
        }
    }
}

impl Record {
    /// A record with the current time.
    pub fn new(seq: u64, kind: RecordKind) -> Self {
        Self {
            v: RECORD_VERSION,
            seq,
            ts: Utc::now(),
            turn: None,
            branch: None,
            kind,
        }
    }

    /// Numbers `kinds` as the batch that follows `expected_seq`
    /// (`expected_seq + 1`, `+ 2`, …), stamped with the current time.
    pub fn batch(expected_seq: u64, kinds: impl IntoIterator<Item = RecordKind>) -> Vec<Record> {
        let ts = Utc::now();
        kinds
            .into_iter()
            .enumerate()
            .map(|(i, kind)| Record {
                v: RECORD_VERSION,
                seq: expected_seq + 1 + i as u64,
                ts,
                turn: None,
                branch: None,
                kind,
            })
            .collect()
    }

    /// Like [`Record::batch`], every record stamped as written by `turn`
    /// on `branch`.
    pub fn batch_for_turn(
        expected_seq: u64,
        kinds: impl IntoIterator<Item = RecordKind>,
        turn: &TurnId,
        branch: &BranchId,
    ) -> Vec<Record> {
        let mut records = Self::batch(expected_seq, kinds);
        for r in &mut records {
            r.turn = Some(turn.clone());
            r.branch = Some(branch.clone());
        }
        records
    }

    /// The turn and branch a batch is written by (those of its first
    /// record naming both), which a lease backend fences: see
    /// [`crate::lease`]. None for a batch no turn wrote.
    pub fn batch_turn(records: &[Record]) -> Option<(&TurnId, &BranchId)> {
        records
            .iter()
            .find_map(|r| r.turn.as_ref().zip(r.branch.as_ref()))
    }

    /// The message, if this is a message record.
    pub fn as_message(&self) -> Option<&Message> {
        match &self.kind {
            RecordKind::Message(m) => Some(m),
            _ => None,
        }
    }
}

/// Why a batch cannot be appended as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// The batch had no records.
    #[error("an append batch must hold at least one record")]
    Empty,
    /// The records were not numbered `expected_seq + 1 …` without gaps.
    #[error(
        "record {index} of the batch has seq {found}, expected {wanted}: number a batch with Record::batch"
    )]
    BadSeq {
        /// Index in the batch.
        index: usize,
        /// The seq it had.
        found: u64,
        /// The seq it should have had.
        wanted: u64,
    },
    /// `session_created` appeared anywhere but at seq 1, or seq 1 was not
    /// `session_created`.
    #[error("the first record of a log, and only it, is session_created")]
    MisplacedCreate,
    /// A record of a newer format than this build reads.
    #[error(
        "record {seq} has format version {v}, this build reads up to {RECORD_VERSION}: upgrade weft"
    )]
    Version {
        /// The record's seq.
        seq: u64,
        /// Its version.
        v: u32,
    },
}

/// Checks that `records` is a well-formed batch to follow `expected_seq`.
/// Backends call this before writing anything.
pub fn check_batch(expected_seq: u64, records: &[Record]) -> Result<(), BatchError> {
    if records.is_empty() {
        return Err(BatchError::Empty);
    }
    for (i, r) in records.iter().enumerate() {
        let wanted = expected_seq + 1 + i as u64;
        if r.seq != wanted {
            return Err(BatchError::BadSeq {
                index: i,
                found: r.seq,
                wanted,
            });
        }
        if r.v > RECORD_VERSION {
            return Err(BatchError::Version { seq: r.seq, v: r.v });
        }
        let is_create = matches!(r.kind, RecordKind::SessionCreated(_));
        if is_create != (r.seq == 1) {
            return Err(BatchError::MisplacedCreate);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::SessionId;
    use crate::message::Role;
    use crate::session::{Project, SessionMeta};

    #[test]
    fn record_wire_shape_is_stable() {
        let mut m = Message::text(BranchId::main(), Role::User, "hi");
        m.timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let id = m.id.clone();
        let mut r = Record::new(2, RecordKind::message(m));
        r.ts = "2026-01-01T00:00:00Z".parse().unwrap();
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "v": 1, "seq": 2, "ts": "2026-01-01T00:00:00Z",
                "kind": {"type": "message", "data": {
                    "id": id.as_str(), "branch": "main", "role": "user",
                    "content": [{"type": "text", "text": "hi"}],
                    "timestamp": "2026-01-01T00:00:00Z"
                }}
            })
        );
        let back: Record = serde_json::from_value(v).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn batches_are_checked() {
        let meta = SessionMeta::new(SessionId::new_v7(), Project::current(), "base");
        let create = Record::batch(0, [RecordKind::SessionCreated(Box::new(meta))]);
        assert!(check_batch(0, &create).is_ok());
        assert_eq!(
            check_batch(1, &create),
            Err(BatchError::BadSeq {
                index: 0,
                found: 1,
                wanted: 2
            })
        );
        assert_eq!(check_batch(0, &[]), Err(BatchError::Empty));
        let usage = Record::batch(
            0,
            [RecordKind::Usage {
                usage: Usage::default(),
                model: None,
            }],
        );
        assert_eq!(check_batch(0, &usage), Err(BatchError::MisplacedCreate));
    }

    #[test]
    fn state_delta_order() {
        let mut state = Map::new();
        state.insert("a".into(), Value::from(1));
        state.insert("b".into(), Value::from(2));
        let mut delta = StateDelta {
            clear: true,
            ..Default::default()
        };
        delta.set.insert("c".into(), Value::from(3));
        delta.apply_to(&mut state);
        assert_eq!(state.len(), 1);
        assert_eq!(state["c"], 3);
    }
}
