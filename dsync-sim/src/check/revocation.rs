//! Revocation (PROTOCOL.md §6.8): a holder whose lock a force-unlock voided stops believing it within a few
//! network latencies of the administrator's last answer, when nothing disturbed the network around it.
//!
//! The check is deliberately conservative, so that a correct run never trips it: it looks only at
//! force-unlocks that every locker answered (so every locker removed its grants and sent its `Revoked` no
//! later than its answer reached the administrator, at `T`), at holds that were held well before the
//! command (their requests and any duplicates had long arrived), and only when the window from before the
//! command to `T` plus the bound was quiet around the holder: no crash, restart or pause of it, no
//! partition, no clog of its links, and no message to or from it lost, blocked, held, or slower than the
//! network's usual latency (a locker's pause or crash shows there too, as its messages to the holder). Then
//! every `Revoked` reaches the holder within one latency of `T`, and a re-check of the grantors it may still
//! count takes one round trip more: the bound is three of the holder's worst usual one-way latencies plus
//! a little. A holder that ignores `Revoked` learns only at its next refresh, far later.

use super::{HoldRecord, Kind, Violation};

/// One force-unlock an administrator issued, and what became of it.
#[derive(Clone, Debug)]
pub struct ForceRecord {
    /// The administrator's node.
    pub admin: usize,
    /// Its incarnation then.
    pub inc: u32,
    /// The command's query id.
    pub qid: u64,
    /// The resource's name (for reports).
    pub resource: String,
    /// True time it was issued.
    pub at: u64,
    /// Per locker, when its answer reached the administrator (the administrator's own locker answers at once).
    pub replied: Vec<Option<u64>>,
    /// The holds on the resource that were held when it was issued.
    pub holds: Vec<usize>,
}

impl ForceRecord {
    /// When the last locker's answer reached the administrator, if every locker answered.
    pub fn all_replied(&self) -> Option<u64> {
        self.replied.iter().try_fold(0, |m, r| r.map(|t| m.max(t)))
    }
}

/// What disturbed the run when, as the world saw it, per node: its crashes, restarts and pauses, clogs of its
/// links, partitions (every node has links across a cut), and its messages — sent or received — that were
/// lost, blocked, held, or slower than usual. All as `[from, to]` true-time intervals.
#[derive(Clone, Debug, Default)]
pub struct Disturbances {
    /// Per node, crashes, restarts, pauses and clogs of its links (an instant when `from == to`).
    pub faults: Vec<Vec<(u64, u64)>>,
    /// Partitions, closed ones.
    pub partitions: Vec<(u64, u64)>,
    /// Per node, messages it sent or was sent that were lost, blocked, held, or slower than usual.
    pub messages: Vec<Vec<(u64, u64)>>,
    /// An open partition's start.
    partition_since: Option<u64>,
    /// Clogged links, with when each was clogged.
    clogs: Vec<((usize, usize), u64)>,
}

impl Disturbances {
    /// No disturbance yet, for `n` nodes.
    pub fn new(n: usize) -> Self {
        Disturbances { faults: vec![Vec::new(); n], messages: vec![Vec::new(); n], ..Default::default() }
    }

    /// A fault of `node` over `[from, to]` (an instant when equal).
    pub fn fault(&mut self, node: usize, from: u64, to: u64) {
        if let Some(v) = self.faults.get_mut(node) {
            v.push((from, to));
        }
    }

    /// A partition starts at `at` (one may already be on).
    pub fn partition(&mut self, at: u64) {
        self.partition_since.get_or_insert(at);
    }

    /// Every partition ends at `at`.
    pub fn partitions_healed(&mut self, at: u64) {
        if let Some(s) = self.partition_since.take() {
            self.partitions.push((s, at));
        }
    }

    /// The link `from → to` clogs at `at`.
    pub fn clog(&mut self, from: usize, to: usize, at: u64) {
        if !self.clogs.iter().any(|(l, _)| *l == (from, to)) {
            self.clogs.push(((from, to), at));
        }
    }

    /// The link `from → to` flows again at `at`.
    pub fn unclog(&mut self, from: usize, to: usize, at: u64) {
        if let Some(i) = self.clogs.iter().position(|(l, _)| *l == (from, to)) {
            let (_, s) = self.clogs.swap_remove(i);
            self.fault(from, s, at);
            self.fault(to, s, at);
        }
    }

