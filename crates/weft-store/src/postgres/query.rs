//! Listing (keyset paging), prefix lookup, `delete`, shared state and
//! kernel events for [`PostgresStore`] (search is in `search`).

use serde_json::{Map, Value};
use tokio_postgres::types::ToSql;
use weft_core::SessionId;
use weft_core::record::StateDelta;
use weft_core::session::{SessionMeta, SessionStatus};
use weft_core::store::{DeleteOptions, ListQuery, Page, StoreError};

use super::guarded::{META_COLUMNS, meta_of_row};
use super::{PG_EVENTS_CAP, PostgresStore, corrupt, db, encode, not_found};

/// Appends a session's kernel events: `$1` the session, `$2` the events in
/// order. Returns whether the session exists and the first and last
/// numbers given to the events (NULL when none were written).
///
/// One statement, one round trip, committed **without waiting for its WAL
/// flush** (`synchronous_commit` off for this transaction only, through
/// `set_config(…, true)`, which applies to the commit of the statement's
/// implicit transaction): the event log is diagnostic, as the fs store's
/// `events.jsonl` is (written without `fsync`). A crash of the server may
/// lose its last events, never a record; the events are visible to every
/// reader as soon as the statement returns. Writing them durably cost a
/// WAL flush and seven round trips per kernel event, inside every turn.
const EVENTS_SQL: &str = "WITH s AS (SELECT 1 FROM sessions WHERE id = $1),
ins AS (
    INSERT INTO events (session_id, event)
    SELECT $1, e FROM unnest($2::text[]) WITH ORDINALITY AS t(e, i)
    WHERE EXISTS (SELECT 1 FROM s) ORDER BY i
    RETURNING n
)
SELECT EXISTS (SELECT 1 FROM s), (SELECT min(n) FROM ins), (SELECT max(n) FROM ins),
    set_config('synchronous_commit', 'off', true)";

/// Deletes session `$1`'s events beyond its newest `$2`, committed as
/// [`EVENTS_SQL`] is.
const EVENTS_TRIM_SQL: &str = "WITH d AS (
    DELETE FROM events WHERE session_id = $1 AND n <= (
        SELECT n FROM events WHERE session_id = $1 ORDER BY n DESC OFFSET $2 LIMIT 1)
    RETURNING 1
)
SELECT (SELECT count(*) FROM d), set_config('synchronous_commit', 'off', true)";

/// Events are trimmed when a write's numbers cross a multiple of this: on
/// average once per this many events of a session, so a session keeps
/// between [`PG_EVENTS_CAP`] and a little more than that.
pub const EVENTS_TRIM_EVERY: i64 = 64;

/// Whether the numbers `first..=last` of one write include a multiple of
/// [`EVENTS_TRIM_EVERY`].
fn crosses_trim_mark(first: i64, last: i64) -> bool {
    last.div_euclid(EVENTS_TRIM_EVERY) != (first - 1).div_euclid(EVENTS_TRIM_EVERY)
}

/// Rows fetched per round while a name filter (checked in Rust, for
/// Unicode case folding) skips rows.
const LIST_CHUNK: i64 = 200;

