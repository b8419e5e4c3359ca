//! The kernel end to end with provider-scripted: the tool loop, parallel
//! tools, hooks, cancellation, resume repair and lifecycle events.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{Value, json};
use weft_core::hooks::{ALL_EVENTS, HookResult, events, hook_fn};
use weft_core::memory::MemoryStore;
use weft_core::message::{ContentBlock, Message, Role};
use weft_core::mount::{MountPlan, PlanFormat};
use weft_core::record::RecordKind;
use weft_core::registry::ModuleRegistry;
use weft_core::runtime::TOOL_INTERRUPTED;
use weft_core::store::Store;
use weft_core::tool::{Tool, ToolContext, ToolOutput};
use weft_core::{CancelMode, Session, SessionConfig, SessionError, SessionId, SessionStatus};

/// Sleeps `ms` milliseconds, then answers with its `tag`.
struct SleepTool;

#[async_trait]
impl Tool for SleepTool {
    fn name(&self) -> &str {
        "sleep"
    }
    fn description(&self) -> &str {
        "sleeps"
    }
    fn input_schema(&self) -> Value {
        json!({"type": "object", "properties": {"ms": {"type": "integer"}, "tag": {"type": "string"}}})
    }
    async fn execute(&self, input: Value, ctx: &ToolContext) -> ToolOutput {
        let ms = input["ms"].as_u64().unwrap_or(0);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(ms)) => {}
            _ = ctx.cancel.cancelled() => return ToolOutput::error("cancelled"),
        }
        ToolOutput::ok(format!("slept {}", input["tag"].as_str().unwrap_or("")))
    }
}

fn registry() -> Arc<ModuleRegistry> {
    let mut r = ModuleRegistry::with_core_modules();
    weft_providers::register(&mut r);
    r.register_tool("tool-sleep", |_, _| {
        Ok(vec![Arc::new(SleepTool) as Arc<dyn Tool>])
    });
    Arc::new(r)
}

fn plan(responses: Value, extra: &str) -> MountPlan {
    let text = format!(
        r#"{{"session": {{"orchestrator": {{"module": "loop-basic" {extra}}}, "context": "context-simple"}},
            "providers": [{{"module": "provider-scripted", "config": {{"responses": {responses}}}}}],
            "tools": ["tool-sleep"], "hooks": ["hooks-logging"]}}"#
    );
    MountPlan::parse(&text, PlanFormat::Json).unwrap().plan
}

fn config(plan: MountPlan, store: Arc<dyn Store>) -> SessionConfig {
    SessionConfig::new(plan, store, registry())
}

type EventLog = Arc<Mutex<Vec<(String, Value)>>>;

fn record_events(session: &Session) -> EventLog {
    let log: EventLog = Arc::default();
    let l = log.clone();
    session.hooks().register(
        ALL_EVENTS,
        hook_fn(move |e, d| {
            let l = l.clone();
            async move {
                l.lock().unwrap().push((e, d));
                Ok(HookResult::proceed())
            }
        }),
        0,
        "recorder",
    );
    log
}

fn count(log: &EventLog, event: &str) -> usize {
    log.lock()
        .unwrap()
        .iter()
        .filter(|(e, _)| e == event)
        .count()
}

async fn messages(store: &Arc<dyn Store>, id: &SessionId) -> Vec<Message> {
    store
        .view(id)
        .await
        .unwrap()
        .messages("main")
        .into_iter()
        .cloned()
        .collect()
}

