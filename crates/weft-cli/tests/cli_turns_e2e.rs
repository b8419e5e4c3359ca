//! End to end: concurrent `weft run` processes on one session (the second
//! waits, or refuses with `--no-wait`) and `session cleanup` of a session
//! whose process was killed mid-turn. The helpers are in `support/mod.rs`.

mod support;

use std::process::Output;

use support::*;

/// Issue 9 finding 4 (W5): two `weft run --resume` on one session at once.
/// The second waits for the first (saying so on stderr), both exit 0, both
/// answers are recorded, and the session ends completed.
#[test]
fn two_concurrent_runs_on_one_session_both_succeed() {
    let env = Env::new();
    let id = env.first_session();
    let slow = env.script(
        "slow.json",
        r#"{"responses": [{"text": "slow answer", "delay_ms": 600}]}"#,
    );
    let quick = env.script("quick.json", r#"{"responses": [{"text": "quick answer"}]}"#);
    let first = env.spawn(&[
        "run",
        "--resume",
        &id,
        "--script",
        slow.to_str().unwrap(),
        "a",
    ]);
    env.wait_turn_running(&id);
    let second = env.spawn(&[
        "run",
        "--resume",
        &id,
        "--script",
        quick.to_str().unwrap(),
        "b",
    ]);
    let first = first.wait_with_output().unwrap();
    let second = second.wait_with_output().unwrap();
    let stderr = |o: &Output| String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(first.status.success(), "first: {}", stderr(&first));
    assert!(second.status.success(), "second: {}", stderr(&second));
    assert!(
        stderr(&second).contains("waiting for the turn running in process"),
        "the second says whom it waits for: {}",
        stderr(&second)
    );
    assert!(String::from_utf8_lossy(&first.stdout).contains("slow answer"));
    assert!(String::from_utf8_lossy(&second.stdout).contains("quick answer"));
    let show = env.json(&["session", "show", &id, "--json"]);
    assert_eq!(show["session"]["status"], "completed", "{show}");
    assert_eq!(show["session"]["turn_count"], 3, "{show}");
    let transcript = env.ok(&["session", "show", &id, "--transcript"]);
    assert!(
        transcript.contains("slow answer") && transcript.contains("quick answer"),
        "{transcript}"
    );
}

/// Issue 9 finding 14 (C10): a `weft run` killed mid-turn leaves its
/// session active; `session cleanup` recognises it as interrupted (its
/// turn lock names a process that is gone) and removes it.
#[test]
fn cleanup_removes_a_session_whose_process_was_killed_mid_turn() {
    let env = Env::new();
    let kept = env.first_session();
    let slow = env.script(
        "slow.json",
        r#"{"responses": [{"text": "never", "delay_ms": 20000}]}"#,
    );
    let mut child = env.spawn(&["run", "--script", slow.to_str().unwrap(), "doomed"]);
    let start = std::time::Instant::now();
    let killed = loop {
        let list = env.json(&["session", "list", "--json"]);
        let doomed = list
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| s["id"].as_str())
            .find(|id| *id != kept)
            .map(str::to_string);
        if let Some(id) = doomed
            && env.turn_running(&id)
        {
            break id;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "the turn never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let show = env.json(&["session", "show", &killed, "--json"]);
    assert_eq!(show["session"]["status"], "active");
    assert_eq!(show["interrupted"], true);
    let text = env.ok(&["session", "show", &killed]);
    assert!(text.contains("active (interrupted"), "{text}");

    let out = env.weft(&["session", "cleanup", "--days", "0", "--dry-run"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&killed), "{stdout}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("1 of them interrupted"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let removed = env.ok(&["session", "cleanup", "--days", "0"]);
    assert!(removed.contains(&killed), "{removed}");
    let list = env.json(&["session", "list", "--json"]);
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["id"].as_str())
        .collect();
    assert!(!ids.contains(&killed.as_str()), "{ids:?}");
}

/// Issue 9 finding 4: `--no-wait` refuses a turn while another process
/// runs one on the branch, naming that process, and neither fails the
/// session nor disturbs the running turn.
#[test]
fn no_wait_refuses_naming_the_running_process() {
    let env = Env::new();
    let id = env.first_session();
    let slow = env.script(
        "slow.json",
        r#"{"responses": [{"text": "slow answer", "delay_ms": 2000}]}"#,
    );
    let quick = env.script("quick.json", r#"{"responses": [{"text": "quick"}]}"#);
    let first = env.spawn(&[
        "run",
        "--resume",
        &id,
        "--script",
        slow.to_str().unwrap(),
        "a",
    ]);
    env.wait_turn_running(&id);
    let pid = first.id();
    let err = env.fails(&[
        "run",
        "--resume",
        &id,
        "--no-wait",
        "--script",
        quick.to_str().unwrap(),
        "b",
    ]);
    assert!(
        err.contains(&format!("running a turn in process {pid}")),
        "{err}"
    );
    let first = first.wait_with_output().unwrap();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let show = env.json(&["session", "show", &id, "--json"]);
    assert_eq!(show["session"]["status"], "completed", "{show}");
    assert_eq!(show["session"]["turn_count"], 2, "{show}");
}
