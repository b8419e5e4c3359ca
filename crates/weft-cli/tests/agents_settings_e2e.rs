//! End-to-end tests (real `weft serve` and `weft` binaries) of seed
//! parity issue 12's amplifierd and agentkernel items: `settings_overrides`
//! on create, a directory's default profile, agentkernel's `/run` with the
//! built-in `assistant` and several agents taking turns in one session,
//! and `weft run --session-id`.

mod support;

use serde_json::{Value, json};
use support::*;

/// A plan whose two agents answer differently: `writer` echoes the
/// prompt, `reader` (its own provider) answers with every user message it
/// was shown, so its answer proves what it sees of the shared session.
const TEAM_PLAN: &str = r#"{"session": {"orchestrator": "loop-basic", "context": "context-simple"},
 "providers": [{"module": "provider-scripted", "config": {"mode": "echo"}}],
 "agents": {
   "writer": {"description": "writes notes", "system": {"instruction": "You write notes."}},
   "reader": {"description": "reads the conversation", "system": {"instruction": "You read."},
              "providers": [{"module": "provider-scripted", "config": {"mode": "echo-context"}}]}}}"#;

/// Agents that share keyed state through the `tool-state` tools: the
/// writer sets a key in its turn, the reader reads it in its own.
const STATE_PLAN: &str = r#"{"session": {"orchestrator": "loop-basic", "context": "context-simple"},
 "providers": [{"module": "provider-scripted", "config": {"mode": "echo"}}],
 "tools": ["tool-state"],
 "agents": {
   "writer": {"description": "writes", "providers": [{"module": "provider-scripted", "config": {"responses": [
       {"tool_calls": [{"name": "state_set", "arguments": {"key": "agent:writer:note", "value": "green-42"}}]},
       {"text": "noted"}]}}]},
   "reader": {"description": "reads", "providers": [{"module": "provider-scripted", "config": {"responses": [
       {"tool_calls": [{"name": "state_get", "arguments": {"key": "agent:writer:note"}}]},
       {"text": "read"}]}}]}}}"#;

/// The outputs of the tool results in a transcript.
fn tool_outputs(transcript: &[Value]) -> Vec<String> {
    transcript
        .iter()
        .filter_map(|m| m["content"].as_array())
        .flatten()
        .filter(|b| b["type"] == "tool_result")
        .filter_map(|b| b["output"].as_str().map(str::to_string))
        .collect()
}

