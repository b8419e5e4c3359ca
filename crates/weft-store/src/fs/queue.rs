//! The queue of index row updates an append leaves behind, and the worker
//! thread that applies them and writes the sessions' derived files (see
//! [`IndexQueue`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use weft_core::SessionId;
use weft_core::session::SessionMeta;

use super::derived::{self, Locking, Outcome, Target};
use super::index::Index;

/// One append's update: its index row (the project directory plus the
/// target's metadata and log length) and its derived files' target.
struct RowUpdate {
    ticket: u64,
    dir_slug: String,
    target: Target,
}

impl RowUpdate {
    /// Folds a later update of the same session into this one.
    fn merge(&mut self, newer: RowUpdate) {
        if newer.target.meta.last_seq >= self.target.meta.last_seq {
            self.dir_slug = newer.dir_slug;
        }
        self.target.merge(newer.target);
    }
}

/// What the index worker receives.
enum QueueMsg {
    /// A row to update.
    Update(Box<RowUpdate>),
    /// Apply what is queued now (a reader is waiting).
    Flush,
}

/// How long the index worker gathers updates before applying them (unless
/// a reader asks for them first); also how long it waits before retrying
/// a session whose lock was busy.
const INDEX_FLUSH_DELAY: std::time::Duration = std::time::Duration::from_millis(20);

/// How far the worker has got: the newest ticket applied to the index,
/// and how many sessions' derived files wait for a retry.
#[derive(Debug, Default)]
struct Done {
    ticket: u64,
    derived_waiting: usize,
}

type Progress = Arc<(Mutex<Done>, std::sync::Condvar)>;

/// The queue of index row updates and its worker thread. An append's
/// durability does not depend on its index row nor on its derived files
/// (`transcript.jsonl`, `metadata.json`: see `derived`), so both are
/// brought up to date after `append` returns, by a thread that gathers
/// updates for up to [`INDEX_FLUSH_DELAY`], applies the rows in one
/// transaction (the newest per session) and then writes each session's
/// derived files once. Index reads in this process first have everything
/// queued before them applied (read your writes); other processes see a
/// row at most that much late. A crash that loses queued updates is
/// repaired by the next reconcile (the sessions are in `touched`).
pub(super) struct IndexQueue {
    tx: Mutex<Option<std::sync::mpsc::Sender<QueueMsg>>>,
    issued: AtomicU64,
    done: Progress,
    worker: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// Brings one target's derived files up to date, logging a failure.
fn derive(target: &Target, locking: Locking) -> Outcome {
    match derived::bring_up_to_date(target, locking) {
        Ok(outcome) => outcome,
        Err(e) => {
            tracing::warn!(session = %target.meta.id, error = %e, "cannot update transcript.jsonl or metadata.json; the next append repairs them");
            Outcome::Done
        }
    }
}

fn index_worker(index: Arc<Index>, rx: std::sync::mpsc::Receiver<QueueMsg>, progress: Progress) {
    use std::sync::mpsc::RecvTimeoutError;
    let mut latest: HashMap<SessionId, RowUpdate> = HashMap::new();
    let mut waiting: HashMap<SessionId, Target> = HashMap::new();
    let mut ticket = 0u64;
    let mut open = true;
    while open {
        // Wait for the first update (or the retry of a busy session), then
        // gather until the delay passes, a reader asks, or the batch is
        // large.
        let first = if waiting.is_empty() {
            rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            rx.recv_timeout(INDEX_FLUSH_DELAY)
        };
        let deadline = match first {
            Ok(QueueMsg::Update(u)) => {
                ticket = ticket.max(u.ticket);
                latest.insert(u.target.meta.id.clone(), *u);
                Some(std::time::Instant::now() + INDEX_FLUSH_DELAY)
            }
            Ok(QueueMsg::Flush) | Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => {
                open = false;
                None
            }
        };
        if let Some(deadline) = deadline {
            while latest.len() < 256 {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                match rx.recv_timeout(left) {
                    Ok(QueueMsg::Update(u)) => {
                        ticket = ticket.max(u.ticket);
                        match latest.get_mut(&u.target.meta.id) {
                            Some(have) => have.merge(*u),
                            None => {
                                latest.insert(u.target.meta.id.clone(), *u);
                            }
                        }
                    }
                    Ok(QueueMsg::Flush) | Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => {
                        open = false;
                        break;
                    }
                }
            }
        }
        if !latest.is_empty() {
            let batch: Vec<(&str, &SessionMeta, u64)> = latest
                .values()
                .map(|u| (u.dir_slug.as_str(), &u.target.meta, u.target.log_bytes))
                .collect();
            if let Err(e) = index.update_appended(&batch) {
                tracing::warn!(error = %e, "cannot update the index; the next open repairs it");
            }
            for (id, u) in latest.drain() {
                match waiting.get_mut(&id) {
                    Some(have) => have.merge(u.target),
                    None => {
                        waiting.insert(id, u.target);
                    }
                }
            }
        }
        // The last round (the store is closing) waits for busy sessions.
        let locking = if open { Locking::Try } else { Locking::Wait };
        waiting.retain(|_, target| derive(target, locking) == Outcome::Busy);
        if !open {
            waiting.clear();
        }
        let (lock, cv) = &*progress;
        let mut d = lock.lock().unwrap_or_else(|p| p.into_inner());
        d.ticket = d.ticket.max(ticket);
        d.derived_waiting = waiting.len();
        cv.notify_all();
    }
}

impl IndexQueue {
    /// Starts the worker thread (updates apply inline without one).
    pub(super) fn start(index: Arc<Index>) -> Self {
        let (tx, rx) = std::sync::mpsc::channel::<QueueMsg>();
        let done: Progress = Arc::new((Mutex::new(Done::default()), std::sync::Condvar::new()));
        let progress = done.clone();
        let worker = std::thread::Builder::new()
            .name("weft-fs-index".into())
            .spawn(move || index_worker(index, rx, progress))
            .ok();
        Self {
            tx: Mutex::new(worker.as_ref().map(|_| tx)),
            issued: AtomicU64::new(0),
            done,
            worker: Mutex::new(worker),
        }
    }

