//! The `user:` state rule (`weft_core::stored`) through all three front
//! ends on one shared store: the library (`Session`'s state API), the CLI
//! (`weft state …`, the user from `WEFT_USER`) and the daemon (`/state`,
//! one `weft serve` per user). A `user:` key lives in the namespace of the
//! session's owner: every session of the same owner sees it, whichever
//! front end wrote it; a session of another owner does not.

mod support;

use std::sync::Arc;

use serde_json::{Value, json};
use support::{Daemon, ECHO_PLAN, Env};
use weft_core::mount::{MountPlan, PlanFormat};
use weft_core::registry::ModuleRegistry;
use weft_core::session::Project;
use weft_core::{Session, SessionConfig, SessionId, Store};
use weft_store::StoreConfig;

const KEY: &str = "user:x";

/// A session made through the library on `store` with `user` as its
/// config's user: a new one (owned by `user`), or `resume`.
async fn library_session(
    env: &Env,
    store: &Arc<dyn Store>,
    user: Option<&str>,
    resume: Option<&SessionId>,
) -> Session {
    let plan = MountPlan::parse(ECHO_PLAN, PlanFormat::Json)
        .expect("plan")
        .plan;
    let mut registry = ModuleRegistry::with_core_modules();
    weft_providers::register(&mut registry);
    let mut config = SessionConfig::new(plan, store.clone(), Arc::new(registry));
    config.project = Project::from_dir(env.project.path());
    config.user = user.map(str::to_string);
    config.session_id = resume.cloned();
    let session = Session::new(config);
    session.initialize().await.expect("initialize");
    session
}

/// `weft args…` run as `user` (`WEFT_USER`).
fn weft_as(env: &Env, user: &str, args: &[&str]) -> std::process::Output {
    env.command(args)
        .env("WEFT_USER", user)
        .output()
        .expect("run weft")
}

