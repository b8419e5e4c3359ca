//! A local fixture server (axum on 127.0.0.1, a random port) that records
//! every request and answers from a script of replies, byte for byte, and
//! helpers to run a provider stream to its end and check its events.

#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use futures::StreamExt;
use serde_json::Value;
use weft_core::BranchId;
use weft_core::message::{ContentBlock, Message, Role};
use weft_core::mount::ModuleSpec;
use weft_core::provider::{ChatResponse, ProviderError, ProviderStream, StreamEvent};

/// How a reply's body is sent.
#[derive(Clone)]
pub enum Ending {
    /// The body ends normally after the bytes.
    Close,
    /// The server sends the bytes, then nothing, forever.
    Stall,
    /// The server sends the bytes, then breaks the connection.
    Abort,
}

/// One scripted reply.
#[derive(Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub ending: Ending,
    /// The body is sent in chunks of this many bytes (exercises parsing
    /// across chunk boundaries, including inside UTF-8 characters).
    pub chunk: usize,
    /// A pause between chunks.
    pub pause: Duration,
}

impl Reply {
    fn new(status: u16, content_type: &str, body: &str) -> Self {
        Reply {
            status,
            headers: vec![("content-type".into(), content_type.into())],
            body: body.as_bytes().to_vec(),
            ending: Ending::Close,
            chunk: 7,
            pause: Duration::ZERO,
        }
    }

    /// A server-sent event stream.
    pub fn sse(body: &str) -> Self {
        Self::new(200, "text/event-stream", body)
    }

    /// An NDJSON stream.
    pub fn ndjson(body: &str) -> Self {
        Self::new(200, "application/x-ndjson", body)
    }

    /// A JSON answer.
    pub fn json(status: u16, body: &Value) -> Self {
        Self::new(status, "application/json", &body.to_string())
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Stalls after the body instead of ending.
    pub fn stall(mut self) -> Self {
        self.ending = Ending::Stall;
        self
    }

    /// Breaks the connection after the body.
    pub fn abort(mut self) -> Self {
        self.ending = Ending::Abort;
        self
    }

    /// Pauses between chunks.
    pub fn paced(mut self, pause: Duration) -> Self {
        self.pause = pause;
        self
    }
}

/// One request the fixture received.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Value,
    pub raw: String,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Default)]
struct Shared {
    requests: Mutex<Vec<Recorded>>,
    replies: Mutex<VecDeque<Reply>>,
    /// Set when the body of a reply is dropped by the server (the client
    /// went away or the body ended).
    bodies_dropped: Mutex<Vec<Arc<AtomicBool>>>,
}

/// A running fixture server.
pub struct Fixture {
    pub base: String,
    shared: Arc<Shared>,
}

struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let raw = String::from_utf8_lossy(&body).into_owned();
    shared.requests.lock().unwrap().push(Recorded {
        method: method.to_string(),
        path: uri.path().to_string(),
        query: uri.query().map(str::to_string),
        headers,
        body: serde_json::from_str(&raw).unwrap_or(Value::Null),
        raw,
    });
    let Some(reply) = shared.replies.lock().unwrap().pop_front() else {
        return Response::builder()
            .status(StatusCode::INTERNAL_SERVER_ERROR)
            .body(Body::from(
                "the fixture has no reply scripted for this request",
            ))
            .unwrap();
    };
    let flag = Arc::new(AtomicBool::new(false));
    shared.bodies_dropped.lock().unwrap().push(flag.clone());
    let guard = DropFlag(flag);
    let chunks: Vec<Vec<u8>> = reply
        .body
        .chunks(reply.chunk.max(1))
        .map(<[u8]>::to_vec)
        .collect();
    let pause = reply.pause;
    let ending = reply.ending.clone();
    let sent = futures::stream::iter(chunks).then(move |c| async move {
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        Ok::<_, std::io::Error>(Bytes::from(c))
    });
    let tail = futures::stream::once(async move {
        let _guard = guard;
        match ending {
            Ending::Close => None,
            Ending::Stall => {
                futures::future::pending::<()>().await;
                None
            }
            Ending::Abort => Some(Err(std::io::Error::other("fixture abort"))),
        }
    })
    .filter_map(|x| async move { x });
    let mut builder = Response::builder().status(reply.status);
    for (k, v) in &reply.headers {
        builder = builder.header(k, v);
    }
    builder.body(Body::from_stream(sent.chain(tail))).unwrap()
}

