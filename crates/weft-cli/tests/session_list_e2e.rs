//! End to end, the real `weft` binary (and daemon): Amplifier's session
//! listing (seed 001) — a fork is a session of its own (listed, taken by
//! `weft continue`, its lineage in `show` and `--tree`), delegated
//! sub-sessions are hidden without `--all`, `--all` is uncapped unless
//! `--limit` is given, a capped list says how to see more, and `show`
//! prints the last prompt. The helpers are in `support/mod.rs`.

mod support;

use serde_json::{Value, json};
use support::*;

/// `weft run` with a one-answer script: the new session's id.
fn run(env: &Env, script: &str, prompt: &str) -> String {
    let script = env.script("one.json", script);
    let out = env.json(&[
        "run",
        "--provider",
        "scripted",
        "--script",
        script.to_str().expect("path"),
        "--output",
        "json",
        prompt,
    ]);
    out["session_id"].as_str().expect("session_id").to_string()
}

fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .expect("a JSON list")
        .iter()
        .map(|s| s["id"].as_str().expect("id").to_string())
        .collect()
}

#[test]
fn a_fork_is_listed_and_continued() {
    let env = Env::new();
    let id = run(
        &env,
        r#"{"responses": [{"text": "about apples"}]}"#,
        "tell me about apples",
    );
    let s2 = env.script("s2.json", r#"{"responses": [{"text": "about pears"}]}"#);
    let s2 = s2.to_str().expect("path");
    env.ok(&["continue", "--script", s2, "and pears?"]);
    let fork = env.json(&["session", "fork", &id, "1", "apples only", "--json"]);
    let fork_id = fork["id"].as_str().expect("id").to_string();
    assert_eq!(fork["parent_id"], Value::Null, "{fork}");

    // Listed without --all, newest first, with its lineage.
    let list = env.json(&["session", "list", "--json"]);
    assert_eq!(ids(&list), vec![fork_id.clone(), id.clone()]);
    assert_eq!(list[0]["forked_from"]["session_id"], id.as_str());
    let text = env.ok(&["session", "list"]);
    let fork_row = text
        .lines()
        .find(|l| l.starts_with(&fork_id))
        .unwrap_or_else(|| panic!("no row for the fork: {text}"));
    assert!(
        fork_row.contains(&format!("apples only (fork of {}, turn 1)", &id[..8])),
        "{fork_row}"
    );

    // `weft continue` takes the fork: it is the newest session.
    let s3 = env.script("s3.json", r#"{"responses": [{"text": "more apples"}]}"#);
    let cont = env.json(&[
        "continue",
        "--script",
        s3.to_str().expect("path"),
        "--output",
        "json",
        "more about apples",
    ]);
    assert_eq!(cont["session_id"], fork_id.as_str(), "{cont}");
    assert_eq!(cont["answer"], "more apples");
    assert_eq!(cont["turns"], 2, "turn 1 copied, one more run in the fork");
    let source = env.json(&["session", "show", &id, "--json"]);
    assert_eq!(
        source["session"]["turn_count"], 2,
        "the source is untouched"
    );

    // `show` names the source; `--tree` puts the fork under it.
    let show = env.ok(&["session", "show", &fork_id]);
    assert!(
        show.contains(&format!("Forked    from {id} at turn 1")),
        "{show}"
    );
    let tree = env.ok(&["session", "list", "--tree"]);
    let lines: Vec<&str> = tree.lines().collect();
    let source_at = lines
        .iter()
        .position(|l| l.starts_with(&id))
        .unwrap_or_else(|| panic!("the source is a root: {tree}"));
    let next = lines.get(source_at + 1).copied().unwrap_or_default();
    assert!(
        next.starts_with(&format!("  {fork_id}")),
        "the fork is indented under its source: {tree}"
    );
    assert!(
        !lines.iter().any(|l| l.starts_with(&fork_id)),
        "a fork whose source is listed is not a root too: {tree}"
    );
    let tree = env.json(&["session", "list", "--tree", "--json"]);
    assert_eq!(ids(&tree), vec![id.clone()]);
    assert_eq!(ids(&tree[0]["children"]), vec![fork_id.clone()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_all_is_uncapped_and_a_capped_list_says_so() {
    let env = Env::new();
    const DEFAULT_CAP: usize = 20;
    let mut made = Vec::new();
    for i in 0..DEFAULT_CAP + 2 {
        made.push(run(&env, SCRIPT, &format!("prompt number {i}")));
    }
    // A delegated sub-session of the first, made through the daemon.
    let child = {
        let plan = env.file("plan.json", ECHO_PLAN);
        let d = env
            .serve(&["--mount-plan", plan.to_str().expect("path")])
            .await;
        let (status, body) = d
            .post(
                "/api/v1/sessions",
                json!({"parentSessionId": made[0], "name": "delegated"}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["sessionId"].as_str().expect("sessionId").to_string()
    };

    // Without --all: the default cap, no sub-sessions, and a way to more.
    let out = env.weft(&["session", "list"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let rows = text
        .lines()
        .filter(|l| made.iter().any(|id| l.starts_with(id.as_str())))
        .count();
    assert_eq!(rows, DEFAULT_CAP, "{text}");
    assert!(
        text.contains("`weft session list --all` shows every one"),
        "{text}"
    );
    let out = env.weft(&["session", "list", "--json"]);
    let capped: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(ids(&capped).len(), DEFAULT_CAP);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("weft session list --all"),
        "the hint goes to stderr beside JSON"
    );
    let wide = env.json(&["session", "list", "--limit", "100", "--json"]);
    assert_eq!(ids(&wide).len(), made.len());
    assert!(!ids(&wide).contains(&child), "sub-sessions are hidden");

    // --all: every session, the sub-session too, no cap, no hint.
    let out = env.weft(&["session", "list", "--all", "--json"]);
    assert!(out.status.success());
    let all: Value = serde_json::from_slice(&out.stdout).expect("json");
    let all = ids(&all);
    assert_eq!(all.len(), made.len() + 1, "{all:?}");
    assert!(all.contains(&child));
    assert!(made.iter().all(|id| all.contains(id)));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("more sessions"));
    let text = env.ok(&["session", "list", "--all"]);
    assert!(!text.contains("more sessions"), "{text}");
    // --limit still caps --all.
    let five = env.json(&["session", "list", "--all", "--limit", "5", "--json"]);
    assert_eq!(ids(&five).len(), 5);
}

#[test]
fn show_prints_the_last_prompt() {
    let env = Env::new();
    let id = run(&env, SCRIPT, "the first prompt");
    let long = format!("please look at {} END-OF-PROMPT", "this part ".repeat(30));
    let script = env.script("again.json", SCRIPT);
    env.ok(&[
        "run",
        "--resume",
        &id,
        "--script",
        script.to_str().expect("path"),
        &long,
    ]);
    let show = env.ok(&["session", "show", &id]);
    let line = show
        .lines()
        .find(|l| l.starts_with("Prompt    "))
        .unwrap_or_else(|| panic!("no Prompt line: {show}"));
    assert!(
        line.starts_with("Prompt    please look at this part"),
        "{line}"
    );
    assert!(
        line.ends_with('…') && !line.contains("END-OF-PROMPT"),
        "shortened: {line}"
    );
    assert!(line.chars().count() <= 110, "{line}");
    let json = env.json(&["session", "show", &id, "--json"]);
    assert_eq!(json["last_prompt"], long.as_str(), "full in --json");

    // A session with one short prompt shows it whole.
    let short = run(&env, SCRIPT, "just this");
    let show = env.ok(&["session", "show", &short]);
    assert!(show.contains("\nPrompt    just this\n"), "{show}");
}
