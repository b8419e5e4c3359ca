//! The JSON-lines record codec: one [`Record`] as one line of JSON, the
//! format every durable backend stores (the fs backend's `log.jsonl`, the
//! sqlite backend's `records.record` column).
//!
//! A line is the record's serde form (the wire format of
//! `weft_core::record`), written and read only through serde, so fields
//! added to [`Record`] pass through unchanged. Decoding ignores keys the
//! record does not know (the fs log's `"more"` batch marker). The writer
//! puts `{"v":N,"seq":` first, which lets [`line_seq`] read a line's seq
//! without parsing the rest.
//!
//! This module owns encoding, decoding and the parsing of buffers of many
//! lines (skipping and reporting the unreadable ones, in parallel when
//! large). It knows nothing about files, offsets in a file other than for
//! reporting, batches, locks or SQL: the framing of batches and crash
//! recovery belong to the fs backend's `log` module.

use std::convert::Infallible;

use serde::Deserialize;
use weft_core::store::StoreError;
use weft_core::{MapRecord, Record};

/// Why a record could not be encoded or a line decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// A record has no JSON form (a value serde refuses, such as a map
    /// with non-string keys).
    #[error("cannot encode record {seq} as JSON: {source}")]
    Encode {
        /// The record's seq.
        seq: u64,
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },
    /// A line is not a record's JSON (damaged, truncated, or not JSON).
    #[error("not a valid record line: {source}")]
    Decode {
        /// What serde said (with the line and column).
        #[source]
        source: serde_json::Error,
    },
}

impl CodecError {
    /// The [`StoreError`] for this failure in `backend`: a line that does
    /// not decode is corrupt data at `location`; a record that does not
    /// encode is a backend failure.
    pub(crate) fn into_store(self, backend: &'static str, location: &str) -> StoreError {
        match self {
            CodecError::Decode { .. } => StoreError::Corrupt {
                location: location.to_string(),
                detail: self.to_string(),
            },
            CodecError::Encode { .. } => StoreError::Backend {
                backend,
                message: self.to_string(),
            },
        }
    }
}

/// Appends `record`'s line to `buf`, without the newline.
pub(crate) fn write_line(buf: &mut Vec<u8>, record: &Record) -> Result<(), CodecError> {
    serde_json::to_writer(buf, record).map_err(|source| CodecError::Encode {
        seq: record.seq,
        source,
    })
}

/// `record`'s line, without the newline.
pub(crate) fn encode_line(record: &Record) -> Result<String, CodecError> {
    serde_json::to_string(record).map_err(|source| CodecError::Encode {
        seq: record.seq,
        source,
    })
}

/// Decodes one line (without its newline).
pub(crate) fn decode_line(line: &[u8]) -> Result<Record, CodecError> {
    // serde_json parses a `&str` faster than bytes (no per-string UTF-8
    // checks); one check of the whole line is cheaper.
    match std::str::from_utf8(line) {
        Ok(text) => decode_str(text),
        Err(_) => serde_json::from_slice(line).map_err(|source| CodecError::Decode { source }),
    }
}

/// Decodes one line held as text.
pub(crate) fn decode_str(line: &str) -> Result<Record, CodecError> {
    serde_json::from_str(line).map_err(|source| CodecError::Decode { source })
}

#[derive(Deserialize)]
struct SeqProbe {
    seq: u64,
}

/// The seq of a line, reading as little as possible: the writer puts
/// `{"v":N,"seq":` first, so the number is parsed from the prefix; any other
/// shape falls back to parsing the line. Not a check that the line is a
/// valid record.
pub(crate) fn line_seq(line: &[u8]) -> Option<u64> {
    if let Some(rest) = line.strip_prefix(b"{\"v\":") {
        let rest = rest.get(rest.iter().position(|&b| b == b',')?..)?;
        if let Some(digits) = rest.strip_prefix(b",\"seq\":") {
            let n = digits.iter().take_while(|b| b.is_ascii_digit()).count();
            if n > 0
                && n <= 19
                && let Ok(s) = std::str::from_utf8(&digits[..n])
                && let Ok(seq) = s.parse::<u64>()
            {
                return Some(seq);
            }
        }
    }
    serde_json::from_slice::<SeqProbe>(line).ok().map(|p| p.seq)
}

