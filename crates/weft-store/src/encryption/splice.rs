//! Opening a sealed message in its stored JSON: the plaintext of its token
//! is spliced in where the token and the sealed preview were, so a read
//! parses the record once, as if it had been stored in clear, instead of
//! parsing the sealed record and then the token's plaintext
//! (`seal::open_kind`). Measured on a 10k-message load this is the larger
//! part of what encryption cost: the token's text was scanned by the JSON
//! parser, copied, and its plaintext parsed a second time.
//!
//! [`RecordOpener`] offers it to the backends as the shortcut of its
//! [`MapRecord`] (`rewrite_json`). It relies on the shape the codec writes a
//! sealed message in (serde's field order, no whitespace) and on JSON
//! escaping every `"` inside a string, so the markers it looks for can only
//! be the message's own fields. Whatever it does not recognise exactly (an
//! older token layout, a hand-written line, a plaintext that mentions a
//! token) it leaves to the full route, which gives the same record.
//!
//! This module knows the JSON of a sealed message; which parts are sealed
//! is `seal`'s business.

use std::sync::LazyLock;

use memchr::memmem;
use weft_core::MapRecord;
use weft_core::record::Record;
use weft_core::store::StoreError;

use super::keys::DataKey;
use super::seal;
use super::token;

/// Where a message record's data starts.
const MESSAGE_DATA: &[u8] = br#""kind":{"type":"message","data":{"#;
/// A message's content array.
const CONTENT: &[u8] = br#""content":["#;
/// A sealed user message's one content block, up to its preview's body.
const PREVIEW_BLOCK: &[u8] = br#"{"type":"text","text":"wenc1p:"#;
/// A sealed message's metadata, up to its token.
const SEALED_METADATA: &[u8] = br#","metadata":{"wenc":""#;
/// What follows a sealed message's token: its closing quote, then the
/// metadata, the message data and the kind closed (only record-level keys
/// come after, such as a backend's own markers).
const SEALED_END: &[u8] = br#""}}}"#;
/// What a plaintext that the full route would treat differently contains
/// (a token of its own).
const ANY_TOKEN: &[u8] = b"wenc1";

/// A searcher for the plaintext's [`ANY_TOKEN`], built once (building one
/// costs more than a search of a record's length).
static FIND_ANY_TOKEN: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(ANY_TOKEN));

/// How many quotes from a line's end are looked at for its token's end
/// (the record-level keys after the kind hold a few).
const TRAILING_QUOTES: usize = 8;

/// What opens session `owner`'s records as a read decodes them:
/// [`seal::open_kind`] on each record, with [`open_message_json`] as the
/// shortcut for sealed messages.
pub(crate) struct RecordOpener {
    key: DataKey,
    owner: String,
}

impl RecordOpener {
    /// The opener of session `owner`'s records under its data key.
    pub(crate) fn new(key: DataKey, owner: String) -> Self {
        Self { key, owner }
    }
}

impl MapRecord for RecordOpener {
    fn map(&self, record: &mut Record) -> Result<(), StoreError> {
        seal::open_kind(&self.key, &self.owner, &mut record.kind)
    }

    fn rewrite_json(&self, json: &str, out: &mut Vec<u8>) -> bool {
        open_message_json(&self.key, &self.owner, json, out).is_some()
    }
}

