//! `provider-ollama` against a local fixture server replaying byte-exact
//! `/api/chat` NDJSON streams.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use weft_core::message::{ContentBlock, Role, Usage};
use weft_core::provider::{
    BlockKind, ChatRequest, Provider, ProviderError, StopReason, StreamEvent,
};
use weft_providers::ollama::OllamaProvider;

const TEXT_ONLY: &str = r#"{"model":"llama3.2","created_at":"2025-01-01T08:52:19.385406455-07:00","message":{"role":"assistant","content":"Hello"},"done":false}
{"model":"llama3.2","created_at":"2025-01-01T08:52:19.48516Z","message":{"role":"assistant","content":", wörld! ☀"},"done":false}
{"model":"llama3.2","created_at":"2025-01-01T08:52:19.5Z","message":{"role":"assistant","content":""},"done_reason":"stop","done":true,"total_duration":4883583458,"load_duration":1334875,"prompt_eval_count":26,"prompt_eval_duration":342546000,"eval_count":282,"eval_duration":4535599000}
"#;

const THINKING_AND_TOOLS: &str = r#"{"model":"qwen3","created_at":"2025-06-01T10:00:00.1Z","message":{"role":"assistant","content":"","thinking":"The user wants "},"done":false}
{"model":"qwen3","created_at":"2025-06-01T10:00:00.2Z","message":{"role":"assistant","content":"","thinking":"two forecasts."},"done":false}
{"model":"qwen3","created_at":"2025-06-01T10:00:00.3Z","message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"get_weather","arguments":{"location":"San Francisco, CA","unit":"celsius"}}}]},"done":false}
{"model":"qwen3","created_at":"2025-06-01T10:00:00.4Z","message":{"role":"assistant","content":"","tool_calls":[{"function":{"index":1,"name":"get_weather","arguments":{"location":"Paris"}}}]},"done":false}
{"model":"qwen3","created_at":"2025-06-01T10:00:00.5Z","message":{"role":"assistant","content":""},"done_reason":"stop","done":true,"total_duration":885095291,"load_duration":3753500,"prompt_eval_count":122,"prompt_eval_duration":328493000,"eval_count":33,"eval_duration":552222000}
"#;

const PARTIAL: &str = r#"{"model":"llama3.2","created_at":"2025-01-01T08:52:19Z","message":{"role":"assistant","content":"Partial"},"done":false}
"#;

fn provider(base: &str, extra: Value) -> OllamaProvider {
    let mut config = json!({"base_url": base, "retry_base_ms": 5, "model": "llama-test"});
    if let (Some(c), Some(e)) = (config.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    OllamaProvider::from_spec_with_env(&spec("provider-ollama", config), &env_of(&[])).unwrap()
}

fn ask(t: &str) -> ChatRequest {
    ChatRequest {
        messages: vec![text(Role::User, t)].into(),
        ..Default::default()
    }
}

async fn run(p: &OllamaProvider, request: ChatRequest) -> Outcome {
    drain(p.stream(request, CancellationToken::new()).await).await
}

#[tokio::test]
async fn text_only_stream_and_request() {
    let fx = Fixture::start(vec![Reply::ndjson(TEXT_ONLY)]).await;
    let out = run(&provider(&fx.base, json!({})), ask("Hi")).await;
    let r = out.response();
    assert_eq!(r.content, vec![ContentBlock::text("Hello, wörld! ☀")]);
    assert_eq!(r.stop_reason, StopReason::EndTurn);
    assert_eq!(r.model.as_deref(), Some("llama3.2"));
    assert_eq!(
        r.usage,
        Usage {
            input_tokens: 26,
            output_tokens: 282,
            ..Default::default()
        }
    );
    let req = &fx.requests()[0];
    assert_eq!(
        (req.method.as_str(), req.path.as_str()),
        ("POST", "/api/chat")
    );
    assert!(req.header("authorization").is_none());
    assert_eq!(
        req.body,
        json!({
            "model": "llama-test",
            "messages": [{"role": "user", "content": "Hi"}],
            "stream": true
        })
    );
}

#[tokio::test]
async fn thinking_and_several_tool_calls() {
    let fx = Fixture::start(vec![Reply::ndjson(THINKING_AND_TOOLS)]).await;
    let out = run(&provider(&fx.base, json!({})), ask("Weather?")).await;
    let r = out.response();
    assert_eq!(r.stop_reason, StopReason::ToolUse);
    assert_eq!(r.content.len(), 3);
    assert_eq!(
        r.content[0],
        ContentBlock::Thinking {
            thinking: "The user wants two forecasts.".into(),
            signature: None
        }
    );
    let calls: Vec<(String, Value)> = r
        .content
        .iter()
        .filter_map(|b| match b {
            ContentBlock::ToolCall {
                id,
                name,
                arguments,
            } => {
                assert!(id.starts_with("call_"), "{id}");
                assert_eq!(name, "get_weather");
                Some((id.clone(), arguments.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        calls[0].1,
        json!({"location": "San Francisco, CA", "unit": "celsius"})
    );
    assert_eq!(calls[1].1, json!({"location": "Paris"}));
    assert_ne!(calls[0].0, calls[1].0, "ids are unique");
    assert!(out.events.iter().any(|e| matches!(
        e,
        StreamEvent::BlockStart {
            index: 1,
            kind: BlockKind::ToolCall { .. }
        }
    )));
    assert_eq!(out.fragments(2), vec![r#"{"location":"Paris"}"#]);
    assert_eq!(r.usage.input_tokens, 122);
    assert_eq!(r.usage.output_tokens, 33);
}

#[tokio::test]
async fn request_shape_tools_and_tool_messages() {
    let fx = Fixture::start(vec![Reply::ndjson(TEXT_ONLY)]).await;
    let p = provider(
        &fx.base,
        json!({"temperature": 0.1, "max_tokens": 256, "context_window": 16384, "keep_alive": "10m", "think": true}),
    );
    let request = ChatRequest {
        messages: tool_round_trip().into_iter().map(Arc::new).collect(),
        tools: vec![weather_tool()],
        stop_sequences: vec!["</done>".into()],
        ..Default::default()
    };
    run(&p, request).await.response();
    assert_eq!(
        fx.requests()[0].body,
        json!({
            "model": "llama-test",
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": "Weather in SF and Paris?"},
                {"role": "assistant", "content": "Checking.", "tool_calls": [
                    {"function": {"name": "get_weather", "arguments": {"location": "SF"}}},
                    {"function": {"name": "get_weather", "arguments": {"location": "Paris"}}}
                ]},
                {"role": "tool", "content": "fog, 14C", "tool_name": "get_weather"},
                {"role": "tool", "content": "no data", "tool_name": "get_weather"}
            ],
            "tools": [{"type": "function", "function": {
                "name": "get_weather",
                "description": "Get the weather for a location",
                "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}
            }}],
            "options": {"temperature": 0.1, "num_predict": 256, "num_ctx": 16384, "stop": ["</done>"]},
            "think": true,
            "keep_alive": "10m",
            "stream": true
        })
    );
}

#[tokio::test]
async fn retry_after_429_then_success() {
    let fx = Fixture::start(vec![
        Reply::json(429, &json!({"error": "too many requests"})).header("retry-after", "1"),
        Reply::ndjson(TEXT_ONLY),
    ])
    .await;
    let start = Instant::now();
    let out = run(&provider(&fx.base, json!({})), ask("Hi")).await;
    out.response();
    assert!(start.elapsed() >= Duration::from_millis(950));
    assert_eq!(out.retries().len(), 1);
    assert_eq!(out.retries()[0].1, Duration::from_secs(1));
    assert!(out.retries()[0].2.contains("too many requests"));
}

#[tokio::test]
async fn busy_503_then_success() {
    let fx = Fixture::start(vec![
        Reply::json(
            503,
            &json!({"error": "server busy, please try again.  maximum pending requests exceeded"}),
        ),
        Reply::ndjson(TEXT_ONLY),
    ])
    .await;
    let out = run(&provider(&fx.base, json!({})), ask("Hi")).await;
    out.response();
    assert!(out.retries()[0].2.starts_with("HTTP 503: server busy"));
}

#[tokio::test]
async fn error_line_mid_stream() {
    let body = format!(
        "{PARTIAL}{{\"error\":\"an error was encountered while running the model: unexpected EOF\"}}\n"
    );
    let fx = Fixture::start(vec![Reply::ndjson(&body)]).await;
    let out = run(&provider(&fx.base, json!({})), ask("Hi")).await;
    assert_eq!(out.streamed_text(), "Partial");
    assert_eq!(
        out.err(),
        &ProviderError::Stream {
            provider: "ollama".into(),
            message: "the server sent an error mid-stream: an error was encountered while running the model: unexpected EOF".into()
        }
    );
}

#[tokio::test]
async fn cut_streams() {
    let fx = Fixture::start(vec![Reply::ndjson(PARTIAL)]).await;
    let out = run(&provider(&fx.base, json!({})), ask("Hi")).await;
    let ProviderError::Stream { message, .. } = out.err() else {
        panic!("{:?}", out.err())
    };
    assert!(message.contains("before `done: true`"), "{message}");
    assert_eq!(out.completed_count(), 0);

    // Cut in the middle of a line.
    let cut = &TEXT_ONLY[..TEXT_ONLY.find("wörld").unwrap()];
    let fx = Fixture::start(vec![Reply::ndjson(cut)]).await;
    let out = run(&provider(&fx.base, json!({})), ask("Hi")).await;
    let ProviderError::Stream { message, .. } = out.err() else {
        panic!("{:?}", out.err())
    };
    assert!(message.contains("middle of a line"), "{message}");

    // The connection breaks.
    let fx = Fixture::start(vec![Reply::ndjson(cut).abort()]).await;
    let out = run(&provider(&fx.base, json!({})), ask("Hi")).await;
    assert!(
        matches!(out.err(), ProviderError::Stream { .. }),
        "{:?}",
        out.err()
    );
    assert_eq!(out.completed_count(), 0);

    // A last line without its newline is fine when complete.
    let fx = Fixture::start(vec![Reply::ndjson(TEXT_ONLY.trim_end())]).await;
    run(&provider(&fx.base, json!({})), ask("Hi"))
        .await
        .response();
}

#[tokio::test]
async fn invalid_json_line() {
    let body = format!("{PARTIAL}{{\"model\":\"llama3.2\",\"message\":{{\"content\":\"x\"\n");
    let fx = Fixture::start(vec![Reply::ndjson(&body)]).await;
    let out = run(&provider(&fx.base, json!({})), ask("Hi")).await;
    let ProviderError::Stream { message, .. } = out.err() else {
        panic!("{:?}", out.err())
    };
    assert!(message.starts_with("invalid JSON in a line"), "{message}");
}

#[tokio::test]
async fn stalls_time_out() {
    let fx = Fixture::start(vec![Reply::ndjson("").stall()]).await;
    let out = run(
        &provider(
            &fx.base,
            json!({"first_byte_timeout": 0.3, "max_retries": 0}),
        ),
        ask("Hi"),
    )
    .await;
    assert!(
        matches!(out.err(), ProviderError::Timeout { .. }),
        "{:?}",
        out.err()
    );

    let fx = Fixture::start(vec![Reply::ndjson(PARTIAL).stall()]).await;
    let out = run(&provider(&fx.base, json!({"idle_timeout": 0.3})), ask("Hi")).await;
    assert!(
        matches!(out.err(), ProviderError::Timeout { .. }),
        "{:?}",
        out.err()
    );
    assert_eq!(out.streamed_text(), "Partial");
}

#[tokio::test]
async fn cancellation_mid_stream() {
    use futures::StreamExt;
    let fx = Fixture::start(vec![Reply::ndjson(PARTIAL).stall()]).await;
    let p = provider(&fx.base, json!({}));
    let cancel = CancellationToken::new();
    let mut stream = p.stream(ask("Hi"), cancel.clone()).await.unwrap();
    loop {
        if let Some(Ok(StreamEvent::TextDelta { .. })) = stream.next().await {
            break;
        }
    }
    cancel.cancel();
    let next = tokio::time::timeout(Duration::from_secs(1), stream.next())
        .await
        .expect("prompt");
    assert!(
        matches!(next, Some(Err(ProviderError::Cancelled))),
        "{next:?}"
    );
}

#[tokio::test]
async fn model_not_found_is_rejected_clearly() {
    let fx = Fixture::start(vec![Reply::json(
        404,
        &json!({"error": "model \"llama-test\" not found, try pulling it first"}),
    )])
    .await;
    let out = run(&provider(&fx.base, json!({})), ask("Hi")).await;
    assert_eq!(
        out.err().to_string(),
        "ollama rejected the request (HTTP 404): model \"llama-test\" not found, try pulling it first"
    );
}

#[tokio::test]
async fn list_models_from_tags() {
    let fx = Fixture::start(vec![Reply::json(
        200,
        &json!({"models": [
            {"name": "llama3.2:latest", "model": "llama3.2:latest", "modified_at": "2025-05-04T17:37:44.706015396-07:00", "size": 2019393189, "digest": "a80c4f17acd5", "details": {"format": "gguf", "family": "llama", "parameter_size": "3.2B", "quantization_level": "Q4_K_M"}},
            {"name": "qwen3:8b", "model": "qwen3:8b", "size": 5225387923u64}
        ]}),
    )])
    .await;
    let models = provider(&fx.base, json!({})).list_models().await.unwrap();
    let ids: Vec<&str> = models.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, vec!["llama3.2:latest", "qwen3:8b"]);
    assert_eq!(fx.requests()[0].path, "/api/tags");
}

#[tokio::test]
async fn ollama_host_picks_the_address() {
    let fx = Fixture::start(vec![Reply::ndjson(TEXT_ONLY)]).await;
    let host = fx.base.trim_start_matches("http://").to_string();
    let p = OllamaProvider::from_spec_with_env(
        &spec("provider-ollama", json!({"model": "m"})),
        &env_of(&[("OLLAMA_HOST", &host)]),
    )
    .unwrap();
    run(&p, ask("Hi")).await.response();
    assert_eq!(fx.requests().len(), 1);
}

#[tokio::test]
async fn auto_select_finds_ollama() {
    let fx = Fixture::start(vec![Reply::json(
        200,
        &json!({"models": [{"name": "qwen3:8b", "model": "qwen3:8b"}, {"name": "llama3.2:latest", "model": "llama3.2:latest"}]}),
    ), Reply::json(200, &json!({"models": []}))])
    .await;
    let host = fx.base.trim_start_matches("http://").to_string();
    let env = env_of(&[("OLLAMA_HOST", &host)]);
    let spec = weft_providers::auto_select_with_env(&env).await.unwrap();
    assert_eq!(spec.module, "provider-ollama");
    assert_eq!(spec.config_str("model"), Some("llama3.2:latest"));
    assert_eq!(spec.config_str("base_url"), Some(fx.base.as_str()));
    // Ollama without models: a clear error.
    let err = weft_providers::auto_select_with_env(&env)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("has no models: run `ollama pull llama3.2`"),
        "{err}"
    );
}
