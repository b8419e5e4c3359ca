//! End to end: two `weft serve` processes (A and B) on one shared store,
//! PostgreSQL and Redis (issue 11's execution leases). A session created on
//! A is listed on B; while A runs a slow turn, a prompt to B is a 409 (the
//! multitask policy across nodes) and with `?multitask=enqueue` runs after
//! A's turn; `kill -9` of A in the middle of a tool call leaves its lease
//! to expire (a short one, `lease_ms=` in the store URL), after which B
//! (and `weft session list`) shows the session as interrupted, B runs the
//! next turn, the interrupted turn's dangling tool call is repaired (the
//! same repair as after a crash on one machine), every record A
//! acknowledged is still there and `seq` is gapless.
//!
//! PostgreSQL: a fresh database on the server of `WEFT_TEST_POSTGRES_URL`
//! (see `support::postgres`); Redis: a private `redis-server`
//! (`LocalRedis`). Either missing fails the test. The helpers are in
//! `support/mod.rs`.
#![cfg(all(feature = "postgres", feature = "redis"))]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::postgres::TempDatabase;
use support::*;
use weft_core::SessionId;
use weft_core::store::Store;
use weft_store::redis::local::LocalRedis;

/// The lease of the daemons' store (`lease_ms=`): short, so the test does
/// not wait long for a killed node's lease to expire, long enough for a
/// busy machine to renew it (every third of it) while a turn runs.
const LEASE_MS: u64 = 2000;

/// How long any awaited condition may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(60);

/// The answer of A's first (slow) turn.
const SLOW_ANSWER: &str = "the slow answer from A";

/// A's plan: a slow first answer, then a tool call that runs long enough
/// for A to be killed in the middle of it.
fn plan_a() -> String {
    json!({
        "session": {"orchestrator": "loop-basic", "context": "context-simple"},
        "providers": [{"module": "provider-scripted", "config": {"responses": [
            {"text": SLOW_ANSWER, "delay_ms": 5000},
            {"tool_calls": [{"name": "bash", "arguments": {"command": "sleep 15"}}]},
            {"text": "never reached"}
        ]}}],
        "tools": [{"module": "tool-bash"}]
    })
    .to_string()
}

/// B's plan: the answers of B's turns.
fn plan_b() -> String {
    json!({
        "session": {"orchestrator": "loop-basic", "context": "context-simple"},
        "providers": [{"module": "provider-scripted", "config": {"responses": [
            {"text": "the queued answer from B"},
            {"text": "B after the crash"}
        ]}}],
        "tools": [{"module": "tool-bash"}]
    })
    .to_string()
}

