//! The live channel of [`PostgresStore`](super::PostgresStore):
//! `LISTEN`/`NOTIFY`.
//!
//! Each store handle keeps two dedicated connections (outside the pool,
//! opened on first use): one listens (through `crate::listen`), one
//! notifies.
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
//!   poll the store and subscribe again) and the next use reconnects (the
//!   publishing connection too).
//!
//! It knows the wire form and SQL; nothing of feeds or turns.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use tokio_postgres::{AsyncMessage, NoTls};
use weft_core::SessionId;
use weft_core::live::{LiveChannel, LiveError, LiveMessage, LiveRouter, LiveSubscription};
use weft_core::store::StoreError;

use super::{PostgresError, db, scrub};
use crate::listen::{Connect, Listener, Subscriber};

/// The largest payload sent as it is (PostgreSQL's limit is 8000 bytes).
pub const MAX_PAYLOAD: usize = 7900;

/// The publish statement: one notice per payload, in array order.
const NOTIFY_SQL: &str =
    "SELECT pg_notify($1, p) FROM unnest($2::text[]) WITH ORDINALITY AS t(p, i) ORDER BY i";

/// How to open the dedicated connections.
struct Connector {
    config: tokio_postgres::Config,
    url: String,
    password: Option<String>,
}

impl Connector {
    /// A connection with `synchronous_commit` off, its messages passed to
    /// `on_notice`; `alive` is cleared when it ends (after `on_end`).
    async fn connect(
        &self,
        on_notice: impl Fn(&str) + Send + 'static,
        on_end: impl FnOnce() + Send + 'static,
        alive: Arc<AtomicBool>,
    ) -> Result<tokio_postgres::Client, StoreError> {
        let (client, mut connection) =
            self.config
                .connect(NoTls)
                .await
                .map_err(|e| -> StoreError {
                    PostgresError::Connect {
                        url: self.url.clone(),
                        reason: scrub(e.to_string(), self.password.as_deref()),
                    }
                    .into()
                })?;
        let url = self.url.clone();
        tokio::spawn(async move {
            while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                match message {
                    Ok(AsyncMessage::Notification(n)) => on_notice(n.payload()),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(%url, error = %e, "lost a PostgreSQL live-channel connection; followers poll until it is back");
                        break;
                    }
                }
            }
            on_end();
            alive.store(false, Ordering::SeqCst);
        });
        client
            .batch_execute("SET synchronous_commit TO off")
            .await
            .map_err(db)?;
        Ok(client)
    }
}

/// The listening connection.
struct Listening(tokio_postgres::Client);

#[async_trait]
impl Subscriber for Listening {
    async fn listen(&mut self, channel: &str) -> Result<(), StoreError> {
        self.0
            .batch_execute(&format!("LISTEN {channel}"))
            .await
            .map_err(db)
    }

    async fn unlisten(&mut self, channel: &str) -> Result<(), StoreError> {
        self.0
            .batch_execute(&format!("UNLISTEN {channel}"))
            .await
            .map_err(db)
    }
}

#[async_trait]
impl Connect for Arc<Connector> {
    type Conn = Listening;

    async fn open(
        &self,
        router: LiveRouter,
        alive: Arc<AtomicBool>,
    ) -> Result<Listening, StoreError> {
        let on_notice = {
            let router = router.clone();
            move |payload: &str| router.dispatch_wire(payload)
        };
        let client = self
            .connect(on_notice, move || router.close_all(), alive)
            .await?;
        Ok(Listening(client))
    }
}

/// The publishing connection.
struct Publishing {
    client: tokio_postgres::Client,
    /// [`NOTIFY_SQL`], prepared once per connection (a publish is then one
    /// round trip, not a parse and an execute).
    notify: tokio_postgres::Statement,
    alive: Arc<AtomicBool>,
}

/// `LISTEN`/`NOTIFY` for one store handle. See the module docs.
pub(super) struct PgLive {
    connector: Arc<Connector>,
    schema: String,
    listener: Listener<Arc<Connector>>,
    publisher: tokio::sync::Mutex<Option<Publishing>>,
}

impl PgLive {
    pub(super) fn new(
        config: tokio_postgres::Config,
        url: String,
        password: Option<String>,
        schema: Option<&str>,
    ) -> Self {
        let connector = Arc::new(Connector {
            config,
            url,
            password,
        });
        Self {
            listener: Listener::new(connector.clone()),
            connector,
            schema: schema.unwrap_or("").to_string(),
            publisher: tokio::sync::Mutex::new(None),
        }
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

#[async_trait]
impl LiveChannel for PgLive {
    async fn publish(&self, id: &SessionId, messages: &[LiveMessage]) -> Result<(), LiveError> {
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
        let channel = channel_name(&self.schema, id);
        // Sent under the lock: publishes from this handle keep their order.
        let mut slot = self.publisher.lock().await;
        if !slot
            .as_ref()
            .is_some_and(|p| p.alive.load(Ordering::SeqCst))
        {
            let alive = Arc::new(AtomicBool::new(true));
            let client = self.connector.connect(|_| {}, || {}, alive.clone()).await?;
            let notify = client.prepare(NOTIFY_SQL).await.map_err(db)?;
            *slot = Some(Publishing {
                client,
                notify,
                alive,
            });
        }
        match slot.as_ref() {
            Some(p) => p
                .client
                .execute(&p.notify, &[&channel, &payloads])
                .await
                .map(|_| ())
                .map_err(|e| db(e).into()),
            None => Ok(()),
        }
    }

    async fn subscribe(&self, id: &SessionId) -> Result<LiveSubscription, LiveError> {
        Ok(self
            .listener
            .subscribe(id, channel_name(&self.schema, id))
            .await?)
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
