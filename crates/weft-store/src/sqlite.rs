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
//! pool.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use serde_json::{Map, Value};
use weft_core::SessionId;
use weft_core::record::{Record, RecordKind, StateDelta, check_batch};
use weft_core::session::{SessionMeta, SessionStatus};
use weft_core::store::{DeleteOptions, ListQuery, Page, SearchHit, SearchQuery, Store, StoreError};

use crate::util::{blocking, to_i64, to_u64};

/// How many kernel events the sqlite store keeps per session.
pub const SQLITE_EVENTS_CAP: i64 = 10_000;

/// How many messages may wait for the full-text index before an append
/// indexes them.
pub const FTS_BATCH: u64 = 256;

const SCHEMA_VERSION: &str = "1";

/// The SQLite store. See the module docs.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .finish()
    }
}

struct Inner {
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
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                writer: Mutex::new(writer),
                reader: Mutex::new(reader),
                events: Mutex::new(events),
                metas: Mutex::new(HashMap::new()),
                fts_pending: std::sync::atomic::AtomicU64::new(FTS_BATCH),
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }
}

fn create_schema(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS info (key TEXT PRIMARY KEY, value TEXT NOT NULL);
         CREATE TABLE IF NOT EXISTS sessions (
            id TEXT PRIMARY KEY,
            project TEXT NOT NULL,
            updated_us INTEGER NOT NULL,
            status TEXT NOT NULL,
            parent_id TEXT,
            name TEXT,
            profile TEXT NOT NULL,
            last_seq INTEGER NOT NULL,
            meta TEXT NOT NULL
         );
         CREATE INDEX IF NOT EXISTS sessions_order ON sessions(updated_us DESC, id DESC);
         CREATE INDEX IF NOT EXISTS sessions_project ON sessions(project, updated_us DESC, id DESC);
         CREATE INDEX IF NOT EXISTS sessions_parent ON sessions(parent_id);
         CREATE TABLE IF NOT EXISTS records (
            session_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            rid INTEGER NOT NULL UNIQUE,
            kind TEXT NOT NULL,
            record TEXT NOT NULL,
            PRIMARY KEY (session_id, seq)
         ) WITHOUT ROWID;
         CREATE VIRTUAL TABLE IF NOT EXISTS message_fts USING fts5(
            text, content='', contentless_delete=1, tokenize='trigram', detail=none
         );
         CREATE TABLE IF NOT EXISTS fts_state (
            k INTEGER PRIMARY KEY CHECK (k = 0),
            indexed_rid INTEGER NOT NULL
         );
         INSERT OR IGNORE INTO fts_state (k, indexed_rid) VALUES (0, 0);
         CREATE TABLE IF NOT EXISTS shared_state (
            namespace TEXT PRIMARY KEY,
            state TEXT NOT NULL
         );
         CREATE TABLE IF NOT EXISTS events (
            session_id TEXT NOT NULL,
            n INTEGER NOT NULL,
            event TEXT NOT NULL,
            PRIMARY KEY (session_id, n)
         ) WITHOUT ROWID;",
    )?;
    let version: Option<String> = conn
        .query_row("SELECT value FROM info WHERE key = 'schema'", [], |r| {
            r.get(0)
        })
        .optional()?;
    match version {
        None => {
            conn.execute(
                "INSERT INTO info (key, value) VALUES ('schema', ?1)",
                [SCHEMA_VERSION],
            )?;
        }
        Some(v) if v == SCHEMA_VERSION => {}
        Some(v) => {
            return Err(rusqlite::Error::InvalidParameterName(format!(
                "the database has schema version {v}; this build reads version {SCHEMA_VERSION}: upgrade weft"
            )));
        }
    }
    Ok(())
}

