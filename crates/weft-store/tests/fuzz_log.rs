//! Fuzz target: the fs store's session-log reader (`log.jsonl`), through
//! the public [`Store`] API (its line parser is private to the crate).
//!
//! A session is written through an [`FsStore`], its `log.jsonl` is damaged
//! on disk, and a fresh store reads it back (`get`, `read`, `tail`, `view`,
//! `list`, then another append). Properties:
//! - **corruption in the middle and a torn tail** (lines overwritten in
//!   place with garbage, invalid UTF-8, damaged records; a last line
//!   without its newline): every read returns exactly the records that
//!   were written minus the damaged ones, and the next append truncates the
//!   torn tail and lands after the head;
//! - **any damage** (lines inserted, bytes changed or added anywhere, the
//!   file cut anywhere): nothing panics, errors are typed with a message,
//!   and every record returned is one that was written or one that a line
//!   of the damaged file holds.
//!
//! Runs a small budget in `cargo test`; see TESTING.md for longer runs.

#[path = "../../weft-core/tests/fuzz_support/mod.rs"]
mod fuzz_support;

use std::fs;
use std::path::PathBuf;

use fuzz_support::{
    ByteMutation, Mutation, byte_mutation, config, later_kind, mutate, mutate_bytes, mutation,
    scratch_dir,
};
use proptest::prelude::*;
use weft_core::record::{Record, RecordKind};
use weft_core::store::{ListQuery, Store, StoreError};
use weft_core::{BranchId, Message, Role, SessionId};
use weft_store::FsStore;
use weft_store::conformance::new_meta;
use weft_store::fs::LOG_FILE;

fn fail(e: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(e.to_string())
}

fn runtime() -> Result<tokio::runtime::Runtime, TestCaseError> {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(fail)
}

/// A session written through the store: its records and log path.
struct Written {
    _dir: tempfile::TempDir,
    home: PathBuf,
    id: SessionId,
    log: PathBuf,
    records: Vec<Record>,
}

/// Writes a session of `batches` through a fresh store.
fn write_session(
    rt: &tokio::runtime::Runtime,
    batches: &[Vec<RecordKind>],
) -> Result<Written, TestCaseError> {
    let dir = scratch_dir().map_err(fail)?;
    let home = dir.path().join("home");
    let store = FsStore::open(&home).map_err(fail)?;
    let meta = new_meta("fuzz-log");
    let id = meta.id.clone();
    rt.block_on(async {
        store.create(meta, Vec::new()).await.map_err(fail)?;
        for kinds in batches {
            let head = store.get(&id).await.map_err(fail)?.last_seq;
            store
                .append(&id, head, Record::batch(head, kinds.clone()))
                .await
                .map_err(fail)?;
        }
        Ok::<_, TestCaseError>(())
    })?;
    let records = rt.block_on(store.read_all(&id)).map_err(fail)?;
    let log = store
        .session_dir(&id)
        .ok_or_else(|| fail("no session directory"))?
        .join(LOG_FILE);
    Ok(Written {
        _dir: dir,
        home,
        id,
        log,
        records,
    })
}

fn batches() -> impl Strategy<Value = Vec<Vec<RecordKind>>> {
    prop::collection::vec(prop::collection::vec(later_kind(), 1..4), 1..6)
}

fn parses(line: &[u8]) -> bool {
    serde_json::from_slice::<Record>(line).is_ok()
}

/// How to overwrite one line in place (same length, newline kept).
#[derive(Debug, Clone)]
enum InPlace {
    /// Every byte replaced by bytes from this pattern (no newline).
    Fill(Vec<u8>),
    /// Some bytes changed (newlines excluded).
    Bytes(Vec<ByteMutation>),
}

fn in_place() -> impl Strategy<Value = InPlace> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 1..8).prop_map(InPlace::Fill),
        prop::collection::vec(byte_mutation(), 1..4).prop_map(InPlace::Bytes),
    ]
}

/// Overwrites `line` keeping its length, so that it no longer parses.
fn overwrite(line: &[u8], how: &InPlace) -> Vec<u8> {
    let mut out = match how {
        InPlace::Fill(pattern) => pattern.iter().copied().cycle().take(line.len()).collect(),
        InPlace::Bytes(ms) => {
            let mut v = line.to_vec();
            for m in ms {
                let m = match m {
                    // In place: only `Set` keeps the length.
                    ByteMutation::Set(n, b) => ByteMutation::Set(*n, *b),
                    ByteMutation::Truncate(n) | ByteMutation::Insert(n, _) => {
                        ByteMutation::Set(*n, 0xff)
                    }
                };
                v = mutate_bytes(&v, &m);
            }
            v
        }
    };
    for b in &mut out {
        if *b == b'\n' {
            *b = b'#';
        }
    }
    if parses(&out) && !out.is_empty() {
        out[0] = b'#';
    }
    out
}

