//! `delete`, full-text `search`, shared state and kernel events: the
//! rest of `SqliteBackend`'s blocking operations.

use super::log::{index_pending, parse_record};
use super::*;

impl SqliteBackend {
    pub(super) fn delete(
        &self,
        id: &SessionId,
        options: DeleteOptions,
    ) -> Result<Vec<SessionId>, StoreError> {
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

    pub(super) fn search(&self, query: &SearchQuery) -> Result<Vec<SearchHit>, StoreError> {
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

    pub(super) fn read_shared_state(
        conn: &Connection,
        namespace: &str,
    ) -> Result<Map<String, Value>, StoreError> {
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

    pub(super) fn update_shared_state(
        &self,
        namespace: &str,
        delta: &StateDelta,
    ) -> Result<Map<String, Value>, StoreError> {
        let mut conn = lock(&self.writer);
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        let mut state = Self::read_shared_state(&tx, namespace)?;
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

    pub(super) fn write_events(&self, id: &SessionId, events: &[Value]) -> Result<(), StoreError> {
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

    pub(super) fn read_events(
        &self,
        id: &SessionId,
        limit: usize,
    ) -> Result<Vec<Value>, StoreError> {
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
