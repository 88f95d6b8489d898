//! Releasing: telling the grantors to drop a lock, and reporting when they have.

use super::{Coordinator, LockState, Phase, Releasing};
use crate::config::Config;
use crate::event::{Event, LockId};
use crate::outbox::Io;
use crate::time::Instant;
use crate::Message;
use crate::NodeSet;

impl Coordinator {
    pub(crate) fn unlock(&mut self, id: LockId, now: Instant, cfg: &Config, io: &mut Io) -> bool {
        let Some(lock) = self.locks.get_mut(&id) else { return false };
        match &lock.phase {
            Phase::Held(h) => {
                let (uid, grantors) = (h.uid, h.grantors);
                // Grantors get the release even if believed down: if they are, the transport drops it.
                io.send_to(
                    io.reachable().union(grantors),
                    Message::Unlock { uid, ticket: Some(lock.ticket), reply: true },
                );
                self.by_ticket.remove(&lock.ticket);
                let answered = io.down.intersection(grantors);
                lock.phase = Phase::Releasing(Releasing {
                    uid,
                    grantors,
                    confirmed: NodeSet::EMPTY,
                    answered,
                    timeout_at: now + cfg.query_timeout,
                });
                self.check_release(id, io);
                self.reschedule(id, io);
                true
            }
            Phase::Releasing(_) => true,
            Phase::Acquiring(_) | Phase::Backoff(_) => self.cancel(id, io),
        }
    }

    /// Forgets a lock in any state; its grants and reservations are released.
    pub(crate) fn cancel(&mut self, id: LockId, io: &mut Io) -> bool {
        let Some(lock) = self.remove(id, io) else { return false };
        if matches!(lock.phase, Phase::Backoff(_)) && lock.attempts == 0 {
            // Held back before its first round (an undecided bootstrap): nothing was sent, nothing to release.
            self.pending -= 1;
            return true;
        }
        let (uid, granted) = match &lock.phase {
            Phase::Acquiring(r) => (r.uid, r.granted),
            Phase::Backoff(_) => (lock.last_uid, NodeSet::EMPTY),
            Phase::Held(h) => (h.uid, h.grantors),
            Phase::Releasing(_) => return true, // its unlock already went out
        };
        if matches!(lock.phase, Phase::Acquiring(_) | Phase::Backoff(_)) {
            self.pending -= 1;
        }
        // Grantors get the release even if believed down: if they are, the transport drops it.
        io.send_to(io.reachable().union(granted), Message::Unlock { uid, ticket: Some(lock.ticket), reply: false });
        true
    }

    pub(crate) fn on_unlock_reply(&mut self, from: usize, uid: u64, removed: bool, io: &mut Io) {
        let Some(&id) = self.by_uid.get(&uid) else { return }; // answers to unlocks of abandoned attempts
        if let Some(Phase::Releasing(r)) = self.locks.get_mut(&id).map(|l| &mut l.phase) {
            if r.uid == uid {
                r.answered.insert(from);
                if removed {
                    r.confirmed.insert(from);
                }
                self.check_release(id, io);
            }
        }
    }

    pub(super) fn check_release(&mut self, id: LockId, io: &mut Io) {
        if let Some(Phase::Releasing(r)) = self.locks.get(&id).map(|l| &l.phase) {
            if r.grantors.is_subset(r.answered) {
                self.finish_release(id, io);
            }
        }
    }

    pub(super) fn finish_release(&mut self, id: LockId, io: &mut Io) {
        if let Some(LockState { phase: Phase::Releasing(r), .. }) = self.remove(id, io) {
            io.emit(Event::Released { lock: id, confirmed: r.confirmed.len(), grantors: r.grantors.len() });
        }
    }
}
