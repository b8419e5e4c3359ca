//! Structured output (`Session::execute_structured`) end to end against
//! the vendor fixture servers (OpenAI `response_format: json_schema`,
//! Anthropic tool-forcing, Ollama `format`) and the scripted provider:
//! valid on the first try, valid after one repair round-trip, invalid
//! twice (a typed error), an invalid schema refused before any model call;
//! the schema sent in each vendor's exact request shape (the raw body,
//! byte for byte), the validated value stored on the assistant message.

mod common;

use std::sync::Arc;

use common::*;
use serde_json::{Value, json};
use weft_core::memory::MemoryStore;
use weft_core::message::Role;
use weft_core::mount::MountPlan;
use weft_core::registry::ModuleRegistry;
use weft_core::runtime::{Session, SessionConfig};
use weft_core::store::Store;
use weft_core::structured::ResponseFormat;
use weft_core::{SessionError, TurnRequest};

/// The schema of every test, written in the order it is sent.
fn schema() -> Value {
    json!({
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": false
    })
}

const SCHEMA_JSON: &str = r#"{"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"}},"required":["name","age"],"additionalProperties":false}"#;

fn format() -> ResponseFormat {
    ResponseFormat::named("person", schema(), true).unwrap()
}

/// A session over a memory store with one provider and no tools.
async fn session(provider: &str, config: Value) -> (Session, Arc<MemoryStore>) {
    let mut registry = ModuleRegistry::with_core_modules();
    weft_providers::register(&mut registry);
    let plan = MountPlan::from_value(json!({
        "session": {"orchestrator": "loop-basic", "context": "context-simple"},
        "providers": [{"module": provider, "config": config}],
    }))
    .unwrap()
    .plan;
    let store = Arc::new(MemoryStore::new());
    let session = Session::new(SessionConfig::new(plan, store.clone(), Arc::new(registry)));
    session.initialize().await.unwrap();
    assert!(
        session.mount_warnings().is_empty(),
        "{:?}",
        session.mount_warnings()
    );
    (session, store)
}

/// The roles and `structured` values of the default branch's messages.
async fn transcript(session: &Session) -> Vec<(Role, String, Option<Value>)> {
    let view = session.view().await.unwrap();
    view.messages("main")
        .iter()
        .map(|m| (m.role, m.text_content(), m.structured.clone()))
        .collect()
}

const ADA: &str = r#"{"name":"Ada","age":36}"#;
const OLD: &str = r#"{"name":"Ada","age":"old"}"#;
const PROMPT: &str = "Who wrote the first program?";

// ---------------------------------------------------------------- OpenAI

/// A Chat Completions stream whose content is `parts`.
fn openai_answer(parts: &[&str]) -> String {
    let chunk = |delta: Value, finish: Value| {
        format!(
            "data: {}\n\n",
            json!({"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 1741570283,
                   "model": "gpt-4o-2024-08-06", "system_fingerprint": "fp_s",
                   "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
                   "usage": null})
        )
    };
    let mut body = chunk(
        json!({"role": "assistant", "content": "", "refusal": null}),
        Value::Null,
    );
    for p in parts {
        body.push_str(&chunk(json!({"content": p}), Value::Null));
    }
    body.push_str(&chunk(json!({}), json!("stop")));
    body.push_str("data: {\"id\":\"chatcmpl-s\",\"object\":\"chat.completion.chunk\",\"created\":1741570283,\"model\":\"gpt-4o-2024-08-06\",\"choices\":[],\"usage\":{\"prompt_tokens\":90,\"completion_tokens\":9,\"total_tokens\":99}}\n\n");
    body.push_str("data: [DONE]\n\n");
    body
}

async fn openai_session(fx: &Fixture) -> (Session, Arc<MemoryStore>) {
    session(
        "provider-openai",
        json!({"base_url": format!("{}/v1", fx.base), "model": "gpt-test", "retry_base_ms": 5}),
    )
    .await
}

