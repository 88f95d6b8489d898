//! `dsync-sim`: a deterministic simulator that tries to break dsync, and proves it doesn't.
//!
//! A [`World`] runs 1 to 64 `dsync-core` nodes, each with its own drifting clock, over a simulated
//! network, in a single-threaded discrete-event loop in virtual time. The seed chooses the world first
//! (which faults exist and how hard: latency tails, loss, duplication, reordering, partitions, clogged
//! links, crashes with and without a durable fencing floor or with a wiped state directory, whole clusters
//! starting as `Start::Bootstrap`, process pauses, clock drift — see
//! [`Swarm`]) and then an explicit [`Schedule`] of faults and client requests. Clients take read,
//! write and multi-resource locks over hot and cold resources and write to a fenced register while they
//! hold, sometimes with a GC pause between their validity check and the write.
//!
//! After the fault phase everything heals; liveness probes, a holder query, a stop and a quiet period
//! follow, and the checkers run (module [`check`]): mutual exclusion in true time, fencing-token order
//! and the fenced register, liveness after healing, no leaked grants, and holder queries that match the
//! truth.
//!
//! # Writing a scenario
//!
//! ```
//! use dsync_sim::{FaultEvent, Fault, Request, Swarm, World, WorldOptions};
//! use dsync_core::Mode;
//!
//! let mut w = World::new(Swarm::calm(3), 1, WorldOptions::default());
//! // Isolate node 0 while it holds a write lock; the others must not get it until node 0's lease ends.
//! let a = w.add_request(Request::write(0, 1_000_000, "x", 4_000_000_000));
//! w.add_fault(FaultEvent { at: 100_000_000, fault: Fault::Partition { side: 0b001, one_way: false } }).unwrap();
//! let b = w.add_request(Request::write(1, 200_000_000, "x", 10_000_000));
//! w.run_until(1_000_000_000);
//! assert!(matches!(w.outcome(a), dsync_sim::RequestOutcome::Acquired { .. }));
//! assert_eq!(w.outcome(b), dsync_sim::RequestOutcome::Pending); // blocked by node 0's grants
//! assert!(w.finish().is_empty(), "{:?}", w.violations());
//! ```

#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod check;
pub mod clock;
pub mod detector;
pub mod faults;
pub mod net;
pub mod queue;
pub mod rng;
pub mod schedule;
pub mod shrink;
pub mod swarm;
pub mod trace;
pub mod workload;
pub mod world;

pub use check::{Kind, Violation};
pub use faults::{Fault, FaultError, FaultEvent, RestartKind};
pub use schedule::Schedule;
pub use swarm::{FaultMix, PartitionShape, Swarm, SwarmOptions};
pub use workload::{PlannedWrite, Request};
pub use world::{Phase, RequestOutcome, Stats, World, WorldOptions};

pub use dsync_core::PlantedBug;

/// What one seed did.
#[derive(Clone, Debug)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// Cluster size.
    pub nodes: usize,
    /// Events processed.
    pub events: u64,
    /// The trace hash (same seed, same binary: same hash).
    pub hash: u64,
    /// Everything the checkers found.
    pub violations: Vec<Violation>,
    /// Counts.
    pub stats: Stats,
    /// The event log, when asked for.
    pub log: Vec<String>,
    /// Some node's clock ran at a rate outside the configured bound `Config::max_drift_ppm`
    /// ([`Swarm::clocks_beyond_bound`]): the run broke the protocol's timing assumption.
    pub clocks_beyond_bound: bool,
}

/// What a run proved: the verdict `dsync-sim run` and `dsync-sim replay` both print and exit by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// No violation.
    Pass,
    /// Every violation is excused: the clocks actually left the drift bound, and every violation is of a
    /// kind that the bound protects ([`Kind::depends_on_drift_bound`]).
    AssumptionBroken,
    /// At least one violation is not excused.
    Violation,
}

impl Report {
    /// Whether violation `v` is excused: this run's clocks left the bound and `v`'s kind depends on it.
    pub fn excused(&self, v: &Violation) -> bool {
        self.clocks_beyond_bound && v.kind.depends_on_drift_bound()
    }

    /// The run's verdict.
    pub fn verdict(&self) -> Verdict {
        if self.violations.is_empty() {
            Verdict::Pass
        } else if self.violations.iter().all(|v| self.excused(v)) {
            Verdict::AssumptionBroken
        } else {
            Verdict::Violation
        }
    }

    /// The first violation that is not excused (else the first one).
    pub fn first_unexcused(&self) -> Option<&Violation> {
        self.violations.iter().find(|v| !self.excused(v)).or(self.violations.first())
    }
}

/// How to run a seed.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Cluster size.
    pub nodes: usize,
    /// A planted bug to switch on.
    pub planted_bug: Option<PlantedBug>,
    /// Let clocks drift beyond the configured bound.
    pub drift_beyond_bound: bool,
    /// Keep the event log.
    pub log: bool,
    /// Encode/decode every `wire_every`-th delivered message (0: never).
    pub wire_every: u32,
}

/// The world and schedule that `seed` chooses.
pub fn generate(seed: u64, opts: &RunOptions) -> (Swarm, Schedule) {
    schedule::generate(seed, opts.nodes, SwarmOptions { drift_beyond_bound: opts.drift_beyond_bound })
}

/// Runs `schedule` in `swarm` to the end and reports.
///
/// # Panics
///
/// If the schedule holds a fault [`World::add_fault`] refuses (at or after `swarm.heal_at`, or naming a
/// node outside the cluster); generated schedules, and anything shrunk from them, never do.
pub fn run_schedule(seed: u64, swarm: Swarm, schedule: &Schedule, opts: &RunOptions) -> Report {
    let wopts = WorldOptions { planted_bug: opts.planted_bug, log: opts.log, wire_every: opts.wire_every };
    let nodes = swarm.nodes;
    let clocks_beyond_bound = swarm.clocks_beyond_bound();
    let mut w = World::with_schedule(swarm, seed, wopts, schedule).unwrap_or_else(|e| panic!("bad schedule: {e}"));
    w.finish();
    Report {
        seed,
        nodes,
        events: w.events(),
        hash: w.trace_hash(),
        violations: w.violations().to_vec(),
        stats: w.stats().clone(),
        log: w.log().to_vec(),
        clocks_beyond_bound,
    }
}

/// Runs one seed: swarm, schedule, world, checkers.
pub fn run_seed(seed: u64, opts: &RunOptions) -> Report {
    let (swarm, schedule) = generate(seed, opts);
    run_schedule(seed, swarm, &schedule, opts)
}
