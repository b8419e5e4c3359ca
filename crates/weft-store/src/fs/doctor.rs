//! `weft doctor`: checks a weft home of the fs store and repairs what can be
//! repaired without losing a record.
//!
//! This module owns the notion of what does *not* belong in a home: stray
//! entries under `projects/` ([`note_stray`], used by the store's scans to
//! warn once per path instead of failing) and everything [`check`] reports:
//!
//! - every session log parses (corrupt lines in the middle, a torn tail, a
//!   complete but unparseable or unfinished tail), its seqs run gapless from
//!   a `session_created` of the session's own id;
//! - `metadata.json` and `transcript.jsonl` agree with the log (they may lag
//!   behind it, never disagree or run ahead);
//! - the side index has a current row for every session and none for a
//!   session that is gone, and passes SQLite's integrity check;
//! - no temp file of an atomic write (`.<name>.tmp-<pid>`) outlived its
//!   writer; records set aside in `log.quarantine.jsonl`; stray files and
//!   symlinks under `projects/`; a home writable by others or a
//!   `config.toml` (which holds the server token) readable by others.
//!
//! [`fix`] repairs in place: it rebuilds the index, `metadata.json` and
//! `transcript.jsonl` from the logs, removes stale temp files, cuts a torn
//! tail (a line without its newline can never be a committed record), moves
//! complete lines after a log's head to `log.quarantine.jsonl`, and tightens
//! permissions. It never deletes a record. [`check`] writes nothing, so it
//! works on a read-only home.
//!
//! [`check_sqlite`] is the sqlite backend's counterpart (integrity check and
//! gapless seqs per session).

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use weft_core::SessionId;
use weft_core::progress::{NoProgress, Progress};
use weft_core::record::{Record, RecordKind};
use weft_core::session::SessionMeta;
use weft_core::store::StoreError;

mod index_check;
mod repair;
mod sqlite;
#[cfg(test)]
mod tests;

pub use repair::{fix, fix_reporting};
pub use sqlite::check_sqlite;

use super::{EVENTS_FILE, LOCK_FILE, LOG_FILE, META_FILE, TRANSCRIPT_FILE, log, transcript};
use crate::codec;
use crate::util::{IoContext, first_sighting, io_err, validate_slug};

/// The side file holding records set aside from a session log.
pub use super::QUARANTINE_FILE;

/// How old a temp file must be before it counts as stale whatever its pid.
const TEMP_MAX_AGE: Duration = Duration::from_secs(60);

/// Warns about a stray entry found while scanning a home, once per path and
/// process (later sightings log at debug level), so a stray `README` under
/// `projects/` neither stops a command nor floods every one of them.
pub(crate) fn note_stray(path: &Path, why: &str) {
    if first_sighting(format!("stray {}", path.display())) {
        tracing::warn!(path = %path.display(), "ignoring a stray entry in the weft home ({why}); `weft doctor` lists them");
    } else {
        tracing::debug!(path = %path.display(), "ignoring a stray entry in the weft home ({why})");
    }
}

/// The log file of session `id` in project directory `dir_slug`.
pub(crate) fn log_path(root: &Path, dir_slug: &str, id: &str) -> PathBuf {
    root.join("projects")
        .join(dir_slug)
        .join("sessions")
        .join(id)
        .join(LOG_FILE)
}

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Something is wrong (doctor exits with 1).
    Problem,
    /// Worth knowing, harmless to weft (stray files, quarantined records).
    Notice,
}

/// What a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// Unparseable lines before a log's head (readers skip them).
    CorruptLines,
    /// A log ends with a line without its newline (a torn write).
    TornTail,
    /// Complete lines after a log's head: unparseable, or a batch whose last
    /// line is missing (never committed).
    UncommittedTail,
    /// Seqs do not run 1, 2, 3… or the log does not start with this
    /// session's `session_created`.
    BadSequence,
    /// A session directory without a committed record.
    NoRecords,
    /// `metadata.json` is missing, unreadable, or disagrees with the log.
    Metadata,
    /// `transcript.jsonl` disagrees with the log.
    Transcript,
    /// The index is missing, unreadable, or fails its integrity check.
    Index,
    /// A session has no index row.
    IndexMissingRow,
    /// An index row names another head than the log's.
    IndexStaleRow,
    /// An index row for a session that does not exist.
    IndexOrphanRow,
    /// A temp file of an atomic write whose writer is gone.
    TempFile,
    /// Records set aside in `log.quarantine.jsonl`.
    Quarantine,
    /// A file or directory that is not part of the layout.
    Stray,
    /// A symlink where weft expects a real file or directory.
    Symlink,
    /// A file or directory others may read or write.
    Permissions,
}

