//! The schedule: the explicit list of faults and client requests a seed plays in its [`Swarm`]. It is
//! plain data, so a failing run can be shrunk by dropping entries. Besides the random faults and the
//! workload it holds scripted adversarial episodes (ambushes and wipe waves), which need both faults and
//! requests and so live here, above both.

use crate::faults::{self, Fault, FaultEvent, RestartKind};
use crate::rng::Rng;
use crate::swarm::{Swarm, SwarmOptions};
use crate::workload::{self, PlannedWrite, Request};
use dsync_core::quorum::write_quorum;

const MS: u64 = 1_000_000;
const S: u64 = 1_000_000_000;

/// The explicit list of everything the seed scheduled; shrinking drops entries from it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Schedule {
    /// Faults, by time.
    pub faults: Vec<FaultEvent>,
    /// Client requests, by time.
    pub requests: Vec<Request>,
}

/// Draws the world for `seed` and then its schedule. Each part has its own random stream, so changing one
/// part's draws does not shift the others'.
pub fn generate(seed: u64, nodes: usize, opts: SwarmOptions) -> (Swarm, Schedule) {
    let (swarm, mut s) = Swarm::draw(seed, nodes, opts);
    let mut schedule = Schedule { faults: faults::draw(&mut s, &swarm), requests: workload::draw(&mut s, &swarm) };
    draw_ambushes(&swarm, &mut Rng::new(seed, 5), &mut schedule);
    draw_admin(&swarm, &mut Rng::new(seed, 7), &mut schedule);
    // An episode's closing heal may fall after the heal time; the heal phase ends it then (such faults were
    // always no-ops, and `World::add_fault` refuses them).
    schedule.faults.retain(|f| f.at < swarm.heal_at);
    (swarm, schedule)
}

/// Operators' actions, each on or off per seed (`FaultMix::force_unlocks_per_10s`,
/// `FaultMix::clock_jump_prob`): force-unlocks of hot and cold resources at random times from random
/// nodes, and the machine clock of a restarting node stepped before it starts. Drawn from their own stream
/// and inserted at their times (a stable sort keeps everything else in order), so a seed with both off
/// plays exactly what it played before they existed.
fn draw_admin(sw: &Swarm, r: &mut Rng, sch: &mut Schedule) {
    let mix = &sw.faults;
    let mut added = false;
    if mix.force_unlocks_per_10s > 0.0 {
        let rate = mix.force_unlocks_per_10s / (10 * S) as f64;
        let mut t = 0f64;
        loop {
            t += -(1.0 - r.unit()).ln() / rate;
            if t >= sw.heal_at as f64 {
                break;
            }
            let resource = if r.chance(0.5) { format!("h{}", r.below(3)) } else { format!("c{}", r.below(200)) };
            let node = r.below(sw.nodes as u64) as usize;
            sch.faults.push(FaultEvent { at: t as u64, fault: Fault::ForceUnlock { node, resource } });
            added = true;
        }
    }
    if mix.clock_jump_prob > 0.0 {
        let mut out = Vec::with_capacity(sch.faults.len());
        for f in sch.faults.drain(..) {
            if let Fault::Restart { node, .. } = f.fault {
                if r.chance(mix.clock_jump_prob) {
                    let by = r.log_range(MS, 3600 * S) as i64;
                    let by = if r.chance(0.5) { by } else { -by };
                    out.push(FaultEvent { at: f.at, fault: Fault::ClockJump { node, by } });
                    added = true;
                }
            }
            out.push(f);
        }
        sch.faults = out;
    }
    if added {
        sch.faults.sort_by_key(|f| f.at); // stable
    }
}

/// Ambushes: the victim takes a long write lock on a hot resource, is then cut off for longer than a
/// lockers' grants do; any margin that is missing (drift, validity counted from the replies) shows up
/// as an overlap here. Random faults alone line these up only rarely.
fn draw_ambushes(sw: &Swarm, r: &mut Rng, sch: &mut Schedule) {
    let n = sw.nodes;
    if n < 2 || !r.chance(sw.faults.ambush_prob) {
        return;
    }
    let lease = sw.lease.as_nanos() as u64;
    for _ in 0..r.range(1, 3) {
        let at = r.range(S / 2, sw.heal_at.saturating_sub(S).max(S / 2 + 1));
        let res = format!("h{}", r.below(2));
        let mut req = Request::write(sw.victim, at, &res, 4 * lease);
        req.writes = (1..=3).map(|k| PlannedWrite { after: k * lease, pause: 0 }).collect();
        sch.requests.push(req);
        let cut = at + r.range(50 * MS, 400 * MS);
        sch.faults.push(FaultEvent { at: cut, fault: Fault::Partition { side: 1 << sw.victim, one_way: false } });
        sch.faults.push(FaultEvent { at: cut + r.range(lease * 3 / 2, 3 * lease), fault: Fault::Heal });
        for _ in 0..r.range(1, 2) {
            push_contender(sw, r, sch, &res, cut + 10 * MS, cut + 500 * MS);
        }
    }
    if r.chance(sw.faults.wipe_wave_prob) {
        draw_wipe_wave(sw, r, sch);
    }
    if n >= 3 && r.chance(sw.faults.rejoin_race_prob) {
        draw_rejoin_race(sw, r, sch);
    }
    sch.faults.sort_by_key(|f| f.at);
    sch.requests.sort_by_key(|q| q.at);
}

