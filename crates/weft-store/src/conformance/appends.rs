//! Conformance: create / get / append basics, NotFound and duplicate
//! errors, atomic batches, `expected_seq` conflicts and racing appenders.

use super::*;

/// create → get → append → read / tail / view.
pub async fn create_get_read_tail(store: Arc<dyn Store>) {
    let meta = new_meta("basics");
    let id = meta.id.clone();
    let created = store
        .create(meta, vec![text(Role::User, "hello there")])
        .await
        .expect("create");
    assert_eq!(
        created.last_seq, 2,
        "create writes session_created plus the initial records"
    );
    assert_eq!(created.message_count, 1);
    assert_eq!(created.turn_count, 1);
    assert_eq!(created.last_prompt.as_deref(), Some("hello there"));
    assert_eq!(
        store.get(&id).await.expect("get"),
        created,
        "get returns what create returned"
    );

    let batch = Record::batch(2, [text(Role::Assistant, "general kenobi")]);
    let after = store.append(&id, 2, batch.clone()).await.expect("append");
    assert_eq!(after.last_seq, 3);
    assert_eq!(after.message_count, 2);
    assert_eq!(
        store.get(&id).await.expect("get"),
        after,
        "get sees the append"
    );

    let all = store.read(&id, 1, None).await.expect("read");
    assert_eq!(seqs(&all), vec![1, 2, 3]);
    assert!(matches!(all[0].kind, RecordKind::SessionCreated(_)));
    assert_eq!(all[2], batch[0], "records come back exactly as appended");
    assert_eq!(
        store.read(&id, 0, None).await.expect("read 0").len(),
        3,
        "from_seq 0 reads from the start"
    );
    assert_eq!(
        seqs(&store.read(&id, 2, Some(1)).await.expect("read")),
        vec![2]
    );
    assert_eq!(
        seqs(&store.read(&id, 2, None).await.expect("read")),
        vec![2, 3]
    );
    assert!(
        store
            .read(&id, 4, None)
            .await
            .expect("read past the head")
            .is_empty()
    );
    assert!(
        store
            .read(&id, 1, Some(0))
            .await
            .expect("read limit 0")
            .is_empty()
    );

    assert_eq!(seqs(&store.tail(&id, 2).await.expect("tail")), vec![2, 3]);
    assert_eq!(
        seqs(&store.tail(&id, 10).await.expect("tail")),
        vec![1, 2, 3]
    );
    assert!(store.tail(&id, 0).await.expect("tail 0").is_empty());

    let view = store.view(&id).await.expect("view");
    let texts: Vec<String> = view
        .messages("main")
        .iter()
        .map(|m| m.text_content())
        .collect();
    assert_eq!(texts, vec!["hello there", "general kenobi"]);
}

/// Every operation on an unknown session is NotFound.
pub async fn not_found_errors(store: Arc<dyn Store>) {
    let id = SessionId::new_v7();
    let nf = |r: Result<(), StoreError>, op: &str| match r {
        Err(StoreError::NotFound(_)) => {}
        other => panic!("{op} on an unknown session: want NotFound, got {other:?}"),
    };
    nf(store.get(&id).await.map(|_| ()), "get");
    nf(
        store
            .append(&id, 1, Record::batch(1, [text(Role::User, "x")]))
            .await
            .map(|_| ()),
        "append",
    );
    nf(store.read(&id, 1, None).await.map(|_| ()), "read");
    nf(store.tail(&id, 5).await.map(|_| ()), "tail");
    nf(
        store
            .delete(&id, DeleteOptions::default())
            .await
            .map(|_| ()),
        "delete",
    );
    nf(
        store.write_events(&id, &[json!({"event": "x"})]).await,
        "write_events",
    );
    nf(store.read_events(&id, 5).await.map(|_| ()), "read_events");
    nf(
        store
            .fork(&id, ForkPoint::End, None, None)
            .await
            .map(|_| ()),
        "fork",
    );
}