/// One thing doctor found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// What it is about.
    pub kind: FindingKind,
    /// How much it matters.
    pub severity: Severity,
    /// The file or directory concerned.
    pub path: PathBuf,
    /// The session concerned, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// What is wrong, in plain words.
    pub message: String,
    /// Whether `--fix` repairs it.
    pub fixable: bool,
}

/// What doctor found in a home (and, after [`fix`], what it repaired).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// The home checked.
    pub home: PathBuf,
    /// Session directories checked.
    pub sessions: u64,
    /// Committed records read.
    pub records: u64,
    /// What is (still) wrong.
    pub findings: Vec<Finding>,
    /// What [`fix`] repaired (empty after [`check`]).
    pub fixed: Vec<Finding>,
}

impl Report {
    /// Whether no problem remains (notices allowed).
    pub fn healthy(&self) -> bool {
        self.findings.iter().all(|f| f.severity == Severity::Notice)
    }

    /// The number of remaining problems.
    pub fn problems(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Problem)
            .count()
    }
}

/// A session as found on disk, for the index comparison.
struct OnDisk {
    slug: String,
    last_seq: u64,
    valid_len: u64,
}

struct Checker<'a> {
    home: PathBuf,
    report: Report,
    sessions: HashMap<String, OnDisk>,
    /// Told of each session directory found and checked.
    progress: &'a dyn Progress,
    /// Session directories found so far.
    found: u64,
}

impl Checker<'_> {
    fn add(
        &mut self,
        kind: FindingKind,
        severity: Severity,
        path: &Path,
        session: Option<&str>,
        message: String,
        fixable: bool,
    ) {
        self.report.findings.push(Finding {
            kind,
            severity,
            path: path.to_path_buf(),
            session: session.map(str::to_string),
            message,
            fixable,
        });
    }

    fn stray(&mut self, path: &Path, what: &str) {
        self.add(
            FindingKind::Stray,
            Severity::Notice,
            path,
            None,
            format!("{what}; weft ignores it (move it out of the weft home)"),
            false,
        );
    }
}

/// Checks the fs store rooted at `home` and reports what is wrong. Writes
/// nothing (works on a read-only home).
pub fn check(home: &Path) -> Result<Report, StoreError> {
    check_reporting(home, &NoProgress)
}

/// [`check`], telling `progress` of the session directories as it finds
/// them and each one it checks.
pub fn check_reporting(home: &Path, progress: &dyn Progress) -> Result<Report, StoreError> {
    let md = match fs::metadata(home) {
        Ok(md) => md,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(StoreError::Invalid(format!(
                "there is no weft home at {}: point WEFT_HOME or --home at it",
                home.display()
            )));
        }
        Err(e) => return Err(io_err(home, e)),
    };
    if !md.is_dir() {
        return Err(StoreError::Invalid(format!(
            "{} is not a directory: point WEFT_HOME or --home at the weft home",
            home.display()
        )));
    }
    let mut c = Checker {
        home: home.to_path_buf(),
        report: Report {
            home: home.to_path_buf(),
            ..Report::default()
        },
        sessions: HashMap::new(),
        progress,
        found: 0,
    };
    check_permissions(&mut c, &md)?;
    scan_temp_files(&mut c, home)?;
    scan_temp_files(&mut c, &home.join("state"))?;
    scan_projects(&mut c)?;
    index_check::check_index(&mut c);
    Ok(c.report)
}

fn check_permissions(c: &mut Checker, home_md: &fs::Metadata) -> Result<(), StoreError> {
    let home = c.home.clone();
    let mode = home_md.permissions().mode();
    if mode & 0o022 != 0 {
        c.add(
            FindingKind::Permissions,
            Severity::Problem,
            &home,
            None,
            format!(
                "the weft home is writable by other users (mode {:o})",
                mode & 0o777
            ),
            true,
        );
    }
    let config = home.join("config.toml");
    match fs::symlink_metadata(&config) {
        Ok(m) if m.permissions().mode() & 0o077 != 0 && m.is_file() => c.add(
            FindingKind::Permissions,
            Severity::Problem,
            &config,
            None,
            format!(
                "config.toml (which may hold the server token) is readable by other users (mode {:o}); it should be 600",
                m.permissions().mode() & 0o777
            ),
            true,
        ),
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(&config, e)),
    }
    Ok(())
}

