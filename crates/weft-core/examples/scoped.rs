//! A scoped session: the Rust counterpart of Amplifier's
//! `async with AmplifierSession(config) as session:`.
//!
//! `Session::scope` initializes the session, runs the closure and always
//! cleans up — also when the closure fails (shown here) or its task is
//! cancelled. A `Session` dropped without cleanup is recorded as
//! `ended_uncleanly` instead of staying `active`.
//!
//! It uses weft-core's test provider so it runs anywhere, with no key and no
//! network. Run it with `cargo run -p weft-core --example scoped`.

use std::sync::Arc;

use weft_core::mount::PlanFormat;
use weft_core::testing::{FAKE_PROVIDER_MODULE, FakeProvider, Reply, registry_with};
use weft_core::{MemoryStore, MountPlan, Session, SessionConfig, SessionError, Store};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let plan = MountPlan::parse(
        &format!(
            r#"{{"session": {{"orchestrator": "loop-basic", "context": "context-simple"}},
                "providers": [{{"module": "{FAKE_PROVIDER_MODULE}"}}]}}"#
        ),
        PlanFormat::Json,
    )?
    .plan;
    let provider = FakeProvider::replying([Reply::text("Four."), Reply::text("Hello.")]);
    let registry = Arc::new(registry_with(&provider, Vec::new()));
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let config = SessionConfig::new(plan, store.clone(), registry);

    // The body's value comes back; the session is completed afterwards.
    let (answer, id) = Session::scope(config.clone(), |session| async move {
        let answer = session.execute("What is 2 + 2?").await?;
        Ok::<_, SessionError>((answer, session.id().clone()))
    })
    .await?;
    println!(
        "{answer} (session {id} is {})",
        store.get(&id).await?.status
    );

    // A failing body: its error comes back, and the session is still
    // cleaned up.
    let failed = Session::scope(config, |session| async move {
        session.execute("Say hello.").await?;
        println!("session {} ran a turn, then its body fails", session.id());
        Err::<(), Box<dyn std::error::Error + Send + Sync>>("the body failed".into())
    })
    .await;
    if let Err(e) = failed {
        println!("scope returned the error: {e}");
    }
    Ok(())
}
