//! Keeping the index in line with the session directories: reconcile,
//! project rescans and per-session row refreshes from disk.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::ErrorKind;
use std::path::Path;

use std::sync::atomic::{AtomicU64, Ordering};

use weft_core::SessionId;
use weft_core::progress::{NoProgress, Progress};
use weft_core::store::StoreError;

use super::derived::{self, Target};
use super::index::CLEAN;
use crate::util::{IoContext, io_err, mtime_ns, sweep_temp_files};

use super::{FsBackend, LOG_FILE, doctor};

/// The session directories a reconcile found so far, told to its
/// progress as the total grows.
pub(super) struct Tally<'a> {
    progress: &'a dyn Progress,
    found: AtomicU64,
}

impl Tally<'_> {
    fn found(&self, n: u64) {
        let total = self.found.fetch_add(n, Ordering::Relaxed) + n;
        self.progress.start(total);
    }
}

impl FsBackend {
    /// Brings the index in line with the session directories: projects whose
    /// `sessions/` directory changed since the last scan are rescanned,
    /// vanished projects are dropped, sessions touched by writers that died
    /// are refreshed, and placeholders of crashed creates are resolved.
    /// With `rebuild`, every project is rescanned, and `progress` told of
    /// each session directory found and indexed.
    pub(super) fn reconcile(
        &self,
        rebuild: bool,
        progress: &dyn Progress,
    ) -> Result<(), StoreError> {
        let tally = Tally {
            progress: if rebuild { progress } else { &NoProgress },
            found: AtomicU64::new(0),
        };
        let scans = if rebuild {
            HashMap::new()
        } else {
            self.index.project_scans()?
        };
        let mut seen = HashSet::new();
        for slug in self.project_slugs()? {
            let sessions = self.sessions_dir(&slug);
            let mtime = match fs::metadata(&sessions) {
                Ok(m) if m.is_dir() => mtime_ns(&m),
                Ok(_) => {
                    doctor::note_stray(&sessions, "not a directory");
                    continue;
                }
                Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
                    continue;
                }
                Err(e) => return Err(io_err(&sessions, e)),
            };
            seen.insert(slug.clone());
            if rebuild || scans.get(&slug) != Some(&mtime) {
                self.rescan_project(&slug, mtime, rebuild, &tally)?;
            }
        }
        for slug in scans.keys() {
            if !seen.contains(slug) {
                self.index.remove_project(slug)?;
            }
        }
        if !self.read_only {
            self.reap_dead_writers()?;
        }
        for (id, slug) in self.index.pending()? {
            let Ok(id) = SessionId::parse(id.as_str()) else {
                self.index.remove(&id)?;
                continue;
            };
            if let Err(e) = self.refresh_row(&id, &slug) {
                tracing::warn!(session = %id, error = %e, "cannot refresh a pending index row");
            }
        }
        Ok(())
    }

    pub(super) fn rescan_project(
        &self,
        slug: &str,
        mtime_before: i64,
        all: bool,
        tally: &Tally<'_>,
    ) -> Result<(), StoreError> {
        let sessions = self.sessions_dir(slug);
        let known = self.index.ids_in_dir(slug)?;
        let mut present = HashSet::new();
        let entries: Vec<_> = match fs::read_dir(&sessions) {
            Ok(e) => e.collect(),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err(&sessions, e)),
        };
        tally.found(entries.len() as u64);
        for entry in entries {
            tally.progress.advance(1);
            let entry = entry.at(&sessions)?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with(".trash-") {
                if !self.read_only {
                    let _ = fs::remove_dir_all(entry.path());
                }
                continue;
            }
            if name.starts_with('.') {
                continue;
            }
            if entry.file_type().is_ok_and(|t| t.is_symlink()) {
                tracing::warn!(dir = %entry.path().display(), "ignoring a session directory that is a symbolic link: weft does not write through links");
                continue;
            }
            let Ok(id) = SessionId::parse(name) else {
                doctor::note_stray(&entry.path(), "its name is not a session id");
                continue;
            };
            present.insert(id.to_string());
            if (all || known.get(name) != Some(&CLEAN))
                && let Err(e) = self.refresh_row(&id, slug)
            {
                tracing::warn!(session = %id, error = %e, "cannot index a session directory");
            }
        }
        for id in known.keys() {
            if !present.contains(id) {
                self.index.remove(id)?;
            }
        }
        self.index.set_project_scan(slug, mtime_before)
    }

    /// Re-reads one session directory into its index row (dropping the row
    /// when the directory holds no committed session) and brings its
    /// derived files up to date. Skips sessions whose lock is held: their
    /// writer updates them itself.
    pub(super) fn refresh_row(&self, id: &SessionId, slug: &str) -> Result<(), StoreError> {
        let dir = self.session_dir(slug, id.as_str());
        let Some(_lock) = self.try_lock_dir(&dir)? else {
            return Ok(());
        };
        if self.read_only {
            return self.index_from_disk(id, slug, &dir);
        }
        // A writer that died mid-write may have left a temp file, and
        // derived files behind its log.
        sweep_temp_files(&dir);
        self.index_from_disk(id, slug, &dir)?;
        let folded = self.cache().get(id).and_then(|c| c.folded.clone());
        if let Some(f) = folded {
            let target = Target {
                dir,
                ino: f.ino,
                meta: f.meta,
                log_bytes: f.valid_len,
                meta_due: f.meta_file_len != f.valid_len,
            };
            if let Err(e) = derived::write_locked(&target, true) {
                tracing::warn!(session = %id, error = %e, "cannot bring transcript.jsonl and metadata.json up to date; the next append repairs them");
            }
        }
        Ok(())
    }

    /// Writes a session's index row from its directory (the caller holds its
    /// lock, or accepts the row's monotonic guard as enough).
    pub(super) fn index_from_disk(
        &self,
        id: &SessionId,
        slug: &str,
        dir: &Path,
    ) -> Result<(), StoreError> {
        let log_path = dir.join(LOG_FILE);
        let file = match File::open(&log_path) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return self.index.remove(id.as_str());
            }
            Err(e) => return Err(io_err(&log_path, e)),
        };
        let (head, ino) = self.head(&file, &log_path)?;
        if head.last_seq == 0 {
            return self.index.remove(id.as_str());
        }
        let folded = self.folded(id, dir, &file, head, ino)?;
        self.index.upsert(slug, &folded.meta, folded.valid_len)?;
        self.remember(id, slug, Some(folded));
        Ok(())
    }
}
