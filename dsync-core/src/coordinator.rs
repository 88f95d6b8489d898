//! The coordinator: acquires locks for this node's application, keeps them refreshed, releases them.
//!
//! A lock moves through `Acquiring` (one attempt broadcast to all nodes) → `Held` → `Releasing`, with
//! `Backoff` between failed attempts. Each attempt has a fresh uid, so a grant that arrives for an attempt
//! already given up is recognised and released; the lock's ticket stays fixed, so lockers can rank it.
//!
//! Validity: a round that reaches quorum makes the lock valid until `sent_at + L·(1−ρ)` on this node's
//! clock, where `sent_at` is when the round was *sent*; every locker that answered received the request
//! later, so its grant outlives the holder's belief (PROTOCOL.md, "Lease timing").

use crate::config::Config;
use crate::event::{Event, FailReason, LockId, RequestError};
use crate::hash::{new_map, Map};
use crate::locker::Locker;
use crate::outbox::Io;
use crate::quorum::quorum;
use crate::rng::{SplitMix64, GOLDEN_GAMMA};
use crate::time::{duration_nanos, Duration, Instant};
use crate::timers::Timer;
use crate::wire::{LockMsg, Outcome};
use crate::NodeSet;
use crate::PlantedBug;
use crate::{DenyReason, Message, Mode};
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

/// A held lock as its application sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockInfo {
    /// Read or write.
    pub mode: Mode,
    /// The fencing token.
    pub token: u64,
    /// The nodes known to hold a grant for it.
    pub grantors: NodeSet,
    /// Local instant until which the holder may act, absent a successful refresh.
    pub valid_until: Instant,
    /// The uid of the attempt that acquired it.
    pub uid: u64,
}

#[derive(Debug)]
struct Round {
    uid: u64,
    sent_at: Instant,
    timeout_at: Instant,
    proposal: u64,
    granted: NodeSet,
    /// Nodes that answered, plus nodes reported down when the round began.
    answered: NodeSet,
    /// Nodes in `answered` only because they were reported down (no real answer).
    down: NodeSet,
    contended: usize,
    unreachable: usize,
    overloaded: usize,
    stale_token: bool,
    max_mark: u64,
}

#[derive(Debug)]
struct RefreshRound {
    seq: u32,
    sent_at: Instant,
    timeout_at: Instant,
    ok: NodeSet,
    /// Nodes that cannot confirm: answered "not held", or believed down.
    missing: NodeSet,
    /// Nodes that answered "not held": only these surely dropped the grant.
    not_held: NodeSet,
}

#[derive(Debug)]
struct Held {
    uid: u64,
    token: u64,
    grantors: NodeSet,
    valid_until: Instant,
    next_refresh: Instant,
    seq: u32,
    refresh: Option<RefreshRound>,
}

#[derive(Debug)]
struct Releasing {
    uid: u64,
    grantors: NodeSet,
    confirmed: NodeSet,
    answered: NodeSet,
    timeout_at: Instant,
}

#[derive(Debug)]
enum Phase {
    Acquiring(Round),
    Backoff(Instant),
    Held(Held),
    Releasing(Releasing),
}

#[derive(Debug)]
struct LockState {
    mode: Mode,
    resources: Vec<String>,
    ticket: u64,
    deadline: Option<Instant>,
    attempts: u32,
    quick_retries: u32,
    /// Proposals must exceed this (learned from `StaleToken` denials).
    proposal_floor: u64,
    last_uid: u64,
    last_reason: FailReason,
    /// Nodes that answered any attempt of this lock: evidence that they are reachable.
    heard: NodeSet,
    /// A locker woke this lock while an attempt was in flight: if that attempt fails, retry at once.
    /// (A locker never wakes the lock whose own grant it removed, so a lock cannot wake itself into a spin.)
    woken: bool,
    /// A `try_lock`: one attempt, no backoff retries; fails `Contended` when others hold the resources.
    once: bool,
    phase: Phase,
    armed: Instant,
}

