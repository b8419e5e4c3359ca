//! The live channel of [`PostgresStore`](super::PostgresStore):
//! `LISTEN`/`NOTIFY`.
//!
//! Each store handle keeps one dedicated connection (outside the pool,
//! opened on first use) that both listens and notifies:
//!
//! - a session's channel is `weft_` + a 64-bit FNV-1a hash of the store's
//!   schema and the session id, in hex (channel names are database-wide
//!   identifiers of at most 63 bytes; the payload names the session, so a
//!   hash collision only costs a message a subscriber ignores);
//! - a publish is one statement, `pg_notify` over an array of payloads in
//!   order, on a connection with `synchronous_commit` off (a notice needs
//!   no WAL flush: it is volatile by contract, and the records it points
//!   to were committed durably before);
//! - a payload is a [`LiveMessage`] in its wire form; an event whose form
//!   exceeds [`MAX_PAYLOAD`] (PostgreSQL refuses notices of 8000 bytes or
//!   more) is sent [truncated](LiveMessage::truncated);
//! - the first subscriber of a session `LISTEN`s, the last one to leave
//!   `UNLISTEN`s; a lost connection ends every subscription (followers
//!   poll the store and subscribe again) and the next use reconnects.
//!
//! It knows the wire form and SQL; nothing of feeds or turns.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use tokio_postgres::{AsyncMessage, NoTls};
use weft_core::SessionId;
use weft_core::live::{LiveChannel, LiveMessage, LiveRouter, LiveSubscription};
use weft_core::store::StoreError;

use super::{PostgresError, db, scrub};

/// The largest payload sent as it is (PostgreSQL's limit is 8000 bytes).
pub const MAX_PAYLOAD: usize = 7900;

/// The publish statement: one notice per payload, in array order.
const NOTIFY_SQL: &str =
    "SELECT pg_notify($1, p) FROM unnest($2::text[]) WITH ORDINALITY AS t(p, i) ORDER BY i";

/// The dedicated connection.
struct Conn {
    client: tokio_postgres::Client,
    alive: Arc<AtomicBool>,
}

/// `LISTEN`/`NOTIFY` for one store handle. See the module docs.
pub(super) struct PgLive {
    config: tokio_postgres::Config,
    url: String,
    password: Option<String>,
    schema: String,
    router: LiveRouter,
    /// The connection, and the lock that orders `LISTEN`/`UNLISTEN`.
    conn: Arc<tokio::sync::Mutex<Option<Conn>>>,
}

impl PgLive {
    pub(super) fn new(
        config: tokio_postgres::Config,
        url: String,
        password: Option<String>,
        schema: Option<&str>,
    ) -> Self {
        Self {
            config,
            url,
            password,
            schema: schema.unwrap_or("").to_string(),
            router: LiveRouter::default(),
            conn: Arc::new(tokio::sync::Mutex::new(None)),
        }
    }

    /// Session `id`'s channel name.
    fn channel(&self, id: &SessionId) -> String {
        channel_name(&self.schema, id)
    }

    /// The live connection, connecting when there is none (or it died).
    async fn connect<'a>(
        &self,
        slot: &'a mut Option<Conn>,
    ) -> Result<&'a tokio_postgres::Client, StoreError> {
        if !slot
            .as_ref()
            .is_some_and(|c| c.alive.load(Ordering::SeqCst))
        {
            *slot = Some(self.open().await?);
        }
        match slot.as_ref() {
            Some(c) => Ok(&c.client),
            None => Err(StoreError::Backend {
                backend: super::BACKEND,
                message: "the live-channel connection closed at once".into(),
            }),
        }
    }

    /// A new dedicated connection, its notifications routed.
    async fn open(&self) -> Result<Conn, StoreError> {
        let connect_error = |reason: String| -> StoreError {
            PostgresError::Connect {
                url: self.url.clone(),
                reason: scrub(reason, self.password.as_deref()),
            }
            .into()
        };
        let (client, mut connection) = self
            .config
            .connect(NoTls)
            .await
            .map_err(|e| connect_error(e.to_string()))?;
        let alive = Arc::new(AtomicBool::new(true));
        let router = self.router.clone();
        let flag = alive.clone();
        let url = self.url.clone();
        tokio::spawn(async move {
            while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                match message {
                    Ok(AsyncMessage::Notification(n)) => router.dispatch_wire(n.payload()),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(%url, error = %e, "lost the PostgreSQL live-channel connection; followers poll until it is back");
                        break;
                    }
                }
            }
            // Subscriptions end before the connection is seen dead, so a
            // new one never loses a subscriber to this cleanup.
            router.close_all();
            flag.store(false, Ordering::SeqCst);
        });
        client
            .batch_execute("SET synchronous_commit TO off")
            .await
            .map_err(db)?;
        Ok(Conn { client, alive })
    }
}

