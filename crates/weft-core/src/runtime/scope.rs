//! Scoped sessions and sessions dropped without cleanup.
//!
//! [`Session::scope`] is the Rust counterpart of Amplifier's
//! `async with AmplifierSession(config) as session:`: it initializes the
//! session, runs a closure with it and always cleans up — when the closure
//! returns, when it fails, and when the scope's future is dropped before it
//! finishes (a cancelled task, a lost `select!`: cleanup is then spawned on
//! the runtime).
//!
//! A session whose last handle is dropped while it is active and was not
//! cleaned up is recorded as [`SessionStatus::EndedUncleanly`] (best effort:
//! spawned on the current Tokio runtime, if there is one; never blocking or
//! panicking in `Drop`), rather than left `active` forever. Owners that keep
//! sessions active across handles on purpose (the daemon) turn this off
//! with [`SessionConfig::record_unclean_drop`].

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{Inner, Session, SessionConfig};
use crate::error::SessionError;
use crate::id::SessionId;
use crate::lease::{TurnHolder, TurnLockAttempt};
use crate::record::{RecordKind, StatusChange};
use crate::session::SessionStatus;
use crate::store::{Store, StoreError, append_at_head};

/// The error recorded with [`SessionStatus::EndedUncleanly`].
pub const DROPPED_UNCLEANLY: &str = "the session's last handle was dropped without cleanup; call Session::cleanup or use Session::scope";

impl Session {
    /// Builds and initializes a session from `config`, runs `body` with it
    /// and cleans it up however `body` ends (see the module docs). Returns
    /// `body`'s result; a failed cleanup after a successful body is returned
    /// as the error, after a failed body it is only logged.
    ///
    /// ```no_run
    /// # async fn demo(config: weft_core::SessionConfig) -> Result<(), weft_core::SessionError> {
    /// let answer = weft_core::Session::scope(config, |session| async move {
    ///     session.execute("What is 2 + 2?").await
    /// })
    /// .await?;
    /// println!("{answer}");
    /// # Ok(()) }
    /// ```
    pub async fn scope<T, E, F, Fut>(config: SessionConfig, body: F) -> Result<T, E>
    where
        F: FnOnce(Session) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: From<SessionError>,
    {
        let session = Session::new(config);
        let guard = CleanupGuard(Some(session.clone()));
        if let Err(e) = session.initialize().await {
            guard.disarm();
            return Err(e.into());
        }
        let result = body(session.clone()).await;
        guard.disarm();
        let cleaned = session.cleanup().await;
        match (result, cleaned) {
            (Ok(value), Ok(())) => Ok(value),
            (Ok(_), Err(e)) => Err(e.into()),
            (Err(e), cleaned) => {
                if let Err(c) = cleaned {
                    tracing::warn!(session = %session.id(), error = %c, "cleanup after a failed scope failed");
                }
                Err(e)
            }
        }
    }
}

/// Cleans its session up (spawned on the runtime) when dropped armed: the
/// scope's future was dropped before it finished.
struct CleanupGuard(Option<Session>);

impl CleanupGuard {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for CleanupGuard {
    fn drop(&mut self) {
        let Some(session) = self.0.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Err(e) = session.cleanup().await {
                        tracing::warn!(session = %session.id(), error = %e, "cleanup of a cancelled scope failed");
                    }
                });
            }
            Err(_) => tracing::warn!(
                session = %session.id(),
                "a session scope was dropped outside a Tokio runtime: it could not be cleaned up"
            ),
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if self.ended.load(Ordering::SeqCst)
            || !self.started.load(Ordering::SeqCst)
            || !self.config.record_unclean_drop
            || self.mounted.get().is_none()
        {
            return;
        }
        let store = self.config.store.clone();
        let id = self.id.clone();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(session = %id, "a session was dropped without cleanup outside a Tokio runtime; it stays active");
            return;
        };
        runtime.spawn(async move {
            if let Err(e) = record_unclean_end(store, &id).await {
                tracing::warn!(session = %id, error = %e, "recording a session dropped without cleanup failed");
            }
        });
    }
}

