//! Encryption at rest for every backend: [`EncryptedStore`] wraps any
//! [`Store`] and seals the user-provided content of each record
//! (AES-256-GCM) before the backend sees it, so fs, sqlite, memory,
//! postgres, redis and dynamodb are covered by the same code, and opens it
//! again on every read. See `docs/encryption.md` for exactly which fields
//! are sealed and which stay clear (ids, seq, timestamps, kinds, roles,
//! status, names: what listing and ordering need).
//!
//! Each session gets a random data key when it is created; the key ring
//! (one shared-state namespace per session, [`key_namespace`]) holds it
//! wrapped by the master key, with the master key's id, so a wrong key is
//! one clear error. [`KEY_RING`] marks a store that holds encrypted
//! sessions.
//! Shared state (`app:`/`user:` namespaces) is sealed with store-wide
//! shared-state data keys kept in [`KEY_RING`] (`shared`), and kernel
//! events crossing to other processes on a live channel with the
//! session's key (`live`).
//! [`rotate`] re-wraps the data keys under a new master key without
//! touching any log. Without a master key the wrapper still guards: a
//! session holding sealed records is refused with one sentence, never
//! returned as ciphertext.
//!
//! This module knows the [`Store`] contract and key material; it knows
//! nothing about how a backend lays out its data.

mod keyring;
mod keys;
mod live;
mod seal;
mod shared;
mod splice;
mod store_impl;
mod token;

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use weft_core::record::StateDelta;
use weft_core::store::{ListQuery, Store, StoreError};

pub use keys::{KEY_LEN, KeyError, MasterKey, WrappedKey};
pub use store_impl::EncryptedStore;

/// The shared-state namespace that marks a store holding encrypted
/// sessions; it and every [`key_namespace`] are refused to callers.
pub const KEY_RING: &str = "weft.keys";

/// The prefix of the per-session key-ring namespaces.
pub const KEY_RING_PREFIX: &str = "weft.keys.";

/// The entry of a key-ring namespace that holds the wrapped data key.
pub const KEY_ENTRY: &str = "data_key";

/// The shared-state namespace holding session `id`'s wrapped data key
/// (`{"data_key": {"kid", "key"}}`): one per session, so creating a
/// session writes a small value whatever the store's size.
pub fn key_namespace(id: &str) -> String {
    format!("{KEY_RING_PREFIX}{id}")
}

/// The `[encryption]` section of weft's configuration
/// (`WEFT_ENCRYPTION__KEY`, `WEFT_ENCRYPTION__KEY_FILE`). Its `Debug`
/// form never shows the key.
///
/// ```toml
/// [encryption]
/// key_file = "/run/secrets/weft.key"   # or key = "<base64 of 32 bytes>"
/// ```
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EncryptionConfig {
    /// The master key, base64 of 32 bytes.
    pub key: Option<String>,
    /// A file holding the master key in base64.
    pub key_file: Option<PathBuf>,
}

impl std::fmt::Debug for EncryptionConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptionConfig")
            .field("key", &self.key.as_ref().map(|_| "***"))
            .field("key_file", &self.key_file)
            .finish()
    }
}

impl EncryptionConfig {
    /// The configuration the environment gives: `WEFT_ENCRYPTION__KEY`
    /// (base64) and `WEFT_ENCRYPTION__KEY_FILE`, for callers without a
    /// `config.toml` (the Python package).
    pub fn from_env() -> Self {
        Self {
            key: std::env::var("WEFT_ENCRYPTION__KEY").ok(),
            key_file: std::env::var_os("WEFT_ENCRYPTION__KEY_FILE").map(PathBuf::from),
        }
    }

    /// The master key configured, if any (`key` wins over `key_file`; an
    /// empty `key` counts as none).
    pub fn master_key(&self) -> Result<Option<MasterKey>, KeyError> {
        if let Some(key) = self.key.as_deref().filter(|k| !k.trim().is_empty()) {
            return MasterKey::from_base64(key).map(Some);
        }
        match &self.key_file {
            Some(path) if !path.as_os_str().is_empty() => MasterKey::from_file(path).map(Some),
            _ => Ok(None),
        }
    }
}

/// What [`rotate`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RotateReport {
    /// Data keys re-wrapped under the new key.
    pub rewrapped: usize,
    /// Data keys already wrapped by the new key (a rotation run again).
    pub already: usize,
}

/// Re-wraps the data key of every session of `backend` (the raw backend,
/// not an [`EncryptedStore`]) from `old` to `new`; no log is read or
/// rewritten. Every key is unwrapped before any is written, so a key
/// wrapped by neither refuses the whole rotation.
pub async fn rotate(
    backend: &dyn Store,
    old: Option<&MasterKey>,
    new: &MasterKey,
) -> Result<RotateReport, StoreError> {
    let mut report = RotateReport::default();
    let mut writes = Vec::new();
    let mut query = ListQuery {
        limit: 500,
        ..ListQuery::default()
    };
    loop {
        let page = backend.list(&query).await?;
        for meta in &page.sessions {
            let owner = meta.id.to_string();
            let ns = key_namespace(&owner);
            let Some(value) = backend.shared_state(&ns).await?.remove(KEY_ENTRY) else {
                continue;
            };
            if let Some(moved) =
                rewrap_one(&format!("session {owner}"), &value, old, new, &mut report)?
            {
                let mut delta = StateDelta::default();
                delta.set.insert(KEY_ENTRY.into(), moved);
                writes.push((ns, delta));
            }
        }
        match page.next_cursor {
            Some(c) => query.cursor = Some(c),
            None => break,
        }
    }
    // The shared-state keys, in the key ring itself.
    let mut ring = StateDelta::default();
    for (entry, value) in backend.shared_state(KEY_RING).await? {
        if let Some(kid) = entry.strip_prefix(keyring::SHARED_ENTRY)
            && let Some(moved) =
                rewrap_one(&keyring::shared_owner(kid), &value, old, new, &mut report)?
        {
            ring.set.insert(entry, moved);
        }
    }
    if !ring.set.is_empty() {
        writes.push((KEY_RING.to_string(), ring));
    }
    for (ns, delta) in writes {
        backend.update_shared_state(&ns, &delta).await?;
    }
    Ok(report)
}

/// The key-ring entry `value` (the data key of `owner`) wrapped by `new`
/// (None: it is under `new` already).
fn rewrap_one(
    owner: &str,
    value: &serde_json::Value,
    old: Option<&MasterKey>,
    new: &MasterKey,
    report: &mut RotateReport,
) -> Result<Option<serde_json::Value>, StoreError> {
    let wrapped = keyring::parse_wrapped(value, owner)?;
    if wrapped.kid == new.id() {
        report.already += 1;
        return Ok(None);
    }
    let Some(old) = old else {
        return Err(StoreError::Invalid(format!(
            "the store's data keys are wrapped by master key {}: set WEFT_ENCRYPTION__KEY (or WEFT_ENCRYPTION__KEY_FILE) to it before rotating",
            wrapped.kid
        )));
    };
    let moved = old.rewrap(owner, &wrapped, new)?;
    report.rewrapped += 1;
    Ok(Some(keyring::to_value(&moved)?))
}

/// `backend` behind the encryption layer (`master`: None guards only).
pub fn wrap(backend: Arc<dyn Store>, master: Option<MasterKey>) -> Arc<dyn Store> {
    Arc::new(EncryptedStore::new(backend, master))
}
