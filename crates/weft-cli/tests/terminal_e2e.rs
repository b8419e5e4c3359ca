//! End to end: the terminal experience (issue 18), the real binary in a
//! real pseudo-terminal (rexpect, as `resume_e2e.rs`): a spinner while the
//! first token is awaited, gone once the answer prints; a spinner naming
//! the running tool; Markdown answers rendered (a highlighted code block,
//! a heading, a table); the per-turn summary line; `--raw`, `-q`,
//! `NO_COLOR`; and the same commands piped: plain text, no escape byte.
//! The helpers are in `support/mod.rs`.

mod support;

use std::process::Command;

use support::*;

/// An answer after 1.5 s, with usage, in Markdown.
const DELAYED: &str = r##"{"responses": [{"delay_ms": 1500,
 "text": "# Fruit report\n\nApples are **crisp**.\n\n```rust\nfn main() { println!(\"hi\"); }\n```\n\n| fruit | n |\n|---|--:|\n| kiwi | 12 |\n\nThe end.\n",
 "usage": {"input_tokens": 1234, "output_tokens": 56, "cache_read_tokens": 1000}}]}"##;

/// A bash call that runs for a second, then an answer.
const TOOL: &str = r#"{"responses": [
 {"tool_calls": [{"name": "bash", "arguments": {"command": "sleep 1; echo slept"}}]},
 {"text": "Slept well.\n"}]}"#;

/// `c` without colour settings from the caller's environment.
fn clean(mut c: Command) -> Command {
    c.env_remove("NO_COLOR").env_remove("CLICOLOR_FORCE");
    c
}

/// What rexpect read (one char per byte) as the UTF-8 text it was.
fn utf8(read: String) -> String {
    let bytes: Vec<u8> = read.chars().map(|c| c as u32 as u8).collect();
    String::from_utf8(bytes).expect("utf-8 output")
}

/// Runs `weft args…` in a pty to the end: everything it printed.
fn in_pty(env: &Env, args: &[&str], vars: &[(&str, &str)]) -> String {
    let mut c = clean(env.terminal_command(args));
    c.envs(vars.iter().copied());
    let mut pty = rexpect::session::spawn_command(c, Some(60_000)).expect("spawn in a pty");
    utf8(pty.exp_eof().expect("weft exits"))
}

#[test]
fn a_spinner_waits_for_the_first_token_and_goes_when_the_answer_prints() {
    let env = Env::new();
    let script = env.script("delayed.json", DELAYED);
    let c =
        clean(env.terminal_command(&["run", "--script", script.to_str().expect("path"), "fruit?"]));
    let mut pty = rexpect::session::spawn_command(c, Some(60_000)).expect("spawn in a pty");
    // The spinner is drawn (with its elapsed time) before any answer.
    pty.exp_string("waiting for the model")
        .expect("the spinner before the first token");
    let before = utf8(pty.exp_string("Fruit report").expect("the answer"));
    assert!(
        before.contains("waiting for the model · 0s"),
        "with the time: {before:?}"
    );
    assert!(!before.contains("Apples"), "nothing of the answer before");
    // After the spinner's last frame, its line was cleared before the
    // answer was written over it.
    let last = before.rfind("waiting for the model").expect("a frame");
    assert!(
        before[last..].contains("\r\x1b[2K"),
        "the spinner line is cleared: {:?}",
        &before[last..]
    );
    let rest = utf8(pty.exp_eof().expect("weft exits"));
    assert!(
        !rest.contains("waiting for the model"),
        "the spinner is gone once the answer prints: {rest:?}"
    );
    // The summary line: tokens (cached ones too), tool calls, wall time.
    assert!(
        rest.contains("2,234 in (1,000 cached) / 56 out tokens · 0 tool calls · "),
        "the summary line: {rest:?}"
    );
    let session = rest.find("session ").expect("the session line");
    assert!(rest.find("out tokens").expect("summary") < session);
}

#[test]
fn markdown_answers_are_rendered_on_a_terminal() {
    let env = Env::new();
    let script = env.script("delayed.json", DELAYED);
    let out = in_pty(
        &env,
        &["run", "--script", script.to_str().expect("path"), "fruit?"],
        &[],
    );
    // The heading bold and underlined, without its hashes.
    assert!(out.contains("\x1b[1;4mFruit report\x1b[0m"), "{out:?}");
    assert!(!out.contains("# Fruit"));
    assert!(out.contains("Apples are \x1b[1mcrisp\x1b[0m."), "{out:?}");
    // The code block: fences dimmed, its code highlighted (24-bit colours).
    assert!(out.contains("\x1b[2m```rust\x1b[0m"), "{out:?}");
    let code = out.find("```rust").expect("the code block");
    let code = &out[code..];
    let end = code[3..].find("```").expect("its end") + 3;
    assert!(
        code[..end].contains("\x1b[38;2;"),
        "highlighted: {:?}",
        &code[..end]
    );
    assert!(code[..end].contains("main"));
    // The table drawn with borders, the number right-aligned.
    assert!(out.contains("┌───────┬────┐"), "{out:?}");
    assert!(out.contains(" kiwi  \x1b[2m│\x1b[0m 12 "), "{out:?}");
}

