//! The sync backend's session plumbing: construction, the writable check,
//! session directories, the fold cache, this instance's writer lock and
//! touched set, opening a session's log, reading its head and fold,
//! session locks and `metadata.json` rewrites.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use weft_core::SessionId;
use weft_core::id::validate_id;
use weft_core::session::SessionMeta;
use weft_core::store::StoreError;

use super::index::Index;
use super::log::Head;
use super::queue::IndexQueue;
use crate::codec;
use crate::util::{
    IoContext, READ_ONLY_FS, first_sighting, io_err, is_symlink_refusal, no_follow, validate_slug,
    writable,
};

use super::{
    CACHE_CAP, Cached, Folded, FsBackend, LOCK_FILE, LOG_FILE, META_FILE, QUARANTINE_FILE,
    SessionLock, Writer, doctor, fold_meta, log, meta_file, not_found, open_err, symlink_refused,
};

impl FsBackend {
    pub(super) fn new(root: PathBuf, read_only: bool, index: Index) -> Self {
        let index = Arc::new(index);
        FsBackend {
            projects: root.join("projects"),
            root,
            read_only,
            queue: IndexQueue::start(index.clone()),
            index,
            cache: Mutex::new(HashMap::new()),
            bytes_read: AtomicU64::new(0),
            writer: Mutex::new(None),
            touched: Mutex::new(HashSet::new()),
        }
    }

    /// Refuses a write while the home opened read-only stays read-only.
    pub(super) fn check_writable(&self) -> Result<(), StoreError> {
        if self.read_only && !writable(&self.root) {
            return Err(StoreError::Refused(format!(
                "WEFT_HOME {} is read-only: sessions can be listed and shown but not changed; {}",
                self.root.display(),
                READ_ONLY_FS
                    .split_once(": ")
                    .map_or(READ_ONLY_FS, |(_, fix)| fix)
            )));
        }
        Ok(())
    }

    pub(super) fn sessions_dir(&self, slug: &str) -> PathBuf {
        self.projects.join(slug).join("sessions")
    }

    pub(super) fn session_dir(&self, slug: &str, id: &str) -> PathBuf {
        self.sessions_dir(slug).join(id)
    }

