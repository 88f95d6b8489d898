//! Answering a restarted node's `Rejoin` (PROTOCOL.md §6.7): report the held locks that count it as a
//! grantor, and stop counting what its dead incarnation may still send.

use super::{Coordinator, Phase};
use crate::config::Config;
use crate::locker::Locker;
use crate::outbox::Io;
use crate::time::Instant;
use crate::wire::LockMsg;
use crate::{Message, PlantedBug};
use alloc::vec::Vec;

impl Coordinator {
    /// Node `from` restarted and asks to rejoin. Returns the held locks that count it as a grantor (each as
    /// the `Lock` that would grant it, `proposal` = its token); rounds in progress stop counting `from`.
    pub(crate) fn on_rejoin(
        &mut self,
        from: usize,
        now: Instant,
        cfg: &Config,
        locker: &Locker,
        io: &mut Io,
    ) -> Vec<LockMsg> {
        let mut holds = Vec::new();
        let mut rounds = Vec::new();
        let mut refreshes = Vec::new();
        let skip_rounds = cfg.bug(PlantedBug::RejoinCountsStaleReplies);
        for (&id, lock) in self.locks.iter_mut() {
            match &mut lock.phase {
                Phase::Held(h) => {
                    if h.grantors.contains(from) {
                        holds.push(LockMsg {
                            uid: h.uid,
                            ticket: lock.ticket,
                            mode: lock.mode,
                            proposal: h.token,
                            resources: lock.resources.clone(),
                        });
                    }
                    // Step 2 for a refresh in progress: `from`'s confirmation may be its dead incarnation's.
                    if let (Some(rr), false) = (&mut h.refresh, skip_rounds) {
                        if rr.ignore.insert(from) {
                            rr.ok.remove(from);
                            rr.missing.insert(from);
                            refreshes.push(id);
                        }
                    }
                }
                // Step 2 for an acquisition in progress: its grant (counted or on its way) may be the dead
                // incarnation's; the round treats `from` as an answer that did not grant.
                Phase::Acquiring(r) if !skip_rounds && !r.ignore.contains(from) => {
                    r.ignore.insert(from);
                    if r.granted.remove(from) {
                        // Whoever holds it now (nobody, or the new incarnation if it granted a re-sent
                        // request), it is not part of this round any more.
                        io.send(from, Message::Unlock { uid: r.uid, ticket: None, reply: false });
                        r.unreachable += 1;
                    } else if r.answered.insert(from) {
                        r.unreachable += 1;
                    }
                    rounds.push(id);
                }
                _ => {}
            }
        }
        for id in rounds {
            self.check_round(id, now, cfg, locker, io);
        }
        for id in refreshes {
            self.check_refresh(id, now, cfg, io);
        }
        holds
    }
}
