//! End to end: the real `weft` binary through run → continue → session
//! list/show/fork/rename/search/export/delete/cleanup, branches, mail and
//! state, with provider-scripted and the default fs store.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

struct Env {
    home: tempfile::TempDir,
    project: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        Self {
            home: tempfile::tempdir().unwrap(),
            project: tempfile::tempdir().unwrap(),
        }
    }

    fn script(&self, name: &str, body: &str) -> PathBuf {
        let path = self.project.path().join(name);
        std::fs::write(&path, body).unwrap();
        path
    }

    fn weft(&self, args: &[&str]) -> Output {
        self.weft_in(self.project.path(), args)
    }

    fn weft_in(&self, dir: &Path, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_weft"))
            .args(args)
            .current_dir(dir)
            .env("WEFT_HOME", self.home.path())
            .env_remove("ANTHROPIC_API_KEY")
            .env_remove("OPENAI_API_KEY")
            .env_remove("WEFT_STORE__KIND")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.weft(args);
        assert!(
            out.status.success(),
            "weft {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn fails(&self, args: &[&str]) -> String {
        let out = self.weft(args);
        assert!(!out.status.success(), "weft {args:?} should have failed");
        String::from_utf8(out.stderr).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.ok(args)).unwrap()
    }
}

const SCRIPT: &str = r#"{"responses": [{"text": "Hello from the script", "usage": {"input_tokens": 7, "output_tokens": 3}}]}"#;

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

