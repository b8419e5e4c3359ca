//! [`RecordWatch`]: `watch(session, after_seq)`, a stream of a session's
//! records as any writer sharing the store commits them (see
//! [`crate::live`] for how processes wake each other).
//!
//! It knows the [`Store`] contract and the live channel's commit notices;
//! nothing of backends, feeds or turns.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use crate::id::SessionId;
use crate::live::{LiveBody, LiveMessage, LiveSubscription, POLL_MAX, POLL_MIN, POLL_WITH_CHANNEL};
use crate::record::Record;
use crate::store::{Store, StoreError};

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
}
