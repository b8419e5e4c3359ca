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
use crate::message::{ContentBlock, META_CLONE_FROM, META_LOADED, Message, Role};
use crate::record::RecordKind;
use crate::session::{Branch, Mail, MailCategory, SplitFrom};
use crate::view::{BranchView, SessionView};

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
    let branch = Branch {
        id: id.clone(),
        name: spec.name.trim().to_string(),
        created_at: now,
        created_from: None,
        system: spec.system,
        tools: spec.tools,
        model: spec.model,
        provider: spec.provider,
    };
    let mut records = vec![RecordKind::BranchCreated(branch.clone())];
    for mut m in spec.messages {
        m.id = MessageId::new_v7();
        m.branch = id.clone();
        m.metadata.insert(META_LOADED.into(), Value::Bool(true));
        records.push(RecordKind::message(m));
    }
    Ok((branch, records))
}

/// Records that remove a branch; removing the default makes the first
/// remaining branch the default.
pub fn remove_branch(view: &SessionView, id_or_name: &str) -> Result<Vec<RecordKind>, BranchError> {
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
    }];
    if view.meta.default_branch == target {
        records.push(RecordKind::DefaultBranch {
            branch: first.branch.id.clone(),
        });
    }
    Ok(records)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::SessionId;
    use crate::record::Record;
    use crate::session::{Project, SessionMeta};

    /// A tiny in-memory log for exercising the pure functions.
    struct Log {
        records: Vec<Record>,
    }

    impl Log {
        fn new() -> Self {
            let meta = SessionMeta::new(SessionId::new_v7(), Project::current(), "base");
            Self {
                records: Record::batch(0, [RecordKind::SessionCreated(Box::new(meta))]),
            }
        }
        fn view(&self) -> SessionView {
            SessionView::from_records(&self.records).unwrap()
        }
        fn push(&mut self, kinds: Vec<RecordKind>) {
            let head = self.records.len() as u64;
            self.records.extend(Record::batch(head, kinds));
        }
        fn say(&mut self, branch: &str, role: Role, text: &str) {
            let b = self.view().branch(branch).unwrap().branch.id.clone();
            self.push(vec![RecordKind::message(Message::text(b, role, text))]);
        }
    }

    fn now() -> DateTime<Utc> {
        Utc::now()
    }

    #[test]
    fn default_branch_exists_and_lookup_by_id_or_name() {
        let mut log = Log::new();
        let view = log.view();
        assert_eq!(view.meta.default_branch.as_str(), "main");
        assert!(view.branch("main").is_some());
        let (b, recs) = new_branch(
            &view,
            NewBranch {
                name: "research notes".into(),
                ..Default::default()
            },
            now(),
        )
        .unwrap();
        log.push(recs);
        let view = log.view();
        assert!(view.branch(b.id.as_str()).is_some(), "by id");
        assert!(view.branch("research notes").is_some(), "by name");
        assert!(matches!(
            new_branch(
                &view,
                NewBranch {
                    name: "research notes".into(),
                    ..Default::default()
                },
                now()
            ),
            Err(BranchError::NameTaken(_))
        ));
    }

    #[test]
    fn removing_the_default_picks_a_new_one_and_the_last_is_kept() {
        let mut log = Log::new();
        let (_, recs) = new_branch(
            &log.view(),
            NewBranch {
                name: "b".into(),
                ..Default::default()
            },
            now(),
        )
        .unwrap();
        log.push(recs);
        log.push(remove_branch(&log.view(), "main").unwrap());
        let view = log.view();
        assert_eq!(view.meta.default_branch.as_str(), "b");
        assert!(view.branch("main").is_none());
        assert!(matches!(
            remove_branch(&view, "b"),
            Err(BranchError::LastBranch(_))
        ));
        assert!(matches!(
            remove_branch(&view, "zzz"),
            Err(BranchError::UnknownBranch(_))
        ));
    }

    #[test]
    fn split_clones_once_with_metadata() {
        let mut log = Log::new();
        let (_, recs) = new_branch(
            &log.view(),
            NewBranch {
                name: "src".into(),
                system: Some("be brief".into()),
                tools: vec!["grep".into()],
                ..Default::default()
            },
            now(),
        )
        .unwrap();
        log.push(recs);
        log.say("src", Role::System, "system in transcript");
        log.say("src", Role::User, "q");
        log.say("src", Role::Assistant, "a");
        let (copy, recs) = split(&log.view(), "src", Some("copy".into()), now()).unwrap();
        log.push(recs);
        let view = log.view();
        let src = view.branch("src").unwrap();
        let dst = view.branch("copy").unwrap();
        assert_eq!(src.messages.len(), dst.messages.len(), "same message count");
        assert_eq!(dst.branch.system.as_deref(), Some("be brief"));
        assert_eq!(dst.branch.tools, vec!["grep".to_string()]);
        let systems = dst
            .messages
            .iter()
            .filter(|m| m.message.role == Role::System)
            .count();
        assert_eq!(systems, 1, "system message not duplicated");
        for (s, d) in src.messages.iter().zip(&dst.messages) {
            assert_ne!(s.message.id, d.message.id);
            assert_eq!(
                d.message.metadata[META_CLONE_FROM],
                Value::String(s.message.id.to_string())
            );
            assert_eq!(d.message.sender.as_deref(), Some(src.branch.id.as_str()));
            assert_eq!(d.message.recipient.as_deref(), Some(copy.id.as_str()));
        }
        // exclude_clone really excludes.
        let all = concat_messages(&view, None, false, false).unwrap();
        let no_clones = concat_messages(&view, None, true, false).unwrap();
        assert_eq!(all.len(), 6);
        assert_eq!(no_clones.len(), 3);
    }

    #[test]
    fn exclude_load_drops_loaded_messages() {
        let mut log = Log::new();
        let loaded = vec![Message::text(BranchId::main(), Role::User, "imported")];
        let (_, recs) = new_branch(
            &log.view(),
            NewBranch {
                name: "l".into(),
                messages: loaded,
                ..Default::default()
            },
            now(),
        )
        .unwrap();
        log.push(recs);
        log.say("l", Role::User, "fresh");
        let view = log.view();
        assert_eq!(
            concat_messages(&view, Some(&["l".into()]), false, false)
                .unwrap()
                .len(),
            2
        );
        let kept = concat_messages(&view, Some(&["l".into()]), false, true).unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].message.text_content(), "fresh");
    }

    #[test]
    fn mail_direct_broadcast_fifo_and_unknown_recipient() {
        let mut log = Log::new();
        for name in ["a", "b"] {
            let (_, recs) = new_branch(
                &log.view(),
                NewBranch {
                    name: name.into(),
                    ..Default::default()
                },
                now(),
            )
            .unwrap();
            log.push(recs);
        }
        assert!(matches!(
            send_mail(
                &log.view(),
                "main",
                Some("nobody"),
                MailCategory::Message,
                "x".into(),
                now()
            ),
            Err(BranchError::UnknownBranch(_))
        ));
        for text in ["one", "two", "three"] {
            let (_, recs) = send_mail(
                &log.view(),
                "main",
                Some("a"),
                MailCategory::Message,
                text.into(),
                now(),
            )
            .unwrap();
            log.push(recs);
        }
        let (mail, recs) = send_mail(
            &log.view(),
            "b",
            None,
            MailCategory::Message,
            "hello all".into(),
            now(),
        )
        .unwrap();
        assert_eq!(mail.to.len(), 2, "broadcast reaches every other branch");
        log.push(recs);
        assert_eq!(log.view().inbox(&BranchId::parse("a").unwrap()).len(), 4);

        let (n, recs) = collect_mail(&log.view(), Some("a"), Some("main"), now()).unwrap();
        assert_eq!(n, 3);
        log.push(recs);
        let view = log.view();
        let texts: Vec<String> = view
            .messages("a")
            .iter()
            .map(|m| m.text_content())
            .collect();
        assert_eq!(texts, ["one", "two", "three"], "per-sender FIFO");
        assert_eq!(view.messages("a")[0].sender.as_deref(), Some("main"));
        // The broadcast still waits for a and main.
        assert_eq!(view.mail.len(), 1);
        let (n, recs) = collect_mail(&view, None, None, now()).unwrap();
        assert_eq!(n, 2);
        log.push(recs);
        assert!(log.view().mail.is_empty());
    }

    #[test]
    fn tool_and_model_mail_change_settings() {
        let mut log = Log::new();
        let (_, recs) = new_branch(
            &log.view(),
            NewBranch {
                name: "t".into(),
                tools: vec!["grep".into()],
                ..Default::default()
            },
            now(),
        )
        .unwrap();
        log.push(recs);
        let (_, recs) = new_branch(
            &log.view(),
            NewBranch {
                name: "r".into(),
                tools: vec!["read_file".into()],
                ..Default::default()
            },
            now(),
        )
        .unwrap();
        log.push(recs);
        assert!(
            send_mail(
                &log.view(),
                "t",
                Some("main"),
                MailCategory::Tool,
                "bash".into(),
                now()
            )
            .is_err()
        );
        let (_, recs) = send_mail(
            &log.view(),
            "t",
            Some("r"),
            MailCategory::Tool,
            "grep".into(),
            now(),
        )
        .unwrap();
        log.push(recs);
        let (_, recs) = send_mail(
            &log.view(),
            "t",
            Some("r"),
            MailCategory::Model,
            serde_json::json!({"model": "m2"}),
            now(),
        )
        .unwrap();
        log.push(recs);
        let (n, recs) = collect_mail(&log.view(), Some("r"), None, now()).unwrap();
        assert_eq!(n, 2);
        log.push(recs);
        let r = log.view().branch("r").unwrap().branch.clone();
        assert_eq!(r.tools, vec!["read_file".to_string(), "grep".to_string()]);
        assert_eq!(r.model.as_deref(), Some("m2"));
    }

    #[test]
    fn table_rows_have_the_columns() {
        let mut log = Log::new();
        log.say("main", Role::User, "hi");
        let rows = table_rows(&concat_messages(&log.view(), None, false, false).unwrap());
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].role, "user");
        assert_eq!(rows[0].content, "hi");
        assert_eq!(rows[0].branch, "main");
    }
}
