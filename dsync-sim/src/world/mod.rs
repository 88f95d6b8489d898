//! The world: the discrete-event loop that ties the nodes, the network, the failure detector, the clients
//! and the end phases together. Three queues hold what is scheduled — the network's messages in flight,
//! the detector's notices, and the world's own events (node timers, faults, client steps, floor writes,
//! phases) — all stamped from one counter and merged by `(true_time, seq)`, so ties break in insertion
//! order and a run is a pure function of its seed and schedule. No threads, no wall clock, no global RNG.
//!
//! The parts, one concern each: `node_io.rs` (a node's inputs and what follows every step of it),
//! `clients.rs` (requests, holds, fenced writes), `faults.rs` (applying faults: crashes, restarts, pauses,
//! partitions, clogs), `phases.rs` (heal, liveness probes, holder query, stop, final checks); the network
//! is [`crate::net`], the failure detector [`crate::detector`].

mod clients;
mod faults;
mod node_io;
mod phases;

pub use clients::RequestOutcome;
pub use phases::Phase;

use crate::check::fencing::Register;
use crate::check::leaks::OwedReleases;
use crate::check::liveness::Probe;
use crate::check::revocation::{Disturbances, ForceRecord};
use crate::check::{HoldRecord, Kind, Violation};
use crate::clock::Clock;
use crate::detector::{Detector, Notice};
use crate::faults::{Fault, FaultError, FaultEvent};
use crate::net::{Net, Packet};
use crate::queue::{Due, Queue, Seq};
use crate::rng::{mix64, Rng};
use crate::schedule::Schedule;
use crate::swarm::Swarm;
use crate::trace::{Tag, Trace};
use crate::workload::Request;
use clients::Client;
use dsync_core::{Config, Duration, Event, Instant, LockId, Node, PlantedBug, QueryId, Start, Transmit};
use std::collections::BTreeMap;

const MS: u64 = 1_000_000;
const S: u64 = 1_000_000_000;

/// A run that processes more events than this is stuck in a loop (a livelock is a liveness violation).
const MAX_EVENTS: u64 = 200_000_000;

/// Options of a world that are not part of the seed's swarm.
#[derive(Clone, Debug, Default)]
pub struct WorldOptions {
    /// Switch off one safety mechanism of the core.
    pub planted_bug: Option<PlantedBug>,
    /// Keep the human-readable event log.
    pub log: bool,
    /// Send every `wire_every`-th delivered message through `wire::encode`/`decode` (0: never, 1: all).
    pub wire_every: u32,
}

/// Counts of what happened in a run.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Messages the nodes sent.
    pub sent: u64,
    /// Messages lost (loss or partition).
    pub dropped: u64,
    /// Locks acquired / failed / lost.
    pub acquired: u64,
    /// Acquisitions that failed.
    pub failed: u64,
    /// Held locks lost.
    pub lost: u64,
    /// Register writes accepted / rejected, and writes skipped because the lock was no longer valid.
    pub writes_accepted: u64,
    /// Writes the register rejected.
    pub writes_rejected: u64,
    /// Writes not made because `is_valid` said no.
    pub writes_skipped: u64,
    /// Crashes applied.
    pub crashes: u64,
    /// `Event::Serving` reports (one per start that came to serve).
    pub serving: u64,
    /// `Event::Quarantined` reports (restarts, and bootstraps that found history).
    pub quarantined: u64,
}

/// The world's own scheduled events (messages and detector notices are in their own queues).
#[derive(Debug)]
enum Ev {
    /// Node `node`'s timer, armed as generation `gen` (a re-armed timer makes older generations stale).
    Timer {
        node: usize,
        gen: u64,
    },
    Fault(Fault),
    /// Workload request `i` is due.
    Request(usize),
    /// A client's hold is over.
    Unlock {
        node: usize,
        inc: u32,
        lock: LockId,
    },
    /// A holder checks validity before a fenced write, then may be paused for `pause`.
    WriteCheck {
        hold: usize,
        pause: u64,
    },
    /// A fenced write lands at the register.
    WriteLand {
        hold: usize,
    },
    /// Incarnation `inc`'s floor write completed (unless the process died first).
    PersistDone {
        node: usize,
        inc: u32,
        floor: u64,
    },
    Phase(Phase),
}

