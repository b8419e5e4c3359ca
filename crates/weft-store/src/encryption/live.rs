//! The live channel behind the encryption layer: kernel events published
//! to other processes (PostgreSQL `NOTIFY`, Redis pub/sub) travel with
//! their data sealed by the session's data key (only the ids a record
//! keeps clear stay readable: session, turn, branch), and are opened again
//! on the way in. Commit notices carry only a seq and pass as they are.
//!
//! An event that does not open here (no key, or a wrong one) is dropped:
//! the channel is at-most-once by contract, and followers read the records
//! from the store anyway.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::mpsc;
use weft_core::SessionId;
use weft_core::live::{
    LIVE_BUFFER, LiveBody, LiveChannel, LiveError, LiveMessage, LiveSubscription,
};

use super::keyring::Keyring;
use super::seal;

/// See the module docs.
pub(crate) struct EncryptedLive {
    pub(crate) inner: Arc<dyn LiveChannel>,
    pub(crate) keys: Arc<Keyring>,
}

/// Stops the task forwarding a subscription when it is dropped.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn live_error(e: impl std::fmt::Display) -> LiveError {
    LiveError(e.to_string())
}

/// `m` opened with session `id`'s key; None when it must be dropped.
async fn open(keys: &Keyring, id: &SessionId, mut m: LiveMessage) -> Option<LiveMessage> {
    let LiveBody::Event { data, .. } = &mut m.body else {
        return Some(m);
    };
    if data.get("sealed").is_none() {
        return Some(m);
    }
    let key = match keys.key_for(id).await {
        Ok(Some(key)) => key,
        Ok(None) => {
            tracing::debug!(session = %id, "dropping a sealed live event: no key opens it here");
            return None;
        }
        Err(e) => {
            tracing::warn!(session = %id, error = %e, "dropping a sealed live event");
            return None;
        }
    };
    match seal::open_live_data(&key, id.as_str(), data)? {
        Ok(opened) => {
            *data = opened;
            Some(m)
        }
        Err(e) => {
            tracing::warn!(session = %id, error = %e, "dropping a live event that does not open");
            None
        }
    }
}

#[async_trait]
impl LiveChannel for EncryptedLive {
    async fn publish(&self, id: &SessionId, messages: &[LiveMessage]) -> Result<(), LiveError> {
        let Some(key) = self.keys.key_for(id).await.map_err(live_error)? else {
            return self.inner.publish(id, messages).await;
        };
        let sealed = messages
            .iter()
            .map(|m| {
                let mut m = m.clone();
                if let LiveBody::Event { data, .. } = &mut m.body {
                    *data = seal::seal_live_data(&key, id.as_str(), data).map_err(live_error)?;
                }
                Ok(m)
            })
            .collect::<Result<Vec<_>, LiveError>>()?;
        self.inner.publish(id, &sealed).await
    }

    async fn subscribe(&self, id: &SessionId) -> Result<LiveSubscription, LiveError> {
        let mut sub = self.inner.subscribe(id).await?;
        let (tx, rx) = mpsc::channel(LIVE_BUFFER);
        let (keys, id) = (self.keys.clone(), id.clone());
        let task = tokio::spawn(async move {
            while let Some(m) = sub.recv().await {
                if let Some(m) = open(&keys, &id, m).await
                    && tx.send(m).await.is_err()
                {
                    break;
                }
            }
        });
        Ok(LiveSubscription::new(rx, AbortOnDrop(task.abort_handle())))
    }
}
