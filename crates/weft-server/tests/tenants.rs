//! Tenants on one daemon (issue 16): tokens from a token file, each with a
//! tenant and a scope. Another tenant's session is a 404 on every
//! session route `/openapi.json` lists (the walk fails for a new route
//! without the check), lists are disjoint, admin sees all, scopes hold,
//! revocations apply without a restart.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};
use weft_core::SessionId;
use weft_server::{Scope, ServerConfig, TokenFile};

/// A daemon with a token file holding the tokens `wanted` (name → tenant,
/// scope) and the single `--token` "legacy-admin"; the clients by name.
struct Tenants {
    server: Server,
    file: PathBuf,
    _dir: tempfile::TempDir,
    clients: BTreeMap<&'static str, Api>,
}

impl Tenants {
    fn api(&self, name: &str) -> &Api {
        &self.clients[name]
    }
}

async fn tenants(plans: weft_server::StaticPlanSource) -> Tenants {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("tokens.toml");
    let mut tokens = TokenFile::default();
    let mut secrets = BTreeMap::new();
    for (name, tenant, scope) in [
        ("a", "alpha", Scope::Write),
        ("b", "beta", Scope::Write),
        ("b-read", "beta", Scope::Read),
        ("root", "ops", Scope::Admin),
    ] {
        let (_, secret) = tokens.create(tenant, scope).expect("create");
        secrets.insert(name, secret);
    }
    tokens.save(&file).expect("save");
    let server = start_with(
        plans,
        ServerConfig {
            token: Some("legacy-admin".into()),
            tokens: Some(file.clone()),
            port: 0,
            ..Default::default()
        },
    )
    .await;
    let mut clients: BTreeMap<&'static str, Api> = secrets
        .into_iter()
        .map(|(name, secret)| (name, Api::new(server.base.clone(), Some(secret))))
        .collect();
    clients.insert(
        "legacy",
        Api::new(server.base.clone(), Some("legacy-admin".into())),
    );
    clients.insert("none", Api::new(server.base.clone(), None));
    Tenants {
        server,
        file,
        _dir: dir,
        clients,
    }
}

fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|s| s["sessionId"].as_str().expect("id").to_string())
        .collect()
}

/// Every session of `api`'s listing, page by page (`limit` per page).
async fn list_all(api: &Api, query: &str, limit: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/v1/sessions/?limit={limit}{query}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let response = api.req(Method::GET, &path).send().await.expect("list");
        let next = response
            .headers()
            .get("x-next-cursor")
            .map(|v| v.to_str().expect("text").to_string());
        let (status, body) = split(response).await;
        assert_eq!(status, 200, "{body}");
        let page = ids(&body);
        assert!(page.len() <= limit);
        out.extend(page);
        match next {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
}

#[tokio::test]
async fn another_tenants_session_is_404_on_every_session_route() {
    let t = tenants(echo_plans()).await;
    let (a, b) = (t.api("a"), t.api("b"));
    let id = a.active().await;
    let (status, body) = a
        .post(
            &format!("{}/send-message", base(&id)),
            json!({"content": "hello"}),
        )
        .await;
    assert!(status < 300, "{body}");
    a.wait_idle(&id).await;
    let (status, before) = a.get(&base(&id)).await;
    assert_eq!(status, 200, "{before}");
    assert_eq!(before["metadata"]["tenant"], "alpha");

    // What a session that does not exist gets, for comparison.
    let missing = SessionId::new_v7().to_string();
    let (status, missing_body) = b.get(&base(&missing)).await;
    assert_eq!(status, 404);

    let (_, doc) = b.get("/openapi.json").await;
    let mut walked = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        if !path.contains("{id}") {
            continue;
        }
        for method in item.as_object().expect("methods").keys() {
            let method: Method = method.to_uppercase().parse().expect("method");
            let concrete = path
                .replace("{id}", &id)
                .replace("{branch}", "main")
                .replace("{key}", "app:k");
            let response = b
                .req(method.clone(), &concrete)
                .json(&json!({}))
                .send()
                .await
                .expect("send");
            let (status, body) = split(response).await;
            assert_eq!(status, 404, "{method} {path}: {body}");
            // The very body a missing session gets: existence does not leak.
            assert_eq!(
                body["detail"].as_str().map(|d| d.replace(&id, &missing)),
                missing_body["detail"].as_str().map(str::to_string),
                "{method} {path}"
            );
            walked += 1;
        }
    }
    assert!(walked >= 30, "only {walked} session routes walked");

    // Session ids in bodies: /run, /api/v1/chat, parentSessionId.
    for (path, field) in [("/run", "message"), ("/api/v1/chat", "prompt")] {
        let (status, body) = b.post(path, json!({field: "hi", "session_id": id})).await;
        assert_eq!(status, 404, "{path}: {body}");
    }
    let (status, hidden) = b
        .post("/api/v1/sessions/", json!({"parentSessionId": id}))
        .await;
    let (_, absent) = b
        .post("/api/v1/sessions/", json!({"parentSessionId": missing}))
        .await;
    assert_eq!(status, 422, "{hidden}");
    assert_eq!(
        hidden["detail"].as_str().map(|d| d.replace(&id, &missing)),
        absent["detail"].as_str().map(str::to_string)
    );

    // Nothing of tenant A's session changed (the walk sent DELETE, PATCH,
    // terminate, state writes, prompts…).
    let (status, after) = a.get(&base(&id)).await;
    assert_eq!(status, 200, "{after}");
    assert_eq!(after["status"], "active");
    assert_eq!(after["turnCount"], before["turnCount"]);
    let (status, _) = a.get(&format!("{}/state/app:k", base(&id))).await;
    assert_eq!(status, 404, "tenant B's state write did not land");
    t.server.stop().await;
}