/// Polls `check` until it holds; panics naming `what` after [`PATIENCE`].
async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The session info of `id` on `d`.
async fn info(d: &Daemon, id: &str) -> Value {
    let (status, body) = d.get(&format!("/api/v1/sessions/{id}")).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Whether any message of `transcript` has a tool call.
fn has_tool_call(transcript: &[Value]) -> bool {
    transcript
        .iter()
        .any(|m| m.to_string().contains("sleep 15"))
}

/// The scenario on a store: `kind` (`postgres`, `redis`) at `url` (with
/// `lease_ms=`).
async fn two_daemons_share_a_store(kind: &str, url: &str) {
    let env = Env::new();
    // The plans share a file stem (the profile name both daemons know).
    std::fs::create_dir_all(env.project.path().join("b")).expect("dir b");
    let a_plan = env.file("plan.json", &plan_a());
    let b_plan = env.file("b/plan.json", &plan_b());
    let vars = [("WEFT_STORE__KIND", kind), ("WEFT_STORE__URL", url)];
    let serve = |plan: &std::path::Path| {
        vec![
            "--mount-plan".to_string(),
            plan.to_str().expect("utf-8 path").to_string(),
            "--approve".to_string(),
        ]
    };
    let (args_a, args_b) = (serve(&a_plan), serve(&b_plan));
    let args_a: Vec<&str> = args_a.iter().map(String::as_str).collect();
    let args_b: Vec<&str> = args_b.iter().map(String::as_str).collect();
    let mut a = env.serve_with(&vars, &args_a).await;
    let b = env.serve_with(&vars, &args_b).await;

    // A session created on A is listed on B.
    let id = a.active().await;
    let (status, listed) = b.get("/api/v1/sessions").await;
    assert_eq!(status, 200, "{listed}");
    assert!(
        listed
            .as_array()
            .expect("a list")
            .iter()
            .any(|s| s["sessionId"] == id.as_str()),
        "B lists the session made on A: {listed}"
    );

    // A slow turn on A; B sees it running (A's lease is live).
    let messages = format!("/api/v1/sessions/{id}/send-message");
    let (status, body) = a.post(&messages, json!({"content": "slow one"})).await;
    assert_eq!(status, 202, "{body}");
    wait_until("B sees A's turn running", || async {
        info(&b, &id).await["running"] == true
    })
    .await;
    assert_eq!(info(&b, &id).await["interrupted"], false);
    // The CLI on the same store says so too.
    let shown = env
        .command(&["session", "show", &id])
        .envs(vars)
        .output()
        .expect("weft session show");
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains("running a turn on branch main in process"),
        "{shown}"
    );
    // B refuses a prompt on the branch A runs (409 naming the holder)…
    let (status, body) = b.post(&messages, json!({"content": "to B"})).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["detail"].to_string().contains("another process"),
        "{body}"
    );
    // …cannot interrupt it…
    let (status, body) = b
        .post(
            &format!("{messages}?multitask=interrupt"),
            json!({"content": "to B"}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    // …and queues it with ?multitask=enqueue: it runs after A's turn.
    let (status, body) = b
        .post(
            &format!("{messages}?multitask=enqueue"),
            json!({"content": "queued on B"}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "queued", "{body}");
    b.wait_idle(&id).await;
    let texts: Vec<String> = b
        .texts(&id)
        .await
        .iter()
        .map(|t| t.as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        texts,
        [
            "slow one",
            SLOW_ANSWER,
            "queued on B",
            "the queued answer from B"
        ],
        "B's queued prompt ran after A's turn"
    );

    // A turn on A that is killed (-9) in the middle of its tool call.
    let (status, body) = a.post(&messages, json!({"content": "crash here"})).await;
    assert_eq!(status, 202, "{body}");
    wait_until("A's turn runs its tool call", || async {
        has_tool_call(&a.transcript(&id).await)
    })
    .await;
    // What A acknowledged: every record it serves (committed before it
    // answered), and its transcript.
    let acknowledged = a.replayed_seqs(&id).await;
    let transcript_a = a.transcript(&id).await;
    a.child.kill().expect("kill -9 A");
    a.child.wait().expect("reap A");

    // Its lease expires: B (and the CLI) show the session as active with
    // nobody running it.
    wait_until("B sees the session interrupted", || async {
        info(&b, &id).await["interrupted"] == true
    })
    .await;
    let session = info(&b, &id).await;
    assert_eq!(
        (session["status"].as_str(), session["running"].as_bool()),
        (Some("active"), Some(false)),
        "{session}"
    );
    let list = env
        .command(&["session", "list", "--json"])
        .envs(vars)
        .output()
        .expect("weft session list");
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    let list: Value = serde_json::from_slice(&list.stdout).expect("json");
    let listed = list
        .as_array()
        .expect("a list")
        .iter()
        .find(|s| s["id"] == id.as_str())
        .unwrap_or_else(|| panic!("the session is listed: {list}"));
    assert_eq!(
        (&listed["running"], &listed["interrupted"]),
        (&json!(false), &json!(true))
    );

    // B runs the next turn (the lease is free), repairing the killed one.
    let (status, body) = b.post(&messages, json!({"content": "go on"})).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "executing", "{body}");
    b.wait_idle(&id).await;
    let transcript_b = b.transcript(&id).await;
    assert!(
        transcript_b.starts_with(&transcript_a),
        "A's acknowledged messages are kept: {transcript_a:?} / {transcript_b:?}"
    );
    let text = serde_json::to_string(&transcript_b[transcript_a.len()..]).expect("json");
    assert!(
        text.contains("interrupted: the session stopped before this tool call finished"),
        "the dangling tool call is answered as interrupted: {text}"
    );
    assert_eq!(
        b.texts(&id).await.last(),
        Some(&json!("B after the crash")),
        "B's turn answered"
    );
    assert_eq!(info(&b, &id).await["interrupted"], false);

    // In the store: every acknowledged record, seq gapless.
    let store: Arc<dyn Store> = weft_store::open_store(
        &weft_store::StoreConfig {
            kind: kind.parse().expect("store kind"),
            path: None,
            url: Some(url.to_string()),
            ..Default::default()
        },
        env.home.path(),
    )
    .expect("open the store");
    let records = store
        .read_all(&SessionId::parse(&id).expect("id"))
        .await
        .expect("read the log");
    let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
    let gapless: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert_eq!(seqs, gapless, "seq is gapless");
    assert!(
        acknowledged.iter().all(|s| seqs.contains(s)),
        "every record A acknowledged is stored: {acknowledged:?} / {seqs:?}"
    );
}

#[test]
fn two_daemons_on_one_postgres() {
    let db = TempDatabase::create();
    let url = format!("{}?lease_ms={LEASE_MS}", db.url());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(two_daemons_share_a_store("postgres", &url));
}

#[test]
fn two_daemons_on_one_redis() {
    let dir = tempfile::tempdir().expect("tempdir");
    let redis = LocalRedis::start(None, dir.path())
        .unwrap_or_else(|e| panic!("this test needs a local redis-server: {e}"));
    let url = format!("{}?lease_ms={LEASE_MS}", redis.url());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(two_daemons_share_a_store("redis", &url));
}

/// `kill -<signal> <pid>`.
fn signal(pid: u32, signal: &str) {
    let ok = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("kill");
    assert!(ok.success(), "kill -{signal} {pid}");
}

/// Fencing across nodes: A is paused (SIGSTOP) in the middle of a turn, its
/// lease expires, B takes the branch over and runs a turn; when A resumes
/// (SIGCONT), its turn's appends are refused (the turn fails saying it
/// lost its lease) and nothing of it lands after B's turn.
async fn a_paused_node_cannot_append_after_losing_its_lease(kind: &str, url: &str) {
    let env = Env::new();
    std::fs::create_dir_all(env.project.path().join("b")).expect("dir b");
    let plan = |text: &str, delay_ms: u64| {
        json!({
            "session": {"orchestrator": "loop-basic", "context": "context-simple"},
            "providers": [{"module": "provider-scripted", "config": {"responses": [
                {"text": text, "delay_ms": delay_ms}
            ]}}]
        })
        .to_string()
    };
    let a_plan = env.file("plan.json", &plan("the zombie answer", 4000));
    let b_plan = env.file("b/plan.json", &plan("B took over", 0));
    let vars = [("WEFT_STORE__KIND", kind), ("WEFT_STORE__URL", url)];
    let a = env
        .serve_with(&vars, &["--mount-plan", a_plan.to_str().expect("path")])
        .await;
    let b = env
        .serve_with(&vars, &["--mount-plan", b_plan.to_str().expect("path")])
        .await;
    let id = a.active().await;
    let messages = format!("/api/v1/sessions/{id}/send-message");
    let (status, body) = a.post(&messages, json!({"content": "slow on A"})).await;
    assert_eq!(status, 202, "{body}");
    wait_until("B sees A's turn running", || async {
        info(&b, &id).await["running"] == true
    })
    .await;
    let pid = a.child.id();
    signal(pid, "STOP");
    wait_until("A's lease expires", || async {
        info(&b, &id).await["interrupted"] == true
    })
    .await;
    let (status, body) = b.post(&messages, json!({"content": "on B"})).await;
    assert_eq!(status, 202, "{body}");
    b.wait_idle(&id).await;
    signal(pid, "CONT");
    let deadline = Instant::now() + PATIENCE;
    while !std::fs::read_to_string(&a.log).is_ok_and(|l| l.contains("lost its lease")) {
        assert!(
            Instant::now() < deadline,
            "A's turn did not fail on its lost lease; its log: {}; the session on B: {:?}",
            std::fs::read_to_string(&a.log).unwrap_or_default(),
            b.transcript(&id).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let texts = b.texts(&id).await;
    assert_eq!(texts.last(), Some(&json!("B took over")), "{texts:?}");
    assert!(
        !texts.contains(&json!("the zombie answer")),
        "the paused node appended after losing its lease: {texts:?}"
    );
    assert_eq!(info(&b, &id).await["status"], "active");
    let seqs = b.replayed_seqs(&id).await;
    let gapless: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert_eq!(seqs, gapless);
}

#[test]
fn a_paused_node_is_fenced_on_postgres() {
    let db = TempDatabase::create();
    let url = format!("{}?lease_ms={LEASE_MS}", db.url());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(a_paused_node_cannot_append_after_losing_its_lease(
            "postgres", &url,
        ));
}

#[test]
fn a_paused_node_is_fenced_on_redis() {
    let dir = tempfile::tempdir().expect("tempdir");
    let redis = LocalRedis::start(None, dir.path())
        .unwrap_or_else(|e| panic!("this test needs a local redis-server: {e}"));
    let url = format!("{}?lease_ms={LEASE_MS}", redis.url());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(a_paused_node_cannot_append_after_losing_its_lease(
            "redis", &url,
        ));
}
