//! The log: `create`, `get`, `append`, `read` and `tail` for
//! [`PostgresStore`].
//!
//! # The append: one statement, one round trip
//!
//! An append is the single statement [`APPEND_SQL`], so PostgreSQL runs it
//! as one implicit transaction (committed, and durable under
//! `synchronous_commit`, before the reply) and the client pays one round
//! trip instead of five (`BEGIN`, `SELECT … FOR UPDATE`, `INSERT`, `UPDATE`,
//! `COMMIT`). A batch naming a turn (`Record::batch_turn`) is fenced in the
//! same statement: it is written only while that turn holds the unexpired
//! lease of its branch in `turn_locks` (read `FOR SHARE`, so a takeover
//! waits for the append or the append sees the takeover); otherwise
//! nothing is written and the append fails with [`StoreError::LeaseLost`].
//!
//! The statement starts with the `UPDATE` of the session row, conditioned
//! on `last_seq` being the caller's `expected_seq` **and** the stored
//! metadata JSON being exactly the copy the new metadata was folded from;
//! the batch is inserted only if that row was updated. The update locks
//! the row, so appends to one session are serialized; under read committed
//! a writer that waited for the lock re-checks its conditions against the
//! row as the previous writer committed it (and updates nothing if the
//! head moved). Updating first, rather than reading the row `FOR UPDATE`
//! and then updating it, writes the row once per append instead of twice
//! (measured: about 40 % more appends/s across many sessions). The
//! statement also returns the row as its snapshot saw it (head, whether
//! the metadata matched) and whether the turn holds its lease, so a stale
//! `expected_seq` is still a [`StoreError::Conflict`] naming the actual
//! head, and nothing is written. When nothing was written although the
//! snapshot matched (a writer committed between the snapshot and the
//! update), the append reads the row and tries again.
//!
//! The new metadata is folded client-side (`SessionMeta::apply`) from a
//! copy this process keeps per session (`crate::meta_cache`): the copy it wrote
//! last. The cache is only a hint: the server compares it with the row, and
//! on a miss, or a copy another writer made stale, the append reads the row
//! (one more round trip) and tries again. The `(session_id, seq)` primary
//! key still backs the check (a unique violation is a conflict).

use deadpool_postgres::Transaction;
use weft_core::MapRecord;
use weft_core::SessionId;
use weft_core::record::{Record, RecordKind, check_batch};
use weft_core::session::SessionMeta;
use weft_core::store::StoreError;
use weft_core::view::creation_batch;

use super::guarded::{fold_cleared, meta_columns, meta_of_row};
use super::{BACKEND, PostgresStore, corrupt, db, encode, is_unique_violation, not_found};
use crate::codec;
use crate::util::{to_i64, to_u64};

/// The append (see the module docs). Parameters: `$1` session id, `$2..$4`
/// the batch's seqs, kinds and record JSON, `$5` the seqs of its messages
/// (queued for the search index, see `search`), `$6` the expected
/// head, `$7` the metadata JSON the new one was folded from, `$8..$15` and
/// `$18` the new row (the fold of guarded appends cleared: the new
/// metadata holds it), `$16`/`$17` the branch and turn the batch names
/// (NULL: not a turn's, not fenced). Returns (head in the statement's
/// snapshot, stored metadata matched there, rows updated, the turn holds
/// its lease); a NULL head means no such session.
const APPEND_SQL: &str = concat!(
    "WITH lease AS (
    SELECT 1 FROM turn_locks
    WHERE session_id = $1 AND branch = $16::text AND expires_at > now()
      AND (holder::jsonb ->> 'turn') = $17::text
    FOR SHARE
), held AS (
    SELECT $16::text IS NULL OR EXISTS (SELECT 1 FROM lease) AS held
), upd AS (
    UPDATE sessions SET project = $8, updated_us = $9, status = $10, parent_id = $11,
        name = $12, profile = $13, last_seq = $14, meta = $15, default_branch = $18,
        ",
    fold_cleared!(),
    "
    WHERE id = $1 AND last_seq = $6 AND meta = $7 AND (SELECT held FROM held)
    RETURNING 1
), ins AS (
    INSERT INTO records (session_id, seq, kind, record)
    SELECT $1, u.* FROM unnest($2::bigint[], $3::text[], $4::text[]) AS u
    WHERE EXISTS (SELECT 1 FROM upd)
    RETURNING 1
), queued AS (
    INSERT INTO search_queue (session_id, seq)
    SELECT $1, s FROM unnest($5::bigint[]) AS s WHERE EXISTS (SELECT 1 FROM upd)
), seen AS (
    SELECT last_seq, meta = $7 AS fresh FROM sessions WHERE id = $1
)
SELECT (SELECT last_seq FROM seen), (SELECT fresh FROM seen), (SELECT count(*) FROM upd),
    (SELECT held FROM held)"
);

