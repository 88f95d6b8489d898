//! The end of a run. At `heal_at` the fault phase ends and everything heals; after two locker holds the
//! liveness probes go out and a holder query follows; then every client stops, and after another two
//! locker holds the end-of-run checkers run. Each phase schedules the next, so a run always ends.

use super::clients::ClientKind;
use super::{Ev, World, MS, S};
use crate::check::leaks::table_violation;
use crate::check::liveness::Probe;
use crate::check::{self, Kind, Violation};
use crate::faults::RestartKind;
use crate::trace::Tag;
use dsync_core::{HolderEntry, Instant, Mode, QueryId, ServingState};
use std::collections::BTreeSet;

/// Where a run is. The fault phase plays the schedule; the others follow it in this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Faults and the workload run.
    Faults,
    /// Every partition, clog and pause ended, crashed nodes restarted, the network stopped losing.
    Heal,
    /// Liveness probes are out.
    Probe,
    /// A holder query is out.
    Query,
    /// Every client stopped (unlocked or cancelled); lockers' grants run out.
    Stop,
    /// The end-of-run checkers ran; the run is over.
    Final,
}

impl Phase {
    /// The phase's word in the trace: `Heal` is 0 because the trace format predates `Faults` being a
    /// phase (it is never recorded: a run starts in it).
    fn trace_word(self) -> u64 {
        self as u64 - 1
    }
}

/// The probes' uncontended resources (one per node): the scope of the holder query check.
fn is_probe_scope(name: &str) -> bool {
    name.starts_with("probe-") && name != "probe-hot"
}

impl World {
    /// Two locker holds in true time, with the slowest clock in the bound: every grant has expired.
    fn settle_time(&self) -> u64 {
        let l = self.swarm.lease_nanos();
        let rho = self.swarm.max_drift_ppm as u64;
        2 * l * (1_000_000 + rho) / (1_000_000 - rho) + S
    }

    pub(super) fn enter(&mut self, p: Phase) {
        self.trace.record(self.now, Tag::Phase, &[p.trace_word()]);
        if self.trace.logging() {
            self.trace.log(self.now, format!("phase {p:?}"));
        }
        self.phase = p;
        match p {
            Phase::Faults => unreachable!("a run starts in the fault phase"),
            Phase::Heal => self.heal(),
            Phase::Probe => self.probe(),
            Phase::Query => {
                let local = self.local_now(0);
                if let Ok(q) = self.slots[0].node.as_mut().expect("live").query_holders(local, None) {
                    self.query = Some((0, q));
                }
                self.after_step(0);
            }
            Phase::Stop => self.stop(),
            Phase::Final => {
                self.final_checks();
                self.done = true;
            }
        }
    }

    fn heal(&mut self) {
        self.net.heal(&mut self.rng, &mut self.seq, self.now);
        self.disturb.heal_all(self.now);
        for i in 0..self.swarm.nodes {
            self.slots[i].paused_until = self.slots[i].paused_until.min(self.now);
            if self.slots[i].node.is_none() {
                self.restart(i, RestartKind::Durable);
            }
        }
        self.detector.everyone(&mut self.seq, self.now);
        self.push(self.now + self.settle_time(), Ev::Phase(Phase::Probe));
    }

    /// Each node asks for its own resource (uncontended: must succeed while a write quorum serves) and for
    /// one they all share (contended: must resolve by its deadline).
    fn probe(&mut self) {
        self.check_floor_recovery();
        let hot = self.intern("probe-hot");
        for i in 0..self.swarm.nodes {
            let name = format!("probe-{i}");
            let r = self.intern(&name);
            let local = self.local_now(i).as_nanos();
            let now = self.now;
            for (res, name, hold, dl, uncontended) in
                [(r, name, 1500 * MS, 2 * S, true), (hot, "probe-hot".to_string(), 30 * MS, S, false)]
            {
                let p = self.probes.len();
                self.probes.push(Probe {
                    node: i,
                    uncontended: uncontended && self.quorum_serving,
                    deadline: self.slots[i].clock.to_true(local + dl),
                    resolved: None,
                    at: self.now,
                });
                if !self.issue(i, ClientKind::Probe(p), Mode::Write, vec![res], vec![name], hold, Some(dl), vec![]) {
                    self.probes[p].resolved = Some((now, false));
                }
            }
        }
        self.push(self.now + S, Ev::Phase(Phase::Query));
        self.push(self.now + 3 * S, Ev::Phase(Phase::Stop));
    }

