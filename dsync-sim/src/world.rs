//! The discrete-event loop. One binary heap of `(true_time, seq)` events — message deliveries, node
//! timers, faults, client steps — processed strictly in order; `seq` breaks ties in insertion order, so a
//! run is a pure function of its seed and schedule. No threads, no wall clock, no global RNG.
//!
//! After every input to a node the world drains its transmits and events, re-reads the validity of every
//! lock the node holds (refreshes move it) and re-arms the node's one timer, as the core requires.

use crate::check::fencing::Register;
use crate::check::leaks::{table_violation, OwedReleases};
use crate::check::liveness::Probe;
use crate::check::{self, HoldRecord, Kind, Violation};
use crate::clock::Clock;
use crate::faults::{Fault, FaultEvent, RestartKind};
use crate::net::Net;
use crate::rng::{mix64, Rng};
use crate::schedule::Schedule;
use crate::swarm::Swarm;
use crate::trace::{Tag, Trace};
use crate::workload::{PlannedWrite, Request};
use dsync_core::wire::{decode, encode, Outcome};
use dsync_core::{
    Config, Duration, Event, Instant, LockId, Message, Mode, Node, PlantedBug, QueryId, ServingState, Start, Transmit,
};
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

const MS: u64 = 1_000_000;
const S: u64 = 1_000_000_000;

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

/// How a workload request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestOutcome {
    /// Not resolved yet (or cancelled at the end).
    Pending,
    /// Acquired with this token.
    Acquired(u64),
    /// Failed (deadline passed).
    Failed,
    /// Refused on the spot by the core.
    Rejected,
    /// The node was down when the request was due.
    Skipped,
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

#[derive(Debug)]
enum Ev {
    /// `sent`: true time the message left `from` (a grant sent before its locker crashed died with it).
    Deliver {
        from: usize,
        to: usize,
        sent: u64,
        msg: Message,
    },
    Timer {
        node: usize,
        gen: u64,
    },
    Fault(Fault),
    Request(usize),
    Unlock {
        node: usize,
        inc: u32,
        lock: LockId,
    },
    WriteCheck {
        hold: usize,
        pause: u64,
    },
    WriteLand {
        hold: usize,
    },
    PersistDone {
        node: usize,
        inc: u32,
        floor: u64,
    },
    Notify {
        node: usize,
        peer: usize,
    },
    Phase(Phase),
}

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

