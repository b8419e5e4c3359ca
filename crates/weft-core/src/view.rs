//! The current state of a session as a fold of its log: the one place
//! records are folded.
//!
//! [`SessionMeta::apply`] folds a record into the session's metadata (every
//! backend calls it on every append, so listing never reads a log).
//! [`SessionView`] replays records into branches (with their messages, after
//! rewinds), the session-local state map and the pending mail, on top of the
//! metadata fold. The runtime builds one when it resumes a session; the
//! daemon and the CLI use it to show transcripts.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::id::BranchId;
use crate::message::{ContentBlock, Message, Role, Usage};
use crate::record::{BatchError, Record, RecordKind, check_batch};
use crate::session::{Branch, LAST_PROMPT_CHARS, Mail, SessionMeta, SessionStatus};

/// A message together with the log seq that appended it.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedMessage {
    /// The seq of the `message` record.
    pub seq: u64,
    /// The message.
    pub message: Message,
}

/// One branch and its conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct BranchView {
    /// The branch's settings.
    pub branch: Branch,
    /// Its messages in log order (rewound messages removed).
    pub messages: Vec<LoggedMessage>,
    /// The latest compaction summary: `(upto_seq, summary)`.
    pub summary: Option<(u64, String)>,
}

/// Mail that at least one recipient has not collected yet.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingMail {
    /// The seq of the `mail_sent` record (send order).
    pub seq: u64,
    /// The mail.
    pub mail: Mail,
    /// Recipients that have not collected it.
    pub waiting: Vec<BranchId>,
}

/// Why a log cannot be folded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ViewError {
    /// The log did not start with `session_created`.
    #[error("the session log does not start with a session_created record")]
    MissingCreate,
}

/// A session's state, folded from its log.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionView {
    /// The metadata.
    pub meta: SessionMeta,
    /// The branches, in creation order.
    pub branches: Vec<BranchView>,
    /// Session-local state (no `app:`/`user:`/`temp:` keys).
    pub state: Map<String, Value>,
    /// Mail not yet collected by all its recipients, in send order.
    pub mail: Vec<PendingMail>,
}

/// The records that create session `meta` — its `session_created` record,
/// then `initial` — numbered from 1 and checked, with the metadata folded
/// from them: what every backend's `Store::create` writes.
pub fn creation_batch(
    meta: &SessionMeta,
    initial: Vec<RecordKind>,
) -> Result<(Vec<Record>, SessionMeta), BatchError> {
    let mut kinds = vec![RecordKind::SessionCreated(Box::new(meta.clone()))];
    kinds.extend(initial);
    let records = Record::batch(0, kinds);
    check_batch(0, &records)?;
    let mut folded = meta.clone();
    for r in &records {
        folded.apply(r);
    }
    Ok((records, folded))
}

