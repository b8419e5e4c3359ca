//! Bringing a session's derived files — `transcript.jsonl` and
//! `metadata.json` — up to date with its log, off the append path.
//!
//! An append makes its records durable and returns; the files derived from
//! them are written afterwards by the store's background worker (see
//! `queue`), which gathers the appends of a few tens of milliseconds and
//! brings each session's files up to the newest head it was told of. On
//! ext4 this is what keeps a durable append at one flush: a `rename` over
//! `metadata.json` forces the new file's data out with the next journal
//! commit — the one the append's own `fdatasync` waits for — and appended
//! transcript lines join that commit too.
//!
//! The worker writes under the session's advisory lock, taken without
//! waiting: a session busy with a writer is retried in the next round. It
//! checks the log is still the one it was told of (same inode, at least as
//! long); when the log has grown since, the transcript is still brought up
//! to the head it knows (the newer writer adds the rest) and
//! `metadata.json` is left to that writer. This module knows nothing of
//! the queue or the index.

use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;

use weft_core::session::SessionMeta;
use weft_core::store::StoreError;

use super::session::{WaitedLock, try_lock_session, wait_lock_session};
use super::transcript::{self, LogAt};
use super::{LOG_FILE, META_FILE, SessionLock, meta_file, open_err};
use crate::util::{IoContext, no_follow, write_atomic};

/// What a session's derived files must be brought up to.
#[derive(Debug, Clone)]
pub(super) struct Target {
    /// The session's directory.
    pub(super) dir: PathBuf,
    /// The log's inode when the append was made.
    pub(super) ino: u64,
    /// The metadata folded up to `log_bytes`.
    pub(super) meta: SessionMeta,
    /// The length of the log's committed records.
    pub(super) log_bytes: u64,
    /// Whether `metadata.json` must be rewritten (the metadata changed
    /// beyond its counters, or the log outgrew the file).
    pub(super) meta_due: bool,
}

impl Target {
    /// Folds a newer target of the same session into this one.
    pub(super) fn merge(&mut self, newer: Target) {
        let meta_due = self.meta_due || newer.meta_due;
        if newer.meta.last_seq >= self.meta.last_seq {
            *self = newer;
        }
        self.meta_due = meta_due;
    }
}

/// How the worker takes the session lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Locking {
    /// Without waiting; a busy session is retried later.
    Try,
    /// Waiting for it (the store is closing).
    Wait,
}

/// What became of a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// The files are up to date (or the session is gone).
    Done,
    /// Another writer holds the session lock: try again later.
    Busy,
}

/// Brings `target`'s derived files up to date. Errors (a full disk, a
/// damaged file) are for the caller to log: the log stays the truth and
/// the next append repairs them.
pub(super) fn bring_up_to_date(target: &Target, locking: Locking) -> Result<Outcome, StoreError> {
    let Some(_lock) = lock(&target.dir, locking)? else {
        return Ok(if target.dir.join(LOG_FILE).exists() {
            Outcome::Busy
        } else {
            Outcome::Done
        });
    };
    write_locked(target, false)?;
    Ok(Outcome::Done)
}

/// [`bring_up_to_date`] for a caller that holds the session lock. With
/// `at_head`, the caller read `target` from the log's head under that lock
/// (bytes after it are an uncommitted tail, not a newer append).
pub(super) fn write_locked(target: &Target, at_head: bool) -> Result<(), StoreError> {
    let log_path = target.dir.join(LOG_FILE);
    let file = match no_follow().read(true).open(&log_path) {
        Ok(f) => f,
        // Deleted since: nothing to bring up to date.
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(open_err(&log_path, e)),
    };
    let md = file.metadata().at(&log_path)?;
    if md.ino() != target.ino || md.len() < target.log_bytes {
        // Replaced or cut since (a delete and a new create, a repair):
        // whoever did that wrote its own files.
        return Ok(());
    }
    let current = at_head || md.len() == target.log_bytes;
    // The worker's reads are not the store's reads (tests count those).
    let counter = AtomicU64::new(0);
    let log = LogAt {
        file: &file,
        meta: &target.meta,
        valid_len: target.log_bytes,
        current,
    };
    let transcript = transcript::catch_up(&target.dir, &log, &counter);
    if target.meta_due && current {
        write_meta(&target.dir, &target.meta, target.log_bytes)?;
    }
    transcript
}

/// Writes `metadata.json` (temp file + rename) for `meta` at `log_bytes`.
pub(super) fn write_meta(dir: &Path, meta: &SessionMeta, log_bytes: u64) -> Result<(), StoreError> {
    let bytes = meta_file::encode(meta, log_bytes)?;
    write_atomic(&dir.join(META_FILE), &bytes, false)
}

/// Takes the session lock of `dir` (None: busy, or the directory is gone).
fn lock(dir: &Path, locking: Locking) -> Result<Option<SessionLock>, StoreError> {
    match locking {
        Locking::Try => try_lock_session(dir),
        Locking::Wait => match wait_lock_session(dir)? {
            WaitedLock::Held(lock) => Ok(Some(lock)),
            // Not this session's lock any more: whoever replaced it wrote.
            WaitedLock::Replaced | WaitedLock::Gone => Ok(None),
        },
    }
}
