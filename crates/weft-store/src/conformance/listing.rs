//! Conformance: listing (cursor paging, filters, bad cursors), full-text
//! search and `resolve` by id prefix.

use super::*;

/// Paging with a cursor while other tasks keep creating sessions: no
/// duplicates, no gaps, newest first.
pub async fn cursor_paging_while_creating(store: Arc<dyn Store>) {
    let mut originals = Vec::new();
    for _ in 0..30 {
        originals.push(
            store
                .create(new_meta("paging"), vec![])
                .await
                .expect("create")
                .id,
        );
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let creator = {
        let (store, stop) = (store.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                store
                    .create(new_meta("paging"), vec![])
                    .await
                    .expect("background create");
                n += 1;
                tokio::task::yield_now().await;
            }
            n
        })
    };
    let filter = ListFilter {
        project: Some(project("paging").slug),
        ..Default::default()
    };
    let mut seen: Vec<SessionMeta> = Vec::new();
    let mut query = ListQuery {
        filter,
        cursor: None,
        limit: 7,
    };
    loop {
        let page = store.list(&query).await.expect("list");
        assert!(
            page.sessions.len() <= 7,
            "a page holds at most `limit` sessions"
        );
        seen.extend(page.sessions);
        tokio::time::sleep(Duration::from_millis(2)).await;
        match page.next_cursor {
            Some(c) => query.cursor = Some(c),
            None => break,
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let created_meanwhile = creator.await.expect("creator");
    let seen_ids = ids(&seen);
    let unique: HashSet<&SessionId> = seen_ids.iter().collect();
    assert_eq!(
        unique.len(),
        seen_ids.len(),
        "no session appears twice across pages"
    );
    for id in &originals {
        assert!(
            unique.contains(id),
            "session {id} was skipped by the paging"
        );
    }
    for w in seen.windows(2) {
        assert_eq!(
            list_order(&w[0], &w[1]),
            std::cmp::Ordering::Less,
            "pages run newest first"
        );
    }
    assert!(created_meanwhile > 0, "the background writer ran");
}

/// Every list filter, alone.
pub async fn list_filters(store: Arc<dyn Store>) {
    let mut a1 = new_meta("filters-a");
    a1.name = Some("Alpha build".into());
    let a1 = store.create(a1, vec![]).await.expect("create");
    store
        .transition(&a1.id, SessionStatus::Active, None, None)
        .await
        .expect("activate");
    store
        .transition(&a1.id, SessionStatus::Completed, None, None)
        .await
        .expect("complete");
    let mut a2 = new_meta("filters-a");
    a2.name = Some("beta".into());
    a2.parent_id = Some(a1.id.clone());
    let a2 = store.create(a2, vec![]).await.expect("create");
    store
        .transition(&a2.id, SessionStatus::Active, None, None)
        .await
        .expect("activate");
    let mut b1 = new_meta("filters-b");
    b1.name = Some("the ÄLPHA test".into());
    b1.profile = "dev".into();
    let b1 = store.create(b1, vec![]).await.expect("create");
    let b2 = store
        .create(new_meta("filters-b"), vec![])
        .await
        .expect("create");

    let list = |filter: ListFilter| {
        let store = store.clone();
        async move { all_ids(&*store, filter).await }
    };
    assert_eq!(
        list(ListFilter::default()).await,
        vec![b2.id.clone(), b1.id.clone(), a2.id.clone(), a1.id.clone()],
        "newest (last updated) first"
    );
    assert_eq!(
        list(ListFilter {
            project: Some(project("filters-a").slug),
            ..Default::default()
        })
        .await,
        vec![a2.id.clone(), a1.id.clone()]
    );
    assert_eq!(
        list(ListFilter {
            status: Some(SessionStatus::Active),
            ..Default::default()
        })
        .await,
        vec![a2.id.clone()]
    );
    assert_eq!(
        list(ListFilter {
            status: Some(SessionStatus::Created),
            ..Default::default()
        })
        .await,
        vec![b2.id.clone(), b1.id.clone()]
    );
    assert_eq!(
        list(ListFilter {
            parent_id: Some(a1.id.clone()),
            ..Default::default()
        })
        .await,
        vec![a2.id.clone()]
    );
    assert_eq!(
        list(ListFilter {
            name_contains: Some("alpha".into()),
            ..Default::default()
        })
        .await,
        vec![a1.id.clone()],
        "name filter is a case-insensitive substring"
    );
    assert_eq!(
        list(ListFilter {
            name_contains: Some("äLpHa".into()),
            ..Default::default()
        })
        .await,
        vec![b1.id.clone()],
        "case folding is Unicode-aware"
    );
    assert_eq!(
        list(ListFilter {
            top_level_only: true,
            ..Default::default()
        })
        .await,
        vec![b2.id.clone(), b1.id.clone(), a1.id.clone()]
    );
    assert_eq!(
        list(ListFilter {
            profile: Some("dev".into()),
            ..Default::default()
        })
        .await,
        vec![b1.id.clone()]
    );
    assert_eq!(
        list(ListFilter {
            project: Some(project("filters-b").slug),
            top_level_only: true,
            name_contains: Some("test".into()),
            ..Default::default()
        })
        .await,
        vec![b1.id.clone()],
        "filters combine"
    );
    // Limit 1 pages one by one.
    let page = store
        .list(&ListQuery {
            limit: 1,
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(ids(&page.sessions), vec![b2.id.clone()]);
    assert_eq!(page.next_cursor, Some(ListCursor::after(&page.sessions[0])));
    let last_page = store
        .list(&ListQuery {
            limit: 10,
            cursor: Some(ListCursor::after(&a2)),
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(ids(&last_page.sessions), vec![a1.id.clone()]);
    assert_eq!(last_page.next_cursor, None, "no cursor after the last page");
}

/// Full-text search over message text, across sessions and projects.
pub async fn search_across_sessions(store: Arc<dyn Store>) {
    let a = store
        .create(
            new_meta("search-a"),
            vec![
                text(Role::User, "The Quick brown fox"),
                text(Role::Assistant, "jumps over"),
            ],
        )
        .await
        .expect("create")
        .id;
    let b = store
        .create(
            new_meta("search-b"),
            vec![text(Role::User, "quicksilver moves")],
        )
        .await
        .expect("create")
        .id;
    let c = store
        .create(
            new_meta("search-a"),
            vec![
                text(Role::User, "read it"),
                calls(&["k1"]),
                result("k1", "QUICK results here"),
            ],
        )
        .await
        .expect("create")
        .id;
    let search = |text: &str, project: Option<&str>, limit: usize| {
        let store = store.clone();
        let q = SearchQuery {
            text: text.into(),
            project: project.map(|p| crate::conformance::project(p).slug),
            limit,
        };
        async move { store.search(&q).await.expect("search") }
    };
    let hits = search("quick", None, 0).await;
    let found: BTreeSet<String> = hits.iter().map(|h| h.session_id.to_string()).collect();
    assert_eq!(
        found,
        set(&[a.clone(), b.clone(), c.clone()]),
        "matches are case-insensitive substrings"
    );
    let in_a = search("QUICK", Some("search-a"), 0).await;
    assert_eq!(
        in_a.iter()
            .map(|h| h.session_id.to_string())
            .collect::<BTreeSet<_>>(),
        set(&[a.clone(), c.clone()]),
        "the project filter restricts hits"
    );
    let both = search("quick fox", None, 0).await;
    assert_eq!(both.len(), 1, "every term must occur");
    let hit = &both[0];
    assert_eq!(hit.session_id, a);
    assert_eq!(hit.seq, 2);
    assert_eq!(hit.role, Role::User);
    assert_eq!(hit.project, project("search-a").slug);
    assert!(
        hit.snippet.contains("Quick brown fox"),
        "snippet: {}",
        hit.snippet
    );
    let tool = search("results", None, 0).await;
    assert_eq!(tool.len(), 1);
    assert_eq!(
        (tool[0].session_id.clone(), tool[0].role),
        (c.clone(), Role::Tool)
    );
    let call = search("k1.txt", None, 0).await;
    assert_eq!(call.len(), 1, "tool call arguments are searchable");
    assert_eq!(call[0].role, Role::Assistant);
    assert_eq!(
        search("ck", None, 0).await.len(),
        3,
        "short terms match too"
    );
    assert_eq!(search("quick", None, 2).await.len(), 2, "the limit holds");
    assert!(search("zebra", None, 0).await.is_empty());
    assert!(
        search("   ", None, 0).await.is_empty(),
        "an empty query finds nothing"
    );
}

/// `resolve`: exact ids, unique prefixes, ambiguous and unknown ones.
pub async fn resolve_prefixes(store: Arc<dyn Store>) {
    for raw in ["abc111", "abc222", "xyz333", "xyz3334"] {
        let mut m = new_meta("resolve");
        m.id = SessionId::parse(raw).expect("id");
        m.trace_id = m.id.clone();
        store.create(m, vec![]).await.expect("create");
    }
    assert_eq!(
        store.resolve("abc1").await.expect("unique prefix").as_str(),
        "abc111"
    );
    assert_eq!(
        store.resolve("xyz333").await.expect("exact id").as_str(),
        "xyz333",
        "an exact id wins over a longer match"
    );
    match store.resolve("abc").await {
        Err(StoreError::Ambiguous { prefix, candidates }) => {
            assert_eq!(prefix, "abc");
            assert_eq!(candidates, vec!["abc111".to_string(), "abc222".to_string()]);
        }
        other => panic!("want Ambiguous, got {other:?}"),
    }
    assert!(matches!(
        store.resolve("nope").await,
        Err(StoreError::NoMatch(_))
    ));
    assert!(matches!(
        store.resolve("../etc").await,
        Err(StoreError::InvalidId(_))
    ));
    assert!(matches!(
        store.resolve("").await,
        Err(StoreError::InvalidId(_))
    ));
    assert_eq!(
        store.find_ids("xyz", 1).await.expect("find_ids").len(),
        1,
        "find_ids honours its limit"
    );
    assert!(store.find_ids("q", 10).await.expect("find_ids").is_empty());
}

/// Cursors: garbage is Invalid; a cursor past a deleted session still pages.
pub async fn invalid_cursor(store: Arc<dyn Store>) {
    for bad in ["", "garbage", "12.", ".abc", "x.abc", "1.../etc"] {
        assert!(
            matches!(ListCursor::decode(bad), Err(StoreError::Invalid(_))),
            "cursor {bad:?} must be rejected"
        );
    }
    let a = store
        .create(new_meta("cursor"), vec![])
        .await
        .expect("create");
    let b = store
        .create(new_meta("cursor"), vec![])
        .await
        .expect("create");
    let cursor = ListCursor::after(&b);
    let decoded = ListCursor::decode(&cursor.encode()).expect("round trip");
    assert_eq!(
        decoded.encode(),
        cursor.encode(),
        "cursors round-trip (at microsecond precision)"
    );
    assert_eq!(decoded.id, b.id);
    store
        .delete(&b.id, DeleteOptions::default())
        .await
        .expect("delete");
    let page = store
        .list(&ListQuery {
            cursor: Some(cursor),
            ..Default::default()
        })
        .await
        .expect("a cursor naming a deleted session still works");
    assert_eq!(ids(&page.sessions), vec![a.id]);
    let _ = RECORD_VERSION;
}
