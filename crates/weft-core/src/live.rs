//! Live channels: a session's feed across processes and nodes.
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
//! [`crate::watch::RecordWatch`] (`watch(session, after_seq)`) is the same
//! idea without a feed: every record after a seq, in order and gapless,
//! woken by the channel's commit notices when there is one, else by
//! polling with backoff.
//!
//! This module knows the message format and the channel's contract; it
//! knows nothing of stores, PostgreSQL, Redis, HTTP or turns. Backends
//! implement [`LiveChannel`] and may use [`LiveRouter`] to fan one
//! connection's messages out to subscriptions.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::id::SessionId;

/// How many messages a subscription buffers before newer ones are dropped
/// (a follower that slow catches up from the store's head).
pub const LIVE_BUFFER: usize = 4096;

/// The shortest wait of a poll with backoff ([`crate::watch::RecordWatch`], and a feed
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

/// Why a live channel failed. Volatile by contract: its users fall back to
/// polling the store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the live channel failed: {0}")]
pub struct LiveError(pub String);

/// A store's channel between the processes sharing it. See the module docs.
#[async_trait]
pub trait LiveChannel: Send + Sync {
    /// Publishes `messages`, in order, on session `id`'s channel (volatile:
    /// delivered to the subscriptions that exist, at most once).
    async fn publish(&self, id: &SessionId, messages: &[LiveMessage]) -> Result<(), LiveError>;

    /// Subscribes to session `id`'s channel: every message published after
    /// this returns, in each publisher's order, until the subscription is
    /// dropped or the channel's connection is lost (then
    /// [`LiveSubscription::recv`] returns None).
    async fn subscribe(&self, id: &SessionId) -> Result<LiveSubscription, LiveError>;
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
    async fn publish(&self, id: &SessionId, messages: &[LiveMessage]) -> Result<(), LiveError> {
        for m in messages {
            self.router.dispatch(id, m.clone());
        }
        Ok(())
    }

    async fn subscribe(&self, id: &SessionId) -> Result<LiveSubscription, LiveError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn id() -> SessionId {
        SessionId::new_v7()
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