/// Whether a file name is an atomic write's temp file (`.<name>.tmp-<pid>`),
/// and its pid.
fn temp_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix('.')?;
    let (_, pid) = rest.rsplit_once(".tmp-")?;
    pid.parse().ok()
}

/// Whether a temp file's writer may still be writing it.
fn temp_in_use(path: &Path, pid: u32) -> bool {
    let young = fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_some_and(|age| age < TEMP_MAX_AGE);
    let proc_dir = Path::new("/proc");
    let alive = if proc_dir.is_dir() {
        proc_dir.join(pid.to_string()).exists()
    } else {
        true
    };
    young && alive
}

fn scan_temp_files(c: &mut Checker, dir: &Path) -> Result<(), StoreError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(dir, e)),
    };
    for entry in entries {
        let entry = entry.at(dir)?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let Some(pid) = temp_pid(&name) else {
            continue;
        };
        let path = entry.path();
        if !temp_in_use(&path, pid) {
            c.add(
                FindingKind::TempFile,
                Severity::Problem,
                &path,
                None,
                format!("a temp file left by an interrupted write (process {pid} is gone or it is over a minute old)"),
                true,
            );
        }
    }
    Ok(())
}

fn scan_projects(c: &mut Checker) -> Result<(), StoreError> {
    let projects = c.home.join("projects");
    let entries = match fs::read_dir(&projects) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(&projects, e)),
    };
    let mut entries: Vec<_> = entries.collect::<Result<_, _>>().at(&projects)?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let ft = entry.file_type().at(&path)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if ft.is_symlink() {
            symlink(c, &path, None);
        } else if !ft.is_dir() {
            c.stray(&path, "a file where only project directories belong");
        } else if validate_slug(&name).is_err() {
            c.stray(&path, "a directory whose name is not a project slug");
        } else {
            scan_project(c, &name, &path)?;
        }
    }
    Ok(())
}

fn symlink(c: &mut Checker, path: &Path, session: Option<&str>) {
    c.add(
        FindingKind::Symlink,
        Severity::Problem,
        path,
        session,
        "a symlink where weft expects a real file or directory; weft does not follow it (replace it with the file it points to)".into(),
        false,
    );
}

/// The entries of `dir`, by name (doctor reports in a stable order).
fn sorted_entries(dir: &Path) -> Result<Vec<fs::DirEntry>, StoreError> {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .at(dir)?
        .collect::<Result<_, _>>()
        .at(dir)?;
    entries.sort_by_key(|e| e.file_name());
    Ok(entries)
}

fn scan_project(c: &mut Checker, slug: &str, dir: &Path) -> Result<(), StoreError> {
    for entry in sorted_entries(dir)? {
        let path = entry.path();
        let ft = entry.file_type().at(&path)?;
        if entry.file_name() != "sessions" {
            c.stray(&path, "not part of a project directory");
        } else if ft.is_symlink() {
            symlink(c, &path, None);
        } else if !ft.is_dir() {
            c.stray(&path, "a file where the sessions directory belongs");
        } else {
            scan_sessions(c, slug, &path)?;
        }
    }
    Ok(())
}

fn scan_sessions(c: &mut Checker, slug: &str, dir: &Path) -> Result<(), StoreError> {
    let entries = sorted_entries(dir)?;
    c.found += entries.len() as u64;
    c.progress.start(c.found);
    for entry in entries {
        c.progress.advance(1);
        let path = entry.path();
        let ft = entry.file_type().at(&path)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(".trash-") {
            continue; // a deletion in progress, finished by the next open
        }
        if ft.is_symlink() {
            symlink(c, &path, Some(&name));
        } else if !ft.is_dir() {
            c.stray(&path, "a file where only session directories belong");
        } else if SessionId::parse(name.as_str()).is_err() {
            c.stray(&path, "a directory whose name is not a session id");
        } else {
            c.report.sessions += 1;
            check_session(c, slug, &name, &path)?;
        }
    }
    Ok(())
}

