//! Tests of the session runtime's turn path through its public API,
//! using [`crate::testing`]'s fakes and gates (no sleeps).

use crate::branches::NewBranch;
use crate::error::SessionError;
use crate::hooks::events;
use crate::message::Role;
use crate::orchestrator::TOOL_CANCELLED;
use crate::runtime::{CancelMode, Session};
use crate::testing::{
    FakeProvider, FakeTool, Gate, RecordingHook, Reply, messages, roles, session_with,
    tool_results, within,
};

/// Runs `prompt` on `branch` in a task.
fn spawn_turn(session: &Session, branch: Option<&str>, prompt: &str) -> Turn {
    let session = session.clone();
    let branch = branch.map(str::to_string);
    let prompt = prompt.to_string();
    tokio::spawn(async move { session.execute_on(branch.as_deref(), &prompt).await })
}

type Turn = tokio::task::JoinHandle<Result<String, SessionError>>;

/// Awaits `turn`, which must end cancelled, and returns its error.
async fn ended_cancelled(turn: Turn) -> SessionError {
    let err = within(turn)
        .await
        .expect("join")
        .expect_err("the turn was not cancelled");
    assert!(err.is_cancelled(), "{err:?}");
    err
}

/// A turn on the default branch and one on branch `side`, both held
/// mid-stream at the same time (so they run concurrently).
struct HeldTurns {
    provider: FakeProvider,
    session: Session,
    main_gate: Gate,
    main: Turn,
    side_gate: Gate,
    side: Turn,
}

/// A session on `provider` with a branch `side` besides the default one.
pub(super) async fn with_side_branch(provider: &FakeProvider) -> Session {
    let session = session_with(provider, vec![]).await.expect("session");
    session
        .new_branch(NewBranch {
            name: "side".into(),
            ..NewBranch::default()
        })
        .await
        .expect("branch");
    session
}

/// Starts [`HeldTurns`]: main answers "main answer", side "side answer".
async fn hold_two_branches() -> HeldTurns {
    let provider = FakeProvider::replying([Reply::text("main answer"), Reply::text("side answer")]);
    let session = with_side_branch(&provider).await;
    let main_gate = provider.pause_after(1);
    let main = spawn_turn(&session, None, "on main");
    within(main_gate.reached()).await;
    // Main is held mid-stream; the side branch still gets its turn.
    let side_gate = provider.pause_after(1);
    let side = spawn_turn(&session, Some("side"), "on side");
    within(side_gate.reached()).await;
    HeldTurns {
        provider,
        session,
        main_gate,
        main,
        side_gate,
        side,
    }
}

#[tokio::test]
async fn execute_records_the_user_and_assistant_messages_and_keeps_history() {
    let provider = FakeProvider::replying([Reply::text("first"), Reply::text("second")]);
    let session = session_with(&provider, vec![]).await.expect("session");
    session.execute("one").await.expect("first turn");
    session.execute("two").await.expect("second turn");

    let log = messages(&session, None).await.expect("messages");
    assert_eq!(
        roles(&log),
        [Role::User, Role::Assistant, Role::User, Role::Assistant]
    );
    assert_eq!(log[0].sender.as_deref(), Some("user"));
    let texts: Vec<_> = log.iter().map(|m| m.text_content()).collect();
    assert_eq!(texts, ["one", "first", "two", "second"]);
    // The second call saw the whole history.
    assert_eq!(provider.requests()[1].messages.len(), 3);
}

#[tokio::test]
async fn session_start_is_emitted_once() {
    let provider = FakeProvider::replying([Reply::text("a"), Reply::text("b")]);
    let session = session_with(&provider, vec![]).await.expect("session");
    let hook = RecordingHook::new();
    hook.attach(session.hooks());
    session.execute("one").await.expect("first turn");
    session.execute("two").await.expect("second turn");
    assert_eq!(hook.count(events::SESSION_START), 1);
    assert_eq!(hook.count(events::SESSION_RESUME), 0);
    assert_eq!(hook.count(events::EXECUTION_START), 2);
}

#[tokio::test]
async fn two_branches_run_concurrently() {
    let held = hold_two_branches().await;
    let session = &held.session;
    assert!(session.is_running());

    held.side_gate.release();
    held.main_gate.release();
    assert_eq!(
        within(held.side).await.expect("join").expect("side"),
        "side answer"
    );
    assert_eq!(
        within(held.main).await.expect("join").expect("main"),
        "main answer"
    );

    let side_log = messages(session, Some("side")).await.expect("side");
    let texts: Vec<_> = side_log.iter().map(|m| m.text_content()).collect();
    assert_eq!(texts, ["on side", "side answer"]);
    let main_log = messages(session, None).await.expect("main");
    let texts: Vec<_> = main_log.iter().map(|m| m.text_content()).collect();
    assert_eq!(texts, ["on main", "main answer"]);
}

#[tokio::test]
async fn an_immediate_cancel_mid_stream_records_no_answer() {
    let provider = FakeProvider::replying([Reply::text("one two three")]);
    let session = session_with(&provider, vec![]).await.expect("session");
    let hook = RecordingHook::new();
    hook.attach(session.hooks());
    let gate = provider.pause_after(1);
    let turn = spawn_turn(&session, None, "go");
    within(gate.reached()).await;

    session.cancel(CancelMode::Immediate).await;
    let err = ended_cancelled(turn).await;
    assert!(matches!(err, SessionError::Cancelled), "{err:?}");
    assert!(!session.is_running());
    assert_eq!(
        provider.streams_abandoned(),
        1,
        "the stream was not dropped"
    );
    let log = messages(&session, None).await.expect("messages");
    assert_eq!(roles(&log), [Role::User]);
    assert_eq!(hook.count(events::CONTENT_BLOCK_DELTA), 1);
    assert_eq!(hook.count(events::CONTENT_BLOCK_END), 0);
    assert_eq!(hook.count(events::CANCEL_COMPLETED), 1);
}

