//! The storage contract.
//!
//! [`Store`] is the one trait every backend implements (memory here; fs,
//! sqlite and the networked ones in `weft-store`). Backends implement the
//! primitive operations; fork, cleanup, metadata updates and prefix resolution
//! are provided methods built on them, so their semantics live in one place.
//!
//! # The contract
//!
//! - `create` writes the log's first batch: `session_created` at seq 1 plus
//!   any initial records, all or nothing.
//! - `append(id, expected_seq, batch)`: the batch must be numbered
//!   `expected_seq + 1 …` ([`Record::batch`]); if the log's head is not
//!   `expected_seq` the backend returns [`StoreError::Conflict`] and writes
//!   nothing. The whole batch lands or none of it, and it is durable (fsync or
//!   the backend's commit) before `Ok` is returned.
//! - `tail(id, n)` costs time proportional to `n`, not to the log's length.
//! - `list` returns metadata newest first by `updated_at` (ties by id,
//!   descending) with an opaque cursor ([`ListCursor`]).
//! - Backends keep [`SessionMeta`] current with [`SessionMeta::apply`], so
//!   listing never reads logs.
//! - `try_lock_turn` / `turn_locks`: one turn lock per (session, branch)
//!   across every process and node sharing the store, released when its
//!   guard drops or its holder dies; one left behind by a dead holder is
//!   reported as not live (an interrupted turn). See [`crate::lease`] and
//!   [`Store::try_lock_turn`].
//!
//! Writes that depend on the session (lifecycle transitions, a turn's
//! messages) are decided against the head they are appended after, through
//! [`append_at_head`] here or [`crate::log::append_checked`] for a writer
//! holding a [`crate::log::SessionLog`]; a conflict makes them re-check,
//! never blindly retry. A write that depends on the session only through
//! its status and default branch ([`HeadGuard`]: a message added between
//! turns) can leave the check to the store ([`Store::append_guarded`]),
//! which a backend may do where it keeps the session, saving the read.
//!
//! This module knows records, metadata and the view fold; it must not know
//! the session log's writers ([`crate::log`]) or the runtime's errors
//! ([`crate::SessionError`]).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::id::{BranchId, IdError, SessionId, validate_id};
use crate::lease::{TURN_LOCK_POLL, TurnHolder, TurnLock, TurnLockAttempt, TurnLockInfo};
use crate::message::{Message, Role};
use crate::progress::Progress;
use crate::record::{BatchError, MetaPatch, Record, RecordKind, StateDelta, StatusChange};
use crate::session::{ForkedFrom, SessionMeta, SessionStatus};
use crate::view::{SessionView, ViewError};

mod cleanup;
mod head;

pub use crate::fork::{FORK_INTERRUPTED, ForkError, ForkPlan, ForkPoint, fork_plan};
pub use head::{HeadGuard, append_at_head, append_guarded_after_get};

