//! The turn path: starting a turn ([`Session::start_turn`]: its id and
//! cancellation first, then a task that runs it), running it (branch and
//! store turn locks, each given up at once on a cancel, the waiting/busy
//! messages, repairing unanswered tool calls, `execution:start` /
//! `execution:end`) and cancelling running turns.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde_json::{Map, Value, json};

use super::delegate::RuntimeDelegate;
use super::handle::{CancelOnDrop, TurnAnswer, TurnHandle, TurnRequest};
use super::state::RuntimeState;
use super::{CancelMode, Mounted, Session, TOOL_INTERRUPTED, lock};
use crate::approval::DisplayLevel;
use crate::context::ContextManager;
use crate::error::SessionError;
use crate::hooks::{HookRegistry, events};
use crate::id::{BranchId, TurnId};
use crate::lease::{TurnHolder, TurnLock, TurnLockAttempt, busy_message, waiting_message};
use crate::message::{Message, unanswered_tool_calls};
use crate::orchestrator::{TurnCancel, TurnContext};
use crate::record::RecordKind;
use crate::session::SessionStatus;
use crate::store::StoreError;
use crate::structured::{ResponseFormat, SchemaError, StructuredAnswer};

/// Takes a turn out of the session's running turns when the turn's task
/// ends, however it ends.
struct Running<'a> {
    session: &'a Session,
    id: &'a TurnId,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        lock(&self.session.inner.running).remove(self.id);
    }
}

impl Session {
    /// Runs `prompt` on the default branch and returns the answer.
    pub async fn execute(&self, prompt: &str) -> Result<String, SessionError> {
        self.execute_on(None, prompt).await
    }

    /// Runs `prompt` on `branch` (id or name; None: the default branch) and
    /// returns the answer: [`Session::start_turn`], then
    /// [`TurnHandle::result`]. Dropping the future cancels the turn.
    pub async fn execute_on(
        &self,
        branch: Option<&str>,
        prompt: &str,
    ) -> Result<String, SessionError> {
        self.execute_with(TurnRequest::new(prompt).on_branch(branch))
            .await
            .map(|a| a.text)
    }

    /// Runs `prompt` on the default branch and returns its answer as JSON
    /// valid against `format`'s schema (LionAGI's
    /// `operate(response_format=…)`): the provider's native structured
    /// mode, one repair round-trip on an invalid answer, then
    /// [`SessionError::StructuredOutput`]. The value is also stored on the
    /// assistant message.
    pub async fn execute_structured(
        &self,
        prompt: &str,
        format: ResponseFormat,
    ) -> Result<StructuredAnswer, SessionError> {
        let answer = self
            .execute_with(TurnRequest::new(prompt).with_response_format(Some(format)))
            .await?;
        match answer.structured {
            Some(value) => Ok(StructuredAnswer {
                text: answer.text,
                value,
            }),
            None => Err(SessionError::Invalid(
                "the structured turn gave no structured answer".into(),
            )),
        }
    }

    /// Runs the turn `request` describes and returns its answer:
    /// [`Session::start_turn_with`], then [`TurnHandle::answer`]. Dropping
    /// the future cancels the turn.
    pub async fn execute_with(&self, request: TurnRequest) -> Result<TurnAnswer, SessionError> {
        let handle = self.start_turn_with(request).await?;
        let mut guard = CancelOnDrop(Some(handle.canceller()));
        let result = handle.answer().await;
        guard.0 = None;
        result
    }

    /// Starts a turn running `prompt` on `branch` (id or name; None: the
    /// default branch) and returns its handle at once. See
    /// [`Session::start_turn_with`].
    pub async fn start_turn(
        &self,
        branch: Option<&str>,
        prompt: &str,
    ) -> Result<TurnHandle, SessionError> {
        self.start_turn_with(TurnRequest::new(prompt).on_branch(branch))
            .await
    }

