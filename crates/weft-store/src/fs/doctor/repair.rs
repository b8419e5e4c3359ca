//! `weft doctor --fix`: repairs what [`super::check`] found, without losing
//! a record.

use std::collections::HashSet;
use std::fs::{self, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use weft_core::progress::Progress;
use weft_core::store::StoreError;

use super::{
    Finding, FindingKind, QUARANTINE_FILE, Report, check, check_reporting, derive, meta_file_bytes,
    parse_log,
};
use crate::codec;
use crate::fs::{LOCK_FILE, LOG_FILE, META_FILE, TRANSCRIPT_FILE, recovery};
use crate::util::{IoContext, io_err, write_atomic};

/// Checks the home, repairs every fixable finding without losing a record,
/// and checks again: the report's `fixed` lists what was repaired and its
/// `findings` what remains.
pub fn fix(home: &Path) -> Result<Report, StoreError> {
    fix_reporting(home, &weft_core::progress::NoProgress)
}

/// [`fix`], telling `progress` how the first check goes.
pub fn fix_reporting(home: &Path, progress: &dyn Progress) -> Result<Report, StoreError> {
    let before = check_reporting(home, progress)?;
    let mut fixed = Vec::new();
    let mut rebuild_index = false;
    let mut repaired_sessions = HashSet::new();
    for f in &before.findings {
        if !f.fixable {
            continue;
        }
        let done = match f.kind {
            FindingKind::TempFile => remove_temp(&f.path)?,
            FindingKind::Permissions => tighten(home, &f.path)?,
            FindingKind::Index => {
                // Unreadable or damaged: it is a cache, so it is set aside
                // (kept for a post-mortem) and rebuilt.
                move_aside(&f.path)?;
                rebuild_index = true;
                true
            }
            FindingKind::IndexMissingRow
            | FindingKind::IndexStaleRow
            | FindingKind::IndexOrphanRow => {
                rebuild_index = true;
                true
            }
            FindingKind::UncommittedTail
            | FindingKind::TornTail
            | FindingKind::Metadata
            | FindingKind::Transcript => {
                let Some(dir) = session_dir_of(&f.path) else {
                    continue;
                };
                if repaired_sessions.insert(dir.clone()) {
                    repair_session(&dir)?;
                }
                rebuild_index = true;
                true
            }
            _ => false,
        };
        if done {
            fixed.push(f.clone());
        }
    }
    if rebuild_index {
        let store = crate::fs::FsStore::open(home)?;
        store.rebuild_index()?;
    }
    let mut after = check(home)?;
    // What is still there was not fixed (a session a writer held, say).
    fixed.retain(|f: &Finding| !after.findings.contains(f));
    after.fixed = fixed;
    Ok(after)
}

/// Renames a damaged database and its WAL files to
/// `<name>.damaged-<unix seconds>…`.
fn move_aside(db: &Path) -> Result<(), StoreError> {
    if !db.exists() {
        return Ok(());
    }
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    for suffix in ["", "-wal", "-shm"] {
        let mut from = db.as_os_str().to_owned();
        from.push(suffix);
        let mut to = db.as_os_str().to_owned();
        to.push(format!(".damaged-{stamp}{suffix}"));
        match fs::rename(&from, &to) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(Path::new(&from), e)),
        }
    }
    Ok(())
}

fn session_dir_of(path: &Path) -> Option<PathBuf> {
    path.parent().map(Path::to_path_buf)
}

fn remove_temp(path: &Path) -> Result<bool, StoreError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(true),
        Err(e) => Err(io_err(path, e)),
    }
}

