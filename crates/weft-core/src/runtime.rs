//! The session runtime: weft's counterpart of Amplifier's `AmplifierSession`.
//!
//! A [`Session`] is built from a [`SessionConfig`] (mount plan, store, module
//! registry, optional id / parent, approval and display systems), then:
//!
//! 1. [`Session::initialize`] creates the session in the store (or loads it,
//!    when the id exists: a resume) and mounts its modules. Orchestrator and
//!    context failures are fatal; a provider, tool or hook module that fails
//!    to start is reported as a warning and left out. A new child session
//!    emits `session:fork` here.
//! 2. [`Session::execute`] runs a prompt. The first call emits
//!    `session:start` (or `session:resume`) exactly once. Before the provider
//!    is called, a branch whose history ends in unanswered tool calls (a
//!    crash mid-tool) is repaired with synthetic error results.
//! 3. [`Session::cleanup`] emits `session:end` exactly once and completes the
//!    session.
//!
//! Every message, usage figure and status change is appended to the session
//! log through the [`Store`]. Turns on different branches may run
//! concurrently; turns on one branch are serialised.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{Map, Value, json};

use crate::approval::{ApprovalSystem, DisplayLevel, DisplaySystem, TracingDisplay};
use crate::branches;
use crate::context::ContextManager;
use crate::error::SessionError;
use crate::hooks::{HookRegistry, events};
use crate::id::{BranchId, SessionId};
use crate::lease::{TurnHolder, TurnLock, TurnLockAttempt, busy_message, waiting_message};
use crate::log::SessionLog;
use crate::message::{Message, unanswered_tool_calls};
use crate::mount::{ModuleSpec, MountError, MountPlan};
use crate::orchestrator::{Orchestrator, TurnCancel, TurnContext};
use crate::provider::Provider;
use crate::record::{RecordKind, StatusChange};
use crate::registry::{ModuleEnv, ModuleRegistry};
use crate::session::{Branch, Project, SessionMeta, SessionStatus};
use crate::store::{Store, StoreError};
use crate::tool::Tool;
use crate::view::SessionView;

mod delegate;
mod state;

use delegate::RuntimeDelegate;

/// The output given to the model for tool calls found unanswered when a
/// session is resumed.
pub const TOOL_INTERRUPTED: &str =
    "interrupted: the session stopped before this tool call finished; it may or may not have run";

/// How [`Session::cancel`] stops running turns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelMode {
    /// Let running tools finish, then stop before the next provider call.
    Graceful,
    /// Stop now: abort the provider stream and running tools (their calls
    /// are answered with "cancelled").
    Immediate,
}

/// Everything a [`Session`] is built from.
#[derive(Clone)]
pub struct SessionConfig {
    /// The mount plan.
    pub plan: MountPlan,
    /// The profile name recorded in the metadata.
    pub profile: String,
    /// Where the session lives.
    pub store: Arc<dyn Store>,
    /// Module constructors.
    pub registry: Arc<ModuleRegistry>,
    /// The id to create or resume (None: a fresh UUIDv7).
    pub session_id: Option<SessionId>,
    /// The parent, for a delegated (child) session.
    pub parent_id: Option<SessionId>,
    /// The sub-agent name, for a delegated session.
    pub agent_name: Option<String>,
    /// The project (working directory).
    pub project: Project,
    /// Where approvals go (None: everything that needs approval is denied).
    pub approval: Option<Arc<dyn ApprovalSystem>>,
    /// Where notifications go (None: the tracing log).
    pub display: Option<Arc<dyn DisplaySystem>>,
    /// A name for a new session.
    pub name: Option<String>,
    /// The owner, for `user:` state.
    pub user: Option<String>,
    /// A model overriding the provider's default.
    pub model: Option<String>,
    /// Whether a turn waits while another process runs a turn on its
    /// branch (telling the display whom it waits for); false refuses it
    /// with that message instead.
    pub wait_for_turn: bool,
}

impl SessionConfig {
    /// A config with the current directory as project and profile `custom`.
    pub fn new(plan: MountPlan, store: Arc<dyn Store>, registry: Arc<ModuleRegistry>) -> Self {
        Self {
            plan,
            profile: "custom".into(),
            store,
            registry,
            session_id: None,
            parent_id: None,
            agent_name: None,
            project: Project::current(),
            approval: None,
            display: None,
            name: None,
            user: None,
            model: None,
            wait_for_turn: true,
        }
    }
}

