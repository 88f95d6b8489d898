//! The swarm: the world a seed chooses before anything happens in it — clocks, network profile, failure
//! detector, persistence, and the rate and shape of every fault kind. Drawing the world first (as
//! TigerBeetle's VOPR does) makes different seeds explore different worlds instead of all averaging into
//! one mild one. Everything here is plain data, so `dsync-sim replay` can print it.

use crate::net::NetParams;
use crate::rng::Rng;
use dsync_core::Duration;
use std::fmt;

const MS: u64 = 1_000_000;
const S: u64 = 1_000_000_000;

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
    /// How often each fault kind happens in the fault phase, and what a crash brings back.
    pub faults: FaultMix,
    /// Which nodes a partition cuts off, which way, and for how long.
    pub partition: PartitionShape,
}

/// Rates of the random fault kinds (each on or off per seed) and of the scripted adversarial episodes.
/// Rates are per 10 s of true time; a rate of 0 means the kind is off.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultMix {
    /// Crash events per 10 s.
    pub crashes_per_10s: f64,
    /// Probability that a crash event takes down several nodes at once (up to half the cluster).
    pub multi_crash_prob: f64,
    /// Crashed nodes come back within 300 ms (else within 100 ms … 5 s).
    pub fast_restart: bool,
    /// Probability that a restart keeps its durable floor (when not wiped).
    pub restart_durable_prob: f64,
    /// Probability that a restart finds its state directory wiped.
    pub restart_wiped_prob: f64,
    /// Process pauses per 10 s.
    pub pauses_per_10s: f64,
    /// Partitions per 10 s.
    pub partitions_per_10s: f64,
    /// Clogged links per 10 s.
    pub clogs_per_10s: f64,
    /// Probability that the seed plays ambushes (the victim holds a hot lock, is cut off, others queue).
    pub ambush_prob: f64,
    /// Probability, given ambushes, of a wipe wave (every other node restarts wiped while the victim holds).
    pub wipe_wave_prob: f64,
    /// Probability that the victim is cut off during a wipe wave.
    pub wipe_wave_cut_prob: f64,
    /// Probability, given ambushes, of a rejoin race (PROTOCOL.md §6.7): a node grants the victim's attempt,
    /// its reply is held up, it crashes and restarts at once, and its rejoin may overtake that grant.
    pub rejoin_race_prob: f64,
    /// Force-unlocks (`Fault::ForceUnlock`, of hot and cold resources) per 10 s.
    pub force_unlocks_per_10s: f64,
    /// Probability that a restarting node's machine clock is stepped (`Fault::ClockJump`, ±1 ms … 1 h).
    pub clock_jump_prob: f64,
}

/// The shape of a random partition.
#[derive(Clone, Debug, PartialEq)]
pub struct PartitionShape {
    /// Probability that the partition isolates the victim.
    pub isolate_victim_prob: f64,
    /// Otherwise, probability that it isolates one random node.
    pub isolate_one_prob: f64,
    /// Otherwise each node is on the cut-off side with this probability (random halves split quorums).
    pub member_prob: f64,
    /// Probability that only messages leaving the cut-off side are blocked.
    pub one_way_prob: f64,
    /// Probability that the partition lasts 50 ms … 6 s, log-uniform (else one to two and a half leases,
    /// so an isolated holder's grants expire elsewhere).
    pub short_prob: f64,
}

impl Default for PartitionShape {
    fn default() -> Self {
        // Isolating one node (often a holder) is the classic case; random halves split quorums. Half of
        // the partitions outlast a lease, so an isolated holder's grants expire elsewhere.
        PartitionShape {
            isolate_victim_prob: 0.35,
            isolate_one_prob: 0.3,
            member_prob: 0.5,
            one_way_prob: 0.3,
            short_prob: 0.5,
        }
    }
}

