//! End to end: the real `weft serve` process on a random loopback port,
//! over the default fs store in a temporary `WEFT_HOME`, with
//! provider-scripted. Covers the endpoint table, every lifecycle
//! transition (allowed and refused), 404s and 409s, SSE reconnection with
//! `Last-Event-ID`, enqueue/interrupt, token auth off loopback, the
//! agentkernel endpoints, the store shared with the CLI, SIGTERM, and
//! branches, mail and state (two branches running turns concurrently with
//! a gapless log, mail sent over HTTP and collected by the CLI while the
//! daemon holds the session, state written by either side, the errors).

use std::path::PathBuf;
use std::pin::Pin;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use serde_json::{Value, json};

const ECHO_PLAN: &str = r#"{"session": {"orchestrator": "loop-basic", "context": "context-simple"},
 "providers": [{"module": "provider-scripted", "config": {"mode": "echo"}}],
 "agents": {"helper": {"description": "helps", "system": {"instruction": "You help."}}}}"#;

/// Echoes the prompt after 500 ms, so turns overlap.
const SLOW_ECHO_PLAN: &str = r#"{"session": {"orchestrator": "loop-basic", "context": "context-simple"},
 "providers": [{"module": "provider-scripted", "config": {"mode": "echo", "delay_ms": 500}}]}"#;

