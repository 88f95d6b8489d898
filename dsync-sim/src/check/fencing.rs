//! Fencing: conflicting write locks carry tokens in grant order, and the fenced register (a store that
//! rejects tokens below the highest it accepted) never rejects a holder whose lock was valid when its
//! write landed.

use super::{HoldRecord, Kind, Violation};

/// Per resource, the write locks in order of when their belief began must have strictly increasing
/// tokens (a later writer's quorum met every earlier writer's at some locker, which refuses proposals not
/// above its mark). A lock voided by a force-unlock before it was acquired is left out: the command may
/// have removed grants its quorum counted, so its token carries no order guarantee.
pub fn check_token_order(holds: &[HoldRecord], names: &[String], cap: usize) -> Vec<Violation> {
    let mut per_res: Vec<Vec<(u64, usize)>> = vec![Vec::new(); names.len()];
    for (h, rec) in holds.iter().enumerate() {
        if rec.mode == dsync_core::Mode::Write {
            if let Some(s) = rec.first_start().filter(|&s| rec.voided.is_none_or(|v| v > s)) {
                for &r in &rec.res {
                    per_res[r as usize].push((s, h));
                }
            }
        }
    }
    let mut out = Vec::new();
    for (r, mut ws) in per_res.into_iter().enumerate() {
        ws.sort_unstable();
        let mut best: Option<usize> = None;
        for (s, h) in ws {
            if let Some(b) = best {
                if holds[h].token <= holds[b].token {
                    out.push(Violation {
                        kind: Kind::TokenOrder,
                        at: s,
                        detail: format!(
                            "resource {}: {} acquired after {} with a token not above it",
                            names[r],
                            holds[h].label(),
                            holds[b].label()
                        ),
                    });
                    if out.len() >= cap {
                        return out;
                    }
                }
            }
            if best.is_none_or(|b| holds[h].token > holds[b].token) {
                best = Some(h);
            }
        }
    }
    out
}

/// The fenced register of one resource.
#[derive(Clone, Debug, Default)]
pub struct Register {
    /// Highest token accepted.
    pub max: u64,
    /// The hold that wrote it.
    pub by: Option<usize>,
    /// Writes accepted.
    pub accepted: u64,
    /// Writes rejected.
    pub rejected: u64,
}

impl Register {
    /// Applies a write with `token` from hold `h`; returns whether it was accepted. Equal tokens are
    /// accepted: a holder writes several times under one token.
    pub fn write(&mut self, token: u64, h: usize) -> bool {
        if token >= self.max {
            self.max = token;
            self.by = Some(h);
            self.accepted += 1;
            true
        } else {
            self.rejected += 1;
            false
        }
    }
}
