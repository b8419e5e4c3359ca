//! End to end on PostgreSQL: `weft --store postgres --store-url … run`
//! stores a session that `weft … session list` (another process) shows.
//! Runs in a fresh database on the server of `WEFT_TEST_POSTGRES_URL`
//! (default `postgres://postgres@127.0.0.1:5432/postgres`), created for
//! the test and dropped after it; an unreachable server fails the test.
#![cfg(feature = "postgres")]

mod support;

use serde_json::Value;
use support::postgres::TempDatabase;
use support::*;

#[test]
fn run_then_list_on_postgres() {
    let db = TempDatabase::create();
    let env = Env::new();
    let url = db.url();
    let script = env.script("s.json", SCRIPT);
    let out = env.ok(&[
        "--store",
        "postgres",
        "--store-url",
        &url,
        "run",
        "--provider",
        "scripted",
        "--script",
        script.to_str().expect("utf-8"),
        "hi",
    ]);
    assert!(out.contains("Hello from the script"), "{out}");
    let list: Value = env.json(&[
        "--store",
        "postgres",
        "--store-url",
        &url,
        "session",
        "list",
        "--json",
    ]);
    let sessions = list.as_array().expect("a list");
    assert_eq!(sessions.len(), 1, "{list}");
    // Nothing went to the fs store of the home.
    assert!(
        !env.home.path().join("projects").exists(),
        "the session is in PostgreSQL only"
    );
    // The environment variables choose the same store.
    let listed = env
        .command(&["session", "list", "--json"])
        .env("WEFT_STORE__KIND", "postgres")
        .env("WEFT_STORE__URL", &url)
        .output()
        .expect("run weft");
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let again: Value = serde_json::from_slice(&listed.stdout).expect("json");
    assert_eq!(again, list);
}

#[test]
fn postgres_without_a_url_says_what_to_pass() {
    let env = Env::new();
    let err = env.fails(&["--store", "postgres", "session", "list"]);
    assert!(err.contains("--store-url"), "{err}");
}