struct Env {
    home: tempfile::TempDir,
    project: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        let env = Self {
            home: tempfile::tempdir().expect("home"),
            project: tempfile::tempdir().expect("project"),
        };
        std::fs::create_dir_all(env.project.path().join("sub")).expect("sub");
        env
    }

    fn file(&self, name: &str, body: &str) -> PathBuf {
        let path = self.project.path().join(name);
        std::fs::write(&path, body).expect("write");
        path
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_weft"));
        c.args(args)
            .current_dir(self.project.path())
            .env("WEFT_HOME", self.home.path())
            .env_remove("ANTHROPIC_API_KEY")
            .env_remove("OPENAI_API_KEY")
            .env_remove("WEFT_STORE__KIND")
            .env_remove("WEFT_SERVER__TOKEN")
            .env_remove("WEFT_SERVER__HOST")
            .env_remove("WEFT_SERVER__PORT")
            .stdin(Stdio::null());
        c
    }

    fn weft(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run weft")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.weft(args);
        assert!(
            out.status.success(),
            "weft {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn json(&self, args: &[&str]) -> Value {
        let out = self.ok(args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("weft {args:?}: {e}: {out}"))
    }

    /// Starts `weft serve` on a free port with `args`.
    async fn serve(&self, args: &[&str]) -> Daemon {
        let port = free_port();
        let log = self.project.path().join(format!("serve-{port}.log"));
        let mut all = vec!["serve".to_string(), "--port".into(), port.to_string()];
        all.extend(args.iter().map(|s| s.to_string()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let child = self
            .command(&all)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn weft serve");
        let daemon = Daemon {
            child,
            base: format!("http://127.0.0.1:{port}"),
            client: client(),
            log,
            token: args
                .iter()
                .position(|a| *a == "--token")
                .and_then(|i| args.get(i + 1))
                .map(|t| t.to_string()),
        };
        daemon.wait_ready().await;
        daemon
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

struct Daemon {
    child: Child,
    base: String,
    client: reqwest::Client,
    log: PathBuf,
    token: Option<String>,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn split(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, body)
}

impl Daemon {
    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let mut req = self.client.get(format!("{}/health", self.base));
            if let Some(t) = &self.token {
                req = req.bearer_auth(t);
            }
            if let Ok(r) = req.send().await
                && r.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "weft serve did not come up: {}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = self.client.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        split(
            self.req(reqwest::Method::GET, path)
                .send()
                .await
                .expect("GET"),
        )
        .await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        split(
            self.req(reqwest::Method::POST, path)
                .json(&body)
                .send()
                .await
                .expect("POST"),
        )
        .await
    }

    async fn patch(&self, path: &str, body: Value) -> (u16, Value) {
        split(
            self.req(reqwest::Method::PATCH, path)
                .json(&body)
                .send()
                .await
                .expect("PATCH"),
        )
        .await
    }

    async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        split(
            self.req(reqwest::Method::PUT, path)
                .json(&body)
                .send()
                .await
                .expect("PUT"),
        )
        .await
    }

    async fn delete(&self, path: &str) -> (u16, Value) {
        split(
            self.req(reqwest::Method::DELETE, path)
                .send()
                .await
                .expect("DELETE"),
        )
        .await
    }

    async fn create(&self) -> String {
        let (status, body) = self.post("/api/v1/sessions/", json!({})).await;
        assert_eq!(status, 201, "{body}");
        body["sessionId"].as_str().expect("sessionId").to_string()
    }

    async fn active(&self) -> String {
        let id = self.create().await;
        assert_eq!(
            self.post(&format!("/api/v1/sessions/{id}/start"), json!({}))
                .await
                .0,
            204
        );
        id
    }

    async fn status_of(&self, id: &str) -> String {
        let (_, b) = self.get(&format!("/api/v1/sessions/{id}")).await;
        b["status"].as_str().unwrap_or("").to_string()
    }

    async fn wait_idle(&self, id: &str) {
        for _ in 0..800 {
            let (_, b) = self.get(&format!("/api/v1/sessions/{id}")).await;
            if b["running"] == false && b["queued"] == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("session {id} did not become idle");
    }

    async fn texts(&self, id: &str) -> Vec<Value> {
        let (status, body) = self.get(&format!("/api/v1/sessions/{id}/transcript")).await;
        assert_eq!(status, 200, "{body}");
        body.as_array()
            .map(|a| a.iter().map(|m| m["content"].clone()).collect())
            .unwrap_or_default()
    }

    async fn branch_texts(&self, id: &str, branch: &str) -> Vec<Value> {
        let (status, body) = self
            .get(&format!(
                "/api/v1/sessions/{id}/branches/{branch}/transcript"
            ))
            .await;
        assert_eq!(status, 200, "{body}");
        body.as_array()
            .map(|a| a.iter().map(|m| m["content"].clone()).collect())
            .unwrap_or_default()
    }

    /// The seqs of every record of `id`, replayed over SSE from the start.
    async fn replayed_seqs(&self, id: &str) -> Vec<u64> {
        let (_, s) = self.get(&format!("/api/v1/sessions/{id}")).await;
        let last = s["lastSeq"].as_u64().expect("lastSeq");
        let r = self
            .client
            .get(format!("{}/api/v1/sessions/{id}/stream", self.base))
            .header("Last-Event-ID", "0")
            .send()
            .await
            .expect("stream");
        assert_eq!(r.status().as_u16(), 200);
        let mut stream = r.bytes_stream();
        let mut buf = String::new();
        let mut seqs = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while seqs.last() != Some(&last) {
            assert!(Instant::now() < deadline, "replay stalled at {seqs:?}");
            while let Some(pos) = buf.find("\n\n") {
                let block: String = buf.drain(..pos + 2).collect();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:")
                        && let Ok(seq) = v.trim().parse()
                    {
                        seqs.push(seq);
                    }
                }
            }
            if seqs.last() == Some(&last) {
                break;
            }
            match tokio::time::timeout(Duration::from_secs(20), stream.next()).await {
                Ok(Some(Ok(b))) => buf.push_str(&String::from_utf8_lossy(&b)),
                other => panic!("the stream ended: {other:?}"),
            }
        }
        seqs
    }

    async fn stream(&self, path: &str, last: Option<u64>) -> Sse {
        let mut r = self.req(reqwest::Method::GET, path);
        if let Some(last) = last {
            r = r.header("Last-Event-ID", last.to_string());
        }
        let r = r.send().await.expect("stream");
        assert_eq!(r.status().as_u16(), 200);
        Sse::new(r)
    }

    /// SIGTERM, then the exit status.
    fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let ok = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(ok.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "weft serve did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[derive(Debug, Clone)]
struct Ev {
    event: String,
    id: Option<u64>,
    data: Value,
}

struct Sse {
    stream: Pin<Box<dyn Stream<Item = reqwest::Result<Vec<u8>>> + Send>>,
    buf: String,
}

impl Sse {
    fn new(r: reqwest::Response) -> Self {
        Self {
            stream: Box::pin(r.bytes_stream().map(|b| b.map(|b| b.to_vec()))),
            buf: String::new(),
        }
    }

    async fn next(&mut self) -> Option<Ev> {
        tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                while let Some(pos) = self.buf.find("\n\n") {
                    let block: String = self.buf.drain(..pos + 2).collect();
                    let mut ev = Ev {
                        event: "message".into(),
                        id: None,
                        data: Value::Null,
                    };
                    let mut data = Vec::new();
                    for line in block.lines() {
                        if let Some(v) = line.strip_prefix("event:") {
                            ev.event = v.trim().into();
                        } else if let Some(v) = line.strip_prefix("id:") {
                            ev.id = v.trim().parse().ok();
                        } else if let Some(v) = line.strip_prefix("data:") {
                            data.push(v.trim_start().to_string());
                        }
                    }
                    if data.is_empty() {
                        continue;
                    }
                    ev.data = serde_json::from_str(&data.join("\n")).unwrap_or(Value::Null);
                    return Some(ev);
                }
                match self.stream.next().await {
                    Some(Ok(b)) => self.buf.push_str(&String::from_utf8_lossy(&b)),
                    _ => return None,
                }
            }
        })
        .await
        .expect("an SSE event within 20 s")
    }

    async fn until(&mut self, pred: impl Fn(&Ev) -> bool) -> Vec<Ev> {
        let mut out = Vec::new();
        while let Some(ev) = self.next().await {
            let stop = pred(&ev);
            out.push(ev);
            if stop {
                return out;
            }
        }
        panic!("the stream ended early: {out:?}");
    }
}

