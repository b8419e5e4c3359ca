//! Doctor's comparison of the side index with the session logs.

use std::collections::HashMap;
use std::path::Path;

use super::{Checker, FindingKind, Severity, open_read_only};
use crate::fs::INDEX_FILE;
use crate::util::to_u64;

pub(super) fn check_index(c: &mut Checker) {
    let path = c.home.join(INDEX_FILE);
    if !path.exists() {
        if !c.sessions.is_empty() {
            c.add(
                FindingKind::Index,
                Severity::Problem,
                &path,
                None,
                "the index is missing; --fix (or the next command) rebuilds it".into(),
                true,
            );
        }
        return;
    }
    let rows = match read_index(&path) {
        Ok(rows) => rows,
        Err(message) => {
            c.add(
                FindingKind::Index,
                Severity::Problem,
                &path,
                None,
                format!("{message}; --fix rebuilds it"),
                true,
            );
            return;
        }
    };
    let mut ids: Vec<&String> = c.sessions.keys().collect();
    ids.sort();
    let mut found = Vec::new();
    for id in ids {
        let disk = &c.sessions[id];
        match rows.get(id.as_str()) {
            None => found.push((
                FindingKind::IndexMissingRow,
                id.clone(),
                "the index has no row for this session (listings miss it); --fix rebuilds the index".to_string(),
            )),
            Some(row) if row.slug != disk.slug || row.last_seq != disk.last_seq || row.log_bytes != disk.valid_len => {
                found.push((
                    FindingKind::IndexStaleRow,
                    id.clone(),
                    format!(
                        "the index row says seq {} / {} bytes, the log has seq {} / {} bytes; --fix rebuilds the index",
                        row.last_seq, row.log_bytes, disk.last_seq, disk.valid_len
                    ),
                ))
            }
            Some(_) => {}
        }
    }
    let mut orphans: Vec<&String> = rows
        .keys()
        .filter(|id| !c.sessions.contains_key(*id))
        .collect();
    orphans.sort();
    for id in orphans {
        found.push((
            FindingKind::IndexOrphanRow,
            id.clone(),
            "the index lists a session that does not exist; --fix rebuilds the index".into(),
        ));
    }
    for (kind, id, message) in found {
        c.add(kind, Severity::Problem, &path, Some(&id), message, true);
    }
}

struct Row {
    slug: String,
    last_seq: u64,
    log_bytes: u64,
}

/// The index's live rows, or why it cannot be read.
fn read_index(path: &Path) -> Result<HashMap<String, Row>, String> {
    let conn = open_read_only(path).map_err(|e| format!("the index cannot be opened ({e})"))?;
    let verdict: String = conn
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(|e| format!("the index cannot be read ({e})"))?;
    if verdict != "ok" {
        return Err(format!("the index is damaged ({verdict})"));
    }
    let mut stmt = conn
        .prepare("SELECT id, dir_slug, last_seq, log_bytes FROM sessions WHERE pending = 0")
        .map_err(|e| format!("the index has an unexpected shape ({e})"))?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                Row {
                    slug: r.get(1)?,
                    last_seq: to_u64(r.get(2)?),
                    log_bytes: to_u64(r.get(3)?),
                },
            ))
        })
        .and_then(|rows| rows.collect::<rusqlite::Result<HashMap<_, _>>>())
        .map_err(|e| format!("the index cannot be read ({e})"))?;
    Ok(rows)
}
