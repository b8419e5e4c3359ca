//! Conformance: turn locks and racing lifecycle transitions.

use super::*;

/// Turn locks (issue 9, finding 4): one holder per (session, branch),
/// naming who holds it; released on drop; other branches are independent;
/// a missing session is not found.
pub async fn turn_locks_are_exclusive(store: Arc<dyn Store>) {
    use weft_core::lease::{TurnHolder, TurnLockAttempt};
    let meta = store.create(new_meta("locks"), vec![]).await.unwrap();
    let id = meta.id.clone();
    let main = BranchId::main();
    let me = TurnHolder::current();
    let TurnLockAttempt::Acquired(lock) = store.try_lock_turn(&id, &main, &me).await.unwrap()
    else {
        panic!("a free turn lock is acquired");
    };
    match store.try_lock_turn(&id, &main, &me).await.unwrap() {
        TurnLockAttempt::Busy(Some(h)) => assert_eq!(h.pid, me.pid),
        other => panic!("a held turn lock is busy and names its holder, got {other:?}"),
    }
    let side = BranchId::parse("side").unwrap();
    assert!(matches!(
        store.try_lock_turn(&id, &side, &me).await.unwrap(),
        TurnLockAttempt::Acquired(_)
    ));
    let held = store.turn_locks(&id).await.unwrap();
    assert_eq!(held.len(), 1, "{held:?}");
    assert!(held[0].live && held[0].branch == main);
    assert!(!store.is_interrupted(&id).await.unwrap());
    drop(lock);
    assert!(store.turn_locks(&id).await.unwrap().is_empty());
    assert!(matches!(
        store.try_lock_turn(&id, &main, &me).await.unwrap(),
        TurnLockAttempt::Acquired(_)
    ));
    let missing = SessionId::new_v7();
    assert!(
        store
            .try_lock_turn(&missing, &main, &me)
            .await
            .unwrap_err()
            .is_not_found()
    );
}

/// Contradicting transitions racing (issue 9, finding 3): `completed` and
/// `failed` from an active session at once — exactly one is written, the
/// other is refused, every round.
pub async fn racing_transitions_one_wins(store: Arc<dyn Store>) {
    for round in 0..20 {
        let meta = store
            .create(
                new_meta("transitions"),
                vec![RecordKind::Status(StatusChange {
                    from: SessionStatus::Created,
                    to: SessionStatus::Active,
                    error: None,
                    details: None,
                })],
            )
            .await
            .unwrap();
        let id = meta.id.clone();
        let (a, b) = tokio::join!(
            store.transition(&id, SessionStatus::Completed, None, None),
            store.transition(&id, SessionStatus::Failed, Some("boom".into()), None),
        );
        let refused =
            |r: &Result<SessionMeta, StoreError>| matches!(r, Err(StoreError::Refused(_)));
        assert!(
            (a.is_ok() && refused(&b)) || (b.is_ok() && refused(&a)),
            "round {round}: {a:?} / {b:?}"
        );
        let ends = store
            .read_all(&id)
            .await
            .unwrap()
            .into_iter()
            .filter(|r| matches!(&r.kind, RecordKind::Status(c) if c.to.is_ended()))
            .count();
        assert_eq!(ends, 1, "round {round}");
    }
}

/// Records of turn `turn` on `branch`, appended after `expected`.
fn turn_batch(expected: u64, turn: &TurnId, branch: &BranchId, s: &str) -> Vec<Record> {
    Record::batch_for_turn(expected, [text(Role::User, s)], turn, branch)
}

/// Asserts `result` is a [`StoreError::LeaseLost`] naming `turn`.
fn assert_lease_lost(result: Result<SessionMeta, StoreError>, turn: &TurnId, what: &str) {
    match result {
        Err(StoreError::LeaseLost { turn: t, .. }) => assert_eq!(t, turn.to_string(), "{what}"),
        other => panic!("{what}: expected LeaseLost, got {other:?}"),
    }
}

