//! Sealed tokens: the text form of every sealed value inside a record's
//! JSON, `wenc1:` followed by base64 of nonce ‖ ciphertext ‖ tag.
//!
//! Encoding and decoding use a SIMD base64 engine (`base64-simd`, picked at
//! run time for the CPU), and opening works in place: an owned token's own
//! bytes are decoded, then decrypted where they lie, so opening a token
//! allocates nothing and copies nothing. JSON values are sealed by
//! serializing straight into the buffer that is then encrypted.
//!
//! This module knows tokens and bytes; which parts of a record become
//! tokens is `seal`'s business, key material `keys`'.

use std::ops::Range;

use base64_simd::STANDARD as B64;
use serde::Serialize;
use weft_core::store::StoreError;

use super::keys::{DataKey, NONCE_LEN};

/// The prefix of a sealed value.
pub(crate) const TOKEN: &str = "wenc1:";

/// The error for a value that does not open under its data key.
pub(crate) fn undecryptable(owner: &str) -> StoreError {
    StoreError::Corrupt {
        location: format!("session {owner}"),
        detail: "an encrypted value does not authenticate under its data key (damaged data)".into(),
    }
}

fn encode_error(owner: &str, e: &serde_json::Error) -> StoreError {
    StoreError::Backend {
        backend: "encryption",
        message: format!("cannot encode a value of {owner}: {e}"),
    }
}

/// `buf` (nonce room ‖ plaintext) sealed and written as a token with
/// `prefix`.
fn finish(
    key: &DataKey,
    owner: &str,
    prefix: &str,
    mut buf: Vec<u8>,
) -> Result<String, StoreError> {
    key.seal_in_place(owner, &mut buf)?;
    let mut out = String::with_capacity(prefix.len() + buf.len().div_ceil(3) * 4);
    out.push_str(prefix);
    B64.encode_append(&buf, &mut out);
    Ok(out)
}

/// `plain` sealed as a token with `prefix`.
pub(crate) fn seal_bytes(
    key: &DataKey,
    owner: &str,
    prefix: &str,
    plain: &[u8],
) -> Result<String, StoreError> {
    let mut buf = Vec::with_capacity(NONCE_LEN + plain.len() + 16);
    buf.resize(NONCE_LEN, 0);
    buf.extend_from_slice(plain);
    finish(key, owner, prefix, buf)
}

/// `value`'s JSON sealed as a token with `prefix` (serialized straight
/// into the buffer that is encrypted).
pub(crate) fn seal_json<T: Serialize + ?Sized>(
    key: &DataKey,
    owner: &str,
    prefix: &str,
    value: &T,
) -> Result<String, StoreError> {
    let mut buf = Vec::with_capacity(256);
    buf.resize(NONCE_LEN, 0);
    serde_json::to_writer(&mut buf, value).map_err(|e| encode_error(owner, &e))?;
    finish(key, owner, prefix, buf)
}

/// The plaintext of an opened token, held in the token's own bytes.
pub(crate) struct Opened {
    buf: Vec<u8>,
    plain: Range<usize>,
}

impl Opened {
    /// The plaintext.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buf[self.plain.clone()]
    }

    /// The plaintext as UTF-8 text, if it is.
    pub(crate) fn text(&self) -> Option<&str> {
        std::str::from_utf8(self.bytes()).ok()
    }

    /// The plaintext's JSON parsed as `T` (one UTF-8 check, then a parse
    /// of text, which serde_json does faster than of bytes).
    pub(crate) fn parse<T: serde::de::DeserializeOwned>(
        &self,
        owner: &str,
    ) -> Result<T, StoreError> {
        let text = self.text().ok_or_else(|| undecryptable(owner))?;
        serde_json::from_str(text).map_err(|_| undecryptable(owner))
    }
}

/// Appends to `out` the bytes a token's base64 (`body`, after its prefix)
/// holds; `None` when it is not base64.
pub(crate) fn decode_append(body: &[u8], out: &mut Vec<u8>) -> Option<()> {
    B64.decode_append(body, out).ok()
}

/// Opens `token` (its bytes, `prefix` included, `skip` bytes long) in
/// place.
pub(crate) fn open_owned(
    key: &DataKey,
    owner: &str,
    mut buf: Vec<u8>,
    skip: usize,
) -> Result<Opened, StoreError> {
    let body = buf.get_mut(skip..).ok_or_else(|| undecryptable(owner))?;
    let sealed_len = B64
        .decode_inplace(body)
        .map_err(|_| undecryptable(owner))?
        .len();
    let sealed = &mut buf[skip..skip + sealed_len];
    let plain_len = key
        .open_in_place(owner, sealed)
        .ok_or_else(|| undecryptable(owner))?
        .len();
    let start = skip + NONCE_LEN;
    Ok(Opened {
        buf,
        plain: start..start + plain_len,
    })
}

/// Opens the token `token` (starting with `prefix`), consuming it.
pub(crate) fn open_string(
    key: &DataKey,
    owner: &str,
    token: String,
    prefix: &str,
) -> Result<Opened, StoreError> {
    open_owned(key, owner, token.into_bytes(), prefix.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encryption::keys::MasterKey;

    #[test]
    fn tokens_round_trip_in_place_and_refuse_tampering() {
        let master =
            MasterKey::from_base64(&MasterKey::generate_base64().expect("gen")).expect("key");
        let key = master.new_data_key("s1").expect("dk").0;
        for plain in [&b""[..], b"x", b"a longer secret value \xe2\x9c\x93"] {
            let t = seal_bytes(&key, "s1", TOKEN, plain).expect("seal");
            assert!(t.starts_with(TOKEN));
            let opened = open_string(&key, "s1", t.clone(), TOKEN).expect("open");
            assert_eq!(opened.bytes(), plain);
            assert!(
                open_string(&key, "s2", t.clone(), TOKEN).is_err(),
                "bound to its owner"
            );
            let mut bad = t.into_bytes();
            let last = bad.len() - 3;
            bad[last] = if bad[last] == b'A' { b'B' } else { b'A' };
            assert!(open_owned(&key, "s1", bad, TOKEN.len()).is_err());
        }
        let t = seal_json(&key, "s1", TOKEN, &serde_json::json!({"a": [1, 2]})).expect("seal");
        let v: serde_json::Value = open_string(&key, "s1", t, TOKEN)
            .expect("open")
            .parse("s1")
            .expect("json");
        assert_eq!(v, serde_json::json!({"a": [1, 2]}));
        assert!(open_string(&key, "s1", "wenc1:!!!".into(), TOKEN).is_err());
        assert!(open_string(&key, "s1", "wenc1:".into(), TOKEN).is_err());
    }

    #[test]
    fn the_simd_engine_reads_what_the_first_format_wrote() {
        use base64::Engine;
        let master =
            MasterKey::from_base64(&MasterKey::generate_base64().expect("gen")).expect("key");
        let key = master.new_data_key("s1").expect("dk").0;
        let sealed = key
            .seal("s1", b"written by the base64 crate")
            .expect("seal");
        let t = format!(
            "{TOKEN}{}",
            base64::engine::general_purpose::STANDARD.encode(&sealed)
        );
        let opened = open_string(&key, "s1", t, TOKEN).expect("open");
        assert_eq!(opened.bytes(), b"written by the base64 crate");
    }
}
