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
//!   and branch caches stay right) or `weft_core::log::update_session`.
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

mod lifecycle;
mod state;
mod turns;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;
use weft_core::log::{append_checked, transition_batch, update_session};
use weft_core::mount::MountPlan;
use weft_core::record::{RecordKind, StateDelta};
use weft_core::session::SessionMeta;
use weft_core::store::{DeleteOptions, HeadGuard, Store, StoreError};
use weft_core::stored::{self, StateError};
use weft_core::view::SessionView;
use weft_core::{
    BranchId, CancelMode, Feed, Record, ResponseFormat, Session, SessionConfig, SessionError,
    SessionId, SessionStatus, TurnAnswer, TurnId, TurnRequest,
};

use crate::config::ServerConfig;
use crate::context::{PlanError, ServerContext};
use crate::error::ApiError;
use crate::model::{Multitask, SessionInfo};

/// The outcome of a turn, as its submitter receives it.
pub(crate) type TurnResult = Result<TurnAnswer, SessionError>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A prompt waiting for, or in, its turn.
pub(crate) struct Job {
    turn: TurnId,
    prompt: String,
    /// The format the answer must have (None: free text).
    response_format: Option<ResponseFormat>,
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
    /// The session's feed: its streams follow it, its live session
    /// publishes to it.
    pub(crate) feed: Feed,
    /// The slot's lock, guarding the live session.
    live: tokio::sync::Mutex<Option<Session>>,
    /// The profile and sub-agent the live session runs (what
    /// `ensure_live` built it for), so a `/run` naming another agent
    /// rebuilds it.
    live_as: Mutex<Option<RunAs>>,
    turns: Mutex<Turns>,
    /// True while no branch runs a turn.
    idle: watch::Sender<bool>,
    touched: Mutex<Instant>,
    /// The session's metadata as this daemon's last write through the
    /// slot left it. A hint, never the truth: an append made from it names
    /// its `last_seq`, so a write by anyone else since is a conflict, and
    /// the caller folds the newer records in and decides again
    /// (`append_checked`).
    written: Mutex<Written>,
}

/// How long a slot's [`Written`] hint goes unused after it was found
/// stale: another writer (a second daemon behind a round-robin balancer, a
/// CLI) is writing the session, and reading the head first is cheaper than
/// a conflict on every other request.
const WRITTEN_QUIET: Duration = Duration::from_secs(2);

/// What the daemon's last write through a slot left.
#[derive(Default)]
struct Written {
    /// The metadata after that write (None: unknown, or a live session
    /// writes).
    meta: Option<SessionMeta>,
    /// When a write last found records of another writer before it.
    outside: Option<Instant>,
}

impl Slot {
    fn new(id: SessionId, store: Arc<dyn Store>, capacity: usize) -> Self {
        Self {
            feed: Feed::new(store, id.clone(), capacity),
            id,
            live: tokio::sync::Mutex::new(None),
            live_as: Mutex::new(None),
            turns: Mutex::new(Turns::default()),
            idle: watch::Sender::new(true),
            touched: Mutex::new(Instant::now()),
            written: Mutex::new(Written::default()),
        }
    }

    /// The metadata this daemon's last write left, if it is known and no
    /// other writer was seen on the session lately.
    pub(crate) fn written(&self) -> Option<SessionMeta> {
        let w = lock(&self.written);
        if w.outside.is_some_and(|at| at.elapsed() < WRITTEN_QUIET) {
            return None;
        }
        w.meta.clone()
    }

    /// The metadata this daemon's last write left, if it is known, even
    /// when another writer was seen on the session lately (then it is
    /// likely behind the head: a guess at what the head allows).
    pub(crate) fn last_written(&self) -> Option<SessionMeta> {
        lock(&self.written).meta.clone()
    }

