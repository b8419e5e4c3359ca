//! `provider-anthropic` against a local fixture server replaying byte-exact
//! Messages API streams.

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
use weft_providers::anthropic::AnthropicProvider;

const KEY: &str = "sk-ant-test-SECRET-0123456789";

const TEXT_ONLY: &str = r#"event: message_start
data: {"type":"message_start","message":{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5-20250929","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":", wörld! ☀"}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}

event: message_stop
data: {"type":"message_stop"}

"#;

const THINKING_AND_TOOLS: &str = r#"event: message_start
data: {"type":"message_start","message":{"id":"msg_014p7gG3wDgGV9EUtLvnow3U","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","stop_sequence":null,"usage":{"input_tokens":472,"cache_creation_input_tokens":1200,"cache_read_input_tokens":3400,"output_tokens":2},"content":[],"stop_reason":null}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"The user wants the weather "}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"in two cities."}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: content_block_start
data: {"type":"content_block_start","index":1,"content_block":{"type":"redacted_thinking","data":"EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP"}}

event: content_block_stop
data: {"type":"content_block_stop","index":1}

event: content_block_start
data: {"type":"content_block_start","index":2,"content_block":{"type":"text","text":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":2,"delta":{"type":"text_delta","text":"Let me check both."}}

event: content_block_stop
data: {"type":"content_block_stop","index":2}

event: content_block_start
data: {"type":"content_block_start","index":3,"content_block":{"type":"tool_use","id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","name":"get_weather","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":3,"delta":{"type":"input_json_delta","partial_json":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":3,"delta":{"type":"input_json_delta","partial_json":"{\"loc"}}

event: content_block_delta
data: {"type":"content_block_delta","index":3,"delta":{"type":"input_json_delta","partial_json":"ation\": \"San"}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type":"content_block_delta","index":3,"delta":{"type":"input_json_delta","partial_json":" Francisco, CA\""}}

event: content_block_delta
data: {"type":"content_block_delta","index":3,"delta":{"type":"input_json_delta","partial_json":", \"unit\": \"celsius\"}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":3}

event: content_block_start
data: {"type":"content_block_start","index":4,"content_block":{"type":"tool_use","id":"toolu_01B2x","name":"get_weather","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":4,"delta":{"type":"input_json_delta","partial_json":"{\"location\":"}}

event: content_block_delta
data: {"type":"content_block_delta","index":4,"delta":{"type":"input_json_delta","partial_json":" \"Paris\"}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":4}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}}

event: message_stop
data: {"type":"message_stop"}

"#;

/// The first part of a text stream (content produced), for cut/stall/error
/// scenarios.
const PARTIAL: &str = r#"event: message_start
data: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":10,"output_tokens":1}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Partial"}}

"#;

fn provider(base: &str, extra: Value) -> AnthropicProvider {
    let mut config = json!({"base_url": base, "retry_base_ms": 5, "model": "claude-test"});
    if let (Some(c), Some(e)) = (config.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    AnthropicProvider::from_spec_with_env(
        &spec("provider-anthropic", config),
        &env_of(&[("ANTHROPIC_API_KEY", KEY)]),
    )
    .unwrap()
}

fn ask(text_: &str) -> ChatRequest {
    ChatRequest {
        messages: vec![text(Role::User, text_)].into(),
        ..Default::default()
    }
}

async fn run(p: &AnthropicProvider, request: ChatRequest) -> Outcome {
    drain(p.stream(request, CancellationToken::new()).await).await
}

#[tokio::test]
async fn text_only_stream_and_headers() {
    let fx = Fixture::start(vec![Reply::sse(TEXT_ONLY)]).await;
    let p = provider(&fx.base, json!({}));
    let out = run(&p, ask("Hi")).await;
    let r = out.response();
    assert_eq!(r.content, vec![ContentBlock::text("Hello, wörld! ☀")]);
    assert_eq!(r.stop_reason, StopReason::EndTurn);
    assert_eq!(r.model.as_deref(), Some("claude-sonnet-4-5-20250929"));
    assert_eq!(
        r.usage,
        Usage {
            input_tokens: 25,
            output_tokens: 15,
            ..Default::default()
        }
    );
    assert_eq!(out.streamed_text(), "Hello, wörld! ☀");
    assert_eq!(out.completed_count(), 1);
    assert!(matches!(
        out.events[0],
        StreamEvent::BlockStart {
            index: 0,
            kind: BlockKind::Text
        }
    ));

    let reqs = fx.requests();
    assert_eq!(reqs.len(), 1);
    let req = &reqs[0];
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/v1/messages");
    assert_eq!(req.header("x-api-key"), Some(KEY));
    assert_eq!(req.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert!(req.header("authorization").is_none());
    assert_eq!(
        req.body,
        json!({
            "model": "claude-test",
            "max_tokens": 8192,
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": "Hi", "cache_control": {"type": "ephemeral"}}
            ]}],
            "stream": true
        })
    );
}

#[tokio::test]
async fn thinking_and_several_tool_calls_with_split_arguments() {
    let fx = Fixture::start(vec![Reply::sse(THINKING_AND_TOOLS)]).await;
    let p = provider(&fx.base, json!({}));
    let out = run(&p, ask("Weather in SF and Paris?")).await;
    let r = out.response();
    assert_eq!(r.stop_reason, StopReason::ToolUse);
    assert_eq!(
        r.content,
        vec![
            ContentBlock::Thinking {
                thinking: "The user wants the weather in two cities.".into(),
                signature: Some("EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds".into()),
            },
            ContentBlock::Thinking {
                thinking: String::new(),
                signature: Some(
                    "redacted_thinking:EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP"
                        .into()
                ),
            },
            ContentBlock::text("Let me check both."),
            ContentBlock::ToolCall {
                id: "toolu_01T1x1fJ34qAmk2tNTrN7Up6".into(),
                name: "get_weather".into(),
                arguments: json!({"location": "San Francisco, CA", "unit": "celsius"}),
            },
            ContentBlock::ToolCall {
                id: "toolu_01B2x".into(),
                name: "get_weather".into(),
                arguments: json!({"location": "Paris"}),
            },
        ]
    );
    assert_eq!(
        out.fragments(3),
        vec![
            "{\"loc",
            "ation\": \"San",
            " Francisco, CA\"",
            ", \"unit\": \"celsius\"}"
        ]
    );
    assert_eq!(out.fragments(4).len(), 2);
    let thinking: String = out
        .events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::ThinkingDelta { index: 0, text } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(thinking, "The user wants the weather in two cities.");
    assert_eq!(
        r.usage,
        Usage {
            input_tokens: 472,
            output_tokens: 89,
            cache_read_tokens: 3400,
            cache_creation_tokens: 1200,
        }
    );
}

#[tokio::test]
async fn request_shape_system_tool_results_thinking_sent_back() {
    let fx = Fixture::start(vec![Reply::sse(TEXT_ONLY)]).await;
    let p = provider(&fx.base, json!({"temperature": 0.5, "max_tokens": 1000}));
    let mut messages = tool_round_trip();
    // The redacted block from a previous response goes back unchanged.
    messages[2].content.insert(
        1,
        ContentBlock::Thinking {
            thinking: String::new(),
            signature: Some("redacted_thinking:OPAQUE".into()),
        },
    );
    let request = ChatRequest {
        messages: messages.into_iter().map(Arc::new).collect(),
        tools: vec![weather_tool()],
        stop_sequences: vec!["STOP".into()],
        ..Default::default()
    };
    run(&p, request).await.response();
    let body = &fx.requests()[0].body;
    assert_eq!(
        body,
        &json!({
            "model": "claude-test",
            "max_tokens": 1000,
            "system": [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}],
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "Weather in SF and Paris?"}]},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "Two lookups.", "signature": "sig-1"},
                    {"type": "redacted_thinking", "data": "OPAQUE"},
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"location": "SF"}},
                    {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {"location": "Paris"}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "fog, 14C"},
                    {"type": "tool_result", "tool_use_id": "call_2", "content": "no data", "is_error": true,
                     "cache_control": {"type": "ephemeral"}}
                ]}
            ],
            "tools": [{
                "name": "get_weather",
                "description": "Get the weather for a location",
                "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
                "cache_control": {"type": "ephemeral"}
            }],
            "temperature": 0.5,
            "stop_sequences": ["STOP"],
            "stream": true
        })
    );
}

