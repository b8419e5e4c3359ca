//! [`Feed`]: one session's ordered feed of records and kernel events.
//!
//! Everything that happens in a session goes through its feed, in the order
//! it happened:
//!
//! - **records** of the session log, published strictly in `seq` order and
//!   without gaps (a record written by a path that did not publish it — a
//!   daemon route, another process whose records a rebased append took in —
//!   is read from the store and published before the records after it), so
//!   a subscriber sees every record exactly once;
//! - **kernel events** (`execution:start`, `content_block:delta`,
//!   `tool:pre`, …), volatile, published by the session's
//!   [`crate::hooks::HookRegistry`] as they are emitted.
//!
//! Each item names the turn and the branch it belongs to ([`FeedItem::turn`],
//! [`FeedItem::branch`]): records carry them durably
//! ([`Record::turn`](crate::record::Record::turn)), events in their data
//! (`turn`, `branch`), put there by the turn that emitted them. Nothing is
//! guessed.
//!
//! A subscriber ([`Feed::subscribe`]) names the last record it has (or
//! none); it first gets the records after it from the store, up to the seq
//! published when it subscribed, then follows the feed live, skipping
//! records it already had. The channel is bounded: a subscriber that falls
//! too far behind gets [`FeedError::Lagged`] and should resubscribe from the
//! last record it saw; publishers never wait for subscribers.
//!
//! **Across processes.** When the store has a
//! [`LiveChannel`](crate::live::LiveChannel) (PostgreSQL, Redis), the feed
//! forwards what its process adds — every event, and the seq of every
//! batch published — to the channel in its own order (a background task,
//! never blocking the publisher), and while it has followers it replays
//! what other processes forward: their events as they are, their records
//! read from the store when their commit notice arrives (up to the seq it
//! names, so they keep their place among that process's events). It also
//! polls the store's head while followed: with a channel every second,
//! publishing what no notice brought for a whole second (a writer that
//! died between its commit and its notice); without one (fs and sqlite
//! shared by several processes on one machine) with backoff from 20 ms to
//! a second. So a record another process wrote always reaches the
//! followers. See [`crate::live`].
//!
//! The feed knows the store and the session id, nothing about HTTP or
//! terminals: the daemon's SSE streams, `/execute`, the CLI's output and
//! [`crate::runtime::TurnEvents`] all read it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::Value;
use tokio::sync::{Mutex, broadcast, mpsc};

use crate::id::{BranchId, SessionId, TurnId};
use crate::live::{
    LIVE_BUFFER, LiveBody, LiveChannel, LiveMessage, POLL_MAX, POLL_MIN, POLL_WITH_CHANNEL,
};
use crate::record::Record;
use crate::store::{Store, StoreError};

/// How many items a subscriber may fall behind before it is told it lagged
/// (the default capacity of [`Feed::new`]).
pub const FEED_CAPACITY: usize = 4096;

/// How many records a subscriber's replay reads from the store at a time.
const REPLAY_PAGE: usize = 256;

/// The field of an event's data naming the sub-agent session that emitted
/// it, on the feed of the session that delegated to it (see
/// [`Feed::relay_events_to`]); events of the session itself lack it.
pub const CHILD_SESSION_FIELD: &str = "child_session_id";

/// A volatile kernel event on the feed.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedEvent {
    /// The canonical event name (`content_block:delta`, …).
    pub name: String,
    /// Its data (a JSON object, with the hook registry's default fields).
    pub data: Value,
    /// The turn that emitted it (None: not emitted by a turn).
    pub turn: Option<TurnId>,
    /// The branch of that turn.
    pub branch: Option<BranchId>,
}

impl FeedEvent {
    /// An event named `name` with `data`, tagged with the `turn` and
    /// `branch` its data names (when they are valid ids).
    pub fn from_data(name: impl Into<String>, data: Value) -> Self {
        let turn = data
            .get("turn")
            .and_then(Value::as_str)
            .and_then(|t| TurnId::parse(t).ok());
        let branch = data
            .get("branch")
            .and_then(Value::as_str)
            .and_then(|b| BranchId::parse(b).ok());
        Self {
            name: name.into(),
            data,
            turn,
            branch,
        }
    }

    /// The sub-agent session that emitted the event, when it was relayed
    /// from one ([`CHILD_SESSION_FIELD`]).
    pub fn child_session(&self) -> Option<&str> {
        self.data.get(CHILD_SESSION_FIELD).and_then(Value::as_str)
    }
}

