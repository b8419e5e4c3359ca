//! The orchestrator (`loop-basic`) end to end against each provider's
//! fixture server: prompt → tool call → the tool's result sent back in the
//! vendor's exact shape → final text; with the modules built by
//! `weft_providers::register` from a mount plan, the API key read from the
//! process environment, and a check that the key reaches no stored record,
//! event or error.

mod common;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use common::*;
use serde_json::{Value, json};
use weft_core::hooks::{HookResult, events, hook_fn};
use weft_core::memory::MemoryStore;
use weft_core::message::{ContentBlock, Role};
use weft_core::mount::MountPlan;
use weft_core::registry::ModuleRegistry;
use weft_core::runtime::{Session, SessionConfig};
use weft_core::store::Store;
use weft_core::tool::{Tool, ToolContext, ToolOutput};

struct WeatherTool;

#[async_trait]
impl Tool for WeatherTool {
    fn name(&self) -> &str {
        "get_weather"
    }
    fn description(&self) -> &str {
        "Get the weather for a location"
    }
    fn input_schema(&self) -> Value {
        json!({"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]})
    }
    async fn execute(&self, input: Value, _ctx: &ToolContext) -> ToolOutput {
        match input.get("location").and_then(Value::as_str) {
            Some(place) => ToolOutput::ok(format!("sunny, 21C in {place}")),
            None => ToolOutput::error("location is required"),
        }
    }
}

type Events = Arc<Mutex<Vec<(String, Value)>>>;

/// A session over a memory store whose provider is `provider` configured
/// with `config`; returns it with the events it emits.
async fn session(provider: &str, config: Value) -> (Session, Arc<MemoryStore>, Events) {
    let mut registry = ModuleRegistry::with_core_modules();
    weft_providers::register(&mut registry);
    registry.register_tool("tool-test", |_spec, _env| {
        Ok(vec![Arc::new(WeatherTool) as Arc<dyn Tool>])
    });
    let plan = MountPlan::from_value(json!({
        "session": {"orchestrator": "loop-basic", "context": "context-simple"},
        "system": {"instruction": "You are terse."},
        "providers": [{"module": provider, "config": config}],
        "tools": ["tool-test"],
        "hooks": [{"module": "hooks-logging", "config": {"include_deltas": true}}]
    }))
    .unwrap()
    .plan;
    let store = Arc::new(MemoryStore::new());
    let session = Session::new(SessionConfig::new(plan, store.clone(), Arc::new(registry)));
    let seen: Events = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    session.hooks().register(
        "*",
        hook_fn(move |event, data| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().push((event, data));
                Ok(HookResult::proceed())
            }
        }),
        0,
        "test-recorder",
    );
    session.initialize().await.unwrap();
    assert!(
        session.mount_warnings().is_empty(),
        "{:?}",
        session.mount_warnings()
    );
    (session, store, seen)
}

/// Everything the session stored or emitted, as one string.
async fn everything(session: &Session, store: &MemoryStore, seen: &Events) -> String {
    let id = session.id();
    let records = store.read_all(id).await.unwrap();
    let meta = store.get(id).await.unwrap();
    let logged = store.read_events(id, 10_000).await.unwrap();
    format!(
        "{}\n{}\n{}\n{:?}",
        serde_json::to_string(&records).unwrap(),
        serde_json::to_string(&meta).unwrap(),
        serde_json::to_string(&logged).unwrap(),
        seen.lock().unwrap()
    )
}

/// Checks the stored transcript: prompt, the assistant's call, the result,
/// the answer.
async fn check_transcript(session: &Session, answer: &str) {
    let view = session.view().await.unwrap();
    let messages = view.messages("main");
    let roles: Vec<Role> = messages.iter().map(|m| m.role).collect();
    assert_eq!(
        roles,
        vec![Role::User, Role::Assistant, Role::Tool, Role::Assistant]
    );
    let calls = messages[1].tool_calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].1, "get_weather");
    assert_eq!(calls[0].2, &json!({"location": "Paris"}));
    assert_eq!(
        messages[2].content,
        vec![ContentBlock::ToolResult {
            call_id: calls[0].0.to_string(),
            output: "sunny, 21C in Paris".into(),
            is_error: false
        }]
    );
    assert_eq!(messages[3].text_content(), answer);
    assert!(messages[3].usage.is_some_and(|u| u.output_tokens > 0));
    let meta = session.meta().await.unwrap();
    assert!(meta.usage.input_tokens > 0 && meta.usage.output_tokens > 0);
}

