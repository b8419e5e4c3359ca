//! Encryption at rest for every backend: [`EncryptedStore`] wraps any
//! [`Store`] and seals the user-provided content of each record
//! (AES-256-GCM) before the backend sees it, so fs, sqlite, memory,
//! postgres, redis and dynamodb are covered by the same code, and opens it
//! again on every read. See `docs/encryption.md` for exactly which fields
//! are sealed and which stay clear (ids, seq, timestamps, kinds, roles,
//! status, names: what listing and ordering need).
//!
//! Each session gets a random data key when it is created; the key ring
//! (the shared-state namespace [`KEY_RING`]) holds it wrapped by the master
//! key, with the master key's id, so a wrong key is one clear error.
//! [`rotate`] re-wraps the data keys under a new master key without
//! touching any log. Without a master key the wrapper still guards: a
//! session holding sealed records is refused with one sentence, never
//! returned as ciphertext.
//!
//! This module knows the [`Store`] contract and key material; it knows
//! nothing about how a backend lays out its data.

mod keys;
mod seal;
mod store_impl;

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use weft_core::store::{Store, StoreError};

pub use keys::{KEY_LEN, KeyError, MasterKey, WrappedKey};
pub use store_impl::EncryptedStore;

/// The shared-state namespace that holds the wrapped data keys
/// (`session id → {"kid", "key"}`); the wrapper refuses it to callers.
pub const KEY_RING: &str = "weft.keys";

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

/// Re-wraps every data key in `backend`'s key ring (the raw backend, not an
/// [`EncryptedStore`]) from `old` to `new`; no log is read or rewritten. A
/// key wrapped by neither is refused before anything is written.
pub async fn rotate(
    backend: &dyn Store,
    old: Option<&MasterKey>,
    new: &MasterKey,
) -> Result<RotateReport, StoreError> {
    let ring = backend.shared_state(KEY_RING).await?;
    let mut report = RotateReport::default();
    let mut delta = weft_core::record::StateDelta::default();
    for (owner, value) in ring {
        let wrapped: WrappedKey =
            serde_json::from_value(value).map_err(|e| StoreError::Corrupt {
                location: format!("the key ring entry of {owner}"),
                detail: e.to_string(),
            })?;
        if wrapped.kid == new.id() {
            report.already += 1;
            continue;
        }
        let Some(old) = old else {
            return Err(StoreError::Invalid(format!(
                "the store's data keys are wrapped by master key {}: set WEFT_ENCRYPTION__KEY (or WEFT_ENCRYPTION__KEY_FILE) to it before rotating",
                wrapped.kid
            )));
        };
        // The owner bound into the wrapping, as the wrapper names it.
        let moved = old.rewrap(&format!("session {owner}"), &wrapped, new)?;
        delta.set.insert(owner, store_impl::to_value(&moved)?);
        report.rewrapped += 1;
    }
    if !delta.set.is_empty() {
        backend.update_shared_state(KEY_RING, &delta).await?;
    }
    Ok(report)
}

/// `backend` behind the encryption layer (`master`: None guards only).
pub fn wrap(backend: Arc<dyn Store>, master: Option<MasterKey>) -> Arc<dyn Store> {
    Arc::new(EncryptedStore::new(backend, master))
}
