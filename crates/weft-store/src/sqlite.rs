//! [`SqliteStore`]: every session in one SQLite database file.
//!
//! # Schema
//!
//! - `sessions(id PRIMARY KEY, project, updated_us, status, parent_id, name,
//!   profile, last_seq, meta)`: the folded [`SessionMeta`] as JSON plus the
//!   columns listing filters and sorts on, with indexes for newest-first
//!   listing (overall and per project) and for children.
//! - `records(session_id, seq, rid, kind, record, PRIMARY KEY(session_id,
//!   seq)) WITHOUT ROWID`: the log, one record JSON per row, stored in
//!   (session, seq) order so a session's log is one range scan. The primary
//!   key is the backend's own guard against two writers landing the same
//!   seq; `rid` (unique, increasing) keys the search index.
//! - `message_fts`: a contentless FTS5 table (trigram tokenizer, so search
//!   matches substrings case-insensitively; `detail=none`, so it stores no
//!   positions and a term is looked up as all of its trigrams, each hit then
//!   checked for the real substring) over each message's searchable text,
//!   keyed by `records.rid`. Messages are indexed in batches, not in
//!   the append's transaction (an FTS5 insert per commit would add half
//!   again to a durable append): `fts_state.indexed_rid` marks how far the
//!   index goes; an append that finds [`FTS_BATCH`] or more messages waiting
//!   indexes them after its commit, and `search` indexes whatever is
//!   waiting before it queries, so it never misses a message.
//! - `shared_state(namespace PRIMARY KEY, state)` and `events(session_id, n,
//!   event)` (the newest [`SQLITE_EVENTS_CAP`] events per session are kept).
//!
//! # Durability and concurrency
//!
//! WAL mode with `synchronous=FULL` on the connection that writes sessions:
//! every append is one `BEGIN IMMEDIATE` transaction that re-reads the head,
//! checks `expected_seq`, inserts the batch and updates the metadata, and its
//! commit fsyncs the WAL before `append` returns. Events go through a
//! second connection with `synchronous=NORMAL` (observability data; a power
//! loss may drop the newest). Reads use a third connection, so they never
//! wait behind a commit's fsync. Several processes may share the file
//! (SQLite's locks, `busy_timeout` 30 s). All calls run on tokio's blocking
//! pool ([`Blocking`]); records are stored as `crate::codec` lines.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use serde_json::{Map, Value};
use weft_core::SessionId;
use weft_core::record::{Record, RecordKind, StateDelta, check_batch};
use weft_core::session::{SessionMeta, SessionStatus};
use weft_core::store::{DeleteOptions, ListQuery, Page, SearchHit, SearchQuery, StoreError};

use crate::blocking::Blocking;
use crate::util::{to_i64, to_u64};

mod log;
mod query;
mod schema;
mod store_impl;

use schema::create_schema;

/// How many kernel events the sqlite store keeps per session.
pub const SQLITE_EVENTS_CAP: i64 = 10_000;

/// How many messages may wait for the full-text index before an append
/// indexes them.
pub const FTS_BATCH: u64 = 256;

/// The SQLite store. See the module docs. Its blocking half is
/// [`SqliteBackend`]; [`Blocking`] runs it on tokio's blocking pool.
pub type SqliteStore = Blocking<SqliteBackend>;

impl std::fmt::Debug for SqliteBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

/// The blocking half of [`SqliteStore`]: the database's connections and
/// caches, with the synchronous
/// [`BlockingStore`](crate::blocking::BlockingStore) operations.
pub struct SqliteBackend {
    path: PathBuf,
    writer: Mutex<Connection>,
    reader: Mutex<Connection>,
    events: Mutex<Connection>,
    /// Messages appended (by this process) since the last indexing pass.
    fts_pending: std::sync::atomic::AtomicU64,
    /// Folded metadata by session, used while its `last_seq` and
    /// `updated_us` match the row's (saves parsing the JSON on every
    /// append; another process's append changes both).
    metas: Mutex<HashMap<SessionId, SessionMeta>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // SQLite rolls back an unfinished transaction when its guard drops, so
    // a poisoned connection is still consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn db(e: rusqlite::Error) -> StoreError {
    // A full disk says the fix, as the fs backend does.
    let message = match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DiskFull) => format!("{} ({e})", crate::util::DISK_FULL),
        _ => e.to_string(),
    };
    StoreError::Backend {
        backend: "sqlite",
        message,
    }
}

fn corrupt(location: String, e: serde_json::Error) -> StoreError {
    StoreError::Corrupt {
        location,
        detail: e.to_string(),
    }
}

fn encode<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Backend {
        backend: "sqlite",
        message: format!("cannot encode: {e}"),
    })
}

fn not_found(id: &SessionId) -> StoreError {
    StoreError::NotFound(id.to_string())
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let path = path.into();
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|e| StoreError::Io {
                path: parent.display().to_string(),
                source: e,
            })?;
        }
        let open = |sync: &str| -> Result<Connection, StoreError> {
            let conn = Connection::open(&path).map_err(db)?;
            conn.busy_timeout(std::time::Duration::from_secs(30))
                .map_err(db)?;
            conn.pragma_update(None, "journal_mode", "WAL")
                .map_err(db)?;
            conn.pragma_update(None, "synchronous", sync).map_err(db)?;
            Ok(conn)
        };
        let writer = open("FULL")?;
        // Checkpoint every ~40 MB of WAL instead of ~4 MB: every commit
        // rewrites the same few pages (the session row, its index entries),
        // which a checkpoint then copies once instead of ten times.
        writer
            .pragma_update(None, "wal_autocheckpoint", 10_000i64)
            .map_err(db)?;
        create_schema(&writer).map_err(db)?;
        let reader = open("FULL")?;
        // Reads map the file instead of copying pages through SQLite's
        // small default cache.
        reader
            .pragma_update(None, "mmap_size", 256i64 * 1024 * 1024)
            .map_err(db)?;
        reader
            .pragma_update(None, "cache_size", -64i64 * 1024)
            .map_err(db)?;
        let events = open("NORMAL")?;
        Ok(Blocking::new(SqliteBackend {
            path,
            writer: Mutex::new(writer),
            reader: Mutex::new(reader),
            events: Mutex::new(events),
            metas: Mutex::new(HashMap::new()),
            fts_pending: std::sync::atomic::AtomicU64::new(FTS_BATCH),
        }))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.backend().path
    }
}
