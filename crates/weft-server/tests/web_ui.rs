//! What the web UI needs of the daemon, in process: its embedded files at
//! `/` and `/ui/…` (types, ETag, strict CSP, outside the token check but
//! inside the Host check), full-text search, cancelling a running turn, and
//! the test fault that drops a stream once (off unless configured).

mod common;

use common::*;
use serde_json::json;
use weft_server::{ServerConfig, StaticPlanSource};

#[tokio::test]
async fn the_page_and_its_files_are_served_with_a_strict_policy() {
    let s = start(echo_plans()).await;
    for (path, kind) in [
        ("/", "text/html; charset=utf-8"),
        ("/ui/app.js", "text/javascript; charset=utf-8"),
        ("/ui/style.css", "text/css; charset=utf-8"),
    ] {
        let r = s.client.get(s.url(path)).send().await.expect("get");
        assert_eq!(r.status().as_u16(), 200, "{path}");
        let h = r.headers();
        assert_eq!(h["content-type"], kind, "{path}");
        assert!(
            h["content-security-policy"]
                .to_str()
                .expect("text")
                .starts_with("default-src 'self'")
        );
        assert_eq!(h["cache-control"], "no-cache");
        let etag = h["etag"].clone();
        let again = s
            .client
            .get(s.url(path))
            .header("if-none-match", etag)
            .send()
            .await
            .expect("get");
        assert_eq!(again.status().as_u16(), 304, "{path}");
    }
    let r = s
        .client
        .get(s.url("/ui/nope.js"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status().as_u16(), 404);
    // The Host check covers the page too.
    let r = s
        .client
        .get(s.url("/"))
        .header("host", "rebound.attacker.example")
        .send()
        .await
        .expect("get");
    assert_eq!(r.status().as_u16(), 421);
}

#[tokio::test]
async fn with_a_token_the_page_loads_and_the_api_still_needs_it() {
    let config = ServerConfig {
        token: Some("sekrit".into()),
        ..ServerConfig::default()
    };
    let s = start_with(echo_plans(), config).await;
    let page = s.client.get(s.url("/")).send().await.expect("get");
    assert_eq!(page.status().as_u16(), 200);
    let api = s
        .client
        .get(s.url("/api/v1/sessions/"))
        .send()
        .await
        .expect("get");
    assert_eq!(api.status().as_u16(), 401);
}

#[tokio::test]
async fn search_finds_words_of_messages() {
    let s = start(echo_plans()).await;
    let id = s.active().await;
    let (status, b) = s
        .post(
            &format!("{}/messages", base(&id)),
            json!({"role": "user", "content": "the zebra crossing is wide"}),
        )
        .await;
    assert_eq!(status, 201, "{b}");
    let (status, hits) = s.get("/api/v1/search?q=ZEBRA%20wide").await;
    assert_eq!(status, 200, "{hits}");
    let hits = hits.as_array().expect("a list");
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0]["sessionId"], id.as_str());
    assert_eq!(hits[0]["role"], "user");
    assert!(hits[0]["snippet"].as_str().expect("text").contains("zebra"));
    let (status, none) = s.get("/api/v1/search?q=giraffe").await;
    assert_eq!((status, none), (200, json!([])));
    for bad in ["/api/v1/search?q=%20", "/api/v1/search?q=x&limit=0"] {
        let (status, b) = s.get(bad).await;
        assert_eq!(status, 422, "{bad}: {b}");
    }
}

#[tokio::test]
async fn cancel_stops_the_running_turn_only() {
    let s = start(StaticPlanSource::new(
        "base",
        scripted(json!([{"text": "one two three four five six", "delta_delay_ms": 60000}])),
    ))
    .await;
    let id = s.active().await;
    let (status, b) = s.post(&format!("{}/cancel", base(&id)), json!({})).await;
    assert_eq!(
        (status, b["cancelled"].clone()),
        (200, json!(0)),
        "idle: {b}"
    );
    let mut stream = s.stream(&id, None).await;
    let (status, b) = s
        .post(
            &format!("{}/send-message", base(&id)),
            json!({"content": "go"}),
        )
        .await;
    assert_eq!(status, 202, "{b}");
    stream.until(|e| e.event == "content_block:start").await;
    let (status, b) = s
        .post(&format!("{}/cancel?branch=main", base(&id)), json!({}))
        .await;
    assert_eq!((status, b["cancelled"].clone()), (200, json!(1)), "{b}");
    let end = stream.until(|e| e.event == "execution:end").await;
    let last = end.last().expect("execution:end");
    assert_eq!(last.data["status"], "cancelled", "{:?}", last.data);
    s.wait_idle(&id).await;
    assert_eq!(s.status_of(&id).await, "active");
    let (status, b) = s
        .post(&format!("{}/cancel?branch=nope", base(&id)), json!({}))
        .await;
    assert_eq!(status, 422, "{b}");
}

#[tokio::test]
async fn the_test_fault_drops_one_stream_once() {
    let config = ServerConfig {
        test_drop_stream_after: Some(2),
        ..ServerConfig::default()
    };
    let s = start_with(echo_plans(), config).await;
    let id = s.active().await;
    // connected, then the status record of `active`: the stream ends there.
    let mut first = s.stream(&id, Some(0)).await;
    let mut got = Vec::new();
    while let Some(event) = first.next().await {
        got.push(event.event);
    }
    assert_eq!(got, ["connected", "session_created"], "{got:?}");
    // The next stream is not dropped.
    let mut second = s.stream(&id, Some(0)).await;
    let events = second.until(|e| e.event == "status").await;
    assert!(events.len() > 2, "{events:?}");
}