/// Inserts records in a transaction; returns how many are messages (to be
/// indexed for search later).
fn insert_records(
    tx: &Transaction<'_>,
    id: &SessionId,
    records: &[Record],
) -> Result<u64, StoreError> {
    let mut rid: i64 = tx
        .prepare_cached("SELECT coalesce(max(rid), 0) FROM records")
        .and_then(|mut st| st.query_row([], |r| r.get(0)))
        .map_err(db)?;
    let mut insert = tx
        .prepare_cached(
            "INSERT INTO records (session_id, seq, rid, kind, record) VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .map_err(db)?;
    let mut messages = 0;
    for r in records {
        rid += 1;
        let json = encode(r)?;
        insert
            .execute(params![
                id.as_str(),
                to_i64(r.seq),
                rid,
                r.kind.name(),
                json
            ])
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(f, _)
                    if f.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    StoreError::Conflict {
                        id: id.to_string(),
                        expected: r.seq.saturating_sub(1),
                        actual: r.seq,
                    }
                }
                other => db(other),
            })?;
        if r.as_message().is_some() {
            messages += 1;
        }
    }
    Ok(messages)
}

/// Adds messages not yet in the full-text index to it (at most `limit`),
/// in one transaction. Returns whether everything waiting was indexed.
fn index_pending(conn: &mut Connection, limit: Option<usize>) -> Result<bool, StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db)?;
    let done: i64 = tx
        .query_row("SELECT indexed_rid FROM fts_state WHERE k = 0", [], |r| {
            r.get(0)
        })
        .map_err(db)?;
    let max: i64 = tx
        .query_row("SELECT coalesce(max(rid), 0) FROM records", [], |r| {
            r.get(0)
        })
        .map_err(db)?;
    if max <= done {
        return Ok(true);
    }
    let cap = limit
        .map(|l| i64::try_from(l).unwrap_or(i64::MAX))
        .unwrap_or(-1);
    let rows: Vec<(i64, String)> = {
        let mut stmt = tx
            .prepare_cached(
                "SELECT rid, record FROM records WHERE rid > ?1 AND rid <= ?2 AND kind = 'message'
                 ORDER BY rid LIMIT ?3",
            )
            .map_err(db)?;
        stmt.query_map(params![done, max, cap], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(db)?
            .collect::<rusqlite::Result<_>>()
            .map_err(db)?
    };
    let complete = limit.is_none_or(|l| rows.len() < l);
    {
        let mut fts = tx
            .prepare_cached("INSERT INTO message_fts (rowid, text) VALUES (?1, ?2)")
            .map_err(db)?;
        for (rid, json) in &rows {
            match serde_json::from_str::<Record>(json) {
                Ok(r) => {
                    if let Some(m) = r.as_message() {
                        fts.execute(params![rid, m.searchable_text()]).map_err(db)?;
                    }
                }
                Err(e) => tracing::warn!(rid, error = %e, "not indexing an unreadable record"),
            }
        }
    }
    let upto = if complete {
        max
    } else {
        rows.last().map(|(rid, _)| *rid).unwrap_or(done)
    };
    tx.execute("UPDATE fts_state SET indexed_rid = ?1 WHERE k = 0", [upto])
        .map_err(db)?;
    tx.commit().map_err(db)?;
    Ok(complete)
}

fn write_session_row(
    tx: &Transaction<'_>,
    meta: &SessionMeta,
    insert: bool,
) -> Result<(), StoreError> {
    let json = encode(meta)?;
    let sql = if insert {
        "INSERT INTO sessions (id, project, updated_us, status, parent_id, name, profile, last_seq, meta)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
    } else {
        "UPDATE sessions SET project = ?2, updated_us = ?3, status = ?4, parent_id = ?5, name = ?6,
         profile = ?7, last_seq = ?8, meta = ?9 WHERE id = ?1"
    };
    tx.prepare_cached(sql)
        .and_then(|mut s| {
            s.execute(params![
                meta.id.as_str(),
                meta.project.slug,
                meta.updated_at.timestamp_micros(),
                meta.status.as_str(),
                meta.parent_id.as_ref().map(SessionId::as_str),
                meta.name,
                meta.profile,
                to_i64(meta.last_seq),
                json,
            ])
        })
        .map_err(db)?;
    Ok(())
}

