//! The messages of several branches in log order (LionAGI
//! `concat_messages`) and the message table (LionAGI `to_df`), where a
//! branch's system message is a row like any message. Reads a
//! [`SessionView`]; knows nothing of how it is stored.

use serde::Serialize;
use serde_json::Value;

use super::{BranchError, find};
use crate::message::{META_CLONE_FROM, META_LOADED, Message};
use crate::view::{BranchView, SessionView};

/// A message with the seq that appended it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeqMessage {
    /// The log seq.
    pub seq: u64,
    /// The message.
    pub message: Message,
}

/// The messages of `branches` (None: all) in log order (LionAGI
/// `concat_messages`); `exclude_clone` drops messages cloned by a split,
/// `exclude_load` drops loaded (imported) messages.
pub fn concat_messages(
    view: &SessionView,
    branches: Option<&[String]>,
    exclude_clone: bool,
    exclude_load: bool,
) -> Result<Vec<SeqMessage>, BranchError> {
    let chosen: Vec<&BranchView> = match branches {
        None => view.branches.iter().collect(),
        Some(names) => names
            .iter()
            .map(|n| find(view, n))
            .collect::<Result<_, _>>()?,
    };
    let mut out: Vec<SeqMessage> = chosen
        .into_iter()
        .flat_map(|b| b.messages.iter())
        .filter(|lm| !(exclude_clone && lm.message.metadata.contains_key(META_CLONE_FROM)))
        .filter(|lm| !(exclude_load && lm.message.flag(META_LOADED)))
        .map(|lm| SeqMessage {
            seq: lm.seq,
            message: lm.message.clone(),
        })
        .collect();
    out.sort_by_key(|m| m.seq);
    Ok(out)
}

/// One row of the message table (LionAGI `to_df`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TableRow {
    /// When the message was created (RFC 3339).
    pub created_at: String,
    /// Its role.
    pub role: String,
    /// Its content: the text for text-only messages, else the blocks as JSON.
    pub content: String,
    /// The message id.
    pub id: String,
    /// The sender.
    pub sender: String,
    /// The recipient.
    pub recipient: String,
    /// The branch.
    pub branch: String,
    /// The metadata as JSON.
    pub metadata: String,
}

/// The table's column names, in order.
pub const TABLE_COLUMNS: [&str; 8] = [
    "created_at",
    "role",
    "content",
    "id",
    "sender",
    "recipient",
    "branch",
    "metadata",
];

/// The message table of `messages`.
pub fn table_rows(messages: &[SeqMessage]) -> Vec<TableRow> {
    messages
        .iter()
        .map(|sm| {
            let m = &sm.message;
            TableRow {
                created_at: m.timestamp.to_rfc3339(),
                role: m.role.to_string(),
                content: if m.is_text_only() {
                    m.text_content()
                } else {
                    serde_json::to_string(&m.content).unwrap_or_default()
                },
                id: m.id.to_string(),
                sender: m.sender.clone().unwrap_or_default(),
                recipient: m.recipient.clone().unwrap_or_default(),
                branch: m.branch.to_string(),
                metadata: Value::Object(m.metadata.clone()).to_string(),
            }
        })
        .collect()
}
