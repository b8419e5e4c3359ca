//! [`Hub`]: one session's event bus.
//!
//! Two kinds of items go through it to every stream of the session:
//!
//! - **records** of the session log, published strictly in `seq` order
//!   without gaps (a gap — a record written by another path, or missed by a
//!   lagging forwarder — is filled from the store first), so a stream that
//!   replays the store up to the hub's published seq and then follows the
//!   hub sees every record exactly once;
//! - **kernel events** (`content_block:delta`, `tool:pre`, …), volatile,
//!   forwarded from the live session's hooks as they are emitted.
//!
//! Items carry the number of the turn they belong to, so `/execute` can
//! pick out its own turn. Turns on different branches run concurrently, so
//! the hub knows the running turn of each branch: a record or event that
//! names a branch (messages, and every kernel event of a turn) gets that
//! branch's turn; one that names none gets the running turn when exactly
//! one runs (else 0). The channel is bounded: a
//! stream that falls too far behind is told so and closed; publishers never
//! wait for readers.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::{Mutex, broadcast};
use weft_core::hooks::{HookError, HookHandler, HookResult, events};
use weft_core::record::RecordKind;
use weft_core::store::{Store, StoreError};
use weft_core::{BranchId, Record, SessionId};

/// One item on the bus.
#[derive(Debug, Clone)]
pub(crate) enum BusItem {
    /// A durable log record.
    Record {
        /// The record.
        record: Record,
        /// The turn running when it was published (0: none).
        turn: u64,
    },
    /// A volatile kernel (or server) event.
    Event {
        /// The canonical event name.
        name: String,
        /// Its data.
        data: Value,
        /// The turn running when it was emitted (0: none).
        turn: u64,
    },
}

impl BusItem {
    /// The turn the item belongs to.
    pub(crate) fn turn(&self) -> u64 {
        match self {
            BusItem::Record { turn, .. } | BusItem::Event { turn, .. } => *turn,
        }
    }
}

/// One session's bus. See the module docs.
pub(crate) struct Hub {
    id: SessionId,
    tx: broadcast::Sender<Arc<BusItem>>,
    /// The last record seq published (None: not known yet, nobody
    /// subscribed).
    published: Mutex<Option<u64>>,
    /// The turn running on each branch.
    turns: std::sync::Mutex<HashMap<BranchId, TurnTag>>,
}

/// A running turn, as the hub tags items with it.
#[derive(Debug, Clone, Copy)]
struct TurnTag {
    turn: u64,
    /// Whether the kernel emitted `execution:start` for it.
    saw_start: bool,
    /// Whether the kernel emitted `execution:end` for it.
    saw_end: bool,
}

/// The branch a log record belongs to, if it belongs to one.
fn record_branch(record: &Record) -> Option<&str> {
    match &record.kind {
        RecordKind::Message(m) => Some(m.branch.as_str()),
        RecordKind::Rewind { branch, .. } | RecordKind::Compaction { branch, .. } => {
            Some(branch.as_str())
        }
        _ => None,
    }
}

impl Hub {
    /// A bus for `id` holding up to `capacity` items per reader.
    pub(crate) fn new(id: SessionId, capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        Self {
            id,
            tx,
            published: Mutex::new(None),
            turns: std::sync::Mutex::new(HashMap::new()),
        }
    }

    fn tags(&self) -> std::sync::MutexGuard<'_, HashMap<BranchId, TurnTag>> {
        self.turns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The turn an item naming `branch` (or none) belongs to (0: none).
    fn turn_of(&self, branch: Option<&str>) -> u64 {
        let tags = self.tags();
        match branch {
            Some(b) => tags
                .iter()
                .find(|(id, _)| id.as_str() == b)
                .map_or(0, |(_, t)| t.turn),
            None if tags.len() == 1 => tags.values().next().map_or(0, |t| t.turn),
            None => 0,
        }
    }

    /// How many streams follow the bus.
    pub(crate) fn readers(&self) -> usize {
        self.tx.receiver_count()
    }

    /// Marks `turn` as running on `branch`.
    pub(crate) fn begin_turn(&self, branch: &BranchId, turn: u64) {
        self.tags().insert(
            branch.clone(),
            TurnTag {
                turn,
                saw_start: false,
                saw_end: false,
            },
        );
    }

    /// Marks `branch` as running no turn.
    pub(crate) fn end_turn(&self, branch: &BranchId) {
        self.tags().remove(branch);
    }

