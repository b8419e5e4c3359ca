//! End to end: Ctrl-C at the very start of a turn (issue 10). The
//! interactive mode runs in a tmux pane (its own tmux server, killed at the
//! end by [`Tmux`]'s drop) where a Ctrl-C typed right after the prompt's
//! Enter cancels that turn and leaves the REPL running; `weft run` given
//! SIGINT while it opens its session exits with the cancelled outcome
//! instead of dying of the signal. The shared helpers are in
//! `support/mod.rs`; the tmux driver is here.

mod support;

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

/// How long any awaited condition may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(20);

/// A mount plan whose provider echoes the prompt after `delay_ms` (and
/// returns early when the turn is cancelled).
fn slow_echo_plan(env: &Env, delay_ms: u64) -> PathBuf {
    env.file(
        "slow-echo.json",
        &json!({
            "session": {"orchestrator": "loop-basic", "context": "context-simple"},
            "providers": [{"module": "provider-scripted",
                           "config": {"mode": "echo", "delay_ms": delay_ms}}]
        })
        .to_string(),
    )
}

/// The tmux binary; the test fails (never skips) without it.
fn tmux_binary() -> &'static str {
    let ok = Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "tmux is needed by this test (it drives `weft` in a terminal): install tmux \
         (apt-get install tmux) and rerun"
    );
    "tmux"
}

/// A tmux server of its own (`tmux -L <socket>`) with one pane running a
/// command; dropping it kills the server, also when the test fails.
struct Tmux {
    socket: String,
    /// The socket's file, removed with the server.
    socket_path: Option<PathBuf>,
}

