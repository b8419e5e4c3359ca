//! `tool-mcp` through the real `weft` binary: servers from config.toml and
//! from a mount plan, tools called by a scripted model, a crash mid-call,
//! nothing left running afterwards, and `weft mcp list`.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::*;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../weft-mcp/tests/fixtures/mcp_test_server.py")
}

fn pids(file: &Path) -> Vec<i32> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Whether `pid` is a live (not zombie) process.
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

fn wait_all_dead(file: &Path) -> bool {
    for _ in 0..100 {
        if pids(file).iter().all(|p| !alive(*p)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// config.toml with two servers: `test` (trusted) and `guarded`, plus
/// `extra`.
fn configure_with(env: &Env, pid_file: &Path, extra: &str) {
    let server = format!(
        "command = \"python3\"\nargs = [{:?}]\nenv = {{ MCP_PID_FILE = {:?} }}\n",
        fixture().display().to_string(),
        pid_file.display().to_string()
    );
    let config = format!(
        "[mcp.servers.test]\n{server}trust = true\n\n[mcp.servers.guarded]\n{server}\n{extra}"
    );
    std::fs::write(env.home.path().join("config.toml"), config).expect("config.toml");
}

/// config.toml with two servers: `test` (trusted) and `guarded`.
fn configure(env: &Env, pid_file: &Path) {
    configure_with(env, pid_file, "");
}

/// The tool results of a session's log: (output, is_error), in order.
fn tool_results(env: &Env, id: &str) -> Vec<(String, bool)> {
    log_kinds(env, id)
        .into_iter()
        .filter(|(kind, _)| kind == "message")
        .flat_map(|(_, data)| {
            data["content"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|b| b["type"] == "tool_result")
                .map(|b| {
                    (
                        b["output"].as_str().unwrap_or_default().to_string(),
                        b["is_error"].as_bool().unwrap_or(false),
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn a_scripted_model_calls_mcp_tools_survives_a_crash_and_leaves_nothing_running() {
    let env = Env::new();
    let pid_file = env.project.path().join("pids");
    configure_with(
        &env,
        &pid_file,
        "[mcp.servers.broken]\ncommand = \"python3\"\nargs = [\"-c\", \"import sys; sys.stderr.write('bad token'); sys.exit(1)\"]\n",
    );
    let script = env.script(
        "mcp.json",
        r#"{"responses": [
          {"tool_calls": [
            {"name": "mcp__test__echo", "arguments": {"text": "hi"}},
            {"name": "mcp__test__add_numbers", "arguments": {"a": 2, "b": 3}}
          ]},
          {"tool_calls": [{"name": "mcp__test__crash", "arguments": {}}]},
          {"tool_calls": [
            {"name": "mcp__test__echo", "arguments": {"text": "again"}},
            {"name": "mcp__guarded__echo", "arguments": {"text": "not without approval"}}
          ]},
          {"text": "all done"}
        ]}"#,
    );
    let run = env.weft(&[
        "run",
        "--script",
        script.to_str().unwrap(),
        "--output",
        "json",
        "use the tools",
    ]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    // A server that cannot start is left out with a warning; the rest work.
    assert!(
        stderr.contains("MCP server broken") && stderr.contains("bad token"),
        "{stderr}"
    );
    let out: serde_json::Value = serde_json::from_slice(&run.stdout).expect("json output");
    let id = out["session_id"].as_str().expect("session id").to_string();
    let results = tool_results(&env, &id);
    assert_eq!(results.len(), 5, "{results:?}");
    assert_eq!(results[0], ("echo: hi".to_string(), false));
    assert_eq!(results[1], ("the sum is 5\n{\"sum\":5}".to_string(), false));
    let (crash, is_error) = &results[2];
    assert!(*is_error, "{crash}");
    assert!(crash.contains("MCP server test"), "{crash}");
    assert!(
        crash.contains("crashing on purpose"),
        "stderr tail: {crash}"
    );
    assert_eq!(results[3], ("echo: again".to_string(), false), "restarted");
    assert!(results[4].1, "no approval in a non-interactive run");
    assert!(results[4].0.contains("was not called"), "{}", results[4].0);
    let answer = env.ok(&["session", "show", &id, "--transcript"]);
    assert!(answer.contains("all done"), "{answer}");
    // test (twice: restarted after the crash) and guarded, each with a
    // `sleep` grandchild.
    assert_eq!(pids(&pid_file).len(), 6, "{:?}", pids(&pid_file));
    assert!(wait_all_dead(&pid_file), "MCP servers outlived the session");
}

#[test]
fn mcp_list_shows_servers_and_their_tools() {
    let env = Env::new();
    let pid_file = env.project.path().join("pids");
    configure(&env, &pid_file);
    let text = env.ok(&["mcp", "list"]);
    assert!(text.contains("guarded (stdio): python3"), "{text}");
    assert!(text.contains("test (stdio, trusted): python3"), "{text}");
    assert!(text.contains("mcp__test__add_numbers"), "{text}");
    assert!(text.contains("Adds two numbers."), "{text}");

    let json = env.json(&["mcp", "list", "--json"]);
    let servers = json.as_array().expect("array");
    assert_eq!(servers.len(), 2);
    let test = &servers[1];
    assert_eq!(test["name"], "test");
    assert_eq!(test["trust"], true);
    let names: Vec<&str> = test["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "mcp__test__echo",
            "mcp__test__add_numbers",
            "mcp__test__crash",
            "mcp__test__slow"
        ]
    );
    assert_eq!(test["tools"][1]["remote_name"], "add.numbers");

    // A plan's broken server is shown with its error; the exit code says so.
    let plan = env.file(
        "plan.yaml",
        "session: { orchestrator: loop-basic, context: context-simple }\n\
         tools:\n  - module: tool-mcp\n    config:\n      servers:\n        broken:\n          command: python3\n          args: [\"-c\", \"import sys; sys.stderr.write('missing API key\\\\n'); sys.exit(1)\"]\n",
    );
    let out = env.weft(&["mcp", "list", "--mount-plan", plan.to_str().unwrap()]);
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("broken (stdio)"), "{stdout}");
    assert!(stdout.contains("error: MCP server broken"), "{stdout}");
    assert!(stdout.contains("missing API key"), "{stdout}");
    assert!(stderr.contains("broken"), "{stderr}");
    assert!(wait_all_dead(&pid_file), "mcp list leaves nothing running");
}

#[tokio::test]
async fn the_daemon_mounts_the_configured_servers() {
    let env = Env::new();
    let pid_file = env.project.path().join("pids");
    configure(&env, &pid_file);
    let script = env.script(
        "daemon.json",
        r#"{"responses": [
          {"tool_calls": [{"name": "mcp__test__echo", "arguments": {"text": "from the daemon"}}]},
          {"text": "daemon done"}
        ]}"#,
    );
    let d = env.serve(&["--script", script.to_str().unwrap()]).await;
    let (status, body) = d.post("/run", serde_json::json!({"message": "go"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], "daemon done");
    let id = body["session_id"].as_str().expect("session id").to_string();
    let results = tool_results(&env, &id);
    assert_eq!(results, [("echo: from the daemon".to_string(), false)]);
    let mut d = d;
    assert!(d.terminate().success());
    assert!(wait_all_dead(&pid_file), "MCP servers outlived the daemon");
}