/// Tries of one append whose cached metadata proves stale.
const MAX_TRIES: usize = 3;

/// A conflict on session `id`.
fn conflict(id: &SessionId, expected: u64, actual: u64) -> StoreError {
    StoreError::Conflict {
        id: id.to_string(),
        expected,
        actual,
    }
}

/// Reads session `id`'s head, metadata and its stored JSON (not found
/// when there is no such session).
async fn read_head(
    conn: &deadpool_postgres::Object,
    id: &SessionId,
) -> Result<(u64, SessionMeta, String), StoreError> {
    let stmt = conn
        .prepare_cached(concat!(
            "SELECT ",
            meta_columns!(),
            " FROM sessions WHERE id = $1"
        ))
        .await
        .map_err(db)?;
    let row = conn
        .query_opt(&stmt, &[&id.as_str()])
        .await
        .map_err(db)?
        .ok_or_else(|| not_found(id))?;
    let meta = meta_of_row(&row, 0, id.as_str())?;
    Ok((to_u64(row.get(0)), meta, row.get(1)))
}

/// The seqs of the messages among `records`: what an append queues for
/// the search index (`search`).
pub(super) fn searchable_seqs(records: &[Record]) -> Vec<i64> {
    records
        .iter()
        .filter(|r| r.as_message().is_some())
        .map(|r| to_i64(r.seq))
        .collect()
}

/// Inserts `records` of session `id` in one statement.
/// A unique violation (another writer landed these seqs) is a conflict.
async fn insert_records(
    tx: &Transaction<'_>,
    id: &SessionId,
    records: &[Record],
) -> Result<(), StoreError> {
    // One statement for the whole batch (arrays unnested server-side).
    let stmt = tx
        .prepare_cached(
            "WITH queued AS (
                INSERT INTO search_queue (session_id, seq) SELECT $1, s FROM unnest($5::bigint[]) AS s
             )
             INSERT INTO records (session_id, seq, kind, record)
             SELECT $1, * FROM unnest($2::bigint[], $3::text[], $4::text[])",
        )
        .await
        .map_err(db)?;
    let mut seqs = Vec::with_capacity(records.len());
    let mut kinds = Vec::with_capacity(records.len());
    let mut jsons = Vec::with_capacity(records.len());
    for r in records {
        jsons.push(codec::encode_line(r).map_err(|e| e.into_store(BACKEND, "records"))?);
        seqs.push(to_i64(r.seq));
        kinds.push(r.kind.name());
    }
    let searches = searchable_seqs(records);
    match tx
        .execute(&stmt, &[&id.as_str(), &seqs, &kinds, &jsons, &searches])
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_unique_violation(&e) => {
            let first = records.first().map(|r| r.seq).unwrap_or(1);
            Err(StoreError::Conflict {
                id: id.to_string(),
                expected: first.saturating_sub(1),
                actual: first,
            })
        }
        Err(e) => Err(db(e)),
    }
}

/// Inserts a new session's row (0 rows when the id is taken).
async fn insert_session_row(tx: &Transaction<'_>, meta: &SessionMeta) -> Result<u64, StoreError> {
    let json = encode(meta)?;
    let sql = "INSERT INTO sessions (id, project, updated_us, status, parent_id, name, profile,
            last_seq, meta, default_branch)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (id) DO NOTHING";
    let stmt = tx.prepare_cached(sql).await.map_err(db)?;
    tx.execute(
        &stmt,
        &[
            &meta.id.as_str(),
            &meta.project.slug,
            &meta.updated_at.timestamp_micros(),
            &meta.status.as_str(),
            &meta.parent_id.as_ref().map(SessionId::as_str),
            &meta.name,
            &meta.profile,
            &to_i64(meta.last_seq),
            &json,
            &meta.default_branch.as_str(),
        ],
    )
    .await
    .map_err(db)
}

