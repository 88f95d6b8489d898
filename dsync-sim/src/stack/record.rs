//! The run's record: what the applications did, in true time, and the trace hash over it.
//!
//! Every host's tasks and the harness share one [`Recorder`]. Turmoil runs the whole simulation on one
//! thread, one host at a time, so the order of records — and so the hash — is a function of the seed. True
//! time is `turmoil::sim_elapsed()` inside a host (the host's own virtual clock, exact to the nanosecond
//! within a tick) and `Sim::elapsed()` in the harness.

use super::register::FencedStore;
use crate::check::liveness::Probe;
use crate::check::{Kind, Violation};
use dsync_core::{HolderEntry, Mode};
use std::sync::{Arc, Mutex, MutexGuard};

/// What an application did with one lock it held.
#[derive(Clone, Debug)]
pub struct Hold {
    /// The holder's node.
    pub node: usize,
    /// The node's incarnation (restart count).
    pub inc: u32,
    /// Which application task of the node.
    pub app: usize,
    /// Read or write.
    pub mode: Mode,
    /// Resource ids ([`Recorder::resource`]).
    pub res: Vec<u32>,
    /// The guard's fencing token.
    pub token: u64,
    /// True time `lock()` (or its variant) returned the guard.
    pub start: u64,
    /// True time the application stopped believing it held the lock: it released or dropped the guard,
    /// saw `lost()`, or its host crashed.
    pub end: Option<u64>,
    /// True time the guard's `lost()` resolved, if it did.
    pub lost_at: Option<u64>,
    /// True time from which a force-unlock voided its guarantees ([`super::force`]).
    pub voided: Option<u64>,
}

/// A call into the library that must return — `lock()` (no deadline of its own), or a bounded call
/// (`try_lock_for(d)`, `try_lock()`, `release()`) that must return within `bound` — unless its host crashed
/// under it.
#[derive(Clone, Debug)]
pub struct Call {
    /// What was called, for reports.
    pub what: &'static str,
    /// The calling node.
    pub node: usize,
    /// Its incarnation.
    pub inc: u32,
    /// True time of the call.
    pub at: u64,
    /// How long it may take at most, ns (`None`: no bound, it must merely return).
    pub bound: Option<u64>,
    /// True time it returned (`Some`), or the host crashed under it (`crashed`).
    pub resolved: Option<u64>,
    /// The host crashed while it was pending.
    pub crashed: bool,
}

/// A holder query's true time and answer (`Err`: why it failed).
pub type Query = (u64, Result<Vec<HolderEntry>, String>);

/// Everything recorded; see [`Recorder`].
#[derive(Debug, Default)]
pub struct Record {
    /// Resource names; ids index this.
    pub names: Vec<String>,
    /// Every hold.
    pub holds: Vec<Hold>,
    /// Every waiting call.
    pub calls: Vec<Call>,
    /// The liveness probes.
    pub probes: Vec<Probe>,
    /// Per node, the holder query after quiescence: when, and what it returned (`Err`: why it failed).
    pub queries: Vec<Option<Query>>,
    /// Violations found while running (fenced writes, nodes that failed to start).
    pub violations: Vec<Violation>,
    /// The fenced registers.
    pub store: FencedStore,
    /// The force-unlocks an administrator issued.
    pub forces: Vec<super::force::Force>,
    /// Per node, its current incarnation and whether it is up.
    pub incarnation: Vec<(u32, bool)>,
    /// Records hashed.
    pub events: u64,
    hash: u64,
    log: Option<Vec<String>>,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// A cheap shared handle to the run's [`Record`].
#[derive(Clone, Debug)]
pub struct Recorder(Arc<Mutex<Record>>);

impl Recorder {
    /// A record for `nodes` nodes; keeps a readable log when `log` is set.
    pub fn new(nodes: usize, log: bool) -> Self {
        Recorder(Arc::new(Mutex::new(Record {
            hash: FNV_OFFSET,
            log: log.then(Vec::new),
            queries: vec![None; nodes],
            incarnation: vec![(0, false); nodes],
            ..Record::default()
        })))
    }

