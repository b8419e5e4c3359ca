//! The `tool-mcp` module against a real MCP server (the Python stdlib test
//! server in `tests/fixtures`), over stdio and streamable HTTP.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use weft_core::approval::FixedApproval;
use weft_core::mount::ModuleSpec;
use weft_core::testing::{FakeProvider, Reply, config_with, messages, tool_results};
use weft_core::{Session, SessionConfig};
use weft_mcp::{McpConfig, McpServer, ServerConfig};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mcp_test_server.py")
}

fn stdio_server(pid_file: &Path) -> ServerConfig {
    ServerConfig {
        command: Some("python3".into()),
        args: vec![fixture().display().to_string()],
        env: [("MCP_PID_FILE".to_string(), pid_file.display().to_string())].into(),
        ..Default::default()
    }
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

async fn all_dead(file: &Path) -> bool {
    for _ in 0..100 {
        if pids(file).iter().all(|p| !alive(*p)) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

fn mcp_spec(servers: Value) -> ModuleSpec {
    ModuleSpec {
        module: weft_mcp::MODULE.into(),
        config: json!({"servers": servers})
            .as_object()
            .cloned()
            .unwrap_or_default(),
    }
}

fn session_config(provider: &FakeProvider, spec: ModuleSpec) -> SessionConfig {
    let mut config = config_with(provider, Vec::new());
    let mut registry = (*config.registry).clone();
    weft_mcp::register(&mut registry);
    config.registry = Arc::new(registry);
    config.plan.tools = vec![spec];
    config
}

#[tokio::test]
async fn listing_names_tools_as_the_model_sees_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pid_file = dir.path().join("pids");
    let mut config = McpConfig::default();
    config
        .servers
        .insert("test".into(), stdio_server(&pid_file));
    config.servers.insert(
        "broken".into(),
        ServerConfig {
            command: Some("python3".into()),
            args: vec![
                "-c".into(),
                "import sys; sys.stderr.write('no config found\\n'); sys.exit(2)".into(),
            ],
            ..Default::default()
        },
    );
    let reports = weft_mcp::inspect(&config, dir.path()).await;
    let broken = &reports[0];
    assert_eq!(broken.name, "broken");
    let error = broken.error.as_deref().expect("broken fails");
    assert!(
        error.contains("MCP server broken") && error.contains("no config found"),
        "{error}"
    );
    let test = &reports[1];
    assert_eq!(test.error, None);
    let names: Vec<&str> = test.tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "mcp__test__echo",
            "mcp__test__add_numbers",
            "mcp__test__crash",
            "mcp__test__slow"
        ]
    );
    assert_eq!(test.tools[1].remote_name, "add.numbers");
    assert!(all_dead(&pid_file).await, "inspect leaves nothing running");
}

#[tokio::test]
async fn a_crash_is_a_tool_error_with_stderr_and_the_next_call_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pid_file = dir.path().join("pids");
    let server = McpServer::new("test", stdio_server(&pid_file), dir.path());
    let first = server
        .call(
            "echo",
            Some(
                json!({"text": "one"})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            ),
        )
        .await
        .expect("echo");
    assert_eq!(first.content.len(), 1);
    let first_pid = server.pid().await.expect("running");
    let err = server.call("crash", None).await.expect_err("crash");
    assert!(err.contains("MCP server test"), "{err}");
    assert!(err.contains("crashing on purpose"), "stderr tail: {err}");
    let again = server
        .call(
            "echo",
            Some(
                json!({"text": "two"})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            ),
        )
        .await
        .expect("restarted");
    assert!(
        serde_json::to_string(&again)
            .unwrap_or_default()
            .contains("echo: two")
    );
    assert_ne!(server.pid().await, Some(first_pid), "a new process");
    server.stop().await;
    assert!(all_dead(&pid_file).await, "stop kills the process group");
}

