//! Which parts of a record are sealed, and how: the user-provided content
//! of a record becomes tokens (`token`) inside the same record shape, so
//! every backend stores, orders and lists it unchanged.
//!
//! - a message: its content blocks, metadata and structured answer become
//!   one token, the only entry of its metadata (`{"wenc": token}`, the
//!   second layout) with no content blocks, so reading a record parses the
//!   token as one plain string; a user message with text also keeps a short
//!   sealed preview as its one text block, so the backends' `last_prompt`
//!   holds a sealed preview instead of the prompt. The first layout (the
//!   token as the last text block) is still read;
//! - a state change: each value set (keys stay clear);
//! - mail: its item;
//! - a compaction: its summary;
//! - a kernel event: the whole event.
//!
//! This module knows records and tokens; where data keys come from is the
//! store wrapper's business.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use weft_core::message::{ContentBlock, Message, Role};
use weft_core::record::{Record, RecordKind};
use weft_core::store::StoreError;

use super::keys::DataKey;
pub(crate) use super::token::TOKEN;
use super::token::{self, undecryptable};

/// The prefix of a user message's sealed preview; it ends at [`PREVIEW_END`].
pub(crate) const PREVIEW: &str = "wenc1p:";
const PREVIEW_END: char = '~';
/// The most plaintext bytes a preview holds: its token stays within the
/// 200 characters a session's `last_prompt` keeps.
const PREVIEW_BYTES: usize = 116;
/// The key of a sealed kernel event.
const EVENT_KEY: &str = "sealed";
/// The metadata key holding a sealed message's token (second layout).
pub(crate) const MESSAGE_KEY: &str = "wenc";

/// A message's sealed parts, named as [`Message`] names them so that their
/// JSON is the message's own fields (`splice` opens a message by putting
/// them back in its JSON). The second layout's tokens name them `c`, `m`
/// and `s`.
#[derive(Serialize, Deserialize)]
struct Parts {
    #[serde(rename = "content", alias = "c")]
    c: Vec<ContentBlock>,
    #[serde(
        rename = "metadata",
        alias = "m",
        default,
        skip_serializing_if = "Map::is_empty"
    )]
    m: Map<String, Value>,
    #[serde(
        rename = "structured",
        alias = "s",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    s: Option<Value>,
}

/// A JSON value sealed as a token string.
pub(crate) fn seal_value(key: &DataKey, owner: &str, value: &Value) -> Result<Value, StoreError> {
    Ok(Value::String(token::seal_json(key, owner, TOKEN, value)?))
}

/// The value a [`seal_value`] token holds; anything else is returned as is.
pub(crate) fn open_value(key: &DataKey, owner: &str, value: Value) -> Result<Value, StoreError> {
    match value {
        Value::String(s) if s.starts_with(TOKEN) => {
            token::open_string(key, owner, s, TOKEN)?.parse(owner)
        }
        other => Ok(other),
    }
}

/// Seals a message's content, metadata and structured answer.
fn seal_message(key: &DataKey, owner: &str, m: &mut Message) -> Result<(), StoreError> {
    let preview = (m.role == Role::User)
        .then(|| m.text_content())
        .filter(|t| !t.is_empty());
    let parts = Parts {
        c: std::mem::take(&mut m.content),
        m: std::mem::take(&mut m.metadata),
        s: m.structured.take(),
    };
    let sealed = token::seal_json(key, owner, TOKEN, &parts)?;
    if let Some(text) = preview {
        let mut cut = text.len().min(PREVIEW_BYTES);
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        let mut p = token::seal_bytes(key, owner, PREVIEW, &text.as_bytes()[..cut])?;
        p.push(PREVIEW_END);
        m.content.push(ContentBlock::Text { text: p });
    }
    m.metadata.insert(MESSAGE_KEY.into(), Value::String(sealed));
    Ok(())
}

/// Whether `m` is sealed in the second layout (its token in its metadata).
fn sealed_in_metadata(m: &Message) -> bool {
    m.metadata.len() == 1
        && matches!(m.metadata.get(MESSAGE_KEY), Some(Value::String(s)) if s.starts_with(TOKEN))
}

/// Whether `m` is sealed in the first layout (its token as its last text
/// block).
fn sealed_in_content(m: &Message) -> bool {
    matches!(m.content.last(), Some(ContentBlock::Text { text }) if text.starts_with(TOKEN))
}

