//! The daemon's session service: live sessions, turns and the lifecycle.
//!
//! Every session the daemon touches gets a [`Slot`]: its event [`Hub`], its
//! live [`Session`] (built lazily — a stored session is resumed by id — and
//! dropped again after `idle_timeout` without a turn) and its turn queue.
//!
//! Rules kept here:
//! - **One turn at a time per session.** A prompt that arrives while a turn
//!   runs is refused (409), queued (`enqueue`) or run next after the
//!   running turn is cancelled (`interrupt`).
//! - **One writer per session in this process.** Server-side writes
//!   (status, messages, metadata) go through the live session's log handle
//!   when there is one, else straight to the store, both under the slot's
//!   lock; so the daemon never races its own turns into a conflict.
//! - **Lifecycle.** Transitions follow [`SessionStatus::can_become`]; a
//!   refused one is a 409 naming the current status. While a turn runs,
//!   only `terminate` (which cancels it) may end the session.

use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use serde_json::{Value, json};
use tokio::sync::{broadcast, oneshot, watch};
use tokio_util::sync::CancellationToken;
use weft_core::hooks::{ALL_EVENTS, events};
use weft_core::mount::MountPlan;
use weft_core::record::{RecordKind, StatusChange};
use weft_core::session::SessionMeta;
use weft_core::store::{DeleteOptions, Store, StoreError};
use weft_core::{
    CancelMode, Record, Session, SessionConfig, SessionError, SessionId, SessionStatus,
};

use crate::config::ServerConfig;
use crate::context::{PlanError, ServerContext};
use crate::error::ApiError;
use crate::hub::{Forward, Hub};
use crate::model::{Multitask, SessionInfo};

/// The outcome of a turn, as its submitter receives it.
pub(crate) type TurnResult = Result<String, SessionError>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A prompt waiting for, or in, its turn.
pub(crate) struct Job {
    turn: u64,
    prompt: String,
    branch: Option<String>,
    cancel: CancellationToken,
    done: Option<oneshot::Sender<TurnResult>>,
}

struct Running {
    cancel: CancellationToken,
}

#[derive(Default)]
struct Turns {
    current: Option<Running>,
    queue: VecDeque<Job>,
}

/// One session's state in the daemon.
pub(crate) struct Slot {
    pub(crate) id: SessionId,
    pub(crate) hub: Arc<Hub>,
    /// The slot's lock, guarding the live session.
    live: tokio::sync::Mutex<Option<Session>>,
    turns: Mutex<Turns>,
    idle: watch::Sender<bool>,
    next_turn: AtomicU64,
    touched: Mutex<Instant>,
}

impl Slot {
    fn new(id: SessionId, capacity: usize) -> Self {
        Self {
            hub: Arc::new(Hub::new(id.clone(), capacity)),
            id,
            live: tokio::sync::Mutex::new(None),
            turns: Mutex::new(Turns::default()),
            idle: watch::Sender::new(true),
            next_turn: AtomicU64::new(0),
            touched: Mutex::new(Instant::now()),
        }
    }

    fn is_running(&self) -> bool {
        lock(&self.turns).current.is_some()
    }

    /// Whether a turn runs, and how many prompts wait.
    pub(crate) fn turn_status(&self) -> (bool, usize) {
        let t = lock(&self.turns);
        (t.current.is_some(), t.queue.len())
    }

    pub(crate) fn touch(&self) {
        *lock(&self.touched) = Instant::now();
    }

    fn idle_for(&self) -> Duration {
        lock(&self.touched).elapsed()
    }
}

/// How a prompt accepted by [`Core::submit`] will run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Accepted {
    /// It runs now.
    Started,
    /// It waits behind this many prompts.
    Queued(usize),
    /// The running turn is being cancelled; it runs next.
    Interrupting,
}

/// A prompt accepted by [`Core::submit`].
pub(crate) struct Submitted {
    pub(crate) turn: u64,
    pub(crate) accepted: Accepted,
    pub(crate) done: Option<oneshot::Receiver<TurnResult>>,
}

/// What a prompt needs of the session's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    /// It must be active (amplifierd's send-message and execute).
    Active,
    /// Any status; an ended session is resumed (agentkernel's `/run`).
    Any,
}

/// How to make the session when a prompt names one that does not exist.
#[derive(Debug, Clone, Default)]
pub(crate) struct NewSession {
    pub(crate) profile: Option<String>,
    pub(crate) agent: Option<String>,
}

