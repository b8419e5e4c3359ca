//! End to end: `weft resume` (seed 001's "interactively with amplifier
//! resume"), the real binary in a real pseudo-terminal (rexpect): type a
//! filter, press Enter, and the chosen session — not the newest — goes on
//! in the interactive mode; without a terminal it says what to run
//! instead. The helpers are in `support/mod.rs`.

mod support;

use support::*;

/// `weft run` with [`SCRIPT`]: the new session's id.
fn run(env: &Env, prompt: &str) -> String {
    let script = env.script("one.json", SCRIPT);
    let out = env.json(&[
        "run",
        "--script",
        script.to_str().expect("path"),
        "--output",
        "json",
        prompt,
    ]);
    out["session_id"].as_str().expect("session_id").to_string()
}

/// Sends `keys` to the pty at once (rexpect buffers `send`).
fn press(pty: &mut rexpect::session::PtySession, keys: &str, what: &str) {
    pty.send(keys).unwrap_or_else(|e| panic!("{what}: {e}"));
    pty.flush().unwrap_or_else(|e| panic!("{what}: {e}"));
}

fn turns(env: &Env, id: &str) -> u64 {
    env.json(&["session", "show", id, "--json"])["session"]["turn_count"]
        .as_u64()
        .expect("turn_count")
}

#[test]
fn resume_filters_and_resumes_the_chosen_session_in_a_pty() {
    let env = Env::new();
    let apples = run(&env, "a question about apples");
    let pears = run(&env, "a question about pears");
    let plums = run(&env, "a question about plums");
    let script = env.script(
        "resumed.json",
        r#"{"responses": [{"text": "answer in the resumed session"}]}"#,
    );
    let command = env.terminal_command(&["resume", "--script", script.to_str().expect("path")]);
    let mut pty = rexpect::session::spawn_command(command, Some(30_000)).expect("spawn in a pty");
    pty.exp_string("resume which session?").expect("the picker");
    // Filter by prompt text: only the pears session is left; Enter takes it.
    press(&mut pty, "PEARS", "type");
    pty.exp_string(&pears[..8]).expect("the filtered list");
    press(&mut pty, "\r", "enter");
    pty.exp_string(&format!("session {pears} (resumed)"))
        .expect("the interactive mode on the chosen session");
    pty.exp_string("weft> ").expect("the prompt");
    press(&mut pty, "and what else?\r", "a prompt");
    pty.exp_string("answer in the resumed session")
        .expect("the scripted answer");
    pty.exp_string("weft> ").expect("the next prompt");
    press(&mut pty, "/exit\r", "exit");
    pty.exp_eof().expect("weft exits");

    assert_eq!(turns(&env, &pears), 2, "the chosen session got the turn");
    assert_eq!(turns(&env, &apples), 1);
    assert_eq!(turns(&env, &plums), 1, "not the newest");
    let show = env.json(&["session", "show", &pears, "--json"]);
    assert_eq!(show["last_prompt"], "and what else?");
}

#[test]
fn resume_by_id_prefix_and_arrow_keys() {
    let env = Env::new();
    let first = run(&env, "one");
    let second = run(&env, "two");
    let script = env.script(
        "resumed.json",
        r#"{"responses": [{"text": "picked with arrows"}]}"#,
    );
    let command = env.terminal_command(&["resume", "--script", script.to_str().expect("path")]);
    let mut pty = rexpect::session::spawn_command(command, Some(30_000)).expect("spawn in a pty");
    pty.exp_string("resume which session?").expect("the picker");
    // Newest first: the cursor starts on `second`; ↓ moves to `first`.
    press(&mut pty, "\x1b[B", "arrow down");
    press(&mut pty, "\r", "enter");
    pty.exp_string(&format!("session {first} (resumed)"))
        .expect("the session under the cursor");
    pty.exp_string("weft> ").expect("the prompt");
    press(&mut pty, "hello\r", "a prompt");
    pty.exp_string("picked with arrows").expect("the answer");
    pty.exp_string("weft> ").expect("the next prompt");
    pty.send_control('d').expect("Ctrl-D");
    pty.exp_eof().expect("weft exits");
    assert_eq!(turns(&env, &first), 2);
    assert_eq!(turns(&env, &second), 1);

    // An id prefix filters too; Esc leaves without resuming anything.
    let command = env.terminal_command(&["resume", "--script", script.to_str().expect("path")]);
    let mut pty = rexpect::session::spawn_command(command, Some(30_000)).expect("spawn in a pty");
    pty.exp_string("resume which session?").expect("the picker");
    press(&mut pty, &second[..13], "type");
    pty.exp_string(&second[..8]).expect("the filtered list");
    press(&mut pty, "\x1b", "Esc");
    pty.exp_string("nothing resumed").expect("cancelled");
    pty.exp_eof().expect("weft exits");
    assert_eq!(turns(&env, &second), 1);
}

#[test]
fn resume_without_a_terminal_says_what_to_run() {
    let env = Env::new();
    run(&env, "one");
    let err = env.fails(&["resume"]);
    assert!(
        err.contains("needs a terminal")
            && err.contains("`weft session list`")
            && err.contains("`weft session resume ID`"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one sentence: {err}");
}