    /// The record, locked (never poisoned for long: a panic in a host aborts the run anyway).
    pub fn lock(&self) -> MutexGuard<'_, Record> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hashes one event (and logs it): true time, node, application (`u64::MAX`: none), a word naming
    /// what happened, and its details. `text` is only called when a log is kept.
    pub fn event(&self, at: u64, node: usize, app: usize, what: &str, words: &[u64], text: impl FnOnce() -> String) {
        let mut r = self.lock();
        r.mix(at, node as u64, app as u64, what, words);
        if let Some(log) = r.log.as_mut() {
            let who = match (node, app) {
                (usize::MAX, _) => "harness".to_string(),
                (_, usize::MAX) => format!("node{node}"),
                _ => format!("node{node}/app{app}"),
            };
            log.push(format!("{:>12.6}s {who:<12} {what:<10} {}", at as f64 / 1e9, text()));
        }
    }

    /// The resource id of `name`, interning it.
    pub fn resource(&self, name: &str) -> u32 {
        let mut r = self.lock();
        match r.names.iter().position(|n| n == name) {
            Some(i) => i as u32,
            None => {
                r.names.push(name.to_string());
                r.store.add();
                (r.names.len() - 1) as u32
            }
        }
    }

    /// The trace hash so far.
    pub fn hash(&self) -> u64 {
        self.lock().hash
    }

    /// The log lines (empty unless logging).
    pub fn log(&self) -> Vec<String> {
        self.lock().log.clone().unwrap_or_default()
    }

    /// Node `node` started; returns its incarnation (0 for the first start).
    pub fn started(&self, node: usize, at: u64) -> u32 {
        let inc = {
            let mut r = self.lock();
            let (inc, up) = &mut r.incarnation[node];
            if *up {
                *inc += 1; // a bounce without a crash (not planned, but restart anyway)
            }
            *up = true;
            *inc
        };
        self.event(at, node, usize::MAX, "start", &[inc as u64], || format!("incarnation {inc}"));
        inc
    }

    /// Records a call of `what` by node `node` (incarnation `inc`) at `at`; returns its index for
    /// [`Recorder::returned`].
    pub fn call(&self, what: &'static str, node: usize, inc: u32, at: u64, bound: Option<u64>) -> usize {
        let mut r = self.lock();
        r.calls.push(Call { what, node, inc, at, bound, resolved: None, crashed: false });
        r.calls.len() - 1
    }

    /// Call `c` returned at `at`.
    pub fn returned(&self, c: usize, at: u64) {
        self.lock().calls[c].resolved = Some(at);
    }

    /// Node `node` crashed at `at`: its applications' beliefs end and its pending calls die with it.
    pub fn crashed(&self, node: usize, at: u64) {
        {
            let mut r = self.lock();
            let (inc, up) = &mut r.incarnation[node];
            if !*up {
                return;
            }
            *up = false;
            let inc = *inc;
            r.incarnation[node].0 = inc + 1;
            for h in r.holds.iter_mut().filter(|h| h.node == node && h.inc == inc && h.end.is_none()) {
                h.end = Some(at);
            }
            for c in r.calls.iter_mut().filter(|c| c.node == node && c.inc == inc && c.resolved.is_none()) {
                c.crashed = true;
            }
            for p in r.probes.iter_mut().filter(|p| p.node == node && p.resolved.is_none()) {
                // A probe cut short by a crash is not late; the harness never crashes after healing.
                p.resolved = Some((at, false));
            }
        }
        self.event(at, node, usize::MAX, "crash", &[], String::new);
    }

    /// A violation found while running.
    pub fn violation(&self, kind: Kind, at: u64, detail: String) {
        self.event(at, usize::MAX, usize::MAX, "violation", &[kind as u64], || detail.clone());
        self.lock().violations.push(Violation { kind, at, detail });
    }
}

impl Record {
    fn mix(&mut self, at: u64, node: u64, app: u64, what: &str, words: &[u64]) {
        self.events += 1;
        let mut h = self.hash;
        let mut eat = |b: u8| {
            h ^= b as u64;
            h = h.wrapping_mul(FNV_PRIME);
        };
        for w in [at, node, app].iter().chain(words) {
            w.to_le_bytes().into_iter().for_each(&mut eat);
        }
        what.bytes().for_each(&mut eat);
        self.hash = h;
    }
}
