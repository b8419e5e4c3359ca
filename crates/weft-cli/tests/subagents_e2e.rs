//! Issue 13 (seed 001, "use session_id from responses to continue
//! conversations"): multi-turn sub-agents through the real `weft` binary.
//! A scripted parent delegates with the `task` tool, gets the child's
//! `session_id` back, delegates again with it: the child's transcript holds
//! both exchanges, `session list --tree` shows one child, and a session id
//! that is not a child of this parent is a tool error the turn survives.

mod support;

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use support::*;

/// A plan whose provider answers from `script` and whose `helper` agent
/// echoes its instruction.
fn plan(env: &Env, script: &Path) -> PathBuf {
    let plan = json!({
        "session": {"orchestrator": "loop-basic", "context": "context-simple"},
        "providers": [{"module": "provider-scripted", "config": {"script": script}}],
        "tools": ["tool-task"],
        "agents": {"helper": {
            "description": "helps",
            "system": {"instruction": "You help."},
            "providers": [{"module": "provider-scripted", "config": {"mode": "echo"}}]
        }}
    });
    env.file("plan.json", &plan.to_string())
}

/// A script that calls `task` with `arguments`, then answers `answer`.
fn delegating_script(env: &Env, name: &str, arguments: Value, answer: &str) -> PathBuf {
    let script = json!({"responses": [
        {"tool_calls": [{"name": "task", "arguments": arguments}]},
        {"text": answer}
    ]});
    env.file(name, &script.to_string())
}

/// Runs a turn of `parent` with `script`; returns its final answer.
fn resume_with(env: &Env, parent: &str, script: &Path, prompt: &str) -> String {
    let out = env.json(&[
        "run",
        "--resume",
        parent,
        "--script",
        script.to_str().unwrap(),
        "--output",
        "json",
        prompt,
    ]);
    out["answer"].as_str().unwrap_or_default().to_string()
}

