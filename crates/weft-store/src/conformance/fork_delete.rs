//! Conformance: fork (at a turn, at a seq, bad points), cleanup and
//! delete.

use super::*;
use weft_core::testing::CountingProgress;

async fn fork_source(store: &dyn Store) -> (SessionId, Vec<Record>) {
    let mut meta = new_meta("fork");
    meta.set_tenant("alpha");
    let id = meta.id.clone();
    store
        .create(
            meta,
            vec![
                text(Role::User, "turn one"),
                calls(&["c1"]),
                result("c1", "file one"),
                text(Role::Assistant, "done one"),
            ],
        )
        .await
        .expect("create");
    let mut state = StateDelta::default();
    state.set.insert("k".into(), json!("v"));
    push(store, &id, vec![RecordKind::State(state)]).await; // seq 6
    push(
        store,
        &id,
        vec![
            text(Role::User, "turn two"),
            calls(&["c2", "c3"]),
            result("c3", "file three"),
        ],
    )
    .await; // seqs 7, 8, 9
    push(
        store,
        &id,
        vec![
            text(Role::User, "turn three"),
            text(Role::Assistant, "done three"),
        ],
    )
    .await; // 10, 11
    let records = store.read(&id, 1, None).await.expect("read");
    assert_eq!(records.len(), 11);
    (id, records)
}

/// Fork after a turn: the prefix, `forked_from` (and no parent link: a fork
/// is a top-level session of its own); the source untouched.
pub async fn fork_at_turn(store: Arc<dyn Store>) {
    let (src, before) = fork_source(&*store).await;
    let src_meta = store.get(&src).await.expect("get");
    let fork = store
        .fork(&src, ForkPoint::Turn(1), None, Some("first turn".into()))
        .await
        .expect("fork at turn 1");
    assert_ne!(fork.id, src);
    // The tenant (issue 16) is kept by the backend and taken by the fork.
    assert_eq!(src_meta.tenant(), Some("alpha"));
    assert_eq!(fork.tenant(), Some("alpha"));
    assert_eq!(
        store.get(&fork.id).await.expect("get fork").tenant(),
        Some("alpha")
    );
    assert_eq!(
        fork.parent_id, None,
        "a fork is not a delegated sub-session"
    );
    assert_eq!(fork.trace_id, fork.id, "a fork roots its own trace");
    assert_eq!(fork.name.as_deref(), Some("first turn"));
    let ff = fork.forked_from.clone().expect("forked_from");
    assert_eq!(ff.session_id, src);
    assert_eq!(ff.turn, 1);
    assert_eq!(
        ff.seq, 6,
        "turn 1 runs up to the record before turn 2's prompt"
    );
    assert_eq!(fork.project, src_meta.project);
    let view = store.view(&fork.id).await.expect("view");
    let texts: Vec<String> = view
        .messages("main")
        .iter()
        .map(|m| m.searchable_text())
        .collect();
    assert_eq!(texts.len(), 4);
    assert_eq!(texts[0], "turn one");
    assert_eq!(texts[3], "done one");
    assert_eq!(
        view.state.get("k"),
        Some(&json!("v")),
        "state up to the cut is copied"
    );
    assert_eq!(fork.turn_count, 1);
    assert_eq!(store.get(&fork.id).await.expect("get"), fork);

    let whole = store
        .fork(
            &src,
            ForkPoint::End,
            Some(SessionId::parse("fork-of-everything").expect("id")),
            None,
        )
        .await
        .expect("fork at the end");
    assert_eq!(whole.id.as_str(), "fork-of-everything");
    assert_eq!(whole.forked_from.as_ref().map(|f| f.turn), Some(3));
    assert_eq!(
        whole.message_count,
        src_meta.message_count + 1,
        "c2 gets a synthetic answer"
    );
    assert!(
        matches!(
            store
                .fork(&src, ForkPoint::End, Some(whole.id.clone()), None)
                .await,
            Err(StoreError::AlreadyExists(_))
        ),
        "forking into an existing id fails"
    );

    assert_eq!(
        store.read(&src, 1, None).await.expect("read"),
        before,
        "the source is untouched"
    );
    assert_eq!(store.get(&src).await.expect("get"), src_meta);
    let children = all_ids(
        &*store,
        ListFilter {
            parent_id: Some(src.clone()),
            ..Default::default()
        },
    )
    .await;
    assert!(children.is_empty(), "forks are not children: {children:?}");
}