#[tokio::test]
async fn thinking_budget_and_no_caching() {
    let fx = Fixture::start(vec![Reply::sse(TEXT_ONLY)]).await;
    let p = provider(
        &fx.base,
        json!({"prompt_caching": false, "thinking_budget": 10000, "max_tokens": 4000, "temperature": 0.2}),
    );
    let request = ChatRequest {
        messages: vec![text(Role::System, "sys"), text(Role::User, "think")].into(),
        ..Default::default()
    };
    run(&p, request).await.response();
    assert_eq!(
        fx.requests()[0].body,
        json!({
            "model": "claude-test",
            "max_tokens": 18192,
            "system": "sys",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "think"}]}],
            "thinking": {"type": "enabled", "budget_tokens": 10000},
            "stream": true
        })
    );
}

#[tokio::test]
async fn retry_after_429_is_honoured() {
    let fx = Fixture::start(vec![
        Reply::json(
            429,
            &json!({"type":"error","error":{"type":"rate_limit_error","message":"Number of request tokens has exceeded your per-minute rate limit"}}),
        )
        .header("retry-after", "1"),
        Reply::sse(TEXT_ONLY),
    ])
    .await;
    let p = provider(&fx.base, json!({}));
    let start = Instant::now();
    let out = run(&p, ask("Hi")).await;
    let elapsed = start.elapsed();
    assert_eq!(
        out.response().content,
        vec![ContentBlock::text("Hello, wörld! ☀")]
    );
    let retries = out.retries();
    assert_eq!(retries.len(), 1, "{retries:?}");
    assert_eq!(retries[0].0, 2);
    assert_eq!(retries[0].1, Duration::from_secs(1));
    assert!(retries[0].2.contains("429"), "{}", retries[0].2);
    assert!(retries[0].2.contains("rate limit"), "{}", retries[0].2);
    assert!(elapsed >= Duration::from_millis(950), "waited {elapsed:?}");
    assert!(matches!(out.events[0], StreamEvent::Retry { .. }));
    assert_eq!(fx.requests().len(), 2);
}

