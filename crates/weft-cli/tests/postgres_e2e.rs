//! End to end on PostgreSQL: `weft --store postgres --store-url … run`
//! stores a session that `weft … session list` (another process) shows.
//! Runs in a fresh database on the server of `WEFT_TEST_POSTGRES_URL`
//! (default `postgres://postgres@127.0.0.1:5432/postgres`), created for
//! the test and dropped after it; an unreachable server fails the test.
#![cfg(feature = "postgres")]

mod support;

use serde_json::Value;
use support::*;

fn admin_url() -> String {
    std::env::var("WEFT_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// `url` pointing at database `db` instead.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let authority_start = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_end = base[authority_start..]
        .find('/')
        .map(|i| i + authority_start)
        .unwrap_or(base.len());
    format!("{}/{db}{query}", &base[..host_end])
}

/// A database that exists for the test's lifetime.
struct TempDatabase {
    name: String,
    rt: tokio::runtime::Runtime,
    client: tokio_postgres::Client,
}

impl TempDatabase {
    fn create() -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let url = admin_url();
        let client = rt.block_on(async {
            let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "this test needs a PostgreSQL server at {} ({e}): start one \
                         (`pg_ctlcluster 15 main start` or `service postgresql start`), or set \
                         WEFT_TEST_POSTGRES_URL",
                        weft_store::redact_url(&url)
                    )
                });
            tokio::spawn(conn);
            client
        });
        let name = format!("weft_e2e_{}", std::process::id());
        rt.block_on(async {
            // Left over by a killed run with the same pid, if any.
            client
                .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await
                .expect("drop a leftover test database");
            client
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .await
                .expect("create the test database");
        });
        Self { name, rt, client }
    }

    fn url(&self) -> String {
        with_database(&admin_url(), &self.name)
    }
}

impl Drop for TempDatabase {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        if let Err(e) = self.rt.block_on(self.client.batch_execute(&sql)) {
            eprintln!("cannot drop the test database {}: {e}", self.name);
        }
    }
}

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