/// One item of a session's feed.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedItem {
    /// A durable log record.
    Record(Record),
    /// A volatile kernel event.
    Event(FeedEvent),
}

impl FeedItem {
    /// The turn the item belongs to (None: no turn's).
    pub fn turn(&self) -> Option<&TurnId> {
        match self {
            FeedItem::Record(r) => r.turn.as_ref(),
            FeedItem::Event(e) => e.turn.as_ref(),
        }
    }

    /// The branch of the item's turn (for a record outside a turn, the
    /// branch it names, if any).
    pub fn branch(&self) -> Option<&BranchId> {
        match self {
            FeedItem::Record(r) => r.branch.as_ref().or_else(|| r.kind.branch()),
            FeedItem::Event(e) => e.branch.as_ref(),
        }
    }

    /// The record, if this is one.
    pub fn as_record(&self) -> Option<&Record> {
        match self {
            FeedItem::Record(r) => Some(r),
            FeedItem::Event(_) => None,
        }
    }

    /// The event, if this is one.
    pub fn as_event(&self) -> Option<&FeedEvent> {
        match self {
            FeedItem::Event(e) => Some(e),
            FeedItem::Record(_) => None,
        }
    }
}

/// Why a subscriber stopped.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// The subscriber fell `missed` items behind; items were lost to it.
    #[error(
        "the subscriber fell {missed} events behind and was dropped; subscribe again from the last record it saw"
    )]
    Lagged {
        /// How many items it missed.
        missed: u64,
        /// The last record seq it received.
        last_seq: u64,
    },
    /// The feed is gone (its session was dropped).
    #[error("the session's feed was closed")]
    Closed,
    /// Replaying the records from the store failed.
    #[error("cannot read the session log to replay it: {0}")]
    Store(#[from] StoreError),
}

struct Inner {
    id: SessionId,
    store: Arc<dyn Store>,
    tx: broadcast::Sender<Arc<FeedItem>>,
    /// The last record seq published (None: not known yet).
    published: Mutex<Option<u64>>,
    /// This feed's id on the live channel (its own messages come back).
    origin: String,
    /// The store's live channel, when it has one.
    live: Option<Arc<dyn LiveChannel>>,
    /// What the forwarding task sends to the live channel.
    forward: Option<mpsc::Sender<LiveBody>>,
    /// Whether the task following other processes runs.
    following: AtomicBool,
    /// The parent session's feed this feed's events are relayed to, while
    /// the session runs delegated work ([`Feed::relay_events_to`]).
    relay: std::sync::RwLock<Option<Feed>>,
}

/// One session's feed (cheap to clone; clones share it). See the module
/// docs.
#[derive(Clone)]
pub struct Feed {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Feed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feed")
            .field("session", &self.inner.id)
            .field("followers", &self.followers())
            .finish()
    }
}

impl Feed {
    /// A feed of session `id` in `store`, holding up to `capacity` items
    /// per subscriber ([`FEED_CAPACITY`] is a good default).
    ///
    /// With a store that has a live channel, this starts the task that
    /// forwards the feed to it (when called inside a tokio runtime).
    pub fn new(store: Arc<dyn Store>, id: SessionId, capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        let origin = uuid::Uuid::new_v4().simple().to_string();
        let live = store.live();
        let forward = match (&live, tokio::runtime::Handle::try_current()) {
            (Some(channel), Ok(runtime)) => {
                let (ftx, frx) = mpsc::channel(LIVE_BUFFER);
                runtime.spawn(forward_task(
                    channel.clone(),
                    id.clone(),
                    origin.clone(),
                    frx,
                ));
                Some(ftx)
            }
            _ => None,
        };
        Self {
            inner: Arc::new(Inner {
                id,
                store,
                tx,
                published: Mutex::new(None),
                origin,
                live,
                forward,
                following: AtomicBool::new(false),
                relay: std::sync::RwLock::new(None),
            }),
        }
    }

    /// The session id.
    pub fn session_id(&self) -> &SessionId {
        &self.inner.id
    }

    /// How many subscribers follow the feed.
    pub fn followers(&self) -> usize {
        self.inner.tx.receiver_count()
    }

    /// Tells the feed the session's head when it does not know it yet (a
    /// session just loaded), so the first subscriber need not read it.
    pub async fn prime(&self, head: u64) {
        let mut published = self.inner.published.lock().await;
        if published.is_none() {
            *published = Some(head);
        }
    }

