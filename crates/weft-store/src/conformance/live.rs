//! Live-channel conformance: two handles on one store (two processes or
//! nodes sharing it) see each other's feed, and `watch` sees the other
//! handle's commits. For backends with a [`Store::live`] channel; call
//! each function with two handles opened separately on the same store.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use weft_core::message::Role;
use weft_core::store::Store;
use weft_core::watch::RecordWatch;
use weft_core::{Feed, FeedItem, FeedReceiver};

use super::{new_meta, push, text};

/// How long a message may take to cross before the test fails.
const PATIENCE: Duration = Duration::from_secs(10);

async fn recv(rx: &mut FeedReceiver) -> Arc<FeedItem> {
    match tokio::time::timeout(PATIENCE, rx.recv()).await {
        Ok(Ok(item)) => item,
        Ok(Err(e)) => panic!("the feed failed: {e}"),
        Err(_) => panic!("nothing crossed from the other handle within {PATIENCE:?}"),
    }
}

fn label(item: &FeedItem) -> String {
    match item {
        FeedItem::Record(r) => format!("record {}", r.seq),
        FeedItem::Event(e) => format!("{} {}", e.name, e.data["i"]),
    }
}

/// A feed on handle `b` replays what a feed on handle `a` does, in `a`'s
/// order: events as they are, records read from the store, each once.
pub async fn feeds_cross_between_handles(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    assert!(
        a.live().is_some() && b.live().is_some(),
        "the backend has a live channel"
    );
    let meta = a.create(new_meta("live"), vec![]).await.expect("create");
    let id = meta.id;
    let feed_a = Feed::new(a.clone(), id.clone(), 256);
    let feed_b = Feed::new(b.clone(), id.clone(), 256);
    let mut rx = feed_b.subscribe(None).await.expect("subscribe");
    // B's follower subscribes in the background: ping until it hears.
    let mut ready = false;
    for _ in 0..200 {
        feed_a.event("ping", &json!({"i": 0}));
        if let Ok(item) = tokio::time::timeout(Duration::from_millis(50), rx.recv()).await {
            assert_eq!(label(&item.expect("recv")), "ping 0");
            ready = true;
            break;
        }
    }
    assert!(ready, "handle b never heard handle a's channel");
    while rx.try_recv().await.expect("drain").is_some() {}
    let mut expected = Vec::new();
    for i in 1..=3 {
        feed_a.event("content_block:delta", &json!({"i": i, "text": "x"}));
        expected.push(format!("content_block:delta {i}"));
        let head = a.get(&id).await.expect("get").last_seq;
        let batch = weft_core::Record::batch(head, [text(Role::Assistant, &format!("m{i}"))]);
        a.append(&id, head, batch.clone()).await.expect("append");
        feed_a.publish(&batch).await;
        expected.push(format!("record {}", head + 1));
    }
    feed_a.event("execution:end", &json!({"i": 9}));
    expected.push("execution:end 9".into());
    let mut got = Vec::new();
    while got.len() < expected.len() {
        let item = label(&*recv(&mut rx).await);
        // A ping sent while b's follower was still subscribing may arrive
        // late (after the drain above); it is not part of what is checked.
        if item != "ping 0" {
            got.push(item);
        }
    }
    assert_eq!(got, expected, "b replays a's feed in a's order");
    // A big event arrives whole, or (a backend with a payload limit)
    // truncated, saying so.
    feed_a.event(
        "tool:post",
        &json!({"i": 7, "branch": "main", "output": "x".repeat(20_000)}),
    );
    match &*recv(&mut rx).await {
        FeedItem::Event(e) => {
            assert_eq!(e.name, "tool:post");
            assert_eq!(e.data["branch"], "main");
            assert!(
                e.data["truncated"] == true
                    || e.data["output"].as_str().map(str::len) == Some(20_000),
                "{}",
                e.data
            );
        }
        other => panic!("expected the big event, got {other:?}"),
    }
    // Nothing twice, nothing of b's own.
    feed_b.event("own", &json!({"i": 5}));
    let own = recv(&mut rx).await;
    assert_eq!(label(&own), "own 5");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), rx.recv())
            .await
            .is_err(),
        "nothing arrives twice"
    );
}

