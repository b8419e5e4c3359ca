//! [`MemoryStore`]: the in-memory [`Store`], for tests and embedding.
//!
//! It follows the whole storage contract (atomic batches, conflicts, paging)
//! but keeps nothing after the process ends.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::{Map, Value};

use crate::id::{BranchId, SessionId};
use crate::lease::{LocalTurnLocks, TurnHolder, TurnLockAttempt, TurnLockInfo};
use crate::live::{LiveChannel, LocalChannel};
use crate::record::{Record, RecordKind, StateDelta, check_batch};
use crate::session::{SessionMeta, SessionStatus};
use crate::store::{
    DeleteOptions, ListQuery, Page, SearchHit, SearchQuery, Store, StoreError, list_order,
};

/// How many kernel events the memory store keeps per session.
pub const MEMORY_EVENTS_CAP: usize = 10_000;

struct Entry {
    meta: SessionMeta,
    records: Vec<Record>,
    events: Vec<Value>,
}

#[derive(Default)]
struct Inner {
    sessions: BTreeMap<SessionId, Entry>,
    shared: HashMap<String, Map<String, Value>>,
}

/// A [`Store`] that keeps everything in memory.
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    turns: LocalTurnLocks,
    live: Option<Arc<LocalChannel>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store with an in-process [`LocalChannel`] as its live
    /// channel, so several feeds of one session (several
    /// [`crate::Session`]s, or a daemon and an embedded session in one
    /// process) see each other's events as processes sharing a network
    /// store do.
    pub fn with_live_channel() -> Self {
        Self {
            live: Some(Arc::new(LocalChannel::default())),
            ..Self::default()
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-applied batch
        // (batches are applied after validation, infallibly), so a poisoned
        // lock is safe to keep using.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn not_found(id: &SessionId) -> StoreError {
    StoreError::NotFound(id.to_string())
}

#[async_trait]
impl Store for MemoryStore {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn is_shared(&self) -> bool {
        false
    }

    fn live(&self) -> Option<Arc<dyn LiveChannel>> {
        self.live.clone().map(|l| l as Arc<dyn LiveChannel>)
    }

    async fn create(
        &self,
        meta: SessionMeta,
        initial: Vec<RecordKind>,
    ) -> Result<SessionMeta, StoreError> {
        let (records, folded) = crate::view::creation_batch(&meta, initial)?;
        let mut inner = self.lock();
        if inner.sessions.contains_key(&meta.id) {
            return Err(StoreError::AlreadyExists(meta.id.to_string()));
        }
        inner.sessions.insert(
            meta.id.clone(),
            Entry {
                meta: folded.clone(),
                records,
                events: Vec::new(),
            },
        );
        Ok(folded)
    }

    async fn get(&self, id: &SessionId) -> Result<SessionMeta, StoreError> {
        self.lock()
            .sessions
            .get(id)
            .map(|e| e.meta.clone())
            .ok_or_else(|| not_found(id))
    }

    async fn append(
        &self,
        id: &SessionId,
        expected_seq: u64,
        records: Vec<Record>,
    ) -> Result<SessionMeta, StoreError> {
        let mut inner = self.lock();
        let entry = inner.sessions.get_mut(id).ok_or_else(|| not_found(id))?;
        check_batch(expected_seq, &records)?;
        if entry.meta.last_seq != expected_seq {
            return Err(StoreError::Conflict {
                id: id.to_string(),
                expected: expected_seq,
                actual: entry.meta.last_seq,
            });
        }
        for r in &records {
            entry.meta.apply(r);
        }
        entry.records.extend(records);
        Ok(entry.meta.clone())
    }

    async fn read(
        &self,
        id: &SessionId,
        from_seq: u64,
        limit: Option<usize>,
    ) -> Result<Vec<Record>, StoreError> {
        let inner = self.lock();
        let entry = inner.sessions.get(id).ok_or_else(|| not_found(id))?;
        let start = (from_seq.max(1) - 1) as usize;
        let slice = entry.records.get(start..).unwrap_or(&[]);
        let n = limit.unwrap_or(slice.len()).min(slice.len());
        Ok(slice[..n].to_vec())
    }

    async fn tail(&self, id: &SessionId, n: usize) -> Result<Vec<Record>, StoreError> {
        let inner = self.lock();
        let entry = inner.sessions.get(id).ok_or_else(|| not_found(id))?;
        let start = entry.records.len().saturating_sub(n);
        Ok(entry.records[start..].to_vec())
    }

    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        let inner = self.lock();
        // Sort references and clone only the page.
        let mut metas: Vec<&SessionMeta> = inner
            .sessions
            .values()
            .map(|e| &e.meta)
            .filter(|m| query.filter.matches(m))
            .filter(|m| query.cursor.as_ref().is_none_or(|c| c.is_before(m)))
            .collect();
        let keep = query.limit.max(1) + 1;
        if metas.len() > keep {
            metas.select_nth_unstable_by(keep - 1, |a, b| list_order(a, b));
            metas.truncate(keep);
        }
        metas.sort_by(|a, b| list_order(a, b));
        Ok(Page::from_sorted(
            metas.into_iter().cloned().collect(),
            query.limit,
        ))
    }

    async fn find_ids(&self, prefix: &str, limit: usize) -> Result<Vec<SessionId>, StoreError> {
        let inner = self.lock();
        Ok(inner
            .sessions
            .keys()
            .filter(|id| id.as_str().starts_with(prefix))
            .take(limit)
            .cloned()
            .collect())
    }

    async fn delete(
        &self,
        id: &SessionId,
        options: DeleteOptions,
    ) -> Result<Vec<SessionId>, StoreError> {
        let mut inner = self.lock();
        let entry = inner.sessions.get(id).ok_or_else(|| not_found(id))?;
        if options.unless_active && entry.meta.status == SessionStatus::Active {
            return Err(StoreError::Refused(format!(
                "session {id} is active: it cannot be removed"
            )));
        }
        let mut doomed = vec![id.clone()];
        if options.with_children {
            let mut i = 0;
            while i < doomed.len() {
                let parent = doomed[i].clone();
                doomed.extend(
                    inner
                        .sessions
                        .values()
                        .filter(|e| e.meta.parent_id.as_ref() == Some(&parent))
                        .map(|e| e.meta.id.clone()),
                );
                i += 1;
            }
        }
        for d in &doomed {
            inner.sessions.remove(d);
        }
        Ok(doomed)
    }

    async fn search(&self, query: &SearchQuery) -> Result<Vec<SearchHit>, StoreError> {
        let inner = self.lock();
        let mut hits = Vec::new();
        let mut entries: Vec<&Entry> = inner
            .sessions
            .values()
            .filter(|e| {
                query
                    .project
                    .as_ref()
                    .is_none_or(|p| &e.meta.project.slug == p)
            })
            .collect();
        entries.sort_by(|a, b| list_order(&a.meta, &b.meta));
        'outer: for e in entries {
            for r in &e.records {
                if let Some(hit) = query.hit(&e.meta, r) {
                    hits.push(hit);
                    if hits.len() >= query.effective_limit() {
                        break 'outer;
                    }
                }
            }
        }
        Ok(hits)
    }

    async fn shared_state(&self, namespace: &str) -> Result<Map<String, Value>, StoreError> {
        Ok(self
            .lock()
            .shared
            .get(namespace)
            .cloned()
            .unwrap_or_default())
    }

    async fn update_shared_state(
        &self,
        namespace: &str,
        delta: &StateDelta,
    ) -> Result<Map<String, Value>, StoreError> {
        let mut inner = self.lock();
        let state = inner.shared.entry(namespace.to_string()).or_default();
        delta.apply_to(state);
        Ok(state.clone())
    }

    async fn write_events(&self, id: &SessionId, events: &[Value]) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let entry = inner.sessions.get_mut(id).ok_or_else(|| not_found(id))?;
        entry.events.extend_from_slice(events);
        let excess = entry.events.len().saturating_sub(MEMORY_EVENTS_CAP);
        entry.events.drain(..excess);
        Ok(())
    }

    async fn read_events(&self, id: &SessionId, limit: usize) -> Result<Vec<Value>, StoreError> {
        let inner = self.lock();
        let entry = inner.sessions.get(id).ok_or_else(|| not_found(id))?;
        let start = entry.events.len().saturating_sub(limit);
        Ok(entry.events[start..].to_vec())
    }

    async fn try_lock_turn(
        &self,
        id: &SessionId,
        branch: &BranchId,
        holder: &TurnHolder,
    ) -> Result<TurnLockAttempt, StoreError> {
        self.get(id).await?;
        Ok(self.turns.try_lock(id, branch, holder))
    }

    async fn turn_locks(&self, id: &SessionId) -> Result<Vec<TurnLockInfo>, StoreError> {
        self.get(id).await?;
        Ok(self.turns.held(id))
    }
}
