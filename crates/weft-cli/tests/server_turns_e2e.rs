//! End to end: several processes on one session of a shared `WEFT_HOME`.
//! Contradicting transitions on two daemons, messages racing the end of
//! a session, CLI turns under daemon writes, and turns on two daemons at
//! once (issue 9, findings 3 and 4). The helpers are in `support/mod.rs`.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

/// Issue 9 finding 3 (W3): `complete` on one daemon and `fail` on another,
/// at once, on one session of a shared home: exactly one is acknowledged,
/// the other is a 409, and the log holds one transition out of `active`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn contradicting_transitions_on_two_daemons_exactly_one_wins() {
    let env = Env::new();
    let plan = env.file("echo.json", ECHO_PLAN);
    let plan = plan.to_str().expect("utf-8 path");
    let a = env.serve(&["--mount-plan", plan]).await;
    let b = env.serve(&["--mount-plan", plan]).await;
    for round in 0..25 {
        let id = a.active().await;
        let (complete_path, fail_path) = (
            format!("/api/v1/sessions/{id}/complete"),
            format!("/api/v1/sessions/{id}/fail"),
        );
        let ((c, cb), (f, fb)) = tokio::join!(
            a.post(&complete_path, json!({})),
            b.post(&fail_path, json!({"errorMessage": "boom"}))
        );
        let mut codes = [c, f];
        codes.sort();
        assert_eq!(
            codes,
            [204, 409],
            "round {round}: complete {c} {cb}, fail {f} {fb}"
        );
        let winner = if c == 204 { "completed" } else { "failed" };
        assert_eq!(
            status_changes(&env, &id),
            vec![
                ("created".to_string(), "active".to_string()),
                ("active".to_string(), winner.to_string())
            ],
            "round {round}"
        );
    }
}

/// Issue 9 finding 3: a message appended on one daemon while another ends
/// the session is either written before the end or refused (409), never
/// acknowledged after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_is_never_written_after_another_daemon_ended_the_session() {
    let env = Env::new();
    let plan = env.file("echo.json", ECHO_PLAN);
    let plan = plan.to_str().expect("utf-8 path");
    let a = env.serve(&["--mount-plan", plan]).await;
    let b = env.serve(&["--mount-plan", plan]).await;
    for round in 0..25 {
        let id = a.active().await;
        let (complete_path, message_path) = (
            format!("/api/v1/sessions/{id}/complete"),
            format!("/api/v1/sessions/{id}/messages"),
        );
        let ((c, cb), (m, mb)) = tokio::join!(
            a.post(&complete_path, json!({})),
            b.post(&message_path, json!({"role": "user", "content": "late"}))
        );
        assert_eq!(c, 204, "round {round}: {cb}");
        assert!(m == 201 || m == 409, "round {round}: {m} {mb}");
        let kinds = log_kinds(&env, &id);
        let ended = kinds
            .iter()
            .position(|(k, d)| k == "status" && d["to"] == "completed")
            .expect("completed");
        let message = kinds.iter().position(|(k, _)| k == "message");
        match m {
            201 => assert!(
                message.is_some_and(|p| p < ended),
                "round {round}: acknowledged, so written before the end: {kinds:?}"
            ),
            _ => assert!(message.is_none(), "round {round}: refused but written"),
        }
    }
}

/// Issue 9 finding 4 (W4): a CLI turn while the daemon writes the same
/// session (state, over and over). The turn appends after the daemon's
/// records: it exits 0, its answer is recorded, the session is not failed,
/// and every daemon write is acknowledged and kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cli_turn_survives_daemon_writes_to_its_session() {
    let env = Env::new();
    let (d, id, cli) = cli_turn_under_daemon(&env, 800).await;
    for i in 0..10 {
        let (status, body) = d
            .put(
                &format!("/api/v1/sessions/{id}/state/key{i}"),
                json!({"value": i}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = cli.wait_with_output().expect("weft run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("slow answer"));
    let texts = d.texts(&id).await;
    assert!(
        texts.iter().any(|t| t.to_string().contains("slow answer")),
        "{texts:?}"
    );
    assert_ne!(d.status_of(&id).await, "failed");
    let state = env.json(&["state", "list", &id, "--json"]);
    for i in 0..10 {
        assert_eq!(state[format!("key{i}")], json!(i), "{state}");
    }
}

/// Issue 9 finding 4: the daemon does not complete a session while a CLI
/// process runs a turn on it (409 naming the process), so the turn's
/// streamed answer is recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_does_not_end_a_session_under_a_cli_turn() {
    let env = Env::new();
    let (d, id, cli) = cli_turn_under_daemon(&env, 1500).await;
    let pid = cli.id();
    let start = Instant::now();
    while !turn_running(&env, &id) {
        assert!(start.elapsed() < Duration::from_secs(20), "no turn started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (status, refusal) = d
        .post(&format!("/api/v1/sessions/{id}/complete"), json!({}))
        .await;
    assert_eq!(status, 409, "{refusal}");
    assert!(
        refusal.to_string().contains(&format!("process {pid}")),
        "{refusal}"
    );
    let out = cli.wait_with_output().expect("weft run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let texts = d.texts(&id).await;
    assert!(
        texts.iter().any(|t| t.to_string().contains("slow answer")),
        "{texts:?}"
    );
}

/// Issue 9 finding 4 (W7): two daemons running turns on one session (one
/// branch) at once, with `?multitask=enqueue`: the second waits for the
/// first through the store's turn lock instead of failing with a conflict;
/// both answer and the transcript holds both exchanges, each prompt
/// followed by its answer. (Without `enqueue` a prompt to a daemon while
/// another runs the branch's turn is a 409: see `two_daemons_e2e.rs`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn turns_on_two_daemons_on_one_session_both_succeed() {
    let env = Env::new();
    let plan = env.file("slow.json", SLOW_ECHO_PLAN);
    let plan = plan.to_str().expect("path");
    let a = env.serve(&["--mount-plan", plan]).await;
    let b = env.serve(&["--mount-plan", plan]).await;
    let id = a.active().await;
    for round in 0..3 {
        let (ma, mb) = (format!("a{round}"), format!("b{round}"));
        let ((sa, ra), (sb, rb)) = tokio::join!(
            a.post(
                "/run?multitask=enqueue",
                json!({"message": ma, "session_id": id})
            ),
            b.post(
                "/run?multitask=enqueue",
                json!({"message": mb, "session_id": id})
            )
        );
        assert_eq!(sa, 200, "round {round}: {ra}");
        assert_eq!(sb, 200, "round {round}: {rb}");
        assert_eq!(ra["result"], ma.as_str());
        assert_eq!(rb["result"], mb.as_str());
    }
    let texts: Vec<String> = a.texts(&id).await.iter().map(|t| t.to_string()).collect();
    assert_eq!(texts.len(), 12, "{texts:?}");
    for pair in texts.chunks(2) {
        assert_eq!(
            pair[0], pair[1],
            "each prompt is followed by its echo: {texts:?}"
        );
    }
}
