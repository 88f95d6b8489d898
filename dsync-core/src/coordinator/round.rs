//! Acquisition rounds: broadcasting an attempt, counting its answers, and classifying why one failed.

use super::{Coordinator, Held, Phase, Round};
use crate::config::Config;
use crate::event::{Event, FailReason, LockId};
use crate::locker::Locker;
use crate::outbox::Io;
use crate::time::{duration_nanos, Duration, Instant};
use crate::wire::{LockMsg, Outcome};
use crate::NodeSet;
use crate::PlantedBug;
use crate::{DenyReason, Message, Mode};

impl Coordinator {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_lock_reply(
        &mut self,
        from: usize,
        uid: u64,
        outcome: Outcome,
        mark: u64,
        now: Instant,
        cfg: &Config,
        locker: &Locker,
        io: &mut Io,
    ) {
        let granted = outcome == Outcome::Granted;
        let Some(&id) = self.by_uid.get(&uid) else {
            self.late_grant(from, uid, granted, cfg, io);
            return;
        };
        let Some(lock) = self.locks.get_mut(&id) else { return };
        match &mut lock.phase {
            Phase::Acquiring(r) if r.uid == uid && r.ignore.contains(from) => {
                // The sender rejoined during this round: this may be its dead incarnation's grant (§6.7).
                self.late_grant(from, uid, granted, cfg, io);
            }
            Phase::Acquiring(r) if r.uid == uid => {
                lock.heard.insert(from);
                if !r.answered.insert(from) {
                    // A second answer from the same locker: the request was duplicated in the network. A grant
                    // after a denial is real (the conflict cleared in between): count it, so it is used or
                    // released with the attempt, instead of lingering until its lease runs out.
                    if granted && r.granted.insert(from) {
                        r.max_mark = r.max_mark.max(mark);
                        self.check_round(id, now, cfg, locker, io);
                    } else {
                        io.counters.stale_replies += 1;
                    }
                    return;
                }
                match outcome {
                    Outcome::Granted => {
                        r.granted.insert(from);
                        r.max_mark = r.max_mark.max(mark);
                    }
                    Outcome::Denied(DenyReason::Conflict | DenyReason::Reserved) => r.contended += 1,
                    Outcome::Denied(DenyReason::StaleToken | DenyReason::FloorPending) => {
                        r.stale_token = true;
                        lock.proposal_floor = lock.proposal_floor.max(mark);
                    }
                    Outcome::Denied(DenyReason::Overloaded) => r.overloaded += 1,
                    Outcome::Denied(DenyReason::Quarantined | DenyReason::Invalid) => r.unreachable += 1,
                }
                self.check_round(id, now, cfg, locker, io);
            }
            Phase::Held(h) if h.uid == uid && h.revoked.contains(from) => {
                // A re-grant after a force-unlock revoked this locker's grant (§6.8): never counted again.
                self.late_grant(from, uid, granted, cfg, io);
            }
            Phase::Held(h) if h.uid == uid => {
                if granted {
                    h.grantors.insert(from); // a late grant joins the lock and is released with it
                }
            }
            Phase::Releasing(r) if r.uid == uid => {
                if granted {
                    self.late_grant(from, uid, true, cfg, io);
                }
            }
            _ => io.counters.stale_replies += 1,
        }
    }

    pub(super) fn start_round(&mut self, id: LockId, now: Instant, cfg: &Config, locker: &Locker, io: &mut Io) {
        if locker.undecided() {
            // An undecided bootstrap sends no round (PROTOCOL.md §6.5): its "fresh" answers promise that.
            let Some(lock) = self.locks.get_mut(&id) else { return };
            lock.last_reason = FailReason::NoQuorum;
            if lock.once || lock.deadline.is_some_and(|d| now >= d) {
                self.finish_failed(id, FailReason::NoQuorum, io);
            } else {
                lock.phase = Phase::Backoff(lock.deadline.unwrap_or(Instant::MAX));
                self.reschedule(id, io);
            }
            return;
        }
        let uid = self.uid_base.wrapping_add(self.uid_seq);
        self.uid_seq += 1;
        let Some(lock) = self.locks.get_mut(&id) else { return };
        let proposal = locker.hint(&lock.resources).max(lock.proposal_floor.saturating_add(1));
        let targets = io.reachable();
        let deadline = lock.deadline.unwrap_or(Instant::MAX);
        lock.last_uid = uid;
        lock.phase = Phase::Acquiring(Round {
            uid,
            sent_at: now,
            timeout_at: (now + cfg.attempt_timeout).min(deadline),
            proposal,
            granted: NodeSet::EMPTY,
            answered: io.down,
            down: io.down,
            contended: 0,
            unreachable: io.down.len(),
            overloaded: 0,
            stale_token: false,
            max_mark: 0,
            ignore: NodeSet::EMPTY,
        });
        let msg = LockMsg { uid, ticket: lock.ticket, mode: lock.mode, proposal, resources: lock.resources.clone() };
        self.by_uid.insert(uid, id);
        io.send_to(targets, Message::Lock(msg));
        self.check_round(id, now, cfg, locker, io);
    }