impl FaultMix {
    /// No random faults and no adversarial episodes.
    pub fn none() -> FaultMix {
        FaultMix {
            crashes_per_10s: 0.0,
            multi_crash_prob: 0.3,
            fast_restart: false,
            restart_durable_prob: 1.0,
            restart_wiped_prob: 0.0,
            pauses_per_10s: 0.0,
            partitions_per_10s: 0.0,
            clogs_per_10s: 0.0,
            ambush_prob: 0.0,
            wipe_wave_prob: 0.0,
            wipe_wave_cut_prob: 0.0,
            rejoin_race_prob: 0.0,
            force_unlocks_per_10s: 0.0,
            clock_jump_prob: 0.0,
        }
    }

    /// Draws the mix of an `n`-node world. Each kind is on or off for the seed, and has its own rate.
    fn draw(r: &mut Rng, n: usize) -> FaultMix {
        let rate = |r: &mut Rng, p_on: f64, max_per_10s: f64| -> f64 {
            if r.chance(p_on) {
                r.unit() * max_per_10s
            } else {
                0.0
            }
        };
        let crashes_per_10s = rate(r, 0.6, 6.0);
        let pauses_per_10s = rate(r, 0.5, 6.0);
        // One node cannot be cut off from anyone (and drawing nothing keeps the stream as it was).
        let partitions_per_10s = if n > 1 { rate(r, 0.6, 6.0) } else { 0.0 };
        let clogs_per_10s = if n > 1 { rate(r, 0.4, 8.0) } else { 0.0 };
        FaultMix {
            crashes_per_10s,
            multi_crash_prob: 0.3,
            fast_restart: r.chance(0.5),
            restart_durable_prob: r.unit(),
            restart_wiped_prob: if r.chance(0.6) { r.unit() * 0.7 } else { 0.0 },
            pauses_per_10s,
            partitions_per_10s,
            clogs_per_10s,
            ambush_prob: 0.5,
            wipe_wave_prob: 0.6,
            wipe_wave_cut_prob: 0.5,
            rejoin_race_prob: 0.5,
            force_unlocks_per_10s: 0.0,
            clock_jump_prob: 0.0,
        }
    }
}

/// Options that are not drawn from the seed.
#[derive(Clone, Copy, Debug, Default)]
pub struct SwarmOptions {
    /// Let clocks drift beyond the configured bound (the "assumption broken" scenario).
    pub drift_beyond_bound: bool,
}

impl Swarm {
    /// Draws the world of an `n`-node cluster for `seed`, and returns it with the schedule's random stream
    /// positioned after the fault mix. The mix is drawn first from the schedule's stream (not the
    /// swarm's) because that is where it always came from: moving it would change every seed's world.
    pub fn draw(seed: u64, n: usize, opts: SwarmOptions) -> (Swarm, Rng) {
        let mut swarm = Swarm::draw_world(&mut Rng::new(seed, 1), n, opts);
        let mut s = Rng::new(seed, 2);
        swarm.faults = FaultMix::draw(&mut s, n);
        // Operators' actions came later: their own stream, so every other draw stays as it was.
        let mut a = Rng::new(seed, 6);
        swarm.faults.force_unlocks_per_10s = if a.chance(0.3) { a.unit() * 4.0 } else { 0.0 };
        swarm.faults.clock_jump_prob = if a.chance(0.4) { a.unit() } else { 0.0 };
        (swarm, s)
    }

    fn draw_world(r: &mut Rng, n: usize, opts: SwarmOptions) -> Swarm {
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
            faults: FaultMix::none(),
            partition: PartitionShape::default(),
        }
    }

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
            faults: FaultMix::none(),
            partition: PartitionShape::default(),
        }
    }

    /// Whether some node's clock rate error (as drawn, `drift_ppm`) exceeds the configured bound
    /// `max_drift_ppm` that every node's `Config::max_drift_ppm` carries.
    pub fn clocks_beyond_bound(&self) -> bool {
        self.drift_ppm.iter().any(|p| p.unsigned_abs() > u64::from(self.max_drift_ppm))
    }

    /// The lease in nanoseconds.
    pub fn lease_nanos(&self) -> u64 {
        self.lease.as_nanos() as u64
    }
}