fn names(seen: &Events) -> Vec<String> {
    seen.lock()
        .unwrap()
        .iter()
        .map(|(n, _)| n.clone())
        .collect()
}

const ANTHROPIC_CALL: &str = r#"event: message_start
data: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5-20250929","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":380,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Look it up."}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"SIG-abc"}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: content_block_start
data: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_e2e","name":"get_weather","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"location\": "}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"\"Paris\"}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":1}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":40}}

event: message_stop
data: {"type":"message_stop"}

"#;

const ANTHROPIC_ANSWER: &str = r#"event: message_start
data: {"type":"message_start","message":{"id":"msg_2","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5-20250929","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":20,"cache_creation_input_tokens":0,"cache_read_input_tokens":400,"output_tokens":1}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"It is sunny "}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"in Paris."}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":8}}

event: message_stop
data: {"type":"message_stop"}

"#;

#[test]
fn anthropic_end_to_end() {
    keys_in_env();
    runtime().block_on(async {
        let fx = Fixture::start(vec![
            Reply::json(
                529,
                &json!({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}),
            ),
            Reply::sse(ANTHROPIC_CALL),
            Reply::sse(ANTHROPIC_ANSWER),
        ])
        .await;
        let (session, store, seen) = session(
            "provider-anthropic",
            json!({"base_url": fx.base, "model": "claude-test", "retry_base_ms": 5}),
        )
        .await;
        let answer = session.execute("What's the weather in Paris?").await.unwrap();
        assert_eq!(answer, "It is sunny in Paris.");

        let reqs = fx.requests();
        assert_eq!(reqs.len(), 3);
        assert_eq!(reqs[1].header("x-api-key"), Some(ANTHROPIC_KEY));
        let second = &reqs[2].body;
        assert_eq!(
            second["system"],
            json!([{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}])
        );
        assert_eq!(
            second["messages"],
            json!([
                {"role": "user", "content": [{"type": "text", "text": "What's the weather in Paris?"}]},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "Look it up.", "signature": "SIG-abc"},
                    {"type": "tool_use", "id": "toolu_e2e", "name": "get_weather", "input": {"location": "Paris"}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_e2e", "content": "sunny, 21C in Paris",
                     "cache_control": {"type": "ephemeral"}}
                ]}
            ])
        );
        assert_eq!(second["tools"][0]["name"], json!("get_weather"));

        check_transcript(&session, "It is sunny in Paris.").await;
        let meta = session.meta().await.unwrap();
        assert_eq!(meta.usage.input_tokens, 400);
        assert_eq!(meta.usage.output_tokens, 48);
        assert_eq!(meta.usage.cache_read_tokens, 400);

        let names = names(&seen);
        let retry = seen
            .lock()
            .unwrap()
            .iter()
            .find(|(n, _)| n == events::PROVIDER_RETRY)
            .map(|(_, d)| d.clone())
            .expect("provider:retry was emitted");
        assert_eq!(retry["provider"], json!("anthropic"));
        assert_eq!(retry["attempt"], json!(2));
        for expected in [
            events::PROVIDER_REQUEST,
            events::THINKING_DELTA,
            events::THINKING_FINAL,
            events::CONTENT_BLOCK_START,
            events::CONTENT_BLOCK_DELTA,
            events::CONTENT_BLOCK_END,
            events::TOOL_PRE,
            events::TOOL_POST,
            events::PROVIDER_RESPONSE,
        ] {
            assert!(names.iter().any(|n| n == expected), "{expected} missing: {names:?}");
        }

        let all = everything(&session, &store, &seen).await;
        assert!(!all.contains("SECRET"), "the key leaked: {all}");
        session.cleanup().await.unwrap();
    });
}

