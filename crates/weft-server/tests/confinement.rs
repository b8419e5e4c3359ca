//! Issue 9 S7: the daemon runs a session's tools only inside its own
//! project directory, whatever project the stored session names.

mod common;

use std::path::Path;

use common::*;
use serde_json::{Value, json};
use weft_core::SessionId;
use weft_core::mount::{MountPlan, PlanFormat};
use weft_core::session::{Project, SessionMeta};
use weft_server::StaticPlanSource;

/// A plan with the file tools whose model first writes `path`, then ends.
fn writing(path: &str) -> MountPlan {
    let text = json!({
        "session": {"orchestrator": "loop-basic", "context": "context-simple"},
        "providers": [{"module": "provider-scripted", "config": {"responses": [
            {"tool_calls": [{"name": "write_file", "arguments": {"path": path, "content": "pwned"}}]},
            {"text": "done"}
        ]}}],
        "tools": ["tool-filesystem"]
    });
    MountPlan::parse(&text.to_string(), PlanFormat::Json)
        .expect("test plan parses")
        .plan
}

async fn stored(s: &Server, id: &str, dir: &Path, profile: &str) {
    let id = SessionId::parse(id).expect("id");
    let meta = SessionMeta::new(id, Project::from_dir(dir), profile);
    s.store.create(meta, Vec::new()).await.expect("create");
}

#[tokio::test]
async fn a_stored_session_naming_another_project_is_not_run() {
    let outside = tempfile::tempdir().expect("tempdir");
    let target = outside.path().join("escaped.txt");
    let plans = StaticPlanSource::new("escape", writing(&target.display().to_string()))
        .with("inside", writing("inside.txt"));
    let s = start(plans).await;

    // An imported Amplifier session with `working_dir: "/"`.
    stored(&s, "root-wd", Path::new("/"), "escape").await;
    let (status, body) = s
        .post("/run", json!({"message": "go", "session_id": "root-wd"}))
        .await;
    assert_eq!(status, 409, "{body}");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("outside this server's project directory"),
        "{detail}"
    );
    assert!(
        !target.exists(),
        "a tool wrote outside the daemon's project"
    );
    assert_eq!(s.transcript("root-wd").await.len(), 0, "nothing ran");

    // A session in a directory inside the project runs there.
    let sub = s.dir.path().join("sub");
    stored(&s, "in-sub", &sub, "inside").await;
    let (status, body) = s
        .post("/run", json!({"message": "go", "session_id": "in-sub"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], Value::from("done"));
    assert_eq!(
        std::fs::read_to_string(sub.join("inside.txt")).expect("written"),
        "pwned"
    );
}
