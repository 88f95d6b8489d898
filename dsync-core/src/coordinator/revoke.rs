//! Revocation (PROTOCOL.md §6.8): a locker removed one of this node's grants because of a force-unlock and
//! says so at once. The holder stops counting that locker, and loses the lock now if what is left cannot
//! make a quorum; an acquisition drops the grant from its round. Every step only counts fewer grants, so a
//! `Revoked` — stale, duplicated or forged — can make a holder lose sooner, never keep a lock longer.

use super::{Coordinator, Phase};
use crate::config::Config;
use crate::locker::Locker;
use crate::outbox::Io;
use crate::time::Instant;
use crate::{Message, PlantedBug};

impl Coordinator {
    /// Locker `from` removed the grant `(this node, uid)` because of a force-unlock.
    pub(crate) fn on_revoked(
        &mut self,
        from: usize,
        uid: u64,
        now: Instant,
        cfg: &Config,
        locker: &Locker,
        io: &mut Io,
    ) {
        let Some(&id) = self.by_uid.get(&uid) else {
            io.counters.stale_replies += 1;
            return;
        };
        if cfg.bug(PlantedBug::RevocationIgnored) {
            return;
        }
        let Some(mode) = self.locks.get(&id).map(|l| l.mode) else { return };
        let q = self.quorum(mode);
        let Some(lock) = self.locks.get_mut(&id) else { return };
        match &mut lock.phase {
            Phase::Held(h) if h.uid == uid => {
                if !h.revoked.insert(from) {
                    return; // already told (a duplicate)
                }
                h.grantors.remove(from);
                if h.grantors.len() < q {
                    // The grantors left cannot make a quorum: the lock is gone now, not at the next refresh.
                    self.lose(id, io);
                    return;
                }
                match &mut h.refresh {
                    // The round in flight stops counting `from` (its confirmation may predate the removal).
                    Some(rr) => {
                        rr.ok.remove(from);
                        rr.missing.insert(from);
                        rr.not_held.insert(from);
                        rr.ignore.insert(from);
                        self.check_refresh(id, now, cfg, io);
                    }
                    // Some grantor may have lost its grant unnoticed: find out within one round trip.
                    None => self.start_refresh(id, now, cfg, io),
                }
            }
            Phase::Acquiring(r) if r.uid == uid => {
                if !r.ignore.insert(from) {
                    return;
                }
                // Whatever `from` holds under this uid (nothing, or a re-grant that overtook this message),
                // it is not part of the round any more.
                io.send(from, Message::Unlock { uid, ticket: None, reply: false });
                if r.granted.remove(from) || r.answered.insert(from) {
                    r.contended += 1;
                }
                self.check_round(id, now, cfg, locker, io);
            }
            _ => io.counters.stale_replies += 1,
        }
    }
}