/// A session log as doctor reads it.
pub(crate) struct ParsedLog {
    /// Committed records (corrupt lines skipped).
    pub records: Vec<Record>,
    /// The end of each committed record's line, by position in `records`.
    pub ends: Vec<u64>,
    /// Offsets of unparseable lines before the head.
    pub corrupt: Vec<u64>,
    /// End of the last committed line.
    pub valid_len: u64,
    /// Complete lines after the head (from `valid_len` to `torn_at`).
    pub tail_lines: usize,
    /// Where a final line without newline starts (== file length if none).
    pub torn_at: u64,
    /// The file's length.
    pub file_len: u64,
}

/// Parses a whole log the way the store reads it (see [`super::log`]).
pub(crate) fn parse_log(bytes: &[u8]) -> ParsedLog {
    let mut lines = Vec::new();
    let mut start = 0usize;
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\n' {
            lines.push((start, i));
            start = i + 1;
        }
    }
    let torn_at = start as u64;
    // The head: the last complete, parseable line without the more marker.
    let mut head_idx = None;
    for (n, &(s, e)) in lines.iter().enumerate().rev() {
        let line = &bytes[s..e];
        if !log::has_more(line) && codec::decode_line(line).is_ok() {
            head_idx = Some(n);
            break;
        }
    }
    let committed = head_idx.map_or(0, |h| h + 1);
    let mut out = ParsedLog {
        records: Vec::new(),
        ends: Vec::new(),
        corrupt: Vec::new(),
        valid_len: head_idx.map_or(0, |h| lines[h].1 as u64 + 1),
        tail_lines: lines.len() - committed,
        torn_at,
        file_len: bytes.len() as u64,
    };
    for &(s, e) in &lines[..committed] {
        if s == e {
            continue;
        }
        match codec::decode_line(&bytes[s..e]) {
            Ok(r) => {
                out.records.push(r);
                out.ends.push(e as u64 + 1);
            }
            Err(_) => out.corrupt.push(s as u64),
        }
    }
    out
}

/// The metadata and transcript a log implies.
struct Derived {
    meta: SessionMeta,
    /// The fold after each record, for comparing a lagging metadata.json.
    at_seq: HashMap<u64, (SessionMeta, u64)>,
    transcript: Vec<u8>,
}

fn derive(records: &[Record], ends: &[u64]) -> Option<Derived> {
    let RecordKind::SessionCreated(created) = &records.first()?.kind else {
        return None;
    };
    let mut meta = (**created).clone();
    let mut at_seq = HashMap::new();
    for (r, end) in records.iter().zip(ends) {
        meta.apply(r);
        at_seq.insert(r.seq, (meta.clone(), *end));
    }
    let mut transcript = Vec::new();
    for r in records {
        if let Some(m) = r.as_message()
            && m.branch == meta.default_branch
        {
            transcript::message_lines(m, r.seq, &mut transcript);
        }
    }
    Some(Derived {
        meta,
        at_seq,
        transcript,
    })
}

/// The `metadata.json` bytes for `meta` folding `log_bytes` of the log (the
/// shape the store writes).
fn meta_file_bytes(meta: &SessionMeta, log_bytes: u64) -> Result<Vec<u8>, StoreError> {
    super::meta_file::encode(meta, log_bytes)
}

