//! `tool-bash`: approval, policy, timeouts, cancellation, output.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{Value, json};
use weft_core::approval::{
    ApprovalDecision, ApprovalError, ApprovalRequest, ApprovalSystem, FixedApproval,
};
use weft_core::hooks::{HookResult, events, hook_fn};
use weft_core::tool::{Tool, ToolContext};

use crate::common::*;

const BASH: &str = "tool-bash";

fn bash(config: Value) -> Arc<dyn Tool> {
    tool(BASH, config, "bash")
}

fn allowing(dir: &Path) -> ToolContext {
    let mut c = ctx(dir);
    c.approval = Some(Arc::new(FixedApproval::allow_all()));
    c
}

fn approval_events(log: &std::sync::Arc<std::sync::Mutex<Vec<(String, Value)>>>) -> Vec<String> {
    names(log)
        .into_iter()
        .filter(|n| n.starts_with("approval:"))
        .collect()
}

/// Whether process `pid` is gone (or a zombie nobody reaped yet).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

async fn wait_for_pid(file: &Path) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(text) = std::fs::read_to_string(file)
            && text.ends_with('\n')
            && let Ok(pid) = text.trim().parse()
        {
            return pid;
        }
        assert!(Instant::now() < deadline, "the command never wrote its pid");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_gone(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while !gone(pid) {
        assert!(Instant::now() < deadline, "process {pid} survived the kill");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn denied_without_an_approval_system() -> TestResult {
    let dir = tempfile::tempdir()?;
    let c = ctx(dir.path());
    let log = record_events(&c.hooks);
    let out = bash(json!({}))
        .execute(json!({"command": "touch made"}), &c)
        .await;
    let err = expect_error(&out);
    assert!(err.contains("was not run"), "{err}");
    assert!(err.contains("no approval system"), "{err}");
    assert!(!dir.path().join("made").exists());
    assert_eq!(
        approval_events(&log),
        vec![events::APPROVAL_REQUIRED, events::APPROVAL_DENIED]
    );
    Ok(())
}

#[tokio::test]
async fn allowed_with_allow_all_emits_events_in_order() -> TestResult {
    let dir = tempfile::tempdir()?;
    let c = allowing(dir.path());
    let log = record_events(&c.hooks);
    let out = bash(json!({}))
        .execute(
            json!({"command": "pwd; echo to-stderr >&2", "description": "where am I"}),
            &c,
        )
        .await;
    let text = expect_ok(&out);
    let canonical = std::fs::canonicalize(dir.path())?;
    assert_eq!(
        text,
        format!("{}\nto-stderr\n(exit code 0)", canonical.display())
    );
    assert_eq!(
        approval_events(&log),
        vec![events::APPROVAL_REQUIRED, events::APPROVAL_GRANTED]
    );
    let recorded = log.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let (_, required) = &recorded[0];
    assert_eq!(required["command"], "pwd; echo to-stderr >&2");
    assert_eq!(required["description"], "where am I");
    assert_eq!(required["tool_name"], "bash");
    assert_eq!(required["call_id"], "call-1");
    assert_eq!(recorded[1].1["decision"], "allow");
    Ok(())
}

#[tokio::test]
async fn denied_with_deny_all() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut c = ctx(dir.path());
    c.approval = Some(Arc::new(FixedApproval::deny_all()));
    let log = record_events(&c.hooks);
    let out = bash(json!({}))
        .execute(json!({"command": "touch made"}), &c)
        .await;
    let err = expect_error(&out);
    assert!(
        err.contains("was not run") && err.contains("denied by policy"),
        "{err}"
    );
    assert!(!dir.path().join("made").exists());
    let recorded = log.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert_eq!(
        approval_events(&log),
        vec![events::APPROVAL_REQUIRED, events::APPROVAL_DENIED]
    );
    assert_eq!(recorded[1].1["reason"], "denied by policy");
    Ok(())
}

#[tokio::test]
async fn deny_list_wins_over_approval_and_allow() -> TestResult {
    let dir = tempfile::tempdir()?;
    let c = allowing(dir.path());
    let log = record_events(&c.hooks);
    let tool = bash(json!({"allow": ["touch"], "deny": ["rm", "re:curl"]}));
    for command in [
        "touch made && rm made",
        "touch made; /bin/rm -f made",
        "curl -s x",
    ] {
        let err = expect_error(&tool.execute(json!({"command": command}), &c).await);
        assert!(err.contains("deny rule"), "{command}: {err}");
    }
    assert!(!dir.path().join("made").exists());
    assert!(approval_events(&log).is_empty());
    Ok(())
}

#[tokio::test]
async fn allow_list_runs_without_asking() -> TestResult {
    let dir = tempfile::tempdir()?;
    let c = ctx(dir.path()); // no approval system at all
    let log = record_events(&c.hooks);
    let tool = bash(json!({"allow": ["echo", "re:^printf [a-z]+$"]}));
    let out = tool.execute(json!({"command": "echo hello"}), &c).await;
    assert_eq!(expect_ok(&out), "hello\n(exit code 0)");
    let out = tool.execute(json!({"command": "printf abc"}), &c).await;
    assert_eq!(expect_ok(&out), "abc\n(exit code 0)");
    assert!(approval_events(&log).is_empty());
    // Chained onto an allowed command, anything else still needs approval.
    let err = expect_error(
        &tool
            .execute(json!({"command": "echo hi; touch made"}), &c)
            .await,
    );
    assert!(err.contains("was not run"), "{err}");
    assert!(!dir.path().join("made").exists());
    Ok(())
}

#[tokio::test]
async fn a_hook_can_deny_before_anyone_is_asked() -> TestResult {
    struct Counting(AtomicUsize);
    #[async_trait]
    impl ApprovalSystem for Counting {
        async fn request_approval(
            &self,
            _r: ApprovalRequest,
        ) -> Result<ApprovalDecision, ApprovalError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(ApprovalDecision::Allow)
        }
    }
    let dir = tempfile::tempdir()?;
    let mut c = ctx(dir.path());
    let approval = Arc::new(Counting(AtomicUsize::new(0)));
    c.approval = Some(approval.clone());
    c.hooks.register(
        events::APPROVAL_REQUIRED,
        hook_fn(|_, _| async { Ok(HookResult::deny("no shell on Fridays")) }),
        0,
        "policy",
    );
    let err = expect_error(
        &bash(json!({}))
            .execute(json!({"command": "true"}), &c)
            .await,
    );
    assert!(err.contains("no shell on Fridays"), "{err}");
    assert_eq!(approval.0.load(Ordering::SeqCst), 0);
    Ok(())
}

