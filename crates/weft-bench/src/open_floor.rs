//! `open_floor`: the least work encryption at rest can add to a load, timed
//! alone. Every sealed message a read opens needs its token's base64
//! decoded and AES-256-GCM opened, whatever else the read does; this times
//! exactly that, for the `--load-messages` messages of `load_all`, on as
//! many threads as the stores' decoders use, with nothing else around it
//! (no file, no JSON, no record). `load_all` encrypted minus clear, against
//! this figure, shows how much of encryption's cost is the cipher and how
//! much the rest of the read.
//!
//! It is a floor in the sense of `raw_write_fsync`: the same primitives
//! (`ring`, `base64-simd`) on inputs of the same sizes as the store's
//! tokens (a 12-byte nonce, the message's parts as JSON, a 16-byte tag,
//! the session id as associated data), not the store's code; how the
//! store lays tokens out is `weft_store::encryption`'s business.

use std::time::{Duration, Instant};

use anyhow::Context;
use base64_simd::STANDARD as B64;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::json;
use weft_core::{Role, SessionId};

use crate::engine::message;

/// Sealed tokens of `messages` bench messages of about `bytes` bytes each,
/// under one key, bound to one session id.
pub(crate) struct Tokens {
    key: LessSafeKey,
    owner: String,
    tokens: Vec<String>,
}

impl Tokens {
    /// Seals the parts (`{"content": …}`) of the messages `load_all` reads,
    /// alternating user and assistant as the bench fills its session.
    pub(crate) fn new(messages: usize, bytes: usize) -> anyhow::Result<Self> {
        let rng = SystemRandom::new();
        let mut raw = [0u8; 32];
        rng.fill(&mut raw)
            .map_err(|_| anyhow::anyhow!("the system RNG failed"))?;
        let key = LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM, &raw).map_err(|_| anyhow::anyhow!("bad key length"))?,
        );
        let owner = SessionId::new_v7().to_string();
        let mut tokens = Vec::with_capacity(messages);
        for i in 0..messages {
            let role = if i % 2 == 0 {
                Role::User
            } else {
                Role::Assistant
            };
            let m = message(role, i, bytes);
            let mut buf = vec![0u8; NONCE_LEN];
            serde_json::to_writer(&mut buf, &json!({"content": m.content}))
                .context("encoding a message's parts")?;
            let (nonce, plain) = buf.split_at_mut(NONCE_LEN);
            rng.fill(nonce)
                .map_err(|_| anyhow::anyhow!("the system RNG failed"))?;
            let nonce = Nonce::try_assume_unique_for_key(nonce)
                .map_err(|_| anyhow::anyhow!("bad nonce length"))?;
            let tag = key
                .seal_in_place_separate_tag(nonce, Aad::from(owner.as_bytes()), plain)
                .map_err(|_| anyhow::anyhow!("sealing failed"))?;
            buf.extend_from_slice(tag.as_ref());
            tokens.push(B64.encode_to_string(&buf));
        }
        Ok(Self { key, owner, tokens })
    }

    /// The mean length of a token's base64, in bytes.
    pub(crate) fn mean_len(&self) -> usize {
        let total: usize = self.tokens.iter().map(String::len).sum();
        total / self.tokens.len().max(1)
    }

    /// Decodes and opens every token once, split over `threads` threads
    /// (each reusing one buffer, as a decoding thread does).
    fn open_all(&self, threads: usize) -> anyhow::Result<()> {
        let share = self.tokens.len().div_ceil(threads.max(1)).max(1);
        std::thread::scope(|s| {
            let handles: Vec<_> = self
                .tokens
                .chunks(share)
                .map(|chunk| s.spawn(move || self.open_share(chunk)))
                .collect();
            handles.into_iter().try_for_each(|h| {
                h.join()
                    .map_err(|_| anyhow::anyhow!("an opening thread panicked"))?
            })
        })
    }

    fn open_share(&self, tokens: &[String]) -> anyhow::Result<()> {
        let mut buf = Vec::new();
        for token in tokens {
            buf.clear();
            B64.decode_append(token.as_bytes(), &mut buf)
                .map_err(|_| anyhow::anyhow!("a token is not base64"))?;
            let nonce = Nonce::try_assume_unique_for_key(buf.get(..NONCE_LEN).unwrap_or_default())
                .map_err(|_| anyhow::anyhow!("a token is too short"))?;
            let plain = self
                .key
                .open_within(
                    nonce,
                    Aad::from(self.owner.as_bytes()),
                    &mut buf,
                    NONCE_LEN..,
                )
                .map_err(|_| anyhow::anyhow!("a token does not open"))?;
            std::hint::black_box(plain);
        }
        Ok(())
    }

    /// The times of `runs` openings of every token, on the stores'
    /// decoding threads' count (the machine's cores, at most 8).
    pub(crate) fn time(&self, runs: usize) -> anyhow::Result<Vec<Duration>> {
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(8);
        let mut samples = Vec::with_capacity(runs.max(1));
        for _ in 0..runs.max(1) {
            let t = Instant::now();
            self.open_all(threads)?;
            samples.push(t.elapsed());
        }
        Ok(samples)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tokens_open_and_damage_is_caught() {
        let mut t = Tokens::new(10, 200).expect("tokens");
        assert!(t.mean_len() > 200, "base64 of nonce, parts and tag");
        t.time(2).expect("every token opens");
        let other = if &t.tokens[3][20..21] == "A" {
            "B"
        } else {
            "A"
        };
        t.tokens[3].replace_range(20..21, other);
        assert!(t.open_all(2).is_err(), "a damaged token fails");
    }
}
