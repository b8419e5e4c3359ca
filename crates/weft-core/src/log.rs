//! Appending to a session's log when other writers append too.
//!
//! [`SessionLog`] is one writer's handle on a session's log. It remembers
//! the session as of the head it last wrote or read ([`SessionMeta`],
//! whose `last_seq` is that head), numbers each batch to follow it and
//! appends through the [`Store`]. Writers in one process share a handle
//! (its lock serialises their batches, so concurrent branches never
//! conflict with each other). Appended records — and the records of other
//! writers a rebased append took in — are published to the session's
//! [`Feed`], in seq order.
//!
//! A writer in another process may have appended in between. What happens
//! then is decided in one place, [`append_checked`]: the batch is decided
//! against the head it is appended after. On a conflict it reads what the
//! others appended, folds it into the session, and asks the writer's
//! `decide` again — which re-checks what the batch depends on (a status
//! transition re-checks [`crate::session::SessionStatus::can_become`], a turn checks
//! [`turn_conflict`]) and either gives the batch to append at the new head
//! (a rebase) or refuses. Nothing is ever blindly retried.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Mutex;

use crate::error::SessionError;
use crate::feed::{FEED_CAPACITY, Feed};
use crate::id::{BranchId, SessionId, TurnId};
use crate::record::{Record, RecordKind};
use crate::session::SessionMeta;
use crate::store::{Store, StoreError, UPDATE_ATTEMPTS};
use crate::view::SessionView;

pub use crate::store::transition_batch;

