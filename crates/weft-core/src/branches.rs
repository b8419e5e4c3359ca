//! Branches, mail and the message table: LionAGI's `Session` semantics as
//! session-log records.
//!
//! Every operation here is a pure function from the session's current
//! [`SessionView`] to the records that carry it out, so it works on every
//! store, survives restarts and forks with the session. The functions are
//! applied atomically (check and append at one head) by
//! [`crate::log::update_session`] or [`crate::runtime::Session::update_with`].
//!
//! Done right where LionAGI is not: `split` clones the system message once;
//! `exclude_clone` and `exclude_load` filters really filter; mail for an
//! unknown branch is refused at send time; undelivered mail is durable.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::id::{BranchId, MessageId};
use crate::message::{
    ContentBlock, META_BRANCH_SYSTEM, META_CLONE_FROM, META_LOADED, Message, Role,
};
use std::collections::{HashMap, HashSet};

use crate::record::{Record, RecordKind};
use crate::session::{Branch, Mail, MailCategory, SplitFrom};
use crate::view::{BranchView, SessionView};

mod table;
pub use table::{SeqMessage, TABLE_COLUMNS, TableRow, concat_messages, table_rows};

/// Why a branch or mail operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BranchError {
    /// No branch has this id or name.
    #[error("no branch {0:?} in this session: `weft branch list` shows its branches")]
    UnknownBranch(String),
    /// The name is taken.
    #[error("a branch named {0:?} exists already: choose another name")]
    NameTaken(String),
    /// The last branch cannot be removed.
    #[error("branch {0:?} is the session's last branch: a session keeps at least one")]
    LastBranch(String),
    /// A bad argument.
    #[error("{0}")]
    Invalid(String),
}

fn find<'a>(view: &'a SessionView, id_or_name: &str) -> Result<&'a BranchView, BranchError> {
    view.branch(id_or_name)
        .ok_or_else(|| BranchError::UnknownBranch(id_or_name.to_string()))
}

/// Settings for a new branch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NewBranch {
    /// Its name (unique in the session).
    pub name: String,
    /// Its system message.
    #[serde(default)]
    pub system: Option<String>,
    /// Messages to load into it (marked `loaded`).
    #[serde(default)]
    pub messages: Vec<Message>,
    /// Tools made available to it.
    #[serde(default)]
    pub tools: Vec<String>,
    /// Its model.
    #[serde(default)]
    pub model: Option<String>,
    /// Its provider module.
    #[serde(default)]
    pub provider: Option<String>,
    /// Who sends its system message (LionAGI `system_sender`; default
    /// `system`).
    #[serde(default)]
    pub system_sender: Option<String>,
    /// A time to stamp into its system message (LionAGI
    /// `system_datetime`): `true` for now, or a string used as is.
    #[serde(default)]
    pub system_datetime: Option<SystemDatetime>,
    /// Its owner (LionAGI `user`).
    #[serde(default)]
    pub user: Option<String>,
}

/// LionAGI's `system_datetime`: `true` stamps the current time (to the
/// minute), `false` nothing, a string is used as is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SystemDatetime {
    /// Stamp the current time (or not).
    Now(bool),
    /// Stamp this text.
    At(String),
}

impl SystemDatetime {
    /// The stamp at `now`, or None for `false` or a blank string.
    pub fn resolve(&self, now: DateTime<Utc>) -> Option<String> {
        match self {
            SystemDatetime::Now(true) => Some(now.format("%Y-%m-%dT%H:%MZ").to_string()),
            SystemDatetime::Now(false) => None,
            SystemDatetime::At(s) => Some(s.trim().to_string()).filter(|s| !s.is_empty()),
        }
    }
}

/// The system message text of a branch: `system` after a `System Time:`
/// line when a time is stamped (LionAGI's rendering).
fn system_text(system: Option<String>, datetime: Option<&str>) -> Option<String> {
    match (system, datetime) {
        (system, Some(dt)) => Some(match system {
            Some(s) => format!("System Time: {dt}\n\n{s}"),
            None => format!("System Time: {dt}"),
        }),
        (system, None) => system,
    }
}

