//! The faults the world injects: what each one does, and how a seed's random ones are drawn from its
//! [`Swarm`]'s fault mix. Applying them is the world's job (`world/faults.rs`).

use crate::rng::Rng;
use crate::swarm::Swarm;
use std::fmt;

const MS: u64 = 1_000_000;
const S: u64 = 1_000_000_000;

/// One injected fault, applied at a true time by the world.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The process dies: its volatile state (grants, locks, timers) is lost. Its clock and disk survive.
    Crash {
        /// The node.
        node: usize,
    },
    /// A crashed node starts again (ignored if it is running).
    Restart {
        /// The node.
        node: usize,
        /// What survived the crash.
        kind: RestartKind,
    },
    /// The process handles nothing for `dur` of true time (a GC pause); its clock runs on.
    Pause {
        /// The node.
        node: usize,
        /// Nanoseconds.
        dur: u64,
    },
    /// Messages from `side` to the rest are dropped, and the other way too unless `one_way`.
    Partition {
        /// Bit mask of the nodes on one side.
        side: u64,
        /// Only block messages leaving `side`.
        one_way: bool,
    },
    /// Every partition heals.
    Heal,
    /// Messages on the link `from → to` are held (not lost) until the link is released.
    Clog {
        /// Sender.
        from: usize,
        /// Receiver.
        to: usize,
    },
    /// The held messages of `from → to` are delivered and the link flows again.
    Unclog {
        /// Sender.
        from: usize,
        /// Receiver.
        to: usize,
    },
    /// The machine's clock of a crashed node is set `by` nanoseconds forwards (negative: backwards) before
    /// it restarts (an NTP step, a replaced machine). Only a node that is down: the core requires a running
    /// node's clock to be monotonic, and a new process compares no instant with its predecessor's. Ignored
    /// while the node runs. Its rate is unchanged.
    ClockJump {
        /// The node.
        node: usize,
        /// Nanoseconds, signed.
        by: i64,
    },
    /// An administrator on `node` force-unlocks `resource` (`Node::force_unlock` with
    /// `ForceTarget::Resource`). This voids the guarantees of every lock on `resource` held or being
    /// acquired while the command reaches lockers: the checkers do not count such a lock against mutual
    /// exclusion or the fenced register from the moment a locker removed grants for it (see
    /// [`crate::check::HoldRecord::voided`]).
    ForceUnlock {
        /// The node that issues the command.
        node: usize,
        /// The resource.
        resource: String,
    },
}

impl Fault {
    /// The nodes the fault names (for validation).
    pub fn nodes(&self) -> Vec<usize> {
        match *self {
            Fault::Crash { node }
            | Fault::Restart { node, .. }
            | Fault::Pause { node, .. }
            | Fault::ClockJump { node, .. }
            | Fault::ForceUnlock { node, .. } => vec![node],
            Fault::Clog { from, to } | Fault::Unclog { from, to } => vec![from, to],
            Fault::Partition { .. } | Fault::Heal => vec![],
        }
    }
}

/// Why [`crate::World::add_fault`] refused a fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultError {
    /// The fault would land at or after the heal time (or the heal phase has begun): the heal phase ends
    /// every partition, clog and pause and restarts crashed nodes, and no fault applies after it.
    AfterHeal {
        /// When the fault would land, true nanoseconds.
        at: u64,
        /// The world's heal time, true nanoseconds.
        heal_at: u64,
    },
    /// The fault names a node outside the cluster.
    NoSuchNode {
        /// The index given.
        node: usize,
        /// The cluster size.
        nodes: usize,
    },
    /// A partition of the stack simulator would cut a link that another one already cuts at the same time
    /// (turmoil neither combines a two-way and a one-way partition on one link nor counts two holds: the
    /// first to end would end both).
    Overlap {
        /// When the refused fault would start, true nanoseconds.
        at: u64,
        /// When the partition it overlaps starts, true nanoseconds.
        other: u64,
        /// A link both cut.
        link: (usize, usize),
    },
}

impl fmt::Display for FaultError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultError::AfterHeal { at, heal_at } => write!(
                f,
                "fault at {:.6}s lands at or after the heal time {:.6}s, when every fault ends",
                *at as f64 / 1e9,
                *heal_at as f64 / 1e9
            ),
            FaultError::NoSuchNode { node, nodes } => write!(f, "node {node} is not in the cluster of {nodes} nodes"),
            FaultError::Overlap { at, other, link: (a, b) } => write!(
                f,
                "partition at {:.6}s cuts the link {a}–{b}, which the partition from {:.6}s already cuts then",
                *at as f64 / 1e9,
                *other as f64 / 1e9
            ),
        }
    }
}

impl std::error::Error for FaultError {}