/// What a store operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No session has this id.
    #[error("session {0} not found: `weft session list` shows the sessions there are")]
    NotFound(String),
    /// A session with this id exists already.
    #[error("session {0} already exists: choose another id")]
    AlreadyExists(String),
    /// The log's head was not the `expected_seq` of an append; nothing was
    /// written.
    #[error(
        "conflict on session {id}: the append expected the log at seq {expected} but it is at seq {actual}; another writer changed the session, reload it and retry"
    )]
    Conflict {
        /// The session.
        id: String,
        /// The head the writer expected.
        expected: u64,
        /// The actual head.
        actual: u64,
    },
    /// A prefix matched no session.
    #[error("no session id starts with {0:?}: `weft session list` shows the sessions there are")]
    NoMatch(String),
    /// A prefix matched several sessions.
    #[error("{prefix:?} matches several sessions ({}); give more characters of the id", candidates.join(", "))]
    Ambiguous {
        /// The prefix.
        prefix: String,
        /// Some of the matching ids.
        candidates: Vec<String>,
    },
    /// An id was malformed.
    #[error(transparent)]
    InvalidId(#[from] IdError),
    /// A batch was malformed.
    #[error(transparent)]
    InvalidBatch(#[from] BatchError),
    /// A request was malformed (bad fork point, bad cursor, …).
    #[error("{0}")]
    Invalid(String),
    /// The operation is refused in the session's current state.
    #[error("{0}")]
    Refused(String),
    /// Stored data could not be read.
    #[error("corrupt session data in {location}: {detail}")]
    Corrupt {
        /// File, key or row.
        location: String,
        /// What was wrong.
        detail: String,
    },
    /// An I/O error.
    #[error("storage I/O failed at {path}: {source}")]
    Io {
        /// The path involved.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A turn's append was refused: the turn no longer holds its branch's
    /// lease (fencing, see [`crate::lease`]). Nothing was appended.
    #[error(
        "the turn {turn} lost its lease on branch {branch} of session {id} (another node took it over after it stopped renewing): nothing was appended; run the prompt again"
    )]
    LeaseLost {
        /// The session.
        id: String,
        /// The branch.
        branch: String,
        /// The turn refused.
        turn: String,
    },
    /// Any other backend failure.
    #[error("{backend} store: {message}")]
    Backend {
        /// The backend (`fs`, `sqlite`, …).
        backend: &'static str,
        /// What went wrong.
        message: String,
    },
}

impl From<ViewError> for StoreError {
    fn from(e: ViewError) -> Self {
        StoreError::Corrupt {
            location: "session log".into(),
            detail: e.to_string(),
        }
    }
}

impl StoreError {
    /// Whether this is a [`StoreError::Conflict`].
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Conflict { .. })
    }

    /// Whether this is a [`StoreError::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NotFound(_))
    }
}

/// Filters for [`Store::list`]. All set filters must match.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ListFilter {
    /// Project slug.
    pub project: Option<String>,
    /// Status.
    pub status: Option<SessionStatus>,
    /// Parent session.
    pub parent_id: Option<SessionId>,
    /// Case-insensitive substring of the name.
    pub name_contains: Option<String>,
    /// Forks of this session (`forked_from.session_id`).
    pub forked_from: Option<SessionId>,
    /// Only top-level sessions: leave out delegated sub-sessions
    /// ([`SessionMeta::is_sub_session`]); forks stay in.
    pub top_level_only: bool,
    /// Profile name.
    pub profile: Option<String>,
}

impl ListFilter {
    /// Whether `meta` passes the filter.
    pub fn matches(&self, meta: &SessionMeta) -> bool {
        if let Some(p) = &self.project
            && &meta.project.slug != p
        {
            return false;
        }
        if let Some(s) = self.status
            && meta.status != s
        {
            return false;
        }
        if let Some(parent) = &self.parent_id
            && meta.parent_id.as_ref() != Some(parent)
        {
            return false;
        }
        if let Some(source) = &self.forked_from
            && meta.forked_from.as_ref().map(|f| &f.session_id) != Some(source)
        {
            return false;
        }
        if self.top_level_only && meta.is_sub_session() {
            return false;
        }
        if let Some(profile) = &self.profile
            && &meta.profile != profile
        {
            return false;
        }
        if let Some(needle) = &self.name_contains {
            let needle = needle.to_lowercase();
            match &meta.name {
                Some(name) if name.to_lowercase().contains(&needle) => {}
                _ => return false,
            }
        }
        true
    }
}

/// A position in a listing: the last item of the previous page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListCursor {
    /// `updated_at` of the last item returned.
    pub updated_at: DateTime<Utc>,
    /// Its id.
    pub id: SessionId,
}

impl ListCursor {
    /// The cursor just after `meta`.
    pub fn after(meta: &SessionMeta) -> Self {
        Self {
            updated_at: meta.updated_at,
            id: meta.id.clone(),
        }
    }

