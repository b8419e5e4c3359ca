//! Issue 12 (seed 001): weft's fs store is readable as Amplifier's session
//! layout. A session with a delegated sub-session, written by the real
//! `weft` binary, is read by a small Python reader of Amplifier's format
//! (`fixtures/amplifier_reader.py`, stdlib only) and imported back by
//! `weft session import --from-amplifier` into a fresh home unchanged.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use support::*;

/// A plan whose provider answers from `script` and whose `helper` agent
/// answers "found it" with its own scripted provider.
fn delegating_plan(env: &Env, script: &Path) -> PathBuf {
    let plan = json!({
        "session": {"orchestrator": "loop-basic", "context": "context-simple"},
        "providers": [{"module": "provider-scripted", "config": {"script": script}}],
        "tools": ["tool-task"],
        "hooks": ["hooks-logging"],
        "agents": {"helper": {
            "description": "helps",
            "system": {"instruction": "You help."},
            "providers": [{"module": "provider-scripted",
                           "config": {"responses": [{"text": "found it"}]}}]
        }}
    });
    env.file("plan.json", &plan.to_string())
}

/// Runs a turn that delegates to `helper`, then a second turn, and renames
/// the session; returns (parent id, child id).
fn write_session_with_child(env: &Env) -> (String, String) {
    let script = env.file(
        "delegate.json",
        r#"{"responses": [
            {"tool_calls": [{"name": "task", "arguments": {"agent": "helper", "instruction": "look around"}}]},
            {"text": "the helper found it"}
        ]}"#,
    );
    let plan = delegating_plan(env, &script);
    let plan = plan.to_str().unwrap();
    let run = env.json(&[
        "run",
        "--mount-plan",
        plan,
        "--name",
        "round trip",
        "--output",
        "json",
        "delegate please",
    ]);
    let parent = run["session_id"].as_str().unwrap().to_string();
    // A new process starts the script over: the second turn has its own.
    let second = env.file(
        "second.json",
        r#"{"responses": [{"text": "second answer"}]}"#,
    );
    env.ok(&[
        "run",
        "--resume",
        &parent,
        "--script",
        second.to_str().unwrap(),
        "--output",
        "json",
        "and again",
    ]);
    let list = env.json(&["session", "list", "--all", "--json"]);
    let child = list
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["parent_id"] == parent.as_str())
        .unwrap_or_else(|| panic!("no child session listed: {list}"))["id"]
        .as_str()
        .unwrap()
        .to_string();
    (parent, child)
}

