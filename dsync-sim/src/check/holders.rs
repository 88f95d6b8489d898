//! Holder queries agree with the truth in quiescent moments: after healing, while the probe locks are
//! held and nothing else contends for them, a query lists exactly those holders with their tokens.

use super::{Kind, Violation};
use dsync_core::HolderEntry;
use std::collections::BTreeSet;

/// Compares the `entries` of a holder query, restricted to resources for which `in_scope` is true,
/// against `truth` = the set of (resource, owner, token) actually held there.
pub fn check(
    at: u64,
    entries: &[HolderEntry],
    in_scope: impl Fn(&str) -> bool,
    truth: &BTreeSet<(String, usize, u64)>,
) -> Vec<Violation> {
    let seen: BTreeSet<(String, usize, u64)> =
        entries.iter().filter(|e| in_scope(&e.resource)).map(|e| (e.resource.clone(), e.owner, e.token)).collect();
    let mut out = Vec::new();
    for missing in truth.difference(&seen) {
        out.push(Violation { kind: Kind::HolderQuery, at, detail: format!("query missed holder {missing:?}") });
    }
    for extra in seen.difference(truth) {
        out.push(Violation { kind: Kind::HolderQuery, at, detail: format!("query reported non-holder {extra:?}") });
    }
    out
}
