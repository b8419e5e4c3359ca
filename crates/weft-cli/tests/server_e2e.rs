//! End to end: the real `weft serve` process on a random loopback port,
//! over the default fs store in a temporary `WEFT_HOME`, with
//! provider-scripted. Covers the endpoint table, every lifecycle
//! transition (allowed and refused), 404s and 409s, SSE reconnection with
//! `Last-Event-ID`, enqueue/interrupt, token auth off loopback, the
//! agentkernel endpoints, the store shared with the CLI, SIGTERM, and
//! branches, mail and state (two branches running turns concurrently with
//! a gapless log, mail sent over HTTP and collected by the CLI while the
//! daemon holds the session, state written by either side, the errors).
//! The browser-facing and file-tool boundaries are in
//! `server_security_e2e.rs`, turns racing across processes in
//! `server_turns_e2e.rs`; the helpers in `support/mod.rs`.

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_table_lifecycle_and_errors() {
    let env = Env::new();
    let plan = env.file("plan.json", ECHO_PLAN);
    let d = env
        .serve(&["--mount-plan", plan.to_str().expect("path")])
        .await;

    // POST /sessions/ (snake_case and camelCase), GET /sessions/, GET /sessions/{id}.
    let (status, s) = d
        .post(
            "/api/v1/sessions/",
            json!({"amplified_dir": "sub", "name": "one"}),
        )
        .await;
    assert_eq!(status, 201, "{s}");
    for &key in SESSION_FIELDS {
        assert!(s.get(key).is_some(), "{key} missing: {s}");
    }
    assert_eq!(s["status"], "created");
    assert_eq!(s["amplifiedDir"], "sub");
    let id = s["sessionId"].as_str().expect("id").to_string();
    let (status, list) = d.get("/api/v1/sessions/?status=created&limit=10").await;
    assert_eq!(status, 200);
    assert_eq!(list[0]["sessionId"], id.as_str());
    let (status, one) = d.get(&format!("/api/v1/sessions/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(one["name"], "one");
    // PATCH.
    let (status, one) = d
        .patch(
            &format!("/api/v1/sessions/{id}"),
            json!({"name": "renamed"}),
        )
        .await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["name"], "renamed");

    // Lifecycle: every transition from every status, allowed or 409.
    let actions = [
        ("start", "active"),
        ("complete", "completed"),
        ("fail", "failed"),
        ("terminate", "terminated"),
    ];
    let allowed = |from: &str, to: &str| {
        matches!(
            (from, to),
            ("created", "active")
                | ("created", "terminated")
                | ("active", "completed")
                | ("active", "failed")
                | ("active", "terminated")
        )
    };
    for from in ["created", "active", "completed", "failed", "terminated"] {
        for (action, to) in actions {
            let sid = d.create().await;
            let reach: &[&str] = match from {
                "created" => &[],
                "active" => &["start"],
                "completed" => &["start", "complete"],
                "failed" => &["start", "fail"],
                _ => &["start", "terminate"],
            };
            for step in reach {
                let (st, b) = d
                    .post(
                        &format!("/api/v1/sessions/{sid}/{step}"),
                        json!({"error_message": "x"}),
                    )
                    .await;
                assert_eq!(st, 204, "{step}: {b}");
            }
            assert_eq!(d.status_of(&sid).await, from);
            let (st, b) = d
                .post(
                    &format!("/api/v1/sessions/{sid}/{action}"),
                    json!({"errorMessage": "it broke", "errorDetails": {"code": 7}}),
                )
                .await;
            if allowed(from, to) {
                assert_eq!(st, 204, "{from} -{action}-> {b}");
                assert_eq!(d.status_of(&sid).await, to);
            } else {
                assert_eq!(st, 409, "{from} -{action}-> must be refused: {b}");
                assert!(detail(&b).contains(&format!("is {from}")), "{b}");
            }
        }
    }

    // Messages, transcript (string vs blocks, ?limit), send-message, execute.
    let id = d.active().await;
    let (status, m) = d
        .post(
            &format!("/api/v1/sessions/{id}/messages"),
            json!({"content": "noted"}),
        )
        .await;
    assert_eq!(status, 201, "{m}");
    let (status, _) = d
        .post(
            &format!("/api/v1/sessions/{id}/messages"),
            json!({"role": "assistant", "content": [{"type": "tool_call", "id": "c1", "name": "x", "arguments": {}}]}),
        )
        .await;
    assert_eq!(status, 201);
    let t = d.texts(&id).await;
    assert_eq!(t[0], "noted");
    assert!(t[1].is_array());
    let (_, last) = d
        .get(&format!("/api/v1/sessions/{id}/transcript?limit=1"))
        .await;
    assert_eq!(last.as_array().map(Vec::len), Some(1));
    let (status, b) = d
        .post(
            &format!("/api/v1/sessions/{id}/send-message"),
            json!({"content": "hello"}),
        )
        .await;
    assert_eq!(status, 202, "{b}");
    assert_eq!(b["status"], "executing");
    d.wait_idle(&id).await;
    let r = d
        .req(
            reqwest::Method::POST,
            &format!("/api/v1/sessions/{id}/execute"),
        )
        .json(&json!({"content": "streamed"}))
        .send()
        .await
        .expect("execute");
    assert_eq!(r.status().as_u16(), 200);
    let events = SseClient::from_response(r)
        .until(|e| e.event == "done")
        .await;
    assert_eq!(events.last().expect("done").data["result"], "streamed");
    assert!(events.iter().any(|e| e.event == "content_block:delta"));
    let t = d.texts(&id).await;
    assert_eq!(t.last(), Some(&json!("streamed")));

    // Fork.
    let (status, f) = d
        .post(&format!("/api/v1/sessions/{id}/fork"), json!({"turn": 2}))
        .await;
    assert_eq!(status, 201, "{f}");
    assert_eq!(f["parentSessionId"], id.as_str());
    let (status, b) = d
        .post(&format!("/api/v1/sessions/{id}/fork"), json!({"turn": 99}))
        .await;
    assert_eq!(status, 422, "{b}");

    // 409s: messages to a session that is not active; start twice.
    let created = d.create().await;
    let (status, b) = d
        .post(
            &format!("/api/v1/sessions/{created}/messages"),
            json!({"content": "x"}),
        )
        .await;
    assert_eq!(status, 409);
    assert!(detail(&b).contains("created"));
    let (status, b) = d
        .post(
            &format!("/api/v1/sessions/{created}/send-message"),
            json!({"content": "x"}),
        )
        .await;
    assert_eq!(status, 409, "{b}");
    d.post(&format!("/api/v1/sessions/{created}/start"), json!({}))
        .await;
    let (status, b) = d
        .post(&format!("/api/v1/sessions/{created}/start"), json!({}))
        .await;
    assert_eq!(status, 409);
    assert!(detail(&b).contains("active"));

    // 404s and 400s.
    let unknown = "01900000-0000-7000-8000-000000000000";
    for path in [
        format!("/api/v1/sessions/{unknown}"),
        format!("/api/v1/sessions/{unknown}/transcript"),
        format!("/api/v1/sessions/{unknown}/stream"),
    ] {
        let (status, b) = d.get(&path).await;
        assert_eq!(status, 404, "{path}: {b}");
        assert!(detail(&b).contains(unknown));
    }
    for action in [
        "start",
        "complete",
        "terminate",
        "send-message",
        "messages",
        "fork",
        "execute",
    ] {
        let (status, _) = d
            .post(
                &format!("/api/v1/sessions/{unknown}/{action}"),
                json!({"content": "x"}),
            )
            .await;
        assert_eq!(status, 404, "{action}");
    }
    let (status, b) = d.get("/api/v1/sessions/bad$id").await;
    assert_eq!(status, 400, "{b}");
    let (status, b) = d
        .post(
            &format!("/api/v1/sessions/{id}/send-message"),
            json!({"text": "wrong key"}),
        )
        .await;
    assert_eq!(status, 422);
    assert!(detail(&b).contains("content"), "{b}");

    // Profiles, agents, health, openapi.
    let (status, p) = d.get("/api/v1/profiles").await;
    assert_eq!(status, 200);
    assert!(
        p.as_array()
            .expect("profiles")
            .iter()
            .any(|x| x["name"] == "base")
    );
    let (status, a) = d.get("/api/v1/agents").await;
    assert_eq!(status, 200);
    assert!(
        a.as_array()
            .expect("agents")
            .iter()
            .any(|x| x["name"] == "helper")
    );
    let (status, h) = d.get("/health").await;
    assert_eq!(status, 200);
    assert_eq!(h["store"], "fs");
    let (status, doc) = d.get("/openapi.json").await;
    assert_eq!(status, 200);
    for (method, path) in weft_server::ROUTES {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} undocumented"
        );
    }

    // Cleanup (never active ones), delete.
    let (status, c) = d
        .post(
            "/api/v1/sessions/cleanup",
            json!({"older_than_days": 0, "dry_run": true}),
        )
        .await;
    assert_eq!(status, 200, "{c}");
    assert!(
        c["keptActive"]
            .as_array()
            .expect("kept")
            .iter()
            .any(|x| x == id.as_str())
    );
    assert!(
        !c["removed"]
            .as_array()
            .expect("removed")
            .iter()
            .any(|x| x == id.as_str())
    );
    let (status, _) = d.delete(&format!("/api/v1/sessions/{id}")).await;
    assert_eq!(status, 204);
    let (status, _) = d.get(&format!("/api/v1/sessions/{id}")).await;
    assert_eq!(status, 404);
    let (status, c) = d
        .post("/api/v1/sessions/cleanup", json!({"older_than_days": 0}))
        .await;
    assert_eq!(status, 200);
    assert!(c["removedCount"].as_u64().expect("count") > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_reconnect_with_last_event_id_has_no_gaps_or_duplicates() {
    let env = Env::new();
    let plan = env.file("plan.json", ECHO_PLAN);
    let d = env
        .serve(&["--mount-plan", plan.to_str().expect("path")])
        .await;
    let id = d.active().await;
    let mut a = d.stream(&id, None).await;
    assert_eq!(a.next().await.expect("connected").event, "connected");
    d.post(
        &format!("/api/v1/sessions/{id}/send-message"),
        json!({"content": "one"}),
    )
    .await;
    let first = a.until(|e| e.event == "execution:end").await;
    let mut seen: Vec<u64> = first.iter().filter_map(|e| e.id).collect();
    assert!(!seen.is_empty());
    drop(a);
    for text in ["two", "three"] {
        d.post(
            &format!("/api/v1/sessions/{id}/send-message"),
            json!({"content": text}),
        )
        .await;
        d.wait_idle(&id).await;
    }
    let last = *seen.last().expect("last id");
    let mut b = d.stream(&id, Some(last)).await;
    b.next().await.expect("connected");
    d.post(
        &format!("/api/v1/sessions/{id}/send-message"),
        json!({"content": "four"}),
    )
    .await;
    let rest = b
        .until(|e| {
            e.event == "message"
                && e.data["kind"]["data"]["content"][0]["text"] == "four"
                && e.data["kind"]["data"]["role"] == "assistant"
        })
        .await;
    seen.extend(rest.iter().filter_map(|e| e.id));
    let (_, meta) = d.get(&format!("/api/v1/sessions/{id}")).await;
    let head = meta["lastSeq"].as_u64().expect("lastSeq");
    // Every seq from the first one seen to the head, once, in order.
    let start = seen[0];
    assert_eq!(
        seen,
        (start..=head).collect::<Vec<_>>(),
        "gaps or duplicates"
    );
    // The replayed records equal the store's.
    let texts: Vec<String> = rest
        .iter()
        .filter(|e| e.event == "message")
        .filter_map(|e| {
            e.data["kind"]["data"]["content"][0]["text"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(texts, ["two", "two", "three", "three", "four", "four"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_and_interrupt() {
    let env = Env::new();
    let script = env.file(
        "slow.json",
        r#"{"responses": [{"text": "slow answer", "delay_ms": 1500}, {"text": "second answer"}, {"text": "third answer"}]}"#,
    );
    let d = env
        .serve(&[
            "--provider",
            "scripted",
            "--script",
            script.to_str().expect("path"),
        ])
        .await;
    // 409, then enqueue.
    let id = d.active().await;
    let send = format!("/api/v1/sessions/{id}/send-message");
    assert_eq!(d.post(&send, json!({"content": "first"})).await.0, 202);
    let (status, b) = d.post(&send, json!({"content": "second"})).await;
    assert_eq!(status, 409, "{b}");
    let (status, b) = d
        .post(
            &format!("{send}?multitask=enqueue"),
            json!({"content": "second"}),
        )
        .await;
    assert_eq!(status, 202, "{b}");
    assert_eq!(b["status"], "queued");
    d.wait_idle(&id).await;
    assert_eq!(
        d.texts(&id).await,
        vec![
            json!("first"),
            json!("slow answer"),
            json!("second"),
            json!("second answer")
        ]
    );
    // Interrupt: the slow turn is cancelled, the new prompt runs.
    let id = d.active().await;
    let send = format!("/api/v1/sessions/{id}/send-message");
    let started = Instant::now();
    assert_eq!(d.post(&send, json!({"content": "first"})).await.0, 202);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, b) = d
        .post(
            &format!("{send}?multitask=interrupt"),
            json!({"content": "instead"}),
        )
        .await;
    assert_eq!(status, 202, "{b}");
    assert_eq!(b["status"], "interrupting");
    d.wait_idle(&id).await;
    assert!(
        started.elapsed() < Duration::from_millis(1400),
        "not interrupted"
    );
    assert_eq!(
        d.texts(&id).await,
        vec![json!("first"), json!("instead"), json!("second answer")]
    );
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agentkernel_endpoints_with_provider_scripted() {
    let env = Env::new();
    let script = env.file(
        "s.json",
        r#"{"responses": [{"text": "answer one"}, {"text": "answer two"}]}"#,
    );
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
    let sid = b["session_id"].as_str().expect("session_id").to_string();
    let (status, b) = d
        .post(
            "/api/v1/chat",
            json!({"prompt": "second", "session_id": sid}),
        )
        .await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["result"], "answer two");
    assert_eq!(b["session_id"], sid.as_str());
    let (status, b) = d
        .post("/run", json!({"prompt": "new", "session_id": "ak-session"}))
        .await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["session_id"], "ak-session");
    let (status, b) = d
        .post("/run", json!({"message": "x", "agent": "no-such-agent"}))
        .await;
    assert_eq!(status, 404, "{b}");
    let (status, b) = d.post("/api/v1/chat", json!({"agent": "base"})).await;
    assert_eq!(status, 422, "{b}");
    assert!(detail(&b).contains("prompt"));
    let (status, agents) = d.get("/api/v1/agents").await;
    assert_eq!(status, 200);
    assert!(
        agents
            .as_array()
            .expect("agents")
            .iter()
            .any(|a| a["name"] == "dev" && a["kind"] == "profile")
    );
    let (status, h) = d.get("/health").await;
    assert_eq!(status, 200);
    assert_eq!(h["status"], "ok");
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
    // … is visible over HTTP, with its transcript.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_branches_mail_and_state_shared_with_the_cli() {
    let env = Env::new();
    let plan = env.file("plan.json", SLOW_ECHO_PLAN);
    let d = env
        .serve(&["--mount-plan", plan.to_str().expect("path")])
        .await;
    let id = d.active().await;
    let b = format!("/api/v1/sessions/{id}");

    // Two branches, one turn each, at the same time.
    let (status, left) = d
        .post(&format!("{b}/branches"), json!({"name": "left"}))
        .await;
    assert_eq!(status, 201, "{left}");
    for (branch, text) in [("main", "ping main"), ("left", "ping left")] {
        let (status, body) = d
            .post(
                &format!("{b}/branches/{branch}/send-message"),
                json!({"content": text}),
            )
            .await;
        assert_eq!(status, 202, "{body}");
        assert_eq!(body["status"], "executing", "{branch}: {body}");
    }
    let (status, body) = d
        .post(
            &format!("{b}/branches/left/send-message"),
            json!({"content": "again"}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(detail(&body).contains("multitask"), "{body}");
    d.wait_idle(&id).await;
    assert_eq!(
        d.branch_texts(&id, "main").await,
        vec![json!("ping main"), json!("ping main")]
    );
    assert_eq!(
        d.branch_texts(&id, "left").await,
        vec![json!("ping left"), json!("ping left")]
    );
    let (_, all) = d.get(&format!("{b}/messages")).await;
    let seq = |text: &str, role: &str| message_seq(&all, text, role);
    assert!(
        seq("ping left", "user") < seq("ping main", "assistant"),
        "the turns overlapped: {all}"
    );
    let seqs = d.replayed_seqs(&id).await;
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "gapless");

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
    let seqs = d.replayed_seqs(&id).await;
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "gapless");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn branch_errors_and_the_endpoint_table() {
    let env = Env::new();
    let plan = env.file("plan.json", SLOW_ECHO_PLAN);
    let d = env
        .serve(&["--mount-plan", plan.to_str().expect("path")])
        .await;
    let id = d.active().await;
    let b = format!("/api/v1/sessions/{id}");

    let (status, body) = d.get(&format!("{b}/branches/nope")).await;
    assert_eq!(status, 404, "{body}");
    assert!(detail(&body).contains("nope"));
    let (status, body) = d
        .post(&format!("{b}/branches"), json!({"name": "main"}))
        .await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = d.delete(&format!("{b}/branches/main")).await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = d
        .post(
            &format!("{b}/mail"),
            json!({"from": "main", "to": "nobody", "category": "message", "item": "x"}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(detail(&body).starts_with("to:") && detail(&body).contains("nobody"));
    let (status, body) = d
        .put(&format!("{b}/state/temp:scratch"), json!({"value": 1}))
        .await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = d.get(&format!("{b}/state/missing")).await;
    assert_eq!(status, 404, "{body}");

    // Split and default, then the CLI agrees.
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

    // The OpenAPI document lists the new endpoints.
    let (status, doc) = d.get("/openapi.json").await;
    assert_eq!(status, 200);
    for (method, path) in [
        ("get", "/api/v1/sessions/{id}/branches"),
        (
            "post",
            "/api/v1/sessions/{id}/branches/{branch}/send-message",
        ),
        ("post", "/api/v1/sessions/{id}/mail/collect"),
        ("put", "/api/v1/sessions/{id}/state/{key}"),
        ("get", "/api/v1/sessions/{id}/messages"),
    ] {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} is not documented"
        );
    }
}
