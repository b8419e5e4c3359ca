//! The daemon's perimeter, in process: web pages cannot drive it (forged
//! `Origin`, `Sec-Fetch-Site: cross-site`, bodies not sent as JSON, a
//! rebound `Host` are refused and change nothing), same-origin and
//! allow-listed clients work (the latter with CORS headers), array bodies
//! are refused, `Last-Event-ID` beyond the head is a 400, and slow clients
//! and connection floods are bounded (issue 9, findings 1, 9, 10, 15).

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weft_server::{ServerConfig, StaticPlanSource};

const EVIL: &str = "https://evil.example";

fn echo_plans() -> StaticPlanSource {
    StaticPlanSource::new("base", echo())
}

/// The port the server listens on.
fn port(s: &Server) -> u16 {
    s.base
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port in base URL")
}

/// How many sessions the store lists (asked the legitimate way).
async fn session_count(s: &Server) -> usize {
    let (status, body) = s.get("/api/v1/sessions/").await;
    assert_eq!(status, 200, "{body}");
    body.as_array().map(Vec::len).expect("a list")
}

/// POSTs `body` as raw bytes with `headers` (no Content-Type unless given).
async fn raw_post(s: &Server, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, Value) {
    let mut r = s.client.post(s.url(path)).body(body.to_string());
    for (name, value) in headers {
        r = r.header(*name, *value);
    }
    split(r.send().await.expect("request")).await
}

#[tokio::test]
async fn a_forged_origin_cannot_change_anything() {
    let s = start(echo_plans()).await;
    let id = s.active().await;
    let before_sessions = session_count(&s).await;
    let before_transcript = s.transcript(&id).await;
    let json = ("content-type", "application/json");
    let evil = ("origin", EVIL);
    for (path, body) in [
        ("/api/v1/sessions/", "{}".to_string()),
        ("/run", r#"{"message": "hi"}"#.to_string()),
        (
            "/run",
            format!(r#"{{"message": "hi", "session_id": "{id}"}}"#),
        ),
        (
            "/api/v1/sessions/cleanup",
            r#"{"olderThanDays": 0}"#.to_string(),
        ),
        (
            &format!("/api/v1/sessions/{id}/messages"),
            r#"{"content": "injected"}"#.to_string(),
        ),
    ] {
        // Both as a page's no-cors fetch (no Content-Type) and with one.
        for headers in [vec![evil], vec![evil, json]] {
            let (status, b) = raw_post(&s, path, &headers, &body).await;
            assert_eq!(status, 403, "{path} {headers:?}: {b}");
            assert!(detail(&b).contains("--allow-origin"), "{b}");
        }
    }
    let r = s
        .client
        .delete(s.url(&format!("/api/v1/sessions/{id}")))
        .header("origin", "null")
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status().as_u16(), 403);
    assert_eq!(session_count(&s).await, before_sessions);
    assert_eq!(s.transcript(&id).await, before_transcript);
    assert_eq!(s.status_of(&id).await, "active");
}

#[tokio::test]
async fn a_rebound_host_is_refused_on_reads_and_writes() {
    let s = start(echo_plans()).await;
    let id = s.create().await;
    let before = session_count(&s).await;
    let host = format!("rebound.attacker.example:{}", port(&s));
    for path in [
        "/api/v1/sessions/".to_string(),
        format!("/api/v1/sessions/{id}/transcript"),
        "/health".to_string(),
    ] {
        let r = s
            .client
            .get(s.url(&path))
            .header("host", &host)
            .send()
            .await
            .expect("get");
        let (status, b) = split(r).await;
        assert_eq!(status, 421, "{path}: {b}");
        assert!(
            detail(&b).contains("--public-host rebound.attacker.example"),
            "{b}"
        );
    }
    let (status, b) = raw_post(
        &s,
        "/api/v1/sessions/",
        &[("host", &host), ("content-type", "application/json")],
        "{}",
    )
    .await;
    assert_eq!(status, 421, "{b}");
    assert_eq!(session_count(&s).await, before);
}

#[tokio::test]
async fn a_configured_public_host_is_served() {
    let config = ServerConfig {
        public_hosts: vec!["weft.internal.example".into()],
        ..Default::default()
    };
    let s = start_with(echo_plans(), config).await;
    let r = s
        .client
        .get(s.url("/health"))
        .header("host", format!("weft.internal.example:{}", port(&s)))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status().as_u16(), 200);
}

