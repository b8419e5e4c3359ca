//! `weft session watch` follows records another process writes (fs store:
//! polling with backoff), prints them as JSON lines or text, stops at
//! `--limit`, and refuses an unknown session.

mod support;

use std::io::{BufRead, BufReader};
use std::time::Duration;

use serde_json::Value;
use support::*;

#[test]
fn watch_prints_records_another_process_appends() {
    let env = Env::new();
    let id = env.first_session();
    let head = env.json(&["session", "show", &id, "--json"])["session"]["last_seq"]
        .as_u64()
        .expect("last_seq");
    // From the head: only what comes next.
    let mut watcher = env.spawn(&["session", "watch", &id, "--json", "--limit", "2"]);
    std::thread::sleep(Duration::from_millis(300));
    let script = env.script("s.json", SCRIPT);
    env.ok(&[
        "session",
        "resume",
        &id,
        "--script",
        script.to_str().expect("utf-8"),
        "second prompt",
    ]);
    let stdout = watcher.stdout.take().expect("stdout");
    let lines: Vec<Value> = BufReader::new(stdout)
        .lines()
        .map(|l| serde_json::from_str(&l.expect("line")).expect("a JSON record"))
        .collect();
    assert!(watcher.wait().expect("wait").success());
    assert_eq!(lines.len(), 2, "{lines:?}");
    let seqs: Vec<u64> = lines
        .iter()
        .map(|r| r["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(seqs, [head + 1, head + 2]);
    assert!(
        lines
            .iter()
            .any(|r| r.to_string().contains("second prompt")),
        "the new user message is among them: {lines:?}"
    );
    // The whole log as text, from the start.
    let text = env.ok(&["session", "watch", &id, "--after", "0", "--limit", "3"]);
    let first: Vec<&str> = text.lines().collect();
    assert_eq!(first.len(), 3, "{text}");
    assert!(
        first[0].starts_with("#1 ") && first[0].contains("session_created"),
        "{text}"
    );
    // An unknown session is one clear error.
    let err = env.fails(&["session", "watch", "0000-not-there"]);
    assert!(err.contains("0000-not-there"), "{err}");
}