fn branch_id_for(view: &SessionView, name: &str) -> BranchId {
    match BranchId::parse(name) {
        Ok(id) if view.branch(id.as_str()).is_none() => id,
        _ => BranchId::parse(format!("branch-{}", uuid::Uuid::now_v7().simple()))
            .unwrap_or_else(|_| BranchId::main()),
    }
}

fn check_name(view: &SessionView, name: &str) -> Result<(), BranchError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(BranchError::Invalid(
            "a branch name is 1 to 100 characters".into(),
        ));
    }
    if view
        .branches
        .iter()
        .any(|b| b.branch.name == name || b.branch.id.as_str() == name)
    {
        return Err(BranchError::NameTaken(name.to_string()));
    }
    Ok(())
}

/// Records for a new branch.
pub fn new_branch(
    view: &SessionView,
    spec: NewBranch,
    now: DateTime<Utc>,
) -> Result<(Branch, Vec<RecordKind>), BranchError> {
    check_name(view, &spec.name)?;
    let id = branch_id_for(view, spec.name.trim());
    let system_datetime = spec.system_datetime.as_ref().and_then(|d| d.resolve(now));
    let branch = Branch {
        id: id.clone(),
        name: spec.name.trim().to_string(),
        created_at: now,
        created_from: None,
        system: system_text(spec.system, system_datetime.as_deref()),
        system_sender: spec.system_sender.filter(|s| !s.trim().is_empty()),
        system_datetime,
        user: spec.user.filter(|u| !u.trim().is_empty()),
        tools: spec.tools,
        model: spec.model,
        provider: spec.provider,
    };
    let mut records = vec![RecordKind::BranchCreated(branch.clone())];
    if let Some(system) = &branch.system {
        // LionAGI's System message: the first of the branch's messages.
        let mut m = Message::text(id.clone(), Role::System, system.clone());
        m.timestamp = now;
        m.sender = Some(
            branch
                .system_sender
                .clone()
                .unwrap_or_else(|| "system".into()),
        );
        m.recipient = Some(id.to_string());
        m.metadata
            .insert(META_BRANCH_SYSTEM.into(), Value::Bool(true));
        records.push(RecordKind::message(m));
    }
    for mut m in spec.messages {
        m.id = MessageId::new_v7();
        m.branch = id.clone();
        m.metadata.insert(META_LOADED.into(), Value::Bool(true));
        records.push(RecordKind::message(m));
    }
    Ok((branch, records))
}

/// Records that remove a branch; removing the default makes the first
/// remaining branch the default. With `delete` (LionAGI
/// `remove_branch(…, delete=True)`) its messages also leave every view and
/// export and its undelivered mail is dropped (a record; the log keeps
/// them).
pub fn remove_branch(
    view: &SessionView,
    id_or_name: &str,
    delete: bool,
) -> Result<Vec<RecordKind>, BranchError> {
    let target = find(view, id_or_name)?.branch.id.clone();
    let remaining: Vec<&BranchView> = view
        .branches
        .iter()
        .filter(|b| b.branch.id != target)
        .collect();
    let Some(first) = remaining.first() else {
        return Err(BranchError::LastBranch(id_or_name.to_string()));
    };
    let mut records = vec![RecordKind::BranchRemoved {
        branch: target.clone(),
        delete,
    }];
    if view.meta.default_branch == target {
        records.push(RecordKind::DefaultBranch {
            branch: first.branch.id.clone(),
        });
    }
    Ok(records)
}

/// The seqs of the message records of branches removed with `delete`
/// (what views and exports leave out; the log keeps them). A branch id
/// reused after the deletion starts afresh.
pub fn deleted_message_seqs(records: &[Record]) -> HashSet<u64> {
    let mut live: HashMap<&BranchId, Vec<u64>> = HashMap::new();
    let mut deleted = HashSet::new();
    for r in records {
        match &r.kind {
            RecordKind::Message(m) => live.entry(&m.branch).or_default().push(r.seq),
            RecordKind::BranchRemoved {
                branch,
                delete: true,
            } => deleted.extend(live.remove(branch).unwrap_or_default()),
            RecordKind::BranchRemoved { branch, .. } => {
                live.remove(branch);
            }
            _ => {}
        }
    }
    deleted
}