/// Damage anywhere.
#[derive(Debug, Clone)]
enum Damage {
    /// Insert a line before line `n`: damaged JSON of a record.
    InsertRecord(usize, Mutation),
    /// Insert raw bytes at byte `n`.
    Bytes(ByteMutation),
    /// Cut the file at byte `n`.
    Cut(usize),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        1 => (any::<usize>(), mutation()).prop_map(|(n, m)| Damage::InsertRecord(n, m)),
        3 => byte_mutation().prop_map(Damage::Bytes),
        1 => any::<usize>().prop_map(Damage::Cut),
    ]
}

fn apply(bytes: &[u8], records: &[Record], d: &Damage) -> Result<Vec<u8>, TestCaseError> {
    Ok(match d {
        Damage::InsertRecord(n, m) => {
            let r = &records[n % records.len()];
            let doc = serde_json::to_value(r).map_err(fail)?;
            let mut line = mutate(&doc, m).into_bytes();
            line.retain(|b| *b != b'\n');
            line.push(b'\n');
            let starts: Vec<usize> = std::iter::once(0)
                .chain(
                    bytes
                        .iter()
                        .enumerate()
                        .filter(|(_, b)| **b == b'\n')
                        .map(|(i, _)| i + 1),
                )
                .filter(|i| *i <= bytes.len())
                .collect();
            let at = starts[n % starts.len()];
            let mut out = bytes[..at].to_vec();
            out.extend(line);
            out.extend_from_slice(&bytes[at..]);
            out
        }
        Damage::Bytes(m) => mutate_bytes(bytes, m),
        Damage::Cut(n) => bytes[..n % (bytes.len() + 1)].to_vec(),
    })
}

/// Checks an operation's outcome: an error is typed (by construction) and
/// says something; records returned are among `allowed`.
fn check_records(
    what: &str,
    result: Result<Vec<Record>, StoreError>,
    allowed: &[Record],
) -> Result<(), TestCaseError> {
    match result {
        Ok(records) => {
            for r in &records {
                prop_assert!(
                    allowed.contains(r),
                    "{} returned a record nobody wrote: {:?}",
                    what,
                    r
                );
            }
        }
        Err(e) => prop_assert!(
            !e.to_string().trim().is_empty(),
            "{} failed without a message",
            what
        ),
    }
    Ok(())
}

