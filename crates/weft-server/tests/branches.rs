//! Branches, mail and state over the daemon's API, in process: every
//! endpoint of issue 6, its errors (unknown branch, last branch, taken
//! name, temp: keys, busy branches), mail (direct, broadcast, per-sender
//! FIFO, collect, surviving a restart), state and its clear persisted.
//! Branches with turns running are in `branches_live.rs`.

mod common;

use std::sync::Arc;

use common::*;
use serde_json::json;
use weft_core::SessionId;
use weft_core::memory::MemoryStore;
use weft_core::store::Store;
use weft_server::{ServerConfig, StaticPlanSource};

fn echo_plans() -> StaticPlanSource {
    StaticPlanSource::new("base", echo())
}

#[tokio::test]
async fn branches_list_new_get_default_remove() {
    let s = start(echo_plans()).await;
    let id = s.create().await;
    let b = base(&id);

    // Every session starts with `main`, the default.
    let (status, list) = s.get(&format!("{b}/branches")).await;
    assert_eq!(status, 200, "{list}");
    let list = list.as_array().expect("array").clone();
    assert_eq!(list.len(), 1);
    for key in [
        "id",
        "name",
        "messageCount",
        "default",
        "createdAt",
        "createdFrom",
        "system",
        "systemSender",
        "systemDatetime",
        "user",
        "tools",
        "model",
        "provider",
        "inbox",
        "running",
        "queued",
    ] {
        assert!(list[0].get(key).is_some(), "missing {key} in {}", list[0]);
    }
    assert_eq!(list[0]["id"], "main");
    assert_eq!(list[0]["default"], true);
    assert_eq!(list[0]["messageCount"], 0);

    // A new branch with settings and loaded messages.
    let (status, made) = s
        .post(
            &format!("{b}/branches"),
            json!({
                "name": "research",
                "system": "be brief",
                "tools": ["grep"],
                "model": "m2",
                "provider": "scripted",
                "messages": [
                    {"role": "user", "content": "imported question"},
                    {"role": "assistant", "content": [{"type": "text", "text": "imported answer"}], "sender": "archive"}
                ]
            }),
        )
        .await;
    assert_eq!(status, 201, "{made}");
    assert_eq!(made["id"], "research");
    assert_eq!(made["name"], "research");
    // The system message is its first message, then the loaded ones.
    assert_eq!(made["messageCount"], 3);
    assert_eq!(made["default"], false);
    assert_eq!(made["system"], "be brief");
    assert_eq!(made["tools"], json!(["grep"]));
    assert_eq!(made["model"], "m2");
    assert_eq!(made["provider"], "scripted");
    assert!(made["createdFrom"].is_null());

    // A name that is not an id gets a generated id; both reach it.
    let (status, spaced) = s
        .post(&format!("{b}/branches"), json!({"name": "deep dive"}))
        .await;
    assert_eq!(status, 201, "{spaced}");
    let spaced_id = spaced["id"].as_str().expect("id").to_string();
    assert_ne!(spaced_id, "deep dive");
    for key in [spaced_id.as_str(), "deep%20dive"] {
        let (status, got) = s.get(&format!("{b}/branches/{key}")).await;
        assert_eq!(status, 200, "{key}: {got}");
        assert_eq!(got["name"], "deep dive");
    }

    // Errors: a taken name (also an id), a bad name, a bad message.
    for name in ["research", "main"] {
        let (status, body) = s
            .post(&format!("{b}/branches"), json!({"name": name}))
            .await;
        assert_eq!(status, 409, "{name}: {body}");
        assert!(detail(&body).contains(name), "{body}");
    }
    for (body, field) in [
        (json!({"name": ""}), "name"),
        (json!({"name": "x".repeat(101)}), "name"),
        (json!({}), "name"),
        (
            json!({"name": "ok", "messages": [{"role": "boss", "content": "x"}]}),
            "messages[0].role",
        ),
        (
            json!({"name": "ok", "messages": [{"content": []}]}),
            "messages[0].content",
        ),
    ] {
        let (status, resp) = s.post(&format!("{b}/branches"), body.clone()).await;
        assert_eq!(status, 422, "{body} → {resp}");
        assert!(detail(&resp).contains(field), "{field} not in {resp}");
    }

    // One branch with its messages (loaded ones are marked).
    let (status, got) = s.get(&format!("{b}/branches/research")).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["id"], "research");
    let messages = got["messages"].as_array().expect("messages");
    assert_eq!(
        texts(messages),
        vec![
            json!("be brief"),
            json!("imported question"),
            json!("imported answer")
        ]
    );
    assert_eq!(messages[0]["role"], "system");
    assert_eq!(messages[0]["sender"], "system");
    assert_eq!(messages[1]["metadata"]["loaded"], true);
    assert_eq!(messages[2]["role"], "assistant");
    assert_eq!(messages[2]["sender"], "archive");
    assert_eq!(messages[1]["branch"], "research");

    // Unknown branch in the path: 404 naming it.
    for (method, path) in [
        ("get", format!("{b}/branches/nope")),
        ("delete", format!("{b}/branches/nope")),
        ("get", format!("{b}/branches/nope/transcript")),
        ("post", format!("{b}/branches/nope/split")),
        ("post", format!("{b}/branches/nope/default")),
    ] {
        let (status, body) = match method {
            "get" => s.get(&path).await,
            "delete" => s.delete(&path).await,
            _ => s.post(&path, json!({})).await,
        };
        assert_eq!(status, 404, "{method} {path}: {body}");
        assert!(detail(&body).contains("\"nope\""), "{body}");
    }

    // The default branch: the session shows it, its transcript is the
    // session transcript.
    let (status, body) = s
        .post(&format!("{b}/branches/research/default"), json!({}))
        .await;
    assert_eq!(status, 204, "{body}");
    let (_, info) = s.get(&b).await;
    assert_eq!(info["defaultBranch"], "research");
    let (_, list) = s.get(&format!("{b}/branches")).await;
    let defaults: Vec<&str> = list
        .as_array()
        .expect("array")
        .iter()
        .filter(|x| x["default"] == true)
        .map(|x| x["id"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(defaults, ["research"]);
    assert_eq!(
        texts(&s.transcript(&id).await),
        vec![
            json!("be brief"),
            json!("imported question"),
            json!("imported answer")
        ]
    );
    let (status, last) = s
        .get(&format!("{b}/branches/research/transcript?limit=1"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        texts(last.as_array().expect("array")),
        vec![json!("imported answer")]
    );

    // Removing the default makes the first remaining branch the default;
    // the last branch stays.
    let (status, body) = s.delete(&format!("{b}/branches/research")).await;
    assert_eq!(status, 204, "{body}");
    let (_, info) = s.get(&b).await;
    assert_eq!(info["defaultBranch"], "main");
    let (status, _) = s.get(&format!("{b}/branches/research")).await;
    assert_eq!(status, 404);
    assert_eq!(s.delete(&format!("{b}/branches/{spaced_id}")).await.0, 204);
    let (status, body) = s.delete(&format!("{b}/branches/main")).await;
    assert_eq!(status, 409, "{body}");
    assert!(detail(&body).contains("last branch"), "{body}");

    // Unknown and malformed sessions.
    let unknown = "0190aaaa-0000-7000-8000-000000000000";
    for path in [
        format!("/api/v1/sessions/{unknown}/branches"),
        format!("/api/v1/sessions/{unknown}/branches/main"),
        format!("/api/v1/sessions/{unknown}/mail"),
        format!("/api/v1/sessions/{unknown}/messages"),
        format!("/api/v1/sessions/{unknown}/state"),
        format!("/api/v1/sessions/{unknown}/state/k"),
    ] {
        let (status, body) = s.get(&path).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert!(detail(&body).contains(unknown), "{body}");
    }
    let (status, body) = s
        .post(
            &format!("/api/v1/sessions/{unknown}/branches"),
            json!({"name": "x"}),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    let (status, _) = s.get("/api/v1/sessions/..%2Fx/branches").await;
    assert_eq!(status, 400);
    let long = "b".repeat(200);
    let (status, body) = s.get(&format!("{b}/branches/{long}")).await;
    assert_eq!(status, 400, "{body}");
    assert_gapless(&s.store, &id).await;
}

#[tokio::test]
async fn split_clones_once_and_concat_filters() {
    let s = start(echo_plans()).await;
    let id = s.active().await;
    let b = base(&id);
    let (status, body) = s
        .post(&format!("{b}/send-message"), json!({"content": "hello"}))
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["branch"], "main");
    s.wait_idle(&id).await;
    let originals = s.transcript(&id).await;
    assert_eq!(texts(&originals), vec![json!("hello"), json!("hello")]);

    // Split: same count, clone metadata, sender/recipient, settings.
    let (status, copy) = s
        .post(&format!("{b}/branches/main/split"), json!({"name": "copy"}))
        .await;
    assert_eq!(status, 201, "{copy}");
    assert_eq!(copy["name"], "copy");
    assert_eq!(copy["messageCount"], 2);
    assert_eq!(copy["createdFrom"]["branch"], "main");
    assert!(copy["createdFrom"]["uptoSeq"].as_u64().expect("uptoSeq") > 0);
    let (_, got) = s.get(&format!("{b}/branches/copy")).await;
    let cloned = got["messages"].as_array().expect("messages");
    assert_eq!(cloned.len(), originals.len());
    for (o, c) in originals.iter().zip(cloned) {
        assert_ne!(o["id"], c["id"]);
        assert_eq!(c["metadata"]["clone_from"], o["id"]);
        assert_eq!(c["sender"], "main");
        assert_eq!(c["recipient"], "copy");
        assert_eq!(c["content"], o["content"]);
    }
    let systems = cloned.iter().filter(|m| m["role"] == "system").count();
    assert_eq!(systems, 0, "no system message is invented");

    // A default name; a taken name; snake_case is the same body.
    let (status, auto) = s.post(&format!("{b}/branches/main/split"), json!({})).await;
    assert_eq!(status, 201, "{auto}");
    assert_eq!(auto["name"], "main-split-1");
    let (status, body) = s
        .post(&format!("{b}/branches/copy/split"), json!({"name": "main"}))
        .await;
    assert_eq!(status, 409, "{body}");

    // A branch with loaded messages.
    let (status, _) = s
        .post(
            &format!("{b}/branches"),
            json!({"name": "loaded", "messages": [{"content": "from elsewhere"}]}),
        )
        .await;
    assert_eq!(status, 201);

    // concat_messages: all branches in log order, then filtered.
    let (status, all) = s.get(&format!("{b}/messages")).await;
    assert_eq!(status, 200, "{all}");
    let all = all.as_array().expect("array").clone();
    assert_eq!(all.len(), 2 + 2 + 2 + 1);
    let seqs: Vec<u64> = all
        .iter()
        .map(|m| m["seq"].as_u64().expect("seq"))
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "log order: {seqs:?}");
    assert!(all.iter().all(|m| m["branch"].is_string()));
    let (_, no_clones) = s.get(&format!("{b}/messages?exclude_clone=true")).await;
    let no_clones = no_clones.as_array().expect("array").clone();
    assert_eq!(no_clones.len(), 3);
    assert!(
        no_clones
            .iter()
            .all(|m| m["metadata"].get("clone_from").is_none())
    );
    let (_, neither) = s
        .get(&format!("{b}/messages?excludeClone=true&exclude_load=true"))
        .await;
    assert_eq!(
        texts(neither.as_array().expect("array")),
        vec![json!("hello"), json!("hello")]
    );
    let (_, two) = s
        .get(&format!("{b}/messages?branches=copy,%20loaded"))
        .await;
    let two = two.as_array().expect("array").clone();
    assert_eq!(two.len(), 3);
    assert!(
        two.iter()
            .all(|m| m["branch"] == "copy" || m["branch"] == "loaded")
    );
    let (status, body) = s.get(&format!("{b}/messages?branches=main,nope")).await;
    assert_eq!(status, 422, "{body}");
    assert!(detail(&body).contains("branches") && detail(&body).contains("nope"));
    let (status, body) = s.get(&format!("{b}/messages?exclude_clone=maybe")).await;
    assert_eq!(status, 422, "{body}");

    // A turn on the clone continues its own conversation.
    let (status, body) = s
        .post(
            &format!("{b}/branches/copy/send-message"),
            json!({"content": "on the copy"}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["branch"], "copy");
    wait_branches_idle(&s, &id).await;
    assert_eq!(
        s.branch_texts(&id, "copy").await,
        vec![
            json!("hello"),
            json!("hello"),
            json!("on the copy"),
            json!("on the copy")
        ]
    );
    assert_eq!(texts(&s.transcript(&id).await).len(), 2, "main untouched");
    assert_gapless(&s.store, &id).await;
}

#[tokio::test]
async fn mail_direct_broadcast_fifo_collect() {
    let s = start(echo_plans()).await;
    let id = s.create().await;
    let b = base(&id);
    for name in ["a", "b"] {
        let (status, _) = s
            .post(
                &format!("{b}/branches"),
                json!({"name": name, "tools": ["grep"]}),
            )
            .await;
        assert_eq!(status, 201);
    }

    // Direct mail, in order.
    let mut last_seq = 0;
    for text in ["one", "two", "three"] {
        let (status, mail) = s
            .post(
                &format!("{b}/mail"),
                json!({"from": "main", "to": "a", "category": "message", "item": text}),
            )
            .await;
        assert_eq!(status, 201, "{mail}");
        assert_eq!(mail["from"], "main");
        assert_eq!(mail["to"], json!(["a"]));
        assert_eq!(mail["waiting"], json!(["a"]));
        assert_eq!(mail["broadcast"], false);
        assert_eq!(mail["category"], "message");
        let seq = mail["seq"].as_u64().expect("seq");
        assert!(seq > last_seq);
        last_seq = seq;
    }
    // A broadcast reaches every other branch.
    let (status, mail) = s
        .post(
            &format!("{b}/mail"),
            json!({"from": "b", "broadcast": true, "category": "message", "item": {"role": "user", "content": "hello all"}}),
        )
        .await;
    assert_eq!(status, 201, "{mail}");
    assert_eq!(mail["to"], json!(["main", "a"]));
    assert_eq!(mail["broadcast"], true);
    // Model mail.
    let (status, _) = s
        .post(
            &format!("{b}/mail"),
            json!({"from": "a", "to": "b", "category": "model", "item": {"model": "m9"}}),
        )
        .await;
    assert_eq!(status, 201);

    // Refused: unknown branches (named, 422), bad combinations and items.
    for (body, field, status) in [
        (
            json!({"from": "main", "to": "nobody", "category": "message", "item": "x"}),
            "to",
            422,
        ),
        (
            json!({"from": "ghost", "to": "a", "category": "message", "item": "x"}),
            "from",
            422,
        ),
        (
            json!({"from": "main", "to": "a", "broadcast": true, "category": "message", "item": "x"}),
            "broadcast",
            422,
        ),
        (
            json!({"from": "main", "category": "message", "item": "x"}),
            "to",
            422,
        ),
        (
            json!({"from": "main", "to": "a", "category": "gift", "item": "x"}),
            "category",
            422,
        ),
        (
            json!({"from": "a", "to": "b", "category": "tool", "item": 5}),
            "item",
            422,
        ),
        (
            json!({"from": "a", "to": "b", "category": "tool", "item": "bash"}),
            "item",
            422,
        ),
        (
            json!({"from": "main", "to": "a", "category": "message"}),
            "item",
            422,
        ),
    ] {
        let (st, resp) = s.post(&format!("{b}/mail"), body.clone()).await;
        assert_eq!(st, status, "{body} → {resp}");
        assert!(detail(&resp).contains(field), "{field} not in {resp}");
        if field == "to" && body["to"] == "nobody" {
            assert!(detail(&resp).contains("nobody"), "{resp}");
        }
    }

    // Pending mail, for everyone and per recipient.
    let (status, pending) = s.get(&format!("{b}/mail")).await;
    assert_eq!(status, 200, "{pending}");
    assert_eq!(pending.as_array().expect("array").len(), 5);
    let (_, for_a) = s.get(&format!("{b}/mail?to=a")).await;
    assert_eq!(for_a.as_array().expect("array").len(), 4);
    let (_, for_main) = s.get(&format!("{b}/mail?to=main")).await;
    assert_eq!(for_main.as_array().expect("array").len(), 1);
    let (status, body) = s.get(&format!("{b}/mail?to=nope")).await;
    assert_eq!(status, 422, "{body}");
    assert!(detail(&body).contains("to"));

    // Collect for a from main: per-sender FIFO, sender and recipient set.
    let (status, done) = s
        .post(
            &format!("{b}/mail/collect"),
            json!({"to": "a", "from": "main"}),
        )
        .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["delivered"], 3);
    assert_eq!(done["held"], json!([]));
    let (_, a) = s.get(&format!("{b}/branches/a")).await;
    let messages = a["messages"].as_array().expect("messages");
    assert_eq!(
        texts(messages),
        vec![json!("one"), json!("two"), json!("three")]
    );
    assert!(
        messages
            .iter()
            .all(|m| m["sender"] == "main" && m["recipient"] == "a")
    );
    assert_eq!(a["inbox"], 1, "the broadcast still waits");
    // Unknown branches in collect are named.
    let (status, body) = s
        .post(&format!("{b}/mail/collect"), json!({"to": "nope"}))
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(detail(&body).starts_with("to:"), "{body}");
    let (status, body) = s
        .post(&format!("{b}/mail/collect"), json!({"from": "nope"}))
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(detail(&body).starts_with("from:"), "{body}");

    // Collect the rest: the broadcast (main and a) and the model mail.
    let (status, done) = s.post(&format!("{b}/mail/collect"), json!({})).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["delivered"], 3);
    let (_, pending) = s.get(&format!("{b}/mail")).await;
    assert_eq!(pending, json!([]));
    let (_, main) = s.get(&format!("{b}/branches/main")).await;
    assert_eq!(
        texts(main["messages"].as_array().expect("m")),
        vec![json!("hello all")]
    );
    assert_eq!(main["messages"][0]["sender"], "b");
    let (_, bb) = s.get(&format!("{b}/branches/b")).await;
    assert_eq!(bb["model"], "m9");
    // Nothing left: delivering nothing writes nothing.
    let before = assert_gapless(&s.store, &id).await;
    let (_, done) = s.post(&format!("{b}/mail/collect"), json!({})).await;
    assert_eq!(done["delivered"], 0);
    assert_eq!(assert_gapless(&s.store, &id).await, before);
}

