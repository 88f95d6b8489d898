//! Applying the plan's faults to the turmoil simulation, between steps, and healing everything at
//! `heal_at`.
//!
//! Turmoil's TCP has two ways to cut a link: *hold* (segments wait and are delivered on release — what TCP
//! gives an application across a partition that heals before its timeouts) and *partition* (segments are
//! dropped). Turmoil never retransmits a dropped segment, so a connection that lost one stalls for good; a
//! real kernel would retransmit and, after its user timeout, reset the connection. The harness models that
//! timeout by resetting every connection across a one-way partition when it is repaired
//! ([`super::net::Resets`]), so the engine reconnects as it would in production.

use super::net::Resets;
use super::plan::{Fault, Plan};
use super::record::Recorder;
use super::reorder::Stalls;
use super::sockets::SocketTable;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use turmoil::Sim;

/// Host name of node `i`.
pub fn host(i: usize) -> String {
    format!("node{i}")
}

/// What the harness has applied and must undo.
pub struct Faults {
    /// Pending actions by true time: the plan's faults and the undo steps they scheduled.
    queue: Vec<(u64, Action)>,
    /// Nodes currently crashed.
    down: u64,
    /// Per node, how many times its state directory was wiped (the host reads it at start).
    wipes: Arc<Mutex<Vec<u32>>>,
    resets: Resets,
    stalls: Stalls,
    tables: Vec<SocketTable>,
    ips: Vec<IpAddr>,
    nodes: usize,
    base_latency: u64,
    min_latency: u64,
}

#[derive(Clone, Debug)]
enum Action {
    Apply(Fault),
    Release { side: u64 },
    RepairOneWay { from: u64 },
    ReleaseLinks { node: usize, peers: u64 },
    Unstall { node: usize, from: usize },
    Restart { nodes: u64, wipe: bool },
}

impl Faults {
    /// The plan's faults for `sim`, whose hosts are already registered.
    pub fn new(
        plan: &Plan,
        sim: &Sim<'_>,
        resets: Resets,
        stalls: Stalls,
        tables: Vec<SocketTable>,
        wipes: Arc<Mutex<Vec<u32>>>,
    ) -> Self {
        let mut queue: Vec<(u64, Action)> = plan.faults.iter().map(|(t, f)| (*t, Action::Apply(f.clone()))).collect();
        queue.reverse(); // popped from the back, in time order
        let ips = (0..plan.nodes).map(|i| sim.lookup(host(i))).collect();
        Faults {
            queue,
            down: 0,
            wipes,
            resets,
            stalls,
            tables,
            ips,
            nodes: plan.nodes,
            base_latency: plan.latency.1,
            min_latency: plan.latency.0,
        }
    }

    /// Applies everything due at or before `now`.
    pub fn apply_due(&mut self, sim: &mut Sim<'_>, now: u64, rec: &Recorder) {
        while self.queue.last().is_some_and(|(t, _)| *t <= now) {
            let Some((_, action)) = self.queue.pop() else { break };
            rec.event(now, usize::MAX, usize::MAX, "fault", &[action_word(&action)], || format!("{action:?}"));
            self.run(sim, now, action, rec);
        }
    }

    fn schedule(&mut self, at: u64, a: Action) {
        let pos = self.queue.iter().position(|(t, _)| *t < at).unwrap_or(self.queue.len());
        self.queue.insert(pos, (at, a));
    }

