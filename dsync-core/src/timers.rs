//! The timer table: every deadline the node is waiting for, earliest first.
//!
//! | timer            | armed while                         | fires to                                   |
//! |------------------|-------------------------------------|--------------------------------------------|
//! | `Lock(id)`       | a lock is acquiring, backing off,   | end an attempt, retry, refresh, declare    |
//! |                  | held, or releasing                  | `Lost`, or finish a release                |
//! | `Query(id)`      | a holder query / force-unlock runs  | finish it with the answers so far          |
//! | `FloorRetry`     | a restarted node recovers its floor,| ask the peers again                        |
//! |                  | or a bootstrap is undecided         |                                            |
//!
//! Locker grant expiry has its own ordered index in the locker (it is keyed by grant, not by timer), and
//! the end of a restart quarantine is reported by `Node::poll_timeout` directly (so `Event::Serving` is on time).
//! Each owner keeps the instant it armed, so re-arming removes exactly the old entry: no stale
//! entries, so [`Timers::next`] never reports a deadline nobody waits for (no busy loop).

use crate::event::{LockId, QueryId};
use crate::time::Instant;
use alloc::collections::BTreeSet;

/// What a deadline is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Timer {
    Lock(LockId),
    Query(QueryId),
    FloorRetry,
}

#[derive(Debug, Default)]
pub(crate) struct Timers(BTreeSet<(Instant, Timer)>);

impl Timers {
    /// Re-arms `timer` from `*armed` to `at` (`Instant::MAX` disarms).
    pub(crate) fn set(&mut self, timer: Timer, armed: &mut Instant, at: Instant) {
        if *armed == at {
            return;
        }
        if *armed != Instant::MAX {
            self.0.remove(&(*armed, timer));
        }
        if at != Instant::MAX {
            self.0.insert((at, timer));
        }
        *armed = at;
    }

    /// The earliest armed deadline.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.0.first().map(|(at, _)| *at)
    }

    /// Removes and returns a timer that is due at `now`; its owner must reset its armed slot.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        match self.0.first() {
            Some(&(at, _)) if at <= now => self.0.pop_first().map(|(_, t)| t),
            _ => None,
        }
    }
}