fn open_message(key: &DataKey, owner: &str, m: &mut Message) -> Result<(), StoreError> {
    let sealed = if sealed_in_metadata(m) {
        match m.metadata.remove(MESSAGE_KEY) {
            Some(Value::String(s)) => s,
            _ => return Err(undecryptable(owner)),
        }
    } else if sealed_in_content(m) {
        match m.content.pop() {
            Some(ContentBlock::Text { text }) => text,
            _ => return Err(undecryptable(owner)),
        }
    } else {
        return Ok(());
    };
    let parts: Parts = token::open_string(key, owner, sealed, TOKEN)?.parse(owner)?;
    m.content = parts.c;
    m.metadata = parts.m;
    m.structured = parts.s;
    Ok(())
}

/// Seals the user-provided content of `kind` (see the module docs).
pub(crate) fn seal_kind(
    key: &DataKey,
    owner: &str,
    kind: &mut RecordKind,
) -> Result<(), StoreError> {
    match kind {
        RecordKind::Message(m) => seal_message(key, owner, m)?,
        RecordKind::State(delta) => {
            for v in delta.set.values_mut() {
                *v = seal_value(key, owner, v)?;
            }
        }
        RecordKind::MailSent(mail) => mail.item = seal_value(key, owner, &mail.item)?,
        RecordKind::Compaction { summary, .. } => {
            *summary = token::seal_bytes(key, owner, TOKEN, summary.as_bytes())?;
        }
        _ => {}
    }
    Ok(())
}

/// Opens what [`seal_kind`] sealed (records written in clear pass through).
pub(crate) fn open_kind(
    key: &DataKey,
    owner: &str,
    kind: &mut RecordKind,
) -> Result<(), StoreError> {
    match kind {
        RecordKind::Message(m) => open_message(key, owner, m)?,
        RecordKind::State(delta) => {
            for v in delta.set.values_mut() {
                *v = open_value(key, owner, std::mem::take(v))?;
            }
        }
        RecordKind::MailSent(mail) => {
            mail.item = open_value(key, owner, std::mem::take(&mut mail.item))?;
        }
        RecordKind::Compaction { summary, .. } if summary.starts_with(TOKEN) => {
            let opened = token::open_string(key, owner, std::mem::take(summary), TOKEN)?;
            *summary = opened
                .text()
                .ok_or_else(|| undecryptable(owner))?
                .to_string();
        }
        _ => {}
    }
    Ok(())
}

/// Whether `record` holds sealed content.
pub(crate) fn is_sealed(record: &Record) -> bool {
    let sealed = |v: &Value| matches!(v, Value::String(s) if s.starts_with(TOKEN));
    match &record.kind {
        RecordKind::Message(m) => sealed_in_metadata(m) || sealed_in_content(m),
        RecordKind::State(delta) => delta.set.values().any(sealed),
        RecordKind::MailSent(mail) => sealed(&mail.item),
        RecordKind::Compaction { summary, .. } => summary.starts_with(TOKEN),
        _ => false,
    }
}

/// A kernel event sealed as `{"sealed": token}`.
pub(crate) fn seal_event(key: &DataKey, owner: &str, event: &Value) -> Result<Value, StoreError> {
    let mut out = Map::new();
    out.insert(EVENT_KEY.into(), seal_value(key, owner, event)?);
    Ok(Value::Object(out))
}

/// The token of a sealed kernel event.
pub(crate) fn event_token(event: &Value) -> Option<&Value> {
    match event {
        Value::Object(map) if map.len() == 1 => map
            .get(EVENT_KEY)
            .filter(|v| matches!(v, Value::String(s) if s.starts_with(TOKEN))),
        _ => None,
    }
}

/// The fields of a live event's data that stay clear when it is sealed:
/// ids that records keep clear too, and what a channel with a payload
/// limit keeps of a truncated event.
const LIVE_CLEAR: [&str; 3] = ["session_id", "turn", "branch"];

/// A live event's data sealed: `{"sealed": token}` plus the fields of
/// [`LIVE_CLEAR`] it has.
pub(crate) fn seal_live_data(
    key: &DataKey,
    owner: &str,
    data: &Value,
) -> Result<Value, StoreError> {
    let mut out = Map::new();
    for k in LIVE_CLEAR {
        if let Some(v) = data.get(k) {
            out.insert(k.into(), v.clone());
        }
    }
    out.insert(EVENT_KEY.into(), seal_value(key, owner, data)?);
    Ok(Value::Object(out))
}

/// The data a [`seal_live_data`] value holds; None when it holds no token
/// (a clear event, or one a channel truncated).
pub(crate) fn open_live_data(
    key: &DataKey,
    owner: &str,
    data: &mut Value,
) -> Option<Result<Value, StoreError>> {
    let token = data.as_object_mut()?.remove(EVENT_KEY)?;
    Some(open_value(key, owner, token))
}