/// A prompt for [`Core::submit`].
pub(crate) struct Prompt {
    pub(crate) text: String,
    pub(crate) branch: Option<String>,
    pub(crate) policy: Multitask,
    pub(crate) need: Need,
    /// Make the session if it does not exist.
    pub(crate) create: Option<NewSession>,
    /// Deliver the result to the submitter.
    pub(crate) want_result: bool,
}

/// The daemon's shared state.
pub(crate) struct Core {
    pub(crate) ctx: ServerContext,
    pub(crate) config: ServerConfig,
    slots: Mutex<HashMap<SessionId, Arc<Slot>>>,
    /// Cancelled when shutdown begins (no new turns start).
    stopping: CancellationToken,
    /// Cancelled when the running turns have stopped (streams end).
    pub(crate) shutdown: CancellationToken,
}

/// The explanation of a refused transition.
pub(crate) fn lifecycle_detail(meta: &SessionMeta, to: SessionStatus) -> String {
    use SessionStatus::*;
    let hint = match (meta.status, to) {
        (Created, Completed | Failed) => "start it first (POST .../start)",
        (Active, Active) => "it is already active",
        (s, _) if s.is_ended() => "it has ended; fork it or start a new session",
        _ => "see the lifecycle: created → active → completed | failed | terminated",
    };
    format!(
        "session {} is {}: it cannot become {to}; {hint}",
        meta.id, meta.status
    )
}

fn plan_error(e: PlanError) -> ApiError {
    match e {
        PlanError::UnknownProfile(m) => ApiError::unprocessable(m),
        PlanError::Unavailable(m) => ApiError::unavailable(m),
    }
}

/// Turns `plan` into the plan of its sub-agent `agent`; false if the plan
/// has no such agent.
pub(crate) fn apply_agent(plan: &mut MountPlan, agent: &str) -> bool {
    let Some(spec) = plan.agents.get(agent).cloned() else {
        return false;
    };
    if spec.system.is_some() {
        plan.system = spec.system;
    }
    if !spec.providers.is_empty() {
        plan.providers = spec.providers;
    }
    if let Some(tools) = spec.tools {
        plan.tools = tools;
    }
    true
}

/// A model chosen by `settingsOverrides` at creation.
fn model_override(meta: &SessionMeta) -> Option<String> {
    let o = meta.metadata.get("settingsOverrides")?;
    o.get("model")
        .or_else(|| o.get("llm").and_then(|l| l.get("model")))
        .and_then(Value::as_str)
        .map(str::to_string)
}

impl Core {
    pub(crate) fn new(ctx: ServerContext, config: ServerConfig) -> Self {
        Self {
            ctx,
            config,
            slots: Mutex::new(HashMap::new()),
            stopping: CancellationToken::new(),
            shutdown: CancellationToken::new(),
        }
    }

    pub(crate) fn store(&self) -> &Arc<dyn Store> {
        &self.ctx.store
    }

    /// The slot of `id`, made if needed.
    pub(crate) fn slot(&self, id: &SessionId) -> Arc<Slot> {
        lock(&self.slots)
            .entry(id.clone())
            .or_insert_with(|| Arc::new(Slot::new(id.clone(), self.config.event_buffer)))
            .clone()
    }

    fn peek(&self, id: &SessionId) -> Option<Arc<Slot>> {
        lock(&self.slots).get(id).cloned()
    }

    /// Whether a turn runs for `id`, and how many prompts wait.
    pub(crate) fn turn_status(&self, id: &SessionId) -> (bool, usize) {
        self.peek(id).map(|s| s.turn_status()).unwrap_or((false, 0))
    }

    /// Live sessions and running turns.
    pub(crate) fn load(&self) -> (usize, usize) {
        let slots: Vec<Arc<Slot>> = lock(&self.slots).values().cloned().collect();
        let live = slots
            .iter()
            .filter(|s| s.live.try_lock().map(|l| l.is_some()).unwrap_or(true))
            .count();
        let running = slots.iter().filter(|s| s.is_running()).count();
        (live, running)
    }

    /// The API view of `meta`.
    pub(crate) fn info(&self, meta: &SessionMeta) -> SessionInfo {
        let (running, queued) = self.turn_status(&meta.id);
        SessionInfo::from_meta(meta, &self.ctx.project.dir, running, queued)
    }

