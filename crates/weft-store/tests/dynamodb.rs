//! The dynamodb backend against a real DynamoDB-compatible server (moto,
//! see `scripts/dynamodb-local`): the whole Store conformance suite, plus
//! races on one session and on shared state, batches beyond one
//! transaction, a missing table, TTL, credential scrubbing, interrupted
//! turn locks and locks shared by two handles.
//!
//! The test binary starts its own server once (on a free loopback port,
//! killed when this process exits), and every harness gets a fresh table,
//! so each test sees an empty store. A machine without the moto venv fails
//! these tests, saying how to install it (`scripts/test` does).
#![cfg(feature = "dynamodb")]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use aws_sdk_dynamodb::types::AttributeValue;
use weft_core::BranchId;
use weft_core::Role;
use weft_core::lease::{TurnHolder, TurnLockAttempt};
use weft_core::record::{Record, RecordKind, StatusChange};
use weft_core::session::SessionStatus;
use weft_core::store::{Store, StoreError};
use weft_store::conformance::{Harness, new_meta, text};
use weft_store::dynamodb::DynamoStore;
use weft_store::dynamodb::local::LocalDynamo;

fn server() -> &'static LocalDynamo {
    static SERVER: OnceLock<LocalDynamo> = OnceLock::new();
    SERVER.get_or_init(|| {
        LocalDynamo::start().unwrap_or_else(|e| {
            panic!("the dynamodb store tests need the local DynamoDB server: {e}")
        })
    })
}

/// A fresh table name.
fn fresh_table() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "t{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A URL for a fresh, empty store (its table created on first use).
fn fresh_url(extra: &str) -> String {
    format!("{}{extra}", server().url(&fresh_table()))
}

fn fresh() -> DynamoStore {
    DynamoStore::open(&fresh_url("")).expect("open dynamodb store")
}

mod conformance {
    use super::*;

    weft_store::store_conformance_tests!(Harness::new(Arc::new(fresh())));
}

/// The raw item (`pk`, `sk`) of `store`'s table.
async fn raw_item(
    store: &DynamoStore,
    pk: &str,
    sk: &str,
) -> Option<HashMap<String, AttributeValue>> {
    store
        .client()
        .get_item()
        .table_name(store.table())
        .key("pk", AttributeValue::S(pk.into()))
        .key("sk", AttributeValue::S(sk.into()))
        .consistent_read(true)
        .send()
        .await
        .expect("get item")
        .item()
        .cloned()
}