    /// Whether a kernel event published now would reach anyone: a
    /// follower in this process, the live channel to other processes, or a
    /// parent session this one relays to.
    pub fn is_observed(&self) -> bool {
        self.inner.forward.is_some()
            || self.inner.tx.receiver_count() > 0
            || self
                .inner
                .relay
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .is_some()
    }

    /// Publishes a volatile event (never waits; copies nothing when no one
    /// follows the feed). With a relay set ([`Feed::relay_events_to`]) the
    /// event is published on the parent's feed too, tagged
    /// [`CHILD_SESSION_FIELD`].
    pub fn event(&self, name: &str, data: &Value) {
        // The data is copied only for the paths that take it: a session
        // nobody follows, in a store without a live channel, pays nothing.
        if self.inner.forward.is_some() {
            self.forward(LiveBody::Event {
                name: name.to_string(),
                data: data.clone(),
            });
        }
        if self.inner.tx.receiver_count() > 0 {
            self.event_local(name, data.clone());
        }
        let relay = self
            .inner
            .relay
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(parent) = relay {
            let mut tagged = data.clone();
            if let Value::Object(map) = &mut tagged {
                // A grandchild's events keep their own session's tag.
                map.entry(CHILD_SESSION_FIELD)
                    .or_insert_with(|| Value::String(self.inner.id.to_string()));
            }
            parent.event(name, &tagged);
        }
    }

    /// Relays this (child) session's kernel events to `parent`'s feed,
    /// each tagged with [`CHILD_SESSION_FIELD`] (None: stops relaying).
    /// Records stay on the child's own feed: they are the child's log.
    pub fn relay_events_to(&self, parent: Option<Feed>) {
        *self.inner.relay.write().unwrap_or_else(|p| p.into_inner()) = parent;
    }

    fn event_local(&self, name: &str, data: Value) {
        if self.inner.tx.receiver_count() == 0 {
            return;
        }
        let _ = self
            .inner
            .tx
            .send(Arc::new(FeedItem::Event(FeedEvent::from_data(name, data))));
    }

    /// Hands a message to the forwarding task (dropped when its buffer is
    /// full: other processes' followers poll the store anyway).
    fn forward(&self, body: LiveBody) {
        if let Some(tx) = &self.inner.forward
            && let Err(mpsc::error::TrySendError::Full(_)) = tx.try_send(body)
        {
            tracing::debug!(session = %self.inner.id, "the live channel is behind; a message for other processes was dropped");
        }
    }

    /// Publishes `records` (in seq order) after filling any gap before
    /// them from the store; records already published are skipped. The
    /// last seq is forwarded to other processes (see the module docs).
    pub async fn publish(&self, records: &[Record]) {
        if let Some(last) = records.last() {
            self.forward(LiveBody::Committed { seq: last.seq });
        }
        self.publish_local(records).await;
    }