/// Fencing (lease backends only, see `weft_core::lease`): a batch naming
/// turn T is appended only while T holds the lease of its branch. Once
/// turn U has taken the branch over, or when T holds no lock there, T's
/// append fails with [`StoreError::LeaseLost`] and changes nothing;
/// batches naming no turn are not fenced.
pub async fn appends_are_fenced_by_the_turn_lease(store: Arc<dyn Store>) {
    use weft_core::lease::{TurnHolder, TurnLockAttempt};
    let id = store.create(new_meta("fence"), vec![]).await.unwrap().id;
    let main = BranchId::main();
    let (t, u) = (TurnId::new_v7(), TurnId::new_v7());
    let TurnLockAttempt::Acquired(lock_t) = store
        .try_lock_turn(&id, &main, &TurnHolder::current().for_turn(&t))
        .await
        .unwrap()
    else {
        panic!("a free turn lock is acquired");
    };
    let head = store.get(&id).await.unwrap().last_seq;
    let head = store
        .append(&id, head, turn_batch(head, &t, &main, "by t"))
        .await
        .expect("the holder's append is written")
        .last_seq;
    // Not fenced: no turn named.
    let head = store
        .append(
            &id,
            head,
            Record::batch(head, [text(Role::User, "no turn")]),
        )
        .await
        .expect("a batch naming no turn is not fenced")
        .last_seq;
    // T holds no lock on another branch.
    let side = BranchId::parse("side").unwrap();
    assert_lease_lost(
        store
            .append(&id, head, turn_batch(head, &t, &side, "elsewhere"))
            .await,
        &t,
        "a turn appending on a branch it holds no lock of",
    );
    // U takes the branch over.
    drop(lock_t);
    let TurnLockAttempt::Acquired(lock_u) = store
        .try_lock_turn(&id, &main, &TurnHolder::current().for_turn(&u))
        .await
        .unwrap()
    else {
        panic!("a released turn lock is acquired");
    };
    let before = store.read_all(&id).await.unwrap();
    assert_lease_lost(
        store
            .append(&id, head, turn_batch(head, &t, &main, "late"))
            .await,
        &t,
        "a turn whose lease was taken over",
    );
    assert_eq!(
        store.read_all(&id).await.unwrap(),
        before,
        "nothing written"
    );
    assert_eq!(store.get(&id).await.unwrap().last_seq, head);
    let before_u = head;
    let head = store
        .append(&id, head, turn_batch(head, &u, &main, "by u"))
        .await
        .expect("the new holder appends")
        .last_seq;
    // At the head it knew (now stale), T is told it lost its lease, not
    // sent to rebase on a conflict.
    assert_lease_lost(
        store
            .append(&id, before_u, turn_batch(before_u, &t, &main, "stale"))
            .await,
        &t,
        "a turn whose lease was taken over, at a stale head",
    );
    drop(lock_u);
    // Nobody holds it: T's append is still refused.
    assert_lease_lost(
        store
            .append(&id, head, turn_batch(head, &t, &main, "later"))
            .await,
        &t,
        "a turn without a lock",
    );
    assert_eq!(store.get(&id).await.unwrap().last_seq, head);
}

/// A lease whose holder stopped renewing (its runtime is gone, as when its
/// process is killed or paused) expires after `lease` (the store's lease,
/// short in tests): the lock reads as not live (an interrupted turn),
/// another turn takes it over, and the old turn's appends are refused.
pub async fn an_expired_lease_is_taken_over(store: Arc<dyn Store>, lease: Duration) {
    use weft_core::lease::{TurnHolder, TurnLockAttempt};
    let active = RecordKind::Status(StatusChange {
        from: SessionStatus::Created,
        to: SessionStatus::Active,
        error: None,
        details: None,
    });
    let id = store
        .create(new_meta("expiry"), vec![active])
        .await
        .unwrap()
        .id;
    let main = BranchId::main();
    let (t, u) = (TurnId::new_v7(), TurnId::new_v7());
    // T's lock, taken on a runtime that then stops: nothing renews or
    // releases it.
    let taken = {
        let (store, id, main, t) = (store.clone(), id.clone(), main.clone(), t.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                match store
                    .try_lock_turn(&id, &main, &TurnHolder::current().for_turn(&t))
                    .await
                {
                    Ok(TurnLockAttempt::Acquired(lock)) => {
                        std::mem::forget(lock);
                        true
                    }
                    _ => false,
                }
            })
        })
        .join()
        .unwrap()
    };
    assert!(taken, "a free turn lock is acquired");
    let holder_u = TurnHolder::current().for_turn(&u);
    assert!(
        matches!(
            store.try_lock_turn(&id, &main, &holder_u).await.unwrap(),
            TurnLockAttempt::Busy(_)
        ),
        "an unexpired lease is busy"
    );
    let deadline = Instant::now() + lease * 20 + Duration::from_secs(5);
    while !store.is_interrupted(&id).await.unwrap() {
        assert!(Instant::now() < deadline, "the lease never expired");
        tokio::time::sleep(lease / 4).await;
    }
    let locks = store.turn_locks(&id).await.unwrap();
    assert!(
        locks
            .iter()
            .any(|l| !l.live && l.holder.as_ref().and_then(|h| h.turn.as_ref()) == Some(&t)),
        "the expired lease names its turn: {locks:?}"
    );
    let TurnLockAttempt::Acquired(_lock_u) =
        store.try_lock_turn(&id, &main, &holder_u).await.unwrap()
    else {
        panic!("an expired lease is taken over");
    };
    assert!(!store.is_interrupted(&id).await.unwrap());
    let head = store.get(&id).await.unwrap().last_seq;
    assert_lease_lost(
        store
            .append(&id, head, turn_batch(head, &t, &main, "zombie"))
            .await,
        &t,
        "the turn whose lease expired",
    );
    store
        .append(&id, head, turn_batch(head, &u, &main, "by u"))
        .await
        .expect("the new holder appends");
}
