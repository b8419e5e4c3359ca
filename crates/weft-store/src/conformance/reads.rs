//! Conformance: reading the log back — `tail` cost, every record kind
//! round-tripping, and metadata folded from the log.

use super::*;

async fn min_tail_time(store: &dyn Store, id: &SessionId, runs: usize) -> Duration {
    let mut best = Duration::MAX;
    for _ in 0..runs {
        let t = Instant::now();
        let r = store.tail(id, 10).await.expect("tail");
        best = best.min(t.elapsed());
        assert_eq!(r.len(), 10);
    }
    best
}

/// `tail(10)` on a 20,000-record log costs about what it costs on a
/// 100-record log (checked generously: within 20× plus 5 ms), and
/// `read(from, limit)` in the middle of the long log returns the right
/// records.
pub async fn tail_cost_is_independent_of_log_length(store: Arc<dyn Store>) {
    let body = "lorem ipsum dolor sit amet ".repeat(16);
    let build = |n: usize| {
        let store = store.clone();
        let body = body.clone();
        async move {
            let meta = new_meta("tail");
            let id = meta.id.clone();
            store.create(meta, vec![]).await.expect("create");
            let mut head = 1u64;
            while (head as usize) < n {
                let k = (n - head as usize).min(1000);
                let kinds = (0..k).map(|i| {
                    text(
                        if i % 2 == 0 {
                            Role::User
                        } else {
                            Role::Assistant
                        },
                        &body,
                    )
                });
                head = store
                    .append(&id, head, Record::batch(head, kinds))
                    .await
                    .expect("append")
                    .last_seq;
            }
            id
        }
    };
    let short = build(100).await;
    let long = build(20_000).await;
    let t_short = min_tail_time(&*store, &short, 7).await;
    let t_long = min_tail_time(&*store, &long, 7).await;
    assert!(
        t_long <= t_short * 20 + Duration::from_millis(5),
        "tail(10) took {t_long:?} on 20,000 records but {t_short:?} on 100: tail must not read the whole log"
    );
    let tail = store.tail(&long, 10).await.expect("tail");
    assert_eq!(seqs(&tail), (19_991..=20_000).collect::<Vec<_>>());
    let mid = store.read(&long, 12_345, Some(3)).await.expect("read");
    assert_eq!(seqs(&mid), vec![12_345, 12_346, 12_347]);
    let end = store.read(&long, 19_999, None).await.expect("read");
    assert_eq!(seqs(&end), vec![19_999, 20_000]);
}

/// A record of every kind comes back equal, and the view folds them.
pub async fn every_record_kind_round_trips(store: Arc<dyn Store>) {
    let meta = new_meta("kinds");
    let id = meta.id.clone();
    store.create(meta, vec![]).await.expect("create");
    let now = Utc::now();
    let side = BranchId::parse("side").expect("branch id");
    let mut state = StateDelta::default();
    state.set.insert("color".into(), json!("blue"));
    state.set.insert("n".into(), json!(3));
    let mut with_usage = Message::new(
        BranchId::main(),
        Role::Assistant,
        vec![
            ContentBlock::Thinking {
                thinking: "hmm".into(),
                signature: Some("sig".into()),
            },
            ContentBlock::text("ünïcödé \"quoted\" \\ and\nnewlines\t🎉"),
        ],
    );
    with_usage.usage = Some(Usage {
        input_tokens: 10,
        output_tokens: 5,
        cache_read_tokens: 1,
        cache_creation_tokens: 0,
    });
    with_usage.model = Some("m-1".into());
    let mut tool_result = Message::new(
        BranchId::main(),
        Role::Tool,
        vec![ContentBlock::ToolResult {
            call_id: "c1".into(),
            output: "Sub-agent helper answered: ok".into(),
            is_error: false,
        }],
    );
    tool_result.metadata.insert(
        weft_core::message::META_TOOL_DATA.into(),
        json!({"session_id": "p-c_helper", "agent": "helper", "response": "ok", "status": "completed"}),
    );
    // A structured turn's validated answer (key order kept).
    with_usage.structured = Some(json!({"zeta": 1, "alpha": [true, null, 2.5, "ü"], "o": {}}));
    let kinds = vec![
        text(Role::User, "hi"),
        RecordKind::message(with_usage),
        RecordKind::message(tool_result),
        RecordKind::State(state),
        RecordKind::Meta(MetaPatch {
            name: Some("kinds".into()),
            ..Default::default()
        }),
        RecordKind::BranchCreated(Branch {
            id: side.clone(),
            name: "side".into(),
            created_at: now,
            created_from: Some(SplitFrom {
                branch: BranchId::main(),
                upto_seq: 2,
            }),
            system: Some("be brief".into()),
            system_sender: Some("lead".into()),
            system_datetime: Some("2026-01-01T00:00Z".into()),
            user: Some("ana".into()),
            tools: vec!["bash".into()],
            model: None,
            provider: None,
        }),
        RecordKind::MailSent(Mail {
            id: "mail-1".into(),
            from: BranchId::main(),
            to: vec![side.clone()],
            broadcast: false,
            category: MailCategory::Message,
            item: json!("hello side"),
            sent_at: now,
        }),
        RecordKind::MailCollected {
            mail_id: "mail-1".into(),
            recipient: side.clone(),
        },
        RecordKind::Compaction {
            branch: BranchId::main(),
            upto_seq: 2,
            summary: "greetings".into(),
        },
        RecordKind::Usage {
            usage: Usage {
                input_tokens: 1,
                ..Default::default()
            },
            model: None,
        },
        RecordKind::Rewind {
            branch: side.clone(),
            to_seq: 3,
        },
        RecordKind::DefaultBranch {
            branch: side.clone(),
        },
        RecordKind::BranchRemoved {
            branch: side,
            delete: false,
        },
        RecordKind::Status(StatusChange {
            from: SessionStatus::Created,
            to: SessionStatus::Active,
            error: None,
            details: Some(json!({"why": "test"})),
        }),
    ];
    let batch = Record::batch(1, kinds);
    let meta = store.append(&id, 1, batch.clone()).await.expect("append");
    let back = store.read(&id, 2, None).await.expect("read");
    assert_eq!(back, batch, "every kind round-trips unchanged");
    assert_eq!(store.tail(&id, batch.len()).await.expect("tail"), batch);
    assert_eq!(meta.name.as_deref(), Some("kinds"));
    assert_eq!(meta.status, SessionStatus::Active);
    assert_eq!(meta.usage.input_tokens, 11);
    let RecordKind::Message(tool) = &back[2].kind else {
        panic!("the third record is the tool message: {:?}", back[2]);
    };
    assert_eq!(
        tool.metadata[weft_core::message::META_TOOL_DATA]["status"],
        "completed",
        "a tool result's structured data round-trips"
    );
    let view = store.view(&id).await.expect("view");
    assert_eq!(view.state.get("color"), Some(&json!("blue")));
    assert_eq!(
        view.messages("main")[1].structured,
        Some(json!({"zeta": 1, "alpha": [true, null, 2.5, "ü"], "o": {}})),
        "a structured answer round-trips with its message"
    );
    assert_eq!(view.meta, meta, "the view's metadata equals the store's");
}

