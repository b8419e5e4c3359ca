//! End to end: what `weft serve` refuses. Requests forged by a web page
//! (cross-origin, DNS rebinding), file tools reaching outside the project
//! or into weft's home, and, on a `--mount-plan` daemon, any other
//! profile or agent. The helpers are in `support/mod.rs`.

mod support;

use serde_json::json;
use support::*;

/// The report's S3 reproduction (issue 9, finding 1): a web page's
/// no-cors POST (forged `Origin`, no Content-Type) to `/run` with a plan
/// that writes a file, `cleanup` from a page, and a DNS-rebound `Host`
/// are refused and change nothing; the daemon's own origin works, and
/// `--public-host` lets a named host in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_attacks_are_refused_and_same_origin_works() {
    let env = Env::new();
    let plan = env.file(
        "plan.json",
        r#"{"session": {"orchestrator": "loop-basic", "context": "context-simple"},
 "providers": [{"module": "provider-scripted", "config": {"responses": [
   {"tool_calls": [{"name": "write_file", "arguments": {"path": "pwned.txt", "content": "from a web page"}}]},
   {"text": "done"}]}}],
 "tools": ["tool-filesystem"]}"#,
    );
    let d = env
        .serve(&[
            "--mount-plan",
            plan.to_str().expect("path"),
            "--public-host",
            "weft.test",
        ])
        .await;
    let pwned = env.project.path().join("pwned.txt");
    let port = d.base.rsplit(':').next().expect("port").to_string();
    let raw = |method: reqwest::Method, path: &str, headers: &[(&str, String)], body: &str| {
        let mut r = d.req(method, path).body(body.to_string());
        for (name, value) in headers {
            r = r.header(*name, value.as_str());
        }
        r
    };
    let evil = ("origin", "https://evil.example".to_string());
    let json_type = ("content-type", "application/json".to_string());
    let id = d.create().await;

    // fetch(…/run, {method: "POST", mode: "no-cors", body: new Blob([…])}).
    for headers in [vec![evil.clone()], vec![evil.clone(), json_type.clone()]] {
        let (status, b) = split(
            raw(
                reqwest::Method::POST,
                "/run",
                &headers,
                r#"{"message": "hi"}"#,
            )
            .send()
            .await
            .expect("POST"),
        )
        .await;
        assert_eq!(status, 403, "{headers:?}: {b}");
        assert!(detail(&b).contains("--allow-origin"), "{b}");
    }
    // Without an Origin but not sent as JSON either.
    let (status, b) = split(
        raw(reqwest::Method::POST, "/run", &[], r#"{"message": "hi"}"#)
            .send()
            .await
            .expect("POST"),
    )
    .await;
    assert_eq!(status, 415, "{b}");
    assert!(!pwned.exists(), "a refused /run wrote a file");
    let (status, b) = split(
        raw(
            reqwest::Method::POST,
            "/api/v1/sessions/cleanup",
            std::slice::from_ref(&evil),
            r#"{"olderThanDays": 0}"#,
        )
        .send()
        .await
        .expect("POST"),
    )
    .await;
    assert_eq!(status, 403, "{b}");
    let (status, _) = d.get(&format!("/api/v1/sessions/{id}")).await;
    assert_eq!(status, 200, "the refused cleanup removed a session");

    // DNS rebinding: a foreign Host is refused, reads included.
    for method in [reqwest::Method::GET, reqwest::Method::POST] {
        let (status, b) = split(
            raw(
                method.clone(),
                "/api/v1/sessions/",
                &[
                    ("host", format!("rebound.attacker.example:{port}")),
                    json_type.clone(),
                ],
                if method == reqwest::Method::GET {
                    ""
                } else {
                    "{}"
                },
            )
            .send()
            .await
            .expect("request"),
        )
        .await;
        assert_eq!(status, 421, "{method}: {b}");
        assert!(detail(&b).contains("--public-host"), "{b}");
    }
    // The configured public name is served.
    let (status, _) = split(
        raw(
            reqwest::Method::GET,
            "/health",
            &[("host", format!("weft.test:{port}"))],
            "",
        )
        .send()
        .await
        .expect("GET"),
    )
    .await;
    assert_eq!(status, 200);

    // The daemon's own origin (its web UI) works.
    let (status, b) = split(
        raw(
            reqwest::Method::POST,
            "/run",
            &[
                ("origin", format!("http://127.0.0.1:{port}")),
                json_type.clone(),
            ],
            r#"{"message": "hi"}"#,
        )
        .send()
        .await
        .expect("POST"),
    )
    .await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["result"], "done");
    assert_eq!(
        std::fs::read_to_string(&pwned).ok().as_deref(),
        Some("from a web page")
    );
}

