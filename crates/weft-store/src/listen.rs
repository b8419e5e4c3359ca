//! [`Listener`]: the subscribing half of a network backend's live channel
//! ([`weft_core::live`]), shared by postgres (`LISTEN`) and redis
//! (`SUBSCRIBE`).
//!
//! One dedicated connection per store handle receives every channel the
//! handle's subscriptions need; a [`LiveRouter`] fans its messages out. The
//! first subscriber of a session starts listening to the session's
//! channel, the last one to leave stops (in the background, under the
//! connection lock, and only if nobody subscribed again meanwhile). A lost
//! connection ends every subscription (their owners poll the store and
//! subscribe again) and the next subscription reconnects.
//!
//! It knows the [`Subscriber`]/[`Connect`] traits its backends implement,
//! nothing of SQL or Redis commands.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use weft_core::SessionId;
use weft_core::live::{LiveRouter, LiveSubscription};
use weft_core::store::StoreError;

/// A connection receiving channel messages.
#[async_trait]
pub(crate) trait Subscriber: Send + Sync + 'static {
    /// Starts receiving `channel`'s messages.
    async fn listen(&mut self, channel: &str) -> Result<(), StoreError>;
    /// Stops receiving `channel`'s messages.
    async fn unlisten(&mut self, channel: &str) -> Result<(), StoreError>;
}

/// Opens [`Subscriber`] connections.
#[async_trait]
pub(crate) trait Connect: Send + Sync + 'static {
    /// The connection.
    type Conn: Subscriber;
    /// Opens a connection whose messages (in wire form) go to
    /// `router.dispatch_wire`; when it ends, its reader calls
    /// `router.close_all()` **then** clears `alive`.
    async fn open(
        &self,
        router: LiveRouter,
        alive: Arc<AtomicBool>,
    ) -> Result<Self::Conn, StoreError>;
}

struct Open<S> {
    conn: S,
    alive: Arc<AtomicBool>,
}

type Slot<S> = Arc<tokio::sync::Mutex<Option<Open<S>>>>;

/// The subscribing half of a live channel. See the module docs.
pub(crate) struct Listener<C: Connect> {
    connect: C,
    router: LiveRouter,
    slot: Slot<C::Conn>,
}

impl<C: Connect> Listener<C> {
    /// A listener that connects with `connect` on first use.
    pub(crate) fn new(connect: C) -> Self {
        Self {
            connect,
            router: LiveRouter::default(),
            slot: Arc::new(tokio::sync::Mutex::new(None)),
        }
    }

    /// Subscribes to session `id`, whose messages travel on `channel`.
    pub(crate) async fn subscribe(
        &self,
        id: &SessionId,
        channel: String,
    ) -> Result<LiveSubscription, StoreError> {
        let mut slot = self.slot.lock().await;
        let registered = self.router.add(id);
        let guard = Unsubscribe {
            router: self.router.clone(),
            slot: self.slot.clone(),
            id: id.clone(),
            channel: channel.clone(),
            key: registered.key,
        };
        let dead = !slot
            .as_ref()
            .is_some_and(|o| o.alive.load(Ordering::SeqCst));
        if dead {
            let alive = Arc::new(AtomicBool::new(true));
            match self.connect.open(self.router.clone(), alive.clone()).await {
                Ok(conn) => *slot = Some(Open { conn, alive }),
                Err(e) => {
                    drop(slot);
                    drop(guard);
                    return Err(e);
                }
            }
        }
        if registered.first || dead {
            let listened = match slot.as_mut() {
                Some(open) => open.conn.listen(&channel).await,
                None => Ok(()),
            };
            if let Err(e) = listened {
                drop(slot);
                drop(guard);
                return Err(e);
            }
        }
        drop(slot);
        Ok(LiveSubscription::new(registered.rx, guard))
    }
}

/// Unsubscribes when dropped (see the module docs).
struct Unsubscribe<S: Subscriber> {
    router: LiveRouter,
    slot: Slot<S>,
    id: SessionId,
    channel: String,
    key: u64,
}

impl<S: Subscriber> Drop for Unsubscribe<S> {
    fn drop(&mut self) {
        if !self.router.remove(&self.id, self.key) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (router, slot, id) = (self.router.clone(), self.slot.clone(), self.id.clone());
        let channel = std::mem::take(&mut self.channel);
        runtime.spawn(async move {
            let mut slot = slot.lock().await;
            if router.has(&id) {
                return;
            }
            if let Some(open) = slot.as_mut().filter(|o| o.alive.load(Ordering::SeqCst))
                && let Err(e) = open.conn.unlisten(&channel).await
            {
                tracing::debug!(error = %e, "cannot stop listening to a session channel");
            }
        });
    }
}