/// Writes into `out` (emptied first) the JSON of record `json` with its
/// sealed message opened in place: the sealed content (nothing, or the
/// preview block) dropped and the `"metadata":{"wenc":…}` holding the token
/// replaced by the fields the token seals
/// (`"content":…,"metadata":…,"structured":…`). `None` when `json` is not
/// a sealed message in the current layout, when the token does not open,
/// or when the full route could read it differently (`out` then holds
/// nothing of use).
///
/// The token is decoded straight into `out` and decrypted where it lies,
/// its plaintext written where the fields go: nothing is allocated once
/// `out` has grown, and the plaintext is not copied again.
pub(crate) fn open_message_json(
    key: &DataKey,
    owner: &str,
    json: &str,
    out: &mut Vec<u8>,
) -> Option<()> {
    let b = json.as_bytes();
    // The fields before a message's content (the record's v, seq, ts,
    // turn and branch, the message's id, branch and role: numbers, times,
    // ids and names) hold no bracket or brace, so the line's first `[`
    // opens the content, and the last `{` before it the message data.
    let body = memchr::memchr(b'[', b)? + 1;
    let content = body.checked_sub(CONTENT.len())?;
    let data = memchr::memrchr(b'{', &b[..content])? + 1;
    if &b[content..body] != CONTENT || !b[..data].ends_with(MESSAGE_DATA) {
        return None;
    }
    let content_end = if b.get(body) == Some(&b']') {
        body + 1
    } else {
        let preview = body + PREVIEW_BLOCK.len();
        if !b[body..].starts_with(PREVIEW_BLOCK) {
            return None;
        }
        // Base64 holds no quote: the first one ends the preview.
        let quote = preview + memchr::memchr(b'"', &b[preview..])?;
        if !b[..quote].ends_with(b"~") || !b[quote..].starts_with(br#""}]"#) {
            return None;
        }
        quote + 3
    };
    if b.get(content_end) != Some(&b',') {
        return None;
    }
    let after_content = content_end + 1;
    // The token ends the message's last field, its metadata (the
    // structured answer is sealed with the content), and so the kind;
    // only record-level keys follow.
    let token_end = memchr::memrchr_iter(b'"', &b[after_content..])
        .take(TRAILING_QUOTES)
        .map(|q| after_content + q)
        .find(|&q| b[q..].starts_with(SEALED_END))?;
    let token_start = memchr::memrchr(b'"', &b[..token_end])? + 1;
    let metadata = token_start.checked_sub(SEALED_METADATA.len())?;
    if metadata < after_content
        || &b[metadata..token_start] != SEALED_METADATA
        || !b[token_start..].starts_with(seal::TOKEN.as_bytes())
    {
        return None;
    }
    out.clear();
    out.extend_from_slice(&b[..content]);
    out.extend_from_slice(&b[after_content..metadata]);
    // The plaintext, `{"content":…}`, is written from here on: its `{`
    // where the comma before the fields goes, its `}` dropped.
    let fields_at = out.len();
    token::decode_append(&b[token_start + seal::TOKEN.len()..token_end], out)?;
    let plain_len = key.open_within(owner, &mut out[fields_at..])?;
    out.truncate(fields_at + plain_len);
    let fields = out.get(fields_at + 1..)?.strip_suffix(b"}")?;
    if out[fields_at] != b'{'
        || !fields.starts_with(br#""content":"#)
        || FIND_ANY_TOKEN.find(fields).is_some()
    {
        return None;
    }
    out[fields_at] = b',';
    out.pop();
    out.extend_from_slice(&b[token_end + 2..]);
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;
    use proptest::prelude::*;
    use serde_json::json;
    use weft_core::message::{ContentBlock, Message, Role};
    use weft_core::record::RecordKind;
    use weft_core::{BranchId, TurnId};

    use crate::encryption::keys::test_key as key;

    /// The stored line of `m` sealed, and the record the full route reads
    /// back from it.
    fn sealed_line(key: &DataKey, m: Message) -> (String, Record) {
        let mut record = Record::new(7, RecordKind::message(m));
        record.turn = Some(TurnId::new_v7());
        record.branch = Some(BranchId::main());
        let clear = record.clone();
        seal::seal_kind(key, "s1", &mut record.kind).expect("seal");
        (codec::encode_line(&record).expect("encode"), clear)
    }

    fn full_route(key: &DataKey, line: &str) -> Record {
        let mut r = codec::decode_str(line).expect("decode");
        seal::open_kind(key, "s1", &mut r.kind).expect("open");
        r
    }

    /// [`open_message_json`] into a buffer holding what a longer record
    /// left in it (a reader reuses one buffer).
    fn rewrite(key: &DataKey, owner: &str, line: &str) -> Option<String> {
        let mut out = br#"{"left":"by the record before"}"#.repeat(80);
        open_message_json(key, owner, line, &mut out)?;
        Some(String::from_utf8(out).expect("the rewrite is UTF-8"))
    }

    fn shortcut(key: &DataKey, line: &str) -> Option<Record> {
        let rewritten = rewrite(key, "s1", line)?;
        let mut r = codec::decode_str(&rewritten).expect("the rewrite parses");
        seal::open_kind(key, "s1", &mut r.kind).expect("open");
        Some(r)
    }

    #[test]
    fn the_markers_are_what_seal_writes() {
        let text = |b: &[u8]| String::from_utf8(b.to_vec()).expect("utf-8");
        assert!(text(PREVIEW_BLOCK).ends_with(&format!(r#""text":"{}"#, seal::PREVIEW)));
        assert_eq!(
            text(SEALED_METADATA),
            format!(r#","metadata":{{"{}":""#, seal::MESSAGE_KEY)
        );
        assert!(seal::TOKEN.starts_with(&text(ANY_TOKEN)));
        assert!(seal::PREVIEW.starts_with(&text(ANY_TOKEN)));
    }

    #[test]
    fn a_sealed_message_opens_in_its_json_as_the_full_route_opens_it() {
        let key = key();
        let mut rich = Message::new(
            BranchId::main(),
            Role::Assistant,
            vec![
                ContentBlock::text("quotes \" and \\ and \n and é"),
                ContentBlock::text("a second block"),
            ],
        );
        rich.metadata.insert("note".into(), json!({"k": [1, 2]}));
        rich.structured = Some(json!({"answer": 42}));
        rich.model = Some("m\"odel".into());
        rich.sender = Some("agent \"x\"".into());
        for m in [
            Message::text(BranchId::main(), Role::User, "hello there"),
            Message::text(BranchId::main(), Role::User, ""),
            Message::text(BranchId::main(), Role::Assistant, "an answer"),
            Message::new(BranchId::main(), Role::Assistant, Vec::new()),
            rich,
        ] {
            let (line, clear) = sealed_line(&key, m);
            assert_eq!(full_route(&key, &line), clear);
            assert_eq!(shortcut(&key, &line).as_ref(), Some(&clear), "{line}");
            // A key the fs log adds after a record's own (its batch marker).
            let marked = format!(r#"{},"more":true}}"#, &line[..line.len() - 1]);
            assert_eq!(shortcut(&key, &marked).as_ref(), Some(&clear), "{marked}");
        }
    }

    #[test]
    fn what_it_does_not_recognise_is_left_to_the_full_route() {
        let key = key();
        // A message whose plaintext mentions a token.
        let (line, clear) = sealed_line(
            &key,
            Message::text(BranchId::main(), Role::User, "see wenc1:abc"),
        );
        assert!(rewrite(&key, "s1", &line).is_none());
        assert_eq!(full_route(&key, &line), clear);
        // The second layout's plaintext (`{"c":…}`), written by earlier
        // versions.
        let mut m = Message::new(BranchId::main(), Role::Assistant, Vec::new());
        let parts = json!({"c": [{"type": "text", "text": "older"}]});
        m.metadata.insert(
            seal::MESSAGE_KEY.into(),
            json!(token::seal_json(&key, "s1", seal::TOKEN, &parts).expect("seal")),
        );
        let line = codec::encode_line(&Record::new(3, RecordKind::message(m))).expect("line");
        assert!(rewrite(&key, "s1", &line).is_none());
        let opened = full_route(&key, &line);
        let RecordKind::Message(m) = opened.kind else {
            panic!("a message")
        };
        assert_eq!(m.text_content(), "older");
        // A clear message, another key, damage, a record of another kind.
        let clear = codec::encode_line(&Record::new(
            3,
            RecordKind::message(Message::text(BranchId::main(), Role::User, "hi")),
        ))
        .expect("line");
        assert!(rewrite(&key, "s1", &clear).is_none());
        // A clear answer whose structured value ends like a sealed message.
        let mut m = Message::text(BranchId::main(), Role::Assistant, "clear");
        let (sealed, _) = sealed_line(&key, Message::text(BranchId::main(), Role::User, "y"));
        let token = &sealed[sealed.rfind("wenc1:").expect("token")..sealed.len() - 5];
        m.structured = Some(json!({"metadata": {"wenc": token}}));
        let line = codec::encode_line(&Record::new(3, RecordKind::message(m))).expect("line");
        assert!(line.ends_with(r#""}}}}}"#), "{line}");
        assert!(rewrite(&key, "s1", &line).is_none());
        let (line, _) = sealed_line(&key, Message::text(BranchId::main(), Role::User, "x"));
        assert!(rewrite(&key, "s2", &line).is_none());
        assert!(rewrite(&self::key(), "s1", &line).is_none());
        let damaged = line.replacen("wenc1:", "wenc1:AAAA", 2);
        assert!(rewrite(&key, "s1", &damaged).is_none());
        for cut in [10, line.len() / 2, line.rfind('"').expect("a quote")] {
            assert!(rewrite(&key, "s1", &line[..cut]).is_none());
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn any_message_opens_the_same_by_either_route(
            text in "\\PC{0,300}",
            user in any::<bool>(),
            note in proptest::option::of("\\PC{0,20}"),
        ) {
            let key = key();
            let mentions = text.contains("wenc1") || note.as_deref().is_some_and(|n| n.contains("wenc1"));
            let role = if user { Role::User } else { Role::Assistant };
            let mut m = Message::text(BranchId::main(), role, text);
            if let Some(n) = note {
                m.metadata.insert("note".into(), json!(n));
            }
            let (line, clear) = sealed_line(&key, m);
            prop_assert_eq!(&full_route(&key, &line), &clear);
            match shortcut(&key, &line) {
                Some(r) => prop_assert_eq!(&r, &clear),
                None => prop_assert!(mentions, "the shortcut declined {}", line),
            }
        }
    }
}
