//! # weft-core
//!
//! The heart of weft, an agent session kernel: the data model, the session
//! log, the kernel's module traits, the hook registry and the session
//! runtime with its default orchestrator and context manager.
//!
//! What it owns:
//! - **Data model** — validated ids ([`id`]), messages and content blocks
//!   ([`message`]), session metadata, branches and mail ([`session`]), and the
//!   session log's record types ([`record`]) whose fold is the session's
//!   current state ([`view`]).
//! - **Storage contract** — the [`store::Store`] trait every backend
//!   implements, with an in-memory implementation ([`memory`]).
//! - **Kernel traits** — [`provider::Provider`], [`tool::Tool`],
//!   [`context::ContextManager`], [`orchestrator::Orchestrator`],
//!   [`hooks::HookHandler`], [`approval::ApprovalSystem`],
//!   [`approval::DisplaySystem`]; all object-safe, used as `Arc<dyn …>`.
//! - **Runtime** — mount plans ([`mount`]), profiles ([`profiles`]), the
//!   module registry ([`registry`]), the `loop-basic` orchestrator, the
//!   `context-simple` context manager, the `hooks-logging` and
//!   `hooks-session-naming` ([`naming`]) hooks and
//!   [`runtime::Session`], whose turns are kernel objects
//!   ([`Session::start_turn`] → [`TurnHandle`]: id, branch, cancel, events,
//!   result).
//! - **Feed** — one ordered stream per session of its records and kernel
//!   events, each naming its turn and branch ([`feed`]); front ends (the
//!   daemon's SSE, the CLI's output) read it.
//! - **Test doubles** — [`testing`]: a scripted, pausable provider, fake
//!   tools, a recording hook and a one-call test session, for weft-core's
//!   tests and for library users testing their own modules.
//!
//! The types a library user needs are re-exported at the crate root;
//! modules hold the rest.
//!
//! What it must not know about: any storage backend beyond memory, HTTP,
//! LLM vendors, terminals. Those live in `weft-store`, `weft-providers`,
//! `weft-tools`, `weft-server` and `weft-cli`, which depend on this crate and
//! never the other way round.
//!
//! ```no_run
//! use std::sync::Arc;
//! use weft_core::{memory::MemoryStore, profiles, registry::ModuleRegistry, runtime::{Session, SessionConfig}};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let plan = profiles::load_profile("base", std::path::Path::new("/tmp/weft"))?.plan;
//! let registry = Arc::new(ModuleRegistry::with_core_modules()); // add providers and tools here
//! let session = Session::new(SessionConfig::new(plan, Arc::new(MemoryStore::new()), registry));
//! session.initialize().await?;
//! let answer = session.execute("hello").await?;
//! session.cleanup().await?;
//! # let _ = answer; Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod approval;
pub mod branches;
mod clock;
pub mod context;
mod error;
pub mod feed;
mod fork;
pub mod hooks;
pub mod id;
pub mod inject_hook;
pub mod lease;
pub mod live;
pub mod log;
mod logging;
pub mod memory;
pub mod message;
pub mod message_list;
pub mod mount;
pub mod naming;
pub mod orchestrator;
#[cfg(test)]
mod orchestrator_tests;
pub mod profiles;
pub mod progress;
pub mod project_profile;
pub mod provider;
pub mod record;
pub mod registry;
pub mod rewind;
pub mod runtime;
pub mod session;
pub mod settings;
pub mod state;
pub mod store;
pub mod stored;
pub mod structured;
pub mod testing;
pub mod tool;
pub mod view;
pub mod watch;
mod wire_de;

pub use approval::{ApprovalSystem, DisplaySystem};
pub use error::SessionError;
pub use feed::{Feed, FeedError, FeedEvent, FeedItem, FeedReceiver};
pub use hooks::{HookHandler, HookRegistry, HookResult, events};
pub use id::{BranchId, IdError, MessageId, SessionId, TurnId};
pub use live::LiveChannel;
pub use memory::MemoryStore;
pub use message::{ContentBlock, Message, Role, Usage};
pub use mount::MountPlan;
pub use provider::Provider;
pub use record::{Record, RecordKind};
pub use registry::ModuleRegistry;
pub use runtime::{
    CancelMode, Session, SessionConfig, TurnAnswer, TurnEvents, TurnHandle, TurnRequest,
};
pub use session::{SessionMeta, SessionStatus};
pub use store::{MapRecord, RecordMap, Store, StoreError};
pub use structured::{ResponseFormat, StructuredAnswer};
pub use tool::Tool;
pub use watch::RecordWatch;
