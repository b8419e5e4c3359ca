//! Live channels: a session's feed across processes and nodes, and
//! [`RecordWatch`], a stream of a session's records as any writer commits
//! them.
//!
//! A [`Feed`](crate::feed::Feed) orders what happens in a session inside one
//! process. When several processes (daemons behind a load balancer, a CLI
//! next to a daemon) share a store, each has its own feed; a store that can
//! carry messages between them offers a [`LiveChannel`]
//! ([`Store::live`](crate::store::Store::live): PostgreSQL `LISTEN/NOTIFY`,
//! Redis pub/sub). Every feed then forwards, in its own order, what its
//! process adds to the session — the volatile kernel events of its turns
//! ([`LiveBody::Event`]) and the seq of each batch it committed
//! ([`LiveBody::Committed`]) — and a feed that has followers listens to the
//! channel and replays what other processes did: their events as they are,
//! their records read from the store (the channel carries only seqs, never
//! records: the store stays the one source of what was committed). A
//! follower on node B thus sees a turn running on node A as a follower on A
//! does: deltas and records in A's order, every record once.
//!
//! The channel is volatile and at-most-once: a message published while
//! nobody listens, or lost with a connection, is gone. Records are never
//! lost to a follower because of it: a feed that follows a shared session
//! also polls the store's head (slowly when a channel is there, with
//! backoff when it is not: fs and sqlite on one machine), so a commit whose
//! notice went missing is picked up anyway.
//!
//! [`RecordWatch`] (`watch(session, after_seq)`) is the same idea without
//! a feed: every record after a seq, in order and gapless, woken by the
//! channel's commit notices when there is one, else by polling with
//! backoff.
//!
//! This module knows the [`Store`] contract and the message format; it
//! knows nothing of PostgreSQL, Redis, HTTP or turns. Backends implement
//! [`LiveChannel`] and may use [`LiveRouter`] to fan one connection's
//! messages out to subscriptions.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::id::SessionId;
use crate::record::Record;
use crate::store::{Store, StoreError};

/// How many messages a subscription buffers before newer ones are dropped
/// (a follower that slow catches up from the store's head).
pub const LIVE_BUFFER: usize = 4096;

/// The shortest wait of a poll with backoff ([`RecordWatch`], and a feed
/// following a store without a channel).
pub const POLL_MIN: Duration = Duration::from_millis(20);

/// The longest wait of a poll with backoff.
pub const POLL_MAX: Duration = Duration::from_millis(1000);

/// How often a follower checks the store's head when a channel wakes it
/// (the safety net for a lost commit notice).
pub const POLL_WITH_CHANNEL: Duration = Duration::from_millis(1000);

/// What a message on a live channel says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum LiveBody {
    /// The publisher committed records up to `seq`: read them from the
    /// store.
    Committed {
        /// The last seq committed.
        seq: u64,
    },
    /// A volatile kernel event, as the publisher's feed had it.
    Event {
        /// The canonical event name.
        name: String,
        /// Its data (names its turn and branch).
        data: Value,
    },
}

/// One message on a session's live channel.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveMessage {
    /// The publishing feed (a random id per feed): a feed ignores its own
    /// messages.
    pub origin: String,
    /// The publisher's message counter (ordering is per publisher; the
    /// counter also keeps identical events distinct).
    pub n: u64,
    /// What it says.
    pub body: LiveBody,
}

/// A message as it is sent: with the session it belongs to.
#[derive(Serialize)]
struct WireOut<'a> {
    s: &'a str,
    o: &'a str,
    n: u64,
    b: &'a LiveBody,
}

/// A message as it is received.
#[derive(Deserialize)]
struct WireIn {
    s: String,
    o: String,
    n: u64,
    b: LiveBody,
}

impl LiveMessage {
    /// The wire form (a JSON object naming the session), as backends carry
    /// it.
    pub fn encode(&self, session: &SessionId) -> String {
        let wire = WireOut {
            s: session.as_str(),
            o: &self.origin,
            n: self.n,
            b: &self.body,
        };
        serde_json::to_string(&wire).unwrap_or_default()
    }

