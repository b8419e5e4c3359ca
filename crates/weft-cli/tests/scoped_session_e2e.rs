//! The scoped session of the Rust API end to end: a program embedding
//! weft (here, this test, on the file store of a fresh home and
//! provider-scripted) runs `Session::scope` whose body fails, and drops
//! another session without cleanup; the real `weft` binary then shows the
//! first `completed` (cleaned up although its body failed) and the second
//! `ended_uncleanly` rather than `active`.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use support::*;
use weft_core::mount::PlanFormat;
use weft_core::session::Project;
use weft_core::{
    ModuleRegistry, MountPlan, Session, SessionConfig, SessionId, SessionStatus, Store,
};
use weft_store::FsStore;

type BodyError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_scope_is_cleaned_up_and_a_dropped_session_ends_uncleanly() {
    let env = Env::new();
    let store: Arc<dyn Store> = Arc::new(FsStore::open(env.home.path()).expect("store"));
    let mut registry = ModuleRegistry::with_core_modules();
    weft_providers::register(&mut registry);
    let plan = MountPlan::parse(
        &json!({
            "session": {"orchestrator": "loop-basic", "context": "context-simple"},
            "providers": [{"module": "provider-scripted", "config": {"mode": "echo"}}]
        })
        .to_string(),
        PlanFormat::Json,
    )
    .expect("plan")
    .plan;
    let mut config = SessionConfig::new(plan, store.clone(), Arc::new(registry));
    config.project = Project::from_dir(env.project.path());

    // The body fails after a turn: the error comes back, the session is
    // cleaned up.
    let seen: Arc<Mutex<Option<SessionId>>> = Arc::default();
    let err = Session::scope(config.clone(), |session| {
        let seen = seen.clone();
        async move {
            session.execute("scoped prompt").await?;
            *seen.lock().expect("lock") = Some(session.id().clone());
            Err::<(), BodyError>("the body failed".into())
        }
    })
    .await
    .expect_err("the body's error");
    assert_eq!(err.to_string(), "the body failed");
    let scoped = seen.lock().expect("lock").clone().expect("the body ran");
    assert_eq!(
        store.get(&scoped).await.expect("meta").status,
        SessionStatus::Completed
    );

    // A session dropped after a turn, without cleanup.
    let dropped = Session::new(config);
    dropped.initialize().await.expect("initialize");
    dropped.execute("dropped prompt").await.expect("answer");
    let dropped_id = dropped.id().clone();
    drop(dropped);
    // Recorded in the background on this runtime: wait for it.
    let deadline = Instant::now() + Duration::from_secs(20);
    while store.get(&dropped_id).await.expect("meta").status != SessionStatus::EndedUncleanly {
        assert!(
            Instant::now() < deadline,
            "never recorded as ended uncleanly"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The CLI shows both.
    let shown = env.ok(&["session", "show", scoped.as_str()]);
    assert!(shown.contains("completed"), "{shown}");
    let shown = env.ok(&["session", "show", dropped_id.as_str()]);
    assert!(shown.contains("ended_uncleanly"), "{shown}");
    let listed = env.json(&["session", "list", "--json"]);
    let status_of = |id: &SessionId| {
        listed
            .as_array()
            .expect("array")
            .iter()
            .find(|s| s["id"] == id.as_str())
            .map(|s| s["status"].clone())
    };
    assert_eq!(
        status_of(&dropped_id),
        Some(json!("ended_uncleanly")),
        "{listed}"
    );
    assert_eq!(status_of(&scoped), Some(json!("completed")), "{listed}");
    let table = env.ok(&["session", "list"]);
    assert!(table.contains("ended_uncleanly"), "{table}");
}
