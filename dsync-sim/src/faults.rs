//! Swarm testing: the seed first picks the world (which faults exist, how often, how hard), then the
//! explicit schedule of faults and workload steps in that world, as TigerBeetle's VOPR does. Different
//! seeds therefore explore different worlds instead of all seeds averaging into one mild one.
//!
//! The schedule is plain data ([`Schedule`]), so a failing run can be shrunk by dropping entries.

use crate::net::NetParams;
use crate::rng::Rng;
use crate::workload::{self, PlannedWrite, Request};
use dsync_core::Duration;
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
}

/// What a restarted node still has, and so how it starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartKind {
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

/// The explicit list of everything the seed scheduled; shrinking drops entries from it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Schedule {
    /// Faults, by time.
    pub faults: Vec<FaultEvent>,
    /// Client requests, by time.
    pub requests: Vec<Request>,
}

/// The world a seed chose: timing profile, fault mix and intensities.
#[derive(Clone, Debug)]
pub struct Swarm {
    /// Cluster size.
    pub nodes: usize,
    /// Lease `L`.
    pub lease: Duration,
    /// The configured drift bound ρ, ppm.
    pub max_drift_ppm: u32,
    /// Each node's actual clock rate error, ppm.
    pub drift_ppm: Vec<i64>,
    /// Whether the embedder persists the fencing floor.
    pub persist_floor: bool,
    /// Network behaviour.
    pub net: NetParams,
    /// Whether partitions are reported to nodes as peers going down (crashes always are).
    pub detect_partitions: bool,
    /// Failure-detector delay, nanoseconds.
    pub detect_delay: u64,
    /// Probability that a holder's write is preceded by a GC pause (between its validity check and the write).
    pub gc_pause_prob: f64,
    /// Longest such pause, nanoseconds.
    pub gc_pause_max: u64,
    /// True time at which the fault phase ends and everything heals.
    pub heal_at: u64,
    /// The node the adversarial faults aim at (isolated more often; slowest clock in adversarial mode).
    pub victim: usize,
    /// Every node starts with `Start::Bootstrap` (a brand-new cluster without state) instead of `FirstBoot`.
    pub bootstrap_start: bool,
}

/// Options that are not drawn from the seed.
#[derive(Clone, Copy, Debug, Default)]
pub struct SwarmOptions {
    /// Let clocks drift beyond the configured bound (the "assumption broken" scenario).
    pub drift_beyond_bound: bool,
}

impl Swarm {
    /// Draws the world for `seed` and then its schedule.
    pub fn generate(seed: u64, nodes: usize, opts: SwarmOptions) -> (Swarm, Schedule) {
        let mut r = Rng::new(seed, 1);
        let swarm = Swarm::draw(&mut r, nodes, opts);
        let mut s = Rng::new(seed, 2);
        let mut schedule = Schedule { faults: swarm.draw_faults(&mut s), requests: workload::draw(&mut s, &swarm) };
        swarm.draw_ambushes(&mut Rng::new(seed, 5), &mut schedule);
        (swarm, schedule)
    }

    fn draw(r: &mut Rng, n: usize, opts: SwarmOptions) -> Swarm {
        let lease = Duration::from_secs(2);
        // A large ρ makes the drift margin (and its absence) matter within a short simulated run.
        let max_drift_ppm = [1_000u32, 10_000, 50_000, 100_000][r.below(4) as usize];
        let rho = max_drift_ppm as i64;
        let extreme = r.chance(0.6); // push clocks to the edges of the bound, where margins are tight
        let victim = r.below(n as u64) as usize;
        // Adversarial clocks: the victim runs as slow as allowed (it trusts its lock longest in true
        // time) and everyone else as fast as allowed (their grants expire soonest).
        let adversarial = r.chance(0.4);
        let drift_ppm = (0..n)
            .map(|i| {
                if adversarial && !opts.drift_beyond_bound {
                    if i == victim {
                        -rho
                    } else {
                        rho
                    }
                } else if opts.drift_beyond_bound {
                    let x = r.range(rho as u64 * 2, rho as u64 * 5) as i64;
                    if r.chance(0.5) {
                        x
                    } else {
                        -x.min(900_000)
                    }
                } else if extreme {
                    if r.chance(0.5) {
                        rho
                    } else {
                        -rho
                    }
                } else {
                    r.range(0, 2 * rho as u64) as i64 - rho
                }
            })
            .collect();
        let tail = r.chance(0.6);
        let net = NetParams {
            lat_min: r.range(50_000, 300_000),
            lat_typ: r.log_range(500_000, 5 * MS),
            tail_prob: if tail { r.unit() * 0.08 } else { 0.0 },
            tail_max: r.log_range(50 * MS, 600 * MS),
            loss: if r.chance(0.5) { r.unit() * 0.1 } else { 0.0 },
            dup: if r.chance(0.3) { r.unit() * 0.05 } else { 0.0 },
            fifo: r.chance(0.4),
            // Replies reaching the victim late stretch the gap between a round's send and its answers.
            slow_to: r.chance(0.4).then_some(victim),
            slow_extra: r.range(20 * MS, 190 * MS),
        };
        Swarm {
            nodes: n,
            lease,
            max_drift_ppm,
            drift_ppm,
            // A lone node can only restart from a durable floor.
            persist_floor: n == 1 || r.chance(0.5),
            net,
            detect_partitions: r.chance(0.5),
            detect_delay: r.log_range(5 * MS, 500 * MS),
            gc_pause_prob: if r.chance(0.6) { r.unit() * 0.3 } else { 0.0 },
            gc_pause_max: r.log_range(100 * MS, 4 * S),
            heal_at: r.range(8 * S, 20 * S),
            victim,
            bootstrap_start: r.chance(0.35),
        }
    }