struct Entry {
    at: u64,
    seq: u64,
    ev: Ev,
}
impl PartialEq for Entry {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Entry {
    fn cmp(&self, o: &Self) -> Ordering {
        (o.at, o.seq).cmp(&(self.at, self.seq)) // min-heap
    }
}

#[derive(Clone, Copy, Debug)]
enum ClientKind {
    Workload(usize),
    Probe(usize),
}

#[derive(Debug)]
struct Client {
    kind: ClientKind,
    mode: Mode,
    res: Vec<u32>,
    hold: u64,
    writes: Vec<PlannedWrite>,
    held: Option<usize>,
}

struct Slot {
    node: Option<Node>,
    inc: u32,
    clock: Clock,
    paused_until: u64,
    timer_gen: u64,
    timer_at: u64,
    told_down: u64,
    durable: Option<u64>,
    /// True time of the node's latest crash.
    crashed_at: Option<u64>,
    locks: BTreeMap<LockId, Client>,
}

/// A simulated cluster. Build it with [`World::new`], add faults and requests, [`World::run_until`] a
/// time and inspect, then [`World::finish`] to heal, probe liveness, stop, and run every checker.
pub struct World {
    swarm: Swarm,
    opts: WorldOptions,
    seed: u64,
    now: u64,
    seq: u64,
    heap: BinaryHeap<Entry>,
    slots: Vec<Slot>,
    net: Net,
    rng: Rng,
    held_msgs: Vec<(usize, usize, u64, Message)>,
    names: Vec<String>,
    name_ids: BTreeMap<String, u32>,
    holds: Vec<HoldRecord>,
    registers: Vec<Register>,
    requests: Vec<Request>,
    outcomes: Vec<RequestOutcome>,
    probes: Vec<Probe>,
    query: Option<(usize, QueryId)>,
    quorum_serving: bool,
    /// Some node has served (so grants may exist): from then on the cluster has history.
    history: bool,
    owed: OwedReleases,
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
        let net = Net::new(n, swarm.net.clone());
        let mut w = World {
            slots: Vec::with_capacity(n),
            net,
            rng: Rng::new(seed, 4),
            seed,
            now: 0,
            seq: 0,
            heap: BinaryHeap::new(),
            held_msgs: Vec::new(),
            names: Vec::new(),
            name_ids: BTreeMap::new(),
            holds: Vec::new(),
            registers: Vec::new(),
            requests: Vec::new(),
            outcomes: Vec::new(),
            probes: Vec::new(),
            query: None,
            quorum_serving: true,
            history: false,
            owed: OwedReleases::default(),
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
                told_down: 0,
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

    /// A world for `schedule`: [`World::new`] plus every fault and request of the schedule.
    pub fn with_schedule(swarm: Swarm, seed: u64, opts: WorldOptions, schedule: &Schedule) -> World {
        let mut w = World::new(swarm, seed, opts);
        for f in &schedule.faults {
            w.add_fault(f.clone());
        }
        for r in &schedule.requests {
            w.add_request(r.clone());
        }
        w
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

    /// Schedules a fault (ignored after the heal phase began).
    pub fn add_fault(&mut self, f: FaultEvent) {
        self.push(f.at.max(self.now), Ev::Fault(f.fault));
    }

    /// Schedules a client request; returns its index for [`World::outcome`].
    pub fn add_request(&mut self, r: Request) -> usize {
        let i = self.requests.len();
        self.push(r.at.max(self.now), Ev::Request(i));
        self.requests.push(r);
        self.outcomes.push(RequestOutcome::Pending);
        i
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
            match self.heap.peek() {
                Some(e) if e.at <= t => {}
                _ => break,
            }
            let Entry { at, ev, .. } = self.heap.pop().expect("peeked");
            self.now = self.now.max(at);
            self.process(ev);
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
        self.seq += 1;
        self.heap.push(Entry { at, seq: self.seq, ev });
    }

    fn paused(&self, i: usize) -> bool {
        self.now < self.slots[i].paused_until
    }

    /// Re-queues `ev` for when node `i` resumes; returns whether it did.
    fn defer_if_paused(&mut self, i: usize, ev: Ev) -> Option<Ev> {
        if self.paused(i) {
            let at = self.slots[i].paused_until;
            self.push(at, ev);
            None
        } else {
            Some(ev)
        }
    }

    fn process(&mut self, ev: Ev) {
        if let Ev::Timer { node, gen } = ev {
            if self.slots[node].timer_gen != gen || self.slots[node].node.is_none() {
                return; // stale timer: not an event
            }
        }
        self.events += 1;
        if self.events > 200_000_000 {
            self.violation(Kind::Liveness, "runaway: over 200M events in one run".into());
            self.done = true;
            return;
        }
        match ev {
            Ev::Deliver { from, to, sent, msg } => self.deliver(from, to, sent, msg),
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
            Ev::PersistDone { node, inc, floor } => {
                if self.slots[node].inc != inc || self.slots[node].node.is_none() {
                    return; // the write died with the process
                }
                let Some(ev) = self.defer_if_paused(node, Ev::PersistDone { node, inc, floor }) else { return };
                drop(ev);
                self.slots[node].durable = Some(self.slots[node].durable.unwrap_or(0).max(floor));
                self.trace.record(self.now, Tag::FloorPersisted, &[node as u64, floor]);
                let local = self.local_now(node);
                self.slots[node].node.as_mut().expect("live").handle_floor_persisted(local, floor);
                self.after_step(node);
            }
            Ev::Notify { node, peer } => self.notify(node, peer),
            Ev::Phase(p) => self.enter(p),
        }
    }

    fn violation(&mut self, kind: Kind, detail: String) {
        if self.trace.logging() {
            self.trace.log(self.now, format!("VIOLATION {kind:?}: {detail}"));
        }
        self.violations.push(Violation { kind, at: self.now, detail });
    }

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

    // ----- messages -----

    fn send(&mut self, from: usize, to: usize, msg: Message) {
        if let Message::Unlock { uid, .. } = msg {
            self.owed.released(from, to, uid);
        }
        self.stats.sent += 1;
        let p = &self.net.params;
        if self.rng.chance(p.loss) {
            self.stats.dropped += 1;
            return;
        }
        if self.rng.chance(p.dup) {
            let at = self.net.arrival(&mut self.rng, from, to, self.now);
            self.push(at, Ev::Deliver { from, to, sent: self.now, msg: msg.clone() });
        }
        let at = self.net.arrival(&mut self.rng, from, to, self.now);
        self.push(at, Ev::Deliver { from, to, sent: self.now, msg });
    }

    fn deliver(&mut self, from: usize, to: usize, sent: u64, mut msg: Message) {
        if self.slots[to].node.is_none() || self.net.is_blocked(from, to) {
            self.stats.dropped += 1;
            return;
        }
        if self.net.is_clogged(from, to) {
            self.held_msgs.push((from, to, sent, msg));
            return;
        }
        let Some(Ev::Deliver { msg: m, .. }) = self.defer_if_paused(to, Ev::Deliver { from, to, sent, msg }) else {
            return;
        };
        msg = m;
        self.delivered += 1;
        if self.opts.wire_every > 0 && self.delivered % self.opts.wire_every as u64 == 0 {
            let bytes = encode(&msg);
            self.trace.mix_bytes(&bytes);
            match decode(&bytes, usize::MAX) {
                Ok(m) if m == msg => msg = m,
                other => panic!("wire round trip changed {msg:?} into {other:?}"),
            }
        }
        match msg {
            // A grant made by an incarnation of `from` that crashed since is gone with it: nothing is owed.
            Message::LockReply { uid, outcome: Outcome::Granted, .. }
                if self.slots[from].crashed_at.is_none_or(|c| c < sent) =>
            {
                self.owed.granted(to, from, uid, self.now)
            }
            Message::RefreshReply { uid, held: false, .. } => self.owed.released(to, from, uid),
            _ => {}
        }
        self.trace.record(self.now, Tag::Deliver, &[from as u64, to as u64]);
        self.trace.mix_bytes(msg.kind().as_bytes());
        if self.trace.logging() {
            self.trace.log(self.now, format!("deliver {from}->{to} {msg:?}"));
        }
        let local = self.local_now(to);
        self.slots[to].node.as_mut().expect("live").handle_message(local, from, msg);
        self.after_step(to);
    }

    // ----- after every node step -----

    fn after_step(&mut self, i: usize) {
        let node = self.slots[i].node.as_mut().expect("live");
        while let Some(t) = node.poll_transmit() {
            self.tx.push(t);
        }
        while let Some(e) = node.poll_event() {
            self.evs.push(e);
        }
        let mut tx = std::mem::take(&mut self.tx);
        for t in tx.drain(..) {
            self.send(i, t.to, t.message);
        }
        self.tx = tx;
        let mut evs = std::mem::take(&mut self.evs);
        for e in evs.drain(..) {
            self.on_event(i, e);
        }
        self.evs = evs;
        self.refresh_beliefs(i);
        self.rearm(i);
    }

    /// Re-reads `valid_until` of every lock node `i` holds: a refresh extends the belief, and a refresh
    /// that succeeds after the belief lapsed starts a new belief interval.
    fn refresh_beliefs(&mut self, i: usize) {
        let now = self.now;
        let slot = &self.slots[i];
        let Some(node) = slot.node.as_ref() else { return };
        for (id, c) in &slot.locks {
            let Some(h) = c.held else { continue };
            let Some(info) = node.lock_info(*id) else { continue };
            let end = slot.clock.to_true(info.valid_until.as_nanos());
            let rec = &mut self.holds[h];
            let last = rec.intervals.last_mut().expect("an interval");
            if now < last.1 {
                last.1 = end.max(now);
            } else if end > now {
                rec.intervals.push((now, end));
            }
        }
    }

    fn rearm(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        let Some(node) = slot.node.as_ref() else { return };
        let want = node.poll_timeout().map_or(u64::MAX, |l| slot.clock.to_true(l.as_nanos()).max(self.now));
        if want != slot.timer_at {
            slot.timer_gen += 1;
            slot.timer_at = want;
            if want != u64::MAX {
                let gen = slot.timer_gen;
                self.push(want, Ev::Timer { node: i, gen });
            }
        }
    }

    fn on_event(&mut self, i: usize, e: Event) {
        let now = self.now;
        match e {
            Event::Acquired { lock, token, valid_until, .. } => {
                self.stats.acquired += 1;
                self.trace.record(now, Tag::Acquired, &[i as u64, lock.0, token]);
                if self.trace.logging() {
                    self.trace.log(now, format!("node{i} acquired {lock:?} token={token}"));
                }
                let inc = self.slots[i].inc;
                let end = self.slots[i].clock.to_true(valid_until.as_nanos());
                let local = self.local_now(i).as_nanos();
                let h = self.holds.len();
                let Some(c) = self.slots[i].locks.get_mut(&lock) else { return };
                c.held = Some(h);
                self.holds.push(HoldRecord {
                    node: i,
                    inc,
                    lock: lock.0,
                    mode: c.mode,
                    res: c.res.clone(),
                    token,
                    intervals: vec![(now, end.max(now))],
                    open: true,
                });
                let (hold, writes, kind) = (c.hold, c.writes.clone(), c.kind);
                match kind {
                    ClientKind::Workload(r) => self.outcomes[r] = RequestOutcome::Acquired(token),
                    ClientKind::Probe(p) => self.probes[p].resolved = Some((local, true)),
                }
                self.push(now + hold, Ev::Unlock { node: i, inc, lock });
                for w in writes {
                    self.push(now + w.after, Ev::WriteCheck { hold: h, pause: w.pause });
                }
            }
            Event::Failed { lock, .. } => {
                self.stats.failed += 1;
                self.trace.record(now, Tag::Failed, &[i as u64, lock.0]);
                if self.trace.logging() {
                    self.trace.log(now, format!("node{i} failed {lock:?}"));
                }
                let local = self.local_now(i).as_nanos();
                if let Some(c) = self.slots[i].locks.remove(&lock) {
                    match c.kind {
                        ClientKind::Workload(r) => self.outcomes[r] = RequestOutcome::Failed,
                        ClientKind::Probe(p) => self.probes[p].resolved = Some((local, false)),
                    }
                }
            }
            Event::Lost { lock } => {
                self.stats.lost += 1;
                self.trace.record(now, Tag::Lost, &[i as u64, lock.0]);
                if self.trace.logging() {
                    self.trace.log(now, format!("node{i} lost {lock:?}"));
                }
                if let Some(c) = self.slots[i].locks.remove(&lock) {
                    if let Some(h) = c.held {
                        self.close(h);
                    }
                }
            }
            Event::Holders { query, entries, .. } => {
                if self.query == Some((i, query)) {
                    self.query = None;
                    // In scope: the uncontended probe resources whose probe lock is held now (a pending
                    // probe's partial grants are legitimately visible, so it is not a quiescent moment).
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
                    let v = check::holders::check(now, &entries, |r| scope.contains(r), &truth);
                    self.violations.extend(v);
                }
            }
            Event::PersistFloor { floor } => {
                let inc = self.slots[i].inc;
                let at = now + self.rng.log_range(100_000, 20 * MS);
                self.push(at, Ev::PersistDone { node: i, inc, floor });
            }
            Event::Serving | Event::Quarantined { .. } => {
                if e == Event::Serving {
                    self.stats.serving += 1;
                    self.history = true; // from now on it may grant
                } else {
                    self.stats.quarantined += 1;
                }
                self.trace.record(now, Tag::Serving, &[i as u64]);
                if self.trace.logging() {
                    self.trace.log(now, format!("node{i} {e:?}"));
                }
            }
            Event::Released { .. } | Event::ForceUnlocked { .. } => {}
        }
    }

    /// Ends hold `h`'s belief now (unlock, loss, crash).
    fn close(&mut self, h: usize) {
        let now = self.now;
        let rec = &mut self.holds[h];
        rec.open = false;
        if let Some(last) = rec.intervals.last_mut() {
            last.1 = last.1.min(now).max(last.0);
        }
    }

    // ----- clients -----

    fn request(&mut self, i: usize) {
        let node = self.requests[i].node;
        if self.phase >= Phase::Stop {
            return;
        }
        if self.slots[node].node.is_none() {
            self.outcomes[i] = RequestOutcome::Skipped;
            return;
        }
        if self.defer_if_paused(node, Ev::Request(i)).is_none() {
            return;
        }
        let r = self.requests[i].clone();
        let res: Vec<u32> = r.resources.iter().map(|n| self.intern(n)).collect();
        self.trace.record(self.now, Tag::Request, &[node as u64, i as u64]);
        if self.trace.logging() {
            self.trace.log(self.now, format!("node{node} requests {:?} {:?}", r.mode, r.resources));
        }
        let kind = ClientKind::Workload(i);
        self.issue(node, kind, r.mode, res, r.resources, r.hold, r.deadline, r.writes);
    }

    #[allow(clippy::too_many_arguments)]
    fn issue(
        &mut self,
        node: usize,
        kind: ClientKind,
        mode: Mode,
        res: Vec<u32>,
        names: Vec<String>,
        hold: u64,
        deadline: Option<u64>,
        writes: Vec<PlannedWrite>,
    ) -> bool {
        let local = self.local_now(node);
        let deadline = deadline.map(|d| local + Duration::from_nanos(d));
        let n = self.slots[node].node.as_mut().expect("live");
        let result = n.lock(local, mode, names, deadline);
        let ok = match result {
            Ok(id) => {
                self.slots[node].locks.insert(id, Client { kind, mode, res, hold, writes, held: None });
                true
            }
            Err(_) => {
                if let ClientKind::Workload(r) = kind {
                    self.outcomes[r] = RequestOutcome::Rejected;
                }
                false
            }
        };
        self.after_step(node);
        ok
    }

    fn client_unlock(&mut self, node: usize, inc: u32, lock: LockId) {
        if self.slots[node].inc != inc || self.slots[node].node.is_none() || self.phase >= Phase::Stop {
            return;
        }
        if self.slots[node].locks.get(&lock).is_none_or(|c| c.held.is_none()) {
            return;
        }
        if self.defer_if_paused(node, Ev::Unlock { node, inc, lock }).is_none() {
            return;
        }
        let c = self.slots[node].locks.remove(&lock).expect("checked");
        self.close(c.held.expect("checked"));
        self.trace.record(self.now, Tag::Unlock, &[node as u64, lock.0]);
        let local = self.local_now(node);
        self.slots[node].node.as_mut().expect("live").unlock(local, lock);
        self.after_step(node);
    }

    /// The holder checks validity, may be paused (GC) right after the check, then writes.
    fn write_check(&mut self, h: usize, pause: u64) {
        let (node, inc, lock, open) = {
            let r = &self.holds[h];
            (r.node, r.inc, LockId(r.lock), r.open)
        };
        if !open || self.slots[node].inc != inc || self.slots[node].node.is_none() || self.phase >= Phase::Stop {
            return;
        }
        if self.defer_if_paused(node, Ev::WriteCheck { hold: h, pause }).is_none() {
            return;
        }
        let local = self.local_now(node);
        let valid = self.slots[node].node.as_ref().expect("live").is_valid(lock, local);
        if valid != self.holds[h].valid_at(self.now) {
            // The sim's belief intervals must mirror the core's own answer exactly.
            panic!("sim bug: is_valid={valid} but belief interval says otherwise for {}", self.holds[h].label());
        }
        if !valid {
            self.stats.writes_skipped += 1;
            return;
        }
        if pause > 0 && self.phase == Phase::Faults {
            let until = self.now + pause;
            let s = &mut self.slots[node];
            s.paused_until = s.paused_until.max(until);
            self.push(until, Ev::WriteLand { hold: h });
        } else {
            self.write_land(h);
        }
    }

    fn write_land(&mut self, h: usize) {
        let token = self.holds[h].token;
        let valid = self.holds[h].valid_at(self.now);
        let res = self.holds[h].res.clone();
        self.trace.record(self.now, Tag::Write, &[h as u64, token]);
        for r in res {
            let reg = &mut self.registers[r as usize];
            let (prev, by) = (reg.max, reg.by);
            if reg.write(token, h) {
                self.stats.writes_accepted += 1;
            } else {
                self.stats.writes_rejected += 1;
                if valid {
                    let other = by.map(|b| self.holds[b].label()).unwrap_or_default();
                    let detail = format!(
                        "register {}: write of {} (valid now) rejected; {other} already wrote token {prev}",
                        self.names[r as usize],
                        self.holds[h].label()
                    );
                    self.violation(Kind::FencedWriteRejected, detail);
                }
            }
        }
    }

    // ----- faults -----

    fn fault(&mut self, f: Fault) {
        if self.phase != Phase::Faults {
            return;
        }
        self.trace.record(self.now, Tag::Fault, &[]);
        if self.trace.logging() {
            self.trace.log(self.now, format!("fault {f:?}"));
        }
        let n = self.swarm.nodes;
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
                    s.paused_until = s.paused_until.max(self.now + dur);
                }
            }
            Fault::Partition { side, one_way } => {
                self.net.partition(side & all_mask(n), one_way);
                if self.swarm.detect_partitions {
                    self.notify_all();
                }
            }
            Fault::Heal => {
                self.net.heal_partitions();
                if self.swarm.detect_partitions {
                    self.notify_all();
                }
            }
            Fault::Clog { from, to } => self.net.set_clog(from, to, true),
            Fault::Unclog { from, to } => self.unclog(from, to),
        }
    }