    pub(super) fn cache(&self) -> MutexGuard<'_, HashMap<SessionId, Cached>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn remember(&self, id: &SessionId, dir_slug: &str, folded: Option<Folded>) {
        let mut cache = self.cache();
        if cache.len() >= CACHE_CAP && !cache.contains_key(id) {
            cache.clear();
        }
        let entry = cache.entry(id.clone()).or_default();
        entry.dir_slug = dir_slug.to_string();
        if folded.is_some() {
            entry.folded = folded;
        }
    }

    /// This instance's writer id, taking its liveness lock on first use.
    pub(super) fn writer_id(&self) -> Result<String, StoreError> {
        let mut guard = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = guard.as_ref() {
            return Ok(w.id.clone());
        }
        let dir = self.root.join("writers");
        fs::create_dir_all(&dir).at(&dir)?;
        let id = uuid::Uuid::now_v7().to_string();
        // Lock under a temporary name, then rename: the lock file never
        // appears unlocked to a reconcile looking for dead writers.
        let tmp = dir.join(format!(".{id}.tmp"));
        let path = dir.join(format!("{id}.lock"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&tmp)
            .at(&tmp)?;
        file.lock().at(&tmp)?;
        fs::rename(&tmp, &path).at(&path)?;
        *guard = Some(Writer {
            id: id.clone(),
            path,
            _lock: file,
        });
        Ok(id)
    }

    /// Records (once per session) that this instance writes `id`, so a
    /// crash of this process between a log write and its index update is
    /// repaired by the next reconcile.
    pub(super) fn touch(&self, id: &SessionId) {
        if self
            .touched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(id)
        {
            return;
        }
        let result = self.writer_id().and_then(|w| self.index.touch(&w, id));
        match result {
            Ok(()) => {
                self.touched
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(id.clone());
            }
            Err(e) => {
                tracing::warn!(session = %id, error = %e, "cannot record the session as written; continuing")
            }
        }
    }

    /// Refreshes the sessions touched by store instances that died without
    /// cleaning up (their liveness lock is free), then forgets them.
    pub(super) fn reap_dead_writers(&self) -> Result<(), StoreError> {
        let dir = self.root.join("writers");
        let own = self
            .writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|w| w.id.clone());
        let mut candidates: HashSet<String> = self.index.writers()?.into_iter().collect();
        let mut checked = false;
        if let Ok(entries) = fs::read_dir(&dir) {
            for e in entries.flatten() {
                if let Some(name) = e.file_name().to_str()
                    && let Some(id) = name.strip_suffix(".lock")
                {
                    candidates.insert(id.to_string());
                }
            }
        }
        for w in candidates {
            if Some(&w) == own.as_ref() || validate_id(&w).is_err() {
                continue;
            }
            let path = dir.join(format!("{w}.lock"));
            let lock = match OpenOptions::new().read(true).write(true).open(&path) {
                Ok(f) => match f.try_lock() {
                    Ok(()) => Some(f),
                    Err(std::fs::TryLockError::WouldBlock) => continue, // alive
                    Err(std::fs::TryLockError::Error(e)) => return Err(io_err(&path, e)),
                },
                Err(e) if e.kind() == ErrorKind::NotFound => None,
                Err(e) => return Err(io_err(&path, e)),
            };
            if lock.is_some() && !checked {
                // A process died while writing, maybe in a power loss,
                // which `synchronous=OFF` lets corrupt the index: check it
                // (a damaged one is moved aside and rebuilt by the open).
                checked = true;
                self.index.quick_check()?;
            }
            for (id, slug) in self.index.touched_by(&w)? {
                let Ok(id) = SessionId::parse(id) else {
                    continue;
                };
                if let Err(e) = self.refresh_row(&id, &slug) {
                    tracing::warn!(session = %id, error = %e, "cannot refresh a session a dead writer touched");
                }
            }
            self.index.forget_writer(&w)?;
            if lock.is_some() {
                let _ = fs::remove_file(&path);
            }
        }
        Ok(())
    }

    pub(super) fn forget(&self, id: &SessionId) {
        self.cache().remove(id);
    }

    /// Opens a session's log, finding its directory through the cache, the
    /// index, then a scan of the project directories.
    pub(super) fn open_log(&self, id: &SessionId) -> Result<(String, File), StoreError> {
        let try_slug = |slug: &str| -> Result<Option<File>, StoreError> {
            let dir = self.session_dir(slug, id.as_str());
            let path = dir.join(LOG_FILE);
            match no_follow().read(true).open(&path) {
                Ok(f) => {
                    // A session directory that is a link would have every
                    // write go through it, outside the store.
                    if fs::symlink_metadata(&dir).is_ok_and(|m| m.file_type().is_symlink()) {
                        return Err(symlink_refused(&dir));
                    }
                    Ok(Some(f))
                }
                // NotADirectory: a stray file where sessions/ belongs.
                Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
                    Ok(None)
                }
                Err(e) if is_symlink_refusal(&e) => Err(symlink_refused(&path)),
                Err(e) => Err(io_err(&path, e)),
            }
        };
        let cached = self.cache().get(id).map(|c| c.dir_slug.clone());
        if let Some(slug) = &cached
            && let Some(f) = try_slug(slug)?
        {
            return Ok((slug.clone(), f));
        }
        if let Some(loc) = self.index.locate(id)?
            && Some(&loc.dir_slug) != cached.as_ref()
            && let Some(f) = try_slug(&loc.dir_slug)?
        {
            self.remember(id, &loc.dir_slug, None);
            return Ok((loc.dir_slug, f));
        }
        // Not where the index says: a directory made after the last
        // reconcile (another tool), or gone.
        for slug in self.project_slugs()? {
            if let Some(f) = try_slug(&slug)? {
                self.remember(id, &slug, None);
                if let Err(e) = self.refresh_row(id, &slug) {
                    tracing::warn!(session = %id, error = %e, "cannot index a session found by scanning");
                }
                return Ok((slug, f));
            }
        }
        Err(not_found(id))
    }

    /// The valid project directory names under `projects/`.
    pub(super) fn project_slugs(&self) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        let entries = match fs::read_dir(&self.projects) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io_err(&self.projects, e)),
        };
        for entry in entries {
            let entry = entry.at(&self.projects)?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            // A stray file (a README, an editor's backup) is not a project.
            if validate_slug(&name).is_err() || !entry.path().is_dir() {
                doctor::note_stray(&entry.path(), "not a project directory");
                continue;
            }
            out.push(name);
        }
        Ok(out)
    }

    /// The log's head. Its seq also covers damaged committed records after
    /// the last readable one, and records moved to the quarantine file:
    /// their seqs are never reused (see `recovery`).
    pub(super) fn head(&self, file: &File, location: &Path) -> Result<(Head, u64), StoreError> {
        let md = file.metadata().at(location)?;
        let (mut head, _) = log::scan_back(
            file,
            md.len(),
            0,
            &self.bytes_read,
            &location.display().to_string(),
        )
        .at(location)?;
        if head.last_seq > 0 {
            if let Some(d) = log::damaged_tail(file, &head, &self.bytes_read).at(location)? {
                if first_sighting(format!("damaged {} {}", location.display(), d.last_seq)) {
                    tracing::warn!(
                        log = %location.display(),
                        seq = d.last_seq,
                        "the last record of a session log is damaged (complete but unreadable): it is skipped, its seq stays used, and the next append moves it to {QUARANTINE_FILE}"
                    );
                } else {
                    tracing::debug!(log = %location.display(), seq = d.last_seq, "the damaged last record is skipped again");
                }
                head.last_seq = head.last_seq.max(d.last_seq);
            }
            if let Some(dir) = location.parent() {
                head.last_seq = head.last_seq.max(self.quarantined_seq(dir)?);
            }
        }
        Ok((head, md.ino()))
    }

    /// Bytes `start..end` of a session log (counted in `bytes_read`).
    pub(super) fn read_bytes(
        &self,
        file: &File,
        start: u64,
        end: u64,
        path: &Path,
    ) -> Result<Vec<u8>, StoreError> {
        read_range(file, start, end, path, &self.bytes_read)
    }

    /// The session's metadata at `head`: from the cache, else metadata.json
    /// plus the records after it, else a fold of the whole log.
    pub(super) fn folded(
        &self,
        id: &SessionId,
        dir: &Path,
        file: &File,
        head: Head,
        ino: u64,
    ) -> Result<Folded, StoreError> {
        if head.last_seq == 0 {
            return Err(not_found(id));
        }
        if let Some(f) = self.cache().get(id).and_then(|c| c.folded.clone())
            && f.ino == ino
            && f.valid_len == head.valid_len
            && f.meta.last_seq == head.last_seq
        {
            return Ok(f);
        }
        let log_path = dir.join(LOG_FILE);
        let location = log_path.display().to_string();
        let meta_path = dir.join(META_FILE);
        let from_file = match fs::read(&meta_path) {
            Ok(bytes) => match meta_file::decode(&bytes) {
                Ok((meta, log_bytes)) if meta.id == *id => Some((meta, log_bytes)),
                Ok(_) => {
                    tracing::warn!(file = %meta_path.display(), "metadata.json names another session; rebuilding it from the log");
                    None
                }
                Err(e) => {
                    tracing::warn!(file = %meta_path.display(), error = %e, "unreadable metadata.json; rebuilding it from the log");
                    None
                }
            },
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            Err(e) => return Err(io_err(&meta_path, e)),
        };
        if let Some((file_meta, log_bytes)) = from_file
            && log_bytes > 0
            && log_bytes <= head.valid_len
            && file_meta.last_seq <= head.last_seq
        {
            let m = MetaFileIn {
                meta: file_meta,
                log_bytes,
            };
            if m.log_bytes == head.valid_len && m.meta.last_seq == head.last_seq {
                return Ok(Folded {
                    ino,
                    valid_len: head.valid_len,
                    meta: m.meta,
                    meta_file_len: m.log_bytes,
                });
            }
            // Fold the records metadata.json does not cover yet.
            let mut boundary = [0u8; 1];
            file.read_exact_at(&mut boundary, m.log_bytes - 1)
                .at(&log_path)?;
            if boundary[0] == b'\n' {
                let bytes = self.read_bytes(file, m.log_bytes, head.valid_len, &log_path)?;
                let mut records = Vec::new();
                codec::decode_lines(&bytes, m.log_bytes, 1, usize::MAX, &location, &mut records);
                if records.first().map(|r| r.seq) == Some(m.meta.last_seq + 1) {
                    let mut meta = m.meta;
                    for r in &records {
                        meta.apply(r);
                    }
                    if meta.last_seq == head.last_seq {
                        return Ok(Folded {
                            ino,
                            valid_len: head.valid_len,
                            meta,
                            meta_file_len: m.log_bytes,
                        });
                    }
                }
            }
        }
        // Fold the whole log.
        let bytes = self.read_bytes(file, 0, head.valid_len, &log_path)?;
        let records = codec::decode_all(&bytes, 0, &location);
        let mut meta = fold_meta(id, &records, &location)?;
        // Seqs of quarantined or damaged records are used up.
        meta.last_seq = meta.last_seq.max(head.last_seq);
        Ok(Folded {
            ino,
            valid_len: head.valid_len,
            meta,
            meta_file_len: 0,
        })
    }

    /// Takes the advisory lock of a session directory, waiting for it. With
    /// `require_log`, fails with NotFound when the session is gone (deleted
    /// while we waited).
    pub(super) fn lock_dir(
        &self,
        id: &SessionId,
        dir: &Path,
        require_log: bool,
    ) -> Result<SessionLock, StoreError> {
        loop {
            match wait_lock_session(dir)? {
                WaitedLock::Held(lock) => {
                    if require_log && !dir.join(LOG_FILE).exists() {
                        return Err(not_found(id));
                    }
                    return Ok(lock);
                }
                WaitedLock::Replaced => continue,
                WaitedLock::Gone => return Err(not_found(id)),
            }
        }
    }

    /// Tries to take a session's lock without waiting.
    pub(super) fn try_lock_dir(&self, dir: &Path) -> Result<Option<SessionLock>, StoreError> {
        try_lock_session(dir)
    }

    pub(super) fn write_meta_file(&self, dir: &Path, folded: &mut Folded) {
        let path = dir.join(META_FILE);
        match super::derived::write_meta(dir, &folded.meta, folded.valid_len) {
            Ok(()) => folded.meta_file_len = folded.valid_len,
            // The log is committed; metadata.json is rebuilt from it.
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cannot write metadata.json")
            }
        }
    }
}

