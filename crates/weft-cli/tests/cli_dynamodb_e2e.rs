//! End to end: `weft run` and `weft session list` on the dynamodb store,
//! chosen through agentkernel's variables (`AK_SESSION__TYPE=dynamodb`,
//! `AK_SESSION__DYNAMODB__TABLE_NAME`, with the endpoint and region in the
//! standard `AWS_ENDPOINT_URL` / `AWS_REGION`) and through `--store
//! dynamodb --store-url`, against the local DynamoDB-compatible server
//! (moto, `scripts/dynamodb-local install`) this test starts on a free
//! loopback port. The session must land in that table (checked through the
//! store itself) and nowhere under the weft home. A machine without the
//! moto venv fails this test, saying how to install it.
#![cfg(feature = "dynamodb")]

mod support;

use serde_json::Value;
use support::*;
use weft_core::store::{ListQuery, Store};
use weft_store::dynamodb::DynamoStore;
use weft_store::dynamodb::local::LocalDynamo;

const TABLE: &str = "cli-e2e-sessions";

fn ak(env: &Env, server: &LocalDynamo, args: &[&str]) -> std::process::Output {
    env.command(args)
        .env("AK_SESSION__TYPE", "dynamodb")
        .env("AK_SESSION__DYNAMODB__TABLE_NAME", TABLE)
        .env("AWS_ENDPOINT_URL", server.endpoint())
        .env("AWS_REGION", "us-east-1")
        .env_remove("AWS_ENDPOINT_URL_DYNAMODB")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN")
        .output()
        .expect("run weft")
}

#[test]
fn agentkernel_variables_store_the_session_in_dynamodb() {
    let server = LocalDynamo::start()
        .unwrap_or_else(|e| panic!("this test needs the local DynamoDB server: {e}"));
    let env = Env::new();

    // Without create=true the missing table is an error naming it.
    let out = ak(&env, &server, &["session", "list", "--json"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(TABLE) && stderr.contains("create=true"),
        "{stderr}"
    );

    // The flags create it.
    let url = server.url(TABLE);
    let created: Value = env.json(&[
        "session",
        "list",
        "--json",
        "--store",
        "dynamodb",
        "--store-url",
        &url,
    ]);
    assert_eq!(created.as_array().map(Vec::len), Some(0), "{created}");

    let script = env.script("s.json", SCRIPT);
    let out = ak(
        &env,
        &server,
        &[
            "run",
            "--provider",
            "scripted",
            "--script",
            script.to_str().unwrap(),
            "hi",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "weft run failed: {stderr}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Hello from the script"),
        "{stderr}"
    );

    // The session is in the table…
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let store = DynamoStore::open(&format!(
        "dynamodb://127.0.0.1:{}/{TABLE}?region=us-east-1",
        server.port()
    ))
    .expect("open");
    let (sessions, locks) = rt.block_on(async {
        let page = store.list(&ListQuery::default()).await.expect("list");
        let id = page
            .sessions
            .first()
            .map(|m| m.id.clone())
            .expect("one session");
        let locks = store.turn_locks(&id).await.expect("locks");
        (page.sessions, locks)
    });
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert!(
        sessions[0].last_seq >= 3,
        "created, the prompt and the reply"
    );
    assert!(
        locks.is_empty(),
        "the turn lock was released before weft exited: {locks:?}"
    );
    let id = sessions[0].id.to_string();
    // …and not under the weft home.
    assert!(
        !walk(env.home.path())
            .iter()
            .any(|p| p.ends_with("log.jsonl")),
        "nothing written to the fs store"
    );

    // `weft session list` through the same variables finds it; the fs
    // store of the same home does not.
    let out = ak(&env, &server, &["session", "list", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: Value = serde_json::from_slice(&out.stdout).expect("json");
    let listed: Vec<&str> = list
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|s| s["id"].as_str())
        .collect();
    assert_eq!(listed, [id.as_str()]);
    let fs: Value = env.json(&["session", "list", "--json"]);
    assert_eq!(fs.as_array().map(Vec::len), Some(0), "{fs}");
}