/// Reports an unreadable line in the middle of a log (`offset`: where it
/// starts in `location`), which the reader skips: once per process and
/// place at warning level.
pub(crate) fn warn_corrupt(location: &str, offset: u64, e: &CodecError) {
    if crate::util::first_sighting(format!("corrupt {location} {offset}")) {
        tracing::warn!(
            log = location,
            offset,
            error = %e,
            "skipping a corrupt line in the middle of a session log"
        );
    } else {
        tracing::debug!(log = location, offset, "skipping the corrupt line again");
    }
}

/// The lines of `bytes` (split at `\n`, the last one possibly empty), as
/// `bytes.split(|&b| b == b'\n')` gives them, found with SIMD.
pub(crate) fn lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(bytes);
    std::iter::from_fn(move || {
        let r = rest?;
        match memchr::memchr(b'\n', r) {
            Some(i) => {
                rest = Some(&r[i + 1..]);
                Some(&r[..i])
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}

/// What is applied to each record as it is decoded: a
/// [`weft_core::MapRecord`] (failing with a [`StoreError`]), or
/// [`Unmapped`] for plain decoding, which cannot fail.
pub(crate) trait Mapper: Sync {
    /// What `map` fails with.
    type Error;
    /// The record's JSON rewritten into `out` before it is parsed (see
    /// [`MapRecord::rewrite_json`]).
    fn rewrite(&self, json: &str, out: &mut Vec<u8>) -> bool;
    /// Transforms one decoded record.
    fn map(&self, record: &mut Record) -> Result<(), Self::Error>;
}

impl Mapper for dyn MapRecord + '_ {
    type Error = StoreError;
    fn rewrite(&self, json: &str, out: &mut Vec<u8>) -> bool {
        self.rewrite_json(json, out)
    }
    fn map(&self, record: &mut Record) -> Result<(), StoreError> {
        MapRecord::map(self, record)
    }
}

/// The map of a plain read: changes nothing. As a [`Mapper`] it cannot
/// fail (the codec's own plain decoding); as a [`MapRecord`] ([`PLAIN`])
/// it is what a backend's reader, which takes one, is given for a plain
/// read.
pub(crate) struct Unmapped;

impl Mapper for Unmapped {
    type Error = Infallible;
    fn rewrite(&self, _: &str, _: &mut Vec<u8>) -> bool {
        false
    }
    fn map(&self, _: &mut Record) -> Result<(), Infallible> {
        Ok(())
    }
}

impl MapRecord for Unmapped {
    fn map(&self, _: &mut Record) -> Result<(), StoreError> {
        Ok(())
    }
}

/// [`Unmapped`] as the [`MapRecord`] the backends' readers take.
pub(crate) const PLAIN: &dyn MapRecord = &Unmapped;

/// Parses `json`, as `map` rewrites it (into `buf`, reused from record to
/// record) when it offers a rewrite that parses (else as stored: the
/// rewrite is only a shortcut).
fn decode_rewritten<M: Mapper + ?Sized>(
    json: &str,
    map: &M,
    buf: &mut Vec<u8>,
) -> Result<Record, CodecError> {
    if map.rewrite(json, buf)
        && let Ok(rewritten) = std::str::from_utf8(buf)
        && let Ok(record) = decode_str(rewritten)
    {
        return Ok(record);
    }
    decode_str(json)
}

/// Decodes the lines of `bytes` (which start at offset `base` of
/// `location`, on a line boundary), keeping records with `seq >= from_seq`,
/// at most `limit` of them. Unreadable lines are reported and skipped.
pub(crate) fn decode_lines(
    bytes: &[u8],
    base: u64,
    from_seq: u64,
    limit: usize,
    location: &str,
    out: &mut Vec<Record>,
) {
    let Ok(()) = decode_lines_mapped(bytes, base, from_seq, limit, location, out, &Unmapped);
}

/// [`decode_lines`], passing every record kept through `map`; the first
/// error of `map` stops the decoding and is returned.
pub(crate) fn decode_lines_mapped<M: Mapper + ?Sized>(
    bytes: &[u8],
    base: u64,
    from_seq: u64,
    limit: usize,
    location: &str,
    out: &mut Vec<Record>,
    map: &M,
) -> Result<(), M::Error> {
    // One UTF-8 check of the whole buffer lets every line be parsed as
    // `&str` (faster in serde_json); a buffer with invalid bytes somewhere
    // is parsed line by line, so only the bad lines fail.
    let text = std::str::from_utf8(bytes).ok();
    let mut buf = Vec::new();
    let mut offset = 0usize;
    for line in lines(bytes) {
        let start = offset;
        offset += line.len() + 1;
        if out.len() >= limit {
            break;
        }
        if line.is_empty() {
            continue;
        }
        if from_seq > 1
            && let Some(seq) = line_seq(line)
            && seq < from_seq
        {
            continue;
        }
        let json = match text {
            // `start..start + line.len()` lies on '\n' boundaries of valid UTF-8.
            Some(t) => Some(&t[start..start + line.len()]),
            None => std::str::from_utf8(line).ok(),
        };
        let parsed = match json {
            Some(json) => decode_rewritten(json, map, &mut buf),
            None => decode_line(line),
        };
        match parsed {
            Ok(mut r) if r.seq >= from_seq => {
                map.map(&mut r)?;
                out.push(r);
            }
            Ok(_) => {}
            Err(e) => warn_corrupt(location, base + start as u64, &e),
        }
    }
    Ok(())
}

/// Decodes every line of a buffer of whole lines (see [`decode_lines`]),
/// on several threads when it is large.
pub(crate) fn decode_all(bytes: &[u8], base: u64, location: &str) -> Vec<Record> {
    let Ok(records) = decode_all_mapped(bytes, base, location, &Unmapped);
    records
}

/// [`decode_all`], passing every record through `map` on the thread that
/// decoded it; the first error of `map` is returned.
pub(crate) fn decode_all_mapped<M>(
    bytes: &[u8],
    base: u64,
    location: &str,
    map: &M,
) -> Result<Vec<Record>, M::Error>
where
    M: Mapper + ?Sized,
    M::Error: Send,
{
    const PARALLEL_MIN: usize = 1024 * 1024;
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(8);
    if bytes.len() < PARALLEL_MIN || threads < 2 {
        let mut out = Vec::new();
        decode_lines_mapped(bytes, base, 1, usize::MAX, location, &mut out, map)?;
        return Ok(out);
    }
    // Cut at line boundaries near equal shares.
    let mut cuts = vec![0usize];
    for i in 1..threads {
        let guess = bytes.len() * i / threads;
        let prev = *cuts.last().unwrap_or(&0);
        let at = bytes[guess.max(prev)..]
            .iter()
            .position(|&b| b == b'\n')
            .map(|p| guess.max(prev) + p + 1)
            .unwrap_or(bytes.len());
        cuts.push(at);
    }
    cuts.push(bytes.len());
    cuts.dedup();
    let share = |a: usize, b: usize| {
        let mut out = Vec::with_capacity((b - a) / 600 + 1);
        decode_lines_mapped(
            &bytes[a..b],
            base + a as u64,
            1,
            usize::MAX,
            location,
            &mut out,
            map,
        )?;
        Ok(out)
    };
    let parts: Vec<Result<Vec<Record>, M::Error>> = std::thread::scope(|s| {
        let handles: Vec<_> = cuts
            .windows(2)
            .map(|w| (w[0], w[1], s.spawn(move || share(w[0], w[1]))))
            .collect();
        handles
            .into_iter()
            // A decoder thread panicked: decode its share here rather
            // than lose it.
            .map(|(a, b, h)| h.join().unwrap_or_else(|_| share(a, b)))
            .collect()
    });
    let mut out = Vec::with_capacity(parts.iter().flatten().map(Vec::len).sum());
    for p in parts {
        out.extend(p?);
    }
    Ok(out)
}

/// Decodes `joined`, the JSON of `count` stored rows of one record each
/// (sqlite, postgres and redis keep a record per row), one per line, as
/// [`decode_all_mapped`] does: in parallel when large, each record passed
/// through `map`. A row that is not a record fails the whole read, naming
/// `location`: a read never returns a log with a silent hole.
pub(crate) fn decode_joined(
    joined: &str,
    count: usize,
    location: &str,
    map: &dyn MapRecord,
) -> Result<Vec<Record>, StoreError> {
    let out = decode_all_mapped(joined.as_bytes(), 0, location, map)?;
    if out.len() != count {
        return Err(StoreError::Corrupt {
            location: location.to_string(),
            detail: format!("{} of {count} rows are unreadable", count - out.len()),
        });
    }
    Ok(out)
}

/// [`decode_joined`] of rows given one by one (each row's JSON).
#[cfg(any(feature = "postgres", feature = "redis"))]
pub(crate) fn decode_rows<'a>(
    rows: impl Iterator<Item = &'a str> + Clone,
    location: &str,
    map: &dyn MapRecord,
) -> Result<Vec<Record>, StoreError> {
    let mut joined = String::with_capacity(rows.clone().map(|r| r.len() + 1).sum());
    let mut count = 0;
    for row in rows {
        joined.push_str(row);
        joined.push('\n');
        count += 1;
    }
    decode_joined(&joined, count, location, map)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use weft_core::record::RecordKind;
    use weft_core::session::{Project, SessionMeta};
    use weft_core::{BranchId, Message, Role, SessionId};

    /// A log of `n` records: `session_created`, then messages of varied
    /// length.
    pub(crate) fn records(n: usize) -> Vec<Record> {
        let meta = SessionMeta::new(
            SessionId::parse("s1").expect("id"),
            Project::from_dir(std::path::Path::new("/tmp")),
            "base",
        );
        let mut kinds = vec![RecordKind::SessionCreated(Box::new(meta))];
        for i in 0..n.saturating_sub(1) {
            kinds.push(RecordKind::message(Message::text(
                BranchId::main(),
                Role::User,
                format!("message {i} {}", "x".repeat(i % 300)),
            )));
        }
        Record::batch(0, kinds)
    }

    fn joined(records: &[Record]) -> Vec<u8> {
        let mut buf = Vec::new();
        for r in records {
            write_line(&mut buf, r).expect("encode");
            buf.push(b'\n');
        }
        buf
    }

    #[test]
    fn records_round_trip_through_one_line() {
        for r in records(20) {
            let line = encode_line(&r).expect("encode");
            assert!(!line.contains('\n'), "one line: {line}");
            assert_eq!(line_seq(line.as_bytes()), Some(r.seq));
            assert_eq!(decode_line(line.as_bytes()).expect("decode"), r);
            assert_eq!(decode_str(&line).expect("decode"), r);
            let mut buf = Vec::new();
            write_line(&mut buf, &r).expect("write");
            assert_eq!(buf, line.as_bytes());
        }
    }

    #[test]
    fn a_structured_answer_round_trips_and_is_left_out_when_absent() {
        let mut m = Message::text(BranchId::main(), Role::Assistant, r#"{"b":1,"a":[2]}"#);
        let plain = Record::batch(0, [RecordKind::message(m.clone())]).remove(0);
        assert!(!encode_line(&plain).expect("encode").contains("structured"));
        m.structured = Some(serde_json::json!({"b": 1, "a": [2]}));
        let r = Record::batch(0, [RecordKind::message(m)]).remove(0);
        let line = encode_line(&r).expect("encode");
        assert!(line.contains(r#""structured":{"b":1,"a":[2]}"#), "{line}");
        assert_eq!(decode_line(line.as_bytes()).expect("decode"), r);
    }

    #[test]
    fn unknown_keys_are_ignored() {
        let r = &records(2)[1];
        let line = encode_line(r).expect("encode");
        let marked = format!("{},\"more\":true}}", &line[..line.len() - 1]);
        assert_eq!(decode_str(&marked).expect("decode"), *r);
    }

    #[test]
    fn a_bad_line_is_a_clear_error() {
        let line = encode_line(&records(2)[1]).expect("encode");
        for bad in [&line[..line.len() / 2], "not json", "{\"v\":1}", ""] {
            let err = decode_str(bad).expect_err(bad);
            assert!(matches!(err, CodecError::Decode { .. }), "{err:?}");
            assert!(
                err.to_string().starts_with("not a valid record line: "),
                "{err}"
            );
            let store = err.into_store("fs", "log.jsonl");
            let StoreError::Corrupt { location, detail } = &store else {
                panic!("expected corrupt data, got {store:?}");
            };
            assert_eq!(location, "log.jsonl");
            assert!(detail.contains("not a valid record line"), "{detail}");
        }
        assert!(decode_line(b"\xff\xfe").is_err());
    }

    #[test]
    fn bad_lines_are_skipped_and_the_rest_decoded() {
        let recs = records(4);
        let mut bytes = joined(&recs[..2]);
        bytes.extend_from_slice(b"{\"v\":1,\"seq\":3,\"garbage\n");
        bytes.extend(joined(&recs[3..]));
        let mut out = Vec::new();
        decode_lines(&bytes, 0, 1, usize::MAX, "t", &mut out);
        let seqs: Vec<u64> = out.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [1, 2, 4]);
        let mut out = Vec::new();
        decode_lines(&bytes, 0, 2, 1, "t", &mut out);
        assert_eq!(out, recs[1..2]);
    }

    #[test]
    fn lines_split_as_the_slice_split_does() {
        for bytes in [
            &b""[..],
            b"\n",
            b"a",
            b"a\n",
            b"a\nb",
            b"\n\na\n\nbc\n",
            b"x\ny\n\n",
        ] {
            let want: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
            assert_eq!(lines(bytes).collect::<Vec<_>>(), want, "{bytes:?}");
        }
    }

    #[test]
    fn large_buffers_decode_in_parallel_in_order() {
        let recs = records(6000);
        let bytes = joined(&recs);
        assert!(bytes.len() > 1024 * 1024, "big enough to split");
        assert_eq!(decode_all(&bytes, 0, "t"), recs);
    }

    #[test]
    fn a_map_sees_every_record_on_the_decoding_threads_and_its_error_stops_the_read() {
        use std::collections::HashSet;
        use std::sync::Mutex;
        let recs = records(6000);
        let bytes = joined(&recs);
        let threads = Mutex::new(HashSet::new());
        let shift: &dyn MapRecord = &|r: &mut Record| {
            if let Ok(mut t) = threads.lock() {
                t.insert(std::thread::current().id());
            }
            r.seq += 1_000_000;
            Ok(())
        };
        let mapped = decode_all_mapped(&bytes, 0, "t", shift).expect("no error");
        assert_eq!(mapped.len(), recs.len());
        assert!(
            mapped
                .iter()
                .zip(&recs)
                .all(|(m, r)| m.seq == r.seq + 1_000_000)
        );
        let on_caller = threads
            .lock()
            .expect("lock")
            .contains(&std::thread::current().id());
        let parallel = std::thread::available_parallelism().map_or(1, |n| n.get()) > 1;
        assert_eq!(on_caller, !parallel, "mapped where decoded");
        let fail_at_4000: &dyn MapRecord = &|r: &mut Record| {
            if r.seq == 4000 {
                Err(StoreError::Invalid("4000".into()))
            } else {
                Ok(())
            }
        };
        let err = decode_all_mapped(&bytes, 0, "t", fail_at_4000);
        assert!(matches!(err, Err(StoreError::Invalid(s)) if s == "4000"));
        let mut out = Vec::new();
        let small = joined(&recs[..10]);
        let fail_at_5: &dyn MapRecord = &|r: &mut Record| {
            if r.seq == 5 {
                Err(StoreError::Invalid("five".into()))
            } else {
                Ok(())
            }
        };
        let err = decode_lines_mapped(&small, 0, 3, usize::MAX, "t", &mut out, fail_at_5);
        assert!(
            matches!(err, Err(StoreError::Invalid(s)) if s == "five") && out.len() == 2,
            "stops at the failing record"
        );
    }
}