#[tokio::test]
async fn overloaded_529_then_success_and_exhaustion() {
    let overloaded = || {
        Reply::json(
            529,
            &json!({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}),
        )
    };
    let fx = Fixture::start(vec![overloaded(), Reply::sse(TEXT_ONLY)]).await;
    let p = provider(&fx.base, json!({}));
    let out = run(&p, ask("Hi")).await;
    out.response();
    let retries = out.retries();
    assert_eq!(retries.len(), 1);
    assert!(retries[0].2.starts_with("HTTP 529"), "{}", retries[0].2);
    assert!(retries[0].1 <= Duration::from_millis(5));

    let fx = Fixture::start(vec![overloaded(), overloaded()]).await;
    let p = provider(&fx.base, json!({"max_retries": 1}));
    let out = run(&p, ask("Hi")).await;
    assert_eq!(out.retries().len(), 1);
    assert_eq!(out.completed_count(), 0);
    match out.err() {
        ProviderError::Unavailable {
            provider,
            status,
            message,
        } => {
            assert_eq!((provider.as_str(), *status), ("anthropic", 529));
            assert_eq!(message, "overloaded_error: Overloaded");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn server_error_503_then_success() {
    let fx = Fixture::start(vec![
        Reply::json(
            503,
            &json!({"type":"error","error":{"type":"api_error","message":"busy"}}),
        ),
        Reply::sse(TEXT_ONLY),
    ])
    .await;
    let out = run(&provider(&fx.base, json!({})), ask("Hi")).await;
    out.response();
    assert_eq!(out.retries().len(), 1);
    assert!(out.retries()[0].2.contains("HTTP 503"));
}

#[tokio::test]
async fn overloaded_error_event_before_content_is_retried() {
    let early_error = r#"event: message_start
data: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"m","usage":{"input_tokens":3,"output_tokens":0}}}

event: error
data: {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}

"#;
    let fx = Fixture::start(vec![Reply::sse(early_error), Reply::sse(TEXT_ONLY)]).await;
    let out = run(&provider(&fx.base, json!({})), ask("Hi")).await;
    assert_eq!(
        out.response().content,
        vec![ContentBlock::text("Hello, wörld! ☀")]
    );
    assert_eq!(out.retries().len(), 1);
}

#[tokio::test]
async fn error_event_mid_stream_fails_without_retry() {
    let body = format!(
        "{PARTIAL}event: error\ndata: {{\"type\": \"error\", \"error\": {{\"type\": \"overloaded_error\", \"message\": \"Overloaded\"}}}}\n\n"
    );
    let fx = Fixture::start(vec![Reply::sse(&body), Reply::sse(TEXT_ONLY)]).await;
    let out = run(&provider(&fx.base, json!({})), ask("Hi")).await;
    assert_eq!(out.streamed_text(), "Partial");
    assert_eq!(out.completed_count(), 0);
    assert_eq!(
        out.err(),
        &ProviderError::Stream {
            provider: "anthropic".into(),
            message: "the server sent an error mid-stream: overloaded_error: Overloaded".into()
        }
    );
    assert_eq!(fx.requests().len(), 1, "no retry after content");
}

#[tokio::test]
async fn stream_cut_mid_way() {
    // The body ends cleanly but early…
    let fx = Fixture::start(vec![Reply::sse(PARTIAL)]).await;
    let out = run(&provider(&fx.base, json!({})), ask("Hi")).await;
    assert_eq!(out.completed_count(), 0);
    let ProviderError::Stream { message, .. } = out.err() else {
        panic!("{:?}", out.err())
    };
    assert!(message.contains("before `message_stop`"), "{message}");

    // …or the connection breaks in the middle of an event.
    let cut = &TEXT_ONLY[..TEXT_ONLY.find(", wörld").unwrap()];
    let fx = Fixture::start(vec![Reply::sse(cut).abort()]).await;
    let out = run(&provider(&fx.base, json!({})), ask("Hi")).await;
    assert_eq!(out.completed_count(), 0);
    assert!(
        matches!(out.err(), ProviderError::Stream { .. }),
        "{:?}",
        out.err()
    );
    assert_eq!(fx.requests().len(), 1);
}

#[tokio::test]
async fn invalid_json_in_an_event() {
    let body = format!(
        "{PARTIAL}event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"oops}}\n\n"
    );
    let fx = Fixture::start(vec![Reply::sse(&body)]).await;
    let out = run(&provider(&fx.base, json!({})), ask("Hi")).await;
    assert_eq!(out.completed_count(), 0);
    let ProviderError::Stream { message, .. } = out.err() else {
        panic!("{:?}", out.err())
    };
    assert!(
        message.starts_with("invalid JSON in a `content_block_delta` event"),
        "{message}"
    );
}