    async fn publish_local(&self, records: &[Record]) {
        let Some(first) = records.first() else {
            return;
        };
        let mut published = self.inner.published.lock().await;
        let last = records.last().map_or(first.seq, |r| r.seq);
        let Some(mut head) = *published else {
            // Nobody has subscribed: nothing to fill, just remember.
            *published = Some(last);
            return;
        };
        if self.inner.tx.receiver_count() == 0 {
            *published = Some(head.max(last));
            return;
        }
        if first.seq > head + 1 {
            let missing = (first.seq - head - 1) as usize;
            match self
                .inner
                .store
                .read(&self.inner.id, head + 1, Some(missing))
                .await
            {
                Ok(found) => {
                    for r in found.into_iter().filter(|r| r.seq < first.seq) {
                        if r.seq == head + 1 {
                            head = r.seq;
                            let _ = self.inner.tx.send(Arc::new(FeedItem::Record(r)));
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(session = %self.inner.id, error = %e, "cannot fill a gap in the session's feed; it is filled on the next write");
                    return;
                }
            }
            if first.seq > head + 1 {
                *published = Some(head);
                return;
            }
        }
        for r in records {
            if r.seq == head + 1 {
                head = r.seq;
                let _ = self.inner.tx.send(Arc::new(FeedItem::Record(r.clone())));
            }
        }
        *published = Some(head);
    }

    /// Publishes whatever the store holds after the published seq (records
    /// other writers appended).
    pub async fn catch_up(&self) {
        self.catch_up_to(None).await;
    }

    /// [`Feed::catch_up`], up to seq `to` when given (a commit notice
    /// names its last seq; records after it belong after the notifier's
    /// later events).
    async fn catch_up_to(&self, to: Option<u64>) {
        let from = match *self.inner.published.lock().await {
            Some(p) => p + 1,
            None => return,
        };
        let limit = match to {
            Some(to) if to < from => return,
            Some(to) => Some((to - from + 1) as usize),
            None => None,
        };
        match self.inner.store.read(&self.inner.id, from, limit).await {
            Ok(records) => self.publish_local(&records).await,
            Err(e) => {
                tracing::warn!(session = %self.inner.id, error = %e, "cannot read the log to catch the session's feed up");
            }
        }
    }

    /// Subscribes. With `after: Some(n)` the receiver first gets every
    /// record after seq `n` from the store; with None it starts at the
    /// head. Then it follows the feed: every record exactly once, and
    /// every event from now on.
    pub async fn subscribe(&self, after: Option<u64>) -> Result<FeedReceiver, StoreError> {
        let mut published = self.inner.published.lock().await;
        let head = match *published {
            Some(p) => p,
            None => {
                let p = self.inner.store.get(&self.inner.id).await?.last_seq;
                *published = Some(p);
                p
            }
        };
        let rx = self.inner.tx.subscribe();
        drop(published);
        self.follow_others();
        let last_seq = after.unwrap_or(head).min(head);
        Ok(FeedReceiver {
            store: self.inner.store.clone(),
            id: self.inner.id.clone(),
            rx,
            head,
            replay_next: last_seq + 1,
            replayed: VecDeque::new(),
            last_seq,
        })
    }
}

impl Feed {
    /// The last record seq published, if known.
    async fn published_seq(&self) -> Option<u64> {
        *self.inner.published.lock().await
    }

    /// Starts following what other processes do to the session (see the
    /// module docs), unless it already does or nobody else can write the
    /// store.
    fn follow_others(&self) {
        if self.inner.live.is_none() && !self.inner.store.is_shared() {
            return;
        }
        if self.inner.following.swap(true, Ordering::SeqCst) {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(follow_task(self.clone()));
            }
            Err(_) => self.inner.following.store(false, Ordering::SeqCst),
        }
    }

    /// The store's head when it is beyond the published seq (None: nothing
    /// new, or unknown).
    async fn unpublished_head(&self) -> Option<u64> {
        let published = self.published_seq().await?;
        match self.inner.store.get(&self.inner.id).await {
            Ok(meta) if meta.last_seq > published => Some(meta.last_seq),
            Ok(_) => None,
            Err(e) => {
                tracing::debug!(session = %self.inner.id, error = %e, "cannot read the session's head to follow other processes");
                None
            }
        }
    }
}

/// Sends what the feed forwards to the live channel, in order, batching
/// what accumulated while the previous batch was sent. Ends when the feed
/// is dropped.
async fn forward_task(
    channel: Arc<dyn LiveChannel>,
    id: SessionId,
    origin: String,
    mut rx: mpsc::Receiver<LiveBody>,
) {
    const BATCH: usize = 256;
    let mut n = 0u64;
    let mut failing = false;
    let mut batch = Vec::with_capacity(BATCH);
    while let Some(body) = rx.recv().await {
        batch.push(body);
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(body) => batch.push(body),
                Err(_) => break,
            }
        }
        let messages: Vec<LiveMessage> = batch
            .drain(..)
            .map(|body| {
                n += 1;
                LiveMessage {
                    origin: origin.clone(),
                    n,
                    body,
                }
            })
            .collect();
        match channel.publish(&id, &messages).await {
            Ok(()) => failing = false,
            Err(e) => {
                if !failing {
                    tracing::warn!(session = %id, error = %e, "cannot send the session's live events to other processes (their followers still see every record)");
                }
                failing = true;
            }
        }
    }
}

