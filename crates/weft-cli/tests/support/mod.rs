//! Helpers shared by the end-to-end tests of the `weft` binary
//! (`cli_*e2e.rs`, `server*_e2e.rs`): [`Env`], a temporary `WEFT_HOME`
//! and project directory that run the real `weft` binary
//! (`CARGO_BIN_EXE_weft`); [`Daemon`], a `weft serve` process on a free
//! loopback port, whose HTTP and SSE helpers are weft-testkit's [`Api`]
//! (re-exported here with the kit's other helpers); the readers of a
//! session's files under the home ([`walk`], [`log_kinds`],
//! [`status_changes`], [`turn_running`]); the scripts and mount plans the
//! tests share; and the setups several tests repeat ([`Env::run_hi`],
//! [`Env::first_session`], [`Env::wait_turn_running`],
//! [`cli_turn_under_daemon`]).
//!
//! Not every test binary uses every helper, hence the module-level
//! `dead_code` allowance.

#![allow(dead_code)]

#[cfg(feature = "postgres")]
pub mod postgres;

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
// The kit's helpers, for the tests to take with the rest (`use support::*`);
// not every test binary uses each.
#[allow(unused_imports)]
pub use weft_testkit::{
    Api, SESSION_FIELDS, SseClient, SseEvent, client, detail, message_seq, split, texts,
};

/// provider-scripted's one answer, with usage.
pub const SCRIPT: &str = r#"{"responses": [{"text": "Hello from the script", "usage": {"input_tokens": 7, "output_tokens": 3}}]}"#;

pub const ECHO_PLAN: &str = r#"{"session": {"orchestrator": "loop-basic", "context": "context-simple"},
 "providers": [{"module": "provider-scripted", "config": {"mode": "echo"}}],
 "agents": {"helper": {"description": "helps", "system": {"instruction": "You help."}}}}"#;

/// Echoes the prompt after 500 ms, so turns overlap.
pub const SLOW_ECHO_PLAN: &str = r#"{"session": {"orchestrator": "loop-basic", "context": "context-simple"},
 "providers": [{"module": "provider-scripted", "config": {"mode": "echo", "delay_ms": 500}}]}"#;

/// A temporary `WEFT_HOME` and project directory (with an empty `sub`
/// directory) in which the real `weft` binary runs.
pub struct Env {
    pub home: tempfile::TempDir,
    pub project: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Self {
        let env = Self {
            home: tempfile::tempdir().expect("home"),
            project: tempfile::tempdir().expect("project"),
        };
        std::fs::create_dir_all(env.project.path().join("sub")).expect("sub");
        env
    }

    /// Writes `body` to `name` in the project directory.
    pub fn file(&self, name: &str, body: &str) -> PathBuf {
        let path = self.project.path().join(name);
        std::fs::write(&path, body).expect("write");
        path
    }

    /// [`Env::file`] under the name the CLI tests give it.
    pub fn script(&self, name: &str, body: &str) -> PathBuf {
        self.file(name, body)
    }

    /// `weft args…` in the project directory, not yet started.
    pub fn command(&self, args: &[&str]) -> Command {
        self.command_in(self.project.path(), args)
    }

    /// `weft args…` in `dir`, not yet started.
    pub fn command_in(&self, dir: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_weft"));
        c.args(args);
        self.environment(c, dir)
    }

