//! The clients: each node's application asks for locks (workload requests and the end phases' probes),
//! holds them for a while and unlocks, and while holding a write lock makes fenced writes — a validity
//! check, sometimes a GC pause, then the write landing at the resource's register. The world records each
//! hold's true-time belief intervals here, for the checkers.

use super::{Ev, World};
use crate::check::revocation::ForceRecord;
use crate::check::HoldRecord;
use crate::check::Kind;
use crate::trace::Tag;
use crate::workload::PlannedWrite;
use dsync_core::{FailReason, ForceTarget, Instant, LockId, Mode, NodeSet, RequestError};

/// How a workload request ended (so far). Times are true (simulator) nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestOutcome {
    /// Not resolved yet (or cancelled at the end).
    Pending,
    /// Acquired, and not lost since (it may have been unlocked after its hold, or ended by a crash).
    Acquired {
        /// The fencing token.
        token: u64,
        /// The nodes whose grants made up the quorum.
        grantors: NodeSet,
        /// When the holder learned it.
        at: u64,
    },
    /// The acquisition ended without the lock.
    Failed {
        /// Why, as the core reported it.
        reason: FailReason,
        /// When.
        at: u64,
    },
    /// Acquired, then lost: the holder was told to stop trusting it (`Event::Lost`).
    Lost {
        /// The fencing token it had.
        token: u64,
        /// When it was acquired.
        acquired_at: u64,
        /// When it was lost.
        at: u64,
    },
    /// Refused on the spot by the core.
    Rejected(RequestError),
    /// The node was down when the request was due.
    Skipped,
}

impl RequestOutcome {
    /// The fencing token, if the request was acquired (whether or not it was lost later).
    pub fn token(&self) -> Option<u64> {
        match *self {
            RequestOutcome::Acquired { token, .. } | RequestOutcome::Lost { token, .. } => Some(token),
            _ => None,
        }
    }
}

/// Who asked: a workload request (by index) or a liveness probe (by index).
#[derive(Clone, Copy, Debug)]
pub(super) enum ClientKind {
    Workload(usize),
    Probe(usize),
}

/// A lock a node's application asked for, until it is released, lost or failed.
#[derive(Debug)]
pub(super) struct Client {
    kind: ClientKind,
    mode: Mode,
    res: Vec<u32>,
    hold: u64,
    writes: Vec<PlannedWrite>,
    /// Its hold record, once acquired.
    pub(super) held: Option<usize>,
    /// When a force-unlock of one of its resources reached a locker while it was pending or held.
    pub(super) voided: Option<u64>,
}

impl World {
    /// Workload request `i` is due: issue it unless its node is down (skipped) or the clients stopped.
    pub(super) fn request(&mut self, i: usize) {
        let node = self.requests[i].node;
        if self.phase >= super::Phase::Stop {
            return;
        }
        if self.slots[node].node.is_none() {
            self.outcomes[i] = RequestOutcome::Skipped;
            return;
        }
        if self.defer_if_paused(node, Ev::Request(i)).is_none() {
            return;
        }
        let r = self.requests[i].clone();
        let res: Vec<u32> = r.resources.iter().map(|n| self.intern(n)).collect();
        self.trace.record(self.now, Tag::Request, &[node as u64, i as u64]);
        if self.trace.logging() {
            self.trace.log(self.now, format!("node{node} requests {:?} {:?}", r.mode, r.resources));
        }
        let kind = ClientKind::Workload(i);
        self.issue(node, kind, r.mode, res, r.resources, r.hold, r.deadline, r.writes);
    }

