//! `tool-task`: delegation through a fake `Delegate`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use weft_core::SessionId;
use weft_core::tool::{Delegate, DelegateOutcome, DelegateRequest, DelegateStatus};

use crate::common::*;

#[derive(Default)]
struct FakeDelegate {
    calls: Mutex<Vec<DelegateRequest>>,
    fail: bool,
    hang: bool,
    child_failed: bool,
}

#[async_trait]
impl Delegate for FakeDelegate {
    fn agents(&self) -> Vec<(String, String)> {
        vec![
            ("explorer".into(), "Reads and searches.".into()),
            ("writer".into(), String::new()),
        ]
    }

    async fn delegate(
        &self,
        request: DelegateRequest,
        cancel: CancellationToken,
    ) -> Result<DelegateOutcome, String> {
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(request.clone());
        if self.hang {
            cancel.cancelled().await;
            return Err("sub-agent explorer was cancelled".into());
        }
        if self.fail {
            return Err("sub-agent explorer (session c1) failed: provider down".into());
        }
        let session_id = match request.session_id {
            Some(id) => id,
            None => SessionId::parse("child-session-1").map_err(|e| e.to_string())?,
        };
        if self.child_failed {
            return Ok(DelegateOutcome {
                session_id,
                agent: request.agent,
                response: "sub-agent explorer (session child-session-1) failed: provider down"
                    .into(),
                status: DelegateStatus::Failed,
            });
        }
        Ok(DelegateOutcome {
            session_id,
            agent: request.agent,
            response: format!("done: {}", request.instruction),
            status: DelegateStatus::Completed,
        })
    }
}

fn task() -> Arc<dyn weft_core::tool::Tool> {
    tool("tool-task", json!({}), "task")
}

#[tokio::test]
async fn delegates_and_returns_the_child_session_and_answer() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut c = ctx(dir.path());
    let delegate = Arc::new(FakeDelegate::default());
    c.delegate = Some(delegate.clone());
    let out = task()
        .execute(
            json!({"agent": "explorer", "instruction": "find the main function"}),
            &c,
        )
        .await;
    assert_eq!(
        expect_ok(&out),
        "Sub-agent explorer (session_id child-session-1, status completed) answered:\n\n\
         done: find the main function\n\n(To continue this conversation, call task again \
         with agent \"explorer\" and session_id \"child-session-1\".)"
    );
    assert_eq!(
        out.data,
        Some(json!({
            "session_id": "child-session-1",
            "agent": "explorer",
            "response": "done: find the main function",
            "status": "completed"
        }))
    );
    assert_eq!(
        *delegate.calls.lock().unwrap_or_else(|p| p.into_inner()),
        vec![DelegateRequest {
            agent: "explorer".into(),
            instruction: "find the main function".into(),
            session_id: None
        }]
    );
    Ok(())
}

#[tokio::test]
async fn a_session_id_continues_that_child() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut c = ctx(dir.path());
    let delegate = Arc::new(FakeDelegate::default());
    c.delegate = Some(delegate.clone());
    let out = task()
        .execute(
            json!({"agent": "explorer", "instruction": "and the tests?", "session_id": " child-7 "}),
            &c,
        )
        .await;
    assert!(expect_ok(&out).contains("session_id child-7"));
    assert_eq!(
        out.data.as_ref().map(|d| d["session_id"].clone()),
        Some(json!("child-7"))
    );
    assert_eq!(
        delegate.calls.lock().unwrap_or_else(|p| p.into_inner())[0].session_id,
        Some(SessionId::parse("child-7")?)
    );

    // Not an id at all: refused before anything runs.
    let err = expect_error(
        &task()
            .execute(
                json!({"agent": "explorer", "instruction": "x", "session_id": "../etc"}),
                &c,
            )
            .await,
    );
    assert!(err.contains("`session_id` is not a session id"), "{err}");
    assert_eq!(
        delegate
            .calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len(),
        1
    );
    Ok(())
}

#[tokio::test]
async fn a_failed_child_is_an_error_with_its_structured_result() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut c = ctx(dir.path());
    c.delegate = Some(Arc::new(FakeDelegate {
        child_failed: true,
        ..FakeDelegate::default()
    }));
    let out = task()
        .execute(json!({"agent": "explorer", "instruction": "x"}), &c)
        .await;
    let err = expect_error(&out);
    assert!(err.contains("failed: provider down"), "{err}");
    assert!(err.contains("session_id \"child-session-1\""), "{err}");
    assert_eq!(
        out.data.as_ref().map(|d| d["status"].clone()),
        Some(json!("failed"))
    );
    Ok(())
}

#[tokio::test]
async fn unknown_agents_are_listed() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut c = ctx(dir.path());
    let delegate = Arc::new(FakeDelegate::default());
    c.delegate = Some(delegate.clone());
    let err = expect_error(
        &task()
            .execute(json!({"agent": "archtect", "instruction": "x"}), &c)
            .await,
    );
    assert_eq!(
        err,
        "unknown agent \"archtect\"; the available agents are: explorer (Reads and searches.); writer"
    );
    assert!(
        delegate
            .calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    );
    Ok(())
}

#[tokio::test]
async fn failures_and_missing_delegation_are_clear() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut c = ctx(dir.path());
    let err = expect_error(
        &task()
            .execute(json!({"agent": "explorer", "instruction": "x"}), &c)
            .await,
    );
    assert!(err.contains("not available in this session"), "{err}");

    c.delegate = Some(Arc::new(FakeDelegate {
        fail: true,
        ..FakeDelegate::default()
    }));
    let err = expect_error(
        &task()
            .execute(json!({"agent": "explorer", "instruction": "x"}), &c)
            .await,
    );
    assert!(err.contains("provider down"), "{err}");

    for (input, wanted) in [
        (json!({"agent": "explorer"}), "needs `instruction`"),
        (
            json!({"agent": "", "instruction": "x"}),
            "non-empty `agent`",
        ),
        (
            json!({"agent": "explorer", "instruction": "x", "model": "y"}),
            "no field `model`",
        ),
    ] {
        let err = expect_error(&task().execute(input.clone(), &c).await);
        assert!(err.contains(wanted), "{input}: {err}");
    }
    Ok(())
}

#[tokio::test]
async fn cancellation_reaches_the_delegate() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut c = ctx(dir.path());
    c.delegate = Some(Arc::new(FakeDelegate {
        hang: true,
        ..FakeDelegate::default()
    }));
    let cancel = c.cancel.clone();
    let run = tokio::spawn(async move {
        task()
            .execute(json!({"agent": "explorer", "instruction": "x"}), &c)
            .await
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    cancel.cancel();
    let out = tokio::time::timeout(Duration::from_secs(2), run).await??;
    assert!(expect_error(&out).contains("cancelled"));
    Ok(())
}