    /// The opaque string form (`<micros>.<id>`).
    pub fn encode(&self) -> String {
        format!("{}.{}", self.updated_at.timestamp_micros(), self.id)
    }

    /// Parses [`ListCursor::encode`]'s output.
    pub fn decode(s: &str) -> Result<Self, StoreError> {
        let bad = || {
            StoreError::Invalid(format!(
                "invalid list cursor {s:?}: pass back the cursor a previous listing returned"
            ))
        };
        let (micros, id) = s.split_once('.').ok_or_else(bad)?;
        let micros: i64 = micros.parse().map_err(|_| bad())?;
        let updated_at = DateTime::from_timestamp_micros(micros).ok_or_else(bad)?;
        let id = SessionId::parse(id).map_err(|_| bad())?;
        Ok(Self { updated_at, id })
    }

    /// Whether `meta` comes after this cursor in newest-first order.
    pub fn is_before(&self, meta: &SessionMeta) -> bool {
        let key = (meta.updated_at.timestamp_micros(), meta.id.as_str());
        key < (self.updated_at.timestamp_micros(), self.id.as_str())
    }
}

/// The order of listings: newest `updated_at` first, ties by id descending.
pub fn list_order(a: &SessionMeta, b: &SessionMeta) -> std::cmp::Ordering {
    (b.updated_at.timestamp_micros(), b.id.as_str())
        .cmp(&(a.updated_at.timestamp_micros(), a.id.as_str()))
}

/// A listing request.
#[derive(Debug, Clone, PartialEq)]
pub struct ListQuery {
    /// Filters.
    pub filter: ListFilter,
    /// Where to continue from.
    pub cursor: Option<ListCursor>,
    /// Page size (at least 1).
    pub limit: usize,
}

impl Default for ListQuery {
    fn default() -> Self {
        Self {
            filter: ListFilter::default(),
            cursor: None,
            limit: 50,
        }
    }
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// The sessions, newest first.
    pub sessions: Vec<SessionMeta>,
    /// The cursor for the next page, if there is one.
    pub next_cursor: Option<ListCursor>,
}

impl Page {
    /// Cuts a sorted, filtered, cursor-skipped list down to one page.
    pub fn from_sorted(mut sessions: Vec<SessionMeta>, limit: usize) -> Self {
        let limit = limit.max(1);
        let next_cursor = if sessions.len() > limit {
            sessions.truncate(limit);
            sessions.last().map(ListCursor::after)
        } else {
            None
        };
        Page {
            sessions,
            next_cursor,
        }
    }
}

/// A full-text search request.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SearchQuery {
    /// The words to find (all must occur, case-insensitively).
    pub text: String,
    /// Restrict to one project slug (None = all projects).
    pub project: Option<String>,
    /// At most this many hits (0 = 50).
    pub limit: usize,
}

impl SearchQuery {
    /// The lower-cased words of the query.
    pub fn terms(&self) -> Vec<String> {
        self.text
            .split_whitespace()
            .map(str::to_lowercase)
            .collect()
    }

    /// The effective hit limit.
    pub fn effective_limit(&self) -> usize {
        if self.limit == 0 { 50 } else { self.limit }
    }

    /// The hit `record` of session `meta` makes: a message whose text
    /// contains every term (the scan every store without an index of its
    /// own does).
    pub fn hit(&self, meta: &SessionMeta, record: &Record) -> Option<SearchHit> {
        let m = record.as_message()?;
        self.matches_text(&m.searchable_text())
            .then(|| SearchHit::new(meta, record.seq, m, self))
    }

    /// Whether `text` contains every term.
    pub fn matches_text(&self, text: &str) -> bool {
        let terms = self.terms();
        if terms.is_empty() {
            return false;
        }
        let lower = text.to_lowercase();
        terms.iter().all(|t| lower.contains(t.as_str()))
    }
}