#[tokio::test]
async fn invalid_tool_arguments_fail_the_stream() {
    let body = THINKING_AND_TOOLS.replace(r#"Paris\"}"#, r#"Paris\""#);
    let fx = Fixture::start(vec![Reply::sse(&body)]).await;
    let out = run(&provider(&fx.base, json!({})), ask("Hi")).await;
    assert_eq!(out.completed_count(), 0);
    let ProviderError::Stream { message, .. } = out.err() else {
        panic!("{:?}", out.err())
    };
    assert!(
        message.contains("\"get_weather\" tool call are not valid JSON"),
        "{message}"
    );
}

#[tokio::test]
async fn stall_after_headers_times_out_and_is_retried_first() {
    let fx = Fixture::start(vec![Reply::sse("").stall(), Reply::sse("").stall()]).await;
    let p = provider(
        &fx.base,
        json!({"first_byte_timeout": 0.3, "max_retries": 1}),
    );
    let out = run(&p, ask("Hi")).await;
    assert_eq!(out.retries().len(), 1);
    assert!(
        out.retries()[0].2.starts_with("timed out"),
        "{:?}",
        out.retries()
    );
    let ProviderError::Timeout { provider, message } = out.err() else {
        panic!("{:?}", out.err())
    };
    assert_eq!(provider, "anthropic");
    assert!(message.contains("first-byte timeout"), "{message}");
    assert_eq!(fx.requests().len(), 2);
}

#[tokio::test]
async fn stall_mid_stream_hits_the_idle_timeout() {
    let fx = Fixture::start(vec![Reply::sse(PARTIAL).stall()]).await;
    let p = provider(&fx.base, json!({"idle_timeout": 0.3}));
    let out = run(&p, ask("Hi")).await;
    assert_eq!(out.streamed_text(), "Partial");
    let ProviderError::Timeout { message, .. } = out.err() else {
        panic!("{:?}", out.err())
    };
    assert!(message.contains("idle timeout"), "{message}");
    assert_eq!(fx.requests().len(), 1, "no retry after content");
}

#[tokio::test]
async fn total_timeout_bounds_an_attempt() {
    let fx = Fixture::start(vec![Reply::sse(TEXT_ONLY).paced(Duration::from_millis(50))]).await;
    let p = provider(&fx.base, json!({"timeout": 0.4, "max_retries": 0}));
    let out = run(&p, ask("Hi")).await;
    let ProviderError::Timeout { message, .. } = out.err() else {
        panic!("{:?}", out.err())
    };
    assert!(message.contains("0.4 s timeout"), "{message}");
}

#[tokio::test]
async fn cancellation_mid_stream_returns_promptly_and_drops_the_connection() {
    use futures::StreamExt;
    let fx = Fixture::start(vec![Reply::sse(PARTIAL).stall()]).await;
    let p = provider(&fx.base, json!({}));
    let cancel = CancellationToken::new();
    let mut stream = p.stream(ask("Hi"), cancel.clone()).await.unwrap();
    let mut seen = String::new();
    while seen.is_empty() {
        if let Some(Ok(StreamEvent::TextDelta { text, .. })) = stream.next().await {
            seen = text;
        }
    }
    let start = Instant::now();
    let canceller = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        canceller.cancel();
    });
    let next = tokio::time::timeout(Duration::from_secs(2), stream.next())
        .await
        .expect("cancellation is prompt");
    assert!(
        matches!(next, Some(Err(ProviderError::Cancelled))),
        "{next:?}"
    );
    assert!(start.elapsed() < Duration::from_secs(1));
    assert!(stream.next().await.is_none());
    drop(stream);
    let deadline = Instant::now() + Duration::from_secs(2);
    while !fx.body_dropped(0) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(fx.body_dropped(0), "the server saw the connection close");
}

