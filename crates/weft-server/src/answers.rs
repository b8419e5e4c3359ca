//! Cached read answers: the serialized JSON of a session's transcript,
//! kept per (session, branch, limit) and valid while the session's log
//! has not changed.
//!
//! A `GET …/transcript` otherwise reads the whole log from the store, folds
//! it into a view and encodes every message again, although the answer only
//! changes when the log does. Every request still reads the session's
//! metadata from the store (the tenancy and 404 checks need it anyway, and
//! another process — a CLI — may have appended meanwhile); an entry is used
//! only when its [`Stamp`] (the log's last seq, when it last changed and
//! when the session was created) equals the metadata's, so an answer is
//! never older than the store's head at the time of the request. Only
//! successful answers are kept; errors are computed every time.
//!
//! The cache is bounded by bytes ([`MAX_TOTAL`]); an answer over
//! [`MAX_ENTRY`] is not kept. The least recently used entries go first.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::body::Bytes;
use chrono::{DateTime, Utc};
use weft_core::{SessionId, SessionMeta};

/// The most bytes of answers kept at once.
pub(crate) const MAX_TOTAL: usize = 32 * 1024 * 1024;
/// The largest answer kept.
pub(crate) const MAX_ENTRY: usize = 1024 * 1024;

/// What an answer was computed from: equal stamps, equal log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    last_seq: u64,
    updated_at: DateTime<Utc>,
    created_at: DateTime<Utc>,
}

impl Stamp {
    /// The stamp of the log `meta` describes.
    pub(crate) fn of(meta: &SessionMeta) -> Self {
        Self {
            last_seq: meta.last_seq,
            updated_at: meta.updated_at,
            created_at: meta.created_at,
        }
    }
}

/// Which answer of a session: the route's parameters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    /// The session.
    pub(crate) id: SessionId,
    /// The branch named in the request (None: the default branch).
    pub(crate) branch: Option<String>,
    /// `?limit=`.
    pub(crate) limit: Option<usize>,
}

struct Entry {
    stamp: Stamp,
    body: Bytes,
    used: u64,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<Key, Entry>,
    bytes: usize,
    clock: u64,
}

/// The cache (see the module doc).
#[derive(Default)]
pub(crate) struct Answers {
    inner: Mutex<Inner>,
}

impl Answers {
    /// The answer for `key` computed at `stamp`, if kept.
    pub(crate) fn get(&self, key: &Key, stamp: Stamp) -> Option<Bytes> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.clock += 1;
        let now = inner.clock;
        let entry = inner.entries.get_mut(key)?;
        if entry.stamp != stamp {
            return None;
        }
        entry.used = now;
        Some(entry.body.clone())
    }

    /// Keeps `body` as the answer for `key` at `stamp` (replacing an older
    /// one), evicting the least recently used answers over the budget.
    pub(crate) fn put(&self, key: Key, stamp: Stamp, body: Bytes) {
        if body.len() > MAX_ENTRY {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.clock += 1;
        let used = inner.clock;
        let size = body.len();
        if let Some(old) = inner.entries.insert(key, Entry { stamp, body, used }) {
            inner.bytes -= old.body.len();
        }
        inner.bytes += size;
        while inner.bytes > MAX_TOTAL {
            let Some(oldest) = inner
                .entries
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(gone) = inner.entries.remove(&oldest) {
                inner.bytes -= gone.body.len();
            }
        }
    }

    /// Drops every answer of `id` (a removed session).
    pub(crate) fn forget(&self, id: &SessionId) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut freed = 0;
        inner.entries.retain(|k, e| {
            let keep = &k.id != id;
            if !keep {
                freed += e.body.len();
            }
            keep
        });
        inner.bytes -= freed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_core::session::Project;

    fn key(id: &SessionId, limit: Option<usize>) -> Key {
        Key {
            id: id.clone(),
            branch: None,
            limit,
        }
    }

    #[test]
    fn an_answer_is_used_only_at_its_stamp() {
        let mut meta = SessionMeta::new(SessionId::new_v7(), Project::current(), "base");
        let cache = Answers::default();
        let k = key(&meta.id, None);
        let before = Stamp::of(&meta);
        cache.put(k.clone(), before, Bytes::from_static(b"[1]"));
        assert_eq!(cache.get(&k, before).as_deref(), Some(&b"[1]"[..]));
        assert!(cache.get(&key(&meta.id, Some(1)), before).is_none());
        meta.last_seq += 1;
        assert!(cache.get(&k, Stamp::of(&meta)).is_none(), "the log changed");
        let mut recreated = meta.clone();
        recreated.last_seq -= 1;
        recreated.created_at += chrono::Duration::seconds(1);
        assert!(
            cache.get(&k, Stamp::of(&recreated)).is_none(),
            "a session made again under the same id"
        );
        cache.forget(&meta.id);
        assert!(cache.get(&k, before).is_none());
    }

    #[test]
    fn bounded_by_bytes_oldest_first() {
        let meta = SessionMeta::new(SessionId::new_v7(), Project::current(), "base");
        let stamp = Stamp::of(&meta);
        let cache = Answers::default();
        let big = Bytes::from(vec![b'x'; MAX_ENTRY]);
        let n = MAX_TOTAL / MAX_ENTRY;
        for i in 0..n {
            cache.put(key(&meta.id, Some(i)), stamp, big.clone());
        }
        // Touch the first so the second is the oldest.
        assert!(cache.get(&key(&meta.id, Some(0)), stamp).is_some());
        cache.put(key(&meta.id, Some(n)), stamp, big.clone());
        assert!(cache.get(&key(&meta.id, Some(0)), stamp).is_some());
        assert!(cache.get(&key(&meta.id, Some(1)), stamp).is_none());
        assert!(cache.get(&key(&meta.id, Some(n)), stamp).is_some());
        let too_big = Bytes::from(vec![b'x'; MAX_ENTRY + 1]);
        cache.put(key(&meta.id, Some(n + 1)), stamp, too_big);
        assert!(cache.get(&key(&meta.id, Some(n + 1)), stamp).is_none());
    }
}
