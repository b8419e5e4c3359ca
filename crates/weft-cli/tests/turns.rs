//! Turns and other writers (issue 9, findings 4 and 14), in process: a
//! turn survives writes other writers make while it runs, a second turn on
//! the same branch waits for the first (across `Session` objects on one fs
//! or memory store, as two processes would), and a turn whose process died
//! leaves an interrupted session that `cleanup` ends and removes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use weft_core::approval::{DisplayLevel, DisplaySystem};
use weft_core::branches::NewBranch;
use weft_core::lease::{TurnHolder, TurnLockAttempt};
use weft_core::memory::MemoryStore;
use weft_core::message::{Message, Role};
use weft_core::mount::{MountPlan, PlanFormat};
use weft_core::record::{RecordKind, StateDelta};
use weft_core::registry::ModuleRegistry;
use weft_core::store::Store;
use weft_core::{BranchId, Session, SessionConfig, SessionId, SessionStatus};
use weft_store::fs::FsStore;

fn plan(responses: Value) -> MountPlan {
    let text = json!({
        "session": {"orchestrator": "loop-basic", "context": "context-simple"},
        "providers": [{"module": "provider-scripted", "config": {"responses": responses}}],
    });
    MountPlan::parse(&text.to_string(), PlanFormat::Json)
        .unwrap()
        .plan
}

/// Collects what the kernel shows the user.
#[derive(Default)]
struct Shown(Mutex<Vec<String>>);

impl DisplaySystem for Shown {
    fn show_message(&self, message: &str, _level: DisplayLevel, _source: &str) {
        self.0.lock().unwrap().push(message.to_string());
    }
}

fn session(
    store: &Arc<dyn Store>,
    id: Option<&SessionId>,
    responses: Value,
    shown: Option<Arc<Shown>>,
) -> Session {
    let mut registry = ModuleRegistry::with_core_modules();
    weft_providers::register(&mut registry);
    let mut config = SessionConfig::new(plan(responses), store.clone(), Arc::new(registry));
    config.session_id = id.cloned();
    config.display = shown.map(|s| s as Arc<dyn DisplaySystem>);
    Session::new(config)
}

fn fs_store() -> (tempfile::TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(FsStore::open(dir.path()).unwrap());
    (dir, store)
}

async fn texts(store: &Arc<dyn Store>, id: &SessionId) -> Vec<(Role, String)> {
    store
        .view(id)
        .await
        .unwrap()
        .messages("main")
        .into_iter()
        .map(|m| (m.role, m.text_content()))
        .collect()
}

async fn assert_gapless(store: &Arc<dyn Store>, id: &SessionId) {
    let records = store.read_all(id).await.unwrap();
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.seq, i as u64 + 1, "the log has a gap or a duplicate");
    }
}