impl PostgresStore {
    /// One page, newest first: the filters on indexed columns and the
    /// cursor are SQL (keyset: `(listed_s, updated_us, id) < (cursor)`,
    /// `listed_s` being `updated_us` in whole seconds); the name
    /// filter is checked per row with `ListFilter::matches`.
    pub(super) async fn list_page(&self, query: &ListQuery) -> Result<Page, StoreError> {
        let filter = &query.filter;
        let limit = query.limit.max(1);
        let conn = self.conn().await?;
        let project = filter.project.clone();
        let status = filter.status.map(|s| s.as_str().to_string());
        let parent = filter.parent_id.as_ref().map(|p| p.to_string());
        let profile = filter.profile.clone();
        let mut cursor: Option<(i64, String)> = query
            .cursor
            .as_ref()
            .map(|c| (c.updated_at.timestamp_micros(), c.id.to_string()));
        let mut out: Vec<SessionMeta> = Vec::new();
        let chunk = if filter.name_contains.is_some() {
            LIST_CHUNK
        } else {
            i64::try_from(limit + 1).unwrap_or(i64::MAX)
        };
        loop {
            let mut sql = format!("SELECT updated_us, id, {META_COLUMNS} FROM sessions WHERE true");
            let mut args: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
            let mut push = |sql: &mut String, clause: &str, v: Box<dyn ToSql + Sync + Send>| {
                args.push(v);
                sql.push_str(&clause.replace('?', &format!("${}", args.len())));
            };
            if let Some(p) = &project {
                push(&mut sql, " AND project = ?", Box::new(p.clone()));
            }
            if let Some(s) = &status {
                push(&mut sql, " AND status = ?", Box::new(s.clone()));
            }
            if let Some(p) = &parent {
                push(&mut sql, " AND parent_id = ?", Box::new(p.clone()));
            }
            if let Some(p) = &profile {
                push(&mut sql, " AND profile = ?", Box::new(p.clone()));
            }
            if let Some((us, id)) = &cursor {
                // `listed_s` (whole seconds of `updated_us`) is what the
                // indexes hold; ordering by it first keeps the order of
                // `updated_us` and lets the index bound the scan.
                push(
                    &mut sql,
                    " AND listed_s <= ?::bigint / 1000000",
                    Box::new(*us),
                );
                push(
                    &mut sql,
                    " AND (listed_s, updated_us, id) < (?::bigint / 1000000",
                    Box::new(*us),
                );
                push(&mut sql, ", ?", Box::new(*us));
                push(&mut sql, ", ?)", Box::new(id.clone()));
            }
            if filter.top_level_only {
                sql.push_str(" AND parent_id IS NULL");
            }
            if filter.name_contains.is_some() {
                sql.push_str(" AND name IS NOT NULL");
            }
            push(
                &mut sql,
                " ORDER BY listed_s DESC, updated_us DESC, id DESC LIMIT ?",
                Box::new(chunk),
            );
            let params: Vec<&(dyn ToSql + Sync)> = args
                .iter()
                .map(|a| a.as_ref() as &(dyn ToSql + Sync))
                .collect();
            let stmt = conn.prepare_cached(&sql).await.map_err(db)?;
            let rows = conn.query(&stmt, &params).await.map_err(db)?;
            let fetched = rows.len();
            for row in &rows {
                let id: &str = row.get(1);
                cursor = Some((row.get(0), id.to_string()));
                let meta = match meta_of_row(row, 2, id) {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(error = %e, "skipping an unreadable session row");
                        continue;
                    }
                };
                if filter.matches(&meta) {
                    out.push(meta);
                    if out.len() > limit {
                        return Ok(Page::from_sorted(out, limit));
                    }
                }
            }
            if (fetched as i64) < chunk {
                return Ok(Page::from_sorted(out, limit));
            }
        }
    }

    /// Up to `limit` ids starting with `prefix`, in id order.
    pub(super) async fn find_session_ids(
        &self,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<SessionId>, StoreError> {
        let conn = self.conn().await?;
        let stmt = conn
            .prepare_cached(
                "SELECT id FROM sessions WHERE id >= $1 AND left(id, $2) = $1 ORDER BY id LIMIT $3",
            )
            .await
            .map_err(db)?;
        let n = i32::try_from(prefix.chars().count()).unwrap_or(i32::MAX);
        let rows = conn
            .query(
                &stmt,
                &[&prefix, &n, &i64::try_from(limit).unwrap_or(i64::MAX)],
            )
            .await
            .map_err(db)?;
        Ok(rows
            .iter()
            .filter_map(|r| SessionId::parse(r.get::<_, &str>(0)).ok())
            .collect())
    }

    pub(super) async fn delete_sessions(
        &self,
        id: &SessionId,
        options: DeleteOptions,
    ) -> Result<Vec<SessionId>, StoreError> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await.map_err(db)?;
        let row = tx
            .query_opt(
                "SELECT status FROM sessions WHERE id = $1 FOR UPDATE",
                &[&id.as_str()],
            )
            .await
            .map_err(db)?
            .ok_or_else(|| not_found(id))?;
        let status: &str = row.get(0);
        if options.unless_active && status == SessionStatus::Active.as_str() {
            return Err(StoreError::Refused(format!(
                "session {id} is active: it cannot be removed"
            )));
        }
        let mut doomed = vec![id.clone()];
        if options.with_children {
            let stmt = tx
                .prepare_cached("SELECT id FROM sessions WHERE parent_id = $1")
                .await
                .map_err(db)?;
            let mut i = 0;
            while i < doomed.len() {
                let rows = tx.query(&stmt, &[&doomed[i].as_str()]).await.map_err(db)?;
                for r in rows {
                    if let Ok(c) = SessionId::parse(r.get::<_, &str>(0))
                        && !doomed.contains(&c)
                    {
                        doomed.push(c);
                    }
                }
                i += 1;
            }
        }
        let ids: Vec<&str> = doomed.iter().map(SessionId::as_str).collect();
        // The session rows first: that waits for appends in flight (they
        // hold the row `FOR UPDATE`) and refuses later ones (no row), so
        // nothing is added behind the statements below. Events and turn
        // locks go with their session (ON DELETE CASCADE); records, queued
        // search text and search documents are removed here (the queue
        // before the documents: a background move in flight is waited for).
        for sql in [
            "DELETE FROM sessions WHERE id = ANY($1)",
            "DELETE FROM records WHERE session_id = ANY($1)",
            "DELETE FROM search_queue WHERE session_id = ANY($1)",
            "DELETE FROM search_docs WHERE session_id = ANY($1)",
        ] {
            tx.execute(sql, &[&ids]).await.map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        Ok(doomed)
    }

    pub(super) async fn read_shared_state(
        &self,
        namespace: &str,
    ) -> Result<Map<String, Value>, StoreError> {
        let conn = self.conn().await?;
        let row = conn
            .query_opt(
                "SELECT state FROM shared_state WHERE namespace = $1",
                &[&namespace],
            )
            .await
            .map_err(db)?;
        match row {
            None => Ok(Map::new()),
            Some(r) => serde_json::from_str(r.get(0))
                .map_err(|e| corrupt(format!("shared_state ({namespace})"), e)),
        }
    }

    /// Creates the namespace's row if missing, locks it (`FOR UPDATE`),
    /// applies `delta` and writes it back, in one transaction: concurrent
    /// writers queue on the row lock and none loses an update.
    pub(super) async fn change_shared_state(
        &self,
        namespace: &str,
        delta: &StateDelta,
    ) -> Result<Map<String, Value>, StoreError> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await.map_err(db)?;
        tx.execute(
            "INSERT INTO shared_state (namespace, state) VALUES ($1, '{}')
             ON CONFLICT (namespace) DO NOTHING",
            &[&namespace],
        )
        .await
        .map_err(db)?;
        let row = tx
            .query_one(
                "SELECT state FROM shared_state WHERE namespace = $1 FOR UPDATE",
                &[&namespace],
            )
            .await
            .map_err(db)?;
        let mut state: Map<String, Value> = serde_json::from_str(row.get(0))
            .map_err(|e| corrupt(format!("shared_state ({namespace})"), e))?;
        delta.apply_to(&mut state);
        tx.execute(
            "UPDATE shared_state SET state = $2 WHERE namespace = $1",
            &[&namespace, &encode(&state)?],
        )
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(state)
    }

    /// Appends kernel events in one statement ([`EVENTS_SQL`]); every
    /// [`EVENTS_TRIM_EVERY`]th event numbered by the table's sequence, the
    /// session's events beyond the newest [`PG_EVENTS_CAP`] are deleted.
    pub(super) async fn append_events(
        &self,
        id: &SessionId,
        events: &[Value],
    ) -> Result<(), StoreError> {
        let conn = self.lane().await?;
        let encoded = events.iter().map(encode).collect::<Result<Vec<_>, _>>()?;
        let stmt = conn.prepare_cached(EVENTS_SQL).await.map_err(db)?;
        let row = conn
            .query_one(&stmt, &[&id.as_str(), &encoded])
            .await
            .map_err(db)?;
        if !row.get::<_, bool>(0) {
            return Err(not_found(id));
        }
        let (first, last): (Option<i64>, Option<i64>) = (row.get(1), row.get(2));
        if let (Some(first), Some(last)) = (first, last)
            && crosses_trim_mark(first, last)
        {
            let stmt = conn.prepare_cached(EVENTS_TRIM_SQL).await.map_err(db)?;
            conn.query_one(&stmt, &[&id.as_str(), &PG_EVENTS_CAP])
                .await
                .map_err(db)?;
        }
        Ok(())
    }

    pub(super) async fn newest_events(
        &self,
        id: &SessionId,
        limit: usize,
    ) -> Result<Vec<Value>, StoreError> {
        let conn = self.conn().await?;
        Self::check_exists(&conn, id).await?;
        let rows = conn
            .query(
                "SELECT event FROM events WHERE session_id = $1 ORDER BY n DESC LIMIT $2",
                &[&id.as_str(), &i64::try_from(limit).unwrap_or(i64::MAX)],
            )
            .await
            .map_err(db)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows.iter().rev() {
            match serde_json::from_str(row.get(0)) {
                Ok(v) => out.push(v),
                Err(e) => tracing::warn!(session = %id, error = %e, "skipping a corrupt event row"),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_trimmed_when_a_write_crosses_a_mark() {
        let t = EVENTS_TRIM_EVERY;
        assert!(crosses_trim_mark(t, t));
        assert!(crosses_trim_mark(t - 1, t + 1));
        assert!(crosses_trim_mark(1, 3 * t));
        assert!(!crosses_trim_mark(1, t - 1));
        assert!(!crosses_trim_mark(t + 1, 2 * t - 1));
        // Over a run of single writes, one in EVENTS_TRIM_EVERY trims.
        assert_eq!(
            (1..=10 * t).filter(|n| crosses_trim_mark(*n, *n)).count(),
            10
        );
    }
}
