//! Session state: `temp:` keys in this process, the rest through
//! [`crate::stored`] (`app:`/`user:` keys shared through the store, other
//! keys recorded in the session log), by the rule every front end uses.

use std::sync::Weak;

use async_trait::async_trait;
use serde_json::{Map, Value};

use super::{Inner, Session, lock};
use crate::error::SessionError;
use crate::record::{RecordKind, StateDelta};
use crate::state::check_key;
use crate::stored;
use crate::tool::SessionState;

/// A running turn's view of its session's state, for tools (the
/// `state_get` / `state_set` tools): the same rules as [`Session::state_set`].
pub(super) struct RuntimeState {
    pub(super) session: Weak<Inner>,
}

impl RuntimeState {
    fn session(&self) -> Result<Session, String> {
        self.session
            .upgrade()
            .map(|inner| Session { inner })
            .ok_or_else(|| "the session has ended".to_string())
    }
}

#[async_trait]
impl SessionState for RuntimeState {
    async fn get(&self, key: &str) -> Result<Option<Value>, String> {
        self.session()?
            .state_get(key)
            .await
            .map_err(|e| e.to_string())
    }

    async fn set(&self, key: &str, value: Option<Value>) -> Result<(), String> {
        let session = self.session()?;
        match value {
            Some(v) => session.state_set(key, v).await,
            None => session.state_delete(key).await,
        }
        .map_err(|e| e.to_string())
    }

    async fn all(&self) -> Result<Map<String, Value>, String> {
        self.session()?.state_all().await.map_err(|e| e.to_string())
    }
}

impl Session {
    /// Sets a state key. `temp:` keys live in this process until the end of
    /// the turn; `app:` and `user:` keys are shared through the store (the
    /// `user:` ones in the session owner's namespace, see
    /// [`crate::stored`]); other keys are session state recorded in the log.
    pub async fn state_set(&self, key: &str, value: Value) -> Result<(), SessionError> {
        self.change_state(key, Some(value)).await
    }

    /// Removes a state key.
    pub async fn state_delete(&self, key: &str) -> Result<(), SessionError> {
        self.change_state(key, None).await
    }

    async fn change_state(&self, key: &str, value: Option<Value>) -> Result<(), SessionError> {
        if temp_key(key)? {
            let mut temp = lock(&self.inner.temp_state);
            match value {
                Some(v) => temp.insert(key.to_string(), v),
                None => temp.remove(key),
            };
            return Ok(());
        }
        let meta = self.meta().await?;
        if let Some(delta) = stored::change(self.store().as_ref(), &meta, key, value).await? {
            self.append_state(delta).await?;
        }
        Ok(())
    }

    async fn append_state(&self, delta: StateDelta) -> Result<(), SessionError> {
        self.mounted()?
            .log
            .append_anywhere(vec![RecordKind::State(delta)])
            .await?;
        Ok(())
    }

    /// Removes every session-local and `temp:` key (recorded in the log, so
    /// the clear survives a restart). Shared `app:`/`user:` keys stay.
    pub async fn state_clear(&self) -> Result<(), SessionError> {
        lock(&self.inner.temp_state).clear();
        self.append_state(StateDelta {
            clear: true,
            ..Default::default()
        })
        .await
    }

    /// A state key's value.
    pub async fn state_get(&self, key: &str) -> Result<Option<Value>, SessionError> {
        if temp_key(key)? {
            return Ok(lock(&self.inner.temp_state).get(key).cloned());
        }
        Ok(stored::get(self.store().as_ref(), &self.meta().await?, key).await?)
    }

    /// All state visible to the session: session keys, `app:` and `user:`
    /// keys, and `temp:` keys.
    pub async fn state_all(&self) -> Result<Map<String, Value>, SessionError> {
        let mut all = stored::all(self.store().as_ref(), &self.meta().await?).await?;
        all.extend(lock(&self.inner.temp_state).clone());
        Ok(all)
    }
}

/// Whether `key` is a (valid) `temp:` key, which this process holds.
fn temp_key(key: &str) -> Result<bool, SessionError> {
    check_key(key).map_err(SessionError::Invalid)?;
    Ok(stored::is_temp(key))
}
