//! Reads of sessions: `get`, `read`, `tail` and the full-text `search`.

use std::fs::File;
use std::io::ErrorKind;

use weft_core::MapRecord;
use weft_core::SessionId;
use weft_core::record::Record;
use weft_core::session::SessionMeta;
use weft_core::store::{SearchHit, SearchQuery, StoreError};

use crate::codec;
use crate::util::{IoContext, io_err};

use super::{FsBackend, LOG_FILE, log, not_found};

impl FsBackend {
    pub(super) fn get(&self, id: &SessionId) -> Result<SessionMeta, StoreError> {
        let (slug, file) = self.open_log(id)?;
        let dir = self.session_dir(&slug, id.as_str());
        let (head, ino) = self.head(&file, &dir.join(LOG_FILE))?;
        let folded = self.folded(id, &dir, &file, head, ino)?;
        let meta = folded.meta.clone();
        self.remember(id, &slug, Some(folded));
        Ok(meta)
    }

    /// Records from `from_seq`, at most `limit`, each passed through `map`
    /// as it is decoded (on the decoding threads of a whole-log read).
    pub(super) fn read(
        &self,
        id: &SessionId,
        from_seq: u64,
        limit: Option<usize>,
        map: &dyn MapRecord,
    ) -> Result<Vec<Record>, StoreError> {
        let (slug, file) = self.open_log(id)?;
        let log_path = self.session_dir(&slug, id.as_str()).join(LOG_FILE);
        let location = log_path.display().to_string();
        let (head, _) = self.head(&file, &log_path)?;
        if head.last_seq == 0 {
            return Err(not_found(id));
        }
        let from = from_seq.max(1);
        let limit = limit.unwrap_or(usize::MAX);
        if limit == 0 || from > head.last_seq {
            return Ok(Vec::new());
        }
        let start = if from <= 1 {
            0
        } else {
            log::seek_seq(&file, head.valid_len, from, &self.bytes_read).at(&log_path)?
        };
        if limit == usize::MAX {
            let bytes = self.read_bytes(&file, start, head.valid_len, &log_path)?;
            if from <= 1 {
                return codec::decode_all_mapped(&bytes, start, &location, map);
            }
            let mut out = Vec::new();
            codec::decode_lines_mapped(&bytes, start, from, usize::MAX, &location, &mut out, map)?;
            return Ok(out);
        }
        // Read forward in growing chunks until `limit` records are in.
        let mut out = Vec::new();
        let mut pos = start;
        let mut chunk: u64 = 64 * 1024;
        while pos < head.valid_len && out.len() < limit {
            let end = (pos + chunk).min(head.valid_len);
            let bytes = self.read_bytes(&file, pos, end, &log_path)?;
            let Some(last_nl) = bytes.iter().rposition(|&b| b == b'\n') else {
                chunk *= 2;
                continue;
            };
            codec::decode_lines_mapped(
                &bytes[..=last_nl],
                pos,
                from,
                limit,
                &location,
                &mut out,
                map,
            )?;
            pos += last_nl as u64 + 1;
            chunk = (chunk * 2).min(8 * 1024 * 1024);
        }
        Ok(out)
    }

    pub(super) fn tail(&self, id: &SessionId, n: usize) -> Result<Vec<Record>, StoreError> {
        let (slug, file) = self.open_log(id)?;
        let log_path = self.session_dir(&slug, id.as_str()).join(LOG_FILE);
        let len = file.metadata().at(&log_path)?.len();
        let (head, mut records) = log::scan_back(
            &file,
            len,
            n,
            &self.bytes_read,
            &log_path.display().to_string(),
        )
        .at(&log_path)?;
        if head.last_seq == 0 {
            return Err(not_found(id));
        }
        records.reverse();
        Ok(records)
    }

    pub(super) fn search(&self, query: &SearchQuery) -> Result<Vec<SearchHit>, StoreError> {
        let terms = query.terms();
        if terms.is_empty() {
            return Ok(Vec::new());
        }
        // Terms of ASCII letters and digits appear verbatim in a line's JSON
        // whenever they appear in the message text, so lines without them
        // can be skipped unparsed.
        let plain: Vec<&String> = terms
            .iter()
            .filter(|t| t.chars().all(|c| c.is_ascii_alphanumeric()))
            .collect();
        let mut hits = Vec::new();
        self.queue.barrier(false);
        for (slug, meta) in self.index.search_order(query.project.as_deref())? {
            let (head, file, log_path) = {
                let path = self.session_dir(&slug, meta.id.as_str()).join(LOG_FILE);
                let file = match File::open(&path) {
                    Ok(f) => f,
                    Err(e) if e.kind() == ErrorKind::NotFound => continue,
                    Err(e) => return Err(io_err(&path, e)),
                };
                let (head, _) = self.head(&file, &path)?;
                (head, file, path)
            };
            let bytes = self.read_bytes(&file, 0, head.valid_len, &log_path)?;
            for line in codec::lines(&bytes) {
                if line.is_empty() || !might_be_message(line) {
                    continue;
                }
                if !plain.is_empty() {
                    let lower = String::from_utf8_lossy(line).to_lowercase();
                    if !plain.iter().all(|t| lower.contains(t.as_str())) {
                        continue;
                    }
                }
                let Ok(record) = codec::decode_line(line) else {
                    continue;
                };
                if let Some(hit) = query.hit(&meta, &record) {
                    hits.push(hit);
                    if hits.len() >= query.effective_limit() {
                        return Ok(hits);
                    }
                }
            }
        }
        Ok(hits)
    }
}

/// Whether a log line may hold a message record (every line our writer
/// makes for one contains this; lines of unknown shape are parsed anyway).
pub(super) fn might_be_message(line: &[u8]) -> bool {
    const MESSAGE: &[u8] = b"\"kind\":{\"type\":\"message\"";
    const ANY: &[u8] = b"\"kind\":{\"type\":\"";
    contains(line, MESSAGE) || !contains(line, ANY)
}

pub(super) fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