impl Fixture {
    /// Starts a server answering with `replies`, in order.
    pub async fn start(replies: Vec<Reply>) -> Fixture {
        let shared = Arc::new(Shared::default());
        shared.replies.lock().unwrap().extend(replies);
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Fixture {
            base: format!("http://{addr}"),
            shared,
        }
    }

    /// Queues more replies.
    pub fn push(&self, reply: Reply) {
        self.shared.replies.lock().unwrap().push_back(reply);
    }

    /// The requests received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Whether the server has dropped the body of reply `n` (0-based).
    pub fn body_dropped(&self, n: usize) -> bool {
        self.shared
            .bodies_dropped
            .lock()
            .unwrap()
            .get(n)
            .is_some_and(|f| f.load(Ordering::SeqCst))
    }
}

/// A module spec with `config`.
pub fn spec(module: &str, config: Value) -> ModuleSpec {
    ModuleSpec {
        module: module.into(),
        config: config.as_object().cloned().unwrap_or_default(),
    }
}

/// An environment with only `vars`.
pub fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + Sync + use<> {
    let map: BTreeMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name: &str| map.get(name).cloned()
}

/// What a stream produced.
#[derive(Debug)]
pub struct Outcome {
    pub events: Vec<StreamEvent>,
    pub error: Option<ProviderError>,
}

impl Outcome {
    /// The completed response (panics unless the stream completed cleanly).
    pub fn response(&self) -> &ChatResponse {
        assert!(self.error.is_none(), "the stream failed: {:?}", self.error);
        match self.events.last() {
            Some(StreamEvent::Completed(r)) => r,
            other => panic!("the stream did not end with Completed: {other:?}"),
        }
    }

    /// The error (panics unless the stream failed).
    pub fn err(&self) -> &ProviderError {
        self.error
            .as_ref()
            .unwrap_or_else(|| panic!("the stream did not fail: {:?}", self.events))
    }

    /// The retry events: (attempt, delay, reason).
    pub fn retries(&self) -> Vec<(u32, Duration, String)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::Retry {
                    attempt,
                    delay,
                    reason,
                } => Some((*attempt, *delay, reason.clone())),
                _ => None,
            })
            .collect()
    }

    pub fn completed_count(&self) -> usize {
        self.events
            .iter()
            .filter(|e| matches!(e, StreamEvent::Completed(_)))
            .count()
    }

    /// The concatenated text deltas.
    pub fn streamed_text(&self) -> String {
        self.events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::TextDelta { text, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }

    /// The argument fragments of block `index`.
    pub fn fragments(&self, index: usize) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::ToolArgumentsDelta { index: i, fragment } if *i == index => {
                    Some(fragment.clone())
                }
                _ => None,
            })
            .collect()
    }
}

/// Runs a `stream()` result to its end.
pub async fn drain(started: Result<ProviderStream, ProviderError>) -> Outcome {
    let mut stream = match started {
        Ok(s) => s,
        Err(e) => {
            return Outcome {
                events: Vec::new(),
                error: Some(e),
            };
        }
    };
    let mut events = Vec::new();
    let mut error = None;
    while let Some(item) = stream.next().await {
        match item {
            Ok(e) => events.push(e),
            Err(e) => {
                error = Some(e);
                assert!(
                    stream.next().await.is_none(),
                    "a stream ends after its error"
                );
                break;
            }
        }
    }
    check_order(&events);
    Outcome { events, error }
}

