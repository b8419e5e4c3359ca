//! The data keys a process has unwrapped, shared by the store wrapper and
//! its live channel: each session's (from its key-ring namespace) and the
//! shared-state keys (entries `shared.<id>` of [`KEY_RING`]), each
//! unwrapped once and kept in memory.
//!
//! This module knows where data keys are kept and how they are made; what
//! they seal is `seal`'s and `shared`'s business.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use weft_core::SessionId;
use weft_core::record::StateDelta;
use weft_core::store::{Store, StoreError};

use super::keys::{DataKey, MasterKey, WrappedKey};
use super::{KEY_ENTRY, KEY_RING, key_namespace};

/// The prefix of a shared-state key's entry in [`KEY_RING`].
pub(crate) const SHARED_ENTRY: &str = "shared.";

/// How long a look finding no encrypted data in a store counts, for a
/// process without a key (see [`Keyring::store_is_encrypted`]).
const CLEAR_RECHECK: Duration = Duration::from_secs(60);

/// The owner bound into the wrapping of shared-state key `kid`.
pub(crate) fn shared_owner(kid: &str) -> String {
    format!("shared state key {kid}")
}

/// A key ring entry parsed.
pub(crate) fn parse_wrapped(value: &Value, what: &str) -> Result<WrappedKey, StoreError> {
    serde_json::from_value(value.clone()).map_err(|e| StoreError::Corrupt {
        location: format!("the key ring entry of {what}"),
        detail: e.to_string(),
    })
}

/// `wrapped` as a JSON value for the key ring.
pub(crate) fn to_value(wrapped: &WrappedKey) -> Result<Value, StoreError> {
    serde_json::to_value(wrapped).map_err(|e| StoreError::Backend {
        backend: "encryption",
        message: e.to_string(),
    })
}