fn detail(body: &Value) -> &str {
    body["detail"].as_str().unwrap_or("")
}

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
    for key in [
        "sessionId",
        "parentSessionId",
        "status",
        "profileName",
        "amplifiedDir",
        "createdAt",
        "startedAt",
        "endedAt",
        "name",
        "messageCount",
        "tokenUsage",
        "errorMessage",
    ] {
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
    let events = Sse::new(r).until(|e| e.event == "done").await;
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
    let path = format!("/api/v1/sessions/{id}/stream");
    let mut a = d.stream(&path, None).await;
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
    let mut b = d.stream(&path, Some(last)).await;
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

/// Issue 9 finding 1: under `weft serve` (no `--approve`) the file tools
/// read inside the project and `[server] read_roots` only; weft's home is
/// refused outright.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_file_tools_stay_in_the_project() {
    let env = Env::new();
    let shared = tempfile::tempdir().expect("shared");
    std::fs::write(shared.path().join("shared.txt"), "SHARED-TEXT\n").expect("write");
    std::fs::write(
        env.home.path().join("config.toml"),
        format!(
            "[server]\nread_roots = [{:?}]\n# HOME-SECRET\n",
            shared.path().display().to_string()
        ),
    )
    .expect("config");
    let outside = tempfile::tempdir().expect("outside");
    std::fs::write(outside.path().join("private.txt"), "OUTSIDE-SECRET\n").expect("write");
    env.file("inside.txt", "INSIDE-TEXT\n");
    let plan = env.file(
        "reader.json",
        &json!({
            "session": {"orchestrator": "loop-basic", "context": "context-simple"},
            "providers": [{"module": "provider-scripted", "config": {"responses": [
                {"tool_calls": [
                    {"name": "read_file", "arguments": {"path": outside.path().join("private.txt")}},
                    {"name": "read_file", "arguments": {"path": env.home.path().join("config.toml")}},
                    {"name": "read_file", "arguments": {"path": "inside.txt"}},
                    {"name": "read_file", "arguments": {"path": shared.path().join("shared.txt")}}
                ]},
                {"text": "done"}
            ]}}],
            "tools": ["tool-filesystem"]
        })
        .to_string(),
    );
    let d = env
        .serve(&["--mount-plan", plan.to_str().expect("path")])
        .await;
    let (status, b) = d.post("/run", json!({"message": "go"})).await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["result"], "done");
    let sid = b["session_id"].as_str().expect("session_id").to_string();
    let (status, t) = d.get(&format!("/api/v1/sessions/{sid}/transcript")).await;
    assert_eq!(status, 200, "{t}");
    let text = t.to_string();
    assert!(text.contains("INSIDE-TEXT"), "{text}");
    assert!(text.contains("SHARED-TEXT"), "{text}");
    assert!(text.contains("approval was denied"), "{text}");
    assert!(text.contains("inside weft's home"), "{text}");
    assert!(!text.contains("OUTSIDE-SECRET"), "{text}");
    assert!(!text.contains("HOME-SECRET"), "{text}");
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
    let mut s = d
        .stream(&format!("/api/v1/sessions/{id}/stream"), None)
        .await;
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
    let seq = |text: &str, role: &str| {
        all.as_array()
            .and_then(|a| {
                a.iter()
                    .find(|m| m["content"] == text && m["role"] == role)
                    .and_then(|m| m["seq"].as_u64())
            })
            .expect("message")
    };
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

