//! SQL shared by the fs backend's side index and the sqlite backend: both
//! keep a sessions table with the columns `id`, `project`, `updated_us`,
//! `status`, `parent_id`, `name`, `profile` and `meta` (the folded
//! [`SessionMeta`] as JSON).

use rusqlite::Connection;
use rusqlite::types::Value as SqlValue;
use weft_core::SessionId;
use weft_core::session::SessionMeta;
use weft_core::store::{ListQuery, Page};

/// One page of `table`'s sessions matching `query` (and the SQL condition
/// `base`), newest first by `updated_us` then id.
///
/// Project, status, parent, top-level and profile filters are SQL
/// conditions on indexed columns; the case-insensitive name filter is
/// applied to each row with [`weft_core::store::ListFilter::matches`] (for
/// Unicode case folding), reading rows in order until the page is full.
pub(crate) fn list_page(
    conn: &Connection,
    table: &str,
    base: &str,
    query: &ListQuery,
) -> rusqlite::Result<Page> {
    let filter = &query.filter;
    let mut sql = format!("SELECT meta FROM {table} WHERE {base}");
    let mut args: Vec<SqlValue> = Vec::new();
    let mut push = |sql: &mut String, clause: &str, v: SqlValue| {
        args.push(v);
        sql.push_str(&clause.replace('?', &format!("?{}", args.len())));
    };
    if let Some(p) = &filter.project {
        push(&mut sql, " AND project = ?", p.clone().into());
    }
    if let Some(s) = filter.status {
        push(&mut sql, " AND status = ?", s.as_str().to_string().into());
    }
    if let Some(p) = &filter.parent_id {
        push(&mut sql, " AND parent_id = ?", p.to_string().into());
    }
    if let Some(p) = &filter.profile {
        push(&mut sql, " AND profile = ?", p.clone().into());
    }
    if let Some(c) = &query.cursor {
        push(
            &mut sql,
            " AND (updated_us < ? OR (updated_us = ?",
            c.updated_at.timestamp_micros().into(),
        );
        push(&mut sql, " AND id < ?))", c.id.to_string().into());
    }
    if filter.top_level_only {
        // `+` keeps SQLite off the parent_id index: with it, the planner
        // reads every root session through that index and sorts them all
        // (10,000 sessions: ~100 ms) instead of walking the time order
        // and stopping after a page.
        sql.push_str(" AND +parent_id IS NULL");
    }
    if filter.name_contains.is_some() {
        sql.push_str(" AND name IS NOT NULL");
    }
    sql.push_str(" ORDER BY updated_us DESC, id DESC");
    let limit = query.limit.max(1);
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(rusqlite::params_from_iter(args))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let json: String = row.get(0)?;
        let meta: SessionMeta = match serde_json::from_str(&json) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(table, error = %e, "skipping an unreadable session row");
                continue;
            }
        };
        if !filter.matches(&meta) {
            continue;
        }
        out.push(meta);
        if out.len() > limit {
            break;
        }
    }
    Ok(Page::from_sorted(out, limit))
}

/// Up to `limit` ids of `table` starting with `prefix`, in id order.
pub(crate) fn find_ids(
    conn: &Connection,
    table: &str,
    base: &str,
    prefix: &str,
    limit: usize,
) -> rusqlite::Result<Vec<SessionId>> {
    let sql = format!(
        "SELECT id FROM {table} WHERE {base} AND id >= ?1 AND substr(id, 1, ?2) = ?1 ORDER BY id LIMIT ?3"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(
        rusqlite::params![
            prefix,
            prefix.chars().count() as i64,
            i64::try_from(limit).unwrap_or(i64::MAX)
        ],
        |r| r.get::<_, String>(0),
    )?;
    let mut out = Vec::new();
    for r in rows {
        if let Ok(id) = SessionId::parse(r?) {
            out.push(id);
        }
    }
    Ok(out)
}