    /// `weft args…` in the project directory, for a pseudo-terminal: a
    /// shell first sizes the terminal (a fresh pty is 0×0) to 120×40, then
    /// becomes `weft`; stdin is inherited (the pty), not null.
    pub fn terminal_command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("sh");
        c.args([
            "-c",
            "stty cols 120 rows 40 && exec \"$0\" \"$@\"",
            env!("CARGO_BIN_EXE_weft"),
        ])
        .args(args);
        let mut c = self.environment(c, self.project.path());
        c.env("TERM", "xterm").stdin(Stdio::inherit());
        c
    }

    /// `c` set up to run in `dir` with this home and none of the caller's
    /// provider, store or daemon settings; stdin is null.
    fn environment(&self, mut c: Command, dir: &Path) -> Command {
        c.current_dir(dir)
            .env("WEFT_HOME", self.home.path())
            .env_remove("ANTHROPIC_API_KEY")
            .env_remove("OPENAI_API_KEY")
            .env_remove("WEFT_STORE__KIND")
            .env_remove("WEFT_STORE__URL")
            .env_remove("AK_SESSION__TYPE")
            .env_remove("AK_SESSION__REDIS__URL")
            .env_remove("WEFT_SERVER__TOKEN")
            .env_remove("WEFT_SERVER__HOST")
            .env_remove("WEFT_SERVER__PORT")
            .env_remove("WEFT_ENCRYPTION__KEY")
            .env_remove("WEFT_ENCRYPTION__KEY_FILE")
            .env_remove("WEFT_NEW_ENCRYPTION_KEY")
            .stdin(Stdio::null());
        c
    }

    pub fn weft(&self, args: &[&str]) -> Output {
        self.weft_in(self.project.path(), args)
    }

    pub fn weft_in(&self, dir: &Path, args: &[&str]) -> Output {
        self.command_in(dir, args).output().expect("run weft")
    }

    /// `weft args…` started in the background (stdout and stderr piped).
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn weft")
    }

    /// The stdout of `weft args…`, which must succeed.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.weft(args);
        assert!(
            out.status.success(),
            "weft {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }

    /// The stderr of `weft args…`, which must fail.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.weft(args);
        assert!(!out.status.success(), "weft {args:?} should have failed");
        String::from_utf8(out.stderr).expect("utf-8 stderr")
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let out = self.ok(args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("weft {args:?}: {e}: {out}"))
    }

    /// `weft run --provider scripted --script s.json hi` with [`SCRIPT`]:
    /// one session with one turn.
    pub fn run_hi(&self) -> String {
        let script = self.script("s.json", SCRIPT);
        self.ok(&[
            "run",
            "--provider",
            "scripted",
            "--script",
            script.to_str().unwrap(),
            "hi",
        ])
    }

    /// Runs one turn and returns the new session's id.
    pub fn first_session(&self) -> String {
        let script = self.script("first.json", SCRIPT);
        let out = self.json(&[
            "run",
            "--script",
            script.to_str().unwrap(),
            "--output",
            "json",
            "first",
        ]);
        out["session_id"].as_str().unwrap().to_string()
    }

    /// Whether any `turn.*.lock` of the session names a holder (a turn
    /// runs, or its process died mid-turn).
    pub fn turn_running(&self, id: &str) -> bool {
        walk(self.home.path()).iter().any(|p| {
            p.parent().is_some_and(|d| d.ends_with(id))
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("turn.") && n.ends_with(".lock"))
                && std::fs::metadata(p).is_ok_and(|m| m.len() > 0)
        })
    }

    /// Waits (up to 20 s) until a turn runs on session `id`.
    pub fn wait_turn_running(&self, id: &str) {
        let start = Instant::now();
        while !self.turn_running(id) {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the first turn never started"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts `weft serve` on a free port with `args`.
    pub async fn serve(&self, args: &[&str]) -> Daemon {
        self.serve_with(&[], args).await
    }

    /// [`Env::serve`] with environment variables `vars` set.
    pub async fn serve_with(&self, vars: &[(&str, &str)], args: &[&str]) -> Daemon {
        let port = free_port();
        let log = self.project.path().join(format!("serve-{port}.log"));
        let mut all = vec!["serve".to_string(), "--port".into(), port.to_string()];
        all.extend(args.iter().map(|s| s.to_string()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let child = self
            .command(&all)
            .envs(vars.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn weft serve");
        let token = args
            .iter()
            .position(|a| *a == "--token")
            .and_then(|i| args.get(i + 1))
            .map(|t| t.to_string());
        let daemon = Daemon {
            child,
            api: Api::new(format!("http://127.0.0.1:{port}"), token),
            log,
        };
        daemon.wait_ready().await;
        daemon
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A `weft serve` process (killed on drop); its HTTP helpers are those
/// of [`Api`], with the `--token` it was given.
pub struct Daemon {
    pub child: Child,
    pub api: Api,
    pub log: PathBuf,
}

impl Deref for Daemon {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    /// Waits (up to 20 s) until `/health` answers; panics with the
    /// daemon's log if it does not.
    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(r) = self.req(reqwest::Method::GET, "/health").send().await
                && r.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "weft serve did not come up: {}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let ok = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(ok.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "weft serve did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// The record kinds of a session's log file (`kind.type`, `kind.data`).
pub fn log_kinds(env: &Env, id: &str) -> Vec<(String, Value)> {
    let projects = env.home.path().join("projects");
    let log = std::fs::read_dir(&projects)
        .expect("projects")
        .filter_map(|p| p.ok())
        .map(|p| p.path().join("sessions").join(id).join("log.jsonl"))
        .find(|p| p.exists())
        .expect("the session's log");
    std::fs::read_to_string(log)
        .expect("read log")
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|r| {
            let kind = r["kind"]["type"].as_str().unwrap_or("").to_string();
            (kind, r["kind"]["data"].clone())
        })
        .collect()
}

/// Whether a turn holds (or its dead process left) the turn lock of
/// `main` in session `id`.
pub fn turn_running(env: &Env, id: &str) -> bool {
    std::fs::read_dir(env.home.path().join("projects"))
        .into_iter()
        .flatten()
        .filter_map(|p| p.ok())
        .map(|p| p.path().join("sessions").join(id).join("turn.main.lock"))
        .any(|p| std::fs::metadata(p).is_ok_and(|m| m.len() > 0))
}

/// The `from → to` status changes in a session's log file.
pub fn status_changes(env: &Env, id: &str) -> Vec<(String, String)> {
    log_kinds(env, id)
        .into_iter()
        .filter(|(kind, _)| kind == "status")
        .map(|(_, d)| {
            let s = |k: &str| d[k].as_str().unwrap_or("").to_string();
            (s("from"), s("to"))
        })
        .collect()
}

/// The setup of the tests of a CLI turn under a daemon: `weft serve` with
/// [`ECHO_PLAN`], an active session on it, and `weft run --resume` of that
/// session started in the background with a plan that answers
/// "slow answer" after `delay_ms`.
pub async fn cli_turn_under_daemon(env: &Env, delay_ms: u64) -> (Daemon, String, Child) {
    let plan = env.file("echo.json", ECHO_PLAN);
    let d = env
        .serve(&["--mount-plan", plan.to_str().expect("path")])
        .await;
    let id = d.active().await;
    let slow = env.file(
        "slow-plan.json",
        &json!({
            "session": {"orchestrator": "loop-basic", "context": "context-simple"},
            "providers": [{"module": "provider-scripted", "config":
                {"responses": [{"text": "slow answer", "delay_ms": delay_ms}]}}]
        })
        .to_string(),
    );
    let cli = env
        .command(&[
            "run",
            "--resume",
            &id,
            "--mount-plan",
            slow.to_str().expect("path"),
            "long turn",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn weft run");
    (d, id, cli)
}
