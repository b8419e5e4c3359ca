//! [`SessionLog`]: one writer's handle on a session's log.
//!
//! It remembers the head seq it last wrote or read, numbers each batch to
//! follow it and appends through the [`Store`]. Writers in one process share
//! a handle (its lock serialises their batches, so concurrent branches never
//! conflict with each other); a writer in another process that appended in
//! between makes the next append fail with [`StoreError::Conflict`] rather
//! than interleave. Appended records are also broadcast to subscribers (the
//! daemon's SSE streams).

use std::sync::Arc;

use tokio::sync::{Mutex, broadcast};

use crate::id::SessionId;
use crate::record::{Record, RecordKind};
use crate::session::SessionMeta;
use crate::store::{Store, StoreError};

/// How many records a slow subscriber may fall behind before it is told it
/// lagged.
pub const LOG_BROADCAST_CAPACITY: usize = 4096;

struct Inner {
    store: Arc<dyn Store>,
    id: SessionId,
    head: Mutex<u64>,
    tx: broadcast::Sender<Record>,
}

/// A shared handle for appending to one session's log.
#[derive(Clone)]
pub struct SessionLog {
    inner: Arc<Inner>,
}

impl SessionLog {
    /// A handle on `id` whose log is at `head`.
    pub fn new(store: Arc<dyn Store>, id: SessionId, head: u64) -> Self {
        let (tx, _) = broadcast::channel(LOG_BROADCAST_CAPACITY);
        Self {
            inner: Arc::new(Inner {
                store,
                id,
                head: Mutex::new(head),
                tx,
            }),
        }
    }

    /// The session id.
    pub fn id(&self) -> &SessionId {
        &self.inner.id
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The head seq this handle knows.
    pub async fn head(&self) -> u64 {
        *self.inner.head.lock().await
    }

    /// Appends `kinds` as one atomic batch after the known head. Returns the
    /// records written and the metadata after them.
    pub async fn append(
        &self,
        kinds: Vec<RecordKind>,
    ) -> Result<(Vec<Record>, SessionMeta), StoreError> {
        let mut head = self.inner.head.lock().await;
        self.write(&mut head, kinds).await
    }

    /// Appends `kinds` only if the head is still `expected` (the head a
    /// caller read its view at); otherwise [`StoreError::Conflict`].
    pub async fn append_at(
        &self,
        expected: u64,
        kinds: Vec<RecordKind>,
    ) -> Result<(Vec<Record>, SessionMeta), StoreError> {
        let mut head = self.inner.head.lock().await;
        if *head != expected {
            return Err(StoreError::Conflict {
                id: self.inner.id.to_string(),
                expected,
                actual: *head,
            });
        }
        self.write(&mut head, kinds).await
    }

    async fn write(
        &self,
        head: &mut u64,
        kinds: Vec<RecordKind>,
    ) -> Result<(Vec<Record>, SessionMeta), StoreError> {
        let records = Record::batch(*head, kinds);
        let meta = self
            .inner
            .store
            .append(&self.inner.id, *head, records.clone())
            .await?;
        *head = meta.last_seq;
        for r in &records {
            // No subscribers is fine.
            let _ = self.inner.tx.send(r.clone());
        }
        Ok((records, meta))
    }

    /// Re-reads the head from the store (after a conflict, to accept the
    /// other writer's records).
    pub async fn refresh(&self) -> Result<SessionMeta, StoreError> {
        let mut head = self.inner.head.lock().await;
        let meta = self.inner.store.get(&self.inner.id).await?;
        *head = meta.last_seq;
        Ok(meta)
    }

    /// Records appended through this handle from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Record> {
        self.inner.tx.subscribe()
    }
}