    /// Whether the kernel emitted `execution:start` for the turn running on
    /// `branch` since [`Hub::begin_turn`] (the turn is set up: the kernel
    /// can cancel it).
    pub(crate) fn saw_execution_start(&self, branch: &BranchId) -> bool {
        self.tags().get(branch).is_some_and(|t| t.saw_start)
    }

    /// Whether the kernel emitted `execution:end` for the turn running on
    /// `branch` since [`Hub::begin_turn`].
    pub(crate) fn saw_execution_end(&self, branch: &BranchId) -> bool {
        self.tags().get(branch).is_some_and(|t| t.saw_end)
    }

    /// Publishes a volatile event (never waits; copies nothing when no
    /// stream follows the bus).
    pub(crate) fn event(&self, name: &str, data: &Value) {
        let branch = data.get("branch").and_then(Value::as_str);
        let start = name == events::EXECUTION_START;
        if start || name == events::EXECUTION_END {
            let mut tags = self.tags();
            let only = (tags.len() == 1)
                .then(|| tags.keys().next().cloned())
                .flatten();
            let key = match branch {
                Some(b) => tags.keys().find(|id| id.as_str() == b).cloned(),
                None => only,
            };
            if let Some(tag) = key.and_then(|k| tags.get_mut(&k)) {
                if start {
                    tag.saw_start = true;
                } else {
                    tag.saw_end = true;
                }
            }
        }
        if self.tx.receiver_count() == 0 {
            return;
        }
        let turn = self.turn_of(branch);
        let _ = self.tx.send(Arc::new(BusItem::Event {
            name: name.to_string(),
            data: data.clone(),
            turn,
        }));
    }

    /// Subscribes: the receiver gets every record after the returned seq,
    /// and every event from now on.
    pub(crate) async fn subscribe(
        &self,
        store: &Arc<dyn Store>,
    ) -> Result<(broadcast::Receiver<Arc<BusItem>>, u64), StoreError> {
        let mut published = self.published.lock().await;
        let head = match *published {
            Some(p) => p,
            None => {
                let p = store.get(&self.id).await?.last_seq;
                *published = Some(p);
                p
            }
        };
        Ok((self.tx.subscribe(), head))
    }

