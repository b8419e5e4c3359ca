//! [`EncryptedStore`]: the [`Store`] wrapper that seals records on their
//! way in and opens them on their way out, keeping each session's data key
//! in memory once unwrapped.

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use serde_json::{Map, Value};
use weft_core::lease::{TurnHolder, TurnLockAttempt, TurnLockInfo};
use weft_core::live::LiveChannel;
use weft_core::record::{Record, RecordKind, StateDelta};
use weft_core::session::SessionMeta;
use weft_core::store::{
    DeleteOptions, HeadGuard, ListFilter, ListQuery, Page, RecordMap, SearchHit, SearchQuery,
    Store, StoreError,
};
use weft_core::{BranchId, MapRecord, SessionId};

use super::keyring::{Keyring, to_value};
use super::keys::{DataKey, MasterKey};
use super::live::EncryptedLive;
use super::splice::RecordOpener;
use super::{KEY_ENTRY, KEY_RING, KEY_RING_PREFIX, key_namespace, seal, shared};

/// A [`Store`] whose user-provided content is sealed with per-session
/// AES-256-GCM data keys (see the module docs of `weft_store::encryption`).
pub struct EncryptedStore {
    inner: Arc<dyn Store>,
    master: Option<MasterKey>,
    keys: Arc<Keyring>,
    live: OnceLock<Option<Arc<dyn LiveChannel>>>,
}

impl EncryptedStore {
    /// `inner` behind the layer; with no `master` key it only guards
    /// (refuses sealed sessions, creates sessions in clear in a store
    /// without encrypted ones).
    pub fn new(inner: Arc<dyn Store>, master: Option<MasterKey>) -> Self {
        Self {
            keys: Arc::new(Keyring::new(inner.clone(), master.clone())),
            inner,
            master,
            live: OnceLock::new(),
        }
    }

    /// Whether a master key is set (new sessions are encrypted).
    pub fn is_encrypting(&self) -> bool {
        self.master.is_some()
    }

    async fn key_for(&self, id: &SessionId) -> Result<Option<DataKey>, StoreError> {
        self.keys.key_for(id).await
    }

    /// Refuses to write in clear (no key) into a store holding encrypted
    /// data.
    async fn refuse_clear_writes(&self, what: &str) -> Result<(), StoreError> {
        if self.master.is_none() && self.keys.store_is_encrypted().await? {
            return Err(StoreError::Refused(format!(
                "this store holds encrypted data: set WEFT_ENCRYPTION__KEY (or WEFT_ENCRYPTION__KEY_FILE) to its master key so new {what} are encrypted too"
            )));
        }
        Ok(())
    }

    /// `state` of `namespace` with its sealed values opened.
    async fn open_shared(
        &self,
        namespace: &str,
        state: Map<String, Value>,
    ) -> Result<Map<String, Value>, StoreError> {
        if !shared::any_sealed(&state) {
            return Ok(state);
        }
        let mut out = Map::with_capacity(state.len());
        for (k, v) in state {
            let v = match shared::kid(&v) {
                Some(kid) => {
                    let key = self.keys.shared_key(kid).await?;
                    shared::open(&key, namespace, v)?
                }
                None => v,
            };
            out.insert(k, v);
        }
        Ok(out)
    }

    /// What opens the sealed parts of session `id`'s records as they are
    /// read: its data key's opener, or — with no key — a check refusing
    /// sealed records.
    async fn opener(&self, id: &SessionId) -> Result<RecordMap, StoreError> {
        let owner = id.clone();
        Ok(match self.key_for(id).await? {
            Some(key) => Arc::new(RecordOpener::new(key, owner.to_string())),
            None => {
                let has_master = self.master.is_some();
                Arc::new(move |r: &mut Record| {
                    if seal::is_sealed(r) {
                        return Err(no_key(&owner, has_master));
                    }
                    Ok(())
                })
            }
        })
    }