#[test]
fn openai_valid_on_the_first_try_in_the_json_schema_shape() {
    keys_in_env();
    runtime().block_on(async {
        let fx = Fixture::start(vec![Reply::sse(&openai_answer(&[
            "{\"name\":\"Ada\",",
            "\"age\":36}",
        ]))])
        .await;
        let (session, _) = openai_session(&fx).await;
        let answer = session.execute_structured(PROMPT, format()).await.unwrap();
        assert_eq!(answer.value, json!({"name": "Ada", "age": 36}));
        assert_eq!(answer.text, ADA);
        let reqs = fx.requests();
        assert_eq!(reqs.len(), 1);
        assert_eq!(reqs[0].path, "/v1/chat/completions");
        assert_eq!(
            reqs[0].raw,
            format!(
                r#"{{"model":"gpt-test","messages":[{{"role":"user","content":"{PROMPT}"}}],"response_format":{{"type":"json_schema","json_schema":{{"name":"person","schema":{SCHEMA_JSON},"strict":true}}}},"stream":true,"stream_options":{{"include_usage":true}}}}"#
            )
        );
        assert_eq!(
            transcript(&session).await,
            vec![
                (Role::User, PROMPT.to_string(), None),
                (
                    Role::Assistant,
                    ADA.to_string(),
                    Some(json!({"name": "Ada", "age": 36}))
                ),
            ]
        );
    });
}

