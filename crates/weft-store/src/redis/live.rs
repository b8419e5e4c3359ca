//! The live channel of [`RedisStore`](super::RedisStore): pub/sub.
//!
//! A session's channel is `<prefix>live:<id>`. Publishing pipelines one
//! `PUBLISH` per message, in order, on a connection of its own (a
//! [`ConnectionManager`], which reconnects by itself); subscribing uses one
//! dedicated pub/sub connection per store handle (through
//! `crate::listen`: the first subscriber of a session `SUBSCRIBE`s, the
//! last `UNSUBSCRIBE`s, a lost connection ends the subscriptions and the
//! next one reconnects). Payloads are [`LiveMessage`]s in wire form; Redis
//! has no payload limit worth the name, so events travel whole.
//!
//! It knows the wire form and the commands; nothing of feeds or turns.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use futures::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSubSink};
use tokio::sync::OnceCell;
use weft_core::SessionId;
use weft_core::live::{LiveChannel, LiveError, LiveMessage, LiveRouter, LiveSubscription};
use weft_core::store::StoreError;

use super::{CONNECT_TIMEOUT, RESPONSE_TIMEOUT, backend};
use crate::listen::{Connect, Listener, Subscriber};

/// How to open the pub/sub connection.
struct Connector {
    client: redis::Client,
    url: String,
}

/// The subscribing connection.
struct Subscribed {
    sink: PubSubSink,
    url: String,
}

#[async_trait]
impl Subscriber for Subscribed {
    async fn listen(&mut self, channel: &str) -> Result<(), StoreError> {
        self.sink
            .subscribe(channel)
            .await
            .map_err(|e| backend(&self.url, e.to_string()))
    }

    async fn unlisten(&mut self, channel: &str) -> Result<(), StoreError> {
        self.sink
            .unsubscribe(channel)
            .await
            .map_err(|e| backend(&self.url, e.to_string()))
    }
}

#[async_trait]
impl Connect for Arc<Connector> {
    type Conn = Subscribed;

    async fn open(
        &self,
        router: LiveRouter,
        alive: Arc<AtomicBool>,
    ) -> Result<Subscribed, StoreError> {
        let pubsub = tokio::time::timeout(CONNECT_TIMEOUT, self.client.get_async_pubsub())
            .await
            .map_err(|_| backend(&self.url, "timed out connecting for pub/sub".into()))?
            .map_err(|e| backend(&self.url, format!("cannot connect for pub/sub: {e}")))?;
        let (sink, mut stream) = pubsub.split();
        tokio::spawn(async move {
            while let Some(message) = stream.next().await {
                match message.get_payload::<String>() {
                    Ok(text) => router.dispatch_wire(&text),
                    Err(_) => tracing::debug!("ignored a non-text live-channel message"),
                }
            }
            router.close_all();
            alive.store(false, Ordering::SeqCst);
        });
        Ok(Subscribed {
            sink,
            url: self.url.clone(),
        })
    }
}

/// Pub/sub for one store handle. See the module docs.
pub(super) struct RedisLive {
    connector: Arc<Connector>,
    prefix: String,
    listener: Listener<Arc<Connector>>,
    publisher: OnceCell<ConnectionManager>,
}

impl RedisLive {
    pub(super) fn new(client: redis::Client, url: String, prefix: &str) -> Self {
        let connector = Arc::new(Connector { client, url });
        Self {
            listener: Listener::new(connector.clone()),
            connector,
            prefix: prefix.to_string(),
            publisher: OnceCell::new(),
        }
    }

    fn channel(&self, id: &SessionId) -> String {
        format!("{}live:{id}", self.prefix)
    }

    async fn publisher(&self) -> Result<ConnectionManager, StoreError> {
        let conn = self
            .publisher
            .get_or_try_init(|| async {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(RESPONSE_TIMEOUT));
                ConnectionManager::new_with_config(self.connector.client.clone(), config)
                    .await
                    .map_err(|e| backend(&self.connector.url, format!("cannot connect: {e}")))
            })
            .await?;
        Ok(conn.clone())
    }
}

#[async_trait]
impl LiveChannel for RedisLive {
    async fn publish(&self, id: &SessionId, messages: &[LiveMessage]) -> Result<(), LiveError> {
        if messages.is_empty() {
            return Ok(());
        }
        let channel = self.channel(id);
        let mut pipe = redis::pipe();
        for m in messages {
            pipe.publish(&channel, m.encode(id)).ignore();
        }
        let mut conn = self.publisher().await?;
        pipe.query_async::<()>(&mut conn)
            .await
            .map_err(|e| backend(&self.connector.url, e.to_string()).into())
    }

    async fn subscribe(&self, id: &SessionId) -> Result<LiveSubscription, LiveError> {
        Ok(self.listener.subscribe(id, self.channel(id)).await?)
    }
}