    /// The heal phase at `at`: every partition and clog ends.
    pub fn heal_all(&mut self, at: u64) {
        self.partitions_healed(at);
        for ((from, to), s) in std::mem::take(&mut self.clogs) {
            self.fault(from, s, at);
            self.fault(to, s, at);
        }
    }

    /// A message between `a` and `b` sent at `sent` did not arrive promptly (seen at `at`).
    pub fn message(&mut self, a: usize, b: usize, sent: u64, at: u64) {
        for n in [a, b] {
            if let Some(v) = self.messages.get_mut(n) {
                v.push((sent, at));
            }
        }
    }

    /// Whether nothing disturbed `node` during `[from, to]`: no fault of it or partition since `fault_from`,
    /// no clog of its links still on, and none of its messages disturbed.
    pub fn quiet(&self, node: usize, fault_from: u64, from: u64, to: u64) -> bool {
        let overlaps = |&(s, e): &(u64, u64), lo: u64| s <= to && e >= lo;
        let open_partition = self.partition_since.is_some_and(|s| s <= to);
        let open_clog = self.clogs.iter().any(|&((a, b), s)| (a == node || b == node) && s <= to);
        !open_partition
            && !open_clog
            && !self.partitions.iter().any(|p| overlaps(p, fault_from))
            && !self.faults[node].iter().any(|f| overlaps(f, fault_from))
            && !self.messages[node].iter().any(|m| overlaps(m, from))
    }
}

/// The timing of the check, from the seed's network and lease.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    /// Typical (largest usual) one-way latency, nanoseconds.
    pub lat: u64,
    /// Extra latency of the links into the slow node, nanoseconds, and which node that is.
    pub slow: Option<(usize, u64)>,
    /// How far before the command the holder's faults and partitions count (the failure detector's delay
    /// and an attempt timeout: what they left in flight — a peer believed down, a round waiting — is over).
    pub fault_lookback: u64,
    /// How far before the command disturbed messages count (an attempt timeout and more).
    pub message_lookback: u64,
}

impl Bounds {
    /// The slowest usual one-way latency into `node`, and out of it.
    fn worst(&self, node: usize) -> (u64, u64) {
        match self.slow {
            Some((s, extra)) if s == node => (self.lat + extra, self.lat + extra),
            Some((_, extra)) => (self.lat, self.lat + extra),
            None => (self.lat, self.lat),
        }
    }

    /// How long after the last answer reached the administrator the holder on `node` may still believe: the
    /// `Revoked` in, and a refresh round out and back, plus a millisecond of slack.
    pub fn bound(&self, node: usize) -> u64 {
        let (into, out) = self.worst(node);
        2 * into + out + 1_000_000
    }
}

/// Flags every hold a force-unlock voided that its holder still believed more than the bound after the last
/// locker's answer reached the administrator, in a quiet window (at most `cap` violations).
pub fn check(forces: &[ForceRecord], holds: &[HoldRecord], d: &Disturbances, b: &Bounds, cap: usize) -> Vec<Violation> {
    let mut out = Vec::new();
    for f in forces {
        let Some(t) = f.all_replied() else { continue };
        for &h in &f.holds {
            let rec = &holds[h];
            let bound = b.bound(rec.node);
            let deadline = t + bound;
            // Held well before the command: its requests (and any duplicates of them) had all arrived.
            if rec.voided.is_none() || rec.first_start().is_none_or(|s| s + bound > f.at) {
                continue;
            }
            let fault_from = f.at.saturating_sub(b.fault_lookback);
            let from = f.at.saturating_sub(b.message_lookback);
            if !d.quiet(rec.node, fault_from, from, deadline) {
                continue;
            }
            if let Some(&(_, end)) = rec.intervals.iter().find(|&&(s, e)| s < e && e > deadline) {
                out.push(Violation {
                    kind: Kind::Revocation,
                    at: deadline,
                    detail: format!(
                        "{} still believed its lock until {:.6}s after node {} force-unlocked {:?} at {:.6}s; every \
                         locker had answered by {:.6}s (bound {:.3}ms, network quiet)",
                        rec.label(),
                        end as f64 / 1e9,
                        f.admin,
                        f.resource,
                        f.at as f64 / 1e9,
                        t as f64 / 1e9,
                        bound as f64 / 1e6
                    ),
                });
                if out.len() >= cap {
                    return out;
                }
            }
        }
    }
    out
}