/// Checks the stream contract: blocks start in index order, deltas and
/// ends only for started blocks, each block ends once with a block of its
/// kind, nothing after `Completed`, whose content equals the ended blocks.
pub fn check_order(events: &[StreamEvent]) {
    let mut started = 0usize;
    let mut ended: BTreeMap<usize, ContentBlock> = BTreeMap::new();
    for (n, e) in events.iter().enumerate() {
        match e {
            StreamEvent::BlockStart { index, .. } => {
                assert_eq!(*index, started, "blocks start in order: {events:?}");
                started += 1;
            }
            StreamEvent::TextDelta { index, .. }
            | StreamEvent::ThinkingDelta { index, .. }
            | StreamEvent::ToolArgumentsDelta { index, .. } => {
                assert!(*index < started, "delta before start: {events:?}");
                assert!(!ended.contains_key(index), "delta after end: {events:?}");
            }
            StreamEvent::BlockEnd { index, block } => {
                assert!(*index < started, "end before start: {events:?}");
                assert!(
                    ended.insert(*index, block.clone()).is_none(),
                    "a block ends once: {events:?}"
                );
            }
            StreamEvent::Retry { .. } => {
                assert_eq!(started, 0, "no retry after content: {events:?}");
            }
            StreamEvent::Completed(r) => {
                assert_eq!(n, events.len() - 1, "Completed is last: {events:?}");
                assert_eq!(ended.len(), started, "every block ended: {events:?}");
                let blocks: Vec<ContentBlock> = ended.values().cloned().collect();
                assert_eq!(r.content, blocks, "Completed carries the blocks");
            }
        }
    }
}

/// A weather tool spec.
pub fn weather_tool() -> weft_core::provider::ToolSpec {
    weft_core::provider::ToolSpec {
        name: "get_weather".into(),
        description: "Get the weather for a location".into(),
        input_schema: serde_json::json!({
            "type": "object",
            "properties": {"location": {"type": "string"}},
            "required": ["location"]
        }),
    }
}

/// A message with blocks.
pub fn msg(role: Role, content: Vec<ContentBlock>) -> Message {
    Message::new(BranchId::main(), role, content)
}

/// A text message.
pub fn text(role: Role, t: &str) -> Message {
    Message::text(BranchId::main(), role, t)
}

/// A conversation that went through one round of tool calls: system,
/// prompt, the assistant's thinking + text + two calls, both results.
pub fn tool_round_trip() -> Vec<Message> {
    vec![
        text(Role::System, "You are terse."),
        text(Role::User, "Weather in SF and Paris?"),
        msg(
            Role::Assistant,
            vec![
                ContentBlock::Thinking {
                    thinking: "Two lookups.".into(),
                    signature: Some("sig-1".into()),
                },
                ContentBlock::text("Checking."),
                ContentBlock::ToolCall {
                    id: "call_1".into(),
                    name: "get_weather".into(),
                    arguments: serde_json::json!({"location": "SF"}),
                },
                ContentBlock::ToolCall {
                    id: "call_2".into(),
                    name: "get_weather".into(),
                    arguments: serde_json::json!({"location": "Paris"}),
                },
            ],
        ),
        msg(
            Role::Tool,
            vec![ContentBlock::ToolResult {
                call_id: "call_1".into(),
                output: "fog, 14C".into(),
                is_error: false,
            }],
        ),
        msg(
            Role::Tool,
            vec![ContentBlock::ToolResult {
                call_id: "call_2".into(),
                output: "no data".into(),
                is_error: true,
            }],
        ),
    ]
}

/// The Anthropic key the session-level tests put in the environment (a
/// secret-looking value, so a leak into a record or a log is visible).
pub const ANTHROPIC_KEY: &str = "sk-test-SECRET-anthropic-e2e";
/// The OpenAI key the session-level tests put in the environment.
pub const OPENAI_KEY: &str = "sk-test-SECRET-openai-e2e";

/// Sets the keys once, before any test of the binary builds a runtime
/// (every test calls it first), so no thread reads the environment while
/// it is written.
pub fn keys_in_env() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: runs once, before any other code of the calling tests;
        // the other tests wait on `ONCE` before doing anything.
        unsafe {
            std::env::set_var("ANTHROPIC_API_KEY", ANTHROPIC_KEY);
            std::env::set_var("OPENAI_API_KEY", OPENAI_KEY);
            std::env::remove_var("OLLAMA_HOST");
        }
    });
}

/// A two-worker runtime for a session-level test.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}
