//! [`FsStore`]: the default backend, plain files under the weft home.
//!
//! # Layout
//!
//! ```text
//! $WEFT_HOME/
//!   index.sqlite                      side index for listing (a cache, see below)
//!   writers/<instance>.lock           liveness locks of writing store instances
//!   state/<namespace>.json            shared state (`app:…`, `user:…`)
//!   projects/<slug>/sessions/<id>/
//!     log.jsonl                       the session log: the truth (format in `log`)
//!     metadata.json                   the folded SessionMeta (a cache)
//!     transcript.jsonl                default branch, Amplifier's line shape (derived)
//!     events.jsonl                    kernel events (capped)
//!     session.lock                    advisory lock for writers
//!     log.quarantine.jsonl            damaged committed records moved out of the log (see `recovery`)
//!     .<file>.tmp-<pid>               temp file of an atomic rewrite in flight
//!     turn.<branch>.lock              turn locks (see `crate::turn_lock`)
//! ```
//!
//! `<slug>` is the session's `project.slug` ([`weft_core::session::project_slug`]);
//! child sessions are sibling directories whose metadata names their parent.
//! Directory names read back are validated (session ids, slugs); others are
//! ignored with a warning.
//!
//! # Writes
//!
//! Every writer of a session (append, create, delete, events) holds an
//! exclusive advisory lock on its `session.lock` (`File::lock`, `flock(2)` on
//! Unix), so two processes never append at once. Under the lock the append
//! re-reads the log's head from the file (never from a cache another process
//! may have invalidated), checks `expected_seq`, truncates an uncommitted
//! tail left by a crash, writes the whole batch with one `write` and
//! fdatasyncs it before returning. Then, without fsync (all three are
//! rebuilt from the log when found stale), it appends the batch's lines to
//! `transcript.jsonl`, updates the index row, and — when the metadata
//! changed beyond its running counters (status, name, default branch), or
//! the log has outgrown the file by [`META_REFRESH_BYTES`] — rewrites
//! `metadata.json` (temp file + rename). Rewriting it on every append would
//! double the cost of a durable append on ext4, whose rename-over-a-file
//! forces the new file's data out with the next journal commit.
//!
//! Derived files never gate the log: they are written after the log
//! append, and a failure there (a full disk) is logged and repaired by a
//! later append or open — a torn `transcript.jsonl` incrementally (see
//! `transcript`). The temp file of an atomic rewrite is removed on every
//! error path; stale ones (writer gone, or older than a minute) are swept
//! at open (`state/`) and whenever reconcile re-reads a session. A full
//! disk is reported as "the disk is full: free some space and retry", and
//! appends work again as soon as space returns.
//!
//! # Robustness
//!
//! - Session files are opened with `O_NOFOLLOW`: a `log.jsonl` (or other
//!   session file) that is a symlink is refused with a clear error, never
//!   read or written through, and create never writes over one. A session
//!   *directory* that is a symlink is refused too (skipped with a warning
//!   by reconcile, refused by every operation on the session): writes
//!   would go outside the store.
//! - A read-only home opens without writing anything (the index is built
//!   in memory), can be listed and shown, and refuses writes with
//!   "WEFT_HOME … is read-only: …".
//! - A damaged committed last record is quarantined, its seq never reused
//!   (see `recovery`).
//!
//! # Reads
//!
//! Readers take no lock. `get` reads the head from the end of the log;
//! `metadata.json` records the log length it folds, so `get` uses it as it
//! is when it matches, folds the records after it otherwise, and folds the
//! whole log when it is missing or corrupt. `tail` and `read` read only
//! the end of the log, or the records they return (found by binary search
//! over byte offsets).
//!
//! # The index
//!
//! `index.sqlite` (WAL, `synchronous=OFF`) holds one row per session with
//! the listing columns and the folded metadata, so `list`, `find_ids` and
//! child lookups never open session directories. [`FsStore::open`]
//! reconciles it with the directories: it is rebuilt when missing or of
//! another schema; a project whose `sessions/` directory changed (mtime)
//! since the last scan is rescanned (new and removed sessions); sessions
//! touched by a store instance that died (its `writers/` lock is free) are
//! re-read, so a crash between a log write and its index update is
//! repaired; placeholders of crashed creates are resolved. A damaged index
//! is moved aside and rebuilt; one that cannot be opened or written (full
//! disk, read-only) is replaced by an index in memory built by scanning
//! the session directories (see `index`).
//!
//! # Events
//!
//! `events.jsonl` is capped at [`EVENTS_CAP_BYTES`]: when a write takes it
//! past the cap, the oldest half of the file is dropped (rewritten atomically
//! under the session lock). Events are observability data and are not
//! fsync'd.
//!
//! This backend is Unix-only (it uses positional reads and `flock`).

