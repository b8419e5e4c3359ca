//! Tests of the `loop-basic` orchestrator, driven through a session built
//! with [`crate::testing`] (kept apart from `orchestrator.rs` so the loop's
//! internals can change without touching its tests).

use serde_json::json;

use crate::error::SessionError;
use crate::hooks::{HookResult, InjectionRole, events, hook_fn};
use crate::message::Role;
use crate::provider::ProviderError;
use crate::testing::{
    FakeProvider, FakeTool, RecordingHook, Reply, config_with, messages, roles, session_from,
    session_with, tool_results, within,
};
use crate::tool::ToolOutput;

#[tokio::test]
async fn a_text_answer_is_returned_and_recorded() {
    let provider = FakeProvider::replying([Reply::text("hello there")]);
    let session = session_with(&provider, vec![]).await.expect("session");
    assert_eq!(session.execute("hi").await.expect("answer"), "hello there");

    let log = messages(&session, None).await.expect("messages");
    assert_eq!(roles(&log), [Role::User, Role::Assistant]);
    assert_eq!(log[0].text_content(), "hi");
    assert_eq!(log[1].text_content(), "hello there");
    assert_eq!(provider.calls(), 1);
    let request = &provider.requests()[0];
    assert_eq!(
        request.messages.last().map(|m| m.text_content()).as_deref(),
        Some("hi")
    );
    assert!(request.tools.is_empty());
}

#[tokio::test]
async fn tool_results_are_recorded_in_call_order_before_the_next_call() {
    let slow = FakeTool::new("slow", "slow done");
    let slow_gate = slow.hold();
    let fast = FakeTool::new("fast", "fast done");
    let provider = FakeProvider::replying([
        Reply::tool_calls([("slow", json!({"n": 1})), ("fast", json!({"n": 2}))]),
        Reply::text("all done"),
    ]);
    let session = session_with(&provider, vec![slow.as_tool(), fast.as_tool()])
        .await
        .expect("session");
    let hook = RecordingHook::new();
    hook.attach(session.hooks());

    let turn = tokio::spawn({
        let session = session.clone();
        async move { session.execute("go").await }
    });
    // The fast tool finishes while the slow one (called first) is held.
    within(slow_gate.reached()).await;
    within(hook.wait_for_where(events::TOOL_POST, |d| d["tool_name"] == "fast")).await;
    assert_eq!(
        provider.calls(),
        1,
        "the provider was called before the tools ended"
    );
    slow_gate.release();
    let answer = within(turn).await.expect("join").expect("answer");
    assert_eq!(answer, "all done");

    assert_eq!(provider.calls(), 2);
    assert_eq!((slow.calls(), fast.calls()), (1, 1));
    assert_eq!(slow.inputs(), [json!({"n": 1})]);
    let second = &provider.requests()[1];
    let sent: Vec<_> = second.messages.iter().map(|m| (**m).clone()).collect();
    assert_eq!(
        roles(&sent),
        [Role::User, Role::Assistant, Role::Tool, Role::Tool]
    );
    let expected = vec![
        ("call_1_1".to_string(), "slow done".to_string(), false),
        ("call_1_2".to_string(), "fast done".to_string(), false),
    ];
    assert_eq!(tool_results(&sent), expected);
    let log = messages(&session, None).await.expect("messages");
    assert_eq!(tool_results(&log), expected);
    assert_eq!(
        log.last().map(|m| m.text_content()).as_deref(),
        Some("all done")
    );
}

#[tokio::test]
async fn max_iterations_makes_a_last_call_without_tools() {
    let tool = FakeTool::new("echo", "echoed");
    let provider = FakeProvider::replying([
        Reply::tool_call("echo", json!({})),
        Reply::tool_call("echo", json!({})),
    ]);
    let mut config = config_with(&provider, vec![tool.as_tool()]);
    config
        .plan
        .session
        .orchestrator
        .config
        .insert("max_iterations".into(), json!(1));
    let session = session_from(config).await.expect("session");

    assert_eq!(session.execute("loop").await.expect("answer"), "");
    assert_eq!(provider.calls(), 2);
    let requests = provider.requests();
    assert_eq!(requests[0].tools.len(), 1);
    assert!(requests[1].tools.is_empty(), "the last call offered tools");
    assert_eq!(tool.calls(), 1, "a tool call past the bound was run");
}

#[tokio::test]
async fn a_tool_pre_deny_answers_the_call_without_running_the_tool() {
    let tool = FakeTool::new("echo", "echoed");
    let provider =
        FakeProvider::replying([Reply::tool_call("echo", json!({"x": 1})), Reply::text("ok")]);
    let session = session_with(&provider, vec![tool.as_tool()])
        .await
        .expect("session");
    session.hooks().register(
        events::TOOL_PRE,
        hook_fn(|_, _| async { Ok(HookResult::deny("not allowed")) }),
        0,
        "deny-all",
    );

    assert_eq!(session.execute("try").await.expect("answer"), "ok");
    assert_eq!(tool.calls(), 0);
    let log = messages(&session, None).await.expect("messages");
    assert_eq!(
        tool_results(&log),
        [(
            "call_1_1".to_string(),
            "Denied by hook: not allowed".to_string(),
            true
        )]
    );
}

