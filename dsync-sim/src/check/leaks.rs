//! No leaks: once the workload has stopped, everything was released and leases had time to run out,
//! every locker table is empty; and a coordinator releases every grant that arrives for an attempt it
//! gave up (otherwise that grant blocks others until it expires).

use super::{Kind, Violation};
use std::collections::BTreeMap;

/// A grant a coordinator received and owes a release for: `(owner, locker, uid)` → true time received.
///
/// The debt is paid when the owner sends `Unlock{uid}` to the locker after receiving the grant, and is
/// forgiven when the owner or the locker crashes, when the owner is told the locker is down (it cannot
/// send), or when the locker answers a refresh with "not held".
#[derive(Clone, Debug, Default)]
pub struct OwedReleases(BTreeMap<(usize, usize, u64), u64>);

impl OwedReleases {
    /// `owner` received a grant for `uid` from `locker` at true time `at`.
    pub fn granted(&mut self, owner: usize, locker: usize, uid: u64, at: u64) {
        self.0.insert((owner, locker, uid), at);
    }

    /// `owner` sent an unlock for `uid` to `locker`, or learned it is not held there.
    pub fn released(&mut self, owner: usize, locker: usize, uid: u64) {
        self.0.remove(&(owner, locker, uid));
    }

    /// Forgets every debt involving `node` (it crashed).
    pub fn forget_node(&mut self, node: usize) {
        self.0.retain(|&(o, l, _), _| o != node && l != node);
    }

    /// Forgets what `owner` owes `locker` (the owner was told the locker is down).
    pub fn forget_pair(&mut self, owner: usize, locker: usize) {
        self.0.retain(|&(o, l, _), _| !(o == owner && l == locker));
    }

    /// Every unpaid debt, as violations.
    pub fn check(&self, cap: usize) -> Vec<Violation> {
        self.0
            .iter()
            .take(cap)
            .map(|(&(o, l, uid), &at)| Violation {
                kind: Kind::LateGrantKept,
                at,
                detail: format!("node {o} received a grant from node {l} for attempt {uid} and never released it"),
            })
            .collect()
    }
}

/// A non-empty locker table at the end of the run.
pub fn table_violation(node: usize, at: u64, grants: &[dsync_core::wire::WireEntry]) -> Violation {
    let shown: Vec<String> = grants
        .iter()
        .take(4)
        .map(|g| format!("{}:{:?}:owner{}:uid{}:age{}ms", g.resource, g.mode, g.owner, g.uid, g.age_ms))
        .collect();
    Violation {
        kind: Kind::Leak,
        at,
        detail: format!("node {node} still holds {} grant(s) after quiescence: {}", grants.len(), shown.join(", ")),
    }
}
