//! Importing Amplifier CLI sessions (fixture directories made here).

use std::fs;
use std::path::Path;

use serde_json::json;
use weft_core::SessionId;
use weft_core::memory::MemoryStore;
use weft_core::message::META_LOADED;
use weft_core::session::SessionStatus;
use weft_core::store::{ListFilter, ListQuery, SearchQuery, Store};
use weft_core::testing::CountingProgress;
use weft_store::import::{import_amplifier, import_amplifier_reporting};

const PARENT: &str = "0195f3a1-2b3c-7d4e-8f90-a1b2c3d4e5f6";
const CHILD: &str = "0195f3a12b3c7d4e-9a8b7c6d5e4f3a2b_zen-architect";

fn write_session(
    root: &Path,
    slug: &str,
    id: &str,
    meta: serde_json::Value,
    lines: &[serde_json::Value],
) {
    let dir = root.join("projects").join(slug).join("sessions").join(id);
    fs::create_dir_all(&dir).unwrap();
    fs::write(
        dir.join("metadata.json"),
        serde_json::to_vec_pretty(&meta).unwrap(),
    )
    .unwrap();
    let mut t = String::new();
    for l in lines {
        t.push_str(&serde_json::to_string(l).unwrap());
        t.push('\n');
    }
    fs::write(dir.join("transcript.jsonl"), t).unwrap();
}

fn fixture(root: &Path) {
    let slug = "-home-ada-proj";
    write_session(
        root,
        slug,
        PARENT,
        json!({
            "session_id": PARENT,
            "created": "2025-06-01T10:00:00.000+00:00",
            "bundle": "bundle:foundation",
            "model": "claude-sonnet-4-5",
            "turn_count": 2,
            "name": "Fix the login bug",
            "working_dir": "/home/ada/proj"
        }),
        &[
            json!({"role": "user", "content": "why does login fail?", "timestamp": "2025-06-01T10:00:01.000+00:00"}),
            json!({"role": "assistant", "content": "Let me look.", "tool_calls": [{"id": "call_1", "tool": "read_file", "arguments": {"path": "auth.py"}}], "timestamp": "2025-06-01T10:00:02.000+00:00"}),
            json!({"role": "tool", "tool_call_id": "call_1", "content": "def login(): ...", "timestamp": "2025-06-01T10:00:03.000+00:00"}),
            json!({"role": "assistant", "content": [{"type": "thinking", "thinking": "hmm"}, {"type": "text", "text": "The token expires."}], "timestamp": "2025-06-01T10:00:04.000+00:00"}),
            json!({"role": "user", "content": "fix it", "timestamp": "2025-06-01T10:05:00.000+00:00"}),
            json!({"role": "assistant", "content": "Fixed.", "timestamp": "2025-06-01T10:05:30.000+00:00"}),
        ],
    );
    write_session(
        root,
        slug,
        CHILD,
        json!({
            "session_id": CHILD,
            "parent_id": PARENT,
            "trace_id": PARENT,
            "agent_name": "zen-architect",
            "created": "2025-06-01T10:00:05.123456",
            "turn_count": 1,
            "config": {"providers": []}
        }),
        &[
            json!({"role": "user", "content": "review auth.py"}),
            "not json at all".into(),
            json!({"role": "assistant", "content": "Looks fine."}),
        ],
    );
    // A session with an invalid id is reported, not imported.
    let bad = root
        .join("projects")
        .join(slug)
        .join("sessions")
        .join("bad id");
    fs::create_dir_all(&bad).unwrap();
    fs::write(bad.join("transcript.jsonl"), "").unwrap();
}

