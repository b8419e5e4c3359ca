//! The daemon's session service: live sessions, turns and the lifecycle.
//!
//! Every session the daemon touches gets a [`Slot`]: its event [`Hub`], its
//! live [`Session`] (built lazily — a stored session is resumed by id — and
//! dropped again after `idle_timeout` without a turn) and its turn queue.
//!
//! Rules kept here:
//! - **One turn at a time per branch.** Each branch of a session has its
//!   own lane: turns on different branches run concurrently (the session
//!   log serialises their records), while a prompt for a branch that is
//!   running a turn is refused (409), queued (`enqueue`) or run next after
//!   that branch's turn is cancelled (`interrupt`; turns on other branches
//!   go on).
//! - **One writer per session in this process.** Server-side writes
//!   (status, messages, metadata) go through the live session's log handle
//!   when there is one, else straight to the store, both under the slot's
//!   lock; so the daemon never races its own turns into a conflict.
//!   Branch, mail and state changes go through [`Core::update`], which
//!   makes the same choice: the live session's `update_with` (its log head
//!   and branch caches stay right) or `weft_core::store::update_session`.
//!   A change that would disturb a branch running a turn (removing it,
//!   delivering mail or adding messages to it) is refused with 409. Before
//!   each turn the live session takes in what other writers (the CLI)
//!   appended meanwhile, so it neither conflicts nor runs on stale history.
//! - **Lifecycle.** Transitions follow [`SessionStatus::can_become`]; a
//!   refused one is a 409 naming the current status. While a turn runs,
//!   only `terminate` (which cancels it) may end the session; `complete`
//!   and `fail` are also refused while another process (a CLI) runs a
//!   turn on it (its store turn lock is held). Transitions and messages
//!   are decided against the head they are appended after
//!   (`weft_core::log::append_checked`): a contradicting write from another
//!   process is a 409, never overwritten.

use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use serde_json::{Map, Value, json};
use tokio::sync::{broadcast, oneshot, watch};
use tokio_util::sync::CancellationToken;
use weft_core::hooks::{ALL_EVENTS, events};
use weft_core::log::{append_checked, transition_batch};
use weft_core::mount::MountPlan;
use weft_core::record::{RecordKind, StateDelta};
use weft_core::session::SessionMeta;
use weft_core::state::{StateScope, check_key, scope_of};
use weft_core::store::{DeleteOptions, Store, StoreError, update_session};
use weft_core::view::SessionView;
use weft_core::{
    BranchId, CancelMode, Record, Session, SessionConfig, SessionError, SessionId, SessionStatus,
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
    /// The branch it runs on (resolved when it was submitted).
    branch: BranchId,
    cancel: CancellationToken,
    done: Option<oneshot::Sender<TurnResult>>,
}

struct Running {
    cancel: CancellationToken,
}

/// One branch's turns: the running one and the prompts waiting for it.
#[derive(Default)]
struct Lane {
    current: Option<Running>,
    queue: VecDeque<Job>,
}

#[derive(Default)]
struct Turns {
    /// The lanes of the branches that run or wait for a turn.
    lanes: HashMap<BranchId, Lane>,
    /// Every turn is being stopped (terminate, delete, shutdown).
    stop_all: bool,
}

impl Turns {
    fn running(&self) -> bool {
        self.lanes.values().any(|l| l.current.is_some())
    }
}