impl SessionMeta {
    /// Folds one log record into the metadata. Every backend calls this on
    /// every record it appends, so the metadata never has to be rebuilt from
    /// the whole log.
    pub fn apply(&mut self, record: &Record) {
        if let RecordKind::SessionCreated(created) = &record.kind {
            *self = (**created).clone();
        }
        self.last_seq = record.seq;
        self.updated_at = record.ts;
        match &record.kind {
            RecordKind::SessionCreated(_) => {}
            RecordKind::Message(message) => fold_message(
                message,
                MessageFields {
                    messages: &mut self.message_count,
                    turns: &mut self.turn_count,
                    usage: &mut self.usage,
                    last_prompt: &mut self.last_prompt,
                    model: &mut self.model,
                },
            ),
            RecordKind::Status(change) => {
                self.status = change.to;
                match change.to {
                    SessionStatus::Active => {
                        if self.started_at.is_none() {
                            self.started_at = Some(record.ts);
                        }
                        self.ended_at = None;
                        self.error_message = None;
                    }
                    s if s.is_ended() => {
                        self.ended_at = Some(record.ts);
                        if change.error.is_some() {
                            self.error_message.clone_from(&change.error);
                        }
                    }
                    _ => {}
                }
            }
            RecordKind::Meta(patch) => {
                if let Some(name) = &patch.name {
                    self.name = (!name.is_empty()).then(|| name.clone());
                }
                if let Some(description) = &patch.description {
                    self.description = (!description.is_empty()).then(|| description.clone());
                }
                if let Some(model) = &patch.model {
                    self.model = Some(model.clone());
                }
                if let Some(metadata) = &patch.metadata {
                    for (k, v) in metadata {
                        if v.is_null() {
                            self.metadata.remove(k);
                        } else {
                            self.metadata.insert(k.clone(), v.clone());
                        }
                    }
                }
            }
            RecordKind::DefaultBranch { branch } => self.default_branch = branch.clone(),
            RecordKind::Usage { usage, .. } => self.usage.add(usage),
            RecordKind::State(_)
            | RecordKind::BranchCreated(_)
            | RecordKind::BranchRemoved { .. }
            | RecordKind::MailSent(_)
            | RecordKind::MailCollected { .. }
            | RecordKind::Rewind { .. }
            | RecordKind::Compaction { .. } => {}
        }
    }
}

/// What a batch of `message` records does to a session's metadata,
/// whatever the metadata held before: the part of [`SessionMeta::apply`]
/// that a store can apply where the metadata lives (in a database
/// statement, say) without a copy of it. [`MessageFold::apply_to`] on any
/// metadata gives what applying the records one by one gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageFold {
    /// How many records the batch holds (the head moves by this much).
    pub records: u64,
    /// The last record's time: the new `updated_at`.
    pub updated_at: DateTime<Utc>,
    /// How much `message_count` grows (saturating).
    pub messages: u64,
    /// How much `turn_count` grows: the user messages (saturating).
    pub turns: u64,
    /// The usage the messages report, summed (added saturating).
    pub usage: Usage,
    /// The new `last_prompt`, when a user message with text sets one.
    pub last_prompt: Option<String>,
    /// The `model` a session without one takes: the first assistant
    /// message's that names one.
    pub model: Option<String>,
}

impl MessageFold {
    /// The fold of `records`, or `None` unless there is at least one and
    /// every one is a message.
    pub fn of(records: &[Record]) -> Option<MessageFold> {
        let last = records.last()?;
        let mut fold = MessageFold {
            records: records.len() as u64,
            updated_at: last.ts,
            messages: 0,
            turns: 0,
            usage: Usage::default(),
            last_prompt: None,
            model: None,
        };
        for record in records {
            fold_message(
                record.as_message()?,
                MessageFields {
                    messages: &mut fold.messages,
                    turns: &mut fold.turns,
                    usage: &mut fold.usage,
                    last_prompt: &mut fold.last_prompt,
                    model: &mut fold.model,
                },
            );
        }
        Some(fold)
    }

    /// Applies the fold to `meta`, whose log's head becomes `head` (the
    /// batch's last seq).
    pub fn apply_to(&self, meta: &mut SessionMeta, head: u64) {
        meta.last_seq = head;
        meta.updated_at = self.updated_at;
        meta.message_count = meta.message_count.saturating_add(self.messages);
        meta.turn_count = meta.turn_count.saturating_add(self.turns);
        meta.usage.add(&self.usage);
        if self.last_prompt.is_some() {
            meta.last_prompt.clone_from(&self.last_prompt);
        }
        if meta.model.is_none() {
            meta.model.clone_from(&self.model);
        }
    }
}

/// The metadata fields a message changes: [`SessionMeta`]'s own, or a
/// [`MessageFold`]'s running totals.
struct MessageFields<'a> {
    messages: &'a mut u64,
    turns: &'a mut u64,
    usage: &'a mut Usage,
    last_prompt: &'a mut Option<String>,
    model: &'a mut Option<String>,
}

