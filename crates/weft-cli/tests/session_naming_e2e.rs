//! Issue 12 (seed 001): `hooks-session-naming` names a session from its
//! first exchange when the profile enables it (the built-in profiles do),
//! with the provider's title cut to the one 50-character limit; the
//! scripted provider answers title requests only when its script has a
//! `title`; a failure to name never fails the turn.

mod support;

use serde_json::Value;
use support::*;

/// Runs one turn with a script answering `title` (a JSON value, or none)
/// and `extra` arguments; returns (session id, stderr).
fn run_with_title(env: &Env, title: Option<&str>, extra: &[&str]) -> (String, String) {
    let title = title
        .map(|t| format!(r#", "title": {t}"#))
        .unwrap_or_default();
    let script = env.file(
        "titled.json",
        &format!(r#"{{"responses": [{{"text": "Use a recursive descent parser."}}]{title}}}"#),
    );
    let mut args = vec![
        "run",
        "--provider",
        "scripted",
        "--script",
        script.to_str().unwrap(),
        "--output",
        "json",
    ];
    args.extend_from_slice(extra);
    args.push("how do I parse arithmetic?");
    let out = env.weft(&args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "weft {args:?} failed: {stderr}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["answer"], "Use a recursive descent parser.");
    (v["session_id"].as_str().unwrap().to_string(), stderr)
}

fn listed_name(env: &Env, id: &str) -> Value {
    let list = env.json(&["session", "list", "--json"]);
    list.as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("{id} is not listed: {list}"))["name"]
        .clone()
}

#[test]
fn a_scripted_title_becomes_the_session_name() {
    let env = Env::new();
    let (id, _) = run_with_title(&env, Some(r#""Parsing arithmetic""#), &[]);
    assert_eq!(listed_name(&env, &id), "Parsing arithmetic");
    // The table shows it too.
    let table = env.ok(&["session", "list"]);
    assert!(table.contains("Parsing arithmetic"), "{table}");
}

#[test]
fn a_long_title_is_cut_to_fifty_characters_on_a_char_boundary() {
    let env = Env::new();
    // 30 two-byte characters, then 30 more: the cut falls inside the tail.
    let long = format!("{}{}", "é".repeat(30), "ß".repeat(30));
    let (id, _) = run_with_title(&env, Some(&format!("\"{long}\"")), &[]);
    let name = listed_name(&env, &id);
    let name = name.as_str().unwrap();
    assert_eq!(name.chars().count(), 50);
    assert_eq!(name, format!("{}{}", "é".repeat(30), "ß".repeat(20)));
}

#[test]
fn naming_stays_off_without_a_title_and_never_renames() {
    let env = Env::new();
    // No title in the script: the scripted provider does not answer title
    // requests, the session stays unnamed and nothing is reported.
    let (id, stderr) = run_with_title(&env, None, &[]);
    assert_eq!(listed_name(&env, &id), Value::Null);
    assert!(!stderr.contains("name"), "{stderr}");
    // A name the user gave is kept.
    let (id, _) = run_with_title(&env, Some(r#""Model title""#), &["--name", "mine"]);
    assert_eq!(listed_name(&env, &id), "mine");
}

#[test]
fn a_failed_title_request_is_a_warning_not_a_failed_turn() {
    let env = Env::new();
    let (id, stderr) = run_with_title(&env, Some(r#"{"error": "no titles today"}"#), &[]);
    assert_eq!(listed_name(&env, &id), Value::Null);
    assert!(
        stderr.contains("cannot name the session") && stderr.contains("no titles today"),
        "{stderr}"
    );
    let shown = env.json(&["session", "show", &id, "--json"]);
    assert_eq!(shown["session"]["status"], "completed");
}
