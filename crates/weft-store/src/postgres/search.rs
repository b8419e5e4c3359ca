//! Server-side search for [`PostgresStore`], and the search index kept
//! off the append path.
//!
//! # The index
//!
//! An append (and a create) queues its messages, `(session_id, seq)`, in
//! `search_queue`: one small insert into a table without indexes, in the
//! append's own statement, so the append pays neither the trigram
//! extraction nor the GIN index's insert lock (measured as the main cost of
//! appends across many sessions: see BENCHMARKS.md, "Shared stores"), nor
//! a second copy of the text in the WAL (the record holds it). Moving a
//! queued message reads its record, computes its searchable text and puts
//! it into `search_docs`, which carries the `pg_trgm` GIN index on
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
//! What a message is beyond `searchable_text` and `SearchQuery`'s own
//! matching rules.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio_postgres::types::ToSql;
use weft_core::SessionId;
use weft_core::session::SessionMeta;
use weft_core::store::{SearchHit, SearchQuery, StoreError};

use super::guarded::{META_COLUMNS, meta_of_row};
use super::log::parse_record;
use super::{Inner, PostgresStore, db};

/// How often a process that wrote moves the queue into the index.
pub const INDEX_PERIOD: Duration = Duration::from_secs(2);

/// Rows the background task moves per transaction.
pub const INDEX_BATCH: i64 = 5_000;

/// Takes every queued message out of the queue (waiting for movers in
/// flight: their rows are skipped once they commit), with its record.
const TAKE_ALL: &str = "WITH moved AS (
    DELETE FROM search_queue RETURNING session_id, seq
)
SELECT m.session_id, m.seq, r.record FROM moved m
JOIN records r ON r.session_id = m.session_id AND r.seq = m.seq";

/// Takes at most `$1` queued messages that no other mover holds, with
/// their records.
const TAKE_BATCH: &str = "WITH moved AS (
    DELETE FROM search_queue WHERE ctid = ANY (ARRAY (
        SELECT ctid FROM search_queue LIMIT $1 FOR UPDATE SKIP LOCKED
    ))
    RETURNING session_id, seq
)
SELECT m.session_id, m.seq, r.record FROM moved m
JOIN records r ON r.session_id = m.session_id AND r.seq = m.seq";

/// Indexes documents: `$1` session ids, `$2` seqs, `$3` texts.
const INDEX_DOCS: &str = "INSERT INTO search_docs (session_id, seq, text)
SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[])
ON CONFLICT (session_id, seq) DO NOTHING";

/// Takes queued messages out of the queue with `take` (limited by
/// `limit` when it has a parameter) and indexes their searchable text, in
/// one transaction: the rows leave the queue only with their documents.
/// Returns how many rows were taken.
async fn move_queued(
    conn: &mut deadpool_postgres::Object,
    take: &str,
    limit: Option<i64>,
) -> Result<i64, StoreError> {
    let tx = conn.transaction().await.map_err(db)?;
    let stmt = tx.prepare_cached(take).await.map_err(db)?;
    let rows = match &limit {
        Some(n) => tx.query(&stmt, &[n]).await,
        None => tx.query(&stmt, &[]).await,
    }
    .map_err(db)?;
    let taken = rows.len() as i64;
    let (mut ids, mut seqs, mut texts) = (Vec::new(), Vec::new(), Vec::new());
    for row in &rows {
        let sid: &str = row.get(0);
        let seq: i64 = row.get(1);
        let Ok(id) = SessionId::parse(sid) else {
            continue;
        };
        // A record that does not parse is left out of the index (reading
        // it reports the damage); it must not stop the others.
        let Ok(record) = parse_record(row.get(2), &id, seq) else {
            tracing::warn!(session = %id, seq, "a stored record does not parse; it is left out of the search index");
            continue;
        };
        if let Some(m) = record.as_message() {
            ids.push(sid);
            seqs.push(seq);
            texts.push(m.searchable_text());
        }
    }
    if !ids.is_empty() {
        let stmt = tx.prepare_cached(INDEX_DOCS).await.map_err(db)?;
        tx.execute(&stmt, &[&ids, &seqs, &texts])
            .await
            .map_err(db)?;
    }
    tx.commit().await.map_err(db)?;
    Ok(taken)
}

/// Moves every queued message into the index, waiting for movers in
/// flight (what a search does first).
async fn move_all(conn: &mut deadpool_postgres::Object) -> Result<(), StoreError> {
    move_queued(conn, TAKE_ALL, None).await.map(|_| ())
}

/// Moves at most `limit` queued messages no other mover holds; returns
/// how many it moved.
async fn move_batch(conn: &mut deadpool_postgres::Object, limit: i64) -> Result<i64, StoreError> {
    move_queued(conn, TAKE_BATCH, Some(limit)).await
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
        let mut conn = self.conn().await?;
        while move_batch(&mut conn, INDEX_BATCH).await? >= INDEX_BATCH {}
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
        // (No table of the join but `sessions` has the metadata's columns.)
        let mut sql = format!(
            "SELECT s.id, r.seq, r.record, {META_COLUMNS} FROM search_docs d
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
        let mut conn = self.conn().await?;
        move_all(&mut conn).await?;
        let stmt = conn.prepare_cached(&sql).await.map_err(db)?;
        let rows = conn.query(&stmt, &params).await.map_err(db)?;
        let mut metas: HashMap<String, SessionMeta> = HashMap::new();
        let mut hits = Vec::new();
        for row in rows {
            let sid: &str = row.get(0);
            let Ok(id) = SessionId::parse(sid) else {
                continue;
            };
            let record = parse_record(row.get(2), &id, row.get(1))?;
            let Some(m) = record.as_message() else {
                continue;
            };
            if !query.matches_text(&m.searchable_text()) {
                continue;
            }
            if !metas.contains_key(sid) {
                metas.insert(sid.to_string(), meta_of_row(&row, 3, sid)?);
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
