//! `log.jsonl`: the append-only session log of the fs backend.
//!
//! # Format
//!
//! One [`Record`] JSON object per line (`crate::codec`, the wire format of
//! `weft_core::record`). A batch of several records is written with one
//! `write` and fsync'd before the append returns; every record of a batch
//! except the last carries an extra key, `"more":true`, appended after the
//! record's own fields (`{"v":1,"seq":7,…,"kind":{…},"more":true}`).
//! Readers that deserialize a line as a `Record` ignore it; this module uses
//! it to tell a complete batch from a torn one.
//!
//! # Commit point and crash recovery
//!
//! A batch is committed once its last line (the one without `"more"`) is
//! complete. Reading from the end, the first complete, parseable line
//! without the marker is the log's **head**; everything after it — a line
//! without its newline (torn write), unparseable lines, or the `more` lines
//! of a batch whose last line never made it — is an uncommitted tail. It is
//! ignored by readers and truncated by the next append (under the session
//! lock). An unparseable line *before* the head is corruption in the middle
//! of the log: it is reported with `tracing::warn!` and skipped, and the
//! lines around it stay readable.
//!
//! Only a last line *without* its newline is a torn write. A complete
//! (newline-terminated) line after the head that does not parse cannot come
//! from a torn write: it is a committed record damaged afterwards
//! ([`damaged_tail`]). Its seq counts as used (readers see the head at it),
//! and the next append moves it to `log.quarantine.jsonl` before cutting it
//! from the log (see `super::recovery`).
//!
//! # Cost
//!
//! The head and `tail(n)` are found by reading the file backwards in
//! growing chunks, so they cost time proportional to `n` and the size of the
//! last lines, not to the log. `read(from_seq)` finds its starting line by
//! binary search over byte offsets (each probe parses one line). Every byte
//! read is added to a counter ([`super::FsStore::bytes_read`]) so tests can
//! check these bounds.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};

use weft_core::Record;

use crate::codec::{self, CodecError, decode_line, line_seq, warn_corrupt};

/// What every record of a batch but the last ends with, instead of `}`.
pub(crate) const MORE_SUFFIX: &[u8] = b",\"more\":true}";

/// The first chunk read when scanning backwards.
const BACK_CHUNK: usize = 4 * 1024;
/// The largest chunk read at once when scanning backwards.
const BACK_CHUNK_MAX: usize = 1024 * 1024;

/// Encodes a batch as log lines (each a `crate::codec` line, with the
/// `more` marker on all but the last record).
pub(crate) fn encode_batch(records: &[Record]) -> Result<Vec<u8>, CodecError> {
    let mut buf = Vec::with_capacity(records.len() * 512);
    for (i, r) in records.iter().enumerate() {
        codec::write_line(&mut buf, r)?;
        if i + 1 < records.len() {
            // The record's JSON object always ends with `}`.
            buf.pop();
            buf.extend_from_slice(MORE_SUFFIX);
        }
        buf.push(b'\n');
    }
    Ok(buf)
}

/// Whether a line carries the `more` marker (its batch goes on).
pub(crate) fn has_more(line: &[u8]) -> bool {
    line.ends_with(MORE_SUFFIX)
}

/// A line read from the log.
#[derive(Debug)]
pub(crate) struct RawLine {
    /// Offset of its first byte.
    pub start: u64,
    /// Offset just past its newline (or past its last byte when torn).
    pub end: u64,
    /// Its bytes, without the newline.
    pub bytes: Vec<u8>,
    /// Whether it ended with a newline.
    pub complete: bool,
}

/// Reads a file's lines from the end towards the start.
pub(crate) struct BackLines<'a> {
    file: &'a File,
    counter: &'a AtomicU64,
    /// Offset of `buf[0]`.
    pos: u64,
    /// The unconsumed bytes `[pos, pos + buf.len())`.
    buf: Vec<u8>,
    chunk: usize,
}

