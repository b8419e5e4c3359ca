//! Test doubles for the kernel's traits, for weft-core's own tests and for
//! library users testing their hooks, tools and orchestrators.
//!
//! What it owns:
//! - [`FakeProvider`]: a [`crate::provider::Provider`] answering from a queue
//!   of scripted [`Reply`]s, counting its calls, keeping the requests it got,
//!   and able to hold a stream mid-way ([`FakeProvider::pause_after`]).
//! - [`FakeTool`]: a [`crate::tool::Tool`] with a canned output or a closure,
//!   counting its runs, optionally held at a [`Gate`].
//! - [`RecordingHook`]: a [`crate::hooks::HookHandler`] that records every
//!   event it sees and lets a test wait for one.
//! - [`CountingProgress`]: a [`crate::progress::Progress`] that counts what
//!   long work reports.
//! - [`Gate`]: the one synchronisation point all of them use: a test awaits
//!   [`Gate::reached`] and then calls [`Gate::release`]; nothing sleeps.
//! - [`session_with`] and friends: a ready [`Session`] on a
//!   [`MemoryStore`] with the fakes mounted (`loop-basic`, `context-simple`).
//!
//! What it must not know about: storage backends beyond memory, real
//! providers or tools, HTTP. It is always compiled (no feature gate) and
//! adds no dependencies.
//!
//! ```
//! use weft_core::testing::{session_with, FakeProvider, FakeTool, RecordingHook, Reply};
//! use serde_json::json;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let provider = FakeProvider::new();
//! provider.push(Reply::tool_call("lookup", json!({"key": "a"})));
//! provider.push(Reply::text("the answer is 42"));
//! let tool = FakeTool::new("lookup", "42");
//! let session = session_with(&provider, vec![tool.as_tool()]).await?;
//! let hook = RecordingHook::new();
//! hook.attach(session.hooks());
//!
//! assert_eq!(session.execute("what is a?").await?, "the answer is 42");
//! assert_eq!(provider.calls(), 2);
//! assert_eq!(tool.calls(), 1);
//! assert_eq!(hook.count("tool:post"), 1);
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::sync::Notify;

use crate::error::SessionError;
use crate::id::BranchId;
use crate::memory::MemoryStore;
use crate::message::{ContentBlock, Message, Role};
use crate::mount::{ModuleSpec, MountPlan, SessionSection};
use crate::provider::ChatRequest;
use crate::registry::ModuleRegistry;
use crate::runtime::{Session, SessionConfig};
use crate::tool::Tool;

mod hook;
mod progress;
mod provider;
mod tool;

pub use hook::RecordingHook;
pub use progress::CountingProgress;
pub use provider::{FAKE_PROVIDER_MODULE, FakeCall, FakeProvider, Reply};
pub use tool::{FAKE_TOOLS_MODULE, FakeTool};

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A point where fakes wait for the test: code under test calls
/// [`Gate::pass`] (which marks the gate reached and waits), the test awaits
/// [`Gate::reached`], inspects, then calls [`Gate::release`]. Once released,
/// every later `pass` goes straight through. Cheap to clone; clones share
/// the gate.
#[derive(Clone, Default)]
pub struct Gate {
    inner: Arc<GateInner>,
}

#[derive(Default)]
struct GateInner {
    arrivals: AtomicUsize,
    released: AtomicBool,
    notify: Notify,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("arrivals", &self.arrivals())
            .field("released", &self.is_released())
            .finish()
    }
}

impl Gate {
    /// A closed gate nobody has reached.
    pub fn new() -> Self {
        Self::default()
    }

    /// Opens the gate: waiting and later passers go on.
    pub fn release(&self) {
        self.inner.released.store(true, Ordering::SeqCst);
        self.inner.notify.notify_waiters();
    }

    /// Whether [`Gate::release`] was called.
    pub fn is_released(&self) -> bool {
        self.inner.released.load(Ordering::SeqCst)
    }

    /// How many times [`Gate::pass`] was entered.
    pub fn arrivals(&self) -> usize {
        self.inner.arrivals.load(Ordering::SeqCst)
    }

    /// Waits until something reached the gate (returns at once if it
    /// already did).
    pub async fn reached(&self) {
        self.reached_by(1).await;
    }

    /// Waits until `n` passers reached the gate in total.
    pub async fn reached_by(&self, n: usize) {
        self.wait_until(|| self.arrivals() >= n).await;
    }

    /// Marks the gate reached and waits until it is released. Cancel-safe:
    /// dropping the future leaves the arrival counted.
    pub async fn pass(&self) {
        self.inner.arrivals.fetch_add(1, Ordering::SeqCst);
        self.inner.notify.notify_waiters();
        self.wait_until(|| self.is_released()).await;
    }