/// Something due, from whichever queue holds it.
enum Item {
    Packet(Packet),
    Notice(Notice),
    Ev(Ev),
}

/// One node's process and what survives it.
struct Slot {
    node: Option<Node>,
    inc: u32,
    clock: Clock,
    paused_until: u64,
    timer_gen: u64,
    timer_at: u64,
    /// The floor the embedder persisted (survives crashes; a wiped state directory loses it).
    durable: Option<u64>,
    /// True time of the node's latest crash.
    crashed_at: Option<u64>,
    /// The clients of this process, by lock.
    locks: BTreeMap<LockId, Client>,
}

/// A simulated cluster. Build it with [`World::new`], add faults and requests, [`World::run_until`] a
/// time and inspect, then [`World::finish`] to heal, probe liveness, stop, and run every checker.
pub struct World {
    swarm: Swarm,
    opts: WorldOptions,
    seed: u64,
    now: u64,
    seq: Seq,
    queue: Queue<Ev>,
    slots: Vec<Slot>,
    net: Net,
    detector: Detector,
    rng: Rng,
    names: Vec<String>,
    name_ids: BTreeMap<String, u32>,
    holds: Vec<HoldRecord>,
    registers: Vec<Register>,
    requests: Vec<Request>,
    outcomes: Vec<RequestOutcome>,
    probes: Vec<Probe>,
    query: Option<(usize, QueryId)>,
    /// True time the clients stopped (`u64::MAX` before).
    stopped_at: u64,
    quorum_serving: bool,
    /// Some node has served (so grants may exist): from then on the cluster has history.
    history: bool,
    owed: OwedReleases,
    /// Force-unlocks issued, and what disturbed the network when (for the revocation checker).
    forces: Vec<ForceRecord>,
    disturb: Disturbances,
    violations: Vec<Violation>,
    trace: Trace,
    events: u64,
    delivered: u64,
    phase: Phase,
    done: bool,
    stats: Stats,
    tx: Vec<Transmit>,
    evs: Vec<Event>,
}

impl World {
    /// A cluster of `swarm.nodes` nodes, all booted at true time 0 on their own clocks (as `FirstBoot`, or as
    /// `Bootstrap` when [`Swarm::bootstrap_start`]). The end phases
    /// (heal at `swarm.heal_at`, then liveness probes, a holder query, stop and the final checks) are
    /// scheduled now.
    pub fn new(swarm: Swarm, seed: u64, opts: WorldOptions) -> World {
        let n = swarm.nodes;
        let mut crng = Rng::new(seed, 3);
        let mut w = World {
            slots: Vec::with_capacity(n),
            net: Net::new(n, swarm.net.clone()),
            detector: Detector::new(n, swarm.detect_delay, swarm.detect_partitions),
            rng: Rng::new(seed, 4),
            seed,
            now: 0,
            seq: Seq::default(),
            queue: Queue::default(),
            names: Vec::new(),
            name_ids: BTreeMap::new(),
            holds: Vec::new(),
            registers: Vec::new(),
            requests: Vec::new(),
            outcomes: Vec::new(),
            probes: Vec::new(),
            query: None,
            stopped_at: u64::MAX,
            quorum_serving: true,
            history: false,
            owed: OwedReleases::default(),
            forces: Vec::new(),
            disturb: Disturbances::new(n),
            violations: Vec::new(),
            trace: Trace::new(opts.log),
            events: 0,
            delivered: 0,
            phase: Phase::Faults,
            done: false,
            stats: Stats::default(),
            tx: Vec::new(),
            evs: Vec::new(),
            opts,
            swarm,
        };
        for id in 0..n {
            // Clocks start anywhere; the core only ever compares instants of one node.
            let clock = Clock::new(crng.range(0, 1000 * S), w.swarm.drift_ppm[id]);
            w.slots.push(Slot {
                node: None,
                inc: 0,
                clock,
                paused_until: 0,
                timer_gen: 0,
                timer_at: u64::MAX,
                durable: None,
                crashed_at: None,
                locks: BTreeMap::new(),
            });
            let cfg = w.node_config(id, 0);
            let local = Instant::from_nanos(clock.to_local(0));
            let start = if w.swarm.bootstrap_start { Start::Bootstrap } else { Start::FirstBoot };
            w.slots[id].node = Some(Node::new(cfg, local, start).expect("sim config is valid"));
            w.after_step(id);
        }
        w.push(w.swarm.heal_at, Ev::Phase(Phase::Heal));
        w
    }