    /// Ambushes: the victim takes a long write lock on a hot resource, is then cut off for longer than a
    /// lease, and other nodes queue for the same resource. A correct holder's belief ends before the
    /// lockers' grants do; any margin that is missing (drift, validity counted from the replies) shows up
    /// as an overlap here. Random faults alone line these up only rarely.
    fn draw_ambushes(&self, r: &mut Rng, sch: &mut Schedule) {
        let n = self.nodes;
        if n < 2 || !r.chance(0.5) {
            return;
        }
        let lease = self.lease.as_nanos() as u64;
        for _ in 0..r.range(1, 3) {
            let at = r.range(S / 2, self.heal_at.saturating_sub(S).max(S / 2 + 1));
            let res = format!("h{}", r.below(2));
            let mut req = Request::write(self.victim, at, &res, 4 * lease);
            req.writes = (1..=3).map(|k| PlannedWrite { after: k * lease, pause: 0 }).collect();
            sch.requests.push(req);
            let cut = at + r.range(50 * MS, 400 * MS);
            sch.faults.push(FaultEvent { at: cut, fault: Fault::Partition { side: 1 << self.victim, one_way: false } });
            sch.faults.push(FaultEvent { at: cut + r.range(lease * 3 / 2, 3 * lease), fault: Fault::Heal });
            for _ in 0..r.range(1, 2) {
                let mut other = r.below(n as u64 - 1) as usize;
                if other >= self.victim {
                    other += 1;
                }
                let mut c = Request::write(other, cut + r.range(10 * MS, 500 * MS), &res, r.range(50 * MS, 500 * MS));
                c.deadline = Some(3 * lease);
                c.writes = vec![PlannedWrite { after: 0, pause: 0 }];
                sch.requests.push(c);
            }
        }
        if r.chance(0.6) {
            self.draw_wipe_wave(r, sch);
        }
        sch.faults.sort_by_key(|f| f.at);
        sch.requests.sort_by_key(|q| q.at);
    }

    /// A wipe wave: while the victim holds a write lock, every other node crashes and comes back with a
    /// wiped state directory (`Start::Bootstrap`) within milliseconds of the others, and one of them asks for
    /// the victim's resource. The victim's lock relies on the old incarnations' grants, so they must find
    /// history (the victim) before granting: its answer must not be ignored, a quorum of fresh peers must not
    /// suffice while the victim is cut off, and an old first-boot record must not vouch for a new start.
    fn draw_wipe_wave(&self, r: &mut Rng, sch: &mut Schedule) {
        let n = self.nodes;
        let lease = self.lease.as_nanos() as u64;
        let at = r.range(S / 2, self.heal_at.saturating_sub(3 * lease).max(S / 2 + 1));
        let res = format!("h{}", r.below(2));
        let mut req = Request::write(self.victim, at, &res, 4 * lease);
        req.writes = (1..=3).map(|k| PlannedWrite { after: k * lease / 2, pause: 0 }).collect();
        sch.requests.push(req);
        let wave = at + r.range(100 * MS, 500 * MS);
        if r.chance(0.5) {
            // Cut off, the victim cannot answer: only waiting for every peer keeps the others out.
            sch.faults
                .push(FaultEvent { at: wave - MS, fault: Fault::Partition { side: 1 << self.victim, one_way: false } });
            sch.faults.push(FaultEvent { at: wave + r.range(lease * 3 / 2, 3 * lease), fault: Fault::Heal });
        }
        for node in (0..n).filter(|&i| i != self.victim) {
            sch.faults.push(FaultEvent { at: wave, fault: Fault::Crash { node } });
            let back = wave + r.range(MS, 30 * MS);
            sch.faults.push(FaultEvent { at: back, fault: Fault::Restart { node, kind: RestartKind::Wiped } });
        }
        let mut other = r.below(n as u64 - 1) as usize;
        if other >= self.victim {
            other += 1;
        }
        let mut c = Request::write(other, wave + r.range(40 * MS, 400 * MS), &res, r.range(50 * MS, 500 * MS));
        c.deadline = Some(3 * lease);
        c.writes = vec![PlannedWrite { after: 0, pause: 0 }];
        sch.requests.push(c);
    }

