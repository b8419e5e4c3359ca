//! The module registry: module names → constructors.
//!
//! A mount plan names modules; the registry builds them. weft-core registers
//! its own (`loop-basic`, `context-simple`, `hooks-logging`,
//! `hooks-inject-context`, `hooks-session-naming`); the provider and
//! tool crates add theirs (`weft_providers::register`, `weft_tools::register`).
//! Asking for an unknown name is an error that lists the known ones.
//!
//! A tool module whose tools are only known after waiting for something
//! (an MCP server's tool list, `weft_mcp`) registers an async factory
//! ([`ModuleRegistry::register_tool_async`]); the session awaits it while
//! mounting.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use crate::context::{ContextManager, SimpleContext};
use crate::hooks::{ALL_EVENTS, HookHandler, HookRegistry, events};
use crate::id::SessionId;
use crate::inject_hook::{self, InjectContextHook};
use crate::logging::LoggingHook;
use crate::mount::{ModuleSpec, MountError};
use crate::naming::{self, NamingHook, ProviderSlot};
use crate::orchestrator::{LoopBasic, Orchestrator};
use crate::provider::Provider;
use crate::store::Store;
use crate::tool::Tool;

/// What a module constructor may use.
#[derive(Clone)]
pub struct ModuleEnv {
    /// The session being built.
    pub session_id: SessionId,
    /// Its parent, for delegated sessions.
    pub parent_id: Option<SessionId>,
    /// The store.
    pub store: Arc<dyn Store>,
    /// The project directory.
    pub working_dir: PathBuf,
    /// The session's hooks.
    pub hooks: HookRegistry,
    /// The sub-agents the session may delegate to: `(name, description)`.
    pub agents: Vec<(String, String)>,
    /// The session's providers, filled in once they are mounted (after
    /// hooks): for hook modules that ask the model themselves
    /// (`hooks-session-naming`).
    pub providers: ProviderSlot,
}

/// A hook handler to register, as a hook module returns it.
pub struct HookMount {
    /// The event (or `*`).
    pub event: String,
    /// The handler.
    pub handler: Arc<dyn HookHandler>,
    /// Its priority (lower runs first).
    pub priority: i32,
    /// A name for logs.
    pub name: String,
}

impl LoggingHook {
    /// Builds the `hooks-logging` module from its spec: one handler on every
    /// event (`*`), run last.
    pub fn mount(spec: &ModuleSpec, env: &ModuleEnv) -> Result<Vec<HookMount>, MountError> {
        let hook = LoggingHook::from_spec(spec, env.store.clone(), env.session_id.clone());
        Ok(vec![HookMount {
            event: ALL_EVENTS.to_string(),
            handler: Arc::new(hook),
            priority: i32::MAX,
            name: "hooks-logging".into(),
        }])
    }
}

impl NamingHook {
    /// Builds the `hooks-session-naming` module: one handler on
    /// `execution:end` (to ask for a title) and `session:end` (to wait for
    /// it).
    pub fn mount(_spec: &ModuleSpec, env: &ModuleEnv) -> Result<Vec<HookMount>, MountError> {
        let hook: Arc<dyn HookHandler> = Arc::new(NamingHook::new(
            env.store.clone(),
            env.session_id.clone(),
            env.providers.clone(),
        ));
        Ok([events::EXECUTION_END, events::SESSION_END]
            .into_iter()
            .map(|event| HookMount {
                event: event.to_string(),
                handler: hook.clone(),
                priority: 100,
                name: naming::MODULE.into(),
            })
            .collect())
    }
}

/// Builds a provider.
pub type ProviderFactory =
    Arc<dyn Fn(&ModuleSpec, &ModuleEnv) -> Result<Arc<dyn Provider>, MountError> + Send + Sync>;
/// Builds the tools of a tool module.
pub type ToolFactory =
    Arc<dyn Fn(&ModuleSpec, &ModuleEnv) -> Result<Vec<Arc<dyn Tool>>, MountError> + Send + Sync>;