#[tokio::test]
async fn allow_always_is_remembered_for_the_same_command() -> TestResult {
    struct Always(AtomicUsize);
    #[async_trait]
    impl ApprovalSystem for Always {
        async fn request_approval(
            &self,
            r: ApprovalRequest,
        ) -> Result<ApprovalDecision, ApprovalError> {
            assert_eq!(r.subject, "bash");
            assert!(r.prompt.contains("echo again"));
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(ApprovalDecision::AllowAlways)
        }
    }
    let dir = tempfile::tempdir()?;
    let mut c = ctx(dir.path());
    let approval = Arc::new(Always(AtomicUsize::new(0)));
    c.approval = Some(approval.clone());
    let tool = bash(json!({}));
    for _ in 0..3 {
        let out = tool.execute(json!({"command": "echo again"}), &c).await;
        expect_ok(&out);
    }
    assert_eq!(approval.0.load(Ordering::SeqCst), 1);
    Ok(())
}

#[tokio::test]
async fn exit_codes_are_reported() -> TestResult {
    let dir = tempfile::tempdir()?;
    let c = allowing(dir.path());
    let out = bash(json!({}))
        .execute(json!({"command": "echo oops; exit 7"}), &c)
        .await;
    assert_eq!(expect_error(&out), "the command exited with code 7");
    assert_eq!(out.output, "oops\n");
    assert_eq!(
        out.text_for_model(),
        "oops\n\nthe command exited with code 7"
    );
    let out = bash(json!({}))
        .execute(json!({"command": "true"}), &c)
        .await;
    assert_eq!(expect_ok(&out), "(no output)\n(exit code 0)");
    Ok(())
}

