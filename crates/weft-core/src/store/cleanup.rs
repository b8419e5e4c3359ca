//! The default [`Store::cleanup_reporting`]: removing sessions not
//! updated for a while, page by page, for every backend. It knows the
//! store only through the [`Store`] trait.

use std::time::Duration;

use chrono::Utc;

use super::{CleanupReport, DeleteOptions, ListQuery, PROCESS_EXITED, Store, StoreError};
use crate::progress::Progress;
use crate::session::SessionStatus;

/// Removes `store`'s sessions not updated for `older_than` (see
/// [`Store::cleanup`]), telling `progress` the number of candidates and
/// each one done.
pub(crate) async fn cleanup<S: Store + ?Sized>(
    store: &S,
    older_than: Duration,
    dry_run: bool,
    progress: &dyn Progress,
) -> Result<CleanupReport, StoreError> {
    let cutoff = Utc::now()
        - chrono::Duration::from_std(older_than)
            .map_err(|_| StoreError::Invalid("cleanup age is too large".into()))?;
    let mut report = CleanupReport {
        dry_run,
        ..Default::default()
    };
    let mut candidates = Vec::new();
    let mut query = ListQuery {
        limit: 500,
        ..Default::default()
    };
    loop {
        let page = store.list(&query).await?;
        for meta in page.sessions {
            if meta.updated_at < cutoff {
                if meta.status == SessionStatus::Active {
                    if store.is_interrupted(&meta.id).await? {
                        report.interrupted.push(meta.id.clone());
                        candidates.push(meta.id);
                    } else {
                        report.kept_active.push(meta.id);
                    }
                } else {
                    candidates.push(meta.id);
                }
            }
        }
        match page.next_cursor {
            Some(c) => query.cursor = Some(c),
            None => break,
        }
    }
    progress.start(candidates.len() as u64);
    for id in candidates {
        progress.advance(1);
        if dry_run {
            report.removed.push(id);
            continue;
        }
        if report.interrupted.contains(&id) {
            match store
                .transition(
                    &id,
                    SessionStatus::Failed,
                    Some(PROCESS_EXITED.into()),
                    None,
                )
                .await
            {
                // Refused: it changed meanwhile (resumed or ended);
                // the delete below decides.
                Ok(_) | Err(StoreError::Refused(_)) | Err(StoreError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let options = DeleteOptions {
            with_children: false,
            unless_active: true,
        };
        match store.delete(&id, options).await {
            Ok(ids) => report.removed.extend(ids),
            Err(StoreError::Refused(_)) => report.kept_active.push(id),
            Err(StoreError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(report)
}