/// A wipe wave: while the victim holds a write lock, every other node crashes and comes back with a
/// wiped state directory (`Start::Bootstrap`) within milliseconds of the others, and one of them asks for
/// the victim's resource. The victim's lock relies on the old incarnations' grants, so they must find
/// history (the victim) before granting: its answer must not be ignored, a quorum of fresh peers must not
/// suffice while the victim is cut off, and an old first-boot record must not vouch for a new start.
fn draw_wipe_wave(sw: &Swarm, r: &mut Rng, sch: &mut Schedule) {
    let n = sw.nodes;
    let lease = sw.lease.as_nanos() as u64;
    let at = r.range(S / 2, sw.heal_at.saturating_sub(3 * lease).max(S / 2 + 1));
    let res = format!("h{}", r.below(2));
    let mut req = Request::write(sw.victim, at, &res, 4 * lease);
    req.writes = (1..=3).map(|k| PlannedWrite { after: k * lease / 2, pause: 0 }).collect();
    sch.requests.push(req);
    let wave = at + r.range(100 * MS, 500 * MS);
    if r.chance(sw.faults.wipe_wave_cut_prob) {
        // Cut off, the victim cannot answer: only waiting for every peer keeps the others out.
        sch.faults.push(FaultEvent { at: wave - MS, fault: Fault::Partition { side: 1 << sw.victim, one_way: false } });
        sch.faults.push(FaultEvent { at: wave + r.range(lease * 3 / 2, 3 * lease), fault: Fault::Heal });
    }
    for node in (0..n).filter(|&i| i != sw.victim) {
        sch.faults.push(FaultEvent { at: wave, fault: Fault::Crash { node } });
        let back = wave + r.range(MS, 30 * MS);
        sch.faults.push(FaultEvent { at: back, fault: Fault::Restart { node, kind: RestartKind::Wiped } });
    }
    push_contender(sw, r, sch, &res, wave + 40 * MS, wave + 400 * MS);
}

/// A rejoin race (PROTOCOL.md §6.7): the victim asks for a write lock; node `x`'s grant is held up on its
/// way, and the others but a write quorum's worth of "friends" (the victim, `x` and the friends make a
/// write quorum) do not hear the request until later; `x` crashes and restarts within milliseconds
/// and rejoins; then `x`'s held messages go (old grant and new rejoin in any order on a reordering network),
/// and `c` asks for the same resource through the new incarnation. The victim must not count the dead
/// incarnation's grant once it answered the rejoin, or `c` and the victim both hold the lock.
fn draw_rejoin_race(sw: &Swarm, r: &mut Rng, sch: &mut Schedule) {
    let (n, v) = (sw.nodes, sw.victim);
    let lease = sw.lease.as_nanos() as u64;
    let others: Vec<usize> = (0..n).filter(|&i| i != v).collect();
    let x = others[r.below(others.len() as u64) as usize];
    let mut rest: Vec<usize> = others.iter().copied().filter(|&i| i != x).collect();
    let c = rest.remove(r.below(rest.len() as u64) as usize);
    // With an odd `n`, `c`, the new `x` and the nodes left outside the victim's quorum are a write quorum.
    let friends: Vec<usize> = rest.iter().copied().take(write_quorum(n).saturating_sub(2)).collect();
    let held: Vec<usize> = others.iter().copied().filter(|i| !friends.contains(i)).collect();
    let at = r.range(S / 2, sw.heal_at.saturating_sub(3 * lease).max(S / 2 + 1));
    // A resource of its own: the race needs the victim's attempt to be granted, not queued behind others.
    let res = format!("rejoin{}", at / MS);
    let clog_at = at - MS;
    // `x`'s grant is held on its way back; the other outsiders never hear the attempt (their lockers stay free).
    let link = |o: usize| if o == x { (x, v) } else { (v, o) };
    for &o in &held {
        let (from, to) = link(o);
        sch.faults.push(FaultEvent { at: clog_at, fault: Fault::Clog { from, to } });
    }
    let mut req = Request::write(v, at, &res, 2 * lease);
    req.writes = vec![PlannedWrite { after: lease / 4, pause: 0 }];
    sch.requests.push(req);
    let crash = at + r.range(5 * MS, 20 * MS);
    sch.faults.push(FaultEvent { at: crash, fault: Fault::Crash { node: x } });
    let kind = if r.chance(0.5) { RestartKind::Durable } else { RestartKind::Volatile };
    let back = crash + r.range(MS, 10 * MS);
    sch.faults.push(FaultEvent { at: back, fault: Fault::Restart { node: x, kind } });
    let release = back + r.range(20 * MS, 60 * MS);
    sch.faults.push(FaultEvent { at: release, fault: Fault::Unclog { from: x, to: v } });
    for &o in held.iter().filter(|&&i| i != x) {
        let (from, to) = link(o);
        sch.faults.push(FaultEvent { at: release + lease, fault: Fault::Unclog { from, to } });
    }
    let mut contender = Request::write(c, release + r.range(5 * MS, 40 * MS), &res, r.range(50 * MS, 300 * MS));
    contender.deadline = Some(lease);
    contender.writes = vec![PlannedWrite { after: 0, pause: 0 }];
    sch.requests.push(contender);
}

/// A node other than the victim asks for `res` at a time in `[from, to)`, holding it briefly and writing once:
/// the request that would overlap the victim's lock if a safety step were missing.
fn push_contender(sw: &Swarm, r: &mut Rng, sch: &mut Schedule, res: &str, from: u64, to: u64) {
    let lease = sw.lease.as_nanos() as u64;
    let mut other = r.below(sw.nodes as u64 - 1) as usize;
    if other >= sw.victim {
        other += 1;
    }
    let mut c = Request::write(other, r.range(from, to), res, r.range(50 * MS, 500 * MS));
    c.deadline = Some(3 * lease);
    c.writes = vec![PlannedWrite { after: 0, pause: 0 }];
    sch.requests.push(c);
}
