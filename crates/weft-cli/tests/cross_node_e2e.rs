//! Two `weft serve` processes on one shared store (PostgreSQL, Redis): a
//! turn running on one daemon streams live to an SSE client of the other —
//! its kernel events and its records, in the same order the first
//! daemon's own clients see them, none twice — in both directions, and a
//! client resuming with `Last-Event-ID` on the other daemon gets only what
//! it missed. The stores come from a fresh database on the local
//! PostgreSQL server (`support::postgres`) and a private `redis-server`; a
//! missing server fails the test.
#![cfg(all(feature = "postgres", feature = "redis"))]

mod support;

use serde_json::{Value, json};
use support::postgres::TempDatabase;
use support::*;

/// One event as a client sees it, minus what is per-connection.
fn seen(e: &SseEvent) -> (String, Option<u64>, Value) {
    (e.event.clone(), e.id, e.data.clone())
}

/// The events of `turn` on `stream`, up to its `execution:end`, plus the
/// records of that turn; anything before the turn's first item is skipped.
async fn turn_items(stream: &mut SseClient, turn: &str) -> Vec<(String, Option<u64>, Value)> {
    let mut items = Vec::new();
    loop {
        let Some(event) = stream.next().await else {
            panic!("the stream ended after {items:?}");
        };
        let of_turn = event.data["turn"] == turn || event.data["data"]["turn"] == turn;
        if !of_turn {
            continue;
        }
        let end = event.event == "execution:end";
        items.push(seen(&event));
        if end {
            return items;
        }
    }
}

/// Waits until `stream` delivers the user message `text` (a record).
async fn until_message(stream: &mut SseClient, text: &str) -> u64 {
    loop {
        let Some(event) = stream.next().await else {
            panic!("the stream ended before {text:?}");
        };
        if event.event == "message" && event.data.to_string().contains(text) {
            return event.id.expect("a record has an id");
        }
    }
}

async fn a_turn_on_one_daemon_streams_live_on_the_other(store_args: &[&str]) {
    let env = Env::new();
    let plan = env.file("plan.json", SLOW_ECHO_PLAN);
    let mut args = store_args.to_vec();
    args.extend(["--mount-plan", plan.to_str().expect("utf-8")]);
    let a = env.serve(&args).await;
    let b = env.serve(&args).await;
    let id = a.active().await;
    let (status, list) = b.get("/api/v1/sessions").await;
    assert_eq!(status, 200, "{list}");
    assert!(
        list.to_string().contains(&id),
        "B lists A's session: {list}"
    );

    let mut on_a = a.stream(&id, None).await;
    let mut on_b = b.stream(&id, None).await;
    // A record written after both subscribed reaches both: from then on
    // B follows A's channel.
    let (status, body) = a
        .post(
            &format!("/api/v1/sessions/{id}/messages"),
            json!({"content": "warm-up"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let warm_a = until_message(&mut on_a, "warm-up").await;
    let warm_b = until_message(&mut on_b, "warm-up").await;
    assert_eq!(warm_a, warm_b);

    for (runner, name) in [(&a, "A"), (&b, "B")] {
        let prompt = format!("hello from {name}");
        let (status, body) = runner
            .post(
                &format!("/api/v1/sessions/{id}/send-message"),
                json!({"content": prompt}),
            )
            .await;
        assert_eq!(status, 202, "{body}");
        let turn = body["turn"].as_str().expect("turn id").to_string();
        let seen_a = turn_items(&mut on_a, &turn).await;
        let seen_b = turn_items(&mut on_b, &turn).await;
        assert_eq!(
            seen_a, seen_b,
            "a turn run by {name} looks the same from both daemons"
        );
        let names: Vec<&str> = seen_a.iter().map(|(n, _, _)| n.as_str()).collect();
        assert!(names.contains(&"content_block:delta"), "{names:?}");
        assert_eq!(names.last(), Some(&"execution:end"), "{names:?}");
        let ids: Vec<u64> = seen_a.iter().filter_map(|(_, id, _)| *id).collect();
        assert!(ids.len() >= 2, "the turn's records: {seen_a:?}");
        assert!(
            ids.windows(2).all(|w| w[1] == w[0] + 1),
            "records in order, gapless, none twice: {ids:?}"
        );
        let answer = seen_a
            .iter()
            .any(|(n, _, d)| n == "message" && d.to_string().contains(&prompt));
        assert!(answer, "the echo answer is among the records");
        runner.wait_idle(&id).await;
    }

    // A client of B that dropped after the warm-up resumes with
    // Last-Event-ID: it gets exactly the records after it, in order.
    let (_, session) = a.get(&format!("/api/v1/sessions/{id}")).await;
    let last = session["lastSeq"].as_u64().expect("lastSeq");
    let mut resumed = b.stream(&id, Some(warm_b)).await;
    let mut ids = Vec::new();
    while ids.last() != Some(&last) {
        match resumed.next().await {
            Some(e) => ids.extend(e.id),
            None => panic!("the resumed stream ended after {ids:?}"),
        }
    }
    assert_eq!(ids, (warm_b + 1..=last).collect::<Vec<u64>>());
}

#[test]
fn two_daemons_on_postgres_stream_each_others_turns() {
    let db = TempDatabase::create();
    let url = db.url();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(a_turn_on_one_daemon_streams_live_on_the_other(&[
        "--store",
        "postgres",
        "--store-url",
        &url,
    ]));
}

#[test]
fn two_daemons_on_redis_stream_each_others_turns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let redis = weft_store::redis::local::LocalRedis::start(None, dir.path())
        .unwrap_or_else(|e| panic!("this test needs a local redis-server: {e}"));
    let url = redis.url();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(a_turn_on_one_daemon_streams_live_on_the_other(&[
        "--store",
        "redis",
        "--store-url",
        &url,
    ]));
}