async fn run(d: &Daemon, agent: &str, message: &str, session: &str) -> Value {
    let (status, b) = d
        .post(
            "/run",
            json!({"agent": agent, "message": message, "session_id": session}),
        )
        .await;
    assert_eq!(status, 200, "/run {agent}: {b}");
    assert_eq!(b["session_id"], session);
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_with_the_seeds_assistant_example_works_out_of_the_box() {
    let env = Env::new();
    let script = env.file("s.json", r#"{"responses": [{"text": "Hi there!"}]}"#);
    let d = env
        .serve(&[
            "--provider",
            "scripted",
            "--script",
            script.to_str().expect("path"),
        ])
        .await;
    // The seed's own request, verbatim.
    let b = run(&d, "assistant", "Hello!", "user-123-conversation-1").await;
    assert_eq!(b["result"], "Hi there!");
    let (status, s) = d.get("/api/v1/sessions/user-123-conversation-1").await;
    assert_eq!(status, 200, "{s}");
    assert_eq!(s["agentName"], "assistant");
    let (_, agents) = d.get("/api/v1/agents").await;
    let assistant = agents
        .as_array()
        .expect("agents")
        .iter()
        .find(|a| a["name"] == "assistant")
        .unwrap_or_else(|| panic!("no assistant in {agents}"));
    assert_eq!(assistant["kind"], "agent");
    // An agent nobody defines is still refused.
    let (status, b) = d
        .post("/run", json!({"agent": "nobody", "message": "x"}))
        .await;
    assert_eq!(status, 404, "{b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agents_take_turns_in_one_session_with_shared_state() {
    let env = Env::new();
    let plan = env.file("team.json", TEAM_PLAN);
    let d = env
        .serve(&["--mount-plan", plan.to_str().expect("path")])
        .await;
    let sid = "team-thread-1";
    // The writer's turn runs its own plan (echo) …
    let b = run(&d, "writer", "the sky is green", sid).await;
    assert_eq!(b["result"], "the sky is green");
    // … the reader's runs its own (echo-context) and sees what the
    // writer's turn wrote to the session.
    let b = run(&d, "reader", "what was noted?", sid).await;
    assert_eq!(b["result"], "the sky is green | what was noted?");
    // Back to the writer, then the reader again: each call runs the agent
    // it names, on one log.
    let b = run(&d, "writer", "and the grass is blue", sid).await;
    assert_eq!(b["result"], "and the grass is blue");
    let b = run(&d, "reader", "and now?", sid).await;
    assert_eq!(
        b["result"],
        "the sky is green | what was noted? | and the grass is blue | and now?"
    );
    // Keyed state set in the session is one map whichever agent runs.
    let (status, _) = d
        .put(
            &format!("/api/v1/sessions/{sid}/state/agent:writer:step"),
            json!({"value": "drafted"}),
        )
        .await;
    assert_eq!(status, 200);
    run(&d, "reader", "check", sid).await;
    let (_, state) = d.get(&format!("/api/v1/sessions/{sid}/state")).await;
    assert_eq!(state["agent:writer:step"], "drafted", "{state}");
    let (_, s) = d.get(&format!("/api/v1/sessions/{sid}")).await;
    assert_eq!(s["turnCount"], 5, "{s}");
    assert_eq!(d.texts(sid).await.len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_one_agent_writes_in_its_turn_the_other_reads_in_its_own() {
    let env = Env::new();
    let plan = env.file("state.json", STATE_PLAN);
    let d = env
        .serve(&["--mount-plan", plan.to_str().expect("path")])
        .await;
    let sid = "shared-state-1";
    assert_eq!(run(&d, "writer", "note it", sid).await["result"], "noted");
    let (_, state) = d.get(&format!("/api/v1/sessions/{sid}/state")).await;
    assert_eq!(state["agent:writer:note"], "green-42", "{state}");
    assert_eq!(
        run(&d, "reader", "what did the writer note?", sid).await["result"],
        "read"
    );
    let outputs = tool_outputs(&d.transcript(sid).await);
    assert_eq!(
        outputs,
        vec![
            "set agent:writer:note".to_string(),
            "\"green-42\"".to_string()
        ],
        "the reader's state_get saw the writer's value"
    );
    // A session whose settings_overrides allow no tools runs the writer
    // without them: its state_set is refused and nothing is stored.
    let (status, made) = d
        .post(
            "/api/v1/sessions/",
            json!({"settings_overrides": {"tools": []}}),
        )
        .await;
    assert_eq!(status, 201, "{made}");
    let bare = made["sessionId"].as_str().expect("id").to_string();
    run(&d, "writer", "note it", &bare).await;
    let (_, state) = d.get(&format!("/api/v1/sessions/{bare}/state")).await;
    assert!(state.get("agent:writer:note").is_none(), "{state}");
    let outputs = tool_outputs(&d.transcript(&bare).await);
    assert_eq!(outputs.len(), 1);
    assert!(outputs[0].contains("state_set"), "{outputs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_overrides_are_applied_shown_and_validated() {
    let env = Env::new();
    let plan = env.file("echo.json", ECHO_PLAN);
    let d = env
        .serve(&["--mount-plan", plan.to_str().expect("path")])
        .await;
    let overrides = json!({
        "model": "tiny-model",
        "provider": "scripted",
        "temperature": 0.25,
        "max_tokens": 321,
        "system_prompt": "Answer in one word.",
        "tools": ["tool-filesystem"],
    });
    let (status, made) = d
        .post(
            "/api/v1/sessions/",
            json!({"settings_overrides": overrides}),
        )
        .await;
    assert_eq!(status, 201, "{made}");
    let id = made["sessionId"].as_str().expect("id").to_string();
    let applied = json!({
        "model": "tiny-model",
        "provider": "provider-scripted",
        "temperature": 0.25,
        "max_tokens": 321,
        "system_prompt": "Answer in one word.",
        "tools": ["tool-filesystem"],
    });
    assert_eq!(made["settingsOverrides"], applied);
    assert_eq!(made["model"], "tiny-model");
    let (_, got) = d.get(&format!("/api/v1/sessions/{id}")).await;
    assert_eq!(got["settingsOverrides"], applied);
    // The session runs with them.
    let (status, b) = d
        .post(&format!("/api/v1/sessions/{id}/start"), json!({}))
        .await;
    assert_eq!(status, 204, "{b}");
    let b = run(&d, "", "ping", &id).await;
    assert_eq!(b["result"], "ping");
    // `weft session show` shows them.
    let show = env.ok(&["session", "show", &id]);
    assert!(
        show.contains("Settings  model=tiny-model, provider=provider-scripted, temperature=0.25, max_tokens=321, system_prompt=\"Answer in one word.\", tools=[tool-filesystem]"),
        "{show}"
    );
    // Unknown keys are refused, every one named.
    let (status, b) = d
        .post(
            "/api/v1/sessions/",
            json!({"settings_overrides": {"model": "m", "colour": "red", "mood": 2}}),
        )
        .await;
    assert_eq!(status, 422, "{b}");
    assert!(
        detail(&b).contains("colour") && detail(&b).contains("mood"),
        "{b}"
    );
    // A bad value names its key.
    for (body, key) in [
        (json!({"temperature": 9}), "settingsOverrides.temperature"),
        (
            json!({"tools": ["tool-nonesuch"]}),
            "settingsOverrides.tools",
        ),
        (
            json!({"provider": "nonesuch"}),
            "settingsOverrides.provider",
        ),
        (json!({"max_tokens": -1}), "settingsOverrides.max_tokens"),
    ] {
        let (status, b) = d
            .post("/api/v1/sessions/", json!({"settings_overrides": body}))
            .await;
        assert_eq!(status, 422, "{b}");
        assert!(detail(&b).contains(key), "{key}: {b}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_marker_names_the_default_profile() {
    let env = Env::new();
    let profiles = env.home.path().join("profiles");
    std::fs::create_dir_all(&profiles).expect("profiles dir");
    std::fs::write(
        profiles.join("quiet.json"),
        r#"{"session": {"orchestrator": "loop-basic", "context": "context-simple"}}"#,
    )
    .expect("profile");
    let root = env.project.path();
    let marked = |dir: &str, file: &str, body: &str| {
        let path = root.join(dir).join(file);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, body).expect("marker");
    };
    marked(
        "weftdir",
        ".weft/config.toml",
        "default_profile = \"quiet\"\n",
    );
    marked(
        "ampd",
        ".amplified/metadata.json",
        r#"{"name": "x", "default_profile": "foundation/dev"}"#,
    );
    marked(
        "amp",
        ".amplifier/settings.yaml",
        "profile:\n  default: dev\n",
    );
    marked("broken", ".amplifier/settings.yaml", "profile: [\n");
    let script = env.file("s.json", SCRIPT);
    let d = env
        .serve(&[
            "--provider",
            "scripted",
            "--script",
            script.to_str().expect("path"),
        ])
        .await;
    for (dir, profile) in [
        ("weftdir", "quiet"),
        ("ampd", "foundation/dev"),
        ("amp", "dev"),
        ("sub", "base"),
    ] {
        let (status, b) = d
            .post("/api/v1/sessions/", json!({"amplified_dir": dir}))
            .await;
        assert_eq!(status, 201, "{dir}: {b}");
        assert_eq!(b["profileName"], profile, "{dir}");
    }
    // A profile named in the request wins over the marker.
    let (_, b) = d
        .post(
            "/api/v1/sessions/",
            json!({"amplified_dir": "weftdir", "profile_name": "base"}),
        )
        .await;
    assert_eq!(b["profileName"], "base");
    // A broken marker is an error naming the file.
    let (status, b) = d
        .post("/api/v1/sessions/", json!({"amplified_dir": "broken"}))
        .await;
    assert_eq!(status, 422, "{b}");
    assert!(detail(&b).contains(".amplifier/settings.yaml"), "{b}");

    // The CLI reads the current directory's marker the same way.
    let dir = root.join("weftdir");
    let out = env.weft_in(
        &dir,
        &[
            "run",
            "--script",
            script.to_str().expect("path"),
            "--output",
            "json",
            "hi",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ran: Value = serde_json::from_slice(&out.stdout).expect("json");
    let id = ran["session_id"].as_str().expect("id");
    let shown = env.json(&["session", "show", id, "--json"]);
    assert_eq!(shown["session"]["profile"], "quiet", "{shown}");
    let out = env.weft_in(
        &root.join("broken"),
        &["run", "--script", script.to_str().expect("path"), "hi"],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(".amplifier/settings.yaml"), "{err}");
}

#[test]
fn run_session_id_creates_then_continues_that_session() {
    let env = Env::new();
    let script = env.file("s.json", SCRIPT);
    let script = script.to_str().expect("path");
    let first = env.json(&[
        "run",
        "--script",
        script,
        "--session-id",
        "my-thread-1",
        "--output",
        "json",
        "one",
    ]);
    assert_eq!(first["session_id"], "my-thread-1");
    let second = env.json(&[
        "run",
        "--script",
        script,
        "--session-id",
        "my-thread-1",
        "--output",
        "json",
        "two",
    ]);
    assert_eq!(second["session_id"], "my-thread-1");
    let shown = env.json(&["session", "show", "my-thread-1", "--json"]);
    assert_eq!(shown["session"]["turn_count"], 2, "{shown}");
    // An invalid id is refused before anything runs.
    let err = env.fails(&["run", "--script", script, "--session-id", "bad id!", "x"]);
    assert!(
        err.contains("--session-id") && err.contains("bad id!"),
        "{err}"
    );
    let listed = env.ok(&["session", "list"]);
    assert!(!listed.contains("bad id"), "{listed}");
}