/// `weft_` and the hex FNV-1a hash of `schema` and `id`.
fn channel_name(schema: &str, id: &SessionId) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in schema
        .bytes()
        .chain(std::iter::once(0))
        .chain(id.as_str().bytes())
    {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("weft_{hash:016x}")
}

/// Unsubscribes when dropped; the last subscriber of a session
/// `UNLISTEN`s (in the background, under the connection lock, and only if
/// nobody subscribed again meanwhile).
struct Unsubscribe {
    router: LiveRouter,
    conn: Arc<tokio::sync::Mutex<Option<Conn>>>,
    id: SessionId,
    channel: String,
    key: u64,
}

impl Drop for Unsubscribe {
    fn drop(&mut self) {
        if !self.router.remove(&self.id, self.key) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (router, conn, id) = (self.router.clone(), self.conn.clone(), self.id.clone());
        let channel = std::mem::take(&mut self.channel);
        runtime.spawn(async move {
            let slot = conn.lock().await;
            if router.has(&id) {
                return;
            }
            if let Some(c) = slot.as_ref().filter(|c| c.alive.load(Ordering::SeqCst)) {
                if let Err(e) = c.client.batch_execute(&format!("UNLISTEN {channel}")).await {
                    tracing::debug!(error = %e, "cannot UNLISTEN a session channel");
                }
            }
        });
    }
}

#[async_trait]
impl LiveChannel for PgLive {
    async fn publish(&self, id: &SessionId, messages: &[LiveMessage]) -> Result<(), StoreError> {
        if messages.is_empty() {
            return Ok(());
        }
        let payloads: Vec<String> = messages
            .iter()
            .map(|m| {
                let text = m.encode(id);
                if text.len() > MAX_PAYLOAD {
                    m.truncated().encode(id)
                } else {
                    text
                }
            })
            .collect();
        let channel = self.channel(id);
        let mut slot = self.conn.lock().await;
        let client = self.connect(&mut slot).await?;
        // Sent under the lock: publishes from this handle keep their order.
        client
            .execute(NOTIFY_SQL, &[&channel, &payloads])
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn subscribe(&self, id: &SessionId) -> Result<LiveSubscription, StoreError> {
        let channel = self.channel(id);
        let mut slot = self.conn.lock().await;
        let registered = self.router.add(id);
        let unsubscribe = Unsubscribe {
            router: self.router.clone(),
            conn: self.conn.clone(),
            id: id.clone(),
            channel: channel.clone(),
            key: registered.key,
        };
        let fresh = !slot
            .as_ref()
            .is_some_and(|c| c.alive.load(Ordering::SeqCst));
        if registered.first || fresh {
            let client = match self.connect(&mut slot).await {
                Ok(c) => c,
                Err(e) => {
                    drop(slot);
                    drop(unsubscribe);
                    return Err(e);
                }
            };
            if let Err(e) = client.batch_execute(&format!("LISTEN {channel}")).await {
                drop(slot);
                drop(unsubscribe);
                return Err(db(e));
            }
        }
        drop(slot);
        Ok(LiveSubscription::new(registered.rx, unsubscribe))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_are_short_identifiers_per_schema_and_session() {
        let id = SessionId::new_v7();
        let a = channel_name("s1", &id);
        assert_eq!(a.len(), 21);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
        assert_eq!(a, channel_name("s1", &id));
        assert_ne!(a, channel_name("s2", &id));
        assert_ne!(a, channel_name("s1", &SessionId::new_v7()));
    }
}
