//! Applying faults to the world: crashes (volatile state lost, clock and disk kept), restarts in their
//! three kinds, process pauses, partitions and clogged links, and what the failure detector makes of
//! them. Faults only apply in the fault phase; healing everything is the heal phase's job.

use super::{Phase, World};
use crate::detector::Notice;
use crate::faults::{Fault, RestartKind};
use crate::trace::Tag;
use dsync_core::{Node, ServingState, Start};

impl World {
    pub(super) fn fault(&mut self, f: Fault) {
        if self.phase != Phase::Faults {
            return;
        }
        self.trace.record(self.now, Tag::Fault, &[]);
        if self.trace.logging() {
            self.trace.log(self.now, format!("fault {f:?}"));
        }
        match f {
            Fault::Crash { node } => self.crash(node),
            Fault::Restart { node, kind } => {
                if self.slots[node].node.is_none() {
                    self.restart(node, kind);
                }
            }
            Fault::Pause { node, dur } => {
                if self.slots[node].node.is_some() {
                    let s = &mut self.slots[node];
                    s.paused_until = s.paused_until.max(self.now.saturating_add(dur));
                    self.disturb.fault(node, self.now, self.now.saturating_add(dur));
                }
            }
            Fault::Partition { side, one_way } => {
                self.net.partition(side, one_way);
                self.disturb.partition(self.now);
                self.detector.links_changed(&mut self.seq, self.now);
            }
            Fault::Heal => {
                self.net.heal_partitions();
                self.disturb.partitions_healed(self.now);
                self.detector.links_changed(&mut self.seq, self.now);
            }
            Fault::ClockJump { node, by } => {
                if self.slots[node].node.is_none() {
                    let c = &mut self.slots[node].clock;
                    c.offset = c.offset.saturating_add_signed(by);
                }
            }
            Fault::ForceUnlock { node, resource } => self.force_unlock(node, resource),
            Fault::Clog { from, to } => {
                self.net.set_clog(from, to, true);
                self.disturb.clog(from, to, self.now);
            }
            Fault::Unclog { from, to } => {
                self.net.unclog(&mut self.rng, &mut self.seq, self.now, from, to);
                self.disturb.unclog(from, to, self.now);
            }
        }
    }

    /// The process dies: its clients' holds end now, its grants and timers are gone, and after the
    /// detector's delay every peer hears of it. Its clock and disk survive.
    pub(super) fn crash(&mut self, node: usize) {
        if self.slots[node].node.is_none() {
            return;
        }
        self.stats.crashes += 1;
        self.disturb.fault(node, self.now, self.now);
        let locks = std::mem::take(&mut self.slots[node].locks);
        for c in locks.into_values() {
            if let Some(h) = c.held {
                self.close(h);
            }
        }
        let s = &mut self.slots[node];
        s.node = None;
        s.crashed_at = Some(self.now);
        s.timer_gen += 1;
        s.timer_at = u64::MAX;
        s.paused_until = 0;
        self.owed.forget_node(node);
        self.detector.crashed(&mut self.seq, self.now, node);
    }

    /// A new incarnation of `node` starts with what `kind` says survived.
    pub(super) fn restart(&mut self, node: usize, kind: RestartKind) {
        let inc = self.slots[node].inc + 1;
        let cfg = self.node_config(node, inc);
        let mut kind = kind;
        if kind == RestartKind::Wiped && self.history && !self.someone_decided(node) {
            // Every node would be fresh after grants were made: a new cluster that knowingly drops its fencing
            // history (§6.5), which the token checkers would rightly flag. A wiped disk here is out of scope.
            kind = RestartKind::Volatile;
        }
        let start = if let RestartKind::Floor(floor) = kind {
            self.slots[node].durable = Some(floor);
            Start::Restart { durable_floor: Some(floor) }
        } else if kind == RestartKind::FirstBoot {
            self.slots[node].durable = None;
            Start::FirstBoot
        } else if matches!(kind, RestartKind::Wiped | RestartKind::Bootstrap) {
            self.slots[node].durable = None;
            Start::Bootstrap
        } else {
            let durable = self.swarm.persist_floor && (kind == RestartKind::Durable || self.swarm.nodes == 1);
            // No floor file (wiped, or never written): a lone node never granted above the persisted 0;
            // any other node restarts without a floor, as an embedder with an empty state directory would.
            let stored = if self.swarm.nodes == 1 {
                Some(self.slots[node].durable.unwrap_or(0))
            } else {
                self.slots[node].durable
            };
            Start::Restart { durable_floor: if durable { stored } else { None } }
        };
        if self.trace.logging() {
            self.trace.log(self.now, format!("node{node} starts as {start:?}"));
        }
        self.disturb.fault(node, self.now, self.now);
        let local = self.local_now(node);
        let s = &mut self.slots[node];
        s.inc = inc;
        s.node = Some(Node::new(cfg, local, start).expect("restart config is valid"));
        self.trace.record(self.now, Tag::Restart, &[node as u64]);
        self.after_step(node);
        self.detector.restarted(&mut self.seq, self.now, node);
    }

    /// Whether a node other than `node` runs with a decided start (not an undecided bootstrap).
    fn someone_decided(&self, node: usize) -> bool {
        (0..self.swarm.nodes).any(|i| {
            i != node
                && self.slots[i].node.as_ref().is_some_and(|nd| {
                    !matches!(nd.serving_state(self.local_now(i)), ServingState::Bootstrapping { .. })
                })
        })
    }

    /// A failure-detector notice reaches `node`: it is told whether `peer` is reachable, if that changed.
    pub(super) fn notify(&mut self, n: Notice) {
        let Notice { node, peer } = n;
        if self.slots[node].node.is_none() {
            return;
        }
        if self.paused(node) {
            let at = self.slots[node].paused_until;
            self.detector.requeue(&mut self.seq, at, n);
            return;
        }
        let up =
            self.slots[peer].node.is_some() && (!self.detector.reports_partitions() || self.net.connected(node, peer));
        if !self.detector.observe(node, peer, up) {
            return;
        }
        let local = self.local_now(node);
        if up {
            self.slots[node].node.as_mut().expect("live").handle_peer_up(local, peer);
        } else {
            // Told the locker is down, the owner cannot send it an unlock: nothing is owed.
            self.owed.forget_pair(node, peer);
            self.slots[node].node.as_mut().expect("live").handle_peer_down(local, peer);
        }
        self.trace.record(self.now, Tag::PeerNotice, &[node as u64, peer as u64, up as u64]);
        self.after_step(node);
    }
}