impl Tmux {
    /// Starts the shell command `command` in `dir` with `env` in a detached
    /// pane, which stays after the command exits.
    fn start(dir: &std::path::Path, env: &[(&str, String)], command: &str) -> Self {
        let bin = tmux_binary();
        let mut tmux = Self {
            socket_path: None,
            socket: format!(
                "weft-ctrlc-{}-{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or_default()
            ),
        };
        let mut c = Command::new(bin);
        c.args(["-L", &tmux.socket, "-f", "/dev/null", "start-server", ";"])
            .args(["set-option", "-g", "remain-on-exit", "on", ";"])
            .args(["new-session", "-d", "-x", "160", "-y", "50", "-c"])
            .arg(dir);
        for (k, v) in env {
            c.arg("-e").arg(format!("{k}={v}"));
        }
        c.arg(command);
        let out = c.output().expect("run tmux");
        assert!(
            out.status.success(),
            "tmux new-session failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let path = tmux.run(&["display-message", "-p", "#{socket_path}"]);
        tmux.socket_path = Some(String::from_utf8_lossy(&path.stdout).trim().into());
        tmux
    }

    fn run(&self, args: &[&str]) -> Output {
        let out = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("run tmux");
        assert!(
            out.status.success(),
            "tmux {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// `tmux send-keys` with `keys`, in one invocation.
    fn send_keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "0"];
        args.extend_from_slice(keys);
        self.run(&args);
    }

    /// The pane's text (with the history above it).
    fn screen(&self) -> String {
        let out = self.run(&["capture-pane", "-p", "-J", "-S", "-", "-t", "0"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A pane variable (`cursor_x`, `pane_dead`, …).
    fn pane(&self, variable: &str) -> String {
        let format = format!("#{{{variable}}}");
        let out = self.run(&["list-panes", "-t", "0", "-F", &format]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Polls the pane every 50 ms until `ready` holds of its text.
    fn wait_for(&self, what: &str, ready: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if ready(&screen) {
                return screen;
            }
            assert!(
                start.elapsed() < PATIENCE,
                "timed out waiting for {what}; the pane shows:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
        if let Some(path) = &self.socket_path {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The lines of the pane after the `n`-th (from 1) line containing `marker`.
fn after_nth<'a>(screen: &'a str, marker: &str, n: usize) -> Option<Vec<&'a str>> {
    let lines: Vec<&str> = screen.lines().collect();
    let at = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.contains(marker))
        .nth(n.checked_sub(1)?)?
        .0;
    Some(lines[at + 1..].to_vec())
}

/// The session's messages (`weft session show --json --transcript`), each
/// as (role, the message's JSON text).
fn messages(env: &Env, id: &str) -> Vec<(String, String)> {
    let show = env.json(&["session", "show", id, "--json", "--transcript"]);
    show["transcript"]
        .as_array()
        .unwrap_or_else(|| panic!("no transcript: {show}"))
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap_or("").to_string(),
                m["content"].to_string(),
            )
        })
        .collect()
}

/// Waits for the exit status the pane's shell writes to `file` when weft
/// exits.
fn wait_exit_status(file: &std::path::Path, tmux: &Tmux) -> String {
    let start = Instant::now();
    loop {
        let status = std::fs::read_to_string(file).unwrap_or_default();
        if status.ends_with('\n') {
            return status.trim().to_string();
        }
        assert!(
            start.elapsed() < PATIENCE,
            "weft did not exit:\n{}",
            tmux.screen()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `weft --mount-plan` (answers echoed after 2 s) in a tmux pane, and the
/// file where the pane's shell writes weft's exit status.
fn start_repl(env: &Env) -> (Tmux, PathBuf) {
    let plan = slow_echo_plan(env, 2000);
    let home = env.home.path().to_string_lossy().into_owned();
    let status_file = env.project.path().join("exit-status");
    let tmux = Tmux::start(
        env.project.path(),
        &[
            ("WEFT_HOME", home),
            ("EXIT_STATUS", status_file.to_string_lossy().into_owned()),
        ],
        // weft, then its exit status in $EXIT_STATUS (the shell reaps it;
        // tmux sometimes leaves a pane's exited process a zombie). tmux
        // runs one command string with the shell, which must outlive the
        // Ctrl-C sent to weft (`trap`; weft gets the default action back).
        &format!(
            "trap : INT; env -u ANTHROPIC_API_KEY -u OPENAI_API_KEY -u WEFT_STORE__KIND '{}' \
             --mount-plan '{}'; echo $? > \"$EXIT_STATUS\"",
            env!("CARGO_BIN_EXE_weft"),
            plan.display()
        ),
    );
    tmux.wait_for("the first prompt", |s| s.contains("weft> "));
    (tmux, status_file)
}

/// The one session of the environment.
fn only_session(env: &Env) -> String {
    let list = env.json(&["session", "list", "--json"]);
    let sessions = list.as_array().expect("a list");
    assert_eq!(sessions.len(), 1, "{list}");
    sessions[0]["id"].as_str().expect("id").to_string()
}

/// Issue 10: in the interactive mode, a Ctrl-C sent the moment the line
/// editor has taken the prompt (it lands in the first milliseconds of the
/// turn, before the turn has started or just after) cancels that turn, and
/// the REPL goes on: the next prompt is answered, `/exit` exits 0, and the
/// log has no answer for the cancelled turn.
#[test]
fn ctrl_c_at_the_start_of_an_interactive_turn_cancels_it_and_the_repl_goes_on() {
    let env = Env::new();
    // Each answer comes after 2 s, so the cancelled turn is still waiting
    // for its answer when the Ctrl-C lands.
    let (tmux, status_file) = start_repl(&env);

    // The prompt and its Enter; the Ctrl-C as soon as the line editor has
    // taken the line (the echo, and the cursor on the next line), when the
    // turn is starting. (Not sooner, e.g. in the same send-keys: a Ctrl-C
    // that reaches the terminal before the editor has read the Enter is a
    // Ctrl-C at the prompt, which the terminal answers by discarding the
    // unread line.) On this terminal the turn's spinner may already be
    // drawn on that next line: the line was taken then too.
    tmux.send_keys(&["doomed question", "Enter"]);
    let start = Instant::now();
    // Taken: the cursor on the next line, or the turn's spinner drawn there.
    let taken = || {
        let screen = tmux.screen();
        screen.contains("weft> doomed question")
            && (tmux.pane("cursor_x") == "0" || screen.contains("waiting for the model"))
    };
    while !taken() {
        assert!(
            start.elapsed() < PATIENCE,
            "the line editor did not take the line:\n{}",
            tmux.screen()
        );
    }
    tmux.send_keys(&["C-c"]);
    tmux.wait_for("the cancelled turn and a new prompt", |s| {
        after_nth(s, "(turn cancelled)", 1)
            .is_some_and(|rest| rest.iter().any(|l| l.contains("weft> ")))
    });
    assert!(
        !status_file.exists() && tmux.pane("pane_dead") == "0",
        "weft exited after the cancelled turn:\n{}",
        tmux.screen()
    );

    tmux.send_keys(&["second question", "Enter"]);
    let screen = tmux.wait_for("the second answer and a new prompt", |s| {
        after_nth(s, "weft> second question", 1).is_some_and(|rest| {
            let answer = rest.iter().position(|l| l.trim() == "second question");
            answer.is_some_and(|a| rest[a + 1..].iter().any(|l| l.contains("weft> ")))
        })
    });
    assert!(
        !screen.lines().any(|l| l.trim() == "doomed question"),
        "the cancelled turn was answered:\n{screen}"
    );

    tmux.send_keys(&["/exit", "Enter"]);
    let status = wait_exit_status(&status_file, &tmux);
    assert_eq!(status, "0", "weft's exit status:\n{}", tmux.screen());

    let id = only_session(&env);
    let messages = messages(&env, &id);
    let roles: Vec<&str> = messages.iter().map(|(r, _)| r.as_str()).collect();
    let answers: Vec<&String> = messages
        .iter()
        .filter(|(r, _)| r == "assistant")
        .map(|(_, c)| c)
        .collect();
    assert_eq!(
        answers.len(),
        1,
        "one answer, the second turn's: {messages:?}"
    );
    assert!(answers[0].contains("second question"), "{messages:?}");
    assert!(
        !messages
            .iter()
            .any(|(r, c)| r == "assistant" && c.contains("doomed question")),
        "the cancelled turn has no answer: {messages:?}"
    );
    assert_eq!(roles.last(), Some(&"assistant"), "{messages:?}");
}

/// Issue 10: `weft run` given SIGINT while it is still opening its session
/// (before its turn has started) cancels the turn and exits with the
/// cancelled outcome (130, "cancelled"), not by the signal's default action.
#[test]
fn sigint_at_the_start_of_weft_run_cancels_the_turn() {
    let env = Env::new();
    let plan = slow_echo_plan(&env, 20_000);
    let child = env.spawn(&[
        "run",
        "--mount-plan",
        plan.to_str().expect("path"),
        "doomed question",
    ]);
    // As soon as the session exists on disk (the process is opening it).
    let start = Instant::now();
    while !walk(env.home.path())
        .iter()
        .any(|p| p.to_string_lossy().contains("/sessions/"))
    {
        assert!(start.elapsed() < PATIENCE, "weft run made no session");
        std::thread::sleep(Duration::from_millis(1));
    }
    let pid = child.id().to_string();
    let killed = Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.signal(),
        None,
        "weft run died of the signal: {stderr}"
    );
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("cancelled"), "{stderr}");
    assert!(
        String::from_utf8_lossy(&out.stdout).trim().is_empty(),
        "nothing answered"
    );
    let id = only_session(&env);
    let messages = messages(&env, &id);
    assert!(
        !messages.iter().any(|(r, _)| r == "assistant"),
        "the cancelled turn has no answer: {messages:?}"
    );
}