#[tokio::test]
async fn an_unknown_tool_is_answered_with_an_error_naming_the_known_ones() {
    let tool = FakeTool::new("echo", "echoed");
    let provider =
        FakeProvider::replying([Reply::tool_call("missing", json!({})), Reply::text("ok")]);
    let session = session_with(&provider, vec![tool.as_tool()])
        .await
        .expect("session");
    let hook = RecordingHook::new();
    hook.attach(session.hooks());

    assert_eq!(session.execute("try").await.expect("answer"), "ok");
    let log = messages(&session, None).await.expect("messages");
    let results = tool_results(&log);
    assert_eq!(results.len(), 1);
    let (_, output, is_error) = &results[0];
    assert!(is_error);
    assert!(output.contains("unknown tool \"missing\""), "{output}");
    assert!(output.contains("echo"), "{output}");
    assert_eq!(hook.count(events::TOOL_ERROR), 1);
    assert_eq!(tool.calls(), 0);
}

#[tokio::test]
async fn a_provider_error_fails_the_turn_after_recording_the_prompt() {
    let provider = FakeProvider::replying([Reply::error(ProviderError::Other("boom".into()))]);
    let session = session_with(&provider, vec![]).await.expect("session");
    let hook = RecordingHook::new();
    hook.attach(session.hooks());

    let err = session.execute("hi").await.expect_err("the turn failed");
    assert!(
        matches!(&err, SessionError::Provider(ProviderError::Other(m)) if m == "boom"),
        "{err:?}"
    );
    assert_eq!(hook.count(events::PROVIDER_ERROR), 1);
    assert_eq!(
        hook.events_named(events::EXECUTION_END)[0]["status"],
        "failed"
    );
    let log = messages(&session, None).await.expect("messages");
    assert_eq!(roles(&log), [Role::User]);
}

#[tokio::test]
async fn tool_outputs_and_failures_reach_the_model() {
    let upper = FakeTool::with_fn("upper", |input| {
        ToolOutput::ok(input["s"].as_str().unwrap_or_default().to_uppercase())
    });
    let broken = FakeTool::failing("broken", "disk on fire");
    let provider = FakeProvider::replying([
        Reply::tool_calls([("upper", json!({"s": "abc"})), ("broken", json!({}))]),
        Reply::text("noted"),
    ]);
    let session = session_with(&provider, vec![upper.as_tool(), broken.as_tool()])
        .await
        .expect("session");
    let hook = RecordingHook::new();
    hook.attach(session.hooks());

    assert_eq!(session.execute("go").await.expect("answer"), "noted");
    let log = messages(&session, None).await.expect("messages");
    assert_eq!(
        tool_results(&log),
        [
            ("call_1_1".to_string(), "ABC".to_string(), false),
            ("call_1_2".to_string(), "disk on fire".to_string(), true),
        ]
    );
    let errors = hook.events_named(events::TOOL_ERROR);
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0]["tool_name"], "broken");
    assert_eq!(hook.count(events::TOOL_POST), 1);
}

#[tokio::test]
async fn ephemeral_context_reaches_one_request_and_is_not_stored() {
    let tool = FakeTool::new("look", "seen");
    let provider = FakeProvider::replying([
        Reply::tool_call("look", json!({})),
        Reply::text("done"),
        Reply::text("again"),
    ]);
    let session = session_with(&provider, vec![tool.as_tool()])
        .await
        .expect("session");
    // A reminder on every provider call, a note after the prompt, a kept
    // note after each tool.
    session.hooks().register(
        events::PROVIDER_REQUEST,
        hook_fn(|_, _| async { Ok(HookResult::inject_ephemeral("reminder")) }),
        0,
        "reminder",
    );
    session.hooks().register(
        events::PROMPT_SUBMIT,
        hook_fn(|_, _| async {
            Ok(HookResult::inject_ephemeral("status").with_role(InjectionRole::User))
        }),
        0,
        "status",
    );
    session.hooks().register(
        events::TOOL_POST,
        hook_fn(|_, _| async { Ok(HookResult::inject_context("kept")) }),
        0,
        "kept",
    );
    session.execute("go").await.expect("answer");
    session.execute("more").await.expect("answer");

    let requests = provider.requests();
    let texts = |i: usize| -> Vec<(Role, String)> {
        requests[i]
            .messages
            .iter()
            .map(|m| (m.role, m.text_content()))
            .collect()
    };
    // The first call: the prompt, the prompt's status (as a user message)
    // and the reminder, last.
    assert_eq!(
        texts(0),
        [
            (Role::User, "go".to_string()),
            (Role::User, "status".to_string()),
            (Role::System, "reminder".to_string()),
        ]
    );
    // The second call (after the tool): no status, one reminder, the kept
    // note stored with the tool result.
    let second = texts(1);
    assert_eq!(second.iter().filter(|(_, t)| t == "reminder").count(), 1);
    assert!(!second.iter().any(|(_, t)| t == "status"), "{second:?}");
    assert!(
        second
            .iter()
            .any(|(r, t)| *r == Role::System && t == "kept")
    );
    // Only the kept note is in the log.
    let log = messages(&session, None).await.expect("messages");
    let stored: Vec<String> = log.iter().map(|m| m.text_content()).collect();
    assert!(stored.contains(&"kept".to_string()), "{stored:?}");
    assert!(
        !stored.iter().any(|t| t == "reminder" || t == "status"),
        "{stored:?}"
    );
    // The next turn sees the next turn's ephemeral context only.
    let third = texts(2);
    assert_eq!(third.iter().filter(|(_, t)| t == "status").count(), 1);
    assert_eq!(third.iter().filter(|(_, t)| t == "reminder").count(), 1);
}