/// The report's S3 reproduction (issue 9, finding 1): a web page's
/// no-cors POST (forged `Origin`, no Content-Type) to `/run` with a plan
/// that writes a file, `cleanup` from a page, and a DNS-rebound `Host`
/// are refused and change nothing; the daemon's own origin works, and
/// `--public-host` lets a named host in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_attacks_are_refused_and_same_origin_works() {
    let env = Env::new();
    let plan = env.file(
        "plan.json",
        r#"{"session": {"orchestrator": "loop-basic", "context": "context-simple"},
 "providers": [{"module": "provider-scripted", "config": {"responses": [
   {"tool_calls": [{"name": "write_file", "arguments": {"path": "pwned.txt", "content": "from a web page"}}]},
   {"text": "done"}]}}],
 "tools": ["tool-filesystem"]}"#,
    );
    let d = env
        .serve(&[
            "--mount-plan",
            plan.to_str().expect("path"),
            "--public-host",
            "weft.test",
        ])
        .await;
    let pwned = env.project.path().join("pwned.txt");
    let port = d.base.rsplit(':').next().expect("port").to_string();
    let raw = |method: reqwest::Method, path: &str, headers: &[(&str, String)], body: &str| {
        let mut r = d.req(method, path).body(body.to_string());
        for (name, value) in headers {
            r = r.header(*name, value.as_str());
        }
        r
    };
    let evil = ("origin", "https://evil.example".to_string());
    let json_type = ("content-type", "application/json".to_string());
    let id = d.create().await;

    // fetch(…/run, {method: "POST", mode: "no-cors", body: new Blob([…])}).
    for headers in [vec![evil.clone()], vec![evil.clone(), json_type.clone()]] {
        let (status, b) = split(
            raw(
                reqwest::Method::POST,
                "/run",
                &headers,
                r#"{"message": "hi"}"#,
            )
            .send()
            .await
            .expect("POST"),
        )
        .await;
        assert_eq!(status, 403, "{headers:?}: {b}");
        assert!(detail(&b).contains("--allow-origin"), "{b}");
    }
    // Without an Origin but not sent as JSON either.
    let (status, b) = split(
        raw(reqwest::Method::POST, "/run", &[], r#"{"message": "hi"}"#)
            .send()
            .await
            .expect("POST"),
    )
    .await;
    assert_eq!(status, 415, "{b}");
    assert!(!pwned.exists(), "a refused /run wrote a file");
    let (status, b) = split(
        raw(
            reqwest::Method::POST,
            "/api/v1/sessions/cleanup",
            std::slice::from_ref(&evil),
            r#"{"olderThanDays": 0}"#,
        )
        .send()
        .await
        .expect("POST"),
    )
    .await;
    assert_eq!(status, 403, "{b}");
    let (status, _) = d.get(&format!("/api/v1/sessions/{id}")).await;
    assert_eq!(status, 200, "the refused cleanup removed a session");

    // DNS rebinding: a foreign Host is refused, reads included.
    for method in [reqwest::Method::GET, reqwest::Method::POST] {
        let (status, b) = split(
            raw(
                method.clone(),
                "/api/v1/sessions/",
                &[
                    ("host", format!("rebound.attacker.example:{port}")),
                    json_type.clone(),
                ],
                if method == reqwest::Method::GET {
                    ""
                } else {
                    "{}"
                },
            )
            .send()
            .await
            .expect("request"),
        )
        .await;
        assert_eq!(status, 421, "{method}: {b}");
        assert!(detail(&b).contains("--public-host"), "{b}");
    }
    // The configured public name is served.
    let (status, _) = split(
        raw(
            reqwest::Method::GET,
            "/health",
            &[("host", format!("weft.test:{port}"))],
            "",
        )
        .send()
        .await
        .expect("GET"),
    )
    .await;
    assert_eq!(status, 200);

    // The daemon's own origin (its web UI) works.
    let (status, b) = split(
        raw(
            reqwest::Method::POST,
            "/run",
            &[
                ("origin", format!("http://127.0.0.1:{port}")),
                json_type.clone(),
            ],
            r#"{"message": "hi"}"#,
        )
        .send()
        .await
        .expect("POST"),
    )
    .await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["result"], "done");
    assert_eq!(
        std::fs::read_to_string(&pwned).ok().as_deref(),
        Some("from a web page")
    );
}