#[tokio::test]
async fn cancellation_during_a_retry_wait() {
    let fx = Fixture::start(vec![
        Reply::json(429, &json!({})).header("retry-after", "30"),
    ])
    .await;
    let p = provider(&fx.base, json!({}));
    let cancel = CancellationToken::new();
    let canceller = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        canceller.cancel();
    });
    let start = Instant::now();
    let out = drain(p.stream(ask("Hi"), cancel).await).await;
    assert_eq!(
        out.retries().len(),
        1,
        "the retry was announced before the wait"
    );
    assert_eq!(out.retries()[0].1, Duration::from_secs(30));
    assert_eq!(out.err(), &ProviderError::Cancelled);
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn retry_after_beyond_the_limit_fails_at_once() {
    let fx = Fixture::start(vec![
        Reply::json(
            429,
            &json!({"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}),
        )
        .header("retry-after", "3600"),
    ])
    .await;
    let start = Instant::now();
    let out = run(&provider(&fx.base, json!({})), ask("Hi")).await;
    assert!(start.elapsed() < Duration::from_secs(2));
    assert_eq!(
        out.err(),
        &ProviderError::RateLimited {
            provider: "anthropic".into(),
            message: "rate_limit_error: slow down".into()
        }
    );
}

#[tokio::test]
async fn auth_errors_never_echo_the_key() {
    let echo = format!(
        r#"{{"type":"error","error":{{"type":"authentication_error","message":"invalid x-api-key {KEY}"}}}}"#
    );
    let fx = Fixture::start(vec![Reply::json(
        401,
        &serde_json::from_str::<Value>(&echo).unwrap(),
    )])
    .await;
    let p = provider(&fx.base, json!({}));
    assert!(!format!("{p:?}").contains("SECRET"), "{p:?}");
    let out = run(&p, ask("Hi")).await;
    let err = out.err();
    assert!(
        matches!(err, ProviderError::Rejected { status: 401, .. }),
        "{err:?}"
    );
    let text = format!("{err} {err:?}");
    assert!(!text.contains("SECRET"), "{text}");
    assert!(text.contains("[REDACTED]"), "{text}");
    assert!(
        text.contains("check the API key in $ANTHROPIC_API_KEY"),
        "{text}"
    );
    assert_eq!(fx.requests().len(), 1, "4xx is not retried");
}

#[tokio::test]
async fn json_instead_of_a_stream_is_a_clear_error() {
    let fx = Fixture::start(vec![Reply::json(
        200,
        &json!({"error": {"type": "invalid_request_error", "message": "stream unsupported"}}),
    )])
    .await;
    let out = run(&provider(&fx.base, json!({})), ask("Hi")).await;
    let ProviderError::Stream { message, .. } = out.err() else {
        panic!("{:?}", out.err())
    };
    assert!(message.contains("answered with JSON"), "{message}");
    assert!(message.contains("stream unsupported"), "{message}");
}

#[tokio::test]
async fn connection_refused_is_retried_then_reported() {
    // Bind and drop a listener to find a port nothing listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let base = format!("http://127.0.0.1:{port}");
    let p = provider(&base, json!({"max_retries": 2}));
    let out = run(&p, ask("Hi")).await;
    assert_eq!(out.retries().len(), 2);
    let ProviderError::Connect { provider, url, .. } = out.err() else {
        panic!("{:?}", out.err())
    };
    assert_eq!(
        (provider.as_str(), url.as_str()),
        ("anthropic", base.as_str())
    );
}

#[tokio::test]
async fn list_models_pages() {
    let fx = Fixture::start(vec![
        Reply::json(
            200,
            &json!({"data": [{"type": "model", "id": "claude-sonnet-4-5-20250929", "display_name": "Claude Sonnet 4.5", "created_at": "2025-09-29T00:00:00Z"}],
                    "has_more": true, "first_id": "claude-sonnet-4-5-20250929", "last_id": "claude-sonnet-4-5-20250929"}),
        ),
        Reply::json(
            200,
            &json!({"data": [{"type": "model", "id": "claude-haiku-4-5", "display_name": "Claude Haiku 4.5", "created_at": "2025-10-01T00:00:00Z"}],
                    "has_more": false, "first_id": "claude-haiku-4-5", "last_id": "claude-haiku-4-5"}),
        ),
    ])
    .await;
    let models = provider(&fx.base, json!({})).list_models().await.unwrap();
    let ids: Vec<&str> = models.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, vec!["claude-sonnet-4-5-20250929", "claude-haiku-4-5"]);
    assert_eq!(models[0].display_name.as_deref(), Some("Claude Sonnet 4.5"));
    let reqs = fx.requests();
    assert_eq!(reqs[0].method, "GET");
    assert_eq!(reqs[0].path, "/v1/models");
    assert_eq!(reqs[0].query.as_deref(), Some("limit=1000"));
    assert_eq!(
        reqs[1].query.as_deref(),
        Some("limit=1000&after_id=claude-sonnet-4-5-20250929")
    );
    assert_eq!(reqs[0].header("x-api-key"), Some(KEY));
    assert_eq!(reqs[0].header("anthropic-version"), Some("2023-06-01"));
}

#[tokio::test]
async fn info_reflects_the_config() {
    let p = provider(
        "http://127.0.0.1:9",
        json!({"context_window": 1000000, "max_tokens": 64000}),
    );
    let info = p.info();
    assert_eq!(info.name, "anthropic");
    assert_eq!(info.default_model, "claude-test");
    assert_eq!(info.context_window, 1_000_000);
    assert_eq!(info.max_output_tokens, 64_000);
    assert!(info.supports_tools && info.supports_thinking);
}

#[tokio::test]
async fn beta_header_and_unsendable_keys() {
    let fx = Fixture::start(vec![Reply::sse(TEXT_ONLY)]).await;
    let p = provider(
        &fx.base,
        json!({"anthropic_beta": ["context-1m-2025-08-07", "interleaved-thinking-2025-05-14"]}),
    );
    run(&p, ask("Hi")).await.response();
    assert_eq!(
        fx.requests()[0].header("anthropic-beta"),
        Some("context-1m-2025-08-07,interleaved-thinking-2025-05-14")
    );
    let err = AnthropicProvider::from_spec_with_env(
        &spec("provider-anthropic", json!({})),
        &env_of(&[("ANTHROPIC_API_KEY", "sk-ant SECRET\n")]),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("cannot carry"), "{err}");
    assert!(!err.contains("SECRET"), "{err}");
}

/// Issue 9 S5: a provider that echoes the key just where its error message
/// is cut must not leave a piece of it in the error.
#[tokio::test]
async fn a_key_echoed_at_the_message_limit_leaves_no_piece() {
    for pad in [560, 565, 570, 575, 580, 590] {
        let message = format!("{} key={KEY} end", "x".repeat(pad));
        let fx = Fixture::start(vec![Reply::json(
            400,
            &json!({"error": {"message": message}}),
        )])
        .await;
        let out = run(&provider(&fx.base, json!({})), ask("Hi")).await;
        let err = out.err();
        let text = format!("{err} {err:?}");
        for start in 0..=KEY.len() - 8 {
            let piece = &KEY[start..start + 8];
            assert!(!text.contains(piece), "pad {pad}: {piece:?} in {text}");
        }
    }
}