#[test]
fn openai_valid_after_one_repair() {
    keys_in_env();
    runtime().block_on(async {
        let fx = Fixture::start(vec![
            Reply::sse(&openai_answer(&[OLD])),
            Reply::sse(&openai_answer(&[ADA])),
        ])
        .await;
        let (session, _) = openai_session(&fx).await;
        let answer = session.execute_structured(PROMPT, format()).await.unwrap();
        assert_eq!(answer.value, json!({"name": "Ada", "age": 36}));
        let reqs = fx.requests();
        assert_eq!(reqs.len(), 2);
        let messages = reqs[1].body["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 3);
        assert_eq!(messages[1], json!({"role": "assistant", "content": OLD}));
        assert_eq!(messages[2]["role"], json!("user"));
        let repair = messages[2]["content"].as_str().unwrap();
        assert!(repair.contains("- /age: "), "{repair}");
        assert!(repair.contains("corrected JSON"), "{repair}");
        // The schema goes with the repair request too.
        assert_eq!(
            reqs[1].body["response_format"],
            reqs[0].body["response_format"]
        );
        let t = transcript(&session).await;
        let roles: Vec<Role> = t.iter().map(|(r, _, _)| *r).collect();
        assert_eq!(
            roles,
            vec![Role::User, Role::Assistant, Role::User, Role::Assistant]
        );
        assert_eq!(t[1].2, None, "the invalid answer has no structured value");
        assert_eq!(t[3].2, Some(json!({"name": "Ada", "age": 36})));
    });
}

#[test]
fn openai_invalid_twice_is_a_typed_error() {
    keys_in_env();
    runtime().block_on(async {
        let fx = Fixture::start(vec![
            Reply::sse(&openai_answer(&[OLD])),
            Reply::sse(&openai_answer(&["Ada, 36"])),
        ])
        .await;
        let (session, _) = openai_session(&fx).await;
        let err = session
            .execute_structured(PROMPT, format())
            .await
            .unwrap_err();
        match &err {
            SessionError::StructuredOutput { errors } => {
                assert_eq!(errors.len(), 1, "{errors:?}");
                assert!(errors[0].contains("not valid JSON"), "{errors:?}");
            }
            other => panic!("not a StructuredOutput error: {other:?}"),
        }
        let sentence = err.to_string();
        assert!(
            sentence.starts_with(
                "the model's answer did not match the response schema after one repair attempt"
            ),
            "{sentence}"
        );
        assert!(!sentence.contains('\n'), "{sentence}");
        assert_eq!(fx.requests().len(), 2, "one repair, no more");
        // The session goes on.
        fx.push(Reply::sse(&openai_answer(&[ADA])));
        let answer = session.execute_structured(PROMPT, format()).await.unwrap();
        assert_eq!(answer.value["age"], json!(36));
    });
}

#[test]
fn an_invalid_schema_is_refused_before_any_model_call() {
    keys_in_env();
    runtime().block_on(async {
        let fx = Fixture::start(vec![Reply::sse(&openai_answer(&[ADA]))]).await;
        let (session, _) = openai_session(&fx).await;
        let bad = ResponseFormat {
            name: "person".into(),
            schema: json!({"type": "object", "properties": {"age": {"type": "integr"}}}),
            strict: false,
        };
        let err = session
            .execute_with(TurnRequest::new(PROMPT).with_response_format(Some(bad)))
            .await
            .unwrap_err();
        assert!(matches!(err, SessionError::InvalidSchema(_)), "{err:?}");
        assert!(
            err.to_string()
                .starts_with("the response schema is not a valid JSON Schema"),
            "{err}"
        );
        assert!(fx.requests().is_empty());
        assert!(transcript(&session).await.is_empty());
    });
}

// ------------------------------------------------------------- Anthropic

/// A Messages stream whose only block is a call of `tool` with the input
/// `parts` (as `input_json_delta`s).
fn anthropic_answer(tool: &str, parts: &[&str]) -> String {
    let mut body = String::from(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_s\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-sonnet-4-5-20250929\",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":412,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":0,\"output_tokens\":1}}}\n\n",
    );
    body.push_str(&format!(
        "event: content_block_start\ndata: {}\n\n",
        json!({"type": "content_block_start", "index": 0,
               "content_block": {"type": "tool_use", "id": "toolu_01S", "name": tool, "input": {}}})
    ));
    for p in parts {
        body.push_str(&format!(
            "event: content_block_delta\ndata: {}\n\n",
            json!({"type": "content_block_delta", "index": 0,
                   "delta": {"type": "input_json_delta", "partial_json": p}})
        ));
    }
    body.push_str(
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    );
    body.push_str("event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":25}}\n\n");
    body.push_str("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
    body
}

async fn anthropic_session(fx: &Fixture) -> (Session, Arc<MemoryStore>) {
    session(
        "provider-anthropic",
        json!({"base_url": fx.base, "model": "claude-test", "retry_base_ms": 5}),
    )
    .await
}

#[test]
fn anthropic_forces_the_answer_tool_and_its_input_is_the_answer() {
    keys_in_env();
    runtime().block_on(async {
        let fx = Fixture::start(vec![Reply::sse(&anthropic_answer(
            "person",
            &["{\"name\": \"Ada\", ", "\"age\": 36}"],
        ))])
        .await;
        let (session, store) = anthropic_session(&fx).await;
        let answer = session.execute_structured(PROMPT, format()).await.unwrap();
        assert_eq!(answer.value, json!({"name": "Ada", "age": 36}));
        assert_eq!(answer.text, ADA);
        let reqs = fx.requests();
        assert_eq!(reqs.len(), 1);
        assert_eq!(reqs[0].path, "/v1/messages");
        assert_eq!(
            reqs[0].raw,
            format!(
                r#"{{"model":"claude-test","max_tokens":8192,"messages":[{{"role":"user","content":[{{"type":"text","text":"{PROMPT}","cache_control":{{"type":"ephemeral"}}}}]}}],"tools":[{{"name":"person","description":"Give your final answer as this tool's input: it must match the input schema exactly.","input_schema":{SCHEMA_JSON},"cache_control":{{"type":"ephemeral"}}}}],"tool_choice":{{"type":"tool","name":"person"}},"stream":true}}"#
            )
        );
        // The forced call is the answer, never run as a tool: no tool
        // call, no tool result in the log.
        let t = transcript(&session).await;
        assert_eq!(
            t,
            vec![
                (Role::User, PROMPT.to_string(), None),
                (
                    Role::Assistant,
                    ADA.to_string(),
                    Some(json!({"name": "Ada", "age": 36}))
                ),
            ]
        );
        let records = serde_json::to_string(&store.read_all(session.id()).await.unwrap()).unwrap();
        assert!(!records.contains("tool_call"), "{records}");
        assert!(!records.contains("SECRET"));
    });
}

#[test]
fn anthropic_valid_after_one_repair_and_invalid_twice() {
    keys_in_env();
    runtime().block_on(async {
        let fx = Fixture::start(vec![
            Reply::sse(&anthropic_answer("person", &[OLD])),
            Reply::sse(&anthropic_answer("person", &[ADA])),
        ])
        .await;
        let (session, _) = anthropic_session(&fx).await;
        let answer = session.execute_structured(PROMPT, format()).await.unwrap();
        assert_eq!(answer.value, json!({"name": "Ada", "age": 36}));
        let reqs = fx.requests();
        assert_eq!(reqs.len(), 2);
        let messages = reqs[1].body["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 3);
        assert_eq!(
            messages[1],
            json!({"role": "assistant", "content": [{"type": "text", "text": OLD}]})
        );
        let repair = messages[2]["content"][0]["text"].as_str().unwrap();
        assert!(repair.contains("- /age: "), "{repair}");
        assert_eq!(
            reqs[1].body["tool_choice"],
            json!({"type": "tool", "name": "person"})
        );

        // Invalid twice: the typed error, after exactly one repair.
        fx.push(Reply::sse(&anthropic_answer("person", &[OLD])));
        fx.push(Reply::sse(&anthropic_answer("person", &["{\"name\": 7}"])));
        let err = session
            .execute_structured(PROMPT, format())
            .await
            .unwrap_err();
        let SessionError::StructuredOutput { errors } = &err else {
            panic!("not a StructuredOutput error: {err:?}");
        };
        assert!(
            errors.iter().any(|e| e.starts_with("/name: ")),
            "{errors:?}"
        );
        assert!(errors.iter().any(|e| e.starts_with("/: ")), "{errors:?}");
        assert_eq!(fx.requests().len(), 4);
    });
}

// ---------------------------------------------------------------- Ollama

fn ollama_answer(parts: &[&str]) -> String {
    let mut body = String::new();
    for p in parts {
        body.push_str(
            &json!({"model": "llama3.2", "created_at": "2025-01-01T00:00:01.1Z",
                              "message": {"role": "assistant", "content": p}, "done": false})
            .to_string(),
        );
        body.push('\n');
    }
    body.push_str(r#"{"model":"llama3.2","created_at":"2025-01-01T00:00:01.3Z","message":{"role":"assistant","content":""},"done_reason":"stop","done":true,"prompt_eval_count":60,"eval_count":12}"#);
    body.push('\n');
    body
}

#[test]
fn ollama_sends_the_schema_as_format_and_repairs_once() {
    keys_in_env();
    runtime().block_on(async {
        let fx = Fixture::start(vec![
            Reply::ndjson(&ollama_answer(&["{\"name\": \"Ada\", ", "\"age\": 36}"])),
            Reply::ndjson(&ollama_answer(&[OLD])),
            Reply::ndjson(&ollama_answer(&[ADA])),
        ])
        .await;
        let (session, _) = session(
            "provider-ollama",
            json!({"base_url": fx.base, "model": "llama3.2", "retry_base_ms": 5}),
        )
        .await;
        let answer = session.execute_structured(PROMPT, format()).await.unwrap();
        assert_eq!(answer.value, json!({"name": "Ada", "age": 36}));
        let reqs = fx.requests();
        assert_eq!(reqs[0].path, "/api/chat");
        assert_eq!(
            reqs[0].raw,
            format!(
                r#"{{"model":"llama3.2","messages":[{{"role":"user","content":"{PROMPT}"}}],"format":{SCHEMA_JSON},"stream":true}}"#
            )
        );
        // Valid after one repair.
        let answer = session.execute_structured(PROMPT, format()).await.unwrap();
        assert_eq!(answer.value, json!({"name": "Ada", "age": 36}));
        assert_eq!(fx.requests().len(), 3);
    });
}

// -------------------------------------------------------------- Scripted

async fn scripted(responses: Value) -> Session {
    session("provider-scripted", json!({"responses": responses}))
        .await
        .0
}

#[test]
fn scripted_first_try_repair_and_failure() {
    runtime().block_on(async {
        let session = scripted(json!([
            {"text": ADA},
            {"text": OLD}, {"text": format!("```json\n{ADA}\n```")},
            {"text": OLD}, {"text": "{}"},
        ]))
        .await;
        let first = session.execute_structured(PROMPT, format()).await.unwrap();
        assert_eq!(first.value, json!({"name": "Ada", "age": 36}));
        let repaired = session.execute_structured(PROMPT, format()).await.unwrap();
        assert_eq!(repaired.value, json!({"name": "Ada", "age": 36}));
        let err = session
            .execute_structured(PROMPT, format())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, SessionError::StructuredOutput { errors } if errors.len() == 2),
            "{err:?}"
        );
        let t = transcript(&session).await;
        let structured: Vec<bool> = t.iter().map(|(_, _, s)| s.is_some()).collect();
        assert_eq!(
            structured,
            vec![
                false, true, false, false, false, true, false, false, false, false
            ]
        );
        // The repair messages are marked.
        let view = session.view().await.unwrap();
        let repairs = view
            .messages("main")
            .iter()
            .filter(|m| m.metadata.get("structured_repair") == Some(&json!(true)))
            .count();
        assert_eq!(repairs, 2);
    });
}
