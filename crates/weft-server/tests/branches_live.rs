//! Branches over the daemon's API while turns run, in process: two
//! branches running turns concurrently with a gapless log, interrupts that
//! stay on their branch, changes made while the session is live keeping its
//! log head right, branch records on the stream, and another writer's
//! records taken in between turns. (The endpoints themselves are in
//! `branches.rs`.)

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use weft_core::SessionId;
use weft_server::StaticPlanSource;

fn echo_plans() -> StaticPlanSource {
    StaticPlanSource::new("base", echo())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_branches_run_turns_concurrently_with_a_gapless_log() {
    let s = start(StaticPlanSource::new("base", echo_delayed(700))).await;
    let id = s.active().await;
    let b = base(&id);
    assert_eq!(
        s.post(&format!("{b}/branches"), json!({"name": "left"}))
            .await
            .0,
        201
    );
    let started = Instant::now();
    let (status, on_main) = s
        .post(
            &format!("{b}/branches/main/send-message"),
            json!({"content": "ping main"}),
        )
        .await;
    assert_eq!(status, 202, "{on_main}");
    assert_eq!(on_main["status"], "executing");
    assert_eq!(on_main["branch"], "main");
    let (status, on_left) = s
        .post(
            &format!("{b}/branches/left/send-message"),
            json!({"content": "ping left"}),
        )
        .await;
    assert_eq!(status, 202, "{on_left}");
    assert_eq!(
        on_left["status"], "executing",
        "another branch's turn does not block"
    );
    assert_eq!(on_left["branch"], "left");

    // The multitask policy is per branch.
    let (status, body) = s
        .post(&format!("{b}/send-message"), json!({"content": "again"}))
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(detail(&body).contains("multitask") && detail(&body).contains("main"));
    let (status, body) = s
        .post(
            &format!("{b}/branches/left/send-message?multitask=enqueue"),
            json!({"content": "left again"}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "queued");
    assert_eq!(body["position"], 1);
    let (_, list) = s.get(&format!("{b}/branches")).await;
    let by_id = |name: &str| {
        list.as_array()
            .and_then(|a| a.iter().find(|x| x["id"] == name))
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(by_id("main")["running"], true);
    assert_eq!(by_id("left")["running"], true);
    assert_eq!(by_id("left")["queued"], 1);
    let (_, info) = s.get(&b).await;
    assert_eq!(info["running"], true);
    assert_eq!(info["queued"], 1);
    // A busy branch is not removed, nor gets mail delivered.
    let (status, body) = s.delete(&format!("{b}/branches/left")).await;
    assert_eq!(status, 409, "{body}");
    assert!(detail(&body).contains("running a turn"), "{body}");
    let (status, _) = s
        .post(
            &format!("{b}/mail"),
            json!({"from": "main", "to": "left", "category": "message", "item": "note"}),
        )
        .await;
    assert_eq!(status, 201, "sending is fine");
    let (status, body) = s
        .post(&format!("{b}/mail/collect"), json!({"to": "left"}))
        .await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = s.post(&format!("{b}/mail/collect"), json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["delivered"], 0);
    assert_eq!(body["held"], json!(["left"]));

    wait_branches_idle(&s, &id).await;
    let elapsed = started.elapsed();
    assert_eq!(
        s.branch_texts(&id, "main").await,
        vec![json!("ping main"), json!("ping main")]
    );
    assert_eq!(
        s.branch_texts(&id, "left").await,
        vec![
            json!("ping left"),
            json!("ping left"),
            json!("left again"),
            json!("left again")
        ]
    );
    // They overlapped: both prompts were recorded before either answer.
    let (_, all) = s.get(&format!("{b}/messages")).await;
    let seq_of = |text: &str, role: &str| message_seq(&all, text, role);
    assert!(
        seq_of("ping left", "user") < seq_of("ping main", "assistant"),
        "the turns ran one after the other: {all}"
    );
    assert!(
        elapsed < Duration::from_millis(3 * 700 + 1500),
        "took {elapsed:?}"
    );
    assert_gapless(&s.store, &id).await;
    // The held mail is delivered now that left is idle.
    let (_, done) = s.post(&format!("{b}/mail/collect"), json!({})).await;
    assert_eq!(done["delivered"], 1);
    assert_eq!(
        s.branch_texts(&id, "left").await.last(),
        Some(&json!("note"))
    );

    // Unknown branches: 404 in the path, 422 naming the field in a body.
    let (status, body) = s
        .post(
            &format!("{b}/branches/nope/send-message"),
            json!({"content": "x"}),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = s
        .post(
            &format!("{b}/send-message"),
            json!({"content": "x", "branch": "nope"}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(detail(&body).starts_with("branch:"), "{body}");
    let (status, body) = s
        .post(
            &format!("{b}/branches/main/send-message"),
            json!({"content": " "}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn interrupting_one_branch_never_cancels_another() {
    let s = start(StaticPlanSource::new("base", echo_delayed(1000))).await;
    let id = s.active().await;
    let b = base(&id);
    assert_eq!(
        s.post(&format!("{b}/branches"), json!({"name": "left"}))
            .await
            .0,
        201
    );
    let send = |branch: &str| format!("{b}/branches/{branch}/send-message");
    assert_eq!(
        s.post(&send("main"), json!({"content": "first main"}))
            .await
            .0,
        202
    );
    assert_eq!(
        s.post(&send("left"), json!({"content": "first left"}))
            .await
            .0,
        202
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, body) = s
        .post(
            &format!("{}?multitask=interrupt", send("left")),
            json!({"content": "instead"}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "interrupting");
    wait_branches_idle(&s, &id).await;
    assert_eq!(
        s.branch_texts(&id, "main").await,
        vec![json!("first main"), json!("first main")],
        "main's turn was not cancelled"
    );
    let left = s.branch_texts(&id, "left").await;
    assert_eq!(left.first(), Some(&json!("first left")));
    assert_eq!(
        left[left.len() - 2..].to_vec(),
        vec![json!("instead"), json!("instead")]
    );
    assert_gapless(&s.store, &id).await;

    // Alone on its branch, an interrupt cancels at once.
    let started = Instant::now();
    assert_eq!(
        s.post(&send("left"), json!({"content": "slow"})).await.0,
        202
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, body) = s
        .post(
            &format!("{}?multitask=interrupt", send("left")),
            json!({"content": "quick"}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    wait_branches_idle(&s, &id).await;
    let left = s.branch_texts(&id, "left").await;
    assert_eq!(
        left[left.len() - 3..].to_vec(),
        vec![json!("slow"), json!("quick"), json!("quick")],
        "the slow turn was cancelled before it answered"
    );
    assert!(started.elapsed() < Duration::from_millis(1900));
}

#[tokio::test]
async fn changes_while_live_keep_the_log_head_right() {
    let s = start(echo_plans()).await;
    let id = s.active().await;
    let b = base(&id);
    // A turn makes the session live in the daemon.
    assert_eq!(
        s.post(&format!("{b}/send-message"), json!({"content": "one"}))
            .await
            .0,
        202
    );
    s.wait_idle(&id).await;
    // Branch, mail and state changes go through the live session …
    let (status, _) = s
        .post(
            &format!("{b}/branches"),
            json!({"name": "side", "system": "short"}),
        )
        .await;
    assert_eq!(status, 201);
    let (status, _) = s
        .post(&format!("{b}/branches/main/split"), json!({"name": "fork"}))
        .await;
    assert_eq!(status, 201);
    let (status, _) = s
        .post(
            &format!("{b}/mail"),
            json!({"from": "main", "to": "side", "category": "message", "item": "context"}),
        )
        .await;
    assert_eq!(status, 201);
    let (_, done) = s.post(&format!("{b}/mail/collect"), json!({})).await;
    assert_eq!(done["delivered"], 1);
    let (status, _) = s.put(&format!("{b}/state/step"), json!({"value": 3})).await;
    assert_eq!(status, 200);
    let (status, _) = s
        .post(&format!("{b}/branches/side/default"), json!({}))
        .await;
    assert_eq!(status, 204);
    // … so its next turns append without a conflict, on the new default
    // and on the others, and see the branches as they are now.
    let (status, body) = s
        .post(&format!("{b}/send-message"), json!({"content": "two"}))
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["branch"], "side");
    let (status, _) = s
        .post(
            &format!("{b}/branches/fork/send-message"),
            json!({"content": "three"}),
        )
        .await;
    assert_eq!(status, 202);
    wait_branches_idle(&s, &id).await;
    assert_eq!(
        s.branch_texts(&id, "side").await,
        vec![json!("short"), json!("context"), json!("two"), json!("two")]
    );
    assert_eq!(
        s.branch_texts(&id, "fork").await,
        vec![json!("one"), json!("one"), json!("three"), json!("three")]
    );
    let (_, info) = s.get(&b).await;
    assert_eq!(info["status"], "active");
    assert!(info["errorMessage"].is_null(), "{info}");
    let (_, state) = s.get(&format!("{b}/state/step")).await;
    assert_eq!(state["value"], 3);
    // Removing a branch the live session has cached: its turns are refused.
    assert_eq!(s.delete(&format!("{b}/branches/fork")).await.0, 204);
    let (status, _) = s
        .post(
            &format!("{b}/branches/fork/send-message"),
            json!({"content": "gone"}),
        )
        .await;
    assert_eq!(status, 404);
    assert_gapless(&s.store, &id).await;
}

#[tokio::test]
async fn stream_shows_branch_records_with_their_seq() {
    let s = start(echo_plans()).await;
    let id = s.active().await;
    let b = base(&id);
    let mut stream = s.stream(&id, None).await;
    stream.next().await.expect("connected");
    let (status, _) = s.post(&format!("{b}/branches"), json!({"name": "a"})).await;
    assert_eq!(status, 201);
    let events = stream.until(|e| e.event == "branch_created").await;
    let created = events.last().expect("event");
    assert!(created.id.is_some(), "records carry their seq");
    assert_eq!(created.data["kind"]["data"]["name"], "a");
}

#[tokio::test]
async fn another_writer_between_turns_is_taken_in() {
    let s = start(echo_plans()).await;
    let id = s.active().await;
    let b = base(&id);
    assert_eq!(
        s.post(&format!("{b}/send-message"), json!({"content": "one"}))
            .await
            .0,
        202
    );
    s.wait_idle(&id).await;
    // Another process (the CLI) writes behind the live session's back:
    // mail collected into main, and a state key.
    let sid = SessionId::parse(id.as_str()).expect("id");
    let mut message = weft_core::Message::text(
        weft_core::BranchId::main(),
        weft_core::Role::User,
        "from the cli",
    );
    message.sender = Some("cli".into());
    let mut delta = weft_core::record::StateDelta::default();
    delta.set.insert("cli".into(), json!(true));
    s.store
        .append_anywhere(
            &sid,
            vec![
                weft_core::RecordKind::message(message),
                weft_core::RecordKind::State(delta),
            ],
        )
        .await
        .expect("append");
    // The next turn runs on the history as it is now, without a conflict.
    assert_eq!(
        s.post(&format!("{b}/send-message"), json!({"content": "two"}))
            .await
            .0,
        202
    );
    s.wait_idle(&id).await;
    assert_eq!(
        texts(&s.transcript(&id).await),
        vec![
            json!("one"),
            json!("one"),
            json!("from the cli"),
            json!("two"),
            json!("two")
        ]
    );
    let (_, state) = s.get(&format!("{b}/state/cli")).await;
    assert_eq!(state["value"], true);
    // And a change through the live session after another write, too.
    s.store
        .append_anywhere(&sid, vec![weft_core::RecordKind::State(Default::default())])
        .await
        .expect("append");
    let (status, body) = s
        .post(&format!("{b}/branches"), json!({"name": "late"}))
        .await;
    assert_eq!(status, 201, "{body}");
    assert_gapless(&s.store, &id).await;
}
