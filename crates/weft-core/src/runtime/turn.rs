//! The turn path: running a prompt on a branch (branch and store turn
//! locks, the waiting/busy messages, repairing unanswered tool calls) and
//! cancelling running turns.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde_json::json;

use super::delegate::RuntimeDelegate;
use super::{CancelMode, Mounted, Session, TOOL_INTERRUPTED, lock};
use crate::approval::DisplayLevel;
use crate::context::ContextManager;
use crate::error::SessionError;
use crate::hooks::events;
use crate::id::BranchId;
use crate::lease::{TurnHolder, TurnLock, TurnLockAttempt, busy_message, waiting_message};
use crate::message::{Message, unanswered_tool_calls};
use crate::orchestrator::{TurnCancel, TurnContext};
use crate::record::RecordKind;
use crate::session::SessionStatus;
use crate::store::StoreError;

impl Session {
    /// Runs `prompt` on the default branch and returns the answer.
    pub async fn execute(&self, prompt: &str) -> Result<String, SessionError> {
        self.execute_on(None, prompt).await
    }

    /// Runs `prompt` on `branch` (id or name; None: the default branch).
    pub async fn execute_on(
        &self,
        branch: Option<&str>,
        prompt: &str,
    ) -> Result<String, SessionError> {
        let mounted = self.mounted()?;
        if self.inner.ended.load(Ordering::SeqCst) {
            return Err(SessionError::Ended);
        }
        let meta = self.take_in_outside_writes().await?;
        let wanted = branch.unwrap_or(meta.default_branch.as_str()).to_string();
        let branch_id = self.resolve_branch(&wanted).await?;

        // One turn per branch at a time: in this process (the branch lock),
        // then across processes (the store's turn lock); branch state is
        // (re)loaded under both, so it never misses a running turn's
        // messages.
        let branch_lock = lock(&self.inner.branch_locks)
            .entry(branch_id.clone())
            .or_default()
            .clone();
        let _turn_guard = branch_lock.lock().await;
        let _store_turn_lock = self.lock_turn(&branch_id).await?;
        // Take in what other writers appended meanwhile, and become active
        // (from created, or from an ended status on resume).
        self.change_status(SessionStatus::Active, None, |s| s != SessionStatus::Active)
            .await?;
        let (branch_settings, context, fresh) = self.branch_state(&branch_id, mounted).await?;

        if !self.inner.started.swap(true, Ordering::SeqCst) {
            let event = if mounted.resumed {
                events::SESSION_RESUME
            } else {
                events::SESSION_START
            };
            self.inner
                .hooks
                .emit(event, json!({"profile": self.inner.config.profile}))
                .await;
        }
        if fresh {
            self.repair_unanswered(&branch_id, &context, mounted)
                .await?;
        }

        let provider = match &branch_settings.provider {
            Some(name) => mounted
                .providers
                .iter()
                .find(|(n, _)| n == name || n.strip_prefix("provider-") == Some(name))
                .or_else(|| mounted.providers.first()),
            None => mounted.providers.first(),
        }
        .map(|(_, p)| p.clone())
        .ok_or(SessionError::NoProvider)?;

        let cancel = TurnCancel::default();
        let turn_id = self.inner.next_turn.fetch_add(1, Ordering::Relaxed);
        lock(&self.inner.running).insert(turn_id, (branch_id.clone(), cancel.clone()));
        let turn = TurnContext {
            session_id: self.inner.id.clone(),
            branch: branch_id,
            provider,
            model: branch_settings
                .model
                .clone()
                .or_else(|| self.inner.config.model.clone()),
            max_tokens: None,
            temperature: None,
            system: branch_settings.system.clone().or_else(|| {
                self.inner
                    .config
                    .plan
                    .system_instruction()
                    .map(str::to_string)
            }),
            tools: if branch_settings.tools.is_empty() {
                mounted.tools.clone()
            } else {
                Arc::new(
                    mounted
                        .tools
                        .iter()
                        .filter(|(name, _)| branch_settings.tools.contains(name))
                        .map(|(n, t)| (n.clone(), t.clone()))
                        .collect(),
                )
            },
            context,
            hooks: self.inner.hooks.clone(),
            log: mounted.log.clone(),
            cancel,
            working_dir: mounted.env.working_dir.clone(),
            approval: self.inner.config.approval.clone(),
            delegate: Some(Arc::new(RuntimeDelegate {
                parent: Arc::downgrade(&self.inner),
            })),
        };
        let result = mounted
            .orchestrator
            .execute(prompt.to_string(), &turn)
            .await;
        lock(&self.inner.running).remove(&turn_id);
        lock(&self.inner.temp_state).clear();
        if matches!(&result, Err(e) if e.is_cancelled()) {
            self.inner
                .hooks
                .emit(events::CANCEL_COMPLETED, json!({"branch": turn.branch}))
                .await;
        }
        result
    }

