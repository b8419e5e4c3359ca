//! `tool-task`: delegation through a fake `Delegate`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use weft_core::SessionId;
use weft_core::tool::{Delegate, DelegateOutcome};

use crate::common::*;

#[derive(Default)]
struct FakeDelegate {
    calls: Mutex<Vec<(String, String)>>,
    fail: bool,
    hang: bool,
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
        agent: &str,
        instruction: &str,
        cancel: CancellationToken,
    ) -> Result<DelegateOutcome, String> {
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((agent.to_string(), instruction.to_string()));
        if self.hang {
            cancel.cancelled().await;
            return Err("sub-agent explorer was cancelled".into());
        }
        if self.fail {
            return Err("sub-agent explorer (session c1) failed: provider down".into());
        }
        Ok(DelegateOutcome {
            session_id: SessionId::parse("child-session-1").map_err(|e| e.to_string())?,
            text: format!("done: {instruction}"),
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
        "Sub-agent explorer (session child-session-1) answered:\n\ndone: find the main function"
    );
    assert_eq!(
        *delegate.calls.lock().unwrap_or_else(|p| p.into_inner()),
        vec![("explorer".to_string(), "find the main function".to_string())]
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