#[tokio::test]
async fn same_origin_requests_work() {
    let s = start(echo_plans()).await;
    let port = port(&s);
    let own = format!("http://127.0.0.1:{port}");
    let (status, b) = raw_post(
        &s,
        "/run",
        &[
            ("origin", &own),
            ("content-type", "application/json; charset=utf-8"),
            ("sec-fetch-site", "same-origin"),
        ],
        r#"{"message": "from the UI"}"#,
    )
    .await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["result"], "from the UI");
    // Addressed as localhost, the own origin is http://localhost:PORT.
    let (status, b) = raw_post(
        &s,
        "/api/v1/sessions/",
        &[
            ("host", &format!("localhost:{port}")),
            ("origin", &format!("http://localhost:{port}")),
            ("content-type", "application/json"),
        ],
        "{}",
    )
    .await;
    assert_eq!(status, 201, "{b}");
    // …but not from a page on another port of the same host.
    let (status, _) = raw_post(
        &s,
        "/api/v1/sessions/",
        &[
            (
                "origin",
                &format!("http://127.0.0.1:{}", port.wrapping_add(1)),
            ),
            ("content-type", "application/json"),
        ],
        "{}",
    )
    .await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn cross_site_fetch_metadata_is_refused() {
    let s = start(echo_plans()).await;
    let before = session_count(&s).await;
    for site in ["cross-site", "same-site"] {
        let (status, b) = raw_post(
            &s,
            "/api/v1/sessions/",
            &[
                ("sec-fetch-site", site),
                ("content-type", "application/json"),
            ],
            "{}",
        )
        .await;
        assert_eq!(status, 403, "{site}: {b}");
    }
    assert_eq!(session_count(&s).await, before);
}

