//! End to end: encryption at rest with the real `weft` binary, on the fs,
//! sqlite, PostgreSQL, Redis and DynamoDB stores. With `WEFT_ENCRYPTION__KEY`
//! set, a distinctive word of the prompt, of a session's state and of
//! shared `app:`/`user:` state is nowhere in the stored bytes (files under
//! the home, the database's rows, Redis's append-only file, the DynamoDB
//! table's items); the
//! session reads back with the key, is refused with one clear sentence
//! without it or with a wrong one, and survives `weft keys rotate`.

mod support;

use std::path::Path;
use std::process::Output;

use support::*;
use weft_testkit::session_path;

/// The word that must never be stored in clear.
const SECRET: &str = "quokkaxylophone";

fn key(env: &Env) -> String {
    env.ok(&["keys", "generate"]).trim().to_string()
}

/// `weft store… args…` with `key` as the master key (None: no key).
fn weft(env: &Env, store: &[&str], key: Option<&str>, args: &[&str]) -> Output {
    let all: Vec<&str> = store.iter().chain(args).copied().collect();
    let mut c = env.command(&all);
    if let Some(k) = key {
        c.env("WEFT_ENCRYPTION__KEY", k);
    }
    c.output().expect("run weft")
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "weft failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn refused(out: Output) -> String {
    assert!(!out.status.success(), "weft should have failed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("wenc1"), "no ciphertext printed: {stdout}");
    String::from_utf8(out.stderr).expect("utf-8")
}

/// Whether any file under `dir` holds `word`.
fn files_hold(dir: &Path, word: &str) -> bool {
    walk(dir).iter().any(|p| {
        std::fs::read(p).is_ok_and(|b| b.windows(word.len()).any(|w| w == word.as_bytes()))
    })
}

/// Runs the whole scenario on the store `store` (extra global flags);
/// `stored` returns every stored byte as text.
fn scenario(env: &Env, store: &[&str], stored: &dyn Fn() -> String) {
    let key1 = key(env);
    let script = env.script("s.json", SCRIPT);
    let prompt = format!("tell me about the {SECRET} please");
    let out = ok(weft(
        env,
        store,
        Some(&key1),
        &[
            "run",
            "--provider",
            "scripted",
            "--script",
            script.to_str().expect("utf-8"),
            "--output",
            "json",
            &prompt,
        ],
    ));
    let id = serde_json::from_str::<serde_json::Value>(&out).expect("json")["session_id"]
        .as_str()
        .expect("an id")
        .to_string();
    for k in ["note", "app:note", "user:note"] {
        ok(weft(
            env,
            store,
            Some(&key1),
            &["state", "set", &id, k, SECRET],
        ));
    }
    let raw = stored();
    assert!(!raw.is_empty(), "the store holds something");
    assert!(!raw.contains(SECRET), "{SECRET} is stored in clear");
    assert!(
        !raw.contains("Hello from the script"),
        "the answer is stored in clear"
    );

    // Reads back with the key: transcript, last prompt, search.
    let show = ok(weft(
        env,
        store,
        Some(&key1),
        &["session", "show", &id, "--transcript"],
    ));
    assert!(
        show.contains(SECRET) && show.contains("Hello from the script"),
        "{show}"
    );
    let list = ok(weft(
        env,
        store,
        Some(&key1),
        &["session", "list", "--json"],
    ));
    assert!(list.contains(SECRET), "the last prompt is listed: {list}");
    let found = ok(weft(
        env,
        store,
        Some(&key1),
        &["session", "search", SECRET, "--json"],
    ));
    assert!(
        found.contains(&id),
        "search scans the encrypted store: {found}"
    );
    for k in ["note", "app:note", "user:note"] {
        let state = ok(weft(env, store, Some(&key1), &["state", "get", &id, k]));
        assert!(state.contains(SECRET), "{k}: {state}");
    }
    // Search is refused without the key (the index holds no plaintext to
    // find), rather than answering that nothing matches.
    let err = refused(weft(env, store, None, &["session", "search", SECRET]));
    assert!(
        err.contains("encrypted") && err.contains("WEFT_ENCRYPTION__KEY"),
        "{err}"
    );
    // Shared state is refused without the key too.
    let err = refused(weft(env, store, None, &["state", "get", &id, "app:note"]));
    assert!(err.contains("WEFT_ENCRYPTION__KEY"), "{err}");

    // Without the key, and with a wrong one: one clear error.
    let err = refused(weft(
        env,
        store,
        None,
        &["session", "show", &id, "--transcript"],
    ));
    assert!(
        err.contains("is encrypted") && err.contains("WEFT_ENCRYPTION__KEY"),
        "{err}"
    );
    let wrong = key(env);
    let err = refused(weft(
        env,
        store,
        Some(&wrong),
        &["session", "show", &id, "--transcript"],
    ));
    assert!(
        err.contains("master key") && err.contains("WEFT_ENCRYPTION__KEY"),
        "{err}"
    );

    // Rotation: the new key reads the session, the old one no longer does.
    let key2 = key(env);
    let file = env.file("new.key", &key2);
    let rotated = ok(weft(
        env,
        store,
        Some(&key1),
        &[
            "keys",
            "rotate",
            "--new-key-file",
            file.to_str().expect("utf-8"),
        ],
    ));
    // The session's data key and the shared-state key.
    assert!(rotated.contains("re-wrapped 2 data key"), "{rotated}");
    let show = ok(weft(
        env,
        store,
        Some(&key2),
        &["session", "show", &id, "--transcript"],
    ));
    assert!(show.contains(SECRET), "{show}");
    let state = ok(weft(
        env,
        store,
        Some(&key2),
        &["state", "get", &id, "user:note"],
    ));
    assert!(
        state.contains(SECRET),
        "shared state after rotation: {state}"
    );
    refused(weft(
        env,
        store,
        Some(&key1),
        &["session", "show", &id, "--transcript"],
    ));
    assert!(!stored().contains(SECRET), "still nothing in clear");
}

#[test]
fn fs_store_is_encrypted_at_rest() {
    let env = Env::new();
    let home = env.home.path().to_path_buf();
    scenario(&env, &[], &|| {
        assert!(
            !files_hold(&home, SECRET),
            "a file under the home holds {SECRET}"
        );
        walk(&home)
            .iter()
            .filter_map(|p| std::fs::read(p).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .collect()
    });
}

#[test]
fn sqlite_store_is_encrypted_at_rest() {
    let env = Env::new();
    let home = env.home.path().to_path_buf();
    scenario(&env, &["--store", "sqlite"], &|| {
        assert!(
            !files_hold(&home, SECRET),
            "a file under the home holds {SECRET}"
        );
        walk(&home)
            .iter()
            .filter_map(|p| std::fs::read(p).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .collect()
    });
}

#[cfg(feature = "postgres")]
#[test]
fn postgres_store_is_encrypted_at_rest() {
    let db = support::postgres::TempDatabase::create();
    let env = Env::new();
    let url = db.url();
    scenario(&env, &["--store", "postgres", "--store-url", &url], &|| {
        db.raw_text()
    });
}

#[cfg(feature = "redis")]
#[test]
fn redis_store_is_encrypted_at_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = weft_store::redis::local::LocalRedis::start(None, dir.path())
        .unwrap_or_else(|e| panic!("this test needs redis-server: {e}"));
    let env = Env::new();
    let url = server.url();
    let aof = dir.path().to_path_buf();
    scenario(&env, &["--store", "redis", "--store-url", &url], &|| {
        // With `appendfsync always` every write is in the append-only file.
        walk(&aof)
            .iter()
            .filter_map(|p| std::fs::read(p).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .collect()
    });
}

#[cfg(feature = "dynamodb")]
#[test]
fn dynamodb_store_is_encrypted_at_rest() {
    use weft_store::dynamodb::DynamoStore;
    use weft_store::dynamodb::local::LocalDynamo;
    let server = LocalDynamo::start()
        .unwrap_or_else(|e| panic!("this test needs the local DynamoDB server: {e}"));
    let env = Env::new();
    let url = server.url("encrypted");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    scenario(&env, &["--store", "dynamodb", "--store-url", &url], &|| {
        // Every item of the table, as the server holds it.
        runtime.block_on(async {
            let store = DynamoStore::open(&url).expect("open the table");
            let mut all = String::new();
            let mut start = None;
            loop {
                let page = store
                    .client()
                    .scan()
                    .table_name(store.table())
                    .set_exclusive_start_key(start)
                    .send()
                    .await
                    .expect("scan the table");
                for item in page.items() {
                    all.push_str(&format!("{item:?}\n"));
                }
                start = page.last_evaluated_key().cloned();
                if start.is_none() {
                    break all;
                }
            }
        })
    });
}

#[test]
fn a_malformed_key_is_one_clear_error() {
    let env = Env::new();
    let err = refused(weft(&env, &[], Some("not-a-key"), &["session", "list"]));
    assert!(
        err.contains("base64 of 32 bytes") && err.contains("weft keys generate"),
        "{err}"
    );
    assert!(
        !err.contains("not-a-key"),
        "the key is never printed: {err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_opens_the_store_with_the_same_key() {
    let env = Env::new();
    let k = key(&env);
    let script = env.script("s.json", SCRIPT);
    let prompt = format!("about the {SECRET}");
    let out = ok(weft(
        &env,
        &[],
        Some(&k),
        &[
            "run",
            "--script",
            script.to_str().expect("utf-8"),
            "--output",
            "json",
            &prompt,
        ],
    ));
    let id = serde_json::from_str::<serde_json::Value>(&out).expect("json")["session_id"]
        .as_str()
        .expect("an id")
        .to_string();
    let daemon = env
        .serve_with(&[("WEFT_ENCRYPTION__KEY", k.as_str())], &[])
        .await;
    let texts = format!("{:?}", daemon.transcript(&id).await);
    assert!(texts.contains(SECRET), "{texts}");
    drop(daemon);
    let keyless = env.serve(&[]).await;
    let (status, body) = keyless
        .get(&format!("{}/transcript", session_path(&id)))
        .await;
    assert!(status >= 400, "refused without the key: {status} {body}");
    let body = body.to_string();
    assert!(
        body.contains("is encrypted") && !body.contains("wenc1"),
        "{body}"
    );
}
