//! The postgres backend against the local PostgreSQL server: the whole
//! Store conformance suite (each test in a fresh schema, dropped after it),
//! plus refusal of a newer schema and concurrent writers.
//!
//! The server comes from `WEFT_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`). An unreachable server
//! fails the tests, saying how to start one; they never skip.
#![cfg(feature = "postgres")]

use std::sync::Arc;

use serde_json::json;
use weft_core::Role;
use weft_core::record::{Record, StateDelta};
use weft_core::store::{Store, StoreError};
use weft_store::conformance::{Harness, active_session, new_meta, text};
use weft_store::postgres::{MIGRATIONS, PostgresStore, SCHEMA_VERSION};

fn server_url() -> String {
    std::env::var("WEFT_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn fresh_schema() -> String {
    format!("weft_test_{}", uuid::Uuid::new_v4().simple())
}

/// Opens a store in `schema`, failing loudly when the server is not there.
async fn open_in(schema: &str) -> PostgresStore {
    let url = server_url();
    match PostgresStore::open(&url, Some(schema)).await {
        Ok(s) => s,
        Err(e) => panic!(
            "the postgres tests need a PostgreSQL server at {} ({e}). Start one \
             (`pg_ctlcluster 15 main start` or `service postgresql start` on Debian), \
             or point WEFT_TEST_POSTGRES_URL at one (postgres://user:pass@host:port/db)",
            weft_store::postgres::redact_url(&url)
        ),
    }
}

/// Drops the schema when the test ends.
struct DropSchema(PostgresStore);

impl Drop for DropSchema {
    fn drop(&mut self) {
        let store = self.0.clone();
        let dropped = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(store.drop_schema())
        });
        if let Err(e) = dropped {
            eprintln!("cannot drop a test schema: {e}");
        }
    }
}

async fn harness() -> Harness {
    let store = open_in(&fresh_schema()).await;
    Harness::with_guard(Arc::new(store.clone()), DropSchema(store))
}

mod conformance {
    use super::*;

    weft_store::store_conformance_tests!(harness().await);
}

/// The lease of the lease tests' stores.
const SHORT_LEASE: std::time::Duration = std::time::Duration::from_millis(1000);

/// A harness whose store's lease lasts [`SHORT_LEASE`] (`?lease_ms=`).
async fn short_lease_harness() -> Harness {
    let url = format!(
        "{}{}lease_ms={}",
        server_url(),
        if server_url().contains('?') { "&" } else { "?" },
        SHORT_LEASE.as_millis()
    );
    let store = PostgresStore::open(&url, Some(&fresh_schema()))
        .await
        .expect("open a postgres store with a short lease");
    Harness::with_guard(Arc::new(store.clone()), DropSchema(store))
}

mod leases {
    use super::*;

