//! End to end: branches, mail and state over the real `weft serve`
//! process (a random loopback port, the default fs store in a temporary
//! `WEFT_HOME`, provider-scripted), sharing the store with the `weft`
//! CLI: two branches running turns concurrently with a gapless log, mail
//! sent over HTTP and collected by the CLI while the daemon holds the
//! session, state written by either side and read by the other, and the
//! errors (unknown branch, last branch, taken name, temp: keys).
//!
//! The helpers are small copies of those in `server_e2e.rs`.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};

/// Echoes the prompt after 500 ms, so turns overlap.
const SLOW_ECHO_PLAN: &str = r#"{"session": {"orchestrator": "loop-basic", "context": "context-simple"},
 "providers": [{"module": "provider-scripted", "config": {"mode": "echo", "delay_ms": 500}}]}"#;

struct Env {
    home: tempfile::TempDir,
    project: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        Self {
            home: tempfile::tempdir().expect("home"),
            project: tempfile::tempdir().expect("project"),
        }
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

fn detail(body: &Value) -> &str {
    body["detail"].as_str().unwrap_or("")
}

fn texts(body: &Value) -> Vec<Value> {
    body.as_array()
        .map(|a| a.iter().map(|m| m["content"].clone()).collect())
        .unwrap_or_default()
}

impl Daemon {
    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(r) = self
                .client
                .get(format!("{}/health", self.base))
                .send()
                .await
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

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut r = self.client.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            r = r.json(&body);
        }
        split(r.send().await.expect("request")).await
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::PUT, path, Some(body)).await
    }

    async fn delete(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::DELETE, path, None).await
    }

    async fn active(&self) -> String {
        let (status, body) = self.post("/api/v1/sessions/", json!({})).await;
        assert_eq!(status, 201, "{body}");
        let id = body["sessionId"].as_str().expect("sessionId").to_string();
        let (status, body) = self
            .post(&format!("/api/v1/sessions/{id}/start"), json!({}))
            .await;
        assert_eq!(status, 204, "{body}");
        id
    }

    /// Waits until no turn runs on any branch of `id`.
    async fn wait_idle(&self, id: &str) {
        for _ in 0..800 {
            let (_, s) = self.get(&format!("/api/v1/sessions/{id}")).await;
            if s["running"] == false && s["queued"] == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("session {id} did not become idle");
    }

    async fn branch_texts(&self, id: &str, branch: &str) -> Vec<Value> {
        let (status, body) = self
            .get(&format!(
                "/api/v1/sessions/{id}/branches/{branch}/transcript"
            ))
            .await;
        assert_eq!(status, 200, "{body}");
        texts(&body)
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
