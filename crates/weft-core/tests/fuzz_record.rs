//! Fuzz target: the session-log record parser and the fold of records into
//! a [`SessionView`].
//!
//! Properties, over arbitrary bytes, valid records, and valid records
//! damaged structurally (fields removed, wrong types, huge numbers, deep
//! nesting) or byte-wise (truncated, invalid UTF-8):
//! - parsing never panics; a failure is a typed `serde_json::Error` with a
//!   message;
//! - a valid record survives serialise → parse unchanged (text, bytes and
//!   `Value`), and whatever parses re-serialises to something that parses
//!   to the same record;
//! - folding any sequence of records never panics, folding by reference
//!   and by value agree, and the metadata counts what it folded.
//!
//! Runs a small budget in `cargo test`; see TESTING.md for longer runs.

mod fuzz_support;

use fuzz_support::{byte_mutation, config, log, mutate, mutate_bytes, mutation, record};
use proptest::prelude::*;
use weft_core::record::{Record, RecordKind};
use weft_core::view::{SessionView, ViewError};

/// Parses one log line the ways the stores do (`&str` when it is UTF-8,
/// bytes otherwise).
fn parse(bytes: &[u8]) -> Result<Record, serde_json::Error> {
    match std::str::from_utf8(bytes) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(bytes),
    }
}

/// Checks what a parse produced: an error has a message; a record
/// re-serialises to text that parses back to it.
fn check_parsed(result: &Result<Record, serde_json::Error>) -> Result<(), TestCaseError> {
    match result {
        Ok(r) => {
            let again = serde_json::to_string(r).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let back: Record =
                serde_json::from_str(&again).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&back, r);
        }
        Err(e) => prop_assert!(!e.to_string().trim().is_empty()),
    }
    Ok(())
}

/// Folds `records` both ways and checks they agree.
fn check_fold(records: &[Record]) -> Result<(), TestCaseError> {
    let by_ref = SessionView::from_records(records);
    let by_value = SessionView::from_log(records.to_vec());
    prop_assert_eq!(&by_ref, &by_value);
    match (records.first().map(|r| &r.kind), by_ref) {
        (Some(RecordKind::SessionCreated(_)), Ok(view)) => {
            let last = records.last().map(|r| r.seq).unwrap_or_default();
            prop_assert_eq!(view.meta.last_seq, last);
            // The metadata counts the message records after the last
            // `session_created` (which resets it) from that record's count.
            let last_create = records
                .iter()
                .rposition(|r| matches!(r.kind, RecordKind::SessionCreated(_)))
                .unwrap_or_default();
            let created = match &records[last_create].kind {
                RecordKind::SessionCreated(m) => m.message_count,
                _ => 0,
            };
            let after = records[last_create..]
                .iter()
                .filter(|r| matches!(r.kind, RecordKind::Message(_)))
                .count();
            prop_assert_eq!(
                view.meta.message_count,
                created.saturating_add(after as u64)
            );
            let messages = records
                .iter()
                .filter(|r| matches!(r.kind, RecordKind::Message(_)))
                .count();
            // A view never shows more messages than the log holds.
            let shown: usize = view.branches.iter().map(|b| b.messages.len()).sum();
            prop_assert!(shown <= messages);
            for b in &view.branches {
                for m in &b.messages {
                    prop_assert_eq!(&m.message.branch, &b.branch.id);
                }
            }
        }
        (_, Err(e)) => prop_assert_eq!(e, ViewError::MissingCreate),
        (first, Ok(_)) => prop_assert!(
            false,
            "folded a log starting with {:?}",
            first.map(RecordKind::name)
        ),
    }
    Ok(())
}