/// What a restarted node still has, and so how it starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartKind {
    /// `Start::Restart` with exactly this durable floor (as if the embedder had persisted it), whatever
    /// the world's `persist_floor`. A floor below what the node's locker granted is a broken embedder.
    Floor(u64),
    /// The node's state is wiped and it starts as a *fresh cluster's* node, `Start::Bootstrap`, without the
    /// world's `Wiped` downgrade: when every node restarts so, the cluster boots afresh (PROTOCOL.md §6.5).
    /// Fencing history is then knowingly discarded: tokens start over, and the token-order checker, which
    /// compares every write lock of the run, flags a later lock whose token is not above an earlier one.
    Bootstrap,
    /// The node's state is wiped and it starts as `Start::FirstBoot`: asserted first boot of a new cluster.
    /// Only correct when every node restarts so and no grant of the old cluster is still believed; the
    /// same caveat on fencing history as [`RestartKind::Bootstrap`] applies.
    FirstBoot,
    /// `Start::Restart` with the floor its embedder persisted (only with `persist_floor`, else as `Volatile`).
    Durable,
    /// `Start::Restart` without a durable floor.
    Volatile,
    /// The state directory was wiped: `Start::Bootstrap`, and the persisted floor is gone. The world makes
    /// this a `Volatile` restart when no other node is running with a decided start (then the whole cluster
    /// would be fresh, which knowingly discards fencing history: PROTOCOL.md §6.5).
    Wiped,
}

/// A fault at a true time (nanoseconds).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultEvent {
    /// True time, nanoseconds.
    pub at: u64,
    /// What happens.
    pub fault: Fault,
}

impl fmt::Display for FaultEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:>12.6}s fault {:?}", self.at as f64 / 1e9, self.fault)
    }
}

/// Draws the random faults of the fault phase: each kind at its rate in `swarm.faults`, as a Poisson
/// process in true time, shaped by `swarm.partition`. Sorted by time; simultaneous faults keep their
/// drawn order.
pub fn draw(r: &mut Rng, swarm: &Swarm) -> Vec<FaultEvent> {
    let n = swarm.nodes;
    let end = swarm.heal_at;
    let mix = &swarm.faults;
    let shape = &swarm.partition;
    let mut out = Vec::new();
    let per_ns = |per_10s: f64| per_10s / (10 * S) as f64;
    let poisson = |r: &mut Rng, rate: f64, out: &mut Vec<u64>| {
        if rate <= 0.0 {
            return;
        }
        let mut t = 0f64;
        loop {
            t += -(1.0 - r.unit()).ln() / rate;
            if t >= end as f64 {
                break;
            }
            out.push(t as u64);
        }
    };
    let mut times = Vec::new();
    poisson(r, per_ns(mix.crashes_per_10s), &mut times);
    for &at in &times {
        // Sometimes several nodes at once: that is what breaks quorum-based recovery.
        let k = if r.chance(mix.multi_crash_prob) { r.range(1, (n as u64 / 2 + 1).max(1)) } else { 1 };
        for _ in 0..k {
            let node = r.below(n as u64) as usize;
            let down = if mix.fast_restart { r.log_range(MS, 300 * MS) } else { r.log_range(100 * MS, 5 * S) };
            out.push(FaultEvent { at, fault: Fault::Crash { node } });
            let kind = if r.chance(mix.restart_wiped_prob) {
                RestartKind::Wiped
            } else if r.chance(mix.restart_durable_prob) {
                RestartKind::Durable
            } else {
                RestartKind::Volatile
            };
            out.push(FaultEvent { at: at + down, fault: Fault::Restart { node, kind } });
        }
    }
    times.clear();
    poisson(r, per_ns(mix.pauses_per_10s), &mut times);
    for &at in &times {
        let node = r.below(n as u64) as usize;
        out.push(FaultEvent { at, fault: Fault::Pause { node, dur: r.log_range(10 * MS, 5 * S) } });
    }
    times.clear();
    poisson(r, per_ns(mix.partitions_per_10s), &mut times);
    for &at in &times {
        let side = if r.chance(shape.isolate_victim_prob) {
            1u64 << swarm.victim
        } else if r.chance(shape.isolate_one_prob) {
            1u64 << r.below(n as u64)
        } else {
            let mut m = 0u64;
            for i in 0..n {
                if r.chance(shape.member_prob) {
                    m |= 1 << i;
                }
            }
            m
        };
        let one_way = r.chance(shape.one_way_prob);
        out.push(FaultEvent { at, fault: Fault::Partition { side, one_way } });
        let lease = swarm.lease_nanos();
        let dur = if r.chance(shape.short_prob) { r.log_range(50 * MS, 6 * S) } else { r.range(lease, 5 * lease / 2) };
        out.push(FaultEvent { at: at + dur, fault: Fault::Heal });
    }
    times.clear();
    poisson(r, per_ns(mix.clogs_per_10s), &mut times);
    for &at in &times {
        let from = r.below(n as u64) as usize;
        let mut to = r.below(n as u64 - 1) as usize;
        if to >= from {
            to += 1;
        }
        out.push(FaultEvent { at, fault: Fault::Clog { from, to } });
        out.push(FaultEvent { at: at + r.log_range(10 * MS, 3 * S), fault: Fault::Unclog { from, to } });
    }
    out.retain(|f| f.at < end);
    out.sort_by_key(|f| f.at); // stable: simultaneous faults keep their drawn order
    out
}
