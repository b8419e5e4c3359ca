//! [`EncryptedStore`]: the [`Store`] wrapper that seals records on their
//! way in and opens them on their way out, keeping each session's data key
//! in memory once unwrapped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::{Map, Value};
use weft_core::lease::{TurnHolder, TurnLockAttempt, TurnLockInfo};
use weft_core::record::{Record, RecordKind, StateDelta};
use weft_core::session::SessionMeta;
use weft_core::store::{
    DeleteOptions, ListFilter, ListQuery, Page, SearchHit, SearchQuery, Store, StoreError,
};
use weft_core::{BranchId, SessionId};

use super::keys::{DataKey, MasterKey, WrappedKey};
use super::seal;
use super::{KEY_ENTRY, KEY_RING, KEY_RING_PREFIX, key_namespace};

/// A [`Store`] whose user-provided content is sealed with per-session
/// AES-256-GCM data keys (see the module docs of `weft_store::encryption`).
pub struct EncryptedStore {
    inner: Arc<dyn Store>,
    master: Option<MasterKey>,
    keys: Mutex<HashMap<String, DataKey>>,
    marked: std::sync::atomic::AtomicBool,
}

impl EncryptedStore {
    /// `inner` behind the layer; with no `master` key it only guards
    /// (refuses sealed sessions, creates sessions in clear in a store
    /// without encrypted ones).
    pub fn new(inner: Arc<dyn Store>, master: Option<MasterKey>) -> Self {
        Self {
            inner,
            master,
            keys: Mutex::new(HashMap::new()),
            marked: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Whether a master key is set (new sessions are encrypted).
    pub fn is_encrypting(&self) -> bool {
        self.master.is_some()
    }

    fn cached(&self, id: &str) -> Option<DataKey> {
        self.keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    fn remember(&self, id: &str, key: DataKey) {
        self.keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string(), key);
    }

    /// The data key of session `id`: None when it has none (written in
    /// clear) or no master key is set.
    async fn key_for(&self, id: &SessionId) -> Result<Option<DataKey>, StoreError> {
        let Some(master) = &self.master else {
            return Ok(None);
        };
        if let Some(k) = self.cached(id.as_str()) {
            return Ok(Some(k));
        }
        let ring = self.inner.shared_state(&key_namespace(id.as_str())).await?;
        let Some(entry) = ring.get(KEY_ENTRY) else {
            return Ok(None);
        };
        let wrapped: WrappedKey =
            serde_json::from_value(entry.clone()).map_err(|e| StoreError::Corrupt {
                location: format!("the key ring entry of session {id}"),
                detail: e.to_string(),
            })?;
        let key = master.unwrap(&format!("session {id}"), &wrapped)?;
        self.remember(id.as_str(), key.clone());
        Ok(Some(key))
    }

    /// Opens the sealed parts of `records` (refusing them when they are
    /// sealed and no key opens them).
    async fn open_records(
        &self,
        id: &SessionId,
        mut records: Vec<Record>,
    ) -> Result<Vec<Record>, StoreError> {
        let key = self.key_for(id).await?;
        match key {
            Some(key) => open_all(&key, id.as_str(), &mut records)?,
            None => {
                if records.iter().any(seal::is_sealed) {
                    return Err(self.no_key(id));
                }
            }
        }
        Ok(records)
    }

    fn no_key(&self, id: &SessionId) -> StoreError {
        match &self.master {
            None => StoreError::Refused(format!(
                "session {id} is encrypted: set WEFT_ENCRYPTION__KEY (or WEFT_ENCRYPTION__KEY_FILE) to the master key it was written with"
            )),
            Some(_) => StoreError::Corrupt {
                location: format!("session {id}"),
                detail: "its records are encrypted but the key ring has no data key for it".into(),
            },
        }
    }

    /// `meta` with its sealed `last_prompt` opened (or dropped when no key
    /// opens it).
    async fn open_meta(&self, mut meta: SessionMeta) -> SessionMeta {
        let sealed = meta
            .last_prompt
            .as_deref()
            .is_some_and(|p| p.starts_with(seal::PREVIEW) || p.starts_with(seal::TOKEN));
        if sealed {
            let key = self.key_for(&meta.id).await.ok().flatten();
            meta.last_prompt = key.and_then(|k| {
                seal::open_preview(&k, meta.id.as_str(), meta.last_prompt.as_deref()?)
            });
        }
        meta
    }

    async fn seal_kinds(
        &self,
        key: &DataKey,
        id: &SessionId,
        kinds: &mut [RecordKind],
    ) -> Result<(), StoreError> {
        for k in kinds {
            seal::seal_kind(key, id.as_str(), k)?;
        }
        Ok(())
    }

    /// Records once (in [`KEY_RING`]) that the store holds encrypted
    /// sessions, so a process without the key refuses to create sessions
    /// in clear there.
    async fn mark_encrypted(&self, master: &MasterKey) -> Result<(), StoreError> {
        if self.marked.load(std::sync::atomic::Ordering::Relaxed) {
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
        self.marked
            .store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Refuses any use of the key ring's namespaces from outside.
    fn check_namespace(namespace: &str) -> Result<(), StoreError> {
        if namespace == KEY_RING || namespace.starts_with(KEY_RING_PREFIX) {
            return Err(StoreError::Invalid(format!(
                "the shared-state namespace {KEY_RING} is weft's key ring: choose another namespace"
            )));
        }
        Ok(())
    }

    /// Full-text search by reading and opening every session (no index
    /// holds plaintext): as slow as reading the whole store.
    async fn scan_search(&self, query: &SearchQuery) -> Result<Vec<SearchHit>, StoreError> {
        let mut hits = Vec::new();
        let limit = query.effective_limit();
        let mut list = ListQuery {
            filter: ListFilter {
                project: query.project.clone(),
                ..ListFilter::default()
            },
            cursor: None,
            limit: 200,
        };
        loop {
            let page = self.inner.list(&list).await?;
            for meta in &page.sessions {
                let records = match self.read(&meta.id, 1, None).await {
                    Ok(r) => r,
                    Err(StoreError::NotFound(_)) => continue,
                    Err(e) => return Err(e),
                };
                for r in &records {
                    if let Some(hit) = query.hit(meta, r) {
                        hits.push(hit);
                        if hits.len() >= limit {
                            return Ok(hits);
                        }
                    }
                }
            }
            match page.next_cursor {
                Some(c) => list.cursor = Some(c),
                None => return Ok(hits),
            }
        }
    }
}

/// Opens every record of `records`, on several threads when there are
/// many (a whole long session read at once).
fn open_all(key: &DataKey, owner: &str, records: &mut [Record]) -> Result<(), StoreError> {
    const PARALLEL_MIN: usize = 2048;
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(8);
    let open_share = |share: &mut [Record]| -> Result<(), StoreError> {
        for r in share {
            seal::open_kind(key, owner, &mut r.kind)?;
        }
        Ok(())
    };
    if records.len() < PARALLEL_MIN || threads < 2 {
        return open_share(records);
    }
    let chunk = records.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = records
            .chunks_mut(chunk)
            .map(|share| s.spawn(move || open_share(share)))
            .collect();
        handles.into_iter().try_for_each(|h| {
            h.join().unwrap_or_else(|_| {
                Err(StoreError::Backend {
                    backend: "encryption",
                    message: "a decrypting thread panicked".into(),
                })
            })
        })
    })
}

/// `wrapped` as a JSON value for the key ring.
pub(super) fn to_value(wrapped: &WrappedKey) -> Result<Value, StoreError> {
    serde_json::to_value(wrapped).map_err(|e| StoreError::Backend {
        backend: "encryption",
        message: e.to_string(),
    })
}

#[async_trait]
impl Store for EncryptedStore {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn is_shared(&self) -> bool {
        self.inner.is_shared()
    }

    fn live(&self) -> Option<Arc<dyn weft_core::live::LiveChannel>> {
        self.inner.live()
    }

    async fn create(
        &self,
        meta: SessionMeta,
        mut initial: Vec<RecordKind>,
    ) -> Result<SessionMeta, StoreError> {
        let Some(master) = &self.master else {
            if !self.inner.shared_state(KEY_RING).await?.is_empty() {
                return Err(StoreError::Refused(
                    "this store holds encrypted sessions: set WEFT_ENCRYPTION__KEY (or WEFT_ENCRYPTION__KEY_FILE) to its master key so new sessions are encrypted too".into(),
                ));
            }
            return self.inner.create(meta, initial).await;
        };
        let id = meta.id.clone();
        if self.inner.get(&id).await.is_ok() {
            return Err(StoreError::AlreadyExists(id.to_string()));
        }
        let (key, wrapped) = master.new_data_key(&format!("session {id}"))?;
        let mut delta = StateDelta::default();
        delta.set.insert(KEY_ENTRY.into(), to_value(&wrapped)?);
        self.inner
            .update_shared_state(&key_namespace(id.as_str()), &delta)
            .await?;
        self.mark_encrypted(master).await?;
        self.remember(id.as_str(), key.clone());
        self.seal_kinds(&key, &id, &mut initial).await?;
        let created = self.inner.create(meta, initial).await?;
        Ok(self.open_meta(created).await)
    }

    async fn get(&self, id: &SessionId) -> Result<SessionMeta, StoreError> {
        let meta = self.inner.get(id).await?;
        Ok(self.open_meta(meta).await)
    }

    async fn append(
        &self,
        id: &SessionId,
        expected_seq: u64,
        mut records: Vec<Record>,
    ) -> Result<SessionMeta, StoreError> {
        if let Some(key) = self.key_for(id).await? {
            for r in &mut records {
                seal::seal_kind(&key, id.as_str(), &mut r.kind)?;
            }
        }
        let meta = self.inner.append(id, expected_seq, records).await?;
        Ok(self.open_meta(meta).await)
    }

    async fn read(
        &self,
        id: &SessionId,
        from_seq: u64,
        limit: Option<usize>,
    ) -> Result<Vec<Record>, StoreError> {
        let records = self.inner.read(id, from_seq, limit).await?;
        self.open_records(id, records).await
    }

    async fn tail(&self, id: &SessionId, n: usize) -> Result<Vec<Record>, StoreError> {
        let records = self.inner.tail(id, n).await?;
        self.open_records(id, records).await
    }

    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        let page = self.inner.list(query).await?;
        let mut sessions = Vec::with_capacity(page.sessions.len());
        for meta in page.sessions {
            sessions.push(self.open_meta(meta).await);
        }
        Ok(Page {
            sessions,
            next_cursor: page.next_cursor,
        })
    }

    async fn find_ids(&self, prefix: &str, limit: usize) -> Result<Vec<SessionId>, StoreError> {
        self.inner.find_ids(prefix, limit).await
    }

    async fn delete(
        &self,
        id: &SessionId,
        options: DeleteOptions,
    ) -> Result<Vec<SessionId>, StoreError> {
        let removed = self.inner.delete(id, options).await?;
        if self.master.is_some() {
            // The data keys go with their sessions (crypto-shredding).
            let clear = StateDelta {
                clear: true,
                ..StateDelta::default()
            };
            for id in &removed {
                self.inner
                    .update_shared_state(&key_namespace(id.as_str()), &clear)
                    .await?;
            }
        }
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        for id in &removed {
            keys.remove(id.as_str());
        }
        Ok(removed)
    }

    async fn search(&self, query: &SearchQuery) -> Result<Vec<SearchHit>, StoreError> {
        if self.master.is_some() {
            self.scan_search(query).await
        } else {
            self.inner.search(query).await
        }
    }

    async fn shared_state(&self, namespace: &str) -> Result<Map<String, Value>, StoreError> {
        Self::check_namespace(namespace)?;
        self.inner.shared_state(namespace).await
    }

    async fn update_shared_state(
        &self,
        namespace: &str,
        delta: &StateDelta,
    ) -> Result<Map<String, Value>, StoreError> {
        Self::check_namespace(namespace)?;
        self.inner.update_shared_state(namespace, delta).await
    }

    async fn write_events(&self, id: &SessionId, events: &[Value]) -> Result<(), StoreError> {
        match self.key_for(id).await? {
            Some(key) => {
                let sealed = events
                    .iter()
                    .map(|e| seal::seal_event(&key, id.as_str(), e))
                    .collect::<Result<Vec<_>, _>>()?;
                self.inner.write_events(id, &sealed).await
            }
            None => self.inner.write_events(id, events).await,
        }
    }

    async fn read_events(&self, id: &SessionId, limit: usize) -> Result<Vec<Value>, StoreError> {
        let events = self.inner.read_events(id, limit).await?;
        if !events.iter().any(|e| seal::event_token(e).is_some()) {
            return Ok(events);
        }
        let key = self.key_for(id).await?.ok_or_else(|| self.no_key(id))?;
        events
            .into_iter()
            .map(|e| match seal::event_token(&e) {
                Some(t) => seal::open_value(&key, id.as_str(), t.clone()),
                None => Ok(e),
            })
            .collect()
    }

    async fn try_lock_turn(
        &self,
        id: &SessionId,
        branch: &BranchId,
        holder: &TurnHolder,
    ) -> Result<TurnLockAttempt, StoreError> {
        self.inner.try_lock_turn(id, branch, holder).await
    }

    async fn turn_locks(&self, id: &SessionId) -> Result<Vec<TurnLockInfo>, StoreError> {
        self.inner.turn_locks(id).await
    }

    async fn quarantined(&self, id: &SessionId) -> Result<Vec<u64>, StoreError> {
        self.inner.quarantined(id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_core::memory::MemoryStore;
    use weft_core::message::{Message, Role};
    use weft_core::session::{Project, SessionMeta};

    #[tokio::test]
    async fn a_long_session_opens_on_several_threads_in_order() {
        let key = MasterKey::from_base64(&MasterKey::generate_base64().expect("gen")).expect("key");
        let inner: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let store = EncryptedStore::new(inner.clone(), Some(key));
        let id = SessionId::parse("long").expect("id");
        let meta = SessionMeta::new(
            id.clone(),
            Project::from_dir(std::path::Path::new("/tmp")),
            "base",
        );
        let kinds: Vec<RecordKind> = (0..3000)
            .map(|i| {
                RecordKind::message(Message::text(
                    BranchId::main(),
                    Role::User,
                    format!("secret {i}"),
                ))
            })
            .collect();
        store.create(meta, kinds.clone()).await.expect("create");
        let raw = inner.read_all(&id).await.expect("raw");
        assert!(raw[1..].iter().all(seal::is_sealed), "stored sealed");
        let back = store.read_all(&id).await.expect("read");
        let got: Vec<&RecordKind> = back[1..].iter().map(|r| &r.kind).collect();
        assert_eq!(got, kinds.iter().collect::<Vec<_>>());
        let listed = store.list(&ListQuery::default()).await.expect("list");
        assert_eq!(
            listed.sessions[0].last_prompt.as_deref(),
            Some("secret 2999")
        );
        // Without the key: one clear refusal, and the key ring is not
        // reachable through the store.
        let guard = EncryptedStore::new(inner, None);
        let err = guard.read_all(&id).await.expect_err("refused");
        assert!(err.to_string().contains("is encrypted"), "{err}");
        assert!(guard.shared_state(KEY_RING).await.is_err());
    }
}
