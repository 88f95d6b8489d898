//! The fenced register: the storage the locks protect. It lives outside every host (a crash does not touch
//! it) and rejects a write whose fencing token is below the highest it accepted — the check that makes a
//! holder who paused past its lease harmless. A write it rejects while the writer's guard had not
//! signalled `lost()` is a violation: the library promised that token was still the newest — unless a
//! force-unlock voided the lock's guarantees ([`super::force`]).

use super::record::Recorder;
use crate::check::fencing::Register;
use crate::check::Kind;

/// One [`Register`] per resource (the core simulator's, so both judge writes the same way).
#[derive(Clone, Debug, Default)]
pub struct FencedStore {
    regs: Vec<Register>,
}

impl FencedStore {
    /// Adds a register for a new resource id.
    pub fn add(&mut self) {
        self.regs.push(Register::default());
    }

    /// The register of resource `id`.
    pub fn get(&self, id: u32) -> Option<&Register> {
        self.regs.get(id as usize)
    }

    /// Writes accepted and rejected, over every register.
    pub fn totals(&self) -> (u64, u64) {
        self.regs.iter().fold((0, 0), |(a, r), g| (a + g.accepted, r + g.rejected))
    }
}

/// Hold `h` writes to each of its resources with its token at true time `at` (a read-modify-write: the
/// value is the token, so the register is its own witness). Returns whether every write was accepted.
pub fn write(rec: &Recorder, h: usize, at: u64) -> bool {
    let mut rejected = Vec::new();
    let mut all_accepted = true;
    let (node, app, token) = {
        let mut r = rec.lock();
        let hold = r.holds[h].clone();
        // A lock a force-unlock voided carries no guarantee: its rejected writes are expected.
        let trusted = hold.lost_at.is_none() && hold.end.is_none() && hold.voided.is_none_or(|v| at < v);
        for &res in &hold.res {
            let reg = &mut r.store.regs[res as usize];
            let (prev, by) = (reg.max, reg.by);
            let accepted = reg.write(hold.token, h);
            all_accepted &= accepted;
            // Rejecting a holder that was told `lost()` is the register doing its job; otherwise a violation.
            if !accepted && trusted {
                rejected.push((res, prev, by));
            }
        }
        for (res, prev, by) in &rejected {
            let other = by.map(|b| label(&r.holds[b], b)).unwrap_or_default();
            let detail = format!(
                "register {}: write of {} (lost() not signalled) rejected; {other} already wrote token {prev}",
                r.names[*res as usize],
                label(&hold, h)
            );
            r.violations.push(crate::check::Violation { kind: Kind::FencedWriteRejected, at, detail });
        }
        (hold.node, hold.app, hold.token)
    };
    let ok = all_accepted;
    rec.event(at, node, app, "write", &[h as u64, token, ok as u64], || format!("hold {h} token {token} ok={ok}"));
    ok
}

/// A hold's label in reports (the checkers' wording: `node<i>#<inc>/lock<h> <mode> token=<t>`).
pub fn label(h: &super::record::Hold, id: usize) -> String {
    format!("node{}#{}/lock{id} {:?} token={}", h.node, h.inc, h.mode, h.token)
}
