//! `weft doctor` for the sqlite backend: SQLite's integrity check and
//! gapless seqs per session.

use std::path::Path;

use weft_core::store::StoreError;

use super::{Finding, FindingKind, Report, Severity, open_read_only};
use crate::util::to_u64;

/// Checks a sqlite store's database file: SQLite's integrity check, and
/// per session that seqs run 1…last_seq without a gap and the session row's
/// head matches its records. Writes nothing.
pub fn check_sqlite(file: &Path) -> Result<Report, StoreError> {
    let mut report = Report {
        home: file.to_path_buf(),
        ..Report::default()
    };
    if !file.is_file() {
        return Err(StoreError::Invalid(format!(
            "no sqlite store at {}: check --store and [store] path",
            file.display()
        )));
    }
    let db_err = |e: rusqlite::Error| StoreError::Backend {
        backend: "sqlite",
        message: format!("{}: {e}", file.display()),
    };
    let problem = |report: &mut Report, session: Option<String>, message: String| {
        report.findings.push(Finding {
            kind: if session.is_some() {
                FindingKind::BadSequence
            } else {
                FindingKind::Index
            },
            severity: Severity::Problem,
            path: file.to_path_buf(),
            session,
            message,
            fixable: false,
        });
    };
    let conn = open_read_only(file).map_err(db_err)?;
    let verdict: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .map_err(db_err)?;
    if verdict != "ok" {
        problem(
            &mut report,
            None,
            format!("the database is damaged ({verdict}); restore it from a backup"),
        );
        return Ok(report);
    }
    let mut stmt = conn
        .prepare(
            "SELECT s.id, s.last_seq, count(r.seq), coalesce(min(r.seq), 0), coalesce(max(r.seq), 0)
             FROM sessions s LEFT JOIN records r ON r.session_id = s.id GROUP BY s.id ORDER BY s.id",
        )
        .map_err(db_err)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                to_u64(r.get(1)?),
                to_u64(r.get(2)?),
                to_u64(r.get(3)?),
                to_u64(r.get(4)?),
            ))
        })
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
        .map_err(db_err)?;
    for (id, last_seq, count, min, max) in rows {
        report.sessions += 1;
        report.records += count;
        if count != max || (count > 0 && min != 1) {
            problem(
                &mut report,
                Some(id),
                format!("seqs are not gapless: {count} record(s) between {min} and {max}"),
            );
        } else if max != last_seq {
            problem(
                &mut report,
                Some(id),
                format!("the session row says seq {last_seq}, its records end at {max}"),
            );
        }
    }
    Ok(report)
}