fn check_session(c: &mut Checker, slug: &str, id: &str, dir: &Path) -> Result<(), StoreError> {
    let known = [
        LOG_FILE,
        META_FILE,
        TRANSCRIPT_FILE,
        EVENTS_FILE,
        LOCK_FILE,
        QUARANTINE_FILE,
        super::meta_file::PARENT_ID_FILE,
    ];
    let mut symlinked = HashSet::new();
    for entry in sorted_entries(dir)? {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type().at(&path)?.is_symlink() {
            symlink(c, &path, Some(id));
            symlinked.insert(name);
        } else if let Some(pid) = temp_pid(&name) {
            if !temp_in_use(&path, pid) {
                c.add(
                    FindingKind::TempFile,
                    Severity::Problem,
                    &path,
                    Some(id),
                    format!("a temp file left by an interrupted write (process {pid} is gone or it is over a minute old)"),
                    true,
                );
            }
        } else if !known.contains(&name.as_str()) && !crate::turn_lock::is_lock_file_name(&name) {
            c.stray(&path, "not part of a session directory");
        }
    }
    if symlinked.contains(LOG_FILE) {
        return Ok(());
    }
    let log_path = dir.join(LOG_FILE);
    let bytes = match fs::read(&log_path) {
        Ok(b) => b,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            c.add(
                FindingKind::NoRecords,
                Severity::Notice,
                dir,
                Some(id),
                "a session directory without log.jsonl (left by an interrupted create); weft ignores it".into(),
                false,
            );
            return Ok(());
        }
        Err(e) => return Err(io_err(&log_path, e)),
    };
    let parsed = parse_log(&bytes);
    c.report.records += parsed.records.len() as u64;
    if !parsed.corrupt.is_empty() {
        c.add(
            FindingKind::CorruptLines,
            Severity::Problem,
            &log_path,
            Some(id),
            format!(
                "{} unreadable line(s) in the middle of the log (first at byte {}); readers skip them, doctor cannot repair them",
                parsed.corrupt.len(),
                parsed.corrupt[0]
            ),
            false,
        );
    }
    if parsed.tail_lines > 0 {
        c.add(
            FindingKind::UncommittedTail,
            Severity::Problem,
            &log_path,
            Some(id),
            format!(
                "{} complete but uncommitted line(s) after the last record (unreadable, or a batch cut short); --fix moves them to {QUARANTINE_FILE}",
                parsed.tail_lines
            ),
            true,
        );
    }
    if parsed.torn_at < parsed.file_len {
        c.add(
            FindingKind::TornTail,
            Severity::Problem,
            &log_path,
            Some(id),
            format!(
                "the log ends with {} byte(s) of a torn write (no newline); --fix cuts them off",
                parsed.file_len - parsed.torn_at
            ),
            true,
        );
    }
    if !symlinked.contains(QUARANTINE_FILE) {
        let q = dir.join(QUARANTINE_FILE);
        if let Ok(qb) = fs::read(&q) {
            let n = qb.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count();
            c.add(
                FindingKind::Quarantine,
                Severity::Notice,
                &q,
                Some(id),
                format!("{n} line(s) set aside from the log as unreadable; inspect them, weft does not read them"),
                false,
            );
        }
    }
    let Some(last) = parsed.records.last() else {
        c.add(
            FindingKind::NoRecords,
            Severity::Problem,
            &log_path,
            Some(id),
            "the log holds no committed record; weft ignores this session".into(),
            false,
        );
        return Ok(());
    };
    // Seqs burned by quarantined records count as used (the store's head
    // is past them too).
    let burned = if symlinked.contains(QUARANTINE_FILE) {
        0
    } else {
        super::recovery::quarantined_seq(dir).unwrap_or(0)
    };
    let last_seq = last.seq.max(burned);
    if let Some(problem) = sequence_problem(id, &parsed.records) {
        c.add(
            FindingKind::BadSequence,
            Severity::Problem,
            &log_path,
            Some(id),
            problem,
            false,
        );
    }
    c.sessions.insert(
        id.to_string(),
        OnDisk {
            slug: slug.to_string(),
            last_seq,
            valid_len: parsed.valid_len,
        },
    );
    let Some(derived) = derive(&parsed.records, &parsed.ends) else {
        return Ok(());
    };
    if !symlinked.contains(META_FILE) {
        let path = dir.join(META_FILE);
        if let Some(problem) = metadata_problem(&path, &derived, parsed.valid_len, last_seq)? {
            c.add(
                FindingKind::Metadata,
                Severity::Problem,
                &path,
                Some(id),
                problem,
                true,
            );
        }
    }
    if !symlinked.contains(TRANSCRIPT_FILE) {
        let path = dir.join(TRANSCRIPT_FILE);
        let have = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io_err(&path, e)),
        };
        // It may lag behind the log by whole lines (caught up by the next
        // append), never disagree.
        let lagging =
            derived.transcript.starts_with(&have) && (have.is_empty() || have.ends_with(b"\n"));
        if !lagging && parsed.corrupt.is_empty() {
            c.add(
                FindingKind::Transcript,
                Severity::Problem,
                &path,
                Some(id),
                "transcript.jsonl does not match the log; --fix rebuilds it".into(),
                true,
            );
        } else if !lagging {
            // It may hold the only readable copy of the corrupt lines.
            c.add(
                FindingKind::Transcript,
                Severity::Problem,
                &path,
                Some(id),
                "transcript.jsonl does not match the log, whose corrupt lines it may still hold; doctor leaves it as it is".into(),
                false,
            );
        }
    }
    Ok(())
}

