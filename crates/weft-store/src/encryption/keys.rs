//! The master key and the per-session data keys it wraps: AES-256-GCM
//! (ring), random 96-bit nonces, the session id as associated data.
//!
//! This module owns key material only: parsing a master key, its id,
//! making, wrapping and unwrapping data keys, and sealing bytes with a data
//! key. It knows nothing about records or stores.

use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
pub(crate) use ring::aead::NONCE_LEN;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use weft_core::store::StoreError;

/// The length of a master or data key, in bytes (AES-256).
pub const KEY_LEN: usize = 32;

/// Why a master key could not be read.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The text is not base64 of 32 bytes.
    #[error(
        "the encryption key is not base64 of 32 bytes: make one with `weft keys generate` (or `head -c 32 /dev/urandom | base64`)"
    )]
    Malformed,
    /// The key file could not be read.
    #[error("cannot read the encryption key file {path}: {source}")]
    File {
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl From<KeyError> for StoreError {
    fn from(e: KeyError) -> Self {
        StoreError::Invalid(e.to_string())
    }
}

/// The master key: wraps every session's data key. Its `Debug` form shows
/// only its id.
#[derive(Clone)]
pub struct MasterKey {
    key: Arc<LessSafeKey>,
    id: String,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKey").field("id", &self.id).finish()
    }
}

impl MasterKey {
    /// A master key from its 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        if bytes.len() != KEY_LEN {
            return Err(KeyError::Malformed);
        }
        let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
        let id = digest.as_ref()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(Self {
            key: Arc::new(aead_key(bytes)?),
            id,
        })
    }

    /// A master key from its base64 form (surrounding whitespace ignored).
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        let bytes = B64.decode(text.trim()).map_err(|_| KeyError::Malformed)?;
        Self::from_bytes(&bytes)
    }

    /// A master key from a file holding its base64 form.
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::File {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_base64(&text)
    }

    /// A new random key's base64 form (`weft keys generate`).
    pub fn generate_base64() -> Result<String, StoreError> {
        Ok(B64.encode(random_bytes::<KEY_LEN>()?))
    }

    /// The key's id: the first 8 bytes of its SHA-256, in hex. Stored next
    /// to every data key it wraps, so a wrong key is told apart from
    /// damaged data.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Makes a new random data key for `owner` and its wrapped form.
    pub(crate) fn new_data_key(&self, owner: &str) -> Result<(DataKey, WrappedKey), StoreError> {
        let bytes = random_bytes::<KEY_LEN>()?;
        let key = DataKey(Arc::new(aead_key(&bytes)?));
        Ok((key, self.wrap(owner, &bytes)?))
    }

    /// Wraps the data key `bytes` of `owner`.
    fn wrap(&self, owner: &str, bytes: &[u8]) -> Result<WrappedKey, StoreError> {
        Ok(WrappedKey {
            kid: self.id.clone(),
            key: B64.encode(seal_with(&self.key, owner.as_bytes(), bytes)?),
        })
    }

    /// The raw data key of `owner` from its wrapped form.
    fn unwrap_bytes(&self, owner: &str, wrapped: &WrappedKey) -> Result<Vec<u8>, StoreError> {
        if wrapped.kid != self.id {
            return Err(wrong_key(owner, &wrapped.kid, &self.id));
        }
        let sealed = B64.decode(&wrapped.key).map_err(|_| corrupt_key(owner))?;
        let bytes =
            open_with(&self.key, owner.as_bytes(), &sealed).ok_or_else(|| corrupt_key(owner))?;
        if bytes.len() != KEY_LEN {
            return Err(corrupt_key(owner));
        }
        Ok(bytes)
    }

    /// The data key of `owner` from its wrapped form: a key id that is not
    /// this key's is [`StoreError::Refused`] naming both ids.
    pub(crate) fn unwrap(&self, owner: &str, wrapped: &WrappedKey) -> Result<DataKey, StoreError> {
        Ok(DataKey(Arc::new(aead_key(
            &self.unwrap_bytes(owner, wrapped)?,
        )?)))
    }

    /// `wrapped` (wrapped by `self`) wrapped by `new` instead.
    pub(crate) fn rewrap(
        &self,
        owner: &str,
        wrapped: &WrappedKey,
        new: &MasterKey,
    ) -> Result<WrappedKey, StoreError> {
        new.wrap(owner, &self.unwrap_bytes(owner, wrapped)?)
    }
}

/// A session's data key, wrapped by a master key (`kid`), as stored in the
/// key ring.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrappedKey {
    /// The id of the master key that wrapped it.
    pub kid: String,
    /// base64 of nonce ‖ ciphertext ‖ tag.
    pub key: String,
}

/// A session's data key.
#[derive(Clone)]
pub(crate) struct DataKey(Arc<LessSafeKey>);

impl DataKey {
    /// `plain` sealed for `owner`: nonce ‖ ciphertext ‖ tag.
    #[cfg(test)]
    pub(crate) fn seal(&self, owner: &str, plain: &[u8]) -> Result<Vec<u8>, StoreError> {
        seal_with(&self.0, owner.as_bytes(), plain)
    }

    /// The plaintext of `sealed`, or None when it does not authenticate.
    #[cfg(test)]
    pub(crate) fn open(&self, owner: &str, sealed: &[u8]) -> Option<Vec<u8>> {
        open_with(&self.0, owner.as_bytes(), sealed)
    }