/// What an async tool factory returns.
pub type ToolsFuture = Pin<Box<dyn Future<Output = Result<Vec<Arc<dyn Tool>>, MountError>> + Send>>;
/// Builds the tools of a tool module that must wait for them (it gets its
/// own copies of the spec and environment).
pub type AsyncToolFactory = Arc<dyn Fn(ModuleSpec, ModuleEnv) -> ToolsFuture + Send + Sync>;
/// Builds the handlers of a hook module.
pub type HookFactory =
    Arc<dyn Fn(&ModuleSpec, &ModuleEnv) -> Result<Vec<HookMount>, MountError> + Send + Sync>;
/// Builds an orchestrator.
pub type OrchestratorFactory =
    Arc<dyn Fn(&ModuleSpec, &ModuleEnv) -> Result<Arc<dyn Orchestrator>, MountError> + Send + Sync>;
/// Builds a context manager (one per branch).
pub type ContextFactory = Arc<
    dyn Fn(&ModuleSpec, &ModuleEnv) -> Result<Arc<dyn ContextManager>, MountError> + Send + Sync,
>;

/// Module names and their constructors.
#[derive(Clone, Default)]
pub struct ModuleRegistry {
    providers: BTreeMap<String, ProviderFactory>,
    tools: BTreeMap<String, ToolFactory>,
    async_tools: BTreeMap<String, AsyncToolFactory>,
    hooks: BTreeMap<String, HookFactory>,
    orchestrators: BTreeMap<String, OrchestratorFactory>,
    contexts: BTreeMap<String, ContextFactory>,
}

fn unknown<T>(kind: &'static str, name: &str, map: &BTreeMap<String, T>) -> MountError {
    MountError::UnknownModule {
        kind,
        name: name.to_string(),
        known: map.keys().cloned().collect(),
    }
}

impl ModuleRegistry {
    /// A registry with no modules.
    pub fn empty() -> Self {
        Self::default()
    }

    /// A registry with weft-core's modules: `loop-basic`, `context-simple`,
    /// `hooks-logging`, `hooks-inject-context`, `hooks-session-naming`.
    pub fn with_core_modules() -> Self {
        let mut r = Self::default();
        r.register_orchestrator("loop-basic", |spec, _env| {
            let max = spec
                .config_u64("max_iterations")
                .map(|n| n.min(u32::MAX as u64) as u32);
            Ok(Arc::new(LoopBasic::new(max)) as Arc<dyn Orchestrator>)
        });
        r.register_context("context-simple", |_spec, _env| {
            Ok(Arc::new(SimpleContext::new()) as Arc<dyn ContextManager>)
        });
        r.register_hook("hooks-logging", LoggingHook::mount);
        r.register_hook(inject_hook::MODULE, |spec, _env| {
            let m = InjectContextHook::from_spec(spec)?;
            Ok(vec![HookMount {
                event: m.event,
                handler: m.handler,
                priority: m.priority,
                name: inject_hook::MODULE.into(),
            }])
        });
        r.register_hook(naming::MODULE, NamingHook::mount);
        r
    }

    /// Registers a provider module.
    pub fn register_provider(
        &mut self,
        name: impl Into<String>,
        f: impl Fn(&ModuleSpec, &ModuleEnv) -> Result<Arc<dyn Provider>, MountError>
        + Send
        + Sync
        + 'static,
    ) {
        self.providers.insert(name.into(), Arc::new(f));
    }

    /// Registers a tool module.
    pub fn register_tool(
        &mut self,
        name: impl Into<String>,
        f: impl Fn(&ModuleSpec, &ModuleEnv) -> Result<Vec<Arc<dyn Tool>>, MountError>
        + Send
        + Sync
        + 'static,
    ) {
        self.tools.insert(name.into(), Arc::new(f));
    }

    /// Registers a tool module whose tools are built asynchronously (see
    /// [`ModuleRegistry::mount_tools`]). It replaces a synchronous module of
    /// the same name.
    pub fn register_tool_async(
        &mut self,
        name: impl Into<String>,
        f: impl Fn(ModuleSpec, ModuleEnv) -> ToolsFuture + Send + Sync + 'static,
    ) {
        let name = name.into();
        self.tools.remove(&name);
        self.async_tools.insert(name, Arc::new(f));
    }