#[tokio::test]
async fn two_tools_run_concurrently_and_results_keep_call_order() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let responses = json!([
        {"tool_calls": [
            {"id": "a", "name": "sleep", "arguments": {"ms": 300, "tag": "first"}},
            {"id": "b", "name": "sleep", "arguments": {"ms": 250, "tag": "second"}}
        ]},
        {"text": "both done"}
    ]);
    let session = Session::new(config(plan(responses, ""), store.clone()));
    session.initialize().await.unwrap();
    let start = Instant::now();
    let answer = session.execute("go").await.unwrap();
    let took = start.elapsed();
    assert_eq!(answer, "both done");
    assert!(
        took < Duration::from_millis(520),
        "tools ran one after the other: {took:?}"
    );
    assert!(took >= Duration::from_millis(300), "{took:?}");

    let msgs = messages(&store, session.id()).await;
    let roles: Vec<Role> = msgs.iter().map(|m| m.role).collect();
    assert_eq!(
        roles,
        [
            Role::User,
            Role::Assistant,
            Role::Tool,
            Role::Tool,
            Role::Assistant
        ]
    );
    assert_eq!(msgs[2].tool_result_ids(), ["a"]);
    assert_eq!(msgs[3].tool_result_ids(), ["b"]);
    assert!(
        matches!(&msgs[2].content[0], ContentBlock::ToolResult { output, .. } if output == "slept first")
    );
    session.cleanup().await.unwrap();
    let meta = store.get(session.id()).await.unwrap();
    assert_eq!(meta.status, SessionStatus::Completed);
    assert_eq!(meta.message_count, 5);
    assert_eq!(meta.turn_count, 1);
}

#[tokio::test]
async fn lifecycle_events_are_emitted_exactly_once() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let responses = json!([{"text": "one"}, {"text": "two"}, {"text": "three"}]);
    let session = Session::new(config(plan(responses.clone(), ""), store.clone()));
    let log = record_events(&session);
    session.initialize().await.unwrap();
    session.execute("a").await.unwrap();
    session.execute("b").await.unwrap();
    session.cleanup().await.unwrap();
    session.cleanup().await.unwrap();
    assert_eq!(count(&log, events::SESSION_START), 1);
    assert_eq!(count(&log, events::SESSION_RESUME), 0);
    assert_eq!(count(&log, events::SESSION_END), 1);
    assert_eq!(count(&log, events::EXECUTION_START), 2);
    assert_eq!(count(&log, events::EXECUTION_END), 2);
    assert_eq!(count(&log, events::PROMPT_COMPLETE), 2);
    assert_eq!(count(&log, events::ORCHESTRATOR_COMPLETE), 2);
    assert!(count(&log, events::CONTENT_BLOCK_DELTA) >= 2);
    assert!(matches!(
        session.execute("c").await,
        Err(SessionError::Ended)
    ));

    // Resuming the same id emits session:resume, once.
    let mut cfg = config(plan(responses, ""), store.clone());
    cfg.session_id = Some(session.id().clone());
    let resumed = Session::new(cfg);
    let log2 = record_events(&resumed);
    resumed.initialize().await.unwrap();
    assert!(resumed.is_resumed());
    resumed.execute("again").await.unwrap();
    resumed.execute("and again").await.unwrap();
    resumed.cleanup().await.unwrap();
    assert_eq!(count(&log2, events::SESSION_RESUME), 1);
    assert_eq!(count(&log2, events::SESSION_START), 0);
    assert_eq!(count(&log2, events::SESSION_END), 1);
    // The resumed session saw the earlier history.
    assert_eq!(store.get(session.id()).await.unwrap().turn_count, 4);
    // The logging hook wrote events (without deltas).
    let logged = store.read_events(session.id(), 1000).await.unwrap();
    assert!(logged.iter().any(|e| e["event"] == events::SESSION_START));
    assert!(
        !logged
            .iter()
            .any(|e| e["event"] == events::CONTENT_BLOCK_DELTA)
    );
}

#[tokio::test]
async fn child_session_emits_fork_with_parent() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let parent = Session::new(config(plan(json!([{"text": "p"}]), ""), store.clone()));
    parent.initialize().await.unwrap();
    let mut cfg = config(plan(json!([{"text": "c"}]), ""), store.clone());
    cfg.parent_id = Some(parent.id().clone());
    cfg.agent_name = Some("helper".into());
    cfg.session_id = Some(SessionId::child_of(parent.id(), "helper"));
    let child = Session::new(cfg);
    let log = record_events(&child);
    child.initialize().await.unwrap();
    let forks: Vec<Value> = log
        .lock()
        .unwrap()
        .iter()
        .filter(|(e, _)| e == events::SESSION_FORK)
        .map(|(_, d)| d.clone())
        .collect();
    assert_eq!(forks.len(), 1);
    assert_eq!(forks[0]["parent_id"], json!(parent.id()));
    let meta = store.get(child.id()).await.unwrap();
    assert_eq!(meta.parent_id.as_ref(), Some(parent.id()));
    assert_eq!(&meta.trace_id, parent.id());
    assert_eq!(meta.agent_name.as_deref(), Some("helper"));
}