    /// Queues an append's update; applies it here when there is no worker
    /// — the caller holds the session's lock then, so the derived files
    /// are written under it.
    pub(super) fn push(&self, index: &Index, dir_slug: &str, target: Target) {
        let ticket = self.issued.fetch_add(1, Ordering::SeqCst) + 1;
        let update = RowUpdate {
            ticket,
            dir_slug: dir_slug.to_string(),
            target,
        };
        let unsent = match self.tx.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            Some(tx) => tx
                .send(QueueMsg::Update(Box::new(update)))
                .err()
                .and_then(|e| match e.0 {
                    QueueMsg::Update(u) => Some(*u),
                    QueueMsg::Flush => None,
                }),
            None => Some(update),
        };
        if let Some(u) = unsent {
            let t = &u.target;
            if let Err(e) = index.update_appended(&[(u.dir_slug.as_str(), &t.meta, t.log_bytes)]) {
                tracing::warn!(error = %e, "cannot update the index; the next open repairs it");
            }
            if let Err(e) = derived::write_locked(t, true) {
                tracing::warn!(session = %t.meta.id, error = %e, "cannot update transcript.jsonl or metadata.json; the next append repairs them");
            }
            let (lock, cv) = &*self.done;
            let mut d = lock.lock().unwrap_or_else(|p| p.into_inner());
            d.ticket = d.ticket.max(ticket);
            cv.notify_all();
        }
    }

    /// Has every update queued so far applied to the index, and waits for
    /// it; with `derived`, also waits until the derived files of every
    /// session are written (none waits for a busy lock).
    pub(super) fn barrier(&self, derived: bool) {
        let target = self.issued.load(Ordering::SeqCst);
        let (lock, cv) = &*self.done;
        let reached = |d: &Done| d.ticket >= target && (!derived || d.derived_waiting == 0);
        if reached(&lock.lock().unwrap_or_else(|p| p.into_inner())) {
            return;
        }
        if let Some(tx) = self.tx.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            let _ = tx.send(QueueMsg::Flush);
        }
        let mut d = lock.lock().unwrap_or_else(|p| p.into_inner());
        while !reached(&d) {
            let (next, timeout) = cv
                .wait_timeout(d, std::time::Duration::from_secs(10))
                .unwrap_or_else(|p| p.into_inner());
            d = next;
            if timeout.timed_out() {
                tracing::warn!("index updates are late; reading the index without them");
                break;
            }
        }
    }

    /// Applies what is queued and stops the worker.
    pub(super) fn shutdown(&self) {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(w) = self.worker.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = w.join();
        }
    }
}