    /// The session's metadata (404 if unknown).
    pub(crate) async fn meta(&self, id: &SessionId) -> Result<SessionMeta, ApiError> {
        self.store().get(id).await.map_err(|e| match e {
            StoreError::NotFound(_) => ApiError::not_found(format!("session {id} not found")),
            other => other.into(),
        })
    }

    /// Appends `kinds` as one batch (the slot's lock must be held; `live`
    /// is what it guards) and publishes the records.
    async fn write(
        &self,
        slot: &Slot,
        live: &Option<Session>,
        kinds: Vec<RecordKind>,
    ) -> Result<Vec<Record>, ApiError> {
        let store = self.store();
        let mut attempts = 0;
        let records = match live {
            Some(session) => {
                let log = session.log()?;
                loop {
                    match log.append(kinds.clone()).await {
                        Ok((records, _)) => break records,
                        Err(e) if e.is_conflict() && attempts < 8 => {
                            attempts += 1;
                            log.refresh().await?;
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            None => loop {
                let head = store.get(&slot.id).await?.last_seq;
                let batch = Record::batch(head, kinds.clone());
                match store.append(&slot.id, head, batch.clone()).await {
                    Ok(_) => break batch,
                    Err(e) if e.is_conflict() && attempts < 16 => attempts += 1,
                    Err(e) => return Err(e.into()),
                }
            },
        };
        slot.hub.publish(store, &records).await;
        Ok(records)
    }

    /// A lifecycle transition requested over the API (not terminate).
    pub(crate) async fn transition(
        &self,
        id: &SessionId,
        to: SessionStatus,
        error: Option<String>,
        details: Option<Value>,
    ) -> Result<SessionMeta, ApiError> {
        let slot = self.slot(id);
        let mut live = slot.live.lock().await;
        let meta = self.meta(id).await?;
        if !meta.status.can_become(to) {
            return Err(ApiError::conflict(lifecycle_detail(&meta, to)));
        }
        if slot.is_running() {
            return Err(ApiError::conflict(format!(
                "session {id} is {} and running a turn: wait for it to finish, or terminate it (POST .../terminate)",
                meta.status
            )));
        }
        self.write(
            &slot,
            &live,
            vec![RecordKind::Status(StatusChange {
                from: meta.status,
                to,
                error,
                details,
            })],
        )
        .await?;
        if to.is_ended()
            && let Some(session) = live.take()
            && let Err(e) = session.cleanup().await
        {
            tracing::warn!(session = %id, error = %e, "cleanup after {to} failed");
        }
        slot.touch();
        self.meta(id).await
    }

    /// Cancels the running turn, drops queued prompts and waits (bounded)
    /// until no turn runs.
    async fn stop_turns(&self, slot: &Slot) {
        let (cancel, queued) = {
            let mut t = lock(&slot.turns);
            let cancel = t.current.as_ref().map(|r| r.cancel.clone());
            (cancel, t.queue.drain(..).collect::<Vec<_>>())
        };
        for job in queued {
            if let Some(done) = job.done {
                let _ = done.send(Err(SessionError::Cancelled));
            }
        }
        if let Some(cancel) = cancel {
            cancel.cancel();
            let mut idle = slot.idle.subscribe();
            let wait = self.config.shutdown_grace.max(Duration::from_secs(1));
            if tokio::time::timeout(wait, idle.wait_for(|idle| *idle))
                .await
                .is_err()
            {
                tracing::warn!(session = %slot.id, "the cancelled turn did not stop in {wait:?}");
            }
        }
    }

    /// `terminate`: cancels a running turn (its partial state is
    /// recorded), then created|active → terminated.
    pub(crate) async fn terminate(&self, id: &SessionId) -> Result<SessionMeta, ApiError> {
        let slot = self.slot(id);
        let mut live = slot.live.lock().await;
        let meta = self.meta(id).await?;
        if !meta.status.can_become(SessionStatus::Terminated) {
            return Err(ApiError::conflict(lifecycle_detail(
                &meta,
                SessionStatus::Terminated,
            )));
        }
        self.stop_turns(&slot).await;
        let meta = self.meta(id).await?;
        if !meta.status.can_become(SessionStatus::Terminated) {
            return Err(ApiError::conflict(lifecycle_detail(
                &meta,
                SessionStatus::Terminated,
            )));
        }
        self.write(
            &slot,
            &live,
            vec![RecordKind::Status(StatusChange {
                from: meta.status,
                to: SessionStatus::Terminated,
                error: None,
                details: None,
            })],
        )
        .await?;
        if let Some(session) = live.take()
            && let Err(e) = session.cleanup().await
        {
            tracing::warn!(session = %id, error = %e, "cleanup after terminate failed");
        }
        self.meta(id).await
    }

    /// Deletes a session (and, if asked, its descendants), stopping any
    /// turn first; its streams end.
    pub(crate) async fn delete(&self, id: &SessionId, with_children: bool) -> Result<(), ApiError> {
        let slot = self.slot(id);
        let mut live = slot.live.lock().await;
        self.meta(id).await?;
        self.stop_turns(&slot).await;
        live.take();
        let removed = self
            .store()
            .delete(
                id,
                DeleteOptions {
                    with_children,
                    unless_active: false,
                },
            )
            .await?;
        drop(live);
        let mut slots = lock(&self.slots);
        slots.remove(id);
        for other in removed {
            slots.remove(&other);
        }
        Ok(())
    }

    /// Appends `message` to the transcript without running the model. The
    /// session must be active and idle; a live session is dropped so the
    /// next turn reloads its history.
    pub(crate) async fn append_message(
        &self,
        id: &SessionId,
        message: weft_core::Message,
    ) -> Result<u64, ApiError> {
        let slot = self.slot(id);
        let mut live = slot.live.lock().await;
        let meta = self.meta(id).await?;
        if meta.status != SessionStatus::Active {
            return Err(ApiError::conflict(format!(
                "session {id} is {}: messages can be added only while it is active{}",
                meta.status,
                if meta.status == SessionStatus::Created {
                    "; start it first (POST .../start)"
                } else {
                    ""
                }
            )));
        }
        if slot.is_running() {
            return Err(ApiError::conflict(format!(
                "session {id} is running a turn: add messages between turns"
            )));
        }
        let records = self
            .write(&slot, &live, vec![RecordKind::message(message)])
            .await?;
        live.take();
        slot.touch();
        Ok(records.first().map(|r| r.seq).unwrap_or(meta.last_seq + 1))
    }

    /// Changes name/description (through the live session's log if any).
    pub(crate) async fn update_meta(
        &self,
        id: &SessionId,
        patch: weft_core::record::MetaPatch,
    ) -> Result<SessionMeta, ApiError> {
        let slot = self.slot(id);
        let live = slot.live.lock().await;
        let meta = self.meta(id).await?;
        if patch.is_empty() {
            return Ok(meta);
        }
        self.write(&slot, &live, vec![RecordKind::Meta(patch)])
            .await?;
        self.meta(id).await
    }

    /// The live session of `slot`, resumed from the store (or made, when
    /// `meta` is None) if it is not loaded.
    async fn ensure_live(
        &self,
        slot: &Arc<Slot>,
        live: &mut Option<Session>,
        meta: Option<&SessionMeta>,
        create: Option<NewSession>,
    ) -> Result<Session, ApiError> {
        if let Some(session) = live.as_ref() {
            return Ok(session.clone());
        }
        let ctx = &self.ctx;
        let create = create.unwrap_or_default();
        let (profile, agent) = match meta {
            Some(m) => (Some(m.profile.clone()), m.agent_name.clone()),
            None => (create.profile.clone(), create.agent.clone()),
        };
        let (mut plan, profile_name) = ctx.plans.plan(profile.as_deref()).await.map_err(|e| {
            match (meta, e) {
                (Some(m), PlanError::UnknownProfile(detail)) => ApiError::unprocessable(format!(
                    "session {} was made with profile {:?}, which this server cannot load: {detail}",
                    m.id, m.profile
                )),
                (_, e) => plan_error(e),
            }
        })?;
        if let Some(agent) = &agent
            && !apply_agent(&mut plan, agent)
        {
            if meta.is_none() {
                return Err(ApiError::not_found(format!(
                    "unknown agent {agent:?}: GET /api/v1/agents lists the agents"
                )));
            }
            tracing::warn!(session = %slot.id, agent, "the session's sub-agent is not in its profile any more; running the profile");
        }
        let mut config = SessionConfig::new(plan, self.store().clone(), ctx.registry.clone());
        config.profile = meta.map(|m| m.profile.clone()).unwrap_or(profile_name);
        config.session_id = Some(slot.id.clone());
        config.parent_id = meta.and_then(|m| m.parent_id.clone());
        config.agent_name = agent;
        config.project = meta
            .map(|m| m.project.clone())
            .unwrap_or_else(|| ctx.project.clone());
        config.approval = ctx.approval.clone();
        config.user = meta
            .and_then(|m| m.user.clone())
            .or_else(|| Some(ctx.user.clone()));
        config.model = meta.and_then(model_override);
        let session = Session::new(config);
        session.initialize().await?;
        let log = session.log()?;
        session.hooks().register(
            ALL_EVENTS,
            Arc::new(Forward::new(
                slot.hub.clone(),
                self.store().clone(),
                log.subscribe(),
            )),
            i32::MAX,
            "weft-server-stream",
        );
        // A backstop for records no event follows (the hub skips the ones
        // the hook handler published already).
        let mut rx = log.subscribe();
        let hub = slot.hub.clone();
        let store = self.store().clone();
        tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(record) => hub.publish(&store, std::slice::from_ref(&record)).await,
                    Err(broadcast::error::RecvError::Lagged(_)) => hub.catch_up(&store).await,
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        *live = Some(session.clone());
        Ok(session)
    }

    /// Runs a prompt in session `id` under the multitask policy.
    pub(crate) async fn submit(
        &self,
        id: &SessionId,
        prompt: Prompt,
    ) -> Result<Submitted, ApiError> {
        if self.stopping.is_cancelled() {
            return Err(ApiError::unavailable(
                "the server is shutting down: no new turns are started",
            ));
        }
        if prompt.text.trim().is_empty() {
            return Err(ApiError::unprocessable(
                "the prompt is empty: send the text to run",
            ));
        }
        let slot = self.slot(id);
        let mut live = slot.live.lock().await;
        let meta = match self.store().get(id).await {
            Ok(m) => Some(m),
            Err(StoreError::NotFound(_)) if prompt.create.is_some() => None,
            Err(StoreError::NotFound(_)) => {
                return Err(ApiError::not_found(format!("session {id} not found")));
            }
            Err(e) => return Err(e.into()),
        };
        if prompt.need == Need::Active
            && let Some(m) = &meta
            && m.status != SessionStatus::Active
        {
            let hint = if m.status == SessionStatus::Created {
                "start it first (POST .../start)"
            } else {
                "it has ended; fork it or start a new session"
            };
            return Err(ApiError::conflict(format!(
                "session {id} is {}: it takes prompts only while active; {hint}",
                m.status
            )));
        }
        let session = self
            .ensure_live(&slot, &mut live, meta.as_ref(), prompt.create)
            .await?;
        let turn = slot.next_turn.fetch_add(1, Ordering::SeqCst) + 1;
        let (done_tx, done_rx) = if prompt.want_result {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let job = Job {
            turn,
            prompt: prompt.text,
            branch: prompt.branch,
            cancel: CancellationToken::new(),
            done: done_tx,
        };
        let accepted = {
            let mut t = lock(&slot.turns);
            if self.stopping.is_cancelled() {
                return Err(ApiError::unavailable(
                    "the server is shutting down: no new turns are started",
                ));
            }
            let running = t.current.as_ref().map(|r| r.cancel.clone());
            match (running, prompt.policy) {
                (None, _) => {
                    t.current = Some(Running {
                        cancel: job.cancel.clone(),
                    });
                    slot.idle.send_replace(false);
                    tokio::spawn(run_turns(self.store().clone(), slot.clone(), session, job));
                    Accepted::Started
                }
                (Some(_), Multitask::Reject) => {
                    return Err(ApiError::conflict(format!(
                        "session {id} is running a turn: wait for it to finish, or pass ?multitask=enqueue (run after it) or ?multitask=interrupt (cancel it and run this)"
                    )));
                }
                (Some(_), Multitask::Enqueue) => {
                    let ahead = t.queue.len() + 1;
                    t.queue.push_back(job);
                    Accepted::Queued(ahead)
                }
                (Some(running), Multitask::Interrupt) => {
                    running.cancel();
                    t.queue.push_front(job);
                    Accepted::Interrupting
                }
            }
        };
        slot.touch();
        Ok(Submitted {
            turn,
            accepted,
            done: done_rx,
        })
    }

    /// Shutdown: cancels every running turn and waits (bounded) for them
    /// to record their partial state; then ends every stream.
    pub(crate) async fn shutdown_turns(&self) {
        self.stopping.cancel();
        let slots: Vec<Arc<Slot>> = lock(&self.slots).values().cloned().collect();
        futures::future::join_all(slots.iter().map(|s| self.stop_turns(s))).await;
        self.shutdown.cancel();
    }

    /// Forgets the slots of removed sessions (their streams end).
    pub(crate) fn forget(&self, ids: &[SessionId]) {
        let mut map = lock(&self.slots);
        for id in ids {
            if map.get(id).is_some_and(|s| !s.is_running()) {
                map.remove(id);
            }
        }
    }

    /// Drops live sessions idle for longer than `idle_timeout`, and slots
    /// nobody uses.
    pub(crate) fn sweep(&self) {
        let slots: Vec<Arc<Slot>> = lock(&self.slots).values().cloned().collect();
        let mut unused = Vec::new();
        for slot in slots {
            if slot.is_running() || slot.idle_for() < self.config.idle_timeout {
                continue;
            }
            let Ok(mut live) = slot.live.try_lock() else {
                continue;
            };
            if slot.is_running() {
                continue;
            }
            live.take();
            if slot.hub.readers() == 0 {
                unused.push(slot.id.clone());
            }
        }
        let mut map = lock(&self.slots);
        for id in unused {
            // Only when nobody else holds it (a request in flight would).
            if map.get(&id).is_some_and(|s| Arc::strong_count(s) == 1) {
                map.remove(&id);
            }
        }
    }
}

/// Runs `job`, then the queued prompts, one at a time.
async fn run_turns(store: Arc<dyn Store>, slot: Arc<Slot>, session: Session, mut job: Job) {
    loop {
        slot.hub.set_turn(job.turn);
        let result = AssertUnwindSafe(run_one(&session, &job))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| {
                Err(SessionError::Invalid(
                    "the turn failed unexpectedly (a panic in the kernel; see the server log)"
                        .into(),
                ))
            });
        // Every record of the turn goes out before the turn is over.
        slot.hub.catch_up(&store).await;
        if !slot.hub.saw_execution_end() {
            let (status, error) = match &result {
                Ok(_) => ("completed", None),
                Err(e) if e.is_cancelled() => ("cancelled", None),
                Err(e) => ("failed", Some(e.to_string())),
            };
            slot.hub.event(
                events::EXECUTION_END,
                &json!({"status": status, "error": error, "session_id": slot.id, "timestamp": chrono::Utc::now().to_rfc3339()}),
            );
        }
        if let Err(e) = &result
            && !e.is_cancelled()
        {
            tracing::warn!(session = %slot.id, turn = job.turn, error = %e, "turn failed");
        }
        if let Some(done) = job.done.take() {
            let _ = done.send(result);
        }
        slot.touch();
        let next = {
            let mut t = lock(&slot.turns);
            match t.queue.pop_front() {
                Some(next) => {
                    t.current = Some(Running {
                        cancel: next.cancel.clone(),
                    });
                    Some(next)
                }
                None => {
                    t.current = None;
                    slot.hub.set_turn(0);
                    slot.idle.send_replace(true);
                    None
                }
            }
        };
        match next {
            Some(next) => job = next,
            None => break,
        }
    }
}

/// Runs one prompt; when the job is cancelled, cancels the turn at once
/// (it records what it has and answers started tool calls).
async fn run_one(session: &Session, job: &Job) -> TurnResult {
    if job.cancel.is_cancelled() {
        return Err(SessionError::Cancelled);
    }
    let turn = session.execute_on(job.branch.as_deref(), &job.prompt);
    tokio::pin!(turn);
    tokio::select! {
        result = &mut turn => return result,
        _ = job.cancel.cancelled() => {}
    }
    // The turn registers itself as running once it is set up; cancel it
    // then (it checks for cancellation before every provider call).
    loop {
        if session.is_running() {
            session.cancel(CancelMode::Immediate).await;
            break;
        }
        tokio::select! {
            result = &mut turn => return result,
            _ = tokio::time::sleep(Duration::from_millis(5)) => {}
        }
    }
    turn.await
}
