//! One resource's entry in the locker's table: its writer, readers, fencing mark and ranked waiters.

use super::Key;
use crate::rng::mix64;
use crate::time::Instant;
use crate::Mode;
use alloc::boxed::Box;
use alloc::vec::Vec;

#[derive(Clone, Copy, Debug)]
pub(super) struct Reservation {
    pub(super) owner: usize,
    pub(super) ticket: u64,
    pub(super) mode: Mode,
    pub(super) until: Instant,
}
/// Waiters remembered per resource; beyond this the worst-ranked is forgotten (it still retries on its own).
pub(super) const MAX_WAITERS: usize = 32;

#[derive(Debug, Default)]
pub(super) struct Res {
    pub(super) writer: Option<Key>,
    /// Highest write token granted on this resource (at least the fencing floor).
    pub(super) mark: u64,
    /// Readers and waiters, boxed and absent while there are none: most resources have one writer and
    /// no contention, and this entry is paid once per held resource (see `examples/held.rs`).
    pub(super) crowd: Option<Box<Crowd>>,
}

#[derive(Debug, Default)]
pub(super) struct Crowd {
    pub(super) readers: Vec<Key>,
    /// Locks waiting for this resource, best-ranked first. The first live one holds the reservation; when
    /// the resource frees, it is woken (with the read waiters right behind it, which may share).
    pub(super) waiters: Vec<Reservation>,
}

impl Res {
    pub(super) fn readers(&self) -> &[Key] {
        self.crowd.as_deref().map_or(&[], |c| &c.readers)
    }

    pub(super) fn waiters(&self) -> &[Reservation] {
        self.crowd.as_deref().map_or(&[], |c| &c.waiters)
    }

    pub(super) fn crowd(&mut self) -> &mut Crowd {
        self.crowd.get_or_insert_with(Box::default)
    }

    /// Frees the crowd once it is empty.
    pub(super) fn tidy(&mut self) {
        if self.crowd.as_ref().is_some_and(|c| c.readers.is_empty() && c.waiters.is_empty()) {
            self.crowd = None;
        }
    }

    pub(super) fn is_free(&self) -> bool {
        self.writer.is_none() && self.readers().is_empty()
    }

    pub(super) fn conflicts(&self, mode: Mode) -> bool {
        match mode {
            Mode::Read => self.writer.is_some(),
            Mode::Write => !self.is_free(),
        }
    }

    pub(super) fn live_reservation(&self, now: Instant) -> Option<Reservation> {
        self.waiters().iter().find(|r| r.until > now).copied()
    }

    pub(super) fn has_waiters(&self, now: Instant) -> bool {
        self.live_reservation(now).is_some()
    }

    pub(super) fn forget_waiter(&mut self, owner: usize, ticket: u64) {
        if let Some(c) = self.crowd.as_mut() {
            c.waiters.retain(|w| (w.owner, w.ticket) != (owner, ticket));
        }
        self.tidy();
    }
}

/// The cluster-wide order of waiting locks: lower ticket first, then an agreed pseudo-random tie-break
/// (not the node index, so no node is always favoured).
pub(crate) fn priority(owner: usize, ticket: u64) -> (u64, u64) {
    (ticket, mix64(ticket.rotate_left(17) ^ owner as u64))
}