fn sequence_problem(id: &str, records: &[Record]) -> Option<String> {
    let first = records.first()?;
    match &first.kind {
        RecordKind::SessionCreated(m) if m.id.as_str() == id && first.seq == 1 => {}
        RecordKind::SessionCreated(m) if m.id.as_str() != id => {
            return Some(format!(
                "the log belongs to session {}, not to the directory's {id}",
                m.id
            ));
        }
        _ => return Some("the log does not start with session_created at seq 1".into()),
    }
    for pair in records.windows(2) {
        if pair[1].seq != pair[0].seq + 1 {
            return Some(format!(
                "seq jumps from {} to {} (records missing or repeated); doctor cannot repair it",
                pair[0].seq, pair[1].seq
            ));
        }
    }
    None
}

/// `metadata.json` as the check reads it.
struct MetaFile {
    meta: SessionMeta,
    log_bytes: u64,
}

/// What is wrong with `metadata.json` at `path`, if anything. `last_seq`
/// is the log's head, seqs burned by quarantined records included: the
/// store's fold counts them, so a file at such a seq agrees when it is the
/// fold of the last record with that seq.
fn metadata_problem(
    path: &Path,
    derived: &Derived,
    valid_len: u64,
    last_seq: u64,
) -> Result<Option<String>, StoreError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Ok(Some("metadata.json is missing; --fix rebuilds it".into()));
        }
        Err(e) => return Err(io_err(path, e)),
    };
    let file = match super::meta_file::decode(&bytes) {
        Ok((meta, log_bytes)) => MetaFile { meta, log_bytes },
        Err(e) => {
            return Ok(Some(format!(
                "metadata.json is unreadable ({e}); --fix rebuilds it"
            )));
        }
    };
    if file.meta.id != derived.meta.id {
        return Ok(Some(
            "metadata.json names another session; --fix rebuilds it".into(),
        ));
    }
    if file.log_bytes > valid_len || file.meta.last_seq > derived.meta.last_seq.max(last_seq) {
        return Ok(Some(
            "metadata.json is ahead of the log (the log shrank); --fix rebuilds it".into(),
        ));
    }
    // It may lag behind the log (readers fold the records after it).
    let burned = file.meta.last_seq > derived.meta.last_seq;
    let at = if burned {
        derived.meta.last_seq
    } else {
        file.meta.last_seq
    };
    let agrees = derived.at_seq.get(&at).is_some_and(|(meta, end)| {
        let mut meta = meta.clone();
        if burned {
            meta.last_seq = file.meta.last_seq;
        }
        (file.log_bytes == 0 || file.log_bytes == *end)
            && serde_json::to_value(&meta).ok() == serde_json::to_value(&file.meta).ok()
    });
    Ok((!agrees).then(|| "metadata.json disagrees with the log; --fix rebuilds it".into()))
}

/// Opens a database without writing anything: as immutable when it has no
/// write-ahead log (a read-only open would still create `-shm`/`-wal`
/// files), read-only otherwise (the log must be read) unless that fails.
fn open_read_only(path: &Path) -> rusqlite::Result<rusqlite::Connection> {
    use rusqlite::{Connection, OpenFlags};
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    if Path::new(&wal).exists() {
        // On a read-only home without `-shm` this fails; the immutable open
        // below then reads the database without its newest WAL pages.
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY);
        if let Ok(conn) = conn
            && conn
                .query_row("SELECT count(*) FROM sqlite_master", [], |r| {
                    r.get::<_, i64>(0)
                })
                .is_ok()
        {
            return Ok(conn);
        }
    }
    let mut uri = String::from("file:");
    for c in path.to_string_lossy().chars() {
        match c {
            '?' | '#' | '%' => uri.push_str(&format!("%{:02X}", c as u32)),
            c => uri.push(c),
        }
    }
    uri.push_str("?immutable=1");
    Connection::open_with_flags(
        uri,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI,
    )
}