    /// Remembers what a write left (`meta`), and whether it had to fold in
    /// another writer's records first (`saw_outside`).
    fn set_written(&self, meta: Option<SessionMeta>, saw_outside: bool) {
        let mut w = lock(&self.written);
        w.meta = meta;
        if saw_outside {
            w.outside = Some(Instant::now());
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
    /// The turn's id (given before it runs).
    pub(crate) turn: TurnId,
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
    /// The tenant it is recorded under (the caller's).
    pub(crate) tenant: Option<String>,
}

/// The plan a turn runs: a profile and, optionally, one of its sub-agents
/// (agentkernel's `agent`, honoured on every `/run`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RunAs {
    pub(crate) profile: String,
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
    /// Run the turn as this profile / sub-agent (None: the session's own):
    /// a live session built for another one is rebuilt first.
    pub(crate) run_as: Option<NewSession>,
    /// Deliver the result to the submitter.
    pub(crate) want_result: bool,
    /// The format the answer must have (None: free text), checked.
    pub(crate) response_format: Option<ResponseFormat>,
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
    /// Whether the test fault [`ServerConfig::test_drop_stream_after`] has
    /// closed its stream already.
    pub(crate) stream_dropped: std::sync::atomic::AtomicBool,
    /// Serialized transcripts, valid while their log is unchanged.
    pub(crate) answers: crate::answers::Answers,
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

/// A store error about session `id` as the API reports it (not found: 404
/// naming it).
fn session_error(id: &SessionId, e: StoreError) -> ApiError {
    match e {
        StoreError::NotFound(_) => ApiError::not_found(format!("session {id} not found")),
        other => other.into(),
    }
}

fn plan_error(e: PlanError) -> ApiError {
    match e {
        PlanError::UnknownProfile(m) => ApiError::unprocessable(m),
        PlanError::Unavailable(m) => ApiError::unavailable(m),
    }
}

impl Core {
    pub(crate) fn new(ctx: ServerContext, config: ServerConfig) -> Self {
        Self {
            ctx,
            config,
            slots: Mutex::new(HashMap::new()),
            stopping: CancellationToken::new(),
            shutdown: CancellationToken::new(),
            stream_dropped: std::sync::atomic::AtomicBool::new(false),
            answers: crate::answers::Answers::default(),
        }
    }

    pub(crate) fn store(&self) -> &Arc<dyn Store> {
        &self.ctx.store
    }

    /// The slot of `id`, made if needed.
    pub(crate) fn slot(&self, id: &SessionId) -> Arc<Slot> {
        lock(&self.slots)
            .entry(id.clone())
            .or_insert_with(|| {
                Arc::new(Slot::new(
                    id.clone(),
                    self.store().clone(),
                    self.config.event_buffer,
                ))
            })
            .clone()
    }

    /// Cancels the running turn of `branch` (of every branch: None) of
    /// session `id`, which records its partial state; prompts queued behind
    /// it still run. How many turns were told to stop.
    pub(crate) fn cancel_turns(&self, id: &SessionId, branch: Option<&BranchId>) -> usize {
        let Some(slot) = self.peek(id) else {
            return 0;
        };
        let turns = lock(&slot.turns);
        turns
            .lanes
            .iter()
            .filter(|(b, _)| branch.is_none_or(|x| x == *b))
            .filter_map(|(_, lane)| lane.current.as_ref())
            .map(|running| running.cancel.cancel())
            .count()
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

    /// The API view of `meta`. For an active session that runs no turn
    /// here, the store's turn locks say whether another process runs one
    /// (`running`) or one was left interrupted (`interrupted`); other
    /// sessions cost no lookup.
    pub(crate) async fn info(&self, meta: &SessionMeta) -> SessionInfo {
        let (running, queued) = self.turn_status(&meta.id);
        let mut info = SessionInfo::from_meta(meta, &self.ctx.project.dir, running, queued);
        if meta.status == weft_core::session::SessionStatus::Active && !running {
            match self.store().turn_locks(&meta.id).await {
                Ok(locks) => {
                    info.running = locks.iter().any(|l| l.live);
                    info.interrupted = !info.running && locks.iter().any(|l| l.holder.is_some());
                }
                Err(e) => {
                    tracing::warn!(session = %meta.id, error = %e, "cannot read the session's turn locks")
                }
            }
        }
        info
    }

    /// The session's metadata (404 if unknown).
    pub(crate) async fn meta(&self, id: &SessionId) -> Result<SessionMeta, ApiError> {
        self.store().get(id).await.map_err(|e| session_error(id, e))
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
        for id in ids {
            self.answers.forget(id);
        }
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
            if slot.feed.followers() == 0 {
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
