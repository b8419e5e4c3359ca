//! Ephemeral context end to end: a `hooks-inject-context` hook from the
//! mount plan injects a reminder marked `ephemeral` on every provider call;
//! the model sees it (provider-scripted's `echo-context` mode answers with
//! every user message it was sent) on each call, once, and the session's
//! log on disk never stores it, while a non-ephemeral injection is stored.

mod support;

use serde_json::{Value, json};
use support::*;

fn plan(env: &Env, ephemeral: bool) -> std::path::PathBuf {
    env.file(
        &format!("plan-{ephemeral}.json"),
        &json!({
            "session": {"orchestrator": "loop-basic", "context": "context-simple"},
            "providers": [{"module": "provider-scripted", "config": {"mode": "echo-context"}}],
            "hooks": [{"module": "hooks-inject-context",
                       "config": {"event": "provider:request", "text": "REMINDER",
                                  "role": "user", "ephemeral": ephemeral}}]
        })
        .to_string(),
    )
}

/// The messages of the session's log file (its `message` records).
fn logged_messages(env: &Env, id: &str) -> Vec<Value> {
    log_kinds(env, id)
        .into_iter()
        .filter(|(kind, _)| kind == "message")
        .map(|(_, data)| data)
        .collect()
}

#[test]
fn an_ephemeral_injection_reaches_the_model_and_is_not_stored() {
    let env = Env::new();
    let plan = plan(&env, true);
    let first = env.json(&[
        "run",
        "--mount-plan",
        plan.to_str().expect("utf-8"),
        "--output",
        "json",
        "first",
    ]);
    assert_eq!(first["answer"], "first | REMINDER", "{first}");
    let id = first["session_id"].as_str().expect("id").to_string();
    // The next turn: the reminder once, the earlier one gone.
    let next = env.json(&["continue", "--output", "json", "second"]);
    assert_eq!(next["answer"], "first | second | REMINDER", "{next}");

    // Stored: the two prompts and the two answers (which echo what the
    // model saw), no injected message.
    let messages = logged_messages(&env, &id);
    let roles: Vec<&str> = messages.iter().filter_map(|m| m["role"].as_str()).collect();
    assert_eq!(
        roles,
        ["user", "assistant", "user", "assistant"],
        "{messages:?}"
    );
    assert_eq!(injected(&messages), 0, "{messages:?}");
}

/// How many messages a hook injected.
fn injected(messages: &[Value]) -> usize {
    messages
        .iter()
        .filter(|m| m["sender"] == "hook" && m.to_string().contains("REMINDER"))
        .count()
}

#[test]
fn a_stored_injection_stays_in_the_session() {
    let env = Env::new();
    let plan = plan(&env, false);
    let first = env.json(&[
        "run",
        "--mount-plan",
        plan.to_str().expect("utf-8"),
        "--output",
        "json",
        "first",
    ]);
    assert_eq!(first["answer"], "first | REMINDER", "{first}");
    let id = first["session_id"].as_str().expect("id").to_string();
    let next = env.json(&["continue", "--output", "json", "second"]);
    // The first reminder was stored: the model sees it again.
    assert_eq!(
        next["answer"], "first | REMINDER | second | REMINDER",
        "{next}"
    );
    assert_eq!(injected(&logged_messages(&env, &id)), 2);
}