/// One session's state in the daemon.
pub(crate) struct Slot {
    pub(crate) id: SessionId,
    pub(crate) hub: Arc<Hub>,
    /// The slot's lock, guarding the live session.
    live: tokio::sync::Mutex<Option<Session>>,
    turns: Mutex<Turns>,
    /// True while no branch runs a turn.
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
        lock(&self.turns).running()
    }

    /// Whether a turn runs (on any branch), and how many prompts wait.
    pub(crate) fn turn_status(&self) -> (bool, usize) {
        let t = lock(&self.turns);
        (t.running(), t.lanes.values().map(|l| l.queue.len()).sum())
    }

    /// Whether a turn runs on `branch`, and how many prompts wait for it.
    pub(crate) fn branch_status(&self, branch: &BranchId) -> (bool, usize) {
        let t = lock(&self.turns);
        t.lanes
            .get(branch)
            .map_or((false, 0), |l| (l.current.is_some(), l.queue.len()))
    }

    /// The branches running a turn or with prompts waiting.
    fn busy_branches(&self) -> Vec<BranchId> {
        lock(&self.turns).lanes.keys().cloned().collect()
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
    /// The branch it runs on.
    pub(crate) branch: BranchId,
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
    /// The branch (id or name; None: the default branch).
    pub(crate) branch: Option<String>,
    /// Whether `branch` came from the URL path (an unknown one is a 404,
    /// else a 422 naming the field).
    pub(crate) branch_in_path: bool,
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

    /// Appends the batch `decide` gives, decided against the head it
    /// follows (the slot's lock must be held; `live` is what it guards),
    /// and publishes the records. Through the live session's log when
    /// there is one, else straight to the store; either way a conflict
    /// with another process takes its records in and asks `decide` again
    /// (`weft_core::log::append_checked`), so a transition or a message
    /// is never written after a record that forbids it.
    async fn write<F>(
        &self,
        slot: &Slot,
        live: &Option<Session>,
        decide: F,
    ) -> Result<Vec<Record>, ApiError>
    where
        F: FnMut(&SessionMeta, &[Record]) -> Result<Vec<RecordKind>, StoreError> + Send,
    {
        let store = self.store();
        let records = match live {
            Some(session) => session.log()?.append_if(decide).await?.0,
            None => {
                let mut known = store.get(&slot.id).await?;
                append_checked(&**store, &slot.id, &mut known, decide)
                    .await?
                    .0
            }
        };
        slot.hub.publish(store, &records).await;
        Ok(records)
    }

    /// Writes the transition to `to`, decided at the head it follows
    /// (refused with 409 when the lifecycle does not allow it there).
    async fn write_transition(
        &self,
        slot: &Slot,
        live: &Option<Session>,
        to: SessionStatus,
        error: Option<String>,
        details: Option<Value>,
    ) -> Result<(), ApiError> {
        self.write(slot, live, |session, _| {
            transition_batch(session, to, error.clone(), details.clone(), |s| {
                lifecycle_detail(s, to)
            })
        })
        .await?;
        Ok(())
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
        // A turn another process runs on it (a CLI) would lose what it
        // streams if the session ended under it.
        if let Some(other) = self
            .store()
            .turn_locks(id)
            .await?
            .into_iter()
            .find(|l| l.live)
        {
            let who = other
                .holder
                .map_or_else(|| "another process".to_string(), |h| h.describe());
            return Err(ApiError::conflict(format!(
                "session {id} is running a turn on branch {} in {who}: wait for it to finish",
                other.branch
            )));
        }
        self.write_transition(&slot, &live, to, error, details)
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
        let (cancels, queued) = {
            let mut t = lock(&slot.turns);
            t.stop_all = true;
            let cancels: Vec<CancellationToken> = t
                .lanes
                .values()
                .filter_map(|l| l.current.as_ref().map(|r| r.cancel.clone()))
                .collect();
            let queued: Vec<Job> = t
                .lanes
                .values_mut()
                .flat_map(|l| l.queue.drain(..))
                .collect();
            (cancels, queued)
        };
        for job in queued {
            if let Some(done) = job.done {
                let _ = done.send(Err(SessionError::Cancelled));
            }
        }
        if !cancels.is_empty() {
            for cancel in &cancels {
                cancel.cancel();
            }
            let mut idle = slot.idle.subscribe();
            let wait = self.config.shutdown_grace.max(Duration::from_secs(1));
            if tokio::time::timeout(wait, idle.wait_for(|idle| *idle))
                .await
                .is_err()
            {
                tracing::warn!(session = %slot.id, "the cancelled turns did not stop in {wait:?}");
            }
        }
        lock(&slot.turns).stop_all = false;
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
        self.write_transition(&slot, &live, SessionStatus::Terminated, None, None)
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
            .write(&slot, &live, |session, _| {
                if session.status == SessionStatus::Active {
                    Ok(vec![RecordKind::message(message.clone())])
                } else {
                    Err(StoreError::Refused(format!(
                        "session {id} is {}: messages can be added only while it is active",
                        session.status
                    )))
                }
            })
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
        self.write(&slot, &live, |_, _| {
            Ok(vec![RecordKind::Meta(patch.clone())])
        })
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
        // Tools run in the session's project: only inside the daemon's.
        if let Some(m) = meta {
            ctx.confine(&m.id, &m.project).map_err(ApiError::conflict)?;
        }
        let create = create.unwrap_or_default();
        let (profile, agent) = match meta {
            Some(m) => (Some(m.profile.clone()), m.agent_name.clone()),
            None => (create.profile.clone(), create.agent.clone()),
        };
        let planned = ctx.plans.plan(profile.as_deref()).await;
        // A session started with `--mount-plan` carries its plan.
        let planned = match (planned, meta.and_then(|m| MountPlan::recorded(&m.metadata))) {
            (Err(PlanError::UnknownProfile(_)), Some(Ok(plan))) => {
                Ok((plan, profile.clone().unwrap_or_default()))
            }
            (planned, _) => planned,
        };
        let (mut plan, profile_name) = planned.map_err(|e| match (meta, e) {
            (Some(m), PlanError::UnknownProfile(detail)) => ApiError::unprocessable(format!(
                "session {} was made with profile {:?}, which this server cannot load: {detail}",
                m.id, m.profile
            )),
            (_, e) => plan_error(e),
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
        let branch = self
            .resolve_branch(
                id,
                meta.as_ref(),
                prompt.branch.as_deref(),
                prompt.branch_in_path,
            )
            .await?;
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
            branch: branch.clone(),
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
            let lane = t.lanes.entry(branch.clone()).or_default();
            let running = lane.current.as_ref().map(|r| r.cancel.clone());
            match (running, prompt.policy) {
                (None, _) => {
                    lane.current = Some(Running {
                        cancel: job.cancel.clone(),
                    });
                    slot.idle.send_replace(false);
                    tokio::spawn(run_turns(self.store().clone(), slot.clone(), session, job));
                    Accepted::Started
                }
                (Some(_), Multitask::Reject) => {
                    return Err(ApiError::conflict(format!(
                        "session {id} is running a turn on branch {branch}: wait for it to finish, or pass ?multitask=enqueue (run after it) or ?multitask=interrupt (cancel it and run this); other branches can run turns meanwhile"
                    )));
                }
                (Some(_), Multitask::Enqueue) => {
                    let ahead = lane.queue.len() + 1;
                    lane.queue.push_back(job);
                    Accepted::Queued(ahead)
                }
                (Some(running), Multitask::Interrupt) => {
                    running.cancel();
                    lane.queue.push_front(job);
                    Accepted::Interrupting
                }
            }
        };
        slot.touch();
        Ok(Submitted {
            turn,
            branch,
            accepted,
            done: done_rx,
        })
    }

    /// The branch a prompt runs on: `wanted` (id or name) or the default
    /// branch. An unknown branch is a 404 when it came from the path, else
    /// a 422 naming the `branch` field.
    async fn resolve_branch(
        &self,
        id: &SessionId,
        meta: Option<&SessionMeta>,
        wanted: Option<&str>,
        in_path: bool,
    ) -> Result<BranchId, ApiError> {
        let default = meta.map_or_else(BranchId::main, |m| m.default_branch.clone());
        let Some(wanted) = wanted.filter(|b| !b.trim().is_empty()) else {
            return Ok(default);
        };
        if wanted == default.as_str() {
            return Ok(default);
        }
        let found = match meta {
            Some(_) => self
                .store()
                .view(id)
                .await?
                .branch(wanted)
                .map(|b| b.branch.id.clone()),
            None => None,
        };
        found.ok_or_else(|| ApiError::unknown_branch(id, wanted, (!in_path).then_some("branch")))
    }

    /// The live session of `id`, if this daemon has one loaded.
    pub(crate) async fn live_session(&self, id: &SessionId) -> Option<Session> {
        let slot = self.peek(id)?;
        let live = slot.live.lock().await;
        live.clone()
    }

    /// Whether a turn runs on `branch` of `id`, and how many prompts wait
    /// for it.
    pub(crate) fn branch_status(&self, id: &SessionId, branch: &BranchId) -> (bool, usize) {
        self.peek(id)
            .map_or((false, 0), |s| s.branch_status(branch))
    }

    /// Applies a view-dependent change to session `id`'s log: `change`
    /// gets the session's current view and the branches that run (or wait
    /// for) a turn, and returns a value and the records to append, or
    /// refuses. When this daemon has the session live, the change goes
    /// through that [`Session`]'s `update_with` (so its log head and branch
    /// caches stay right); otherwise through
    /// [`weft_core::store::update_session`]. Either way it is checked and
    /// appended at one head (a concurrent writer makes it re-read and
    /// re-check), and a change that would disturb a busy branch is refused
    /// with 409. Records are published to the session's streams.
    pub(crate) async fn update<T, F>(&self, id: &SessionId, mut change: F) -> Result<T, ApiError>
    where
        F: FnMut(&SessionView, &[BranchId]) -> Result<(T, Vec<RecordKind>), ApiError> + Send,
        T: Send,
    {
        let slot = self.slot(id);
        let live = slot.live.lock().await;
        self.meta(id).await?;
        // No turn can start while the slot's lock is held; a queued one
        // can, but its branch is listed already.
        let busy = slot.busy_branches();
        let mut refused: Option<ApiError> = None;
        let guarded = |view: &SessionView| {
            change(view, &busy)
                .and_then(|(value, kinds)| {
                    check_busy(view, &kinds, &busy)?;
                    Ok((value, kinds))
                })
                .map_err(|e| {
                    let err = SessionError::Invalid(e.detail.clone());
                    refused = Some(e);
                    err
                })
        };
        let result = match live.as_ref() {
            Some(session) => session.update_with(guarded).await,
            None => update_session(self.store().as_ref(), id, guarded).await,
        };
        drop(live);
        slot.hub.catch_up(self.store()).await;
        slot.touch();
        match (result, refused) {
            (Ok(value), _) => Ok(value),
            (Err(_), Some(refused)) => Err(refused),
            (Err(e), None) => Err(e.into()),
        }
    }

    /// The scope of state key `key` in session `meta` (the one its live
    /// session uses: its profile, its owner or else the server's user).
    pub(crate) fn state_scope(&self, meta: &SessionMeta, key: &str) -> StateScope {
        scope_of(
            key,
            &meta.profile,
            Some(meta.user.as_deref().unwrap_or(&self.ctx.user)),
        )
    }

    /// Sets (`Some`) or deletes (`None`) a state key. `temp:` keys are
    /// refused (422): they live only inside a turn, and a request is not
    /// one. Session keys are `state` records (through [`Core::update`]);
    /// `app:`/`user:` keys are shared state in the store (not in any log).
    pub(crate) async fn change_state(
        &self,
        id: &SessionId,
        key: &str,
        value: Option<Value>,
    ) -> Result<(), ApiError> {
        check_key(key).map_err(|e| ApiError::unprocessable(format!("key: {e}")))?;
        let meta = self.meta(id).await?;
        let mut delta = StateDelta::default();
        match &value {
            Some(v) => {
                delta.set.insert(key.to_string(), v.clone());
            }
            None => delta.delete.push(key.to_string()),
        }
        match self.state_scope(&meta, key) {
            StateScope::Temp => Err(ApiError::unprocessable(format!(
                "key: {key:?} is a temp: key; temp: state lives only inside a running turn and is never stored, and a request is not a turn: use a session key (no prefix) or an app:/user: key"
            ))),
            StateScope::Shared(ns) => {
                self.store().update_shared_state(&ns, &delta).await?;
                Ok(())
            }
            StateScope::Session => {
                self.update(id, |view, _| {
                    if value.is_none() && !view.state.contains_key(key) {
                        return Ok(((), Vec::new()));
                    }
                    Ok(((), vec![RecordKind::State(delta.clone())]))
                })
                .await
            }
        }
    }

    /// Removes every session key (a `state` record, so the clear survives
    /// a restart). Shared `app:`/`user:` keys stay; `temp:` keys belong to
    /// the running turn.
    pub(crate) async fn clear_state(&self, id: &SessionId) -> Result<(), ApiError> {
        self.update(id, |_, _| {
            Ok((
                (),
                vec![RecordKind::State(StateDelta {
                    clear: true,
                    ..Default::default()
                })],
            ))
        })
        .await
    }

    /// One state key's value (None: not set). `temp:` keys are read from
    /// the live session's running turn.
    pub(crate) async fn state_get(
        &self,
        id: &SessionId,
        key: &str,
    ) -> Result<Option<Value>, ApiError> {
        check_key(key).map_err(|e| ApiError::unprocessable(format!("key: {e}")))?;
        let meta = self.meta(id).await?;
        Ok(match self.state_scope(&meta, key) {
            StateScope::Temp => match self.live_session(id).await {
                Some(session) => session.state_get(key).await?,
                None => None,
            },
            StateScope::Shared(ns) => self.store().shared_state(&ns).await?.get(key).cloned(),
            StateScope::Session => self.store().view(id).await?.state.get(key).cloned(),
        })
    }

    /// All state the session sees: its own keys, the shared `app:` and
    /// `user:` keys, and (while a turn runs in this daemon) `temp:` keys.
    pub(crate) async fn state_all(&self, id: &SessionId) -> Result<Map<String, Value>, ApiError> {
        let meta = self.meta(id).await?;
        if let Some(session) = self.live_session(id).await {
            return Ok(session.state_all().await?);
        }
        let mut all = self.store().view(id).await?.state;
        for prefix in ["app:", "user:"] {
            if let StateScope::Shared(ns) = self.state_scope(&meta, prefix) {
                all.extend(self.store().shared_state(&ns).await?);
            }
        }
        Ok(all)
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

/// Refuses (409) records that would disturb a branch running or waiting
/// for a turn: removing it, delivering mail to it, adding messages to it.
fn check_busy(view: &SessionView, kinds: &[RecordKind], busy: &[BranchId]) -> Result<(), ApiError> {
    if busy.is_empty() {
        return Ok(());
    }
    for kind in kinds {
        let (branch, why) = match kind {
            RecordKind::BranchRemoved { branch } => {
                (branch, "a branch is removed between its turns")
            }
            RecordKind::MailCollected { recipient, .. } => {
                (recipient, "mail is delivered to a branch between its turns")
            }
            RecordKind::Message(m) => (
                &m.branch,
                "messages are added to a branch between its turns",
            ),
            _ => continue,
        };
        if busy.contains(branch) {
            let name = view
                .branch(branch.as_str())
                .map_or_else(|| branch.to_string(), |b| b.branch.name.clone());
            return Err(ApiError::conflict(format!(
                "branch {name:?} of session {} is running a turn (or has prompts waiting): {why}; wait for it to finish, or cancel it",
                view.meta.id
            )));
        }
    }
    Ok(())
}

/// Runs `job`, then the prompts queued on its branch, one at a time.
async fn run_turns(store: Arc<dyn Store>, slot: Arc<Slot>, session: Session, mut job: Job) {
    let branch = job.branch.clone();
    loop {
        slot.hub.begin_turn(&branch, job.turn);
        let result = AssertUnwindSafe(run_one(&slot, &session, &job))
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
        if !slot.hub.saw_execution_end(&branch) {
            let (status, error) = match &result {
                Ok(_) => ("completed", None),
                Err(e) if e.is_cancelled() => ("cancelled", None),
                Err(e) => ("failed", Some(e.to_string())),
            };
            slot.hub.event(
                events::EXECUTION_END,
                &json!({"status": status, "error": error, "session_id": slot.id, "branch": branch, "timestamp": chrono::Utc::now().to_rfc3339()}),
            );
        }
        if let Err(e) = &result
            && !e.is_cancelled()
        {
            tracing::warn!(session = %slot.id, branch = %branch, turn = job.turn, error = %e, "turn failed");
        }
        if let Some(done) = job.done.take() {
            let _ = done.send(result);
        }
        slot.touch();
        let next = {
            let mut t = lock(&slot.turns);
            let next = t.lanes.get_mut(&branch).and_then(|l| l.queue.pop_front());
            match next {
                Some(next) => {
                    if let Some(lane) = t.lanes.get_mut(&branch) {
                        lane.current = Some(Running {
                            cancel: next.cancel.clone(),
                        });
                    }
                    Some(next)
                }
                None => {
                    t.lanes.remove(&branch);
                    slot.hub.end_turn(&branch);
                    if !t.running() {
                        slot.idle.send_replace(true);
                    }
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
/// (it records what it has and answers started tool calls): only its
/// branch's turn, or every turn when all are being stopped.
async fn run_one(slot: &Slot, session: &Session, job: &Job) -> TurnResult {
    if job.cancel.is_cancelled() {
        return Err(SessionError::Cancelled);
    }
    let turn = session.execute_on(Some(job.branch.as_str()), &job.prompt);
    tokio::pin!(turn);
    tokio::select! {
        result = &mut turn => return result,
        _ = job.cancel.cancelled() => {}
    }
    // The kernel can cancel the turn once it is set up, which it announces
    // with `execution:start` (it checks for cancellation before every
    // provider call).
    while !slot.hub.saw_execution_start(&job.branch) {
        tokio::select! {
            result = &mut turn => return result,
            _ = tokio::time::sleep(Duration::from_millis(5)) => {}
        }
    }
    if lock(&slot.turns).stop_all {
        session.cancel(CancelMode::Immediate).await;
    } else {
        session
            .cancel_branch(job.branch.as_str(), CancelMode::Immediate)
            .await;
    }
    turn.await
}
