//! `provider-openai` against a local fixture server replaying byte-exact
//! Chat Completions streams.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use weft_core::message::{ContentBlock, Role, Usage};
use weft_core::provider::{ChatRequest, Provider, ProviderError, StopReason, StreamEvent};
use weft_providers::openai::OpenAiProvider;

const KEY: &str = "sk-proj-test-SECRET-abcdef";

const TEXT_ONLY: &str = r#"data: {"id":"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_fc9f1d7035","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_fc9f1d7035","choices":[{"index":0,"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_fc9f1d7035","choices":[{"index":0,"delta":{"content":", wörld! ☀"},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_fc9f1d7035","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}

data: {"id":"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_fc9f1d7035","choices":[],"usage":{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}

data: [DONE]

"#;

const TOOL_CALLS: &str = r#"data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"role":"assistant","content":"Let me "},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"content":"check."},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_DdmO9pD3xa9XTPNJ32zg2hcA","type":"function","function":{"name":"get_weather","arguments":""}}]},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"lo"}}]},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"cation\": \"San"}}]},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":" Francisco, CA\"}"}}]},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_ABC","type":"function","function":{"name":"get_weather","arguments":""}}]},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"{\"locat"}}]},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"ion\": \"Par"}}]},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"is\"}"}}]},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}],"usage":null}

data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_1","choices":[],"usage":{"prompt_tokens":1500,"completion_tokens":64,"total_tokens":1564,"prompt_tokens_details":{"cached_tokens":1024,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}

data: [DONE]

"#;

/// A DeepSeek/vLLM-style reasoning stream (`reasoning_content`).
const REASONING: &str = r#"data: {"id":"r1","object":"chat.completion.chunk","created":1,"model":"deepseek-reasoner","choices":[{"index":0,"delta":{"role":"assistant","content":null,"reasoning_content":""},"finish_reason":null}]}

data: {"id":"r1","object":"chat.completion.chunk","created":1,"model":"deepseek-reasoner","choices":[{"index":0,"delta":{"content":null,"reasoning_content":"Nine is "},"finish_reason":null}]}

data: {"id":"r1","object":"chat.completion.chunk","created":1,"model":"deepseek-reasoner","choices":[{"index":0,"delta":{"content":null,"reasoning_content":"three squared."},"finish_reason":null}]}

data: {"id":"r1","object":"chat.completion.chunk","created":1,"model":"deepseek-reasoner","choices":[{"index":0,"delta":{"content":"3","reasoning_content":null},"finish_reason":null}]}

data: {"id":"r1","object":"chat.completion.chunk","created":1,"model":"deepseek-reasoner","choices":[{"index":0,"delta":{"content":""},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":20,"total_tokens":32}}

data: [DONE]

"#;

const PARTIAL: &str = r#"data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"role":"assistant","content":"Partial"},"finish_reason":null}]}

"#;

fn provider(base: &str, extra: Value) -> OpenAiProvider {
    let mut config =
        json!({"base_url": format!("{base}/v1"), "retry_base_ms": 5, "model": "gpt-test"});
    if let (Some(c), Some(e)) = (config.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    OpenAiProvider::from_spec_with_env(
        &spec("provider-openai", config),
        &env_of(&[("OPENAI_API_KEY", KEY)]),
    )
    .unwrap()
}

fn ask(t: &str) -> ChatRequest {
    ChatRequest {
        messages: vec![text(Role::User, t)].into(),
        ..Default::default()
    }
}

async fn run(p: &OpenAiProvider, request: ChatRequest) -> Outcome {
    drain(p.stream(request, CancellationToken::new()).await).await
}

#[tokio::test]
async fn text_only_stream_usage_and_request() {
    let fx = Fixture::start(vec![Reply::sse(TEXT_ONLY)]).await;
    let p = provider(&fx.base, json!({}));
    let out = run(&p, ask("Hi")).await;
    let r = out.response();
    assert_eq!(r.content, vec![ContentBlock::text("Hello, wörld! ☀")]);
    assert_eq!(r.stop_reason, StopReason::EndTurn);
    assert_eq!(r.model.as_deref(), Some("gpt-4o-2024-08-06"));
    assert_eq!(
        r.usage,
        Usage {
            input_tokens: 19,
            output_tokens: 10,
            ..Default::default()
        }
    );
    assert_eq!(out.completed_count(), 1);
    let req = &fx.requests()[0];
    assert_eq!(req.path, "/v1/chat/completions");
    assert_eq!(req.query, None);
    assert_eq!(
        req.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(
        req.body,
        json!({
            "model": "gpt-test",
            "messages": [{"role": "user", "content": "Hi"}],
            "stream": true,
            "stream_options": {"include_usage": true}
        })
    );
}

#[tokio::test]
async fn several_tool_calls_with_fragmented_arguments() {
    let fx = Fixture::start(vec![Reply::sse(TOOL_CALLS)]).await;
    let out = run(&provider(&fx.base, json!({})), ask("Weather?")).await;
    let r = out.response();
    assert_eq!(r.stop_reason, StopReason::ToolUse);
    assert_eq!(
        r.content,
        vec![
            ContentBlock::text("Let me check."),
            ContentBlock::ToolCall {
                id: "call_DdmO9pD3xa9XTPNJ32zg2hcA".into(),
                name: "get_weather".into(),
                arguments: json!({"location": "San Francisco, CA"}),
            },
            ContentBlock::ToolCall {
                id: "call_ABC".into(),
                name: "get_weather".into(),
                arguments: json!({"location": "Paris"}),
            },
        ]
    );
    assert_eq!(
        out.fragments(1),
        vec!["{\"lo", "cation\": \"San", " Francisco, CA\"}"]
    );
    assert_eq!(out.fragments(2), vec!["{\"locat", "ion\": \"Par", "is\"}"]);
    // The text block ends when the first call starts.
    let end_text = out
        .events
        .iter()
        .position(|e| matches!(e, StreamEvent::BlockEnd { index: 0, .. }))
        .unwrap();
    let start_call = out
        .events
        .iter()
        .position(|e| matches!(e, StreamEvent::BlockStart { index: 1, .. }))
        .unwrap();
    assert!(end_text < start_call);
    assert_eq!(
        r.usage,
        Usage {
            input_tokens: 476,
            output_tokens: 64,
            cache_read_tokens: 1024,
            cache_creation_tokens: 0,
        }
    );
}

#[tokio::test]
async fn reasoning_content_becomes_thinking() {
    let fx = Fixture::start(vec![Reply::sse(REASONING)]).await;
    let out = run(&provider(&fx.base, json!({})), ask("sqrt 9?")).await;
    let r = out.response();
    assert_eq!(
        r.content,
        vec![
            ContentBlock::Thinking {
                thinking: "Nine is three squared.".into(),
                signature: None
            },
            ContentBlock::text("3"),
        ]
    );
    assert_eq!(r.usage.input_tokens, 12);
    assert_eq!(r.usage.output_tokens, 20);
}

#[tokio::test]
async fn request_shape_tool_role_and_tool_call_id() {
    let fx = Fixture::start(vec![Reply::sse(TEXT_ONLY)]).await;
    let p = provider(&fx.base, json!({"max_tokens": 500, "temperature": 0.25}));
    let request = ChatRequest {
        messages: tool_round_trip().into_iter().map(Arc::new).collect(),
        tools: vec![weather_tool()],
        stop_sequences: vec!["END".into()],
        ..Default::default()
    };
    run(&p, request).await.response();
    assert_eq!(
        fx.requests()[0].body,
        json!({
            "model": "gpt-test",
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": "Weather in SF and Paris?"},
                {"role": "assistant", "content": "Checking.", "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"SF\"}"}},
                    {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": "fog, 14C"},
                {"role": "tool", "tool_call_id": "call_2", "content": "no data"}
            ],
            "tools": [{"type": "function", "function": {
                "name": "get_weather",
                "description": "Get the weather for a location",
                "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}
            }}],
            "max_tokens": 500,
            "temperature": 0.25,
            "stop": ["END"],
            "stream": true,
            "stream_options": {"include_usage": true}
        })
    );
}

#[tokio::test]
async fn azure_style_api_key_header_and_api_version() {
    let fx = Fixture::start(vec![
        Reply::sse(TEXT_ONLY),
        Reply::json(200, &json!({"object": "list", "data": []})),
    ])
    .await;
    let p = OpenAiProvider::from_spec_with_env(
        &spec(
            "provider-openai",
            json!({"base_url": format!("{}/openai/deployments/gpt4o", fx.base), "azure": true,
                   "api_version": "2024-10-21", "max_tokens": 100}),
        ),
        &env_of(&[("AZURE_OPENAI_API_KEY", "azure-SECRET-key")]),
    )
    .unwrap();
    run(&p, ask("Hi")).await.response();
    p.list_models().await.unwrap();
    let reqs = fx.requests();
    assert_eq!(reqs[0].path, "/openai/deployments/gpt4o/chat/completions");
    assert_eq!(reqs[0].query.as_deref(), Some("api-version=2024-10-21"));
    assert_eq!(reqs[0].header("api-key"), Some("azure-SECRET-key"));
    assert!(reqs[0].header("authorization").is_none());
    assert_eq!(reqs[0].body["max_completion_tokens"], json!(100));
    assert_eq!(reqs[1].path, "/openai/deployments/gpt4o/models");
    assert_eq!(reqs[1].query.as_deref(), Some("api-version=2024-10-21"));
}

#[tokio::test]
async fn compatible_server_without_a_key() {
    let fx = Fixture::start(vec![Reply::sse(TEXT_ONLY)]).await;
    let p = OpenAiProvider::from_spec_with_env(
        &spec(
            "provider-openai",
            json!({"base_url": format!("{}/v1", fx.base), "model": "local"}),
        ),
        &env_of(&[]),
    )
    .unwrap();
    run(&p, ask("Hi")).await.response();
    let req = &fx.requests()[0];
    assert!(req.header("authorization").is_none());
    assert!(req.header("api-key").is_none());
}

#[tokio::test]
async fn retry_after_429_then_success() {
    let fx = Fixture::start(vec![
        Reply::json(
            429,
            &json!({"error": {"message": "Rate limit reached for gpt-4o", "type": "requests", "param": null, "code": "rate_limit_exceeded"}}),
        )
        .header("retry-after", "1"),
        Reply::sse(TEXT_ONLY),
    ])
    .await;
    let start = Instant::now();
    let out = run(&provider(&fx.base, json!({})), ask("Hi")).await;
    out.response();
    assert!(start.elapsed() >= Duration::from_millis(950));
    let retries = out.retries();
    assert_eq!(retries.len(), 1);
    assert_eq!(retries[0].1, Duration::from_secs(1));
    assert!(
        retries[0].2.contains("Rate limit reached"),
        "{}",
        retries[0].2
    );
}

#[tokio::test]
async fn retry_after_ms_is_preferred() {
    let fx = Fixture::start(vec![
        Reply::json(503, &json!({"error": {"message": "overloaded"}}))
            .header("retry-after-ms", "20")
            .header("retry-after", "30"),
        Reply::sse(TEXT_ONLY),
    ])
    .await;
    let out = run(&provider(&fx.base, json!({})), ask("Hi")).await;
    out.response();
    assert_eq!(out.retries()[0].1, Duration::from_millis(20));
    assert!(out.retries()[0].2.starts_with("HTTP 503"));
}

#[tokio::test]
async fn error_chunk_mid_stream() {
    let body = format!(
        "{PARTIAL}data: {{\"error\":{{\"message\":\"The server had an error while processing your request.\",\"type\":\"server_error\",\"param\":null,\"code\":null}}}}\n\n"
    );
    let fx = Fixture::start(vec![Reply::sse(&body)]).await;
    let out = run(&provider(&fx.base, json!({})), ask("Hi")).await;
    assert_eq!(out.streamed_text(), "Partial");
    assert_eq!(out.completed_count(), 0);
    assert_eq!(
        out.err(),
        &ProviderError::Stream {
            provider: "openai".into(),
            message: "the server sent an error mid-stream: server_error: The server had an error while processing your request.".into()
        }
    );
    assert_eq!(fx.requests().len(), 1);
}

#[tokio::test]
async fn cut_streams() {
    let fx = Fixture::start(vec![Reply::sse(PARTIAL)]).await;
    let out = run(&provider(&fx.base, json!({})), ask("Hi")).await;
    assert_eq!(out.completed_count(), 0);
    let ProviderError::Stream { message, .. } = out.err() else {
        panic!("{:?}", out.err())
    };
    assert!(message.contains("cut off"), "{message}");

    let cut = &TOOL_CALLS[..TOOL_CALLS.find("ion\\\": \\\"Par").unwrap()];
    let fx = Fixture::start(vec![Reply::sse(cut).abort()]).await;
    let out = run(&provider(&fx.base, json!({})), ask("Hi")).await;
    assert_eq!(out.completed_count(), 0);
    assert!(
        matches!(out.err(), ProviderError::Stream { .. }),
        "{:?}",
        out.err()
    );

    // A finish_reason followed by a clean end without [DONE] is complete.
    let no_done = TEXT_ONLY.replace("data: [DONE]\n\n", "");
    let fx = Fixture::start(vec![Reply::sse(&no_done)]).await;
    let out = run(&provider(&fx.base, json!({})), ask("Hi")).await;
    assert_eq!(out.response().usage.output_tokens, 10);
}

#[tokio::test]
async fn invalid_json_in_a_chunk() {
    let body = format!(
        "{PARTIAL}data: {{\"id\":\"c\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"Hel\n\n"
    );
    let fx = Fixture::start(vec![Reply::sse(&body)]).await;
    let out = run(&provider(&fx.base, json!({})), ask("Hi")).await;
    let ProviderError::Stream { message, .. } = out.err() else {
        panic!("{:?}", out.err())
    };
    assert!(message.starts_with("invalid JSON in a chunk"), "{message}");
    assert_eq!(out.completed_count(), 0);
}

#[tokio::test]
async fn stall_after_headers_and_mid_stream() {
    let fx = Fixture::start(vec![Reply::sse("").stall()]).await;
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

    let fx = Fixture::start(vec![Reply::sse(PARTIAL).stall()]).await;
    let out = run(&provider(&fx.base, json!({"idle_timeout": 0.3})), ask("Hi")).await;
    let ProviderError::Timeout { message, .. } = out.err() else {
        panic!("{:?}", out.err())
    };
    assert!(message.contains("idle timeout"), "{message}");
    assert_eq!(out.streamed_text(), "Partial");
}

#[tokio::test]
async fn cancellation_mid_stream() {
    use futures::StreamExt;
    let fx = Fixture::start(vec![Reply::sse(PARTIAL).stall()]).await;
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
async fn errors_scrub_the_key() {
    let fx = Fixture::start(vec![Reply::json(
        401,
        &json!({"error": {"message": format!("Incorrect API key provided: {KEY}."), "type": "invalid_request_error", "code": "invalid_api_key"}}),
    )])
    .await;
    let out = run(&provider(&fx.base, json!({})), ask("Hi")).await;
    let text = format!("{} {:?}", out.err(), out.err());
    assert!(!text.contains("SECRET"), "{text}");
    assert!(
        text.contains("check the API key in $OPENAI_API_KEY"),
        "{text}"
    );
}

#[tokio::test]
async fn list_models() {
    let fx = Fixture::start(vec![Reply::json(
        200,
        &json!({"object": "list", "data": [
            {"id": "gpt-4o", "object": "model", "created": 1715367049, "owned_by": "system"},
            {"id": "gpt-4.1-mini", "object": "model", "created": 1744318173, "owned_by": "system"}
        ]}),
    )])
    .await;
    let models = provider(&fx.base, json!({})).list_models().await.unwrap();
    let ids: Vec<&str> = models.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, vec!["gpt-4.1-mini", "gpt-4o"]);
    let req = &fx.requests()[0];
    assert_eq!(
        (req.method.as_str(), req.path.as_str()),
        ("GET", "/v1/models")
    );
    assert_eq!(
        req.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
}

#[tokio::test]
async fn list_models_retries_5xx() {
    let fx = Fixture::start(vec![
        Reply::json(502, &json!({"error": "bad gateway"})),
        Reply::json(200, &json!({"data": [{"id": "m"}]})),
    ])
    .await;
    let models = provider(&fx.base, json!({})).list_models().await.unwrap();
    assert_eq!(models.len(), 1);
    assert_eq!(fx.requests().len(), 2);
}

#[tokio::test]
async fn refusals_are_kept_as_text() {
    let body = r#"data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"role":"assistant","content":null,"refusal":""},"finish_reason":null}]}

data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"refusal":"I can't help with that."},"finish_reason":null}]}

data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}

data: [DONE]

"#;
    let fx = Fixture::start(vec![Reply::sse(body)]).await;
    let out = run(&provider(&fx.base, json!({})), ask("?")).await;
    assert_eq!(
        out.response().content,
        vec![ContentBlock::text("I can't help with that.")]
    );
}
