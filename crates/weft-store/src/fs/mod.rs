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
//!     metadata.json                   the folded SessionMeta (a cache) plus Amplifier's keys (see `meta_file`)
//!     parent_id                       a delegated session's parent (Amplifier's link)
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
//! fdatasyncs it before returning. Everything else is derived from the log
//! and written afterwards, without fsync, by the store's background worker
//! (`queue`, `derived`), which gathers ~20 ms of appends: the index row,
//! the new lines of `transcript.jsonl`, and — when a turn started, the
//! metadata changed beyond its running counters (status, name, default
//! branch), or the log has outgrown the file by [`META_REFRESH_BYTES`] —
//! `metadata.json` (temp file + rename). Writing them in the append would
//! cost it a second flush on ext4, whose rename-over-a-file forces the new
//! file's data out with the next journal commit (the one the append's own
//! `fdatasync` waits for). They are current within a few tens of
//! milliseconds, when the store closes, or after
//! [`FsStore::flush_derived`]; after a crash the next append, or the next
//! open (for sessions the dead writer touched), brings them up to date.
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

mod derived;
pub mod doctor;
mod index;
pub(crate) mod log;
pub mod meta_file;
mod queue;
mod recovery;
mod transcript;

mod append;
mod lifecycle;
mod read;
mod reconcile;
mod session;
mod state;
mod store_impl;

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use weft_core::SessionId;
use weft_core::progress::{NoProgress, Progress};
use weft_core::record::{Record, RecordKind};
use weft_core::session::SessionMeta;
use weft_core::store::StoreError;

use crate::blocking::Blocking;
use crate::util::{io_err, is_symlink_refusal, sweep_temp_files, writable};
use index::Index;
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

/// The JSON-lines file store. See the module docs. Its blocking half is
/// [`FsBackend`]; [`Blocking`] runs it on tokio's blocking pool.
pub type FsStore = Blocking<FsBackend>;

impl std::fmt::Debug for FsBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FsStore").field("root", &self.root).finish()
    }
}

/// A session's fold at a known log head.
#[derive(Debug, Clone)]
struct Folded {
    ino: u64,
    valid_len: u64,
    meta: SessionMeta,
    /// The log length `metadata.json` covers (0: none or unreadable), or
    /// will cover once the worker has written it.
    meta_file_len: u64,
}

#[derive(Debug, Clone, Default)]
struct Cached {
    dir_slug: String,
    folded: Option<Folded>,
}

/// The blocking half of [`FsStore`]: the session directories, the side
/// index and the caches, with the synchronous
/// [`BlockingStore`](crate::blocking::BlockingStore) operations.
pub struct FsBackend {
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

impl Drop for FsBackend {
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

fn not_found(id: &SessionId) -> StoreError {
    StoreError::NotFound(id.to_string())
}

fn encode_err(e: serde_json::Error) -> StoreError {
    StoreError::Backend {
        backend: "fs",
        message: format!("cannot encode as JSON: {e}"),
    }
}

impl FsStore {
    /// Opens (creating if needed) a store rooted at `root` (the weft home),
    /// rebuilding the side index from the session directories when it is
    /// missing or stale.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        Self::open_reporting(root, &NoProgress)
    }

    /// [`FsStore::open`], telling `progress` of the session directories a
    /// rebuild of the index (a migration, a missing or damaged index) goes
    /// through; an open that rebuilds nothing tells it nothing.
    pub fn open_reporting(
        root: impl Into<PathBuf>,
        progress: &dyn Progress,
    ) -> Result<Self, StoreError> {
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
        let backend = FsBackend::new(root.clone(), read_only, index);
        match backend.reconcile(rebuild, progress) {
            Ok(()) => Ok(Blocking::new(backend)),
            // The index failed part way (damaged, or it cannot be written:
            // a full disk): rebuild it, on disk when it was damaged, else
            // in memory from the session directories.
            Err(e) if !in_memory && index::fault_of(&e).is_some() => {
                drop(backend);
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
                let backend = FsBackend::new(root, read_only, index);
                backend.reconcile(true, progress)?;
                Ok(Blocking::new(backend))
            }
            Err(e) => Err(e),
        }
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.backend().root
    }

    /// The directory of session `id`, if it exists.
    pub fn session_dir(&self, id: &SessionId) -> Option<PathBuf> {
        self.backend().session_dir_of(id)
    }

    /// Bytes read from session logs and event files since the store was
    /// opened (tests use it to check that `tail` does not read whole logs).
    pub fn bytes_read(&self) -> u64 {
        self.backend().bytes_read.load(Ordering::Relaxed)
    }

    /// Rescans every session directory and rewrites the index from them.
    pub fn rebuild_index(&self) -> Result<(), StoreError> {
        self.backend().queue.barrier(false);
        self.backend().reconcile(true, &NoProgress)
    }

    /// Waits until `transcript.jsonl`, `metadata.json` and the index row
    /// of every session appended to through this store reflect those
    /// appends. They are brought up to date in the background within a few
    /// tens of milliseconds, and when the store closes; a caller about to
    /// hand the session directory to another reader (an Amplifier tool, a
    /// backup) calls this first. Gives up after ten seconds of a session's
    /// lock being held by another writer (that writer updates them).
    pub fn flush_derived(&self) {
        self.backend().queue.barrier(true);
    }

    /// The number of sessions in the index.
    pub fn indexed_sessions(&self) -> Result<u64, StoreError> {
        self.backend().queue.barrier(false);
        self.backend().index.count()
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
