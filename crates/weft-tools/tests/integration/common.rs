//! Shared helpers: tool contexts, tools built through the registry, and a
//! recording hook.

use std::path::Path;
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;
use weft_core::hooks::{ALL_EVENTS, HookRegistry, HookResult, hook_fn};
use weft_core::memory::MemoryStore;
use weft_core::mount::{ModuleSpec, MountError};
use weft_core::registry::{ModuleEnv, ModuleRegistry};
use weft_core::tool::{Tool, ToolContext, ToolOutput};
use weft_core::{BranchId, SessionId};
use weft_tools::ToolAccess;

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A context for a tool run in `dir`, with no approval system and no
/// delegate.
pub fn ctx(dir: &Path) -> ToolContext {
    ToolContext {
        session_id: SessionId::new_v7(),
        branch: BranchId::main(),
        call_id: "call-1".into(),
        working_dir: dir.to_path_buf(),
        cancel: CancellationToken::new(),
        approval: None,
        hooks: HookRegistry::new(),
        delegate: None,
        state: None,
    }
}

fn env(dir: &Path) -> ModuleEnv {
    ModuleEnv {
        session_id: SessionId::new_v7(),
        parent_id: None,
        store: Arc::new(MemoryStore::new()),
        working_dir: dir.to_path_buf(),
        hooks: HookRegistry::new(),
        agents: Vec::new(),
        providers: Default::default(),
    }
}

/// The registry with weft-core's and weft-tools' modules.
pub fn registry() -> ModuleRegistry {
    registry_with(ToolAccess::default())
}

/// The registry with the tool modules registered under `access`.
pub fn registry_with(access: ToolAccess) -> ModuleRegistry {
    let mut r = ModuleRegistry::with_core_modules();
    weft_tools::register_with(&mut r, access);
    r
}

/// Builds `module` with `config` through the registry.
pub fn mount(module: &str, config: Value) -> Result<Vec<Arc<dyn Tool>>, MountError> {
    mount_with(ToolAccess::default(), module, config)
}

/// Builds `module` with `config` through a registry under `access`.
pub fn mount_with(
    access: ToolAccess,
    module: &str,
    config: Value,
) -> Result<Vec<Arc<dyn Tool>>, MountError> {
    let config: Map<String, Value> = match config {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    let spec = ModuleSpec {
        module: module.to_string(),
        config,
    };
    registry_with(access).tools(&spec, &env(Path::new("/")))
}

/// The tool `name` of `module` built with `config`.
pub fn tool(module: &str, config: Value, name: &str) -> Arc<dyn Tool> {
    tool_with(ToolAccess::default(), module, config, name)
}

/// The tool `name` of `module` built with `config` under `access`.
pub fn tool_with(access: ToolAccess, module: &str, config: Value, name: &str) -> Arc<dyn Tool> {
    let tools =
        mount_with(access, module, config).unwrap_or_else(|e| panic!("mount {module}: {e}"));
    tools
        .into_iter()
        .find(|t| t.name() == name)
        .unwrap_or_else(|| panic!("{module} has no tool {name}"))
}

/// Asserts a failure and returns its error text.
#[track_caller]
pub fn expect_error(out: &ToolOutput) -> String {
    assert!(!out.success, "expected a failure, got {out:?}");
    out.error.clone().unwrap_or_default()
}

/// Asserts a success and returns its output.
#[track_caller]
pub fn expect_ok(out: &ToolOutput) -> String {
    assert!(out.success, "expected success, got {out:?}");
    out.output.clone()
}

/// Registers a hook on every event that records `event` names and data.
pub fn record_events(hooks: &HookRegistry) -> Arc<Mutex<Vec<(String, Value)>>> {
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = log.clone();
    hooks.register(
        ALL_EVENTS,
        hook_fn(move |event, data| {
            let sink = sink.clone();
            async move {
                sink.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((event, data));
                Ok(HookResult::proceed())
            }
        }),
        0,
        "recorder",
    );
    log
}

/// The recorded event names.
pub fn names(log: &Arc<Mutex<Vec<(String, Value)>>>) -> Vec<String> {
    log.lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|(e, _)| e.clone())
        .collect()
}