/// One message that matched a search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchHit {
    /// The session.
    pub session_id: SessionId,
    /// Its name.
    pub session_name: Option<String>,
    /// Its project slug.
    pub project: String,
    /// The seq of the message record.
    pub seq: u64,
    /// The message's branch.
    pub branch: String,
    /// The message's role.
    pub role: Role,
    /// A snippet around the first match.
    pub snippet: String,
    /// When the message was written.
    pub timestamp: DateTime<Utc>,
}

impl SearchHit {
    /// A hit for `message` (at `seq` of `meta`'s log).
    pub fn new(meta: &SessionMeta, seq: u64, message: &Message, query: &SearchQuery) -> Self {
        let text = message.searchable_text();
        Self {
            session_id: meta.id.clone(),
            session_name: meta.name.clone(),
            project: meta.project.slug.clone(),
            seq,
            branch: message.branch.to_string(),
            role: message.role,
            snippet: snippet(&text, &query.terms()),
            timestamp: message.timestamp,
        }
    }
}

/// Up to 160 characters of `text` around the first occurrence of a term.
pub fn snippet(text: &str, terms: &[String]) -> String {
    let lower = text.to_lowercase();
    let pos = terms
        .iter()
        .filter_map(|t| lower.find(t.as_str()))
        .min()
        .unwrap_or(0);
    // `pos` indexes the lower-cased text; map it back through char counts.
    let char_pos = lower[..pos.min(lower.len())].chars().count();
    let start = char_pos.saturating_sub(60);
    let out: String = text.chars().skip(start).take(160).collect();
    let out = out.replace('\n', " ");
    if start > 0 { format!("…{out}") } else { out }
}

/// How to delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeleteOptions {
    /// Also delete the sessions whose `parent_id` is this one, recursively.
    pub with_children: bool,
    /// Refuse ([`StoreError::Refused`]) if the session is active.
    pub unless_active: bool,
}

/// What a cleanup removed, or would remove.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CleanupReport {
    /// Whether nothing was actually removed.
    pub dry_run: bool,
    /// The sessions removed (or that would be).
    pub removed: Vec<SessionId>,
    /// Old sessions kept because they are active.
    pub kept_active: Vec<SessionId>,
    /// Active sessions found interrupted (their process exited mid-turn),
    /// marked failed and removed with the others (listed in `removed` too).
    #[serde(default)]
    pub interrupted: Vec<SessionId>,
}

/// The error recorded on an interrupted session that `cleanup` ends.
pub const PROCESS_EXITED: &str =
    "the process running it exited mid-turn (found by cleanup): nothing recorded was lost";

impl From<StoreError> for crate::live::LiveError {
    fn from(e: StoreError) -> Self {
        crate::live::LiveError(e.to_string())
    }
}

impl From<ForkError> for StoreError {
    fn from(e: ForkError) -> Self {
        StoreError::Invalid(e.to_string())
    }
}

/// What a read does to each record it returns ([`Store::read_mapped`]): a
/// transform of the decoded record and, optionally, a faster route to the
/// same result for a backend that keeps records as JSON text.
///
/// Every `Fn(&mut Record) -> Result<(), StoreError> + Send + Sync` is one
/// (with no faster route).
pub trait MapRecord: Send + Sync {
    /// Transforms one decoded record; an error fails the read.
    fn map(&self, record: &mut Record) -> Result<(), StoreError>;

    /// Writes into `out` (emptied first) the record's stored JSON (`json`,
    /// as the store wrote it) rewritten so that parsing the result and
    /// passing it through [`MapRecord::map`] gives what parsing `json` and
    /// mapping it gives, only with less work, and returns `true`; returns
    /// `false` (the default) to have `json` parsed as stored. A backend
    /// passes the same `out` for every record a thread decodes, so a
    /// rewrite allocates nothing once the buffer has grown.
    ///
    /// It is a shortcut, never the only route: a backend may skip it (one
    /// that keeps no JSON does), and a backend that calls it parses `json`
    /// as stored when the rewrite returns `false` or does not parse, so a
    /// rewrite that is unsure returns `false` and leaves the case to `map`.
    fn rewrite_json(&self, json: &str, out: &mut Vec<u8>) -> bool {
        let _ = (json, out);
        false
    }
}

