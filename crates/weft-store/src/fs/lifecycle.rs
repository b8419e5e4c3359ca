//! Removing sessions: `delete` (with or without children) and the removal
//! of one session's directory.

use std::collections::HashSet;
use std::fs::{self, File};
use std::path::Path;

use weft_core::SessionId;
use weft_core::store::{DeleteOptions, StoreError};

use crate::util::{IoContext, mtime_ns, sync_dir};

use super::{FsBackend, LOG_FILE, SessionLock};

impl FsBackend {
    pub(super) fn delete(
        &self,
        id: &SessionId,
        options: DeleteOptions,
    ) -> Result<Vec<SessionId>, StoreError> {
        self.check_writable()?;
        let (slug, _) = self.open_log(id)?;
        let dir = self.session_dir(&slug, id.as_str());
        let lock = self.lock_dir(id, &dir, true)?;
        if options.unless_active {
            let log_path = dir.join(LOG_FILE);
            let file = File::open(&log_path).at(&log_path)?;
            let (head, ino) = self.head(&file, &log_path)?;
            let folded = self.folded(id, &dir, &file, head, ino)?;
            if folded.meta.status == weft_core::SessionStatus::Active {
                return Err(StoreError::Refused(format!(
                    "session {id} is active: it cannot be removed"
                )));
            }
        }
        let mut doomed = vec![id.clone()];
        if options.with_children {
            self.queue.barrier(false);
            let mut seen: HashSet<SessionId> = doomed.iter().cloned().collect();
            let mut i = 0;
            while i < doomed.len() {
                for child in self.index.children(&doomed[i])? {
                    if seen.insert(child.clone()) {
                        doomed.push(child);
                    }
                }
                i += 1;
            }
        }
        self.remove_session(id, &slug, &dir, lock)?;
        let mut removed = vec![id.clone()];
        for child in doomed.into_iter().skip(1) {
            let Ok((child_slug, _)) = self.open_log(&child) else {
                continue;
            };
            let child_dir = self.session_dir(&child_slug, child.as_str());
            match self.lock_dir(&child, &child_dir, true) {
                Ok(lock) => {
                    self.remove_session(&child, &child_slug, &child_dir, lock)?;
                    removed.push(child);
                }
                Err(StoreError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(removed)
    }

    /// Removes a session directory (renamed away first, so a crash never
    /// leaves half a session) and its index row, holding its lock.
    pub(super) fn remove_session(
        &self,
        id: &SessionId,
        slug: &str,
        dir: &Path,
        lock: SessionLock,
    ) -> Result<(), StoreError> {
        let sessions_dir = self.sessions_dir(slug);
        let trash = sessions_dir.join(format!(
            ".trash-{}-{}-{}",
            id,
            std::process::id(),
            chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
        ));
        self.index.remove_with(id, slug, || {
            let before = fs::metadata(&sessions_dir)
                .map(|m| mtime_ns(&m))
                .at(&sessions_dir)?;
            fs::rename(dir, &trash).at(dir)?;
            let after = fs::metadata(&sessions_dir)
                .map(|m| mtime_ns(&m))
                .at(&sessions_dir)?;
            Ok((before, after))
        })?;
        let _ = sync_dir(&sessions_dir);
        drop(lock);
        self.forget(id);
        if let Err(e) = fs::remove_dir_all(&trash) {
            tracing::warn!(dir = %trash.display(), error = %e, "cannot remove a deleted session's files; the next open retries");
        }
        Ok(())
    }
}
