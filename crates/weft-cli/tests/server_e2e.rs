//! End to end: the wiring of the real `weft serve` process on a random
//! loopback port, over the default fs store in a temporary `WEFT_HOME`:
//! token auth from `--token` and `WEFT_SERVER__TOKEN` (and the refusal to
//! listen off loopback without one), the `--provider`/`--script` flags,
//! the store shared with the CLI (sessions, branches, mail and state
//! written by one process and read by the other while the daemon holds the
//! session live), and SIGTERM. What the API does is tested in process by
//! weft-server's `tests/*.rs`; the browser-facing and file-tool boundaries
//! are in `server_security_e2e.rs`, turns racing across processes in
//! `server_turns_e2e.rs`; the helpers in `support/mod.rs`.

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_auth_off_loopback_and_refusal_without_token() {
    let env = Env::new();
    let plan = env.file("plan.json", ECHO_PLAN);
    let plan = plan.to_str().expect("path");
    // Without a token it refuses to start.
    let out = env.weft(&[
        "serve",
        "--host",
        "0.0.0.0",
        "--port",
        &free_port().to_string(),
        "--mount-plan",
        plan,
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("without a token"), "{err}");
    // With one: every request needs it (requests go to 127.0.0.1).
    let d = env
        .serve(&[
            "--host",
            "0.0.0.0",
            "--token",
            "e2e-secret",
            "--mount-plan",
            plan,
        ])
        .await;
    let url = format!("{}/api/v1/sessions/", d.base);
    let (status, b) = split(d.client.get(&url).send().await.expect("GET")).await;
    assert_eq!(status, 401, "{b}");
    assert!(b["detail"].is_string());
    let (status, _) = split(
        d.client
            .get(&url)
            .bearer_auth("e2e-secreT")
            .send()
            .await
            .expect("GET"),
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = split(
        d.client
            .post(format!("{}/run", d.base))
            .json(&json!({"message": "x"}))
            .send()
            .await
            .expect("POST"),
    )
    .await;
    assert_eq!(status, 401);
    let (status, b) = d.post("/run", json!({"message": "authorised"})).await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["result"], "authorised");
    // The token also works from the environment.
    drop(d);
    let port = free_port();
    let mut child = env
        .command(&[
            "serve",
            "--host",
            "0.0.0.0",
            "--port",
            &port.to_string(),
            "--mount-plan",
            plan,
        ])
        .env("WEFT_SERVER__TOKEN", "from-env")
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let c = client();
    let mut ok = false;
    for _ in 0..200 {
        if let Ok(r) = c
            .get(format!("http://127.0.0.1:{port}/health"))
            .bearer_auth("from-env")
            .send()
            .await
        {
            ok = r.status().is_success();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(ok, "WEFT_SERVER__TOKEN was not used");
}

/// `--provider scripted --script FILE`: the daemon answers from the
/// script and serves the CLI's built-in profiles. (`/run` and
/// `/api/v1/chat` themselves are tested in process by weft-server's
/// `tests/api_daemon.rs`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_and_script_flags_configure_the_daemon() {
    let env = Env::new();
    let script = env.file("s.json", r#"{"responses": [{"text": "answer one"}]}"#);
    let d = env
        .serve(&[
            "--provider",
            "scripted",
            "--script",
            script.to_str().expect("path"),
        ])
        .await;
    let (status, b) = d
        .post("/run", json!({"agent": "base", "message": "first"}))
        .await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["result"], "answer one");
    let (status, agents) = d.get("/api/v1/agents").await;
    assert_eq!(status, 200);
    assert!(
        agents
            .as_array()
            .expect("agents")
            .iter()
            .any(|a| a["name"] == "dev" && a["kind"] == "profile"),
        "{agents}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_store_as_the_cli() {
    let env = Env::new();
    let script = env.file("s.json", r#"{"responses": [{"text": "from the cli"}]}"#);
    // A session made by `weft run` …
    env.ok(&[
        "run",
        "--provider",
        "scripted",
        "--script",
        script.to_str().expect("path"),
        "hi",
    ]);
    let listed: Value =
        serde_json::from_str(&env.ok(&["session", "list", "--json"])).expect("json");
    let cli_id = listed
        .as_array()
        .and_then(|a| a.first())
        .and_then(|s| {
            s["id"]
                .as_str()
                .or(s["session_id"].as_str())
                .or(s["sessionId"].as_str())
        })
        .expect("the CLI's session")
        .to_string();
    let plan = env.file("plan.json", ECHO_PLAN);
    let d = env
        .serve(&["--mount-plan", plan.to_str().expect("path")])
        .await;
    // … is visible over HTTP, with its transcript, from the same fs store.
    let (status, h) = d.get("/health").await;
    assert_eq!(status, 200);
    assert_eq!(h["store"], "fs");
    let (status, s) = d.get(&format!("/api/v1/sessions/{cli_id}")).await;
    assert_eq!(status, 200, "{s}");
    assert_eq!(s["status"], "completed");
    assert_eq!(
        d.texts(&cli_id).await,
        vec![json!("hi"), json!("from the cli")]
    );
    // A session made over HTTP shows in `weft session list`.
    let (status, made) = d
        .post("/api/v1/sessions/", json!({"name": "made-over-http"}))
        .await;
    assert_eq!(status, 201);
    let http_id = made["sessionId"].as_str().expect("id").to_string();
    let (status, b) = d
        .post(
            "/run",
            json!({"message": "ran over http", "session_id": http_id}),
        )
        .await;
    assert_eq!(status, 200, "{b}");
    let listing = env.ok(&["session", "list"]);
    assert!(listing.contains(&http_id), "{listing}");
    assert!(listing.contains("made-over-http"), "{listing}");
    let shown = env.ok(&["session", "show", &http_id, "--transcript"]);
    assert!(shown.contains("ran over http"), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_cancels_running_turns_and_records_them() {
    let env = Env::new();
    let script = env.file(
        "slow.json",
        r#"{"responses": [{"text": "never", "delay_ms": 60000}]}"#,
    );
    let script = script.to_str().expect("path").to_string();
    let mut d = env
        .serve(&["--provider", "scripted", "--script", &script])
        .await;
    let id = d.active().await;
    let mut s = d.stream(&id, None).await;
    s.next().await.expect("connected");
    assert_eq!(
        d.post(
            &format!("/api/v1/sessions/{id}/send-message"),
            json!({"content": "long job"})
        )
        .await
        .0,
        202
    );
    s.until(|e| e.event == "provider:request").await;
    let started = Instant::now();
    let status = d.terminate();
    assert!(status.success(), "exit status {status:?}");
    assert!(started.elapsed() < Duration::from_secs(15));
    let rest = s.until(|e| e.event == "shutdown").await;
    assert!(
        rest.iter()
            .any(|e| e.event == "execution:end" && e.data["status"] == "cancelled"),
        "{rest:?}"
    );
    let log = std::fs::read_to_string(&d.log).unwrap_or_default();
    assert!(log.contains("stopped"), "{log}");
    // The partial turn is in the store: a fresh server (or the CLI) sees it.
    let shown = env.ok(&["session", "show", &id, "--transcript"]);
    assert!(shown.contains("long job"), "{shown}");
    let d2 = env
        .serve(&["--provider", "scripted", "--script", &script])
        .await;
    assert_eq!(d2.texts(&id).await, vec![json!("long job")]);
    assert_eq!(d2.status_of(&id).await, "active");
}

/// Branches, mail and state on one session, written by the daemon and by
/// the CLI on the shared store while the daemon holds the session live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn branches_mail_and_state_shared_with_the_cli() {
    let env = Env::new();
    let plan = env.file("plan.json", ECHO_PLAN);
    let d = env
        .serve(&["--mount-plan", plan.to_str().expect("path")])
        .await;
    let id = d.active().await;
    let b = format!("/api/v1/sessions/{id}");

    // A branch made over HTTP, with a turn on it: the daemon now holds the
    // session live.
    let (status, left) = d
        .post(&format!("{b}/branches"), json!({"name": "left"}))
        .await;
    assert_eq!(status, 201, "{left}");
    let (status, body) = d
        .post(
            &format!("{b}/branches/left/send-message"),
            json!({"content": "ping left"}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    d.wait_idle(&id).await;

    // The CLI sees the branches in the shared store.
    let listed = env.json(&["branch", "list", &id, "--json"]);
    let names: Vec<&str> = listed
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|r| r["branch"]["name"].as_str())
        .collect();
    assert_eq!(names, ["main", "left"]);

    // Mail sent over HTTP, collected by the CLI while the daemon holds the
    // session live; the daemon's next turn on that branch takes it in.
    let (status, mail) = d
        .post(
            &format!("{b}/mail"),
            json!({"from": "main", "to": "left", "category": "message", "item": "a note"}),
        )
        .await;
    assert_eq!(status, 201, "{mail}");
    let pending = env.json(&["mail", "list", &id, "--json"]);
    assert_eq!(pending.as_array().expect("array").len(), 1);
    env.ok(&["mail", "collect", &id, "--to", "left"]);
    let (_, pending) = d.get(&format!("{b}/mail")).await;
    assert_eq!(pending, json!([]));
    let (status, body) = d
        .post(
            &format!("{b}/branches/left/send-message"),
            json!({"content": "after the note"}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    d.wait_idle(&id).await;
    assert_eq!(
        d.branch_texts(&id, "left").await,
        vec![
            json!("ping left"),
            json!("ping left"),
            json!("a note"),
            json!("after the note"),
            json!("after the note")
        ]
    );

    // State: written by either side, read by the other; the clear sticks.
    let (status, body) = d
        .put(
            &format!("{b}/state/agent:planner:step"),
            json!({"value": {"n": 1}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let got: Value =
        serde_json::from_str(env.ok(&["state", "get", &id, "agent:planner:step"]).trim())
            .expect("json");
    assert_eq!(got, json!({"n": 1}));
    env.ok(&["state", "set", &id, "from-cli", "7"]);
    let (status, body) = d.get(&format!("{b}/state/from-cli")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["value"], 7);
    let (status, _) = d.delete(&format!("{b}/state")).await;
    assert_eq!(status, 204);
    assert_eq!(env.json(&["state", "list", &id, "--json"]), json!({}));

    // Split and default over HTTP; the CLI agrees.
    let (status, body) = d
        .post(&format!("{b}/branches/main/split"), json!({"name": "copy"}))
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, _) = d
        .post(&format!("{b}/branches/copy/default"), json!({}))
        .await;
    assert_eq!(status, 204);
    let listed = env.json(&["branch", "list", &id, "--json"]);
    let default: Vec<&str> = listed
        .as_array()
        .expect("array")
        .iter()
        .filter(|r| r["default"] == true)
        .filter_map(|r| r["branch"]["name"].as_str())
        .collect();
    assert_eq!(default, ["copy"]);
    let seqs = d.replayed_seqs(&id).await;
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "gapless");
}
