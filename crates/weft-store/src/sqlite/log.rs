//! The log: inserting records and session rows, the full-text indexing
//! pass, and the `create` / `get` / `append` / `read` / `tail` halves of
//! `SqliteBackend` that run on the blocking pool.

use super::*;
use crate::codec;
use weft_core::MapRecord;
use weft_core::view::creation_batch;

/// Inserts records in a transaction; returns how many are messages (to be
/// indexed for search later).
pub(super) fn insert_records(
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
        let json = codec::encode_line(r).map_err(|e| e.into_store("sqlite", "records"))?;
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
pub(super) fn index_pending(
    conn: &mut Connection,
    limit: Option<usize>,
) -> Result<bool, StoreError> {
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
            match codec::decode_str(json) {
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

pub(super) fn write_session_row(
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

pub(super) fn parse_record(json: &str, id: &SessionId, seq: i64) -> Result<Record, StoreError> {
    codec::decode_str(json).map_err(|e| e.into_store("sqlite", &format!("records ({id}, {seq})")))
}

impl SqliteBackend {
    pub(super) fn metas(&self) -> MutexGuard<'_, HashMap<SessionId, SessionMeta>> {
        lock(&self.metas)
    }

    /// Counts appended messages and, once [`FTS_BATCH`] wait, indexes a
    /// batch of them (the append is already committed and durable; an
    /// indexing failure only delays search, which catches up itself).
    pub(super) fn after_commit(&self, conn: &mut Connection, messages: u64) {
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

    pub(super) fn exists(conn: &Connection, id: &SessionId) -> Result<bool, StoreError> {
        conn.prepare_cached("SELECT 1 FROM sessions WHERE id = ?1")
            .and_then(|mut s| s.exists([id.as_str()]))
            .map_err(db)
    }

    pub(super) fn create(
        &self,
        meta: SessionMeta,
        initial: Vec<RecordKind>,
    ) -> Result<SessionMeta, StoreError> {
        let id = meta.id.clone();
        let (records, folded) = creation_batch(&meta, initial)?;
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

    pub(super) fn get(&self, id: &SessionId) -> Result<SessionMeta, StoreError> {
        let conn = lock(&self.reader);
        let row: Option<String> = conn
            .prepare_cached("SELECT meta FROM sessions WHERE id = ?1")
            .and_then(|mut s| s.query_row([id.as_str()], |r| r.get(0)).optional())
            .map_err(db)?;
        let json = row.ok_or_else(|| not_found(id))?;
        serde_json::from_str(&json).map_err(|e| corrupt(format!("sessions ({id})"), e))
    }

    pub(super) fn append(
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

    /// Records from `from_seq`, at most `limit`, each passed through `map`
    /// as it is decoded (on the decoding threads when there are many).
    pub(super) fn read(
        &self,
        id: &SessionId,
        from_seq: u64,
        limit: Option<usize>,
        map: &dyn MapRecord,
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
        codec::decode_joined(&joined, count, &location, map)
    }

    pub(super) fn tail(&self, id: &SessionId, n: usize) -> Result<Vec<Record>, StoreError> {
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
}