    /// Each fault kind is on or off for this seed, and has its own rate.
    fn draw_faults(&self, r: &mut Rng) -> Vec<FaultEvent> {
        let n = self.nodes;
        let end = self.heal_at;
        let mut out = Vec::new();
        let rate = |r: &mut Rng, p_on: f64, max_per_10s: f64| -> f64 {
            if r.chance(p_on) {
                r.unit() * max_per_10s / (10 * S) as f64
            } else {
                0.0
            }
        };
        let crash = rate(r, 0.6, 6.0);
        let pause = rate(r, 0.5, 6.0);
        let partition = if n > 1 { rate(r, 0.6, 6.0) } else { 0.0 };
        let clog = if n > 1 { rate(r, 0.4, 8.0) } else { 0.0 };
        let fast_restart = r.chance(0.5);
        let durable_p = r.unit();
        let wiped_p = if r.chance(0.6) { r.unit() * 0.7 } else { 0.0 };
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
        poisson(r, crash, &mut times);
        for &at in &times {
            // Sometimes several nodes at once: that is what breaks quorum-based recovery.
            let k = if r.chance(0.3) { r.range(1, (n as u64 / 2 + 1).max(1)) } else { 1 };
            for _ in 0..k {
                let node = r.below(n as u64) as usize;
                let down = if fast_restart { r.log_range(MS, 300 * MS) } else { r.log_range(100 * MS, 5 * S) };
                out.push(FaultEvent { at, fault: Fault::Crash { node } });
                let kind = if r.chance(wiped_p) {
                    RestartKind::Wiped
                } else if r.chance(durable_p) {
                    RestartKind::Durable
                } else {
                    RestartKind::Volatile
                };
                out.push(FaultEvent { at: at + down, fault: Fault::Restart { node, kind } });
            }
        }
        times.clear();
        poisson(r, pause, &mut times);
        for &at in &times {
            let node = r.below(n as u64) as usize;
            out.push(FaultEvent { at, fault: Fault::Pause { node, dur: r.log_range(10 * MS, 5 * S) } });
        }
        times.clear();
        poisson(r, partition, &mut times);
        for &at in &times {
            // Isolating one node (often a holder) is the classic; random halves split quorums.
            let side = if r.chance(0.35) {
                1u64 << self.victim
            } else if r.chance(0.3) {
                1u64 << r.below(n as u64)
            } else {
                let mut m = 0u64;
                for i in 0..n {
                    if r.chance(0.5) {
                        m |= 1 << i;
                    }
                }
                m
            };
            let one_way = r.chance(0.3);
            out.push(FaultEvent { at, fault: Fault::Partition { side, one_way } });
            // Half of the partitions outlast a lease, so an isolated holder's grants expire elsewhere.
            let lease = self.lease.as_nanos() as u64;
            let dur = if r.chance(0.5) { r.log_range(50 * MS, 6 * S) } else { r.range(lease, 5 * lease / 2) };
            out.push(FaultEvent { at: at + dur, fault: Fault::Heal });
        }
        times.clear();
        poisson(r, clog, &mut times);
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
}

impl Swarm {
    /// A calm world for hand-written scenarios: `n` nodes, perfect clocks, a fast lossless FIFO network,
    /// no faults of its own, and the heal phase at 20 s.
    pub fn calm(n: usize) -> Swarm {
        Swarm {
            nodes: n,
            lease: Duration::from_secs(2),
            max_drift_ppm: 10_000,
            drift_ppm: vec![0; n],
            persist_floor: n == 1,
            net: NetParams::default(),
            detect_partitions: false,
            detect_delay: 50 * MS,
            gc_pause_prob: 0.0,
            gc_pause_max: S,
            heal_at: 20 * S,
            victim: 0,
            bootstrap_start: false,
        }
    }
}
