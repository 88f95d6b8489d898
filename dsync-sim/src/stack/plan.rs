//! What a seed does in the stack simulator: the workload's shape and an explicit list of faults, drawn from
//! the simulator's own seeded generator ([`crate::rng::Rng`]). As in the core swarm, the seed first picks
//! the *mix* — which fault kinds exist in this run and how hard — and then the faults themselves, so that
//! some seeds are calm, some only crash, some only partition, and some do everything.

use crate::rng::Rng;
use std::fmt;

/// Nanoseconds per millisecond.
pub const MS: u64 = 1_000_000;
/// Nanoseconds per second.
pub const S: u64 = 1_000_000_000;

/// The lease every node runs with (short, so a run sees many expiries).
pub const LEASE: u64 = 2 * S;
/// The largest cluster the stack simulator runs (turmoil steps every host every millisecond); larger sizes
/// are clamped to it, and 0 to 1.
pub const MAX_NODES: usize = 16;

/// One fault, applied by the harness between turmoil steps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Two-way partition as TCP sees it: segments between the sides are *held* (delayed, never lost) until
    /// `until`, then delivered.
    Hold {
        /// Bit mask of the nodes on one side (the rest are the other).
        side: u64,
        /// When the held segments are released.
        until: u64,
    },
    /// One-way partition: segments from `from` to everyone else are dropped until `until`; turmoil's TCP
    /// does not retransmit, so the affected connections stall, and at `until` the harness resets them
    /// (the TCP user timeout).
    OneWay {
        /// Bit mask of the senders cut off.
        from: u64,
        /// When it is repaired.
        until: u64,
    },
    /// Segments between `node` and each node in `peers` are held (two-way, as [`Fault::Hold`]) until
    /// `until`; the rest of the network flows.
    HoldLinks {
        /// The node cut off from `peers`.
        node: usize,
        /// Bit mask of the nodes it cannot reach.
        peers: u64,
        /// When the held segments are released.
        until: u64,
    },
    /// Node `node`'s driver does not see messages from `from` until their connection is replaced; then it
    /// gets them right behind the new connection's first messages (or at `until`, if no new connection
    /// delivered by then): the late frames of a dead connection ([`super::reorder`]).
    Stall {
        /// The receiving node.
        node: usize,
        /// The sender whose messages are withheld.
        from: usize,
        /// When the stall ends at the latest.
        until: u64,
    },
    /// Every connection between `a` and `b` is reset.
    Reset {
        /// One end.
        a: usize,
        /// The other.
        b: usize,
    },
    /// The network's maximum latency changes (the minimum stays).
    Latency {
        /// New maximum, ns.
        max: u64,
    },
    /// The nodes in `nodes` crash (nothing released; unsynced writes lost) and restart at `restart`;
    /// with `wipe`, on a fresh, empty state directory.
    Crash {
        /// Bit mask of the nodes.
        nodes: u64,
        /// When they restart.
        restart: u64,
        /// Whether the state directory is lost.
        wipe: bool,
    },
}

/// Which fault kinds a seed has, and how the applications behave.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Cluster size.
    pub nodes: usize,
    /// Application tasks per node.
    pub apps: usize,
    /// Resources contended for (`r0`, `r1`, ...).
    pub resources: usize,
    /// Message latency bounds, ns.
    pub latency: (u64, u64),
    /// Longest hold an application draws, ns (log-uniform from 5 ms).
    pub hold_max: u64,
    /// Longest pause between two attempts, ns.
    pub think_max: u64,
    /// Chance that a hold is paused (GC-like) between its validity check and its write.
    pub pause_prob: f64,
    /// Pause lengths (log-uniform), ns.
    pub pause: (u64, u64),
    /// Weights of the attempt styles: `lock()`, `try_lock_for`, `timeout(lock())`, `try_lock`.
    pub styles: [u32; 4],
    /// Chance an attempt is a read lock.
    pub read_prob: f64,
    /// Chance an attempt names two resources.
    pub multi_prob: f64,
    /// Probability that an unsynced write becomes durable by itself (per file-system operation).
    pub sync_probability: f64,
    /// Faults, by true time, all before `heal_at`.
    pub faults: Vec<(u64, Fault)>,
    /// Rejoin races staged ([`super::race`]).
    pub races: Vec<super::race::Race>,
    /// Force-unlocks an administrator issues (PROTOCOL.md §6.8), by true time: from which node, on the
    /// resource of the oldest hold then (see [`super::force`]).
    pub forces: Vec<(u64, usize)>,
    /// When every fault is over and the network heals.
    pub heal_at: u64,
}

