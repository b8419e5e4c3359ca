//! The [`Store`] conformance suite: one set of async test functions that
//! every backend must pass (memory, fs and sqlite here; redis, postgres and
//! the others in later crates).
//!
//! Each function takes a fresh, empty store and panics (with a message
//! saying which rule broke) on a violation of the contract in
//! `weft_core::store`. Instantiate the whole suite for a backend with
//! [`store_conformance_tests!`](crate::store_conformance_tests), which
//! writes one `#[tokio::test]` per function:
//!
//! ```text
//! mod fs {
//!     weft_store::store_conformance_tests!({
//!         let dir = tempfile::tempdir().unwrap();
//!         let store = weft_store::FsStore::open(dir.path()).unwrap();
//!         weft_store::conformance::Harness::with_guard(std::sync::Arc::new(store), dir)
//!     });
//! }
//! ```
//!
//! The module is always compiled (it has no dependencies beyond the
//! crate's), so other crates' test suites can use it.

use std::any::Any;
use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{Map, Value, json};
use weft_core::message::{ContentBlock, META_SYNTHETIC, Message, Role, Usage};
use weft_core::record::{MetaPatch, RECORD_VERSION, Record, RecordKind, StateDelta, StatusChange};
use weft_core::session::{
    Branch, Mail, MailCategory, Project, SessionMeta, SessionStatus, SplitFrom, project_slug,
};
use weft_core::store::{
    DeleteOptions, FORK_INTERRUPTED, ForkPoint, ListCursor, ListFilter, ListQuery, SearchQuery,
    Store, StoreError, list_order,
};
use weft_core::{BranchId, SessionId};

/// A store under test, plus whatever must live as long as it (a temporary
/// directory).
pub struct Harness {
    /// The store.
    pub store: Arc<dyn Store>,
    _guard: Option<Box<dyn Any + Send>>,
}

impl Harness {
    /// A harness for a store that needs nothing kept alive.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            _guard: None,
        }
    }

    /// A harness that drops `guard` (e.g. a `tempfile::TempDir`) after the
    /// test.
    pub fn with_guard(store: Arc<dyn Store>, guard: impl Any + Send) -> Self {
        Self {
            store,
            _guard: Some(Box::new(guard)),
        }
    }
}

/// Writes one `#[tokio::test]` per conformance function, each with a fresh
/// harness from `$make` (an expression evaluating to a [`Harness`]). The
/// calling crate needs `tokio` with the `macros` and `rt-multi-thread`
/// features.
#[macro_export]
macro_rules! store_conformance_tests {
    ($make:expr) => {
        $crate::store_conformance_tests!(@each $make;
            create_get_read_tail,
            not_found_errors,
            duplicate_create_fails,
            batch_is_atomic,
            stale_expected_seq_conflicts,
            racing_appenders_one_wins_each_round,
            racing_appenders_lose_nothing,
            tail_cost_is_independent_of_log_length,
            every_record_kind_round_trips,
            metadata_follows_the_log,
            fork_at_turn,
            fork_at_seq_repairs_orphans,
            fork_rejects_bad_points,
            cleanup_spares_active_sessions,
            delete_with_and_without_children,
            cursor_paging_while_creating,
            list_filters,
            search_across_sessions,
            shared_state,
            events,
            resolve_prefixes,
            invalid_cursor,
            turn_locks_are_exclusive,
            racing_transitions_one_wins,
        );
    };
    (@each $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let harness: $crate::conformance::Harness = $make;
                $crate::conformance::$name(harness.store.clone()).await;
                drop(harness);
            }
        )*
    };
}

// ---- helpers -------------------------------------------------------------

/// The project of a made-up directory `/conformance/<name>`.
pub fn project(name: &str) -> Project {
    let dir = format!("/conformance/{name}");
    Project {
        slug: project_slug(&dir),
        dir,
    }
}

/// New metadata for a session in `project(name)`.
pub fn new_meta(project_name: &str) -> SessionMeta {
    SessionMeta::new(SessionId::new_v7(), project(project_name), "base")
}

/// A text message on the main branch.
pub fn text(role: Role, s: &str) -> RecordKind {
    RecordKind::message(Message::text(BranchId::main(), role, s))
}

/// An assistant message asking for tool calls `ids`.
pub fn calls(ids: &[&str]) -> RecordKind {
    RecordKind::message(Message::new(
        BranchId::main(),
        Role::Assistant,
        ids.iter()
            .map(|id| ContentBlock::ToolCall {
                id: (*id).to_string(),
                name: "read_file".into(),
                arguments: json!({"path": format!("{id}.txt")}),
            })
            .collect(),
    ))
}

/// A tool message answering `id`.
pub fn result(id: &str, output: &str) -> RecordKind {
    RecordKind::message(Message::new(
        BranchId::main(),
        Role::Tool,
        vec![ContentBlock::ToolResult {
            call_id: id.to_string(),
            output: output.to_string(),
            is_error: false,
        }],
    ))
}

/// Appends `kinds` after the current head.
pub async fn push(store: &dyn Store, id: &SessionId, kinds: Vec<RecordKind>) -> SessionMeta {
    let head = store.get(id).await.expect("get before append").last_seq;
    store
        .append(id, head, Record::batch(head, kinds))
        .await
        .expect("append after the current head")
}