/// Parses a stored record.
pub(super) fn parse_record(json: &str, id: &SessionId, seq: i64) -> Result<Record, StoreError> {
    codec::decode_str(json).map_err(|e| e.into_store(BACKEND, &format!("records ({id}, {seq})")))
}

/// Parses a stored session row's metadata.
pub(super) fn parse_meta(json: &str, id: &str) -> Result<SessionMeta, StoreError> {
    serde_json::from_str(json).map_err(|e| corrupt(format!("sessions ({id})"), e))
}

impl PostgresStore {
    pub(super) async fn create_session(
        &self,
        meta: SessionMeta,
        initial: Vec<RecordKind>,
    ) -> Result<SessionMeta, StoreError> {
        let id = meta.id.clone();
        let (records, folded) = creation_batch(&meta, initial)?;
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await.map_err(db)?;
        if insert_session_row(&tx, &folded).await? == 0 {
            return Err(StoreError::AlreadyExists(id.to_string()));
        }
        insert_records(&tx, &id, &records).await?;
        tx.commit().await.map_err(db)?;
        self.inner.meta_cache.put(folded.clone(), encode(&folded)?);
        if records.iter().any(|r| r.as_message().is_some()) {
            self.inner.indexer.wrote(self);
        }
        Ok(folded)
    }

    /// The copy read is kept as the append's hint (`MetaCache`): a write
    /// that follows a read (the daemon checks a session before adding to
    /// it) folds from it, even when another process wrote last.
    /// The session's metadata, read on a lane (one statement: it
    /// pipelines with the appends, as a daemon reading a session another
    /// daemon wrote last does before every append).
    pub(super) async fn get_session(&self, id: &SessionId) -> Result<SessionMeta, StoreError> {
        let conn = self.lane().await?;
        let (_, meta, json) = read_head(&conn, id).await?;
        self.inner.meta_cache.put(meta.clone(), json);
        Ok(meta)
    }

    pub(super) async fn append_batch(
        &self,
        id: &SessionId,
        expected_seq: u64,
        records: Vec<Record>,
    ) -> Result<SessionMeta, StoreError> {
        check_batch(expected_seq, &records)?;
        let conn = self.lane().await?;
        let stmt = conn.prepare_cached(APPEND_SQL).await.map_err(db)?;
        let (mut seqs, mut kinds, mut jsons) = (Vec::new(), Vec::new(), Vec::new());
        for r in &records {
            jsons.push(codec::encode_line(r).map_err(|e| e.into_store(BACKEND, "records"))?);
            seqs.push(to_i64(r.seq));
            kinds.push(r.kind.name());
        }
        let searches = searchable_seqs(&records);
        let fenced = Record::batch_turn(&records);
        let (branch, turn) = (
            fenced.map(|(_, b)| b.as_str()),
            fenced.map(|(t, _)| t.as_str()),
        );
        let cache = &self.inner.meta_cache;
        // A stale cached copy costs one read and one more try; a copy read
        // from the server can only be stale again if another writer changed
        // the row in between, so a few tries suffice.
        for _ in 0..MAX_TRIES {
            let (old, old_json) = match cache.get(id, expected_seq) {
                Some(hit) => hit,
                None => {
                    let (head, meta, json) = read_head(&conn, id).await?;
                    // A turn's batch goes to the statement even then: a
                    // turn that lost its lease is told so (not sent to
                    // rebase on a conflict).
                    if head != expected_seq && fenced.is_none() {
                        return Err(conflict(id, expected_seq, head));
                    }
                    (meta, json)
                }
            };
            let mut meta = old;
            for r in &records {
                meta.apply(r);
            }
            let new_json = encode(&meta)?;
            let result = conn
                .query_one(
                    &stmt,
                    &[
                        &id.as_str(),
                        &seqs,
                        &kinds,
                        &jsons,
                        &searches,
                        &to_i64(expected_seq),
                        &old_json,
                        &meta.project.slug,
                        &meta.updated_at.timestamp_micros(),
                        &meta.status.as_str(),
                        &meta.parent_id.as_ref().map(SessionId::as_str),
                        &meta.name,
                        &meta.profile,
                        &to_i64(meta.last_seq),
                        &new_json,
                        &branch,
                        &turn,
                        &meta.default_branch.as_str(),
                    ],
                )
                .await;
            let row = match result {
                Ok(row) => row,
                Err(e) if is_unique_violation(&e) => {
                    // Another writer landed these seqs (the primary key
                    // caught it): report the head as it is now.
                    cache.forget(id);
                    let actual = read_head(&conn, id)
                        .await
                        .map(|(head, _, _)| head)
                        .unwrap_or(expected_seq + 1);
                    return Err(conflict(id, expected_seq, actual));
                }
                Err(e) => {
                    cache.forget(id);
                    return Err(db(e));
                }
            };
            let head: Option<i64> = row.get(0);
            let updated: i64 = row.get(2);
            let held: bool = row.get(3);
            let Some(head) = head.map(to_u64) else {
                cache.forget(id);
                return Err(not_found(id));
            };
            if !held && let Some((turn, branch)) = fenced {
                return Err(StoreError::LeaseLost {
                    id: id.to_string(),
                    branch: branch.to_string(),
                    turn: turn.to_string(),
                });
            }
            if head != expected_seq {
                cache.forget(id);
                return Err(conflict(id, expected_seq, head));
            }
            if updated == 1 {
                cache.put(meta.clone(), new_json);
                if !searches.is_empty() {
                    self.inner.indexer.wrote(self);
                }
                return Ok(meta);
            }
            // The head matched but nothing was written: the stored
            // metadata differs from our copy (fresh is false), or another
            // writer committed after this statement's snapshot (the update
            // re-checked the newer row). Reread it and try again.
            cache.forget(id);
        }
        Err(StoreError::Backend {
            backend: BACKEND,
            message: format!("session {id}: its metadata kept changing under the append"),
        })
    }