/// Replays, while the feed has followers, what other processes do to the
/// session: their events from the live channel, their records from the
/// store (on their commit notice, or found by polling the head).
async fn follow_task(feed: Feed) {
    let inner = &feed.inner;
    let mut channel = match &inner.live {
        Some(live) => match live.subscribe(&inner.id).await {
            Ok(sub) => Some(sub),
            Err(e) => {
                tracing::warn!(session = %inner.id, error = %e, "cannot listen to the session's live channel; polling the store instead");
                None
            }
        },
        None => None,
    };
    // What was committed before the subscription took effect.
    feed.catch_up().await;
    let mut wait = POLL_MIN;
    let mut next_poll = tokio::time::Instant::now() + POLL_MIN;
    // A head seen beyond the published seq at the last poll.
    let mut overdue: Option<u64> = None;
    while inner.tx.receiver_count() > 0 {
        let message = async {
            match channel.as_mut() {
                Some(c) => c.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            message = message => match message {
                Some(m) if m.origin == inner.origin => {}
                Some(LiveMessage { body: LiveBody::Committed { seq }, .. }) => {
                    feed.catch_up_to(Some(seq)).await;
                }
                Some(LiveMessage { body: LiveBody::Event { name, data }, .. }) => {
                    feed.event_local(&name, data);
                }
                None => {
                    tracing::warn!(session = %inner.id, "lost the session's live channel; polling the store instead");
                    channel = None;
                }
            },
            _ = tokio::time::sleep_until(next_poll) => {
                let head = feed.unpublished_head().await;
                if channel.is_some() {
                    // With a channel, records come with their notices, in
                    // order with the events before them; a poll publishes
                    // only what no notice brought for a whole period.
                    if let Some(seen) = overdue.take() {
                        feed.catch_up_to(Some(seen)).await;
                    }
                    overdue = head;
                    next_poll = tokio::time::Instant::now() + POLL_WITH_CHANNEL;
                } else {
                    if let Some(live) = &inner.live {
                        // The channel was lost: try it again.
                        if let Ok(sub) = live.subscribe(&inner.id).await {
                            channel = Some(sub);
                        }
                    }
                    if head.is_some() {
                        feed.catch_up().await;
                        wait = POLL_MIN;
                    } else {
                        wait = (wait * 2).min(POLL_MAX);
                    }
                    next_poll = tokio::time::Instant::now() + wait;
                }
            }
        }
    }
    inner.following.store(false, Ordering::SeqCst);
    // A follower that subscribed while this task was stopping.
    if inner.tx.receiver_count() > 0 {
        feed.follow_others();
    }
}

/// A subscription to a [`Feed`]: replays the records after the point it
/// started from, then follows the feed.
pub struct FeedReceiver {
    store: Arc<dyn Store>,
    id: SessionId,
    rx: broadcast::Receiver<Arc<FeedItem>>,
    head: u64,
    replay_next: u64,
    replayed: VecDeque<Record>,
    last_seq: u64,
}

impl std::fmt::Debug for FeedReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedReceiver")
            .field("session", &self.id)
            .field("head", &self.head)
            .field("last_seq", &self.last_seq)
            .finish()
    }
}

impl FeedReceiver {
    /// The record seq the feed had published when this subscribed (the
    /// replay goes up to it).
    pub fn head(&self) -> u64 {
        self.head
    }