/// Appends `kinds` stamped with time `ts`.
pub async fn push_at(
    store: &dyn Store,
    id: &SessionId,
    ts: chrono::DateTime<Utc>,
    kinds: Vec<RecordKind>,
) -> SessionMeta {
    let head = store.get(id).await.expect("get").last_seq;
    let mut records = Record::batch(head, kinds);
    for r in &mut records {
        r.ts = ts;
    }
    store.append(id, head, records).await.expect("append")
}

fn seqs(records: &[Record]) -> Vec<u64> {
    records.iter().map(|r| r.seq).collect()
}

fn ids(metas: &[SessionMeta]) -> Vec<SessionId> {
    metas.iter().map(|m| m.id.clone()).collect()
}

async fn all_ids(store: &dyn Store, filter: ListFilter) -> Vec<SessionId> {
    let mut out = Vec::new();
    let mut query = ListQuery {
        filter,
        cursor: None,
        limit: 100,
    };
    loop {
        let page = store.list(&query).await.expect("list");
        out.extend(ids(&page.sessions));
        match page.next_cursor {
            Some(c) => query.cursor = Some(c),
            None => return out,
        }
    }
}

fn set(ids: &[SessionId]) -> BTreeSet<String> {
    ids.iter().map(|i| i.to_string()).collect()
}

// ---- the suite -----------------------------------------------------------

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
    let kinds = vec![
        text(Role::User, "hi"),
        RecordKind::message(with_usage),
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
        RecordKind::BranchRemoved { branch: side },
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
    let view = store.view(&id).await.expect("view");
    assert_eq!(view.state.get("color"), Some(&json!("blue")));
    assert_eq!(view.meta, meta, "the view's metadata equals the store's");
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

async fn fork_source(store: &dyn Store) -> (SessionId, Vec<Record>) {
    let meta = new_meta("fork");
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

/// Fork after a turn: the prefix, `forked_from`, the parent link; the source
/// untouched.
pub async fn fork_at_turn(store: Arc<dyn Store>) {
    let (src, before) = fork_source(&*store).await;
    let src_meta = store.get(&src).await.expect("get");
    let fork = store
        .fork(&src, ForkPoint::Turn(1), None, Some("first turn".into()))
        .await
        .expect("fork at turn 1");
    assert_ne!(fork.id, src);
    assert_eq!(fork.parent_id.as_ref(), Some(&src));
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
    assert_eq!(set(&children), set(&[fork.id, whole.id]));
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

    let real = store.cleanup(week, false).await.expect("cleanup");
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

/// Shared state: per namespace, set / delete / clear.
pub async fn shared_state(store: Arc<dyn Store>) {
    assert!(
        store
            .shared_state("app:base")
            .await
            .expect("read")
            .is_empty()
    );
    let mut d = StateDelta::default();
    d.set.insert("theme".into(), json!("dark"));
    d.set.insert("count".into(), json!(1));
    let s = store
        .update_shared_state("app:base", &d)
        .await
        .expect("update");
    assert_eq!(s.get("theme"), Some(&json!("dark")));
    let mut d2 = StateDelta {
        delete: vec!["theme".into()],
        ..Default::default()
    };
    d2.set.insert("count".into(), json!(2));
    let s2 = store
        .update_shared_state("app:base", &d2)
        .await
        .expect("update");
    let mut want = Map::new();
    want.insert("count".into(), json!(2));
    assert_eq!(s2, want);
    assert_eq!(store.shared_state("app:base").await.expect("read"), want);
    let mut other = StateDelta::default();
    other.set.insert("name".into(), json!("ada"));
    store
        .update_shared_state("user:ada/x y", &other)
        .await
        .expect("update other");
    assert_eq!(
        store.shared_state("app:base").await.expect("read"),
        want,
        "namespaces are separate"
    );
    let cleared = store
        .update_shared_state(
            "app:base",
            &StateDelta {
                clear: true,
                ..Default::default()
            },
        )
        .await
        .expect("clear");
    assert!(cleared.is_empty());
    assert!(
        store
            .shared_state("app:base")
            .await
            .expect("read")
            .is_empty(),
        "clear sticks"
    );
    assert_eq!(
        store
            .shared_state("user:ada/x y")
            .await
            .expect("read")
            .get("name"),
        Some(&Value::from("ada"))
    );
}

/// Kernel events: written in order, read back newest `limit`.
pub async fn events(store: Arc<dyn Store>) {
    let id = store
        .create(new_meta("events"), vec![])
        .await
        .expect("create")
        .id;
    assert!(store.read_events(&id, 10).await.expect("read").is_empty());
    let evs: Vec<Value> = (0..5)
        .map(|i| json!({"event": "tool:pre", "data": {"i": i}}))
        .collect();
    store.write_events(&id, &evs[..2]).await.expect("write");
    store.write_events(&id, &evs[2..]).await.expect("write");
    store.write_events(&id, &[]).await.expect("write nothing");
    assert_eq!(store.read_events(&id, 10).await.expect("read"), evs);
    assert_eq!(
        store.read_events(&id, 2).await.expect("read"),
        evs[3..].to_vec()
    );
    assert!(store.read_events(&id, 0).await.expect("read").is_empty());
    // Events are not records.
    assert_eq!(store.get(&id).await.expect("get").last_seq, 1);
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
