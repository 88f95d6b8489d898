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
use crate::event::{FailReason, LockId, RequestError};
use crate::hash::{new_map, Map};
use crate::locker::Locker;
use crate::outbox::Io;
use crate::quorum::quorum;
use crate::rng::{SplitMix64, GOLDEN_GAMMA};
use crate::time::Instant;
use crate::timers::Timer;
use crate::wire::LockMsg;
use crate::NodeSet;
use crate::PlantedBug;
use crate::{Message, Mode};
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

mod refresh;
mod rejoin;
mod release;
mod revoke;
mod round;

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
    /// Nodes that rejoined during this round (PROTOCOL.md §6.7): their replies to it may come from a dead
    /// incarnation, so they are not counted.
    ignore: NodeSet,
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
    /// Nodes that rejoined during this round: their confirmations are not counted (§6.7).
    ignore: NodeSet,
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
    /// Lockers that told us a force-unlock removed the grant (PROTOCOL.md §6.8): never counted again.
    revoked: NodeSet,
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

    /// Whether this incarnation issued attempt uid `uid` (its uids run up from a random base).
    pub(crate) fn issued(&self, uid: u64) -> bool {
        uid.wrapping_sub(self.uid_base) < self.uid_seq
    }

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
                    if r.answered.contains(peer) && !r.down.contains(peer) || r.ignore.contains(peer) {
                        continue; // a real answer, or one this round will not count
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
                        if !rr.ok.contains(peer) && !rr.not_held.contains(peer) && !rr.ignore.contains(peer) {
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
