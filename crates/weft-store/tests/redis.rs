//! The redis backend against a real `redis-server`: the whole Store
//! conformance suite, plus races on one session and on shared state,
//! durability, TTL, credential scrubbing and interrupted turn locks.
//!
//! The test binary starts its own `redis-server` (AOF with `appendfsync
//! always`, in a temporary directory, on a free loopback port) once, and
//! every harness gets a fresh key prefix, so each test sees an empty
//! store. The server is killed when this process exits (it is started
//! with a parent-death signal from a thread that lives as long as the
//! process). A machine without `redis-server` fails these tests, saying
//! what to install.
#![cfg(feature = "redis")]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use weft_core::BranchId;
use weft_core::Role;
use weft_core::lease::{TurnHolder, TurnLockAttempt};
use weft_core::record::{Record, RecordKind, StatusChange};
use weft_core::session::SessionStatus;
use weft_core::store::{Store, StoreError};
use weft_store::conformance::{Harness, new_meta, text};
use weft_store::redis::local::LocalRedis;
use weft_store::redis::{Durability, RedisStore};

/// The test binary's redis-server.
struct Server {
    local: LocalRedis,
    _dir: tempfile::TempDir,
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let local = LocalRedis::start(None, dir.path())
            .unwrap_or_else(|e| panic!("the redis store tests need a local redis-server: {e}"));
        Server { local, _dir: dir }
    })
}

/// A URL for a fresh, empty store on the test server.
fn fresh_url(extra: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!(
        "redis://127.0.0.1:{}/0?prefix=t{}-{n}:{extra}",
        server().local.port(),
        std::process::id()
    )
}

fn fresh() -> RedisStore {
    RedisStore::open(&fresh_url("")).expect("open redis store")
}

mod conformance {
    use super::*;

    weft_store::store_conformance_tests!(Harness::new(Arc::new(fresh())));
}

/// The lease of the lease tests' stores (`lease_ms=`).
const SHORT_LEASE: std::time::Duration = std::time::Duration::from_millis(1000);

mod leases {
    use super::*;

    weft_store::lease_conformance_tests!(
        Harness::new(Arc::new(
            RedisStore::open(&fresh_url("&lease_ms=400")).expect("open")
        )),
        SHORT_LEASE
    );
}