    /// Parses the wire form: the session it names and the message; None
    /// for anything malformed (a channel is input from outside).
    pub fn decode(text: &str) -> Option<(SessionId, LiveMessage)> {
        let wire: WireIn = serde_json::from_str(text).ok()?;
        let session = SessionId::parse(&wire.s).ok()?;
        if wire.o.is_empty() || wire.o.len() > 64 {
            return None;
        }
        if let LiveBody::Event { name, data } = &wire.b
            && (name.is_empty() || name.len() > 128 || !data.is_object())
        {
            return None;
        }
        Some((
            session,
            LiveMessage {
                origin: wire.o,
                n: wire.n,
                body: wire.b,
            },
        ))
    }

    /// A smaller copy of an event whose wire form exceeds `max` bytes:
    /// its data keeps the fields naming the session, turn and branch and
    /// says `"truncated": true` (backends with a payload limit, such as
    /// PostgreSQL's 8000-byte `NOTIFY`, send this instead).
    pub fn truncated(&self) -> LiveMessage {
        let mut copy = self.clone();
        if let LiveBody::Event { data, .. } = &mut copy.body {
            let mut small = serde_json::Map::new();
            for key in ["session_id", "turn", "branch", "tool_name", "tool_call_id"] {
                if let Some(v) = data
                    .get(key)
                    .filter(|v| v.as_str().is_some_and(|s| s.len() <= 200))
                {
                    small.insert(key.into(), v.clone());
                }
            }
            small.insert("truncated".into(), Value::Bool(true));
            *data = Value::Object(small);
        }
        copy
    }
}

/// A store's channel between the processes sharing it. See the module docs.
#[async_trait]
pub trait LiveChannel: Send + Sync {
    /// Publishes `messages`, in order, on session `id`'s channel (volatile:
    /// delivered to the subscriptions that exist, at most once).
    async fn publish(&self, id: &SessionId, messages: &[LiveMessage]) -> Result<(), StoreError>;

    /// Subscribes to session `id`'s channel: every message published after
    /// this returns, in each publisher's order, until the subscription is
    /// dropped or the channel's connection is lost (then
    /// [`LiveSubscription::recv`] returns None).
    async fn subscribe(&self, id: &SessionId) -> Result<LiveSubscription, StoreError>;
}

/// A subscription to a session's live channel; dropping it unsubscribes.
pub struct LiveSubscription {
    rx: mpsc::Receiver<LiveMessage>,
    _guard: Box<dyn Send + Sync>,
}

impl std::fmt::Debug for LiveSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveSubscription").finish_non_exhaustive()
    }
}

impl LiveSubscription {
    /// A subscription receiving from `rx`; `guard` is dropped with it (a
    /// backend unsubscribes there).
    pub fn new(rx: mpsc::Receiver<LiveMessage>, guard: impl Send + Sync + 'static) -> Self {
        Self {
            rx,
            _guard: Box::new(guard),
        }
    }

    /// The next message; None once the channel is lost.
    pub async fn recv(&mut self) -> Option<LiveMessage> {
        self.rx.recv().await
    }
}

type Subscribers = HashMap<SessionId, Vec<(u64, mpsc::Sender<LiveMessage>)>>;

/// Fans the messages arriving on one connection out to the subscriptions
/// of each session (a helper for [`LiveChannel`] implementations; cheap to
/// clone, clones share the table).
#[derive(Clone, Default)]
pub struct LiveRouter {
    subscribers: Arc<Mutex<Subscribers>>,
    next: Arc<AtomicU64>,
}

impl std::fmt::Debug for LiveRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveRouter")
            .field("sessions", &self.table().len())
            .finish()
    }
}

/// A subscriber registered with [`LiveRouter::add`].
#[derive(Debug)]
pub struct Registered {
    /// Its key (for [`LiveRouter::remove`]).
    pub key: u64,
    /// Where its messages arrive.
    pub rx: mpsc::Receiver<LiveMessage>,
    /// Whether it is the session's first subscriber (the backend starts
    /// listening to the session's channel).
    pub first: bool,
}

impl LiveRouter {
    fn table(&self) -> std::sync::MutexGuard<'_, Subscribers> {
        self.subscribers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a subscriber of session `id`.
    pub fn add(&self, id: &SessionId) -> Registered {
        let key = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(LIVE_BUFFER);
        let mut table = self.table();
        let list = table.entry(id.clone()).or_default();
        let first = list.is_empty();
        list.push((key, tx));
        Registered { key, rx, first }
    }

    /// Removes subscriber `key` of session `id`; true when the session has
    /// none left (the backend may stop listening).
    pub fn remove(&self, id: &SessionId, key: u64) -> bool {
        let mut table = self.table();
        let Some(list) = table.get_mut(id) else {
            return true;
        };
        list.retain(|(k, _)| *k != key);
        if list.is_empty() {
            table.remove(id);
            true
        } else {
            false
        }
    }

