//! Structured output over the API: `response_format` on `/run`,
//! `responseFormat` on `send-message` and `execute` (the validated value
//! as `structured` in the answer, the `done` event and the transcript),
//! 422 for an invalid schema before any turn, a 502 with one clear
//! sentence when the answer is still invalid after one repair, and the
//! fields in `/openapi.json`. The provider echoes the prompt, so a JSON
//! prompt is a valid answer and anything else an invalid one.

mod common;

use common::*;
use serde_json::{Value, json};

fn schema() -> Value {
    json!({
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"]
    })
}

const ADA: &str = r#"{"name":"Ada","age":36}"#;

#[tokio::test]
async fn run_returns_the_validated_value_and_stores_it() {
    let s = start(echo_plans()).await;
    let (status, body) = s
        .post(
            "/run",
            json!({"message": ADA, "response_format": {"name": "person", "schema": schema(), "strict": true}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["structured"], json!({"name": "Ada", "age": 36}));
    assert_eq!(body["result"], ADA);
    let sid = body["session_id"].as_str().expect("session_id").to_string();
    let messages = s.transcript(&sid).await;
    assert_eq!(messages.len(), 2);
    assert!(messages[0].get("structured").is_none(), "{}", messages[0]);
    assert_eq!(messages[1]["structured"], json!({"name": "Ada", "age": 36}));
    // agentkernel's chat takes it too.
    let (status, body) = s
        .post(
            "/api/v1/chat",
            json!({"prompt": ADA, "response_format": schema()}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["structured"], json!({"name": "Ada", "age": 36}));
    // Without a format: no `structured` anywhere.
    let (status, body) = s.post("/run", json!({"message": "plain"})).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("structured").is_none(), "{body}");
}

#[tokio::test]
async fn an_invalid_schema_is_a_422_before_any_turn() {
    let s = start(echo_plans()).await;
    let (status, body) = s
        .post(
            "/run",
            json!({"message": ADA, "response_format": {"type": "integr"}}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        detail(&body)
            .starts_with("response_format: the response schema is not a valid JSON Schema"),
        "{body}"
    );
    let id = s.active().await;
    for action in ["send-message", "execute"] {
        let (status, body) = s
            .post(
                &format!("/api/v1/sessions/{id}/{action}"),
                json!({"content": ADA, "responseFormat": "not a schema"}),
            )
            .await;
        assert_eq!(status, 422, "{action}: {body}");
        assert!(detail(&body).starts_with("response_format: "), "{body}");
    }
    assert!(s.transcript(&id).await.is_empty(), "no turn ran");
}

#[tokio::test]
async fn an_answer_invalid_after_one_repair_is_a_502_with_one_sentence() {
    let s = start(echo_plans()).await;
    let (status, body) = s
        .post(
            "/run",
            json!({"message": "not json", "response_format": schema()}),
        )
        .await;
    assert_eq!(status, 502, "{body}");
    let detail = detail(&body);
    assert!(
        detail.starts_with(
            "the model's answer did not match the response schema after one repair attempt"
        ),
        "{detail}"
    );
    assert!(!detail.contains('\n'), "{detail}");
}

#[tokio::test]
async fn execute_and_send_message_carry_the_format() {
    let s = start(echo_plans()).await;
    let id = s.active().await;
    let r = s
        .client
        .post(s.url(&format!("/api/v1/sessions/{id}/execute")))
        .json(&json!({"content": ADA, "responseFormat": schema()}))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 200);
    let mut stream = SseClient::from_response(r);
    let events = stream.until(|e| e.event == "done").await;
    let done = events.last().expect("done");
    assert_eq!(done.data["status"], "completed", "{:?}", done.data);
    assert_eq!(done.data["structured"], json!({"name": "Ada", "age": 36}));

    // Invalid twice: a failed `done` naming the schema.
    let r = s
        .client
        .post(s.url(&format!("/api/v1/sessions/{id}/execute")))
        .json(&json!({"content": "no json here", "responseFormat": schema()}))
        .send()
        .await
        .expect("request");
    let events = SseClient::from_response(r)
        .until(|e| e.event == "done")
        .await;
    let done = &events.last().expect("done").data;
    assert_eq!(done["status"], "failed", "{done}");
    assert!(
        done["error"]
            .as_str()
            .is_some_and(|e| e.contains("did not match the response schema")),
        "{done}"
    );

    let (status, body) = s
        .post(
            &format!("/api/v1/sessions/{id}/send-message"),
            json!({"content": r#"{"name":"Bo","age":7}"#, "response_format": schema()}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    s.wait_idle(&id).await;
    let messages = s.transcript(&id).await;
    let last = messages.last().expect("messages");
    assert_eq!(last["role"], "assistant");
    assert_eq!(last["structured"], json!({"name": "Bo", "age": 7}));
}

#[tokio::test]
async fn openapi_documents_the_fields() {
    let s = start(echo_plans()).await;
    let (status, doc) = s.get("/openapi.json").await;
    assert_eq!(status, 200);
    let schemas = &doc["components"]["schemas"];
    for (schema, field) in [
        ("SendMessageRequest", "responseFormat"),
        ("RunRequest", "response_format"),
        ("ChatRequest", "response_format"),
        ("RunResponse", "structured"),
        ("TranscriptMessage", "structured"),
    ] {
        assert!(
            schemas[schema]["properties"][field].is_object(),
            "{schema}.{field} is not documented"
        );
    }
    let execute = &doc["paths"]["/api/v1/sessions/{id}/execute"]["post"]["responses"];
    assert!(execute["422"].is_object());
}
