//! The log: `create`, `get`, `append`, `read` and `tail` for
//! [`PostgresStore`], each append one transaction with the session row
//! locked.

use deadpool_postgres::Transaction;
use weft_core::SessionId;
use weft_core::record::{Record, RecordKind, check_batch};
use weft_core::session::SessionMeta;
use weft_core::store::StoreError;
use weft_core::view::creation_batch;

use super::{BACKEND, PostgresStore, corrupt, db, encode, is_unique_violation, not_found};
use crate::codec;
use crate::util::{to_i64, to_u64};

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
            "INSERT INTO records (session_id, seq, kind, record, search_text)
             SELECT $1, * FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[])",
        )
        .await
        .map_err(db)?;
    let mut seqs = Vec::with_capacity(records.len());
    let mut kinds = Vec::with_capacity(records.len());
    let mut jsons = Vec::with_capacity(records.len());
    let mut searches: Vec<Option<String>> = Vec::with_capacity(records.len());
    for r in records {
        jsons.push(codec::encode_line(r).map_err(|e| e.into_store(BACKEND, "records"))?);
        seqs.push(to_i64(r.seq));
        kinds.push(r.kind.name());
        searches.push(r.as_message().map(|m| m.searchable_text()));
    }
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

/// Writes the session row (insert for a new session).
async fn write_session_row(
    tx: &Transaction<'_>,
    meta: &SessionMeta,
    insert: bool,
) -> Result<u64, StoreError> {
    let json = encode(meta)?;
    let sql = if insert {
        "INSERT INTO sessions (id, project, updated_us, status, parent_id, name, profile, last_seq, meta)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO NOTHING"
    } else {
        "UPDATE sessions SET project = $2, updated_us = $3, status = $4, parent_id = $5, name = $6,
         profile = $7, last_seq = $8, meta = $9 WHERE id = $1"
    };
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
        if write_session_row(&tx, &folded, true).await? == 0 {
            return Err(StoreError::AlreadyExists(id.to_string()));
        }
        insert_records(&tx, &id, &records).await?;
        tx.commit().await.map_err(db)?;
        Ok(folded)
    }

    pub(super) async fn get_session(&self, id: &SessionId) -> Result<SessionMeta, StoreError> {
        let conn = self.conn().await?;
        let stmt = conn
            .prepare_cached("SELECT meta FROM sessions WHERE id = $1")
            .await
            .map_err(db)?;
        let row = conn
            .query_opt(&stmt, &[&id.as_str()])
            .await
            .map_err(db)?
            .ok_or_else(|| not_found(id))?;
        parse_meta(row.get(0), id.as_str())
    }

    pub(super) async fn append_batch(
        &self,
        id: &SessionId,
        expected_seq: u64,
        records: Vec<Record>,
    ) -> Result<SessionMeta, StoreError> {
        check_batch(expected_seq, &records)?;
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await.map_err(db)?;
        let stmt = tx
            .prepare_cached("SELECT last_seq, meta FROM sessions WHERE id = $1 FOR UPDATE")
            .await
            .map_err(db)?;
        let row = tx
            .query_opt(&stmt, &[&id.as_str()])
            .await
            .map_err(db)?
            .ok_or_else(|| not_found(id))?;
        let last_seq = to_u64(row.get(0));
        if last_seq != expected_seq {
            return Err(StoreError::Conflict {
                id: id.to_string(),
                expected: expected_seq,
                actual: last_seq,
            });
        }
        let mut meta = parse_meta(row.get(1), id.as_str())?;
        for r in &records {
            meta.apply(r);
        }
        if let Err(e) = insert_records(&tx, id, &records).await {
            if !e.is_conflict() {
                return Err(e);
            }
            // Another writer landed these seqs (the primary key caught
            // it): report the head as it is now.
            tx.rollback().await.map_err(db)?;
            let actual = conn
                .query_opt(
                    "SELECT last_seq FROM sessions WHERE id = $1",
                    &[&id.as_str()],
                )
                .await
                .map_err(db)?
                .map(|r| to_u64(r.get(0)))
                .unwrap_or(expected_seq + 1);
            return Err(StoreError::Conflict {
                id: id.to_string(),
                expected: expected_seq,
                actual,
            });
        }
        write_session_row(&tx, &meta, false).await?;
        tx.commit().await.map_err(db)?;
        Ok(meta)
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

    pub(super) async fn read_records(
        &self,
        id: &SessionId,
        from_seq: u64,
        limit: Option<usize>,
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
        rows.iter()
            .map(|r| parse_record(r.get(1), id, r.get(0)))
            .collect()
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
