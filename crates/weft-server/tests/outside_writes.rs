//! `POST …/messages` appends from what the daemon's own last write left
//! (no read of the session first); a write by another writer of the same
//! store in between (a CLI, another daemon) must still be taken into
//! account: the message follows it, a session ended behind the daemon's
//! back refuses it, and a moved default branch receives it.

mod common;

use common::*;
use serde_json::json;
use weft_core::BranchId;
use weft_core::SessionId;
use weft_core::record::RecordKind;
use weft_core::session::SessionStatus;
use weft_core::store::{append_at_head, transition_batch};

/// A server with an active session that has a branch `side`; returns the
/// session's id and API path.
async fn with_side_branch() -> (Server, String, String) {
    let s = start(echo_plans()).await;
    let id = s.active().await;
    let base = format!("/api/v1/sessions/{id}");
    let (status, made) = s
        .post(&format!("{base}/branches"), json!({"name": "side"}))
        .await;
    assert_eq!(status, 201, "{made}");
    (s, id, base)
}

/// Completes session `id` as another writer of the store would.
async fn complete_outside(s: &Server, id: &str) {
    let sid = SessionId::parse(id).expect("id");
    append_at_head(s.store.as_ref(), &sid, |meta| {
        transition_batch(meta, SessionStatus::Completed, None, None, |m| {
            format!("cannot complete a {} session", m.status)
        })
    })
    .await
    .expect("complete");
}

/// Makes `branch` session `id`'s default as another writer would.
async fn move_default_outside(s: &Server, id: &str, branch: &str) {
    let sid = SessionId::parse(id).expect("id");
    append_at_head(s.store.as_ref(), &sid, |_| {
        Ok(vec![RecordKind::DefaultBranch {
            branch: BranchId::parse(branch).expect("branch"),
        }])
    })
    .await
    .expect("move the default");
}

#[tokio::test]
async fn a_message_follows_what_another_writer_appended() {
    let s = start(echo_plans()).await;
    let id = s.active().await;
    let path = format!("/api/v1/sessions/{id}/messages");
    let (status, first) = s.post(&path, json!({"content": "one"})).await;
    assert_eq!(status, 201, "{first}");
    s.outside_message(&id, "two").await;
    s.outside_message(&id, "three").await;
    let (status, fourth) = s.post(&path, json!({"content": "four"})).await;
    assert_eq!(status, 201, "{fourth}");
    assert_eq!(fourth["seq"], first["seq"].as_u64().expect("seq") + 3);
    let texts: Vec<_> = s
        .transcript(&id)
        .await
        .iter()
        .map(|m| m["content"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(texts, ["one", "two", "three", "four"]);
    s.stop().await;
}

#[tokio::test]
async fn a_session_ended_behind_the_daemons_back_refuses_messages() {
    let s = start(echo_plans()).await;
    let id = s.active().await;
    let path = format!("/api/v1/sessions/{id}/messages");
    let (status, body) = s.post(&path, json!({"content": "one"})).await;
    assert_eq!(status, 201, "{body}");
    complete_outside(&s, &id).await;
    let (status, body) = s.post(&path, json!({"content": "two"})).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body.to_string().contains("completed"),
        "the refusal names the status: {body}"
    );
    assert_eq!(s.transcript(&id).await.len(), 1, "nothing was appended");
    s.stop().await;
}

#[tokio::test]
async fn a_moved_default_branch_receives_the_message() {
    let (s, id, base) = with_side_branch().await;
    let (status, body) = s
        .post(&format!("{base}/messages"), json!({"content": "on main"}))
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["branch"], "main");
    move_default_outside(&s, &id, "side").await;
    let (status, body) = s
        .post(&format!("{base}/messages"), json!({"content": "on side"}))
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["branch"], "side", "{body}");
    let (status, side) = s.get(&format!("{base}/transcript?branch=side")).await;
    assert_eq!(status, 200, "{side}");
    let last = side.as_array().and_then(|m| m.last()).expect("a message");
    assert_eq!(last["content"], "on side");
    s.stop().await;
}

/// Once another writer has been seen, the daemon appends where the head
/// is, guarded by what it saw last (`Store::append_guarded`): messages
/// interleave with the other writer's in order, a default branch moved
/// behind its back receives them, and a session ended behind its back
/// refuses them.
#[tokio::test]
async fn while_another_writer_keeps_writing_messages_follow_the_head() {
    let (s, id, base) = with_side_branch().await;
    let (status, first) = s
        .post(&format!("{base}/messages"), json!({"content": "one"}))
        .await;
    assert_eq!(status, 201, "{first}");
    let mut seq = first["seq"].as_u64().expect("seq");
    let mut want = vec!["one".to_string()];
    for i in 0..4 {
        s.outside_message(&id, &format!("outside {i}")).await;
        let (status, body) = s
            .post(
                &format!("{base}/messages"),
                json!({"content": format!("daemon {i}")}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["seq"].as_u64(), Some(seq + 2), "{body}");
        assert_eq!(body["branch"], "main", "{body}");
        seq += 2;
        want.extend([format!("outside {i}"), format!("daemon {i}")]);
    }
    let texts: Vec<String> = s
        .transcript(&id)
        .await
        .iter()
        .map(|m| m["content"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(texts, want);
    move_default_outside(&s, &id, "side").await;
    let (status, body) = s
        .post(&format!("{base}/messages"), json!({"content": "on side"}))
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["branch"], "side", "{body}");
    s.outside_message(&id, "outside again").await;
    complete_outside(&s, &id).await;
    let (status, body) = s
        .post(&format!("{base}/messages"), json!({"content": "late"}))
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(body.to_string().contains("completed"), "{body}");
    let (status, side) = s.get(&format!("{base}/transcript?branch=side")).await;
    assert_eq!(status, 200, "{side}");
    let texts: Vec<&str> = side
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["content"].as_str())
        .collect();
    assert_eq!(texts.last().copied(), Some("outside again"), "{side}");
    assert!(
        texts.contains(&"on side") && !texts.contains(&"late"),
        "{side}"
    );
    s.stop().await;
}