    /// `records` with their sealed parts opened (see [`Self::opener`]).
    async fn open_records(
        &self,
        id: &SessionId,
        mut records: Vec<Record>,
    ) -> Result<Vec<Record>, StoreError> {
        let open = self.opener(id).await?;
        records.iter_mut().try_for_each(|r| open.map(r))?;
        Ok(records)
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

/// The error for a sealed record of session `id` that no key opens
/// (`has_master`: a master key is set, so its data key is missing).
fn no_key(id: &SessionId, has_master: bool) -> StoreError {
    if has_master {
        StoreError::Corrupt {
            location: format!("session {id}"),
            detail: "its records are encrypted but the key ring has no data key for it".into(),
        }
    } else {
        StoreError::Refused(format!(
            "session {id} is encrypted: set WEFT_ENCRYPTION__KEY (or WEFT_ENCRYPTION__KEY_FILE) to the master key it was written with"
        ))
    }
}

/// Opening, then a caller's map ([`Store::read_mapped`] through the
/// wrapper): the caller sees plaintext. The shortcut is the opener's; a
/// caller's own works on stored JSON, which the opener has already
/// rewritten, so it is not offered.
struct Then {
    first: RecordMap,
    then: RecordMap,
}

impl MapRecord for Then {
    fn map(&self, record: &mut Record) -> Result<(), StoreError> {
        self.first.map(record)?;
        self.then.map(record)
    }

    fn rewrite_json(&self, json: &str, out: &mut Vec<u8>) -> bool {
        self.first.rewrite_json(json, out)
    }
}

#[async_trait]
impl Store for EncryptedStore {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn is_shared(&self) -> bool {
        self.inner.is_shared()
    }

    fn live(&self) -> Option<Arc<dyn LiveChannel>> {
        self.live
            .get_or_init(|| {
                self.inner.live().map(|inner| {
                    Arc::new(EncryptedLive {
                        inner,
                        keys: self.keys.clone(),
                    }) as Arc<dyn LiveChannel>
                })
            })
            .clone()
    }

    async fn create(
        &self,
        meta: SessionMeta,
        mut initial: Vec<RecordKind>,
    ) -> Result<SessionMeta, StoreError> {
        let Some(master) = &self.master else {
            self.refuse_clear_writes("sessions").await?;
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
        self.keys.mark_encrypted(master).await?;
        self.keys.remember(id.as_str(), key.clone());
        for k in &mut initial {
            seal::seal_kind(&key, id.as_str(), k)?;
        }
        let created = self.inner.create(meta, initial).await?;
        Ok(self.open_meta(created).await)
    }

    async fn get(&self, id: &SessionId) -> Result<SessionMeta, StoreError> {
        let meta = self.inner.get(id).await?;
        Ok(self.open_meta(meta).await)
    }

    async fn append_guarded(
        &self,
        id: &SessionId,
        guard: &HeadGuard,
        kinds: Vec<RecordKind>,
    ) -> Result<Option<(Vec<Record>, SessionMeta)>, StoreError> {
        // Sealed as `append` seals; the backend numbers and folds the
        // sealed batch, and the caller gets its own records back, numbered.
        let mut sealed = kinds.clone();
        if let Some(key) = self.key_for(id).await? {
            for k in &mut sealed {
                seal::seal_kind(&key, id.as_str(), k)?;
            }
        }
        let Some((written, meta)) = self.inner.append_guarded(id, guard, sealed).await? else {
            return Ok(None);
        };
        let records = written
            .into_iter()
            .zip(kinds)
            .map(|(r, kind)| Record { kind, ..r })
            .collect();
        Ok(Some((records, self.open_meta(meta).await)))
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
        let open = self.opener(id).await?;
        self.inner.read_mapped(id, from_seq, limit, open).await
    }

    async fn read_mapped(
        &self,
        id: &SessionId,
        from_seq: u64,
        limit: Option<usize>,
        map: RecordMap,
    ) -> Result<Vec<Record>, StoreError> {
        let open = self.opener(id).await?;
        let both = Arc::new(Then {
            first: open,
            then: map,
        });
        self.inner.read_mapped(id, from_seq, limit, both).await
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
        self.keys.forget(&removed);
        Ok(removed)
    }

    async fn search(&self, query: &SearchQuery) -> Result<Vec<SearchHit>, StoreError> {
        if self.master.is_some() {
            self.scan_search(query).await
        } else if self.keys.store_is_encrypted().await? {
            // The backend's index holds only sealed text: searching it
            // would answer "no match" for what is there.
            Err(StoreError::Refused(
                "this store holds encrypted sessions, which search cannot read without their key: set WEFT_ENCRYPTION__KEY (or WEFT_ENCRYPTION__KEY_FILE) to its master key".into(),
            ))
        } else {
            self.inner.search(query).await
        }
    }

    async fn shared_state(&self, namespace: &str) -> Result<Map<String, Value>, StoreError> {
        Self::check_namespace(namespace)?;
        let state = self.inner.shared_state(namespace).await?;
        self.open_shared(namespace, state).await
    }

    async fn update_shared_state(
        &self,
        namespace: &str,
        delta: &StateDelta,
    ) -> Result<Map<String, Value>, StoreError> {
        Self::check_namespace(namespace)?;
        let state = match &self.master {
            Some(master) if !delta.set.is_empty() => {
                let (kid, key) = self.keys.writing_shared_key(master).await?;
                let mut sealed = delta.clone();
                for v in sealed.set.values_mut() {
                    *v = shared::seal(&kid, &key, namespace, v)?;
                }
                self.inner.update_shared_state(namespace, &sealed).await?
            }
            Some(_) => self.inner.update_shared_state(namespace, delta).await?,
            None => {
                if !delta.set.is_empty() {
                    self.refuse_clear_writes("shared state values").await?;
                }
                self.inner.update_shared_state(namespace, delta).await?
            }
        };
        self.open_shared(namespace, state).await
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
        let key = self
            .key_for(id)
            .await?
            .ok_or_else(|| no_key(id, self.master.is_some()))?;
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

    /// Writes a long encrypted session into `inner` and checks it reads
    /// back in order (through `read` and `read_mapped`), is stored sealed
    /// and is refused without the key.
    async fn long_session_round_trip(inner: Arc<dyn Store>) {
        let key = MasterKey::from_base64(&MasterKey::generate_base64().expect("gen")).expect("key");
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
                    format!("secret {i} {}", "x".repeat(i % 400)),
                ))
            })
            .collect();
        store.create(meta, kinds.clone()).await.expect("create");
        let raw = inner.read_all(&id).await.expect("raw");
        assert!(raw[1..].iter().all(seal::is_sealed), "stored sealed");
        let back = store.read_all(&id).await.expect("read");
        let got: Vec<&RecordKind> = back[1..].iter().map(|r| &r.kind).collect();
        assert_eq!(got, kinds.iter().collect::<Vec<_>>());
        // A caller's map runs after opening: it sees the plaintext.
        let seen: RecordMap = Arc::new(|r: &mut Record| match &r.kind {
            RecordKind::Message(m) if !m.text_content().starts_with("secret ") => Err(
                StoreError::Invalid(format!("record {} still sealed", r.seq)),
            ),
            _ => Ok(()),
        });
        let mapped = store
            .read_mapped(&id, 2, None, seen)
            .await
            .expect("mapped read");
        assert_eq!(mapped.len(), kinds.len());
        let listed = store.list(&ListQuery::default()).await.expect("list");
        assert!(
            listed.sessions[0]
                .last_prompt
                .as_deref()
                .is_some_and(|p| p.starts_with("secret 2999")),
            "{:?}",
            listed.sessions[0].last_prompt
        );
        // Without the key: one clear refusal, and the key ring is not
        // reachable through the store.
        let guard = EncryptedStore::new(inner, None);
        let err = guard.read_all(&id).await.expect_err("refused");
        assert!(err.to_string().contains("is encrypted"), "{err}");
        assert!(guard.shared_state(KEY_RING).await.is_err());
    }