#[tokio::test]
async fn an_allowed_origin_works_and_gets_cors_headers() {
    let app = "https://app.example";
    let config = ServerConfig {
        allowed_origins: vec![format!("{app}/")],
        ..Default::default()
    };
    let s = start_with(echo_plans(), config).await;
    let r = s
        .client
        .post(s.url("/api/v1/sessions/"))
        .header("origin", app)
        .json(&json!({}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 201);
    assert_eq!(
        r.headers()
            .get("access-control-allow-origin")
            .map(|v| v.as_bytes()),
        Some(app.as_bytes())
    );
    assert!(r.headers().get("vary").is_some());
    // Its preflight is answered.
    let r = s
        .client
        .request(reqwest::Method::OPTIONS, s.url("/run"))
        .header("origin", app)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .expect("preflight");
    assert!(r.status().is_success(), "{}", r.status());
    let h = r.headers();
    assert_eq!(
        h.get("access-control-allow-origin").map(|v| v.as_bytes()),
        Some(app.as_bytes())
    );
    let allowed = h
        .get("access-control-allow-headers")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(allowed.contains("content-type"), "{allowed}");
    // Other origins: no CORS headers on reads, nor on preflights.
    let r = s
        .client
        .get(s.url("/api/v1/sessions/"))
        .header("origin", EVIL)
        .send()
        .await
        .expect("get");
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers().get("access-control-allow-origin").is_none());
    let r = s
        .client
        .request(reqwest::Method::OPTIONS, s.url("/run"))
        .header("origin", EVIL)
        .header("access-control-request-method", "POST")
        .send()
        .await
        .expect("preflight");
    assert!(!r.status().is_success());
    assert!(r.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn bodies_must_be_sent_as_json() {
    let s = start(echo_plans()).await;
    let id = s.active().await;
    let before_sessions = session_count(&s).await;
    let before = s.transcript(&id).await;
    let messages = format!("/api/v1/sessions/{id}/messages");
    for (path, body) in [
        ("/api/v1/sessions/", "{}"),
        ("/run", r#"{"message": "hi"}"#),
        (messages.as_str(), r#"{"content": "x"}"#),
    ] {
        for headers in [vec![], vec![("content-type", "text/plain")]] {
            let (status, b) = raw_post(&s, path, &headers, body).await;
            assert_eq!(status, 415, "{path} {headers:?}: {b}");
            assert!(detail(&b).contains("Content-Type: application/json"), "{b}");
        }
    }
    assert_eq!(session_count(&s).await, before_sessions);
    assert_eq!(s.transcript(&id).await, before);
    // An empty body needs no content type.
    let created = s.create().await;
    let (status, b) = raw_post(&s, &format!("/api/v1/sessions/{created}/start"), &[], "").await;
    assert_eq!(status, 204, "{b}");
}

#[tokio::test]
async fn array_bodies_are_refused() {
    let s = start(echo_plans()).await;
    let id = s.active().await;
    let before_sessions = session_count(&s).await;
    let before = s.transcript(&id).await;
    let (status, b) = s
        .post(
            &format!("/api/v1/sessions/{id}/messages"),
            json!(["text", "assistant"]),
        )
        .await;
    assert_eq!(status, 422, "{b}");
    assert_eq!(detail(&b), "the request body must be a JSON object");
    let (status, b) = s.post("/api/v1/sessions/", json!([])).await;
    assert_eq!(status, 422, "{b}");
    let (status, b) = s.post("/run", json!([null, "p"])).await;
    assert_eq!(status, 422, "{b}");
    let (status, _) = s.post("/run", json!("a string")).await;
    assert_eq!(status, 422);
    assert_eq!(session_count(&s).await, before_sessions);
    assert_eq!(s.transcript(&id).await, before);
}

#[tokio::test]
async fn last_event_id_beyond_the_head_is_a_400() {
    let s = start(echo_plans()).await;
    let id = s.active().await;
    let (status, _) = s
        .post(
            &format!("/api/v1/sessions/{id}/messages"),
            json!({"content": "one"}),
        )
        .await;
    assert_eq!(status, 201);
    let url = s.url(&format!("/api/v1/sessions/{id}/stream"));
    let r = s
        .client
        .get(&url)
        .header("Last-Event-ID", "1000")
        .send()
        .await
        .expect("stream");
    let (status, b) = split(r).await;
    assert_eq!(status, 400, "{b}");
    assert!(
        detail(&b).starts_with("Last-Event-ID 1000 is beyond the session's last event"),
        "{b}"
    );
    assert!(detail(&b).ends_with("reconnect without it"), "{b}");
    let (status, _) = s
        .get(&format!("/api/v1/sessions/{id}/stream?last_event_id=1000"))
        .await;
    assert_eq!(status, 400);
    // At the head it follows the session.
    let head = s
        .transcript(&id)
        .await
        .last()
        .and_then(|m| m["seq"].as_u64());
    assert!(head.is_some(), "the transcript carries seqs");
    let mut stream = s.stream(&id, head).await;
    s.post(
        &format!("/api/v1/sessions/{id}/messages"),
        json!({"content": "two"}),
    )
    .await;
    let events = stream
        .until(|e| e.event == "message" && e.data.to_string().contains("\"two\""))
        .await;
    assert!(!events.is_empty());
}

/// Reads until the peer closes the connection (or answers 408),
/// sending `drip` every 100 ms meanwhile; true if that happened within
/// `cap` (generous: the server's timeouts are far shorter).
async fn closed_while_dripping(conn: &mut TcpStream, drip: &[u8], cap: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + cap;
    let mut buf = [0u8; 1024];
    while tokio::time::Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(100), conn.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(n)) => {
                let text = String::from_utf8_lossy(&buf[..n]);
                return text.starts_with("HTTP/1.1 408");
            }
            Err(_) => {
                if conn.write_all(drip).await.is_err() {
                    return true;
                }
            }
        }
    }
    false
}

#[tokio::test]
async fn slow_headers_and_slow_bodies_are_cut_off() {
    let config = ServerConfig {
        header_timeout: Duration::from_millis(400),
        body_timeout: Duration::from_millis(400),
        ..Default::default()
    };
    let s = start_with(echo_plans(), config).await;
    let addr = s.base.trim_start_matches("http://").to_string();
    // Slowloris: one header line every 100 ms, forever.
    let mut conn = TcpStream::connect(&addr).await.expect("connect");
    conn.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .expect("write");
    assert!(
        closed_while_dripping(&mut conn, b"X-Slow: 1\r\n", Duration::from_secs(20)).await,
        "the server kept a connection whose headers never ended"
    );
    // A /run body trickling in one byte every 100 ms.
    let mut conn = TcpStream::connect(&addr).await.expect("connect");
    conn.write_all(
        b"POST /run HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{",
    )
    .await
    .expect("write");
    assert!(
        closed_while_dripping(&mut conn, b" ", Duration::from_secs(20)).await,
        "the server kept waiting for a /run body that never ended"
    );
    // The daemon is still there.
    let (status, _) = s.get("/health").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn connections_over_the_cap_wait_for_a_free_slot() {
    let config = ServerConfig {
        max_connections: 2,
        ..Default::default()
    };
    let s = start_with(echo_plans(), config).await;
    let addr = s.base.trim_start_matches("http://").to_string();
    // Two idle connections take both slots.
    let first = TcpStream::connect(&addr).await.expect("connect");
    let second = TcpStream::connect(&addr).await.expect("connect");
    let request = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    // Make sure both are being served (a request on the second answers).
    let mut second = second;
    second
        .write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), second.read(&mut buf))
        .await
        .expect("an answer on a served connection")
        .expect("read");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // A third is accepted by the kernel but not served…
    let mut third = TcpStream::connect(&addr).await.expect("connect");
    third.write_all(request).await.expect("write");
    let early = tokio::time::timeout(Duration::from_millis(500), third.read(&mut buf)).await;
    assert!(
        early.is_err(),
        "a connection over the cap was served: {early:?}"
    );
    // …until one closes.
    drop(first);
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), third.read_to_end(&mut answer))
        .await
        .expect("the waiting connection is served once a slot is free")
        .expect("read");
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    drop(second);
    let (status, _) = s.get("/health").await;
    assert_eq!(status, 200);
}

/// Sends `request` on a fresh connection and returns the status line.
async fn raw_status(s: &Server, request: &str) -> String {
    let addr = s.base.trim_start_matches("http://").to_string();
    let mut conn = TcpStream::connect(&addr).await.expect("connect");
    conn.write_all(request.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut answer))
        .await
        .expect("an answer")
        .expect("read");
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn a_missing_host_or_a_foreign_absolute_target_is_refused() {
    let s = start(echo_plans()).await;
    let line = raw_status(&s, "GET /health HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    assert!(line.starts_with("HTTP/1.1 421"), "{line}");
    let line = raw_status(&s, "GET /health HTTP/1.0\r\n\r\n").await;
    assert!(line.contains(" 421 "), "{line}");
    let line = raw_status(
        &s,
        "GET http://rebound.attacker.example/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(line.starts_with("HTTP/1.1 421"), "{line}");
    let line = raw_status(
        &s,
        "GET /health HTTP/1.1\r\nHost: [::1]\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
}