async fn raw(store: &RedisStore) -> redis::aio::MultiplexedConnection {
    redis::Client::open(store.options().url.as_str())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_at_one_seq_exactly_one_wins() {
    let url = fresh_url("");
    let a = Arc::new(RedisStore::open(&url).expect("open"));
    let b = Arc::new(RedisStore::open(&url).expect("open"));
    weft_store::conformance::handles::racing_handles_one_wins_each_round(a, b, 30).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_copy_of_the_metadata_is_not_written() {
    let url = fresh_url("");
    let a = Arc::new(RedisStore::open(&url).expect("open"));
    let b = Arc::new(RedisStore::open(&url).expect("open"));
    weft_store::conformance::handles::a_stale_copy_of_the_metadata_is_not_written(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_shared_state_writers_lose_nothing() {
    let url = fresh_url("");
    let stores: Vec<Arc<dyn Store>> = (0..4)
        .map(|_| Arc::new(RedisStore::open(&url).expect("open")) as Arc<dyn Store>)
        .collect();
    weft_store::conformance::handles::shared_state_writers_on_several_handles(stores, 16, 10).await;
}

#[tokio::test]
async fn the_test_server_is_durable_and_a_default_redis_would_warn() {
    let store = fresh();
    assert_eq!(
        store.durability().await.expect("check"),
        Durability::Durable
    );
    let mut conn = raw(&store).await;
    let pairs: Vec<(String, String)> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("append*")
        .query_async(&mut conn)
        .await
        .expect("config get");
    assert_eq!(Durability::from_config(&pairs), Durability::Durable);
}

#[tokio::test]
async fn ttl_is_set_and_refreshed_on_write() {
    let store = RedisStore::open(&fresh_url("&ttl=3600")).expect("open");
    let id = store
        .create(new_meta("ttl"), vec![])
        .await
        .expect("create")
        .id;
    let mut conn = raw(&store).await;
    let prefix = store.options().prefix.clone();
    let meta_key = format!("{prefix}s:{id}:meta");
    let log_key = format!("{prefix}s:{id}:log");
    let _: () = redis::cmd("PEXPIRE")
        .arg(&meta_key)
        .arg(1_000_000)
        .query_async(&mut conn)
        .await
        .expect("shorten");
    let head = store.get(&id).await.expect("get").last_seq;
    store
        .append(&id, head, Record::batch(head, [text(Role::User, "hi")]))
        .await
        .expect("append");
    for key in [&meta_key, &log_key] {
        let ttl: i64 = redis::cmd("PTTL")
            .arg(key)
            .query_async(&mut conn)
            .await
            .expect("pttl");
        assert!(ttl > 1_000_000 && ttl <= 3_600_000, "{key}: {ttl}");
    }
}

#[tokio::test]
async fn errors_never_show_the_password() {
    let url = format!(
        "redis://:hunter2-secret@127.0.0.1:{}/0?prefix=pw:",
        server().local.port()
    );
    let store = RedisStore::open(&url).expect("open is lazy");
    assert!(!format!("{store:?}").contains("hunter2"));
    // The server has no password: AUTH fails, and the error must not
    // quote the secret.
    let err = store
        .get(&weft_core::SessionId::new_v7())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(!text.contains("hunter2"), "{text}");
    assert!(
        matches!(
            err,
            StoreError::Backend {
                backend: "redis",
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lock_naming_its_holder_is_an_interrupted_turn() {
    let store = fresh();
    let active = RecordKind::Status(StatusChange {
        from: SessionStatus::Created,
        to: SessionStatus::Active,
        error: None,
        details: None,
    });
    let id = store
        .create(new_meta("locks"), vec![active])
        .await
        .expect("create")
        .id;
    let main = BranchId::main();
    let TurnLockAttempt::Acquired(lock) = store
        .try_lock_turn(&id, &main, &TurnHolder::current())
        .await
        .expect("lock")
    else {
        panic!("a free lock is acquired");
    };
    // The holder dies: its lock key expires, its holder entry stays.
    let mut conn = raw(&store).await;
    let key = format!("{}s:{id}:turn:{main}", store.options().prefix);
    let _: () = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .expect("del");
    let locks = store.turn_locks(&id).await.expect("locks");
    assert_eq!(locks.len(), 1);
    assert!(!locks[0].live);
    assert_eq!(
        locks[0].holder.as_ref().map(|h| h.pid),
        Some(std::process::id())
    );
    assert!(store.is_interrupted(&id).await.expect("interrupted"));
    // The next holder takes it over.
    assert!(matches!(
        store
            .try_lock_turn(&id, &main, &TurnHolder::current())
            .await
            .expect("lock"),
        TurnLockAttempt::Acquired(_)
    ));
    drop(lock);
}

mod live {
    use super::*;
    use weft_core::store::Store;
    use weft_store::conformance::live;

    /// Two handles (two "nodes") on one fresh prefix.
    fn two_handles() -> (Arc<dyn Store>, Arc<dyn Store>) {
        let url = fresh_url("");
        (
            Arc::new(RedisStore::open(&url).expect("open")),
            Arc::new(RedisStore::open(&url).expect("open")),
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn feeds_cross_between_handles() {
        let (a, b) = two_handles();
        live::feeds_cross_between_handles(a, b).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_commit_without_notice_still_reaches_followers() {
        let (a, b) = two_handles();
        live::a_commit_without_notice_still_reaches_followers(a, b).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn watch_sees_another_handles_commits() {
        let (a, b) = two_handles();
        live::watch_sees_another_handles_commits(a, b).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_events_cross_sealed_behind_encryption() {
    weft_store::conformance::live::events_cross_sealed(Arc::new(fresh())).await;
}

/// A log entry that is not a record's JSON fails a whole read with one
/// clear error naming the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_log_entry_fails_the_read() {
    let store = fresh();
    let mut conn = raw(&store).await;
    let prefix = store.options().prefix.clone();
    weft_store::conformance::rows::a_damaged_row_fails_the_read(
        &store,
        ":log",
        |id, seq| async move {
            let _: () = redis::cmd("LSET")
                .arg(format!("{prefix}s:{id}:log"))
                .arg(seq - 1)
                .arg("{\"not\": \"a record\"}")
                .query_async(&mut conn)
                .await
                .expect("damage an entry");
        },
    )
    .await;
}