impl<'a> BackLines<'a> {
    /// Lines of `file` that end at or before `end`.
    pub(crate) fn new(file: &'a File, end: u64, counter: &'a AtomicU64) -> Self {
        Self {
            file,
            counter,
            pos: end,
            buf: Vec::new(),
            chunk: BACK_CHUNK,
        }
    }

    /// Reads the next chunk before `pos` and prepends it.
    fn read_more(&mut self) -> std::io::Result<()> {
        let n = (self.chunk as u64).min(self.pos) as usize;
        let start = self.pos - n as u64;
        let mut chunk = vec![0u8; n + self.buf.len()];
        self.file.read_exact_at(&mut chunk[..n], start)?;
        self.counter.fetch_add(n as u64, Ordering::Relaxed);
        chunk[n..].copy_from_slice(&self.buf);
        self.buf = chunk;
        self.pos = start;
        self.chunk = (self.chunk * 2).min(BACK_CHUNK_MAX);
        Ok(())
    }

    /// The previous line, or None at the start of the file.
    pub(crate) fn next_line(&mut self) -> std::io::Result<Option<RawLine>> {
        if self.buf.is_empty() {
            if self.pos == 0 {
                return Ok(None);
            }
            self.read_more()?;
        }
        let end = self.pos + self.buf.len() as u64;
        let complete = self.buf.last() == Some(&b'\n');
        loop {
            let search_end = self.buf.len() - usize::from(complete);
            if let Some(i) = memchr::memrchr(b'\n', &self.buf[..search_end]) {
                let bytes = self.buf[i + 1..search_end].to_vec();
                let start = self.pos + i as u64 + 1;
                self.buf.truncate(i + 1);
                return Ok(Some(RawLine {
                    start,
                    end,
                    bytes,
                    complete,
                }));
            }
            if self.pos == 0 {
                let bytes = self.buf[..search_end].to_vec();
                self.buf.clear();
                return Ok(Some(RawLine {
                    start: 0,
                    end,
                    bytes,
                    complete,
                }));
            }
            self.read_more()?;
        }
    }
}

/// The committed end of a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Head {
    /// Offset just past the last committed line (the file's length when
    /// there is no uncommitted tail).
    pub valid_len: u64,
    /// The seq of the last committed record (0: empty log); it also covers
    /// damaged or quarantined records after `readable_seq` (see
    /// `super::recovery`).
    pub last_seq: u64,
    /// The file's length.
    pub file_len: u64,
    /// The seq of the last readable committed line (the one ending at
    /// `valid_len`).
    pub readable_seq: u64,
}

impl Head {
    /// Whether bytes follow the committed end (a torn or corrupt tail).
    pub(crate) fn has_tail(&self) -> bool {
        self.file_len > self.valid_len
    }
}

/// Finds the head of a log whose file is `file_len` bytes long, and
/// collects up to `want` committed records ending at the head (newest
/// first).
pub(crate) fn scan_back(
    file: &File,
    file_len: u64,
    want: usize,
    counter: &AtomicU64,
    location: &str,
) -> std::io::Result<(Head, Vec<Record>)> {
    let mut lines = BackLines::new(file, file_len, counter);
    let mut head: Option<Head> = None;
    let mut out = Vec::new();
    while let Some(line) = lines.next_line()? {
        match head {
            None => {
                if !line.complete || has_more(&line.bytes) {
                    continue;
                }
                if let Ok(record) = decode_line(&line.bytes) {
                    head = Some(Head {
                        valid_len: line.end,
                        last_seq: record.seq,
                        file_len,
                        readable_seq: record.seq,
                    });
                    if want == 0 {
                        break;
                    }
                    out.push(record);
                }
            }
            Some(_) => {
                if out.len() >= want {
                    break;
                }
                match decode_line(&line.bytes) {
                    Ok(record) => out.push(record),
                    Err(e) => warn_corrupt(location, line.start, &e),
                }
            }
        }
    }
    let head = head.unwrap_or(Head {
        valid_len: 0,
        last_seq: 0,
        file_len,
        readable_seq: 0,
    });
    Ok((head, out))
}