    /// Every client lets go: held locks are unlocked, pending ones cancelled.
    fn stop(&mut self) {
        self.stopped_at = self.now;
        for i in 0..self.swarm.nodes {
            let locks = std::mem::take(&mut self.slots[i].locks);
            let local = self.local_now(i);
            for (id, c) in locks {
                let node = self.slots[i].node.as_mut().expect("live");
                if let Some(h) = c.held {
                    node.unlock(local, id);
                    self.close(h);
                } else {
                    node.cancel(local, id);
                }
            }
            self.after_step(i);
        }
        self.push(self.now + self.settle_time(), Ev::Phase(Phase::Final));
    }

    /// The holder query came back: in scope are the uncontended probe resources whose probe lock is held
    /// now (a pending probe's partial grants are legitimately visible, so that is not a quiescent moment).
    pub(super) fn holders_answered(&mut self, i: usize, query: QueryId, entries: &[HolderEntry]) {
        if self.query != Some((i, query)) {
            return;
        }
        self.query = None;
        let now = self.now;
        let mut truth = BTreeSet::new();
        let mut scope = BTreeSet::new();
        for rec in self.holds.iter().filter(|r| r.open && r.valid_at(now)) {
            for &r in &rec.res {
                let name = &self.names[r as usize];
                if is_probe_scope(name) {
                    truth.insert((name.clone(), rec.node, rec.token));
                    scope.insert(name.clone());
                }
            }
        }
        let v = check::holders::check(now, entries, |r| scope.contains(r), &truth);
        self.violations.extend(v);
    }

    /// Long after healing (quarantines are over), no node may still be bootstrapping (every peer is up and
    /// answers), and a node that still does not serve is recovering its fencing floor. It must have
    /// finished if a read quorum of its peers know theirs; if not, the floor was genuinely lost (too many
    /// restarts without a durable floor, a documented limit), and uncontended requests need only succeed
    /// while a write quorum of nodes serves.
    fn check_floor_recovery(&mut self) {
        let n = self.swarm.nodes;
        let serving: Vec<bool> = (0..n)
            .map(|i| {
                let local = self.local_now(i);
                self.slots[i].node.as_ref().is_some_and(|nd| nd.is_serving(local))
            })
            .collect();
        let count = serving.iter().filter(|&&b| b).count();
        for i in 0..n {
            let local = self.local_now(i);
            let state = self.slots[i].node.as_ref().map(|nd| nd.serving_state(local));
            if let Some(ServingState::Bootstrapping { waiting, .. }) = state {
                // Every node is up and connected: each peer has answered many times by now.
                let detail = format!("node {i} is still bootstrapping after healing, waiting for {waiting:?}");
                self.violation(Kind::Liveness, detail);
            }
        }
        for (i, &ok) in serving.iter().enumerate() {
            let peers = count - usize::from(ok);
            if !ok && peers >= dsync_core::quorum::read_quorum(n) {
                let detail =
                    format!("node {i} is not serving {:.1}s after healing though {peers} peers know their floor", {
                        (self.settle_time() as f64) / 1e9
                    });
                self.violation(Kind::Liveness, detail);
            }
        }
        self.quorum_serving = count >= dsync_core::quorum::write_quorum(n);
        if self.trace.logging() {
            self.trace.log(self.now, format!("serving after heal: {serving:?}"));
        }
    }

    fn final_checks(&mut self) {
        let now = self.now;
        for i in 0..self.swarm.nodes {
            let node = self.slots[i].node.as_ref().expect("live");
            let grants = node.grants(Instant::from_nanos(self.slots[i].clock.to_local(now)));
            if !grants.is_empty() || node.grant_count() != 0 {
                self.violations.push(table_violation(i, now, &grants));
            }
            if node.pending_count() != 0 {
                let detail = format!("node {i} still has {} pending lock(s) after stop", node.pending_count());
                self.violations.push(Violation { kind: Kind::Leak, at: now, detail });
            }
        }
        let cap = 8;
        self.violations.extend(self.owed.check(cap));
        self.violations.extend(check::liveness::check(&self.probes, self.stopped_at));
        self.violations.extend(check::exclusion::check(&self.holds, &self.names, cap));
        self.violations.extend(check::fencing::check_token_order(&self.holds, &self.names, cap));
        let net = &self.swarm.net;
        let bounds = check::revocation::Bounds {
            lat: net.lat_typ.max(net.lat_min),
            slow: net.slow_to.filter(|_| net.slow_extra > 0).map(|s| (s, net.slow_extra)),
            fault_lookback: self.swarm.detect_delay + 300 * MS,
            message_lookback: 300 * MS,
        };
        self.violations.extend(check::revocation::check(&self.forces, &self.holds, &self.disturb, &bounds, cap));
        self.violations.sort_by_key(|v| (v.at, v.kind));
    }
}
