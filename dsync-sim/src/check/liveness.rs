//! Liveness after healing: every probe request resolves by its deadline, and uncontended ones succeed.

use super::{Kind, Violation};

/// A request issued in the healed phase, and how it ended.
#[derive(Clone, Debug)]
pub struct Probe {
    /// The requesting node.
    pub node: usize,
    /// Whether it names a resource nobody else asks for.
    pub uncontended: bool,
    /// Its deadline on the node's clock.
    pub deadline_local: u64,
    /// When it resolved, on the node's clock, and whether it was acquired.
    pub resolved: Option<(u64, bool)>,
    /// True time it was issued.
    pub at: u64,
}

/// Checks every probe.
pub fn check(probes: &[Probe]) -> Vec<Violation> {
    let mut out = Vec::new();
    for p in probes {
        let what = if p.uncontended { "uncontended" } else { "contended" };
        match p.resolved {
            None => out.push(Violation {
                kind: Kind::Liveness,
                at: p.at,
                detail: format!("{what} request of node {} after healing never resolved", p.node),
            }),
            // A clock faster than true time moves more than 1 ns per true ns, so the first true instant at
            // which the deadline timer fires may read a few ns past it.
            Some((when, _)) if when > p.deadline_local + 1_000 => out.push(Violation {
                kind: Kind::Liveness,
                at: p.at,
                detail: format!(
                    "{what} request of node {} resolved {:.3}ms after its deadline",
                    p.node,
                    (when - p.deadline_local) as f64 / 1e6
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
