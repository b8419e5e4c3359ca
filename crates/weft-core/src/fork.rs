//! Forks: which records of a session a fork copies, and where it cuts
//! ([`fork_plan`], used by [`Store::fork`](crate::store::Store::fork)), and
//! where a fork may cut ([`ForkPoint`]). Pure computation over records; it
//! knows nothing of stores or backends.

use serde::{Deserialize, Serialize};

use crate::message::{Message, unanswered_tool_calls};
use crate::record::{Record, RecordKind};
use crate::session::SessionMeta;
use crate::view::turn_starts;

/// Where to cut a fork.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ForkPoint {
    /// After turn `n` of the default branch (turns count from 1).
    Turn(u64),
    /// After log record `seq`.
    Seq(u64),
    /// The whole log.
    End,
}

/// The synthetic output for tool calls cut off by a fork.
pub const FORK_INTERRUPTED: &str = "interrupted by fork: this tool call was not answered in the source session before the fork point";

/// Why a fork cannot be cut where asked (the message says what is
/// possible); a [`StoreError::Invalid`](crate::store::StoreError::Invalid)
/// to the store's callers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ForkError(pub String);

/// The records a fork copies, and where it cuts.
#[derive(Debug, Clone, PartialEq)]
pub struct ForkPlan {
    /// The last source seq copied.
    pub cut_seq: u64,
    /// The turn the cut falls after.
    pub turn: u64,
    /// The records for the new log (after its `session_created`).
    pub records: Vec<RecordKind>,
}

/// Works out a fork: which records to copy and which tool calls to answer
/// with [`FORK_INTERRUPTED`].
pub fn fork_plan(
    source: &SessionMeta,
    records: &[Record],
    point: ForkPoint,
) -> Result<ForkPlan, ForkError> {
    let last = records.last().map(|r| r.seq).unwrap_or(0);
    let starts = turn_starts(records, &source.default_branch);
    let (cut_seq, turn) = match point {
        ForkPoint::End => (last, starts.len() as u64),
        ForkPoint::Turn(n) => {
            if n == 0 || n as usize > starts.len() {
                return Err(ForkError(format!(
                    "session {} has {} turn(s) on its default branch: fork at a turn from 1 to {}",
                    source.id,
                    starts.len(),
                    starts.len()
                )));
            }
            let cut = starts.get(n as usize).map(|s| s - 1).unwrap_or(last);
            (cut, n)
        }
        ForkPoint::Seq(s) => {
            if s == 0 || s > last {
                return Err(ForkError(format!(
                    "session {} has records 1 to {last}: fork at a seq in that range",
                    source.id
                )));
            }
            (s, starts.iter().filter(|&&t| t <= s).count() as u64)
        }
    };
    let copied: Vec<&Record> = records
        .iter()
        .filter(|r| r.seq <= cut_seq)
        .filter(|r| {
            !matches!(
                r.kind,
                RecordKind::SessionCreated(_) | RecordKind::Status(_) | RecordKind::Meta(_)
            )
        })
        .collect();
    let messages: Vec<&Message> = copied.iter().filter_map(|r| r.as_message()).collect();
    let orphans = unanswered_tool_calls(messages.iter().copied());
    let mut out: Vec<RecordKind> = copied.into_iter().map(|r| r.kind.clone()).collect();
    for (branch, call_id) in orphans {
        out.push(RecordKind::message(Message::synthetic_tool_error(
            branch,
            &call_id,
            FORK_INTERRUPTED,
        )));
    }
    Ok(ForkPlan {
        cut_seq,
        turn,
        records: out,
    })
}