/// Moves the complete lines after the head to the quarantine file when any
/// of them is damaged (as the store does before its next append), with the
/// seqs they burn; lines that all parse are an uncommitted batch and are
/// only cut.
fn quarantine_damaged(
    dir: &Path,
    log_path: &Path,
    parsed: &super::ParsedLog,
    offset: usize,
    set_aside: &[u8],
) -> Result<(), StoreError> {
    let mut lines = Vec::new();
    let mut start = 0usize;
    while let Some(i) = set_aside[start..].iter().position(|&b| b == b'\n') {
        lines.push((offset + start, &set_aside[start..start + i]));
        start += i + 1;
    }
    if lines.iter().all(|(_, l)| codec::decode_line(l).is_ok()) {
        return Ok(());
    }
    let head = parsed
        .records
        .last()
        .map_or(0, |r| r.seq)
        .max(recovery::quarantined_seq(dir)?);
    let counted = head + lines.len() as u64;
    let written = lines
        .iter()
        .filter_map(|(_, l)| codec::line_seq(l))
        .filter(|&s| s <= counted + 1024)
        .max();
    let first = counted.max(written.unwrap_or(0)) + 1 - lines.len() as u64;
    let entries: Vec<(u64, u64, &[u8])> = lines
        .iter()
        .enumerate()
        .map(|(i, (off, l))| (first + i as u64, *off as u64, *l))
        .collect();
    recovery::write_quarantine(dir, log_path, &entries)
}

fn tighten(home: &Path, path: &Path) -> Result<bool, StoreError> {
    let md = fs::symlink_metadata(path).at(path)?;
    let mode = md.permissions().mode() & 0o7777;
    let new = if path == home {
        mode & !0o022
    } else {
        mode & !0o077
    };
    fs::set_permissions(path, fs::Permissions::from_mode(new)).at(path)?;
    Ok(true)
}

/// Repairs one session directory under its lock: moves complete lines
/// after the head to the quarantine file, cuts a torn tail, and rewrites
/// `metadata.json` and `transcript.jsonl` from the log. Skips a session a
/// writer holds (the check reports it again).
fn repair_session(dir: &Path) -> Result<(), StoreError> {
    let files = [
        LOCK_FILE,
        LOG_FILE,
        QUARANTINE_FILE,
        META_FILE,
        TRANSCRIPT_FILE,
        crate::fs::meta_file::PARENT_ID_FILE,
    ];
    if files
        .iter()
        .any(|f| fs::symlink_metadata(dir.join(f)).is_ok_and(|m| m.file_type().is_symlink()))
    {
        // Never write through a symlink; the check reports it.
        tracing::warn!(dir = %dir.display(), "a session file is a symlink; not repairing the session");
        return Ok(());
    }
    let lock_path = dir.join(LOCK_FILE);
    let lock = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .at(&lock_path)?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            tracing::warn!(dir = %dir.display(), "a writer holds the session; not repairing it now");
            return Ok(());
        }
        Err(fs::TryLockError::Error(e)) => return Err(io_err(&lock_path, e)),
    }
    let log_path = dir.join(LOG_FILE);
    let bytes = fs::read(&log_path).at(&log_path)?;
    let parsed = parse_log(&bytes);
    if parsed.valid_len < parsed.file_len {
        let keep_end = usize::try_from(parsed.torn_at).unwrap_or(bytes.len());
        let start = usize::try_from(parsed.valid_len).unwrap_or(bytes.len());
        let set_aside = &bytes[start.min(keep_end)..keep_end];
        quarantine_damaged(dir, &log_path, &parsed, start.min(keep_end), set_aside)?;
        let file = OpenOptions::new()
            .write(true)
            .open(&log_path)
            .at(&log_path)?;
        file.set_len(parsed.valid_len).at(&log_path)?;
        file.sync_data().at(&log_path)?;
    }
    if let Some(derived) = derive(&parsed.records, &parsed.ends) {
        write_atomic(
            &dir.join(META_FILE),
            &meta_file_bytes(&derived.meta, parsed.valid_len)?,
            false,
        )?;
        crate::fs::meta_file::write_parent_id(dir, &derived.meta)?;
        if parsed.corrupt.is_empty() {
            write_atomic(&dir.join(TRANSCRIPT_FILE), &derived.transcript, false)?;
        }
    }
    drop(lock);
    Ok(())
}