/// `metadata.json` as read back: the folded metadata and the log length
/// it covers.
struct MetaFileIn {
    meta: SessionMeta,
    log_bytes: u64,
}

/// Reads bytes `start..end` of `file` (a session log at `path`), adding
/// what it read to `counter`.
pub(super) fn read_range(
    file: &File,
    start: u64,
    end: u64,
    path: &Path,
    counter: &AtomicU64,
) -> Result<Vec<u8>, StoreError> {
    let len = usize::try_from(end.saturating_sub(start)).map_err(|_| StoreError::Corrupt {
        location: path.display().to_string(),
        detail: "the log is too large for this platform".into(),
    })?;
    // read_to_end fills the buffer without zeroing it first.
    let mut buf = Vec::with_capacity(len);
    let mut reader = file;
    reader.seek(SeekFrom::Start(start)).at(path)?;
    reader.take(len as u64).read_to_end(&mut buf).at(path)?;
    counter.fetch_add(buf.len() as u64, Ordering::Relaxed);
    if buf.len() != len {
        return Err(io_err(
            path,
            std::io::Error::new(ErrorKind::UnexpectedEof, "the log shrank while it was read"),
        ));
    }
    Ok(buf)
}

/// Opens (creating it in an existing directory) a session's lock file,
/// never through a link.
pub(super) fn open_lock_file(path: &Path) -> std::io::Result<File> {
    no_follow()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
}

