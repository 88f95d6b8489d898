//! Five in-memory nodes fight over three hot resources for 20 s of virtual time, with network latency,
//! readers and writers, and one node crashing mid-run and restarting without its state. Every write
//! lands on a fenced counter that rejects stale tokens; the run ends with `violations=0` when no two
//! conflicting holders ever believed their locks valid at once and no write went through with a token
//! below one already accepted.
//!
//! `cargo run --release -p dsync-core --example contention [-- --seed S]`
//!
//! This drives the core by hand to show the run loop; `dsync-sim` is the full fault simulator.

use dsync_core::rng::SplitMix64;
use dsync_core::{Config, Duration, Event, Instant, LockId, Mode, Node, Start};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

const NODES: usize = 5;
const CLIENTS_PER_NODE: usize = 3;
const HOT: [&str; 3] = ["orders", "invoices", "stock"];

/// What is scheduled in virtual time (all nodes share it: no drift in this demo).
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Due {
    Deliver { from: usize, to: usize, msg: Vec<u8> },
    Timer { node: usize },
    Client { node: usize, client: usize },
    Release { node: usize, lock: LockId },
    Crash { node: usize },
    Restart { node: usize },
}

struct Demo {
    nodes: Vec<Option<Node>>,
    queue: BinaryHeap<Reverse<(Instant, u64, Due)>>,
    seq: u64,
    rng: SplitMix64,
    /// What each pending or held lock is for.
    locks: BTreeMap<(usize, LockId), (usize, Mode, &'static str)>,
    /// Highest token each fenced counter accepted, and its value.
    counters: BTreeMap<&'static str, (u64, u64)>,
    acquired: u64,
    failed: u64,
    lost: u64,
    violations: u64,
}

fn main() {
    let seed = std::env::args().skip_while(|a| a != "--seed").nth(1).and_then(|s| s.parse().ok()).unwrap_or(7u64);
    let mut d = Demo {
        nodes: (0..NODES).map(|id| Some(node(id, seed, Start::FirstBoot, Instant::ZERO))).collect(),
        queue: BinaryHeap::new(),
        seq: 0,
        rng: SplitMix64::new(seed),
        locks: BTreeMap::new(),
        counters: BTreeMap::new(),
        acquired: 0,
        failed: 0,
        lost: 0,
        violations: 0,
    };
    for n in 0..NODES {
        for c in 0..CLIENTS_PER_NODE {
            d.at(Instant::from_millis(1 + c as u64), Due::Client { node: n, client: c });
        }
    }
    d.at(Instant::from_millis(7_000), Due::Crash { node: 2 });
    d.at(Instant::from_millis(8_000), Due::Restart { node: 2 });
    let end = Instant::from_millis(20_000);
    let mut next_report = Instant::from_millis(2_000);
    while let Some(Reverse((now, _, due))) = d.queue.pop() {
        if now > end {
            break;
        }
        if now >= next_report {
            println!("t={:>5.1}s acquired={} failed={} lost={}", secs(now), d.acquired, d.failed, d.lost);
            next_report = next_report + Duration::from_secs(2);
        }
        d.step(now, due);
    }
    let c: u64 = d.counters.values().map(|(_, v)| v).sum();
    println!(
        "summary: {:.0} locks/s (virtual), acquired={} failed={} lost={} fenced_writes={c}",
        d.acquired as f64 / secs(end),
        d.acquired,
        d.failed,
        d.lost
    );
    println!("violations={}", d.violations);
    std::process::exit(i32::from(d.violations > 0));
}

fn node(id: usize, seed: u64, start: Start, now: Instant) -> Node {
    let mut cfg = Config::new(NODES, id);
    cfg.lease = Duration::from_secs(3);
    cfg.refresh_interval = Duration::from_secs(1);
    cfg.attempt_timeout = Duration::from_millis(200);
    cfg.seed = seed ^ (id as u64) << 32 ^ now.as_nanos();
    Node::new(cfg, now, start).expect("valid config")
}

fn secs(t: Instant) -> f64 {
    t.as_nanos() as f64 / 1e9
}

impl Demo {
    fn at(&mut self, t: Instant, due: Due) {
        self.seq += 1;
        self.queue.push(Reverse((t, self.seq, due)));
    }

    fn random(&mut self, below: u64) -> u64 {
        self.rng.next_u64() % below
    }

