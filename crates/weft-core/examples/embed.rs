//! Embedding weft as a library: build a session from a mount plan, run two
//! turns while streaming their events, and cancel a third mid-stream.
//!
//! It uses weft-core's test provider ([`weft_core::testing::FakeProvider`])
//! so it runs anywhere, with no key and no network; a real program
//! registers `weft-providers`' modules instead (`weft_providers::register`)
//! and names them in the plan.
//!
//! Run it with `cargo run -p weft-core --example embed`.

use std::sync::Arc;

use weft_core::mount::PlanFormat;
use weft_core::testing::{FAKE_PROVIDER_MODULE, FakeProvider, Reply, registry_with};
use weft_core::{
    CancelMode, FeedItem, MemoryStore, MountPlan, Session, SessionConfig, SessionError, events,
};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The mount plan: which orchestrator, context manager, providers, tools
    // and hooks the session mounts (here as JSON; YAML and TOML work too).
    let plan = MountPlan::parse(
        &format!(
            r#"{{
                "session": {{"orchestrator": "loop-basic", "context": "context-simple"}},
                "providers": [{{"module": "{FAKE_PROVIDER_MODULE}"}}],
                "system": {{"instruction": "You are terse."}}
            }}"#
        ),
        PlanFormat::Json,
    )?
    .plan;

    // The modules the plan names come from a registry.
    let provider = FakeProvider::replying([
        Reply::deltas(["Hello", ", ", "world."]),
        Reply::deltas(["Two ", "plus ", "two ", "is ", "four."]),
        Reply::deltas(["This ", "answer ", "is ", "never ", "finished."]),
    ]);
    let registry = Arc::new(registry_with(&provider, Vec::new()));
    let store = Arc::new(MemoryStore::new());
    let session = Session::new(SessionConfig::new(plan, store, registry));
    session.initialize().await?;
    println!("session {}", session.id());

    // Two turns, each streamed from its handle as it runs.
    for prompt in ["Say hello.", "What is two plus two?"] {
        let answer = stream_turn(&session, prompt).await?;
        println!("\n  => {answer}");
    }

    // A third turn, cancelled after its first delta: the provider stream is
    // dropped and nothing after the cancel is recorded.
    let gate = provider.pause_after(1);
    let mut turn = session.start_turn(None, "Tell me a long story.").await?;
    let mut events = turn.events().ok_or("the turn's events were taken")?;
    gate.reached().await;
    turn.cancel(CancelMode::Immediate);
    gate.release();
    while let Some(item) = events.next().await {
        let item = item?;
        print_item(&item);
    }
    match turn.result().await {
        Err(e) if e.is_cancelled() => println!("\n  => cancelled: {e}"),
        other => return Err(format!("expected a cancelled turn, got {other:?}").into()),
    }

    // Everything is in the session log.
    let view = session.view().await?;
    let branch = view.default_branch().ok_or("no default branch")?;
    println!(
        "\n{} messages on {}",
        branch.messages.len(),
        branch.branch.name
    );
    session.cleanup().await?;
    Ok(())
}

/// Runs `prompt` as a turn, printing its events as they come, and returns
/// the answer.
async fn stream_turn(session: &Session, prompt: &str) -> Result<String, SessionError> {
    let mut turn = session.start_turn(None, prompt).await?;
    println!("\nturn {} on {}: {prompt}", turn.id(), turn.branch());
    if let Some(mut events) = turn.events() {
        while let Some(item) = events.next().await {
            match item {
                Ok(item) => print_item(&item),
                Err(e) => eprintln!("(events lost: {e})"),
            }
        }
    }
    turn.result().await
}

/// Prints one item of a turn: answer text as it streams, records by kind.
fn print_item(item: &FeedItem) {
    match item {
        FeedItem::Event(e) if e.name == events::CONTENT_BLOCK_DELTA => {
            print!("{}", e.data["delta"].as_str().unwrap_or_default());
        }
        FeedItem::Event(e) if e.name == events::EXECUTION_END => {
            print!("  [{}]", e.data["status"].as_str().unwrap_or_default());
        }
        FeedItem::Event(_) => {}
        FeedItem::Record(r) => print!("  [#{} {}]", r.seq, r.kind.name()),
    }
}