#[tokio::test]
async fn imports_amplifier_sessions() {
    let amp = tempfile::tempdir().unwrap();
    fixture(amp.path());
    let home = tempfile::tempdir().unwrap();
    // Progress: the three session directories found, each one taken.
    let progress = CountingProgress::default();
    let report = import_amplifier_reporting(amp.path(), &MemoryStore::new(), &progress)
        .await
        .unwrap();
    assert_eq!(report.imported.len() + report.failed.len(), 3);
    assert_eq!(progress.total(), 3);
    assert_eq!(progress.done(), 3);
    let stores: Vec<Box<dyn Store>> = vec![
        Box::new(MemoryStore::new()),
        Box::new(weft_store::FsStore::open(home.path()).unwrap()),
        Box::new(weft_store::SqliteStore::open(home.path().join("db.sqlite")).unwrap()),
    ];
    for store in stores {
        let report = import_amplifier(amp.path(), &*store).await.unwrap();
        assert_eq!(report.imported.len(), 2, "{report:?}");
        assert_eq!(report.failed.len(), 1, "the bad id is reported: {report:?}");
        assert_eq!(report.bad_lines, 1);
        let parent = SessionId::parse(PARENT).unwrap();
        let child = SessionId::parse(CHILD).unwrap();

        let p = store.get(&parent).await.unwrap();
        assert_eq!(p.name.as_deref(), Some("Fix the login bug"));
        assert_eq!(p.turn_count, 2, "turn counts survive");
        assert_eq!(p.message_count, 6);
        assert_eq!(p.profile, "foundation");
        assert_eq!(p.model.as_deref(), Some("claude-sonnet-4-5"));
        assert_eq!(p.project.slug, "-home-ada-proj");
        assert_eq!(p.project.dir, "/home/ada/proj");
        assert_eq!(p.status, SessionStatus::Completed);
        assert_eq!(p.created_at.to_rfc3339(), "2025-06-01T10:00:00+00:00");
        assert_eq!(
            p.updated_at.to_rfc3339(),
            "2025-06-01T10:05:30+00:00",
            "listed by its last Amplifier activity"
        );
        assert_eq!(p.metadata["amplifier"]["turn_count"], 2);

        let c = store.get(&child).await.unwrap();
        assert_eq!(
            c.parent_id.as_ref(),
            Some(&parent),
            "parent/child links survive"
        );
        assert_eq!(c.trace_id, parent);
        assert_eq!(c.agent_name.as_deref(), Some("zen-architect"));
        assert_eq!(c.turn_count, 1);
        assert_eq!(c.project.slug, "-home-ada-proj");

        let view = store.view(&parent).await.unwrap();
        let msgs = view.messages("main");
        assert!(
            msgs.iter().all(|m| m.flag(META_LOADED)),
            "messages are marked loaded"
        );
        assert_eq!(msgs[1].tool_calls()[0].0, "call_1");
        assert_eq!(msgs[2].tool_result_ids(), vec!["call_1"]);
        assert_eq!(msgs[3].text_content(), "The token expires.");
        let children = store
            .list(&ListQuery {
                filter: ListFilter {
                    parent_id: Some(parent.clone()),
                    ..Default::default()
                },
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(children.sessions.len(), 1);
        let hits = store
            .search(&SearchQuery {
                text: "token expires".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(hits.len(), 1);

        // Again: everything is already there.
        let again = import_amplifier(amp.path(), &*store).await.unwrap();
        assert!(again.imported.is_empty());
        assert_eq!(again.skipped.len(), 2);
        assert_eq!(
            store.get(&parent).await.unwrap().message_count,
            6,
            "nothing is imported twice"
        );
    }
}

#[tokio::test]
async fn accepts_project_and_session_directories() {
    let amp = tempfile::tempdir().unwrap();
    fixture(amp.path());
    let project = amp.path().join("projects").join("-home-ada-proj");
    let store = MemoryStore::new();
    let one = import_amplifier(&project.join("sessions").join(PARENT), &store)
        .await
        .unwrap();
    assert_eq!(one.imported.len(), 1);
    assert_eq!(
        store
            .get(&SessionId::parse(PARENT).unwrap())
            .await
            .unwrap()
            .project
            .slug,
        "-home-ada-proj"
    );
    let rest = import_amplifier(&project, &store).await.unwrap();
    assert_eq!(rest.imported.len(), 1);
    assert_eq!(rest.skipped.len(), 1);
    assert!(
        import_amplifier(&amp.path().join("nowhere"), &store)
            .await
            .is_err()
    );
}

/// Issue 9 S8: one invalid UTF-8 byte costs its line, not the session.
#[tokio::test]
async fn a_line_that_is_not_utf8_is_skipped_and_counted() {
    let amp = tempfile::tempdir().unwrap();
    let dir = amp.path().join("projects/p/sessions").join(PARENT);
    fs::create_dir_all(&dir).unwrap();
    fs::write(
        dir.join("metadata.json"),
        json!({"session_id": PARENT}).to_string(),
    )
    .unwrap();
    let mut transcript = Vec::new();
    transcript.extend_from_slice(b"{\"role\":\"user\",\"content\":\"first\"}\n");
    transcript.extend_from_slice(b"{\"role\":\"assistant\",\"content\":\"bad \xff byte\"}\n");
    transcript.extend_from_slice(b"{\"role\":\"assistant\",\"content\":\"second\"}\r\n");
    fs::write(dir.join("transcript.jsonl"), transcript).unwrap();

    let store = MemoryStore::new();
    let report = import_amplifier(amp.path(), &store).await.unwrap();
    assert!(report.failed.is_empty(), "{report:?}");
    assert_eq!(report.imported.len(), 1, "{report:?}");
    assert_eq!(report.imported[0].messages, 2, "{report:?}");
    assert_eq!(report.bad_lines, 1, "{report:?}");
}