    /// Takes the store's turn lock of `branch`: waits while another
    /// process runs a turn on it (telling the display whom it waits for),
    /// or refuses when the config says not to wait.
    async fn lock_turn(&self, branch: &BranchId) -> Result<TurnLock, SessionError> {
        let store = self.store();
        let holder = TurnHolder::current();
        let id = &self.inner.id;
        if !self.inner.config.wait_for_turn {
            return match store.try_lock_turn(id, branch, &holder).await? {
                TurnLockAttempt::Acquired(lock) => Ok(lock),
                TurnLockAttempt::Busy(who) => Err(SessionError::Store(StoreError::Refused(
                    busy_message(id, branch, who.as_ref()),
                ))),
            };
        }
        let display = self.display();
        let on_busy = move |who: Option<&TurnHolder>| {
            display.show_message(&waiting_message(branch, who), DisplayLevel::Warning, "turn");
        };
        Ok(store.lock_turn(id, branch, &holder, &on_busy).await?)
    }

    async fn repair_unanswered(
        &self,
        branch: &BranchId,
        context: &Arc<dyn ContextManager>,
        mounted: &Mounted,
    ) -> Result<(), SessionError> {
        let history = context.messages().await;
        let pending = unanswered_tool_calls(history.iter().map(|m| &**m));
        if pending.is_empty() {
            return Ok(());
        }
        let repairs: Vec<Message> = pending
            .into_iter()
            .map(|(_, call_id)| {
                Message::synthetic_tool_error(branch.clone(), &call_id, TOOL_INTERRUPTED)
            })
            .collect();
        mounted
            .log
            .append_for_turn(
                branch,
                repairs.iter().cloned().map(RecordKind::message).collect(),
            )
            .await?;
        for m in repairs {
            context.add_message(m).await;
        }
        Ok(())
    }

    /// Cancels the running turns (all branches).
    pub async fn cancel(&self, mode: CancelMode) {
        self.cancel_where(mode, None).await;
    }

    /// Cancels the running turn of one branch (id or name); turns on other
    /// branches go on.
    pub async fn cancel_branch(&self, branch: &str, mode: CancelMode) {
        self.cancel_where(mode, Some(branch)).await;
    }

    async fn cancel_where(&self, mode: CancelMode, branch: Option<&str>) {
        let names: HashMap<BranchId, String> = self
            .inner
            .contexts
            .lock()
            .await
            .iter()
            .map(|(id, (b, _))| (id.clone(), b.name.clone()))
            .collect();
        let running: Vec<TurnCancel> = lock(&self.inner.running)
            .values()
            .filter(|(id, _)| {
                branch.is_none_or(|b| id.as_str() == b || names.get(id).is_some_and(|n| n == b))
            })
            .map(|(_, c)| c.clone())
            .collect();
        self.inner
            .hooks
            .emit(
                events::CANCEL_REQUESTED,
                json!({
                    "mode": match mode { CancelMode::Graceful => "graceful", CancelMode::Immediate => "immediate" },
                    "branch": branch,
                    "running_turns": running.len(),
                }),
            )
            .await;
        for c in running {
            c.graceful.cancel();
            if mode == CancelMode::Immediate {
                c.immediate.cancel();
            }
        }
    }

    /// Whether a turn is running.
    pub fn is_running(&self) -> bool {
        !lock(&self.inner.running).is_empty()
    }
}
