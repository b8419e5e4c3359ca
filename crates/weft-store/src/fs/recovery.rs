//! Quarantine of damaged committed records (`log.quarantine.jsonl`).
//!
//! A complete (newline-terminated) line after the log's head that does not
//! parse is a committed record damaged after it was written, not a torn
//! write (see [`super::log::damaged_tail`]). The fs store never reuses its
//! seq and never loses its bytes:
//!
//! - Readers see the head at the damaged record's seq (the record itself is
//!   missing from reads, a visible gap), so a writer appends after it.
//! - The next append, under the session lock, first appends the damaged
//!   lines to `log.quarantine.jsonl` in the session directory (one JSON
//!   object per line: `seq`, `offset`, `quarantined_at`, `line` — the raw
//!   text, lossily decoded when it is not UTF-8) and fsyncs it, and only
//!   then cuts them from the log, with a warning.
//! - The quarantine file keeps the burned seq: while the log ends before
//!   it (an append that cut the damaged lines but could not write its own
//!   batch), the head stays at the quarantined seq.
//!
//! `weft doctor` (and `show`) report the file; nothing here removes it.

use std::io::{ErrorKind, Write};
use std::path::Path;

use serde_json::{Value, json};
use weft_core::store::StoreError;

use super::log::Damaged;
use super::{FsBackend, QUARANTINE_FILE};
use crate::util::{IoContext, io_err, no_follow, sync_dir};

impl FsBackend {
    /// The largest seq recorded in the session's quarantine file (0: none).
    pub(super) fn quarantined_seq(&self, dir: &Path) -> Result<u64, StoreError> {
        quarantined_seq(dir)
    }

    /// Moves damaged committed lines out of the log: appends them to the
    /// quarantine file and makes that durable. The caller cuts them from
    /// the log afterwards (under the session lock).
    pub(super) fn quarantine(
        &self,
        dir: &Path,
        log_path: &Path,
        damaged: &Damaged,
    ) -> Result<(), StoreError> {
        let first = damaged.last_seq + 1 - damaged.lines.len() as u64;
        let lines: Vec<(u64, u64, &[u8])> = damaged
            .lines
            .iter()
            .enumerate()
            .map(|(i, line)| (first + i as u64, line.start, line.bytes.as_slice()))
            .collect();
        write_quarantine(dir, log_path, &lines)
    }
}

/// The largest seq recorded in the quarantine file of the session in
/// `dir` (0: none).
pub(crate) fn quarantined_seq(dir: &Path) -> Result<u64, StoreError> {
    Ok(quarantined_seqs(dir)?.last().copied().unwrap_or(0))
}

/// The seqs recorded in the quarantine file of the session in `dir`,
/// ascending and without repeats (empty: no file).
pub(crate) fn quarantined_seqs(dir: &Path) -> Result<Vec<u64>, StoreError> {
    let path = dir.join(QUARANTINE_FILE);
    let bytes = match no_follow().read(true).open(&path) {
        Ok(mut f) => {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut f, &mut buf).at(&path)?;
            buf
        }
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(&path, e)),
    };
    let mut seqs: Vec<u64> = bytes
        .split(|&b| b == b'\n')
        .filter_map(|l| serde_json::from_slice::<Value>(l).ok())
        .filter_map(|v| v.get("seq").and_then(Value::as_u64))
        .collect();
    seqs.sort_unstable();
    seqs.dedup();
    Ok(seqs)
}

/// Appends `(seq, offset, raw line)` entries to the session's quarantine
/// file in the documented shape and makes them durable (the one writer of
/// `log.quarantine.jsonl`: the store and `weft doctor --fix` both use it).
pub(crate) fn write_quarantine(
    dir: &Path,
    log_path: &Path,
    lines: &[(u64, u64, &[u8])],
) -> Result<(), StoreError> {
    let Some(&(last_seq, _, _)) = lines.last() else {
        return Ok(());
    };
    let path = dir.join(QUARANTINE_FILE);
    let now = chrono::Utc::now().to_rfc3339();
    let mut out = Vec::new();
    for &(seq, offset, bytes) in lines {
        let entry = json!({
            "seq": seq,
            "offset": offset,
            "quarantined_at": now,
            "line": String::from_utf8_lossy(bytes),
        });
        // Serialising a Value cannot fail.
        if serde_json::to_writer(&mut out, &entry).is_ok() {
            out.push(b'\n');
        }
    }
    let existed = path.exists();
    let mut file = no_follow()
        .create(true)
        .append(true)
        .open(&path)
        .at(&path)?;
    let before = file.metadata().at(&path)?.len();
    let written = file.write_all(&out).and_then(|()| file.sync_data());
    if let Err(e) = written {
        let _ = file.set_len(before);
        return Err(io_err(&path, e));
    }
    if !existed {
        sync_dir(dir)?;
    }
    tracing::warn!(
        log = %log_path.display(),
        quarantine = %path.display(),
        seq = last_seq,
        lines = lines.len(),
        "a committed record of the session log is damaged: moved it to {QUARANTINE_FILE}; its seq is not reused (`weft doctor` reports it)"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn quarantine_file_name_is_what_doctor_looks_for() {
        assert_eq!(super::QUARANTINE_FILE, "log.quarantine.jsonl");
    }
}