    /// A world for `schedule`: [`World::new`] plus every fault and request of the schedule; the first fault
    /// [`World::add_fault`] refuses is the error.
    pub fn with_schedule(
        swarm: Swarm,
        seed: u64,
        opts: WorldOptions,
        schedule: &Schedule,
    ) -> Result<World, FaultError> {
        let mut w = World::new(swarm, seed, opts);
        for f in &schedule.faults {
            w.add_fault(f.clone())?;
        }
        for r in &schedule.requests {
            w.add_request(r.clone());
        }
        Ok(w)
    }

    /// The configuration node `id` runs with in incarnation `inc` (the sim's short-lease profile).
    pub fn node_config(&self, id: usize, inc: u32) -> Config {
        let mut c = Config::new(self.swarm.nodes, id);
        c.lease = self.swarm.lease;
        c.refresh_interval = self.swarm.lease * 3 / 10;
        c.max_drift_ppm = self.swarm.max_drift_ppm;
        c.attempt_timeout = Duration::from_millis(200);
        c.backoff_min = Duration::from_millis(5);
        c.backoff_max = Duration::from_millis(100);
        c.query_timeout = Duration::from_millis(300);
        c.persist_floor = self.swarm.persist_floor;
        c.floor_chunk = 8; // small, so floors are persisted (and crashes interrupt that) often
        c.seed = mix64(self.seed ^ ((id as u64) << 32) ^ inc as u64);
        c.planted_bug = self.opts.planted_bug;
        c
    }

    // ----- public scenario API -----

    /// Schedules a fault (one due in the past lands now). A fault that would land at or after the heal
    /// time (`Swarm::heal_at`, when the heal phase ends every fault) or that names a node outside the
    /// cluster is refused with a typed error instead of being silently ignored.
    pub fn add_fault(&mut self, f: FaultEvent) -> Result<(), FaultError> {
        let nodes = self.swarm.nodes;
        if let Some(node) = f.fault.nodes().into_iter().find(|&i| i >= nodes) {
            return Err(FaultError::NoSuchNode { node, nodes });
        }
        let at = f.at.max(self.now);
        if at >= self.swarm.heal_at || self.phase != Phase::Faults {
            return Err(FaultError::AfterHeal { at, heal_at: self.swarm.heal_at });
        }
        self.push(at, Ev::Fault(f.fault));
        Ok(())
    }

    /// Schedules a client request; returns its index for [`World::outcome`].
    pub fn add_request(&mut self, r: Request) -> usize {
        let i = self.requests.len();
        self.push(r.at.max(self.now), Ev::Request(i));
        self.requests.push(r);
        self.outcomes.push(RequestOutcome::Pending);
        i
    }

    /// The world this run plays in.
    pub fn swarm(&self) -> &Swarm {
        &self.swarm
    }

    /// How request `i` ended so far.
    pub fn outcome(&self, i: usize) -> RequestOutcome {
        self.outcomes[i]
    }

    /// True time now, nanoseconds.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// The phase the run is in.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Node `i`, if it is running.
    pub fn node(&self, i: usize) -> Option<&Node> {
        self.slots[i].node.as_ref()
    }

    /// Node `i`'s local clock reading now.
    pub fn local_now(&self, i: usize) -> Instant {
        Instant::from_nanos(self.slots[i].clock.to_local(self.now))
    }

    /// Every lock ever held, with its true-time belief intervals.
    pub fn holds(&self) -> &[HoldRecord] {
        &self.holds
    }

    /// The name of interned resource `id`.
    pub fn resource_name(&self, id: u32) -> &str {
        &self.names[id as usize]
    }

    /// The fenced register of `resource`, if anyone wrote to it.
    pub fn register(&self, resource: &str) -> Option<&Register> {
        self.name_ids.get(resource).map(|&i| &self.registers[i as usize])
    }

    /// Violations found so far (the end-of-run checkers add theirs in [`World::finish`]).
    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    /// Counts.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Events processed.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// The trace hash so far.
    pub fn trace_hash(&self) -> u64 {
        self.trace.hash()
    }

    /// The event log (when [`WorldOptions::log`] is set).
    pub fn log(&self) -> &[String] {
        self.trace.lines()
    }

