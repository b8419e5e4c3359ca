//! Tests of the hook registry (`hooks`): precedence, chains, approvals.
use super::*;
use crate::approval::{ApprovalDecision, FixedApproval};
use serde_json::json;
use std::sync::Mutex;

fn returning(result: HookResult) -> Arc<dyn HookHandler> {
    hook_fn(move |_, _| {
        let r = result.clone();
        async move { Ok(r) }
    })
}

fn recording(log: Arc<Mutex<Vec<String>>>, name: &'static str) -> Arc<dyn HookHandler> {
    hook_fn(move |_, data| {
        let log = log.clone();
        async move {
            log.lock().unwrap().push(format!("{name}:{}", data["n"]));
            Ok(HookResult::proceed())
        }
    })
}

#[tokio::test]
async fn runs_in_priority_order_and_merges_defaults() {
    let reg = HookRegistry::new();
    reg.set_default("session_id", json!("s1"));
    let log = Arc::new(Mutex::new(Vec::new()));
    reg.register("e", recording(log.clone(), "late"), 10, "late");
    reg.register("e", recording(log.clone(), "early"), -5, "early");
    reg.register("e", recording(log.clone(), "mid"), 0, "mid");
    reg.register("e", recording(log.clone(), "mid2"), 0, "mid2");
    let out = reg.emit("e", json!({"n": 1})).await;
    assert_eq!(
        *log.lock().unwrap(),
        vec!["early:1", "mid:1", "mid2:1", "late:1"]
    );
    let data = out.data.unwrap();
    assert_eq!(data["session_id"], "s1");
    assert!(data["timestamp"].is_string());
    assert_eq!(out.action, HookAction::Continue);
}

#[tokio::test]
async fn deny_stops_the_chain_and_wins() {
    let reg = HookRegistry::new();
    let log = Arc::new(Mutex::new(Vec::new()));
    reg.register("e", returning(HookResult::inject_context("x")), 0, "inject");
    reg.register("e", returning(HookResult::deny("no")), 1, "deny");
    reg.register("e", recording(log.clone(), "after"), 2, "after");
    let out = reg.emit("e", json!({})).await;
    assert_eq!(out.action, HookAction::Deny);
    assert_eq!(out.reason.as_deref(), Some("no"));
    assert!(log.lock().unwrap().is_empty(), "deny must stop the chain");
}

#[tokio::test]
async fn modify_chains() {
    let reg = HookRegistry::new();
    let add = |k: &'static str| {
        hook_fn(move |_, mut data: Value| async move {
            data[k] = json!(true);
            Ok(HookResult::modify(data))
        })
    };
    reg.register("e", add("a"), 0, "a");
    reg.register("e", add("b"), 1, "b");
    let out = reg.emit("e", json!({})).await;
    assert_eq!(out.action, HookAction::Modify);
    let data = out.data.unwrap();
    assert_eq!(data["a"], true);
    assert_eq!(data["b"], true);
}

#[tokio::test]
async fn ephemeral_injections_are_collected_apart_from_stored_ones() {
    let reg = HookRegistry::new();
    reg.register("e", returning(HookResult::inject_context("kept")), 0, "k");
    let reminder = HookResult::inject_ephemeral("once").with_role(InjectionRole::User);
    reg.register("e", returning(reminder), 1, "r");
    let out = reg.emit("e", json!({})).await;
    assert_eq!(out.action, HookAction::InjectContext);
    assert_eq!(out.context_injection.as_deref(), Some("kept"));
    assert_eq!(out.injections.len(), 2);
    assert!(!out.injections[0].ephemeral);
    assert_eq!(out.injections[1].text, "once");
    assert!(out.injections[1].ephemeral);
    assert_eq!(out.injections[1].role, InjectionRole::User);
    assert_eq!(out.stored_injections().count(), 1);
    // Amplifier's field names on the wire.
    let wire: HookResult = serde_json::from_value(json!({
        "action": "inject_context", "context_injection": "x",
        "context_injection_role": "user", "ephemeral": true
    }))
    .unwrap();
    assert!(wire.ephemeral);
    assert_eq!(wire.context_injection_role, InjectionRole::User);
}