/// Appends the records `decide` gives, deciding them against the head they
/// are appended after. `known` is the session as the writer last saw it
/// (its `last_seq` the head it expects). `decide(session, others)` gets
/// the session at the head the batch would follow and the records other
/// writers appended since `known`; it returns the batch (empty: nothing to
/// write) or refuses. On a conflict the new records are read, folded into
/// `known` and `decide` is asked again (bounded by [`UPDATE_ATTEMPTS`]).
///
/// With `turn: Some((turn, branch))` the records are stamped as written by
/// that turn ([`Record::batch_for_turn`]).
///
/// Returns the records written and the records of others taken in;
/// `known` is left at the new head.
pub async fn append_checked<S, F>(
    store: &S,
    id: &SessionId,
    known: &mut SessionMeta,
    turn: Option<(&TurnId, &BranchId)>,
    mut decide: F,
) -> Result<(Vec<Record>, Vec<Record>), StoreError>
where
    S: Store + ?Sized,
    F: FnMut(&SessionMeta, &[Record]) -> Result<Vec<RecordKind>, StoreError> + Send,
{
    let mut others: Vec<Record> = Vec::new();
    let mut attempt = 0;
    loop {
        let kinds = decide(known, &others)?;
        if kinds.is_empty() {
            return Ok((Vec::new(), others));
        }
        let head = known.last_seq;
        let batch = match turn {
            Some((turn, branch)) => Record::batch_for_turn(head, kinds, turn, branch),
            None => Record::batch(head, kinds),
        };
        match store.append(id, head, batch.clone()).await {
            Ok(meta) => {
                *known = meta;
                return Ok((batch, others));
            }
            Err(e) if e.is_conflict() && attempt < UPDATE_ATTEMPTS => {
                attempt += 1;
                let newer = store.read(id, head + 1, None).await?;
                if newer.first().is_some_and(|r| r.seq == head + 1) {
                    for r in &newer {
                        known.apply(r);
                    }
                    others.extend(newer);
                } else {
                    // The log is not where we thought (it shrank, or the
                    // records are not readable yet): start from its head.
                    *known = store.get(id).await?;
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Why records other writers appended (`others`, leaving the session as
/// `session`) conflict with a turn on `branch`, or None when the turn's
/// records can follow them. They conflict when the session ended, or when
/// they change the branch's conversation: messages on it (another turn),
/// its removal, a rewind or compaction of it, or mail delivered to it.
/// Anything else (state, metadata, other branches) does not.
pub fn turn_conflict(
    branch: &BranchId,
    session: &SessionMeta,
    others: &[Record],
) -> Option<String> {
    let id = &session.id;
    if session.status.is_ended() {
        return Some(format!(
            "session {id} was ended ({}) by another writer while this turn ran: its last records were not written; resume it to go on",
            session.status
        ));
    }
    let touched = others.iter().find(|r| match &r.kind {
        RecordKind::Message(m) => &m.branch == branch,
        RecordKind::BranchRemoved { branch: b, .. }
        | RecordKind::Rewind { branch: b, .. }
        | RecordKind::Compaction { branch: b, .. }
        | RecordKind::MailCollected { recipient: b, .. } => b == branch,
        _ => false,
    })?;
    Some(format!(
        "branch {branch} of session {id} was changed by another writer while this turn ran ({} at seq {}): its last records were not written; run the prompt again",
        touched.kind.name(),
        touched.seq
    ))
}

/// Applies a view-dependent change atomically: folds the log, lets `change`
/// compute the records (or refuse), and appends them at the head it read;
/// a concurrent writer makes it re-read and re-check.
pub async fn update_session<T, F>(
    store: &dyn Store,
    id: &SessionId,
    mut change: F,
) -> Result<T, SessionError>
where
    F: FnMut(&SessionView) -> Result<(T, Vec<RecordKind>), SessionError> + Send,
    T: Send,
{
    let mut attempt = 0;
    loop {
        let records = store.read_all(id).await?;
        let view = SessionView::from_records(&records).map_err(StoreError::from)?;
        let head = view.meta.last_seq;
        let (value, kinds) = change(&view)?;
        if kinds.is_empty() {
            return Ok(value);
        }
        match store.append(id, head, Record::batch(head, kinds)).await {
            Ok(_) => return Ok(value),
            Err(e) if e.is_conflict() && attempt < UPDATE_ATTEMPTS => attempt += 1,
            Err(e) => return Err(e.into()),
        }
    }
}

struct Inner {
    store: Arc<dyn Store>,
    id: SessionId,
    known: Mutex<SessionMeta>,
    /// Whether records of other writers were taken in since
    /// [`SessionLog::take_outside_writes`] was last called.
    outside: AtomicBool,
    feed: Feed,
}

/// A shared handle for appending to one session's log.
#[derive(Clone)]
pub struct SessionLog {
    inner: Arc<Inner>,
}

impl SessionLog {
    /// A handle on the session `meta` describes (its `last_seq` the head),
    /// with a feed of its own.
    pub fn new(store: Arc<dyn Store>, meta: SessionMeta) -> Self {
        let feed = Feed::new(store.clone(), meta.id.clone(), FEED_CAPACITY);
        Self::with_feed(store, meta, feed)
    }

    /// A handle on the session `meta` describes, publishing to `feed`.
    pub fn with_feed(store: Arc<dyn Store>, meta: SessionMeta, feed: Feed) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                id: meta.id.clone(),
                known: Mutex::new(meta),
                outside: AtomicBool::new(false),
                feed,
            }),
        }
    }

    /// The feed appended records are published to.
    pub fn feed(&self) -> &Feed {
        &self.inner.feed
    }

    /// The session id.
    pub fn id(&self) -> &SessionId {
        &self.inner.id
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The head seq this handle knows.
    pub async fn head(&self) -> u64 {
        self.inner.known.lock().await.last_seq
    }

    /// Appends `kinds` as one atomic batch after the known head; any
    /// record another writer appended first makes it fail with
    /// [`StoreError::Conflict`]. Returns the records written and the
    /// metadata after them.
    pub async fn append(
        &self,
        kinds: Vec<RecordKind>,
    ) -> Result<(Vec<Record>, SessionMeta), StoreError> {
        let mut known = self.inner.known.lock().await;
        let head = known.last_seq;
        self.write_at(&mut known, head, kinds).await
    }

    /// Appends `kinds` only if the head is still `expected` (the head a
    /// caller read its view at); otherwise [`StoreError::Conflict`].
    pub async fn append_at(
        &self,
        expected: u64,
        kinds: Vec<RecordKind>,
    ) -> Result<(Vec<Record>, SessionMeta), StoreError> {
        let mut known = self.inner.known.lock().await;
        self.write_at(&mut known, expected, kinds).await
    }

    async fn write_at(
        &self,
        known: &mut SessionMeta,
        expected: u64,
        kinds: Vec<RecordKind>,
    ) -> Result<(Vec<Record>, SessionMeta), StoreError> {
        if known.last_seq != expected {
            return Err(StoreError::Conflict {
                id: self.inner.id.to_string(),
                expected,
                actual: known.last_seq,
            });
        }
        let records = Record::batch(expected, kinds);
        let meta = self
            .inner
            .store
            .append(&self.inner.id, expected, records.clone())
            .await?;
        *known = meta.clone();
        self.inner.feed.publish(&records).await;
        Ok((records, meta))
    }

    /// Appends what `decide` gives, decided against the head it follows
    /// (see [`append_checked`]): other writers' records are taken in and
    /// `decide` re-asked, never blindly retried. Returns the records
    /// written and the metadata after them.
    pub async fn append_if<F>(&self, decide: F) -> Result<(Vec<Record>, SessionMeta), StoreError>
    where
        F: FnMut(&SessionMeta, &[Record]) -> Result<Vec<RecordKind>, StoreError> + Send,
    {
        self.append_if_as(None, decide).await
    }

    /// [`SessionLog::append_if`], the records stamped as written by `turn`
    /// (a turn id and its branch) when one is given.
    pub async fn append_if_as<F>(
        &self,
        turn: Option<(&TurnId, &BranchId)>,
        decide: F,
    ) -> Result<(Vec<Record>, SessionMeta), StoreError>
    where
        F: FnMut(&SessionMeta, &[Record]) -> Result<Vec<RecordKind>, StoreError> + Send,
    {
        let mut known = self.inner.known.lock().await;
        let result =
            append_checked(&*self.inner.store, &self.inner.id, &mut known, turn, decide).await;
        let (written, others) = match result {
            Ok(done) => done,
            Err(e) => {
                // What other writers appended is published even when this
                // batch was refused.
                self.inner.feed.catch_up().await;
                return Err(e);
            }
        };
        if !others.is_empty() {
            self.inner.outside.store(true, Ordering::SeqCst);
            self.inner.feed.publish(&others).await;
        }
        self.inner.feed.publish(&written).await;
        Ok((written, known.clone()))
    }

    /// Appends the records of turn `turn` on `branch` (stamped with both)
    /// after whatever other writers appended, unless that conflicts with
    /// the turn ([`turn_conflict`]: then [`StoreError::Refused`] saying
    /// why).
    pub async fn append_for_turn(
        &self,
        turn: &TurnId,
        branch: &BranchId,
        kinds: Vec<RecordKind>,
    ) -> Result<(Vec<Record>, SessionMeta), StoreError> {
        self.append_if_as(Some((turn, branch)), |session, others| match turn_conflict(
            branch, session, others,
        ) {
            Some(why) => Err(StoreError::Refused(why)),
            None => Ok(kinds.clone()),
        })
        .await
    }

    /// Appends records that do not depend on the log's content (state
    /// deltas, metadata) after whatever other writers appended.
    pub async fn append_anywhere(
        &self,
        kinds: Vec<RecordKind>,
    ) -> Result<(Vec<Record>, SessionMeta), StoreError> {
        self.append_if(|_, _| Ok(kinds.clone())).await
    }

    /// Whether records of other writers were taken in (by a rebased
    /// append) since the last call; clears the flag. Caches of the
    /// session's history must then be reloaded.
    pub fn take_outside_writes(&self) -> bool {
        self.inner.outside.swap(false, Ordering::SeqCst)
    }

    /// Re-reads the head from the store (after a conflict, to accept the
    /// other writer's records).
    pub async fn refresh(&self) -> Result<SessionMeta, StoreError> {
        let mut known = self.inner.known.lock().await;
        let meta = self.inner.store.get(&self.inner.id).await?;
        *known = meta.clone();
        Ok(meta)
    }
}