pub mod doctor;
mod index;
pub(crate) mod log;
mod queue;
mod recovery;
mod transcript;

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use weft_core::SessionId;
use weft_core::id::validate_id;
use weft_core::record::{Record, RecordKind, StateDelta, check_batch};
use weft_core::session::SessionMeta;
use weft_core::store::{DeleteOptions, ListQuery, Page, SearchHit, SearchQuery, Store, StoreError};

use crate::util::{
    IoContext, READ_ONLY_FS, blocking, io_err, is_symlink_refusal, mtime_ns, no_follow,
    sweep_temp_files, sync_dir, validate_slug, writable, write_atomic,
};
use index::{CLEAN, CREATING, Index};
use log::{BackLines, Head};
use queue::IndexQueue;

/// The session log's file name.
pub const LOG_FILE: &str = "log.jsonl";
/// The cached metadata's file name.
pub const META_FILE: &str = "metadata.json";
/// The Amplifier-shaped transcript's file name.
pub const TRANSCRIPT_FILE: &str = "transcript.jsonl";
/// The kernel events' file name.
pub const EVENTS_FILE: &str = "events.jsonl";
/// Where damaged committed records of a session's log are moved (see
/// `recovery`); `weft doctor` reports it.
pub const QUARANTINE_FILE: &str = "log.quarantine.jsonl";
/// The advisory lock file's name.
pub const LOCK_FILE: &str = "session.lock";
/// The side index's file name (in the store's root).
pub const INDEX_FILE: &str = "index.sqlite";
/// The size past which `events.jsonl` loses its oldest half.
pub const EVENTS_CAP_BYTES: u64 = 10 * 1024 * 1024;

/// How far the log may outgrow `metadata.json` before an append rewrites
/// it (readers fold the records after the point it covers).
pub const META_REFRESH_BYTES: u64 = 64 * 1024;

/// How many sessions' folded metadata a store keeps in memory.
const CACHE_CAP: usize = 4096;

/// The JSON-lines file store. See the module docs.
#[derive(Clone)]
pub struct FsStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for FsStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FsStore")
            .field("root", &self.inner.root)
            .finish()
    }
}

/// A session's fold at a known log head.
#[derive(Debug, Clone)]
struct Folded {
    ino: u64,
    valid_len: u64,
    meta: SessionMeta,
    /// The log length `metadata.json` covers (0: none or unreadable).
    meta_file_len: u64,
    /// The seq `transcript.jsonl` is known to reflect (None: unknown, check
    /// before appending to it).
    transcript_seq: Option<u64>,
}

#[derive(Debug, Clone, Default)]
struct Cached {
    dir_slug: String,
    folded: Option<Folded>,
}

struct Inner {
    root: PathBuf,
    projects: PathBuf,
    /// The home was read-only at open: no write was made, writes are
    /// refused with a clear message while it stays so.
    read_only: bool,
    index: Arc<Index>,
    /// Index row updates of appends, applied by a background thread.
    queue: IndexQueue,
    cache: Mutex<HashMap<SessionId, Cached>>,
    bytes_read: AtomicU64,
    /// This instance's liveness lock, taken at its first write.
    writer: Mutex<Option<Writer>>,
    /// Sessions recorded in the index's `touched` table for this instance.
    touched: Mutex<HashSet<SessionId>>,
}

/// A writing store instance's liveness lock (`writers/<id>.lock`, held
/// exclusively while the instance lives).
struct Writer {
    id: String,
    path: PathBuf,
    _lock: File,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.queue.shutdown();
        let writer = self
            .writer
            .get_mut()
            .map(Option::take)
            .unwrap_or_else(|p| p.into_inner().take());
        if let Some(w) = writer {
            // A clean shutdown: nothing this instance touched is in doubt.
            if self.index.forget_writer(&w.id).is_ok() {
                let _ = fs::remove_file(&w.path);
            }
        }
    }
}

/// `metadata.json`: the folded metadata plus the log length it folds.
#[derive(Serialize)]
struct MetaFileOut<'a> {
    #[serde(flatten)]
    meta: &'a SessionMeta,
    /// The log length the metadata folds.
    log_bytes: u64,
}

#[derive(Deserialize)]
struct MetaFileIn {
    #[serde(flatten)]
    meta: SessionMeta,
    #[serde(default)]
    log_bytes: u64,
}

fn not_found(id: &SessionId) -> StoreError {
    StoreError::NotFound(id.to_string())
}

fn encode_err(e: serde_json::Error) -> StoreError {
    StoreError::Backend {
        backend: "fs",
        message: format!("cannot encode a record: {e}"),
    }
}