/// The tool messages of `id`'s transcript, as `session show` prints them.
fn tool_messages(env: &Env, id: &str) -> Vec<Value> {
    let shown = env.json(&["session", "show", id, "--transcript", "--json"]);
    shown["transcript"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .cloned()
        .collect()
}

fn children_of(env: &Env, parent: &str) -> Vec<Value> {
    let list = env.json(&["session", "list", "--all", "--json"]);
    list.as_array()
        .unwrap()
        .iter()
        .filter(|s| s["parent_id"] == parent)
        .cloned()
        .collect()
}

#[test]
fn a_session_id_from_the_task_result_continues_the_same_child() {
    let env = Env::new();
    let first = delegating_script(
        &env,
        "first.json",
        json!({"agent": "helper", "instruction": "look around"}),
        "first done",
    );
    let plan = plan(&env, &first);
    let run = env.json(&[
        "run",
        "--mount-plan",
        plan.to_str().unwrap(),
        "--output",
        "json",
        "delegate please",
    ]);
    let parent = run["session_id"].as_str().unwrap().to_string();

    // The task result: readable text naming the session id, and the
    // structured result in the record.
    let tools = tool_messages(&env, &parent);
    assert_eq!(tools.len(), 1, "{tools:?}");
    let kids = children_of(&env, &parent);
    assert_eq!(kids.len(), 1, "{kids:?}");
    let child = kids[0]["id"].as_str().unwrap().to_string();
    let text = tools[0].to_string();
    assert!(text.contains(&format!("session_id {child}")), "{text}");
    assert!(text.contains("To continue this conversation"), "{text}");
    assert_eq!(
        tools[0]["metadata"]["tool_data"],
        json!({"session_id": child, "agent": "helper", "response": "look around", "status": "completed"})
    );

    // Delegating again with the session id continues that child.
    let second = delegating_script(
        &env,
        "second.json",
        json!({"agent": "helper", "instruction": "look closer", "session_id": child}),
        "second done",
    );
    assert_eq!(resume_with(&env, &parent, &second, "again"), "second done");
    let tools = tool_messages(&env, &parent);
    assert_eq!(tools.len(), 2, "{tools:?}");
    assert_eq!(
        tools[1]["metadata"]["tool_data"]["session_id"],
        child.as_str()
    );
    assert_eq!(tools[1]["metadata"]["tool_data"]["response"], "look closer");

    // The child's transcript holds both exchanges.
    let shown = env.json(&["session", "show", &child, "--transcript", "--json"]);
    let exchanges: Vec<(String, String)> = shown["transcript"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] != "system")
        .map(|m| {
            (
                m["role"].as_str().unwrap_or_default().to_string(),
                m["content"].to_string(),
            )
        })
        .collect();
    let roles: Vec<&str> = exchanges.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(
        roles,
        ["user", "assistant", "user", "assistant"],
        "{exchanges:?}"
    );
    assert!(exchanges[0].1.contains("look around"), "{exchanges:?}");
    assert!(exchanges[2].1.contains("look closer"), "{exchanges:?}");
    let session = &shown["session"];
    assert_eq!(session["turn_count"], 2);
    assert_eq!(session["parent_id"], parent.as_str());
    assert_eq!(session["agent_name"], "helper");
    assert!(session["metadata"]["config"].is_object(), "{session}");
    assert_eq!(session["metadata"]["agent_overlay"]["description"], "helps");

    // The tree: one child under the parent, in text and JSON.
    let tree = env.json(&["session", "list", "--tree", "--json"]);
    let root = tree
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == parent.as_str())
        .unwrap_or_else(|| panic!("the parent is listed: {tree}"));
    let ids: Vec<&Value> = root["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["id"])
        .collect();
    assert_eq!(ids, [&json!(child)], "{root}");
    let text = env.ok(&["session", "list", "--tree"]);
    assert_eq!(text.matches(&child).count(), 1, "{text}");
    let child_row = text
        .lines()
        .find(|l| l.contains(&child))
        .expect("the child's row");
    assert!(
        child_row.starts_with("  "),
        "indented under the parent: {text}"
    );
}

#[test]
fn a_session_id_of_another_parent_is_a_tool_error() {
    let env = Env::new();
    let first = delegating_script(
        &env,
        "first.json",
        json!({"agent": "helper", "instruction": "look around"}),
        "first done",
    );
    let plan = plan(&env, &first);
    let plan = plan.to_str().unwrap();
    let mut parents = Vec::new();
    for prompt in ["one", "two"] {
        let run = env.json(&["run", "--mount-plan", plan, "--output", "json", prompt]);
        parents.push(run["session_id"].as_str().unwrap().to_string());
    }
    let theirs = children_of(&env, &parents[1])[0]["id"]
        .as_str()
        .unwrap()
        .to_string();

    for (name, session_id, wanted) in [
        (
            "foreign.json",
            theirs.as_str(),
            "is not a sub-agent session of this session",
        ),
        (
            "root.json",
            parents[1].as_str(),
            "is not a sub-agent session of this session",
        ),
        (
            "missing.json",
            "no-such-session",
            "there is no session no-such-session",
        ),
    ] {
        let script = delegating_script(
            &env,
            name,
            json!({"agent": "helper", "instruction": "x", "session_id": session_id}),
            "went on",
        );
        assert_eq!(resume_with(&env, &parents[0], &script, "steal"), "went on");
        let tools = tool_messages(&env, &parents[0]);
        let last = tools.last().unwrap();
        assert_eq!(last["content"][0]["is_error"], true, "{last}");
        assert!(last.to_string().contains(wanted), "{name}: {last}");
    }
    // Neither tree changed.
    assert_eq!(children_of(&env, &parents[0]).len(), 1);
    assert_eq!(children_of(&env, &parents[1]).len(), 1);
    let shown = env.json(&["session", "show", &theirs, "--json"]);
    assert_eq!(shown["session"]["turn_count"], 1);
}