    /// The seq of the last record received (or the start point).
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// The next item: a replayed record, then live items in order.
    pub async fn recv(&mut self) -> Result<Arc<FeedItem>, FeedError> {
        loop {
            if let Some(item) = self.replayed_item().await? {
                return Ok(item);
            }
            match self.rx.recv().await {
                Ok(item) => {
                    if let Some(item) = self.take(item) {
                        return Ok(item);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    return Err(FeedError::Lagged {
                        missed,
                        last_seq: self.last_seq,
                    });
                }
                Err(broadcast::error::RecvError::Closed) => return Err(FeedError::Closed),
            }
        }
    }

    /// The next item if one is ready now (replayed records are read from the
    /// store first); None when nothing is waiting.
    pub async fn try_recv(&mut self) -> Result<Option<Arc<FeedItem>>, FeedError> {
        if let Some(item) = self.replayed_item().await? {
            return Ok(Some(item));
        }
        loop {
            match self.rx.try_recv() {
                Ok(item) => {
                    if let Some(item) = self.take(item) {
                        return Ok(Some(item));
                    }
                }
                Err(broadcast::error::TryRecvError::Empty) => return Ok(None),
                Err(broadcast::error::TryRecvError::Lagged(missed)) => {
                    return Err(FeedError::Lagged {
                        missed,
                        last_seq: self.last_seq,
                    });
                }
                Err(broadcast::error::TryRecvError::Closed) => return Err(FeedError::Closed),
            }
        }
    }

    /// A live item, unless it is a record already received.
    fn take(&mut self, item: Arc<FeedItem>) -> Option<Arc<FeedItem>> {
        if let FeedItem::Record(r) = &*item {
            if r.seq <= self.last_seq {
                return None;
            }
            self.last_seq = r.seq;
        }
        Some(item)
    }

    async fn replayed_item(&mut self) -> Result<Option<Arc<FeedItem>>, FeedError> {
        if self.replayed.is_empty() && self.replay_next <= self.head {
            let page = self
                .store
                .read(&self.id, self.replay_next, Some(REPLAY_PAGE))
                .await?;
            if page.is_empty() {
                self.replay_next = u64::MAX;
            }
            for r in page {
                if r.seq > self.head {
                    self.replay_next = u64::MAX;
                    break;
                }
                self.replay_next = r.seq + 1;
                self.replayed.push_back(r);
            }
        }
        Ok(self.replayed.pop_front().map(|r| {
            self.last_seq = self.last_seq.max(r.seq);
            Arc::new(FeedItem::Record(r))
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryStore;
    use crate::message::{Message, Role};
    use crate::record::RecordKind;
    use crate::session::{Project, SessionMeta};

    async fn session() -> (Arc<dyn Store>, SessionId) {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let id = SessionId::new_v7();
        store
            .create(
                SessionMeta::new(id.clone(), Project::current(), "base"),
                vec![],
            )
            .await
            .expect("create");
        (store, id)
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

    fn seqs(items: &[Arc<FeedItem>]) -> Vec<u64> {
        items
            .iter()
            .filter_map(|i| i.as_record().map(|r| r.seq))
            .collect()
    }

    async fn drain(rx: &mut FeedReceiver) -> Vec<Arc<FeedItem>> {
        let mut out = Vec::new();
        while let Some(item) = rx.try_recv().await.expect("recv") {
            out.push(item);
        }
        out
    }

    #[tokio::test]
    async fn fills_gaps_and_skips_duplicates() {
        let (store, id) = session().await;
        let feed = Feed::new(store.clone(), id.clone(), 64);
        let mut rx = feed.subscribe(None).await.expect("subscribe");
        assert_eq!(rx.head(), 1);
        // Three records written behind the feed's back, the last published.
        let mut last = Vec::new();
        for i in 0..3 {
            last = append(&store, &id, &format!("m{i}")).await;
        }
        feed.publish(&last).await;
        feed.publish(&last).await; // a duplicate
        assert_eq!(seqs(&drain(&mut rx).await), vec![2, 3, 4]);
    }

    #[tokio::test]
    async fn a_subscriber_from_seq_n_gets_every_later_record_once() {
        let (store, id) = session().await;
        let feed = Feed::new(store.clone(), id.clone(), 64);
        for i in 0..5 {
            let batch = append(&store, &id, &format!("m{i}")).await;
            feed.publish(&batch).await;
        }
        // Starts at seq 3 while seq 4..=6 are in the store; then more come.
        let mut rx = feed.subscribe(Some(3)).await.expect("subscribe");
        feed.event("x", &serde_json::json!({}));
        let batch = append(&store, &id, "live").await;
        feed.publish(&batch).await;
        feed.publish(&batch).await;
        let items = drain(&mut rx).await;
        assert_eq!(seqs(&items), vec![4, 5, 6, 7]);
        assert_eq!(items.iter().filter(|i| i.as_event().is_some()).count(), 1);
        // Starting beyond the head starts at the head.
        let mut rx = feed.subscribe(Some(100)).await.expect("subscribe");
        assert!(drain(&mut rx).await.is_empty());
    }

    #[tokio::test]
    async fn items_name_their_turn_and_branch() {
        let (store, id) = session().await;
        let feed = Feed::new(store, id, 8);
        let mut rx = feed.subscribe(None).await.expect("subscribe");
        let turn = TurnId::new_v7();
        feed.event("x", &serde_json::json!({"turn": turn, "branch": "left"}));
        feed.event("y", &serde_json::json!({"turn": "not an id/", "branch": 3}));
        let items = drain(&mut rx).await;
        assert_eq!(items[0].turn(), Some(&turn));
        assert_eq!(items[0].branch().map(BranchId::as_str), Some("left"));
        assert_eq!(items[1].turn(), None);
        assert_eq!(items[1].branch(), None);
    }

    #[tokio::test]
    async fn a_lagging_subscriber_is_told_where_to_resume() {
        let (store, id) = session().await;
        let feed = Feed::new(store, id, 2);
        let mut rx = feed.subscribe(None).await.expect("subscribe");
        for i in 0..5 {
            feed.event("x", &serde_json::json!({"i": i}));
        }
        match rx.recv().await {
            Err(FeedError::Lagged { missed, last_seq }) => {
                assert_eq!((missed, last_seq), (3, 1));
            }
            other => panic!("expected a lag, got {other:?}"),
        }
    }
}