#[tokio::test]
async fn timeout_kills_quickly_and_says_so() -> TestResult {
    let dir = tempfile::tempdir()?;
    let c = allowing(dir.path());
    let started = Instant::now();
    let out = bash(json!({}))
        .execute(
            json!({"command": "echo before; sleep 30 & echo $! > pid; sleep 30", "timeout_secs": 1}),
            &c,
        )
        .await;
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    let err = expect_error(&out);
    assert!(err.contains("timed out after 1 s"), "{err}");
    assert_eq!(out.output, "before\n");
    let pid = wait_for_pid(&dir.path().join("pid")).await;
    wait_gone(pid).await;
    Ok(())
}

#[tokio::test]
async fn cancellation_kills_the_process_group() -> TestResult {
    let dir = tempfile::tempdir()?;
    let c = allowing(dir.path());
    let cancel = c.cancel.clone();
    let tool = bash(json!({}));
    let run = tokio::spawn(async move {
        tool.execute(json!({"command": "sleep 30 & echo $! > pid; wait"}), &c)
            .await
    });
    let pid = wait_for_pid(&dir.path().join("pid")).await;
    assert!(!gone(pid));
    let started = Instant::now();
    cancel.cancel();
    let out = run.await?;
    assert!(started.elapsed() < Duration::from_secs(3));
    let err = expect_error(&out);
    assert!(err.contains("cancelled"), "{err}");
    wait_gone(pid).await;
    Ok(())
}

#[tokio::test]
async fn dropping_the_run_kills_the_process_group() -> TestResult {
    // The orchestrator aborts a tool on an immediate cancel by dropping its
    // future; the processes must not outlive it.
    let dir = tempfile::tempdir()?;
    let c = allowing(dir.path());
    let tool = bash(json!({}));
    let run = tokio::spawn(async move {
        tool.execute(json!({"command": "sleep 30 & echo $! > pid; wait"}), &c)
            .await
    });
    let pid = wait_for_pid(&dir.path().join("pid")).await;
    run.abort();
    assert!(run.await.is_err_and(|e| e.is_cancelled()));
    wait_gone(pid).await;
    Ok(())
}

#[tokio::test]
async fn output_is_capped_keeping_head_and_tail() -> TestResult {
    let dir = tempfile::tempdir()?;
    let c = allowing(dir.path());
    let out = bash(json!({"max_output_chars": 1000}))
        .execute(json!({"command": "seq 1 100000"}), &c)
        .await;
    let text = expect_ok(&out);
    assert!(text.starts_with("1\n2\n3\n"), "{}", &text[..50]);
    assert!(text.ends_with("99999\n100000\n(exit code 0)"), "{text}");
    assert!(text.contains("bytes of output omitted"), "{text}");
    assert!(text.chars().count() < 1200, "{}", text.len());
    Ok(())
}

#[tokio::test]
async fn bad_input_and_config_are_clear() -> TestResult {
    let dir = tempfile::tempdir()?;
    let c = allowing(dir.path());
    let tool = bash(json!({}));
    for (input, wanted) in [
        (json!({}), "needs `command`"),
        (json!({"command": "  "}), "non-empty `command`"),
        (json!({"command": "true", "timeout_secs": 0}), "at least 1"),
        (
            json!({"command": "true", "timeout": 5}),
            "no field `timeout`",
        ),
    ] {
        let err = expect_error(&tool.execute(input.clone(), &c).await);
        assert!(err.contains(wanted), "{input}: {err}");
    }
    for config in [
        json!({"denny": ["rm"]}),
        json!({"deny": ["re:("]}),
        json!({"timeout_secs": 0}),
        json!({"allow": "echo"}),
    ] {
        let err = mount(BASH, config.clone()).err().map(|e| e.to_string());
        assert!(
            err.as_deref().is_some_and(|e| e.contains("tool-bash")),
            "{config}: {err:?}"
        );
    }
    Ok(())
}
