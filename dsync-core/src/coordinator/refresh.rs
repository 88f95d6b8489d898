//! Refresh rounds: extending a held lock's lease, and losing it when a quorum no longer holds it.

use super::{Coordinator, Phase, RefreshRound};
use crate::config::Config;
use crate::event::{Event, LockId};
use crate::outbox::Io;
use crate::time::Instant;
use crate::NodeSet;
use crate::PlantedBug;
use crate::{Message, Mode};

impl Coordinator {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_refresh_reply(
        &mut self,
        from: usize,
        uid: u64,
        seq: u32,
        held: bool,
        now: Instant,
        cfg: &Config,
        io: &mut Io,
    ) {
        let Some(&id) = self.by_uid.get(&uid) else {
            io.counters.stale_replies += 1;
            return;
        };
        let Some(Phase::Held(h)) = self.locks.get_mut(&id).map(|l| &mut l.phase) else { return };
        match &mut h.refresh {
            Some(rr) if rr.seq == seq && h.uid == uid && !rr.ignore.contains(from) => {
                if held {
                    rr.ok.insert(from);
                } else {
                    rr.missing.insert(from);
                    rr.not_held.insert(from);
                }
            }
            _ => {
                io.counters.stale_replies += 1;
                return;
            }
        }
        self.check_refresh(id, now, cfg, io);
    }

    pub(super) fn start_refresh(&mut self, id: LockId, now: Instant, cfg: &Config, io: &mut Io) {
        let Some(Phase::Held(h)) = self.locks.get_mut(&id).map(|l| &mut l.phase) else { return };
        h.seq = h.seq.wrapping_add(1);
        h.refresh = Some(RefreshRound {
            seq: h.seq,
            sent_at: now,
            timeout_at: now + cfg.attempt_timeout,
            ok: NodeSet::EMPTY,
            // A locker that revoked the grant (§6.8) cannot confirm it: its replies are not counted.
            missing: io.down.union(h.revoked),
            not_held: h.revoked,
            ignore: h.revoked,
        });
        io.send_to(io.reachable(), Message::Refresh { uid: h.uid, seq: h.seq });
        self.check_refresh(id, now, cfg, io);
    }

    /// A refresh round extends validity once a quorum still holds the grant, and loses the lock once
    /// that is impossible or the answer came too late.
    pub(super) fn check_refresh(&mut self, id: LockId, now: Instant, cfg: &Config, io: &mut Io) {
        let Some(lock) = self.locks.get_mut(&id) else { return };
        let q = match lock.mode {
            Mode::Read => self.read_q,
            Mode::Write => self.write_q,
        };
        let Phase::Held(h) = &mut lock.phase else { return };
        let Some(rr) = &h.refresh else { return };
        if rr.ok.len() >= q {
            if now >= h.valid_until {
                self.lose(id, io);
                return;
            }
            let base = if cfg.bug(PlantedBug::ValidityFromReceive) { now } else { rr.sent_at };
            h.valid_until = h.valid_until.max(base + cfg.holder_validity());
            h.next_refresh = rr.sent_at + cfg.refresh_interval;
            // A node believed down may still hold its grant: it stays a grantor, so the release reaches it.
            h.grantors = h.grantors.difference(rr.not_held).union(rr.ok);
            h.refresh = None;
        } else if rr.missing.len() > self.n - q {
            self.lose(id, io);
            return;
        }
        self.reschedule(id, io);
    }

    pub(super) fn lose(&mut self, id: LockId, io: &mut Io) {
        if self.cancel(id, io) {
            io.counters.lost += 1;
            io.emit(Event::Lost { lock: id });
        }
    }
}
