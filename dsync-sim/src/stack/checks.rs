//! Turning the run's record into the checkers' inputs ([`crate::check`]) and running them: mutual exclusion
//! over the applications' belief intervals in true time, token order, the fenced register (judged while
//! running, see [`super::register`]), revocation after force-unlocks ([`super::force`]), liveness after
//! healing, and leaks at the end.

use super::plan::Plan;
use super::record::Record;
use crate::check::{self, HoldRecord, Kind, Violation};

/// At most this many violations of one kind are reported.
const CAP: usize = 16;

/// Every checker over `rec` of a run of `plan`, the run having stopped at true time `end`.
pub fn run(rec: &Record, plan: &Plan, end: u64) -> Vec<Violation> {
    let holds: Vec<HoldRecord> = rec
        .holds
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let stop = h.end.unwrap_or(end).min(h.lost_at.unwrap_or(u64::MAX));
            HoldRecord {
                node: h.node,
                inc: h.inc,
                lock: i as u64,
                mode: h.mode,
                res: h.res.clone(),
                token: h.token,
                intervals: vec![(h.start, stop.max(h.start))],
                open: h.end.is_none(),
                voided: h.voided,
            }
        })
        .collect();
    let mut out = rec.violations.clone();
    out.extend(check::exclusion::check(&holds, &rec.names, CAP));
    out.extend(check::fencing::check_token_order(&holds, &rec.names, CAP));
    out.extend(super::force::check(rec, &holds, plan, CAP));
    out.extend(check::liveness::check(&rec.probes, end));
    for c in rec.calls.iter().filter(|c| !c.crashed).take(CAP) {
        let late = match (c.resolved, c.bound) {
            (None, _) => Some("never returned".to_string()),
            (Some(t), Some(b)) if t - c.at > b => Some(format!(
                "returned after {:.3}s, beyond its bound of {:.3}s",
                (t - c.at) as f64 / 1e9,
                b as f64 / 1e9
            )),
            _ => None,
        };
        if let Some(why) = late {
            out.push(Violation {
                kind: Kind::Liveness,
                at: c.at,
                detail: format!("a {} call of node {} (incarnation {}) {why}", c.what, c.node, c.inc),
            });
        }
    }
    for (node, q) in rec.queries.iter().enumerate() {
        match q {
            None => out.push(Violation {
                kind: Kind::Liveness,
                at: end,
                detail: format!("node {node} never got to its holder query after healing"),
            }),
            Some((at, Err(e))) => out.push(Violation {
                kind: Kind::Liveness,
                at: *at,
                detail: format!("node {node}'s holder query after healing failed: {e}"),
            }),
            Some((at, Ok(entries))) if !entries.is_empty() => {
                let shown: Vec<String> = entries
                    .iter()
                    .take(4)
                    .map(|e| format!("{}:{:?}:owner{}:token{}:age{:?}", e.resource, e.mode, e.owner, e.token, e.age))
                    .collect();
                out.push(Violation {
                    kind: Kind::Leak,
                    at: *at,
                    detail: format!(
                        "node {node}'s holder query found {} grant(s) after every guard was released and two \
                         leases passed: {}",
                        entries.len(),
                        shown.join(", ")
                    ),
                });
            }
            Some(_) => {}
        }
    }
    out.sort_by_key(|v| (v.at, v.kind));
    out
}
