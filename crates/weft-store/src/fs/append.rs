//! Writes to a session's log: `create` and `append` (under the session lock).

use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;

use weft_core::SessionId;
use weft_core::record::{Record, RecordKind, check_batch};
use weft_core::session::SessionMeta;
use weft_core::store::StoreError;

use super::derived::Target;
use super::index::CREATING;
use crate::util::{
    IoContext, io_err, is_symlink_refusal, mtime_ns, no_follow, sync_dir, validate_slug,
};

use super::{
    Folded, FsBackend, LOG_FILE, META_REFRESH_BYTES, SessionLock, TRANSCRIPT_FILE, fold_meta, log,
    meta_file, not_found, open_err, symlink_refused, transcript,
};

impl FsBackend {
    pub(super) fn create(
        &self,
        meta: SessionMeta,
        initial: Vec<RecordKind>,
    ) -> Result<SessionMeta, StoreError> {
        self.check_writable()?;
        let id = meta.id.clone();
        let slug = meta.project.slug.clone();
        validate_slug(&slug)?;
        let mut kinds = vec![RecordKind::SessionCreated(Box::new(meta))];
        kinds.extend(initial);
        let records = Record::batch(0, kinds);
        check_batch(0, &records)?;
        let bytes = log::encode_batch(&records).map_err(|e| e.into_store("fs", LOG_FILE))?;

        // A live session with this id anywhere?
        if let Some(loc) = self.index.locate(&id)?
            && loc.pending != CREATING
        {
            let dir = self.session_dir(&loc.dir_slug, id.as_str());
            if has_committed_log(&dir, &self.bytes_read)? {
                return Err(StoreError::AlreadyExists(id.to_string()));
            }
            self.index.remove(id.as_str())?;
        }

        let sessions_dir = self.sessions_dir(&slug);
        let project_dir = self.projects.join(&slug);
        let new_project = !sessions_dir.exists();
        fs::create_dir_all(&sessions_dir).at(&sessions_dir)?;
        let dir = sessions_dir.join(id.as_str());
        self.index.begin_create(&id, &slug, new_project, || {
            let before = fs::metadata(&sessions_dir)
                .map(|m| mtime_ns(&m))
                .at(&sessions_dir)?;
            match fs::create_dir(&dir) {
                Ok(()) => {}
                // A leftover of a create that crashed, or a racing create:
                // decided under the lock below.
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_err(&dir, e)),
            }
            let after = fs::metadata(&sessions_dir)
                .map(|m| mtime_ns(&m))
                .at(&sessions_dir)?;
            Ok((before, after))
        })?;
        let _lock = self.lock_dir(&id, &dir, false)?;
        if has_committed_log(&dir, &self.bytes_read)? {
            // Another creator won, or an unindexed session was there: index
            // it (our placeholder row must not hide it) and refuse.
            if let Err(e) = self.index_from_disk(&id, &slug, &dir) {
                tracing::warn!(session = %id, error = %e, "cannot index an existing session");
            }
            return Err(StoreError::AlreadyExists(id.to_string()));
        }
        let log_path = dir.join(LOG_FILE);
        let written = (|| -> Result<File, StoreError> {
            // Never through a link (O_NOFOLLOW), never over something that
            // is not a regular file.
            let file = no_follow()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&log_path)
                .map_err(|e| open_err(&log_path, e))?;
            if !file.metadata().at(&log_path)?.is_file() {
                return Err(StoreError::Refused(format!(
                    "{} is not a regular file: remove it and retry",
                    log_path.display()
                )));
            }
            file.write_all_at(&bytes, 0).at(&log_path)?;
            file.sync_data().at(&log_path)?;
            sync_dir(&dir)?;
            sync_dir(&sessions_dir)?;
            if new_project {
                sync_dir(&project_dir)?;
                sync_dir(&self.projects)?;
            }
            Ok(file)
        })();
        let file = match written {
            Ok(f) => f,
            Err(e) => {
                if fs::symlink_metadata(&log_path).is_ok_and(|m| m.is_file()) {
                    let _ = fs::remove_file(&log_path);
                }
                let _ = self.index.remove(id.as_str());
                return Err(e);
            }
        };
        let ino = file.metadata().at(&log_path)?.ino();
        let mut folded = Folded {
            ino,
            valid_len: bytes.len() as u64,
            meta: fold_meta(&id, &records, &log_path.display().to_string())?,
            meta_file_len: 0,
        };
        let mut lines = Vec::new();
        for r in &records {
            if let Some(m) = r.as_message()
                && m.branch == folded.meta.default_branch
            {
                transcript::message_lines(m, r.seq, &mut lines);
            }
        }
        let transcript_path = dir.join(TRANSCRIPT_FILE);
        let written = no_follow()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&transcript_path)
            .and_then(|mut f| f.write_all(&lines));
        match written {
            Ok(()) => {}
            Err(e) => {
                // Leave no partial file: the next append writes it whole.
                let _ = fs::remove_file(&transcript_path);
                tracing::warn!(file = %transcript_path.display(), error = %crate::util::explain(e), "cannot write transcript.jsonl; the next append repairs it")
            }
        }
        self.write_meta_file(&dir, &mut folded);
        if let Err(e) = meta_file::write_parent_id(&dir, &folded.meta) {
            tracing::warn!(session = %id, error = %e, "cannot write the parent_id file");
        }
        if let Err(e) = self.index.upsert(&slug, &folded.meta, folded.valid_len) {
            tracing::warn!(session = %id, error = %e, "cannot index a new session; the next open reindexes it");
        }
        let meta = folded.meta.clone();
        self.remember(&id, &slug, Some(folded));
        Ok(meta)
    }

    /// Locks a session for writing: its project slug, directory and lock.
    /// Uses the cached location when there is one (falling back to a fresh
    /// lookup if the session moved or vanished).
    pub(super) fn lock_session(
        &self,
        id: &SessionId,
    ) -> Result<(String, PathBuf, SessionLock), StoreError> {
        let cached = self.cache().get(id).map(|c| c.dir_slug.clone());
        if let Some(slug) = cached {
            let dir = self.session_dir(&slug, id.as_str());
            match self.lock_dir(id, &dir, true) {
                Ok(lock) => return Ok((slug, dir, lock)),
                Err(StoreError::NotFound(_)) => self.forget(id),
                Err(e) => return Err(e),
            }
        }
        let (slug, _) = self.open_log(id)?;
        let dir = self.session_dir(&slug, id.as_str());
        let lock = self.lock_dir(id, &dir, true)?;
        Ok((slug, dir, lock))
    }

    pub(super) fn append(
        &self,
        id: &SessionId,
        expected_seq: u64,
        records: Vec<Record>,
    ) -> Result<SessionMeta, StoreError> {
        check_batch(expected_seq, &records)?;
        self.check_writable()?;
        let (slug, dir, _lock) = self.lock_session(id)?;
        let log_path = dir.join(LOG_FILE);
        let file = match no_follow().read(true).write(true).open(&log_path) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Err(not_found(id)),
            Err(e) if is_symlink_refusal(&e) => return Err(symlink_refused(&log_path)),
            Err(e) => return Err(io_err(&log_path, e)),
        };
        // The head, re-read under the lock.
        let (head, ino) = self.head(&file, &log_path)?;
        if head.last_seq == 0 {
            return Err(not_found(id));
        }
        if head.last_seq != expected_seq {
            return Err(StoreError::Conflict {
                id: id.to_string(),
                expected: expected_seq,
                actual: head.last_seq,
            });
        }
        let mut folded = self.folded(id, &dir, &file, head, ino)?;
        // Derived files (transcript, metadata.json, index) are brought up
        // to date after the log write and never gate it.
        let bytes = log::encode_batch(&records).map_err(|e| e.into_store("fs", LOG_FILE))?;
        self.touch(id);
        if head.has_tail() {
            match log::damaged_tail(&file, &head, &self.bytes_read).at(&log_path)? {
                // Damaged committed records: kept in the quarantine file
                // (durably) before they leave the log.
                Some(damaged) => self.quarantine(&dir, &log_path, &damaged)?,
                None => tracing::warn!(
                    log = %log_path.display(),
                    bytes = head.file_len - head.valid_len,
                    "truncating an uncommitted tail (torn write) before appending"
                ),
            }
            file.set_len(head.valid_len).at(&log_path)?;
        }
        let written = file
            .write_all_at(&bytes, head.valid_len)
            .and_then(|()| file.sync_data());
        if let Err(e) = written {
            // Leave the log as it was: cut back whatever landed (it was
            // never acknowledged).
            let _ = file.set_len(head.valid_len);
            let _ = file.sync_data();
            return Err(io_err(&log_path, e));
        }
        let prev_turns = folded.meta.turn_count;
        for r in &records {
            folded.meta.apply(r);
        }
        folded.valid_len = head.valid_len + bytes.len() as u64;
        // metadata.json is refreshed when the metadata changes beyond the
        // running counters, when a turn starts (Amplifier's readers take
        // `turn_count` from it), or when the log has outgrown it by
        // META_REFRESH_BYTES; readers fold the records after it. Both it
        // and the transcript are written by the background worker (see
        // `derived`): either would cost this append a second flush.
        let changes_meta = folded.meta.turn_count != prev_turns
            || records.iter().any(|r| {
                matches!(
                    r.kind,
                    RecordKind::Status(_) | RecordKind::Meta(_) | RecordKind::DefaultBranch { .. }
                )
            });
        let meta_due = changes_meta
            || folded.meta_file_len == 0
            || folded.valid_len - folded.meta_file_len >= META_REFRESH_BYTES;
        if meta_due {
            folded.meta_file_len = folded.valid_len;
        }
        let meta = folded.meta.clone();
        let target = Target {
            dir,
            ino,
            meta: folded.meta.clone(),
            log_bytes: folded.valid_len,
            meta_due,
        };
        self.queue.push(&self.index, &slug, target);
        self.remember(id, &slug, Some(folded));
        Ok(meta)
    }
}

/// Whether `dir` holds a log with at least one committed record.
pub(super) fn has_committed_log(dir: &Path, counter: &AtomicU64) -> Result<bool, StoreError> {
    let path = dir.join(LOG_FILE);
    let file = match no_follow().read(true).open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
        Err(e) if is_symlink_refusal(&e) => return Err(symlink_refused(&path)),
        Err(e) => return Err(io_err(&path, e)),
    };
    let len = file.metadata().at(&path)?.len();
    let (head, _) =
        log::scan_back(&file, len, 0, counter, &path.display().to_string()).at(&path)?;
    Ok(head.last_seq > 0)
}
