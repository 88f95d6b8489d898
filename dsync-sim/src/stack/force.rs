//! Force-unlocks in the stack workload (PROTOCOL.md §6.8): an administrator on some node calls
//! `Node::force_unlock_report` on the resource of the oldest hold still believed, and the checkers judge
//! what follows.
//!
//! A force-unlock voids guarantees, so the checkers must know which holds it voided:
//! - a hold open when the command was issued is voided from that moment;
//! - a hold that *begins* while a `ForceUnlock` may still reach a locker is voided from its start — a
//!   locker may remove its grant after it was counted. That window ends one second after the command
//!   returned when every node answered and no held link could keep a copy of it back; otherwise (a node did
//!   not answer, the command never returned, or segments were held around it) a second after healing,
//!   when every message the command sent has arrived or is lost.
//!
//! Voided holds are cut from the exclusion check at that moment, their rejected fenced writes are expected,
//! and their token order is not judged. What *is* judged is the revocation's timeliness
//! ([`crate::check::revocation`]): when every node answered and nothing disturbed the network from a few
//! seconds before the command to the deadline, a voided holder must see `lost()` within three of the
//! network's worst one-way latencies of the command's return (the `Revoked` in, a refresh out and back).

use super::app::{now, sleep_until, AppCtx};
use super::plan::{Fault, Plan, MS, S};
use super::record::Record;
use crate::check::revocation::{self, Bounds, Disturbances, ForceRecord};
use crate::check::{HoldRecord, Violation};
use dsync_core::ForceTarget;

/// How long after its window a force-unlock's messages may still be on their way: above the largest
/// latency a seed draws (200 ms), with room for the engine's reconnect backoff.
const VOID_TAIL: u64 = S;
/// How far before a command a fault still disturbs it: reconnect backoff (250 ms), an attempt (300 ms), a
/// query (500 ms) and a rejoin, with room to spare.
const LOOKBACK: u64 = 3 * S;
/// A force-unlock's own bound as a call: the nodes' query timeout and slack.
const CALL_BOUND: u64 = 1500 * MS;

/// One force-unlock and what became of it.
#[derive(Clone, Debug)]
pub struct Force {
    /// The administrator's node and incarnation.
    pub admin: usize,
    /// Its incarnation.
    pub inc: u32,
    /// The resource id.
    pub res: u32,
    /// True time it was issued.
    pub at: u64,
    /// True time it returned, and whether every node answered.
    pub returned: Option<(u64, bool)>,
    /// Holds open on the resource when it was issued.
    pub holds: Vec<usize>,
    /// Holds that begin on the resource before this true time are voided from their start.
    pub void_until: u64,
}

/// The administrator on `ctx`'s node: at true time `at`, force-unlocks the resource of the oldest hold then
/// believed (any node's; a random workload resource when none is).
pub async fn admin(ctx: AppCtx, at: u64) {
    sleep_until(at).await;
    let t = now();
    let (res, f) = {
        let mut r = ctx.rec.lock();
        let oldest = r.holds.iter().filter(|h| h.end.is_none() && h.lost_at.is_none()).min_by_key(|h| h.start);
        let res = oldest.map(|h| h.res[0]).unwrap_or((at / MS % ctx.plan.resources as u64) as u32);
        let holds: Vec<usize> =
            (0..r.holds.len()).filter(|&h| r.holds[h].end.is_none() && r.holds[h].res.contains(&res)).collect();
        for &h in &holds {
            r.holds[h].voided.get_or_insert(t);
        }
        let void_until = ctx.plan.heal_at.max(t) + VOID_TAIL;
        r.forces.push(Force { admin: ctx.id, inc: ctx.inc, res, at: t, returned: None, holds, void_until });
        (res, r.forces.len() - 1)
    };
    let name = ctx.rec.lock().names[res as usize].clone();
    ctx.rec.event(t, ctx.id, usize::MAX, "force", &[res as u64], || format!("force-unlock {name}"));
    let c = ctx.rec.call("force_unlock_report()", ctx.id, ctx.inc, t, Some(CALL_BOUND));
    let got = ctx.node.force_unlock_report(ForceTarget::Resource(name)).await;
    let back = now();
    ctx.rec.returned(c, back);
    let all = got.as_ref().is_ok_and(|rep| rep.answered.len() == ctx.plan.nodes);
    {
        let mut r = ctx.rec.lock();
        let held_around = ctx.plan.faults.iter().any(|(s, fault)| match fault {
            Fault::Hold { until, .. } | Fault::HoldLinks { until, .. } | Fault::Stall { until, .. } => {
                *s <= back + VOID_TAIL && *until >= t
            }
            _ => false,
        });
        let fr = &mut r.forces[f];
        fr.returned = Some((back, all));
        if all && !held_around {
            fr.void_until = fr.void_until.min(back + VOID_TAIL);
        }
    }
    let (removed, answered) = match &got {
        Ok(rep) => (rep.removed as u64, rep.answered.len() as u64),
        Err(_) => (u64::MAX, 0),
    };
    ctx.rec.event(back, ctx.id, usize::MAX, "forced", &[removed, answered], || format!("{got:?}"));
}

/// Called as hold `h` begins: voids it from its start if a force-unlock of one of its resources may still
/// remove a grant.
pub(crate) fn void_on_begin(r: &mut Record, h: usize) {
    let hold = &r.holds[h];
    let forced = r.forces.iter().any(|f| hold.res.contains(&f.res) && f.at <= hold.start && hold.start < f.void_until);
    if forced {
        let start = hold.start;
        r.holds[h].voided.get_or_insert(start);
    }
}

/// The revocation checker over the run's force-unlocks: only those every node answered, in windows the plan
/// left quiet (no fault of any kind from [`LOOKBACK`] before the command to its deadline).
pub fn check(rec: &Record, holds: &[HoldRecord], plan: &Plan, cap: usize) -> Vec<Violation> {
    let forces: Vec<ForceRecord> = rec
        .forces
        .iter()
        .map(|f| {
            let replied = match f.returned {
                Some((t, true)) => vec![Some(t); plan.nodes],
                _ => vec![None],
            };
            ForceRecord {
                admin: f.admin,
                inc: f.inc,
                qid: 0,
                resource: rec.names[f.res as usize].clone(),
                at: f.at,
                replied,
                holds: f.holds.clone(),
            }
        })
        .collect();
    // Every fault disturbs every node: the stack does not trace single messages, so it judges only windows
    // with no fault at all. A latency change lasts until the next one or healing: to healing, to be safe.
    let mut d = Disturbances::new(plan.nodes);
    for (at, fault) in &plan.faults {
        let span = match fault {
            Fault::Hold { until, .. } | Fault::OneWay { until, .. } => (*at, *until),
            Fault::HoldLinks { until, .. } | Fault::Stall { until, .. } => (*at, *until),
            Fault::Crash { restart, .. } => (*at, *restart),
            Fault::Reset { .. } => (*at, *at),
            Fault::Latency { .. } => (*at, plan.heal_at),
        };
        d.partitions.push(span);
    }
    // Turmoil delivers on millisecond ticks: a latency rounds up by one.
    let bounds = Bounds { lat: plan.latency.1 + MS, slow: None, fault_lookback: LOOKBACK, message_lookback: LOOKBACK };
    revocation::check(&forces, holds, &d, &bounds, cap)
}
