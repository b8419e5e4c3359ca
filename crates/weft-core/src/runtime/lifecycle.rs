//! The session's status lifecycle: status changes decided at the log's
//! head, taking in other writers' records, failing, and cleanup.

use std::sync::atomic::Ordering;

use serde_json::json;

use super::{CancelMode, Session};
use crate::error::SessionError;
use crate::hooks::events;
use crate::id::{BranchId, TurnId};
use crate::lease::{TurnHolder, TurnLockAttempt};
use crate::record::{RecordKind, StatusChange};
use crate::session::{SessionMeta, SessionStatus};

impl Session {
    /// Changes the status to `to` if `when(current)` holds, decided at the
    /// log's head (a concurrent writer's records are taken in and `when`
    /// re-checked). Returns the metadata after the call.
    pub(super) async fn change_status(
        &self,
        to: SessionStatus,
        error: Option<String>,
        when: impl Fn(SessionStatus) -> bool + Send + Sync,
    ) -> Result<SessionMeta, SessionError> {
        self.change_status_as(None, to, error, when).await
    }

    /// [`Session::change_status`] as a step of turn `turn` (its id and
    /// branch), whose id the record carries.
    pub(super) async fn change_status_as(
        &self,
        turn: Option<(&TurnId, &BranchId)>,
        to: SessionStatus,
        error: Option<String>,
        when: impl Fn(SessionStatus) -> bool + Send + Sync,
    ) -> Result<SessionMeta, SessionError> {
        let log = &self.mounted()?.log;
        let _serialised = self.inner.activation.lock().await;
        self.take_in_outside_writes().await?;
        let (_, meta) = log
            .append_if_as(turn, |session, _| {
                Ok(if when(session.status) {
                    vec![RecordKind::Status(StatusChange {
                        from: session.status,
                        to,
                        error: error.clone(),
                        details: None,
                    })]
                } else {
                    Vec::new()
                })
            })
            .await?;
        if log.take_outside_writes() {
            self.invalidate_branches().await;
        }
        Ok(meta)
    }

    /// Accepts records another writer appended since this session last
    /// wrote (between turns that is normal: a `weft state set`, a mail
    /// collected by another process): moves the log handle to the store's
    /// head and drops cached branch state so it is reloaded. Returns the
    /// current metadata.
    pub(super) async fn take_in_outside_writes(&self) -> Result<SessionMeta, SessionError> {
        let log = &self.mounted()?.log;
        let meta = self.store().get(&self.inner.id).await?;
        let moved = meta.last_seq != log.head().await;
        if moved {
            log.refresh().await?;
            log.feed().catch_up().await;
        }
        if log.take_outside_writes() || moved {
            self.invalidate_branches().await;
        }
        Ok(meta)
    }

    /// Records that the session failed (active → failed).
    pub async fn fail(&self, error: &str) -> Result<(), SessionError> {
        self.change_status(SessionStatus::Failed, Some(error.to_string()), |s| {
            s == SessionStatus::Active
        })
        .await?;
        Ok(())
    }

    /// Ends the session: emits `session:end` (once) and completes it if it
    /// is active. Further `execute` calls fail with [`SessionError::Ended`].
    pub async fn cleanup(&self) -> Result<(), SessionError> {
        if self.inner.ended.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        self.cancel(CancelMode::Graceful).await;
        if self.mounted().is_err() {
            return Ok(());
        }
        let status = if self.is_running() {
            self.complete().await?
        } else {
            // Leave the session active while another process runs a turn on
            // it (that one completes it when it ends); holding the default
            // branch's turn lock meanwhile, so no turn starts in between.
            let default = self.meta().await?.default_branch;
            let holder = TurnHolder::current();
            match self
                .store()
                .try_lock_turn(&self.inner.id, &default, &holder)
                .await?
            {
                TurnLockAttempt::Busy(_) => self.meta().await?.status,
                TurnLockAttempt::Acquired(_lock) => {
                    let others = self.store().turn_locks(&self.inner.id).await?;
                    if others.iter().any(|l| l.live && l.branch != default) {
                        self.meta().await?.status
                    } else {
                        self.complete().await?
                    }
                }
            }
        };
        self.inner
            .hooks
            .emit(events::SESSION_END, json!({"status": status}))
            .await;
        Ok(())
    }

    async fn complete(&self) -> Result<SessionStatus, SessionError> {
        Ok(self
            .change_status(SessionStatus::Completed, None, |s| {
                s == SessionStatus::Active
            })
            .await?
            .status)
    }
}
