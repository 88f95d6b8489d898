//! Force-unlocks in the stack workload (PROTOCOL.md §6.8): an administrator on some node calls
//! `Node::force_unlock_report` on the resource of the oldest hold still believed, and the checkers judge
//! what follows.
//!
//! A force-unlock voids guarantees, so the checkers must know which holds it voided:
//! - a hold open when the command was issued is voided from that moment;
//! - a hold that *begins* while a `ForceUnlock` may still remove a grant it counts is voided from its start.
//!   The command goes out once, when issued (the engine drops what it cannot send), so every copy has
//!   arrived or is lost by the time the command returns — unless a held link or a stall kept one back,
//!   until that fault's end. The window ends a second (`VOID_TAIL`) after the later of the two (after healing if the
//!   command never returned, its node having crashed).
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
use dsync_tokio::{ForceReport, LockError};

/// How long after the last possible removal an acquisition that counted a removed grant may still
/// complete: an attempt (300 ms) and a reply's latency (at most 200 ms a seed draws), with room to spare.
const VOID_TAIL: u64 = S;
const _: () = assert!(VOID_TAIL > super::ATTEMPT_TIMEOUT.as_nanos() as u64 + 200 * MS);
/// How far before a command a fault still disturbs it: reconnect backoff (250 ms), an attempt (300 ms), a
/// query (500 ms) and a rejoin, with room to spare.
const LOOKBACK: u64 = 3 * S;
/// A force-unlock's own bound as a call: the nodes' query timeout and slack.
const CALL_BOUND: u64 = 1500 * MS;

/// One force-unlock and what became of it.
#[derive(Clone, Debug)]
pub struct Force {
    /// The administrator's node.
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
/// believed on a workload resource (any node's; a random one when none is). Resources of a staged episode
/// ([`super::race`]) are left alone: voiding them would hide what the episode is there to show.
pub async fn admin(ctx: AppCtx, at: u64) {
    sleep_until(at).await;
    let res = {
        let r = ctx.rec.lock();
        // The workload's resources are interned first (`r0`, `r1`, ...), so their ids are below `resources`.
        let workload = |id: &&u32| (**id as usize) < ctx.plan.resources;
        let oldest = r
            .holds
            .iter()
            .filter(|h| h.end.is_none() && h.lost_at.is_none())
            .filter_map(|h| h.res.iter().find(workload).map(|&id| (h.start, id)))
            .min();
        oldest.map(|(_, id)| id).unwrap_or((at / MS % ctx.plan.resources as u64) as u32)
    };
    let _ = issue(&ctx, res).await;
}

/// Force-unlocks resource `res` from `ctx`'s node through `Node::force_unlock_report`, recording what the
/// checkers need: the holds it voids, when it returned and whether every node answered.
pub(crate) async fn issue(ctx: &AppCtx, res: u32) -> Result<ForceReport, LockError> {
    let t = now();
    let (f, name) = {
        let mut r = ctx.rec.lock();
        let holds: Vec<usize> =
            (0..r.holds.len()).filter(|&h| r.holds[h].end.is_none() && r.holds[h].res.contains(&res)).collect();
        for &h in &holds {
            r.holds[h].voided.get_or_insert(t);
        }
        let void_until = ctx.plan.heal_at.max(t) + VOID_TAIL;
        r.forces.push(Force { admin: ctx.id, inc: ctx.inc, res, at: t, returned: None, holds, void_until });
        (r.forces.len() - 1, r.names[res as usize].clone())
    };
    ctx.rec.event(t, ctx.id, usize::MAX, "force", &[res as u64], || format!("force-unlock {name}"));
    let c = ctx.rec.call("force_unlock_report()", ctx.id, ctx.inc, t, Some(CALL_BOUND));
    let got = ctx.node.force_unlock_report(ForceTarget::Resource(name)).await;
    let back = now();
    ctx.rec.returned(c, back);
    let all = got.as_ref().is_ok_and(|rep| rep.answered.len() == ctx.plan.nodes);
    {
        let mut r = ctx.rec.lock();
        // The latest end of a fault that could keep a copy of the command back (it went out at `t`).
        let held_until = ctx
            .plan
            .faults
            .iter()
            .filter_map(|(s, fault)| match fault {
                Fault::Hold { until, .. } | Fault::HoldLinks { until, .. } | Fault::Stall { until, .. } => {
                    (*s <= back + VOID_TAIL && *until >= t).then_some(*until)
                }
                _ => None,
            })
            .max()
            .unwrap_or(0);
        let fr = &mut r.forces[f];
        fr.returned = Some((back, all));
        fr.void_until = back.max(held_until) + VOID_TAIL;
    }
    let (removed, answered) = match &got {
        Ok(rep) => (rep.removed as u64, rep.answered.len() as u64),
        Err(_) => (u64::MAX, 0),
    };
    ctx.rec.event(back, ctx.id, usize::MAX, "forced", &[removed, answered], || format!("{got:?}"));
    got
}

/// Called as hold `h` is recorded: voids it if a force-unlock of one of its resources may still remove a
/// grant it counts. Every force-unlock already recorded counts, whatever its time: within one simulated
/// tick, turmoil runs the hosts one after the other, each on its own clock, so a hold recorded after the
/// command may carry an earlier time — it was open when the command went out, and is voided from then.
pub(crate) fn void_on_begin(r: &mut Record, h: usize) {
    let (start, res) = (r.holds[h].start, r.holds[h].res.clone());
    for f in r.forces.iter_mut().filter(|f| res.contains(&f.res) && start < f.void_until) {
        if start < f.at {
            f.holds.push(h);
        }
        let from = start.max(f.at);
        let v = r.holds[h].voided.get_or_insert(from);
        *v = (*v).min(from);
    }
}

/// The revocation checker over the run's force-unlocks: only those every node answered, in windows the plan
/// left quiet (no fault of any kind from 3 s (`LOOKBACK`) before the command to its deadline).
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
    // with no fault at all.
    let mut d = Disturbances::new(plan.nodes);
    for (at, fault) in &plan.faults {
        let span = match fault {
            Fault::Hold { until, .. } | Fault::OneWay { until, .. } => (*at, *until),
            Fault::HoldLinks { until, .. } | Fault::Stall { until, .. } => (*at, *until),
            Fault::Crash { restart, .. } => (*at, *restart),
            Fault::Reset { .. } => (*at, *at),
            // Slower than the bound assumes until the next change, or healing.
            Fault::Latency { max } if *max > plan.latency.1 => {
                let next = plan.faults.iter().find(|(t, f)| *t > *at && matches!(f, Fault::Latency { .. }));
                (*at, next.map_or(plan.heal_at, |(t, _)| *t))
            }
            Fault::Latency { .. } => (*at, *at),
        };
        d.partitions.push(span);
    }
    // Turmoil delivers on millisecond ticks: a latency rounds up by one.
    let bounds = Bounds { lat: plan.latency.1 + MS, slow: None, fault_lookback: LOOKBACK, message_lookback: LOOKBACK };
    revocation::check(&forces, holds, &d, &bounds, cap)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::record::Hold;
    use dsync_core::Mode;

