//! End to end: the real `weft` binary through run → continue → session
//! list/show/fork/rename/search/export/delete/cleanup, branches, mail and
//! state, with provider-scripted and the default fs store. The store's
//! repairs are in `cli_store_e2e.rs`, concurrent turns in
//! `cli_turns_e2e.rs`; the helpers in `support/mod.rs`.

mod support;

use serde_json::Value;
use support::*;

#[test]
fn run_prints_the_answer_and_the_session_id() {
    let env = Env::new();
    let script = env.script("s.json", SCRIPT);
    let out = env.weft(&[
        "run",
        "--provider",
        "scripted",
        "--script",
        script.to_str().unwrap(),
        "hi",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stdout, "Hello from the script\n");
    let id = stderr
        .trim()
        .strip_prefix("session ")
        .expect("session line");
    assert!(weft_core::SessionId::parse(id).is_ok());
    // The fs store wrote the session where DESIGN.md says.
    let sessions: Vec<_> = walk(env.home.path())
        .into_iter()
        .filter(|p| p.ends_with("log.jsonl"))
        .collect();
    assert_eq!(sessions.len(), 1);
    assert!(
        sessions[0]
            .to_string_lossy()
            .contains(&format!("/sessions/{id}/"))
    );
}

#[test]
fn the_whole_session_lifecycle() {
    let env = Env::new();
    let s1 = env.script(
        "s1.json",
        r#"{"responses": [{"text": "first answer about apples"}]}"#,
    );
    let s2 = env.script(
        "s2.json",
        r#"{"responses": [{"text": "second answer about pears"}]}"#,
    );
    let s3 = env.script("s3.json", r#"{"responses": [{"text": "third answer"}]}"#);

    let run = env.json(&[
        "run",
        "--provider",
        "scripted",
        "--script",
        s1.to_str().unwrap(),
        "--output",
        "json",
        "tell me about apples",
    ]);
    let id = run["session_id"].as_str().unwrap().to_string();
    assert_eq!(run["answer"], "first answer about apples");
    assert_eq!(run["status"], "completed");

    let cont = env.json(&[
        "continue",
        "--provider",
        "scripted",
        "--script",
        s2.to_str().unwrap(),
        "--output",
        "json",
        "and pears?",
    ]);
    assert_eq!(
        cont["session_id"],
        id.as_str(),
        "continue picks the latest session"
    );
    assert_eq!(cont["turns"], 2);

    // run --resume with a prefix of the id.
    let prefix = &id[..20];
    let again = env.json(&[
        "run",
        "--resume",
        prefix,
        "--provider",
        "scripted",
        "--script",
        s3.to_str().unwrap(),
        "--output",
        "json",
        "one more",
    ]);
    assert_eq!(again["session_id"], id.as_str());
    assert_eq!(again["turns"], 3);

    // list
    let list = env.json(&["session", "list", "--json"]);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["message_count"], 6);
    let table = env.ok(&["session", "list"]);
    assert!(
        table.contains("Last prompt") && table.contains(&id) && table.contains("one more"),
        "{table}"
    );
    // Another project does not see it, unless --all-projects.
    let elsewhere = tempfile::tempdir().unwrap();
    let out = env.weft_in(elsewhere.path(), &["session", "list", "--json"]);
    assert_eq!(
        serde_json::from_slice::<Value>(&out.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        0
    );
    let out = env.weft_in(
        elsewhere.path(),
        &["session", "list", "--all-projects", "--json"],
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&out.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // show
    let show = env.ok(&["session", "show", prefix, "--transcript"]);
    assert!(
        show.contains("tell me about apples") && show.contains("second answer about pears"),
        "{show}"
    );

    // rename (and the 50-character limit)
    env.ok(&["session", "rename", prefix, "fruit talk"]);
    assert_eq!(
        env.json(&["session", "show", &id, "--json"])["session"]["name"],
        "fruit talk"
    );
    let err = env.fails(&["session", "rename", prefix, &"x".repeat(51)]);
    assert!(err.contains("at most 50"), "{err}");

    // fork after turn 1
    let fork = env.json(&["session", "fork", &id, "1", "apples only", "--json"]);
    let fork_id = fork["id"].as_str().unwrap().to_string();
    assert_eq!(fork["forked_from"]["session_id"], id.as_str());
    assert_eq!(fork["forked_from"]["turn"], 1);
    assert_eq!(fork["message_count"], 2);
    assert_eq!(fork["name"], "apples only");
    let err = env.fails(&["session", "fork", &id, "9"]);
    assert!(err.contains("fork at a turn from 1 to 3"), "{err}");

    // search
    let hits = env.json(&["session", "search", "pears", "--json"]);
    assert_eq!(hits.as_array().unwrap().len(), 2, "{hits}");
    assert!(
        hits.as_array()
            .unwrap()
            .iter()
            .all(|h| h["session_id"] == id.as_str())
    );
    let hits = env.json(&["session", "search", "apples", "--json"]);
    assert!(
        hits.as_array()
            .unwrap()
            .iter()
            .any(|h| h["session_id"] == fork_id.as_str())
    );

    // export in every format
    let md = env.ok(&["session", "export", &id, "--format", "md"]);
    assert!(
        md.starts_with("# fruit talk") && md.contains("### Turn 3"),
        "{md}"
    );
    let json = env.json(&["session", "export", &id, "--format", "json"]);
    assert_eq!(json["branches"][0]["messages"].as_array().unwrap().len(), 6);
    let jsonl = env.ok(&["session", "export", &id, "--format", "jsonl"]);
    let seqs: Vec<u64> = jsonl
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    let csv = env.ok(&["session", "export", &id, "--format", "csv"]);
    assert!(csv.starts_with("created_at,role,content,id,sender,recipient,branch,metadata\n"));
    assert_eq!(csv.lines().count(), 7);
    let parquet = env.project.path().join("t.parquet");
    env.ok(&[
        "session",
        "export",
        &id,
        "--format",
        "parquet",
        "-o",
        parquet.to_str().unwrap(),
    ]);
    assert!(std::fs::metadata(&parquet).unwrap().len() > 100);

    // ambiguous and invalid ids
    let err = env.fails(&["session", "show", &id[..4]]);
    assert!(err.contains("matches several sessions"), "{err}");
    let err = env.fails(&["session", "show", "../etc"]);
    assert!(err.contains("invalid id \"../etc\""), "{err}");
    let err = env.fails(&["session", "show", "zzzz"]);
    assert!(err.contains("no session id starts with \"zzzz\""), "{err}");

    // delete needs confirmation without a terminal
    let err = env.fails(&["session", "delete", &fork_id]);
    assert!(err.contains("--confirm"), "{err}");
    env.ok(&["session", "delete", &fork_id, "--confirm"]);
    let err = env.fails(&["session", "show", &fork_id]);
    assert!(
        err.contains("no session id starts with") || err.contains("not found"),
        "{err}"
    );

    // cleanup: dry run removes nothing, then the real one
    let dry = env.ok(&["session", "cleanup", "--days", "0", "--dry-run"]);
    assert!(dry.contains(&id));
    assert_eq!(
        env.json(&["session", "list", "--json"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    env.ok(&["session", "cleanup", "--days", "0"]);
    assert_eq!(
        env.json(&["session", "list", "--json"])
            .as_array()
            .unwrap()
            .len(),
        0
    );
}

#[test]
fn branches_mail_and_state_from_the_cli() {
    let env = Env::new();
    let script = env.script("s.json", SCRIPT);
    let id = env.json(&[
        "run",
        "--provider",
        "scripted",
        "--script",
        script.to_str().unwrap(),
        "--output",
        "json",
        "hi",
    ])["session_id"]
        .as_str()
        .unwrap()
        .to_string();
    env.ok(&["branch", "new", &id, "research"]);
    env.ok(&["branch", "split", &id, "main", "copy"]);
    let branches = env.json(&["branch", "list", &id, "--json"]);
    assert_eq!(branches.as_array().unwrap().len(), 3);
    assert_eq!(branches[2]["messages"], 2, "split cloned the messages");

    env.ok(&[
        "mail",
        "send",
        &id,
        "--from",
        "main",
        "--to",
        "research",
        "please look into X",
    ]);
    env.ok(&[
        "mail",
        "send",
        &id,
        "--from",
        "research",
        "--broadcast",
        "done",
    ]);
    let err = env.fails(&[
        "mail", "send", &id, "--from", "main", "--to", "nowhere", "x",
    ]);
    assert!(err.contains("no branch \"nowhere\""), "{err}");
    let pending = env.json(&["mail", "list", &id, "--to", "research", "--json"]);
    assert_eq!(pending.as_array().unwrap().len(), 1);
    env.ok(&["mail", "collect", &id, "--to", "research"]);
    let research = env.json(&["session", "export", &id, "--format", "json"]);
    let research_msgs = research["branches"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["branch"]["name"] == "research")
        .unwrap()["messages"]
        .clone();
    assert_eq!(research_msgs[0]["content"][0]["text"], "please look into X");

    env.ok(&["branch", "default", &id, "research"]);
    env.ok(&["branch", "remove", &id, "research"]);
    assert_eq!(
        env.json(&["session", "show", &id, "--json"])["session"]["default_branch"],
        "main"
    );

    env.ok(&["state", "set", &id, "plan", "{\"step\": 2}"]);
    env.ok(&["state", "set", &id, "app:theme", "dark"]);
    assert_eq!(
        env.ok(&["state", "get", &id, "plan"]).trim(),
        "{\"step\":2}"
    );
    let all = env.json(&["state", "list", &id, "--json"]);
    assert_eq!(all["app:theme"], "dark");
    env.ok(&["state", "delete", &id, "plan"]);
    let err = env.fails(&["state", "get", &id, "plan"]);
    assert!(err.contains("no state key"), "{err}");
    let err = env.fails(&["state", "set", &id, "temp:x", "1"]);
    assert!(err.contains("temp:"), "{err}");
    env.ok(&["state", "set", &id, "gone", "1"]);
    env.ok(&["state", "clear", &id]);
    let all = env.json(&["state", "list", &id, "--json"]);
    assert!(all.get("gone").is_none());

    // run on a branch
    let s2 = env.script("s2.json", r#"{"responses": [{"text": "on the copy"}]}"#);
    let out = env.json(&[
        "run",
        "--resume",
        &id,
        "--branch",
        "copy",
        "--provider",
        "scripted",
        "--script",
        s2.to_str().unwrap(),
        "--output",
        "json",
        "branch prompt",
    ]);
    assert_eq!(out["answer"], "on the copy");
    let csv = env.ok(&[
        "session",
        "export",
        &id,
        "--format",
        "csv",
        "--branch",
        "copy",
        "--exclude-clone",
    ]);
    assert_eq!(csv.lines().count(), 3, "{csv}");
}

#[test]
fn errors_are_one_clear_sentence() {
    let env = Env::new();
    let err = env.fails(&["run", "--provider", "scripted", "hi"]);
    assert!(err.contains("pass --script FILE"), "{err}");
    let err = env.fails(&["run", "--provider", "nope", "hi"]);
    assert!(err.contains("unknown provider \"nope\""), "{err}");
    let err = env.fails(&["continue", "hi"]);
    assert!(err.contains("no session to continue"), "{err}");
    let err = env.fails(&[
        "run",
        "--profile",
        "missing",
        "--provider",
        "scripted",
        "--script",
        "x.json",
        "hi",
    ]);
    assert!(
        err.contains("does not exist") || err.contains("unknown profile"),
        "{err}"
    );
}

#[test]
fn completions_profiles_and_models() {
    let env = Env::new();
    let script = env.script("s.json", SCRIPT);
    let models = env.json(&[
        "models",
        "--provider",
        "scripted",
        "--script",
        script.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(models[0]["id"], "scripted");
    let err = env.fails(&["models", "--provider", "anthropic"]);
    assert!(err.contains("ANTHROPIC_API_KEY"), "{err}");
    let bash = env.ok(&["completions", "bash"]);
    assert!(bash.contains("weft"));
    let profiles = env.ok(&["profiles"]);
    assert!(profiles.contains("base") && profiles.contains("dev"));
}

#[test]
fn import_from_amplifier_keeps_ids_names_and_links() {
    let env = Env::new();
    let amp = tempfile::tempdir().unwrap();
    let sessions = amp
        .path()
        .join("projects")
        .join("-home-u-proj")
        .join("sessions");
    let parent = "11111111-2222-4333-8444-555555555555";
    let child = "1111111122224333-aaaaaaaaaaaaaaaa_explorer";
    for (id, meta, transcript) in [
        (
            parent,
            format!(
                r#"{{"session_id":"{parent}","created":"2026-01-02T03:04:05Z","profile":"dev","model":"claude-sonnet-4-5","turn_count":2,"name":"old work"}}"#
            ),
            "{\"role\":\"user\",\"content\":\"first\"}\n{\"role\":\"assistant\",\"content\":\"one\"}\n{\"role\":\"user\",\"content\":\"second\"}\n{\"role\":\"assistant\",\"content\":\"two\"}\n",
        ),
        (
            child,
            format!(
                r#"{{"session_id":"{child}","created":"2026-01-02T03:05:00Z","parent_id":"{parent}","trace_id":"{parent}","agent_name":"explorer"}}"#
            ),
            "{\"role\":\"user\",\"content\":\"look\"}\n{\"role\":\"assistant\",\"content\":\"found\"}\n",
        ),
    ] {
        let dir = sessions.join(id);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("metadata.json"), meta).unwrap();
        std::fs::write(dir.join("transcript.jsonl"), transcript).unwrap();
    }
    let report = env.json(&[
        "session",
        "import",
        "--from-amplifier",
        amp.path().to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(report["imported"].as_array().unwrap().len(), 2, "{report}");
    let shown = env.json(&["session", "show", parent, "--json"]);
    assert_eq!(shown["session"]["name"], "old work");
    assert_eq!(shown["session"]["turn_count"], 2);
    let kid = env.json(&["session", "show", child, "--json"]);
    assert_eq!(kid["session"]["parent_id"], parent);
    assert_eq!(kid["session"]["agent_name"], "explorer");
    // Importing again skips what is there.
    let again = env.json(&[
        "session",
        "import",
        "--from-amplifier",
        amp.path().to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(again["skipped"].as_array().unwrap().len(), 2);
}

/// Issue 9 M1: a session started with `--mount-plan` carries its plan, so
/// `continue` and `run --resume` work without passing the file again.
#[test]
fn a_mount_plan_session_can_be_continued_without_the_plan() {
    let env = Env::new();
    let plan = env.script(
        "plan.yaml",
        "session: {orchestrator: loop-basic, context: context-simple}\n\
         providers:\n  - module: provider-scripted\n    config: {mode: echo}\n",
    );
    let run = env.json(&[
        "run",
        "--mount-plan",
        plan.to_str().unwrap(),
        "--output",
        "json",
        "hi",
    ]);
    let id = run["session_id"].as_str().unwrap().to_string();
    // The file is gone: the recorded plan is what is run.
    std::fs::remove_file(&plan).unwrap();
    let cont = env.json(&["continue", "--output", "json", "again"]);
    assert_eq!(cont["session_id"], id.as_str());
    assert_eq!(cont["turns"], 2);
    assert!(cont["answer"].as_str().unwrap().contains("again"), "{cont}");
    let resumed = env.json(&["run", "--resume", &id, "--output", "json", "third"]);
    assert_eq!(resumed["turns"], 3);
    // Without a recorded plan, an unknown profile still says so.
    let err = env.fails(&["run", "--profile", "plan", "hello"]);
    assert!(err.contains("plan"), "{err}");
}

/// Issue 9 finding 1 (T3): the CLI's file tools never read weft's home,
/// while reads elsewhere outside the project stay allowed.
#[test]
fn tools_never_read_the_weft_home() {
    let env = Env::new();
    std::fs::write(
        env.home.path().join("config.toml"),
        "[server]\ntoken = \"TOKEN-XYZ-123\"\n",
    )
    .unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("notes.txt"), "OUTSIDE-NOTE\n").unwrap();
    let config = env.home.path().join("config.toml");
    let plan = env.script(
        "reader.json",
        &serde_json::json!({
            "session": {"orchestrator": "loop-basic", "context": "context-simple"},
            "providers": [{"module": "provider-scripted", "config": {"responses": [
                {"tool_calls": [
                    {"name": "read_file", "arguments": {"path": config}},
                    {"name": "grep", "arguments": {"pattern": "TOKEN", "path": env.home.path()}},
                    {"name": "read_file", "arguments": {"path": outside.path().join("notes.txt")}}
                ]},
                {"text": "done"}
            ]}}],
            "tools": ["tool-filesystem", "tool-search"]
        })
        .to_string(),
    );
    let run = env.json(&[
        "run",
        "--mount-plan",
        plan.to_str().unwrap(),
        "--output",
        "json",
        "read it",
    ]);
    assert_eq!(run["answer"], "done");
    // The session's files hold the tool results: the refusals, the outside
    // note, and never the token.
    let stored: String = walk(env.home.path())
        .iter()
        .filter(|p| p.file_name().is_some_and(|n| n != "config.toml"))
        .map(|p| String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned())
        .collect();
    assert!(stored.contains("inside weft's home"), "{stored}");
    assert!(stored.contains("OUTSIDE-NOTE"), "{stored}");
    assert!(!stored.contains("TOKEN-XYZ-123"), "{stored}");
}
