//! Behaviour specific to the sqlite backend: batched full-text indexing
//! stays exact across deletes and reopening.

use weft_core::Role;
use weft_core::record::Record;
use weft_core::store::{DeleteOptions, SearchQuery, Store};
use weft_store::SqliteStore;
use weft_store::conformance::{new_meta, push, text};
use weft_store::sqlite::FTS_BATCH;

async fn hits(store: &dyn Store, q: &str) -> usize {
    store
        .search(&SearchQuery {
            text: q.into(),
            limit: 10_000,
            ..Default::default()
        })
        .await
        .expect("search")
        .len()
}

#[tokio::test]
async fn batched_full_text_index_stays_exact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("weft.sqlite");
    let store = SqliteStore::open(&path).expect("open");
    let a = store
        .create(new_meta("fts"), vec![])
        .await
        .expect("create")
        .id;
    // Enough messages to trigger batch indexing during appends.
    let n = 2 * FTS_BATCH as usize + 17;
    for i in 0..n {
        push(
            &store,
            &a,
            vec![text(Role::User, &format!("alpha number {i}"))],
        )
        .await;
    }
    assert_eq!(hits(&store, "alpha").await, n);
    // The session holding the highest row ids is deleted; the ids are
    // reused by new records, which must still be found.
    let b = store
        .create(
            new_meta("fts"),
            vec![text(Role::User, "bravo one"), text(Role::User, "bravo two")],
        )
        .await
        .expect("create")
        .id;
    assert_eq!(hits(&store, "bravo").await, 2);
    store
        .delete(&b, DeleteOptions::default())
        .await
        .expect("delete");
    assert_eq!(
        hits(&store, "bravo").await,
        0,
        "deleted messages are not found"
    );
    let c = store
        .create(new_meta("fts"), vec![])
        .await
        .expect("create")
        .id;
    let head = store.get(&c).await.expect("get").last_seq;
    store
        .append(
            &c,
            head,
            Record::batch(
                head,
                [
                    text(Role::User, "charlie reuses ids"),
                    text(Role::Assistant, "charlie too"),
                ],
            ),
        )
        .await
        .expect("append");
    assert_eq!(
        hits(&store, "charlie").await,
        2,
        "messages in reused row ids are indexed"
    );
    assert_eq!(hits(&store, "bravo").await, 0);
    drop(store);
    let reopened = SqliteStore::open(&path).expect("reopen");
    push(&reopened, &c, vec![text(Role::User, "delta after reopen")]).await;
    assert_eq!(hits(&reopened, "alpha").await, n);
    assert_eq!(hits(&reopened, "charlie").await, 2);
    assert_eq!(hits(&reopened, "delta").await, 1);
}

/// A record row that is not a record's JSON fails a whole read with one
/// clear error naming the table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_record_row_fails_the_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("weft.sqlite");
    let store = SqliteStore::open(&path).expect("open");
    weft_store::conformance::rows::a_damaged_row_fails_the_read(&store, "records (", |id, seq| {
        let path = path.clone();
        async move {
            let db = rusqlite::Connection::open(&path).expect("open the database");
            db.execute(
                "UPDATE records SET record = '{\"not\": \"a record\"}' WHERE session_id = ?1 AND seq = ?2",
                rusqlite::params![id.as_str(), i64::try_from(seq).expect("seq")],
            )
            .expect("damage a row");
        }
    })
    .await;
}
