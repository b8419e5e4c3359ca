//! Shared connections for one-statement writes: the append and the
//! kernel events.
//!
//! A pooled connection is lent to one task at a time: while a task builds
//! its next statement, decodes a reply or waits for the runtime, its
//! connection's server process sits idle, and the other writers queue for
//! a connection. The append is a single statement (its own implicit
//! transaction), so it does not need a connection of its own: the
//! PostgreSQL protocol lets one connection carry many statements in
//! flight (pipelining), which `tokio_postgres` does when several tasks
//! use one client at once. A *lane* is such a shared connection; writers
//! take lanes in turn, and each lane's server process always has the next
//! statement waiting. Measured with 64 sessions writing at once (see
//! BENCHMARKS.md, round 3).
//!
//! Lanes are taken from the store's pool (so `pool_size` still bounds the
//! connections a store opens): half of it, leaving the rest for reads and
//! transactions; none when the pool has a single connection (then a write
//! takes a pooled connection like any other use). A lane whose connection
//! closed (a server restart, a network error) is replaced on its next use.
//!
//! Only single statements may run on a lane: a transaction (`BEGIN` …
//! `COMMIT`) on a shared connection would take in the other writers'
//! statements. It knows connections and nothing of what runs on them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use deadpool_postgres::Object;

/// The lanes of one store (see the module docs).
pub(super) struct Lanes {
    slots: Vec<Mutex<Option<Arc<Object>>>>,
    next: AtomicUsize,
}

impl Lanes {
    /// The lanes for a pool of at most `pool_size` connections.
    pub(super) fn for_pool(pool_size: usize) -> Self {
        let n = pool_size / 2;
        Self {
            slots: (0..n).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// How many lanes there are (0: writes use pooled connections).
    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    /// The next lane's open connection, if it has one; else the slot to
    /// fill (see [`Lanes::fill`]).
    pub(super) fn take_turn(&self) -> Result<Arc<Object>, usize> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let slot = self.slots[i].lock().unwrap_or_else(PoisonError::into_inner);
        match slot.as_ref() {
            Some(conn) if !conn.is_closed() => Ok(conn.clone()),
            _ => Err(i),
        }
    }

    /// Puts `conn` in slot `i` (unless another task filled it meanwhile:
    /// then that connection is used and `conn` goes back to the pool).
    pub(super) fn fill(&self, i: usize, conn: Object) -> Arc<Object> {
        let mut slot = self.slots[i].lock().unwrap_or_else(PoisonError::into_inner);
        match slot.as_ref() {
            Some(open) if !open.is_closed() => open.clone(),
            _ => {
                let conn = Arc::new(conn);
                *slot = Some(conn.clone());
                conn
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_the_pool_and_none_for_a_single_connection() {
        assert_eq!(Lanes::for_pool(16).len(), 8);
        assert_eq!(Lanes::for_pool(3).len(), 1);
        assert_eq!(Lanes::for_pool(1).len(), 0);
    }

    #[test]
    fn empty_slots_are_named_in_turn() {
        let lanes = Lanes::for_pool(4);
        assert_eq!(lanes.take_turn().err(), Some(0));
        assert_eq!(lanes.take_turn().err(), Some(1));
        assert_eq!(lanes.take_turn().err(), Some(0));
    }
}