    fn run(&mut self, sim: &mut Sim<'_>, now: u64, a: Action, rec: &Recorder) {
        let n = self.nodes;
        let all = (1u64 << n) - 1;
        match a {
            Action::Apply(Fault::Hold { side, until }) => {
                for (a, b) in links(side, all & !side, n) {
                    sim.hold(host(a).as_str(), host(b).as_str());
                }
                self.schedule(until, Action::Release { side });
            }
            Action::Release { side } => {
                for (a, b) in links(side, all & !side, n) {
                    sim.release(host(a).as_str(), host(b).as_str());
                }
            }
            Action::Apply(Fault::OneWay { from, until }) => {
                for (a, b) in links(from, all & !from, n) {
                    sim.partition_oneway(host(a).as_str(), host(b).as_str());
                }
                self.schedule(until, Action::RepairOneWay { from });
            }
            Action::RepairOneWay { from } => {
                for (a, b) in links(from, all & !from, n) {
                    sim.repair_oneway(host(a).as_str(), host(b).as_str());
                    // The connections that lost segments would time out: reset them.
                    self.resets.reset_between(self.ips[a], self.ips[b]);
                }
            }
            Action::Apply(Fault::Reset { a, b }) => {
                self.resets.reset_between(self.ips[a], self.ips[b]);
            }
            Action::Apply(Fault::HoldLinks { node, peers, until }) => {
                for (a, b) in links(1 << node, peers, n) {
                    sim.hold(host(a).as_str(), host(b).as_str());
                }
                self.schedule(until, Action::ReleaseLinks { node, peers });
            }
            Action::ReleaseLinks { node, peers } => {
                for (a, b) in links(1 << node, peers, n) {
                    sim.release(host(a).as_str(), host(b).as_str());
                }
            }
            Action::Apply(Fault::Stall { node, from, until }) => {
                self.stalls.stall(node, from);
                self.schedule(until, Action::Unstall { node, from });
            }
            Action::Unstall { node, from } => self.stalls.release(node, from),
            Action::Apply(Fault::Latency { max }) => {
                sim.set_max_message_latency(Duration::from_nanos(max.max(self.min_latency)));
            }
            Action::Apply(Fault::Crash { nodes, restart, wipe }) => {
                let nodes = nodes & !self.down;
                for i in (0..self.nodes).filter(|i| nodes >> i & 1 == 1) {
                    // Its sockets close in creation order, not in the order tokio drops its tasks.
                    self.tables[i].crashing(true);
                    sim.crash(host(i).as_str());
                    self.tables[i].crashing(false);
                    self.stalls.forget(i);
                    rec.crashed(i, now);
                }
                self.down |= nodes;
                self.schedule(restart, Action::Restart { nodes, wipe });
            }
            Action::Restart { nodes, wipe } => {
                let nodes = nodes & self.down;
                for i in (0..self.nodes).filter(|i| nodes >> i & 1 == 1) {
                    if wipe {
                        self.wipes.lock().unwrap_or_else(|e| e.into_inner())[i] += 1;
                    }
                    sim.bounce(host(i).as_str());
                }
                self.down &= !nodes;
            }
        }
    }

    /// Ends every fault: releases holds, repairs partitions (resetting their connections), restores the
    /// latency and restarts crashed nodes (with their state directories).
    pub fn heal(&mut self, sim: &mut Sim<'_>, now: u64, rec: &Recorder) {
        let pending = std::mem::take(&mut self.queue);
        // Undo steps still pending run now; faults not yet applied are dropped (none: all are before heal).
        for (_, a) in pending.into_iter().rev() {
            if !matches!(a, Action::Apply(_)) {
                self.run(sim, now, a, rec);
            }
        }
        sim.set_max_message_latency(Duration::from_nanos(self.base_latency));
        let reordered = self.stalls.reordered();
        rec.event(now, usize::MAX, usize::MAX, "heal", &[reordered], || {
            format!("stalls reordered {reordered} time(s)")
        });
    }
}

/// Every link from a node in mask `from` to a node in mask `to` (itself excepted) among `n`, in index order.
pub(crate) fn links(from: u64, to: u64, n: usize) -> impl Iterator<Item = (usize, usize)> {
    let set = move |m: u64| (0..n).filter(move |i| m >> i & 1 == 1);
    set(from).flat_map(move |a| set(to).filter(move |&b| b != a).map(move |b| (a, b)))
}

fn action_word(a: &Action) -> u64 {
    match a {
        Action::Apply(Fault::Hold { side, .. }) => 1 << 56 | side,
        Action::Apply(Fault::OneWay { from, .. }) => 2 << 56 | from,
        Action::Apply(Fault::Reset { a, b }) => 3 << 56 | (*a as u64) << 8 | *b as u64,
        Action::Apply(Fault::Latency { max }) => 4 << 56 | max,
        Action::Apply(Fault::Crash { nodes, .. }) => 5 << 56 | nodes,
        Action::Release { side } => 6 << 56 | side,
        Action::RepairOneWay { from } => 7 << 56 | from,
        Action::Restart { nodes, wipe } => 8 << 56 | (*wipe as u64) << 40 | nodes,
        Action::Apply(Fault::HoldLinks { node, peers, .. }) => 9 << 56 | (*node as u64) << 48 | peers,
        Action::ReleaseLinks { node, peers } => 10 << 56 | (*node as u64) << 48 | peers,
        Action::Apply(Fault::Stall { node, from, .. }) => 11 << 56 | (*node as u64) << 8 | *from as u64,
        Action::Unstall { node, from } => 12 << 56 | (*node as u64) << 8 | *from as u64,
    }
}
