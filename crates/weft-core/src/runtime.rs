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
//! 2. [`Session::start_turn`] starts a turn: it allocates the turn's id and
//!    cancellation before anything runs and returns a [`TurnHandle`] (cancel
//!    it, follow its events, await its answer); [`Session::execute`] is
//!    `start_turn` + `result`. The first turn emits `session:start` (or
//!    `session:resume`) exactly once. Every turn emits `execution:start`
//!    when it starts and exactly one `execution:end` however it ends.
//!    Before the provider is called, a branch whose history ends in
//!    unanswered tool calls (a crash mid-tool) is repaired with synthetic
//!    error results.
//! 3. [`Session::cleanup`] emits `session:end` exactly once and completes the
//!    session. [`Session::scope`] does all three around a closure and always
//!    cleans up; a session dropped active without cleanup is recorded as
//!    ended uncleanly.
//!
//! Every message, usage figure and status change is appended to the session
//! log through the [`Store`] and published, with the kernel events, to the
//! session's [`Feed`]; a turn's records and events carry its id and branch.
//! Turns on different branches may run concurrently; turns on one branch
//! are serialised.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{Map, Value, json};

use crate::approval::{ApprovalSystem, DisplayLevel, DisplaySystem, TracingDisplay};
use crate::context::ContextManager;
use crate::error::SessionError;
use crate::feed::{FEED_CAPACITY, Feed};
use crate::hooks::{HookRegistry, events};
use crate::id::{BranchId, SessionId, TurnId};
use crate::log::SessionLog;
use crate::mount::{ModuleSpec, MountError, MountPlan};
use crate::orchestrator::{Orchestrator, TurnCancel};
use crate::provider::Provider;
use crate::registry::{ModuleEnv, ModuleRegistry};
use crate::session::{Branch, Project, SessionMeta};
use crate::store::{Store, StoreError};
use crate::tool::Tool;
use crate::view::SessionView;

mod branches;
mod delegate;
#[cfg(test)]
mod delegate_tests;
mod handle;
mod lifecycle;
mod resume;
mod scope;
mod state;
#[cfg(test)]
mod tests;
mod turn;
#[cfg(test)]
mod turn_tests;

pub use handle::{TurnAnswer, TurnEvents, TurnHandle, TurnRequest};
pub use resume::{Resumed, model_override};

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
    /// The feed the session publishes its records and events to (None: a
    /// feed of its own, [`Session::feed`]). A daemon passes the feed its
    /// streams already follow.
    pub feed: Option<Feed>,
    /// Whether a session that ran a turn and whose last handle is dropped
    /// without [`Session::cleanup`] is recorded as ended uncleanly (true by
    /// default; the daemon, which keeps sessions active between handles,
    /// turns it off). See [`Session::scope`].
    pub record_unclean_drop: bool,
    /// The tenant a new session is recorded under
    /// ([`crate::session::META_TENANT`]); None: the parent's, for a
    /// delegated session, else none.
    pub tenant: Option<String>,
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
            feed: None,
            record_unclean_drop: true,
            tenant: None,
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
    running: Mutex<HashMap<TurnId, (BranchId, TurnCancel)>>,
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

    /// The log handle.
    pub fn log(&self) -> Result<&SessionLog, SessionError> {
        Ok(&self.mounted()?.log)
    }

    /// The session's feed: its records and kernel events, in order, each
    /// naming its turn ([`crate::feed`]).
    pub fn feed(&self) -> Result<&Feed, SessionError> {
        Ok(self.mounted()?.log.feed())
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
            providers: Default::default(),
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
        let feed = cfg
            .feed
            .clone()
            .unwrap_or_else(|| Feed::new(store.clone(), self.inner.id.clone(), FEED_CAPACITY));
        feed.prime(meta.last_seq).await;
        let log = SessionLog::with_feed(store.clone(), meta, feed.clone());

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
        env.providers
            .fill(providers.iter().map(|(_, _, _, p)| p.clone()).collect());
        let tools = mount_tools(&cfg.registry, &cfg.plan.tools, &env, &mut warnings).await?;
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
        hooks.set_feed(Some(feed));
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
        meta.name = match &cfg.name {
            Some(name) => Some(
                crate::session::check_name(name)
                    .map_err(|e| SessionError::Invalid(e.to_string()))?
                    .to_string(),
            )
            .filter(|n| !n.is_empty()),
            None => None,
        };
        meta.user = cfg.user.clone();
        meta.model = cfg.model.clone().or_else(|| {
            cfg.plan
                .providers
                .first()
                .and_then(|p| p.config_str("model"))
                .map(str::to_string)
        });
        meta.agent_name = cfg.agent_name.clone();
        if let Some(agent) = &cfg.agent_name {
            // What Amplifier records of a sub-session: the merged plan it
            // runs and the agent's own part of it.
            let config = serde_json::to_value(&cfg.plan).unwrap_or(Value::Null);
            let overlay = cfg
                .plan
                .agents
                .get(agent)
                .and_then(|a| serde_json::to_value(a).ok())
                .unwrap_or(Value::Null);
            meta.metadata
                .insert(crate::session::META_AGENT_CONFIG.into(), config);
            meta.metadata
                .insert(crate::session::META_AGENT_OVERLAY.into(), overlay);
        }
        if let Some(tenant) = &cfg.tenant {
            meta.set_tenant(tenant);
        }
        if let Some(parent) = &cfg.parent_id {
            meta.parent_id = Some(parent.clone());
            meta.trace_id = match cfg.store.get(parent).await {
                Ok(p) => {
                    // A delegated session belongs to its parent's tenant.
                    if let Some(tenant) = p.tenant() {
                        meta.set_tenant(tenant);
                    }
                    p.trace_id
                }
                Err(StoreError::NotFound(_)) => parent.clone(),
                Err(e) => return Err(e.into()),
            };
        }
        Ok(cfg.store.create(meta, Vec::new()).await?)
    }
}

async fn mount_tools(
    registry: &ModuleRegistry,
    specs: &[ModuleSpec],
    env: &ModuleEnv,
    warnings: &mut Vec<String>,
) -> Result<BTreeMap<String, Arc<dyn Tool>>, SessionError> {
    let mut tools = BTreeMap::new();
    for spec in specs {
        match registry.mount_tools(spec, env).await {
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
