//! A small in-memory cluster for tests: `n` nodes on one global virtual clock (no drift), a FIFO list of
//! in-flight messages, per-link blocking (partitions), crash and restart, and a safety check that can run
//! after every step (two conflicting locks valid at the same instant).
#![allow(dead_code)] // each test binary uses a different part of the harness

use dsync_core::{Config, Duration, Event, FailReason, Instant, LockId, Message, Mode, Node, RequestError, Start};
use std::collections::{BTreeSet, VecDeque};

/// A message on the wire.
#[derive(Clone, Debug)]
pub struct Msg {
    pub from: usize,
    pub to: usize,
    pub message: Message,
}

/// A lock the test asked for through [`Cluster::lock`].
#[derive(Clone, Debug)]
pub struct Req {
    pub lock: LockId,
    pub mode: Mode,
    pub resources: Vec<String>,
}

/// One `Acquired` event, in the global order they happened.
#[derive(Clone, Debug)]
pub struct Acq {
    pub at: Instant,
    pub node: usize,
    pub lock: LockId,
    pub mode: Mode,
    pub token: u64,
    pub resources: Vec<String>,
}

pub struct Cluster {
    pub n: usize,
    pub cfgs: Vec<Config>,
    /// `None` while crashed.
    pub nodes: Vec<Option<Node>>,
    pub now: Instant,
    pub inflight: VecDeque<Msg>,
    /// Directed links (from, to) whose messages are dropped.
    pub blocked: BTreeSet<(usize, usize)>,
    /// Every event each node's current incarnation emitted, with the instant (lock ids restart at a restart).
    pub events: Vec<Vec<(Instant, Event)>>,
    /// `Event::Serving` / `Event::Quarantined` of each node's current incarnation, with the instant.
    pub status: Vec<Vec<(Instant, Event)>>,
    /// The last floor each node's embedder persisted and acknowledged (only with `persist_floor`).
    pub durable: Vec<Option<u64>>,
    /// Locks requested through the harness on each node's current incarnation.
    pub requests: Vec<Vec<Req>>,
    pub acquisitions: Vec<Acq>,
    /// Run the safety check after every step, recording violations here.
    pub check: bool,
    pub violations: Vec<String>,
    next_seed: u64,
}

impl Cluster {
    /// `n` nodes at time 0 with the default config, tweaked by `f`.
    pub fn new(n: usize, f: impl Fn(&mut Config)) -> Self {
        Self::with_seed(n, 1, f)
    }

    pub fn with_seed(n: usize, seed: u64, f: impl Fn(&mut Config)) -> Self {
        Self::starting(n, seed, Start::FirstBoot, f)
    }

    /// `n` nodes that all start at time 0 with `start` (each then needs its peers for a bootstrap or restart).
    pub fn starting(n: usize, seed: u64, start: Start, f: impl Fn(&mut Config)) -> Self {
        let cfgs: Vec<Config> = (0..n)
            .map(|id| {
                let mut c = Config::new(n, id);
                c.seed = seed.wrapping_mul(1000).wrapping_add(id as u64);
                f(&mut c);
                c
            })
            .collect();
        let nodes = cfgs.iter().map(|c| Some(Node::new(c.clone(), Instant::ZERO, start).unwrap())).collect();
        let mut c = Cluster {
            n,
            cfgs,
            nodes,
            now: Instant::ZERO,
            inflight: VecDeque::new(),
            blocked: BTreeSet::new(),
            events: vec![Vec::new(); n],
            status: vec![Vec::new(); n],
            durable: vec![None; n],
            requests: vec![Vec::new(); n],
            acquisitions: Vec::new(),
            check: true,
            violations: Vec::new(),
            next_seed: seed.wrapping_mul(1000).wrapping_add(500),
        };
        for i in 0..n {
            c.pump(i);
        }
        c
    }

    pub fn node(&self, i: usize) -> &Node {
        self.nodes[i].as_ref().expect("node is crashed")
    }

    pub fn node_mut(&mut self, i: usize) -> &mut Node {
        self.nodes[i].as_mut().expect("node is crashed")
    }