    fn hold(res: u32, start: u64) -> Hold {
        Hold {
            node: 1,
            inc: 0,
            app: 0,
            mode: Mode::Write,
            res: vec![res],
            token: 1,
            start,
            end: None,
            lost_at: None,
            voided: None,
        }
    }

    fn record_with_force(at: u64, void_until: u64) -> Record {
        let mut r = Record::default();
        let f = Force { admin: 0, inc: 0, res: 0, at, returned: None, holds: Vec::new(), void_until };
        r.forces.push(f);
        r
    }

    #[test]
    fn a_hold_recorded_after_the_command_with_an_earlier_time_is_voided_from_the_command() {
        // Another host ran earlier in the same tick: its clock is behind the administrator's.
        let mut r = record_with_force(1_000_700_000, 3 * S);
        r.holds.push(hold(0, 1_000_200_000));
        void_on_begin(&mut r, 0);
        assert_eq!(r.holds[0].voided, Some(1_000_700_000));
        assert_eq!(r.forces[0].holds, [0], "open when the command went out: its timeliness is judged too");
    }

    #[test]
    fn holds_beginning_inside_the_window_are_voided_from_their_start_and_later_ones_are_not() {
        let mut r = record_with_force(S, 3 * S);
        r.holds.push(hold(0, 2 * S));
        r.holds.push(hold(1, 2 * S));
        r.holds.push(hold(0, 3 * S));
        for h in 0..3 {
            void_on_begin(&mut r, h);
        }
        assert_eq!(r.holds.iter().map(|h| h.voided).collect::<Vec<_>>(), [Some(2 * S), None, None]);
        assert!(r.forces[0].holds.is_empty(), "none was open when the command went out");
    }
}
