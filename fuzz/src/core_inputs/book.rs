//! What the application side knows about one node's lifetime: the locks and queries it asked for, in
//! which phase each is, and the floor the node asked to persist. Every event is checked against it, so
//! an event for an unknown id, or one out of a lock's life cycle, fails the target.

use dsync_core::quorum::quorum;
use dsync_core::{Event, Instant, LockId, Mode, NodeSet, QueryId};
use std::collections::{BTreeMap, BTreeSet};

/// Where a lock is in its life, as the application sees it from the events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Asked for; `Acquired` or `Failed` comes next.
    Pending,
    /// `Acquired`; `Lost` may come, or the application unlocks.
    Held,
    /// Unlocked while held; `Released` comes next.
    Releasing,
}

/// One node lifetime's application state.
#[derive(Debug, Default)]
pub struct Book {
    locks: BTreeMap<LockId, (Mode, Phase)>,
    issued: BTreeSet<LockId>,
    queries: BTreeSet<QueryId>,
    /// The latest floor the node asked to persist and the embedder has not acknowledged.
    pub floor_requested: Option<u64>,
    /// The latest floor acknowledged: what a durable restart gets back.
    pub floor_persisted: Option<u64>,
    /// Whether this start reported `Event::Serving` (at most once).
    pub serving: bool,
}

impl Book {
    /// The `i`-th live lock, or an id the node never issued.
    pub fn pick(&self, i: u8) -> LockId {
        let live: Vec<LockId> = self.locks.keys().copied().collect();
        live.get(usize::from(i)).copied().unwrap_or(LockId(u64::MAX - u64::from(i)))
    }

    /// `lock()` returned `id` for a lock in `mode`.
    pub fn issued(&mut self, id: LockId, mode: Mode) {
        assert!(self.issued.insert(id), "lock id {id:?} issued twice in one lifetime");
        self.locks.insert(id, (mode, Phase::Pending));
    }

    /// `unlock(id)` returned `known`.
    pub fn unlocked(&mut self, id: LockId, known: bool) {
        assert_eq!(known, self.locks.contains_key(&id), "unlock({id:?}) disagrees on whether the lock exists");
        match self.locks.get(&id).map(|(_, p)| *p) {
            Some(Phase::Held) => self.set(id, Phase::Releasing),
            Some(Phase::Pending) => {
                self.locks.remove(&id); // an acquisition unlocked is cancelled: no event follows
            }
            _ => {}
        }
    }

    /// `cancel(id)` returned `known`; no event follows for it.
    pub fn cancelled(&mut self, id: LockId, known: bool) {
        assert_eq!(known, self.locks.remove(&id).is_some(), "cancel({id:?}) disagrees on whether the lock exists");
    }

    /// A query or force-unlock was started.
    pub fn query_started(&mut self, id: QueryId) {
        assert!(self.queries.insert(id), "query id {id:?} issued twice");
    }

    fn set(&mut self, id: LockId, phase: Phase) {
        if let Some(entry) = self.locks.get_mut(&id) {
            entry.1 = phase;
        }
    }

    fn phase(&self, id: LockId, event: &Event) -> (Mode, Phase) {
        match self.locks.get(&id) {
            Some(&entry) => entry,
            None => panic!("{event:?} for a lock the application does not have"),
        }
    }

    /// Checks `event` against the book and applies it. `n`: cluster size; `persist`: whether the node
    /// persists its floor; `now`: when the event was emitted.
    pub fn event(&mut self, event: &Event, n: usize, persist: bool, now: Instant) {
        let all = NodeSet::all(n);
        match *event {
            Event::Acquired { lock, token, grantors, valid_until } => {
                let (mode, phase) = self.phase(lock, event);
                assert_eq!(phase, Phase::Pending, "{event:?} for a lock not being acquired");
                assert!(grantors.is_subset(all), "{event:?} names grantors outside the cluster");
                assert!(grantors.len() >= quorum(n, mode), "{event:?} without a {mode:?} quorum of {n}");
                assert!(mode == Mode::Read || token >= 1, "{event:?}: a write lock without a fencing token");
                assert!(valid_until > Instant::ZERO && valid_until.as_nanos() < u64::MAX, "{event:?}: {now:?}");
                self.set(lock, Phase::Held);
            }
            Event::Failed { lock, .. } => {
                let (_, phase) = self.phase(lock, event);
                assert_eq!(phase, Phase::Pending, "{event:?} for a lock not being acquired");
                self.locks.remove(&lock);
            }
            Event::Lost { lock } => {
                let (_, phase) = self.phase(lock, event);
                assert_eq!(phase, Phase::Held, "{event:?} for a lock not held");
                self.locks.remove(&lock);
            }
            Event::Released { lock, confirmed, grantors } => {
                let (_, phase) = self.phase(lock, event);
                assert_eq!(phase, Phase::Releasing, "{event:?} for a lock not being released");
                assert!(confirmed <= grantors && grantors <= n, "{event:?} in a cluster of {n}");
                self.locks.remove(&lock);
            }
            Event::Holders { query, answered, .. } | Event::ForceUnlocked { query, answered, .. } => {
                assert!(self.queries.remove(&query), "{event:?} for a query not running");
                assert!(answered.is_subset(all), "{event:?} names nodes outside the cluster");
            }
            Event::PersistFloor { floor } => {
                assert!(persist, "{event:?} from a node that does not persist its floor");
                self.floor_requested = Some(floor);
            }
            Event::Serving => {
                assert!(!self.serving, "{event:?} reported twice by one start");
                self.serving = true;
            }
            Event::Quarantined { until } => assert!(until > now, "{event:?}: a quarantine already over at {now:?}"),
            // The book must learn every new event before the fuzzer can trust it.
            _ => panic!("{event:?}: an event the book does not know"),
        }
    }
}