fn walk(dir: &Path) -> Vec<PathBuf> {
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

/// Finding 7 of issue 9: a stray file under `projects/` made every command
/// fail with "Not a directory".
#[test]
fn a_stray_file_under_projects_does_not_stop_session_list() {
    let env = Env::new();
    let script = env.script("s.json", SCRIPT);
    env.ok(&[
        "run",
        "--provider",
        "scripted",
        "--script",
        script.to_str().unwrap(),
        "hi",
    ]);
    std::fs::write(env.home.path().join("projects").join("README"), "notes").unwrap();
    let out = env.weft(&["session", "list", "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(
        stderr.matches("stray entry").count(),
        1,
        "warned once: {stderr}"
    );
}

#[test]
fn doctor_checks_then_fixes_a_damaged_home() {
    let env = Env::new();
    let script = env.script("s.json", SCRIPT);
    env.ok(&[
        "run",
        "--provider",
        "scripted",
        "--script",
        script.to_str().unwrap(),
        "hi",
    ]);
    let healthy = env.ok(&["doctor"]);
    assert!(healthy.contains("no problems"), "{healthy}");

    let log = walk(env.home.path())
        .into_iter()
        .find(|p| p.ends_with("log.jsonl"))
        .unwrap();
    let dir = log.parent().unwrap().to_path_buf();
    let records = std::fs::read_to_string(&log).unwrap().lines().count();
    // A torn write, a lost metadata.json, a temp file of a dead process.
    let mut bytes = std::fs::read(&log).unwrap();
    bytes.extend_from_slice(br#"{"v":1,"seq":99,"ts":"#);
    std::fs::write(&log, bytes).unwrap();
    std::fs::remove_file(dir.join("metadata.json")).unwrap();
    std::fs::write(dir.join(".metadata.json.tmp-4000000000"), "{").unwrap();

    let out = env.weft(&["doctor"]);
    assert_eq!(out.status.code(), Some(1), "problems found: exit 1");
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.matches("problem: ").count(), 3, "{text}");
    assert!(text.contains("torn write"), "{text}");
    assert!(
        text.contains("repairable with `weft doctor --fix`"),
        "{text}"
    );
    let report: Value = serde_json::from_slice(&env.weft(&["doctor", "--json"]).stdout).unwrap();
    let kinds: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["kind"].as_str())
        .collect();
    assert!(
        kinds.contains(&"torn_tail") && kinds.contains(&"metadata") && kinds.contains(&"temp_file"),
        "{report}"
    );

    let fixed = env.ok(&["doctor", "--fix"]);
    assert_eq!(fixed.matches("fixed: ").count(), 3, "{fixed}");
    assert!(env.ok(&["doctor"]).contains("no problems"));
    assert_eq!(
        std::fs::read_to_string(&log).unwrap().lines().count(),
        records,
        "no record lost"
    );
    assert!(dir.join("metadata.json").is_file());
    assert!(!dir.join(".metadata.json.tmp-4000000000").exists());

    // A store doctor cannot check is one clear sentence and exit 2.
    let out = env.weft(&["--store", "memory", "doctor"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing for doctor to check"));
}

/// Finding 11 of issue 9 (the report's D17): a log cut in half (restored
/// from an older copy) kept its old head in the index for good.
#[test]
fn the_index_follows_a_log_that_shrank() {
    let env = Env::new();
    let script = env.script("s.json", SCRIPT);
    let script = script.to_str().unwrap();
    env.ok(&["run", "--provider", "scripted", "--script", script, "t0"]);
    let id = env.json(&["session", "list", "--json"])[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    for i in 1..6 {
        let prompt = format!("t{i}");
        env.ok(&[
            "run",
            "--resume",
            &id,
            "--provider",
            "scripted",
            "--script",
            script,
            &prompt,
        ]);
    }
    let log = walk(env.home.path())
        .into_iter()
        .find(|p| p.ends_with("log.jsonl"))
        .unwrap();
    let bytes = std::fs::read(&log).unwrap();
    std::fs::write(&log, &bytes[..bytes.len() / 2]).unwrap();
    // doctor sees the stale row.
    let out = env.weft(&["doctor"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("the index row says"));

    env.ok(&[
        "run",
        "--resume",
        &id,
        "--provider",
        "scripted",
        "--script",
        script,
        "after",
    ]);
    let shown = env.json(&["session", "show", &id, "--json"]);
    let listed = env.json(&["session", "list", "--json"]);
    let show_meta = &shown["session"];
    assert_eq!(
        listed[0]["last_seq"], show_meta["last_seq"],
        "{listed}\n{shown}"
    );
    assert_eq!(listed[0]["message_count"], show_meta["message_count"]);
    assert!(env.ok(&["doctor"]).contains("no problems"));
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
    fn texts(dir: &Path, out: &mut String) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                texts(&path, out);
            } else if path.file_name().is_some_and(|n| n != "config.toml") {
                out.push_str(&String::from_utf8_lossy(&std::fs::read(&path).unwrap()));
            }
        }
    }
    let mut stored = String::new();
    texts(env.home.path(), &mut stored);
    assert!(stored.contains("inside weft's home"), "{stored}");
    assert!(stored.contains("OUTSIDE-NOTE"), "{stored}");
    assert!(!stored.contains("TOKEN-XYZ-123"), "{stored}");
}

impl Env {
    /// `weft args…` started in the background (stdout and stderr piped).
    fn spawn(&self, args: &[&str]) -> std::process::Child {
        Command::new(env!("CARGO_BIN_EXE_weft"))
            .args(args)
            .current_dir(self.project.path())
            .env("WEFT_HOME", self.home.path())
            .env_remove("ANTHROPIC_API_KEY")
            .env_remove("OPENAI_API_KEY")
            .env_remove("WEFT_STORE__KIND")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Runs one turn and returns the new session's id.
    fn first_session(&self) -> String {
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
    fn turn_running(&self, id: &str) -> bool {
        walk(self.home.path()).iter().any(|p| {
            p.parent().is_some_and(|d| d.ends_with(id))
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("turn.") && n.ends_with(".lock"))
                && std::fs::metadata(p).is_ok_and(|m| m.len() > 0)
        })
    }
}

/// Issue 9 finding 4 (W5): two `weft run --resume` on one session at once.
/// The second waits for the first (saying so on stderr), both exit 0, both
/// answers are recorded, and the session ends completed.
#[test]
fn two_concurrent_runs_on_one_session_both_succeed() {
    let env = Env::new();
    let id = env.first_session();
    let slow = env.script(
        "slow.json",
        r#"{"responses": [{"text": "slow answer", "delay_ms": 600}]}"#,
    );
    let quick = env.script("quick.json", r#"{"responses": [{"text": "quick answer"}]}"#);
    let first = env.spawn(&[
        "run",
        "--resume",
        &id,
        "--script",
        slow.to_str().unwrap(),
        "a",
    ]);
    let start = std::time::Instant::now();
    while !env.turn_running(&id) {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "the first turn never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let second = env.spawn(&[
        "run",
        "--resume",
        &id,
        "--script",
        quick.to_str().unwrap(),
        "b",
    ]);
    let first = first.wait_with_output().unwrap();
    let second = second.wait_with_output().unwrap();
    let stderr = |o: &Output| String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(first.status.success(), "first: {}", stderr(&first));
    assert!(second.status.success(), "second: {}", stderr(&second));
    assert!(
        stderr(&second).contains("waiting for the turn running in process"),
        "the second says whom it waits for: {}",
        stderr(&second)
    );
    assert!(String::from_utf8_lossy(&first.stdout).contains("slow answer"));
    assert!(String::from_utf8_lossy(&second.stdout).contains("quick answer"));
    let show = env.json(&["session", "show", &id, "--json"]);
    assert_eq!(show["session"]["status"], "completed", "{show}");
    assert_eq!(show["session"]["turn_count"], 3, "{show}");
    let transcript = env.ok(&["session", "show", &id, "--transcript"]);
    assert!(
        transcript.contains("slow answer") && transcript.contains("quick answer"),
        "{transcript}"
    );
}

/// Issue 9 finding 14 (C10): a `weft run` killed mid-turn leaves its
/// session active; `session cleanup` recognises it as interrupted (its
/// turn lock names a process that is gone) and removes it.
#[test]
fn cleanup_removes_a_session_whose_process_was_killed_mid_turn() {
    let env = Env::new();
    let kept = env.first_session();
    let slow = env.script(
        "slow.json",
        r#"{"responses": [{"text": "never", "delay_ms": 20000}]}"#,
    );
    let mut child = env.spawn(&["run", "--script", slow.to_str().unwrap(), "doomed"]);
    let start = std::time::Instant::now();
    let killed = loop {
        let list = env.json(&["session", "list", "--json"]);
        let doomed = list
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| s["id"].as_str())
            .find(|id| *id != kept)
            .map(str::to_string);
        if let Some(id) = doomed
            && env.turn_running(&id)
        {
            break id;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "the turn never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let show = env.json(&["session", "show", &killed, "--json"]);
    assert_eq!(show["session"]["status"], "active");
    assert_eq!(show["interrupted"], true);
    let text = env.ok(&["session", "show", &killed]);
    assert!(text.contains("active (interrupted"), "{text}");

    let out = env.weft(&["session", "cleanup", "--days", "0", "--dry-run"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&killed), "{stdout}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("1 of them interrupted"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let removed = env.ok(&["session", "cleanup", "--days", "0"]);
    assert!(removed.contains(&killed), "{removed}");
    let list = env.json(&["session", "list", "--json"]);
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["id"].as_str())
        .collect();
    assert!(!ids.contains(&killed.as_str()), "{ids:?}");
}

/// Issue 9 finding 4: `--no-wait` refuses a turn while another process
/// runs one on the branch, naming that process, and neither fails the
/// session nor disturbs the running turn.
#[test]
fn no_wait_refuses_naming_the_running_process() {
    let env = Env::new();
    let id = env.first_session();
    let slow = env.script(
        "slow.json",
        r#"{"responses": [{"text": "slow answer", "delay_ms": 2000}]}"#,
    );
    let quick = env.script("quick.json", r#"{"responses": [{"text": "quick"}]}"#);
    let first = env.spawn(&[
        "run",
        "--resume",
        &id,
        "--script",
        slow.to_str().unwrap(),
        "a",
    ]);
    let start = std::time::Instant::now();
    while !env.turn_running(&id) {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "the first turn never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let pid = first.id();
    let err = env.fails(&[
        "run",
        "--resume",
        &id,
        "--no-wait",
        "--script",
        quick.to_str().unwrap(),
        "b",
    ]);
    assert!(
        err.contains(&format!("running a turn in process {pid}")),
        "{err}"
    );
    let first = first.wait_with_output().unwrap();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let show = env.json(&["session", "show", &id, "--json"]);
    assert_eq!(show["session"]["status"], "completed", "{show}");
    assert_eq!(show["session"]["turn_count"], 2, "{show}");
}
