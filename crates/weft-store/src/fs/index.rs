//! The fs backend's side index: `$WEFT_HOME/index.sqlite`.
//!
//! One row per session with the columns listing filters and sorts on
//! (`updated_us`, project, status, parent, name, profile) and the folded
//! [`SessionMeta`] as JSON, so `list`, `find_ids` and child lookups never
//! open session directories. It is a cache: the session directories are the
//! truth, and [`super::FsStore::open`] rebuilds it when it is missing, of
//! another schema version, or stale (see `reconcile` in the parent module).
//!
//! Damage and fallback ([`Index::open_or_recover`]): since it is a cache, a
//! damaged file is moved aside (`index.sqlite.bad-<time>`) and rebuilt, and
//! an index that cannot be opened or written (read-only home or file, full
//! disk) is replaced by one in memory built by scanning the session
//! directories: listing always works, only slower. A `-wal`/`-shm` left
//! read-only by an earlier read-only open is made writable again.
//!
//! Durability: `journal_mode=WAL`, `synchronous=OFF`. A process crash loses
//! nothing (SQLite's WAL is in the page cache); a power loss may lose the
//! newest index writes, which the reconcile pass repairs from the logs, or
//! corrupt the file, which the next open moves aside and rebuilds.
//!
//! Crash detection. A row is updated right after its session's log write;
//! a writer that dies in between leaves the row one batch behind. So each
//! writing store instance holds an exclusive lock on
//! `writers/<instance>.lock` for as long as it lives and records in the
//! `touched` table (once per session) the sessions it writes. The next
//! reconcile finds instances whose lock is free (their process is gone
//! without cleaning up), refreshes the rows of the sessions they touched
//! from the logs, and forgets them. A clean shutdown deletes its own
//! entries. Creates insert a placeholder row with `pending = 2` (hidden
//! from listings) before making the directory; a placeholder left by a
//! crashed create is resolved by the next reconcile.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, params};
use weft_core::SessionId;
use weft_core::session::SessionMeta;
use weft_core::store::{ListQuery, Page, StoreError};

use crate::util::{to_i64, to_u64};

/// The schema version; a different stored version makes the index rebuild.
const SCHEMA_VERSION: &str = "2";

/// Row state: a live row.
pub(crate) const CLEAN: i64 = 0;
/// Row state: a create is in flight (placeholder row).
pub(crate) const CREATING: i64 = 2;

/// Where a session lives, per the index.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Located {
    /// The project directory's slug.
    pub dir_slug: String,
    /// The row state.
    pub pending: i64,
}

/// The side index.
pub(crate) struct Index {
    conn: Mutex<Connection>,
    path: PathBuf,
}

/// What went wrong with the index file, from an error it returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// The file is not a database or is damaged: move it aside, rebuild.
    Corrupt,
    /// Anything else (cannot open, read-only, disk full, I/O): fall back
    /// to an index in memory.
    Unusable,
}

/// Whether `e` came from the index (errors made by `db_err`), and how.
pub(crate) fn fault_of(e: &StoreError) -> Option<Fault> {
    match e {
        StoreError::Backend {
            backend: "fs",
            message,
        } if message.starts_with(INDEX_ERR_PREFIX) => {
            let m = message.to_ascii_lowercase();
            if m.contains("not a database") || m.contains("malformed") || m.contains("corrupt") {
                Some(Fault::Corrupt)
            } else {
                Some(Fault::Unusable)
            }
        }
        _ => None,
    }
}