/// Folds one message into `fields`: the one place a message's effect on
/// the metadata is written. Saturating: a log's counts are input and must
/// not panic the fold.
fn fold_message(message: &Message, fields: MessageFields<'_>) {
    *fields.messages = fields.messages.saturating_add(1);
    if message.role == Role::User {
        *fields.turns = fields.turns.saturating_add(1);
        set_last_prompt(fields.last_prompt, message);
    }
    if let Some(usage) = &message.usage {
        fields.usage.add(usage);
    }
    if message.role == Role::Assistant && fields.model.is_none() {
        fields.model.clone_from(&message.model);
    }
}

/// Sets `last_prompt` to the first [`LAST_PROMPT_CHARS`] characters of
/// `message`'s text (its text blocks joined), unless it has no text —
/// reusing the string already there rather than building the whole text.
fn set_last_prompt(last_prompt: &mut Option<String>, message: &Message) {
    let mut texts = message
        .content
        .iter()
        .filter_map(|b| match b {
            ContentBlock::Text { text } if !text.is_empty() => Some(text.as_str()),
            _ => None,
        })
        .peekable();
    if texts.peek().is_none() {
        return;
    }
    let out = last_prompt.get_or_insert_with(String::new);
    out.clear();
    let mut left = LAST_PROMPT_CHARS;
    for text in texts {
        match text.char_indices().nth(left) {
            Some((end, _)) => {
                out.push_str(&text[..end]);
                return;
            }
            None => {
                out.push_str(text);
                left -= text.chars().count();
            }
        }
    }
}

impl SessionView {
    /// Folds a whole log (starting at seq 1).
    pub fn from_records<'a, I>(records: I) -> Result<Self, ViewError>
    where
        I: IntoIterator<Item = &'a Record>,
    {
        let mut iter = records.into_iter();
        let first = iter.next().ok_or(ViewError::MissingCreate)?;
        let RecordKind::SessionCreated(meta) = &first.kind else {
            return Err(ViewError::MissingCreate);
        };
        let mut view = SessionView {
            meta: (**meta).clone(),
            branches: vec![BranchView {
                branch: Branch::main(first.ts),
                messages: Vec::new(),
                summary: None,
            }],
            state: Map::new(),
            mail: Vec::new(),
        };
        view.meta.apply(first);
        for r in iter {
            view.apply(r);
        }
        Ok(view)
    }

    /// Folds a whole log it owns (no message is cloned).
    pub fn from_log(records: Vec<Record>) -> Result<Self, ViewError> {
        let mut iter = records.into_iter();
        let first = iter.next().ok_or(ViewError::MissingCreate)?;
        let mut view = Self::from_records(std::iter::once(&first))?;
        for r in iter {
            view.apply_owned(r);
        }
        Ok(view)
    }

    /// Folds one more record it owns: like [`SessionView::apply`] without
    /// cloning a message.
    pub fn apply_owned(&mut self, record: Record) {
        if let RecordKind::Message(_) = &record.kind {
            self.meta.apply(&record);
            let seq = record.seq;
            let RecordKind::Message(m) = record.kind else {
                return;
            };
            let branch = self.branch_mut_or_insert(&m.branch, record.ts);
            branch.messages.push(LoggedMessage { seq, message: *m });
        } else {
            self.apply(&record);
        }
    }