    fn step(&mut self, now: Instant, due: Due) {
        let touched = match due {
            Due::Deliver { from, to, msg } => {
                let Some(node) = self.nodes[to].as_mut() else { return };
                let msg = dsync_core::wire::decode(&msg, 1 << 20).expect("our own encoding");
                node.handle_message(now, from, msg);
                to
            }
            Due::Timer { node } => {
                let Some(n) = self.nodes[node].as_mut() else { return };
                if n.poll_timeout().is_some_and(|t| t <= now) {
                    n.handle_timeout(now);
                }
                node
            }
            Due::Client { node, client } => {
                let Some(n) = self.nodes[node].as_mut() else { return };
                let pick = self.rng.next_u64();
                let resource = HOT[(pick % 3) as usize];
                let mode = if pick.is_multiple_of(5) { Mode::Read } else { Mode::Write };
                let deadline = Some(now + Duration::from_secs(2));
                let lock = n.lock(now, mode, [resource], deadline).expect("valid request");
                self.locks.insert((node, lock), (client, mode, resource));
                node
            }
            Due::Release { node, lock } => {
                let Some(n) = self.nodes[node].as_mut() else { return };
                n.unlock(now, lock);
                node
            }
            Due::Crash { node } => {
                println!("t={:>5.1}s node {node} crashes", secs(now));
                self.nodes[node] = None;
                return;
            }
            Due::Restart { node } => {
                println!("t={:>5.1}s node {node} restarts without state (quarantined)", secs(now));
                self.nodes[node] =
                    Some(self::node(node, self.rng.next_u64(), Start::Restart { durable_floor: None }, now));
                for c in 0..CLIENTS_PER_NODE {
                    self.at(now + Duration::from_millis(c as u64), Due::Client { node, client: c });
                }
                node
            }
        };
        self.drain(now, touched);
    }

    /// The run loop: transmits, then events, then the next timer.
    fn drain(&mut self, now: Instant, id: usize) {
        let mut out = Vec::new();
        let mut events = Vec::new();
        let Some(node) = self.nodes[id].as_mut() else { return };
        while let Some(t) = node.poll_transmit() {
            out.push(t);
        }
        while let Some(e) = node.poll_event() {
            events.push(e);
        }
        let timer = node.poll_timeout();
        for t in out {
            let latency = Duration::from_micros(100 + self.random(2_000));
            self.at(now + latency, Due::Deliver { from: id, to: t.to, msg: dsync_core::wire::encode(&t.message) });
        }
        for e in events {
            self.on_event(now, id, e);
        }
        if let Some(t) = timer {
            self.at(t.max(now), Due::Timer { node: id });
        }
    }

    fn on_event(&mut self, now: Instant, id: usize, e: Event) {
        match e {
            Event::Acquired { lock, token, .. } => {
                self.acquired += 1;
                let (client, mode, resource) = self.locks[&(id, lock)];
                self.check_exclusive(now, id, lock, mode, resource);
                if mode == Mode::Write {
                    let (high, value) = self.counters.entry(resource).or_default();
                    if token < *high {
                        self.violations += 1;
                        println!("VIOLATION: stale token {token} < {high} accepted on {resource}");
                    }
                    *high = token;
                    *value += 1;
                }
                let hold = Duration::from_micros(500 + self.random(3_000));
                self.at(now + hold, Due::Release { node: id, lock });
                let think = Duration::from_micros(self.random(2_000));
                self.at(now + hold + think, Due::Client { node: id, client });
            }
            Event::Failed { lock, .. } => {
                self.failed += 1;
                let (client, ..) = self.locks.remove(&(id, lock)).expect("known lock");
                self.at(now + Duration::from_millis(1), Due::Client { node: id, client });
            }
            Event::Lost { lock } => {
                self.lost += 1;
                self.locks.remove(&(id, lock));
            }
            Event::Released { lock, .. } => {
                self.locks.remove(&(id, lock));
            }
            _ => {}
        }
    }

    /// No other node may believe it holds a conflicting lock at this instant.
    fn check_exclusive(&mut self, now: Instant, id: usize, lock: LockId, mode: Mode, resource: &str) {
        for (&(other, other_lock), &(_, other_mode, other_res)) in &self.locks {
            if (other, other_lock) == (id, lock) || other_res != resource {
                continue;
            }
            if mode == Mode::Read && other_mode == Mode::Read {
                continue;
            }
            if self.nodes[other].as_ref().is_some_and(|n| n.is_valid(other_lock, now)) {
                self.violations += 1;
                println!("VIOLATION: node {id} and node {other} both hold {resource} at {:.3}s", secs(now));
            }
        }
    }
}
