//! Mutual exclusion in true time: no two conflicting holders (write/write or write/read) on a shared
//! resource may believe their locks valid at the same true instant. A lock voided by a force-unlock
//! counts only until it was voided ([`HoldRecord::trusted_intervals`]).

use super::{conflicts, HoldRecord, Kind, Violation};

/// Sweeps each resource's belief intervals in start order and reports overlapping conflicting pairs
/// (at most `cap` of them).
pub fn check(holds: &[HoldRecord], names: &[String], cap: usize) -> Vec<Violation> {
    let mut per_res: Vec<Vec<(u64, u64, usize)>> = vec![Vec::new(); names.len()];
    for (h, rec) in holds.iter().enumerate() {
        for (s, e) in rec.trusted_intervals() {
            for &r in &rec.res {
                per_res[r as usize].push((s, e, h));
            }
        }
    }
    let mut out = Vec::new();
    for (r, mut iv) in per_res.into_iter().enumerate() {
        iv.sort_unstable();
        let mut active: Vec<(u64, u64, usize)> = Vec::new();
        for (s, e, h) in iv {
            active.retain(|a| a.1 > s);
            for a in &active {
                let (x, y) = (&holds[a.2], &holds[h]);
                if a.2 != h && conflicts(x.mode, y.mode) {
                    out.push(Violation {
                        kind: Kind::Exclusion,
                        at: s,
                        detail: format!(
                            "resource {}: {} believed valid during [{:.6}s, {:.6}s) and {} during [{:.6}s, {:.6}s)",
                            names[r],
                            x.label(),
                            a.0 as f64 / 1e9,
                            a.1 as f64 / 1e9,
                            y.label(),
                            s as f64 / 1e9,
                            e as f64 / 1e9
                        ),
                    });
                    if out.len() >= cap {
                        return out;
                    }
                }
            }
            active.push((s, e, h));
        }
    }
    out
}
