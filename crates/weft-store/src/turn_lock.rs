//! Turn locks for the one-machine backends (fs, sqlite): one lock file per
//! (session, branch), `turn.<branch>.lock` in a directory of the session.
//!
//! The lock is an OS advisory lock (`File::try_lock`, `flock(2)`) on that
//! file, so it is released when the holder drops it **or dies**, and two
//! handles in one process exclude each other too. While held, the file
//! holds the [`TurnHolder`] as JSON (for "waiting for the turn running in
//! process N"); an orderly release empties it first. A file that still
//! names a holder while nobody holds its lock is therefore a turn whose
//! process exited mid-turn: [`turn_locks`] reports it as not live. See
//! `weft_core::lease` for the contract.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use weft_core::BranchId;
use weft_core::lease::{TurnHolder, TurnLock, TurnLockAttempt, TurnLockInfo};
use weft_core::store::StoreError;

use crate::util::IoContext;

const PREFIX: &str = "turn.";
const SUFFIX: &str = ".lock";

/// Whether `name` is a turn lock file's name (`turn.<branch>.lock`).
pub(crate) fn is_lock_file_name(name: &str) -> bool {
    name.len() > PREFIX.len() + SUFFIX.len() && name.starts_with(PREFIX) && name.ends_with(SUFFIX)
}

/// The lock directory of session `id` for a single-file store at `db`:
/// `<db>.locks/<id>/`.
pub(crate) fn sibling_dir(db: &Path, id: &weft_core::SessionId) -> PathBuf {
    let mut name = db.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".locks");
    db.with_file_name(name).join(id.as_str())
}

fn lock_path(dir: &Path, branch: &BranchId) -> PathBuf {
    dir.join(format!("{PREFIX}{branch}{SUFFIX}"))
}

/// Holds a turn lock file locked; empties it, then unlocks (by closing).
struct FileTurnGuard {
    file: File,
}

impl Drop for FileTurnGuard {
    fn drop(&mut self) {
        // An orderly release: the file no longer names a holder.
        let _ = self.file.set_len(0);
    }
}

fn read_holder(file: &mut File) -> Option<TurnHolder> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut text).ok()?;
    serde_json::from_str(text.trim()).ok()
}

/// Takes the turn lock of `branch` in the session directory (or lock
/// directory) `dir`, which must exist.
pub(crate) fn try_lock_turn(
    dir: &Path,
    branch: &BranchId,
    holder: &TurnHolder,
) -> Result<TurnLockAttempt, StoreError> {
    let path = lock_path(dir, branch);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .at(&path)?;
    match file.try_lock() {
        Ok(()) => {
            let text = serde_json::to_string(holder).map_err(|e| StoreError::Backend {
                backend: "turn lock",
                message: e.to_string(),
            })?;
            file.set_len(0).at(&path)?;
            file.seek(SeekFrom::Start(0)).at(&path)?;
            file.write_all(text.as_bytes()).at(&path)?;
            Ok(TurnLockAttempt::Acquired(TurnLock::new(
                holder.clone(),
                FileTurnGuard { file },
            )))
        }
        Err(TryLockError::WouldBlock) => Ok(TurnLockAttempt::Busy(read_holder(&mut file))),
        Err(TryLockError::Error(e)) => Err(e).at(&path),
    }
}

/// The turn locks recorded in `dir`: held ones, and ones left naming a
/// holder that exited without releasing them. A missing `dir` has none.
pub(crate) fn turn_locks(dir: &Path) -> Result<Vec<TurnLockInfo>, StoreError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).at(dir),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.at(dir)?;
        let name = entry.file_name();
        let Some(branch) = name
            .to_str()
            .and_then(|n| n.strip_prefix(PREFIX))
            .and_then(|n| n.strip_suffix(SUFFIX))
            .and_then(|b| BranchId::parse(b).ok())
        else {
            continue;
        };
        let path = entry.path();
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).at(&path),
        };
        // A shared probe: it succeeds only when nobody holds the lock (and
        // is released at once when the file is closed).
        let live = match file.try_lock_shared() {
            Ok(()) => false,
            Err(TryLockError::WouldBlock) => true,
            Err(TryLockError::Error(e)) => return Err(e).at(&path),
        };
        let holder = read_holder(&mut file);
        if live || holder.is_some() {
            out.push(TurnLockInfo {
                branch,
                holder,
                live,
            });
        }
    }
    out.sort_by(|a, b| a.branch.as_str().cmp(b.branch.as_str()));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder() -> TurnHolder {
        TurnHolder::current()
    }

    #[test]
    fn the_lock_file_names_its_holder_and_excludes_a_second_handle() {
        let dir = tempfile::tempdir().unwrap();
        let main = BranchId::main();
        let TurnLockAttempt::Acquired(lock) = try_lock_turn(dir.path(), &main, &holder()).unwrap()
        else {
            panic!("a free lock must be acquired");
        };
        match try_lock_turn(dir.path(), &main, &holder()).unwrap() {
            TurnLockAttempt::Busy(Some(h)) => assert_eq!(h.pid, std::process::id()),
            other => panic!("expected busy with a holder, got {other:?}"),
        }
        let locks = turn_locks(dir.path()).unwrap();
        assert_eq!(locks.len(), 1);
        assert!(locks[0].live);
        drop(lock);
        // Released in order: free and naming nobody, so not listed.
        assert!(turn_locks(dir.path()).unwrap().is_empty());
        assert!(matches!(
            try_lock_turn(dir.path(), &main, &holder()).unwrap(),
            TurnLockAttempt::Acquired(_)
        ));
    }

    #[test]
    fn a_lock_left_naming_a_holder_is_an_interrupted_turn() {
        let dir = tempfile::tempdir().unwrap();
        let main = BranchId::main();
        let TurnLockAttempt::Acquired(lock) = try_lock_turn(dir.path(), &main, &holder()).unwrap()
        else {
            panic!("a free lock must be acquired");
        };
        // A holder that dies does not run its drop: the OS lock goes, the
        // holder stays written.
        std::mem::forget(lock);
        let path = lock_path(dir.path(), &main);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, text).unwrap();
        let locks = turn_locks(dir.path()).unwrap();
        assert_eq!(locks.len(), 1);
        assert!(!locks[0].live);
        assert_eq!(
            locks[0].holder.as_ref().map(|h| h.pid),
            Some(std::process::id())
        );
    }
}