/// Records that make a branch the default.
pub fn change_default_branch(
    view: &SessionView,
    id_or_name: &str,
) -> Result<Vec<RecordKind>, BranchError> {
    let target = find(view, id_or_name)?.branch.id.clone();
    Ok(vec![RecordKind::DefaultBranch { branch: target }])
}

/// Records that clone `source` into a new branch (LionAGI `split`): the
/// settings (system message, tools, model) once, every message with a new
/// id, `metadata.clone_from` = the original id, `sender` = the source
/// branch, `recipient` = the new branch.
pub fn split(
    view: &SessionView,
    source: &str,
    name: Option<String>,
    now: DateTime<Utc>,
) -> Result<(Branch, Vec<RecordKind>), BranchError> {
    let src = find(view, source)?;
    let name = match name {
        Some(n) => n,
        None => {
            let mut n = 1;
            loop {
                let candidate = format!("{}-split-{n}", src.branch.name);
                if check_name(view, &candidate).is_ok() {
                    break candidate;
                }
                n += 1;
            }
        }
    };
    check_name(view, &name)?;
    let id = branch_id_for(view, name.trim());
    let branch = Branch {
        id: id.clone(),
        name: name.trim().to_string(),
        created_at: now,
        created_from: Some(SplitFrom {
            branch: src.branch.id.clone(),
            upto_seq: view.meta.last_seq,
        }),
        system: src.branch.system.clone(),
        system_sender: src.branch.system_sender.clone(),
        system_datetime: src.branch.system_datetime.clone(),
        user: src.branch.user.clone(),
        tools: src.branch.tools.clone(),
        model: src.branch.model.clone(),
        provider: src.branch.provider.clone(),
    };
    let mut records = vec![RecordKind::BranchCreated(branch.clone())];
    for lm in &src.messages {
        let mut m = lm.message.clone();
        m.metadata.insert(
            META_CLONE_FROM.into(),
            Value::String(lm.message.id.to_string()),
        );
        m.id = MessageId::new_v7();
        m.branch = id.clone();
        m.sender = Some(src.branch.id.to_string());
        m.recipient = Some(id.to_string());
        records.push(RecordKind::message(m));
    }
    Ok((branch, records))
}

/// Records that send mail from `from` to `to` (None: broadcast to every
/// other branch). Unknown branches are refused.
pub fn send_mail(
    view: &SessionView,
    from: &str,
    to: Option<&str>,
    category: MailCategory,
    item: Value,
    now: DateTime<Utc>,
) -> Result<(Mail, Vec<RecordKind>), BranchError> {
    let sender = find(view, from)?.branch.id.clone();
    let recipients: Vec<BranchId> = match to {
        Some(t) => vec![find(view, t)?.branch.id.clone()],
        None => view
            .branches
            .iter()
            .map(|b| b.branch.id.clone())
            .filter(|id| id != &sender)
            .collect(),
    };
    if recipients.is_empty() {
        return Err(BranchError::Invalid(
            "a broadcast needs at least one other branch".into(),
        ));
    }
    match category {
        MailCategory::Message if !(item.is_string() || item.is_object()) => {
            return Err(BranchError::Invalid(
                "message mail carries text or {\"role\", \"content\"}".into(),
            ));
        }
        MailCategory::Tool if !item.is_string() => {
            return Err(BranchError::Invalid("tool mail carries a tool name".into()));
        }
        MailCategory::Tool => {
            let tool = item.as_str().unwrap_or_default();
            let src = find(view, from)?;
            // An empty tool list means "all of the session's tools".
            if !src.branch.tools.is_empty() && !src.branch.tools.iter().any(|t| t == tool) {
                return Err(BranchError::Invalid(format!(
                    "branch {from:?} has no tool {tool:?} to hand over"
                )));
            }
        }
        MailCategory::Model if !item.is_object() => {
            return Err(BranchError::Invalid(
                "model mail carries {\"model\": …, \"provider\": …}".into(),
            ));
        }
        _ => {}
    }
    let mail = Mail {
        id: uuid::Uuid::now_v7().to_string(),
        from: sender,
        broadcast: to.is_none(),
        to: recipients,
        category,
        item,
        sent_at: now,
    };
    Ok((mail.clone(), vec![RecordKind::MailSent(mail)]))
}

