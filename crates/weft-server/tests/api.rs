//! The daemon's API in process: the session endpoints, the lifecycle
//! (allowed and refused transitions), errors, SSE with Last-Event-ID and
//! multitask policies. (agentkernel's endpoints, token auth, the OpenAPI
//! coverage and graceful shutdown are in `api_daemon.rs`.)

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use weft_server::ServerConfig;

#[tokio::test]
async fn create_returns_amplifierd_fields() {
    let s = start(echo_plans()).await;
    let (status, body) = s
        .post(
            "/api/v1/sessions/",
            json!({"amplified_dir": "sub", "profile_name": "dev", "name": "first", "settings_overrides": {"llm": {"model": "m1"}}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    for &key in SESSION_FIELDS {
        assert!(body.get(key).is_some(), "missing {key} in {body}");
    }
    assert_eq!(body["status"], "created");
    assert_eq!(body["profileName"], "dev");
    assert_eq!(body["amplifiedDir"], "sub");
    assert_eq!(body["name"], "first");
    assert_eq!(body["model"], "m1");
    assert_eq!(body["tokenUsage"]["totalTokens"], 0);
    // camelCase keys are accepted too, and an empty body means defaults.
    let (status, body) = s
        .post(
            "/api/v1/sessions",
            json!({"profileName": "base", "amplifiedDir": "."}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["amplifiedDir"], ".");
    let r = s
        .client
        .post(s.url("/api/v1/sessions/"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 201);
    // A parent links the trace.
    let parent = body["sessionId"].as_str().expect("id").to_string();
    let (status, child) = s
        .post("/api/v1/sessions/", json!({"parentSessionId": parent}))
        .await;
    assert_eq!(status, 201, "{child}");
    assert_eq!(child["parentSessionId"], parent.as_str());
    assert_eq!(child["traceId"], parent.as_str());
    // The session tree's roots: `topLevel=true` leaves the child out.
    let listed = |body: &Value| -> Vec<String> {
        body.as_array()
            .expect("a list")
            .iter()
            .map(|s| s["sessionId"].as_str().expect("id").to_string())
            .collect()
    };
    let child_id = child["sessionId"].as_str().expect("id").to_string();
    let (status, all) = s.get("/api/v1/sessions/?limit=500").await;
    assert_eq!(status, 200, "{all}");
    assert!(listed(&all).contains(&child_id));
    for query in ["topLevel=true", "top_level=true"] {
        let (status, roots) = s.get(&format!("/api/v1/sessions/?limit=500&{query}")).await;
        assert_eq!(status, 200, "{roots}");
        let roots = listed(&roots);
        assert!(
            roots.contains(&parent) && !roots.contains(&child_id),
            "{query}: {roots:?}"
        );
    }
}

#[tokio::test]
async fn create_rejects_bad_fields_by_name() {
    let s = start(echo_plans()).await;
    for (body, field) in [
        (json!({"profile_name": "nope"}), "profileName"),
        (json!({"amplified_dir": "../.."}), "amplifiedDir"),
        (json!({"amplified_dir": "missing"}), "amplifiedDir"),
        (json!({"parent_session_id": "../x"}), "parentSessionId"),
        (
            json!({"parent_session_id": "no-such-session"}),
            "parentSessionId",
        ),
        (json!({"settings_overrides": 3}), "settingsOverrides"),
        // The one session-name limit (weft_core::session::MAX_NAME_CHARS).
        (json!({"name": "x".repeat(51)}), "name"),
        (json!({"name": 5}), "name"),
    ] {
        let (status, resp) = s.post("/api/v1/sessions/", body.clone()).await;
        assert_eq!(status, 422, "{body} → {resp}");
        let detail = resp["detail"].as_str().expect("detail");
        assert!(detail.contains(field), "{field} not named in {detail:?}");
    }
}

#[tokio::test]
async fn every_lifecycle_transition_allowed_and_refused() {
    let s = start(echo_plans()).await;
    // A session in each status.
    async fn in_status(s: &Server, status: &str) -> String {
        let id = s.create().await;
        let path = |a: &str| format!("/api/v1/sessions/{id}/{a}");
        match status {
            "created" => {}
            "active" => assert_eq!(s.post(&path("start"), json!({})).await.0, 204),
            "completed" => {
                assert_eq!(s.post(&path("start"), json!({})).await.0, 204);
                assert_eq!(s.post(&path("complete"), json!({})).await.0, 204);
            }
            "failed" => {
                assert_eq!(s.post(&path("start"), json!({})).await.0, 204);
                let (st, b) = s
                    .post(
                        &path("fail"),
                        json!({"error_message": "boom", "error_details": {"k": 1}}),
                    )
                    .await;
                assert_eq!(st, 204, "{b}");
            }
            "terminated" => {
                assert_eq!(s.post(&path("start"), json!({})).await.0, 204);
                assert_eq!(s.post(&path("terminate"), json!({})).await.0, 204);
            }
            _ => unreachable!(),
        }
        assert_eq!(s.status_of(&id).await, status);
        id
    }
    let actions = [
        ("start", "active"),
        ("complete", "completed"),
        ("fail", "failed"),
        ("terminate", "terminated"),
    ];
    for from in ["created", "active", "completed", "failed", "terminated"] {
        for (action, to) in actions {
            let id = in_status(&s, from).await;
            let allowed = matches!(
                (from, to),
                ("created", "active")
                    | ("created", "terminated")
                    | ("active", "completed")
                    | ("active", "failed")
                    | ("active", "terminated")
            );
            let body = if action == "fail" {
                json!({"errorMessage": "it broke"})
            } else {
                json!({})
            };
            let (status, resp) = s
                .post(&format!("/api/v1/sessions/{id}/{action}"), body)
                .await;
            if allowed {
                assert_eq!(status, 204, "{from} -{action}-> {resp}");
                assert_eq!(s.status_of(&id).await, to);
            } else {
                assert_eq!(status, 409, "{from} -{action}-> should be refused: {resp}");
                let detail = resp["detail"].as_str().expect("detail");
                assert!(detail.contains(&format!("is {from}")), "{detail}");
                assert_eq!(s.status_of(&id).await, from);
            }
        }
    }
    // The failure is recorded.
    let id = in_status(&s, "failed").await;
    let (_, body) = s.get(&format!("/api/v1/sessions/{id}")).await;
    assert_eq!(body["errorMessage"], "boom");
    assert!(body["endedAt"].is_string());
}

#[tokio::test]
async fn unknown_ids_bad_ids_and_bad_bodies() {
    let s = start(echo_plans()).await;
    let unknown = "0190aaaa-0000-7000-8000-000000000000";
    for (method, path) in [
        ("get", format!("/api/v1/sessions/{unknown}")),
        ("delete", format!("/api/v1/sessions/{unknown}")),
        ("get", format!("/api/v1/sessions/{unknown}/transcript")),
        ("get", format!("/api/v1/sessions/{unknown}/stream")),
        ("post", format!("/api/v1/sessions/{unknown}/start")),
        ("post", format!("/api/v1/sessions/{unknown}/complete")),
        ("post", format!("/api/v1/sessions/{unknown}/terminate")),
        ("post", format!("/api/v1/sessions/{unknown}/fork")),
    ] {
        let (status, body) = match method {
            "get" => s.get(&path).await,
            "delete" => s.delete(&path).await,
            _ => s.post(&path, json!({})).await,
        };
        assert_eq!(status, 404, "{method} {path}: {body}");
        assert!(body["detail"].as_str().expect("detail").contains(unknown));
    }
    let (status, body) = s
        .post(
            &format!("/api/v1/sessions/{unknown}/messages"),
            json!({"content": "x"}),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    for action in ["send-message", "execute"] {
        let (status, body) = s
            .post(
                &format!("/api/v1/sessions/{unknown}/{action}"),
                json!({"content": "x"}),
            )
            .await;
        assert_eq!(status, 404, "{action}: {body}");
    }
    // Malformed ids: 400 naming the id.
    for bad in ["bad!id", "a%20b", ".hidden", "a%2Fb", &"x".repeat(200)] {
        let (status, body) = s.get(&format!("/api/v1/sessions/{bad}")).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(
            body["detail"]
                .as_str()
                .expect("detail")
                .contains("invalid id")
        );
    }
    // Unknown route and method: JSON errors.
    let (status, body) = s.get("/api/v1/nothing").await;
    assert_eq!(status, 404);
    assert!(body["detail"].is_string(), "{body}");
    let (status, body) = s.get("/run").await;
    assert_eq!(status, 405);
    assert!(body["detail"].is_string(), "{body}");
    // Bodies.
    let id = s.active().await;
    let r = s
        .client
        .post(s.url(&format!("/api/v1/sessions/{id}/messages")))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("request");
    let (status, body) = split(r).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = s
        .post(
            &format!("/api/v1/sessions/{id}/send-message"),
            json!({"content": 5}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["detail"].as_str().expect("detail").contains("content"),
        "{body}"
    );
    let (status, body) = s
        .post(
            &format!("/api/v1/sessions/{id}/send-message"),
            json!({"text": "wrong key"}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(detail(&body).contains("content"), "{body}");
    let (status, body) = s
        .post(&format!("/api/v1/sessions/{id}/fail"), json!({}))
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .expect("detail")
            .contains("errorMessage"),
        "{body}"
    );
    let (status, body) = s
        .post(
            &format!("/api/v1/sessions/{id}/messages"),
            json!({"content": "x", "role": "robot"}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["detail"].as_str().expect("detail").contains("role"),
        "{body}"
    );
    let r = s
        .client
        .post(s.url(&format!("/api/v1/sessions/{id}/messages")))
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 415);
    let (status, body) = s.get("/api/v1/sessions/?limit=abc").await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["detail"].as_str().expect("detail").contains("limit"),
        "{body}"
    );
    let (status, body) = s.get("/api/v1/sessions/?status=sleeping").await;
    assert_eq!(status, 422, "{body}");
}

#[tokio::test]
async fn body_limit_is_413() {
    let config = ServerConfig {
        body_limit: 2048,
        ..Default::default()
    };
    let s = start_with(echo_plans(), config).await;
    let id = s.active().await;
    let (status, body) = s
        .post(
            &format!("/api/v1/sessions/{id}/messages"),
            json!({"content": "x".repeat(4096)}),
        )
        .await;
    assert_eq!(status, 413, "{body}");
    assert!(body["detail"].is_string());
    let (status, _) = s
        .post(
            &format!("/api/v1/sessions/{id}/messages"),
            json!({"content": "small"}),
        )
        .await;
    assert_eq!(status, 201);
}

#[tokio::test]
async fn messages_transcript_patch_fork_list_delete() {
    let s = start(echo_plans()).await;
    let id = s.create().await;
    // Not active yet: 409.
    let (status, body) = s
        .post(
            &format!("/api/v1/sessions/{id}/messages"),
            json!({"content": "early"}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(body["detail"].as_str().expect("detail").contains("created"));
    let (status, body) = s
        .post(
            &format!("/api/v1/sessions/{id}/send-message"),
            json!({"content": "early"}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    s.post(&format!("/api/v1/sessions/{id}/start"), json!({}))
        .await;
    let (status, m) = s
        .post(
            &format!("/api/v1/sessions/{id}/messages"),
            json!({"content": "hello"}),
        )
        .await;
    assert_eq!(status, 201, "{m}");
    assert_eq!(m["role"], "user");
    assert_eq!(m["content"], "hello");
    let (status, _) = s
        .post(
            &format!("/api/v1/sessions/{id}/messages"),
            json!({"role": "assistant", "content": [{"type": "text", "text": "hi"}, {"type": "thinking", "thinking": "hmm"}]}),
        )
        .await;
    assert_eq!(status, 201);
    let t = s.transcript(&id).await;
    assert_eq!(t.len(), 2);
    assert_eq!(t[0]["content"], "hello");
    assert!(t[1]["content"].is_array(), "blocks stay blocks: {}", t[1]);
    assert!(t[0]["seq"].as_u64() < t[1]["seq"].as_u64());
    let (_, last) = s
        .get(&format!("/api/v1/sessions/{id}/transcript?limit=1"))
        .await;
    assert_eq!(last.as_array().map(Vec::len), Some(1));
    assert_eq!(last[0]["role"], "assistant");
    // A turn, so fork has two turns to choose from.
    let (status, _) = s
        .post(
            &format!("/api/v1/sessions/{id}/send-message"),
            json!({"content": "again"}),
        )
        .await;
    assert_eq!(status, 202);
    s.wait_idle(&id).await;
    let t = s.transcript(&id).await;
    assert_eq!(t.len(), 4, "{t:?}");
    assert_eq!(t[3]["content"], "again");
    // Rename, describe.
    let (status, body) = s
        .patch(
            &format!("/api/v1/sessions/{id}"),
            json!({"name": "renamed", "description": "d"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["name"], "renamed");
    assert_eq!(body["description"], "d");
    // Names are at most 50 characters, here as in the CLI and the library.
    let (status, body) = s
        .patch(
            &format!("/api/v1/sessions/{id}"),
            json!({"name": "é".repeat(51)}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("at most 50"),
        "{body}"
    );
    let (status, body) = s
        .patch(
            &format!("/api/v1/sessions/{id}"),
            json!({"name": "é".repeat(50)}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = s
        .patch(
            &format!("/api/v1/sessions/{id}"),
            json!({"name": "renamed"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // Fork after turn 1.
    let (status, fork) = s
        .post(&format!("/api/v1/sessions/{id}/fork"), json!({"turn": 1}))
        .await;
    assert_eq!(status, 201, "{fork}");
    assert_eq!(
        fork["parentSessionId"],
        Value::Null,
        "a fork is a session of its own"
    );
    assert_eq!(fork["forkedFrom"]["turn"], 1);
    let fork_id = fork["sessionId"].as_str().expect("id").to_string();
    assert_eq!(s.transcript(&fork_id).await.len(), 2);
    let (status, body) = s
        .post(&format!("/api/v1/sessions/{id}/fork"), json!({"turn": 9}))
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(body["detail"].as_str().expect("detail").contains("turn"));
    // List: filters, paging.
    let (status, all) = s.get("/api/v1/sessions/").await;
    assert_eq!(status, 200);
    assert_eq!(all.as_array().map(Vec::len), Some(2));
    let (_, active) = s.get("/api/v1/sessions/?status=active").await;
    assert_eq!(active.as_array().map(Vec::len), Some(1));
    let (_, named) = s.get("/api/v1/sessions/?name=RENAM").await;
    assert_eq!(named[0]["sessionId"], id.as_str());
    let r = s
        .client
        .get(s.url("/api/v1/sessions/?limit=1"))
        .send()
        .await
        .expect("request");
    let cursor = r
        .headers()
        .get("x-next-cursor")
        .and_then(|v| v.to_str().ok())
        .expect("next cursor")
        .to_string();
    let (_, page2) = s
        .get(&format!("/api/v1/sessions/?limit=1&cursor={cursor}"))
        .await;
    assert_eq!(page2.as_array().map(Vec::len), Some(1));
    // Delete: 204, then 404.
    let (status, _) = s.delete(&format!("/api/v1/sessions/{fork_id}")).await;
    assert_eq!(status, 204);
    let (status, _) = s.get(&format!("/api/v1/sessions/{fork_id}")).await;
    assert_eq!(status, 404);
    // Cleanup never removes the active one, dry run or not.
    let (status, body) = s
        .post(
            "/api/v1/sessions/cleanup",
            json!({"older_than_days": 0, "dry_run": true}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["keptActive"][0], id.as_str());
    assert!(
        !body["removed"]
            .as_array()
            .expect("removed")
            .iter()
            .any(|x| x == id.as_str()),
        "{body}"
    );
    let (status, body) = s
        .post("/api/v1/sessions/cleanup", json!({"older_than_days": 0}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["removedCount"], 0);
    assert_eq!(body["keptActive"][0], id.as_str());
    let (status, _) = s.get(&format!("/api/v1/sessions/{id}")).await;
    assert_eq!(status, 200);
    s.post(&format!("/api/v1/sessions/{id}/complete"), json!({}))
        .await;
    let (_, body) = s
        .post("/api/v1/sessions/cleanup", json!({"olderThanDays": 0}))
        .await;
    assert_eq!(body["removedCount"], 1, "{body}");
}

#[tokio::test]
async fn send_message_streams_events_and_records() {
    let s = start(echo_plans()).await;
    let id = s.active().await;
    let mut stream = s.stream(&id, None).await;
    let first = stream.next().await.expect("connected");
    assert_eq!(first.event, "connected");
    let (status, body) = s
        .post(
            &format!("/api/v1/sessions/{id}/send-message"),
            json!({"content": "ping pong"}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "executing");
    assert_eq!(body["sessionId"], id.as_str());
    let events = stream.until(|e| e.event == "execution:end").await;
    let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    for expected in [
        "execution:start",
        "prompt:submit",
        "provider:request",
        "content_block:delta",
        "message",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    // Records carry their seq as id, in order.
    let ids: Vec<u64> = events.iter().filter_map(|e| e.id).collect();
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "{ids:?}");
    let deltas: String = events
        .iter()
        .filter(|e| e.event == "content_block:delta")
        .filter_map(|e| e.data["delta"].as_str())
        .collect();
    assert_eq!(deltas, "ping pong");
    s.wait_idle(&id).await;
    let t = s.transcript(&id).await;
    assert_eq!(t.len(), 2);
    assert_eq!(t[1]["content"], "ping pong");
}

#[tokio::test]
async fn last_event_id_replays_without_gaps_or_duplicates() {
    let s = start(echo_plans()).await;
    let id = s.active().await;
    let send = |text: &'static str| {
        let s = &s;
        let id = id.clone();
        async move {
            let (status, body) = s
                .post(
                    &format!("/api/v1/sessions/{id}/send-message"),
                    json!({"content": text}),
                )
                .await;
            assert_eq!(status, 202, "{body}");
            s.wait_idle(&id).await;
        }
    };
    // First connection: read the first turn's records, remember the last id.
    let mut a = s.stream(&id, None).await;
    a.next().await.expect("connected");
    send("one").await;
    let events = a.until(|e| e.event == "execution:end").await;
    let seen: Vec<u64> = events.iter().filter_map(|e| e.id).collect();
    let last = *seen.last().expect("records with ids");
    drop(a);
    // While disconnected: two more turns.
    send("two").await;
    send("three").await;
    // Reconnect: the missed records, then live ones, each once, in order.
    let mut b = s.stream(&id, Some(last)).await;
    assert_eq!(b.next().await.expect("connected").event, "connected");
    let (_, meta) = s.get(&format!("/api/v1/sessions/{id}")).await;
    let head = meta["lastSeq"].as_u64().expect("lastSeq");
    let mut got = Vec::new();
    let mut replayed = Vec::new();
    while got.last().copied().unwrap_or(0) < head {
        let ev = b.next().await.expect("replayed event");
        if let Some(i) = ev.id {
            got.push(i);
        }
        replayed.push(ev);
    }
    assert_eq!(got, ((last + 1)..=head).collect::<Vec<_>>());
    send("four").await;
    let live = b.until(|e| e.event == "execution:end").await;
    // The replayed and live records are the store's messages, in order.
    let said: Vec<&str> = replayed
        .iter()
        .chain(&live)
        .filter(|e| e.event == "message")
        .filter_map(|e| e.data["kind"]["data"]["content"][0]["text"].as_str())
        .collect();
    assert_eq!(said, ["two", "two", "three", "three", "four", "four"]);
    let live_ids: Vec<u64> = live.iter().filter_map(|e| e.id).collect();
    assert_eq!(live_ids.first().copied(), Some(head + 1), "{live_ids:?}");
    assert!(
        live_ids.windows(2).all(|w| w[1] == w[0] + 1),
        "{live_ids:?}"
    );
    // ?last_event_id=0 replays the whole log; a bad header is a 400.
    let r = s
        .client
        .get(s.url(&format!("/api/v1/sessions/{id}/stream?last_event_id=0")))
        .send()
        .await
        .expect("request");
    let mut c = SseClient::from_response(r);
    c.next().await.expect("connected");
    let replay = c.next().await.expect("seq 1");
    assert_eq!(replay.id, Some(1));
    assert_eq!(replay.event, "session_created");
    let r = s
        .client
        .get(s.url(&format!("/api/v1/sessions/{id}/stream")))
        .header("Last-Event-ID", "abc")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 400);
}

#[tokio::test]
async fn amplifierd_compat_event_names() {
    let s = start(echo_plans()).await;
    let id = s.active().await;
    let r = s
        .client
        .get(s.url(&format!("/api/v1/sessions/{id}/stream?compat=amplifierd")))
        .send()
        .await
        .expect("request");
    let mut stream = SseClient::from_response(r);
    assert_eq!(stream.next().await.expect("connected").event, "connected");
    s.post(
        &format!("/api/v1/sessions/{id}/send-message"),
        json!({"content": "hi there"}),
    )
    .await;
    let events = stream
        .until(|e| e.event == "assistant_message_complete")
        .await;
    let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    for expected in ["user_message_saved", "assistant_message_start", "content"] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    for name in &names {
        assert!(
            !name.contains(':'),
            "weft name {name} leaked into compat mode"
        );
    }
    let last = events.last().expect("complete");
    assert_eq!(last.data["content"], "hi there");
    assert_eq!(last.data["role"], "assistant");
    let (status, _) = s
        .get(&format!("/api/v1/sessions/{id}/stream?compat=nope"))
        .await;
    assert_eq!(status, 422);
}

#[tokio::test]
async fn second_prompt_is_409_unless_enqueued() {
    let s = start(slow_plans(800)).await;
    let id = s.active().await;
    let path = format!("/api/v1/sessions/{id}/send-message");
    let (status, _) = s.post(&path, json!({"content": "first"})).await;
    assert_eq!(status, 202);
    let (status, body) = s.post(&path, json!({"content": "second"})).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .expect("detail")
            .contains("multitask")
    );
    // Lifecycle changes other than terminate wait for the turn.
    let (status, _) = s
        .post(&format!("/api/v1/sessions/{id}/complete"), json!({}))
        .await;
    assert_eq!(status, 409);
    let (status, body) = s
        .post(
            &format!("{path}?multitask=enqueue"),
            json!({"content": "second"}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "queued");
    assert_eq!(body["position"], 1);
    let (_, info) = s.get(&format!("/api/v1/sessions/{id}")).await;
    assert_eq!(info["running"], true);
    assert_eq!(info["queued"], 1);
    s.wait_idle(&id).await;
    let t: Vec<Value> = s
        .transcript(&id)
        .await
        .into_iter()
        .map(|m| m["content"].clone())
        .collect();
    assert_eq!(
        t,
        vec![
            json!("first"),
            json!("slow answer"),
            json!("second"),
            json!("second answer")
        ]
    );
    let (status, body) = s
        .post(
            &format!("{path}?multitask=sometimes"),
            json!({"content": "x"}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
}

#[tokio::test]
async fn interrupt_cancels_the_running_turn_and_runs_the_new_one() {
    let s = start(slow_plans(10_000)).await;
    let id = s.active().await;
    let path = format!("/api/v1/sessions/{id}/send-message");
    let started = Instant::now();
    assert_eq!(s.post(&path, json!({"content": "first"})).await.0, 202);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, body) = s
        .post(
            &format!("{path}?multitask=interrupt"),
            json!({"content": "instead"}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "interrupting");
    s.wait_idle(&id).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the slow turn was not cancelled"
    );
    let t: Vec<Value> = s
        .transcript(&id)
        .await
        .into_iter()
        .map(|m| m["content"].clone())
        .collect();
    assert_eq!(
        t,
        vec![json!("first"), json!("instead"), json!("second answer")]
    );
    assert_eq!(s.status_of(&id).await, "active");
}

#[tokio::test]
async fn terminate_cancels_a_running_turn() {
    let s = start(slow_plans(10_000)).await;
    let id = s.active().await;
    let mut stream = s.stream(&id, None).await;
    stream.next().await.expect("connected");
    assert_eq!(
        s.post(
            &format!("/api/v1/sessions/{id}/send-message"),
            json!({"content": "long"})
        )
        .await
        .0,
        202
    );
    stream.until(|e| e.event == "provider:request").await;
    let started = Instant::now();
    let (status, body) = s
        .post(&format!("/api/v1/sessions/{id}/terminate"), json!({}))
        .await;
    assert_eq!(status, 204, "{body}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(s.status_of(&id).await, "terminated");
    let events = stream.until(|e| e.event == "status").await;
    let end = events
        .iter()
        .find(|e| e.event == "execution:end")
        .expect("execution:end before the status change");
    assert_eq!(end.data["status"], "cancelled");
    // The user message was recorded; the session takes no more prompts.
    assert_eq!(s.transcript(&id).await[0]["content"], "long");
    let (status, _) = s
        .post(
            &format!("/api/v1/sessions/{id}/send-message"),
            json!({"content": "more"}),
        )
        .await;
    assert_eq!(status, 409);
}

#[tokio::test]
async fn execute_streams_the_turn_and_ends_with_done() {
    let s = start(echo_plans()).await;
    let id = s.active().await;
    let r = s
        .client
        .post(s.url(&format!("/api/v1/sessions/{id}/execute")))
        .json(&json!({"content": "streamed"}))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 200);
    let mut stream = SseClient::from_response(r);
    let events = stream.until(|e| e.event == "done").await;
    let done = events.last().expect("done");
    assert_eq!(done.data["status"], "completed");
    assert_eq!(done.data["result"], "streamed");
    assert!(events.iter().any(|e| e.event == "content_block:delta"));
    assert!(
        events
            .iter()
            .any(|e| e.event == "message" && e.id.is_some())
    );
    assert!(stream.next().await.is_none(), "the stream ends after done");
    // Not active: 409 before any stream.
    let created = s.create().await;
    let (status, _) = s
        .post(
            &format!("/api/v1/sessions/{created}/execute"),
            json!({"content": "x"}),
        )
        .await;
    assert_eq!(status, 409);
}