    /// Fails with not-found unless session `id` exists.
    pub(super) async fn check_exists(
        conn: &deadpool_postgres::Object,
        id: &SessionId,
    ) -> Result<(), StoreError> {
        let stmt = conn
            .prepare_cached("SELECT 1 FROM sessions WHERE id = $1")
            .await
            .map_err(db)?;
        match conn.query_opt(&stmt, &[&id.as_str()]).await.map_err(db)? {
            Some(_) => Ok(()),
            None => Err(not_found(id)),
        }
    }

    /// Records from `from_seq`, at most `limit`, each passed through `map`
    /// as it is decoded (on the decoding threads when there are many, as
    /// the sqlite backend does).
    pub(super) async fn read_records(
        &self,
        id: &SessionId,
        from_seq: u64,
        limit: Option<usize>,
        map: &dyn MapRecord,
    ) -> Result<Vec<Record>, StoreError> {
        let mut conn = self.conn().await?;
        // One snapshot for the existence check and the rows.
        let tx = conn
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(db)?;
        let exists = tx
            .prepare_cached("SELECT 1 FROM sessions WHERE id = $1")
            .await
            .map_err(db)?;
        if tx
            .query_opt(&exists, &[&id.as_str()])
            .await
            .map_err(db)?
            .is_none()
        {
            return Err(not_found(id));
        }
        let limit: Option<i64> = limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX));
        let stmt = tx
            .prepare_cached(
                "SELECT seq, record FROM records WHERE session_id = $1 AND seq >= $2
                 ORDER BY seq LIMIT $3",
            )
            .await
            .map_err(db)?;
        let rows = tx
            .query(&stmt, &[&id.as_str(), &to_i64(from_seq), &limit])
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        codec::decode_rows(
            rows.iter().map(|r| r.get::<_, &str>(1)),
            &format!("records ({id})"),
            map,
        )
    }

    pub(super) async fn tail_records(
        &self,
        id: &SessionId,
        n: usize,
    ) -> Result<Vec<Record>, StoreError> {
        let conn = self.conn().await?;
        Self::check_exists(&conn, id).await?;
        let stmt = conn
            .prepare_cached(
                "SELECT seq, record FROM records WHERE session_id = $1 ORDER BY seq DESC LIMIT $2",
            )
            .await
            .map_err(db)?;
        let rows = conn
            .query(
                &stmt,
                &[&id.as_str(), &i64::try_from(n).unwrap_or(i64::MAX)],
            )
            .await
            .map_err(db)?;
        let mut out = rows
            .iter()
            .map(|r| parse_record(r.get(1), id, r.get(0)))
            .collect::<Result<Vec<_>, _>>()?;
        out.reverse();
        Ok(out)
    }
}
