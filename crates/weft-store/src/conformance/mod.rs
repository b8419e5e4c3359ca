//! The [`Store`] conformance suite: one set of async test functions that
//! every backend must pass (memory, fs and sqlite here; redis, postgres and
//! the others in later crates).
//!
//! Each function takes a fresh, empty store and panics (with a message
//! saying which rule broke) on a violation of the contract in
//! `weft_core::store`. Instantiate the whole suite for a backend with
//! [`store_conformance_tests!`](crate::store_conformance_tests), which
//! writes one `#[tokio::test]` per function:
//!
//! ```text
//! mod fs {
//!     weft_store::store_conformance_tests!({
//!         let dir = tempfile::tempdir().unwrap();
//!         let store = weft_store::FsStore::open(dir.path()).unwrap();
//!         weft_store::conformance::Harness::with_guard(std::sync::Arc::new(store), dir)
//!     });
//! }
//! ```
//!
//! The module is always compiled (it has no dependencies beyond the
//! crate's), so other crates' test suites can use it.

use std::any::Any;
use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{Map, Value, json};
use weft_core::message::{ContentBlock, META_SYNTHETIC, Message, Role, Usage};
use weft_core::record::{MetaPatch, RECORD_VERSION, Record, RecordKind, StateDelta, StatusChange};
use weft_core::session::{
    Branch, Mail, MailCategory, Project, SessionMeta, SessionStatus, SplitFrom, project_slug,
};
use weft_core::store::{
    DeleteOptions, FORK_INTERRUPTED, ForkPoint, ListCursor, ListFilter, ListQuery, SearchQuery,
    Store, StoreError, list_order,
};
use weft_core::{BranchId, SessionId, TurnId};

mod appends;
mod fork_delete;
mod guarded;
pub mod handles;
mod listing;
pub mod live;
mod locks;
mod reads;
pub mod rows;
mod state;

pub use appends::*;
pub use fork_delete::*;
pub use guarded::*;
pub use listing::*;
pub use locks::*;
pub use reads::*;
pub use state::*;

/// A store under test, plus whatever must live as long as it (a temporary
/// directory).
pub struct Harness {
    /// The store.
    pub store: Arc<dyn Store>,
    _guard: Option<Box<dyn Any + Send>>,
}

impl Harness {
    /// A harness for a store that needs nothing kept alive.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            _guard: None,
        }
    }

    /// A harness that drops `guard` (e.g. a `tempfile::TempDir`) after the
    /// test.
    pub fn with_guard(store: Arc<dyn Store>, guard: impl Any + Send) -> Self {
        Self {
            store,
            _guard: Some(Box::new(guard)),
        }
    }
}

/// Writes one `#[tokio::test]` per conformance function, each with a fresh
/// harness from `$make` (an expression evaluating to a [`Harness`]). The
/// calling crate needs `tokio` with the `macros` and `rt-multi-thread`
/// features.
#[macro_export]
macro_rules! store_conformance_tests {
    ($make:expr) => {
        $crate::store_conformance_tests!(@each $make;
            create_get_read_tail,
            not_found_errors,
            duplicate_create_fails,
            batch_is_atomic,
            stale_expected_seq_conflicts,
            racing_appenders_one_wins_each_round,
            racing_appenders_lose_nothing,
            tail_cost_is_independent_of_log_length,
            every_record_kind_round_trips,
            sub_session_metadata_round_trips,
            metadata_follows_the_log,
            fork_at_turn,
            fork_at_seq_repairs_orphans,
            fork_rejects_bad_points,
            forks_are_listed_sub_sessions_hidden,
            cleanup_spares_active_sessions,
            delete_with_and_without_children,
            cursor_paging_while_creating,
            list_filters,
            search_across_sessions,
            shared_state,
            events,
            resolve_prefixes,
            invalid_cursor,
            turn_locks_are_exclusive,
            racing_transitions_one_wins,
            guarded_appends_land_at_the_head,
            racing_guarded_appends_lose_nothing,
        );
    };
    (@each $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let harness: $crate::conformance::Harness = $make;
                $crate::conformance::$name(harness.store.clone()).await;
                drop(harness);
            }
        )*
    };
}