/// See the module docs.
pub(crate) struct Keyring {
    pub(crate) inner: Arc<dyn Store>,
    pub(crate) master: Option<MasterKey>,
    sessions: Mutex<HashMap<String, DataKey>>,
    shared: Mutex<HashMap<String, DataKey>>,
    /// The shared-state key new values are sealed with.
    writing: Mutex<Option<(String, DataKey)>>,
    /// Whether the store holds encrypted data, and when that was looked up
    /// (a `true` is kept for good).
    encrypted: Mutex<Option<(bool, Instant)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Keyring {
    pub(crate) fn new(inner: Arc<dyn Store>, master: Option<MasterKey>) -> Self {
        Self {
            inner,
            master,
            sessions: Mutex::new(HashMap::new()),
            shared: Mutex::new(HashMap::new()),
            writing: Mutex::new(None),
            encrypted: Mutex::new(None),
        }
    }

    /// Keeps session `id`'s data key.
    pub(crate) fn remember(&self, id: &str, key: DataKey) {
        lock(&self.sessions).insert(id.to_string(), key);
    }

    /// Forgets the data keys of deleted sessions.
    pub(crate) fn forget(&self, ids: &[SessionId]) {
        let mut keys = lock(&self.sessions);
        for id in ids {
            keys.remove(id.as_str());
        }
    }

    /// The data key of session `id`: None when it has none (written in
    /// clear) or no master key is set.
    pub(crate) async fn key_for(&self, id: &SessionId) -> Result<Option<DataKey>, StoreError> {
        let Some(master) = &self.master else {
            return Ok(None);
        };
        if let Some(k) = lock(&self.sessions).get(id.as_str()).cloned() {
            return Ok(Some(k));
        }
        let ring = self.inner.shared_state(&key_namespace(id.as_str())).await?;
        let Some(entry) = ring.get(KEY_ENTRY) else {
            return Ok(None);
        };
        let wrapped = parse_wrapped(entry, &format!("session {id}"))?;
        let key = master.unwrap(&format!("session {id}"), &wrapped)?;
        self.remember(id.as_str(), key.clone());
        Ok(Some(key))
    }

    /// Whether the store holds encrypted data ([`KEY_RING`] is not empty).
    /// A process without a key asks before writing anything in clear; an
    /// answer "no" is trusted for [`CLEAR_RECHECK`], so creating sessions
    /// does not read the key ring each time, and a "yes" for good.
    pub(crate) async fn store_is_encrypted(&self) -> Result<bool, StoreError> {
        if let Some((seen, at)) = *lock(&self.encrypted)
            && (seen || at.elapsed() < CLEAR_RECHECK)
        {
            return Ok(seen);
        }
        let seen = !self.inner.shared_state(KEY_RING).await?.is_empty();
        *lock(&self.encrypted) = Some((seen, Instant::now()));
        Ok(seen)
    }

    /// Records (in [`KEY_RING`]) that the store holds encrypted data, once
    /// per process.
    pub(crate) async fn mark_encrypted(&self, master: &MasterKey) -> Result<(), StoreError> {
        if matches!(*lock(&self.encrypted), Some((true, _))) {
            return Ok(());
        }
        if self.inner.shared_state(KEY_RING).await?.is_empty() {
            let mut delta = StateDelta::default();
            delta.set.insert("encrypted".into(), Value::Bool(true));
            delta
                .set
                .insert("first_kid".into(), Value::String(master.id().into()));
            self.inner.update_shared_state(KEY_RING, &delta).await?;
        }
        *lock(&self.encrypted) = Some((true, Instant::now()));
        Ok(())
    }

    /// Unwraps every shared-state key of `ring` (the [`KEY_RING`] map) not
    /// known yet.
    fn learn_shared(
        &self,
        master: &MasterKey,
        ring: &Map<String, Value>,
    ) -> Result<(), StoreError> {
        for (entry, value) in ring {
            let Some(kid) = entry.strip_prefix(SHARED_ENTRY) else {
                continue;
            };
            if lock(&self.shared).contains_key(kid) {
                continue;
            }
            let owner = shared_owner(kid);
            let key = master.unwrap(&owner, &parse_wrapped(value, &owner)?)?;
            lock(&self.shared).insert(kid.to_string(), key);
        }
        Ok(())
    }

    /// The shared-state key `kid` (refused without a master key or when
    /// the key ring has no such key).
    pub(crate) async fn shared_key(&self, kid: &str) -> Result<DataKey, StoreError> {
        if let Some(k) = lock(&self.shared).get(kid).cloned() {
            return Ok(k);
        }
        let Some(master) = &self.master else {
            return Err(StoreError::Refused(
                "this shared state is encrypted: set WEFT_ENCRYPTION__KEY (or WEFT_ENCRYPTION__KEY_FILE) to the store's master key".into(),
            ));
        };
        let ring = self.inner.shared_state(KEY_RING).await?;
        self.learn_shared(master, &ring)?;
        lock(&self.shared)
            .get(kid)
            .cloned()
            .ok_or_else(|| StoreError::Corrupt {
                location: format!("the key ring entry {SHARED_ENTRY}{kid}"),
                detail: "shared state is sealed with a key the key ring does not hold".into(),
            })
    }

    /// The shared-state key new values are sealed with: the key ring's
    /// first (by id), made when there is none. Two processes making one
    /// at once both keep theirs in the key ring (every value opens) and
    /// then both seal with the first.
    pub(crate) async fn writing_shared_key(
        &self,
        master: &MasterKey,
    ) -> Result<(String, DataKey), StoreError> {
        if let Some(w) = lock(&self.writing).clone() {
            return Ok(w);
        }
        let mut ring = self.inner.shared_state(KEY_RING).await?;
        if !ring.keys().any(|k| k.starts_with(SHARED_ENTRY)) {
            self.mark_encrypted(master).await?;
            let kid = random_kid()?;
            let (_, wrapped) = master.new_data_key(&shared_owner(&kid))?;
            let mut delta = StateDelta::default();
            delta
                .set
                .insert(format!("{SHARED_ENTRY}{kid}"), to_value(&wrapped)?);
            ring = self.inner.update_shared_state(KEY_RING, &delta).await?;
        }
        self.learn_shared(master, &ring)?;
        let first = ring
            .keys()
            .filter_map(|k| k.strip_prefix(SHARED_ENTRY))
            .min()
            .map(str::to_string)
            .ok_or_else(|| StoreError::Backend {
                backend: "encryption",
                message: "the key ring kept no shared-state key".into(),
            })?;
        let key = self.shared_key(&first).await?;
        *lock(&self.writing) = Some((first.clone(), key.clone()));
        Ok((first, key))
    }
}

/// A random id for a shared-state key: 16 hex digits.
fn random_kid() -> Result<String, StoreError> {
    let bytes = super::keys::random_bytes::<8>()?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
