//! Tests of the turn as a kernel object ([`TurnHandle`]) and of the
//! session's feed as turns fill it: cancelling before the start and
//! mid-stream, concurrent branches naming their turn and branch on every
//! item, and a subscriber joining mid-turn.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::tests::with_side_branch;
use crate::feed::FeedItem;
use crate::hooks::events;
use crate::id::{BranchId, TurnId};
use crate::message::Role;
use crate::runtime::{CancelMode, TurnRequest};
use crate::testing::{FakeProvider, Reply, messages, session_with, within};

fn event_names(items: &[Arc<FeedItem>]) -> Vec<String> {
    items
        .iter()
        .filter_map(|i| i.as_event().map(|e| e.name.clone()))
        .collect()
}

#[tokio::test]
async fn a_turn_cancelled_before_it_starts_never_calls_the_provider() {
    let provider = FakeProvider::replying([Reply::text("never")]);
    let session = session_with(&provider, vec![]).await.expect("session");
    let head = session.log().expect("log").head().await;
    let mut handle = session.start_turn(None, "hello").await.expect("start");
    // On this single-threaded runtime the turn's task has not run yet: the
    // cancel comes before its first event.
    handle.cancel(CancelMode::Immediate);
    let mut events = handle.events().expect("events");
    let id = handle.id().clone();
    let err = within(handle.result())
        .await
        .expect_err("the turn was cancelled");
    assert!(err.is_cancelled(), "{err:?}");
    assert_eq!(provider.calls(), 0, "the provider was called");
    let mut items = Vec::new();
    while let Some(item) = within(events.next()).await {
        items.push(item.expect("item"));
    }
    assert_eq!(
        event_names(&items),
        vec![
            events::CANCEL_REQUESTED,
            events::CANCEL_COMPLETED,
            events::EXECUTION_END
        ]
    );
    let end = items.last().and_then(|i| i.as_event()).expect("end");
    assert_eq!(end.data["status"], "cancelled");
    assert_eq!(end.turn.as_ref(), Some(&id));
    // Nothing was written.
    assert_eq!(session.log().expect("log").head().await, head);
    assert!(messages(&session, None).await.expect("messages").is_empty());
}

#[tokio::test]
async fn a_turn_cancelled_mid_stream_stops_at_once() {
    let provider = FakeProvider::replying([Reply::deltas(["one ", "two ", "three"])]);
    let session = session_with(&provider, vec![]).await.expect("session");
    let gate = provider.pause_after(1);
    let mut handle = session.start_turn(None, "count").await.expect("start");
    let mut events = handle.events().expect("events");
    within(gate.reached()).await;
    handle.cancel(CancelMode::Immediate);
    // Were the stream still read, releasing it would produce more deltas.
    gate.release();
    let err = within(handle.result()).await.expect_err("cancelled");
    assert!(err.is_cancelled(), "{err:?}");
    assert_eq!(
        provider.streams_abandoned(),
        1,
        "the stream was not dropped"
    );
    let mut deltas = Vec::new();
    while let Some(item) = within(events.next()).await {
        let item = item.expect("item");
        if let Some(e) = item.as_event()
            && e.name == events::CONTENT_BLOCK_DELTA
        {
            deltas.push(e.data["delta"].as_str().unwrap_or_default().to_string());
        }
    }
    assert_eq!(deltas, vec!["one "], "a delta after the cancel was sent");
    let recorded = messages(&session, None).await.expect("messages");
    assert!(
        recorded.iter().all(|m| m.role != Role::Assistant),
        "an answer was recorded after the cancel: {recorded:?}"
    );
}

#[tokio::test]
async fn a_turn_waiting_for_its_branch_is_cancelled_without_running() {
    let provider = FakeProvider::replying([Reply::text("first"), Reply::text("second")]);
    let session = session_with(&provider, vec![]).await.expect("session");
    let gate = provider.pause_after(0);
    let first = session.start_turn(None, "one").await.expect("start");
    within(gate.reached()).await;
    // The second turn on the same branch waits for the first.
    let second = session.start_turn(None, "two").await.expect("start");
    second.cancel(CancelMode::Graceful);
    let err = within(second.result()).await.expect_err("cancelled");
    assert!(err.is_cancelled(), "{err:?}");
    gate.release();
    assert_eq!(within(first.result()).await.expect("first"), "first");
    assert_eq!(
        provider.calls(),
        1,
        "the cancelled turn called the provider"
    );
}

#[tokio::test]
async fn turn_ids_are_unique_and_a_running_id_is_refused() {
    let provider = FakeProvider::replying([Reply::text("a"), Reply::text("b")]);
    let session = session_with(&provider, vec![]).await.expect("session");
    let gate = provider.pause_after(0);
    let id = TurnId::new_v7();
    let first = session
        .start_turn_with(TurnRequest::new("one").with_id(id.clone()))
        .await
        .expect("start");
    assert_eq!(first.id(), &id);
    within(gate.reached()).await;
    let err = session
        .start_turn_with(TurnRequest::new("two").with_id(id.clone()))
        .await
        .expect_err("a running id");
    assert!(err.to_string().contains("already running"), "{err}");
    gate.release();
    within(first.result()).await.expect("first");
    // Its records carry the id durably.
    let view = session.view().await.expect("view");
    let records = session
        .store()
        .read(session.id(), 1, None)
        .await
        .expect("read");
    let stamped: Vec<_> = records
        .iter()
        .filter(|r| r.as_message().is_some())
        .map(|r| (r.turn.clone(), r.branch.clone()))
        .collect();
    assert_eq!(stamped.len(), 2);
    assert!(
        stamped
            .iter()
            .all(|(t, b)| t.as_ref() == Some(&id) && b.as_ref() == Some(&view.meta.default_branch)),
        "{stamped:?}"
    );
}

