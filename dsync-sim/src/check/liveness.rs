//! Liveness after healing: every probe request resolves by its deadline, and uncontended ones succeed.
//!
//! Deadlines are judged in true time: a probe's deadline is on its node's clock, so it is mapped to the
//! first true instant at which that clock reads it. A probe whose deadline falls after the clients stopped
//! (only possible on a clock slower than its deadline allows before the stop) was cut short, not late.

use super::{Kind, Violation};

/// A request issued in the healed phase, and how it ended.
#[derive(Clone, Debug)]
pub struct Probe {
    /// The requesting node.
    pub node: usize,
    /// Whether it names a resource nobody else asks for.
    pub uncontended: bool,
    /// Its deadline, in true time: when the node's clock reaches the deadline it was given.
    pub deadline: u64,
    /// When it resolved, in true time, and whether it was acquired.
    pub resolved: Option<(u64, bool)>,
    /// True time it was issued.
    pub at: u64,
}

/// Checks every probe; the clients stopped (cancelling what was pending) at true time `stopped_at`.
pub fn check(probes: &[Probe], stopped_at: u64) -> Vec<Violation> {
    let mut out = Vec::new();
    for p in probes {
        let what = if p.uncontended { "uncontended" } else { "contended" };
        match p.resolved {
            None if p.deadline >= stopped_at => {} // cut short by the stop before its deadline came
            None => out.push(Violation {
                kind: Kind::Liveness,
                at: p.at,
                detail: format!("{what} request of node {} after healing never resolved", p.node),
            }),
            // The deadline timer fires at the first true instant the clock reads the deadline; a µs of slack.
            Some((when, _)) if when > p.deadline + 1_000 => out.push(Violation {
                kind: Kind::Liveness,
                at: p.at,
                detail: format!(
                    "{what} request of node {} resolved {:.3}ms after its deadline (true time)",
                    p.node,
                    (when - p.deadline) as f64 / 1e6
                ),
            }),
            Some((_, false)) if p.uncontended => out.push(Violation {
                kind: Kind::Liveness,
                at: p.at,
                detail: format!("uncontended request of node {} failed with every node up and connected", p.node),
            }),
            _ => {}
        }
    }
    out
}
