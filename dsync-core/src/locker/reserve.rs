//! Reservations: the waiting locks a locker remembers per resource, and the per-lock index that lets a
//! finished or departed lock clear them.

use super::resource::{priority, Reservation, MAX_WAITERS};
use super::Locker;
use crate::outbox::Io;
use crate::time::Instant;
use crate::wire::LockMsg;
use crate::Message;
use alloc::string::String;
use alloc::vec::Vec;

impl Locker {
    /// Queues a denied request's lock as a waiter on its resources, in rank order (refreshing its entry).
    pub(super) fn reserve(&mut self, now: Instant, from: usize, m: &LockMsg, prio: (u64, u64)) {
        let until = now + self.reservation_ttl;
        let known = self.reserved.contains_key(&(from, m.ticket));
        if !known && !self.shares.may_wait(from) {
            self.sweep_reserved(now);
            if !self.shares.may_wait(from) {
                return; // more waiting locks than a well-behaved node has: denied, not remembered
            }
        }
        let mut claimed = Vec::new();
        for r in &m.resources {
            let Some(st) = self.res.get_mut(r.as_str()) else { continue };
            let waiters = &mut st.crowd().waiters;
            waiters.retain(|w| w.until > now && (w.owner, w.ticket) != (from, m.ticket));
            let at = waiters.partition_point(|w| priority(w.owner, w.ticket) < prio);
            if at < MAX_WAITERS {
                waiters.insert(at, Reservation { owner: from, ticket: m.ticket, mode: m.mode, until });
                waiters.truncate(MAX_WAITERS);
                claimed.push(r.clone());
            }
            st.tidy();
        }
        if !claimed.is_empty() && self.reserved.insert((from, m.ticket), (claimed, until)).is_none() {
            self.shares.waiter_added(from);
        }
    }

    /// Removes one lock's entry from `reserved`, keeping the per-origin count; returns its resources.
    pub(super) fn forget_reserved(&mut self, owner: usize, ticket: u64) -> Option<Vec<String>> {
        let (resources, _) = self.reserved.remove(&(owner, ticket))?;
        self.shares.waiter_removed(owner);
        Some(resources)
    }

    /// Drops expired entries of `reserved`, at most once per quarter of their lifetime, so an origin at its
    /// budget that keeps asking costs O(1) per request, not a scan each time.
    pub(super) fn sweep_reserved(&mut self, now: Instant) {
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now + self.reservation_ttl / 4;
        let shares = &mut self.shares;
        self.reserved.retain(|(owner, _), (_, until)| {
            let keep = *until > now;
            if !keep {
                shares.waiter_removed(*owner);
            }
            keep
        });
    }

    /// A lock is finished (released, cancelled, failed or lost): its reservations go.
    pub(super) fn clear_reservations(&mut self, owner: usize, ticket: u64) -> Vec<String> {
        let Some(resources) = self.forget_reserved(owner, ticket) else { return Vec::new() };
        for r in &resources {
            if let Some(st) = self.res.get_mut(r.as_str()) {
                st.forget_waiter(owner, ticket);
            }
        }
        resources
    }

    /// `peer` is down: its waiting locks lose their places (they would hold the queue until their entries
    /// expire), and a free resource whose head they were wakes its next waiter. Waiter entries only ever
    /// deny, so dropping them cannot affect safety; if the peer comes back, its locks queue again.
    pub(crate) fn forget_waiters_of(&mut self, peer: usize, now: Instant, io: &mut Io) {
        let locks: Vec<(usize, u64)> = self.reserved.keys().filter(|(owner, _)| *owner == peer).copied().collect();
        let mut freed = Vec::new();
        for (owner, ticket) in locks {
            freed.extend(self.clear_reservations(owner, ticket));
        }
        freed.sort_unstable();
        freed.dedup();
        for r in freed {
            if let Some(st) = self.res.get(r.as_str()) {
                if st.is_free() {
                    if let Some(w) = st.live_reservation(now) {
                        io.send(w.owner, Message::Wake { ticket: w.ticket });
                    }
                }
            }
        }
    }
}