    pub fn at(&self, ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    // ----- commands -----

    pub fn try_lock(
        &mut self,
        i: usize,
        mode: Mode,
        resources: &[&str],
        deadline: Option<Duration>,
    ) -> Result<LockId, RequestError> {
        let now = self.now;
        let deadline = deadline.map(|d| now + d);
        let lock = self.node_mut(i).lock(now, mode, resources.iter().copied(), deadline)?;
        let mut resources: Vec<String> = resources.iter().map(|r| r.to_string()).collect();
        resources.sort();
        resources.dedup();
        self.requests[i].push(Req { lock, mode, resources });
        self.pump(i);
        Ok(lock)
    }

    /// `Node::try_lock`: one attempt, no retries.
    pub fn try_once(&mut self, i: usize, mode: Mode, resources: &[&str]) -> LockId {
        let now = self.now;
        let lock = self.node_mut(i).try_lock(now, mode, resources.iter().copied()).expect("try_lock refused");
        let mut resources: Vec<String> = resources.iter().map(|r| r.to_string()).collect();
        resources.sort();
        resources.dedup();
        self.requests[i].push(Req { lock, mode, resources });
        self.pump(i);
        lock
    }

    pub fn lock(&mut self, i: usize, mode: Mode, resources: &[&str], deadline: Option<Duration>) -> LockId {
        self.try_lock(i, mode, resources, deadline).expect("lock request refused")
    }

    pub fn unlock(&mut self, i: usize, lock: LockId) -> bool {
        let now = self.now;
        let known = self.node_mut(i).unlock(now, lock);
        self.pump(i);
        known
    }

    pub fn cancel(&mut self, i: usize, lock: LockId) -> bool {
        let now = self.now;
        let known = self.node_mut(i).cancel(now, lock);
        self.pump(i);
        known
    }

    /// Applies `f` to node `i` at the current instant, then collects its output.
    pub fn with_node<R>(&mut self, i: usize, f: impl FnOnce(&mut Node, Instant) -> R) -> R {
        let now = self.now;
        let r = f(self.node_mut(i), now);
        self.pump(i);
        r
    }

    // ----- faults -----

    /// Cuts both directions between every node of `a` and every node of `b`.
    pub fn partition(&mut self, a: &[usize], b: &[usize]) {
        for &x in a {
            for &y in b {
                self.blocked.insert((x, y));
                self.blocked.insert((y, x));
            }
        }
    }

    pub fn heal(&mut self) {
        self.blocked.clear();
    }

    /// Loses node `i`'s volatile state; messages to it are dropped until it restarts.
    pub fn crash(&mut self, i: usize) {
        self.nodes[i] = None;
        self.requests[i].clear();
        self.events[i].clear();
    }

    /// Restarts node `i` with a new seed and the given durable floor.
    pub fn restart(&mut self, i: usize, durable_floor: Option<u64>) {
        self.start(i, Start::Restart { durable_floor });
    }

    /// Starts a crashed node `i` again, as `start`, with a fresh seed (a new incarnation).
    pub fn start(&mut self, i: usize, start: Start) {
        self.next_seed += 1;
        let mut cfg = self.cfgs[i].clone();
        cfg.seed = self.next_seed;
        let node = Node::new(cfg, self.now, start).unwrap();
        self.nodes[i] = Some(node);
        self.events[i].clear();
        self.status[i].clear();
        self.requests[i].clear();
        self.pump(i);
    }

    pub fn is_up(&self, i: usize) -> bool {
        self.nodes[i].is_some()
    }

    // ----- moving messages and time -----

    /// Drains node `i`'s transmits and events; acknowledges floor persistence requests at once.
    pub fn pump(&mut self, i: usize) {
        let now = self.now;
        let Some(node) = self.nodes[i].as_mut() else { return };
        loop {
            while let Some(t) = node.poll_transmit() {
                self.inflight.push_back(Msg { from: i, to: t.to, message: t.message });
            }
            let mut acks = Vec::new();
            while let Some(e) = node.poll_event() {
                match &e {
                    Event::PersistFloor { floor } => acks.push(*floor),
                    Event::Acquired { lock, token, .. } => {
                        let req = self.requests[i].iter().find(|r| r.lock == *lock).expect("acquired an unknown lock");
                        self.acquisitions.push(Acq {
                            at: now,
                            node: i,
                            lock: *lock,
                            mode: req.mode,
                            token: *token,
                            resources: req.resources.clone(),
                        });
                    }
                    // Serving status goes to its own list, so tests of locks see only lock events.
                    Event::Serving | Event::Quarantined { .. } => {
                        self.status[i].push((now, e));
                        continue;
                    }
                    _ => {}
                }
                self.events[i].push((now, e));
            }
            if acks.is_empty() {
                break;
            }
            for floor in acks {
                self.durable[i] = Some(floor);
                node.handle_floor_persisted(now, floor);
            }
        }
        if self.check {
            self.check_safety();
        }
    }

    /// Delivers (or drops, for a crashed node or a blocked link) the in-flight message at `idx`.
    pub fn deliver_at(&mut self, idx: usize) {
        let Some(m) = self.inflight.remove(idx) else { return };
        if self.blocked.contains(&(m.from, m.to)) {
            return;
        }
        let now = self.now;
        if let Some(node) = self.nodes[m.to].as_mut() {
            node.handle_message(now, m.from, m.message);
            self.pump(m.to);
        }
    }

    /// Delivers every message, including those sent in response, in FIFO order.
    pub fn deliver_all(&mut self) {
        let mut guard = 0u64;
        while !self.inflight.is_empty() {
            guard += 1;
            assert!(guard < 1_000_000, "messages never stop at {:?}", self.now);
            self.deliver_at(0);
        }
    }

    /// Fires `handle_timeout` on every live node whose timer is due; returns whether any was.
    pub fn fire_due(&mut self) -> bool {
        let mut fired = false;
        for i in 0..self.n {
            let now = self.now;
            let Some(node) = self.nodes[i].as_mut() else { continue };
            if node.poll_timeout().is_some_and(|t| t <= now) {
                node.handle_timeout(now);
                self.pump(i);
                fired = true;
            }
        }
        fired
    }

    /// The earliest timer of any live node.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.nodes.iter().flatten().filter_map(|n| n.poll_timeout()).min()
    }

