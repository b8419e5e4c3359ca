//! Rewind (undo) end to end: `/undo` in interactive mode, `weft session
//! rewind`, and `POST /api/v1/sessions/{id}/rewind`, each followed by a
//! turn whose model does not see the undone exchange (provider-scripted's
//! `echo-context` mode answers with every user message it was sent); the
//! log keeps the rewound records (`session show --log` marks them).

mod support;

use std::io::Write;
use std::process::Stdio;

use serde_json::{Value, json};
use support::*;

/// Answers with every user message of the request, after `delay_ms`.
fn context_plan(env: &Env, delay_ms: u64) -> std::path::PathBuf {
    env.file(
        "context.json",
        &json!({
            "session": {"orchestrator": "loop-basic", "context": "context-simple"},
            "providers": [{"module": "provider-scripted",
                           "config": {"mode": "echo-context", "delay_ms": delay_ms}}]
        })
        .to_string(),
    )
}

#[test]
fn undo_in_interactive_mode_then_rewind_on_the_command_line() {
    let env = Env::new();
    let plan = context_plan(&env, 0);
    let plan = plan.to_str().expect("utf-8");
    let mut repl = env
        .command(&["--mount-plan", plan])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start weft");
    repl.stdin
        .take()
        .expect("stdin")
        .write_all(b"first\nsecond\n/undo\nthird\n/undo 7\n")
        .expect("type");
    let out = repl.wait_with_output().expect("weft");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("first | second"), "{stdout}");
    assert!(
        stdout.contains("first | third"),
        "the undone turn is not seen: {stdout}"
    );
    assert!(!stdout.contains("second | third"), "{stdout}");
    assert!(stderr.contains("took back 1 turn(s)"), "{stderr}");
    assert!(
        stderr.contains("rewind 1 to 2"),
        "too many turns is refused: {stderr}"
    );

    // The CLI: take back "third" too, then go on.
    let id = env.json(&["session", "list", "--json"])[0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let done = env.json(&["session", "rewind", &id, "--json"]);
    assert_eq!(done["turns"], 1, "{done}");
    assert_eq!(done["messages"], 2, "{done}");
    let next = env.json(&["continue", "--output", "json", "fourth"]);
    assert_eq!(next["answer"], "first | fourth", "{next}");
    // The log keeps what left the conversation, marked.
    let log = env.ok(&["session", "show", &id, "--log"]);
    assert_eq!(log.matches("(rewound)").count(), 4, "{log}");
    assert!(log.contains(" rewind"), "{log}");
    let md = env.ok(&["session", "export", &id]);
    assert!(!md.contains("third") && md.contains("fourth"), "{md}");
    // Clear refusals.
    let err = env.fails(&["session", "rewind", &id, "9"]);
    assert!(err.contains("rewind 1 to 2"), "{err}");
    let err = env.fails(&["session", "rewind", &id, "--branch", "nope"]);
    assert!(err.contains("nope"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewind_over_the_api() {
    let env = Env::new();
    let plan = context_plan(&env, 300);
    let daemon = env
        .serve(&["--mount-plan", plan.to_str().expect("utf-8")])
        .await;
    let id = daemon.active().await;
    let send = |text: &'static str| {
        let daemon = &daemon;
        let id = id.clone();
        async move {
            let (status, body) = daemon
                .post(
                    &format!("/api/v1/sessions/{id}/send-message"),
                    json!({"content": text}),
                )
                .await;
            assert_eq!(status, 202, "{body}");
        }
    };
    send("a").await;
    daemon.wait_idle(&id).await;
    send("b").await;
    // While b's turn runs, a rewind is refused.
    let (status, body) = daemon
        .post(&format!("/api/v1/sessions/{id}/rewind"), json!({}))
        .await;
    assert_eq!(status, 409, "{body}");
    daemon.wait_idle(&id).await;
    let rewind = |body: Value| {
        let daemon = &daemon;
        let id = id.clone();
        async move {
            daemon
                .post(&format!("/api/v1/sessions/{id}/rewind"), body)
                .await
        }
    };
    for (bad, code) in [
        (json!({"turns": 9}), 409),
        (json!({"turns": 0}), 422),
        (json!({"turns": 1.5}), 422),
        (json!({"branch": "nope"}), 404),
    ] {
        let (status, body) = rewind(bad.clone()).await;
        assert_eq!(status, code, "{bad}: {body}");
    }
    let (status, body) = rewind(json!({"turns": 1.0, "branch": "main"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["turns"], 1);
    assert_eq!(body["messages"], 2);
    send("c").await;
    daemon.wait_idle(&id).await;
    let texts = daemon.texts(&id).await;
    assert_eq!(
        texts,
        [json!("a"), json!("a"), json!("c"), json!("a | c")],
        "{texts:?}"
    );
}
