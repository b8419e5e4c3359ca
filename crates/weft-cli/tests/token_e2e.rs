//! End to end: `weft token create|list|revoke` with the real binary (the
//! last line of `create` is the token alone; the file keeps hashes only,
//! mode 0600) and `weft serve` using `$WEFT_HOME/tokens.toml`: tenants see
//! only their own sessions, the single `--token` stays an admin, and a
//! revocation applies to the running daemon. The helpers are in
//! `support/mod.rs`.

mod support;

use support::*;
use weft_testkit::session_path;

/// `weft token create`'s token: its last line, alone.
fn create(env: &Env, tenant: &str, scope: &str) -> String {
    let out = env.ok(&["token", "create", "--tenant", tenant, "--scope", scope]);
    let token = out.lines().last().expect("a line").to_string();
    assert!(token.starts_with("weft_") && !token.contains(' '), "{out}");
    token
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_made_by_the_cli_scope_a_running_daemon() {
    let env = Env::new();
    let alpha = create(&env, "alpha", "write");
    let beta = create(&env, "beta", "read");
    let file = env.home.path().join("tokens.toml");
    let text = std::fs::read_to_string(&file).expect("tokens.toml");
    assert!(!text.contains(&alpha) && !text.contains(&beta), "{text}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let listed = env.ok(&["token", "list"]);
    assert!(
        listed.contains("alpha") && listed.contains("beta"),
        "{listed}"
    );
    assert!(
        !listed.contains(&alpha) && !listed.contains(&beta),
        "{listed}"
    );
    let json = env.json(&["token", "list", "--json"]);
    let rows = json.as_array().expect("a list");
    assert_eq!(rows.len(), 2, "{json}");
    assert!(rows.iter().all(|r| r.get("hash").is_none()), "{json}");
    let alpha_id = rows
        .iter()
        .find(|r| r["tenant"] == "alpha")
        .and_then(|r| r["id"].as_str())
        .expect("alpha's id")
        .to_string();

    let err = env.fails(&["token", "create", "--tenant", "no spaces"]);
    assert!(err.contains("invalid tenant name"), "{err}");
    let err = env.fails(&["token", "revoke", "tok_000000000000"]);
    assert!(err.contains("weft token list"), "{err}");

    // The daemon picks the file up from the home; --token stays an admin.
    let d = env.serve(&["--token", "legacy-admin"]).await;
    let as_alpha = Api::new(d.base.clone(), Some(alpha));
    let as_beta = Api::new(d.base.clone(), Some(beta));
    let id = as_alpha.create().await;
    let (status, body) = as_alpha.get(&session_path(&id)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["metadata"]["tenant"], "alpha");
    let (status, _) = as_beta.get(&session_path(&id)).await;
    assert_eq!(status, 404);
    let (status, body) = as_beta.get("/api/v1/sessions/").await;
    assert_eq!(status, 200);
    assert_eq!(body.as_array().map(Vec::len), Some(0), "{body}");
    let (status, _) = d.get(&session_path(&id)).await;
    assert_eq!(status, 200, "the single --token is an admin");

    // Revoked while the daemon runs: refused from the next request on.
    let out = env.ok(&["token", "revoke", &alpha_id]);
    assert!(out.contains(&alpha_id), "{out}");
    let (status, _) = as_alpha.get("/api/v1/sessions/").await;
    assert_eq!(status, 401);
    assert!(!env.ok(&["token", "list"]).contains("alpha"));

    // An explicit --tokens file must exist.
    let err = env.fails(&[
        "serve",
        "--port",
        "0",
        "--tokens",
        "/nonexistent/tokens.toml",
    ]);
    assert!(err.contains("does not exist"), "{err}");
}