    weft_store::lease_conformance_tests!(short_lease_harness().await, SHORT_LEASE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_schema_is_refused() {
    let schema = fresh_schema();
    let store = open_in(&schema).await;
    let _guard = DropSchema(store.clone());
    let (client, conn) = tokio_postgres::connect(&server_url(), tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    client
        .execute(
            &format!("INSERT INTO {schema}.weft_schema_version (version) VALUES ($1)"),
            &[&(SCHEMA_VERSION + 1)],
        )
        .await
        .expect("record a newer version");
    let err = PostgresStore::open(&server_url(), Some(&schema))
        .await
        .expect_err("a newer schema must be refused");
    let message = err.to_string();
    assert!(
        message.contains(&format!("version {}", SCHEMA_VERSION + 1))
            && message.contains("upgrade weft"),
        "{message}"
    );
    // Reopening at the known version works (the migrations are recorded).
    client
        .execute(
            &format!("DELETE FROM {schema}.weft_schema_version WHERE version > $1"),
            &[&SCHEMA_VERSION],
        )
        .await
        .expect("forget it");
    PostgresStore::open(&server_url(), Some(&schema))
        .await
        .expect("reopen");
}

/// A database written at schema version 1 (search text in `records`,
/// its GIN index there) is upgraded at open: its messages stay
/// searchable, listing and appends work, and a delete leaves nothing.
/// A fresh schema built by the first `version` migrations (recorded as
/// applied), holding the sessions of `scratch` (a schema the current store
/// wrote) and what `rows` (SQL run there) puts in; with a client to look
/// inside it.
async fn schema_at_version(
    version: usize,
    scratch: &str,
    rows: &str,
) -> (tokio_postgres::Client, String) {
    let old = fresh_schema();
    let (client, conn) = tokio_postgres::connect(&server_url(), tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    let versions: Vec<String> = (1..=version).map(|v| format!("({v})")).collect();
    client
        .batch_execute(&format!(
            "CREATE SCHEMA {old}; SET search_path = {old}, public;
             CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public;
             CREATE TABLE weft_schema_version (
                version INTEGER PRIMARY KEY,
                applied_at TIMESTAMPTZ NOT NULL DEFAULT now());
             {}
             INSERT INTO weft_schema_version (version) VALUES {};
             INSERT INTO sessions (id, project, updated_us, status, parent_id, name, profile, last_seq, meta)
                SELECT id, project, updated_us, status, parent_id, name, profile, last_seq, meta
                FROM {scratch}.sessions;
             {rows}",
            MIGRATIONS[..version].join("\n"),
            versions.join(", ")
        ))
        .await
        .unwrap_or_else(|e| panic!("build a version {version} schema: {e}"));
    (client, old)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_database_is_upgraded() {
    use weft_core::store::{DeleteOptions, ListQuery, SearchQuery};
    // The rows, as the current store writes them, in a scratch schema.
    let scratch = fresh_schema();
    let current = open_in(&scratch).await;
    let _scratch_guard = DropSchema(current.clone());
    let meta = current
        .create(
            new_meta("upgrade"),
            vec![text(Role::User, "the zephyr blows")],
        )
        .await
        .expect("create");
    let id = meta.id.clone();
    let query = |text: &str| SearchQuery {
        text: text.into(),
        project: None,
        limit: 0,
    };
    // (A search moves the queued text into search_docs.)
    assert_eq!(
        current
            .search(&query("zephyr"))
            .await
            .expect("search")
            .len(),
        1
    );
    // A version 1 schema holding them.
    let (client, old) = schema_at_version(
        1,
        &scratch,
        &format!(
            "INSERT INTO records (session_id, seq, kind, record, search_text)
                SELECT r.session_id, r.seq, r.kind, r.record, d.text
                FROM {scratch}.records r LEFT JOIN {scratch}.search_docs d USING (session_id, seq);"
        ),
    )
    .await;
    let store = open_in(&old).await;
    let _guard = DropSchema(store.clone());
    let version: i32 = client
        .query_one(
            &format!("SELECT max(version) FROM {old}.weft_schema_version"),
            &[],
        )
        .await
        .expect("version")
        .get(0);
    assert_eq!(version, SCHEMA_VERSION);
    let branch: Option<String> = client
        .query_one(
            &format!("SELECT default_branch FROM {old}.sessions WHERE id = $1"),
            &[&id.as_str()],
        )
        .await
        .expect("default branch")
        .get(0);
    assert_eq!(
        branch.as_deref(),
        Some("main"),
        "the guard's column filled in from the metadata"
    );
    let hits = store.search(&query("ZEPHYR blows")).await.expect("search");
    assert_eq!(hits.len(), 1, "the old message is still found");
    let page = store.list(&ListQuery::default()).await.expect("list");
    assert_eq!(page.sessions.len(), 1);
    let head = store.get(&id).await.expect("get").last_seq;
    let batch = Record::batch(head, [text(Role::Assistant, "a mistral answers")]);
    store.append(&id, head, batch).await.expect("append");
    assert_eq!(
        store.search(&query("mistral")).await.expect("search").len(),
        1
    );
    store
        .delete(&id, DeleteOptions::default())
        .await
        .expect("delete");
    for table in ["records", "search_docs", "search_queue", "sessions"] {
        let n: i64 = client
            .query_one(&format!("SELECT count(*) FROM {old}.{table}"), &[])
            .await
            .expect("count")
            .get(0);
        assert_eq!(n, 0, "{table} keeps rows of a deleted session");
    }
}

/// Version 2 queued messages with their text; the upgrade to 3 indexes
/// what was still queued before the column goes, and appends after it
/// are indexed from their records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_2_queue_is_indexed_by_the_upgrade() {
    use weft_core::store::SearchQuery;
    let scratch = fresh_schema();
    let current = open_in(&scratch).await;
    let _scratch_guard = DropSchema(current.clone());
    let meta = current
        .create(
            new_meta("upgrade"),
            vec![text(Role::User, "the sirocco rises")],
        )
        .await
        .expect("create");
    let id = meta.id.clone();
    let (client, old) = schema_at_version(
        2,
        &scratch,
        &format!(
            "INSERT INTO records SELECT * FROM {scratch}.records;
             INSERT INTO search_queue (session_id, seq, text)
                SELECT session_id, seq, 'the sirocco rises' FROM {scratch}.records WHERE kind = 'message';"
        ),
    )
    .await;
    let store = open_in(&old).await;
    let _guard = DropSchema(store.clone());
    let query = |text: &str| SearchQuery {
        text: text.into(),
        project: None,
        limit: 0,
    };
    let queued: i64 = client
        .query_one(&format!("SELECT count(*) FROM {old}.search_queue"), &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(queued, 0, "the upgrade indexed the queue");
    assert_eq!(
        store.search(&query("sirocco")).await.expect("search").len(),
        1
    );
    let head = store.get(&id).await.expect("get").last_seq;
    let batch = Record::batch(head, [text(Role::Assistant, "a bora answers")]);
    store.append(&id, head, batch).await.expect("append");
    assert_eq!(store.search(&query("bora")).await.expect("search").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_shared_state_writers_lose_no_update() {
    let schema = fresh_schema();
    let a = open_in(&schema).await;
    let _guard = DropSchema(a.clone());
    // A second handle, as another process would have.
    let b = open_in(&schema).await;
    let writers = 16;
    let rounds = 5;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = if w % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            for r in 0..rounds {
                let mut delta = StateDelta::default();
                delta.set.insert(format!("w{w}.r{r}"), json!(w * 100 + r));
                store
                    .update_shared_state("app:race", &delta)
                    .await
                    .expect("update");
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
    let state = a.shared_state("app:race").await.expect("read");
    assert_eq!(
        state.len(),
        writers * rounds,
        "every key survives: {state:?}"
    );
    for w in 0..writers {
        for r in 0..rounds {
            assert_eq!(state.get(&format!("w{w}.r{r}")), Some(&json!(w * 100 + r)));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_at_one_seq_one_wins() {
    let schema = fresh_schema();
    let a = open_in(&schema).await;
    let _guard = DropSchema(a.clone());
    let b = open_in(&schema).await;
    let id = a.create(new_meta("race"), vec![]).await.expect("create").id;
    for round in 0..10 {
        let head = a.get(&id).await.expect("get").last_seq;
        let mut tasks = Vec::new();
        for w in 0..8 {
            let store = if w % 2 == 0 { a.clone() } else { b.clone() };
            let id = id.clone();
            tasks.push(tokio::spawn(async move {
                let batch = Record::batch(
                    head,
                    [
                        text(Role::User, &format!("round {round} writer {w}")),
                        text(Role::Assistant, "ok"),
                    ],
                );
                store.append(&id, head, batch).await
            }));
        }
        let mut wins = 0;
        for t in tasks {
            match t.await.expect("task") {
                Ok(meta) => {
                    wins += 1;
                    assert_eq!(meta.last_seq, head + 2);
                }
                Err(StoreError::Conflict {
                    expected, actual, ..
                }) => {
                    assert_eq!(expected, head);
                    assert!(
                        actual > head,
                        "round {round}: the conflict names the new head"
                    );
                }
                Err(e) => panic!("round {round}: unexpected error {e}"),
            }
        }
        assert_eq!(wins, 1, "round {round}: exactly one append wins");
    }
    let records = a.read_all(&id).await.expect("read");
    let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=21).collect::<Vec<_>>(), "gapless");
}

/// Appends share connections ("lanes", see `weft_store::postgres`): a lane
/// whose server process is gone (a server restart, a killed backend) is
/// replaced, so appends go on after at most the ones in flight failed, and
/// the log stays gapless.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_go_on_after_their_connections_are_killed() {
    let app = format!("weft_test_{}", uuid::Uuid::new_v4().simple());
    let url = server_url();
    let sep = if url.contains('?') { "&" } else { "?" };
    let store = PostgresStore::open(
        &format!("{url}{sep}application_name={app}"),
        Some(&fresh_schema()),
    )
    .await
    .expect("open a postgres store with its own application name");
    let _guard = DropSchema(store.clone());
    let created = store
        .create(new_meta("lanes"), vec![])
        .await
        .expect("create");
    let (id, start) = (created.id, created.last_seq);
    let mut head = start;
    for i in 0..20 {
        let batch = Record::batch(head, [text(Role::User, &format!("before {i}"))]);
        head = store
            .append(&id, head, batch)
            .await
            .expect("append")
            .last_seq;
    }
    let (admin, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("an admin connection");
    tokio::spawn(conn);
    let killed = admin
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            &[&app],
        )
        .await
        .expect("terminate the store's connections");
    assert!(!killed.is_empty(), "the store had connections to kill");
    // At most the appends that meet a dying connection fail; then every
    // append succeeds.
    let (mut failures, mut in_a_row) = (0, 0);
    while in_a_row < 40 {
        let batch = Record::batch(head, [text(Role::User, &format!("after {head}"))]);
        match store.append(&id, head, batch).await {
            Ok(meta) => {
                head = meta.last_seq;
                in_a_row += 1;
            }
            Err(StoreError::Backend { .. }) => {
                failures += 1;
                in_a_row = 0;
                assert!(
                    failures <= 40,
                    "appends keep failing after their connections died"
                );
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    let seqs: Vec<u64> = store
        .read_all(&id)
        .await
        .expect("read")
        .iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(seqs, (1..=head).collect::<Vec<_>>(), "gapless");
    assert_eq!(head, start + 60);
}

/// The append folds the new metadata from this process's cached copy;
/// the server checks that copy against the row. Another handle (another
/// process) changing the session, even back to the same `last_seq` with
/// different metadata, must neither be overwritten nor make the append fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_from_two_handles_never_fold_stale_metadata() {
    let schema = fresh_schema();
    let a = open_in(&schema).await;
    let _guard = DropSchema(a.clone());
    let b = open_in(&schema).await;
    let first = new_meta("first");
    let id = first.id.clone();
    a.create(first, vec![]).await.expect("create");
    a.append(&id, 1, Record::batch(1, [text(Role::User, "hi")]))
        .await
        .expect("append on a");
    // b appends: a's copy is now behind; a stale expected_seq conflicts.
    b.append(&id, 2, Record::batch(2, [text(Role::User, "from b")]))
        .await
        .expect("append on b");
    match a
        .append(&id, 2, Record::batch(2, [text(Role::User, "late")]))
        .await
    {
        Err(StoreError::Conflict {
            expected, actual, ..
        }) => {
            assert_eq!((expected, actual), (2, 3));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    let meta = a
        .append(&id, 3, Record::batch(3, [text(Role::User, "again")]))
        .await
        .expect("append at the head");
    assert_eq!(meta.last_seq, 4);
    // b replaces the session by one with the same id and head but other
    // metadata: a's cached copy (at seq 4) matches the head, not the row.
    b.delete(&id, Default::default()).await.expect("delete");
    let mut second = new_meta("second");
    second.id = id.clone();
    b.create(
        second,
        vec![
            text(Role::User, "1"),
            text(Role::User, "2"),
            text(Role::User, "3"),
        ],
    )
    .await
    .expect("recreate");
    let meta = a
        .append(&id, 4, Record::batch(4, [text(Role::User, "after")]))
        .await
        .expect("append after the replacement");
    assert_eq!(meta.last_seq, 5);
    assert_eq!(meta.project.slug, new_meta("second").project.slug);
    assert_eq!(
        b.get(&id).await.expect("get"),
        meta,
        "the row is what a returned"
    );
    let seqs: Vec<u64> = b
        .read_all(&id)
        .await
        .expect("read")
        .iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(seqs, (1..=5).collect::<Vec<_>>());
}

/// A turn lock is a lease: one whose holder stopped renewing it (a dead
/// process) is reported as not live — an interrupted turn — and the next
/// holder takes it over; the old holder's release then leaves the new
/// holder's lease alone (fencing token).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_turn_lease_is_interrupted_and_taken_over() {
    use weft_core::BranchId;
    use weft_core::lease::{TurnHolder, TurnLockAttempt};
    let schema = fresh_schema();
    let a = open_in(&schema).await;
    let _guard = DropSchema(a.clone());
    let b = open_in(&schema).await;
    let id = a
        .create(new_meta("lease"), vec![])
        .await
        .expect("create")
        .id;
    let main = BranchId::main();
    let mut old = TurnHolder::current();
    old.pid = 4_000_000;
    let TurnLockAttempt::Acquired(first) = a.try_lock_turn(&id, &main, &old).await.expect("lock")
    else {
        panic!("a free lock is acquired");
    };
    assert!(matches!(
        b.try_lock_turn(&id, &main, &TurnHolder::current()).await.expect("try"),
        TurnLockAttempt::Busy(Some(h)) if h.pid == old.pid
    ));
    // The holder "dies": its lease runs out without renewal.
    let (client, conn) = tokio_postgres::connect(&server_url(), tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    client
        .execute(
            &format!("UPDATE {schema}.turn_locks SET expires_at = now() - interval '1 second'"),
            &[],
        )
        .await
        .expect("expire the lease");
    let locks = b.turn_locks(&id).await.expect("locks");
    assert_eq!(locks.len(), 1);
    assert!(!locks[0].live, "an expired lease is not live");
    assert_eq!(locks[0].holder.as_ref().map(|h| h.pid), Some(old.pid));
    b.transition(&id, weft_core::session::SessionStatus::Active, None, None)
        .await
        .expect("activate");
    assert!(b.is_interrupted(&id).await.expect("interrupted"));
    // The next runner takes it over.
    let me = TurnHolder::current();
    let TurnLockAttempt::Acquired(second) = b.try_lock_turn(&id, &main, &me).await.expect("lock")
    else {
        panic!("an expired lease is taken over");
    };
    // The old holder's late release does not free the new holder's lock.
    drop(first);
    let locks = a.turn_locks(&id).await.expect("locks");
    assert_eq!(locks.len(), 1, "{locks:?}");
    assert!(locks[0].live);
    assert_eq!(locks[0].holder.as_ref().map(|h| h.pid), Some(me.pid));
    assert!(matches!(
        a.try_lock_turn(&id, &main, &old).await.expect("try"),
        TurnLockAttempt::Busy(_)
    ));
    drop(second);
    assert!(a.turn_locks(&id).await.expect("locks").is_empty());
}

mod live {
    use super::*;
    use weft_store::conformance::live;

    /// Two handles (two "nodes") on one fresh schema.
    async fn two_handles() -> (Arc<dyn Store>, Arc<dyn Store>, DropSchema) {
        let schema = fresh_schema();
        let a = open_in(&schema).await;
        let b = open_in(&schema).await;
        (Arc::new(a.clone()), Arc::new(b), DropSchema(a))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn feeds_cross_between_handles() {
        let (a, b, _guard) = two_handles().await;
        live::feeds_cross_between_handles(a, b).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_commit_without_notice_still_reaches_followers() {
        let (a, b, _guard) = two_handles().await;
        live::a_commit_without_notice_still_reaches_followers(a, b).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stale_copy_of_the_metadata_is_not_written() {
        let (a, b, _guard) = two_handles().await;
        weft_store::conformance::handles::a_stale_copy_of_the_metadata_is_not_written(a, b).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn watch_sees_another_handles_commits() {
        let (a, b, _guard) = two_handles().await;
        live::watch_sees_another_handles_commits(a, b).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_events_cross_sealed_behind_encryption() {
    let store = open_in(&fresh_schema()).await;
    let _drop = DropSchema(store.clone());
    weft_store::conformance::live::events_cross_sealed(Arc::new(store)).await;
}

/// A record row that is not a record's JSON fails a whole read with one
/// clear error naming the table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_record_row_fails_the_read() {
    let schema = fresh_schema();
    let store = open_in(&schema).await;
    let _guard = DropSchema(store.clone());
    let (client, conn) = tokio_postgres::connect(&server_url(), tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    weft_store::conformance::rows::a_damaged_row_fails_the_read(&store, "records (", |id, seq| async move {
        client
            .execute(
                &format!("UPDATE {schema}.records SET record = '{{\"not\": \"a record\"}}' WHERE session_id = $1 AND seq = $2"),
                &[&id.as_str(), &i64::try_from(seq).expect("seq")],
            )
            .await
            .expect("damage a row");
    })
    .await;
}

/// The guarded append folds a message batch into the metadata on the
/// server: what a read gives is what `SessionMeta::apply` gives, from
/// metadata this handle never saw (written by hand here: counts at the
/// top saturate, no model yet, no default branch named, a key this build
/// does not know kept), its fold pending beside the JSON until a plain
/// append (from either handle) writes the merged metadata.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guarded_append_folds_on_the_server_as_the_client_does() {
    use weft_core::message::{Message, Usage};
    use weft_core::session::SessionStatus;
    use weft_core::store::HeadGuard;
    use weft_core::{BranchId, RecordKind};
    let schema = fresh_schema();
    let a = open_in(&schema).await;
    let _guard = DropSchema(a.clone());
    let b = open_in(&schema).await;
    let id = active_session(&a, "server-fold", vec![text(Role::User, "first")]).await;
    let (client, conn) = tokio_postgres::connect(&server_url(), tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    let top = u64::MAX;
    client
        .execute(
            &format!(
                "UPDATE {schema}.sessions SET default_branch = NULL,
                    meta = (meta::jsonb - 'default_branch' - 'model'
                 || jsonb_build_object('message_count', {}::numeric, 'future_key', 'kept',
                    'usage', jsonb_build_object('input_tokens', {top}::numeric, 'output_tokens', 5)))::text
                 WHERE id = $1",
                top - 1
            ),
            &[&id.as_str()],
        )
        .await
        .expect("edit the row");
    let before = b.get(&id).await.expect("get");
    assert_eq!(
        (before.message_count, before.model.as_deref()),
        (top - 1, None)
    );
    let mut reply = Message::text(BranchId::main(), Role::Assistant, "hello");
    reply.model = Some("m-1".into());
    reply.usage = Some(Usage {
        input_tokens: 7,
        output_tokens: 8,
        cache_read_tokens: 9,
        cache_creation_tokens: 0,
    });
    let batch = vec![
        text(Role::User, "a prompt with \"quotes\", é and \\ backslashes"),
        RecordKind::message(reply),
        text(Role::User, ""),
    ];
    let guard = HeadGuard {
        status: SessionStatus::Active,
        default_branch: BranchId::main(),
    };
    let (records, meta) = b
        .append_guarded(&id, &guard, batch)
        .await
        .expect("guarded append")
        .expect("the guard holds");
    let mut expected = before.clone();
    for r in &records {
        expected.apply(r);
    }
    assert_eq!(meta, expected, "the server's fold is the client's");
    assert_eq!(meta.message_count, top, "saturated");
    assert_eq!(meta.usage.input_tokens, top, "saturated");
    assert_eq!(meta.usage.output_tokens, 13);
    assert_eq!(meta.model.as_deref(), Some("m-1"));
    let stored = || {
        let client = &client;
        let sql = format!(
            "SELECT meta, fold_messages, fold_turns, fold_usage::text, fold_model
             FROM {schema}.sessions WHERE id = $1"
        );
        let id = id.clone();
        async move {
            let row = client
                .query_one(&sql, &[&id.as_str()])
                .await
                .expect("read the row");
            let usage: Option<String> = row.get(3);
            let usage: Option<Usage> = usage.map(|u| serde_json::from_str(&u).expect("usage JSON"));
            let fold: (Option<i64>, Option<i64>, Option<Usage>, Option<String>) =
                (row.get(1), row.get(2), usage, row.get(4));
            (row.get::<_, String>(0), fold)
        }
    };
    let (json, fold) = stored().await;
    assert!(
        json.contains(&format!("\"message_count\": {}", top - 1))
            && json.contains("\"future_key\": \"kept\""),
        "the JSON as it was: {json}"
    );
    assert_eq!(
        fold,
        (
            Some(3),
            Some(2),
            Some(Usage {
                input_tokens: 7,
                output_tokens: 8,
                cache_read_tokens: 9,
                cache_creation_tokens: 0,
            }),
            Some("m-1".into())
        ),
        "the fold pending beside it"
    );
    assert_eq!(a.get(&id).await.expect("get on a"), meta);
    let listed = a
        .list(&weft_core::store::ListQuery::default())
        .await
        .expect("list");
    assert_eq!(listed.sessions, vec![meta.clone()], "listed with the fold");
    let hits = a
        .search(&weft_core::store::SearchQuery {
            text: "backslashes".into(),
            project: None,
            limit: 0,
        })
        .await
        .expect("search");
    assert_eq!(
        hits.iter()
            .map(|h| h.session_id.clone())
            .collect::<Vec<_>>(),
        vec![id.clone()],
        "found in a row with a fold pending"
    );
    assert_eq!(
        a.read(&id, records[0].seq, None).await.expect("read"),
        records,
        "the records as returned, numbered by the server"
    );
    // Plain appends after it, from a stale copy (a) and from the copy the
    // server returned (b).
    let head = meta.last_seq;
    a.append(&id, head, Record::batch(head, [text(Role::User, "on a")]))
        .await
        .expect("append on a");
    let last = b
        .append(
            &id,
            head + 1,
            Record::batch(head + 1, [text(Role::User, "on b")]),
        )
        .await
        .expect("append on b");
    assert_eq!(last.last_seq, head + 2);
    assert_eq!(last.last_prompt.as_deref(), Some("on b"));
    assert_eq!(last.message_count, top, "still saturated");
    assert_eq!(last.usage.output_tokens, 13);
    assert_eq!(b.get(&id).await.expect("get"), last);
    let (json, fold) = stored().await;
    assert_eq!(fold, (None, None, None, None), "merged into the JSON");
    assert_eq!(
        serde_json::from_str::<weft_core::session::SessionMeta>(&json).expect("meta"),
        last
    );
}

/// Behind the encryption layer the guarded append seals the batch, the
/// server numbers and folds the sealed records, and the caller gets and
/// reads back plaintext; no plaintext reaches the rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guarded_append_seals_behind_encryption() {
    use weft_core::BranchId;
    use weft_core::session::SessionStatus;
    use weft_core::store::HeadGuard;
    use weft_store::encryption::{self, MasterKey};
    let schema = fresh_schema();
    let pg = open_in(&schema).await;
    let _guard = DropSchema(pg.clone());
    let key = MasterKey::from_base64(&MasterKey::generate_base64().expect("a random key"))
        .expect("a valid key");
    let store = encryption::wrap(Arc::new(pg), Some(key));
    let id = active_session(&*store, "sealed-guarded", vec![]).await;
    let secret = "zanzibar-quokka-7731";
    let prompt = format!("the word is {secret}");
    let guard = HeadGuard {
        status: SessionStatus::Active,
        default_branch: BranchId::main(),
    };
    let batch = vec![text(Role::User, &prompt)];
    let (records, meta) = store
        .append_guarded(&id, &guard, batch.clone())
        .await
        .expect("guarded append")
        .expect("the guard holds");
    assert_eq!(
        records.iter().map(|r| r.kind.clone()).collect::<Vec<_>>(),
        batch
    );
    assert_eq!(meta.last_prompt.as_deref(), Some(prompt.as_str()));
    assert_eq!(meta.message_count, 1);
    assert_eq!(
        store.read(&id, records[0].seq, None).await.expect("read"),
        records
    );
    assert_eq!(store.get(&id).await.expect("get"), meta);
    let (client, conn) = tokio_postgres::connect(&server_url(), tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    let rows = client
        .query(
            &format!(
                "SELECT record FROM {schema}.records UNION ALL SELECT meta FROM {schema}.sessions
                 UNION ALL SELECT fold_prompt FROM {schema}.sessions"
            ),
            &[],
        )
        .await
        .expect("read the rows");
    let texts: Vec<String> = rows
        .iter()
        .filter_map(|r| r.get::<_, Option<String>>(0))
        .collect();
    assert!(texts.iter().any(|t| t.starts_with("wenc1p:")), "{texts:?}");
    assert!(
        texts.iter().all(|t| !t.contains(secret)),
        "plaintext in the rows: {texts:?}"
    );
    let folded: Option<i64> = client
        .query_one(
            &format!("SELECT fold_messages FROM {schema}.sessions WHERE id = $1"),
            &[&id.as_str()],
        )
        .await
        .expect("read the fold")
        .get(0);
    assert_eq!(folded, Some(1), "the server folded the sealed batch");
}
