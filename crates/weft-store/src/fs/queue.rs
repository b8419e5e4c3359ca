//! The queue of index row updates an append leaves behind, and the worker
//! thread that applies them (see [`IndexQueue`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use weft_core::SessionId;
use weft_core::session::SessionMeta;

use super::index::Index;

/// One index row update queued by an append.
struct RowUpdate {
    ticket: u64,
    dir_slug: String,
    meta: SessionMeta,
    log_bytes: u64,
}

/// What the index worker receives.
enum QueueMsg {
    /// A row to update.
    Update(Box<RowUpdate>),
    /// Apply what is queued now (a reader is waiting).
    Flush,
}

/// How long the index worker gathers updates before applying them (unless
/// a reader asks for them first).
const INDEX_FLUSH_DELAY: std::time::Duration = std::time::Duration::from_millis(20);

/// The queue of index row updates and its worker thread. An append's
/// durability does not depend on its index row, so the row is updated after
/// `append` returns, by a thread that gathers updates for up to
/// [`INDEX_FLUSH_DELAY`] and applies them in one transaction (the newest
/// per session). Index reads in this process first have everything queued
/// before them applied (read your writes); other processes see a row at
/// most that much late. A crash that loses queued updates is repaired by
/// the next reconcile (the sessions are in `touched`).
pub(super) struct IndexQueue {
    tx: Mutex<Option<std::sync::mpsc::Sender<QueueMsg>>>,
    issued: AtomicU64,
    done: Arc<(Mutex<u64>, std::sync::Condvar)>,
    worker: Mutex<Option<std::thread::JoinHandle<()>>>,
}

fn index_worker(
    index: Arc<Index>,
    rx: std::sync::mpsc::Receiver<QueueMsg>,
    progress: Arc<(Mutex<u64>, std::sync::Condvar)>,
) {
    use std::sync::mpsc::RecvTimeoutError;
    let mut latest: HashMap<SessionId, RowUpdate> = HashMap::new();
    let mut ticket = 0u64;
    let mut open = true;
    while open {
        // Wait for the first update, then gather until the delay passes, a
        // reader asks, or the batch is large.
        let deadline = match rx.recv() {
            Ok(QueueMsg::Update(u)) => {
                ticket = ticket.max(u.ticket);
                latest.insert(u.meta.id.clone(), *u);
                Some(std::time::Instant::now() + INDEX_FLUSH_DELAY)
            }
            Ok(QueueMsg::Flush) => None,
            Err(_) => break,
        };
        if let Some(deadline) = deadline {
            while latest.len() < 256 {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                match rx.recv_timeout(left) {
                    Ok(QueueMsg::Update(u)) => {
                        ticket = ticket.max(u.ticket);
                        let newer = latest
                            .get(&u.meta.id)
                            .is_none_or(|have| have.meta.last_seq < u.meta.last_seq);
                        if newer {
                            latest.insert(u.meta.id.clone(), *u);
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
            let batch: Vec<(String, SessionMeta, u64)> = latest
                .drain()
                .map(|(_, u)| (u.dir_slug, u.meta, u.log_bytes))
                .collect();
            if let Err(e) = index.update_appended(&batch) {
                tracing::warn!(error = %e, "cannot update the index; the next open repairs it");
            }
        }
        let (lock, cv) = &*progress;
        let mut d = lock.lock().unwrap_or_else(|p| p.into_inner());
        *d = (*d).max(ticket);
        cv.notify_all();
    }
}

impl IndexQueue {
    /// Starts the worker thread (updates apply inline without one).
    pub(super) fn start(index: Arc<Index>) -> Self {
        let (tx, rx) = std::sync::mpsc::channel::<QueueMsg>();
        let done = Arc::new((Mutex::new(0u64), std::sync::Condvar::new()));
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

    /// Queues an update; applies it here when there is no worker.
    pub(super) fn push(&self, index: &Index, dir_slug: &str, meta: &SessionMeta, log_bytes: u64) {
        let ticket = self.issued.fetch_add(1, Ordering::SeqCst) + 1;
        let update = RowUpdate {
            ticket,
            dir_slug: dir_slug.to_string(),
            meta: meta.clone(),
            log_bytes,
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
            if let Err(e) = index.update_appended(&[(u.dir_slug, u.meta, u.log_bytes)]) {
                tracing::warn!(error = %e, "cannot update the index; the next open repairs it");
            }
            let (lock, cv) = &*self.done;
            let mut d = lock.lock().unwrap_or_else(|p| p.into_inner());
            *d = (*d).max(ticket);
            cv.notify_all();
        }
    }

    /// Has every update queued so far applied, and waits for it.
    pub(super) fn barrier(&self) {
        let target = self.issued.load(Ordering::SeqCst);
        let (lock, cv) = &*self.done;
        if *lock.lock().unwrap_or_else(|p| p.into_inner()) >= target {
            return;
        }
        if let Some(tx) = self.tx.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            let _ = tx.send(QueueMsg::Flush);
        }
        let mut d = lock.lock().unwrap_or_else(|p| p.into_inner());
        while *d < target {
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