#[tokio::test]
async fn tool_pre_deny_and_tool_post_modify() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let responses = json!([
        {"tool_calls": [
            {"id": "x", "name": "sleep", "arguments": {"ms": 1, "tag": "denied"}},
            {"id": "y", "name": "sleep", "arguments": {"ms": 1, "tag": "kept"}},
            {"id": "z", "name": "nope", "arguments": {}}
        ]},
        {"text": "ok"}
    ]);
    let session = Session::new(config(plan(responses, ""), store.clone()));
    session.hooks().register(
        events::TOOL_PRE,
        hook_fn(|_, d| async move {
            if d["tool_input"]["tag"] == "denied" {
                Ok(HookResult::deny("not this one"))
            } else {
                Ok(HookResult::proceed())
            }
        }),
        0,
        "deny-some",
    );
    session.hooks().register(
        events::TOOL_POST,
        hook_fn(|_, mut d| async move {
            d["result"]["output"] = json!("rewritten");
            Ok(HookResult::modify(d))
        }),
        0,
        "rewrite",
    );
    session.initialize().await.unwrap();
    session.execute("go").await.unwrap();
    let msgs = messages(&store, session.id()).await;
    let outputs: Vec<(String, bool)> = msgs
        .iter()
        .filter(|m| m.role == Role::Tool)
        .map(|m| match &m.content[0] {
            ContentBlock::ToolResult {
                output, is_error, ..
            } => (output.clone(), *is_error),
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(
        outputs[0],
        ("Denied by hook: not this one".to_string(), true)
    );
    assert_eq!(outputs[1], ("rewritten".to_string(), false));
    assert!(
        outputs[2].0.contains("unknown tool \"nope\""),
        "{:?}",
        outputs[2]
    );
    assert!(outputs[2].1);
}

#[tokio::test]
async fn prompt_submit_deny_stops_the_turn() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let session = Session::new(config(plan(json!([{"text": "never"}]), ""), store.clone()));
    session.hooks().register(
        events::PROMPT_SUBMIT,
        hook_fn(|_, _| async { Ok(HookResult::deny("blocked prompt")) }),
        0,
        "gate",
    );
    let log = record_events(&session);
    session.initialize().await.unwrap();
    let err = session.execute("bad").await.unwrap_err();
    assert!(
        matches!(err, SessionError::Denied(ref r) if r == "blocked prompt"),
        "{err}"
    );
    assert!(messages(&store, session.id()).await.is_empty());
    assert_eq!(
        count(&log, events::EXECUTION_END),
        1,
        "execution:end on every exit path"
    );
}

#[tokio::test]
async fn max_iterations_makes_a_last_call_without_tools() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let call = json!({"tool_calls": [{"name": "sleep", "arguments": {"ms": 1}}]});
    let responses = json!([call, call, {"text": "summary without tools"}]);
    let session = Session::new(config(
        plan(responses, r#", "config": {"max_iterations": 2}"#),
        store.clone(),
    ));
    let requests = Arc::new(Mutex::new(Vec::new()));
    let r = requests.clone();
    session.hooks().register(
        events::PROVIDER_REQUEST,
        hook_fn(move |_, d| {
            let r = r.clone();
            async move {
                r.lock().unwrap().push(d["tool_count"].as_u64().unwrap());
                Ok(HookResult::proceed())
            }
        }),
        0,
        "count",
    );
    session.initialize().await.unwrap();
    assert_eq!(
        session.execute("loop").await.unwrap(),
        "summary without tools"
    );
    assert_eq!(*requests.lock().unwrap(), vec![1, 1, 0]);
}

