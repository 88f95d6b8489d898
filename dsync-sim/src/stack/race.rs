//! The rejoin race through the whole stack (PROTOCOL.md §6.7, step 2), as the core swarm stages it: the
//! victim `v` asks for a write lock on a resource of its own; node `x` grants it, but its grant is stalled
//! on the way back ([`super::reorder`]); the nodes outside a write quorum of `v`, `x` and some "friends" do
//! not hear the request (their links with `v` held); `x` crashes and restarts within milliseconds, reconnects
//! and rejoins — and its dead incarnation's grant reaches `v`'s driver right behind the new incarnation's
//! first messages. Then a contender `c` asks for the same resource. If `v` counted the dead grant once it had
//! answered the rejoin, `v` and `c` both hold the lock (for an odd cluster size, `c`, the new `x` and the
//! nodes outside `v`'s quorum make a write quorum).

use super::app::{attempt, hold, sleep_until, AppCtx, Style};
use super::plan::{Fault, Plan, LEASE, MS, S};
use crate::rng::Rng;
use dsync_core::quorum::write_quorum;
use dsync_core::Mode;
use std::time::Duration;

/// One staged race: who, on what, and when the two applications ask.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Race {
    /// The node whose attempt the dead grant reaches.
    pub victim: usize,
    /// The node that crashes and rejoins.
    pub x: usize,
    /// The node that asks afterwards.
    pub contender: usize,
    /// The resource, used by nothing else.
    pub resource: String,
    /// When the victim asks.
    pub ask_at: u64,
    /// When the contender asks.
    pub contend_at: u64,
    /// How long the contender holds it.
    pub contend_hold: u64,
}

/// Application index of the victim's and the contender's tasks in the record.
const VICTIM_APP: usize = 100;
const CONTENDER_APP: usize = 101;

/// With probability `prob` (and at least 3 nodes), stages one race in `plan`: its faults replace every other
/// fault near it, so that nothing else disturbs the episode.
pub fn draw(r: &mut Rng, plan: &mut Plan, prob: f64) {
    let n = plan.nodes;
    if n < 3 || !r.chance(prob) || plan.heal_at < 6 * S {
        return;
    }
    let v = r.below(n as u64) as usize;
    let others: Vec<usize> = (0..n).filter(|&i| i != v).collect();
    let x = others[r.below(others.len() as u64) as usize];
    let mut rest: Vec<usize> = others.iter().copied().filter(|&i| i != x).collect();
    let c = rest.remove(r.below(rest.len() as u64) as usize);
    let friends: Vec<usize> = rest.iter().copied().take(write_quorum(n).saturating_sub(2)).collect();
    // Those who never hear the victim's request: everyone but the victim, `x` and the friends.
    let unheard = others.iter().filter(|i| **i != x && !friends.contains(i)).fold(0u64, |m, i| m | 1 << i);
    let at = r.range(S, plan.heal_at - 5 * S);
    let crash = at + r.range(5 * MS, 20 * MS);
    let back = crash + r.range(MS, 10 * MS);
    let release = back + r.range(20 * MS, 60 * MS);
    let contend_at = release + r.range(5 * MS, 40 * MS);
    let (lo, hi, heal_at) = (at - S, release + LEASE + S, plan.heal_at);
    plan.faults.retain(|(t, f)| {
        let end = match f {
            Fault::Hold { until, .. } | Fault::OneWay { until, .. } | Fault::HoldLinks { until, .. } => *until,
            Fault::Stall { until, .. } => *until,
            Fault::Crash { restart, .. } => *restart,
            Fault::Latency { .. } => heal_at,
            Fault::Reset { .. } => *t,
        };
        end < lo || *t > hi
    });
    // The stall ends when `x`'s new connection delivers; at the latest as the victim's attempt times out.
    let stall_until = at + super::ATTEMPT_TIMEOUT.as_nanos() as u64 - 50 * MS;
    plan.faults.push((at - MS, Fault::Stall { node: v, from: x, until: stall_until }));
    plan.faults.push((at - MS, Fault::HoldLinks { node: v, peers: unheard, until: release + LEASE }));
    plan.faults.push((crash, Fault::Crash { nodes: 1 << x, restart: back, wipe: false }));
    plan.faults.sort_by_key(|f| f.0);
    plan.races.push(Race {
        victim: v,
        x,
        contender: c,
        resource: format!("race{}", at / MS),
        ask_at: at,
        contend_at,
        contend_hold: r.range(50 * MS, 300 * MS),
    });
}

/// The tasks node `ctx.id` runs for the plan's races that are still ahead (a restarted node skips those it
/// missed).
pub async fn run(ctx: AppCtx, race: Race) {
    let me = ctx.id;
    let (app, at, hold_for, writes) = if me == race.victim {
        // Held across the contender's attempt, written twice.
        (VICTIM_APP, race.ask_at, 2 * LEASE, 2)
    } else {
        (CONTENDER_APP, race.contend_at, race.contend_hold, 1)
    };
    sleep_until(at).await;
    let res = [race.resource.clone()];
    let style = Style::TryFor(Duration::from_nanos(LEASE));
    if let Some(guard) = attempt(&ctx, app, &res, Mode::Write, style).await {
        hold(&ctx, app, guard, &res, Mode::Write, hold_for, 0, writes, true).await;
    }
}