fn parse_record(json: &str, id: &SessionId, seq: i64) -> Result<Record, StoreError> {
    serde_json::from_str(json).map_err(|e| corrupt(format!("records ({id}, {seq})"), e))
}

impl Inner {
    fn metas(&self) -> MutexGuard<'_, HashMap<SessionId, SessionMeta>> {
        lock(&self.metas)
    }

    /// Counts appended messages and, once [`FTS_BATCH`] wait, indexes a
    /// batch of them (the append is already committed and durable; an
    /// indexing failure only delays search, which catches up itself).
    fn after_commit(&self, conn: &mut Connection, messages: u64) {
        use std::sync::atomic::Ordering;
        let pending = self.fts_pending.fetch_add(messages, Ordering::Relaxed) + messages;
        if pending < FTS_BATCH {
            return;
        }
        match index_pending(conn, Some(4 * FTS_BATCH as usize)) {
            Ok(true) => self.fts_pending.store(0, Ordering::Relaxed),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot update the full-text index; search will catch up")
            }
        }
    }

    fn exists(conn: &Connection, id: &SessionId) -> Result<bool, StoreError> {
        conn.prepare_cached("SELECT 1 FROM sessions WHERE id = ?1")
            .and_then(|mut s| s.exists([id.as_str()]))
            .map_err(db)
    }

    fn create(
        &self,
        meta: SessionMeta,
        initial: Vec<RecordKind>,
    ) -> Result<SessionMeta, StoreError> {
        let id = meta.id.clone();
        let mut kinds = vec![RecordKind::SessionCreated(Box::new(meta.clone()))];
        kinds.extend(initial);
        let records = Record::batch(0, kinds);
        check_batch(0, &records)?;
        let mut folded = meta;
        for r in &records {
            folded.apply(r);
        }
        let mut conn = lock(&self.writer);
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        if Self::exists(&tx, &id)? {
            return Err(StoreError::AlreadyExists(id.to_string()));
        }
        let messages = insert_records(&tx, &id, &records)?;
        write_session_row(&tx, &folded, true)?;
        tx.commit().map_err(db)?;
        self.after_commit(&mut conn, messages);
        drop(conn);
        self.metas().insert(id, folded.clone());
        Ok(folded)
    }

    fn get(&self, id: &SessionId) -> Result<SessionMeta, StoreError> {
        let conn = lock(&self.reader);
        let row: Option<String> = conn
            .prepare_cached("SELECT meta FROM sessions WHERE id = ?1")
            .and_then(|mut s| s.query_row([id.as_str()], |r| r.get(0)).optional())
            .map_err(db)?;
        let json = row.ok_or_else(|| not_found(id))?;
        serde_json::from_str(&json).map_err(|e| corrupt(format!("sessions ({id})"), e))
    }

    fn append(
        &self,
        id: &SessionId,
        expected_seq: u64,
        records: Vec<Record>,
    ) -> Result<SessionMeta, StoreError> {
        check_batch(expected_seq, &records)?;
        let mut conn = lock(&self.writer);
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        let row: Option<(i64, i64, String)> = tx
            .prepare_cached("SELECT last_seq, updated_us, meta FROM sessions WHERE id = ?1")
            .and_then(|mut s| {
                s.query_row([id.as_str()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .optional()
            })
            .map_err(db)?;
        let (last_seq, updated_us, json) = row.ok_or_else(|| not_found(id))?;
        let last_seq = to_u64(last_seq);
        if last_seq != expected_seq {
            return Err(StoreError::Conflict {
                id: id.to_string(),
                expected: expected_seq,
                actual: last_seq,
            });
        }
        let cached = self
            .metas()
            .get(id)
            .filter(|m| m.last_seq == last_seq && m.updated_at.timestamp_micros() == updated_us)
            .cloned();
        let mut meta = match cached {
            Some(m) => m,
            None => {
                serde_json::from_str(&json).map_err(|e| corrupt(format!("sessions ({id})"), e))?
            }
        };
        for r in &records {
            meta.apply(r);
        }
        let messages = insert_records(&tx, id, &records)?;
        write_session_row(&tx, &meta, false)?;
        tx.commit().map_err(db)?;
        self.after_commit(&mut conn, messages);
        drop(conn);
        self.metas().insert(id.clone(), meta.clone());
        Ok(meta)
    }

    fn read(
        &self,
        id: &SessionId,
        from_seq: u64,
        limit: Option<usize>,
    ) -> Result<Vec<Record>, StoreError> {
        let mut conn = lock(&self.reader);
        let tx = conn.transaction().map_err(db)?;
        if !Self::exists(&tx, id)? {
            return Err(not_found(id));
        }
        let limit = limit
            .map(|l| i64::try_from(l).unwrap_or(i64::MAX))
            .unwrap_or(-1);
        let mut stmt = tx
            .prepare_cached(
                "SELECT record FROM records WHERE session_id = ?1 AND seq >= ?2 ORDER BY seq LIMIT ?3",
            )
            .map_err(db)?;
        let mut rows = stmt
            .query(params![id.as_str(), to_i64(from_seq), limit])
            .map_err(db)?;
        // The rows' JSON, one per line, copied straight out of SQLite's
        // pages (no String per row), then parsed (in parallel when large).
        let mut joined = String::new();
        let mut count = 0usize;
        while let Some(row) = rows.next().map_err(db)? {
            let json = row.get_ref(0).and_then(|v| Ok(v.as_str()?)).map_err(db)?;
            joined.push_str(json);
            joined.push('\n');
            count += 1;
        }
        drop(rows);
        drop(stmt);
        drop(tx);
        drop(conn);
        let location = format!("records ({id})");
        let out = crate::fs::log::parse_all_parallel(joined.as_bytes(), 0, &location);
        if out.len() != count {
            return Err(StoreError::Corrupt {
                location,
                detail: format!("{} of {count} rows are unreadable", count - out.len()),
            });
        }
        Ok(out)
    }

    fn tail(&self, id: &SessionId, n: usize) -> Result<Vec<Record>, StoreError> {
        let mut conn = lock(&self.reader);
        let tx = conn.transaction().map_err(db)?;
        if !Self::exists(&tx, id)? {
            return Err(not_found(id));
        }
        let mut stmt = tx
            .prepare_cached(
                "SELECT seq, record FROM records WHERE session_id = ?1 ORDER BY seq DESC LIMIT ?2",
            )
            .map_err(db)?;
        let rows = stmt
            .query_map(
                params![id.as_str(), i64::try_from(n).unwrap_or(i64::MAX)],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
            )
            .map_err(db)?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, json) = row.map_err(db)?;
            out.push(parse_record(&json, id, seq)?);
        }
        out.reverse();
        Ok(out)
    }

    fn delete(&self, id: &SessionId, options: DeleteOptions) -> Result<Vec<SessionId>, StoreError> {
        let mut conn = lock(&self.writer);
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        let status: Option<String> = tx
            .query_row(
                "SELECT status FROM sessions WHERE id = ?1",
                [id.as_str()],
                |r| r.get(0),
            )
            .optional()
            .map_err(db)?;
        let status = status.ok_or_else(|| not_found(id))?;
        if options.unless_active && status == SessionStatus::Active.as_str() {
            return Err(StoreError::Refused(format!(
                "session {id} is active: it cannot be removed"
            )));
        }
        let mut doomed = vec![id.clone()];
        if options.with_children {
            let mut i = 0;
            while i < doomed.len() {
                let mut stmt = tx
                    .prepare_cached("SELECT id FROM sessions WHERE parent_id = ?1")
                    .map_err(db)?;
                let children: Vec<String> = stmt
                    .query_map([doomed[i].as_str()], |r| r.get(0))
                    .map_err(db)?
                    .collect::<rusqlite::Result<_>>()
                    .map_err(db)?;
                for c in children {
                    if let Ok(c) = SessionId::parse(c)
                        && !doomed.contains(&c)
                    {
                        doomed.push(c);
                    }
                }
                i += 1;
            }
        }
        for d in &doomed {
            tx.execute(
                "DELETE FROM message_fts WHERE rowid IN (SELECT rid FROM records WHERE session_id = ?1
                    AND rid <= (SELECT indexed_rid FROM fts_state WHERE k = 0))",
                [d.as_str()],
            )
            .map_err(db)?;
            tx.execute("DELETE FROM records WHERE session_id = ?1", [d.as_str()])
                .map_err(db)?;
            tx.execute("DELETE FROM events WHERE session_id = ?1", [d.as_str()])
                .map_err(db)?;
            tx.execute("DELETE FROM sessions WHERE id = ?1", [d.as_str()])
                .map_err(db)?;
        }
        // Row ids above the largest remaining one get reused: keep the
        // index mark below them so they are indexed when reused.
        tx.execute(
            "UPDATE fts_state SET indexed_rid = min(indexed_rid, (SELECT coalesce(max(rid), 0) FROM records)) WHERE k = 0",
            [],
        )
        .map_err(db)?;
        tx.commit().map_err(db)?;
        drop(conn);
        let mut metas = self.metas();
        for d in &doomed {
            metas.remove(d);
        }
        Ok(doomed)
    }

    fn search(&self, query: &SearchQuery) -> Result<Vec<SearchHit>, StoreError> {
        let terms = query.terms();
        if terms.is_empty() {
            return Ok(Vec::new());
        }
        // The trigram index finds substrings of 3+ characters; shorter terms
        // are checked on the candidates (all messages when every term is
        // short). Every candidate is checked with SearchQuery::matches_text,
        // so all backends agree on what matches.
        // The index keeps no positions (`detail=none`: a third of the size
        // and far cheaper inserts), so a term is asked for as all of its
        // trigrams; the candidates are then checked for the real substring.
        let mut long: Vec<String> = Vec::new();
        for t in terms.iter() {
            let chars: Vec<char> = t.chars().collect();
            for w in chars.windows(3) {
                let tri: String = w.iter().collect();
                let quoted = format!("\"{}\"", tri.replace('"', "\"\""));
                if !long.contains(&quoted) {
                    long.push(quoted);
                }
            }
        }
        if !long.is_empty() {
            // Index whatever is waiting, so search sees every message.
            index_pending(&mut lock(&self.writer), None)?;
            self.fts_pending
                .store(0, std::sync::atomic::Ordering::Relaxed);
        }
        let conn = lock(&self.reader);
        let (sql, fts) = if long.is_empty() {
            (
                "SELECT s.id, s.meta, r.seq, r.record FROM records r JOIN sessions s ON s.id = r.session_id
                 WHERE r.kind = 'message' AND (?2 IS NULL OR s.project = ?2) AND ?1 IS NOT NULL
                 ORDER BY s.updated_us DESC, s.id DESC, r.seq",
                String::new(),
            )
        } else {
            (
                "SELECT s.id, s.meta, r.seq, r.record FROM message_fts f
                 JOIN records r ON r.rid = f.rowid JOIN sessions s ON s.id = r.session_id
                 WHERE message_fts MATCH ?1 AND (?2 IS NULL OR s.project = ?2)
                 ORDER BY s.updated_us DESC, s.id DESC, r.seq",
                long.join(" AND "),
            )
        };
        let mut stmt = conn.prepare_cached(sql).map_err(db)?;
        let mut rows = stmt
            .query(params![fts, query.project.as_deref()])
            .map_err(db)?;
        let mut metas: HashMap<String, SessionMeta> = HashMap::new();
        let mut hits = Vec::new();
        while let Some(row) = rows.next().map_err(db)? {
            let sid: String = row.get(0).map_err(db)?;
            let seq: i64 = row.get(2).map_err(db)?;
            let json: String = row.get(3).map_err(db)?;
            let Ok(id) = SessionId::parse(sid.as_str()) else {
                continue;
            };
            let record = parse_record(&json, &id, seq)?;
            let Some(m) = record.as_message() else {
                continue;
            };
            if !query.matches_text(&m.searchable_text()) {
                continue;
            }
            if !metas.contains_key(&sid) {
                let meta_json: String = row.get(1).map_err(db)?;
                let meta: SessionMeta = serde_json::from_str(&meta_json)
                    .map_err(|e| corrupt(format!("sessions ({sid})"), e))?;
                metas.insert(sid.clone(), meta);
            }
            if let Some(meta) = metas.get(&sid) {
                hits.push(SearchHit::new(meta, record.seq, m, query));
            }
            if hits.len() >= query.effective_limit() {
                break;
            }
        }
        Ok(hits)
    }

    fn shared_state(conn: &Connection, namespace: &str) -> Result<Map<String, Value>, StoreError> {
        let json: Option<String> = conn
            .prepare_cached("SELECT state FROM shared_state WHERE namespace = ?1")
            .and_then(|mut s| s.query_row([namespace], |r| r.get(0)).optional())
            .map_err(db)?;
        match json {
            None => Ok(Map::new()),
            Some(j) => serde_json::from_str(&j)
                .map_err(|e| corrupt(format!("shared_state ({namespace})"), e)),
        }
    }

    fn update_shared_state(
        &self,
        namespace: &str,
        delta: &StateDelta,
    ) -> Result<Map<String, Value>, StoreError> {
        let mut conn = lock(&self.writer);
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        let mut state = Self::shared_state(&tx, namespace)?;
        delta.apply_to(&mut state);
        tx.execute(
            "INSERT INTO shared_state (namespace, state) VALUES (?1, ?2)
             ON CONFLICT(namespace) DO UPDATE SET state = excluded.state",
            params![namespace, encode(&state)?],
        )
        .map_err(db)?;
        tx.commit().map_err(db)?;
        Ok(state)
    }

    fn write_events(&self, id: &SessionId, events: &[Value]) -> Result<(), StoreError> {
        let mut conn = lock(&self.events);
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        if !Self::exists(&tx, id)? {
            return Err(not_found(id));
        }
        if events.is_empty() {
            return Ok(());
        }
        let last: i64 = tx
            .query_row(
                "SELECT coalesce(max(n), 0) FROM events WHERE session_id = ?1",
                [id.as_str()],
                |r| r.get(0),
            )
            .map_err(db)?;
        let mut n = last;
        {
            let mut stmt = tx
                .prepare_cached("INSERT INTO events (session_id, n, event) VALUES (?1, ?2, ?3)")
                .map_err(db)?;
            for e in events {
                n += 1;
                stmt.execute(params![id.as_str(), n, encode(e)?])
                    .map_err(db)?;
            }
        }
        tx.execute(
            "DELETE FROM events WHERE session_id = ?1 AND n <= ?2",
            params![id.as_str(), n - SQLITE_EVENTS_CAP],
        )
        .map_err(db)?;
        tx.commit().map_err(db)
    }

    fn read_events(&self, id: &SessionId, limit: usize) -> Result<Vec<Value>, StoreError> {
        let mut conn = lock(&self.reader);
        let tx = conn.transaction().map_err(db)?;
        if !Self::exists(&tx, id)? {
            return Err(not_found(id));
        }
        let mut stmt = tx
            .prepare_cached(
                "SELECT event FROM events WHERE session_id = ?1 ORDER BY n DESC LIMIT ?2",
            )
            .map_err(db)?;
        let rows = stmt
            .query_map(
                params![id.as_str(), i64::try_from(limit).unwrap_or(i64::MAX)],
                |r| r.get::<_, String>(0),
            )
            .map_err(db)?;
        let mut out = Vec::new();
        for row in rows {
            let json = row.map_err(db)?;
            match serde_json::from_str(&json) {
                Ok(v) => out.push(v),
                Err(e) => tracing::warn!(session = %id, error = %e, "skipping a corrupt event row"),
            }
        }
        out.reverse();
        Ok(out)
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    async fn create(
        &self,
        meta: SessionMeta,
        initial: Vec<RecordKind>,
    ) -> Result<SessionMeta, StoreError> {
        blocking("sqlite", &self.inner, move |i| i.create(meta, initial)).await
    }

    async fn get(&self, id: &SessionId) -> Result<SessionMeta, StoreError> {
        let id = id.clone();
        blocking("sqlite", &self.inner, move |i| i.get(&id)).await
    }

    async fn append(
        &self,
        id: &SessionId,
        expected_seq: u64,
        records: Vec<Record>,
    ) -> Result<SessionMeta, StoreError> {
        let id = id.clone();
        blocking("sqlite", &self.inner, move |i| {
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
        blocking("sqlite", &self.inner, move |i| i.read(&id, from_seq, limit)).await
    }

    async fn tail(&self, id: &SessionId, n: usize) -> Result<Vec<Record>, StoreError> {
        let id = id.clone();
        blocking("sqlite", &self.inner, move |i| i.tail(&id, n)).await
    }

    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        let query = query.clone();
        blocking("sqlite", &self.inner, move |i| {
            crate::sql::list_page(&lock(&i.reader), "sessions", "1 = 1", &query).map_err(db)
        })
        .await
    }

    async fn find_ids(&self, prefix: &str, limit: usize) -> Result<Vec<SessionId>, StoreError> {
        let prefix = prefix.to_string();
        blocking("sqlite", &self.inner, move |i| {
            crate::sql::find_ids(&lock(&i.reader), "sessions", "1 = 1", &prefix, limit).map_err(db)
        })
        .await
    }

    async fn delete(
        &self,
        id: &SessionId,
        options: DeleteOptions,
    ) -> Result<Vec<SessionId>, StoreError> {
        let id = id.clone();
        blocking("sqlite", &self.inner, move |i| i.delete(&id, options)).await
    }

    async fn search(&self, query: &SearchQuery) -> Result<Vec<SearchHit>, StoreError> {
        let query = query.clone();
        blocking("sqlite", &self.inner, move |i| i.search(&query)).await
    }

    async fn shared_state(&self, namespace: &str) -> Result<Map<String, Value>, StoreError> {
        let namespace = namespace.to_string();
        blocking("sqlite", &self.inner, move |i| {
            Inner::shared_state(&lock(&i.reader), &namespace)
        })
        .await
    }

    async fn update_shared_state(
        &self,
        namespace: &str,
        delta: &StateDelta,
    ) -> Result<Map<String, Value>, StoreError> {
        let namespace = namespace.to_string();
        let delta = delta.clone();
        blocking("sqlite", &self.inner, move |i| {
            i.update_shared_state(&namespace, &delta)
        })
        .await
    }

    async fn write_events(&self, id: &SessionId, events: &[Value]) -> Result<(), StoreError> {
        let id = id.clone();
        let events = events.to_vec();
        blocking("sqlite", &self.inner, move |i| i.write_events(&id, &events)).await
    }

    async fn read_events(&self, id: &SessionId, limit: usize) -> Result<Vec<Value>, StoreError> {
        let id = id.clone();
        blocking("sqlite", &self.inner, move |i| i.read_events(&id, limit)).await
    }

    // Turn locks: `<db>.locks/<session>/turn.<branch>.lock`.
    async fn try_lock_turn(
        &self,
        id: &SessionId,
        branch: &weft_core::BranchId,
        holder: &weft_core::lease::TurnHolder,
    ) -> Result<weft_core::lease::TurnLockAttempt, StoreError> {
        self.get(id).await?;
        let dir = crate::turn_lock::sibling_dir(self.path(), id);
        std::fs::create_dir_all(&dir).map_err(|e| crate::util::io_err(&dir, e))?;
        crate::turn_lock::try_lock_turn(&dir, branch, holder)
    }

    async fn turn_locks(
        &self,
        id: &SessionId,
    ) -> Result<Vec<weft_core::lease::TurnLockInfo>, StoreError> {
        self.get(id).await?;
        crate::turn_lock::turn_locks(&crate::turn_lock::sibling_dir(self.path(), id))
    }
}