/// Moves a damaged index (and its `-wal`/`-shm`) to
/// `<name>.bad-<timestamp>[-wal|-shm]`; returns the new path.
fn move_aside(path: &Path) -> std::io::Result<PathBuf> {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.6fZ");
    let mut bad = path.as_os_str().to_owned();
    bad.push(format!(".bad-{stamp}"));
    let bad = PathBuf::from(bad);
    std::fs::rename(path, &bad)?;
    for suffix in ["-wal", "-shm"] {
        let mut side = path.as_os_str().to_owned();
        side.push(suffix);
        let mut to = bad.as_os_str().to_owned();
        to.push(suffix);
        match std::fs::rename(&side, &to) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(bad)
}

/// SQLite creates `-wal`/`-shm` with the mode of the database file, so a
/// database that was read-only once (`chmod 444`) leaves a `-shm` that
/// stops every later open even after the database is writable again.
/// When the database is writable and the side files are ours, give them
/// the database's mode.
fn fix_sidecar_modes(path: &Path) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let Ok(db) = std::fs::metadata(path) else {
        return;
    };
    let mode = db.mode() & 0o777;
    if mode & 0o200 == 0 {
        return;
    }
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    for suffix in ["-wal", "-shm"] {
        let mut side = path.as_os_str().to_owned();
        side.push(suffix);
        let side = PathBuf::from(side);
        if let Ok(m) = std::fs::symlink_metadata(&side)
            && m.is_file()
            && m.uid() == me
            && m.mode() & 0o200 == 0
        {
            match std::fs::set_permissions(&side, std::fs::Permissions::from_mode(mode)) {
                Ok(()) => {
                    tracing::warn!(file = %side.display(), "made a read-only index side file writable again")
                }
                Err(e) => {
                    tracing::warn!(file = %side.display(), error = %e, "cannot make a read-only index side file writable")
                }
            }
        }
    }
}

/// How every index error message starts (see [`fault_of`]).
const INDEX_ERR_PREFIX: &str = "index ";

fn db_err(path: &Path, e: rusqlite::Error) -> StoreError {
    StoreError::Backend {
        backend: "fs",
        message: match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DiskFull) => format!(
                "{INDEX_ERR_PREFIX}{}: {} ({e})",
                path.display(),
                crate::util::DISK_FULL
            ),
            _ => format!("{INDEX_ERR_PREFIX}{}: {e}", path.display()),
        },
    }
}

impl Index {
    /// Opens (creating if needed) the index at `path`. Returns whether it
    /// must be rebuilt (new file or another schema version).
    pub(crate) fn open(path: &Path) -> Result<(Self, bool), StoreError> {
        let existed = path.exists();
        let conn = Connection::open(path).map_err(|e| db_err(path, e))?;
        let rebuild = Self::setup(&conn, existed).map_err(|e| db_err(path, e))?;
        Ok((
            Self {
                conn: Mutex::new(conn),
                path: path.to_path_buf(),
            },
            rebuild,
        ))
    }

    /// An index in memory (always to be rebuilt): the fallback when
    /// `index.sqlite` cannot be used.
    pub(crate) fn in_memory(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open_in_memory().map_err(|e| db_err(path, e))?;
        Self::setup(&conn, false).map_err(|e| db_err(path, e))?;
        Ok(Self {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
        })
    }

    /// Opens the index at `path`, never failing: a damaged file ("not a
    /// database", "malformed") is moved aside (`index.sqlite.bad-<time>`,
    /// with its `-wal`/`-shm`) with one warning and rebuilt; an index that
    /// cannot be opened or written (read-only file, directory or home, full
    /// disk) is replaced by one in memory, built by scanning the session
    /// directories, with one warning. With `read_only_home`, the file is not
    /// even tried (opening it would write its `-shm`). Returns the index,
    /// whether it must be rebuilt, and whether it is the in-memory fallback.
    pub(crate) fn open_or_recover(
        path: &Path,
        read_only_home: bool,
    ) -> Result<(Self, bool, bool), StoreError> {
        if !read_only_home {
            fix_sidecar_modes(path);
            match Self::open(path) {
                Ok((index, rebuild)) => return Ok((index, rebuild, false)),
                Err(e) if fault_of(&e) == Some(Fault::Corrupt) => {
                    match move_aside(path) {
                        Ok(bad) => tracing::warn!(
                            index = %path.display(), moved_to = %bad.display(), error = %e,
                            "the session index is damaged; moved it aside and rebuilding it from the session directories"
                        ),
                        Err(m) => tracing::warn!(
                            index = %path.display(), error = %e, move_error = %m,
                            "the session index is damaged and cannot be moved aside"
                        ),
                    }
                    if let Ok((index, _)) = Self::open(path) {
                        return Ok((index, true, false));
                    }
                }
                Err(e) => tracing::warn!(
                    index = %path.display(), error = %e,
                    "cannot use the session index; listing scans the session directories instead (slower)"
                ),
            }
        }
        Ok((Self::in_memory(path)?, true, true))
    }

