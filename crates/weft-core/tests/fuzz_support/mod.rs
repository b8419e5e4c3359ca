//! Shared pieces of the property-based fuzz targets (`tests/fuzz_*.rs` here
//! and in weft-store, which includes this file by path): the case budget,
//! the failure-persistence setting, strategies for valid session-log
//! records, and mutations of JSON documents and bytes.
//!
//! Only `proptest`, `serde_json`, `chrono`, `tempfile` and `weft_core` are
//! used, so that every crate whose tests include this file has them.

#![allow(dead_code)]

use chrono::{DateTime, Utc};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use serde_json::{Map, Value, json};
use weft_core::message::{ContentBlock, ImageSource, Message, Role, Usage};
use weft_core::record::{MetaPatch, Record, RecordKind, StateDelta, StatusChange};
use weft_core::session::{Branch, Mail, MailCategory, Project, SessionMeta, SessionStatus};
use weft_core::{BranchId, MessageId, SessionId};

/// A proptest configuration running `default_cases` cases, or
/// `PROPTEST_CASES` when that is set (the longer runs documented in
/// TESTING.md). Failures found are saved to
/// `proptest-regressions/<target>.txt` beside the crate's `Cargo.toml`
/// (tests run with the crate directory as working directory) and replayed
/// first on every later run; commit those files.
pub fn config(target: &'static str, default_cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = default_cases;
    }
    config.failure_persistence = Some(Box::new(FileFailurePersistence::Direct(target)));
    config
}

/// A temporary directory for one case, in memory (`/dev/shm`) when the
/// machine has it: the fs store fsyncs every append, which on a disk would
/// make the case budget a matter of disk latency. The properties checked do
/// not depend on durability.
pub fn scratch_dir() -> std::io::Result<tempfile::TempDir> {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(dir) = tempfile::Builder::new().prefix("weft-fuzz").tempdir_in(shm)
    {
        return Ok(dir);
    }
    tempfile::tempdir()
}

/// Any text, with a bias towards the awkward: empty, control characters,
/// quotes and backslashes, non-BMP characters, long runs.
pub fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => any::<String>(),
        1 => Just(String::new()),
        1 => "[\"\\\\\\u{0}\\u{1f}\\u{7f}\\u{2028}\\u{feff}]{1,8}",
        1 => "[\\u{10000}-\\u{10ffff}é中🦀]{1,8}",
        1 => (1usize..3000).prop_map(|n| "x".repeat(n)),
    ]
}

/// A valid id (`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`).
pub fn id_text() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][A-Za-z0-9._-]{0,24}"
}

/// A branch id: mostly `main` or a few names, so folds see records about
/// branches that exist.
pub fn branch_id() -> impl Strategy<Value = BranchId> {
    prop_oneof![
        3 => Just(BranchId::main()),
        2 => prop::sample::select(vec!["side", "b2", "x.y"])
            .prop_map(|s| BranchId::parse(s).expect("a valid branch id")),
        1 => id_text().prop_map(|s| BranchId::parse(s).expect("a valid branch id")),
    ]
}

/// A session id.
pub fn session_id() -> impl Strategy<Value = SessionId> {
    id_text().prop_map(|s| SessionId::parse(s).expect("a valid session id"))
}

/// A timestamp anywhere from 1970 to 2100, to the nanosecond.
pub fn timestamp() -> impl Strategy<Value = DateTime<Utc>> {
    (0i64..4_102_444_800, 0u32..1_000_000_000)
        .prop_map(|(s, n)| DateTime::from_timestamp(s, n).expect("a timestamp in range"))
}

/// A count, sometimes huge (sums of these overflow `u64`).
pub fn count() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => 0u64..10_000,
        1 => Just(u64::MAX),
        1 => any::<u64>(),
    ]
}

/// Token usage with possibly huge counts.
pub fn usage() -> impl Strategy<Value = Usage> {
    (count(), count(), count(), count()).prop_map(|(i, o, r, c)| Usage {
        input_tokens: i,
        output_tokens: o,
        cache_read_tokens: r,
        cache_creation_tokens: c,
    })
}