    /// Seals `buf` (room for the nonce ‖ plaintext) in place for `owner`:
    /// it becomes nonce ‖ ciphertext ‖ tag.
    pub(crate) fn seal_in_place(&self, owner: &str, buf: &mut Vec<u8>) -> Result<(), StoreError> {
        let nonce = random_bytes::<NONCE_LEN>()?;
        let Some(room) = buf.get_mut(..NONCE_LEN) else {
            return Err(seal_failed());
        };
        room.copy_from_slice(&nonce);
        let tag = self
            .0
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(owner.as_bytes()),
                &mut buf[NONCE_LEN..],
            )
            .map_err(|_| seal_failed())?;
        buf.extend_from_slice(tag.as_ref());
        Ok(())
    }

    /// Opens `buf` (nonce ‖ ciphertext ‖ tag), writing the plaintext at
    /// its start as it decrypts (no second pass to move it past the
    /// nonce): the plaintext's length, or None when it does not
    /// authenticate (`buf` then holds nothing of use).
    pub(crate) fn open_within(&self, owner: &str, buf: &mut [u8]) -> Option<usize> {
        if buf.len() < NONCE_LEN + 16 {
            return None;
        }
        let nonce = Nonce::try_assume_unique_for_key(&buf[..NONCE_LEN]).ok()?;
        self.0
            .open_within(nonce, Aad::from(owner.as_bytes()), buf, NONCE_LEN..)
            .ok()
            .map(|plain| plain.len())
    }

    /// Opens `sealed` (nonce ‖ ciphertext ‖ tag) in place: the plaintext,
    /// which starts at `sealed[NONCE_LEN]`, or None when it does not
    /// authenticate.
    pub(crate) fn open_in_place<'a>(
        &self,
        owner: &str,
        sealed: &'a mut [u8],
    ) -> Option<&'a mut [u8]> {
        if sealed.len() < NONCE_LEN + 16 {
            return None;
        }
        let (nonce, rest) = sealed.split_at_mut(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        self.0
            .open_in_place(nonce, Aad::from(owner.as_bytes()), rest)
            .ok()
    }
}

fn seal_failed() -> StoreError {
    StoreError::Backend {
        backend: "encryption",
        message: "AES-GCM refused to seal a record".into(),
    }
}

fn aead_key(bytes: &[u8]) -> Result<LessSafeKey, KeyError> {
    UnboundKey::new(&AES_256_GCM, bytes)
        .map(LessSafeKey::new)
        .map_err(|_| KeyError::Malformed)
}

pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], StoreError> {
    let mut out = [0u8; N];
    SystemRandom::new()
        .fill(&mut out)
        .map_err(|_| StoreError::Backend {
            backend: "encryption",
            message: "the system's random number generator failed".into(),
        })?;
    Ok(out)
}

fn seal_with(key: &LessSafeKey, aad: &[u8], plain: &[u8]) -> Result<Vec<u8>, StoreError> {
    let nonce = random_bytes::<NONCE_LEN>()?;
    let mut out = Vec::with_capacity(NONCE_LEN + plain.len() + 16);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plain);
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut out[NONCE_LEN..],
        )
        .map_err(|_| seal_failed())?;
    out.extend_from_slice(tag.as_ref());
    Ok(out)
}

fn open_with(key: &LessSafeKey, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < NONCE_LEN + 16 {
        return None;
    }
    let nonce = Nonce::try_assume_unique_for_key(&sealed[..NONCE_LEN]).ok()?;
    let mut buf = sealed[NONCE_LEN..].to_vec();
    let plain = key.open_in_place(nonce, Aad::from(aad), &mut buf).ok()?;
    let n = plain.len();
    buf.truncate(n);
    Some(buf)
}

/// The error for a data key wrapped by another master key.
pub(crate) fn wrong_key(owner: &str, stored: &str, given: &str) -> StoreError {
    StoreError::Refused(format!(
        "the data of {owner} is encrypted with master key {stored} but the key given is {given}: set WEFT_ENCRYPTION__KEY (or WEFT_ENCRYPTION__KEY_FILE) to the key it was written with"
    ))
}

fn corrupt_key(owner: &str) -> StoreError {
    StoreError::Corrupt {
        location: format!("the key ring entry of {owner}"),
        detail: "the wrapped data key does not authenticate under the master key".into(),
    }
}

/// A fresh data key of session `s1` under a random master key (tests).
#[cfg(test)]
pub(crate) fn test_key() -> DataKey {
    let master = MasterKey::from_base64(&MasterKey::generate_base64().expect("gen")).expect("key");
    master.new_data_key("s1").expect("dk").0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> MasterKey {
        MasterKey::from_base64(&MasterKey::generate_base64().expect("gen")).expect("key")
    }

    #[test]
    fn data_keys_round_trip_and_a_wrong_master_key_is_refused() {
        let (a, b) = (key(), key());
        let (dk, wrapped) = a.new_data_key("s1").expect("new");
        let sealed = dk.seal("s1", b"secret").expect("seal");
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        let again = a.unwrap("s1", &wrapped).expect("unwrap");
        assert_eq!(again.open("s1", &sealed).as_deref(), Some(&b"secret"[..]));
        assert!(again.open("s2", &sealed).is_none(), "bound to its owner");
        let err = b.unwrap("s1", &wrapped).err().expect("wrong key");
        assert!(err.to_string().contains(a.id()), "{err}");
        let moved = a.rewrap("s1", &wrapped, &b).expect("rewrap");
        assert_eq!(moved.kid, b.id());
        let dk_b = b.unwrap("s1", &moved).expect("unwrap with the new key");
        assert_eq!(dk_b.open("s1", &sealed).as_deref(), Some(&b"secret"[..]));
    }

    #[test]
    fn malformed_keys_are_refused() {
        for bad in ["", "not base64!", "AAAA"] {
            assert!(matches!(
                MasterKey::from_base64(bad),
                Err(KeyError::Malformed)
            ));
        }
    }
}