/// Issue 9 finding 1: under `weft serve` (no `--approve`) the file tools
/// read inside the project and `[server] read_roots` only; weft's home is
/// refused outright.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_file_tools_stay_in_the_project() {
    let env = Env::new();
    let shared = tempfile::tempdir().expect("shared");
    std::fs::write(shared.path().join("shared.txt"), "SHARED-TEXT\n").expect("write");
    std::fs::write(
        env.home.path().join("config.toml"),
        format!(
            "[server]\nread_roots = [{:?}]\n# HOME-SECRET\n",
            shared.path().display().to_string()
        ),
    )
    .expect("config");
    let outside = tempfile::tempdir().expect("outside");
    std::fs::write(outside.path().join("private.txt"), "OUTSIDE-SECRET\n").expect("write");
    env.file("inside.txt", "INSIDE-TEXT\n");
    let plan = env.file(
        "reader.json",
        &json!({
            "session": {"orchestrator": "loop-basic", "context": "context-simple"},
            "providers": [{"module": "provider-scripted", "config": {"responses": [
                {"tool_calls": [
                    {"name": "read_file", "arguments": {"path": outside.path().join("private.txt")}},
                    {"name": "read_file", "arguments": {"path": env.home.path().join("config.toml")}},
                    {"name": "read_file", "arguments": {"path": "inside.txt"}},
                    {"name": "read_file", "arguments": {"path": shared.path().join("shared.txt")}}
                ]},
                {"text": "done"}
            ]}}],
            "tools": ["tool-filesystem"]
        })
        .to_string(),
    );
    let d = env
        .serve(&["--mount-plan", plan.to_str().expect("path")])
        .await;
    let (status, b) = d.post("/run", json!({"message": "go"})).await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["result"], "done");
    let sid = b["session_id"].as_str().expect("session_id").to_string();
    let (status, t) = d.get(&format!("/api/v1/sessions/{sid}/transcript")).await;
    assert_eq!(status, 200, "{t}");
    let text = t.to_string();
    assert!(text.contains("INSIDE-TEXT"), "{text}");
    assert!(text.contains("SHARED-TEXT"), "{text}");
    assert!(text.contains("approval was denied"), "{text}");
    assert!(text.contains("inside weft's home"), "{text}");
    assert!(!text.contains("OUTSIDE-SECRET"), "{text}");
    assert!(!text.contains("HOME-SECRET"), "{text}");
}

/// Issue 9, finding 20: `weft serve --mount-plan plan.json` runs that plan
/// as profile `plan` (the file's stem) and refuses any other profileName.
/// (What a one-plan daemon refuses, agents included, is tested in process
/// by weft-server's `tests/contract.rs`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mount_plan_daemon_refuses_other_profiles_and_agents() {
    let env = Env::new();
    let plan = env.file("plan.json", ECHO_PLAN);
    let d = env
        .serve(&["--mount-plan", plan.to_str().expect("path")])
        .await;
    let (status, b) = d
        .post(
            "/api/v1/sessions/",
            json!({"profileName": "../../etc/passwd"}),
        )
        .await;
    assert_eq!(status, 422, "{b}");
    assert_eq!(
        detail(&b),
        "profileName: this daemon runs one mount plan (plan); leave out profileName or pass plan"
    );
    let (status, b) = d
        .post("/api/v1/sessions/", json!({"profileName": "plan"}))
        .await;
    assert_eq!(status, 201, "{b}");
    assert_eq!(b["profileName"], "plan");
}