fn session_dir(env: &Env, id: &str) -> PathBuf {
    walk(env.home.path())
        .into_iter()
        .find(|p| {
            p.file_name().is_some_and(|n| n == "log.jsonl") && p.parent().unwrap().ends_with(id)
        })
        .unwrap_or_else(|| panic!("no directory for {id}"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn metadata(env: &Env, id: &str) -> Value {
    let bytes = std::fs::read(session_dir(env, id).join("metadata.json")).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[test]
fn metadata_json_carries_amplifier_keys_read_by_a_python_reader() {
    let env = Env::new();
    let (parent, child) = write_session_with_child(&env);

    // Kept current: two turns, then a rename.
    assert_eq!(metadata(&env, &parent)["turn_count"], 2);
    env.ok(&["session", "rename", &parent, "renamed trip"]);
    assert_eq!(metadata(&env, &parent)["name"], "renamed trip");

    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/amplifier_reader.py");
    let out = Command::new("python3")
        .arg(&fixture)
        .arg(env.home.path())
        .arg(env.project.path())
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "the reader failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let found: Value = serde_json::from_slice(&out.stdout).unwrap();
    let sessions = found["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2, "{found}");
    let by_id = |id: &str| {
        sessions
            .iter()
            .find(|s| s["session_id"] == id)
            .unwrap_or_else(|| panic!("the reader did not find {id}: {found}"))
            .clone()
    };

    let p = by_id(&parent);
    assert_eq!(p["dir"], parent.as_str());
    assert_eq!(p["bundle"], "bundle:plan");
    assert_eq!(p["model"], "scripted");
    assert_eq!(p["turn_count"], 2);
    assert_eq!(p["name"], "renamed trip");
    assert_eq!(p["created_utc_offset"], 0.0);
    let project = std::fs::canonicalize(env.project.path()).unwrap();
    assert_eq!(p["working_dir"], project.to_str().unwrap());
    assert_eq!(p["parent_id"], Value::Null);
    assert_eq!(p["parent_id_file"], Value::Null);
    assert_eq!(
        p["roles"],
        json!([
            "user",
            "assistant",
            "tool",
            "assistant",
            "user",
            "assistant"
        ])
    );
    assert_eq!(p["user_prompts"], json!(["delegate please", "and again"]));
    assert_eq!(p["tool_calls"], json!(["task"]));
    assert_eq!(p["timestamps_parse"], true);

    let c = by_id(&child);
    assert_eq!(c["parent_id"], parent.as_str());
    assert_eq!(c["parent_id_file"], parent.as_str());
    assert_eq!(c["trace_id"], parent.as_str());
    assert_eq!(c["agent_name"], "helper");
    assert_eq!(c["config_is_dict"], true);
    assert_eq!(c["agent_overlay_is_dict"], true);
    assert_eq!(c["turn_count"], 1);
    assert_eq!(c["roles"], json!(["user", "assistant"]));
    assert_eq!(c["user_prompts"], json!(["look around"]));
    // The overlay is the agent's own part of the plan.
    let overlay = &metadata(&env, &child)["agent_overlay"];
    assert_eq!(overlay["description"], "helps");
}

/// What must survive an export to Amplifier's layout and back.
fn essentials(env: &Env, id: &str) -> (Value, Value) {
    let shown = env.json(&["session", "show", id, "--transcript", "--json"]);
    let s = &shown["session"];
    let session = json!({
        "id": s["id"], "name": s["name"], "description": s["description"],
        "profile": s["profile"], "model": s["model"], "project": s["project"],
        "parent_id": s["parent_id"], "trace_id": s["trace_id"],
        "agent_name": s["agent_name"], "turn_count": s["turn_count"],
        "message_count": s["message_count"], "created_at": s["created_at"],
        "plan": s["metadata"]["mount_plan"],
        "config": s["metadata"]["config"], "agent_overlay": s["metadata"]["agent_overlay"],
    });
    let messages: Vec<Value> = shown["transcript"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] != "system")
        .map(|m| json!({"id": m["id"], "role": m["role"], "content": m["content"], "timestamp": m["timestamp"]}))
        .collect();
    (session, Value::Array(messages))
}

#[test]
fn a_weft_session_round_trips_through_the_amplifier_import() {
    let env = Env::new();
    let (parent, child) = write_session_with_child(&env);

    let fresh = Env::new();
    let report = fresh.json(&[
        "session",
        "import",
        "--from-amplifier",
        env.home.path().to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(report["imported"].as_array().unwrap().len(), 2, "{report}");
    assert_eq!(report["bad_lines"], 0, "{report}");
    assert!(report["failed"].as_array().unwrap().is_empty(), "{report}");

    for id in [&parent, &child] {
        let (before_session, before_messages) = essentials(&env, id);
        let (after_session, after_messages) = essentials(&fresh, id);
        assert_eq!(after_messages, before_messages, "messages of {id}");
        let mut before_session = before_session;
        let mut after_session = after_session;
        // `created` is kept to the microsecond (Python's isoformat).
        for s in [&mut before_session, &mut after_session] {
            let t = s["created_at"].as_str().unwrap().to_string();
            s["created_at"] = Value::String(t.chars().take(26).collect());
        }
        assert_eq!(after_session, before_session, "session {id}");
    }
    assert_eq!(
        essentials(&fresh, &parent).0["name"],
        "round trip",
        "the name survives"
    );
    let kids = fresh.json(&["session", "list", "--all", "--all-projects", "--json"]);
    assert!(
        kids.as_array()
            .unwrap()
            .iter()
            .any(|s| s["id"] == child.as_str() && s["parent_id"] == parent.as_str()),
        "the lineage survives: {kids}"
    );
}