    /// Folds one more record.
    pub fn apply(&mut self, record: &Record) {
        self.meta.apply(record);
        match &record.kind {
            RecordKind::Message(m) => {
                let branch = self.branch_mut_or_insert(&m.branch, record.ts);
                branch.messages.push(LoggedMessage {
                    seq: record.seq,
                    message: (**m).clone(),
                });
            }
            RecordKind::State(delta) => delta.apply_to(&mut self.state),
            RecordKind::BranchCreated(b) => {
                if let Some(existing) = self.branches.iter_mut().find(|v| v.branch.id == b.id) {
                    existing.branch = b.clone();
                } else {
                    self.branches.push(BranchView {
                        branch: b.clone(),
                        messages: Vec::new(),
                        summary: None,
                    });
                }
            }
            RecordKind::BranchRemoved { branch, delete } => {
                self.branches.retain(|v| &v.branch.id != branch);
                for pending in &mut self.mail {
                    pending.waiting.retain(|b| b != branch);
                }
                // A deleted branch's undelivered mail goes with it.
                self.mail
                    .retain(|p| !(p.waiting.is_empty() || (*delete && &p.mail.from == branch)));
            }
            RecordKind::MailSent(mail) => self.mail.push(PendingMail {
                seq: record.seq,
                mail: mail.clone(),
                waiting: mail.to.clone(),
            }),
            RecordKind::MailCollected { mail_id, recipient } => {
                for pending in &mut self.mail {
                    if &pending.mail.id == mail_id {
                        pending.waiting.retain(|b| b != recipient);
                    }
                }
                self.mail.retain(|p| !p.waiting.is_empty());
            }
            RecordKind::Rewind { branch, to_seq } => {
                if let Some(b) = self.branches.iter_mut().find(|v| &v.branch.id == branch) {
                    b.messages.retain(|m| m.seq <= *to_seq);
                    if matches!(b.summary, Some((upto, _)) if upto > *to_seq) {
                        b.summary = None;
                    }
                }
            }
            RecordKind::Compaction {
                branch,
                upto_seq,
                summary,
            } => {
                if let Some(b) = self.branches.iter_mut().find(|v| &v.branch.id == branch) {
                    b.summary = Some((*upto_seq, summary.clone()));
                }
            }
            RecordKind::SessionCreated(_)
            | RecordKind::Status(_)
            | RecordKind::Meta(_)
            | RecordKind::DefaultBranch { .. }
            | RecordKind::Usage { .. } => {}
        }
    }

    fn branch_mut_or_insert(
        &mut self,
        id: &BranchId,
        ts: chrono::DateTime<chrono::Utc>,
    ) -> &mut BranchView {
        let pos = match self.branches.iter().position(|v| &v.branch.id == id) {
            Some(pos) => pos,
            None => {
                let mut branch = Branch::main(ts);
                branch.id = id.clone();
                branch.name = id.to_string();
                self.branches.push(BranchView {
                    branch,
                    messages: Vec::new(),
                    summary: None,
                });
                self.branches.len() - 1
            }
        };
        &mut self.branches[pos]
    }

    /// A branch by id, or else by name.
    pub fn branch(&self, id_or_name: &str) -> Option<&BranchView> {
        self.branches
            .iter()
            .find(|v| v.branch.id.as_str() == id_or_name)
            .or_else(|| self.branches.iter().find(|v| v.branch.name == id_or_name))
    }

    /// Removes a branch (by id, or else by name, as [`SessionView::branch`])
    /// from the view and returns it, so its messages can be kept without
    /// copying them.
    pub fn take_branch(&mut self, id_or_name: &str) -> Option<BranchView> {
        let pos = self
            .branches
            .iter()
            .position(|v| v.branch.id.as_str() == id_or_name)
            .or_else(|| {
                self.branches
                    .iter()
                    .position(|v| v.branch.name == id_or_name)
            })?;
        Some(self.branches.remove(pos))
    }

    /// The default branch.
    pub fn default_branch(&self) -> Option<&BranchView> {
        self.branch(self.meta.default_branch.as_str())
    }

    /// The messages of a branch (empty for an unknown branch).
    pub fn messages(&self, branch: &str) -> Vec<&Message> {
        self.branch(branch)
            .map(|b| b.messages.iter().map(|m| &m.message).collect())
            .unwrap_or_default()
    }