    #[tokio::test]
    async fn a_long_session_reads_back_in_order_from_memory() {
        long_session_round_trip(Arc::new(MemoryStore::new())).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_long_session_opens_where_the_fs_store_decodes_it() {
        let dir = tempfile::tempdir().expect("dir");
        let fs = crate::FsStore::open(dir.path()).expect("fs");
        long_session_round_trip(Arc::new(fs)).await;
    }

    fn master() -> MasterKey {
        MasterKey::from_base64(&MasterKey::generate_base64().expect("gen")).expect("key")
    }

    #[tokio::test]
    async fn shared_state_is_sealed_bound_to_its_namespace_and_rotates() {
        let k1 = master();
        let inner: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let store = EncryptedStore::new(inner.clone(), Some(k1.clone()));
        let value = serde_json::json!({"v": "zanzibar"});
        let mut delta = StateDelta::default();
        delta.set.insert("x".into(), value.clone());
        let after = store
            .update_shared_state("app:a", &delta)
            .await
            .expect("set");
        assert_eq!(after["x"], value);
        let raw = inner.shared_state("app:a").await.expect("raw");
        assert!(
            !Value::Object(raw.clone()).to_string().contains("zanzibar"),
            "{raw:?}"
        );
        // Another process with the key reads it.
        let other = EncryptedStore::new(inner.clone(), Some(k1.clone()));
        assert_eq!(other.shared_state("app:a").await.expect("read")["x"], value);
        // A sealed value copied into another namespace does not open.
        let mut moved = StateDelta::default();
        moved.set.insert("x".into(), raw["x"].clone());
        inner
            .update_shared_state("user:b", &moved)
            .await
            .expect("copy");
        assert!(store.shared_state("user:b").await.is_err());
        // Without the key: reads refused, no value written in clear.
        let keyless = EncryptedStore::new(inner.clone(), None);
        let err = keyless.shared_state("app:a").await.expect_err("refused");
        assert!(err.to_string().contains("WEFT_ENCRYPTION__KEY"), "{err}");
        assert!(keyless.update_shared_state("app:c", &delta).await.is_err());
        assert!(inner.shared_state("app:c").await.expect("raw").is_empty());
        // Rotation re-wraps the shared-state key.
        let k2 = master();
        let report = super::super::rotate(&*inner, Some(&k1), &k2)
            .await
            .expect("rotate");
        assert_eq!(report.rewrapped, 1);
        let rotated = EncryptedStore::new(inner.clone(), Some(k2));
        assert_eq!(
            rotated.shared_state("app:a").await.expect("read")["x"],
            value
        );
        assert!(
            EncryptedStore::new(inner, Some(k1))
                .shared_state("app:a")
                .await
                .is_err()
        );
    }
}
