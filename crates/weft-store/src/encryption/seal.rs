//! Which parts of a record are sealed, and how: the user-provided content
//! of a record becomes base64 tokens inside the same record shape, so every
//! backend stores, orders and lists it unchanged.
//!
//! - a message: its content blocks, metadata and structured answer become
//!   one token in a text block (a user message with text also gets a short
//!   sealed preview first, so the backends' `last_prompt` holds a sealed
//!   preview instead of the prompt);
//! - a state change: each value set (keys stay clear);
//! - mail: its item;
//! - a compaction: its summary;
//! - a kernel event: the whole event.
//!
//! This module knows records and tokens; where data keys come from is the
//! store wrapper's business.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use weft_core::message::{ContentBlock, Message, Role};
use weft_core::record::{Record, RecordKind};
use weft_core::store::StoreError;

use super::keys::DataKey;

/// The prefix of a sealed value.
pub(crate) const TOKEN: &str = "wenc1:";
/// The prefix of a user message's sealed preview; it ends at [`PREVIEW_END`].
pub(crate) const PREVIEW: &str = "wenc1p:";
const PREVIEW_END: char = '~';
/// The most plaintext bytes a preview holds: its token stays within the
/// 200 characters a session's `last_prompt` keeps.
const PREVIEW_BYTES: usize = 116;
/// The key of a sealed kernel event.
const EVENT_KEY: &str = "sealed";

/// A message's sealed parts.
#[derive(Serialize, Deserialize)]
struct Parts {
    c: Vec<ContentBlock>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    m: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    s: Option<Value>,
}

fn undecryptable(owner: &str) -> StoreError {
    StoreError::Corrupt {
        location: format!("session {owner}"),
        detail: "an encrypted value does not authenticate under its data key (damaged data)".into(),
    }
}

/// `plain` sealed as a token with `prefix`.
fn token(key: &DataKey, owner: &str, prefix: &str, plain: &[u8]) -> Result<String, StoreError> {
    let sealed = key.seal(owner, plain)?;
    let mut out = String::with_capacity(prefix.len() + sealed.len() * 4 / 3 + 4);
    out.push_str(prefix);
    B64.encode_string(&sealed, &mut out);
    Ok(out)
}

/// The plaintext of a token's body (after its prefix).
fn open_body(key: &DataKey, owner: &str, body: &str) -> Result<Vec<u8>, StoreError> {
    let sealed = B64.decode(body).map_err(|_| undecryptable(owner))?;
    key.open(owner, &sealed).ok_or_else(|| undecryptable(owner))
}

/// A JSON value sealed as a token string.
pub(crate) fn seal_value(key: &DataKey, owner: &str, value: &Value) -> Result<Value, StoreError> {
    let plain = serde_json::to_vec(value).map_err(|e| encode_error(owner, &e))?;
    Ok(Value::String(token(key, owner, TOKEN, &plain)?))
}

/// The value a [`seal_value`] token holds; anything else is returned as is.
pub(crate) fn open_value(key: &DataKey, owner: &str, value: Value) -> Result<Value, StoreError> {
    match &value {
        Value::String(s) if s.starts_with(TOKEN) => {
            let plain = open_body(key, owner, &s[TOKEN.len()..])?;
            serde_json::from_slice(&plain).map_err(|_| undecryptable(owner))
        }
        _ => Ok(value),
    }
}

fn encode_error(owner: &str, e: &serde_json::Error) -> StoreError {
    StoreError::Backend {
        backend: "encryption",
        message: format!("cannot encode a value of session {owner}: {e}"),
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
    let plain = serde_json::to_vec(&parts).map_err(|e| encode_error(owner, &e))?;
    if let Some(text) = preview {
        let mut cut = text.len().min(PREVIEW_BYTES);
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        let mut p = token(key, owner, PREVIEW, &text.as_bytes()[..cut])?;
        p.push(PREVIEW_END);
        m.content.push(ContentBlock::Text { text: p });
    }
    m.content.push(ContentBlock::Text {
        text: token(key, owner, TOKEN, &plain)?,
    });
    Ok(())
}

/// The sealed token of a message, if it is sealed.
fn message_token(m: &Message) -> Option<&str> {
    match m.content.last() {
        Some(ContentBlock::Text { text }) => text.strip_prefix(TOKEN),
        _ => None,
    }
}

fn open_message(key: &DataKey, owner: &str, m: &mut Message) -> Result<(), StoreError> {
    let Some(body) = message_token(m) else {
        return Ok(());
    };
    let plain = open_body(key, owner, body)?;
    let parts: Parts = serde_json::from_slice(&plain).map_err(|_| undecryptable(owner))?;
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
            *summary = token(key, owner, TOKEN, summary.as_bytes())?;
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
        RecordKind::Compaction { summary, .. } => {
            if let Some(body) = summary.strip_prefix(TOKEN) {
                let plain = open_body(key, owner, body)?;
                *summary = String::from_utf8(plain).map_err(|_| undecryptable(owner))?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Whether `record` holds sealed content.
pub(crate) fn is_sealed(record: &Record) -> bool {
    let sealed = |v: &Value| matches!(v, Value::String(s) if s.starts_with(TOKEN));
    match &record.kind {
        RecordKind::Message(m) => message_token(m).is_some(),
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

/// The plaintext preview a sealed `last_prompt` starts with, if it is one.
pub(crate) fn open_preview(key: &DataKey, owner: &str, last_prompt: &str) -> Option<String> {
    let body = last_prompt.strip_prefix(PREVIEW)?;
    let body = &body[..body.find(PREVIEW_END)?];
    String::from_utf8(open_body(key, owner, body).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encryption::keys::MasterKey;
    use weft_core::BranchId;
    use weft_core::SessionId;
    use weft_core::record::StateDelta;
    use weft_core::session::{LAST_PROMPT_CHARS, Project, SessionMeta};

    fn key() -> DataKey {
        let master =
            MasterKey::from_base64(&MasterKey::generate_base64().expect("gen")).expect("key");
        master.new_data_key("s1").expect("dk").0
    }

    #[test]
    fn kinds_round_trip_and_hide_their_content() {
        let key = key();
        let mut m = Message::text(
            BranchId::main(),
            Role::User,
            "the word zanzibar ".repeat(30),
        );
        m.structured = Some(serde_json::json!({"zanzibar": 1}));
        let mut delta = StateDelta::default();
        delta
            .set
            .insert("k".into(), serde_json::json!({"v": "zanzibar"}));
        let kinds = vec![
            RecordKind::message(m),
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
}
