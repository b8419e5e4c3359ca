//! The daemon keeps transcript answers while a session's log is unchanged:
//! a write by another writer of the same store (a CLI), a message through
//! the API, a deleted session — each shows in the very next answer.

mod common;

use common::*;
use serde_json::json;

fn contents(transcript: &[serde_json::Value]) -> Vec<String> {
    transcript
        .iter()
        .map(|m| m["content"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test]
async fn answers_follow_every_write() {
    let s = start(echo_plans()).await;
    let id = s.active().await;
    let path = format!("/api/v1/sessions/{id}/messages");
    let (status, body) = s.post(&path, json!({"content": "one"})).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(contents(&s.transcript(&id).await), ["one"]);
    // Asked twice: the same answer.
    assert_eq!(contents(&s.transcript(&id).await), ["one"]);

    // Another writer of the store, behind the daemon's back.
    s.outside_message(&id, "two").await;
    assert_eq!(contents(&s.transcript(&id).await), ["one", "two"]);

    // Each limit is an answer of its own, and follows the log too.
    let limited = format!("/api/v1/sessions/{id}/transcript?limit=1");
    let (_, last) = s.get(&limited).await;
    assert_eq!(last[0]["content"], "two");
    let (status, _) = s.post(&path, json!({"content": "three"})).await;
    assert_eq!(status, 201);
    let (_, last) = s.get(&limited).await;
    assert_eq!(last[0]["content"], "three");
    assert_eq!(contents(&s.transcript(&id).await), ["one", "two", "three"]);

    // A deleted session answers 404, not its last transcript.
    let (status, _) = s.delete(&format!("/api/v1/sessions/{id}")).await;
    assert!((200..300).contains(&status), "{status}");
    let (status, body) = s.get(&format!("/api/v1/sessions/{id}/transcript")).await;
    assert_eq!(status, 404, "{body}");
    s.stop().await;
}