/// What waiting for a session's lock came to.
pub(super) enum WaitedLock {
    /// The lock, on the lock file that is there now.
    Held(SessionLock),
    /// The lock file was replaced while we waited (the directory removed
    /// and made again): wait on the new one.
    Replaced,
    /// The session directory or its lock file is gone.
    Gone,
}

/// Takes the advisory lock of the session directory `dir`, waiting for it.
pub(super) fn wait_lock_session(dir: &Path) -> Result<WaitedLock, StoreError> {
    let path = dir.join(LOCK_FILE);
    let file = match open_lock_file(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(WaitedLock::Gone),
        Err(e) => return Err(open_err(&path, e)),
    };
    file.lock().at(&path)?;
    // The directory may have been removed (and even recreated) while we
    // waited: the lock only counts if it is on the file that is there now.
    let held = file.metadata().at(&path)?.ino();
    match fs::metadata(&path) {
        Ok(now) if now.ino() == held => Ok(WaitedLock::Held(SessionLock { _file: Some(file) })),
        Ok(_) => Ok(WaitedLock::Replaced),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(WaitedLock::Gone),
        Err(e) => Err(io_err(&path, e)),
    }
}

/// Tries to take the advisory lock of the session directory `dir` without
/// waiting (None: another writer holds it, or the directory is gone).
pub(super) fn try_lock_session(dir: &Path) -> Result<Option<SessionLock>, StoreError> {
    let path = dir.join(LOCK_FILE);
    let file = match open_lock_file(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        // A read-only directory: lock the file that is there, if any
        // (nobody can be writing where no lock file can be made).
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::ReadOnlyFilesystem | ErrorKind::PermissionDenied
            ) =>
        {
            match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    return Ok(Some(SessionLock { _file: None }));
                }
                Err(e) => return Err(io_err(&path, e)),
            }
        }
        Err(e) => return Err(open_err(&path, e)),
    };
    match file.try_lock() {
        Ok(()) => Ok(Some(SessionLock { _file: Some(file) })),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(io_err(&path, e)),
    }
}