#[tokio::test]
async fn undelivered_mail_and_state_survive_a_restart() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let s = start_on(echo_plans(), ServerConfig::default(), store.clone()).await;
    let id = s.create().await;
    let b = base(&id);
    assert_eq!(
        s.post(&format!("{b}/branches"), json!({"name": "a"}))
            .await
            .0,
        201
    );
    let (status, _) = s
        .post(
            &format!("{b}/mail"),
            json!({"from": "main", "to": "a", "category": "message", "item": "later"}),
        )
        .await;
    assert_eq!(status, 201);
    for (key, value) in [
        ("k1", json!(1)),
        ("agent:planner:step", json!({"n": 2})),
        ("app:theme", json!("dark")),
    ] {
        let (status, body) = s
            .put(&format!("{b}/state/{key}"), json!({"value": value}))
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, _) = s.delete(&format!("{b}/state")).await;
    assert_eq!(status, 204);
    let (status, _) = s
        .put(&format!("{b}/state/after"), json!({"value": true}))
        .await;
    assert_eq!(status, 200);
    s.stop().await;

    // A new server over the same store.
    let s = start_on(echo_plans(), ServerConfig::default(), store.clone()).await;
    let (status, pending) = s.get(&format!("{b}/mail?to=a")).await;
    assert_eq!(status, 200);
    assert_eq!(pending.as_array().expect("array").len(), 1);
    assert_eq!(pending[0]["item"], "later");
    let (_, state) = s.get(&format!("{b}/state")).await;
    assert_eq!(
        state,
        json!({"after": true, "app:theme": "dark"}),
        "the clear stuck; shared keys stay"
    );
    let (status, _) = s.get(&format!("{b}/state/k1")).await;
    assert_eq!(status, 404);
    let view = store
        .view(&SessionId::parse(id.as_str()).expect("id"))
        .await
        .expect("view");
    assert_eq!(
        view.state,
        json!({"after": true}).as_object().cloned().expect("map")
    );
    let (_, done) = s
        .post(&format!("{b}/mail/collect"), json!({"to": "a"}))
        .await;
    assert_eq!(done["delivered"], 1);
    assert_eq!(s.branch_texts(&id, "a").await, vec![json!("later")]);
}