#[tokio::test]
async fn immediate_cancel_mid_tool_answers_the_calls_and_keeps_the_session() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let responses = json!([
        {"tool_calls": [{"id": "long", "name": "sleep", "arguments": {"ms": 20000}}]},
        {"text": "after cancel"}
    ]);
    let session = Session::new(config(plan(responses, ""), store.clone()));
    let log = record_events(&session);
    session.initialize().await.unwrap();
    let s = session.clone();
    let handle = tokio::spawn(async move { s.execute("start").await });
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(session.is_running());
    let start = Instant::now();
    session.cancel(CancelMode::Immediate).await;
    let result = handle.await.unwrap();
    assert!(
        matches!(result, Err(ref e) if e.is_cancelled()),
        "{result:?}"
    );
    assert!(start.elapsed() < Duration::from_secs(2));
    assert_eq!(count(&log, events::CANCEL_REQUESTED), 1);
    assert_eq!(count(&log, events::CANCEL_COMPLETED), 1);
    let msgs = messages(&store, session.id()).await;
    let last = msgs.last().unwrap();
    assert_eq!(last.role, Role::Tool);
    assert_eq!(last.tool_result_ids(), ["long"]);
    assert!(last.flag(weft_core::message::META_SYNTHETIC));
    // The session goes on: the next prompt works.
    assert_eq!(session.execute("next").await.unwrap(), "after cancel");
}

#[tokio::test]
async fn graceful_cancel_lets_the_tool_finish() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let responses = json!([
        {"tool_calls": [{"id": "t", "name": "sleep", "arguments": {"ms": 300, "tag": "finished"}}]},
        {"text": "never asked"}
    ]);
    let session = Session::new(config(plan(responses, ""), store.clone()));
    session.initialize().await.unwrap();
    let s = session.clone();
    let handle = tokio::spawn(async move { s.execute("start").await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    session.cancel(CancelMode::Graceful).await;
    let result = handle.await.unwrap();
    assert!(matches!(result, Err(SessionError::Cancelled)), "{result:?}");
    let msgs = messages(&store, session.id()).await;
    let last = msgs.last().unwrap();
    assert!(
        matches!(&last.content[0], ContentBlock::ToolResult { output, is_error: false, .. } if output == "slept finished")
    );
}

#[tokio::test]
async fn resume_repairs_a_transcript_that_ends_in_unanswered_calls() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    // A session whose log ends mid-tool, as after a crash.
    let first = Session::new(config(plan(json!([{"text": "x"}]), ""), store.clone()));
    first.initialize().await.unwrap();
    let id = first.id().clone();
    let head = store.get(&id).await.unwrap().last_seq;
    let user = Message::text(Default::default(), Role::User, "do two things");
    let call = Message::new(
        Default::default(),
        Role::Assistant,
        vec![
            ContentBlock::ToolCall {
                id: "c1".into(),
                name: "sleep".into(),
                arguments: json!({}),
            },
            ContentBlock::ToolCall {
                id: "c2".into(),
                name: "sleep".into(),
                arguments: json!({}),
            },
        ],
    );
    store
        .append(
            &id,
            head,
            weft_core::Record::batch(head, [RecordKind::message(user), RecordKind::message(call)]),
        )
        .await
        .unwrap();

    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut cfg = config(plan(json!([{"text": "recovered"}]), ""), store.clone());
    cfg.session_id = Some(id.clone());
    let resumed = Session::new(cfg);
    let s = seen.clone();
    resumed.hooks().register(
        events::PROVIDER_REQUEST,
        hook_fn(move |_, d| {
            let s = s.clone();
            async move {
                s.lock().unwrap().push(d["message_count"].as_u64().unwrap());
                Ok(HookResult::proceed())
            }
        }),
        0,
        "count",
    );
    resumed.initialize().await.unwrap();
    assert_eq!(resumed.execute("continue").await.unwrap(), "recovered");
    let msgs = messages(&store, &id).await;
    let roles: Vec<Role> = msgs.iter().map(|m| m.role).collect();
    assert_eq!(
        roles,
        [
            Role::User,
            Role::Assistant,
            Role::Tool,
            Role::Tool,
            Role::User,
            Role::Assistant
        ]
    );
    for (m, id) in msgs[2..4].iter().zip(["c1", "c2"]) {
        assert_eq!(m.tool_result_ids(), [id]);
        assert!(
            matches!(&m.content[0], ContentBlock::ToolResult { output, is_error: true, .. } if output == TOOL_INTERRUPTED)
        );
    }
    // The provider saw the repaired history: 5 messages, no orphaned call.
    assert_eq!(*seen.lock().unwrap(), vec![5]);
}