/// The record kinds of a session's log file (`kind.type`, `kind.data`).
fn log_kinds(env: &Env, id: &str) -> Vec<(String, Value)> {
    let projects = env.home.path().join("projects");
    let log = std::fs::read_dir(&projects)
        .expect("projects")
        .filter_map(|p| p.ok())
        .map(|p| p.path().join("sessions").join(id).join("log.jsonl"))
        .find(|p| p.exists())
        .expect("the session's log");
    std::fs::read_to_string(log)
        .expect("read log")
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|r| {
            let kind = r["kind"]["type"].as_str().unwrap_or("").to_string();
            (kind, r["kind"]["data"].clone())
        })
        .collect()
}

/// Whether a turn holds (or its dead process left) the turn lock of
/// `main` in session `id`.
fn turn_running(env: &Env, id: &str) -> bool {
    std::fs::read_dir(env.home.path().join("projects"))
        .into_iter()
        .flatten()
        .filter_map(|p| p.ok())
        .map(|p| p.path().join("sessions").join(id).join("turn.main.lock"))
        .any(|p| std::fs::metadata(p).is_ok_and(|m| m.len() > 0))
}

/// The `from → to` status changes in a session's log file.
fn status_changes(env: &Env, id: &str) -> Vec<(String, String)> {
    log_kinds(env, id)
        .into_iter()
        .filter(|(kind, _)| kind == "status")
        .map(|(_, d)| {
            let s = |k: &str| d[k].as_str().unwrap_or("").to_string();
            (s("from"), s("to"))
        })
        .collect()
}

/// Issue 9 finding 3 (W3): `complete` on one daemon and `fail` on another,
/// at once, on one session of a shared home: exactly one is acknowledged,
/// the other is a 409, and the log holds one transition out of `active`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn contradicting_transitions_on_two_daemons_exactly_one_wins() {
    let env = Env::new();
    let plan = env.file("echo.json", ECHO_PLAN);
    let plan = plan.to_str().expect("utf-8 path");
    let a = env.serve(&["--mount-plan", plan]).await;
    let b = env.serve(&["--mount-plan", plan]).await;
    for round in 0..25 {
        let id = a.active().await;
        let (complete_path, fail_path) = (
            format!("/api/v1/sessions/{id}/complete"),
            format!("/api/v1/sessions/{id}/fail"),
        );
        let ((c, cb), (f, fb)) = tokio::join!(
            a.post(&complete_path, json!({})),
            b.post(&fail_path, json!({"errorMessage": "boom"}))
        );
        let mut codes = [c, f];
        codes.sort();
        assert_eq!(
            codes,
            [204, 409],
            "round {round}: complete {c} {cb}, fail {f} {fb}"
        );
        let winner = if c == 204 { "completed" } else { "failed" };
        assert_eq!(
            status_changes(&env, &id),
            vec![
                ("created".to_string(), "active".to_string()),
                ("active".to_string(), winner.to_string())
            ],
            "round {round}"
        );
    }
}

