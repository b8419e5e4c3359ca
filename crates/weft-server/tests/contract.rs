//! The API's contract: what a daemon running one mount plan accepts
//! (issue 9, finding 20), and what `/openapi.json` declares (finding 19;
//! scripts/schemathesis checks the document against a live daemon).

mod common;

use common::{Server, echo, start};
use serde_json::json;
use weft_core::store::ListQuery;
use weft_server::StaticPlanSource;

async fn session_count(s: &Server) -> usize {
    let query = ListQuery {
        limit: 500,
        ..Default::default()
    };
    s.store.list(&query).await.expect("list").sessions.len()
}

/// A daemon like `weft serve --mount-plan echo.yaml`: one plan, named
/// `echo`, with a sub-agent `helper`.
fn one_plan() -> StaticPlanSource {
    StaticPlanSource::new("echo", echo()).fixed()
}

#[tokio::test]
async fn one_mount_plan_refuses_another_profile_name() {
    let s = start(one_plan()).await;
    for asked in ["../../etc/passwd", "base", "dev", ""] {
        let (status, body) = s
            .post("/api/v1/sessions/", json!({"profileName": asked}))
            .await;
        assert_eq!(status, 422, "profileName {asked:?}: {body}");
        assert_eq!(
            body["detail"],
            "profileName: this daemon runs one mount plan (echo); leave out profileName or pass echo"
        );
    }
    assert_eq!(session_count(&s).await, 0);
    // Its own name, or none, is fine.
    for body in [json!({"profileName": "echo"}), json!({})] {
        let (status, info) = s.post("/api/v1/sessions/", body).await;
        assert_eq!(status, 201, "{info}");
        assert_eq!(info["profileName"], "echo");
    }
}

#[tokio::test]
async fn one_mount_plan_refuses_another_agent() {
    let s = start(one_plan()).await;
    for path in ["/run", "/api/v1/chat"] {
        let (status, body) = s
            .post(
                path,
                json!({"message": "hi", "prompt": "hi", "agent": "nope"}),
            )
            .await;
        assert_eq!(status, 422, "{path}: {body}");
        assert_eq!(
            body["detail"],
            "agent: this daemon runs one mount plan (echo); leave out agent or pass echo or one of its agents (helper)"
        );
    }
    assert_eq!(session_count(&s).await, 0);
    // The plan's name runs the plan; its sub-agent runs as that agent.
    let (status, body) = s
        .post("/run", json!({"message": "hi", "agent": "echo"}))
        .await;
    assert_eq!(status, 200, "{body}");
    let sid = body["session_id"].as_str().expect("session_id").to_string();
    let (_, info) = s.get(&format!("/api/v1/sessions/{sid}")).await;
    assert_eq!(info["profileName"], "echo");
    assert!(info["agentName"].is_null(), "{info}");
    let (status, body) = s
        .post("/run", json!({"message": "hi", "agent": "helper"}))
        .await;
    assert_eq!(status, 200, "{body}");
    let sid = body["session_id"].as_str().expect("session_id").to_string();
    let (_, info) = s.get(&format!("/api/v1/sessions/{sid}")).await;
    assert_eq!(info["profileName"], "echo");
    assert_eq!(info["agentName"], "helper");
}