impl<F> MapRecord for F
where
    F: Fn(&mut Record) -> Result<(), StoreError> + Send + Sync,
{
    fn map(&self, record: &mut Record) -> Result<(), StoreError> {
        self(record)
    }
}

/// A [`MapRecord`] that can be handed to the threads decoding a read.
pub type RecordMap = Arc<dyn MapRecord>;

/// The durable session store. See the module docs for the contract.
#[async_trait]
pub trait Store: Send + Sync {
    /// The backend's name (`memory`, `fs`, `sqlite`, …).
    fn kind(&self) -> &'static str;

    /// Whether other processes may write this store too (every backend
    /// but memory): a session's [`Feed`](crate::feed::Feed) then follows
    /// their writes (see [`crate::live`]).
    fn is_shared(&self) -> bool {
        true
    }

    /// The channel between the processes sharing this store, when the
    /// backend has one (PostgreSQL `LISTEN/NOTIFY`, Redis pub/sub): it
    /// carries kernel events and commit notices across nodes. See
    /// [`crate::live`].
    fn live(&self) -> Option<Arc<dyn crate::live::LiveChannel>> {
        None
    }

    /// Creates a session: `session_created(meta)` at seq 1, then `initial`
    /// at seq 2…, atomically. Fails with [`StoreError::AlreadyExists`].
    async fn create(
        &self,
        meta: SessionMeta,
        initial: Vec<RecordKind>,
    ) -> Result<SessionMeta, StoreError>;

    /// The session's metadata; `last_seq` is the log's head.
    async fn get(&self, id: &SessionId) -> Result<SessionMeta, StoreError>;

    /// Appends a batch after `expected_seq`; returns the updated metadata.
    async fn append(
        &self,
        id: &SessionId,
        expected_seq: u64,
        records: Vec<Record>,
    ) -> Result<SessionMeta, StoreError>;

    /// Appends `kinds` after whatever the log's head is when they land,
    /// provided the session there passes `guard`; returns the records as
    /// numbered there and the new metadata, or `None` (nothing written)
    /// when the guard does not hold. For writes that depend on the session
    /// only through the guard, such as a message added between turns. The
    /// default reads the head first ([`Store::get`], then
    /// [`Store::append`], again after a conflict, a
    /// [`StoreError::Conflict`] when the session kept changing
    /// [`UPDATE_ATTEMPTS`] times); a backend that can check the guard and
    /// number the batch where it stores it saves that read.
    async fn append_guarded(
        &self,
        id: &SessionId,
        guard: &HeadGuard,
        kinds: Vec<RecordKind>,
    ) -> Result<Option<(Vec<Record>, SessionMeta)>, StoreError> {
        append_guarded_after_get(self, id, guard, kinds).await
    }

    /// Records with `seq >= from_seq`, at most `limit` of them, in order.
    async fn read(
        &self,
        id: &SessionId,
        from_seq: u64,
        limit: Option<usize>,
    ) -> Result<Vec<Record>, StoreError>;

    /// The last `n` records, in order.
    async fn tail(&self, id: &SessionId, n: usize) -> Result<Vec<Record>, StoreError>;

    /// One page of session metadata, newest first.
    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError>;

    /// Up to `limit` ids starting with `prefix`.
    async fn find_ids(&self, prefix: &str, limit: usize) -> Result<Vec<SessionId>, StoreError>;