/// Reads the first complete line starting at or after `offset` (and before
/// `end`), returning its start offset and seq; lines that do not parse as a
/// record are skipped.
fn probe(
    file: &File,
    offset: u64,
    end: u64,
    counter: &AtomicU64,
) -> std::io::Result<Option<(u64, u64)>> {
    // Find the start of the first line at or after `offset`.
    let mut start = offset;
    if offset > 0 {
        let mut pos = offset - 1;
        let mut found = None;
        let mut chunk = 4096u64;
        while found.is_none() && pos < end {
            let n = chunk.min(end - pos) as usize;
            let mut buf = vec![0u8; n];
            file.read_exact_at(&mut buf, pos)?;
            counter.fetch_add(n as u64, Ordering::Relaxed);
            if let Some(i) = buf.iter().position(|&b| b == b'\n') {
                found = Some(pos + i as u64 + 1);
            } else {
                pos += n as u64;
                chunk = (chunk * 2).min(BACK_CHUNK_MAX as u64);
            }
        }
        match found {
            Some(s) => start = s,
            None => return Ok(None),
        }
    }
    // Read lines forward until one yields a seq.
    while start < end {
        let mut len = 4096u64;
        loop {
            let n = len.min(end - start) as usize;
            let mut buf = vec![0u8; n];
            file.read_exact_at(&mut buf, start)?;
            counter.fetch_add(n as u64, Ordering::Relaxed);
            if let Some(i) = buf.iter().position(|&b| b == b'\n') {
                // Parse the whole line, not just its `seq` prefix: a corrupt
                // line's prefix may name any seq, and trusting it sent the
                // search past records that are there.
                if let Ok(record) = decode_line(&buf[..i]) {
                    return Ok(Some((start, record.seq)));
                }
                start += i as u64 + 1;
                break;
            }
            if start + n as u64 >= end {
                return Ok(None);
            }
            len = (len * 2).min(64 * 1024 * 1024);
        }
    }
    Ok(None)
}