proptest! {
    #![proptest_config(config("proptest-regressions/fuzz_record.txt", 256))]

    /// Arbitrary bytes are refused without a panic.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check_parsed(&parse(&bytes))?;
    }

    /// Arbitrary text shaped a little like a record is refused without a
    /// panic.
    #[test]
    fn record_shaped_text_never_panics(
        v in any::<u32>(),
        seq in any::<u64>(),
        kind in "[a-z_]{0,16}",
        data in fuzz_support::json_value(),
    ) {
        let line = serde_json::json!({
            "v": v, "seq": seq, "ts": "2026-01-01T00:00:00Z",
            "kind": {"type": kind, "data": data},
        })
        .to_string();
        check_parsed(&parse(line.as_bytes()))?;
    }

    /// Valid records survive serialise → parse unchanged.
    #[test]
    fn valid_records_round_trip(r in record()) {
        let text = serde_json::to_string(&r).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let back = parse(text.as_bytes()).map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
        prop_assert_eq!(&back, &r);
        let bytes = serde_json::to_vec(&r).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let back: Record = serde_json::from_slice(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&back, &r);
        let value = serde_json::to_value(&r).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let back: Record = serde_json::from_value(value).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&back, &r);
    }

    /// Damaged records parse or fail cleanly, and whatever parses can be
    /// folded after a valid log.
    #[test]
    fn mutated_records_never_panic(
        base in log(4),
        r in record(),
        m in mutation(),
        bytes in prop::option::of(byte_mutation()),
    ) {
        let doc = serde_json::to_value(&r).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let text = mutate(&doc, &m);
        let line = match &bytes {
            Some(b) => mutate_bytes(text.as_bytes(), b),
            None => text.into_bytes(),
        };
        let parsed = parse(&line);
        check_parsed(&parsed)?;
        if let Ok(record) = parsed {
            let mut records = base;
            records.push(record);
            check_fold(&records)?;
        }
    }

}

proptest! {
    // Whole logs cost more per case: fewer cases by default.
    #![proptest_config(config("proptest-regressions/fuzz_record.txt", 64))]

    /// Folding a valid log never panics and counts what it folds.
    #[test]
    fn fold_of_valid_logs(records in log(16)) {
        check_fold(&records)?;
    }

    /// Folding any sequence of records (any seqs, any order, `session_created`
    /// anywhere or nowhere) never panics.
    #[test]
    fn fold_of_any_records(records in prop::collection::vec(record(), 0..8)) {
        check_fold(&records)?;
    }
}

/// serde_json's recursion limit turns very deep nesting into an error
/// instead of a stack overflow.
#[test]
fn deep_nesting_is_an_error() {
    let depth = 100_000;
    let line = format!(
        r#"{{"v":1,"seq":2,"ts":"2026-01-01T00:00:00Z","kind":{{"type":"state","data":{{"set":{{"k":{}{}}}}}}}}}"#,
        "[".repeat(depth),
        "]".repeat(depth)
    );
    let err = parse(line.as_bytes()).expect_err("too deep");
    assert!(err.to_string().contains("recursion limit"), "{err}");
}

/// Regression (found by `fold_of_valid_logs`): token counts and message
/// counts near `u64::MAX` in a log overflowed `Usage::add` and
/// `SessionMeta::apply`, panicking the fold in debug builds (and wrapping
/// in release). They saturate now.
#[test]
fn huge_counts_saturate_in_the_fold() {
    use weft_core::message::{Message, Role, Usage};
    use weft_core::session::{Project, SessionMeta};
    use weft_core::{BranchId, SessionId};

    let huge = Usage {
        input_tokens: u64::MAX,
        output_tokens: u64::MAX,
        cache_read_tokens: u64::MAX,
        cache_creation_tokens: u64::MAX,
    };
    let mut meta = SessionMeta::new(
        SessionId::parse("s1").expect("id"),
        Project {
            dir: "/p".into(),
            slug: "-p".into(),
        },
        "base",
    );
    meta.message_count = u64::MAX;
    meta.turn_count = u64::MAX;
    meta.usage = huge;
    let mut m = Message::text(BranchId::main(), Role::User, "hi");
    m.usage = Some(huge);
    let records = Record::batch(
        0,
        [
            RecordKind::SessionCreated(Box::new(meta)),
            RecordKind::message(m),
            RecordKind::Usage {
                usage: huge,
                model: None,
            },
        ],
    );
    let view = SessionView::from_records(&records).expect("fold");
    assert_eq!(view.meta.usage, huge);
    assert_eq!(view.meta.usage.total(), u64::MAX);
    assert_eq!(view.meta.message_count, u64::MAX);
    assert_eq!(view.meta.turn_count, u64::MAX);
}