/// One field per line, for `dsync-sim replay`.
impl fmt::Display for Swarm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |ns: u64| ns as f64 / 1e6;
        let p = &self.net;
        writeln!(f, "swarm:")?;
        writeln!(f, "  nodes                {}", self.nodes)?;
        writeln!(f, "  lease                {:?}", self.lease)?;
        writeln!(f, "  max_drift_ppm        {}", self.max_drift_ppm)?;
        writeln!(f, "  drift_ppm            {:?}", self.drift_ppm)?;
        writeln!(f, "  victim               {}", self.victim)?;
        writeln!(f, "  bootstrap_start      {}", self.bootstrap_start)?;
        writeln!(f, "  persist_floor        {}", self.persist_floor)?;
        writeln!(f, "  heal_at              {:.3}s", self.heal_at as f64 / 1e9)?;
        writeln!(f, "  detect_partitions    {}", self.detect_partitions)?;
        writeln!(f, "  detect_delay         {:.3}ms", ms(self.detect_delay))?;
        writeln!(f, "  gc_pause_prob        {:.4}", self.gc_pause_prob)?;
        writeln!(f, "  gc_pause_max         {:.3}ms", ms(self.gc_pause_max))?;
        writeln!(f, "  net.lat_min          {:.3}ms", ms(p.lat_min))?;
        writeln!(f, "  net.lat_typ          {:.3}ms", ms(p.lat_typ))?;
        writeln!(f, "  net.tail_prob        {:.4}", p.tail_prob)?;
        writeln!(f, "  net.tail_max         {:.3}ms", ms(p.tail_max))?;
        writeln!(f, "  net.loss             {:.4}", p.loss)?;
        writeln!(f, "  net.dup              {:.4}", p.dup)?;
        writeln!(f, "  net.fifo             {}", p.fifo)?;
        writeln!(f, "  net.slow_to          {:?}", p.slow_to)?;
        writeln!(f, "  net.slow_extra       {:.3}ms", ms(p.slow_extra))?;
        let m = &self.faults;
        writeln!(f, "  crashes_per_10s      {:.3}", m.crashes_per_10s)?;
        writeln!(f, "  multi_crash_prob     {:.3}", m.multi_crash_prob)?;
        writeln!(f, "  fast_restart         {}", m.fast_restart)?;
        writeln!(f, "  restart_durable_prob {:.3}", m.restart_durable_prob)?;
        writeln!(f, "  restart_wiped_prob   {:.3}", m.restart_wiped_prob)?;
        writeln!(f, "  pauses_per_10s       {:.3}", m.pauses_per_10s)?;
        writeln!(f, "  partitions_per_10s   {:.3}", m.partitions_per_10s)?;
        writeln!(f, "  clogs_per_10s        {:.3}", m.clogs_per_10s)?;
        writeln!(f, "  ambush_prob          {:.3}", m.ambush_prob)?;
        writeln!(f, "  wipe_wave_prob       {:.3}", m.wipe_wave_prob)?;
        writeln!(f, "  wipe_wave_cut_prob   {:.3}", m.wipe_wave_cut_prob)?;
        writeln!(f, "  rejoin_race_prob     {:.3}", m.rejoin_race_prob)?;
        writeln!(f, "  force_unlocks_per_10s {:.3}", m.force_unlocks_per_10s)?;
        writeln!(f, "  clock_jump_prob      {:.3}", m.clock_jump_prob)?;
        let s = &self.partition;
        writeln!(f, "  partition.isolate_victim_prob {:.3}", s.isolate_victim_prob)?;
        writeln!(f, "  partition.isolate_one_prob    {:.3}", s.isolate_one_prob)?;
        writeln!(f, "  partition.member_prob         {:.3}", s.member_prob)?;
        writeln!(f, "  partition.one_way_prob        {:.3}", s.one_way_prob)?;
        write!(f, "  partition.short_prob          {:.3}", s.short_prob)
    }
}
