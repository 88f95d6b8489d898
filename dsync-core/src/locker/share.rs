//! Per-origin budgets of the locker: how much of the grant table and of the waiter queues one requesting
//! node may occupy.
//!
//! Why: `Limits::max_grants` alone bounds memory, but first come first served — one peer flooding lock
//! requests (a runaway application, a retry loop gone wrong) could fill the whole table and leave every
//! other node, this node's own application included, with `Overloaded` until its leases run out. So the
//! table is split in two halves:
//!
//! - a **guaranteed share** of `max_grants / (2·n)` entries for each of the `n` origins, held back for it
//!   even while it uses none of it, and
//! - a **shared pool** (the rest) that any origin may use, first come first served.
//!
//! A request is admitted when, after it, the entries held plus the guaranteed shares still unused stay
//! within `max_grants`. Hence an origin below its share is always admitted (its entries were held back),
//! a flooding origin is refused `Overloaded` once it has its share and the pool, and every other origin
//! keeps at least its share — while a lone busy origin can still use more than half of the table.
//!
//! Entries are counted per resource a grant names, not per grant: a grant of 1000 resources costs what
//! 1000 single-resource grants cost, so the budget bounds memory, not just a count.
//!
//! Waiting locks are budgeted too: a well-behaved node has at most `max_pending` locks waiting, so a
//! locker remembers at most that many reservations per origin; beyond it a request is still denied for
//! its conflict but not queued (it retries on its own, exactly like a waiter cut by the per-resource cap).
//!
//! Authenticated peers are trusted not to be malicious (any of them may force-unlock): these budgets
//! contain accidents and bound memory; they are not a defence against a peer that lies about tickets.

use alloc::vec;
use alloc::vec::Vec;

/// Per-origin accounting of grant entries and remembered waiters. Every method is O(1).
#[derive(Debug)]
pub(crate) struct Shares {
    /// Entries held back for each origin.
    reserve: usize,
    /// Entries the whole table may hold.
    max: usize,
    /// Entries held, per origin.
    held: Vec<usize>,
    /// Entries held in total.
    total: usize,
    /// Σ over origins of the part of their guaranteed share they do not use.
    unused: usize,
    /// Reservations remembered, per origin.
    waiting: Vec<usize>,
    /// Reservations one origin may have remembered.
    max_waiting: usize,
}

impl Shares {
    pub(crate) fn new(nodes: usize, max_grants: usize, max_pending: usize) -> Self {
        let reserve = max_grants / (2 * nodes.max(1));
        Shares {
            reserve,
            max: max_grants,
            held: vec![0; nodes],
            total: 0,
            unused: reserve * nodes,
            waiting: vec![0; nodes],
            max_waiting: max_pending,
        }
    }

    #[cfg(test)]
    /// Entries held by `origin`.
    pub(crate) fn held(&self, origin: usize) -> usize {
        self.held.get(origin).copied().unwrap_or(0)
    }

    #[cfg(test)]
    /// Entries held in total.
    pub(crate) fn total(&self) -> usize {
        self.total
    }

    /// Whether `origin` may take `cost` more entries without eating into another origin's share.
    pub(crate) fn admits(&self, origin: usize, cost: usize) -> bool {
        let Some(&held) = self.held.get(origin) else { return false };
        let from_own_share = cost.min(self.reserve.saturating_sub(held));
        // Invariant: total + unused ≤ max. Taking `cost`, of which `from_own_share` was held back already.
        self.total + self.unused + cost - from_own_share <= self.max
    }

    /// Whether every origin `o` may take `costs[o]` more entries at once (as [`Shares::admits`] for each, and
    /// for their sum against the shared part).
    pub(crate) fn admits_all(&self, costs: &[usize]) -> bool {
        let mut beyond_own = 0;
        for (origin, &cost) in costs.iter().enumerate().filter(|(_, &c)| c > 0) {
            let Some(&held) = self.held.get(origin) else { return false };
            beyond_own += cost - cost.min(self.reserve.saturating_sub(held));
        }
        self.total + self.unused + beyond_own <= self.max
    }

    pub(crate) fn take(&mut self, origin: usize, cost: usize) {
        let held = &mut self.held[origin];
        self.unused -= cost.min(self.reserve.saturating_sub(*held));
        *held += cost;
        self.total += cost;
    }

    pub(crate) fn give_back(&mut self, origin: usize, cost: usize) {
        let held = &mut self.held[origin];
        let unused_before = self.reserve.saturating_sub(*held);
        *held -= cost;
        self.total -= cost;
        self.unused += self.reserve.saturating_sub(*held) - unused_before;
    }

    /// Whether `origin` may have one more reservation remembered.
    pub(crate) fn may_wait(&self, origin: usize) -> bool {
        self.waiting.get(origin).is_some_and(|&w| w < self.max_waiting)
    }

    pub(crate) fn waiter_added(&mut self, origin: usize) {
        self.waiting[origin] += 1;
    }

    pub(crate) fn waiter_removed(&mut self, origin: usize) {
        self.waiting[origin] -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flooding_origin_leaves_every_other_origin_its_share() {
        let mut s = Shares::new(3, 60, 10); // share 10 each, pool 30
        let mut flood = 0;
        while s.admits(0, 1) {
            s.take(0, 1);
            flood += 1;
        }
        assert_eq!(flood, 40, "its own share plus the pool");
        for origin in 1..3 {
            for _ in 0..10 {
                assert!(s.admits(origin, 1));
                s.take(origin, 1);
            }
            assert!(!s.admits(origin, 1), "the pool is used up");
        }
        assert_eq!(s.total(), 60);
        s.give_back(0, 5);
        assert!(s.admits(1, 5) && !s.admits(1, 6));
    }

    #[test]
    fn accounting_returns_to_empty() {
        let mut s = Shares::new(2, 8, 1);
        s.take(0, 3);
        s.take(1, 4);
        s.give_back(0, 3);
        s.give_back(1, 4);
        assert_eq!((s.total(), s.unused, s.held(0), s.held(1)), (0, 4, 0, 0));
        assert!(s.admits(0, 6) && !s.admits(0, 7), "a lone origin gets all but the other's share");
    }
}