impl LockState {
    fn next_deadline(&self) -> Instant {
        match &self.phase {
            Phase::Acquiring(r) => r.timeout_at,
            Phase::Backoff(until) => *until,
            Phase::Held(h) => h.valid_until.min(h.refresh.as_ref().map_or(h.next_refresh, |r| r.timeout_at)),
            Phase::Releasing(r) => r.timeout_at,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Coordinator {
    n: usize,
    read_q: usize,
    write_q: usize,
    locks: BTreeMap<LockId, LockState>,
    by_uid: Map<u64, LockId>,
    by_ticket: Map<u64, LockId>,
    next_lock: u64,
    uid_base: u64,
    uid_seq: u64,
    /// Lamport clock over tickets: above every ticket this node has seen, so new locks rank behind waiters.
    lamport: u64,
    pending: usize,
    rng: SplitMix64,
}

impl Coordinator {
    pub(crate) fn new(cfg: &Config) -> Self {
        let mut rng = SplitMix64::new(cfg.seed ^ (cfg.id as u64).wrapping_mul(GOLDEN_GAMMA));
        let shrink = |q: usize, bug| if cfg.bug(bug) { q.saturating_sub(1).max(1) } else { q };
        Coordinator {
            n: cfg.nodes,
            read_q: shrink(quorum(cfg.nodes, Mode::Read), PlantedBug::ReadQuorumTooSmall),
            write_q: shrink(quorum(cfg.nodes, Mode::Write), PlantedBug::WriteQuorumTooSmall),
            locks: BTreeMap::new(),
            by_uid: new_map(cfg.seed ^ 1),
            by_ticket: new_map(cfg.seed ^ 2),
            next_lock: 0,
            uid_base: rng.next_u64(),
            uid_seq: 0,
            lamport: 0,
            pending: 0,
            rng,
        }
    }

    fn quorum(&self, mode: Mode) -> usize {
        match mode {
            Mode::Read => self.read_q,
            Mode::Write => self.write_q,
        }
    }

    // ----- getters -----

    pub(crate) fn info(&self, id: LockId) -> Option<LockInfo> {
        let lock = self.locks.get(&id)?;
        match &lock.phase {
            Phase::Held(h) => Some(LockInfo {
                mode: lock.mode,
                token: h.token,
                grantors: h.grantors,
                valid_until: h.valid_until,
                uid: h.uid,
            }),
            _ => None,
        }
    }

    pub(crate) fn pending_count(&self) -> usize {
        self.pending
    }

    /// Every lock request any locker on this node sees advances the ticket clock — but never past 2⁶³: a
    /// peer's ticket of `u64::MAX` would otherwise overflow this node's next ticket (a panic with overflow
    /// checks, a wrap to 0 without, after which its locks would outrank every waiter). No honest clock gets
    /// near the cap, and it would take 2⁶³ local locks to overflow from there. (Found by fuzzing.)
    pub(crate) fn observe_ticket(&mut self, ticket: u64) {
        self.lamport = self.lamport.max(ticket.min(u64::MAX / 2));
    }

    // ----- commands -----

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn lock(
        &mut self,
        now: Instant,
        mode: Mode,
        mut resources: Vec<String>,
        deadline: Option<Instant>,
        once: bool,
        cfg: &Config,
        locker: &Locker,
        io: &mut Io,
    ) -> Result<LockId, RequestError> {
        let limits = &cfg.limits;
        resources.sort_unstable();
        resources.dedup();
        if resources.is_empty() {
            return Err(RequestError::NoResources);
        }
        if resources.len() > limits.max_resources_per_lock {
            return Err(RequestError::TooManyResources {
                count: resources.len(),
                limit: limits.max_resources_per_lock,
            });
        }
        if let Some(r) = resources.iter().find(|r| r.len() > limits.max_resource_len) {
            return Err(RequestError::NameTooLong { len: r.len(), limit: limits.max_resource_len });
        }
        if self.pending >= limits.max_pending {
            return Err(RequestError::Overloaded);
        }
        let id = LockId(self.next_lock);
        self.next_lock += 1;
        self.lamport += 1;
        let ticket = self.lamport;
        self.by_ticket.insert(ticket, id);
        self.pending += 1;
        self.locks.insert(
            id,
            LockState {
                mode,
                resources,
                ticket,
                deadline,
                attempts: 0,
                quick_retries: 0,
                proposal_floor: 0,
                last_uid: 0,
                last_reason: FailReason::Timeout,
                woken: false,
                once,
                heard: NodeSet::EMPTY,
                phase: Phase::Backoff(now),
                armed: Instant::MAX,
            },
        );
        self.start_round(id, now, cfg, locker, io);
        Ok(id)
    }

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

    // ----- inputs -----

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
            Some(rr) if rr.seq == seq && h.uid == uid => {
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

    /// A locker freed a resource this node's waiting lock had reserved: retry now instead of sleeping on.
    pub(crate) fn on_wake(&mut self, ticket: u64, now: Instant, cfg: &Config, locker: &Locker, io: &mut Io) {
        let Some(&id) = self.by_ticket.get(&ticket) else { return };
        let Some(lock) = self.locks.get_mut(&id) else { return };
        match lock.phase {
            Phase::Backoff(_) => {
                io.counters.retries += 1;
                self.start_round(id, now, cfg, locker, io);
            }
            // Each locker wakes us as it frees the resource; one that does so while our attempt is in
            // flight may have denied it a moment earlier, so a failed attempt should not sleep on it.
            Phase::Acquiring(_) => lock.woken = true,
            _ => {}
        }
    }

    pub(crate) fn on_timer(&mut self, id: LockId, now: Instant, cfg: &Config, locker: &Locker, io: &mut Io) {
        let Some(lock) = self.locks.get_mut(&id) else { return };
        lock.armed = Instant::MAX; // the table already dropped this entry
        match &lock.phase {
            Phase::Acquiring(r) => {
                if lock.deadline.is_some_and(|d| now >= d) {
                    let reason = self.classify(id, now, cfg);
                    self.finish_failed(id, reason, io);
                    return;
                }
                if now >= r.timeout_at {
                    self.fail_round(id, now, cfg, locker, io);
                    return;
                }
            }
            Phase::Backoff(until) => {
                if now >= *until {
                    io.counters.retries += 1;
                    self.start_round(id, now, cfg, locker, io);
                    return;
                }
            }
            Phase::Held(h) => {
                if now >= h.valid_until {
                    self.lose(id, io);
                    return;
                }
                let due = h.refresh.as_ref().map_or(h.next_refresh, |r| r.timeout_at);
                if now >= due {
                    self.start_refresh(id, now, cfg, io);
                    return;
                }
            }
            Phase::Releasing(r) => {
                if now >= r.timeout_at {
                    self.finish_release(id, io);
                    return;
                }
            }
        }
        self.reschedule(id, io);
    }

    /// Rounds stop waiting for a peer the transport lost: it counts as a refusal.
    pub(crate) fn on_peer_down(&mut self, peer: usize, now: Instant, cfg: &Config, locker: &Locker, io: &mut Io) {
        let affected: Vec<LockId> = self
            .locks
            .iter_mut()
            .filter_map(|(id, lock)| {
                let hit = match &mut lock.phase {
                    Phase::Acquiring(r) => {
                        let new = r.answered.insert(peer);
                        if new {
                            r.down.insert(peer);
                        }
                        r.unreachable += usize::from(new);
                        new
                    }
                    Phase::Held(h) => match &mut h.refresh {
                        Some(rr) if !rr.ok.contains(peer) => rr.missing.insert(peer),
                        _ => false,
                    },
                    Phase::Releasing(r) => r.answered.insert(peer),
                    Phase::Backoff(_) => false,
                };
                hit.then_some(*id)
            })
            .collect();
        for id in affected {
            match self.locks.get(&id).map(|l| &l.phase) {
                Some(Phase::Acquiring(_)) => self.check_round(id, now, cfg, locker, io),
                Some(Phase::Held(_)) => self.check_refresh(id, now, cfg, io),
                Some(Phase::Releasing(_)) => self.check_release(id, io),
                _ => {}
            }
        }
    }

    /// The transport (re)connected to `peer`. A round that went out before the connection was up has no
    /// answer from it and would wait a full `attempt_timeout`: the same request (same uid) goes to the peer
    /// now, and a peer counted as unreachable only because it was believed down counts as unanswered again.
    /// Locks backing off after a failure for want of a quorum retry at once; a refresh round in flight
    /// asks the peer too.
    pub(crate) fn on_peer_up(&mut self, peer: usize, now: Instant, cfg: &Config, locker: &Locker, io: &mut Io) {
        let mut retry = Vec::new();
        for (&id, lock) in self.locks.iter_mut() {
            match &mut lock.phase {
                Phase::Acquiring(r) => {
                    if r.answered.contains(peer) && !r.down.contains(peer) {
                        continue; // a real answer
                    }
                    if r.down.contains(peer) {
                        r.down.remove(peer);
                        r.answered.remove(peer);
                        r.unreachable = r.unreachable.saturating_sub(1);
                    }
                    let msg = LockMsg {
                        uid: r.uid,
                        ticket: lock.ticket,
                        mode: lock.mode,
                        proposal: r.proposal,
                        resources: lock.resources.clone(),
                    };
                    io.send(peer, Message::Lock(msg));
                }
                Phase::Backoff(_) if lock.attempts > 0 && lock.last_reason == FailReason::NoQuorum => retry.push(id),
                Phase::Held(h) => {
                    if let Some(rr) = &mut h.refresh {
                        if !rr.ok.contains(peer) && !rr.not_held.contains(peer) {
                            rr.missing.remove(peer);
                            io.send(peer, Message::Refresh { uid: h.uid, seq: rr.seq });
                        }
                    }
                }
                _ => {}
            }
        }
        for id in retry {
            io.counters.retries += 1;
            self.start_round(id, now, cfg, locker, io);
        }
    }

    /// An undecided bootstrap decided: the locks held back before their first round start now.
    pub(crate) fn on_gate_open(&mut self, now: Instant, cfg: &Config, locker: &Locker, io: &mut Io) {
        let waiting: Vec<LockId> = self
            .locks
            .iter()
            .filter(|(_, l)| matches!(l.phase, Phase::Backoff(_)) && l.attempts == 0)
            .map(|(&id, _)| id)
            .collect();
        for id in waiting {
            self.start_round(id, now, cfg, locker, io);
        }
    }

    // ----- transitions -----

    fn start_round(&mut self, id: LockId, now: Instant, cfg: &Config, locker: &Locker, io: &mut Io) {
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
        });
        let msg = LockMsg { uid, ticket: lock.ticket, mode: lock.mode, proposal, resources: lock.resources.clone() };
        self.by_uid.insert(uid, id);
        io.send_to(targets, Message::Lock(msg));
        self.check_round(id, now, cfg, locker, io);
    }

    /// Decides an attempt once its answers allow: quorum reached, or quorum out of reach.
    fn check_round(&mut self, id: LockId, now: Instant, cfg: &Config, locker: &Locker, io: &mut Io) {
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
    fn fail_round(&mut self, id: LockId, now: Instant, cfg: &Config, locker: &Locker, io: &mut Io) {
        let reason = self.classify(id, now, cfg);
        let Some(lock) = self.locks.get_mut(&id) else { return };
        let Phase::Acquiring(r) = &lock.phase else { return };
        let unanswered = NodeSet::all(self.n).difference(r.answered);
        let release = r.granted.union(unanswered.intersection(io.reachable()));
        let (uid, quick) = (r.uid, r.stale_token && r.contended == 0);
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
    fn classify(&self, id: LockId, now: Instant, cfg: &Config) -> FailReason {
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
        } else if timed_out {
            if lock.once {
                FailReason::NoQuorum
            } else {
                FailReason::Timeout
            }
        } else {
            lock.last_reason
        }
    }

    fn finish_failed(&mut self, id: LockId, reason: FailReason, io: &mut Io) {
        if self.cancel(id, io) {
            io.counters.failed += 1;
            io.emit(Event::Failed { lock: id, reason });
        }
    }

    fn start_refresh(&mut self, id: LockId, now: Instant, cfg: &Config, io: &mut Io) {
        let Some(Phase::Held(h)) = self.locks.get_mut(&id).map(|l| &mut l.phase) else { return };
        h.seq = h.seq.wrapping_add(1);
        h.refresh = Some(RefreshRound {
            seq: h.seq,
            sent_at: now,
            timeout_at: now + cfg.attempt_timeout,
            ok: NodeSet::EMPTY,
            missing: io.down,
            not_held: NodeSet::EMPTY,
        });
        io.send_to(io.reachable(), Message::Refresh { uid: h.uid, seq: h.seq });
        self.check_refresh(id, now, cfg, io);
    }

    /// A refresh round extends validity once a quorum still holds the grant, and loses the lock once
    /// that is impossible or the answer came too late.
    fn check_refresh(&mut self, id: LockId, now: Instant, cfg: &Config, io: &mut Io) {
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

    fn lose(&mut self, id: LockId, io: &mut Io) {
        if self.cancel(id, io) {
            io.counters.lost += 1;
            io.emit(Event::Lost { lock: id });
        }
    }

    fn check_release(&mut self, id: LockId, io: &mut Io) {
        if let Some(Phase::Releasing(r)) = self.locks.get(&id).map(|l| &l.phase) {
            if r.grantors.is_subset(r.answered) {
                self.finish_release(id, io);
            }
        }
    }

    fn finish_release(&mut self, id: LockId, io: &mut Io) {
        if let Some(LockState { phase: Phase::Releasing(r), .. }) = self.remove(id, io) {
            io.emit(Event::Released { lock: id, confirmed: r.confirmed.len(), grantors: r.grantors.len() });
        }
    }

    /// A grant for an attempt nobody waits for any more: release it at once.
    fn late_grant(&mut self, from: usize, uid: u64, granted: bool, cfg: &Config, io: &mut Io) {
        if granted && !cfg.bug(PlantedBug::KeepLateGrants) {
            io.counters.late_grants_released += 1;
            io.send(from, Message::Unlock { uid, ticket: None, reply: false });
        } else {
            io.counters.stale_replies += 1;
        }
    }

    /// Drops a lock from every index and disarms its timer.
    fn remove(&mut self, id: LockId, io: &mut Io) -> Option<LockState> {
        let mut lock = self.locks.remove(&id)?;
        io.timers.set(Timer::Lock(id), &mut lock.armed, Instant::MAX);
        self.by_ticket.remove(&lock.ticket);
        let uid = match &lock.phase {
            Phase::Acquiring(r) => r.uid,
            Phase::Held(h) => h.uid,
            Phase::Releasing(r) => r.uid,
            Phase::Backoff(_) => lock.last_uid,
        };
        if self.by_uid.get(&uid) == Some(&id) {
            self.by_uid.remove(&uid);
        }
        Some(lock)
    }

    fn reschedule(&mut self, id: LockId, io: &mut Io) {
        if let Some(lock) = self.locks.get_mut(&id) {
            let at = lock.next_deadline();
            io.timers.set(Timer::Lock(id), &mut lock.armed, at);
        }
    }
}