    /// Registers a hook module.
    pub fn register_hook(
        &mut self,
        name: impl Into<String>,
        f: impl Fn(&ModuleSpec, &ModuleEnv) -> Result<Vec<HookMount>, MountError>
        + Send
        + Sync
        + 'static,
    ) {
        self.hooks.insert(name.into(), Arc::new(f));
    }

    /// Registers an orchestrator module.
    pub fn register_orchestrator(
        &mut self,
        name: impl Into<String>,
        f: impl Fn(&ModuleSpec, &ModuleEnv) -> Result<Arc<dyn Orchestrator>, MountError>
        + Send
        + Sync
        + 'static,
    ) {
        self.orchestrators.insert(name.into(), Arc::new(f));
    }

    /// Registers a context manager module.
    pub fn register_context(
        &mut self,
        name: impl Into<String>,
        f: impl Fn(&ModuleSpec, &ModuleEnv) -> Result<Arc<dyn ContextManager>, MountError>
        + Send
        + Sync
        + 'static,
    ) {
        self.contexts.insert(name.into(), Arc::new(f));
    }

    /// Builds a provider.
    pub fn provider(
        &self,
        spec: &ModuleSpec,
        env: &ModuleEnv,
    ) -> Result<Arc<dyn Provider>, MountError> {
        let f = self
            .providers
            .get(&spec.module)
            .ok_or_else(|| unknown("provider", &spec.module, &self.providers))?;
        f(spec, env)
    }

    /// Builds a synchronous tool module's tools (an async module is an
    /// unknown module here: use [`ModuleRegistry::mount_tools`]).
    pub fn tools(
        &self,
        spec: &ModuleSpec,
        env: &ModuleEnv,
    ) -> Result<Vec<Arc<dyn Tool>>, MountError> {
        let f = self
            .tools
            .get(&spec.module)
            .ok_or_else(|| self.unknown_tool(&spec.module))?;
        f(spec, env)
    }

    /// Builds a tool module's tools, awaiting an async module's factory.
    pub async fn mount_tools(
        &self,
        spec: &ModuleSpec,
        env: &ModuleEnv,
    ) -> Result<Vec<Arc<dyn Tool>>, MountError> {
        match self.async_tools.get(&spec.module) {
            Some(f) => f(spec.clone(), env.clone()).await,
            None => self.tools(spec, env),
        }
    }

    fn unknown_tool(&self, name: &str) -> MountError {
        MountError::UnknownModule {
            kind: "tool",
            name: name.to_string(),
            known: self.tool_names(),
        }
    }

    /// Builds a hook module's handlers.
    pub fn hooks(&self, spec: &ModuleSpec, env: &ModuleEnv) -> Result<Vec<HookMount>, MountError> {
        let f = self
            .hooks
            .get(&spec.module)
            .ok_or_else(|| unknown("hook", &spec.module, &self.hooks))?;
        f(spec, env)
    }

    /// Builds an orchestrator.
    pub fn orchestrator(
        &self,
        spec: &ModuleSpec,
        env: &ModuleEnv,
    ) -> Result<Arc<dyn Orchestrator>, MountError> {
        let f = self
            .orchestrators
            .get(&spec.module)
            .ok_or_else(|| unknown("orchestrator", &spec.module, &self.orchestrators))?;
        f(spec, env)
    }

    /// Builds a context manager.
    pub fn context(
        &self,
        spec: &ModuleSpec,
        env: &ModuleEnv,
    ) -> Result<Arc<dyn ContextManager>, MountError> {
        let f = self
            .contexts
            .get(&spec.module)
            .ok_or_else(|| unknown("context", &spec.module, &self.contexts))?;
        f(spec, env)
    }

    /// Whether a module of any kind has this name.
    pub fn knows(&self, name: &str) -> bool {
        self.providers.contains_key(name)
            || self.tools.contains_key(name)
            || self.async_tools.contains_key(name)
            || self.hooks.contains_key(name)
            || self.orchestrators.contains_key(name)
            || self.contexts.contains_key(name)
    }

    /// The registered provider module names.
    pub fn provider_names(&self) -> Vec<String> {
        self.providers.keys().cloned().collect()
    }

    /// The registered tool module names.
    pub fn tool_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .tools
            .keys()
            .chain(self.async_tools.keys())
            .cloned()
            .collect();
        names.sort();
        names
    }
}