    async fn wait_until(&self, done: impl Fn() -> bool) {
        loop {
            // Registered before the check, so a notify in between is seen.
            let notified = self.inner.notify.notified();
            if done() {
                return;
            }
            notified.await;
        }
    }
}

/// A mount plan with `loop-basic`, `context-simple`, the fake provider
/// module ([`FAKE_PROVIDER_MODULE`]) and the fake tools module
/// ([`FAKE_TOOLS_MODULE`]). Set `plan.session.orchestrator.config`
/// (`max_iterations`) or `plan.system` to taste.
pub fn plan() -> MountPlan {
    MountPlan {
        session: SessionSection {
            orchestrator: ModuleSpec::named("loop-basic"),
            context: ModuleSpec::named("context-simple"),
        },
        system: None,
        providers: vec![ModuleSpec::named(FAKE_PROVIDER_MODULE)],
        tools: vec![ModuleSpec::named(FAKE_TOOLS_MODULE)],
        hooks: Vec::new(),
        agents: Default::default(),
    }
}

/// weft-core's modules plus `provider` as [`FAKE_PROVIDER_MODULE`] and
/// `tools` as [`FAKE_TOOLS_MODULE`] (every session built from it shares
/// them).
pub fn registry_with(provider: &FakeProvider, tools: Vec<Arc<dyn Tool>>) -> ModuleRegistry {
    let mut registry = ModuleRegistry::with_core_modules();
    provider.register(&mut registry);
    tool::register_tools(&mut registry, tools);
    registry
}

/// A session config over a fresh [`MemoryStore`], [`plan`] and
/// [`registry_with`]; change it before [`Session::new`].
pub fn config_with(provider: &FakeProvider, tools: Vec<Arc<dyn Tool>>) -> SessionConfig {
    SessionConfig::new(
        plan(),
        Arc::new(MemoryStore::new()),
        Arc::new(registry_with(provider, tools)),
    )
}

/// An initialized session built from `config`.
pub async fn session_from(config: SessionConfig) -> Result<Session, SessionError> {
    let session = Session::new(config);
    session.initialize().await?;
    Ok(session)
}

/// An initialized session on a fresh [`MemoryStore`] (see
/// [`Session::store`]) with `provider` and `tools` mounted.
pub async fn session_with(
    provider: &FakeProvider,
    tools: Vec<Arc<dyn Tool>>,
) -> Result<Session, SessionError> {
    session_from(config_with(provider, tools)).await
}

/// The messages of `branch` (id or name; None: the default branch) as the
/// session log has them.
pub async fn messages(
    session: &Session,
    branch: Option<&str>,
) -> Result<Vec<Message>, SessionError> {
    let view = session.view().await?;
    let branch = match branch {
        Some(b) => view.branch(b),
        None => view.default_branch(),
    };
    Ok(branch
        .map(|b| b.messages.iter().map(|m| m.message.clone()).collect())
        .unwrap_or_default())
}

/// A request holding one user message with `text` on the main branch,
/// for calling providers directly.
pub fn user_request(text: &str) -> ChatRequest {
    ChatRequest {
        messages: vec![Message::text(BranchId::main(), Role::User, text)].into(),
        ..ChatRequest::default()
    }
}

/// The roles of `messages`, in order.
pub fn roles(messages: &[Message]) -> Vec<Role> {
    messages.iter().map(|m| m.role).collect()
}

/// The tool results in `messages`, in order: `(call id, output, is_error)`.
pub fn tool_results(messages: &[Message]) -> Vec<(String, String, bool)> {
    messages
        .iter()
        .flat_map(|m| &m.content)
        .filter_map(|block| match block {
            ContentBlock::ToolResult {
                call_id,
                output,
                is_error,
            } => Some((call_id.clone(), output.clone(), *is_error)),
            _ => None,
        })
        .collect()
}

/// Awaits `future`, failing the test if it hangs (a guard against
/// deadlocks, not a timing assertion).
#[cfg(test)]
pub(crate) async fn within<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(std::time::Duration::from_secs(30), future)
        .await
        .expect("the test hung: a gate or event it waited for never came")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_gate_holds_passers_until_released() {
        let gate = Gate::new();
        let passer = tokio::spawn({
            let gate = gate.clone();
            async move { gate.pass().await }
        });
        gate.reached().await;
        assert_eq!(gate.arrivals(), 1);
        assert!(
            !passer.is_finished(),
            "a closed gate let its passer through"
        );
        gate.release();
        passer.await.expect("passer");
        // Released gates let everyone through.
        gate.pass().await;
        gate.reached_by(2).await;
    }
}