    /// The text of the last user message on the default branch (rewound
    /// turns are out of the view, so not counted), in full; `None` when the
    /// branch has no prompt with text. Unlike [`SessionMeta::last_prompt`]
    /// it is not shortened and ignores the other branches.
    pub fn last_prompt(&self) -> Option<String> {
        self.default_branch()?
            .messages
            .iter()
            .rev()
            .map(|m| &m.message)
            .filter(|m| m.role == Role::User)
            .map(Message::text_content)
            .find(|t| !t.trim().is_empty())
    }

    /// Mail waiting for `branch`, in send order.
    pub fn inbox(&self, branch: &BranchId) -> Vec<&PendingMail> {
        self.mail
            .iter()
            .filter(|p| p.waiting.contains(branch))
            .collect()
    }
}

/// The seqs of the user messages of `branch` in `records`: entry `n - 1` is
/// where turn `n` starts.
pub fn turn_starts<'a, I>(records: I, branch: &BranchId) -> Vec<u64>
where
    I: IntoIterator<Item = &'a Record>,
{
    records
        .into_iter()
        .filter_map(|r| match &r.kind {
            RecordKind::Message(m) if m.role == Role::User && &m.branch == branch => Some(r.seq),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::SessionId;
    use crate::session::{Project, SessionMeta};

    #[test]
    fn folding_by_value_equals_folding_by_reference() {
        let meta = SessionMeta::new(SessionId::new_v7(), Project::current(), "base");
        let mut kinds = vec![RecordKind::SessionCreated(Box::new(meta))];
        let mut side = Branch::main(chrono::Utc::now());
        side.id = BranchId::parse("side").unwrap();
        side.name = "side".into();
        kinds.push(RecordKind::BranchCreated(side.clone()));
        for i in 0..5 {
            kinds.push(RecordKind::message(Message::text(
                BranchId::main(),
                Role::User,
                format!("u{i}"),
            )));
            kinds.push(RecordKind::message(Message::text(
                side.id.clone(),
                Role::Assistant,
                format!("a{i}"),
            )));
        }
        kinds.push(RecordKind::Rewind {
            branch: BranchId::main(),
            to_seq: 5,
        });
        let records = Record::batch(0, kinds);
        let by_ref = SessionView::from_records(&records).unwrap();
        let by_value = SessionView::from_log(records).unwrap();
        assert_eq!(by_ref, by_value);
        assert_eq!(by_value.messages("main").len(), 2);
        assert_eq!(by_value.messages("side").len(), 5);
    }

    #[test]
    fn the_folded_last_prompt_is_the_texts_first_characters() {
        let long = "é".repeat(LAST_PROMPT_CHARS - 3);
        for blocks in [
            vec!["", ""],
            vec!["abc"],
            vec![long.as_str(), "", "xyz", "more"],
            vec![long.as_str(), "ab"],
            vec!["", long.as_str(), "abcd"],
        ] {
            let content = blocks.iter().map(|t| ContentBlock::text(*t)).collect();
            let m = Message::new(BranchId::main(), Role::User, content);
            let mut got = Some("before".to_string());
            set_last_prompt(&mut got, &m);
            let text = m.text_content();
            let want = if text.is_empty() {
                "before".to_string()
            } else {
                text.chars().take(LAST_PROMPT_CHARS).collect()
            };
            assert_eq!(got.as_deref(), Some(want.as_str()), "{blocks:?}");
        }
    }

    #[test]
    fn last_prompt_is_the_default_branchs_last_user_text_in_full() {
        let meta = SessionMeta::new(SessionId::new_v7(), Project::current(), "base");
        let mut side = Branch::main(chrono::Utc::now());
        side.id = BranchId::parse("side").unwrap();
        side.name = "side".into();
        let long = "x".repeat(LAST_PROMPT_CHARS + 50);
        let kinds = vec![
            RecordKind::SessionCreated(Box::new(meta)),
            RecordKind::BranchCreated(side.clone()),
            RecordKind::message(Message::text(BranchId::main(), Role::User, "first")),
            RecordKind::message(Message::text(BranchId::main(), Role::User, long.clone())),
            RecordKind::message(Message::text(BranchId::main(), Role::Assistant, "ok")),
            RecordKind::message(Message::text(side.id.clone(), Role::User, "on the side")),
            RecordKind::message(Message::text(BranchId::main(), Role::User, "rewound")),
            RecordKind::Rewind {
                branch: BranchId::main(),
                to_seq: 6,
            },
        ];
        let view = SessionView::from_log(Record::batch(0, kinds)).unwrap();
        assert_eq!(view.last_prompt(), Some(long), "whole, not shortened");
        let empty = SessionMeta::new(SessionId::new_v7(), Project::current(), "base");
        let view = SessionView::from_log(Record::batch(
            0,
            vec![RecordKind::SessionCreated(Box::new(empty))],
        ))
        .unwrap();
        assert_eq!(view.last_prompt(), None);
    }

    /// A count for the fold tests: small, near the top, or anything.
    fn count() -> impl proptest::strategy::Strategy<Value = u64> {
        use proptest::prelude::*;
        prop_oneof![0..1_000u64, (u64::MAX - 5)..=u64::MAX, any::<u64>()]
    }

    proptest::proptest! {
        #[test]
        fn a_message_fold_applies_as_its_records_do(
            counts in (count(), count(), count(), count(), count()),
            model in proptest::option::of("[a-z]{1,6}"),
            prompt in proptest::option::of("[a-z ]{0,8}"),
            batch in proptest::collection::vec((
                0u8..3,
                proptest::collection::vec("[a-zé ]{0,120}", 0..3),
                proptest::option::of((count(), count(), count(), count())),
                proptest::option::of("[a-z]{0,6}"),
            ), 1..6),
        ) {
            let mut meta = SessionMeta::new(SessionId::new_v7(), Project::current(), "base");
            (meta.message_count, meta.turn_count, meta.usage.input_tokens, meta.usage.output_tokens, meta.last_seq) = counts;
            meta.last_seq %= 1 << 40;
            meta.model = model;
            meta.last_prompt = prompt;
            let kinds = batch.into_iter().map(|(role, texts, usage, model)| {
                let role = [Role::User, Role::Assistant, Role::Tool][usize::from(role)];
                let content = texts.into_iter().map(ContentBlock::text).collect();
                let mut message = Message::new(BranchId::main(), role, content);
                message.usage = usage.map(|(a, b, c, d)| Usage {
                    input_tokens: a,
                    output_tokens: b,
                    cache_read_tokens: c,
                    cache_creation_tokens: d,
                });
                message.model = model;
                RecordKind::message(message)
            });
            let records = Record::batch(meta.last_seq, kinds);
            let fold = MessageFold::of(&records).unwrap();
            let mut one_by_one = meta.clone();
            for r in &records {
                one_by_one.apply(r);
            }
            let mut folded = meta;
            fold.apply_to(&mut folded, records.last().unwrap().seq);
            proptest::prop_assert_eq!(folded, one_by_one);
        }
    }

    #[test]
    fn only_message_batches_have_a_message_fold() {
        assert_eq!(MessageFold::of(&[]), None);
        let meta = SessionMeta::new(SessionId::new_v7(), Project::current(), "base");
        let records = Record::batch(
            3,
            vec![
                RecordKind::message(Message::text(BranchId::main(), Role::User, "hi")),
                RecordKind::Meta(crate::record::MetaPatch {
                    name: Some("n".into()),
                    ..Default::default()
                }),
            ],
        );
        assert_eq!(MessageFold::of(&records), None);
        let created = Record::batch(0, vec![RecordKind::SessionCreated(Box::new(meta))]);
        assert_eq!(MessageFold::of(&created), None);
        let fold = MessageFold::of(&records[..1]).unwrap();
        assert_eq!((fold.records, fold.messages, fold.turns), (1, 1, 1));
        assert_eq!(fold.last_prompt.as_deref(), Some("hi"));
    }
}
