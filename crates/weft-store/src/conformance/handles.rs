//! Several handles on one store (several processes or nodes): racing
//! appenders and shared-state writers through different handles. For the
//! network backends; call each function with handles opened separately on
//! the same store.

use std::sync::Arc;

use weft_core::message::Role;
use weft_core::record::{Record, StateDelta};
use weft_core::store::{Store, StoreError};

use super::{new_meta, text};

/// `rounds` rounds of four appenders (alternating between `a` and `b`) at
/// the same head: exactly one wins each round, the others get a conflict
/// naming the new head, and the log ends gapless.
pub async fn racing_handles_one_wins_each_round(a: Arc<dyn Store>, b: Arc<dyn Store>, rounds: u64) {
    let id = a.create(new_meta("race"), vec![]).await.expect("create").id;
    for round in 0..rounds {
        let head = a.get(&id).await.expect("get").last_seq;
        let mut tasks = Vec::new();
        for (i, store) in [a.clone(), b.clone(), a.clone(), b.clone()]
            .into_iter()
            .enumerate()
        {
            let id = id.clone();
            tasks.push(tokio::spawn(async move {
                let batch = Record::batch(
                    head,
                    [
                        text(Role::User, &format!("round {round} writer {i}")),
                        text(Role::Assistant, "reply"),
                    ],
                );
                store.append(&id, head, batch).await
            }));
        }
        let mut wins = 0;
        for t in tasks {
            match t.await.expect("join") {
                Ok(_) => wins += 1,
                Err(StoreError::Conflict {
                    actual, expected, ..
                }) => {
                    assert_eq!(expected, head);
                    assert_eq!(actual, head + 2, "the conflict names the new head");
                }
                Err(e) => panic!("unexpected error {e}"),
            }
        }
        assert_eq!(wins, 1, "round {round}");
    }
    let log = b.read_all(&id).await.expect("read");
    let seqs: Vec<u64> = log.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=1 + 2 * rounds).collect::<Vec<_>>(), "gapless");
}

/// `writers` writers spread over `stores` (handles on one store), `each`
/// keys apiece, into one shared-state namespace: every key is kept.
pub async fn shared_state_writers_on_several_handles(
    stores: Vec<Arc<dyn Store>>,
    writers: usize,
    each: usize,
) {
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = stores[w % stores.len()].clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..each {
                let mut d = StateDelta::default();
                d.set.insert(format!("w{w}-{i}"), serde_json::json!(i));
                store
                    .update_shared_state("app:base", &d)
                    .await
                    .expect("update");
            }
        }));
    }
    for t in tasks {
        t.await.expect("join");
    }
    let state = stores[0].shared_state("app:base").await.expect("read");
    assert_eq!(state.len(), writers * each, "every writer's keys are kept");
}

/// A handle whose own copy of a session's metadata went stale behind its
/// back (here: `b` deleted the session and created it again, with another
/// name, at the same head) appends on the session as it is now: the
/// stored metadata is the one folded from, never the stale copy.
pub async fn a_stale_copy_of_the_metadata_is_not_written(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    let mut meta = new_meta("stale");
    meta.name = Some("first".into());
    let id = meta.id.clone();
    let created = a.create(meta.clone(), vec![]).await.expect("create");
    let head = created.last_seq;
    // `a` now holds its copy of the session at `head`.
    b.delete(&id, weft_core::store::DeleteOptions::default())
        .await
        .expect("delete");
    meta.name = Some("second".into());
    let again = b.create(meta, vec![]).await.expect("create again");
    assert_eq!(again.last_seq, head, "the same head as before");
    let appended = a
        .append(
            &id,
            head,
            Record::batch(head, [text(Role::User, "after the swap")]),
        )
        .await
        .expect("append");
    assert_eq!(appended.name.as_deref(), Some("second"));
    assert_eq!(
        b.get(&id).await.expect("get").name.as_deref(),
        Some("second"),
        "the stored metadata keeps what b wrote"
    );
    assert_eq!(b.get(&id).await.expect("get").last_seq, head + 1);
}