    /// Delivers messages and fires due timers at the current instant until nothing moves. A node whose
    /// timer stays due after `handle_timeout` would spin here: that is caught as a busy loop.
    pub fn settle(&mut self) {
        for _ in 0..100_000 {
            self.deliver_all();
            if !self.fire_due() && self.inflight.is_empty() {
                return;
            }
        }
        panic!("busy loop at {:?}", self.now);
    }

    /// Runs the cluster (zero network latency) up to instant `t`.
    pub fn run_until(&mut self, t: Instant) {
        loop {
            self.settle();
            match self.next_timeout() {
                Some(next) if next <= t => self.now = self.now.max(next),
                _ => break,
            }
        }
        self.now = self.now.max(t);
        self.settle();
    }

    pub fn run_for(&mut self, d: Duration) {
        self.run_until(self.now + d);
    }

    /// Advances to `t` firing due timers at each instant, but delivering no message (they pile up).
    pub fn fire_timers_until(&mut self, t: Instant) {
        for _ in 0..100_000 {
            match self.next_timeout() {
                Some(next) if next <= t => {
                    self.now = self.now.max(next);
                    self.fire_due();
                }
                _ => {
                    self.now = self.now.max(t);
                    return;
                }
            }
        }
        panic!("timers never stop at {:?}", self.now);
    }

    // ----- reading events -----

    pub fn acquired(&self, i: usize, lock: LockId) -> Option<(Instant, u64)> {
        self.events[i].iter().find_map(|(at, e)| match e {
            Event::Acquired { lock: l, token, .. } if *l == lock => Some((*at, *token)),
            _ => None,
        })
    }

    pub fn failed(&self, i: usize, lock: LockId) -> Option<(Instant, FailReason)> {
        self.events[i].iter().find_map(|(at, e)| match e {
            Event::Failed { lock: l, reason } if *l == lock => Some((*at, *reason)),
            _ => None,
        })
    }

    pub fn lost(&self, i: usize, lock: LockId) -> Option<Instant> {
        self.events[i].iter().find_map(|(at, e)| match e {
            Event::Lost { lock: l } if *l == lock => Some(*at),
            _ => None,
        })
    }

    pub fn released(&self, i: usize, lock: LockId) -> Option<Instant> {
        self.events[i].iter().find_map(|(at, e)| match e {
            Event::Released { lock: l, .. } if *l == lock => Some(*at),
            _ => None,
        })
    }

    pub fn is_valid(&self, i: usize, lock: LockId) -> bool {
        self.nodes[i].as_ref().is_some_and(|n| n.is_valid(lock, self.now))
    }

    /// Sum of every live node's grant table size.
    pub fn total_grants(&self) -> usize {
        self.nodes.iter().flatten().map(|n| n.grant_count()).sum()
    }

    // ----- checks -----

    /// Locks valid right now, per node: (node, request).
    pub fn valid_locks(&self) -> Vec<(usize, Req)> {
        let mut out = Vec::new();
        for (i, reqs) in self.requests.iter().enumerate() {
            for r in reqs {
                if self.is_valid(i, r.lock) {
                    out.push((i, r.clone()));
                }
            }
        }
        out
    }

    /// Records a violation when two conflicting locks are both valid at the current instant.
    pub fn check_safety(&mut self) {
        let valid = self.valid_locks();
        for (x, (i, a)) in valid.iter().enumerate() {
            for (j, b) in &valid[x + 1..] {
                let conflict = a.mode == Mode::Write || b.mode == Mode::Write;
                if conflict && a.resources.iter().any(|r| b.resources.contains(r)) {
                    self.violations.push(format!(
                        "at {:?}: node {i} {:?} {:?} {:?} and node {j} {:?} {:?} {:?} are both valid",
                        self.now, a.lock, a.mode, a.resources, b.lock, b.mode, b.resources
                    ));
                }
            }
        }
    }

    /// Fencing: write acquisitions that share a resource, in the order they happened, have strictly
    /// increasing tokens. Returns the first pair that does not.
    pub fn fencing_violation(&self) -> Option<String> {
        let writes: Vec<&Acq> = self.acquisitions.iter().filter(|a| a.mode == Mode::Write).collect();
        for (x, a) in writes.iter().enumerate() {
            for b in &writes[x + 1..] {
                if a.resources.iter().any(|r| b.resources.contains(r)) && a.token >= b.token {
                    return Some(format!("write {a:?} then {b:?}: token did not increase"));
                }
            }
        }
        None
    }

    pub fn assert_safe(&self) {
        assert!(self.violations.is_empty(), "safety violations: {:#?}", self.violations);
        if let Some(v) = self.fencing_violation() {
            panic!("{v}");
        }
    }
}

pub fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

pub fn secs(v: u64) -> Duration {
    Duration::from_secs(v)
}