/// A JSON value that survives a round trip through JSON text unchanged.
/// Floats are left out: serde_json parses them with best-effort precision
/// (its `float_roundtrip` feature is off), so a float may come back one ULP
/// away. The value nests up to 3 levels.
pub fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((text(), inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// A JSON object of up to 3 keys.
pub fn json_map() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::vec((text(), json_value()), 0..3).prop_map(|kv| kv.into_iter().collect())
}

/// A session status.
pub fn status() -> impl Strategy<Value = SessionStatus> {
    prop::sample::select(vec![
        SessionStatus::Created,
        SessionStatus::Active,
        SessionStatus::Completed,
        SessionStatus::Failed,
        SessionStatus::Terminated,
    ])
}

/// A content block of any kind.
pub fn block() -> impl Strategy<Value = ContentBlock> {
    prop_oneof![
        3 => text().prop_map(|text| ContentBlock::Text { text }),
        1 => (text(), prop::option::of(text()))
            .prop_map(|(thinking, signature)| ContentBlock::Thinking { thinking, signature }),
        1 => (text(), text(), json_value())
            .prop_map(|(id, name, arguments)| ContentBlock::ToolCall { id, name, arguments }),
        1 => (text(), text(), any::<bool>()).prop_map(|(call_id, output, is_error)| {
            ContentBlock::ToolResult { call_id, output, is_error }
        }),
        1 => (text(), text()).prop_map(|(media_type, data)| ContentBlock::Image {
            source: ImageSource::Base64 { media_type, data },
        }),
        1 => text().prop_map(|url| ContentBlock::Image { source: ImageSource::Url { url } }),
    ]
}

/// A message of any role on `branch_id()`.
pub fn message() -> impl Strategy<Value = Message> {
    (
        (
            branch_id(),
            prop::sample::select(vec![Role::System, Role::User, Role::Assistant, Role::Tool]),
            prop::collection::vec(block(), 0..4),
            id_text(),
            timestamp(),
        ),
        (
            prop::option::of(usage()),
            prop::option::of(text()),
            prop::option::of(text()),
            json_map(),
        ),
    )
        .prop_map(
            |((branch, role, content, id, ts), (usage, model, sender, metadata))| {
                let mut m = Message::new(branch, role, content);
                m.id = MessageId::parse(id).expect("a valid message id");
                m.timestamp = ts;
                m.usage = usage;
                m.model = model;
                m.sender = sender;
                m.metadata = metadata;
                m
            },
        )
}

/// Session metadata as `session_created` carries it.
pub fn meta() -> impl Strategy<Value = SessionMeta> {
    (
        (session_id(), text(), text(), text(), timestamp()),
        (
            prop::option::of(text()),
            prop::option::of(session_id()),
            status(),
            usage(),
            json_map(),
            (count(), count(), count()),
        ),
    )
        .prop_map(
            |(
                (id, dir, slug, profile, ts),
                (name, parent, status, usage, metadata, (messages, turns, last_seq)),
            )| {
                let mut m = SessionMeta::new(id, Project { dir, slug }, profile);
                m.created_at = ts;
                m.updated_at = ts;
                m.name = name;
                m.parent_id = parent;
                m.status = status;
                m.usage = usage;
                m.metadata = metadata;
                m.message_count = messages;
                m.turn_count = turns;
                m.last_seq = last_seq;
                m
            },
        )
}

/// A branch record's payload.
pub fn branch() -> impl Strategy<Value = Branch> {
    (
        branch_id(),
        text(),
        timestamp(),
        prop::collection::vec(text(), 0..3),
        prop::option::of(text()),
        prop::option::of(text()),
    )
        .prop_map(|(id, name, ts, tools, user, system_sender)| {
            let mut b = Branch::main(ts);
            b.id = id;
            b.name = name;
            b.tools = tools;
            b.user = user;
            b.system_sender = system_sender;
            b
        })
}

/// Any record kind but `session_created`, with seqs (rewind, compaction)
/// anywhere in `0..=u64::MAX`.
pub fn later_kind() -> impl Strategy<Value = RecordKind> {
    prop_oneof![
        6 => message().prop_map(RecordKind::message),
        2 => (any::<bool>(), prop::collection::vec(text(), 0..3), json_map())
            .prop_map(|(clear, delete, set)| RecordKind::State(StateDelta { clear, delete, set })),
        // `details: Some(null)` is written as `null` and read back as `None`
        // (serde's `Option<Value>`), so `null` is left out.
        2 => (
            status(),
            status(),
            prop::option::of(text()),
            prop::option::of(json_value().prop_filter("not null", |v| !v.is_null())),
        )
            .prop_map(|(from, to, error, details)| {
                RecordKind::Status(StatusChange { from, to, error, details })
            }),
        1 => (
            prop::option::of(text()),
            prop::option::of(text()),
            prop::option::of(text()),
            prop::option::of(json_map()),
        )
            .prop_map(|(name, description, model, metadata)| {
                RecordKind::Meta(MetaPatch { name, description, model, metadata })
            }),
        2 => branch().prop_map(RecordKind::BranchCreated),
        1 => (branch_id(), any::<bool>()).prop_map(|(branch, delete)| RecordKind::BranchRemoved { branch, delete }),
        1 => branch_id().prop_map(|branch| RecordKind::DefaultBranch { branch }),
        1 => (text(), branch_id(), prop::collection::vec(branch_id(), 0..3), json_value(), timestamp())
            .prop_map(|(id, from, to, item, sent_at)| {
                RecordKind::MailSent(Mail {
                    id,
                    from,
                    to,
                    broadcast: false,
                    category: MailCategory::Message,
                    item,
                    sent_at,
                })
            }),
        1 => (text(), branch_id())
            .prop_map(|(mail_id, recipient)| RecordKind::MailCollected { mail_id, recipient }),
        1 => (branch_id(), count()).prop_map(|(branch, to_seq)| RecordKind::Rewind { branch, to_seq }),
        1 => (branch_id(), count(), text()).prop_map(|(branch, upto_seq, summary)| {
            RecordKind::Compaction { branch, upto_seq, summary }
        }),
        2 => (usage(), prop::option::of(text()))
            .prop_map(|(usage, model)| RecordKind::Usage { usage, model }),
    ]
}

/// A whole valid log: `session_created` then up to `max` later records,
/// numbered from 1.
pub fn log(max: usize) -> impl Strategy<Value = Vec<Record>> {
    (
        meta(),
        prop::collection::vec(later_kind(), 0..max),
        timestamp(),
    )
        .prop_map(|(meta, kinds, ts)| {
            let mut kinds = kinds;
            kinds.insert(0, RecordKind::SessionCreated(Box::new(meta)));
            let mut records = Record::batch(0, kinds);
            for r in &mut records {
                r.ts = ts;
            }
            records
        })
}

/// One record of any kind with any seq and timestamp.
pub fn record() -> impl Strategy<Value = Record> {
    (
        any::<u64>(),
        timestamp(),
        prop_oneof![
            1 => meta().prop_map(|m| RecordKind::SessionCreated(Box::new(m))),
            6 => later_kind(),
        ],
    )
        .prop_map(|(seq, ts, kind)| {
            let mut r = Record::new(seq, kind);
            r.ts = ts;
            r
        })
}

/// A way to damage a JSON document.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// Remove the key of the `n`th object member.
    RemoveKey(usize),
    /// Replace the `n`th node with a value.
    Replace(usize, Value),
    /// Wrap the `n`th node in `depth` arrays.
    Nest(usize, usize),
}