impl Plan {
    /// Nodes as a bit mask.
    pub fn all(&self) -> u64 {
        (1u64 << self.nodes) - 1
    }
}

/// The plan `seed` chooses for `nodes` nodes.
pub fn generate(seed: u64, nodes: usize) -> Plan {
    let nodes = nodes.clamp(1, MAX_NODES);
    let mut mix = Rng::new(seed, 0x57AC_0001);
    let mut r = Rng::new(seed, 0x57AC_0002);
    let heal_at = mix.range(12, 24) * S;
    let lat_max = *[2 * MS, 5 * MS, 20 * MS, 60 * MS].get(mix.below(4) as usize).unwrap_or(&(5 * MS));
    let hold_max = *[200 * MS, 1500 * MS, 4 * S, 8 * S].get(mix.below(4) as usize).unwrap_or(&S);
    let pauses = mix.chance(0.5);
    let styles = [mix.range(1, 6) as u32, mix.range(0, 4) as u32, mix.range(0, 4) as u32, mix.range(0, 3) as u32];
    // Each fault kind is on or off for the whole seed, like the core swarm's mix.
    let (holds, oneways, resets, latency) = (mix.chance(0.5), mix.chance(0.4), mix.chance(0.3), mix.chance(0.3));
    let (crashes, wipes, waves) = (mix.chance(0.5), mix.chance(0.25), mix.chance(0.3));
    let mut plan = Plan {
        nodes,
        apps: mix.range(2, 3) as usize,
        resources: 3,
        latency: (MS / 2, lat_max.max(MS)),
        hold_max,
        think_max: *[20 * MS, 300 * MS, S].get(mix.below(3) as usize).unwrap_or(&(100 * MS)),
        pause_prob: if pauses { [0.05, 0.2][mix.below(2) as usize] } else { 0.0 },
        pause: (100 * MS, if mix.chance(0.5) { 2 * LEASE } else { 5 * LEASE }),
        styles: if styles.iter().all(|&w| w == 0) { [1, 0, 0, 0] } else { styles },
        read_prob: [0.0, 0.2, 0.5][mix.below(3) as usize],
        multi_prob: [0.0, 0.15][mix.below(2) as usize],
        sync_probability: [0.05, 0.2, 0.5][mix.below(3) as usize],
        faults: Vec::new(),
        forces: Vec::new(),
        races: Vec::new(),
        heal_at,
    };
    let end = heal_at - S;
    // Network faults one at a time (turmoil does not support holds and one-way partitions together).
    if (holds || oneways) && nodes > 1 {
        let mut t = r.range(S / 2, 3 * S);
        while t < end {
            let len = r.log_range(LEASE / 4, 4 * LEASE);
            let until = (t + len).min(end);
            let side = side(&mut r, nodes);
            let fault = if holds && (!oneways || r.chance(0.5)) {
                Fault::Hold { side, until }
            } else {
                Fault::OneWay { from: side, until }
            };
            plan.faults.push((t, fault));
            t = until + r.log_range(100 * MS, 3 * S);
        }
    }
    if resets && nodes > 1 {
        for _ in 0..r.range(1, 6) {
            let (a, b) = (r.below(nodes as u64) as usize, r.below(nodes as u64) as usize);
            if a != b {
                plan.faults.push((r.range(S, end), Fault::Reset { a, b }));
            }
        }
    }
    if latency {
        for _ in 0..r.range(1, 4) {
            plan.faults.push((r.range(S, end), Fault::Latency { max: r.log_range(MS, 200 * MS) }));
        }
    }
    // Crashes: per node, one at a time; waves crash a majority or everyone at once.
    let mut busy = vec![0u64; nodes];
    let mut wiped = false;
    if crashes {
        for _ in 0..r.range(1, 2 * nodes as u64) {
            let node = r.below(nodes as u64) as usize;
            let at = r.range(S, end - S / 2);
            if at < busy[node] {
                continue;
            }
            let restart = (at + r.log_range(10 * MS, 3 * LEASE)).min(end);
            busy[node] = restart + S / 2;
            // At most one wiped directory per run: a node that lost its state recovers its floor from a read
            // quorum of peers that know theirs, so wiping a majority within one recovery window wedges the
            // cluster *by design* (it must never reissue tokens) — an operator's disaster, not a finding.
            // A single node has no peer to recover its floor from: wiping its only directory starts a new
            // cluster, whose tokens start again — by design, so not planned.
            let wipe = wipes && nodes > 1 && !wiped && r.chance(0.3);
            wiped |= wipe;
            plan.faults.push((at, Fault::Crash { nodes: 1 << node, restart, wipe }));
        }
    }
    if waves && nodes > 1 {
        let at = r.range(3 * S, end - S);
        if busy.iter().all(|&b| b <= at) {
            let nodes_mask = if r.chance(0.6) { plan.all() } else { side(&mut r, nodes) | 1 };
            let restart = (at + r.log_range(10 * MS, 2 * LEASE)).min(end);
            plan.faults.push((at, Fault::Crash { nodes: nodes_mask, restart, wipe: false }));
        }
    }
    plan.faults.sort_by_key(|f| f.0);
    // Force-unlocks come from a stream of their own, so that adding them left every other draw as it was.
    let mut f = Rng::new(seed, 0x57AC_0003);
    if f.chance(0.4) {
        for _ in 0..f.range(1, 5) {
            plan.forces.push((f.range(S, end), f.below(nodes as u64) as usize));
        }
        plan.forces.sort_unstable();
    }
    // So do rejoin races; one replaces the other faults near it.
    super::race::draw(&mut Rng::new(seed, 0x57AC_0004), &mut plan, 0.3);
    plan
}