/// The offset of a line at or before the first record with `seq >=
/// from_seq`, found by binary search over `[0, end)` (seqs increase along
/// the file).
pub(crate) fn seek_seq(
    file: &File,
    end: u64,
    from_seq: u64,
    counter: &AtomicU64,
) -> std::io::Result<u64> {
    let (mut lo, mut hi) = (0u64, end);
    // Invariant: the first record with seq >= from_seq starts at or after
    // `lo`; `lo` is a line start.
    while hi - lo > 64 * 1024 {
        let mid = lo + (hi - lo) / 2;
        match probe(file, mid, end, counter)? {
            Some((start, seq)) if start < hi => {
                if seq < from_seq {
                    lo = start;
                } else {
                    hi = mid;
                }
            }
            _ => hi = mid,
        }
    }
    Ok(lo)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::tests::records;
    use crate::codec::{decode_all, decode_lines};
    use std::io::Write;

    #[test]
    fn batches_mark_all_but_the_last_line() {
        let recs = records(3);
        let bytes = encode_batch(&recs).unwrap();
        let lines: Vec<&[u8]> = bytes
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        assert_eq!(lines.len(), 3);
        assert!(has_more(lines[0]) && has_more(lines[1]) && !has_more(lines[2]));
        for (line, r) in lines.iter().zip(&recs) {
            assert_eq!(&decode_line(line).unwrap(), r);
            assert_eq!(line_seq(line), Some(r.seq));
        }
    }

    #[test]
    fn torn_batches_are_not_committed() {
        let counter = AtomicU64::new(0);
        let recs = records(5);
        let first = encode_batch(&recs[..2]).unwrap();
        let second = encode_batch(&recs[2..]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl");
        let mut f = File::create(&path).unwrap();
        f.write_all(&first).unwrap();
        // Cut the second batch after its first full line plus a few bytes.
        let cut = second.iter().position(|&b| b == b'\n').unwrap() + 10;
        f.write_all(&second[..cut]).unwrap();
        drop(f);
        let f = File::open(&path).unwrap();
        let len = f.metadata().unwrap().len();
        let (head, tail) = scan_back(&f, len, 10, &counter, "t").unwrap();
        assert_eq!(head.last_seq, 2);
        assert_eq!(head.valid_len, first.len() as u64);
        assert!(head.has_tail());
        assert_eq!(tail.len(), 2);
    }

    #[test]
    fn seeks_by_seq() {
        let counter = AtomicU64::new(0);
        let recs = records(3000);
        let bytes = encode_batch(&recs[..1]).unwrap();
        let mut all = bytes.clone();
        for r in &recs[1..] {
            all.extend(encode_batch(std::slice::from_ref(r)).unwrap());
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl");
        std::fs::write(&path, &all).unwrap();
        let f = File::open(&path).unwrap();
        for from in [1u64, 2, 500, 1777, 2999, 3000, 3001] {
            let off = seek_seq(&f, all.len() as u64, from, &counter).unwrap();
            let mut out = Vec::new();
            decode_lines(&all[off as usize..], off, from, 3, "t", &mut out);
            if from <= 3000 {
                assert_eq!(out[0].seq, from, "from {from}");
            } else {
                assert!(out.is_empty());
            }
        }
        let parsed = decode_all(&all, 0, "t");
        assert_eq!(parsed, recs);
    }
}

/// Committed lines after the head that do not parse (see the module docs).
#[derive(Debug)]
pub(crate) struct Damaged {
    /// Every complete line after the head (the damaged batch, whole).
    pub lines: Vec<RawLine>,
    /// The seq of the last of them: the head's seq plus their number (each
    /// line is one record), or a larger seq still readable in one of them.
    pub last_seq: u64,
}

/// The largest tail [`damaged_tail`] reads (a longer one is not a batch).
const TAIL_READ_MAX: u64 = 64 * 1024 * 1024;

/// Looks at the bytes after `head`: `Some` when complete lines there do not
/// parse (committed records damaged later), `None` for a clean log or an
/// uncommitted tail (a torn write, or `more` lines of a batch whose last
/// line never made it).
pub(crate) fn damaged_tail(
    file: &File,
    head: &Head,
    counter: &AtomicU64,
) -> std::io::Result<Option<Damaged>> {
    if !head.has_tail() {
        return Ok(None);
    }
    let len = (head.file_len - head.valid_len).min(TAIL_READ_MAX);
    let mut buf = vec![0u8; len as usize];
    file.read_exact_at(&mut buf, head.valid_len)?;
    counter.fetch_add(len, Ordering::Relaxed);
    let mut lines = Vec::new();
    let mut start = 0usize;
    while let Some(i) = buf[start..].iter().position(|&b| b == b'\n') {
        let end = start + i;
        lines.push(RawLine {
            start: head.valid_len + start as u64,
            end: head.valid_len + end as u64 + 1,
            bytes: buf[start..end].to_vec(),
            complete: true,
        });
        start = end + 1;
    }
    if lines.iter().all(|l| decode_line(&l.bytes).is_ok()) {
        return Ok(None);
    }
    // Each line is one record after the head. A seq still readable in a
    // line may say more (never reuse it), unless it is absurd (the seq
    // field itself damaged).
    let counted = head.readable_seq + lines.len() as u64;
    let written = lines
        .iter()
        .filter_map(|l| line_seq(&l.bytes))
        .filter(|&s| s <= counted + 1024)
        .max();
    let last_seq = counted.max(written.unwrap_or(0));
    Ok(Some(Damaged { lines, last_seq }))
}