proptest! {
    // Each case writes a session and reopens a store: few cases by default.
    #![proptest_config(config("proptest-regressions/fuzz_log.txt", 48))]

    /// Lines damaged in place in the middle of the log are skipped, a torn
    /// last line is ignored, and the next append lands after the head.
    #[test]
    fn corrupt_middle_lines_and_torn_tails_are_skipped(
        batches in batches(),
        corrupt in prop::collection::vec((any::<usize>(), in_place()), 0..3),
        torn in prop::option::of((any::<usize>(), prop::collection::vec(any::<u8>(), 0..16))),
        next in prop::collection::vec(later_kind(), 1..3),
    ) {
        let rt = runtime()?;
        let w = write_session(&rt, &batches)?;
        let bytes = fs::read(&w.log).map_err(fail)?;
        let mut lines: Vec<Vec<u8>> = bytes.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
        // `split` leaves an empty piece after the final newline.
        prop_assert_eq!(lines.pop(), Some(Vec::new()));
        prop_assert_eq!(lines.len(), w.records.len());
        // Overwrite lines in place, never the first (`session_created`: a
        // log without it cannot be folded) nor the last (the head).
        let mut damaged = std::collections::BTreeSet::new();
        if lines.len() > 2 {
            for (n, how) in &corrupt {
                let i = 1 + n % (lines.len() - 2);
                lines[i] = overwrite(&lines[i], how);
                damaged.insert(i);
            }
        }
        let mut file = Vec::new();
        for l in &lines {
            file.extend_from_slice(l);
            file.push(b'\n');
        }
        // A torn last write: part of a record, or junk, without a newline.
        if let Some((n, junk)) = &torn {
            let next_line = serde_json::to_vec(&w.records[0]).map_err(fail)?;
            let mut tail = next_line[..1 + n % next_line.len()].to_vec();
            tail.extend(junk.iter().filter(|b| **b != b'\n'));
            file.extend(tail);
        }
        fs::write(&w.log, &file).map_err(fail)?;

        let want: Vec<Record> = w
            .records
            .iter()
            .enumerate()
            .filter(|(i, _)| !damaged.contains(i))
            .map(|(_, r)| r.clone())
            .collect();
        let last = w.records.last().map(|r| r.seq).unwrap_or_default();
        let store = FsStore::open(&w.home).map_err(fail)?;
        rt.block_on(async {
            prop_assert_eq!(store.get(&w.id).await.map_err(fail)?.last_seq, last);
            prop_assert_eq!(&store.read_all(&w.id).await.map_err(fail)?, &want);
            for from in [2, last / 2 + 1, last] {
                let got = store.read(&w.id, from, None).await.map_err(fail)?;
                let expect: Vec<Record> = want.iter().filter(|r| r.seq >= from).cloned().collect();
                prop_assert_eq!(got, expect, "read from {}", from);
            }
            for n in [1usize, 3, want.len()] {
                let got = store.tail(&w.id, n).await.map_err(fail)?;
                prop_assert_eq!(&got[..], &want[want.len().saturating_sub(n)..], "tail {}", n);
            }
            store.view(&w.id).await.map_err(fail)?;
            let page = store.list(&ListQuery::default()).await.map_err(fail)?;
            prop_assert_eq!(page.sessions.len(), 1);
            // The next append truncates the torn tail and follows the head.
            let added = Record::batch(last, next.clone());
            store.append(&w.id, last, added.clone()).await.map_err(fail)?;
            let mut want = want.clone();
            want.extend(added);
            prop_assert_eq!(&store.read_all(&w.id).await.map_err(fail)?, &want);
            Ok(())
        })?;
    }

}

proptest! {
    // Large logs: fewer cases by default.
    #![proptest_config(config("proptest-regressions/fuzz_log.txt", 16))]

    /// In a log large enough for `read(from_seq)` to binary-search byte
    /// offsets, corrupt lines whose `seq` prefix still reads as a number
    /// (any number) are skipped, and reads from any seq are exact.
    #[test]
    fn reads_of_large_logs_skip_corrupt_lines(
        sizes in prop::collection::vec(1500usize..2000, 60..80),
        corrupt in prop::collection::vec((any::<usize>(), "[0-9]{1,3}"), 1..40),
        froms in prop::collection::vec(any::<u64>(), 3),
    ) {
        let rt = runtime()?;
        // One batch: quicker to write than one append per record.
        let batches = vec![
            sizes
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    RecordKind::message(Message::text(
                        BranchId::main(),
                        Role::User,
                        format!("{i} {}", "x".repeat(*n)),
                    ))
                })
                .collect::<Vec<_>>(),
        ];
        let w = write_session(&rt, &batches)?;
        let bytes = fs::read(&w.log).map_err(fail)?;
        prop_assert!(bytes.len() > 96 * 1024, "the log is too small to be searched");
        let mut lines: Vec<Vec<u8>> = bytes.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
        prop_assert_eq!(lines.pop(), Some(Vec::new()));
        let mut damaged = std::collections::BTreeSet::new();
        for (n, digits) in &corrupt {
            // Not the first or last line; the seq prefix is rewritten to
            // `digits` and the record's closing brace broken.
            let i = 1 + n % (lines.len() - 2);
            let line = &lines[i];
            let prefix = b"{\"v\":1,\"seq\":";
            prop_assert!(line.starts_with(prefix));
            let rest = &line[prefix.len()..];
            let old = rest.iter().take_while(|b| b.is_ascii_digit()).count();
            let mut new = prefix.to_vec();
            new.extend_from_slice(digits.as_bytes());
            new.extend_from_slice(&rest[old..]);
            if let Some(last) = new.last_mut() {
                *last = b'#';
            }
            prop_assert!(!parses(&new));
            lines[i] = new;
            damaged.insert(i);
        }
        let mut file = Vec::new();
        for l in &lines {
            file.extend_from_slice(l);
            file.push(b'\n');
        }
        fs::write(&w.log, &file).map_err(fail)?;
        let want: Vec<Record> = w
            .records
            .iter()
            .enumerate()
            .filter(|(i, _)| !damaged.contains(i))
            .map(|(_, r)| r.clone())
            .collect();
        let last = w.records.len() as u64;
        let store = FsStore::open(&w.home).map_err(fail)?;
        rt.block_on(async {
            prop_assert_eq!(&store.read_all(&w.id).await.map_err(fail)?, &want);
            for from in froms.iter().map(|f| 1 + f % (last + 1)) {
                let got = store.read(&w.id, from, Some(5)).await.map_err(fail)?;
                let expect: Vec<Record> =
                    want.iter().filter(|r| r.seq >= from).take(5).cloned().collect();
                prop_assert_eq!(got, expect, "read from {}", from);
            }
            Ok(())
        })?;
    }

}