    /// Whether session `id` has subscribers.
    pub fn has(&self, id: &SessionId) -> bool {
        self.table().contains_key(id)
    }

    /// Delivers a message to every subscriber of session `id` (a full
    /// subscription loses it: it polls the store anyway).
    pub fn dispatch(&self, id: &SessionId, message: LiveMessage) {
        let table = self.table();
        if let Some(list) = table.get(id) {
            for (_, tx) in list {
                let _ = tx.try_send(message.clone());
            }
        }
    }

    /// Delivers a message in wire form ([`LiveMessage::encode`]); anything
    /// malformed is ignored.
    pub fn dispatch_wire(&self, text: &str) {
        match LiveMessage::decode(text) {
            Some((id, message)) => self.dispatch(&id, message),
            None => tracing::debug!("ignored a malformed live-channel message"),
        }
    }

    /// The connection was lost: ends every subscription (their owners fall
    /// back to polling, or subscribe again).
    pub fn close_all(&self) {
        self.table().clear();
    }
}

/// An in-process [`LiveChannel`]: messages reach the subscriptions of
/// the same process only (the memory store's, see
/// [`MemoryStore::with_live_channel`](crate::memory::MemoryStore::with_live_channel)).
#[derive(Debug, Default)]
pub struct LocalChannel {
    router: LiveRouter,
}

/// Unsubscribes from a [`LiveRouter`] when dropped.
struct Unsubscribe {
    router: LiveRouter,
    id: SessionId,
    key: u64,
}

impl Drop for Unsubscribe {
    fn drop(&mut self) {
        self.router.remove(&self.id, self.key);
    }
}

#[async_trait]
impl LiveChannel for LocalChannel {
    async fn publish(&self, id: &SessionId, messages: &[LiveMessage]) -> Result<(), StoreError> {
        for m in messages {
            self.router.dispatch(id, m.clone());
        }
        Ok(())
    }

    async fn subscribe(&self, id: &SessionId) -> Result<LiveSubscription, StoreError> {
        let registered = self.router.add(id);
        Ok(LiveSubscription::new(
            registered.rx,
            Unsubscribe {
                router: self.router.clone(),
                id: id.clone(),
                key: registered.key,
            },
        ))
    }
}

/// A stream of session `id`'s records after a seq, committed by any
/// writer sharing the store (`watch(session, after_seq)`): gapless, in seq
/// order, each record once. Woken by the store's [`LiveChannel`] when it
/// has one (within milliseconds of a commit on another node), else by
/// polling with backoff from [`POLL_MIN`] to [`POLL_MAX`].
pub struct RecordWatch {
    store: Arc<dyn Store>,
    id: SessionId,
    next: u64,
    ready: VecDeque<Record>,
    channel: Option<LiveSubscription>,
    wait: Duration,
}

impl std::fmt::Debug for RecordWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordWatch")
            .field("session", &self.id)
            .field("next", &self.next)
            .field("channel", &self.channel.is_some())
            .finish()
    }
}

/// How many records a watch reads at a time.
const WATCH_PAGE: usize = 256;

impl RecordWatch {
    /// Watches session `id` of `store` from the record after `after_seq`
    /// (0: from the start). Fails with [`StoreError::NotFound`] when the
    /// session does not exist.
    pub async fn start(
        store: Arc<dyn Store>,
        id: &SessionId,
        after_seq: u64,
    ) -> Result<Self, StoreError> {
        // Subscribe first, then check the session: nothing committed in
        // between is missed (the first read happens after both).
        let channel = match store.live() {
            Some(live) => match live.subscribe(id).await {
                Ok(sub) => Some(sub),
                Err(e) => {
                    tracing::warn!(session = %id, error = %e, "cannot listen to the session's live channel; polling the store instead");
                    None
                }
            },
            None => None,
        };
        store.get(id).await?;
        Ok(Self {
            store,
            id: id.clone(),
            next: after_seq.saturating_add(1),
            ready: VecDeque::new(),
            channel,
            wait: POLL_MIN,
        })
    }

    /// The session watched.
    pub fn session_id(&self) -> &SessionId {
        &self.id
    }

    /// The seq of the next record it will return.
    pub fn next_seq(&self) -> u64 {
        self.next
    }

    /// Whether a live channel wakes it (else it polls).
    pub fn has_channel(&self) -> bool {
        self.channel.is_some()
    }