/// A mutation, with a replacement biased to wrong types and extreme numbers.
pub fn mutation() -> impl Strategy<Value = Mutation> {
    let replacement = prop_oneof![
        Just(Value::Null),
        Just(json!(u64::MAX)),
        Just(json!(i64::MIN)),
        Just(json!(-1)),
        Just(json!(1e308)),
        Just(json!(0.5)),
        Just(json!(true)),
        Just(json!("")),
        Just(json!([])),
        Just(json!({})),
        Just(json!({"type": "message"})),
        Just(json!("../../etc/passwd")),
        Just(json!("main/../x")),
        text().prop_map(Value::String),
        json_value(),
    ];
    prop_oneof![
        2 => any::<usize>().prop_map(Mutation::RemoveKey),
        4 => (any::<usize>(), replacement).prop_map(|(n, v)| Mutation::Replace(n, v)),
        1 => (any::<usize>(), prop_oneof![1usize..20, 100usize..140, Just(5000usize)])
            .prop_map(|(n, d)| Mutation::Nest(n, d)),
    ]
}

fn count_nodes(v: &Value) -> usize {
    1 + match v {
        Value::Array(a) => a.iter().map(count_nodes).sum(),
        Value::Object(o) => o.values().map(count_nodes).sum(),
        _ => 0,
    }
}

