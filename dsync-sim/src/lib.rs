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
//! Build a [`World`], schedule faults ([`World::add_fault`], refused with a [`FaultError`] if they would
//! land at or after the heal time) and requests ([`World::add_request`]), run to a true time and look at
//! each request's [`RequestOutcome`]: `Acquired { token, grantors, at }`, `Failed { reason, at }`, or
//! `Lost { token, acquired_at, at }` once a held lock was lost; then [`World::finish`] runs every checker.
//!
//! ```
//! use dsync_sim::{Fault, FaultError, FaultEvent, Request, RequestOutcome, RestartKind, Swarm, World, WorldOptions};
//!
//! const MS: u64 = 1_000_000;
//! const S: u64 = 1_000_000_000;
//! let mut w = World::new(Swarm::calm(3), 1, WorldOptions::default());
//! // Node 0 takes "x" and keeps it until the run stops; then it is cut off from the others.
//! let a = w.add_request(Request::write(0, MS, "x", Request::UNTIL_RELEASED));
//! w.add_fault(FaultEvent { at: 100 * MS, fault: Fault::Partition { side: 0b001, one_way: false } })?;
//! // Node 1 asks too: blocked by node 0's grants until the lockers expire them.
//! let b = w.add_request(Request::write(1, 200 * MS, "x", 10 * MS));
//! w.run_until(S);
//! assert!(matches!(w.outcome(a), RequestOutcome::Acquired { token: 1, .. }));
//! assert_eq!(w.outcome(b), RequestOutcome::Pending);
//! w.run_until(4 * S);
//! // Cut off, node 0 could not refresh: it learned its lock is lost, and node 1 got it with a higher token.
//! let RequestOutcome::Lost { token, at, .. } = w.outcome(a) else { panic!("{:?}", w.outcome(a)) };
//! assert!(token == 1 && at < 2 * S);
//! let RequestOutcome::Acquired { token, grantors, .. } = w.outcome(b) else { panic!("{:?}", w.outcome(b)) };
//! assert!(token > 1 && !grantors.contains(0));
//! // Node 2 crashes and comes back with a chosen durable floor, its machine clock stepped while it was down.
//! w.add_fault(FaultEvent { at: 5 * S, fault: Fault::Crash { node: 2 } })?;
//! w.add_fault(FaultEvent { at: 6 * S, fault: Fault::ClockJump { node: 2, by: 30 * S as i64 } })?;
//! w.add_fault(FaultEvent { at: 6 * S, fault: Fault::Restart { node: 2, kind: RestartKind::Floor(100) } })?;
//! // A fault after the heal time (when every fault ends) is refused, not silently dropped.
//! let late = FaultEvent { at: w.swarm().heal_at, fault: Fault::Heal };
//! assert!(matches!(w.add_fault(late), Err(FaultError::AfterHeal { .. })));
//! assert!(w.finish().is_empty(), "{:?}", w.violations());
//! # Ok::<(), FaultError>(())
//! ```
//!
//! Restarts come in five kinds ([`RestartKind`]): `Durable` and `Volatile` (with or without the floor the
//! embedder persisted), `Floor(f)` (a chosen floor), `Wiped` (state directory lost: `Start::Bootstrap`,
//! downgraded to `Volatile` when nobody else is running decided), and `Bootstrap` / `FirstBoot` (a fresh
//! cluster: every node restarting so boots afresh, knowingly discarding fencing history).
//! [`Fault::ForceUnlock`] removes every grant of a resource: the checkers stop counting the locks it hits
//! from that moment ([`check::HoldRecord::voided`]), since force-unlock voids their guarantees.
//!
//! # Verdicts
//!
//! A run [`Verdict`] is `AssumptionBroken` (excused) only if some node's clock rate, as the swarm drew it,
//! is outside the configured bound `Config::max_drift_ppm` *and* every violation is of a kind that rests on
//! that bound ([`Kind::depends_on_drift_bound`]: mutual exclusion and fenced writes). Leaks, late grants
//! kept, token order, holder queries and liveness always fail a run. `dsync-sim run` and `replay` use the
//! same rule, so `replay` of a seed gives `run`'s verdict and exit code.
//!
//! # Features
//!
//! `cli` (on by default) builds the `dsync-sim` binary and pulls in its command-line parser, clap. The
//! library needs none of it: in your own tests write
//!
//! ```toml
//! [dev-dependencies]
//! dsync-sim = { version = "0.1", default-features = false }
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
#[cfg(feature = "stack")]
pub mod stack;
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
#[cfg(feature = "stack")]
pub use stack::{run_stack_seed, StackOptions};

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