/// A second create with the same id fails and changes nothing.
pub async fn duplicate_create_fails(store: Arc<dyn Store>) {
    let meta = new_meta("dup");
    let first = store
        .create(meta.clone(), vec![text(Role::User, "one")])
        .await
        .expect("create");
    let mut again = meta.clone();
    again.name = Some("impostor".into());
    match store.create(again, vec![]).await {
        Err(StoreError::AlreadyExists(id)) => assert_eq!(id, meta.id.to_string()),
        other => panic!("duplicate create: want AlreadyExists, got {other:?}"),
    }
    // Also across projects.
    let mut elsewhere = meta.clone();
    elsewhere.project = project("dup-elsewhere");
    assert!(
        matches!(
            store.create(elsewhere, vec![]).await,
            Err(StoreError::AlreadyExists(_))
        ),
        "an id is unique across projects"
    );
    assert_eq!(store.get(&meta.id).await.expect("get"), first);
    assert_eq!(store.read(&meta.id, 1, None).await.expect("read").len(), 2);
}

/// A malformed batch writes nothing: not the records before the bad one,
/// not the ones after.
pub async fn batch_is_atomic(store: Arc<dyn Store>) {
    let meta = new_meta("atomic");
    let id = meta.id.clone();
    store.create(meta, vec![]).await.expect("create");
    let before = store.read(&id, 1, None).await.expect("read");

    let mut bad = Record::batch(
        1,
        [
            text(Role::User, "a"),
            text(Role::Assistant, "b"),
            text(Role::User, "c"),
        ],
    );
    bad[1].seq = 7;
    assert!(
        matches!(
            store.append(&id, 1, bad).await,
            Err(StoreError::InvalidBatch(_))
        ),
        "a batch with a gap in the middle is rejected"
    );
    let mut create_inside = Record::batch(1, [text(Role::User, "a"), text(Role::User, "b")]);
    create_inside[1].kind = RecordKind::SessionCreated(Box::new(new_meta("atomic")));
    assert!(
        matches!(
            store.append(&id, 1, create_inside).await,
            Err(StoreError::InvalidBatch(_))
        ),
        "session_created is only ever seq 1"
    );
    assert!(
        matches!(
            store.append(&id, 1, Vec::new()).await,
            Err(StoreError::InvalidBatch(_))
        ),
        "an empty batch is rejected"
    );
    assert_eq!(
        store.read(&id, 1, None).await.expect("read"),
        before,
        "nothing was written"
    );
    assert_eq!(store.get(&id).await.expect("get").last_seq, 1);

    // A good batch of several lands whole.
    let good = Record::batch(1, (0..5).map(|i| text(Role::User, &format!("m{i}"))));
    let meta = store.append(&id, 1, good.clone()).await.expect("append");
    assert_eq!(meta.last_seq, 6);
    assert_eq!(store.read(&id, 2, None).await.expect("read"), good);
}

/// An append with a stale `expected_seq` is a Conflict and writes nothing.
pub async fn stale_expected_seq_conflicts(store: Arc<dyn Store>) {
    let meta = new_meta("conflict");
    let id = meta.id.clone();
    store
        .create(
            meta,
            vec![text(Role::User, "a"), text(Role::Assistant, "b")],
        )
        .await
        .expect("create");
    let before = store.read(&id, 1, None).await.expect("read");
    for expected in [1u64, 2, 4, 99] {
        match store
            .append(
                &id,
                expected,
                Record::batch(expected, [text(Role::User, "late")]),
            )
            .await
        {
            Err(StoreError::Conflict {
                expected: e,
                actual,
                ..
            }) => {
                assert_eq!(e, expected);
                assert_eq!(actual, 3, "the conflict names the real head");
            }
            other => panic!(
                "append expecting seq {expected} on a log at 3: want Conflict, got {other:?}"
            ),
        }
    }
    assert_eq!(
        store.read(&id, 1, None).await.expect("read"),
        before,
        "nothing was written"
    );
    assert_eq!(store.get(&id).await.expect("get").last_seq, 3);
}