    fn unclog(&mut self, from: usize, to: usize) {
        self.net.set_clog(from, to, false);
        let held = std::mem::take(&mut self.held_msgs);
        let (go, stay): (Vec<_>, Vec<_>) = held.into_iter().partition(|(f, t, _, _)| *f == from && *t == to);
        self.held_msgs = stay;
        for (f, t, sent, m) in go {
            let at = self.net.arrival(&mut self.rng, f, t, self.now);
            self.push(at, Ev::Deliver { from: f, to: t, sent, msg: m });
        }
    }

    fn crash(&mut self, node: usize) {
        if self.slots[node].node.is_none() {
            return;
        }
        self.stats.crashes += 1;
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
        let at = self.now + self.swarm.detect_delay;
        for p in 0..self.swarm.nodes {
            if p != node {
                self.push(at, Ev::Notify { node: p, peer: node });
            }
        }
    }

    fn restart(&mut self, node: usize, kind: RestartKind) {
        let inc = self.slots[node].inc + 1;
        let cfg = self.node_config(node, inc);
        let mut kind = kind;
        if kind == RestartKind::Wiped && self.history && !self.someone_decided(node) {
            // Every node would be fresh after grants were made: a new cluster that knowingly drops its fencing
            // history (§6.5), which the token checkers would rightly flag. A wiped disk here is out of scope.
            kind = RestartKind::Volatile;
        }
        let start = if kind == RestartKind::Wiped {
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
        let local = self.local_now(node);
        let s = &mut self.slots[node];
        s.inc = inc;
        s.told_down = 0;
        s.node = Some(Node::new(cfg, local, start).expect("restart config is valid"));
        self.trace.record(self.now, Tag::Restart, &[node as u64]);
        self.after_step(node);
        let at = self.now + self.swarm.detect_delay;
        for p in 0..self.swarm.nodes {
            if p != node {
                self.push(at, Ev::Notify { node: p, peer: node });
                self.push(at, Ev::Notify { node, peer: p });
            }
        }
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

    fn notify_all(&mut self) {
        let at = self.now + self.swarm.detect_delay;
        for a in 0..self.swarm.nodes {
            for b in 0..self.swarm.nodes {
                if a != b {
                    self.push(at, Ev::Notify { node: a, peer: b });
                }
            }
        }
    }

    /// The transport's failure detector: tells `node` whether `peer` is reachable, if that changed.
    fn notify(&mut self, node: usize, peer: usize) {
        if self.slots[node].node.is_none() {
            return;
        }
        if self.defer_if_paused(node, Ev::Notify { node, peer }).is_none() {
            return;
        }
        let up = self.slots[peer].node.is_some() && (!self.swarm.detect_partitions || self.net.connected(node, peer));
        let told_down = self.slots[node].told_down >> peer & 1 == 1;
        let local = self.local_now(node);
        if up && told_down {
            self.slots[node].told_down &= !(1 << peer);
            self.slots[node].node.as_mut().expect("live").handle_peer_up(local, peer);
        } else if !up && !told_down {
            self.slots[node].told_down |= 1 << peer;
            self.owed.forget_pair(node, peer);
            self.slots[node].node.as_mut().expect("live").handle_peer_down(local, peer);
        } else {
            return;
        }
        self.trace.record(self.now, Tag::PeerNotice, &[node as u64, peer as u64, up as u64]);
        self.after_step(node);
    }

    // ----- end phases -----

    fn settle_time(&self) -> u64 {
        // Two locker holds in true time, with the slowest clock in the bound: every grant has expired.
        let l = self.swarm.lease.as_nanos() as u64;
        let rho = self.swarm.max_drift_ppm as u64;
        2 * l * (1_000_000 + rho) / (1_000_000 - rho) + S
    }

    fn enter(&mut self, p: Phase) {
        self.trace.record(self.now, Tag::Phase, &[p.trace_word()]);
        if self.trace.logging() {
            self.trace.log(self.now, format!("phase {p:?}"));
        }
        let n = self.swarm.nodes;
        self.phase = p;
        match p {
            Phase::Faults => unreachable!("a run starts in the fault phase"),
            Phase::Heal => {
                self.net.heal_partitions();
                // A healed network still has latency, but no loss, duplication or long tail: the end-phase
                // checks (liveness, holder query, leaks) need every message of a correct node to arrive.
                self.net.params.loss = 0.0;
                self.net.params.dup = 0.0;
                self.net.params.tail_prob = 0.0;
                for a in 0..n {
                    for b in 0..n {
                        if a != b && self.net.is_clogged(a, b) {
                            self.unclog(a, b);
                        }
                    }
                }
                for i in 0..n {
                    self.slots[i].paused_until = self.slots[i].paused_until.min(self.now);
                    if self.slots[i].node.is_none() {
                        self.restart(i, RestartKind::Durable);
                    }
                }
                self.notify_all();
                self.push(self.now + self.settle_time(), Ev::Phase(Phase::Probe));
            }
            Phase::Probe => {
                self.check_floor_recovery();
                let hot = self.intern("probe-hot");
                for i in 0..n {
                    let name = format!("probe-{i}");
                    let r = self.intern(&name);
                    let local = self.local_now(i).as_nanos();
                    for (kind_res, names, hold, dl, uncontended) in
                        [(r, name, 1500 * MS, 2 * S, true), (hot, "probe-hot".to_string(), 30 * MS, S, false)]
                    {
                        let p = self.probes.len();
                        self.probes.push(Probe {
                            node: i,
                            uncontended: uncontended && self.quorum_serving,
                            deadline_local: local + dl,
                            resolved: None,
                            at: self.now,
                        });
                        if !self.issue(
                            i,
                            ClientKind::Probe(p),
                            Mode::Write,
                            vec![kind_res],
                            vec![names],
                            hold,
                            Some(dl),
                            vec![],
                        ) {
                            self.probes[p].resolved = Some((local, false));
                        }
                    }
                }
                self.push(self.now + S, Ev::Phase(Phase::Query));
                self.push(self.now + 3 * S, Ev::Phase(Phase::Stop));
            }
            Phase::Query => {
                let local = self.local_now(0);
                if let Ok(q) = self.slots[0].node.as_mut().expect("live").query_holders(local, None) {
                    self.query = Some((0, q));
                }
                self.after_step(0);
            }
            Phase::Stop => {
                for i in 0..n {
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
            Phase::Final => {
                self.final_checks();
                self.done = true;
            }
        }
    }

    /// Long after healing (quarantines are over), no node may still be bootstrapping (every peer is up and
    /// answers), and a node that still does not serve is recovering its fencing floor. It must have
    /// finished if a read quorum of its peers know theirs; if not, the floor was genuinely lost (too many restarts without a durable floor, a documented limit), and
    /// uncontended requests need only succeed while a write quorum of nodes serves.
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
        self.violations.extend(check::liveness::check(&self.probes));
        self.violations.extend(check::exclusion::check(&self.holds, &self.names, cap));
        self.violations.extend(check::fencing::check_token_order(&self.holds, &self.names, cap));
        self.violations.sort_by_key(|v| (v.at, v.kind));
    }
}

fn all_mask(n: usize) -> u64 {
    if n >= 64 {
        u64::MAX
    } else {
        (1u64 << n) - 1
    }
}

fn is_probe_scope(name: &str) -> bool {
    name.starts_with("probe-") && name != "probe-hot"
}
