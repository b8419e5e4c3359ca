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