    /// Decides an attempt once its answers allow: quorum reached, or quorum out of reach.
    pub(super) fn check_round(&mut self, id: LockId, now: Instant, cfg: &Config, locker: &Locker, io: &mut Io) {
        let Some(lock) = self.locks.get_mut(&id) else { return };
        let Phase::Acquiring(r) = &lock.phase else { return };
        let q = match lock.mode {
            Mode::Read => self.read_q,
            Mode::Write => self.write_q,
        };
        if r.granted.len() >= q {
            let base = if cfg.bug(PlantedBug::ValidityFromReceive) { now } else { r.sent_at };
            let valid_until = base + cfg.holder_validity();
            if now >= valid_until || lock.deadline.is_some_and(|d| now >= d) {
                // Too slow to be of use: the grants may already be expiring.
                self.fail_round(id, now, cfg, locker, io);
                return;
            }
            let token = match lock.mode {
                Mode::Write => r.proposal,
                Mode::Read => r.max_mark,
            };
            let grantors = r.granted;
            lock.phase = Phase::Held(Held {
                uid: r.uid,
                token,
                grantors,
                valid_until,
                next_refresh: r.sent_at + cfg.refresh_interval,
                seq: 0,
                refresh: None,
                revoked: NodeSet::EMPTY,
            });
            self.pending -= 1;
            io.counters.acquired += 1;
            io.emit(Event::Acquired { lock: id, token, grantors, valid_until });
            self.reschedule(id, io);
        } else if r.granted.len() + (self.n - r.answered.len()) < q {
            self.fail_round(id, now, cfg, locker, io);
        } else {
            self.reschedule(id, io);
        }
    }

    /// Ends an attempt without quorum: releases what it got, then retries (at once for a stale token,
    /// else after a jittered backoff) or fails when the deadline would pass.
    pub(super) fn fail_round(&mut self, id: LockId, now: Instant, cfg: &Config, locker: &Locker, io: &mut Io) {
        let reason = self.classify(id, now, cfg);
        let Some(lock) = self.locks.get_mut(&id) else { return };
        let Phase::Acquiring(r) = &lock.phase else { return };
        let unanswered = NodeSet::all(self.n).difference(r.answered);
        let release = r.granted.union(unanswered.intersection(io.reachable()));
        let (uid, quick) = (r.uid, r.stale_token && r.contended == 0);
        // Lockers that granted (or whose grant is still on its way) raised their marks to this proposal, and
        // granted reads reported marks: the next attempt proposes above all of them, so it is not denied
        // as stale by a locker this attempt already taught (PROTOCOL.md §7.1).
        lock.proposal_floor = lock.proposal_floor.max(r.proposal).max(r.max_mark);
        io.send_to(release, Message::Unlock { uid, ticket: None, reply: false });
        self.by_uid.remove(&uid);
        lock.last_reason = reason;
        lock.attempts = lock.attempts.saturating_add(1);
        if core::mem::take(&mut lock.woken) && !lock.once {
            io.counters.retries += 1;
            self.start_round(id, now, cfg, locker, io);
            return;
        }
        if quick && lock.quick_retries < 3 {
            // Not contention: our token proposal was behind. Retry at once with a higher one.
            lock.quick_retries += 1;
            io.counters.retries += 1;
            self.start_round(id, now, cfg, locker, io);
            return;
        }
        if lock.once {
            self.finish_failed(id, reason, io);
            return;
        }
        lock.quick_retries = 0;
        let cap = duration_nanos(cfg.backoff_max);
        let base = duration_nanos(cfg.backoff_min).saturating_mul(1u64 << lock.attempts.min(20)).min(cap);
        let delay = base / 2 + self.rng.below_or_eq(base / 2);
        let until = now + Duration::from_nanos(delay);
        if lock.deadline.is_some_and(|d| until >= d) {
            self.finish_failed(id, reason, io);
        } else {
            lock.phase = Phase::Backoff(until);
            self.reschedule(id, io);
        }
    }

    /// Why the current attempt failed. A node that has not answered counts as unreachable when the attempt
    /// ran its full `attempt_timeout`, or when it never answered any attempt of this lock; one that answered
    /// a moment ago but not yet this attempt (cut short by the deadline) is not evidence of a missing quorum.
    pub(super) fn classify(&self, id: LockId, now: Instant, cfg: &Config) -> FailReason {
        let Some(lock) = self.locks.get(&id) else { return FailReason::Timeout };
        let Phase::Acquiring(r) = &lock.phase else { return lock.last_reason };
        let q = self.quorum(lock.mode);
        let timed_out = now >= r.sent_at + cfg.attempt_timeout;
        let silent = NodeSet::all(self.n).difference(r.answered);
        // Answers alone decided the attempt (quorum out of reach): the nodes that had not answered yet were
        // merely slower than the refusals (the own locker answers at once), not evidence of a lost quorum.
        let decided = r.granted.len() + silent.len() < q;
        let unanswered = if decided && !timed_out {
            0
        } else if timed_out || lock.once {
            silent.len()
        } else {
            silent.difference(lock.heard).len()
        };
        let contended = if lock.once { FailReason::Contended } else { FailReason::Timeout };
        if self.n - (r.unreachable + unanswered) < q {
            FailReason::NoQuorum
        } else if r.overloaded > 0 && r.contended == 0 {
            FailReason::Overloaded
        } else if r.contended > 0 {
            contended
        } else if lock.once {
            // One attempt that nobody contended and that did not reach quorum: the lockers could not grant
            // (silent, quarantined, or still persisting their floor), so no quorum was available to it.
            FailReason::NoQuorum
        } else if timed_out {
            FailReason::Timeout
        } else {
            lock.last_reason
        }
    }

    pub(super) fn finish_failed(&mut self, id: LockId, reason: FailReason, io: &mut Io) {
        if self.cancel(id, io) {
            io.counters.failed += 1;
            io.emit(Event::Failed { lock: id, reason });
        }
    }

    /// A grant for an attempt nobody waits for any more: release it at once.
    pub(super) fn late_grant(&mut self, from: usize, uid: u64, granted: bool, cfg: &Config, io: &mut Io) {
        if granted && !cfg.bug(PlantedBug::KeepLateGrants) {
            io.counters.late_grants_released += 1;
            io.send(from, Message::Unlock { uid, ticket: None, reply: false });
        } else {
            io.counters.stale_replies += 1;
        }
    }
}