/// A delegated session's metadata (parent, trace, agent, and the
/// `config` / `agent_overlay` Amplifier records) comes back from `get` and
/// from a listing of the parent's children unchanged.
pub async fn sub_session_metadata_round_trips(store: Arc<dyn Store>) {
    let parent = new_meta("tree");
    let parent_id = parent.id.clone();
    store.create(parent, vec![]).await.expect("create parent");
    let mut child = new_meta("tree");
    child.id = SessionId::child_of(&parent_id, "helper");
    child.parent_id = Some(parent_id.clone());
    child.trace_id = parent_id.clone();
    child.agent_name = Some("helper".into());
    child.metadata.insert(
        weft_core::session::META_AGENT_CONFIG.into(),
        json!({"session": {"orchestrator": {"module": "loop-basic"}}, "agents": {"helper": {"description": "helps"}}}),
    );
    child.metadata.insert(
        weft_core::session::META_AGENT_OVERLAY.into(),
        json!({"description": "helps"}),
    );
    let created = store
        .create(child.clone(), vec![text(Role::User, "look")])
        .await
        .expect("create child");
    let got = store.get(&child.id).await.expect("get child");
    assert_eq!(got, created);
    assert_eq!(got.parent_id.as_ref(), Some(&parent_id));
    assert_eq!(got.agent_name.as_deref(), Some("helper"));
    assert_eq!(
        got.metadata[weft_core::session::META_AGENT_OVERLAY],
        json!({"description": "helps"})
    );
    assert_eq!(
        got.metadata[weft_core::session::META_AGENT_CONFIG]["agents"]["helper"]["description"],
        "helps"
    );
    let listed = store
        .list(&ListQuery {
            filter: ListFilter {
                parent_id: Some(parent_id.clone()),
                ..Default::default()
            },
            ..Default::default()
        })
        .await
        .expect("list children");
    assert_eq!(listed.sessions, vec![got], "the child is listed as it is");
}

/// The metadata the store keeps is the fold of the log, through renames and
/// lifecycle transitions.
pub async fn metadata_follows_the_log(store: Arc<dyn Store>) {
    let meta = new_meta("meta");
    let id = meta.id.clone();
    store.create(meta, vec![]).await.expect("create");
    let renamed = store
        .update_meta(
            &id,
            MetaPatch {
                name: Some("first name".into()),
                description: Some("about".into()),
                ..Default::default()
            },
        )
        .await
        .expect("update_meta");
    assert_eq!(renamed.name.as_deref(), Some("first name"));
    let active = store
        .transition(&id, SessionStatus::Active, None, None)
        .await
        .expect("created -> active");
    assert!(active.started_at.is_some());
    push(
        &*store,
        &id,
        vec![
            text(Role::User, "question one"),
            text(Role::Assistant, "answer"),
        ],
    )
    .await;
    push(&*store, &id, vec![text(Role::User, "question two")]).await;
    let done = store
        .transition(&id, SessionStatus::Completed, None, None)
        .await
        .expect("active -> completed");
    assert!(matches!(
        store
            .transition(&id, SessionStatus::Active, None, None)
            .await,
        Err(StoreError::Refused(_))
    ));
    let cleared = store
        .update_meta(
            &id,
            MetaPatch {
                name: Some(String::new()),
                ..Default::default()
            },
        )
        .await
        .expect("clear name");
    assert_eq!(cleared.name, None, "an empty name clears it");
    let got = store.get(&id).await.expect("get");
    assert_eq!(got, cleared);
    assert_eq!(got.status, SessionStatus::Completed);
    assert_eq!(got.message_count, 3);
    assert_eq!(got.turn_count, 2);
    assert_eq!(got.last_prompt.as_deref(), Some("question two"));
    assert_eq!(got.description.as_deref(), Some("about"));
    assert!(done.ended_at.is_some());
    let view = store.view(&id).await.expect("view");
    assert_eq!(view.meta, got, "get agrees with folding the whole log");
    assert_eq!(got.last_seq, store.tail(&id, 1).await.expect("tail")[0].seq);
}
