//! The API's contract: what a daemon running one mount plan accepts
//! (issue 9, finding 20), and what `/openapi.json` declares (finding 19;
//! scripts/schemathesis checks the document against a live daemon).

mod common;

use common::{Server, echo, start};
use serde_json::json;
use weft_core::store::ListQuery;
use weft_server::{ROUTES, StaticPlanSource};

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
            "agent: this daemon runs one mount plan (echo); leave out agent or pass echo or one of its agents (helper, assistant)"
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

#[tokio::test]
async fn openapi_document_matches_the_api() {
    let s = start(one_plan()).await;
    let (status, doc) = s.get("/openapi.json").await;
    assert_eq!(status, 200);
    // The token is optional: a tokenless daemon needs no Authorization.
    let security = doc["security"].as_array().expect("security");
    assert!(security.contains(&json!({})), "{security:?}");
    assert!(security.contains(&json!({"bearer": []})), "{security:?}");
    for (method, path) in ROUTES {
        let op = &doc["paths"][path][method];
        // The perimeter, the token check and the store can answer any route.
        for code in ["401", "403", "421", "500"] {
            assert!(
                op["responses"][code].is_object(),
                "{method} {path} does not document {code}"
            );
        }
        if let Some(body) = op["requestBody"].as_object() {
            assert!(
                body["content"]["application/json"].is_object(),
                "{method} {path}"
            );
            for code in ["400", "413", "415", "422"] {
                assert!(
                    op["responses"][code].is_object(),
                    "{method} {path} does not document {code}"
                );
            }
        }
        if path.contains("{id}") {
            let id = op["parameters"]
                .as_array()
                .expect("parameters")
                .iter()
                .find(|p| p["name"] == "id")
                .expect("id parameter");
            assert!(id["schema"]["pattern"].is_string(), "{method} {path}");
            assert!(op["responses"]["400"].is_object(), "{method} {path}");
        }
    }
    // A body whose fields are all optional may be left out (it counts as
    // `{}`); one with a required field may not.
    let body = |path: &str| doc["paths"][path]["post"]["requestBody"]["required"].clone();
    assert_eq!(body("/api/v1/sessions/"), json!(false));
    assert_eq!(body("/api/v1/sessions/cleanup"), json!(false));
    assert_eq!(body("/api/v1/sessions/{id}/fail"), json!(true));
    assert_eq!(body("/api/v1/sessions/{id}/messages"), json!(true));
    // Message content is a string or content blocks, as sent; usage may be
    // null.
    let message = &doc["components"]["schemas"]["TranscriptMessage"]["properties"];
    let content = message["content"]["oneOf"].as_array().expect("oneOf");
    assert_eq!(content[0]["type"], "string");
    assert_eq!(content[1]["type"], "array");
    assert_eq!(
        content[1]["items"]["$ref"],
        "#/components/schemas/ContentBlock"
    );
    let usage = message["usage"]["oneOf"]
        .as_array()
        .expect("nullable usage");
    assert!(usage.contains(&json!({"type": "null"})), "{usage:?}");
}

#[tokio::test]
async fn transcript_content_is_sent_as_documented() {
    let s = start(one_plan()).await;
    let (status, body) = s.post("/run", json!({"message": "hi"})).await;
    assert_eq!(status, 200, "{body}");
    let sid = body["session_id"].as_str().expect("session_id").to_string();
    let messages = s.transcript(&sid).await;
    assert_eq!(messages.len(), 2);
    for m in &messages {
        // A text-only message's content is a string, and usage is an object
        // or null.
        assert!(m["content"].is_string(), "{m}");
        assert!(m["usage"].is_null() || m["usage"].is_object(), "{m}");
    }
    assert!(messages[0]["usage"].is_null(), "{}", messages[0]);
}
