//! Server-side search for [`PostgresStore`], and the search index kept
//! off the append path.
//!
//! # The index
//!
//! An append (and a create) queues the searchable text of its messages in
//! `search_queue`: one insert into a table without indexes, in the append's
//! own statement, so the append pays neither the trigram extraction nor
//! the GIN index's insert lock (measured as the main cost of appends across
//! many sessions: see BENCHMARKS.md, "Shared stores"). The queue is moved
//! into `search_docs`, which carries the `pg_trgm` GIN index on
//! `lower(text)`:
//!
//! - by every search, first, completely (so a search sees every message
//!   committed before it started, as on the other backends);
//! - by a background task of each process that wrote, every
//!   [`INDEX_PERIOD`], in batches of [`INDEX_BATCH`] rows taken with
//!   `FOR UPDATE SKIP LOCKED` (several processes move disjoint rows), so
//!   the queue stays short and a search rarely has much to move.
//!
//! Moving is idempotent (`ON CONFLICT DO NOTHING`) and atomic (the rows
//! leave the queue in the transaction that indexes them). Deleting a
//! session removes its queued rows and its documents (see `query`).
//!
//! # What it must not know about
//!
//! What a message is beyond `searchable_text` (computed by the log when it
//! writes) and `SearchQuery`'s own matching rules.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio_postgres::types::ToSql;
use weft_core::SessionId;
use weft_core::session::SessionMeta;
use weft_core::store::{SearchHit, SearchQuery, StoreError};

use super::log::{parse_meta, parse_record};
use super::{Inner, PostgresStore, db};

/// How often a process that wrote moves the queue into the index.
pub const INDEX_PERIOD: Duration = Duration::from_secs(2);

/// Rows the background task moves per transaction.
pub const INDEX_BATCH: i64 = 5_000;

/// Moves every queued row into the index (what a search does first).
const MOVE_ALL: &str = "WITH moved AS (
    DELETE FROM search_queue RETURNING session_id, seq, text
)
INSERT INTO search_docs (session_id, seq, text)
SELECT session_id, seq, text FROM moved
ON CONFLICT (session_id, seq) DO NOTHING";

/// Moves at most `$1` queued rows that no other mover holds.
const MOVE_BATCH: &str = "WITH moved AS (
    DELETE FROM search_queue WHERE ctid = ANY (ARRAY (
        SELECT ctid FROM search_queue LIMIT $1 FOR UPDATE SKIP LOCKED
    ))
    RETURNING session_id, seq, text
), ins AS (
    INSERT INTO search_docs (session_id, seq, text)
    SELECT session_id, seq, text FROM moved
    ON CONFLICT (session_id, seq) DO NOTHING
)
SELECT count(*) FROM moved";

/// Moves every queued row into the index, waiting for movers in flight
/// (what a search does first).
async fn move_all(conn: &deadpool_postgres::Object) -> Result<(), StoreError> {
    let stmt = conn.prepare_cached(MOVE_ALL).await.map_err(db)?;
    conn.execute(&stmt, &[]).await.map_err(db)?;
    Ok(())
}

/// Moves at most `limit` queued rows no other mover holds; returns how
/// many it moved.
async fn move_batch(conn: &deadpool_postgres::Object, limit: i64) -> Result<i64, StoreError> {
    let stmt = conn.prepare_cached(MOVE_BATCH).await.map_err(db)?;
    let row = conn.query_one(&stmt, &[&limit]).await.map_err(db)?;
    Ok(row.get(0))
}

/// The background half of the index: started by the first write of a
/// process, it wakes every [`INDEX_PERIOD`] and, when this process wrote
/// since, moves the queue in batches. It holds the store only while it
/// works, so it ends with the store.
#[derive(Default)]
pub(super) struct Indexer {
    /// This process queued text since the last move.
    dirty: AtomicBool,
    /// The task was started.
    started: AtomicBool,
}

impl Indexer {
    /// Notes that this process queued text; starts the task on first use
    /// (when there is a tokio runtime to run it; searches move the queue
    /// in any case).
    pub(super) fn wrote(&self, store: &PostgresStore) {
        self.dirty.store(true, Ordering::Release);
        if self.started.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(run(Arc::downgrade(&store.inner)));
        } else {
            self.started.store(false, Ordering::Release);
        }
    }
}

/// The task (see [`Indexer`]).
async fn run(inner: Weak<Inner>) {
    loop {
        tokio::time::sleep(INDEX_PERIOD).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        if !inner.indexer.dirty.swap(false, Ordering::AcqRel) {
            continue;
        }
        let store = PostgresStore { inner };
        if let Err(e) = store.index_some().await {
            // Searches still move the queue; try again next period.
            store.inner.indexer.dirty.store(true, Ordering::Release);
            tracing::warn!(error = %e, "could not move queued search text into the index");
        }
    }
}

impl PostgresStore {
    /// Moves the queue in batches until a batch comes back short.
    async fn index_some(&self) -> Result<(), StoreError> {
        let conn = self.conn().await?;
        while move_batch(&conn, INDEX_BATCH).await? >= INDEX_BATCH {}
        Ok(())
    }

    /// Moves the queue into the index first (so a search sees every
    /// message committed before it), then every term narrows the
    /// candidates through the trigram index (`lower(text) LIKE %term%`);
    /// each candidate is then checked with `SearchQuery::matches_text`, so
    /// every backend agrees on what matches.
    pub(super) async fn search_messages(
        &self,
        query: &SearchQuery,
    ) -> Result<Vec<SearchHit>, StoreError> {
        let terms = query.terms();
        if terms.is_empty() {
            return Ok(Vec::new());
        }
        let patterns: Vec<String> = terms
            .iter()
            .map(|t| {
                let escaped = t
                    .replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_");
                format!("%{escaped}%")
            })
            .collect();
        let mut sql = String::from(
            "SELECT s.id, s.meta, r.seq, r.record FROM search_docs d
             JOIN sessions s ON s.id = d.session_id
             JOIN records r ON r.session_id = d.session_id AND r.seq = d.seq
             WHERE ($1::text IS NULL OR s.project = $1)",
        );
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&query.project];
        for (i, p) in patterns.iter().enumerate() {
            // One indexable condition per term (the trigram index serves
            // `lower(search_text) LIKE '%term%'`).
            sql.push_str(&format!(" AND lower(d.text) LIKE ${}", i + 2));
            params.push(p);
        }
        sql.push_str(" ORDER BY s.updated_us DESC, s.id DESC, r.seq");
        let conn = self.conn().await?;
        move_all(&conn).await?;
        let stmt = conn.prepare_cached(&sql).await.map_err(db)?;
        let rows = conn.query(&stmt, &params).await.map_err(db)?;
        let mut metas: HashMap<String, SessionMeta> = HashMap::new();
        let mut hits = Vec::new();
        for row in rows {
            let sid: &str = row.get(0);
            let Ok(id) = SessionId::parse(sid) else {
                continue;
            };
            let record = parse_record(row.get(3), &id, row.get(2))?;
            let Some(m) = record.as_message() else {
                continue;
            };
            if !query.matches_text(&m.searchable_text()) {
                continue;
            }
            if !metas.contains_key(sid) {
                metas.insert(sid.to_string(), parse_meta(row.get(1), sid)?);
            }
            if let Some(meta) = metas.get(sid) {
                hits.push(SearchHit::new(meta, record.seq, m, query));
            }
            if hits.len() >= query.effective_limit() {
                break;
            }
        }
        Ok(hits)
    }
}
