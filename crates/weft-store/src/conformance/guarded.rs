//! Conformance: [`Store::append_guarded`], the append numbered at whatever
//! the head is, written only when the session there passes a guard.

use weft_core::store::HeadGuard;

use super::*;

/// The guard of an active session on `main`.
fn active_on_main() -> HeadGuard {
    HeadGuard {
        status: SessionStatus::Active,
        default_branch: BranchId::main(),
    }
}

/// A message with usage and a model, as a provider's reply is.
fn reply(text: &str, model: &str, usage: Usage) -> RecordKind {
    let mut message = Message::text(BranchId::main(), Role::Assistant, text);
    message.model = Some(model.into());
    message.usage = Some(usage);
    RecordKind::message(message)
}

/// A guarded append lands after the head, numbered there, with the
/// metadata folded exactly as [`SessionMeta::apply`] folds its records;
/// a guard that does not hold writes nothing; an unknown session is not
/// found.
pub async fn guarded_appends_land_at_the_head(store: Arc<dyn Store>) {
    let meta = new_meta("guarded");
    let id = meta.id.clone();
    store
        .create(meta, vec![text(Role::User, "first prompt")])
        .await
        .expect("create");
    assert!(
        store
            .append_guarded(&id, &active_on_main(), vec![text(Role::User, "early")])
            .await
            .expect("guarded append to a created session")
            .is_none(),
        "a created session is not active: the guard fails"
    );
    store
        .transition(&id, SessionStatus::Active, None, None)
        .await
        .expect("start");
    let usage = Usage {
        input_tokens: 10,
        output_tokens: 20,
        cache_read_tokens: 3,
        cache_creation_tokens: 0,
    };
    let before = push(&*store, &id, vec![reply("hello", "model-a", usage)]).await;
    for (n, batch) in [
        vec![text(Role::User, "second prompt")],
        vec![
            text(Role::User, "third prompt"),
            reply("there", "model-b", usage),
            text(Role::Assistant, ""),
        ],
        vec![RecordKind::Meta(MetaPatch {
            name: Some("renamed".into()),
            ..Default::default()
        })],
    ]
    .into_iter()
    .enumerate()
    {
        let head = store.get(&id).await.expect("get").last_seq;
        let (records, meta) = store
            .append_guarded(&id, &active_on_main(), batch.clone())
            .await
            .expect("guarded append")
            .expect("the guard holds");
        assert_eq!(
            seqs(&records),
            (head + 1..=head + batch.len() as u64).collect::<Vec<_>>(),
            "batch {n} numbered after the head"
        );
        assert_eq!(
            records.iter().map(|r| r.kind.clone()).collect::<Vec<_>>(),
            batch
        );
        let mut expected = store.read(&id, 1, Some(head as usize)).await.expect("read");
        expected.extend(records.iter().cloned());
        let mut folded = before.clone();
        for r in &expected[before.last_seq as usize..] {
            folded.apply(r);
        }
        assert_eq!(meta, folded, "batch {n}: the metadata follows the log");
        assert_eq!(store.get(&id).await.expect("get"), meta, "batch {n}");
        assert_eq!(
            store.read(&id, head + 1, None).await.expect("read"),
            records,
            "batch {n}: read back as returned"
        );
    }
    let meta = store.get(&id).await.expect("get");
    assert_eq!(
        meta.model.as_deref(),
        Some("model-a"),
        "the first model stays"
    );
    assert_eq!(meta.last_prompt.as_deref(), Some("third prompt"));
    assert_eq!(
        (meta.usage.input_tokens, meta.usage.cache_read_tokens),
        (20, 6)
    );
    // A plain append from the returned metadata's head still works.
    push(&*store, &id, vec![text(Role::User, "plain")]).await;

    let elsewhere = HeadGuard {
        default_branch: BranchId::parse("side").expect("branch id"),
        ..active_on_main()
    };
    let head = store.get(&id).await.expect("get").last_seq;
    assert!(
        store
            .append_guarded(&id, &elsewhere, vec![text(Role::User, "lost")])
            .await
            .expect("guarded append")
            .is_none(),
        "another default branch: the guard fails"
    );
    assert_eq!(
        store.get(&id).await.expect("get").last_seq,
        head,
        "nothing written"
    );
    let unknown = SessionId::new_v7();
    assert!(matches!(
        store
            .append_guarded(&unknown, &active_on_main(), vec![text(Role::User, "x")])
            .await,
        Err(StoreError::NotFound(_))
    ));
}

/// Guarded appends racing each other and plain appends: every one lands
/// once, the log stays gapless and the counts exact.
pub async fn racing_guarded_appends_lose_nothing(store: Arc<dyn Store>) {
    const EACH: usize = 15;
    let id = active_session(&*store, "guarded-race", vec![]).await;
    let mut tasks = Vec::new();
    for writer in 0..3 {
        let (store, id) = (store.clone(), id.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..EACH {
                let batch = vec![
                    text(Role::User, &format!("w{writer}-{i}")),
                    text(Role::Assistant, &format!("w{writer}-{i}-reply")),
                ];
                if writer == 2 {
                    // Plain appends from the head they read, retried on a
                    // conflict.
                    loop {
                        let head = store.get(&id).await.expect("get").last_seq;
                        match store
                            .append(&id, head, Record::batch(head, batch.clone()))
                            .await
                        {
                            Ok(_) => break,
                            Err(StoreError::Conflict { .. }) => tokio::task::yield_now().await,
                            Err(e) => panic!("append failed: {e}"),
                        }
                    }
                } else {
                    // A store that checks the guard at a head it read may
                    // give up on a session that keeps changing (a
                    // conflict, nothing written); the caller tries again.
                    loop {
                        match store
                            .append_guarded(&id, &active_on_main(), batch.clone())
                            .await
                        {
                            Ok(done) => {
                                assert!(done.is_some(), "the guard holds");
                                break;
                            }
                            Err(StoreError::Conflict { .. }) => tokio::task::yield_now().await,
                            Err(e) => panic!("guarded append failed: {e}"),
                        }
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let records = store.read(&id, 1, None).await.expect("read");
    let n = 2 + 3 * 2 * EACH as u64;
    assert_eq!(seqs(&records), (1..=n).collect::<Vec<_>>(), "gapless");
    let texts: HashSet<String> = records
        .iter()
        .filter_map(|r| r.as_message())
        .map(|m| m.text_content())
        .collect();
    assert_eq!(texts.len(), 3 * 2 * EACH, "each message once");
    let meta = store.get(&id).await.expect("get");
    assert_eq!(meta.last_seq, n);
    assert_eq!(meta.message_count, 3 * 2 * EACH as u64);
    assert_eq!(meta.turn_count, 3 * EACH as u64);
}