    /// Asks `node` for a lock; returns whether the core took the request.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn issue(
        &mut self,
        node: usize,
        kind: ClientKind,
        mode: Mode,
        res: Vec<u32>,
        names: Vec<String>,
        hold: u64,
        deadline: Option<u64>,
        writes: Vec<PlannedWrite>,
    ) -> bool {
        let local = self.local_now(node);
        // A deadline beyond the clock's range is no deadline.
        let deadline = deadline.and_then(|d| local.as_nanos().checked_add(d)).map(Instant::from_nanos);
        let n = self.slots[node].node.as_mut().expect("live");
        let result = n.lock(local, mode, names, deadline);
        let ok = match result {
            Ok(id) => {
                self.slots[node].locks.insert(id, Client { kind, mode, res, hold, writes, held: None, voided: None });
                true
            }
            Err(e) => {
                if let ClientKind::Workload(r) = kind {
                    self.outcomes[r] = RequestOutcome::Rejected(e);
                }
                false
            }
        };
        self.after_step(node);
        ok
    }

    /// The lock is acquired: a hold record starts its first belief interval, the unlock and the fenced
    /// writes are scheduled.
    pub(super) fn acquired(&mut self, i: usize, lock: LockId, token: u64, grantors: NodeSet, valid_until: Instant) {
        let now = self.now;
        self.stats.acquired += 1;
        self.trace.record(now, Tag::Acquired, &[i as u64, lock.0, token]);
        if self.trace.logging() {
            self.trace.log(now, format!("node{i} acquired {lock:?} token={token}"));
        }
        let inc = self.slots[i].inc;
        let end = self.slots[i].clock.to_true(valid_until.as_nanos());
        let h = self.holds.len();
        let Some(c) = self.slots[i].locks.get_mut(&lock) else { return };
        c.held = Some(h);
        self.holds.push(HoldRecord {
            node: i,
            inc,
            lock: lock.0,
            mode: c.mode,
            res: c.res.clone(),
            token,
            intervals: vec![(now, end.max(now))],
            open: true,
            voided: c.voided,
        });
        let (hold, writes, kind) = (c.hold, c.writes.clone(), c.kind);
        match kind {
            ClientKind::Workload(r) => self.outcomes[r] = RequestOutcome::Acquired { token, grantors, at: now },
            ClientKind::Probe(p) => self.probes[p].resolved = Some((now, true)),
        }
        // `hold: u64::MAX` holds until the end of the run (the stop phase releases it): no unlock event.
        if let Some(at) = now.checked_add(hold).filter(|&at| at != u64::MAX) {
            self.push(at, Ev::Unlock { node: i, inc, lock });
        }
        for w in writes {
            if let Some(at) = now.checked_add(w.after) {
                self.push(at, Ev::WriteCheck { hold: h, pause: w.pause });
            }
        }
    }

    pub(super) fn failed(&mut self, i: usize, lock: LockId, reason: FailReason) {
        self.stats.failed += 1;
        self.trace.record(self.now, Tag::Failed, &[i as u64, lock.0]);
        if self.trace.logging() {
            self.trace.log(self.now, format!("node{i} failed {lock:?}"));
        }
        let now = self.now;
        if let Some(c) = self.slots[i].locks.remove(&lock) {
            match c.kind {
                ClientKind::Workload(r) => self.outcomes[r] = RequestOutcome::Failed { reason, at: now },
                ClientKind::Probe(p) => self.probes[p].resolved = Some((now, false)),
            }
        }
    }

    pub(super) fn lost(&mut self, i: usize, lock: LockId) {
        self.stats.lost += 1;
        self.trace.record(self.now, Tag::Lost, &[i as u64, lock.0]);
        if self.trace.logging() {
            self.trace.log(self.now, format!("node{i} lost {lock:?}"));
        }
        if let Some(c) = self.slots[i].locks.remove(&lock) {
            if let Some(h) = c.held {
                self.close(h);
            }
            if let ClientKind::Workload(r) = c.kind {
                if let RequestOutcome::Acquired { token, at, .. } = self.outcomes[r] {
                    self.outcomes[r] = RequestOutcome::Lost { token, acquired_at: at, at: self.now };
                }
            }
        }
    }

    /// Ends hold `h`'s belief now (unlock, loss, crash).
    pub(super) fn close(&mut self, h: usize) {
        let now = self.now;
        let rec = &mut self.holds[h];
        rec.open = false;
        if let Some(last) = rec.intervals.last_mut() {
            last.1 = last.1.min(now).max(last.0);
        }
    }

    /// The client's hold is over (if its incarnation still holds the lock).
    pub(super) fn client_unlock(&mut self, node: usize, inc: u32, lock: LockId) {
        if self.slots[node].inc != inc || self.slots[node].node.is_none() || self.phase >= super::Phase::Stop {
            return;
        }
        if self.slots[node].locks.get(&lock).is_none_or(|c| c.held.is_none()) {
            return;
        }
        if self.defer_if_paused(node, Ev::Unlock { node, inc, lock }).is_none() {
            return;
        }
        let c = self.slots[node].locks.remove(&lock).expect("checked");
        self.close(c.held.expect("checked"));
        self.trace.record(self.now, Tag::Unlock, &[node as u64, lock.0]);
        let local = self.local_now(node);
        self.slots[node].node.as_mut().expect("live").unlock(local, lock);
        self.after_step(node);
    }

    /// A force-unlock of resource `name` reached a locker: every lock on it that is held or being acquired
    /// now loses its guarantees from now on (the locker may have removed grants it relies on).
    pub(super) fn void_resource(&mut self, name: &str) {
        let Some(&id) = self.name_ids.get(name) else { return };
        let now = self.now;
        for slot in &mut self.slots {
            for c in slot.locks.values_mut().filter(|c| c.res.contains(&id)) {
                c.voided.get_or_insert(now);
                if let Some(h) = c.held {
                    self.holds[h].voided.get_or_insert(now);
                }
            }
        }
    }

    /// An administrator on `node` force-unlocks `resource` (skipped if the node is down or paused).
    pub(super) fn force_unlock(&mut self, node: usize, resource: String) {
        if self.slots[node].node.is_none() || self.paused(node) {
            return;
        }
        let local = self.local_now(node);
        // The issuing node's own locker removes its grants at once, without a message: void from now (the
        // other lockers void again, for locks begun since, as the command reaches them).
        self.void_resource(&resource);
        let n = self.slots[node].node.as_mut().expect("live");
        // Refused only when too many queries are in flight: then nothing was sent.
        let Ok(q) = n.force_unlock(local, ForceTarget::Resource(resource.clone())) else {
            self.after_step(node);
            return;
        };
        // For the revocation checker: the holds on the resource now, and the answers as they come (the
        // issuing node's own locker answered already, without a message).
        let id = self.name_ids.get(&resource).copied();
        let holds = self
            .slots
            .iter()
            .flat_map(|s| s.locks.values())
            .filter_map(|c| c.held.filter(|_| id.is_some_and(|r| c.res.contains(&r))));
        let holds: Vec<usize> = holds.filter(|&h| self.holds[h].open).collect();
        let mut replied = vec![None; self.swarm.nodes];
        replied[node] = Some(self.now);
        let (inc, at) = (self.slots[node].inc, self.now);
        self.forces.push(ForceRecord { admin: node, inc, qid: q.0, resource, at, replied, holds });
        self.after_step(node);
    }

    /// Locker `from` answered force-unlock `qid` of the administrator on `admin`.
    pub(super) fn force_answered(&mut self, admin: usize, from: usize, qid: u64) {
        let inc = self.slots[admin].inc;
        let now = self.now;
        if let Some(f) = self.forces.iter_mut().rev().find(|f| f.admin == admin && f.inc == inc && f.qid == qid) {
            f.replied[from].get_or_insert(now);
        }
    }

    /// The holder checks validity, may be paused (GC) right after the check, then writes. The pause is
    /// the case fencing exists for: the check passed, then the world moved on.
    pub(super) fn write_check(&mut self, h: usize, pause: u64) {
        let (node, inc, lock, open) = {
            let r = &self.holds[h];
            (r.node, r.inc, LockId(r.lock), r.open)
        };
        if !open || self.slots[node].inc != inc || self.slots[node].node.is_none() || self.phase >= super::Phase::Stop {
            return;
        }
        if self.defer_if_paused(node, Ev::WriteCheck { hold: h, pause }).is_none() {
            return;
        }
        let local = self.local_now(node);
        let valid = self.slots[node].node.as_ref().expect("live").is_valid(lock, local);
        if valid != self.holds[h].valid_at(self.now) {
            // The sim's belief intervals must mirror the core's own answer exactly.
            panic!("sim bug: is_valid={valid} but belief interval says otherwise for {}", self.holds[h].label());
        }
        if !valid {
            self.stats.writes_skipped += 1;
            return;
        }
        // Pauses are faults: none once the network has healed.
        if pause > 0 && self.phase == super::Phase::Faults {
            let until = self.now.saturating_add(pause);
            let s = &mut self.slots[node];
            s.paused_until = s.paused_until.max(until);
            self.disturb.fault(node, self.now, until);
            self.push(until, Ev::WriteLand { hold: h });
        } else {
            self.write_land(h);
        }
    }

    /// The write reaches the resource's fenced register, which rejects tokens below the highest accepted.
    /// A rejected write whose holder's lock is still valid is a violation.
    pub(super) fn write_land(&mut self, h: usize) {
        let token = self.holds[h].token;
        // A lock voided by a force-unlock carries no guarantee: its rejected writes are expected.
        let valid = self.holds[h].trusted_at(self.now);
        let res = self.holds[h].res.clone();
        self.trace.record(self.now, Tag::Write, &[h as u64, token]);
        for r in res {
            let reg = &mut self.registers[r as usize];
            let (prev, by) = (reg.max, reg.by);
            if reg.write(token, h) {
                self.stats.writes_accepted += 1;
            } else {
                self.stats.writes_rejected += 1;
                if valid {
                    let other = by.map(|b| self.holds[b].label()).unwrap_or_default();
                    let detail = format!(
                        "register {}: write of {} (valid now) rejected; {other} already wrote token {prev}",
                        self.names[r as usize],
                        self.holds[h].label()
                    );
                    self.violation(Kind::FencedWriteRejected, detail);
                }
            }
        }
    }
}