/// Marks `id` ended uncleanly if it is active and no turn runs on it (any
/// process): decided at the log's head while holding the default branch's
/// turn lock, as [`Session::cleanup`] does.
async fn record_unclean_end(store: Arc<dyn Store>, id: &SessionId) -> Result<(), StoreError> {
    let meta = store.get(id).await?;
    if meta.status != SessionStatus::Active {
        return Ok(());
    }
    let holder = TurnHolder::current();
    let TurnLockAttempt::Acquired(_lock) = store
        .try_lock_turn(id, &meta.default_branch, &holder)
        .await?
    else {
        return Ok(());
    };
    let others = store.turn_locks(id).await?;
    if others
        .iter()
        .any(|l| l.live && l.branch != meta.default_branch)
    {
        return Ok(());
    }
    append_at_head(store.as_ref(), id, |session| {
        Ok(if session.status == SessionStatus::Active {
            vec![RecordKind::Status(StatusChange {
                from: session.status,
                to: SessionStatus::EndedUncleanly,
                error: Some(DROPPED_UNCLEANLY.into()),
                details: None,
            })]
        } else {
            Vec::new()
        })
    })
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{FakeProvider, Reply, config_with, within};

    /// Waits (yielding, bounded by [`within`]) until `id` has `status`.
    async fn wait_status(store: &Arc<dyn Store>, id: &SessionId, status: SessionStatus) {
        within(async {
            loop {
                if store.get(id).await.expect("meta").status == status {
                    return;
                }
                tokio::task::yield_now().await;
            }
        })
        .await
    }

    #[tokio::test]
    async fn a_scope_returns_the_body_result_and_cleans_up() {
        let provider = FakeProvider::replying([Reply::text("four")]);
        let config = config_with(&provider, vec![]);
        let store = config.store.clone();
        let (answer, id) = Session::scope(config, |session| async move {
            let answer = session.execute("2 + 2?").await?;
            Ok::<_, SessionError>((answer, session.id().clone()))
        })
        .await
        .expect("scope");
        assert_eq!(answer, "four");
        assert_eq!(
            store.get(&id).await.expect("meta").status,
            SessionStatus::Completed
        );
    }

    #[tokio::test]
    async fn a_failing_body_is_cleaned_up_and_its_error_returned() {
        type AppError = Box<dyn std::error::Error + Send + Sync>;
        let provider = FakeProvider::replying([Reply::text("hello")]);
        let config = config_with(&provider, vec![]);
        let store = config.store.clone();
        let seen = std::sync::Mutex::new(None);
        let seen_ref = &seen;
        let err = Session::scope(config, |session| async move {
            session.execute("hi").await?;
            *seen_ref.lock().expect("lock") = Some(session.id().clone());
            Err::<(), AppError>("boom".into())
        })
        .await
        .expect_err("the body failed");
        assert_eq!(err.to_string(), "boom");
        let id = seen.lock().expect("lock").clone().expect("ran");
        let meta = store.get(&id).await.expect("meta");
        assert_eq!(meta.status, SessionStatus::Completed);
        // A later handle on it sees an ended session it may resume.
        assert!(meta.ended_at.is_some());
    }

    #[tokio::test]
    async fn a_cancelled_scope_is_still_cleaned_up() {
        let provider = FakeProvider::replying([Reply::text("one")]);
        let config = config_with(&provider, vec![]);
        let store = config.store.clone();
        let (id_tx, id_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(Session::scope(config, |session| async move {
            session.execute("hi").await?;
            let _ = id_tx.send(session.id().clone());
            std::future::pending::<Result<(), SessionError>>().await
        }));
        let id = within(id_rx).await.expect("ran a turn");
        task.abort();
        assert!(within(task).await.expect_err("aborted").is_cancelled());
        wait_status(&store, &id, SessionStatus::Completed).await;
    }

    #[tokio::test]
    async fn a_session_dropped_without_cleanup_is_recorded_as_ended_uncleanly() {
        let provider = FakeProvider::replying([Reply::text("one"), Reply::text("two")]);
        let config = config_with(&provider, vec![]);
        let store = config.store.clone();
        // A handle that never ran a turn leaves its session as it was; so
        // does one whose owner turned the record off.
        let idle = Session::new(config.clone());
        idle.initialize().await.expect("initialize");
        let idle_id = idle.id().clone();
        drop(idle);
        let mut kept = config.clone();
        kept.record_unclean_drop = false;
        let kept = Session::new(kept);
        kept.initialize().await.expect("initialize");
        kept.execute("hi").await.expect("answer");
        let kept_id = kept.id().clone();
        drop(kept);

        let session = Session::new(config);
        session.initialize().await.expect("initialize");
        session.execute("hi").await.expect("answer");
        let id = session.id().clone();
        assert_eq!(
            store.get(&id).await.expect("meta").status,
            SessionStatus::Active
        );
        drop(session);
        wait_status(&store, &id, SessionStatus::EndedUncleanly).await;
        let meta = store.get(&id).await.expect("meta");
        assert_eq!(meta.error_message.as_deref(), Some(DROPPED_UNCLEANLY));
        assert!(meta.status.is_ended());
        assert_eq!(
            store.get(&idle_id).await.expect("meta").status,
            SessionStatus::Created
        );
        assert_eq!(
            store.get(&kept_id).await.expect("meta").status,
            SessionStatus::Active
        );
    }
}
