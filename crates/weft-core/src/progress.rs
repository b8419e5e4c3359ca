//! Progress of long work over many items (a store's cleanup, an import,
//! a check), reported to whoever shows it — a progress bar in the CLI,
//! nothing in the daemon. The work knows nothing of how it is shown.

/// Told how far long work has come. Both methods do nothing by default.
pub trait Progress: Send + Sync {
    /// The work has `total` items (called again when it learns better).
    fn start(&self, total: u64) {
        let _ = total;
    }

    /// `n` more items are about to be done (or are done).
    fn advance(&self, n: u64) {
        let _ = n;
    }
}

/// Reports nowhere.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}