    fn setup(conn: &Connection, existed: bool) -> rusqlite::Result<bool> {
        let setup = |conn: &Connection| -> rusqlite::Result<bool> {
            conn.busy_timeout(std::time::Duration::from_secs(30))?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "OFF")?;
            conn.execute_batch(
                "CREATE TABLE IF NOT EXISTS info (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
            )?;
            let version: Option<String> = conn
                .query_row("SELECT value FROM info WHERE key = 'schema'", [], |r| {
                    r.get(0)
                })
                .optional()?;
            let rebuild = !existed || version.as_deref() != Some(SCHEMA_VERSION);
            if rebuild {
                conn.execute_batch(
                    "DROP TABLE IF EXISTS sessions; DROP TABLE IF EXISTS projects;
                     DROP TABLE IF EXISTS touched;",
                )?;
            }
            conn.execute_batch(
                "CREATE TABLE IF NOT EXISTS sessions (
                    id TEXT PRIMARY KEY,
                    dir_slug TEXT NOT NULL,
                    project TEXT NOT NULL,
                    updated_us INTEGER NOT NULL,
                    status TEXT NOT NULL,
                    parent_id TEXT,
                    name TEXT,
                    profile TEXT NOT NULL,
                    last_seq INTEGER NOT NULL,
                    log_bytes INTEGER NOT NULL,
                    pending INTEGER NOT NULL DEFAULT 0,
                    meta TEXT NOT NULL
                );
                CREATE INDEX IF NOT EXISTS sessions_order ON sessions(updated_us DESC, id DESC);
                CREATE INDEX IF NOT EXISTS sessions_project ON sessions(project, updated_us DESC, id DESC);
                CREATE INDEX IF NOT EXISTS sessions_parent ON sessions(parent_id);
                CREATE INDEX IF NOT EXISTS sessions_dir ON sessions(dir_slug);
                CREATE INDEX IF NOT EXISTS sessions_pending ON sessions(pending) WHERE pending <> 0;
                CREATE TABLE IF NOT EXISTS touched (
                    writer TEXT NOT NULL,
                    id TEXT NOT NULL,
                    PRIMARY KEY (writer, id)
                ) WITHOUT ROWID;
                CREATE TABLE IF NOT EXISTS projects (
                    slug TEXT PRIMARY KEY,
                    scanned_mtime_ns INTEGER NOT NULL
                );",
            )?;
            if rebuild {
                // Written only when it changes: opening an up-to-date index
                // writes nothing (a full disk can still be listed).
                conn.execute(
                    "INSERT OR REPLACE INTO info (key, value) VALUES ('schema', ?1)",
                    [SCHEMA_VERSION],
                )?;
            }
            Ok(rebuild)
        };
        setup(conn)
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // Statements leave no half-done state in Rust memory, so a poisoned
        // lock is safe to reuse.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn err(&self, e: rusqlite::Error) -> StoreError {
        db_err(&self.path, e)
    }

    /// Where `id` lives, if the index knows it.
    pub(crate) fn locate(&self, id: &SessionId) -> Result<Option<Located>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT dir_slug, pending FROM sessions WHERE id = ?1")
            .map_err(|e| self.err(e))?;
        stmt.query_row([id.as_str()], |r| {
            Ok(Located {
                dir_slug: r.get(0)?,
                pending: r.get(1)?,
            })
        })
        .optional()
        .map_err(|e| self.err(e))
    }

    /// Writes a session's row (replacing whatever row it has) from what the
    /// caller read of its log **while holding the session's lock**: no
    /// writer can have appended meanwhile, so the log's head is the truth
    /// even when it is behind the row (a log truncated or restored from an
    /// older backup). Writers' later rows come through
    /// [`Index::update_appended`], whose guard keeps a slower writer from
    /// overwriting a faster one.
    pub(crate) fn upsert(
        &self,
        dir_slug: &str,
        meta: &SessionMeta,
        log_bytes: u64,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(meta).map_err(|e| StoreError::Backend {
            backend: "fs",
            message: format!("cannot encode metadata: {e}"),
        })?;
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "INSERT INTO sessions (id, dir_slug, project, updated_us, status, parent_id, name,
                    profile, last_seq, log_bytes, pending, meta)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 0, ?11)
                 ON CONFLICT(id) DO UPDATE SET
                    dir_slug = excluded.dir_slug, project = excluded.project,
                    updated_us = excluded.updated_us, status = excluded.status,
                    parent_id = excluded.parent_id, name = excluded.name,
                    profile = excluded.profile, last_seq = excluded.last_seq,
                    log_bytes = excluded.log_bytes, pending = 0, meta = excluded.meta",
            )
            .map_err(|e| self.err(e))?;
        stmt.execute(params![
            meta.id.as_str(),
            dir_slug,
            meta.project.slug,
            meta.updated_at.timestamp_micros(),
            meta.status.as_str(),
            meta.parent_id.as_ref().map(SessionId::as_str),
            meta.name,
            meta.profile,
            to_i64(meta.last_seq),
            to_i64(log_bytes),
            json,
        ])
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Updates rows after appends, in one transaction: only the columns an
    /// append can change (so SQLite touches only the indexes on them), and
    /// only when the row exists and is not newer. A missing row is left
    /// missing (the session was deleted meanwhile, or the next reconcile
    /// indexes it). Entries: `(dir_slug, meta, log_bytes)`.
    ///
    /// A row newer than the update is usually a faster writer's and stays.
    /// But a log can also shrink (truncated, restored from an older
    /// backup): then the row names a head the log no longer has, and every
    /// later append would be refused by the guard forever. So when the
    /// guard refuses an update, the log's actual head is read; if it is
    /// behind the row, the row is stale and the update (which is no further
    /// than the log) replaces it.
    pub(crate) fn update_appended(
        &self,
        updates: &[(&str, &SessionMeta, u64)],
    ) -> Result<(), StoreError> {
        let mut encoded = Vec::with_capacity(updates.len());
        for (slug, meta, log_bytes) in updates {
            let json = serde_json::to_string(meta).map_err(|e| StoreError::Backend {
                backend: "fs",
                message: format!("cannot encode metadata: {e}"),
            })?;
            encoded.push((slug, meta, *log_bytes, json));
        }
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| db_err(&self.path, e))?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "UPDATE sessions SET updated_us = ?2, status = ?3, name = ?4, last_seq = ?5,
                        log_bytes = ?6, meta = ?7
                     WHERE id = ?1 AND dir_slug = ?8 AND last_seq <= ?5 AND pending <> 2",
                )
                .map_err(|e| db_err(&self.path, e))?;
            let mut row_seq = tx
                .prepare_cached(
                    "SELECT last_seq FROM sessions WHERE id = ?1 AND dir_slug = ?2 AND pending = 0",
                )
                .map_err(|e| db_err(&self.path, e))?;
            let mut force = tx
                .prepare_cached(
                    "UPDATE sessions SET updated_us = ?2, status = ?3, name = ?4, last_seq = ?5,
                        log_bytes = ?6, meta = ?7
                     WHERE id = ?1 AND dir_slug = ?8 AND pending = 0",
                )
                .map_err(|e| db_err(&self.path, e))?;
            for (slug, meta, log_bytes, json) in &encoded {
                let values = params![
                    meta.id.as_str(),
                    meta.updated_at.timestamp_micros(),
                    meta.status.as_str(),
                    meta.name,
                    to_i64(meta.last_seq),
                    to_i64(*log_bytes),
                    json,
                    slug,
                ];
                let changed = stmt.execute(values).map_err(|e| db_err(&self.path, e))?;
                if changed > 0 {
                    continue;
                }
                let row: Option<i64> = row_seq
                    .query_row(params![meta.id.as_str(), slug], |r| r.get(0))
                    .optional()
                    .map_err(|e| db_err(&self.path, e))?;
                if let Some(row) = row
                    && to_u64(row) > meta.last_seq
                    && self
                        .log_head(slug, &meta.id)
                        .is_some_and(|head| head < to_u64(row) && meta.last_seq <= head)
                {
                    tracing::info!(session = %meta.id, stale = row, head = meta.last_seq, "the session log shrank; correcting its index row");
                    force.execute(values).map_err(|e| db_err(&self.path, e))?;
                }
            }
        }
        tx.commit().map_err(|e| db_err(&self.path, e))
    }

    /// The seq of the committed head of a session's log, read from the file
    /// (None when it cannot be read).
    fn log_head(&self, dir_slug: &str, id: &SessionId) -> Option<u64> {
        let root = self.path.parent()?;
        let path = super::doctor::log_path(root, dir_slug, id.as_str());
        let file = std::fs::File::open(&path).ok()?;
        let len = file.metadata().ok()?.len();
        let counter = std::sync::atomic::AtomicU64::new(0);
        let (head, _) =
            super::log::scan_back(&file, len, 0, &counter, &path.display().to_string()).ok()?;
        Some(head.last_seq)
    }

    /// Records that store instance `writer` writes session `id`.
    pub(crate) fn touch(&self, writer: &str, id: &SessionId) -> Result<(), StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("INSERT OR IGNORE INTO touched (writer, id) VALUES (?1, ?2)")
            .map_err(|e| self.err(e))?;
        stmt.execute(params![writer, id.as_str()])
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The store instances with sessions in `touched`.
    pub(crate) fn writers(&self) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT DISTINCT writer FROM touched")
            .map_err(|e| self.err(e))?;
        let rows = stmt.query_map([], |r| r.get(0)).map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| self.err(e))
    }

    /// The sessions `writer` touched: `(id, dir_slug)`.
    pub(crate) fn touched_by(&self, writer: &str) -> Result<Vec<(String, String)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT t.id, s.dir_slug FROM touched t JOIN sessions s ON s.id = t.id WHERE t.writer = ?1",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([writer], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| self.err(e))
    }

    /// Forgets what `writer` touched.
    pub(crate) fn forget_writer(&self, writer: &str) -> Result<(), StoreError> {
        self.conn()
            .execute("DELETE FROM touched WHERE writer = ?1", [writer])
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Runs `make_dir` (which creates the session directory and returns the
    /// project's `sessions/` mtime before and after) inside one index write
    /// transaction, inserting a placeholder row. If the index had scanned
    /// the project at the "before" mtime (or the project is new), the scan
    /// mark moves to "after", so the next open does not rescan the project
    /// for this change.
    pub(crate) fn begin_create<F>(
        &self,
        id: &SessionId,
        dir_slug: &str,
        new_project: bool,
        make_dir: F,
    ) -> Result<(), StoreError>
    where
        F: FnOnce() -> Result<(i64, i64), StoreError>,
    {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| db_err(&self.path, e))?;
        let (before, after) = make_dir()?;
        if new_project {
            // We made the project's sessions/ directory: it held nothing
            // but what weft writers (which index themselves) put there.
            tx.execute(
                "INSERT OR IGNORE INTO projects (slug, scanned_mtime_ns) VALUES (?1, ?2)",
                params![dir_slug, before],
            )
            .map_err(|e| db_err(&self.path, e))?;
        }
        tx.execute(
            "INSERT OR REPLACE INTO sessions (id, dir_slug, project, updated_us, status, parent_id,
                name, profile, last_seq, log_bytes, pending, meta)
             VALUES (?1, ?2, ?2, 0, '', NULL, NULL, '', 0, 0, ?3, '')",
            params![id.as_str(), dir_slug, CREATING],
        )
        .map_err(|e| db_err(&self.path, e))?;
        tx.execute(
            "UPDATE projects SET scanned_mtime_ns = ?3 WHERE slug = ?1 AND scanned_mtime_ns = ?2",
            params![dir_slug, before, after],
        )
        .map_err(|e| db_err(&self.path, e))?;
        tx.commit().map_err(|e| db_err(&self.path, e))
    }

    /// Like [`Index::begin_create`] for removing a session directory:
    /// `remove_dir` returns the project's mtime before and after; the row
    /// is deleted.
    pub(crate) fn remove_with<F>(
        &self,
        id: &SessionId,
        dir_slug: &str,
        remove_dir: F,
    ) -> Result<(), StoreError>
    where
        F: FnOnce() -> Result<(i64, i64), StoreError>,
    {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| db_err(&self.path, e))?;
        let (before, after) = remove_dir()?;
        tx.execute("DELETE FROM sessions WHERE id = ?1", [id.as_str()])
            .map_err(|e| db_err(&self.path, e))?;
        tx.execute(
            "UPDATE projects SET scanned_mtime_ns = ?3 WHERE slug = ?1 AND scanned_mtime_ns = ?2",
            params![dir_slug, before, after],
        )
        .map_err(|e| db_err(&self.path, e))?;
        tx.commit().map_err(|e| db_err(&self.path, e))
    }

    /// Deletes a row.
    pub(crate) fn remove(&self, id: &str) -> Result<(), StoreError> {
        self.conn()
            .execute("DELETE FROM sessions WHERE id = ?1", [id])
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// One page of a listing, newest first.
    pub(crate) fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        let conn = self.conn();
        crate::sql::list_page(&conn, "sessions", "pending <> 2", query).map_err(|e| self.err(e))
    }

    /// Up to `limit` ids starting with `prefix`, in id order.
    pub(crate) fn find_ids(
        &self,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<SessionId>, StoreError> {
        let conn = self.conn();
        crate::sql::find_ids(&conn, "sessions", "pending <> 2", prefix, limit)
            .map_err(|e| self.err(e))
    }

    /// Sessions whose parent is `id`.
    pub(crate) fn children(&self, id: &SessionId) -> Result<Vec<SessionId>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT id FROM sessions WHERE parent_id = ?1 AND pending <> 2")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([id.as_str()], |r| r.get::<_, String>(0))
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for r in rows {
            if let Ok(id) = SessionId::parse(r.map_err(|e| self.err(e))?) {
                out.push(id);
            }
        }
        Ok(out)
    }

    /// The ids (and row states) of a project directory's sessions.
    pub(crate) fn ids_in_dir(&self, dir_slug: &str) -> Result<HashMap<String, i64>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT id, pending FROM sessions WHERE dir_slug = ?1")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([dir_slug], |r| Ok((r.get::<_, String>(0)?, r.get(1)?)))
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| self.err(e))
    }

    /// Every project directory the index has scanned, with the mtime of its
    /// `sessions/` directory at that scan.
    pub(crate) fn project_scans(&self) -> Result<HashMap<String, i64>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT slug, scanned_mtime_ns FROM projects")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get(1)?)))
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| self.err(e))
    }

    /// Records that a project directory was scanned at `mtime_ns`.
    pub(crate) fn set_project_scan(&self, slug: &str, mtime_ns: i64) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "INSERT OR REPLACE INTO projects (slug, scanned_mtime_ns) VALUES (?1, ?2)",
                params![slug, mtime_ns],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Forgets a project directory that no longer exists.
    pub(crate) fn remove_project(&self, slug: &str) -> Result<(), StoreError> {
        let conn = self.conn();
        conn.execute("DELETE FROM sessions WHERE dir_slug = ?1", [slug])
            .map_err(|e| self.err(e))?;
        conn.execute("DELETE FROM projects WHERE slug = ?1", [slug])
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Placeholder rows (creates in flight, or crashed): `(id, dir_slug)`.
    pub(crate) fn pending(&self) -> Result<Vec<(String, String)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT id, dir_slug FROM sessions WHERE pending <> 0")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| self.err(e))
    }

    /// Sessions for a search, newest first: `(dir_slug, meta)`.
    pub(crate) fn search_order(
        &self,
        project: Option<&str>,
    ) -> Result<Vec<(String, SessionMeta)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT dir_slug, meta FROM sessions WHERE pending <> 2
                 AND (?1 IS NULL OR project = ?1) ORDER BY updated_us DESC, id DESC",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([project], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for r in rows {
            let (slug, json) = r.map_err(|e| self.err(e))?;
            if let Ok(meta) = serde_json::from_str(&json) {
                out.push((slug, meta));
            }
        }
        Ok(out)
    }

    /// Checks the file's integrity (`PRAGMA quick_check`): run after a
    /// writer died, since `synchronous=OFF` lets a power loss corrupt the
    /// file. A damaged file gives an error [`fault_of`] calls corrupt.
    pub(crate) fn quick_check(&self) -> Result<(), StoreError> {
        let verdict: String = self
            .conn()
            .query_row("PRAGMA quick_check(1)", [], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        if verdict == "ok" {
            return Ok(());
        }
        Err(StoreError::Backend {
            backend: "fs",
            message: format!(
                "{INDEX_ERR_PREFIX}{}: database disk image is malformed ({verdict})",
                self.path.display()
            ),
        })
    }

    /// The number of clean rows (for tests and diagnostics).
    pub(crate) fn count(&self) -> Result<u64, StoreError> {
        self.conn()
            .query_row(
                "SELECT count(*) FROM sessions WHERE pending <> 2",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(to_u64)
            .map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use weft_core::{Record, Role};

    use super::*;
    use crate::conformance::{new_meta, text};

    fn at(meta: &SessionMeta, seq: u64) -> SessionMeta {
        let mut m = meta.clone();
        m.last_seq = seq;
        m
    }

    fn write_log(root: &Path, slug: &str, id: &SessionId, n: usize) {
        let kinds: Vec<_> = (0..n).map(|i| text(Role::User, &format!("m{i}"))).collect();
        let bytes = super::super::log::encode_batch(&Record::batch(0, kinds)).expect("encode");
        let path = super::super::doctor::log_path(root, slug, id.as_str());
        std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
        std::fs::write(path, bytes).expect("write");
    }

    fn row_seq(index: &Index, id: &SessionId) -> i64 {
        index
            .conn()
            .query_row(
                "SELECT last_seq FROM sessions WHERE id = ?1",
                [id.as_str()],
                |r| r.get(0),
            )
            .expect("row")
    }

    #[test]
    fn a_late_update_loses_to_a_newer_row_unless_the_log_shrank() {
        let root = tempfile::tempdir().expect("tempdir");
        let (index, _) = Index::open(&root.path().join("index.sqlite")).expect("open");
        let meta = new_meta("guard");
        let slug = meta.project.slug.clone();
        write_log(root.path(), &slug, &meta.id, 5);
        index.upsert(&slug, &at(&meta, 5), 500).expect("upsert");
        // A slower writer's update (seq 3) lands after a faster one's: the
        // log still reaches seq 5, so the row stays.
        index
            .update_appended(&[(slug.as_str(), &at(&meta, 3), 300)])
            .expect("update");
        assert_eq!(row_seq(&index, &meta.id), 5);
        // The log was cut back to 2 records and one was appended: the row
        // names a head the log no longer has, so the update replaces it.
        write_log(root.path(), &slug, &meta.id, 3);
        index
            .update_appended(&[(slug.as_str(), &at(&meta, 3), 300)])
            .expect("update");
        assert_eq!(row_seq(&index, &meta.id), 3);
        // A row read under the session lock is written as it is.
        index.upsert(&slug, &at(&meta, 2), 200).expect("upsert");
        assert_eq!(row_seq(&index, &meta.id), 2);
    }
}
