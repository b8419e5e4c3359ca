//! [`CountingProgress`]: a [`Progress`] that remembers what it was told.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::progress::Progress;

/// Counts what long work reports: the last total it announced and how many
/// items it said it did.
#[derive(Debug, Default)]
pub struct CountingProgress {
    total: AtomicU64,
    done: AtomicU64,
}

impl CountingProgress {
    /// The last total announced (0 before any).
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::SeqCst)
    }

    /// The items reported done so far.
    pub fn done(&self) -> u64 {
        self.done.load(Ordering::SeqCst)
    }
}

impl Progress for CountingProgress {
    fn start(&self, total: u64) {
        self.total.store(total, Ordering::SeqCst);
    }

    fn advance(&self, n: u64) {
        self.done.fetch_add(n, Ordering::SeqCst);
    }
}
