//! Shared state (`state/<namespace>.json`) and the capped `events.jsonl`.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::PathBuf;

use serde_json::{Map, Value};
use weft_core::SessionId;
use weft_core::record::StateDelta;
use weft_core::store::StoreError;

use super::log::BackLines;
use crate::util::{IoContext, io_err, no_follow, write_atomic};

use super::{EVENTS_CAP_BYTES, EVENTS_FILE, FsBackend, encode_err, open_err};

impl FsBackend {
    pub(super) fn state_path(&self, namespace: &str) -> Result<PathBuf, StoreError> {
        let mut name = String::new();
        for (i, b) in namespace.bytes().enumerate() {
            if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || (b == b'.' && i > 0) {
                name.push(b as char);
            } else {
                name.push_str(&format!("%{b:02X}"));
            }
        }
        if name.is_empty() || name.len() > 200 {
            return Err(StoreError::Invalid(format!(
                "invalid state namespace {namespace:?}: use 1 to 60 characters such as app:<profile> or user:<name>"
            )));
        }
        Ok(self.root.join("state").join(format!("{name}.json")))
    }

    pub(super) fn shared_state(&self, namespace: &str) -> Result<Map<String, Value>, StoreError> {
        let path = self.state_path(namespace)?;
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                location: path.display().to_string(),
                detail: e.to_string(),
            }),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(Map::new()),
            Err(e) => Err(io_err(&path, e)),
        }
    }

    pub(super) fn update_shared_state(
        &self,
        namespace: &str,
        delta: &StateDelta,
    ) -> Result<Map<String, Value>, StoreError> {
        self.check_writable()?;
        let path = self.state_path(namespace)?;
        let dir = self.root.join("state");
        fs::create_dir_all(&dir).at(&dir)?;
        let lock_path = dir.join(".lock");
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .at(&lock_path)?;
        lock.lock().at(&lock_path)?;
        let mut state = self.shared_state(namespace)?;
        delta.apply_to(&mut state);
        let bytes = serde_json::to_vec_pretty(&state).map_err(encode_err)?;
        write_atomic(&path, &bytes, true)?;
        Ok(state)
    }

    pub(super) fn write_events(&self, id: &SessionId, events: &[Value]) -> Result<(), StoreError> {
        let (slug, _) = self.open_log(id)?;
        if events.is_empty() {
            return Ok(());
        }
        self.check_writable()?;
        let dir = self.session_dir(&slug, id.as_str());
        let mut lines = Vec::new();
        for e in events {
            serde_json::to_writer(&mut lines, e).map_err(encode_err)?;
            lines.push(b'\n');
        }
        let _lock = self.lock_dir(id, &dir, true)?;
        let path = dir.join(EVENTS_FILE);
        let mut file = no_follow()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| open_err(&path, e))?;
        file.write_all(&lines).at(&path)?;
        let len = file.metadata().at(&path)?.len();
        drop(file);
        if len > EVENTS_CAP_BYTES {
            // Drop the oldest half, cutting at a line boundary.
            let bytes = fs::read(&path).at(&path)?;
            let half = bytes.len() / 2;
            let cut = bytes[half..]
                .iter()
                .position(|&b| b == b'\n')
                .map(|p| half + p + 1)
                .unwrap_or(bytes.len());
            write_atomic(&path, &bytes[cut..], false)?;
        }
        Ok(())
    }

    pub(super) fn read_events(
        &self,
        id: &SessionId,
        limit: usize,
    ) -> Result<Vec<Value>, StoreError> {
        let (slug, _) = self.open_log(id)?;
        let path = self.session_dir(&slug, id.as_str()).join(EVENTS_FILE);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&path, e)),
        };
        let len = file.metadata().at(&path)?.len();
        let mut lines = BackLines::new(&file, len, &self.bytes_read);
        let mut out = Vec::new();
        while out.len() < limit {
            let Some(line) = lines.next_line().at(&path)? else {
                break;
            };
            if !line.complete || line.bytes.is_empty() {
                continue;
            }
            match serde_json::from_slice(&line.bytes) {
                Ok(v) => out.push(v),
                Err(e) => {
                    tracing::warn!(file = %path.display(), offset = line.start, error = %e, "skipping a corrupt event line")
                }
            }
        }
        out.reverse();
        Ok(out)
    }
}