#[test]
fn a_spinner_names_the_running_tool() {
    let env = Env::new();
    let script = env.script("tool.json", TOOL);
    let c = clean(env.terminal_command(&[
        "run",
        "--profile",
        "dev",
        "--yes",
        "--script",
        script.to_str().expect("path"),
        "sleep a bit",
    ]));
    let mut pty = rexpect::session::spawn_command(c, Some(60_000)).expect("spawn in a pty");
    pty.exp_string("running bash(sleep 1; echo slept)")
        .expect("the tool spinner with the tool's name and command");
    let before = utf8(
        pty.exp_string(" slept (exit code 0)")
            .expect("the tool's result"),
    );
    assert!(before.ends_with("⎿"), "the result line: {before:?}");
    let last = before.rfind("running bash").expect("a frame");
    assert!(
        before[last..].contains("\x1b[2K"),
        "cleared before the result line"
    );
    let rest = utf8(pty.exp_eof().expect("weft exits"));
    assert!(rest.contains("Slept well."), "{rest:?}");
    assert!(
        !rest.contains("running bash"),
        "the tool spinner is gone: {rest:?}"
    );
    assert!(
        rest.contains("1 tool call"),
        "the summary counts it: {rest:?}"
    );
}

#[test]
fn parallel_tools_are_shown_together() {
    let env = Env::new();
    let script = env.script(
        "parallel.json",
        r#"{"responses": [
 {"tool_calls": [{"name": "bash", "arguments": {"command": "sleep 1; echo one"}},
                 {"name": "bash", "arguments": {"command": "sleep 2; echo two"}}]},
 {"text": "Both done.\n"}]}"#,
    );
    let path = script.to_str().expect("path");
    let out = in_pty(
        &env,
        &["run", "--profile", "dev", "--yes", "--script", path, "go"],
        &[],
    );
    assert!(
        out.contains("running 2 tools: bash(sleep 1; echo one) · bash(sleep 2; echo two) · "),
        "{out:?}"
    );
    assert!(
        out.contains("running bash(sleep 2; echo two)"),
        "one left: {out:?}"
    );
    assert!(out.contains("2 tool calls"), "{out:?}");
}

#[test]
fn raw_quiet_and_no_color_on_a_terminal() {
    let env = Env::new();
    let script = env.script("delayed.json", DELAYED);
    let path = script.to_str().expect("path");
    let raw = in_pty(&env, &["run", "--raw", "--script", path, "fruit?"], &[]);
    assert!(
        raw.contains("# Fruit report\r\n"),
        "--raw prints the text: {raw:?}"
    );
    assert!(raw.contains("Apples are **crisp**."));

    let quiet = in_pty(&env, &["-q", "run", "--script", path, "fruit?"], &[]);
    assert!(quiet.contains("Fruit report"));
    for noise in ["waiting for the model", "out tokens", "session "] {
        assert!(
            !quiet.contains(noise),
            "-q prints only the answer: {quiet:?}"
        );
    }

    for (args, vars) in [
        (
            vec!["run", "--script", path, "fruit?"],
            vec![("NO_COLOR", "1")],
        ),
        (
            vec!["--color", "never", "run", "--script", path, "fruit?"],
            vec![],
        ),
    ] {
        let plain = in_pty(&env, &args, &vars);
        assert!(plain.contains("# Fruit report"), "{plain:?}");
        assert!(
            plain.contains("│ kiwi  │ 12 │"),
            "the layout stays: {plain:?}"
        );
        assert!(
            !plain.contains("\x1b[38;2;") && !plain.contains("\x1b[1m"),
            "{plain:?}"
        );
        assert!(plain.contains("out tokens"), "the summary stays");
    }
}

#[test]
fn piped_output_is_plain_text_without_escapes() {
    let env = Env::new();
    let delayed = env.script("delayed.json", DELAYED);
    let tool = env.script("tool.json", TOOL);
    let runs = [
        vec!["run", "--script", delayed.to_str().expect("path"), "fruit?"],
        vec![
            "--color",
            "auto",
            "run",
            "--profile",
            "dev",
            "--yes",
            "--script",
            tool.to_str().expect("path"),
            "sleep",
        ],
    ];
    for args in runs {
        let out = clean(env.command(&args)).output().expect("run weft");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for (stream, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
            assert!(
                !bytes.contains(&0x1b) && !bytes.contains(&b'\r'),
                "{stream} of {args:?} has control characters: {:?}",
                String::from_utf8_lossy(bytes)
            );
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("waiting for the model") && !stderr.contains("out tokens"));
    }
    let out = clean(env.command(&["run", "--script", delayed.to_str().expect("path"), "fruit?"]))
        .output()
        .expect("run weft");
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    assert!(
        stdout.starts_with("# Fruit report\n\nApples are **crisp**.\n\n```rust\n"),
        "{stdout:?}"
    );
}

#[test]
fn progress_bars_for_an_index_rebuild_doctor_and_cleanup() {
    let env = Env::new();
    let plan = env.file("echo.json", ECHO_PLAN);
    let plan = plan.to_str().expect("path");
    for i in 0..5 {
        env.ok(&["run", "--mount-plan", plan, &format!("question {i}")]);
    }
    // A missing index is rebuilt at open (what a schema change does).
    let index = env.home.path().join("index.sqlite");
    std::fs::remove_file(&index).expect("remove the index");
    let out = in_pty(&env, &["session", "list"], &[]);
    assert!(out.contains("indexing sessions ["), "{out:?}");
    assert!(out.contains("/5 · "), "{out:?}");
    let out = in_pty(&env, &["doctor"], &[]);
    assert!(out.contains("checking sessions ["), "{out:?}");
    // Piped: the report only, no bar.
    std::fs::remove_file(&index).expect("remove the index");
    let out = env.weft(&["session", "cleanup", "--days", "0", "--dry-run"]);
    assert!(!out.stderr.contains(&0x1b) && !out.stdout.contains(&0x1b));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 5);
    let out = in_pty(&env, &["session", "cleanup", "--days", "0"], &[]);
    assert!(out.contains("removing old sessions ["), "{out:?}");
    assert!(out.contains("removed 5 session(s)"), "{out:?}");
}
