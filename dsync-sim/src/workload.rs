//! Client requests: write, read and multi-resource locks with random hold times over a few hot resources
//! and many cold ones, and the fenced writes holders make while holding.

use crate::rng::Rng;
use crate::swarm::Swarm;
use dsync_core::Mode;
use std::fmt;

const MS: u64 = 1_000_000;
const S: u64 = 1_000_000_000;

/// One write a holder makes to the fenced register of each of its resources.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlannedWrite {
    /// When, after the lock was acquired (true nanoseconds).
    pub after: u64,
    /// A process pause injected between the validity check and the write landing (0: none). This is
    /// the case fencing exists for: the check passed, then the world moved on.
    pub pause: u64,
}

/// A client's lock request, issued on `node` at true time `at`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// True time, nanoseconds.
    pub at: u64,
    /// The node whose application asks.
    pub node: usize,
    /// Read or write.
    pub mode: Mode,
    /// Resource names.
    pub resources: Vec<String>,
    /// How long the client holds the lock once acquired (true nanoseconds);
    /// [`Request::UNTIL_RELEASED`] (`u64::MAX`) holds it until the clients stop at the end of the run.
    pub hold: u64,
    /// Deadline relative to the request, on the node's clock; `None`: keep trying.
    pub deadline: Option<u64>,
    /// Fenced writes while holding (write locks only).
    pub writes: Vec<PlannedWrite>,
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:>12.6}s request node={} {:?} {:?} hold={}ms deadline={:?}ms writes={:?}",
            self.at as f64 / 1e9,
            self.node,
            self.mode,
            self.resources,
            self.hold / MS,
            self.deadline.map(|d| d / MS),
            self.writes.iter().map(|w| (w.after / MS, w.pause / MS)).collect::<Vec<_>>()
        )
    }
}

/// Draws the phase-one workload of `swarm`.
pub fn draw(r: &mut Rng, swarm: &Swarm) -> Vec<Request> {
    let n = swarm.nodes;
    // Messages per lock grow with n, so the request rate shrinks with it to keep a seed's cost bounded.
    let scale = (8.0 / n as f64).min(1.0);
    let rate = (4.0 + r.unit() * 26.0) * scale / S as f64; // requests per true ns, whole cluster
    let hot = r.range(1, 4);
    let hot_frac = 0.5 + r.unit() * 0.45;
    let multi = r.unit() * 0.3;
    let write_frac = 0.3 + r.unit() * 0.6;
    let no_deadline = r.unit() * 0.3;
    let mut out = Vec::new();
    let mut t = 0f64;
    loop {
        t += -(1.0 - r.unit()).ln() / rate;
        if t >= swarm.heal_at as f64 {
            break;
        }
        let count = if r.chance(multi) { r.range(2, 3) } else { 1 };
        let mut resources: Vec<String> = (0..count)
            .map(|_| if r.chance(hot_frac) { format!("h{}", r.below(hot)) } else { format!("c{}", r.below(200)) })
            .collect();
        resources.sort();
        resources.dedup();
        let mode = if r.chance(write_frac) { Mode::Write } else { Mode::Read };
        // Some holds outlast the lease, so refreshes (and failed refreshes) happen.
        let hold = r.log_range(5 * MS, 5 * S);
        let writes = if mode == Mode::Write {
            (0..r.range(1, 3))
                .map(|_| PlannedWrite {
                    after: r.below(hold + 1),
                    pause: if r.chance(swarm.gc_pause_prob) { r.log_range(MS, swarm.gc_pause_max) } else { 0 },
                })
                .collect()
        } else {
            Vec::new()
        };
        out.push(Request {
            at: t as u64,
            node: r.below(n as u64) as usize,
            mode,
            resources,
            hold,
            deadline: if r.chance(no_deadline) { None } else { Some(r.log_range(20 * MS, 4 * S)) },
            writes,
        });
    }
    out
}

impl Request {
    /// A `hold` that never ends by itself: the lock is kept (and refreshed) until the stop phase.
    pub const UNTIL_RELEASED: u64 = u64::MAX;

    /// A write lock on one resource by `node` at true time `at`, held for `hold`, no deadline, no writes.
    pub fn write(node: usize, at: u64, resource: &str, hold: u64) -> Request {
        Request {
            at,
            node,
            mode: Mode::Write,
            resources: vec![resource.to_string()],
            hold,
            deadline: None,
            writes: Vec::new(),
        }
    }
}