    /// Starts the turn `request` describes and returns its handle: the
    /// turn's id, branch and cancellation exist before anything runs (a
    /// cancel is never lost, however early), and its events can be
    /// followed from its first one. The turn runs on its own task; it
    /// waits while another turn runs on its branch.
    ///
    /// Fails at once, starting nothing, when the session is not
    /// initialized or has ended, the branch does not exist, the requested
    /// id is the id of a running turn, or the response format is invalid.
    pub async fn start_turn_with(&self, request: TurnRequest) -> Result<TurnHandle, SessionError> {
        let mounted = self.mounted()?;
        if let Some(format) = &request.response_format {
            format.check()?;
            // Anthropic forces the answer through a tool of this name.
            if mounted.tools.contains_key(&format.name) {
                return Err(SchemaError(format!(
                    "the response format's name {:?} is the name of a mounted tool: give the format another name",
                    format.name
                ))
                .into());
            }
        }
        if self.inner.ended.load(Ordering::SeqCst) {
            return Err(SessionError::Ended);
        }
        let meta = self.take_in_outside_writes().await?;
        let wanted = request
            .branch
            .unwrap_or_else(|| meta.default_branch.to_string());
        let branch = self.resolve_branch(&wanted).await?;
        let id = request.id.unwrap_or_else(TurnId::new_v7);
        let cancel = TurnCancel::default();
        {
            let mut running = lock(&self.inner.running);
            if running.contains_key(&id) {
                return Err(SessionError::Invalid(format!(
                    "turn {id} is already running in session {}: give the new turn another id",
                    self.inner.id
                )));
            }
            running.insert(id.clone(), (branch.clone(), cancel.clone()));
        }
        let events = match mounted.log.feed().subscribe(None).await {
            Ok(rx) => rx,
            Err(e) => {
                lock(&self.inner.running).remove(&id);
                return Err(e.into());
            }
        };
        let session = self.clone();
        let (turn, on, c) = (id.clone(), branch.clone(), cancel.clone());
        let task = tokio::spawn(async move {
            let _running = Running {
                session: &session,
                id: &turn,
            };
            session
                .run_turn(&turn, &on, request.prompt, request.response_format, c)
                .await
        });
        Ok(TurnHandle {
            id,
            branch,
            cancel,
            events: Some(events),
            task,
        })
    }

    /// Runs a started turn to its end: exactly one `execution:end`,
    /// whatever happens.
    async fn run_turn(
        &self,
        turn: &TurnId,
        branch: &BranchId,
        prompt: String,
        format: Option<ResponseFormat>,
        cancel: TurnCancel,
    ) -> Result<TurnAnswer, SessionError> {
        let mut scope = Map::new();
        scope.insert("turn".into(), Value::String(turn.to_string()));
        scope.insert("branch".into(), Value::String(branch.to_string()));
        let hooks = self.inner.hooks.scoped(scope);
        let body = self.run_turn_body(turn, branch, prompt, format, cancel.clone(), &hooks);
        tokio::pin!(body);
        // A cancel, whoever asks for it and however early, is announced by
        // the turn itself (once), then the turn winds down.
        let result = tokio::select! {
            biased;
            _ = cancel.graceful.cancelled() => {
                let mode = if cancel.immediate.is_cancelled() { "immediate" } else { "graceful" };
                hooks.emit(events::CANCEL_REQUESTED, json!({"mode": mode})).await;
                body.await
            }
            result = &mut body => result,
        };
        lock(&self.inner.temp_state).clear();
        let (status, error) = match &result {
            Ok(_) => ("completed", None),
            Err(e) if e.is_cancelled() => ("cancelled", None),
            Err(e) => ("failed", Some(e.to_string())),
        };
        if status == "cancelled" {
            hooks.emit(events::CANCEL_COMPLETED, json!({})).await;
        }
        hooks
            .emit_with(
                events::EXECUTION_END,
                || json!({"status": status, "error": error}),
            )
            .await;
        result
    }