/// A non-empty proper subset of the nodes, as a mask (a minority more often than not).
fn side(r: &mut Rng, nodes: usize) -> u64 {
    let all = (1u64 << nodes) - 1;
    loop {
        let m = if r.chance(0.6) { 1 << r.below(nodes as u64) } else { r.next_u64() & all };
        if m != 0 && m != all {
            return m;
        }
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "plan: nodes={} apps={} latency={}..{}ms hold_max={}ms think_max={}ms pause_prob={} pause={}..{}ms \
             styles(lock,try_for,timeout,try)={:?} read={} multi={} sync_probability={} heal_at={}s",
            self.nodes,
            self.apps,
            self.latency.0 as f64 / 1e6,
            self.latency.1 / MS,
            self.hold_max / MS,
            self.think_max / MS,
            self.pause_prob,
            self.pause.0 / MS,
            self.pause.1 / MS,
            self.styles,
            self.read_prob,
            self.multi_prob,
            self.sync_probability,
            self.heal_at / S
        )?;
        for (at, fault) in &self.faults {
            writeln!(f, "  {:>10.3}s {fault:?}", *at as f64 / 1e9)?;
        }
        for race in &self.races {
            writeln!(f, "  {:>10.3}s {race:?}", race.ask_at as f64 / 1e9)?;
        }
        for (at, admin) in &self.forces {
            writeln!(f, "  {:>10.3}s ForceUnlock {{ admin: {admin} }}", *at as f64 / 1e9)?;
        }
        Ok(())
    }
}