fn count_members(v: &Value) -> usize {
    match v {
        Value::Array(a) => a.iter().map(count_members).sum(),
        Value::Object(o) => o.len() + o.values().map(count_members).sum::<usize>(),
        _ => 0,
    }
}

/// Visits nodes in pre-order; `f` gets each node and its pre-order index
/// and returns true to stop.
fn visit_mut(
    v: &mut Value,
    next: &mut usize,
    f: &mut dyn FnMut(&mut Value, usize) -> bool,
) -> bool {
    let me = *next;
    *next += 1;
    if f(v, me) {
        return true;
    }
    match v {
        Value::Array(a) => a.iter_mut().any(|c| visit_mut(c, next, f)),
        Value::Object(o) => o.values_mut().any(|c| visit_mut(c, next, f)),
        _ => false,
    }
}

/// Removes the `n`th object member (pre-order over objects, then keys).
fn remove_member(v: &mut Value, n: &mut usize) -> bool {
    match v {
        Value::Array(a) => a.iter_mut().any(|c| remove_member(c, n)),
        Value::Object(o) => {
            if *n < o.len() {
                let key = o.keys().nth(*n).cloned();
                if let Some(key) = key {
                    o.remove(&key);
                }
                return true;
            }
            *n -= o.len();
            o.values_mut().any(|c| remove_member(c, n))
        }
        _ => false,
    }
}

/// Applies `m` to `doc` as JSON text. Deep nesting is applied to the text
/// (serde_json's own `Value` would recurse on it), so the result may not be
/// valid JSON.
pub fn mutate(doc: &Value, m: &Mutation) -> String {
    let mut v = doc.clone();
    match m {
        Mutation::RemoveKey(n) => {
            let total = count_members(&v);
            if total > 0 {
                let mut n = n % total;
                remove_member(&mut v, &mut n);
            }
            v.to_string()
        }
        Mutation::Replace(n, with) => {
            let target = n % count_nodes(&v);
            visit_mut(&mut v, &mut 0, &mut |node, i| {
                if i == target {
                    *node = with.clone();
                    true
                } else {
                    false
                }
            });
            v.to_string()
        }
        Mutation::Nest(n, depth) => {
            let marker = "\u{0}nest-here\u{0}";
            let target = n % count_nodes(&v);
            let mut original = Value::Null;
            visit_mut(&mut v, &mut 0, &mut |node, i| {
                if i == target {
                    original = std::mem::replace(node, Value::String(marker.into()));
                    true
                } else {
                    false
                }
            });
            let nested = format!("{}{}{}", "[".repeat(*depth), original, "]".repeat(*depth));
            v.to_string()
                .replacen(&Value::String(marker.into()).to_string(), &nested, 1)
        }
    }
}

/// A way to damage bytes.
#[derive(Debug, Clone)]
pub enum ByteMutation {
    /// Keep the first `n` bytes.
    Truncate(usize),
    /// Overwrite the byte at `n`.
    Set(usize, u8),
    /// Insert bytes at `n` (invalid UTF-8 among them).
    Insert(usize, Vec<u8>),
}

/// A byte mutation biased to invalid UTF-8 and JSON structure characters.
pub fn byte_mutation() -> impl Strategy<Value = ByteMutation> {
    let byte = prop_oneof![
        Just(0xffu8),
        Just(0xc3),
        Just(0x80),
        Just(b'"'),
        Just(b'{'),
        Just(b'}'),
        Just(b'\\'),
        Just(b'\n'),
        Just(0),
        any::<u8>(),
    ];
    prop_oneof![
        any::<usize>().prop_map(ByteMutation::Truncate),
        (any::<usize>(), byte.clone()).prop_map(|(n, b)| ByteMutation::Set(n, b)),
        (any::<usize>(), prop::collection::vec(byte, 1..4))
            .prop_map(|(n, b)| ByteMutation::Insert(n, b)),
    ]
}

/// Applies a byte mutation.
pub fn mutate_bytes(bytes: &[u8], m: &ByteMutation) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let len = out.len();
    match m {
        ByteMutation::Truncate(n) => out.truncate(n % (len + 1)),
        ByteMutation::Set(n, b) => {
            if len > 0 {
                out[n % len] = *b;
            }
        }
        ByteMutation::Insert(n, b) => {
            let at = n % (len + 1);
            out.splice(at..at, b.iter().copied());
        }
    }
    out
}