    async fn run_turn_body(
        &self,
        turn: &TurnId,
        branch_id: &BranchId,
        prompt: String,
        format: Option<ResponseFormat>,
        cancel: TurnCancel,
        hooks: &HookRegistry,
    ) -> Result<TurnAnswer, SessionError> {
        let mounted = self.mounted()?;
        // One turn per branch at a time: in this process (the branch lock),
        // then across processes (the store's turn lock); branch state is
        // (re)loaded under both, so it never misses a running turn's
        // messages. A cancel gives up either wait at once.
        let branch_lock = lock(&self.inner.branch_locks)
            .entry(branch_id.clone())
            .or_default()
            .clone();
        let _turn_guard = tokio::select! {
            biased;
            _ = cancel.graceful.cancelled() => return Err(SessionError::Cancelled),
            guard = branch_lock.lock() => guard,
        };
        let _store_turn_lock = tokio::select! {
            biased;
            _ = cancel.graceful.cancelled() => return Err(SessionError::Cancelled),
            lock = self.lock_turn(turn, branch_id) => lock?,
        };
        if cancel.is_requested() {
            return Err(SessionError::Cancelled);
        }
        // Take in what other writers appended meanwhile, and become active
        // (from created, or from an ended status on resume).
        self.change_status_as(Some((turn, branch_id)), SessionStatus::Active, None, |s| {
            s != SessionStatus::Active
        })
        .await?;
        let (branch_settings, context, fresh) = self.branch_state(branch_id, mounted).await?;

        if !self.inner.started.swap(true, Ordering::SeqCst) {
            let event = if mounted.resumed {
                events::SESSION_RESUME
            } else {
                events::SESSION_START
            };
            hooks
                .emit(event, json!({"profile": self.inner.config.profile}))
                .await;
        }
        if fresh {
            self.repair_unanswered(turn, branch_id, &context, mounted)
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
        if cancel.is_requested() {
            return Err(SessionError::Cancelled);
        }
        hooks
            .emit_with(events::EXECUTION_START, || json!({"prompt": prompt}))
            .await;

        let turn = TurnContext {
            session_id: self.inner.id.clone(),
            turn: turn.clone(),
            branch: branch_id.clone(),
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
            hooks: hooks.clone(),
            log: mounted.log.clone(),
            cancel,
            working_dir: mounted.env.working_dir.clone(),
            approval: self.inner.config.approval.clone(),
            delegate: Some(Arc::new(RuntimeDelegate {
                parent: Arc::downgrade(&self.inner),
            })),
            state: Some(Arc::new(RuntimeState {
                session: Arc::downgrade(&self.inner),
            })),
            response_format: format.clone(),
        };
        let text = mounted.orchestrator.execute(prompt, &turn).await?;
        // Whatever the orchestrator, a structured turn's answer is valid.
        let structured = match &format {
            Some(format) => Some(
                format
                    .parse_answer(&text)
                    .map_err(|errors| SessionError::StructuredOutput { errors })?,
            ),
            None => None,
        };
        Ok(TurnAnswer { text, structured })
    }

    /// Takes the store's turn lock of `branch`: waits while another
    /// process runs a turn on it (telling the display whom it waits for),
    /// or refuses when the config says not to wait. The lock names `turn`,
    /// so a lease backend fences the turn's appends with it.
    async fn lock_turn(&self, turn: &TurnId, branch: &BranchId) -> Result<TurnLock, SessionError> {
        let store = self.store();
        let holder = TurnHolder::current().for_turn(turn);
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
        turn: &TurnId,
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
                turn,
                branch,
                repairs.iter().cloned().map(RecordKind::message).collect(),
            )
            .await?;
        for m in repairs {
            context.add_message(m).await;
        }
        Ok(())
    }

    /// Cancels the running turns (all branches), those waiting to start
    /// included; each announces it with `cancel:requested`.
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
        for c in running {
            c.request(mode);
        }
    }

    /// Whether a turn is running.
    pub fn is_running(&self) -> bool {
        !lock(&self.inner.running).is_empty()
    }
}
