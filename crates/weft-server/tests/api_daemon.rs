//! The daemon's API in process, part two: agentkernel's endpoints, provider
//! failures, token auth, the OpenAPI document's coverage of every route, and
//! graceful shutdown. (Sessions, lifecycle, SSE and multitask are in
//! `api.rs`.)

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use weft_server::{ROUTES, ServerConfig, StaticPlanSource};

#[tokio::test]
async fn agentkernel_run_chat_agents_health() {
    let s = start(StaticPlanSource::new(
        "base",
        scripted(json!([{"text": "first result"}, {"text": "second result"}])),
    ))
    .await;
    let (status, body) = s.post("/run", json!({"message": "do it"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], "first result");
    let sid = body["session_id"].as_str().expect("session_id").to_string();
    // Same session: the conversation continues.
    let (status, body) = s
        .post(
            "/api/v1/chat",
            json!({"prompt": "again", "session_id": sid}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], "second result");
    assert_eq!(s.transcript(&sid).await.len(), 4);
    // A new id is created on demand; a sub-agent is recorded.
    let (status, body) = s
        .post(
            "/run",
            json!({"prompt": "hi", "session_id": "my-session-1", "agent": "helper"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["session_id"], "my-session-1");
    let (_, info) = s.get("/api/v1/sessions/my-session-1").await;
    assert_eq!(info["agentName"], "helper");
    assert_eq!(info["status"], "active");
    // Errors.
    let (status, body) = s.post("/run", json!({"agent": "x"})).await;
    assert_eq!(status, 422, "{body}");
    assert!(body["detail"].as_str().expect("detail").contains("message"));
    let (status, body) = s.post("/api/v1/chat", json!({"agent": "base"})).await;
    assert_eq!(status, 422, "{body}");
    assert!(detail(&body).contains("prompt"), "{body}");
    let (status, body) = s
        .post("/run", json!({"message": "x", "agent": "nobody"}))
        .await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = s
        .post("/run", json!({"message": "x", "session_id": "../etc"}))
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .expect("detail")
            .contains("session_id")
    );
    let (status, agents) = s.get("/api/v1/agents").await;
    assert_eq!(status, 200);
    let agents = agents.as_array().expect("array");
    assert!(
        agents
            .iter()
            .any(|a| a["name"] == "helper" && a["kind"] == "agent")
    );
    assert!(
        agents
            .iter()
            .any(|a| a["name"] == "base" && a["kind"] == "profile")
    );
    let (status, health) = s.get("/health").await;
    assert_eq!(status, 200);
    assert_eq!(health["status"], "ok");
    assert_eq!(health["store"], "memory");
    let (status, profiles) = s.get("/api/v1/profiles").await;
    assert_eq!(status, 200);
    assert!(
        profiles
            .as_array()
            .expect("array")
            .iter()
            .any(|p| p["name"] == "dev")
    );
}

#[tokio::test]
async fn provider_failure_reports_and_keeps_the_session_active() {
    let s = start(StaticPlanSource::new(
        "base",
        scripted(json!([{"error": "the model fell over"}])),
    ))
    .await;
    let (status, body) = s
        .post("/run", json!({"message": "x", "session_id": "f1"}))
        .await;
    assert_eq!(status, 502, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .expect("detail")
            .contains("fell over")
    );
    assert_eq!(s.status_of("f1").await, "active");
}

#[tokio::test]
async fn token_is_required_and_checked() {
    let config = ServerConfig {
        token: Some("s3cret".into()),
        ..Default::default()
    };
    let s = start_with(echo_plans(), config).await;
    let (status, body) = s.get("/health").await;
    assert_eq!(status, 401, "{body}");
    assert!(body["detail"].is_string());
    let r = s
        .client
        .get(s.url("/health"))
        .bearer_auth("wrong")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 401);
    let r = s
        .client
        .get(s.url("/api/v1/sessions/"))
        .bearer_auth("s3cret")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 200);
}

#[tokio::test]
async fn openapi_documents_every_route() {
    let s = start(echo_plans()).await;
    let (status, doc) = s.get("/openapi.json").await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].is_string());
    for (method, path) in ROUTES {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} is not in /openapi.json"
        );
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}

#[tokio::test]
async fn shutdown_cancels_turns_records_them_and_ends_streams() {
    let mut s = start(slow_plans(30_000)).await;
    let id = s.active().await;
    let mut stream = s.stream(&id, None).await;
    stream.next().await.expect("connected");
    s.post(
        &format!("/api/v1/sessions/{id}/send-message"),
        json!({"content": "long job"}),
    )
    .await;
    stream.until(|e| e.event == "provider:request").await;
    let started = Instant::now();
    if let Some(tx) = s.shutdown.take() {
        let _ = tx.send(());
    }
    let events = stream.until(|e| e.event == "shutdown").await;
    assert!(
        events
            .iter()
            .any(|e| e.event == "execution:end" && e.data["status"] == "cancelled"),
        "{events:?}"
    );
    let result = tokio::time::timeout(Duration::from_secs(15), &mut s.handle)
        .await
        .expect("the server stops")
        .expect("task");
    assert!(result.is_ok(), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // The partial turn is in the store.
    let sid = weft_core::SessionId::parse(id.as_str()).expect("id");
    let view = s.store.view(&sid).await.expect("view");
    let texts: Vec<String> = view
        .messages("main")
        .iter()
        .map(|m| m.text_content())
        .collect();
    assert_eq!(texts, vec!["long job".to_string()]);
}
