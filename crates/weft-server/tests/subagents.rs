//! Sub-agents through the daemon (issue 13): a turn that delegates with
//! the `task` tool; the child's kernel events reach the parent's stream
//! tagged `child_session_id`, its records do not; `GET
//! /api/v1/sessions/{id}/children` lists the child in the sessions list's
//! shape, with Amplifier's `config` / `agent_overlay` in its metadata.

mod common;

use common::*;
use serde_json::{Value, json};

#[tokio::test]
async fn a_delegating_turn_streams_the_childs_events_and_lists_the_child() {
    let s = start(delegating_plans()).await;
    let id = s.active().await;
    let mut stream = s.stream(&id, None).await;
    stream.next().await.expect("connected");
    let (status, body) = s
        .post(
            &format!("{}/send-message", base(&id)),
            json!({"content": "delegate please"}),
        )
        .await;
    assert!(status < 300, "{body}");
    let events = stream
        .until(|e| e.event == "execution:end" && e.data.get("child_session_id").is_none())
        .await;
    s.wait_idle(&id).await;

    // The child, as the children route lists it.
    let (status, children) = s.get(&format!("{}/children", base(&id))).await;
    assert_eq!(status, 200, "{children}");
    let children = children.as_array().expect("a list").clone();
    assert_eq!(children.len(), 1, "{children:?}");
    let child = &children[0];
    for &key in SESSION_FIELDS {
        assert!(child.get(key).is_some(), "missing {key} in {child}");
    }
    assert_eq!(child["parentSessionId"], id.as_str());
    assert_eq!(child["agentName"], "helper");
    assert_eq!(child["metadata"]["agent_overlay"]["description"], "helps");
    assert!(child["metadata"]["config"].is_object(), "{child}");
    let child_id = child["sessionId"].as_str().expect("id").to_string();
    // The same item as the sessions list and the session route give.
    let (_, shown) = s.get(&base(&child_id)).await;
    assert_eq!(shown["sessionId"], child_id.as_str());
    assert_eq!(shown["metadata"], child["metadata"]);

    // The child's kernel events came tagged with its id; the parent's own
    // events are untagged.
    let tagged: Vec<&SseEvent> = events
        .iter()
        .filter(|e| e.data.get("child_session_id").is_some())
        .collect();
    assert!(
        tagged.iter().any(
            |e| e.event == "execution:start" && e.data["child_session_id"] == child_id.as_str()
        ),
        "{events:?}"
    );
    for e in &tagged {
        assert_eq!(e.data["child_session_id"], child_id.as_str(), "{e:?}");
        assert_eq!(e.data["session_id"], child_id.as_str(), "{e:?}");
        assert_eq!(e.id, None, "events carry no record id: {e:?}");
    }
    assert!(
        events
            .iter()
            .any(|e| e.event == "execution:start" && e.data.get("child_session_id").is_none()),
        "{events:?}"
    );
    // Records on the parent's stream are the parent's: the child's
    // "look around" prompt is not among them.
    let user_records: Vec<&Value> = events
        .iter()
        .filter(|e| e.event == "message" && e.data["kind"]["data"]["role"] == "user")
        .map(|e| &e.data)
        .collect();
    assert_eq!(user_records.len(), 1, "{user_records:?}");

    // The parent's tool result names the child and records the structured
    // result.
    let transcript = s.transcript(&id).await;
    let tool = transcript
        .iter()
        .find(|m| m["role"] == "tool")
        .expect("a tool message");
    let text = tool.to_string();
    assert!(text.contains(&child_id), "{tool}");
    let record = s
        .store
        .read_all(&weft_core::SessionId::parse(&id).expect("id"))
        .await
        .expect("log");
    let data = record
        .iter()
        .find_map(|r| match &r.kind {
            weft_core::record::RecordKind::Message(m) => {
                m.metadata.get(weft_core::message::META_TOOL_DATA).cloned()
            }
            _ => None,
        })
        .expect("the structured result is recorded");
    assert_eq!(
        data,
        json!({"session_id": child_id, "agent": "helper", "response": "look around", "status": "completed"})
    );
}

#[tokio::test]
async fn children_of_unknown_or_childless_sessions() {
    let s = start(delegating_plans()).await;
    let id = s.create().await;
    let (status, body) = s.get(&format!("{}/children", base(&id))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!([]));
    let (status, body) = s
        .get(&format!("{}/children", base("no-such-session")))
        .await;
    assert_eq!(status, 404, "{body}");
    assert!(detail(&body).contains("no-such-session"), "{body}");
    let (status, body) = s.get(&format!("{}/children?limit=0", base(&id))).await;
    assert_eq!(status, 422, "{body}");
}