#[tokio::test]
async fn lists_and_search_are_disjoint_and_admin_sees_both() {
    let t = tenants(echo_plans()).await;
    let (a, b) = (t.api("a"), t.api("b"));
    let mut mine = Vec::new();
    for i in 0..3 {
        let (status, body) = a
            .post(
                "/api/v1/sessions/",
                json!({"name": format!("shared topic {i}")}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        mine.push(body["sessionId"].as_str().expect("id").to_string());
    }
    let mut theirs = Vec::new();
    for i in 0..2 {
        let (_, body) = b
            .post(
                "/api/v1/sessions/",
                json!({"name": format!("shared topic b{i}")}),
            )
            .await;
        theirs.push(body["sessionId"].as_str().expect("id").to_string());
    }
    // Interleave: B's newest between A's.
    let (status, body) = a
        .post("/api/v1/sessions/", json!({"name": "shared late"}))
        .await;
    assert_eq!(status, 201, "{body}");
    mine.push(body["sessionId"].as_str().expect("id").to_string());
    // A fork is its source's tenant's.
    let (status, fork) = a.post(&format!("{}/fork", base(&mine[0])), json!({})).await;
    assert_eq!(status, 201, "{fork}");
    assert_eq!(fork["metadata"]["tenant"], "alpha");
    mine.push(fork["sessionId"].as_str().expect("id").to_string());

    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    // Pages of 2 over a store where the tenants' sessions interleave.
    let seen_a = list_all(a, "", 2).await;
    assert_eq!(sorted(seen_a.clone()), sorted(mine.clone()));
    let seen_b = list_all(b, "", 1).await;
    assert_eq!(sorted(seen_b), sorted(theirs.clone()));
    assert_eq!(
        sorted(list_all(t.api("b-read"), "", 50).await),
        sorted(theirs.clone())
    );
    // Search (the name filter) is filtered too.
    let found = list_all(b, "&name=shared", 50).await;
    assert_eq!(sorted(found), sorted(theirs.clone()));
    // Admins see both: the token file's admin and the single --token.
    for admin in ["root", "legacy"] {
        let all = list_all(t.api(admin), "", 3).await;
        for id in mine.iter().chain(&theirs) {
            assert!(all.contains(id), "{admin} misses {id}");
        }
        let (status, _) = t.api(admin).get(&base(&mine[0])).await;
        assert_eq!(status, 200);
    }
    t.server.stop().await;
}

#[tokio::test]
async fn full_text_search_finds_only_the_callers_tenant() {
    let t = tenants(echo_plans()).await;
    let (a, b) = (t.api("a"), t.api("b"));
    let mut owned = Vec::new();
    // B's messages are the newest, so A's page must read past them.
    for (api, n) in [(a, 2), (b, 3)] {
        let mut mine = Vec::new();
        for i in 0..n {
            let id = api.active().await;
            let (status, body) = api
                .post(
                    &format!("{}/send-message", base(&id)),
                    json!({"content": format!("platypus report {i}")}),
                )
                .await;
            assert!(status < 300, "{body}");
            api.wait_idle(&id).await;
            mine.push(id);
        }
        owned.push(mine);
    }
    let found = |hits: &serde_json::Value| {
        let mut ids: Vec<String> = hits
            .as_array()
            .expect("hits")
            .iter()
            .map(|h| h["sessionId"].as_str().expect("sessionId").to_string())
            .collect();
        ids.sort();
        ids.dedup();
        ids
    };
    let sorted = |v: &Vec<String>| {
        let mut v = v.clone();
        v.sort();
        v
    };
    let (status, hits) = a.get("/api/v1/search?q=platypus&limit=2").await;
    assert_eq!(status, 200, "{hits}");
    assert_eq!(hits.as_array().map(Vec::len), Some(2), "{hits}");
    assert!(
        found(&hits).iter().all(|id| owned[0].contains(id)),
        "{hits}"
    );
    let (_, hits) = a.get("/api/v1/search?q=platypus&limit=50").await;
    assert_eq!(found(&hits), sorted(&owned[0]));
    let (_, hits) = b.get("/api/v1/search?q=platypus&limit=50").await;
    assert_eq!(found(&hits), sorted(&owned[1]));
    let (_, hits) = t
        .api("root")
        .get("/api/v1/search?q=platypus&limit=50")
        .await;
    let all = found(&hits);
    for id in owned.iter().flatten() {
        assert!(all.contains(id), "the admin misses {id}");
    }
    t.server.stop().await;
}

#[tokio::test]
async fn delegated_sessions_take_their_parents_tenant() {
    let t = tenants(delegating_plans()).await;
    let (a, b) = (t.api("a"), t.api("b"));
    let id = a.active().await;
    let (status, body) = a
        .post(
            &format!("{}/send-message", base(&id)),
            json!({"content": "delegate please"}),
        )
        .await;
    assert!(status < 300, "{body}");
    a.wait_idle(&id).await;
    let (status, children) = a.get(&format!("{}/children", base(&id))).await;
    assert_eq!(status, 200, "{children}");
    let child = ids(&children).pop().expect("a child");
    let (status, shown) = a.get(&base(&child)).await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["metadata"]["tenant"], "alpha");
    let (status, _) = b.get(&base(&child)).await;
    assert_eq!(status, 404);
    assert!(!list_all(b, "", 50).await.contains(&child));
    t.server.stop().await;
}

#[tokio::test]
async fn scopes_limit_what_a_token_may_do() {
    let t = tenants(echo_plans()).await;
    let reader = t.api("b-read");
    let id = t.api("b").create().await;
    let (status, _) = reader.get(&base(&id)).await;
    assert_eq!(status, 200, "read sees its tenant's sessions");
    for (method, path) in [
        (Method::POST, "/api/v1/sessions/".to_string()),
        (Method::PATCH, base(&id)),
        (Method::DELETE, base(&id)),
        (Method::POST, format!("{}/start", base(&id))),
        (Method::PUT, format!("{}/state/app:k", base(&id))),
        (Method::POST, "/run".to_string()),
    ] {
        let response = reader
            .req(method.clone(), &path)
            .json(&json!({"value": 1, "message": "hi"}))
            .send()
            .await
            .expect("send");
        let (status, body) = split(response).await;
        assert_eq!(status, 403, "{method} {path}: {body}");
        assert!(detail(&body).contains("read scope"), "{body}");
    }
    // Cleanup acts on every tenant: admin only.
    let cleanup = json!({"olderThanDays": 365, "dryRun": true});
    let (status, body) = t
        .api("b")
        .post("/api/v1/sessions/cleanup", cleanup.clone())
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(detail(&body).contains("admin"), "{body}");
    for admin in ["root", "legacy"] {
        let (status, body) = t
            .api(admin)
            .post("/api/v1/sessions/cleanup", cleanup.clone())
            .await;
        assert_eq!(status, 200, "{admin}: {body}");
    }
    t.server.stop().await;
}

#[tokio::test]
async fn tokens_are_checked_and_revocations_apply_without_a_restart() {
    let t = tenants(echo_plans()).await;
    let (status, _) = t.api("none").get("/api/v1/sessions/").await;
    assert_eq!(status, 401);
    let stranger = Api::new(t.server.base.clone(), Some("weft_not-a-token".into()));
    let (status, _) = stranger.get("/api/v1/sessions/").await;
    assert_eq!(status, 401);
    let (status, _) = t.api("a").get("/api/v1/sessions/").await;
    assert_eq!(status, 200);

    // Revoke A's token and add a new one, as `weft token` does, while the
    // daemon runs.
    let mut file = TokenFile::load(&t.file).expect("load");
    let alpha = file
        .tokens
        .iter()
        .find(|e| e.tenant == "alpha")
        .expect("alpha")
        .id
        .clone();
    file.revoke(&alpha).expect("revoke");
    let (_, fresh) = file.create("gamma", Scope::Write).expect("create");
    file.save(&t.file).expect("save");
    let (status, body) = t.api("a").get("/api/v1/sessions/").await;
    assert_eq!(status, 401, "{body}");
    assert!(detail(&body).contains("revoked"), "{body}");
    let gamma = Api::new(t.server.base.clone(), Some(fresh));
    let (status, _) = gamma.get("/api/v1/sessions/").await;
    assert_eq!(status, 200);

    // A broken file refuses every token rather than serve stale ones.
    std::fs::write(&t.file, "token = [").expect("write");
    let (status, body) = t.api("b").get("/api/v1/sessions/").await;
    assert_eq!(status, 503, "{body}");
    assert!(detail(&body).contains("token file"), "{body}");
    t.server.stop().await;
}