fn num(item: &HashMap<String, AttributeValue>, name: &str) -> i64 {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} is not a number in {item:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_at_one_seq_exactly_one_wins() {
    let url = fresh_url("");
    let a = Arc::new(DynamoStore::open(&url).expect("open"));
    let b = Arc::new(DynamoStore::open(&url).expect("open"));
    weft_store::conformance::handles::racing_handles_one_wins_each_round(a, b, 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_copy_of_the_metadata_is_not_written() {
    let url = fresh_url("");
    let a = Arc::new(DynamoStore::open(&url).expect("open"));
    let b = Arc::new(DynamoStore::open(&url).expect("open"));
    weft_store::conformance::handles::a_stale_copy_of_the_metadata_is_not_written(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_shared_state_writers_lose_nothing() {
    let url = fresh_url("");
    let stores: Vec<Arc<dyn Store>> = (0..4)
        .map(|_| Arc::new(DynamoStore::open(&url).expect("open")) as Arc<dyn Store>)
        .collect();
    weft_store::conformance::handles::shared_state_writers_on_several_handles(stores, 8, 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_beyond_one_transaction_land_whole() {
    let store = fresh();
    let id = store
        .create(new_meta("big"), vec![])
        .await
        .expect("create")
        .id;
    let big = Record::batch(1, (0..250).map(|i| text(Role::User, &format!("m{i}"))));
    let meta = store.append(&id, 1, big.clone()).await.expect("append 250");
    assert_eq!(meta.last_seq, 251);
    assert_eq!(store.read(&id, 2, None).await.expect("read"), big);
    // A create with more records than a transaction holds.
    let kinds: Vec<RecordKind> = (0..150)
        .map(|i| text(Role::User, &format!("c{i}")))
        .collect();
    let created = store
        .create(new_meta("big"), kinds)
        .await
        .expect("create 151");
    assert_eq!(created.last_seq, 151);
    assert_eq!(store.tail(&created.id, 3).await.expect("tail").len(), 3);
    // A stale big batch is a conflict and writes nothing visible.
    let stale = Record::batch(1, (0..150).map(|i| text(Role::User, &format!("x{i}"))));
    match store.append(&id, 1, stale).await {
        Err(StoreError::Conflict { actual, .. }) => assert_eq!(actual, 251),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(store.read(&id, 2, None).await.expect("read"), big);
}

/// One record larger than a DynamoDB item is refused clearly, before
/// anything is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_larger_than_an_item_is_refused() {
    let store = fresh();
    let id = store
        .create(new_meta("huge"), vec![])
        .await
        .expect("create")
        .id;
    let huge = "x".repeat(500_000);
    let err = store
        .append(&id, 1, Record::batch(1, [text(Role::User, &huge)]))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    assert!(err.to_string().contains("400 KB"), "{err}");
    assert_eq!(store.get(&id).await.expect("get").last_seq, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_table_without_create_is_a_clear_error() {
    let table = fresh_table();
    let url = format!(
        "dynamodb://127.0.0.1:{}/{table}?region=us-east-1",
        server().port()
    );
    let store = DynamoStore::open(&url).expect("open is lazy");
    let err = store
        .get(&weft_core::SessionId::new_v7())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(&table) && text.contains("create=true"),
        "the error names the table and the fix: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_is_written_and_refreshed_and_expired_sessions_are_gone() {
    let store = DynamoStore::open(&fresh_url("&ttl=3600")).expect("open");
    let id = store
        .create(new_meta("ttl"), vec![])
        .await
        .expect("create")
        .id;
    let now = chrono::Utc::now().timestamp();
    let row = raw_item(&store, id.as_str(), "meta").await.expect("row");
    let exp = num(&row, "expires_at");
    assert!(exp > now + 3500 && exp <= now + 3601, "{exp} vs {now}");
    let rec = raw_item(&store, id.as_str(), &format!("r#{:020}", 1))
        .await
        .expect("record");
    assert!(num(&rec, "expires_at") >= exp);
    // The TTL attribute is what the table expires on.
    let ttl = store
        .client()
        .describe_time_to_live()
        .table_name(store.table())
        .send()
        .await
        .expect("describe ttl");
    assert_eq!(
        ttl.time_to_live_description()
            .and_then(|d| d.attribute_name()),
        Some("expires_at")
    );
    // Backdate the row: the session reads as gone.
    store
        .client()
        .update_item()
        .table_name(store.table())
        .key("pk", AttributeValue::S(id.to_string()))
        .key("sk", AttributeValue::S("meta".into()))
        .update_expression("SET expires_at = :e")
        .expression_attribute_values(":e", AttributeValue::N((now - 10).to_string()))
        .send()
        .await
        .expect("backdate");
    assert!(store.get(&id).await.unwrap_err().is_not_found());
    let page = store.list(&Default::default()).await.expect("list");
    assert!(page.sessions.is_empty(), "{:?}", page.sessions);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_and_debug_never_show_the_secret() {
    let url = format!(
        "dynamodb://AKIDTEST:hunter2-secret@127.0.0.1:1/{}?region=us-east-1",
        fresh_table()
    );
    let store = DynamoStore::open(&url).expect("open is lazy");
    assert!(!format!("{store:?}").contains("hunter2"));
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
                backend: "dynamodb",
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_naming_its_holder_is_an_interrupted_turn() {
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
    // A second handle on the same table sees the lock as busy.
    let other = DynamoStore::open(&format!(
        "dynamodb://127.0.0.1:{}/{}?region=us-east-1",
        server().port(),
        store.table()
    ))
    .expect("open");
    match other
        .try_lock_turn(&id, &main, &TurnHolder::current())
        .await
        .expect("lock")
    {
        TurnLockAttempt::Busy(Some(h)) => assert_eq!(h.pid, std::process::id()),
        res => panic!("a held lock is busy for another handle, got {res:?}"),
    }
    // The holder dies: its lease runs out, its item stays.
    store
        .client()
        .update_item()
        .table_name(store.table())
        .key("pk", AttributeValue::S(id.to_string()))
        .key("sk", AttributeValue::S(format!("lock#{main}")))
        .update_expression("SET lease_until = :t")
        .expression_attribute_values(":t", AttributeValue::N("1".into()))
        .send()
        .await
        .expect("expire");
    let locks = other.turn_locks(&id).await.expect("locks");
    assert_eq!(locks.len(), 1);
    assert!(!locks[0].live);
    assert_eq!(
        locks[0].holder.as_ref().map(|h| h.pid),
        Some(std::process::id())
    );
    assert!(other.is_interrupted(&id).await.expect("interrupted"));
    // The next holder (the other handle) takes it over; the old guard's
    // release does not remove the new lease.
    let TurnLockAttempt::Acquired(second) = other
        .try_lock_turn(&id, &main, &TurnHolder::current())
        .await
        .expect("lock")
    else {
        panic!("an expired lease is taken over");
    };
    drop(lock);
    let locks = store.turn_locks(&id).await.expect("locks");
    assert!(locks.len() == 1 && locks[0].live, "{locks:?}");
    drop(second);
    assert!(store.turn_locks(&id).await.expect("locks").is_empty());
}

/// A turn's append is written only while that turn holds its branch's
/// lease (the same fencing as postgres and redis).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_are_fenced_by_the_turn_lease() {
    weft_store::conformance::appends_are_fenced_by_the_turn_lease(Arc::new(fresh())).await;
}