/// Issue 9 finding 3: a message appended on one daemon while another ends
/// the session is either written before the end or refused (409), never
/// acknowledged after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_is_never_written_after_another_daemon_ended_the_session() {
    let env = Env::new();
    let plan = env.file("echo.json", ECHO_PLAN);
    let plan = plan.to_str().expect("utf-8 path");
    let a = env.serve(&["--mount-plan", plan]).await;
    let b = env.serve(&["--mount-plan", plan]).await;
    for round in 0..25 {
        let id = a.active().await;
        let (complete_path, message_path) = (
            format!("/api/v1/sessions/{id}/complete"),
            format!("/api/v1/sessions/{id}/messages"),
        );
        let ((c, cb), (m, mb)) = tokio::join!(
            a.post(&complete_path, json!({})),
            b.post(&message_path, json!({"role": "user", "content": "late"}))
        );
        assert_eq!(c, 204, "round {round}: {cb}");
        assert!(m == 201 || m == 409, "round {round}: {m} {mb}");
        let kinds = log_kinds(&env, &id);
        let ended = kinds
            .iter()
            .position(|(k, d)| k == "status" && d["to"] == "completed")
            .expect("completed");
        let message = kinds.iter().position(|(k, _)| k == "message");
        match m {
            201 => assert!(
                message.is_some_and(|p| p < ended),
                "round {round}: acknowledged, so written before the end: {kinds:?}"
            ),
            _ => assert!(message.is_none(), "round {round}: refused but written"),
        }
    }
}