/// The conformance tests only lease backends (postgres, redis) pass:
/// fencing of turn appends and expiry of a lease nobody renews. `$make`
/// makes a [`Harness`] whose store's lease lasts `$lease` (a short
/// [`Duration`], so the expiry test does not wait long).
#[macro_export]
macro_rules! lease_conformance_tests {
    ($make:expr, $lease:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn appends_are_fenced_by_the_turn_lease() {
            let harness: $crate::conformance::Harness = $make;
            $crate::conformance::appends_are_fenced_by_the_turn_lease(harness.store.clone()).await;
            drop(harness);
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn an_expired_lease_is_taken_over() {
            let harness: $crate::conformance::Harness = $make;
            $crate::conformance::an_expired_lease_is_taken_over(harness.store.clone(), $lease)
                .await;
            drop(harness);
        }
    };
}

// ---- helpers -------------------------------------------------------------

/// The project of a made-up directory `/conformance/<name>`.
pub fn project(name: &str) -> Project {
    let dir = format!("/conformance/{name}");
    Project {
        slug: project_slug(&dir),
        dir,
    }
}

/// New metadata for a session in `project(name)`.
pub fn new_meta(project_name: &str) -> SessionMeta {
    SessionMeta::new(SessionId::new_v7(), project(project_name), "base")
}

/// A text message on the main branch.
pub fn text(role: Role, s: &str) -> RecordKind {
    RecordKind::message(Message::text(BranchId::main(), role, s))
}

/// An assistant message asking for tool calls `ids`.
pub fn calls(ids: &[&str]) -> RecordKind {
    RecordKind::message(Message::new(
        BranchId::main(),
        Role::Assistant,
        ids.iter()
            .map(|id| ContentBlock::ToolCall {
                id: (*id).to_string(),
                name: "read_file".into(),
                arguments: json!({"path": format!("{id}.txt")}),
            })
            .collect(),
    ))
}

/// A tool message answering `id`.
pub fn result(id: &str, output: &str) -> RecordKind {
    RecordKind::message(Message::new(
        BranchId::main(),
        Role::Tool,
        vec![ContentBlock::ToolResult {
            call_id: id.to_string(),
            output: output.to_string(),
            is_error: false,
        }],
    ))
}

/// Creates a session in `project(project_name)` with `initial` records and
/// starts it (status active); returns its id.
pub async fn active_session(
    store: &dyn Store,
    project_name: &str,
    initial: Vec<RecordKind>,
) -> SessionId {
    let meta = new_meta(project_name);
    let id = meta.id.clone();
    store.create(meta, initial).await.expect("create");
    store
        .transition(&id, SessionStatus::Active, None, None)
        .await
        .expect("start");
    id
}

/// Appends `kinds` after the current head.
pub async fn push(store: &dyn Store, id: &SessionId, kinds: Vec<RecordKind>) -> SessionMeta {
    let head = store.get(id).await.expect("get before append").last_seq;
    store
        .append(id, head, Record::batch(head, kinds))
        .await
        .expect("append after the current head")
}

/// Appends `kinds` stamped with time `ts`.
pub async fn push_at(
    store: &dyn Store,
    id: &SessionId,
    ts: chrono::DateTime<Utc>,
    kinds: Vec<RecordKind>,
) -> SessionMeta {
    let head = store.get(id).await.expect("get").last_seq;
    let mut records = Record::batch(head, kinds);
    for r in &mut records {
        r.ts = ts;
    }
    store.append(id, head, records).await.expect("append")
}

fn seqs(records: &[Record]) -> Vec<u64> {
    records.iter().map(|r| r.seq).collect()
}

fn ids(metas: &[SessionMeta]) -> Vec<SessionId> {
    metas.iter().map(|m| m.id.clone()).collect()
}

async fn all_ids(store: &dyn Store, filter: ListFilter) -> Vec<SessionId> {
    let mut out = Vec::new();
    let mut query = ListQuery {
        filter,
        cursor: None,
        limit: 100,
    };
    loop {
        let page = store.list(&query).await.expect("list");
        out.extend(ids(&page.sessions));
        match page.next_cursor {
            Some(c) => query.cursor = Some(c),
            None => return out,
        }
    }
}

fn set(ids: &[SessionId]) -> BTreeSet<String> {
    ids.iter().map(|i| i.to_string()).collect()
}