impl FsStore {
    /// Opens (creating if needed) a store rooted at `root` (the weft home),
    /// rebuilding the side index from the session directories when it is
    /// missing or stale.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let root = root.into();
        let projects = root.join("projects");
        if !projects.is_dir()
            && let Err(e) = fs::create_dir_all(&projects)
        {
            // A read-only home without sessions is an empty store.
            if !root.is_dir() || writable(&root) {
                return Err(io_err(&projects, e));
            }
        }
        let read_only = !writable(&root);
        if read_only {
            tracing::warn!(home = %root.display(), "WEFT_HOME is read-only: sessions can be listed and shown, not changed");
        } else {
            sweep_temp_files(&root.join("state"));
        }
        let index_path = root.join(INDEX_FILE);
        let (index, rebuild, in_memory) = Index::open_or_recover(&index_path, read_only)?;
        let inner = Inner::new(root.clone(), read_only, index);
        match inner.reconcile(rebuild) {
            Ok(()) => Ok(Self {
                inner: Arc::new(inner),
            }),
            // The index failed part way (damaged, or it cannot be written:
            // a full disk): rebuild it, on disk when it was damaged, else
            // in memory from the session directories.
            Err(e) if !in_memory && index::fault_of(&e).is_some() => {
                drop(inner);
                let (index, _, _) = if index::fault_of(&e) == Some(index::Fault::Corrupt) {
                    tracing::warn!(index = %index_path.display(), error = %e, "the session index is damaged; rebuilding it");
                    let _ = fs::rename(&index_path, index_bad_path(&index_path));
                    for side in ["-wal", "-shm"] {
                        let _ = fs::remove_file(sidecar(&index_path, side));
                    }
                    Index::open_or_recover(&index_path, read_only)?
                } else {
                    tracing::warn!(index = %index_path.display(), error = %e, "cannot write the session index; listing scans the session directories instead (slower)");
                    (Index::in_memory(&index_path)?, true, true)
                };
                let inner = Inner::new(root, read_only, index);
                inner.reconcile(true)?;
                Ok(Self {
                    inner: Arc::new(inner),
                })
            }
            Err(e) => Err(e),
        }
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// The directory of session `id`, if it exists.
    pub fn session_dir(&self, id: &SessionId) -> Option<PathBuf> {
        self.inner
            .open_log(id)
            .ok()
            .map(|(slug, _)| self.inner.session_dir(&slug, id.as_str()))
    }

    /// Bytes read from session logs and event files since the store was
    /// opened (tests use it to check that `tail` does not read whole logs).
    pub fn bytes_read(&self) -> u64 {
        self.inner.bytes_read.load(Ordering::Relaxed)
    }

    /// Rescans every session directory and rewrites the index from them.
    pub fn rebuild_index(&self) -> Result<(), StoreError> {
        self.inner.queue.barrier();
        self.inner.reconcile(true)
    }

    /// The number of sessions in the index.
    pub fn indexed_sessions(&self) -> Result<u64, StoreError> {
        self.inner.queue.barrier();
        self.inner.index.count()
    }
}

/// Holds a session's advisory lock until dropped (no file: a read-only
/// session directory without a lock file, which nobody can be writing).
struct SessionLock {
    _file: Option<File>,
}

/// `<index>.bad-<time>`: where a damaged index found during reconcile goes.
fn index_bad_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(format!(
        ".bad-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%S%.6fZ")
    ));
    PathBuf::from(p)
}

/// `<index><suffix>` (`-wal`, `-shm`).
fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

/// The error of a failed no-follow open: a clear refusal for a symlink.
fn open_err(path: &Path, e: std::io::Error) -> StoreError {
    if is_symlink_refusal(&e) {
        symlink_refused(path)
    } else {
        io_err(path, e)
    }
}

/// The error for a session file or directory that is a symlink.
fn symlink_refused(path: &Path) -> StoreError {
    StoreError::Refused(format!(
        "{} is a symbolic link: weft does not read or write session files through links; replace it with the real file or directory",
        path.display()
    ))
}