fn mail_message(mail: &Mail, recipient: &BranchId, now: DateTime<Utc>) -> Message {
    let (role, content) = match &mail.item {
        Value::String(text) => (Role::User, vec![ContentBlock::text(text.clone())]),
        Value::Object(obj) => {
            let role = obj
                .get("role")
                .and_then(Value::as_str)
                .and_then(|r| r.parse().ok())
                .unwrap_or(Role::User);
            let content = match obj.get("content") {
                Some(Value::String(t)) => vec![ContentBlock::text(t.clone())],
                Some(v @ Value::Array(_)) => serde_json::from_value(v.clone())
                    .unwrap_or_else(|_| vec![ContentBlock::text(v.to_string())]),
                Some(other) => vec![ContentBlock::text(other.to_string())],
                None => vec![ContentBlock::text(Value::Object(obj.clone()).to_string())],
            };
            (role, content)
        }
        other => (Role::User, vec![ContentBlock::text(other.to_string())]),
    };
    let mut m = Message::new(recipient.clone(), role, content);
    m.timestamp = now;
    m.sender = Some(mail.from.to_string());
    m.recipient = Some(recipient.to_string());
    let mut meta = Map::new();
    meta.insert("mail_id".into(), Value::String(mail.id.clone()));
    m.metadata = meta;
    m
}

/// Records that deliver waiting mail (LionAGI `collect` / `collect_all`):
/// for recipient `to` (None: every branch) from `from` (None: every
/// sender), in send order. Message mail enters the recipient's
/// conversation; tool and model mail change the recipient's settings.
pub fn collect_mail(
    view: &SessionView,
    to: Option<&str>,
    from: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(usize, Vec<RecordKind>), BranchError> {
    let to = to
        .map(|t| find(view, t).map(|b| b.branch.id.clone()))
        .transpose()?;
    let from = from
        .map(|f| find(view, f).map(|b| b.branch.id.clone()))
        .transpose()?;
    let mut records = Vec::new();
    let mut delivered = 0;
    let mut settings: Vec<Branch> = view.branches.iter().map(|b| b.branch.clone()).collect();
    let mut changed: Vec<BranchId> = Vec::new();
    for pending in &view.mail {
        if from.as_ref().is_some_and(|f| f != &pending.mail.from) {
            continue;
        }
        for recipient in &pending.waiting {
            if to.as_ref().is_some_and(|t| t != recipient) {
                continue;
            }
            records.push(RecordKind::MailCollected {
                mail_id: pending.mail.id.clone(),
                recipient: recipient.clone(),
            });
            delivered += 1;
            let Some(target) = settings.iter_mut().find(|b| &b.id == recipient) else {
                continue;
            };
            match pending.mail.category {
                MailCategory::Message => {
                    records.push(RecordKind::message(mail_message(
                        &pending.mail,
                        recipient,
                        now,
                    )));
                }
                MailCategory::Tool => {
                    // An empty list already allows every session tool.
                    if let Some(tool) = pending.mail.item.as_str()
                        && !target.tools.is_empty()
                        && !target.tools.iter().any(|t| t == tool)
                    {
                        target.tools.push(tool.to_string());
                        changed.push(recipient.clone());
                    }
                }
                MailCategory::Model => {
                    if let Some(model) = pending.mail.item.get("model").and_then(Value::as_str) {
                        target.model = Some(model.to_string());
                    }
                    if let Some(provider) =
                        pending.mail.item.get("provider").and_then(Value::as_str)
                    {
                        target.provider = Some(provider.to_string());
                    }
                    changed.push(recipient.clone());
                }
            }
        }
    }
    changed.dedup();
    for id in changed {
        if let Some(b) = settings.iter().find(|b| b.id == id) {
            records.push(RecordKind::BranchCreated(b.clone()));
        }
    }
    Ok((delivered, records))
}

#[cfg(test)]
mod tests;