/// The plaintext preview a sealed `last_prompt` starts with, if it is one.
pub(crate) fn open_preview(key: &DataKey, owner: &str, last_prompt: &str) -> Option<String> {
    let body = last_prompt.strip_prefix(PREVIEW)?;
    let body = &body[..body.find(PREVIEW_END)?];
    let opened = token::open_owned(key, owner, body.as_bytes().to_vec(), 0).ok()?;
    opened.text().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encryption::keys::MasterKey;
    use weft_core::BranchId;
    use weft_core::SessionId;
    use weft_core::record::StateDelta;
    use weft_core::session::{LAST_PROMPT_CHARS, Project, SessionMeta};

    use crate::encryption::keys::test_key as key;

    #[test]
    fn kinds_round_trip_and_hide_their_content() {
        let key = key();
        let mut m = Message::text(
            BranchId::main(),
            Role::User,
            "the word zanzibar ".repeat(30),
        );
        m.structured = Some(serde_json::json!({"zanzibar": 1}));
        m.metadata
            .insert("note".into(), serde_json::json!("zanzibar"));
        let mut delta = StateDelta::default();
        delta
            .set
            .insert("k".into(), serde_json::json!({"v": "zanzibar"}));
        let kinds = vec![
            RecordKind::message(m),
            RecordKind::message(Message::text(BranchId::main(), Role::Assistant, "zanzibar")),
            RecordKind::State(delta),
            RecordKind::Compaction {
                branch: BranchId::main(),
                upto_seq: 2,
                summary: "zanzibar".into(),
            },
        ];
        for kind in kinds {
            let mut sealed = kind.clone();
            seal_kind(&key, "s1", &mut sealed).expect("seal");
            let text = serde_json::to_string(&sealed).expect("json");
            assert!(!text.contains("zanzibar"), "{text}");
            assert!(is_sealed(&Record::new(1, sealed.clone())));
            open_kind(&key, "s1", &mut sealed).expect("open");
            assert_eq!(sealed, kind);
        }
    }

    #[test]
    fn a_user_message_leaves_a_sealed_preview_as_its_last_prompt() {
        let key = key();
        let text = "é".repeat(300);
        let mut kind = RecordKind::message(Message::text(BranchId::main(), Role::User, &text));
        seal_kind(&key, "s1", &mut kind).expect("seal");
        let mut meta = SessionMeta::new(
            SessionId::parse("s1").expect("id"),
            Project::from_dir(std::path::Path::new("/tmp")),
            "base",
        );
        meta.apply(&Record::new(2, kind));
        let last = meta.last_prompt.expect("a last prompt");
        assert!(last.chars().count() <= LAST_PROMPT_CHARS);
        let preview = open_preview(&key, "s1", &last).expect("preview opens");
        assert!(
            text.starts_with(&preview) && preview.len() >= 100,
            "{preview}"
        );
    }

    #[test]
    fn live_event_data_keeps_its_ids_clear() {
        let key = key();
        let data = serde_json::json!({"session_id": "s1", "turn": "t1", "delta": "zanzibar"});
        let mut sealed = seal_live_data(&key, "s1", &data).expect("seal");
        let text = sealed.to_string();
        assert!(!text.contains("zanzibar") && text.contains("t1"), "{text}");
        let opened = open_live_data(&key, "s1", &mut sealed)
            .expect("a token")
            .expect("opens");
        assert_eq!(opened, data);
        let mut clear = serde_json::json!({"truncated": true});
        assert!(open_live_data(&key, "s1", &mut clear).is_none());
    }

    /// Records sealed by the first layout (token as the last text block,
    /// the `base64` crate's engine), written by that code and kept in
    /// `testdata/v1.json`, still open.
    #[test]
    fn the_first_layout_still_opens() {
        let fixture: Value =
            serde_json::from_str(include_str!("testdata/v1.json")).expect("fixture");
        let master = MasterKey::from_base64(fixture["master"].as_str().expect("master"))
            .expect("master key");
        let wrapped = serde_json::from_value(fixture["data_key"].clone()).expect("wrapped");
        let key = master
            .unwrap("session v1fixture", &wrapped)
            .expect("data key");
        let sealed: Vec<RecordKind> =
            serde_json::from_value(fixture["sealed"].clone()).expect("sealed kinds");
        let clear: Vec<RecordKind> =
            serde_json::from_value(fixture["clear"].clone()).expect("clear kinds");
        for (mut s, c) in sealed.into_iter().zip(clear) {
            assert!(is_sealed(&Record::new(1, s.clone())));
            open_kind(&key, "v1fixture", &mut s).expect("opens");
            assert_eq!(s, c);
        }
        let event = event_token(&fixture["event"]).expect("an event token");
        let opened = open_value(&key, "v1fixture", event.clone()).expect("event opens");
        assert_eq!(opened["text"], "quokkaxylophone event");
    }
}
