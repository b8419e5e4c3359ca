//! [`Api`]: a JSON client of a weft daemon at a base URL, with the
//! session helpers the daemon's tests share. It knows the API's paths and
//! body fields, not how the daemon was started.

use std::time::Duration;

use reqwest::{Method, RequestBuilder};
use serde_json::{Value, json};

use crate::sse::SseClient;
use crate::{client, split, texts};

/// How many times [`Api::wait_idle`] polls, 25 ms apart.
const IDLE_POLLS: usize = 800;

/// The API path of session `id`.
pub fn session_path(id: &str) -> String {
    format!("/api/v1/sessions/{id}")
}

/// A client of the daemon at `base` (`http://host:port`), sending `token`
/// as a bearer token when there is one.
#[derive(Clone, Debug)]
pub struct Api {
    /// `http://host:port`, without a trailing slash.
    pub base: String,
    /// The HTTP client, for requests the helpers do not cover.
    pub client: reqwest::Client,
    /// The daemon's bearer token, if it requires one.
    pub token: Option<String>,
}

impl Api {
    /// A client of the daemon at `base`.
    pub fn new(base: impl Into<String>, token: Option<String>) -> Self {
        Self {
            base: base.into(),
            client: client(),
            token,
        }
    }

    /// The URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request to `path`, with the bearer token if there is one.
    pub fn req(&self, method: Method, path: &str) -> RequestBuilder {
        let r = self.client.request(method, self.url(path));
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    async fn send(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let what = format!("{method} {path}");
        let mut r = self.req(method, path);
        if let Some(body) = body {
            r = r.json(&body);
        }
        split(r.send().await.unwrap_or_else(|e| panic!("{what}: {e}"))).await
    }

    /// `GET path`: the status and JSON body (see [`split`]).
    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send(Method::GET, path, None).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(Method::POST, path, Some(body)).await
    }

    /// `PATCH path` with a JSON body.
    pub async fn patch(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(Method::PATCH, path, Some(body)).await
    }

    /// `PUT path` with a JSON body.
    pub async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(Method::PUT, path, Some(body)).await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> (u16, Value) {
        self.send(Method::DELETE, path, None).await
    }

    /// Creates a session with the defaults and returns its id.
    pub async fn create(&self) -> String {
        let (status, body) = self.post("/api/v1/sessions/", json!({})).await;
        assert_eq!(status, 201, "{body}");
        body["sessionId"].as_str().expect("sessionId").to_string()
    }

    /// Creates and starts a session and returns its id.
    pub async fn active(&self) -> String {
        let id = self.create().await;
        let (status, body) = self
            .post(&format!("{}/start", session_path(&id)), json!({}))
            .await;
        assert_eq!(status, 204, "{body}");
        id
    }

    /// The `status` of session `id` (empty if the body has none).
    pub async fn status_of(&self, id: &str) -> String {
        let (_, body) = self.get(&session_path(id)).await;
        body["status"].as_str().unwrap_or("").to_string()
    }

    /// Waits until session `id` runs no turn and queues none; panics after
    /// 800 polls.
    pub async fn wait_idle(&self, id: &str) {
        for _ in 0..IDLE_POLLS {
            let (_, body) = self.get(&session_path(id)).await;
            if body["running"] == false && body["queued"] == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("session {id} did not become idle");
    }

    /// The transcript of session `id` (its messages).
    pub async fn transcript(&self, id: &str) -> Vec<Value> {
        let (status, body) = self.get(&format!("{}/transcript", session_path(id))).await;
        assert_eq!(status, 200, "{body}");
        body.as_array().cloned().unwrap_or_default()
    }

    /// The `content` of each message of session `id`'s transcript.
    pub async fn texts(&self, id: &str) -> Vec<Value> {
        texts(&self.transcript(id).await)
    }

    /// The `content` of each message of branch `branch`'s transcript.
    pub async fn branch_texts(&self, id: &str, branch: &str) -> Vec<Value> {
        let path = format!("{}/branches/{branch}/transcript", session_path(id));
        let (status, body) = self.get(&path).await;
        assert_eq!(status, 200, "{body}");
        texts(body.as_array().expect("a transcript array"))
    }

    /// The event stream of session `id`, resumed after `last_event_id`
    /// (sent as `Last-Event-ID`) when given; the response must be a 200.
    pub async fn stream(&self, id: &str, last_event_id: Option<u64>) -> SseClient {
        let mut r = self.req(Method::GET, &format!("{}/stream", session_path(id)));
        if let Some(last) = last_event_id {
            r = r.header("Last-Event-ID", last.to_string());
        }
        let r = r.send().await.expect("stream request");
        assert_eq!(r.status().as_u16(), 200, "stream status");
        SseClient::from_response(r)
    }

    /// The ids (seqs) of every record of session `id`, replayed over SSE
    /// from the start (`Last-Event-ID: 0`) up to its current `lastSeq`.
    pub async fn replayed_seqs(&self, id: &str) -> Vec<u64> {
        let (_, session) = self.get(&session_path(id)).await;
        let last = session["lastSeq"].as_u64().expect("lastSeq");
        let mut stream = self.stream(id, Some(0)).await;
        let mut seqs = Vec::new();
        while seqs.last() != Some(&last) {
            match stream.next().await {
                Some(event) => seqs.extend(event.id),
                None => panic!("the stream ended after {seqs:?}"),
            }
        }
        seqs
    }
}