/// A session owned by `user`, made by one `weft run` as that user.
fn cli_session(env: &Env, plan: &str, user: &str) -> String {
    let out = weft_as(
        env,
        user,
        &["run", "--mount-plan", plan, "--output", "json", "hi"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let body: Value = serde_json::from_slice(&out.stdout).expect("json");
    body["session_id"].as_str().expect("session_id").to_string()
}

/// `weft state get id user:x` as `user` (None: not set).
fn cli_get(env: &Env, user: &str, id: &str) -> Option<Value> {
    let out = weft_as(env, user, &["state", "get", id, KEY]);
    if out.status.success() {
        return Some(serde_json::from_slice(&out.stdout).expect("json value"));
    }
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no state key"), "{err}");
    None
}

/// `GET …/state/user:x` of session `id` through `daemon` (None: not set).
async fn daemon_get(daemon: &Daemon, id: &str) -> Option<Value> {
    let (status, body) = daemon
        .get(&format!("/api/v1/sessions/{id}/state/{KEY}"))
        .await;
    match status {
        200 => {
            assert_eq!(body["scope"], "user", "{body}");
            Some(body["value"].clone())
        }
        404 => None,
        other => panic!("GET state: {other} {body}"),
    }
}

/// One session per front end and owner: index 0 is ann's, 1 is bob's.
struct Sessions {
    library: [Session; 2],
    cli: [String; 2],
    daemons: [Daemon; 2],
    daemon: [String; 2],
}

const USERS: [&str; 2] = ["ann", "bob"];

impl Sessions {
    /// What `user:x` reads as through every front end in the session of
    /// `USERS[owner]`, each front end acting as that owner.
    async fn reads(&self, env: &Env, owner: usize) -> Vec<(&'static str, Option<Value>)> {
        vec![
            (
                "library",
                self.library[owner].state_get(KEY).await.expect("get"),
            ),
            ("cli", cli_get(env, USERS[owner], &self.cli[owner])),
            (
                "daemon",
                daemon_get(&self.daemons[owner], &self.daemon[owner]).await,
            ),
        ]
    }

    /// Every front end reads `value` in ann's sessions and nothing in
    /// bob's.
    async fn check(&self, env: &Env, value: Option<Value>, after: &str) {
        for (front, read) in self.reads(env, 0).await {
            assert_eq!(read, value, "ann through the {front}, after {after}");
        }
        for (front, read) in self.reads(env, 1).await {
            assert_eq!(read, None, "bob through the {front}, after {after}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_state_follows_the_session_owner_through_library_cli_and_daemon() {
    let env = Env::new();
    let plan = env.file("echo.json", ECHO_PLAN);
    let plan = plan.to_str().expect("path");
    // The store the binaries open: the default one under WEFT_HOME.
    let store =
        weft_store::open_store(&StoreConfig::default(), env.home.path()).expect("open store");
    let mut daemons = Vec::new();
    for user in USERS {
        daemons.push(
            env.serve_with(&[("WEFT_USER", user)], &["--mount-plan", plan])
                .await,
        );
    }
    let daemon = [daemons[0].create().await, daemons[1].create().await];
    let Ok(daemons) = <[Daemon; 2]>::try_from(daemons) else {
        panic!("two daemons");
    };
    let s = Sessions {
        library: [
            library_session(&env, &store, Some("ann"), None).await,
            library_session(&env, &store, Some("bob"), None).await,
        ],
        cli: [
            cli_session(&env, plan, "ann"),
            cli_session(&env, plan, "bob"),
        ],
        daemons,
        daemon,
    };
    s.check(&env, None, "nothing was set").await;

    // Set as ann through each front end in turn.
    s.library[0]
        .state_set(KEY, json!("from the library"))
        .await
        .expect("set");
    s.check(&env, Some(json!("from the library")), "the library set it")
        .await;

    let out = weft_as(
        &env,
        "ann",
        &["state", "set", &s.cli[0], KEY, "from the cli"],
    );
    assert!(out.status.success(), "{out:?}");
    s.check(&env, Some(json!("from the cli")), "the cli set it")
        .await;

    let (status, body) = s.daemons[0]
        .put(
            &format!("/api/v1/sessions/{}/state/{KEY}", s.daemon[0]),
            json!({"value": "from the daemon"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    s.check(&env, Some(json!("from the daemon")), "the daemon set it")
        .await;

    // The owner decides, not the reader: bob reading ann's session sees
    // ann's key, ann reading bob's does not.
    assert_eq!(
        cli_get(&env, "bob", &s.cli[0]),
        Some(json!("from the daemon"))
    );
    assert_eq!(daemon_get(&s.daemons[0], &s.daemon[1]).await, None);
    // Resuming ann's session with bob as the config's user changes nothing.
    let resumed = library_session(&env, &store, Some("bob"), Some(s.library[0].id())).await;
    assert_eq!(
        resumed.state_get(KEY).await.expect("get"),
        Some(json!("from the daemon"))
    );
    // A session without an owner uses the `default` user's keys, whoever
    // reads it (not the reading daemon's user).
    let ownerless = library_session(&env, &store, None, None).await;
    let id = ownerless.id().to_string();
    ownerless
        .state_set(KEY, json!("nobody's"))
        .await
        .expect("set");
    assert_eq!(
        daemon_get(&s.daemons[0], &id).await,
        Some(json!("nobody's"))
    );
    assert_eq!(cli_get(&env, "ann", &id), Some(json!("nobody's")));
    s.check(
        &env,
        Some(json!("from the daemon")),
        "an ownerless session set it",
    )
    .await;

    // Deleting in bob's sessions leaves ann's key; deleting in one of
    // ann's removes it everywhere.
    s.library[1].state_delete(KEY).await.expect("delete");
    let out = weft_as(&env, "bob", &["state", "delete", &s.cli[1], KEY]);
    assert!(out.status.success(), "{out:?}");
    let (status, body) = s.daemons[1]
        .delete(&format!("/api/v1/sessions/{}/state/{KEY}", s.daemon[1]))
        .await;
    assert_eq!(status, 204, "{body}");
    s.check(&env, Some(json!("from the daemon")), "bob deleted his")
        .await;
    let out = weft_as(&env, "ann", &["state", "delete", &s.cli[0], KEY]);
    assert!(out.status.success(), "{out:?}");
    s.check(&env, None, "ann deleted hers").await;
}