#[test]
fn anthropic_failure_keeps_the_session_consistent() {
    keys_in_env();
    runtime().block_on(async {
        let cut = &ANTHROPIC_CALL[..ANTHROPIC_CALL.find("\"Paris").unwrap()];
        let fx = Fixture::start(vec![Reply::sse(cut), Reply::sse(ANTHROPIC_ANSWER)]).await;
        let (session, store, seen) = session(
            "provider-anthropic",
            json!({"base_url": fx.base, "retry_base_ms": 5}),
        )
        .await;
        let err = session.execute("Weather?").await.unwrap_err();
        assert!(err.to_string().contains("anthropic stream failed"), "{err}");
        // Only the prompt is stored: no half-written assistant message.
        let view = session.view().await.unwrap();
        let roles: Vec<Role> = view.messages("main").iter().map(|m| m.role).collect();
        assert_eq!(roles, vec![Role::User]);
        assert!(names(&seen).iter().any(|n| n == events::PROVIDER_ERROR));
        // The next turn works.
        let answer = session.execute("Again?").await.unwrap();
        assert_eq!(answer, "It is sunny in Paris.");
        let all = everything(&session, &store, &seen).await;
        assert!(!all.contains("SECRET"));
    });
}

const OPENAI_CALL: &str = r#"data: {"id":"chatcmpl-e2e","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_e2e","type":"function","function":{"name":"get_weather","arguments":""}}],"refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-e2e","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"locat"}}]},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-e2e","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"ion\":\"Paris\"}"}}]},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-e2e","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}],"usage":null}

data: {"id":"chatcmpl-e2e","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-2024-08-06","choices":[],"usage":{"prompt_tokens":80,"completion_tokens":17,"total_tokens":97}}

data: [DONE]

"#;

const OPENAI_ANSWER: &str = r#"data: {"id":"chatcmpl-e2f","object":"chat.completion.chunk","created":1741570284,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"delta":{"role":"assistant","content":"It is sunny "},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-e2f","object":"chat.completion.chunk","created":1741570284,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"delta":{"content":"in Paris."},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-e2f","object":"chat.completion.chunk","created":1741570284,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}

data: {"id":"chatcmpl-e2f","object":"chat.completion.chunk","created":1741570284,"model":"gpt-4o-2024-08-06","choices":[],"usage":{"prompt_tokens":110,"completion_tokens":6,"total_tokens":116}}

data: [DONE]

"#;

#[test]
fn openai_end_to_end() {
    keys_in_env();
    runtime().block_on(async {
        let fx = Fixture::start(vec![
            Reply::json(503, &json!({"error": {"message": "overloaded"}})),
            Reply::sse(OPENAI_CALL),
            Reply::sse(OPENAI_ANSWER),
        ])
        .await;
        let (session, store, seen) = session(
            "provider-openai",
            json!({"base_url": format!("{}/v1", fx.base), "model": "gpt-test", "retry_base_ms": 5}),
        )
        .await;
        let answer = session.execute("What's the weather in Paris?").await.unwrap();
        assert_eq!(answer, "It is sunny in Paris.");
        let reqs = fx.requests();
        assert_eq!(reqs.len(), 3);
        assert_eq!(
            reqs[1].header("authorization"),
            Some(format!("Bearer {OPENAI_KEY}").as_str())
        );
        assert_eq!(
            reqs[2].body["messages"],
            json!([
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": "What's the weather in Paris?"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_e2e", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "call_e2e", "content": "sunny, 21C in Paris"}
            ])
        );
        check_transcript(&session, "It is sunny in Paris.").await;
        assert!(names(&seen).iter().any(|n| n == events::PROVIDER_RETRY));
        let all = everything(&session, &store, &seen).await;
        assert!(!all.contains("SECRET"), "the key leaked: {all}");
    });
}

