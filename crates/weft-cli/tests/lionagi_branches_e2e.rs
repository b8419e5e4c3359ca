//! LionAGI's branch parameters on the real daemon (`weft serve`), read
//! back through its API and the CLI on the same home: `new_branch` with
//! `system_sender`, `system_datetime` (true or a string) and `user`; the
//! branch's system message as the first row of its messages and of the
//! table export; `remove_branch(…, delete=true)` taking the branch's
//! messages out of views and exports while the log keeps them.

mod support;

use serde_json::{Value, json};
use support::*;

fn echo_plan(env: &Env) -> std::path::PathBuf {
    env.file(
        "echo.json",
        &json!({
            "session": {"orchestrator": "loop-basic", "context": "context-simple"},
            "providers": [{"module": "provider-scripted", "config": {"mode": "echo-context"}}]
        })
        .to_string(),
    )
}

fn is_minute_stamp(s: &str) -> bool {
    // 2026-12-02T06:30Z
    s.len() == 17
        && s.ends_with('Z')
        && s.as_bytes()[10] == b'T'
        && s[..10].chars().filter(|c| *c == '-').count() == 2
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_branch_parameters_and_deleting_a_branch() {
    let env = Env::new();
    let plan = echo_plan(&env);
    let daemon = env
        .serve(&["--mount-plan", plan.to_str().expect("utf-8")])
        .await;
    let id = daemon.active().await;
    let branches = format!("/api/v1/sessions/{id}/branches");

    // system_datetime = true: the current time, to the minute.
    let (status, coding) = daemon
        .post(
            &branches,
            json!({"name": "coding", "system": "You code.", "systemSender": "lead",
                   "systemDatetime": true, "user": "ana"}),
        )
        .await;
    assert_eq!(status, 201, "{coding}");
    assert_eq!(coding["systemSender"], "lead");
    assert_eq!(coding["user"], "ana");
    let stamp = coding["systemDatetime"]
        .as_str()
        .expect("stamped")
        .to_string();
    assert!(is_minute_stamp(&stamp), "{stamp}");
    assert_eq!(
        coding["system"],
        format!("System Time: {stamp}\n\nYou code.").as_str()
    );
    assert_eq!(coding["messageCount"], 1, "the system message: {coding}");

    // A string is used as is (LionAGI's snake_case names work too).
    let (status, notes) = daemon
        .post(
            &branches,
            json!({"name": "notes", "system": "Take notes.", "system_sender": "boss",
                   "system_datetime": "Monday 09:00"}),
        )
        .await;
    assert_eq!(status, 201, "{notes}");
    assert_eq!(notes["system"], "System Time: Monday 09:00\n\nTake notes.");
    assert_eq!(notes["systemDatetime"], "Monday 09:00");
    assert_eq!(notes["user"], Value::Null);
    // Neither a boolean nor a string: refused.
    let (status, body) = daemon
        .post(&branches, json!({"name": "bad", "systemDatetime": 5}))
        .await;
    assert_eq!(status, 422, "{body}");

    // The system message is the branch's first message, sent by
    // system_sender to the branch; the model gets it as the system prompt,
    // not twice.
    for (branch, text) in [("coding", "write it"), ("notes", "NOTE-TEXT")] {
        let (status, body) = daemon
            .post(
                &format!("{branches}/{branch}/send-message"),
                json!({"content": text}),
            )
            .await;
        assert_eq!(status, 202, "{body}");
        daemon.wait_idle(&id).await;
    }
    let (status, detail) = daemon.get(&format!("{branches}/coding")).await;
    assert_eq!(status, 200, "{detail}");
    let first = &detail["messages"][0];
    assert_eq!(first["role"], "system", "{detail}");
    assert_eq!(first["sender"], "lead", "{detail}");
    assert_eq!(detail["messages"][2]["role"], "assistant", "{detail}");

    // The table export has the system message as a row.
    let csv = env.ok(&[
        "session", "export", &id, "--format", "csv", "--branch", "coding",
    ]);
    assert!(
        csv.contains(&format!(",system,\"System Time: {stamp}\n\nYou code.\",")),
        "{csv}"
    );
    assert!(csv.contains(",lead,coding,coding,"), "{csv}");

    // Delete "notes": its messages leave the views and exports; the log
    // keeps them (a record, not a rewrite).
    let (status, body) = daemon
        .delete(&format!("{branches}/notes?delete=true"))
        .await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = daemon
        .delete(&format!("{branches}/coding?delete=maybe"))
        .await;
    assert!(status == 400 || status == 422, "{status}: {body}");
    let (_, all) = daemon.get(&format!("/api/v1/sessions/{id}/messages")).await;
    assert!(!all.to_string().contains("NOTE-TEXT"), "{all}");
    assert!(all.to_string().contains("write it"), "{all}");
    let jsonl = env.ok(&["session", "export", &id, "--format", "jsonl"]);
    assert!(!jsonl.contains("NOTE-TEXT"), "{jsonl}");
    assert!(jsonl.contains("\"delete\":true"), "{jsonl}");
    let log = env.ok(&["session", "show", &id, "--log"]);
    assert!(!log.contains("NOTE-TEXT"), "{log}");
    assert_eq!(log.matches("(branch deleted)").count(), 3, "{log}");
    let kinds = log_kinds(&env, &id);
    assert!(
        kinds
            .iter()
            .any(|(k, d)| k == "message" && d.to_string().contains("NOTE-TEXT")),
        "the log keeps the deleted branch's messages"
    );

    // Removed without delete: the jsonl export keeps its messages.
    let (status, body) = daemon.delete(&format!("{branches}/coding")).await;
    assert_eq!(status, 204, "{body}");
    let jsonl = env.ok(&["session", "export", &id, "--format", "jsonl"]);
    assert!(jsonl.contains("write it"), "{jsonl}");
    let log = env.ok(&["session", "show", &id, "--log"]);
    assert!(log.contains("(branch removed)"), "{log}");
}
