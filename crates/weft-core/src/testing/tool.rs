//! [`FakeTool`]: a tool with a canned output or a closure, counting its
//! runs and optionally held at a [`Gate`].

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::{Value, json};

use super::{Gate, lock};
use crate::registry::ModuleRegistry;
use crate::tool::{Tool, ToolContext, ToolOutput};

/// The module name [`super::registry_with`] mounts tools under.
pub const FAKE_TOOLS_MODULE: &str = "tool-fake";

/// What a [`FakeTool`] answers with.
type Behaviour = Box<dyn Fn(&Value) -> ToolOutput + Send + Sync>;

struct Inner {
    name: String,
    description: String,
    behaviour: Behaviour,
    gate: Mutex<Option<Gate>>,
    calls: AtomicUsize,
    finished: AtomicUsize,
    inputs: Mutex<Vec<Value>>,
}

/// A tool answering with a canned output or a closure. It counts runs
/// ([`FakeTool::calls`], [`FakeTool::finished`]) and keeps their inputs; a
/// tool [`FakeTool::hold`]-ed waits at a [`Gate`] before answering (and
/// answers "cancelled" if `ctx.cancel` fires meanwhile). Its schema accepts
/// any object.
///
/// Cheap to clone; clones share the records.
#[derive(Clone)]
pub struct FakeTool {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for FakeTool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeTool")
            .field("name", &self.inner.name)
            .field("calls", &self.calls())
            .finish()
    }
}

impl FakeTool {
    /// A tool that always succeeds with `output`.
    pub fn new(name: impl Into<String>, output: impl Into<String>) -> Self {
        let output = output.into();
        Self::with_fn(name, move |_| ToolOutput::ok(output.clone()))
    }

    /// A tool that always fails with `error`.
    pub fn failing(name: impl Into<String>, error: impl Into<String>) -> Self {
        let error = error.into();
        Self::with_fn(name, move |_| ToolOutput::error(error.clone()))
    }

    /// A tool answering with `f(input)`.
    pub fn with_fn(
        name: impl Into<String>,
        f: impl Fn(&Value) -> ToolOutput + Send + Sync + 'static,
    ) -> Self {
        let name = name.into();
        Self {
            inner: Arc::new(Inner {
                description: format!("fake tool {name}"),
                name,
                behaviour: Box::new(f),
                gate: Mutex::new(None),
                calls: AtomicUsize::new(0),
                finished: AtomicUsize::new(0),
                inputs: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Makes later runs wait at the returned gate before answering (until
    /// it is released). Replaces an earlier gate.
    pub fn hold(&self) -> Gate {
        let gate = Gate::new();
        *lock(&self.inner.gate) = Some(gate.clone());
        gate
    }

    /// How many runs started.
    pub fn calls(&self) -> usize {
        self.inner.calls.load(Ordering::SeqCst)
    }

    /// How many runs answered (not cancelled or dropped at the gate).
    pub fn finished(&self) -> usize {
        self.inner.finished.load(Ordering::SeqCst)
    }

    /// The inputs of the runs, in start order.
    pub fn inputs(&self) -> Vec<Value> {
        lock(&self.inner.inputs).clone()
    }

    /// This tool as the kernel takes it (sharing the records).
    pub fn as_tool(&self) -> Arc<dyn Tool> {
        Arc::new(self.clone())
    }
}

#[async_trait]
impl Tool for FakeTool {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn description(&self) -> &str {
        &self.inner.description
    }

    fn input_schema(&self) -> Value {
        json!({"type": "object"})
    }

    async fn execute(&self, input: Value, ctx: &ToolContext) -> ToolOutput {
        self.inner.calls.fetch_add(1, Ordering::SeqCst);
        lock(&self.inner.inputs).push(input.clone());
        let gate = lock(&self.inner.gate).clone();
        if let Some(gate) = gate {
            tokio::select! {
                biased;
                _ = ctx.cancel.cancelled() => return ToolOutput::error("cancelled"),
                _ = gate.pass() => {}
            }
        }
        let output = (self.inner.behaviour)(&input);
        self.inner.finished.fetch_add(1, Ordering::SeqCst);
        output
    }
}

/// Registers `tools` (shared, not copied) as [`FAKE_TOOLS_MODULE`].
pub(super) fn register_tools(registry: &mut ModuleRegistry, tools: Vec<Arc<dyn Tool>>) {
    registry.register_tool(FAKE_TOOLS_MODULE, move |_spec, _env| Ok(tools.clone()));
}