#[tokio::test]
async fn precedence_inject_over_modify_and_ask_over_inject() {
    let reg = HookRegistry::new();
    reg.register("e", returning(HookResult::modify(json!({"m": 1}))), 0, "m");
    reg.register("e", returning(HookResult::inject_context("one")), 1, "i1");
    reg.register("e", returning(HookResult::inject_context("two")), 2, "i2");
    let out = reg.emit("e", json!({})).await;
    assert_eq!(out.action, HookAction::InjectContext);
    assert_eq!(out.context_injection.as_deref(), Some("one\n\ntwo"));
    assert_eq!(out.data.unwrap()["m"], 1);

    // ask_user beats inject_context: with no approval system it denies.
    reg.register("e", returning(HookResult::ask_user("ok?")), 3, "ask");
    let out = reg.emit("e", json!({})).await;
    assert_eq!(out.action, HookAction::Deny);
    // With an allowing approval system the event proceeds (inject wins).
    reg.set_approval(Some(Arc::new(FixedApproval::allow_all())));
    let out = reg.emit("e", json!({})).await;
    assert_eq!(out.action, HookAction::InjectContext);
    // A denying one denies.
    reg.set_approval(Some(Arc::new(FixedApproval(ApprovalDecision::Deny {
        reason: Some("nope".into()),
    }))));
    let out = reg.emit("e", json!({})).await;
    assert_eq!(out.action, HookAction::Deny);
    assert_eq!(out.reason.as_deref(), Some("nope"));
}

#[tokio::test]
async fn ask_user_times_out_to_deny() {
    struct Never;
    #[async_trait]
    impl ApprovalSystem for Never {
        async fn request_approval(
            &self,
            _r: ApprovalRequest,
        ) -> Result<ApprovalDecision, crate::approval::ApprovalError> {
            std::future::pending().await
        }
    }
    let reg = HookRegistry::new();
    reg.set_approval(Some(Arc::new(Never)));
    let mut ask = HookResult::ask_user("ok?");
    ask.approval_timeout_secs = Some(0.05);
    reg.register("e", returning(ask), 0, "ask");
    let out = reg.emit("e", json!({})).await;
    assert_eq!(out.action, HookAction::Deny);
}

#[tokio::test]
async fn failing_handler_is_skipped() {
    let reg = HookRegistry::new();
    reg.register(
        "e",
        hook_fn(|_, _| async { Err(HookError("boom".into())) }),
        0,
        "bad",
    );
    reg.register(
        "e",
        returning(HookResult::modify(json!({"ok": 1}))),
        1,
        "good",
    );
    let out = reg.emit("e", json!({})).await;
    assert_eq!(out.action, HookAction::Modify);
}

#[tokio::test]
async fn sync_handlers_run_in_order_with_async_ones() {
    let reg = HookRegistry::new();
    let log = Arc::new(Mutex::new(Vec::new()));
    let l = log.clone();
    let sync = hook_sync_fn(move |_, data| {
        l.lock().unwrap().push(format!("sync:{}", data["n"]));
        let mut data = data.clone();
        data["n"] = json!(2);
        Ok(HookResult::modify(data))
    });
    reg.register("e", recording(log.clone(), "after"), 1, "after");
    reg.register("e", sync, 0, "sync");
    reg.register(
        "e",
        hook_sync_fn(|_, _| Ok(HookResult::deny("no"))),
        2,
        "deny",
    );
    reg.register("e", recording(log.clone(), "never"), 3, "never");
    let out = reg.emit("e", json!({"n": 1})).await;
    assert_eq!(*log.lock().unwrap(), vec!["sync:1", "after:2"]);
    assert_eq!(out.action, HookAction::Deny);
    assert_eq!(out.data.unwrap()["n"], 2);
}

#[tokio::test]
async fn wildcard_and_unregister() {
    let reg = HookRegistry::new();
    let log = Arc::new(Mutex::new(Vec::new()));
    let h = reg.register(ALL_EVENTS, recording(log.clone(), "all"), 0, "all");
    reg.emit("x", json!({"n": 1})).await;
    reg.emit("y", json!({"n": 2})).await;
    h.unregister();
    reg.emit("z", json!({"n": 3})).await;
    assert_eq!(*log.lock().unwrap(), vec!["all:1", "all:2"]);
}