#[tokio::test]
async fn state_endpoints_scopes_and_errors() {
    let s = start(echo_plans()).await;
    let id = s.create().await;
    let b = base(&id);
    for (key, value, scope) in [
        (
            "agent:planner:step",
            json!({"n": 1, "value": "nested"}),
            "session",
        ),
        ("app:theme", json!("dark"), "app"),
        ("user:lang", json!(["en", "de"]), "user"),
        ("plain", json!(null), "session"),
    ] {
        let (status, body) = s
            .put(&format!("{b}/state/{key}"), json!({"value": value}))
            .await;
        assert_eq!(status, 200, "{key}: {body}");
        assert_eq!(body, json!({"key": key, "value": value, "scope": scope}));
        let (status, got) = s.get(&format!("{b}/state/{key}")).await;
        assert_eq!(status, 200, "{got}");
        assert_eq!(got["value"], value);
        assert_eq!(got["scope"], scope);
    }
    let (_, all) = s.get(&format!("{b}/state")).await;
    assert_eq!(all.as_object().expect("map").len(), 4, "{all}");
    // app: keys are shared by the sessions of the profile; session keys
    // are not.
    let other = s.create().await;
    let (_, theirs) = s.get(&format!("{}/state", base(&other))).await;
    assert_eq!(
        theirs,
        json!({"app:theme": "dark", "user:lang": ["en", "de"]})
    );

    // temp: keys cannot be set or deleted by a request.
    for r in [
        s.put(&format!("{b}/state/temp:x"), json!({"value": 1}))
            .await,
        s.delete(&format!("{b}/state/temp:x")).await,
    ] {
        assert_eq!(r.0, 422, "{}", r.1);
        assert!(detail(&r.1).contains("temp:"), "{}", r.1);
    }
    let (status, _) = s.get(&format!("{b}/state/temp:x")).await;
    assert_eq!(status, 404);
    // A missing key, a missing value, a malformed key.
    let (status, body) = s.get(&format!("{b}/state/missing")).await;
    assert_eq!(status, 404, "{body}");
    assert!(detail(&body).contains("missing"));
    let (status, body) = s.put(&format!("{b}/state/k"), json!({"v": 1})).await;
    assert_eq!(status, 422, "{body}");
    assert!(detail(&body).contains("value"), "{body}");
    let (status, body) = s
        .put(
            &format!("{b}/state/{}", "k".repeat(300)),
            json!({"value": 1}),
        )
        .await;
    assert_eq!(status, 400, "{body}");

    // Delete: recorded; deleting a missing key writes nothing.
    let (status, _) = s.delete(&format!("{b}/state/agent:planner:step")).await;
    assert_eq!(status, 204);
    let (status, _) = s.get(&format!("{b}/state/agent:planner:step")).await;
    assert_eq!(status, 404);
    let (status, _) = s.delete(&format!("{b}/state/app:theme")).await;
    assert_eq!(status, 204);
    let (status, _) = s.get(&format!("{}/state/app:theme", base(&other))).await;
    assert_eq!(
        status, 404,
        "the shared delete is seen by the other session"
    );
    let before = assert_gapless(&s.store, &id).await;
    assert_eq!(s.delete(&format!("{b}/state/never-set")).await.0, 204);
    assert_eq!(assert_gapless(&s.store, &id).await, before);

    // Clear: session keys go, shared keys stay; recorded in the log.
    let (status, _) = s.delete(&format!("{b}/state")).await;
    assert_eq!(status, 204);
    let (_, all) = s.get(&format!("{b}/state")).await;
    assert_eq!(all, json!({"user:lang": ["en", "de"]}));
    let records = s
        .store
        .read_all(&SessionId::parse(id.as_str()).expect("id"))
        .await
        .expect("log");
    let last = serde_json::to_value(&records.last().expect("record").kind).expect("json");
    assert!(last.to_string().contains("clear"), "{last}");
}