impl Inner {
    fn new(root: PathBuf, read_only: bool, index: Index) -> Self {
        let index = Arc::new(index);
        Inner {
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
    fn check_writable(&self) -> Result<(), StoreError> {
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

    fn sessions_dir(&self, slug: &str) -> PathBuf {
        self.projects.join(slug).join("sessions")
    }

    fn session_dir(&self, slug: &str, id: &str) -> PathBuf {
        self.sessions_dir(slug).join(id)
    }

    fn cache(&self) -> MutexGuard<'_, HashMap<SessionId, Cached>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn remember(&self, id: &SessionId, dir_slug: &str, folded: Option<Folded>) {
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
    fn writer_id(&self) -> Result<String, StoreError> {
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
    fn touch(&self, id: &SessionId) {
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
    fn reap_dead_writers(&self) -> Result<(), StoreError> {
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

    fn forget(&self, id: &SessionId) {
        self.cache().remove(id);
    }

    /// Opens a session's log, finding its directory through the cache, the
    /// index, then a scan of the project directories.
    fn open_log(&self, id: &SessionId) -> Result<(String, File), StoreError> {
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
    fn project_slugs(&self) -> Result<Vec<String>, StoreError> {
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
    fn head(&self, file: &File, location: &Path) -> Result<(Head, u64), StoreError> {
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
                tracing::warn!(
                    log = %location.display(),
                    seq = d.last_seq,
                    "the last record of a session log is damaged (complete but unreadable): it is skipped, its seq stays used, and the next append moves it to {QUARANTINE_FILE}"
                );
                head.last_seq = head.last_seq.max(d.last_seq);
            }
            if let Some(dir) = location.parent() {
                head.last_seq = head.last_seq.max(self.quarantined_seq(dir)?);
            }
        }
        Ok((head, md.ino()))
    }

    fn read_bytes(
        &self,
        file: &File,
        start: u64,
        end: u64,
        path: &Path,
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
        self.bytes_read
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        if buf.len() != len {
            return Err(io_err(
                path,
                std::io::Error::new(ErrorKind::UnexpectedEof, "the log shrank while it was read"),
            ));
        }
        Ok(buf)
    }

    /// The session's metadata at `head`: from the cache, else metadata.json
    /// plus the records after it, else a fold of the whole log.
    fn folded(
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
            Ok(bytes) => match serde_json::from_slice::<MetaFileIn>(&bytes) {
                Ok(m) if m.meta.id == *id => Some(m),
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
        if let Some(m) = from_file
            && m.log_bytes > 0
            && m.log_bytes <= head.valid_len
            && m.meta.last_seq <= head.last_seq
        {
            if m.log_bytes == head.valid_len && m.meta.last_seq == head.last_seq {
                return Ok(Folded {
                    ino,
                    valid_len: head.valid_len,
                    meta: m.meta,
                    meta_file_len: m.log_bytes,
                    transcript_seq: None,
                });
            }
            // Fold the records metadata.json does not cover yet.
            let mut boundary = [0u8; 1];
            file.read_exact_at(&mut boundary, m.log_bytes - 1)
                .at(&log_path)?;
            if boundary[0] == b'\n' {
                let bytes = self.read_bytes(file, m.log_bytes, head.valid_len, &log_path)?;
                let mut records = Vec::new();
                log::parse_lines(&bytes, m.log_bytes, 1, usize::MAX, &location, &mut records);
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
                            transcript_seq: None,
                        });
                    }
                }
            }
        }
        // Fold the whole log.
        let bytes = self.read_bytes(file, 0, head.valid_len, &log_path)?;
        let records = log::parse_all_parallel(&bytes, 0, &location);
        let mut meta = fold_meta(id, &records, &location)?;
        // Seqs of quarantined or damaged records are used up.
        meta.last_seq = meta.last_seq.max(head.last_seq);
        Ok(Folded {
            ino,
            valid_len: head.valid_len,
            meta,
            meta_file_len: 0,
            transcript_seq: None,
        })
    }

    /// Takes the advisory lock of a session directory, waiting for it. With
    /// `require_log`, fails with NotFound when the session is gone (deleted
    /// while we waited).
    fn lock_dir(
        &self,
        id: &SessionId,
        dir: &Path,
        require_log: bool,
    ) -> Result<SessionLock, StoreError> {
        let path = dir.join(LOCK_FILE);
        loop {
            let file = match no_follow()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
            {
                Ok(f) => f,
                Err(e) if e.kind() == ErrorKind::NotFound => return Err(not_found(id)),
                Err(e) => return Err(open_err(&path, e)),
            };
            file.lock().at(&path)?;
            // The directory may have been removed (and even recreated)
            // while we waited: the lock only counts if it is on the file
            // that is there now.
            let held = file.metadata().at(&path)?.ino();
            match fs::metadata(&path) {
                Ok(now) if now.ino() == held => {}
                Ok(_) => continue,
                Err(e) if e.kind() == ErrorKind::NotFound => return Err(not_found(id)),
                Err(e) => return Err(io_err(&path, e)),
            }
            if require_log && !dir.join(LOG_FILE).exists() {
                return Err(not_found(id));
            }
            return Ok(SessionLock { _file: Some(file) });
        }
    }

    /// Tries to take a session's lock without waiting.
    fn try_lock_dir(&self, dir: &Path) -> Result<Option<SessionLock>, StoreError> {
        let path = dir.join(LOCK_FILE);
        let file = match no_follow()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
        {
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

    fn write_meta_file(&self, dir: &Path, folded: &mut Folded) {
        let out = MetaFileOut {
            meta: &folded.meta,
            log_bytes: folded.valid_len,
        };
        let path = dir.join(META_FILE);
        let result = serde_json::to_vec_pretty(&out)
            .map_err(encode_err)
            .and_then(|bytes| write_atomic(&path, &bytes, false));
        match result {
            Ok(()) => folded.meta_file_len = folded.valid_len,
            // The log is committed; metadata.json is rebuilt from it.
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cannot write metadata.json")
            }
        }
    }

    // ---- operations --------------------------------------------------

    fn create(
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
        let bytes = log::encode_batch(&records).map_err(encode_err)?;

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
            transcript_seq: None,
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
            Ok(()) => folded.transcript_seq = Some(folded.meta.last_seq),
            Err(e) => {
                // Leave no partial file: the next append writes it whole.
                let _ = fs::remove_file(&transcript_path);
                tracing::warn!(file = %transcript_path.display(), error = %crate::util::explain(e), "cannot write transcript.jsonl; the next append repairs it")
            }
        }
        self.write_meta_file(&dir, &mut folded);
        if let Err(e) = self.index.upsert(&slug, &folded.meta, folded.valid_len) {
            tracing::warn!(session = %id, error = %e, "cannot index a new session; the next open reindexes it");
        }
        let meta = folded.meta.clone();
        self.remember(&id, &slug, Some(folded));
        Ok(meta)
    }

    fn get(&self, id: &SessionId) -> Result<SessionMeta, StoreError> {
        let (slug, file) = self.open_log(id)?;
        let dir = self.session_dir(&slug, id.as_str());
        let (head, ino) = self.head(&file, &dir.join(LOG_FILE))?;
        let folded = self.folded(id, &dir, &file, head, ino)?;
        let meta = folded.meta.clone();
        self.remember(id, &slug, Some(folded));
        Ok(meta)
    }

    /// Locks a session for writing: its project slug, directory and lock.
    /// Uses the cached location when there is one (falling back to a fresh
    /// lookup if the session moved or vanished).
    fn lock_session(&self, id: &SessionId) -> Result<(String, PathBuf, SessionLock), StoreError> {
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

    fn append(
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
        let bytes = log::encode_batch(&records).map_err(encode_err)?;
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
        let prev_default = folded.meta.default_branch.clone();
        for r in &records {
            folded.meta.apply(r);
        }
        folded.valid_len = head.valid_len + bytes.len() as u64;
        let transcript = if folded.transcript_seq == Some(expected_seq) {
            self.write_transcript_records(&dir, &file, &folded, &records, &prev_default)
                .map(|()| folded.transcript_seq = Some(folded.meta.last_seq))
        } else {
            // Unknown or behind: repair it (cut a torn line, add what is
            // missing, this batch included).
            folded.transcript_seq = None;
            self.catch_up_transcript(&dir, &file, &mut folded)
        };
        if let Err(e) = transcript {
            tracing::warn!(session = %id, error = %e, "cannot update transcript.jsonl; the next append repairs it");
            folded.transcript_seq = None;
        }
        // metadata.json is refreshed when the metadata changes beyond the
        // running counters, or when the log has outgrown it by
        // META_REFRESH_BYTES; readers fold the records after it.
        let changes_meta = records.iter().any(|r| {
            matches!(
                r.kind,
                RecordKind::Status(_) | RecordKind::Meta(_) | RecordKind::DefaultBranch { .. }
            )
        });
        if changes_meta
            || folded.meta_file_len == 0
            || folded.valid_len - folded.meta_file_len >= META_REFRESH_BYTES
        {
            self.write_meta_file(&dir, &mut folded);
        }
        self.queue
            .push(&self.index, &slug, &folded.meta, folded.valid_len);
        let meta = folded.meta.clone();
        self.remember(id, &slug, Some(folded));
        Ok(meta)
    }

    fn read(
        &self,
        id: &SessionId,
        from_seq: u64,
        limit: Option<usize>,
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
                return Ok(log::parse_all_parallel(&bytes, start, &location));
            }
            let mut out = Vec::new();
            log::parse_lines(&bytes, start, from, usize::MAX, &location, &mut out);
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
            log::parse_lines(&bytes[..=last_nl], pos, from, limit, &location, &mut out);
            pos += last_nl as u64 + 1;
            chunk = (chunk * 2).min(8 * 1024 * 1024);
        }
        Ok(out)
    }

    fn tail(&self, id: &SessionId, n: usize) -> Result<Vec<Record>, StoreError> {
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

    fn delete(&self, id: &SessionId, options: DeleteOptions) -> Result<Vec<SessionId>, StoreError> {
        self.check_writable()?;
        let (slug, _) = self.open_log(id)?;
        let dir = self.session_dir(&slug, id.as_str());
        let lock = self.lock_dir(id, &dir, true)?;
        if options.unless_active {
            let log_path = dir.join(LOG_FILE);
            let file = File::open(&log_path).at(&log_path)?;
            let (head, ino) = self.head(&file, &log_path)?;
            let folded = self.folded(id, &dir, &file, head, ino)?;
            if folded.meta.status == weft_core::SessionStatus::Active {
                return Err(StoreError::Refused(format!(
                    "session {id} is active: it cannot be removed"
                )));
            }
        }
        let mut doomed = vec![id.clone()];
        if options.with_children {
            self.queue.barrier();
            let mut seen: HashSet<SessionId> = doomed.iter().cloned().collect();
            let mut i = 0;
            while i < doomed.len() {
                for child in self.index.children(&doomed[i])? {
                    if seen.insert(child.clone()) {
                        doomed.push(child);
                    }
                }
                i += 1;
            }
        }
        self.remove_session(id, &slug, &dir, lock)?;
        let mut removed = vec![id.clone()];
        for child in doomed.into_iter().skip(1) {
            let Ok((child_slug, _)) = self.open_log(&child) else {
                continue;
            };
            let child_dir = self.session_dir(&child_slug, child.as_str());
            match self.lock_dir(&child, &child_dir, true) {
                Ok(lock) => {
                    self.remove_session(&child, &child_slug, &child_dir, lock)?;
                    removed.push(child);
                }
                Err(StoreError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(removed)
    }

    /// Removes a session directory (renamed away first, so a crash never
    /// leaves half a session) and its index row, holding its lock.
    fn remove_session(
        &self,
        id: &SessionId,
        slug: &str,
        dir: &Path,
        lock: SessionLock,
    ) -> Result<(), StoreError> {
        let sessions_dir = self.sessions_dir(slug);
        let trash = sessions_dir.join(format!(
            ".trash-{}-{}-{}",
            id,
            std::process::id(),
            chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
        ));
        self.index.remove_with(id, slug, || {
            let before = fs::metadata(&sessions_dir)
                .map(|m| mtime_ns(&m))
                .at(&sessions_dir)?;
            fs::rename(dir, &trash).at(dir)?;
            let after = fs::metadata(&sessions_dir)
                .map(|m| mtime_ns(&m))
                .at(&sessions_dir)?;
            Ok((before, after))
        })?;
        let _ = sync_dir(&sessions_dir);
        drop(lock);
        self.forget(id);
        if let Err(e) = fs::remove_dir_all(&trash) {
            tracing::warn!(dir = %trash.display(), error = %e, "cannot remove a deleted session's files; the next open retries");
        }
        Ok(())
    }

    fn search(&self, query: &SearchQuery) -> Result<Vec<SearchHit>, StoreError> {
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
        self.queue.barrier();
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
            for line in bytes.split(|&b| b == b'\n') {
                if line.is_empty() || !might_be_message(line) {
                    continue;
                }
                if !plain.is_empty() {
                    let lower = String::from_utf8_lossy(line).to_lowercase();
                    if !plain.iter().all(|t| lower.contains(t.as_str())) {
                        continue;
                    }
                }
                let Ok(record) = log::parse_line(line) else {
                    continue;
                };
                if let Some(m) = record.as_message()
                    && query.matches_text(&m.searchable_text())
                {
                    hits.push(SearchHit::new(&meta, record.seq, m, query));
                    if hits.len() >= query.effective_limit() {
                        return Ok(hits);
                    }
                }
            }
        }
        Ok(hits)
    }

    // ---- shared state ------------------------------------------------

    fn state_path(&self, namespace: &str) -> Result<PathBuf, StoreError> {
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

    fn shared_state(&self, namespace: &str) -> Result<Map<String, Value>, StoreError> {
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

    fn update_shared_state(
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

    // ---- events ------------------------------------------------------

    fn write_events(&self, id: &SessionId, events: &[Value]) -> Result<(), StoreError> {
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

    fn read_events(&self, id: &SessionId, limit: usize) -> Result<Vec<Value>, StoreError> {
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

    // ---- index maintenance -------------------------------------------

    /// Brings the index in line with the session directories: projects whose
    /// `sessions/` directory changed since the last scan are rescanned,
    /// vanished projects are dropped, sessions touched by writers that died
    /// are refreshed, and placeholders of crashed creates are resolved.
    /// With `rebuild`, every project is rescanned.
    fn reconcile(&self, rebuild: bool) -> Result<(), StoreError> {
        let scans = if rebuild {
            HashMap::new()
        } else {
            self.index.project_scans()?
        };
        let mut seen = HashSet::new();
        for slug in self.project_slugs()? {
            let sessions = self.sessions_dir(&slug);
            let mtime = match fs::metadata(&sessions) {
                Ok(m) if m.is_dir() => mtime_ns(&m),
                Ok(_) => {
                    doctor::note_stray(&sessions, "not a directory");
                    continue;
                }
                Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
                    continue;
                }
                Err(e) => return Err(io_err(&sessions, e)),
            };
            seen.insert(slug.clone());
            if rebuild || scans.get(&slug) != Some(&mtime) {
                self.rescan_project(&slug, mtime, rebuild)?;
            }
        }
        for slug in scans.keys() {
            if !seen.contains(slug) {
                self.index.remove_project(slug)?;
            }
        }
        if !self.read_only {
            self.reap_dead_writers()?;
        }
        for (id, slug) in self.index.pending()? {
            let Ok(id) = SessionId::parse(id.as_str()) else {
                self.index.remove(&id)?;
                continue;
            };
            if let Err(e) = self.refresh_row(&id, &slug) {
                tracing::warn!(session = %id, error = %e, "cannot refresh a pending index row");
            }
        }
        Ok(())
    }

    fn rescan_project(&self, slug: &str, mtime_before: i64, all: bool) -> Result<(), StoreError> {
        let sessions = self.sessions_dir(slug);
        let known = self.index.ids_in_dir(slug)?;
        let mut present = HashSet::new();
        let entries = match fs::read_dir(&sessions) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err(&sessions, e)),
        };
        for entry in entries {
            let entry = entry.at(&sessions)?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with(".trash-") {
                if !self.read_only {
                    let _ = fs::remove_dir_all(entry.path());
                }
                continue;
            }
            if name.starts_with('.') {
                continue;
            }
            if entry.file_type().is_ok_and(|t| t.is_symlink()) {
                tracing::warn!(dir = %entry.path().display(), "ignoring a session directory that is a symbolic link: weft does not write through links");
                continue;
            }
            let Ok(id) = SessionId::parse(name) else {
                doctor::note_stray(&entry.path(), "its name is not a session id");
                continue;
            };
            present.insert(id.to_string());
            if (all || known.get(name) != Some(&CLEAN))
                && let Err(e) = self.refresh_row(&id, slug)
            {
                tracing::warn!(session = %id, error = %e, "cannot index a session directory");
            }
        }
        for id in known.keys() {
            if !present.contains(id) {
                self.index.remove(id)?;
            }
        }
        self.index.set_project_scan(slug, mtime_before)
    }

    /// Re-reads one session directory into its index row (dropping the row
    /// when the directory holds no committed session). Skips sessions whose
    /// lock is held: their writer updates the row itself.
    fn refresh_row(&self, id: &SessionId, slug: &str) -> Result<(), StoreError> {
        let dir = self.session_dir(slug, id.as_str());
        let Some(_lock) = self.try_lock_dir(&dir)? else {
            return Ok(());
        };
        if !self.read_only {
            // A writer that died mid-write may have left a temp file.
            sweep_temp_files(&dir);
        }
        self.index_from_disk(id, slug, &dir)
    }

    /// Writes a session's index row from its directory (the caller holds its
    /// lock, or accepts the row's monotonic guard as enough).
    fn index_from_disk(&self, id: &SessionId, slug: &str, dir: &Path) -> Result<(), StoreError> {
        let log_path = dir.join(LOG_FILE);
        let file = match File::open(&log_path) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return self.index.remove(id.as_str());
            }
            Err(e) => return Err(io_err(&log_path, e)),
        };
        let (head, ino) = self.head(&file, &log_path)?;
        if head.last_seq == 0 {
            return self.index.remove(id.as_str());
        }
        let folded = self.folded(id, dir, &file, head, ino)?;
        self.index.upsert(slug, &folded.meta, folded.valid_len)?;
        self.remember(id, slug, Some(folded));
        Ok(())
    }
}

/// Whether a log line may hold a message record (every line our writer
/// makes for one contains this; lines of unknown shape are parsed anyway).
fn might_be_message(line: &[u8]) -> bool {
    const MESSAGE: &[u8] = b"\"kind\":{\"type\":\"message\"";
    const ANY: &[u8] = b"\"kind\":{\"type\":\"";
    contains(line, MESSAGE) || !contains(line, ANY)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Whether `dir` holds a log with at least one committed record.
fn has_committed_log(dir: &Path, counter: &AtomicU64) -> Result<bool, StoreError> {
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

/// Folds a whole log into metadata, checking it starts with this session's
/// `session_created`.
fn fold_meta(
    id: &SessionId,
    records: &[Record],
    location: &str,
) -> Result<SessionMeta, StoreError> {
    let Some(first) = records.first() else {
        return Err(StoreError::Corrupt {
            location: location.to_string(),
            detail: "the log holds no readable record".into(),
        });
    };
    let RecordKind::SessionCreated(created) = &first.kind else {
        return Err(StoreError::Corrupt {
            location: location.to_string(),
            detail: "the log does not start with session_created".into(),
        });
    };
    if created.id != *id {
        return Err(StoreError::Corrupt {
            location: location.to_string(),
            detail: format!("the log belongs to session {}, not {id}", created.id),
        });
    }
    let mut meta = (**created).clone();
    for r in records {
        meta.apply(r);
    }
    Ok(meta)
}

#[async_trait]
impl Store for FsStore {
    fn kind(&self) -> &'static str {
        "fs"
    }

    async fn create(
        &self,
        meta: SessionMeta,
        initial: Vec<RecordKind>,
    ) -> Result<SessionMeta, StoreError> {
        blocking("fs", &self.inner, move |i| i.create(meta, initial)).await
    }

    async fn get(&self, id: &SessionId) -> Result<SessionMeta, StoreError> {
        let id = id.clone();
        blocking("fs", &self.inner, move |i| i.get(&id)).await
    }

    async fn append(
        &self,
        id: &SessionId,
        expected_seq: u64,
        records: Vec<Record>,
    ) -> Result<SessionMeta, StoreError> {
        let id = id.clone();
        blocking("fs", &self.inner, move |i| {
            i.append(&id, expected_seq, records)
        })
        .await
    }

    async fn read(
        &self,
        id: &SessionId,
        from_seq: u64,
        limit: Option<usize>,
    ) -> Result<Vec<Record>, StoreError> {
        let id = id.clone();
        blocking("fs", &self.inner, move |i| i.read(&id, from_seq, limit)).await
    }

    async fn tail(&self, id: &SessionId, n: usize) -> Result<Vec<Record>, StoreError> {
        let id = id.clone();
        blocking("fs", &self.inner, move |i| i.tail(&id, n)).await
    }

    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        let query = query.clone();
        blocking("fs", &self.inner, move |i| {
            i.queue.barrier();
            i.index.list(&query)
        })
        .await
    }

    async fn find_ids(&self, prefix: &str, limit: usize) -> Result<Vec<SessionId>, StoreError> {
        let prefix = prefix.to_string();
        blocking("fs", &self.inner, move |i| {
            i.queue.barrier();
            i.index.find_ids(&prefix, limit)
        })
        .await
    }

    async fn delete(
        &self,
        id: &SessionId,
        options: DeleteOptions,
    ) -> Result<Vec<SessionId>, StoreError> {
        let id = id.clone();
        blocking("fs", &self.inner, move |i| i.delete(&id, options)).await
    }

    async fn search(&self, query: &SearchQuery) -> Result<Vec<SearchHit>, StoreError> {
        let query = query.clone();
        blocking("fs", &self.inner, move |i| i.search(&query)).await
    }

    async fn shared_state(&self, namespace: &str) -> Result<Map<String, Value>, StoreError> {
        let namespace = namespace.to_string();
        blocking("fs", &self.inner, move |i| i.shared_state(&namespace)).await
    }

    async fn update_shared_state(
        &self,
        namespace: &str,
        delta: &StateDelta,
    ) -> Result<Map<String, Value>, StoreError> {
        let namespace = namespace.to_string();
        let delta = delta.clone();
        blocking("fs", &self.inner, move |i| {
            i.update_shared_state(&namespace, &delta)
        })
        .await
    }

    async fn write_events(&self, id: &SessionId, events: &[Value]) -> Result<(), StoreError> {
        let id = id.clone();
        let events = events.to_vec();
        blocking("fs", &self.inner, move |i| i.write_events(&id, &events)).await
    }

    async fn read_events(&self, id: &SessionId, limit: usize) -> Result<Vec<Value>, StoreError> {
        let id = id.clone();
        blocking("fs", &self.inner, move |i| i.read_events(&id, limit)).await
    }
    // Turn locks: `turn.<branch>.lock` in the session directory.
    async fn try_lock_turn(
        &self,
        id: &SessionId,
        branch: &weft_core::BranchId,
        holder: &weft_core::lease::TurnHolder,
    ) -> Result<weft_core::lease::TurnLockAttempt, StoreError> {
        let dir = self
            .session_dir(id)
            .ok_or_else(|| StoreError::NotFound(id.to_string()))?;
        crate::turn_lock::try_lock_turn(&dir, branch, holder)
    }

    async fn turn_locks(
        &self,
        id: &SessionId,
    ) -> Result<Vec<weft_core::lease::TurnLockInfo>, StoreError> {
        let dir = self
            .session_dir(id)
            .ok_or_else(|| StoreError::NotFound(id.to_string()))?;
        crate::turn_lock::turn_locks(&dir)
    }

    async fn quarantined(&self, id: &SessionId) -> Result<Vec<u64>, StoreError> {
        let dir = self
            .session_dir(id)
            .ok_or_else(|| StoreError::NotFound(id.to_string()))?;
        recovery::quarantined_seqs(&dir)
    }
}
