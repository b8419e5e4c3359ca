//! Test support for weft's daemon, shared by its in-process API tests
//! (`weft-server/tests`) and the end-to-end tests of the `weft` binary
//! (`weft-cli/tests`).
//!
//! It owns the client side of the HTTP API: [`Api`], a JSON client of a
//! daemon at a base URL (with the session helpers both suites repeat:
//! create, start, wait until idle, read a transcript, replay the log over
//! SSE), [`SseClient`], a reader of `text/event-stream` responses, and the
//! small body helpers ([`split`], [`detail`], [`texts`], [`message_seq`]).
//!
//! It must not know how the daemon under test was started: it speaks HTTP
//! to an address, so it depends on no weft crate. Starting an in-process
//! router or a `weft serve` process stays in each suite's support module.
//! Helpers panic on transport errors, as test helpers do.

mod api;
mod sse;

pub use api::{Api, session_path};
pub use sse::{SseClient, SseEvent};

use serde_json::Value;

/// The fields every session body of the amplifierd API carries.
pub const SESSION_FIELDS: &[&str] = &[
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
];

/// A plain-HTTP client. reqwest is built with rustls but no crypto
/// provider, and rustls needs one installed even for `http://`.
pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// The status and body of `r`: the body as JSON, as a string when it is
/// not JSON, and `Null` when it is empty.
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

/// The `detail` of an error body (empty if none).
pub fn detail(body: &Value) -> &str {
    body["detail"].as_str().unwrap_or("")
}

/// The `content` of each transcript message.
pub fn texts(messages: &[Value]) -> Vec<Value> {
    messages.iter().map(|m| m["content"].clone()).collect()
}

/// The `seq` of the first message in `messages` (a `/messages` body) with
/// this `content` and `role`; panics if there is none.
pub fn message_seq(messages: &Value, content: &str, role: &str) -> u64 {
    messages
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|m| m["content"] == content && m["role"] == role)
                .and_then(|m| m["seq"].as_u64())
        })
        .unwrap_or_else(|| panic!("no {role} message {content:?} in {messages}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn detail_and_texts_read_their_fields() {
        assert_eq!(detail(&json!({"detail": "bad"})), "bad");
        assert_eq!(detail(&json!({})), "");
        let messages = [json!({"content": "a"}), json!({"content": [1]})];
        assert_eq!(texts(&messages), vec![json!("a"), json!([1])]);
    }

    #[test]
    fn message_seq_finds_by_content_and_role() {
        let all = json!([
            {"content": "hi", "role": "user", "seq": 2},
            {"content": "hi", "role": "assistant", "seq": 3}
        ]);
        assert_eq!(message_seq(&all, "hi", "assistant"), 3);
        assert_eq!(message_seq(&all, "hi", "user"), 2);
    }

    #[test]
    #[should_panic(expected = "no user message")]
    fn message_seq_panics_when_missing() {
        message_seq(&json!([]), "hi", "user");
    }
}