    /// Publishes `records` (in seq order) after filling any gap before
    /// them from the store; records already published are skipped.
    pub(crate) async fn publish(&self, store: &Arc<dyn Store>, records: &[Record]) {
        let Some(first) = records.first() else {
            return;
        };
        let mut published = self.published.lock().await;
        let Some(mut head) = *published else {
            // Nobody has subscribed: nothing to fill, just remember.
            *published = records.last().map(|r| r.seq);
            return;
        };
        if self.tx.receiver_count() == 0 {
            *published = Some(head.max(records.last().map_or(head, |r| r.seq)));
            return;
        }
        if first.seq > head + 1 {
            match store
                .read(&self.id, head + 1, Some((first.seq - head - 1) as usize))
                .await
            {
                Ok(missing) => {
                    for r in missing.into_iter().filter(|r| r.seq < first.seq) {
                        if r.seq == head + 1 {
                            head = r.seq;
                            let turn = self.turn_of(record_branch(&r));
                            let _ = self.tx.send(Arc::new(BusItem::Record { record: r, turn }));
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(session = %self.id, error = %e, "cannot fill a gap in the event stream; it is filled on the next write");
                    return;
                }
            }
            if first.seq > head + 1 {
                return;
            }
        }
        for r in records {
            if r.seq == head + 1 {
                head = r.seq;
                let turn = self.turn_of(record_branch(r));
                let _ = self.tx.send(Arc::new(BusItem::Record {
                    record: r.clone(),
                    turn,
                }));
            }
        }
        *published = Some(head);
    }

    /// Publishes whatever the store holds after the published seq.
    pub(crate) async fn catch_up(&self, store: &Arc<dyn Store>) {
        let from = match *self.published.lock().await {
            Some(p) => p + 1,
            None => return,
        };
        match store.read(&self.id, from, None).await {
            Ok(records) => self.publish(store, &records).await,
            Err(e) => {
                tracing::warn!(session = %self.id, error = %e, "cannot read the log to catch the event stream up");
            }
        }
    }
}

/// The hook handler that forwards every kernel event to a hub.
///
/// Before it forwards an event it publishes the log records appended since
/// the last one, so a stream sees records and events in the order they
/// happened (a record appended before an event is emitted comes first).
pub(crate) struct Forward {
    hub: Arc<Hub>,
    store: Arc<dyn Store>,
    records: std::sync::Mutex<broadcast::Receiver<Record>>,
}

impl Forward {
    /// Forwards to `hub`, draining `records` (a subscription to the live
    /// session's log) before each event.
    pub(crate) fn new(
        hub: Arc<Hub>,
        store: Arc<dyn Store>,
        records: broadcast::Receiver<Record>,
    ) -> Self {
        Self {
            hub,
            store,
            records: std::sync::Mutex::new(records),
        }
    }
}

#[async_trait]
impl HookHandler for Forward {
    async fn handle(&self, event: &str, data: &Value) -> Result<HookResult, HookError> {
        let mut pending = Vec::new();
        let mut lagged = false;
        {
            let mut rx = self.records.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                match rx.try_recv() {
                    Ok(r) => pending.push(r),
                    Err(broadcast::error::TryRecvError::Lagged(_)) => lagged = true,
                    Err(_) => break,
                }
            }
        }
        if lagged {
            self.hub.catch_up(&self.store).await;
        }
        if !pending.is_empty() {
            self.hub.publish(&self.store, &pending).await;
        }
        self.hub.event(event, data);
        Ok(HookResult::proceed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_core::memory::MemoryStore;
    use weft_core::session::{Project, SessionMeta};
    use weft_core::{Message, Role};

    fn msg(text: &str) -> RecordKind {
        RecordKind::message(Message::text(Default::default(), Role::User, text))
    }

    #[tokio::test]
    async fn fills_gaps_and_skips_duplicates() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let id = SessionId::new_v7();
        store
            .create(
                SessionMeta::new(id.clone(), Project::current(), "base"),
                vec![],
            )
            .await
            .unwrap();
        let hub = Hub::new(id.clone(), 64);
        let (mut rx, head) = hub.subscribe(&store).await.unwrap();
        assert_eq!(head, 1);
        // Three records written behind the hub's back, one published.
        let mut last = Vec::new();
        for i in 0..3 {
            let h = store.get(&id).await.unwrap().last_seq;
            let batch = Record::batch(h, [msg(&format!("m{i}"))]);
            store.append(&id, h, batch.clone()).await.unwrap();
            last = batch;
        }
        hub.publish(&store, &last).await;
        hub.publish(&store, &last).await; // a duplicate
        let mut seqs = Vec::new();
        while let Ok(item) = rx.try_recv() {
            if let BusItem::Record { record, .. } = &*item {
                seqs.push(record.seq);
            }
        }
        assert_eq!(seqs, vec![2, 3, 4]);
    }

    #[tokio::test]
    async fn items_are_tagged_with_their_branch_turn() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let id = SessionId::new_v7();
        store
            .create(
                SessionMeta::new(id.clone(), Project::current(), "base"),
                vec![],
            )
            .await
            .unwrap();
        let hub = Hub::new(id.clone(), 64);
        let (mut rx, _) = hub.subscribe(&store).await.unwrap();
        let left = BranchId::parse("left").unwrap();
        hub.begin_turn(&BranchId::main(), 1);
        hub.begin_turn(&left, 2);
        hub.event("x", &serde_json::json!({"branch": "left"}));
        hub.event("x", &serde_json::json!({"branch": "main"}));
        hub.event("x", &serde_json::json!({"branch": "other"}));
        hub.event("x", &serde_json::json!({}));
        let h = store.get(&id).await.unwrap().last_seq;
        let batch = Record::batch(
            h,
            [RecordKind::message(Message::text(
                left.clone(),
                Role::User,
                "l",
            ))],
        );
        store.append(&id, h, batch.clone()).await.unwrap();
        hub.publish(&store, &batch).await;
        hub.event(
            events::EXECUTION_START,
            &serde_json::json!({"branch": "left"}),
        );
        assert!(hub.saw_execution_start(&left));
        assert!(!hub.saw_execution_start(&BranchId::main()));
        hub.event(
            events::EXECUTION_END,
            &serde_json::json!({"branch": "left"}),
        );
        assert!(hub.saw_execution_end(&left));
        assert!(!hub.saw_execution_end(&BranchId::main()));
        hub.end_turn(&left);
        hub.event("x", &serde_json::json!({}));
        let mut turns = Vec::new();
        while let Ok(item) = rx.try_recv() {
            turns.push(item.turn());
        }
        // left, main, a branch with no turn, no branch while two run, a
        // record on left, left's start and end, no branch while only main
        // runs.
        assert_eq!(turns, vec![2, 1, 0, 0, 2, 2, 2, 1]);
    }
}