proptest! {
    #![proptest_config(config("proptest-regressions/fuzz_log.txt", 48))]

    /// Any damage: nothing panics, and nothing is made up.
    #[test]
    fn any_damage_never_panics(
        batches in batches(),
        damages in prop::collection::vec(damage(), 1..4),
        next in prop::collection::vec(later_kind(), 1..3),
    ) {
        let rt = runtime()?;
        let w = write_session(&rt, &batches)?;
        let mut file = fs::read(&w.log).map_err(fail)?;
        for d in &damages {
            file = apply(&file, &w.records, d)?;
        }
        fs::write(&w.log, &file).map_err(fail)?;
        let mut allowed = w.records.clone();
        allowed.extend(
            file.split(|b| *b == b'\n')
                .filter_map(|l| serde_json::from_slice::<Record>(l).ok()),
        );
        // (A line with the batch marker `"more":true` parses as its record.)
        let store = match FsStore::open(&w.home) {
            Ok(s) => s,
            Err(e) => {
                prop_assert!(!e.to_string().trim().is_empty());
                return Ok(());
            }
        };
        rt.block_on(async {
            let head = match store.get(&w.id).await {
                Ok(meta) => meta.last_seq,
                Err(e) => {
                    prop_assert!(!e.to_string().trim().is_empty());
                    0
                }
            };
            check_records("read_all", store.read_all(&w.id).await, &allowed)?;
            check_records("read", store.read(&w.id, head / 2 + 1, Some(5)).await, &allowed)?;
            check_records("tail", store.tail(&w.id, 3).await, &allowed)?;
            if let Err(e) = store.view(&w.id).await {
                prop_assert!(!e.to_string().trim().is_empty());
            }
            if let Err(e) = store.list(&ListQuery::default()).await {
                prop_assert!(!e.to_string().trim().is_empty());
            }
            let added = Record::batch(head, next.clone());
            if let Err(e) = store.append(&w.id, head, added.clone()).await {
                prop_assert!(!e.to_string().trim().is_empty());
            }
            allowed.extend(added);
            check_records("read_all after append", store.read_all(&w.id).await, &allowed)?;
            Ok(())
        })?;
    }
}

/// Regression (found by `reads_of_large_logs_skip_corrupt_lines`): the
/// binary search of `read(from_seq)` trusted the `seq` prefix of corrupt
/// lines, so a corrupt line claiming a small seq after the records asked
/// for made the read start past them: they were silently missing.
#[test]
fn corrupt_lines_with_a_lying_seq_do_not_hide_records() {
    let rt = runtime().expect("runtime");
    let kinds: Vec<RecordKind> = (0..100)
        .map(|i| {
            RecordKind::message(Message::text(
                BranchId::main(),
                Role::User,
                format!("{i} {}", "x".repeat(2000)),
            ))
        })
        .collect();
    let w = write_session(&rt, &[kinds]).expect("write");
    let bytes = fs::read(&w.log).expect("read the log");
    let lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    let mut file = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.is_empty() {
            continue;
        }
        // Every line of the last three quarters but the last becomes a corrupt
        // line claiming seq 1.
        if i > lines.len() / 4 && i + 2 < lines.len() {
            let mut bad = b"{\"v\":1,\"seq\":1,\"kind\":".to_vec();
            bad.extend_from_slice(&line[..line.len() / 2]);
            file.extend(bad);
        } else {
            file.extend_from_slice(line);
        }
        file.push(b'\n');
    }
    fs::write(&w.log, &file).expect("damage the log");
    let store = FsStore::open(&w.home).expect("open");
    let got = rt
        .block_on(store.read(&w.id, 10, Some(5)))
        .expect("read from 10");
    let seqs: Vec<u64> = got.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, vec![10, 11, 12, 13, 14]);
}