#[tokio::test]
async fn a_slow_call_times_out_and_the_server_is_stopped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pid_file = dir.path().join("pids");
    let mut config = stdio_server(&pid_file);
    config.timeout_secs = Some(1);
    let server = McpServer::new("sleepy", config, dir.path());
    let err = server
        .call(
            "slow",
            Some(json!({"secs": 30}).as_object().cloned().unwrap_or_default()),
        )
        .await
        .expect_err("timeout");
    assert!(
        err.contains("MCP server sleepy did not answer slow within 1 s"),
        "{err}"
    );
    assert!(all_dead(&pid_file).await, "a timed-out server is stopped");
}

#[tokio::test]
async fn a_session_calls_tools_asks_for_approval_and_stops_servers_at_cleanup() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pid_file = dir.path().join("pids");
    let provider = FakeProvider::new();
    provider.push(Reply::tool_calls([
        ("mcp__test__echo", json!({"text": "hi"})),
        ("mcp__test__add_numbers", json!({"a": 2, "b": 3})),
        ("mcp__guarded__echo", json!({"text": "secret"})),
    ]));
    provider.push(Reply::text("done"));
    let mut guarded = stdio_server(&pid_file);
    guarded.trust = false;
    let mut trusted = stdio_server(&pid_file);
    trusted.trust = true;
    let spec = mcp_spec(json!({
        "test": serde_json::to_value(&trusted).unwrap_or_default(),
        "guarded": serde_json::to_value(&guarded).unwrap_or_default(),
    }));
    let mut config = session_config(&provider, spec);
    config.approval = Some(Arc::new(FixedApproval::deny_all()));
    let session = Session::new(config);
    session.initialize().await.expect("mounted");
    assert_eq!(session.execute("go").await.expect("turn"), "done");
    let results = tool_results(&messages(&session, None).await.expect("messages"));
    assert_eq!(results.len(), 3);
    assert_eq!((results[0].1.as_str(), results[0].2), ("echo: hi", false));
    assert_eq!(results[1].1, "the sum is 5\n{\"sum\":5}");
    assert!(results[2].2, "denied: {results:?}");
    assert!(results[2].1.contains("was not called"), "{}", results[2].1);
    assert_eq!(
        pids(&pid_file).len(),
        4,
        "both servers ran (with a grandchild each)"
    );
    assert!(
        pids(&pid_file).iter().all(|p| alive(*p)),
        "the servers run until the session ends"
    );
    session.cleanup().await.expect("cleanup");
    assert!(all_dead(&pid_file).await, "cleanup stops every server");
}

#[tokio::test]
async fn streamable_http_servers_work_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port_file = dir.path().join("port");
    let mut child = std::process::Command::new("python3")
        .arg(fixture())
        .arg("--http")
        .arg(&port_file)
        .spawn()
        .expect("python3");
    let mut port = None;
    for _ in 0..200 {
        if let Ok(text) = std::fs::read_to_string(&port_file) {
            port = text.trim().parse::<u16>().ok();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let port = port.expect("the HTTP server wrote its port");
    let url = format!("http://127.0.0.1:{port}/mcp");
    let server_config = ServerConfig {
        url: Some(url.clone()),
        headers: [("X-Test-Key".to_string(), "${WEFT_MCP_TEST_KEY}".to_string())].into(),
        ..Default::default()
    };
    let server = McpServer::new("web", server_config.clone(), dir.path());
    let err = server.list_tools().await.expect_err("variable not set");
    assert!(
        err.contains("WEFT_MCP_TEST_KEY") && !err.contains("k-123"),
        "{err}"
    );
    let server_config = ServerConfig {
        headers: [("X-Test-Key".to_string(), "k-123".to_string())].into(),
        ..server_config
    };
    let server = McpServer::new("web", server_config, dir.path());
    let tools = server.list_tools().await.expect("listed over HTTP");
    assert_eq!(tools.len(), 4);
    let result = server
        .call(
            "add.numbers",
            Some(
                json!({"a": 1, "b": 41})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            ),
        )
        .await
        .expect("called over HTTP");
    assert_eq!(result.structured_content, Some(json!({"sum": 42})));
    server.stop().await;
    let _ = child.kill();
    let _ = child.wait();
}
