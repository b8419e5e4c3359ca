//! Session state: `temp:` keys in this process, `app:`/`user:` keys shared
//! through the store, other keys recorded in the session log.

use serde_json::{Map, Value};

use super::{Session, lock};
use crate::error::SessionError;
use crate::record::{RecordKind, StateDelta};
use crate::state::{StateScope, check_key, scope_of};

impl Session {
    fn scope(&self, key: &str) -> Result<StateScope, SessionError> {
        check_key(key).map_err(SessionError::Invalid)?;
        let cfg = &self.inner.config;
        Ok(scope_of(key, &cfg.profile, cfg.user.as_deref()))
    }

    /// Sets a state key. `temp:` keys live in this process until the end of
    /// the turn; `app:` and `user:` keys are shared through the store;
    /// other keys are session state recorded in the log.
    pub async fn state_set(&self, key: &str, value: Value) -> Result<(), SessionError> {
        let mut delta = StateDelta::default();
        delta.set.insert(key.to_string(), value.clone());
        self.apply_state(key, delta, |temp| {
            temp.insert(key.to_string(), value);
        })
        .await
    }

    /// Removes a state key.
    pub async fn state_delete(&self, key: &str) -> Result<(), SessionError> {
        let delta = StateDelta {
            delete: vec![key.to_string()],
            ..Default::default()
        };
        self.apply_state(key, delta, |temp| {
            temp.remove(key);
        })
        .await
    }

    async fn apply_state(
        &self,
        key: &str,
        delta: StateDelta,
        temp: impl FnOnce(&mut Map<String, Value>),
    ) -> Result<(), SessionError> {
        match self.scope(key)? {
            StateScope::Temp => temp(&mut lock(&self.inner.temp_state)),
            StateScope::Shared(ns) => {
                self.store().update_shared_state(&ns, &delta).await?;
            }
            StateScope::Session => {
                self.mounted()?
                    .log
                    .append_anywhere(vec![RecordKind::State(delta)])
                    .await?;
            }
        }
        Ok(())
    }

    /// Removes every session-local and `temp:` key (recorded in the log, so
    /// the clear survives a restart). Shared `app:`/`user:` keys stay.
    pub async fn state_clear(&self) -> Result<(), SessionError> {
        lock(&self.inner.temp_state).clear();
        let delta = StateDelta {
            clear: true,
            ..Default::default()
        };
        self.mounted()?
            .log
            .append_anywhere(vec![RecordKind::State(delta)])
            .await?;
        Ok(())
    }

    /// A state key's value.
    pub async fn state_get(&self, key: &str) -> Result<Option<Value>, SessionError> {
        Ok(match self.scope(key)? {
            StateScope::Temp => lock(&self.inner.temp_state).get(key).cloned(),
            StateScope::Shared(ns) => self.store().shared_state(&ns).await?.get(key).cloned(),
            StateScope::Session => self.view().await?.state.get(key).cloned(),
        })
    }

    /// All state visible to the session: session keys, `app:` and `user:`
    /// keys, and `temp:` keys.
    pub async fn state_all(&self) -> Result<Map<String, Value>, SessionError> {
        let mut all = self.view().await?.state;
        for prefix in ["app:", "user:"] {
            if let StateScope::Shared(ns) = self.scope(prefix)? {
                all.extend(self.store().shared_state(&ns).await?);
            }
        }
        all.extend(lock(&self.inner.temp_state).clone());
        Ok(all)
    }
}