    /// The next record, waiting for one to be committed. Fails when the
    /// store fails (the session deleted: [`StoreError::NotFound`]).
    pub async fn next(&mut self) -> Result<Record, StoreError> {
        loop {
            if let Some(r) = self.ready.pop_front() {
                self.next = r.seq + 1;
                return Ok(r);
            }
            // The head first: every seq up to it is committed, so a read
            // after it sees them (a read first could miss a commit landing
            // between the two and mistake it for a hole).
            let head = self.store.get(&self.id).await?.last_seq;
            if head >= self.next {
                let page = self
                    .store
                    .read(&self.id, self.next, Some(WATCH_PAGE))
                    .await?;
                self.wait = POLL_MIN;
                if page.is_empty() {
                    // Committed but unreadable (seqs an fs store set aside
                    // as damaged): never returned, never waited for.
                    self.next = head + 1;
                }
                self.ready
                    .extend(page.into_iter().filter(|r| r.seq >= self.next));
                continue;
            }
            self.wait_for_commit().await;
        }
    }

    async fn wait_for_commit(&mut self) {
        let Some(channel) = self.channel.as_mut() else {
            tokio::time::sleep(self.wait).await;
            self.wait = (self.wait * 2).min(POLL_MAX);
            return;
        };
        let deadline = tokio::time::sleep(POLL_WITH_CHANNEL);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                message = channel.recv() => match message {
                    Some(LiveMessage { body: LiveBody::Committed { seq }, .. }) if seq >= self.next => return,
                    Some(_) => {}
                    None => {
                        tracing::warn!(session = %self.id, "lost the session's live channel; polling the store instead");
                        self.channel = None;
                        return;
                    }
                },
                _ = &mut deadline => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn id() -> SessionId {
        SessionId::new_v7()
    }

    use crate::BranchId;
    use crate::feed::{Feed, FeedItem, FeedReceiver};
    use crate::memory::MemoryStore;
    use crate::message::{Message, Role};
    use crate::record::RecordKind;
    use crate::session::{Project, SessionMeta};

    async fn session(store: &Arc<dyn Store>) -> SessionId {
        let id = SessionId::new_v7();
        store
            .create(
                SessionMeta::new(id.clone(), Project::current(), "base"),
                vec![],
            )
            .await
            .expect("create");
        id
    }

    async fn append(store: &Arc<dyn Store>, id: &SessionId, text: &str) -> Vec<Record> {
        let head = store.get(id).await.expect("get").last_seq;
        let batch = Record::batch(
            head,
            [RecordKind::message(Message::text(
                BranchId::main(),
                Role::User,
                text,
            ))],
        );
        store.append(id, head, batch.clone()).await.expect("append");
        batch
    }

    async fn recv(rx: &mut FeedReceiver) -> Arc<FeedItem> {
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("an item within 10 s")
            .expect("recv")
    }

    fn label(item: &FeedItem) -> String {
        match item {
            FeedItem::Record(r) => format!("record {}", r.seq),
            FeedItem::Event(e) => e.name.clone(),
        }
    }

    #[tokio::test]
    async fn a_feed_replays_another_feeds_events_and_records_in_its_order() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::with_live_channel());
        let id = session(&store).await;
        let a = Feed::new(store.clone(), id.clone(), 64);
        let b = Feed::new(store.clone(), id.clone(), 64);
        let mut rx = b.subscribe(None).await.expect("subscribe");
        // B listens once its follower task has subscribed: ping until then.
        loop {
            a.event("ping", &json!({}));
            match tokio::time::timeout(Duration::from_millis(50), rx.recv()).await {
                Ok(item) => {
                    assert_eq!(label(&item.expect("recv")), "ping");
                    break;
                }
                Err(_) => continue,
            }
        }
        while rx.try_recv().await.expect("drain").is_some() {}
        a.event("delta", &json!({"text": "hel"}));
        a.event("delta", &json!({"text": "lo"}));
        let batch = append(&store, &id, "hello").await;
        a.publish(&batch).await;
        a.event("end", &json!({}));
        b.event("own", &json!({}));
        let mut got = Vec::new();
        for _ in 0..5 {
            got.push(label(&*recv(&mut rx).await));
        }
        let own = got.iter().position(|l| l == "own").expect("own event");
        got.remove(own);
        assert_eq!(got, ["delta", "delta", "record 2", "end"]);
        // Nothing twice: B's own event came back from the channel too.
        assert!(
            tokio::time::timeout(Duration::from_millis(200), rx.recv())
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn watch_returns_every_later_record_once_with_and_without_a_channel() {
        for store in [
            Arc::new(MemoryStore::with_live_channel()) as Arc<dyn Store>,
            Arc::new(MemoryStore::new()),
        ] {
            let id = session(&store).await;
            append(&store, &id, "before").await;
            let mut watch = RecordWatch::start(store.clone(), &id, 1)
                .await
                .expect("watch");
            assert_eq!(watch.has_channel(), store.live().is_some());
            let writer = {
                let (store, id) = (store.clone(), id.clone());
                tokio::spawn(async move {
                    let feed = Feed::new(store.clone(), id.clone(), 8);
                    for i in 0..20 {
                        let batch = append(&store, &id, &format!("m{i}")).await;
                        feed.publish(&batch).await;
                        if i % 5 == 0 {
                            tokio::time::sleep(Duration::from_millis(30)).await;
                        }
                    }
                })
            };
            let mut seqs = Vec::new();
            while seqs.len() < 21 {
                let r = tokio::time::timeout(Duration::from_secs(10), watch.next())
                    .await
                    .expect("a record within 10 s")
                    .expect("next");
                seqs.push(r.seq);
            }
            writer.await.expect("writer");
            assert_eq!(seqs, (2..=22).collect::<Vec<u64>>());
            assert_eq!(watch.next_seq(), 23);
        }
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let missing = RecordWatch::start(store, &SessionId::new_v7(), 0).await;
        assert!(matches!(missing, Err(StoreError::NotFound(_))));
    }

    #[test]
    fn the_wire_form_round_trips_and_rejects_junk() {
        let s = id();
        let m = LiveMessage {
            origin: "o1".into(),
            n: 7,
            body: LiveBody::Event {
                name: "content_block:delta".into(),
                data: json!({"text": "hi", "turn": "t"}),
            },
        };
        let text = m.encode(&s);
        assert_eq!(LiveMessage::decode(&text), Some((s.clone(), m)));
        let c = LiveMessage {
            origin: "o1".into(),
            n: 8,
            body: LiveBody::Committed { seq: 42 },
        };
        assert_eq!(LiveMessage::decode(&c.encode(&s)), Some((s.clone(), c)));
        for junk in [
            "",
            "{}",
            "not json",
            r#"{"s":"../x","o":"o","n":1,"b":{"t":"committed","seq":1}}"#,
            r#"{"s":"abc","o":"","n":1,"b":{"t":"committed","seq":1}}"#,
            r#"{"s":"abc","o":"o","n":1,"b":{"t":"event","name":"x","data":3}}"#,
            r#"{"s":"abc","o":"o","n":1,"b":{"t":"nope"}}"#,
        ] {
            assert_eq!(LiveMessage::decode(junk), None, "{junk}");
        }
    }

    #[test]
    fn truncation_keeps_the_names() {
        let m = LiveMessage {
            origin: "o".into(),
            n: 1,
            body: LiveBody::Event {
                name: "tool:post".into(),
                data: json!({"turn": "t1", "branch": "main", "result": "x".repeat(10_000)}),
            },
        };
        let small = m.truncated();
        assert!(small.encode(&id()).len() < 300);
        match small.body {
            LiveBody::Event { data, .. } => {
                assert_eq!(
                    data,
                    json!({"turn": "t1", "branch": "main", "truncated": true})
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn the_router_fans_out_per_session() {
        let router = LiveRouter::default();
        let (a, b) = (id(), id());
        let mut r1 = router.add(&a);
        let mut r2 = router.add(&a);
        let mut r3 = router.add(&b);
        assert!(r1.first && !r2.first && r3.first);
        let msg = LiveMessage {
            origin: "o".into(),
            n: 1,
            body: LiveBody::Committed { seq: 3 },
        };
        router.dispatch_wire(&msg.encode(&a));
        router.dispatch_wire("garbage");
        assert_eq!(r1.rx.recv().await, Some(msg.clone()));
        assert_eq!(r2.rx.recv().await, Some(msg));
        assert!(r3.rx.try_recv().is_err());
        assert!(!router.remove(&a, r1.key));
        assert!(router.remove(&a, r2.key));
        assert!(!router.has(&a) && router.has(&b));
        router.close_all();
        assert_eq!(r3.rx.recv().await, None);
    }
}
