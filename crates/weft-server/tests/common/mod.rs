//! Shared helpers for the in-process API tests: a server on a random
//! loopback port over a memory store and provider-scripted, and a small
//! SSE client.

#![allow(dead_code)]

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use weft_core::SessionId;
use weft_core::memory::MemoryStore;
use weft_core::mount::{MountPlan, PlanFormat};
use weft_core::registry::ModuleRegistry;
use weft_core::session::Project;
use weft_core::store::Store;
use weft_server::{ServerConfig, ServerContext, StaticPlanSource};

/// A plan answering from `responses` (provider-scripted, inline).
pub fn scripted(responses: Value) -> MountPlan {
    plan(json!({"module": "provider-scripted", "config": {"responses": responses}}))
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

pub struct Server {
    pub base: String,
    pub client: reqwest::Client,
    pub store: Arc<dyn Store>,
    pub shutdown: Option<oneshot::Sender<()>>,
    pub handle: tokio::task::JoinHandle<Result<(), weft_server::ServerError>>,
    pub dir: tempfile::TempDir,
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
        base: format!("http://{addr}"),
        client: client(),
        store,
        shutdown: Some(tx),
        handle,
        dir,
    }
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .client
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .expect("request");
        split(r).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .client
            .get(self.url(path))
            .send()
            .await
            .expect("request");
        split(r).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .client
            .patch(self.url(path))
            .json(&body)
            .send()
            .await
            .expect("request");
        split(r).await
    }

    pub async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .client
            .put(self.url(path))
            .json(&body)
            .send()
            .await
            .expect("request");
        split(r).await
    }

    /// Stops the server (graceful shutdown) and waits for it.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.handle).await;
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        let r = self
            .client
            .delete(self.url(path))
            .send()
            .await
            .expect("request");
        split(r).await
    }

    /// Creates a session and returns its id.
    pub async fn create(&self) -> String {
        let (status, body) = self.post("/api/v1/sessions/", json!({})).await;
        assert_eq!(status, 201, "{body}");
        body["sessionId"].as_str().expect("sessionId").to_string()
    }

    /// Creates and starts a session.
    pub async fn active(&self) -> String {
        let id = self.create().await;
        let (status, body) = self
            .post(&format!("/api/v1/sessions/{id}/start"), json!({}))
            .await;
        assert_eq!(status, 204, "{body}");
        id
    }

    pub async fn status_of(&self, id: &str) -> String {
        let (_, body) = self.get(&format!("/api/v1/sessions/{id}")).await;
        body["status"].as_str().unwrap_or("").to_string()
    }

    /// Waits until the session has no running turn.
    pub async fn wait_idle(&self, id: &str) {
        for _ in 0..400 {
            let (_, body) = self.get(&format!("/api/v1/sessions/{id}")).await;
            if body["running"] == false && body["queued"] == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("session {id} did not become idle");
    }

    pub async fn transcript(&self, id: &str) -> Vec<Value> {
        let (status, body) = self.get(&format!("/api/v1/sessions/{id}/transcript")).await;
        assert_eq!(status, 200, "{body}");
        body.as_array().cloned().unwrap_or_default()
    }

    pub async fn stream(&self, id: &str, last_event_id: Option<u64>) -> SseClient {
        SseClient::connect(
            &self.client,
            &self.url(&format!("/api/v1/sessions/{id}/stream")),
            last_event_id,
        )
        .await
    }
}

/// A plain-HTTP client (rustls needs a crypto provider even so).
pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

pub async fn split(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, body)
}

/// One server-sent event.
#[derive(Debug, Clone)]
pub struct Ev {
    pub event: String,
    pub id: Option<u64>,
    pub data: Value,
}

type ByteStream = Pin<Box<dyn Stream<Item = reqwest::Result<axum::body::Bytes>> + Send>>;

/// A minimal SSE reader.
pub struct SseClient {
    stream: ByteStream,
    buf: String,
    pub keepalives: usize,
}

impl SseClient {
    pub async fn connect(client: &reqwest::Client, url: &str, last: Option<u64>) -> Self {
        let mut req = client.get(url);
        if let Some(last) = last {
            req = req.header("Last-Event-ID", last.to_string());
        }
        let r = req.send().await.expect("stream request");
        assert_eq!(r.status().as_u16(), 200, "stream status");
        Self::from_response(r)
    }

    pub fn from_response(r: reqwest::Response) -> Self {
        Self {
            stream: Box::pin(r.bytes_stream()),
            buf: String::new(),
            keepalives: 0,
        }
    }

    /// The next event, or None when the stream ends (panics after 15 s).
    pub async fn next(&mut self) -> Option<Ev> {
        tokio::time::timeout(Duration::from_secs(15), self.next_inner())
            .await
            .expect("an SSE event within 15 s")
    }

    async fn next_inner(&mut self) -> Option<Ev> {
        loop {
            while let Some(pos) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..pos + 2).collect();
                let mut event = String::from("message");
                let mut id = None;
                let mut data = Vec::new();
                let mut comment = false;
                for line in block.lines() {
                    if let Some(c) = line.strip_prefix(':') {
                        let _ = c;
                        comment = true;
                    } else if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("id:") {
                        id = v.trim().parse().ok();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push(v.strip_prefix(' ').unwrap_or(v).to_string());
                    }
                }
                if data.is_empty() {
                    if comment {
                        self.keepalives += 1;
                    }
                    continue;
                }
                let text = data.join("\n");
                let data = serde_json::from_str(&text).unwrap_or(Value::String(text));
                return Some(Ev { event, id, data });
            }
            match self.stream.next().await {
                Some(Ok(bytes)) => self.buf.push_str(&String::from_utf8_lossy(&bytes)),
                _ => return None,
            }
        }
    }

    /// Events up to and including the first that matches `pred`.
    pub async fn until(&mut self, pred: impl Fn(&Ev) -> bool) -> Vec<Ev> {
        let mut out = Vec::new();
        while let Some(ev) = self.next().await {
            let stop = pred(&ev);
            out.push(ev);
            if stop {
                return out;
            }
        }
        panic!("stream ended before the expected event; got {out:?}");
    }
}

/// The API path of session `id`.
pub fn base(id: &str) -> String {
    format!("/api/v1/sessions/{id}")
}

/// The `detail` of an error body (empty if none).
pub fn detail(body: &Value) -> &str {
    body["detail"].as_str().unwrap_or("")
}

/// The `content` of each transcript message.
pub fn texts(messages: &[Value]) -> Vec<Value> {
    messages.iter().map(|m| m["content"].clone()).collect()
}

/// The contents of branch `branch`'s transcript.
pub async fn branch_texts(s: &Server, id: &str, branch: &str) -> Vec<Value> {
    let (status, body) = s
        .get(&format!("{}/branches/{branch}/transcript", base(id)))
        .await;
    assert_eq!(status, 200, "{body}");
    texts(body.as_array().expect("array"))
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