/// Two tasks append at the same expected seq, round after round: exactly one
/// wins each round, and the log ends gapless with each round's winner once.
pub async fn racing_appenders_one_wins_each_round(store: Arc<dyn Store>) {
    const ROUNDS: usize = 40;
    let meta = new_meta("race");
    let id = meta.id.clone();
    store.create(meta, vec![]).await.expect("create");
    let mut winners = Vec::new();
    for round in 0..ROUNDS {
        let head = store.get(&id).await.expect("get").last_seq;
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let mut tasks = Vec::new();
        for writer in 0..2 {
            let (store, id, barrier) = (store.clone(), id.clone(), barrier.clone());
            tasks.push(tokio::spawn(async move {
                let tag = format!("round {round} writer {writer}");
                let batch = Record::batch(head, [text(Role::User, &tag)]);
                barrier.wait().await;
                (tag, store.append(&id, head, batch).await)
            }));
        }
        let mut ok = Vec::new();
        for t in tasks {
            let (tag, r) = t.await.expect("task");
            match r {
                Ok(m) => {
                    assert_eq!(m.last_seq, head + 1);
                    ok.push(tag);
                }
                Err(StoreError::Conflict { actual, .. }) => assert_eq!(actual, head + 1),
                Err(e) => panic!("racing append failed with {e}"),
            }
        }
        assert_eq!(
            ok.len(),
            1,
            "round {round}: exactly one writer wins, got {ok:?}"
        );
        winners.extend(ok);
    }
    let records = store.read(&id, 1, None).await.expect("read");
    assert_eq!(
        seqs(&records),
        (1..=1 + ROUNDS as u64).collect::<Vec<_>>(),
        "the log is gapless"
    );
    let texts: Vec<String> = records
        .iter()
        .filter_map(|r| r.as_message())
        .map(|m| m.text_content())
        .collect();
    assert_eq!(
        texts, winners,
        "each round's winner is in the log once, in order"
    );
}

/// Two writers retrying on conflict: every record lands exactly once.
pub async fn racing_appenders_lose_nothing(store: Arc<dyn Store>) {
    const EACH: usize = 25;
    let meta = new_meta("race2");
    let id = meta.id.clone();
    store.create(meta, vec![]).await.expect("create");
    let mut tasks = Vec::new();
    for writer in 0..2 {
        let (store, id) = (store.clone(), id.clone());
        tasks.push(tokio::spawn(async move {
            let mut conflicts = 0;
            for i in 0..EACH {
                loop {
                    let head = store.get(&id).await.expect("get").last_seq;
                    let batch = Record::batch(
                        head,
                        [
                            text(Role::User, &format!("w{writer}-{i}")),
                            text(Role::Assistant, &format!("w{writer}-{i}-reply")),
                        ],
                    );
                    match store.append(&id, head, batch).await {
                        Ok(_) => break,
                        Err(StoreError::Conflict { .. }) => {
                            conflicts += 1;
                            tokio::task::yield_now().await;
                        }
                        Err(e) => panic!("append failed: {e}"),
                    }
                }
            }
            conflicts
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let records = store.read(&id, 1, None).await.expect("read");
    let n = 1 + 2 * 2 * EACH as u64;
    assert_eq!(
        seqs(&records),
        (1..=n).collect::<Vec<_>>(),
        "gapless, nothing lost or duplicated"
    );
    let texts: Vec<String> = records
        .iter()
        .filter_map(|r| r.as_message())
        .map(|m| m.text_content())
        .collect();
    let unique: HashSet<&String> = texts.iter().collect();
    assert_eq!(unique.len(), texts.len(), "no record is duplicated");
    for w in 0..2 {
        for i in 0..EACH {
            let pos = texts
                .iter()
                .position(|t| t == &format!("w{w}-{i}"))
                .expect("every record landed");
            assert_eq!(
                texts[pos + 1],
                format!("w{w}-{i}-reply"),
                "batches are not interleaved"
            );
        }
    }
}