#[tokio::test]
async fn unknown_modules_are_clear_errors() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let text = r#"{"session": {"orchestrator": "loop-fancy", "context": "context-simple"}}"#;
    let plan = MountPlan::parse(text, PlanFormat::Json).unwrap().plan;
    let session = Session::new(config(plan, store.clone()));
    let err = session.initialize().await.unwrap_err().to_string();
    assert!(
        err.contains("unknown orchestrator module \"loop-fancy\""),
        "{err}"
    );
    assert!(err.contains("loop-basic"), "{err}");
    assert!(
        store.find_ids("", 10).await.unwrap().is_empty(),
        "nothing stored"
    );

    let text = r#"{"session": {"orchestrator": "loop-basic", "context": "context-simple"}, "tools": ["tool-nope"]}"#;
    let plan = MountPlan::parse(text, PlanFormat::Json).unwrap().plan;
    let err = Session::new(config(plan, store.clone()))
        .initialize()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("unknown tool module \"tool-nope\"") && err.contains("tool-sleep"),
        "{err}"
    );
}

#[tokio::test]
async fn provider_failure_fails_the_turn_and_keeps_the_log_consistent() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let responses = json!([{"error": "boom"}, {"text": "fine now"}]);
    let session = Session::new(config(plan(responses, ""), store.clone()));
    let log = record_events(&session);
    session.initialize().await.unwrap();
    let err = session.execute("first").await.unwrap_err();
    assert!(err.to_string().contains("boom"));
    assert_eq!(count(&log, events::PROVIDER_ERROR), 1);
    let msgs = messages(&store, session.id()).await;
    assert_eq!(msgs.len(), 1, "only the user message; no half answer");
    assert_eq!(session.execute("second").await.unwrap(), "fine now");
}

fn echo_plan(delay_ms: u64) -> MountPlan {
    let text = format!(
        r#"{{"session": {{"orchestrator": "loop-basic", "context": "context-simple"}},
            "providers": [{{"module": "provider-scripted", "config": {{"mode": "echo", "delay_ms": {delay_ms}}}}}]}}"#
    );
    MountPlan::parse(&text, PlanFormat::Json).unwrap().plan
}

#[tokio::test]
async fn two_branches_execute_concurrently_without_corrupting_each_other() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let session = Session::new(config(echo_plan(100), store.clone()));
    session.initialize().await.unwrap();
    session
        .new_branch(weft_core::branches::NewBranch {
            name: "left".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    session
        .new_branch(weft_core::branches::NewBranch {
            name: "right".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let start = Instant::now();
    let run = |branch: &'static str| {
        let s = session.clone();
        async move {
            for i in 0..3 {
                let answer = s
                    .execute_on(Some(branch), &format!("{branch} {i}"))
                    .await
                    .unwrap();
                assert_eq!(answer, format!("{branch} {i}"));
            }
        }
    };
    tokio::join!(run("left"), run("right"));
    assert!(
        start.elapsed() < Duration::from_millis(550),
        "branches ran one after the other: {:?}",
        start.elapsed()
    );

    let records = store.read_all(session.id()).await.unwrap();
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.seq, i as u64 + 1, "gapless log");
    }
    let view = store.view(session.id()).await.unwrap();
    for branch in ["left", "right"] {
        let texts: Vec<String> = view
            .messages(branch)
            .iter()
            .map(|m| m.text_content())
            .collect();
        let want: Vec<String> = (0..3)
            .flat_map(|i| [format!("{branch} {i}"), format!("{branch} {i}")])
            .collect();
        assert_eq!(texts, want, "{branch} transcript");
    }
    assert!(view.messages("main").is_empty());
}

