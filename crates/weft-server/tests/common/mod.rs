//! Shared helpers for the in-process API tests: a server on a random
//! loopback port over a memory store and provider-scripted ([`start`]),
//! the plans the tests mount, and the checks only an in-process test can
//! make (the store's log). The HTTP/SSE client is weft-testkit's
//! [`Api`], which [`Server`] dereferences to.

#![allow(dead_code)]

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::oneshot;
use weft_core::SessionId;
use weft_core::memory::MemoryStore;
use weft_core::mount::{MountPlan, PlanFormat};
use weft_core::registry::ModuleRegistry;
use weft_core::session::Project;
use weft_core::store::Store;
use weft_server::{ServerConfig, ServerContext, StaticPlanSource};
/// The API path of a session, under the name these tests give it.
pub use weft_testkit::session_path as base;
// The kit's helpers, for the tests to take with the rest (`use common::*`);
// not every test binary uses each.
#[allow(unused_imports)]
pub use weft_testkit::{
    Api, SESSION_FIELDS, SseClient, SseEvent, client, detail, message_seq, split, texts,
};

/// A plan answering from `responses` (provider-scripted, inline).
pub fn scripted(responses: Value) -> MountPlan {
    plan(json!({"module": "provider-scripted", "config": {"responses": responses}}))
}

/// The parent delegates "look around" to `helper` (which echoes), then
/// answers "parent done".
pub fn delegating_plans() -> StaticPlanSource {
    let text = json!({
        "session": {"orchestrator": "loop-basic", "context": "context-simple"},
        "providers": [{"module": "provider-scripted", "config": {"responses": [
            {"tool_calls": [{"name": "task", "arguments": {"agent": "helper", "instruction": "look around"}}]},
            {"text": "parent done"}
        ]}}],
        "tools": ["tool-task"],
        "agents": {"helper": {
            "description": "helps",
            "system": {"instruction": "You help."},
            "providers": [{"module": "provider-scripted", "config": {"mode": "echo"}}]
        }}
    });
    let plan = MountPlan::parse(&text.to_string(), PlanFormat::Json)
        .expect("test plan parses")
        .plan;
    StaticPlanSource::new("base", plan)
}

/// A plan echoing the prompt.
pub fn echo() -> MountPlan {
    plan(json!({"module": "provider-scripted", "config": {"mode": "echo"}}))
}

/// A plan echoing the prompt after `delay_ms`.
pub fn echo_delayed(delay_ms: u64) -> MountPlan {
    plan(json!({"module": "provider-scripted", "config": {"mode": "echo", "delay_ms": delay_ms}}))
}

fn plan(provider: Value) -> MountPlan {
    let text = json!({
        "session": {"orchestrator": "loop-basic", "context": "context-simple"},
        "providers": [provider],
        "agents": {"helper": {"description": "helps", "system": {"instruction": "You help."}}}
    });
    MountPlan::parse(&text.to_string(), PlanFormat::Json)
        .expect("test plan parses")
        .plan
}

/// A daemon serving in-process on a loopback port; its HTTP helpers are
/// those of [`Api`].
pub struct Server {
    pub api: Api,
    pub store: Arc<dyn Store>,
    pub shutdown: Option<oneshot::Sender<()>>,
    pub handle: tokio::task::JoinHandle<Result<(), weft_server::ServerError>>,
    pub dir: tempfile::TempDir,
}

impl Deref for Server {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

pub async fn start(plans: StaticPlanSource) -> Server {
    start_with(plans, ServerConfig::default()).await
}

pub async fn start_with(plans: StaticPlanSource, config: ServerConfig) -> Server {
    start_on(plans, config, Arc::new(MemoryStore::new())).await
}

/// A server over `store` (a second server over the same store stands for
/// a restart).
pub async fn start_on(
    plans: StaticPlanSource,
    config: ServerConfig,
    store: Arc<dyn Store>,
) -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("sub")).expect("subdir");
    let mut registry = ModuleRegistry::with_core_modules();
    weft_providers::register(&mut registry);
    weft_tools::register(&mut registry);
    let ctx = ServerContext {
        store: store.clone(),
        registry: Arc::new(registry),
        plans: Arc::new(plans),
        project: Project::from_dir(dir.path()),
        user: "tester".into(),
        home: dir.path().join("home"),
        approval: None,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(weft_server::serve_on(listener, config, ctx, async move {
        let _ = rx.await;
    }));
    Server {
        api: Api::new(format!("http://{addr}"), None),
        store,
        shutdown: Some(tx),
        handle,
        dir,
    }
}

impl Server {
    /// Appends a user message with `text` to session `id` straight through
    /// the store, behind the daemon's back (as a CLI sharing the store
    /// would).
    pub async fn outside_message(&self, id: &str, text: &str) {
        let sid = SessionId::parse(id).expect("id");
        weft_core::store::append_at_head(self.store.as_ref(), &sid, |meta| {
            let message = weft_core::Message::new(
                meta.default_branch.clone(),
                weft_core::message::Role::User,
                vec![weft_core::message::ContentBlock::text(text)],
            );
            Ok(vec![weft_core::record::RecordKind::message(message)])
        })
        .await
        .expect("append");
    }

    /// Stops the server (graceful shutdown) and waits for it.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.handle).await;
    }
}

/// Asserts the session's log is numbered 1..=n without gaps.
pub async fn assert_gapless(store: &Arc<dyn Store>, id: &str) -> u64 {
    let id = SessionId::parse(id).expect("id");
    let records = store.read_all(&id).await.expect("log");
    let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
    let expected: Vec<u64> = (1..=records.len() as u64).collect();
    assert_eq!(seqs, expected, "the log has gaps or duplicates");
    records.len() as u64
}

/// Waits until no turn runs on any branch of `id`.
pub async fn wait_branches_idle(s: &Server, id: &str) {
    s.wait_idle(id).await;
    for _ in 0..400 {
        let (_, list) = s.get(&format!("{}/branches", base(id))).await;
        let busy = list
            .as_array()
            .map(|a| a.iter().any(|b| b["running"] == true || b["queued"] != 0))
            .unwrap_or(false);
        if !busy {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("branches of {id} did not become idle");
}

/// The base and dev profiles, both echo plans.
pub fn echo_plans() -> StaticPlanSource {
    StaticPlanSource::new("base", echo()).with("dev", echo())
}

pub fn slow_plans(first_delay_ms: u64) -> StaticPlanSource {
    StaticPlanSource::new(
        "base",
        scripted(json!([
            {"text": "slow answer", "delay_ms": first_delay_ms},
            {"text": "second answer"},
            {"text": "third answer"}
        ])),
    )
}