struct Mounted {
    orchestrator: Arc<dyn Orchestrator>,
    env: ModuleEnv,
    providers: Vec<(String, Arc<dyn Provider>)>,
    tools: Arc<BTreeMap<String, Arc<dyn Tool>>>,
    log: SessionLog,
    resumed: bool,
    warnings: Vec<String>,
}

/// A branch's settings and its context manager, cached per branch.
type BranchState = (Branch, Arc<dyn ContextManager>);

struct Inner {
    config: SessionConfig,
    id: SessionId,
    hooks: HookRegistry,
    mounted: OnceLock<Mounted>,
    contexts: tokio::sync::Mutex<HashMap<BranchId, BranchState>>,
    branch_locks: Mutex<HashMap<BranchId, Arc<tokio::sync::Mutex<()>>>>,
    running: Mutex<HashMap<u64, (BranchId, TurnCancel)>>,
    next_turn: AtomicU64,
    started: AtomicBool,
    ended: AtomicBool,
    temp_state: Mutex<Map<String, Value>>,
    activation: tokio::sync::Mutex<()>,
}

/// A live session (cheap to clone; clones share everything).
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Session {
    /// Builds a session; nothing is stored or mounted until
    /// [`Session::initialize`].
    pub fn new(config: SessionConfig) -> Self {
        let id = config.session_id.clone().unwrap_or_else(SessionId::new_v7);
        Self {
            inner: Arc::new(Inner {
                config,
                id,
                hooks: HookRegistry::new(),
                mounted: OnceLock::new(),
                contexts: tokio::sync::Mutex::new(HashMap::new()),
                branch_locks: Mutex::new(HashMap::new()),
                running: Mutex::new(HashMap::new()),
                next_turn: AtomicU64::new(0),
                started: AtomicBool::new(false),
                ended: AtomicBool::new(false),
                temp_state: Mutex::new(Map::new()),
                activation: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// The session id.
    pub fn id(&self) -> &SessionId {
        &self.inner.id
    }

    /// The session's hooks (register handlers before or after initialize).
    pub fn hooks(&self) -> &HookRegistry {
        &self.inner.hooks
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.config.store
    }

    /// The config it was built from.
    pub fn config(&self) -> &SessionConfig {
        &self.inner.config
    }

    /// Whether initialize found the session in the store (a resume).
    pub fn is_resumed(&self) -> bool {
        self.inner.mounted.get().is_some_and(|m| m.resumed)
    }

    /// Warnings from mounting (modules that failed to start).
    pub fn mount_warnings(&self) -> Vec<String> {
        self.inner
            .mounted
            .get()
            .map(|m| m.warnings.clone())
            .unwrap_or_default()
    }

    /// The mounted tools' names.
    pub fn tool_names(&self) -> Vec<String> {
        self.inner
            .mounted
            .get()
            .map(|m| m.tools.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The mounted providers, in preference order.
    pub fn providers(&self) -> Vec<Arc<dyn Provider>> {
        self.inner
            .mounted
            .get()
            .map(|m| m.providers.iter().map(|(_, p)| p.clone()).collect())
            .unwrap_or_default()
    }

    /// The log handle (subscribe to appended records).
    pub fn log(&self) -> Result<&SessionLog, SessionError> {
        Ok(&self.mounted()?.log)
    }

    /// The current metadata.
    pub async fn meta(&self) -> Result<SessionMeta, SessionError> {
        Ok(self.store().get(&self.inner.id).await?)
    }

    /// The session folded from its log.
    pub async fn view(&self) -> Result<SessionView, SessionError> {
        Ok(self.store().view(&self.inner.id).await?)
    }

    fn mounted(&self) -> Result<&Mounted, SessionError> {
        self.inner.mounted.get().ok_or(SessionError::NotInitialized)
    }

    fn display(&self) -> Arc<dyn DisplaySystem> {
        self.inner
            .config
            .display
            .clone()
            .unwrap_or_else(|| Arc::new(TracingDisplay))
    }

    /// Creates or loads the session and mounts its modules. Calling it again
    /// does nothing.
    pub async fn initialize(&self) -> Result<(), SessionError> {
        if self.inner.mounted.get().is_some() {
            return Ok(());
        }
        let cfg = &self.inner.config;
        let store = cfg.store.clone();
        let hooks = &self.inner.hooks;
        hooks.set_default("session_id", json!(self.inner.id));
        if let Some(parent) = &cfg.parent_id {
            hooks.set_default("parent_id", json!(parent));
        }
        hooks.set_approval(cfg.approval.clone());
        let env = ModuleEnv {
            session_id: self.inner.id.clone(),
            parent_id: cfg.parent_id.clone(),
            store: store.clone(),
            working_dir: PathBuf::from(&cfg.project.dir),
            hooks: hooks.clone(),
            agents: cfg
                .plan
                .agents
                .iter()
                .map(|(name, a)| (name.clone(), a.description.clone()))
                .collect(),
        };

        // Fatal modules first, before anything is written.
        let orchestrator = cfg
            .registry
            .orchestrator(&cfg.plan.session.orchestrator, &env)?;
        cfg.registry.context(&cfg.plan.session.context, &env)?;

        // Create or load.
        let (meta, resumed) = match store.get(&self.inner.id).await {
            Ok(meta) => (meta, true),
            Err(StoreError::NotFound(_)) => (self.create_meta().await?, false),
            Err(e) => return Err(e.into()),
        };
        let log = SessionLog::new(store.clone(), meta);

        let mut warnings = Vec::new();
        for spec in &cfg.plan.hooks {
            match cfg.registry.hooks(spec, &env) {
                Ok(mounts) => {
                    for m in mounts {
                        hooks.register(m.event, m.handler, m.priority, m.name);
                    }
                }
                Err(e @ MountError::UnknownModule { .. }) => return Err(e.into()),
                Err(e) => warnings.push(e.to_string()),
            }
        }
        let mut providers: Vec<(i64, usize, String, Arc<dyn Provider>)> = Vec::new();
        for (i, spec) in cfg.plan.providers.iter().enumerate() {
            match cfg.registry.provider(spec, &env) {
                Ok(p) => {
                    let priority = spec
                        .config
                        .get("priority")
                        .and_then(Value::as_i64)
                        .unwrap_or(i as i64);
                    providers.push((priority, i, spec.module.clone(), p));
                }
                Err(e @ MountError::UnknownModule { .. }) => return Err(e.into()),
                Err(e) => warnings.push(e.to_string()),
            }
        }
        providers.sort_by_key(|(priority, i, _, _)| (*priority, *i));
        let tools = mount_tools(&cfg.registry, &cfg.plan.tools, &env, &mut warnings)?;
        let display = self.display();
        for w in &warnings {
            display.show_message(w, DisplayLevel::Warning, "mount");
        }
        let mounted = Mounted {
            orchestrator,
            env,
            providers: providers.into_iter().map(|(_, _, n, p)| (n, p)).collect(),
            tools: Arc::new(tools),
            log,
            resumed,
            warnings,
        };
        if self.inner.mounted.set(mounted).is_err() {
            // A concurrent initialize won; its modules are the session's.
            return Ok(());
        }
        if !resumed && let Some(parent) = &cfg.parent_id {
            hooks
                .emit(
                    events::SESSION_FORK,
                    json!({"parent_id": parent, "agent_name": cfg.agent_name}),
                )
                .await;
        }
        Ok(())
    }

    async fn create_meta(&self) -> Result<SessionMeta, SessionError> {
        let cfg = &self.inner.config;
        let mut meta = SessionMeta::new(
            self.inner.id.clone(),
            cfg.project.clone(),
            cfg.profile.clone(),
        );
        meta.name = cfg.name.clone();
        meta.user = cfg.user.clone();
        meta.model = cfg.model.clone().or_else(|| {
            cfg.plan
                .providers
                .first()
                .and_then(|p| p.config_str("model"))
                .map(str::to_string)
        });
        meta.agent_name = cfg.agent_name.clone();
        if let Some(parent) = &cfg.parent_id {
            meta.parent_id = Some(parent.clone());
            meta.trace_id = match cfg.store.get(parent).await {
                Ok(p) => p.trace_id,
                Err(StoreError::NotFound(_)) => parent.clone(),
                Err(e) => return Err(e.into()),
            };
        }
        Ok(cfg.store.create(meta, Vec::new()).await?)
    }

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

    /// Changes the status to `to` if `when(current)` holds, decided at the
    /// log's head (a concurrent writer's records are taken in and `when`
    /// re-checked). Returns the metadata after the call.
    async fn change_status(
        &self,
        to: SessionStatus,
        error: Option<String>,
        when: impl Fn(SessionStatus) -> bool + Send + Sync,
    ) -> Result<SessionMeta, SessionError> {
        let log = &self.mounted()?.log;
        let _serialised = self.inner.activation.lock().await;
        self.take_in_outside_writes().await?;
        let (_, meta) = log
            .append_if(|session, _| {
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
    async fn take_in_outside_writes(&self) -> Result<SessionMeta, SessionError> {
        let log = &self.mounted()?.log;
        let meta = self.store().get(&self.inner.id).await?;
        let moved = meta.last_seq != log.head().await;
        if moved {
            log.refresh().await?;
        }
        if log.take_outside_writes() || moved {
            self.invalidate_branches().await;
        }
        Ok(meta)
    }

    /// The id of a branch given by id or name.
    async fn resolve_branch(&self, id_or_name: &str) -> Result<BranchId, SessionError> {
        {
            let contexts = self.inner.contexts.lock().await;
            let cached = contexts
                .values()
                .find(|(b, _)| b.id.as_str() == id_or_name)
                .or_else(|| contexts.values().find(|(b, _)| b.name == id_or_name));
            if let Some((b, _)) = cached {
                return Ok(b.id.clone());
            }
        }
        let view = self.store().view(&self.inner.id).await?;
        view.branch(id_or_name)
            .map(|b| b.branch.id.clone())
            .ok_or_else(|| {
                SessionError::Invalid(format!(
                    "unknown branch {id_or_name:?} in session {}: `weft branch list {}` shows its branches",
                    self.inner.id, self.inner.id
                ))
            })
    }

    /// The branch's settings and context manager, cached after the first
    /// use (the history is loaded from the log then: `fresh` is true).
    async fn branch_state(
        &self,
        id: &BranchId,
        mounted: &Mounted,
    ) -> Result<(Branch, Arc<dyn ContextManager>, bool), SessionError> {
        let mut contexts = self.inner.contexts.lock().await;
        if let Some((b, c)) = contexts.get(id) {
            return Ok((b.clone(), c.clone(), false));
        }
        let mut view = self.store().view(&self.inner.id).await?;
        let branch = view.take_branch(id.as_str()).ok_or_else(|| {
            SessionError::Invalid(format!(
                "branch {id} of session {} was removed: `weft branch list {}` shows its branches",
                self.inner.id, self.inner.id
            ))
        })?;
        let cfg = &self.inner.config;
        let context = cfg
            .registry
            .context(&cfg.plan.session.context, &mounted.env)?;
        // The view is ours: its messages move into the context, uncopied.
        let history: Vec<Message> = branch.messages.into_iter().map(|m| m.message).collect();
        context.set_messages(history).await;
        contexts.insert(
            branch.branch.id.clone(),
            (branch.branch.clone(), context.clone()),
        );
        Ok((branch.branch, context, true))
    }

    /// Forgets cached branch state (after the branches changed), so the next
    /// turn reloads it from the log.
    pub async fn invalidate_branches(&self) {
        self.inner.contexts.lock().await.clear();
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

    // ---- branches and mail ----------------------------------------------

    /// Applies a view-dependent change atomically through this session's
    /// log (see [`crate::store::update_session`]); cached branch state is
    /// reloaded before the next turn.
    pub async fn update_with<T, F>(&self, mut change: F) -> Result<T, SessionError>
    where
        F: FnMut(&SessionView) -> Result<(T, Vec<RecordKind>), SessionError> + Send,
        T: Send,
    {
        let log = &self.mounted()?.log;
        let mut attempt = 0;
        loop {
            let head = log.head().await;
            let records = self
                .store()
                .read(&self.inner.id, 1, Some(head as usize))
                .await?;
            let view = SessionView::from_records(&records).map_err(StoreError::from)?;
            let (value, kinds) = change(&view)?;
            if kinds.is_empty() {
                return Ok(value);
            }
            match log.append_at(head, kinds).await {
                Ok(_) => {
                    self.invalidate_branches().await;
                    return Ok(value);
                }
                Err(e) if e.is_conflict() && attempt < crate::store::UPDATE_ATTEMPTS => {
                    attempt += 1;
                    if log.head().await == head {
                        // Another process wrote: take its records.
                        log.refresh().await?;
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Makes a branch.
    pub async fn new_branch(&self, spec: branches::NewBranch) -> Result<Branch, SessionError> {
        self.update_with(|view| {
            Ok(branches::new_branch(
                view,
                spec.clone(),
                chrono::Utc::now(),
            )?)
        })
        .await
    }

    /// Removes a branch (the first remaining one becomes the default if it
    /// was the default).
    pub async fn remove_branch(&self, id_or_name: &str) -> Result<(), SessionError> {
        self.update_with(|view| Ok(((), branches::remove_branch(view, id_or_name)?)))
            .await
    }

    /// Makes a branch the default.
    pub async fn change_default_branch(&self, id_or_name: &str) -> Result<(), SessionError> {
        self.update_with(|view| Ok(((), branches::change_default_branch(view, id_or_name)?)))
            .await
    }

    /// A branch and its messages.
    pub async fn get_branch(
        &self,
        id_or_name: &str,
    ) -> Result<crate::view::BranchView, SessionError> {
        let view = self.view().await?;
        view.branch(id_or_name)
            .cloned()
            .ok_or_else(|| branches::BranchError::UnknownBranch(id_or_name.to_string()).into())
    }

    /// Clones a branch into a new one (LionAGI `split`).
    pub async fn split(&self, source: &str, name: Option<String>) -> Result<Branch, SessionError> {
        self.update_with(|view| {
            Ok(branches::split(
                view,
                source,
                name.clone(),
                chrono::Utc::now(),
            )?)
        })
        .await
    }

    /// The messages of several branches in log order (LionAGI
    /// `concat_messages`).
    pub async fn concat_messages(
        &self,
        branch_names: Option<&[String]>,
        exclude_clone: bool,
        exclude_load: bool,
    ) -> Result<Vec<branches::SeqMessage>, SessionError> {
        let view = self.view().await?;
        Ok(branches::concat_messages(
            &view,
            branch_names,
            exclude_clone,
            exclude_load,
        )?)
    }

    /// Sends mail from one branch to another (`to = None`: broadcast).
    pub async fn send_mail(
        &self,
        from: &str,
        to: Option<&str>,
        category: crate::session::MailCategory,
        item: Value,
    ) -> Result<crate::session::Mail, SessionError> {
        self.update_with(|view| {
            Ok(branches::send_mail(
                view,
                from,
                to,
                category,
                item.clone(),
                chrono::Utc::now(),
            )?)
        })
        .await
    }

    /// Delivers waiting mail (`to`/`from` None: every branch); returns how
    /// many deliveries were made.
    pub async fn collect_mail(
        &self,
        to: Option<&str>,
        from: Option<&str>,
    ) -> Result<usize, SessionError> {
        self.update_with(|view| Ok(branches::collect_mail(view, to, from, chrono::Utc::now())?))
            .await
    }
}

fn mount_tools(
    registry: &ModuleRegistry,
    specs: &[ModuleSpec],
    env: &ModuleEnv,
    warnings: &mut Vec<String>,
) -> Result<BTreeMap<String, Arc<dyn Tool>>, SessionError> {
    let mut tools = BTreeMap::new();
    for spec in specs {
        match registry.tools(spec, env) {
            Ok(list) => {
                for t in list {
                    let name = t.name().to_string();
                    if tools.insert(name.clone(), t).is_some() {
                        warnings.push(format!(
                            "tool {name:?} is provided by more than one module; the one from {} is used",
                            spec.module
                        ));
                    }
                }
            }
            Err(e @ MountError::UnknownModule { .. }) => return Err(e.into()),
            Err(e) => warnings.push(e.to_string()),
        }
    }
    Ok(tools)
}