/// Waits until a turn holds the turn lock of `main` in `id`.
async fn until_turn_runs(store: &Arc<dyn Store>, id: &SessionId) {
    for _ in 0..400 {
        let locks = store.turn_locks(id).await.unwrap();
        if locks.iter().any(|l| l.live) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the turn never started");
}

/// W6 (and W4 without a daemon): while a turn waits for its (scripted,
/// slow) answer, another writer sets state and adds a message on another
/// branch. The turn still succeeds, its answer is recorded after their
/// records, and the session stays active.
async fn outside_writes_during_a_turn_do_not_break_it(store: Arc<dyn Store>) {
    let first = session(&store, None, json!([{"text": "hello"}]), None);
    first.initialize().await.unwrap();
    first.execute("first").await.unwrap();
    first
        .new_branch(NewBranch {
            name: "side".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let id = first.id().clone();

    let slow = session(
        &store,
        Some(&id),
        json!([{"text": "slow answer", "delay_ms": 400}]),
        None,
    );
    slow.initialize().await.unwrap();
    let turn = tokio::spawn({
        let slow = slow.clone();
        async move { slow.execute("long turn").await }
    });
    until_turn_runs(&store, &id).await;
    // Another writer (a `weft state set`, a message on another branch)
    // appends while the turn runs.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut delta = StateDelta::default();
    delta.set.insert("color".into(), json!("blue"));
    store
        .append_anywhere(&id, vec![RecordKind::State(delta)])
        .await
        .unwrap();
    let side = BranchId::parse("side").unwrap();
    store
        .append_anywhere(
            &id,
            vec![RecordKind::message(Message::text(
                side,
                Role::User,
                "elsewhere",
            ))],
        )
        .await
        .unwrap();

    let answer = turn
        .await
        .unwrap()
        .expect("the turn survives outside writes");
    assert_eq!(answer, "slow answer");
    let main = texts(&store, &id).await;
    assert_eq!(
        main.last(),
        Some(&(Role::Assistant, "slow answer".to_string())),
        "the streamed answer is recorded"
    );
    let view = store.view(&id).await.unwrap();
    assert_eq!(view.meta.status, SessionStatus::Active);
    assert_eq!(view.state.get("color"), Some(&json!("blue")));
    assert_eq!(view.messages("side").len(), 1);
    assert_gapless(&store, &id).await;

    // The next turn in the same session object sees the other writer's
    // records (its caches were reloaded).
    slow.cleanup().await.unwrap();
    assert_eq!(
        store.get(&id).await.unwrap().status,
        SessionStatus::Completed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_writes_during_a_turn_do_not_break_it_memory() {
    outside_writes_during_a_turn_do_not_break_it(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_writes_during_a_turn_do_not_break_it_fs() {
    let (_dir, store) = fs_store();
    outside_writes_during_a_turn_do_not_break_it(store).await;
}

/// W5: two turns on one branch from two session objects (two processes):
/// the second waits for the first, saying whom it waits for; both
/// succeed, both answers are recorded in order, the log is gapless.
async fn a_second_turn_on_a_branch_waits_for_the_first(store: Arc<dyn Store>) {
    let a = session(
        &store,
        None,
        json!([{"text": "answer a", "delay_ms": 300}]),
        None,
    );
    a.initialize().await.unwrap();
    let id = a.id().clone();
    let shown = Arc::new(Shown::default());
    let b = session(
        &store,
        Some(&id),
        json!([{"text": "answer b"}]),
        Some(shown.clone()),
    );
    b.initialize().await.unwrap();

    let turn_a = tokio::spawn({
        let a = a.clone();
        async move { a.execute("prompt a").await }
    });
    until_turn_runs(&store, &id).await;
    let turn_b = tokio::spawn({
        let b = b.clone();
        async move { b.execute("prompt b").await }
    });
    assert_eq!(turn_a.await.unwrap().unwrap(), "answer a");
    assert_eq!(turn_b.await.unwrap().unwrap(), "answer b");
    // The first one ending does not end the session under the second.
    a.cleanup().await.unwrap();
    b.cleanup().await.unwrap();

    let shown = shown.0.lock().unwrap().clone();
    let pid = std::process::id();
    assert!(
        shown.iter().any(|m| m.contains(&format!(
            "waiting for the turn running in process {pid} on branch main"
        ))),
        "the waiting turn says whom it waits for: {shown:?}"
    );
    assert_eq!(
        texts(&store, &id).await,
        vec![
            (Role::User, "prompt a".to_string()),
            (Role::Assistant, "answer a".to_string()),
            (Role::User, "prompt b".to_string()),
            (Role::Assistant, "answer b".to_string()),
        ]
    );
    assert_eq!(
        store.get(&id).await.unwrap().status,
        SessionStatus::Completed
    );
    assert_gapless(&store, &id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_turn_on_a_branch_waits_for_the_first_memory() {
    a_second_turn_on_a_branch_waits_for_the_first(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_turn_on_a_branch_waits_for_the_first_fs() {
    let (_dir, store) = fs_store();
    a_second_turn_on_a_branch_waits_for_the_first(store).await;
}

/// A turn asked not to wait is refused with the holder's process id, and
/// the running turn is not disturbed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_that_must_not_wait_is_refused_naming_the_holder() {
    let (_dir, store) = fs_store();
    let a = session(&store, None, json!([{"text": "a", "delay_ms": 300}]), None);
    a.initialize().await.unwrap();
    let id = a.id().clone();
    let turn_a = tokio::spawn({
        let a = a.clone();
        async move { a.execute("prompt a").await }
    });
    until_turn_runs(&store, &id).await;
    let mut registry = ModuleRegistry::with_core_modules();
    weft_providers::register(&mut registry);
    let mut config = SessionConfig::new(
        plan(json!([{"text": "b"}])),
        store.clone(),
        Arc::new(registry),
    );
    config.session_id = Some(id.clone());
    config.wait_for_turn = false;
    let b = Session::new(config);
    b.initialize().await.unwrap();
    let err = b.execute("prompt b").await.unwrap_err().to_string();
    assert!(
        err.contains(&format!("running a turn in process {}", std::process::id())),
        "{err}"
    );
    assert_eq!(turn_a.await.unwrap().unwrap(), "a");
}

/// C10 at the store level: a turn lock left by a holder that died (the
/// guard never dropped, the OS lock gone) marks an active session
/// interrupted; `cleanup` ends it as failed and removes it, while an
/// active session without one is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_removes_a_session_whose_turn_process_died() {
    let (dir, store) = fs_store();
    let dead = session(&store, None, json!([{"text": "x"}]), None);
    dead.initialize().await.unwrap();
    dead.execute("hi").await.unwrap();
    let idle = session(&store, None, json!([{"text": "y"}]), None);
    idle.initialize().await.unwrap();
    idle.execute("hi").await.unwrap();
    let id = dead.id().clone();
    assert!(!store.is_interrupted(&id).await.unwrap());

    // A process dies mid-turn: its lock file keeps naming it while the OS
    // lock is gone (a leaked guard in a copy of the file stands for that).
    let TurnLockAttempt::Acquired(lock) = store
        .try_lock_turn(&id, &BranchId::main(), &TurnHolder::current())
        .await
        .unwrap()
    else {
        panic!("the lock is free");
    };
    let fs = FsStore::open(dir.path()).unwrap();
    let path = fs.session_dir(&id).unwrap().join("turn.main.lock");
    let text = std::fs::read(&path).unwrap();
    std::mem::forget(lock);
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, text).unwrap();
    assert!(store.is_interrupted(&id).await.unwrap());

    let dry = store.cleanup(Duration::ZERO, true).await.unwrap();
    assert_eq!(dry.interrupted, vec![id.clone()]);
    assert!(dry.removed.contains(&id));
    assert!(dry.kept_active.contains(idle.id()));
    let report = store.cleanup(Duration::ZERO, false).await.unwrap();
    assert!(report.removed.contains(&id), "{report:?}");
    assert!(store.get(&id).await.unwrap_err().is_not_found());
    assert_eq!(
        store.get(idle.id()).await.unwrap().status,
        SessionStatus::Active
    );
}