    /// Deletes a session (and, if asked, its descendants); returns the ids
    /// removed.
    async fn delete(
        &self,
        id: &SessionId,
        options: DeleteOptions,
    ) -> Result<Vec<SessionId>, StoreError>;

    /// Full-text search over message text.
    async fn search(&self, query: &SearchQuery) -> Result<Vec<SearchHit>, StoreError>;

    /// State shared between sessions under `namespace` (`app:<profile>`,
    /// `user:<user>`).
    async fn shared_state(&self, namespace: &str) -> Result<Map<String, Value>, StoreError>;

    /// Changes shared state; returns the state after the change.
    async fn update_shared_state(
        &self,
        namespace: &str,
        delta: &StateDelta,
    ) -> Result<Map<String, Value>, StoreError>;

    /// Appends kernel events (already size-capped and scrubbed of raw
    /// payloads) to the session's event log. A backend may cap what it
    /// keeps.
    async fn write_events(&self, id: &SessionId, events: &[Value]) -> Result<(), StoreError>;

    /// The last `limit` kernel events of a session.
    async fn read_events(&self, id: &SessionId, limit: usize) -> Result<Vec<Value>, StoreError>;

    /// Takes the turn lock of `branch` in session `id` for `holder` if
    /// nobody holds it; else [`TurnLockAttempt::Busy`] naming the holder
    /// when known. See [`crate::lease`].
    ///
    /// Contract: at most one [`TurnLock`] per (session, branch) exists at a
    /// time across every process (and node) sharing the store, including
    /// two handles in one process; it is released when the guard is
    /// dropped **and when its holder dies** (fs/sqlite: an OS lock that
    /// dies with the process; network stores: a lease with a TTL renewed
    /// while held, expiring when the holder stops renewing, with a fencing
    /// token). A lock whose holder died without releasing it stays visible
    /// in [`Store::turn_locks`] as not live (an interrupted turn) until the
    /// next holder takes it. Fails with [`StoreError::NotFound`] when the
    /// session does not exist. Lease backends also fence a turn's appends
    /// with it ([`StoreError::LeaseLost`], see [`crate::lease`]).
    async fn try_lock_turn(
        &self,
        id: &SessionId,
        branch: &BranchId,
        holder: &TurnHolder,
    ) -> Result<TurnLockAttempt, StoreError>;

    /// The turn locks recorded for session `id`: the held ones (`live`)
    /// and those whose holder exited mid-turn without releasing them.
    async fn turn_locks(&self, id: &SessionId) -> Result<Vec<TurnLockInfo>, StoreError>;

