//! Self-checks of one node's local invariants, for fuzzers and tests; the protocol never calls them.
//!
//! Each check reads state through the owners' crate-visible getters only, so it states what must hold
//! without reaching into how the tables are built. Checks are `O(grants · resources)`: fine for fuzzing
//! and tests, not meant for a production hot path.

use crate::config::Config;
use crate::coordinator::Coordinator;
use crate::locker::Locker;
use crate::outbox::Io;
use crate::time::Instant;
use crate::wire::WireEntry;
use crate::{Message, Mode};
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// Every local invariant of a node between inputs; the error names the first that does not hold.
pub(crate) fn check(cfg: &Config, now: Instant, locker: &Locker, coord: &Coordinator, io: &Io) -> Result<(), String> {
    check_grants(now, locker)?;
    check_outputs(cfg, io)?;
    if coord.pending_count() > cfg.limits.max_pending {
        return Err(format!("{} locks pending, limit {}", coord.pending_count(), cfg.limits.max_pending));
    }
    Ok(())
}

/// The grant table: no conflicting grants on a resource, the per-resource index agrees with the table,
/// and the fencing mark covers every write token granted.
fn check_grants(now: Instant, locker: &Locker) -> Result<(), String> {
    let (all, _) = locker.entries(now, None, usize::MAX);
    let mut by_resource: BTreeMap<&str, Vec<&WireEntry>> = BTreeMap::new();
    let mut keys: Vec<(usize, u64)> = Vec::new();
    for e in &all {
        by_resource.entry(e.resource.as_str()).or_default().push(e);
        keys.push((e.owner, e.uid));
        if e.mode == Mode::Write && e.token > locker.fencing_max() {
            return Err(format!("write grant {e:?} has a token above the fencing mark {}", locker.fencing_max()));
        }
    }
    keys.sort_unstable();
    keys.dedup();
    if keys.len() != locker.grant_count() {
        return Err(format!("{} grants listed, {} counted", keys.len(), locker.grant_count()));
    }
    for (resource, entries) in &by_resource {
        let writers = entries.iter().filter(|e| e.mode == Mode::Write).count();
        if writers > 0 && entries.len() > 1 {
            return Err(format!("conflicting grants on {resource:?}: {entries:?}"));
        }
        // The per-resource index (what conflicts are decided on) must list exactly the table's grants.
        let (indexed, _) = locker.entries(now, Some(resource), usize::MAX);
        let listed: Vec<WireEntry> = entries.iter().map(|e| (*e).clone()).collect();
        if indexed != listed {
            return Err(format!("index of {resource:?} lists {indexed:?}, the table {listed:?}"));
        }
    }
    Ok(())
}

/// Queued outputs: every transmit goes to another real node, lock requests are well-formed, and no
/// loopback message is left behind (handlers deliver them before returning).
fn check_outputs(cfg: &Config, io: &Io) -> Result<(), String> {
    if !io.loopback.is_empty() {
        return Err(format!("{} loopback messages left undelivered", io.loopback.len()));
    }
    for t in &io.transmits {
        if t.to >= cfg.nodes || t.to == cfg.id {
            return Err(format!("transmit to node {} from node {} of {}", t.to, cfg.id, cfg.nodes));
        }
        if let Message::Lock(m) = &t.message {
            let sorted = m.resources.windows(2).all(|w| w[0] < w[1]);
            if m.resources.is_empty() || !sorted || m.resources.len() > cfg.limits.max_resources_per_lock {
                return Err(format!("malformed lock request {m:?}"));
            }
        }
    }
    Ok(())
}