/// Issue 9 finding 4 (W4): a CLI turn while the daemon writes the same
/// session (state, over and over). The turn appends after the daemon's
/// records: it exits 0, its answer is recorded, the session is not failed,
/// and every daemon write is acknowledged and kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cli_turn_survives_daemon_writes_to_its_session() {
    let env = Env::new();
    let plan = env.file("echo.json", ECHO_PLAN);
    let d = env
        .serve(&["--mount-plan", plan.to_str().expect("path")])
        .await;
    let id = d.active().await;
    let slow = env.file(
        "slow-plan.json",
        r#"{"session": {"orchestrator": "loop-basic", "context": "context-simple"},
            "providers": [{"module": "provider-scripted", "config":
                {"responses": [{"text": "slow answer", "delay_ms": 800}]}}]}"#,
    );
    let cli = env
        .command(&[
            "run",
            "--resume",
            &id,
            "--mount-plan",
            slow.to_str().expect("path"),
            "long turn",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn weft run");
    for i in 0..10 {
        let (status, body) = d
            .put(
                &format!("/api/v1/sessions/{id}/state/key{i}"),
                json!({"value": i}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = cli.wait_with_output().expect("weft run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("slow answer"));
    let texts = d.texts(&id).await;
    assert!(
        texts.iter().any(|t| t.to_string().contains("slow answer")),
        "{texts:?}"
    );
    assert_ne!(d.status_of(&id).await, "failed");
    let state = env.json(&["state", "list", &id, "--json"]);
    for i in 0..10 {
        assert_eq!(state[format!("key{i}")], json!(i), "{state}");
    }
}

/// Issue 9 finding 4: the daemon does not complete a session while a CLI
/// process runs a turn on it (409 naming the process), so the turn's
/// streamed answer is recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_does_not_end_a_session_under_a_cli_turn() {
    let env = Env::new();
    let plan = env.file("echo.json", ECHO_PLAN);
    let d = env
        .serve(&["--mount-plan", plan.to_str().expect("path")])
        .await;
    let id = d.active().await;
    let slow = env.file(
        "slow-plan.json",
        r#"{"session": {"orchestrator": "loop-basic", "context": "context-simple"},
            "providers": [{"module": "provider-scripted", "config":
                {"responses": [{"text": "slow answer", "delay_ms": 1500}]}}]}"#,
    );
    let cli = env
        .command(&[
            "run",
            "--resume",
            &id,
            "--mount-plan",
            slow.to_str().expect("path"),
            "long turn",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn weft run");
    let pid = cli.id();
    let start = Instant::now();
    while !turn_running(&env, &id) {
        assert!(start.elapsed() < Duration::from_secs(20), "no turn started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (status, refusal) = d
        .post(&format!("/api/v1/sessions/{id}/complete"), json!({}))
        .await;
    assert_eq!(status, 409, "{refusal}");
    assert!(
        refusal.to_string().contains(&format!("process {pid}")),
        "{refusal}"
    );
    let out = cli.wait_with_output().expect("weft run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let texts = d.texts(&id).await;
    assert!(
        texts.iter().any(|t| t.to_string().contains("slow answer")),
        "{texts:?}"
    );
}

/// Issue 9 finding 4 (W7): two daemons running turns on one session (one
/// branch) at once: the second waits for the first through the store's
/// turn lock instead of failing with a conflict; both answer and the
/// transcript holds both exchanges, each prompt followed by its answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn turns_on_two_daemons_on_one_session_both_succeed() {
    let env = Env::new();
    let plan = env.file("slow.json", SLOW_ECHO_PLAN);
    let plan = plan.to_str().expect("path");
    let a = env.serve(&["--mount-plan", plan]).await;
    let b = env.serve(&["--mount-plan", plan]).await;
    let id = a.active().await;
    for round in 0..3 {
        let (ma, mb) = (format!("a{round}"), format!("b{round}"));
        let ((sa, ra), (sb, rb)) = tokio::join!(
            a.post("/run", json!({"message": ma, "session_id": id})),
            b.post("/run", json!({"message": mb, "session_id": id}))
        );
        assert_eq!(sa, 200, "round {round}: {ra}");
        assert_eq!(sb, 200, "round {round}: {rb}");
        assert_eq!(ra["result"], ma.as_str());
        assert_eq!(rb["result"], mb.as_str());
    }
    let texts: Vec<String> = a.texts(&id).await.iter().map(|t| t.to_string()).collect();
    assert_eq!(texts.len(), 12, "{texts:?}");
    for pair in texts.chunks(2) {
        assert_eq!(
            pair[0], pair[1],
            "each prompt is followed by its echo: {texts:?}"
        );
    }
}

/// Issue 9, finding 20: `weft serve --mount-plan plan.json` runs that plan
/// (profile `plan`) and refuses any other profileName or agent instead of
/// silently running the plan under it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mount_plan_daemon_refuses_other_profiles_and_agents() {
    let env = Env::new();
    let plan = env.file("plan.json", ECHO_PLAN);
    let d = env
        .serve(&["--mount-plan", plan.to_str().expect("path")])
        .await;
    let (status, b) = d
        .post(
            "/api/v1/sessions/",
            json!({"profileName": "../../etc/passwd"}),
        )
        .await;
    assert_eq!(status, 422, "{b}");
    assert_eq!(
        detail(&b),
        "profileName: this daemon runs one mount plan (plan); leave out profileName or pass plan"
    );
    let (status, b) = d
        .post("/run", json!({"agent": "nope", "message": "x"}))
        .await;
    assert_eq!(status, 422, "{b}");
    assert!(detail(&b).starts_with("agent: this daemon runs one mount plan (plan)"));
    let (status, b) = d
        .post("/api/v1/sessions/", json!({"profileName": "plan"}))
        .await;
    assert_eq!(status, 201, "{b}");
    assert_eq!(b["profileName"], "plan");
}