/// A record written on handle `a` without any feed (a writer that died
/// before its notice went out) still reaches a follower on `b`, by polling.
pub async fn a_commit_without_notice_still_reaches_followers(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    let meta = a.create(new_meta("live"), vec![]).await.expect("create");
    let id = meta.id;
    let feed_b = Feed::new(b.clone(), id.clone(), 64);
    let mut rx = feed_b.subscribe(None).await.expect("subscribe");
    push(&*a, &id, vec![text(Role::User, "silent")]).await;
    let item = recv(&mut rx).await;
    assert_eq!(label(&item), "record 2");
}

/// `watch` on handle `b` returns every record handle `a` commits after the
/// start point, in order, once, woken by the channel.
pub async fn watch_sees_another_handles_commits(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    let meta = a.create(new_meta("live"), vec![]).await.expect("create");
    let id = meta.id;
    push(&*a, &id, vec![text(Role::User, "before")]).await;
    let mut watch = RecordWatch::start(b.clone(), &id, 2).await.expect("watch");
    assert!(watch.has_channel());
    let writer = {
        let (a, id) = (a.clone(), id.clone());
        tokio::spawn(async move {
            let feed = Feed::new(a.clone(), id.clone(), 8);
            for i in 0..10 {
                let head = a.get(&id).await.expect("get").last_seq;
                let batch = weft_core::Record::batch(
                    head,
                    [
                        text(Role::User, &format!("m{i}")),
                        text(Role::Assistant, "ok"),
                    ],
                );
                a.append(&id, head, batch.clone()).await.expect("append");
                feed.publish(&batch).await;
            }
        })
    };
    let mut seqs = Vec::new();
    while seqs.len() < 20 {
        let record = tokio::time::timeout(PATIENCE, watch.next())
            .await
            .expect("a record within the patience")
            .expect("next");
        seqs.push(record.seq);
    }
    writer.await.expect("writer");
    assert_eq!(seqs, (3..=22).collect::<Vec<u64>>());
}

/// Behind the encryption layer (`raw` the bare backend), a kernel event
/// crosses the live channel with its data sealed, so nothing of it
/// travels in clear on the backend's channel (PostgreSQL `NOTIFY`, Redis
/// pub/sub), and a subscriber through the layer gets it opened; a commit
/// notice (a seq) crosses as it is.
pub async fn events_cross_sealed(raw: Arc<dyn Store>) {
    use crate::encryption::{self, MasterKey};
    use weft_core::live::{LiveBody, LiveMessage, LiveSubscription};

    const SECRET: &str = "quokkaxylophone";
    async fn next(sub: &mut LiveSubscription) -> LiveMessage {
        match tokio::time::timeout(PATIENCE, sub.recv()).await {
            Ok(Some(m)) => m,
            Ok(None) => panic!("the live channel was lost"),
            Err(_) => panic!("nothing crossed within {PATIENCE:?}"),
        }
    }
    let key = MasterKey::generate_base64()
        .and_then(|k| Ok(MasterKey::from_base64(&k)?))
        .expect("a master key");
    let store = encryption::wrap(raw.clone(), Some(key));
    let id = store
        .create(new_meta("live"), Vec::new())
        .await
        .expect("create")
        .id;
    let (Some(raw_live), Some(live)) = (raw.live(), store.live()) else {
        panic!("the backend has a live channel");
    };
    let mut wire = raw_live.subscribe(&id).await.expect("raw subscribe");
    let mut opened = live.subscribe(&id).await.expect("subscribe");
    let event = LiveMessage {
        origin: "feed-a".into(),
        n: 1,
        body: LiveBody::Event {
            name: "content_block:delta".into(),
            data: json!({"session_id": id.as_str(), "turn": "t1", "delta": SECRET}),
        },
    };
    let commit = LiveMessage {
        origin: "feed-a".into(),
        n: 2,
        body: LiveBody::Committed { seq: 1 },
    };
    live.publish(&id, &[event.clone(), commit.clone()])
        .await
        .expect("publish");
    let sent = next(&mut wire).await;
    let text = sent.encode(&id);
    assert!(!text.contains(SECRET), "travels in clear: {text}");
    assert!(text.contains("t1"), "the turn stays clear: {text}");
    assert_eq!(next(&mut wire).await, commit);
    assert_eq!(next(&mut opened).await, event);
    assert_eq!(next(&mut opened).await, commit);
}
