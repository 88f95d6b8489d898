//! The checkers. Each works on what the world recorded in true (simulated global) time, never on what a
//! node believes about time, so a node cannot be "right" by having a wrong clock.

pub mod exclusion;
pub mod fencing;
pub mod holders;
pub mod leaks;
pub mod liveness;
pub mod revocation;

use dsync_core::Mode;
use std::fmt;

/// Everything the checkers know about one held lock: who, what, its token, and the true-time intervals
/// during which its holder believed it valid (a belief can lapse and resume if a late refresh succeeds).
#[derive(Clone, Debug)]
pub struct HoldRecord {
    /// The holder's node.
    pub node: usize,
    /// The holder node's incarnation (restart count): lock ids restart with the process.
    pub inc: u32,
    /// The core's lock id.
    pub lock: u64,
    /// Read or write.
    pub mode: Mode,
    /// Interned resource ids.
    pub res: Vec<u32>,
    /// The fencing token.
    pub token: u64,
    /// `[start, end)` true-time belief intervals; the last one may still grow while `open`.
    pub intervals: Vec<(u64, u64)>,
    /// Still held (its end may move with refreshes).
    pub open: bool,
    /// True time from which a force-unlock voided the lock's guarantees: a locker removed (or may have
    /// removed) grants it relies on, while it was held or being acquired. From then on the holder may still
    /// believe it valid until it learns `Lost`, but the checkers of mutual exclusion and of the fenced
    /// register no longer count it: force-unlock is documented to break the guarantees of what it removes.
    pub voided: Option<u64>,
}

impl HoldRecord {
    /// Whether the holder believes the lock valid at true time `t`.
    pub fn valid_at(&self, t: u64) -> bool {
        self.intervals.iter().any(|&(s, e)| s <= t && t < e)
    }

    /// Whether the lock's guarantees hold at `t`: believed valid and not voided by a force-unlock.
    pub fn trusted_at(&self, t: u64) -> bool {
        self.valid_at(t) && self.voided.is_none_or(|v| t < v)
    }

    /// The belief intervals during which the guarantees hold (cut at `voided`), non-empty ones only.
    pub fn trusted_intervals(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let cut = self.voided.unwrap_or(u64::MAX);
        self.intervals.iter().map(move |&(s, e)| (s, e.min(cut))).filter(|(s, e)| s < e)
    }

    /// When the belief first began (if it ever did for a non-empty interval).
    pub fn first_start(&self) -> Option<u64> {
        self.intervals.iter().find(|(s, e)| s < e).map(|&(s, _)| s)
    }

    /// A short label for reports.
    pub fn label(&self) -> String {
        format!("node{}#{}/lock{} {:?} token={}", self.node, self.inc, self.lock, self.mode, self.token)
    }
}

/// Whether two modes conflict (anything with a writer).
pub fn conflicts(a: Mode, b: Mode) -> bool {
    a == Mode::Write || b == Mode::Write
}

/// What went wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// Two conflicting holders believed their locks valid at the same true instant.
    Exclusion,
    /// A later conflicting write lock got a token not above an earlier one.
    TokenOrder,
    /// The fenced register rejected a write from a holder whose lock was valid when it landed.
    FencedWriteRejected,
    /// A request did not resolve by its deadline, or an uncontended one failed after healing.
    Liveness,
    /// A locker still held grants after the workload stopped and leases ran out.
    Leak,
    /// A coordinator received a grant for an attempt it had given up and never released it.
    LateGrantKept,
    /// A holder query disagreed with the truth in a quiescent moment.
    HolderQuery,
    /// Application code the simulator ran for a user (a stack scenario's app) panicked: one of its own
    /// assertions failed, or a call it relied on misbehaved.
    Application,
    /// A holder whose lock a force-unlock voided still believed it a few network latencies after every
    /// locker had answered the administrator, though nothing disturbed the network around it (PROTOCOL.md
    /// §6.8: the lockers tell the holder at once).
    Revocation,
}

impl Kind {
    /// Whether this property rests on the clock-drift bound, so that a run whose clocks actually left the
    /// bound may break it without a protocol bug: mutual exclusion in true time (lockers expire grants and
    /// holders trust them by their own clocks), and so a fenced write rejected while its holder trusted its
    /// lock. Token order (lockers' marks and floors, no clocks), leaks, late grants kept and holder queries
    /// do not; nor does liveness, which the checker judges in true time with deadlines drawn within the
    /// bound; nor does revocation, a matter of messages and their latencies in true time (a holder loses on
    /// a `Revoked` or a refresh round it starts at once, whatever its clock says).
    pub fn depends_on_drift_bound(self) -> bool {
        matches!(self, Kind::Exclusion | Kind::FencedWriteRejected)
    }
}

/// One violation, at a true time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Which checker.
    pub kind: Kind,
    /// True time, nanoseconds.
    pub at: u64,
    /// What exactly.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} at {:.6}s: {}", self.kind, self.at as f64 / 1e9, self.detail)
    }
}