#[tokio::test]
async fn dropping_an_execute_future_cancels_its_turn() {
    let provider = FakeProvider::replying([Reply::deltas(["a", "b"])]);
    let session = session_with(&provider, vec![]).await.expect("session");
    let gate = provider.pause_after(1);
    let s = session.clone();
    let task = tokio::spawn(async move { s.execute("go").await });
    within(gate.reached()).await;
    task.abort();
    let _ = task.await;
    gate.release();
    // The turn's task ends cancelled: the session runs no turn any more.
    let mut feed = session
        .feed()
        .expect("feed")
        .subscribe(None)
        .await
        .expect("sub");
    if session.is_running() {
        loop {
            let item = within(feed.recv()).await.expect("item");
            if item
                .as_event()
                .is_some_and(|e| e.name == events::EXECUTION_END)
            {
                assert_eq!(item.as_event().expect("event").data["status"], "cancelled");
                break;
            }
        }
    }
    assert_eq!(provider.streams_abandoned(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_branches_name_their_turn_and_a_late_subscriber_misses_nothing() {
    let provider = FakeProvider::new();
    let session = with_side_branch(&provider).await;
    let side_id = session
        .view()
        .await
        .expect("view")
        .branch("side")
        .expect("side")
        .branch
        .id
        .clone();
    let feed = session.feed().expect("feed").clone();
    let mut all = feed.subscribe(None).await.expect("subscribe");
    // Both turns are held mid-stream, so they overlap.
    provider.push(Reply::deltas(["main ", "answer"]));
    provider.push(Reply::deltas(["side ", "answer"]));
    let main_gate = provider.pause_after(1);
    let side_gate = provider.pause_after(1);
    let main = session.start_turn(None, "on main").await.expect("main");
    within(main_gate.reached()).await;
    let side = session
        .start_turn(Some("side"), "on side")
        .await
        .expect("side");
    within(side_gate.reached()).await;
    let turns: HashMap<TurnId, BranchId> = [
        (main.id().clone(), main.branch().clone()),
        (side.id().clone(), side.branch().clone()),
    ]
    .into();
    assert_eq!(side.branch(), &side_id);

    // A subscriber joining now, from the seq where both user messages are
    // in: it must get every later record exactly once.
    let joined_at = session.log().expect("log").head().await;
    let mut late = feed.subscribe(Some(joined_at - 1)).await.expect("late");
    main_gate.release();
    side_gate.release();
    within(main.result()).await.expect("main");
    within(side.result()).await.expect("side");

    let head = session.log().expect("log").head().await;
    let mut items = Vec::new();
    let mut ends = 0;
    while ends < 2 {
        let item = within(all.recv()).await.expect("item");
        if item
            .as_event()
            .is_some_and(|e| e.name == events::EXECUTION_END)
        {
            ends += 1;
        }
        items.push(item);
    }
    // Every event and record of a turn names the turn and its branch.
    let mut per_turn: BTreeMap<String, usize> = BTreeMap::new();
    for item in &items {
        let turn = item.turn().unwrap_or_else(|| panic!("no turn on {item:?}"));
        let branch = turns
            .get(turn)
            .unwrap_or_else(|| panic!("unknown turn on {item:?}"));
        assert_eq!(item.branch(), Some(branch), "{item:?}");
        if let FeedItem::Record(r) = &**item
            && let Some(m) = r.as_message()
        {
            assert_eq!(&m.branch, branch, "a record named the wrong turn: {r:?}");
        }
        if let FeedItem::Event(e) = &**item {
            assert_eq!(e.data["turn"], turn.as_str());
            assert_eq!(e.data["branch"], branch.as_str());
        }
        *per_turn.entry(turn.to_string()).or_default() += 1;
    }
    assert_eq!(per_turn.len(), 2);
    // The records came in seq order, without gaps, each once.
    let seqs: Vec<u64> = items
        .iter()
        .filter_map(|i| i.as_record().map(|r| r.seq))
        .collect();
    assert_eq!(seqs, (seqs[0]..=head).collect::<Vec<_>>());

    let mut late_seqs = Vec::new();
    while let Some(item) = late.try_recv().await.expect("late item") {
        if let Some(r) = item.as_record() {
            late_seqs.push(r.seq);
        }
    }
    assert_eq!(late_seqs, (joined_at..=head).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_structured_turn_sends_its_format_and_returns_the_value() {
    use crate::structured::ResponseFormat;
    use crate::testing::FakeTool;
    let provider = FakeProvider::replying([Reply::text(r#"{"n": 1}"#)]);
    let tool = FakeTool::new("lookup", "found");
    let session = session_with(&provider, vec![Arc::new(tool)])
        .await
        .expect("session");
    let schema = serde_json::json!({"type": "object", "required": ["n"]});
    // A format named like a mounted tool is refused before any call.
    let clash = ResponseFormat::named("lookup", schema.clone(), false).expect("format");
    let err = session
        .execute_structured("count", clash)
        .await
        .expect_err("a clash");
    assert!(
        err.to_string().contains("is the name of a mounted tool"),
        "{err}"
    );
    assert_eq!(provider.calls(), 0);
    let format = ResponseFormat::new(schema).expect("format");
    let answer = session
        .execute_structured("count", format.clone())
        .await
        .expect("answer");
    assert_eq!(answer.value, serde_json::json!({"n": 1}));
    let requests = provider.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].response_format.as_ref(), Some(&format));
    assert_eq!(requests[0].tools.len(), 1, "the tools are still offered");
    let stored = messages(&session, None).await.expect("messages");
    assert_eq!(stored[1].structured, Some(serde_json::json!({"n": 1})));
    assert_eq!(stored[1].role, Role::Assistant);
}