#[tokio::test]
async fn state_scopes_and_persisted_clear() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let session = Session::new(config(echo_plan(0), store.clone()));
    session.initialize().await.unwrap();
    session.state_set("plain", json!(1)).await.unwrap();
    session
        .state_set("agent:planner:step", json!("draft"))
        .await
        .unwrap();
    session.state_set("app:theme", json!("dark")).await.unwrap();
    session
        .state_set("temp:scratch", json!(true))
        .await
        .unwrap();
    assert_eq!(
        session.state_get("temp:scratch").await.unwrap(),
        Some(json!(true))
    );
    let all = session.state_all().await.unwrap();
    assert_eq!(all.len(), 4);
    // temp: is cleared after a turn and never persisted.
    session.execute("x").await.unwrap();
    assert_eq!(session.state_get("temp:scratch").await.unwrap(), None);
    let view = store.view(session.id()).await.unwrap();
    assert!(!view.state.contains_key("temp:scratch"));
    assert_eq!(view.state["agent:planner:step"], "draft");
    // app: is shared by sessions of the same profile.
    let other = Session::new(config(echo_plan(0), store.clone()));
    other.initialize().await.unwrap();
    assert_eq!(
        other.state_get("app:theme").await.unwrap(),
        Some(json!("dark"))
    );
    assert_eq!(other.state_get("plain").await.unwrap(), None);
    // A clear is a record: it sticks after a reload.
    session.state_clear().await.unwrap();
    let view = store.view(session.id()).await.unwrap();
    assert!(view.state.is_empty());
}

#[tokio::test]
async fn cancelling_one_branch_leaves_the_other_running() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let session = Session::new(config(echo_plan(400), store.clone()));
    session.initialize().await.unwrap();
    for name in ["left", "right"] {
        session
            .new_branch(weft_core::branches::NewBranch {
                name: name.into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let l = session.clone();
    let left = tokio::spawn(async move { l.execute_on(Some("left"), "l").await });
    let r = session.clone();
    let right = tokio::spawn(async move { r.execute_on(Some("right"), "r").await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    session.cancel_branch("left", CancelMode::Immediate).await;
    assert!(left.await.unwrap().unwrap_err().is_cancelled());
    assert_eq!(right.await.unwrap().unwrap(), "r");
}

#[tokio::test]
async fn writes_by_another_writer_between_turns_are_taken_in() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let session = Session::new(config(echo_plan(0), store.clone()));
    session.initialize().await.unwrap();
    session.execute("one").await.unwrap();
    // Another writer (say `weft session rename` or `weft mail collect` in
    // another process) appends between turns.
    store
        .update_meta(
            session.id(),
            weft_core::record::MetaPatch {
                name: Some("renamed".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let head = store.get(session.id()).await.unwrap().last_seq;
    let extra = Message::text(Default::default(), Role::User, "typed elsewhere");
    store
        .append(
            session.id(),
            head,
            weft_core::Record::batch(head, [RecordKind::message(extra)]),
        )
        .await
        .unwrap();
    // The next turn sees it and the log stays gapless.
    assert_eq!(session.execute("two").await.unwrap(), "two");
    let texts: Vec<String> = messages(&store, session.id())
        .await
        .iter()
        .map(|m| m.text_content())
        .collect();
    assert_eq!(texts, ["one", "one", "typed elsewhere", "two", "two"]);
    store
        .update_meta(
            session.id(),
            weft_core::record::MetaPatch {
                description: Some("d".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    session.cleanup().await.unwrap();
    let meta = store.get(session.id()).await.unwrap();
    assert_eq!(meta.status, SessionStatus::Completed);
    assert_eq!(meta.name.as_deref(), Some("renamed"));
}
