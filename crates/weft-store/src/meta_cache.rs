//! [`MetaCache`]: the per-process copy of each session's metadata that
//! the shared-store appends fold from (postgres, redis).
//!
//! An append on a shared store must write the session's new metadata with
//! its records, atomically, and only if nobody changed the session since
//! the copy it folded from. Reading the metadata first costs a round trip
//! per append; instead the store keeps the copy it last wrote (or read),
//! sends it with the append, and the server compares it with what it holds
//! (in the same statement or script). A miss or a stale copy costs one read
//! and one more try, never a wrong write: the cache is a hint.
//!
//! It must not know any backend's wire format: it holds the metadata and
//! its JSON exactly as stored.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use weft_core::SessionId;
use weft_core::session::SessionMeta;

/// Per-session metadata as this process last wrote or read it, with its
/// JSON exactly as stored: the hint the one-statement append folds from.
/// Bounded: cleared when it reaches [`MetaCache::CAP`] sessions.
#[derive(Default)]
pub(crate) struct MetaCache(Mutex<HashMap<String, (SessionMeta, String)>>);

impl MetaCache {
    /// Sessions kept before the cache is cleared.
    const CAP: usize = 4096;

    fn map(&self) -> MutexGuard<'_, HashMap<String, (SessionMeta, String)>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The copy of session `id` if it is at `last_seq`.
    pub(crate) fn get(&self, id: &SessionId, last_seq: u64) -> Option<(SessionMeta, String)> {
        self.map()
            .get(id.as_str())
            .filter(|(m, _)| m.last_seq == last_seq)
            .cloned()
    }

    /// Keeps `meta` (stored as `json`).
    pub(crate) fn put(&self, meta: SessionMeta, json: String) {
        let mut map = self.map();
        if map.len() >= Self::CAP {
            map.clear();
        }
        map.insert(meta.id.to_string(), (meta, json));
    }

    /// Drops the copy of session `id`.
    pub(crate) fn forget(&self, id: &SessionId) {
        self.map().remove(id.as_str());
    }
}