    /// Processes events up to and including true time `t` (stops early once the run is finished).
    pub fn run_until(&mut self, t: u64) {
        while !self.done {
            let Some((at, item)) = self.pop_due(t) else { break };
            self.now = self.now.max(at);
            self.process(item);
        }
        if !self.done {
            self.now = self.now.max(t);
        }
    }

    /// Runs to the end: the fault phase, then heal, liveness probes, a holder query, stop, a quiet
    /// period longer than two leases, and every end-of-run checker. Returns all violations.
    pub fn finish(&mut self) -> &[Violation] {
        self.run_until(u64::MAX);
        &self.violations
    }

    // ----- the loop -----

    fn push(&mut self, at: u64, ev: Ev) {
        self.queue.push(&mut self.seq, at, ev);
    }

    /// The earliest item of the three queues, if it is due by `t`.
    fn pop_due(&mut self, t: u64) -> Option<(u64, Item)> {
        let earliest = |a: Option<Due>, b: Option<Due>| match (a, b) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, None) | (None, x) => x,
        };
        let (net, det, own) = (self.net.peek(), self.detector.peek(), self.queue.peek());
        let first = earliest(earliest(net, det), own)?;
        if first.0 > t {
            return None;
        }
        Some(if Some(first) == net {
            let (at, p) = self.net.pop()?;
            (at, Item::Packet(p))
        } else if Some(first) == det {
            let (at, n) = self.detector.pop()?;
            (at, Item::Notice(n))
        } else {
            let (at, ev) = self.queue.pop()?;
            (at, Item::Ev(ev))
        })
    }

    fn paused(&self, i: usize) -> bool {
        self.now < self.slots[i].paused_until
    }

    /// Re-queues `ev` for when node `i` resumes; returns it if the node is not paused.
    fn defer_if_paused(&mut self, i: usize, ev: Ev) -> Option<Ev> {
        if self.paused(i) {
            let at = self.slots[i].paused_until;
            self.push(at, ev);
            None
        } else {
            Some(ev)
        }
    }

    fn process(&mut self, item: Item) {
        if let Item::Ev(Ev::Timer { node, gen }) = item {
            if self.slots[node].timer_gen != gen || self.slots[node].node.is_none() {
                return; // stale timer: not an event
            }
        }
        self.events += 1;
        if self.events > MAX_EVENTS {
            self.violation(Kind::Liveness, format!("runaway: over {}M events in one run", MAX_EVENTS / 1_000_000));
            self.done = true;
            return;
        }
        let ev = match item {
            Item::Packet(p) => return self.deliver(p),
            Item::Notice(n) => return self.notify(n),
            Item::Ev(ev) => ev,
        };
        match ev {
            Ev::Timer { node, gen } => {
                let Some(Ev::Timer { .. }) = self.defer_if_paused(node, Ev::Timer { node, gen }) else { return };
                self.slots[node].timer_at = u64::MAX;
                self.trace.record(self.now, Tag::Timer, &[node as u64]);
                let local = self.local_now(node);
                self.slots[node].node.as_mut().expect("live").handle_timeout(local);
                self.after_step(node);
            }
            Ev::Fault(f) => self.fault(f),
            Ev::Request(i) => self.request(i),
            Ev::Unlock { node, inc, lock } => self.client_unlock(node, inc, lock),
            Ev::WriteCheck { hold, pause } => self.write_check(hold, pause),
            Ev::WriteLand { hold } => self.write_land(hold),
            Ev::PersistDone { node, inc, floor } => self.floor_persisted(node, inc, floor),
            Ev::Phase(p) => self.enter(p),
        }
    }

    fn violation(&mut self, kind: Kind, detail: String) {
        if self.trace.logging() {
            self.trace.log(self.now, format!("VIOLATION {kind:?}: {detail}"));
        }
        self.violations.push(Violation { kind, at: self.now, detail });
    }

    /// The id of resource `name`, interned (with its register) on first use.
    fn intern(&mut self, name: &str) -> u32 {
        if let Some(&i) = self.name_ids.get(name) {
            return i;
        }
        let i = self.names.len() as u32;
        self.names.push(name.to_string());
        self.name_ids.insert(name.to_string(), i);
        self.registers.push(Register::default());
        i
    }
}