/// What listings hide: delegated sub-sessions only
/// ([`SessionMeta::is_sub_session`]). A fork (even of a sub-session) is
/// listed with `top_level_only`, is the newest top-level session after it
/// is made, and the backend agrees with the core definition for every row.
pub async fn forks_are_listed_sub_sessions_hidden(store: Arc<dyn Store>) {
    let (src, _) = fork_source(&*store).await;
    let mut child = new_meta("hidden-rule");
    child.parent_id = Some(src.clone());
    child.agent_name = Some("helper".into());
    let child = store.create(child, vec![]).await.expect("create child");
    let fork = store
        .fork(&src, ForkPoint::Turn(1), None, None)
        .await
        .expect("fork");
    let fork_of_child = store
        .fork(&child.id, ForkPoint::End, None, None)
        .await
        .expect("fork a sub-session");
    let top = ListFilter {
        top_level_only: true,
        ..Default::default()
    };
    let listed = all_ids(&*store, top.clone()).await;
    assert!(listed.contains(&fork.id), "{listed:?}");
    assert!(listed.contains(&fork_of_child.id), "{listed:?}");
    assert!(listed.contains(&src), "{listed:?}");
    assert!(!listed.contains(&child.id), "sub-sessions stay hidden");
    let newest = store
        .list(&ListQuery {
            filter: top.clone(),
            cursor: None,
            limit: 1,
        })
        .await
        .expect("list");
    assert_eq!(
        newest.sessions.first().map(|m| &m.id),
        Some(&fork_of_child.id),
        "the newest top-level session is the last fork"
    );
    let forks = all_ids(
        &*store,
        ListFilter {
            forked_from: Some(src.clone()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(forks, vec![fork.id.clone()], "the forked_from filter");
    for id in all_ids(&*store, ListFilter::default()).await {
        let meta = store.get(&id).await.expect("get");
        assert_eq!(
            listed.contains(&id),
            !meta.is_sub_session(),
            "{id}: the backend's hidden rule differs from SessionMeta::is_sub_session"
        );
    }
}

/// Fork at a seq that cuts through a tool exchange: the unanswered call
/// gets a synthetic "interrupted by fork" result; answered ones do not.
pub async fn fork_at_seq_repairs_orphans(store: Arc<dyn Store>) {
    let (src, before) = fork_source(&*store).await;
    let fork = store
        .fork(&src, ForkPoint::Seq(9), None, None)
        .await
        .expect("fork at seq 9");
    assert_eq!(
        fork.forked_from.as_ref().map(|f| (f.turn, f.seq)),
        Some((2, 9))
    );
    let view = store.view(&fork.id).await.expect("view");
    let messages = view.messages("main");
    let last = messages.last().expect("messages");
    assert_eq!(last.role, Role::Tool);
    assert_eq!(
        last.tool_result_ids(),
        vec!["c2"],
        "only the unanswered call is repaired"
    );
    assert!(last.flag(META_SYNTHETIC));
    match &last.content[0] {
        ContentBlock::ToolResult {
            output, is_error, ..
        } => {
            assert_eq!(output, FORK_INTERRUPTED);
            assert!(*is_error);
        }
        other => panic!("want a tool result, got {other:?}"),
    }
    assert_eq!(
        weft_core::message::unanswered_tool_calls(messages.iter().copied()),
        vec![],
        "the fork has no orphaned tool calls"
    );
    // Cutting right after the call message: both calls are repaired.
    let fork8 = store
        .fork(&src, ForkPoint::Seq(8), None, None)
        .await
        .expect("fork at seq 8");
    let v8 = store.view(&fork8.id).await.expect("view");
    let repaired: Vec<String> = v8
        .messages("main")
        .iter()
        .filter(|m| m.flag(META_SYNTHETIC))
        .flat_map(|m| m.tool_result_ids().into_iter().map(str::to_string))
        .collect();
    assert_eq!(repaired, vec!["c2".to_string(), "c3".to_string()]);
    assert_eq!(
        store.read(&src, 1, None).await.expect("read"),
        before,
        "the source is untouched"
    );
}

/// Fork points outside the log are Invalid.
pub async fn fork_rejects_bad_points(store: Arc<dyn Store>) {
    let (src, _) = fork_source(&*store).await;
    for point in [
        ForkPoint::Turn(0),
        ForkPoint::Turn(4),
        ForkPoint::Seq(0),
        ForkPoint::Seq(12),
    ] {
        assert!(
            matches!(
                store.fork(&src, point, None, None).await,
                Err(StoreError::Invalid(_))
            ),
            "fork at {point:?} must be Invalid"
        );
    }
    assert_eq!(
        all_ids(&*store, ListFilter::default()).await,
        vec![src],
        "no session was created"
    );
}

/// cleanup removes old sessions, never an active one; dry-run removes
/// nothing.
pub async fn cleanup_spares_active_sessions(store: Arc<dyn Store>) {
    let old_ts = Utc::now() - chrono::Duration::days(30);
    let make = |name: &str| {
        let mut m = new_meta("cleanup");
        m.name = Some(name.into());
        m
    };
    let old = store.create(make("old"), vec![]).await.expect("create").id;
    push_at(
        &*store,
        &old,
        old_ts,
        vec![RecordKind::Status(StatusChange {
            from: SessionStatus::Created,
            to: SessionStatus::Completed,
            error: None,
            details: None,
        })],
    )
    .await;
    let old_created = store
        .create(make("old, never run"), vec![])
        .await
        .expect("create")
        .id;
    push_at(
        &*store,
        &old_created,
        old_ts,
        vec![text(Role::User, "hello")],
    )
    .await;
    let active = store
        .create(make("old but active"), vec![])
        .await
        .expect("create")
        .id;
    push_at(
        &*store,
        &active,
        old_ts,
        vec![RecordKind::Status(StatusChange {
            from: SessionStatus::Created,
            to: SessionStatus::Active,
            error: None,
            details: None,
        })],
    )
    .await;
    let recent = store
        .create(make("recent"), vec![])
        .await
        .expect("create")
        .id;

    let week = Duration::from_secs(7 * 24 * 3600);
    let dry = store.cleanup(week, true).await.expect("dry run");
    assert!(dry.dry_run);
    assert_eq!(set(&dry.removed), set(&[old.clone(), old_created.clone()]));
    assert_eq!(dry.kept_active, vec![active.clone()]);
    for id in [&old, &old_created, &active, &recent] {
        store.get(id).await.expect("a dry run removes nothing");
    }

    // The real one reports its progress: two sessions to remove, each done.
    let progress = CountingProgress::default();
    let real = store
        .cleanup_reporting(week, false, &progress)
        .await
        .expect("cleanup");
    assert_eq!(progress.total(), 2);
    assert_eq!(progress.done(), 2);
    assert!(!real.dry_run);
    assert_eq!(set(&real.removed), set(&[old.clone(), old_created.clone()]));
    assert_eq!(real.kept_active, vec![active.clone()]);
    assert!(store.get(&old).await.is_err_and(|e| e.is_not_found()));
    assert!(
        store
            .get(&old_created)
            .await
            .is_err_and(|e| e.is_not_found())
    );
    store.get(&active).await.expect("the active session stays");
    store.get(&recent).await.expect("the recent session stays");
    assert_eq!(
        set(&all_ids(&*store, ListFilter::default()).await),
        set(&[active, recent])
    );
}

/// delete removes one session, or a session and all its descendants; an
/// active session survives `unless_active`.
pub async fn delete_with_and_without_children(store: Arc<dyn Store>) {
    let child_of = |parent: &SessionId| {
        let mut m = new_meta("delete");
        m.parent_id = Some(parent.clone());
        m
    };
    let p = store
        .create(new_meta("delete"), vec![])
        .await
        .expect("create")
        .id;
    let c = store.create(child_of(&p), vec![]).await.expect("create").id;
    let g = store.create(child_of(&c), vec![]).await.expect("create").id;
    let q = store
        .create(new_meta("delete"), vec![])
        .await
        .expect("create")
        .id;

    let removed = store
        .delete(&c, DeleteOptions::default())
        .await
        .expect("delete c");
    assert_eq!(removed, vec![c.clone()]);
    assert!(store.get(&c).await.is_err_and(|e| e.is_not_found()));
    store
        .get(&g)
        .await
        .expect("without children, the grandchild stays");
    store.get(&p).await.expect("the parent stays");

    let c2 = store.create(child_of(&p), vec![]).await.expect("create").id;
    let g2 = store
        .create(child_of(&c2), vec![])
        .await
        .expect("create")
        .id;
    let c3 = store.create(child_of(&p), vec![]).await.expect("create").id;
    let removed = store
        .delete(
            &p,
            DeleteOptions {
                with_children: true,
                unless_active: false,
            },
        )
        .await
        .expect("delete p with children");
    assert_eq!(removed[0], p, "the session itself comes first");
    assert_eq!(
        set(&removed),
        set(&[p.clone(), c2.clone(), g2.clone(), c3.clone()])
    );
    for id in [&p, &c2, &g2, &c3] {
        assert!(
            store.get(id).await.is_err_and(|e| e.is_not_found()),
            "{id} is gone"
        );
    }
    assert_eq!(
        set(&all_ids(&*store, ListFilter::default()).await),
        set(&[g.clone(), q.clone()])
    );

    store
        .transition(&q, SessionStatus::Active, None, None)
        .await
        .expect("activate");
    let refuse = DeleteOptions {
        with_children: false,
        unless_active: true,
    };
    assert!(matches!(
        store.delete(&q, refuse).await,
        Err(StoreError::Refused(_))
    ));
    store
        .get(&q)
        .await
        .expect("a refused delete removes nothing");
    assert_eq!(
        store
            .delete(&q, DeleteOptions::default())
            .await
            .expect("delete"),
        vec![q.clone()]
    );
    assert!(store.get(&q).await.is_err_and(|e| e.is_not_found()));
    let recreated = store
        .create(new_meta("delete"), vec![])
        .await
        .expect("create");
    assert_eq!(
        set(&all_ids(&*store, ListFilter::default()).await),
        set(&[g, recreated.id])
    );
}