const OLLAMA_CALL: &str = r#"{"model":"llama3.2","created_at":"2025-01-01T00:00:00.1Z","message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"get_weather","arguments":{"location":"Paris"}}}]},"done":false}
{"model":"llama3.2","created_at":"2025-01-01T00:00:00.2Z","message":{"role":"assistant","content":""},"done_reason":"stop","done":true,"total_duration":885095291,"prompt_eval_count":122,"eval_count":33}
"#;

const OLLAMA_ANSWER: &str = r#"{"model":"llama3.2","created_at":"2025-01-01T00:00:01.1Z","message":{"role":"assistant","content":"It is sunny "},"done":false}
{"model":"llama3.2","created_at":"2025-01-01T00:00:01.2Z","message":{"role":"assistant","content":"in Paris."},"done":false}
{"model":"llama3.2","created_at":"2025-01-01T00:00:01.3Z","message":{"role":"assistant","content":""},"done_reason":"stop","done":true,"prompt_eval_count":160,"eval_count":6}
"#;

#[test]
fn ollama_end_to_end() {
    keys_in_env();
    runtime().block_on(async {
        let fx = Fixture::start(vec![
            Reply::json(503, &json!({"error": "server busy"})).header("retry-after", "0"),
            Reply::ndjson(OLLAMA_CALL),
            Reply::ndjson(OLLAMA_ANSWER),
        ])
        .await;
        let (session, store, seen) = session(
            "provider-ollama",
            json!({"base_url": fx.base, "model": "llama3.2", "retry_base_ms": 5}),
        )
        .await;
        let answer = session
            .execute("What's the weather in Paris?")
            .await
            .unwrap();
        assert_eq!(answer, "It is sunny in Paris.");
        let reqs = fx.requests();
        assert_eq!(reqs.len(), 3);
        let second = &reqs[2].body;
        assert_eq!(
            second["messages"],
            json!([
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": "What's the weather in Paris?"},
                {"role": "assistant", "content": "", "tool_calls": [
                    {"function": {"name": "get_weather", "arguments": {"location": "Paris"}}}
                ]},
                {"role": "tool", "content": "sunny, 21C in Paris", "tool_name": "get_weather"}
            ])
        );
        assert_eq!(second["tools"][0]["function"]["name"], json!("get_weather"));
        check_transcript(&session, "It is sunny in Paris.").await;
        let meta = session.meta().await.unwrap();
        assert_eq!(meta.usage.input_tokens, 282);
        assert_eq!(meta.usage.output_tokens, 39);
        let all = everything(&session, &store, &seen).await;
        assert!(!all.contains("SECRET"));
    });
}

#[test]
fn a_missing_key_is_a_clear_mount_warning() {
    keys_in_env();
    runtime().block_on(async {
        let mut registry = ModuleRegistry::with_core_modules();
        weft_providers::register(&mut registry);
        let plan = MountPlan::from_value(json!({
            "session": {"orchestrator": "loop-basic", "context": "context-simple"},
            "providers": [{"module": "provider-anthropic",
                           "config": {"api_key_env": "WEFT_TEST_UNSET_KEY_VARIABLE"}}]
        }))
        .unwrap()
        .plan;
        let session = Session::new(SessionConfig::new(
            plan,
            Arc::new(MemoryStore::new()),
            Arc::new(registry),
        ));
        session.initialize().await.unwrap();
        assert_eq!(
            session.mount_warnings(),
            vec!["module provider-anthropic cannot start: no Anthropic API key: the variable WEFT_TEST_UNSET_KEY_VARIABLE named by api_key_env is not set".to_string()]
        );
        assert!(session.providers().is_empty());
        // Built from the real environment, the provider never shows its key.
        let p = weft_providers::anthropic::AnthropicProvider::from_spec(&spec(
            "provider-anthropic",
            json!({}),
        ))
        .unwrap();
        assert!(!format!("{p:?}").contains("SECRET"));
        let built = weft_providers::build_provider(&spec("anthropic", json!({}))).unwrap();
        assert_eq!(built.info().name, "anthropic");
    });
}