#[tokio::test]
async fn cancel_branch_leaves_the_other_branch_running() {
    let held = hold_two_branches().await;
    held.session
        .cancel_branch("side", CancelMode::Immediate)
        .await;
    ended_cancelled(held.side).await;
    held.main_gate.release();
    assert_eq!(
        within(held.main)
            .await
            .expect("join")
            .expect("main went on"),
        "main answer"
    );
    let side_log = messages(&held.session, Some("side")).await.expect("side");
    assert_eq!(roles(&side_log), [Role::User]);
    assert_eq!(held.provider.streams_abandoned(), 1);
}

/// Runs a turn whose one tool call (`slow`) is held at its gate, cancels it
/// with `mode` (a graceful cancel then lets the tool finish), and returns
/// the tool, the provider and the default branch's tool results.
async fn cancel_during_tool(
    mode: CancelMode,
) -> (FakeTool, FakeProvider, Vec<(String, String, bool)>) {
    let tool = FakeTool::new("slow", "slow done");
    let gate = tool.hold();
    let provider = FakeProvider::replying([Reply::tool_call("slow", serde_json::json!({}))]);
    let session = session_with(&provider, vec![tool.as_tool()])
        .await
        .expect("session");
    let turn = spawn_turn(&session, None, "go");
    within(gate.reached()).await;

    session.cancel(mode).await;
    if mode == CancelMode::Graceful {
        gate.release();
    }
    ended_cancelled(turn).await;
    let log = messages(&session, None).await.expect("messages");
    (tool, provider, tool_results(&log))
}

#[tokio::test]
async fn a_graceful_cancel_lets_the_running_tool_finish_then_stops() {
    let (tool, provider, results) = cancel_during_tool(CancelMode::Graceful).await;
    assert_eq!(tool.finished(), 1);
    assert_eq!(
        provider.calls(),
        1,
        "the provider was called after the cancel"
    );
    assert_eq!(
        results,
        [("call_1_1".to_string(), "slow done".to_string(), false)]
    );
}

#[tokio::test]
async fn an_immediate_cancel_answers_the_running_tool_as_cancelled() {
    let (tool, _provider, results) = cancel_during_tool(CancelMode::Immediate).await;
    assert_eq!(tool.finished(), 0);
    assert_eq!(
        results,
        [("call_1_1".to_string(), TOOL_CANCELLED.to_string(), true)]
    );
}

#[tokio::test]
async fn a_rewound_turn_leaves_the_models_context_and_the_view() {
    let provider =
        FakeProvider::replying([Reply::text("one"), Reply::text("two"), Reply::text("three")]);
    let session = session_with(&provider, vec![]).await.expect("session");
    session.execute("first").await.expect("turn 1");
    session.execute("second").await.expect("turn 2");
    let done = session.rewind(None, 1).await.expect("rewind");
    assert_eq!((done.turns, done.messages), (1, 2));
    let texts = |ms: Vec<crate::Message>| -> Vec<String> {
        ms.iter().map(crate::Message::text_content).collect()
    };
    assert_eq!(
        texts(messages(&session, None).await.expect("messages")),
        ["first", "one"]
    );
    session.execute("third").await.expect("turn 3");
    let sent = provider.requests().pop().expect("a request");
    let seen: Vec<String> = sent.messages.iter().map(|m| m.text_content()).collect();
    assert!(
        !seen
            .iter()
            .any(|t| t.contains("second") || t.contains("two")),
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|t| t == "first") && seen.iter().any(|t| t == "third"),
        "{seen:?}"
    );
    // More than there is: a clear refusal, nothing written.
    let head = session
        .store()
        .get(session.id())
        .await
        .expect("get")
        .last_seq;
    let err = session.rewind(Some("main"), 5).await.expect_err("too many");
    assert!(err.to_string().contains("rewind 1 to 2"), "{err}");
    assert_eq!(
        session
            .store()
            .get(session.id())
            .await
            .expect("get")
            .last_seq,
        head
    );
}

#[tokio::test]
async fn a_branch_system_message_reaches_the_model_once() {
    let provider = FakeProvider::replying([Reply::text("ok")]);
    let session = session_with(&provider, vec![]).await.expect("session");
    session
        .new_branch(NewBranch {
            name: "coding".into(),
            system: Some("You code.".into()),
            ..NewBranch::default()
        })
        .await
        .expect("branch");
    session
        .execute_on(Some("coding"), "hi")
        .await
        .expect("answer");
    let request = &provider.requests()[0];
    let systems: Vec<String> = request
        .messages
        .iter()
        .filter(|m| m.role == Role::System)
        .map(|m| m.text_content())
        .collect();
    assert_eq!(systems, ["You code."]);
    // The branch's messages start with it.
    let log = messages(&session, Some("coding")).await.expect("messages");
    assert_eq!(roles(&log), [Role::System, Role::User, Role::Assistant]);
}