    /// Takes the turn lock like [`Store::try_lock_turn`], waiting while it
    /// is busy; `on_busy` is told who holds it (once, before the wait).
    async fn lock_turn(
        &self,
        id: &SessionId,
        branch: &BranchId,
        holder: &TurnHolder,
        on_busy: &(dyn for<'h> Fn(Option<&'h TurnHolder>) + Send + Sync),
    ) -> Result<TurnLock, StoreError> {
        let mut told = false;
        loop {
            match self.try_lock_turn(id, branch, holder).await? {
                TurnLockAttempt::Acquired(lock) => return Ok(lock),
                TurnLockAttempt::Busy(who) => {
                    if !told {
                        on_busy(who.as_ref());
                        told = true;
                    }
                    tokio::time::sleep(TURN_LOCK_POLL).await;
                }
            }
        }
    }

    /// Whether session `id` is `active` but nobody runs it: a turn's
    /// process exited mid-turn (a turn lock is left unreleased) and no
    /// turn runs now. Such a session is *interrupted*: `cleanup` treats it
    /// as ended, and the next turn on it repairs the history.
    async fn is_interrupted(&self, id: &SessionId) -> Result<bool, StoreError> {
        if self.get(id).await?.status != SessionStatus::Active {
            return Ok(false);
        }
        let locks = self.turn_locks(id).await?;
        Ok(!locks.iter().any(|l| l.live) && locks.iter().any(|l| l.holder.is_some()))
    }

    /// The seqs of committed records of session `id` that the backend
    /// found damaged and set aside (the fs store's `log.quarantine.jsonl`):
    /// they are missing from reads and their seqs are never reused. Backends
    /// that cannot damage a committed record return none.
    async fn quarantined(&self, id: &SessionId) -> Result<Vec<u64>, StoreError> {
        self.get(id).await?;
        Ok(Vec::new())
    }

    // ---- provided operations -------------------------------------------

    /// [`Store::read`], with `map` applied to every record before it is
    /// returned (an error from `map` fails the read). A backend that
    /// decodes records on several threads applies `map` there, as each
    /// record is decoded, so a wrapping layer's per-record work (opening
    /// sealed records: encryption at rest) shares those threads and finds
    /// the record in cache; a backend that keeps records as JSON offers
    /// each one to [`MapRecord::rewrite_json`] before parsing it. Wrappers
    /// forward it to the store they wrap.
    async fn read_mapped(
        &self,
        id: &SessionId,
        from_seq: u64,
        limit: Option<usize>,
        map: RecordMap,
    ) -> Result<Vec<Record>, StoreError> {
        let mut records = self.read(id, from_seq, limit).await?;
        records.iter_mut().try_for_each(|r| map.map(r))?;
        Ok(records)
    }

    /// The whole log.
    async fn read_all(&self, id: &SessionId) -> Result<Vec<Record>, StoreError> {
        self.read(id, 1, None).await
    }

    /// The session folded from its whole log.
    async fn view(&self, id: &SessionId) -> Result<SessionView, StoreError> {
        Ok(SessionView::from_log(self.read_all(id).await?)?)
    }

    /// Resolves an exact id or a unique prefix of one.
    async fn resolve(&self, id_or_prefix: &str) -> Result<SessionId, StoreError> {
        validate_id(id_or_prefix)?;
        let exact = SessionId::parse(id_or_prefix)?;
        match self.get(&exact).await {
            Ok(_) => return Ok(exact),
            Err(StoreError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        let mut ids = self.find_ids(id_or_prefix, 11).await?;
        match ids.len() {
            0 => Err(StoreError::NoMatch(id_or_prefix.to_string())),
            1 => Ok(ids.remove(0)),
            _ => Err(StoreError::Ambiguous {
                prefix: id_or_prefix.to_string(),
                candidates: ids.into_iter().map(SessionId::into_string).collect(),
            }),
        }
    }

    /// Appends records after whatever the head is now, retrying on
    /// conflicts. Only for changes that do not depend on the log's content
    /// (renames, metadata); conversation writes use `append` with the seq
    /// they read.
    async fn append_anywhere(
        &self,
        id: &SessionId,
        kinds: Vec<RecordKind>,
    ) -> Result<SessionMeta, StoreError> {
        append_at_head(self, id, |_| Ok(kinds.clone())).await
    }

    /// Changes name, description, model or metadata (a `meta` record). A
    /// name is trimmed and checked ([`crate::session::check_name`]: too
    /// long is [`StoreError::Invalid`]); an empty one clears it.
    async fn update_meta(
        &self,
        id: &SessionId,
        mut patch: MetaPatch,
    ) -> Result<SessionMeta, StoreError> {
        if let Some(name) = &patch.name {
            patch.name = Some(checked_name(name)?);
        }
        if patch.is_empty() {
            return self.get(id).await;
        }
        self.append_anywhere(id, vec![RecordKind::Meta(patch)])
            .await
    }

    /// Moves the session to `to` if the lifecycle allows it from its current
    /// status ([`SessionStatus::can_become`]), else [`StoreError::Refused`]
    /// naming the current status. Checked and written atomically (a
    /// conflicting writer makes it re-check).
    async fn transition(
        &self,
        id: &SessionId,
        to: SessionStatus,
        error: Option<String>,
        details: Option<Value>,
    ) -> Result<SessionMeta, StoreError> {
        append_at_head(self, id, |session| {
            transition_batch(session, to, error.clone(), details.clone(), |s| {
                format!("session {id} is {}: it cannot become {to}", s.status)
            })
        })
        .await
    }

    /// Forks `id` at `point` into a new session (`new_id`, or a fresh
    /// UUIDv7). The new session holds the prefix of the log (messages,
    /// state, branches, mail) and `forked_from` (its lineage); it is a
    /// top-level session of its own (no `parent_id`, its own trace), which
    /// listings show and `weft continue` takes; tool calls left unanswered at the cut get a synthetic
    /// "interrupted by fork" result. The source is not touched.
    async fn fork(
        &self,
        id: &SessionId,
        point: ForkPoint,
        new_id: Option<SessionId>,
        name: Option<String>,
    ) -> Result<SessionMeta, StoreError> {
        let name = name.map(|n| checked_name(&n)).transpose()?;
        let records = self.read_all(id).await?;
        let source = SessionView::from_records(&records)?.meta;
        let plan = fork_plan(&source, &records, point)?;
        let mut meta = SessionMeta::new(
            new_id.unwrap_or_else(SessionId::new_v7),
            source.project.clone(),
            source.profile.clone(),
        );
        meta.model = source.model.clone();
        meta.user = source.user.clone();
        if let Some(tenant) = source.tenant() {
            meta.set_tenant(tenant);
        }
        meta.name = name.filter(|n| !n.is_empty());
        meta.forked_from = Some(ForkedFrom {
            session_id: source.id.clone(),
            turn: plan.turn,
            seq: plan.cut_seq,
        });
        self.create(meta, plan.records).await
    }

    /// Removes sessions not updated for `older_than`, never an active one
    /// unless it is interrupted ([`Store::is_interrupted`]: its process
    /// exited mid-turn): that one is first marked failed ("the process
    /// running it exited"), then removed.
    async fn cleanup(
        &self,
        older_than: Duration,
        dry_run: bool,
    ) -> Result<CleanupReport, StoreError> {
        self.cleanup_reporting(older_than, dry_run, &crate::progress::NoProgress)
            .await
    }

    /// [`Store::cleanup`], telling `progress` how many sessions it is
    /// about to remove and each one it is done with.
    async fn cleanup_reporting(
        &self,
        older_than: Duration,
        dry_run: bool,
        progress: &dyn Progress,
    ) -> Result<CleanupReport, StoreError> {
        cleanup::cleanup(self, older_than, dry_run, progress).await
    }
}

/// The most attempts a checked write ([`append_at_head`],
/// [`crate::log::append_checked`], [`crate::log::update_session`]) makes
/// before giving up on a session that keeps changing.
pub const UPDATE_ATTEMPTS: usize = 16;

/// `name` trimmed, or [`StoreError::Invalid`] when it is longer than
/// [`crate::session::MAX_NAME_CHARS`].
pub fn checked_name(name: &str) -> Result<String, StoreError> {
    crate::session::check_name(name)
        .map(str::to_string)
        .map_err(|e| StoreError::Invalid(e.to_string()))
}

/// A lifecycle transition decided against `session`: the `status` record
/// moving it to `to`, or [`StoreError::Refused`] (from `refusal`) when
/// [`SessionStatus::can_become`] does not allow it from its status there.
pub fn transition_batch(
    session: &SessionMeta,
    to: SessionStatus,
    error: Option<String>,
    details: Option<Value>,
    refusal: impl FnOnce(&SessionMeta) -> String,
) -> Result<Vec<RecordKind>, StoreError> {
    if !session.status.can_become(to) {
        return Err(StoreError::Refused(refusal(session)));
    }
    Ok(vec![RecordKind::Status(StatusChange {
        from: session.status,
        to,
        error,
        details,
    })])
}
