//! Scenarios written against the public API, as a user of the simulator would.

use dsync_core::{Mode, ServingState};
use dsync_sim::{
    run_seed, Fault, FaultError, FaultEvent, Kind, PlantedBug, Request, RequestOutcome, RestartKind, RunOptions, Swarm,
    World, WorldOptions,
};

const MS: u64 = 1_000_000;
const S: u64 = 1_000_000_000;

#[test]
fn same_seed_same_trace() {
    let opts = RunOptions { nodes: 3, wire_every: 1, ..Default::default() };
    let a = run_seed(7, &opts);
    let b = run_seed(7, &opts);
    assert!(a.events > 1000, "a seed should do real work, did {} events", a.events);
    assert_eq!(a.hash, b.hash);
    assert_eq!(a.events, b.events);
    // ... and the event log does not change the hash.
    let logged = run_seed(7, &RunOptions { log: true, ..opts });
    assert_eq!(logged.hash, a.hash);
    assert!(!logged.log.is_empty());
}

#[test]
fn isolated_holder_blocks_others_until_its_lease_runs_out() {
    let mut w = World::new(Swarm::calm(5), 1, WorldOptions::default());
    let holder = w.add_request(Request::write(0, 10 * MS, "x", 10 * S));
    // Cut node 0 off from everyone once it holds the lock.
    w.add_fault(FaultEvent { at: 100 * MS, fault: Fault::Partition { side: 1, one_way: false } }).unwrap();
    w.add_fault(FaultEvent { at: 8 * S, fault: Fault::Heal }).unwrap();
    let mut other = Request::write(3, 200 * MS, "x", 100 * MS);
    other.deadline = Some(6 * S);
    let other = w.add_request(other);
    w.run_until(S);
    assert!(matches!(w.outcome(holder), RequestOutcome::Acquired { .. }));
    assert_eq!(w.outcome(other), RequestOutcome::Pending, "node 0's grants still stand");
    w.run_until(7 * S);
    // Cut off, node 0 could not refresh: it was told its lock is lost (after it was acquired).
    let RequestOutcome::Lost { token: t1, acquired_at, at } = w.outcome(holder) else {
        panic!("node 0 should have lost its lock: {:?}", w.outcome(holder))
    };
    assert!(acquired_at < 100 * MS && at > acquired_at && at < 3 * S, "acquired {acquired_at}, lost {at}");
    let RequestOutcome::Acquired { token: t2, .. } = w.outcome(other) else {
        panic!("node 3 never got the lock: {:?}", w.outcome(other))
    };
    assert!(t2 > t1, "fencing tokens must grow: {t1} then {t2}");
    // Node 3's belief began only after node 0's had ended, in true time.
    let holds = w.holds();
    let end0 = holds.iter().find(|h| h.node == 0).unwrap().intervals[0].1;
    let start3 = holds.iter().find(|h| h.node == 3).unwrap().intervals[0].0;
    assert!(start3 >= end0, "overlap: node 3 from {start3}, node 0 until {end0}");
    let v = w.finish().to_vec();
    assert!(v.is_empty(), "{v:?}");
}

#[test]
fn readers_share_and_a_writer_waits() {
    let mut w = World::new(Swarm::calm(3), 2, WorldOptions::default());
    let mut r1 = Request::write(0, MS, "doc", S);
    r1.mode = Mode::Read;
    let mut r2 = r1.clone();
    r2.node = 1;
    let (a, b) = (w.add_request(r1), w.add_request(r2));
    let wr = w.add_request(Request::write(2, 50 * MS, "doc", 10 * MS));
    w.run_until(500 * MS);
    assert!(matches!(w.outcome(a), RequestOutcome::Acquired { .. }));
    assert!(matches!(w.outcome(b), RequestOutcome::Acquired { .. }));
    assert_eq!(w.outcome(wr), RequestOutcome::Pending);
    w.run_until(2 * S);
    assert!(matches!(w.outcome(wr), RequestOutcome::Acquired { .. }));
    assert!(w.finish().is_empty(), "{:?}", w.violations());
}

#[test]
fn a_planted_bug_is_caught() {
    let caught = (0..20).any(|seed| {
        let opts = RunOptions { nodes: 3, planted_bug: Some(PlantedBug::WriteQuorumTooSmall), ..Default::default() };
        run_seed(seed, &opts).violations.iter().any(|v| v.kind == Kind::Exclusion)
    });
    assert!(caught, "write-quorum-too-small went unnoticed for 20 seeds");
}

// ----- wiped state directories and bootstrapping clusters (PROTOCOL.md §6.5) -----

/// Node 0 holds "x" through grants of nodes 0 and 1 only (node 2 was cut off). Node 1 loses its state
/// directory and comes back as `Start::Bootstrap` while the link between nodes 0 and 2 is down; node 2 then
/// asks for "x". Node 1 must find history and stay out: its old grant is what node 0 relies on.
fn wiped_rejoin(bug: Option<PlantedBug>) -> World {
    let mut w = World::new(Swarm::calm(3), 11, WorldOptions { planted_bug: bug, ..Default::default() });
    w.add_fault(FaultEvent { at: MS, fault: Fault::Partition { side: 0b100, one_way: false } }).unwrap();
    let mut holder = Request::write(0, 10 * MS, "x", 10 * S);
    holder.writes = vec![dsync_sim::PlannedWrite { after: S, pause: 0 }];
    w.add_request(holder);
    w.add_fault(FaultEvent { at: 300 * MS, fault: Fault::Heal }).unwrap();
    for (from, to) in [(0, 2), (2, 0)] {
        w.add_fault(FaultEvent { at: 300 * MS, fault: Fault::Clog { from, to } }).unwrap();
        w.add_fault(FaultEvent { at: 5 * S, fault: Fault::Unclog { from, to } }).unwrap();
    }
    w.add_fault(FaultEvent { at: 400 * MS, fault: Fault::Crash { node: 1 } }).unwrap();
    w.add_fault(FaultEvent { at: 410 * MS, fault: Fault::Restart { node: 1, kind: RestartKind::Wiped } }).unwrap();
    let mut other = Request::write(2, 500 * MS, "x", 100 * MS);
    other.writes = vec![dsync_sim::PlannedWrite { after: 0, pause: 0 }];
    w.add_request(other);
    w
}

#[test]
fn a_node_whose_state_is_wiped_never_grants_a_lock_held_through_its_old_grants() {
    let mut w = wiped_rejoin(None);
    w.run_until(600 * MS);
    // Node 1 found history, so it restarted; nodes 0 and 2 both answered its rejoin (PROTOCOL.md §6.7), so it
    // serves again at once, with node 0's grant reinstalled: node 2 still cannot get "x".
    assert_eq!(w.stats().quarantined, 1, "node 1 found history");
    let node1 = w.node(1).unwrap();
    assert_eq!(node1.serving_state(w.local_now(1)), ServingState::Serving);
    assert_eq!(node1.counters().rejoins, 1);
    let v = w.finish().to_vec();
    assert!(v.is_empty(), "{v:?}");
    assert!(w.holds().iter().any(|h| h.node == 2), "node 2 gets the lock once node 0's lease is over");
    // The scenario is sharp: a bootstrap that ignores the history answer lets node 2 in at once.
    let mut bad = wiped_rejoin(Some(PlantedBug::BootstrapIgnoresHistory));
    assert!(bad.finish().iter().any(|v| v.kind == Kind::Exclusion), "the planted bug went unnoticed");
}

#[test]
fn a_brand_new_cluster_of_bootstrap_nodes_starting_within_milliseconds_serves_without_quarantine() {
    let swarm = Swarm { bootstrap_start: true, ..Swarm::calm(3) };
    let mut w = World::new(swarm, 12, WorldOptions::default());
    // Nodes 1 and 2 start 2 and 4 ms after node 0 (their first starts die before anyone hears them).
    for (node, at) in [(1, 2 * MS), (2, 4 * MS)] {
        w.add_fault(FaultEvent { at: 0, fault: Fault::Crash { node } }).unwrap();
        w.add_fault(FaultEvent { at, fault: Fault::Restart { node, kind: RestartKind::Wiped } }).unwrap();
    }
    let lock = w.add_request(Request::write(1, 10 * MS, "x", 100 * MS));
    w.run_until(S);
    for i in 0..3 {
        assert_eq!(w.node(i).unwrap().serving_state(w.local_now(i)), ServingState::Serving, "node {i}");
    }
    assert_eq!(w.stats().quarantined, 0, "nobody quarantined in a cluster that never granted");
    assert_eq!(w.stats().serving, 3);
    assert!(matches!(w.outcome(lock), RequestOutcome::Acquired { token: 1, .. }), "{:?}", w.outcome(lock));
    assert!(w.finish().is_empty(), "{:?}", w.violations());
}

/// A cluster bootstraps; node 1 then loses its state twice in a row. Each new start must find history:
/// its peers' first-boot decisions vouched for its first incarnation only.
fn restarts_in_a_row(bug: Option<PlantedBug>) -> World {
    let swarm = Swarm { bootstrap_start: true, ..Swarm::calm(3) };
    let mut w = World::new(swarm, 13, WorldOptions { planted_bug: bug, ..Default::default() });
    w.add_request(Request::write(0, 50 * MS, "x", 5 * S));
    for (crash, back) in [(500 * MS, 505 * MS), (600 * MS, 605 * MS)] {
        w.add_fault(FaultEvent { at: crash, fault: Fault::Crash { node: 1 } }).unwrap();
        w.add_fault(FaultEvent { at: back, fault: Fault::Restart { node: 1, kind: RestartKind::Wiped } }).unwrap();
    }
    w
}

#[test]
fn two_wiped_restarts_in_a_row_each_find_history() {
    let mut w = restarts_in_a_row(None);
    w.run_until(700 * MS);
    assert_eq!(w.stats().quarantined, 2, "each new incarnation finds history and restarts");
    let node1 = w.node(1).unwrap();
    assert_eq!(node1.serving_state(w.local_now(1)), ServingState::Serving, "then rejoins at once");
    assert_eq!(node1.counters().rejoins, 1, "the second incarnation's own rejoin");
    assert!(w.finish().is_empty(), "{:?}", w.violations());
    let mut bad = restarts_in_a_row(Some(PlantedBug::VouchAnyIncarnation));
    bad.run_until(700 * MS);
    assert_eq!(bad.stats().quarantined, 0, "vouching any incarnation lets the wiped node boot");
}

// ----- the scenario API: outcomes, restarts, clock jumps, force-unlock, refused faults -----

#[test]
fn outcomes_report_grantors_failure_reasons_and_times() {
    let mut w = World::new(Swarm::calm(3), 21, WorldOptions::default());
    let a = w.add_request(Request::write(0, 10 * MS, "x", Request::UNTIL_RELEASED));
    let mut b = Request::write(1, 100 * MS, "x", 10 * MS);
    b.deadline = Some(300 * MS);
    let b = w.add_request(b);
    w.run_until(S);
    let RequestOutcome::Acquired { token, grantors, at } = w.outcome(a) else { panic!("{:?}", w.outcome(a)) };
    assert_eq!(token, 1);
    assert!(grantors.len() >= 2 && grantors.contains(0), "a write quorum of 3 granted: {grantors:?}");
    assert!((10 * MS..100 * MS).contains(&at), "acquired at {at}");
    let RequestOutcome::Failed { reason, at } = w.outcome(b) else { panic!("{:?}", w.outcome(b)) };
    assert_eq!(reason, dsync_core::FailReason::Timeout);
    assert!((300 * MS..450 * MS).contains(&at), "failed at {at}: its deadline was 300 ms after 100 ms");
    assert_eq!(w.outcome(a).token(), Some(1));
    assert!(w.finish().is_empty(), "{:?}", w.violations());
}

#[test]
fn a_fault_after_the_heal_time_or_on_no_node_is_refused() {
    let swarm = Swarm::calm(3);
    let heal_at = swarm.heal_at;
    let mut w = World::new(swarm, 22, WorldOptions::default());
    let late = FaultEvent { at: heal_at, fault: Fault::Crash { node: 0 } };
    assert_eq!(w.add_fault(late), Err(FaultError::AfterHeal { at: heal_at, heal_at }));
    let ghost = FaultEvent { at: S, fault: Fault::Crash { node: 3 } };
    assert_eq!(w.add_fault(ghost), Err(FaultError::NoSuchNode { node: 3, nodes: 3 }));
    assert!(w.add_fault(FaultEvent { at: heal_at - 1, fault: Fault::Crash { node: 0 } }).is_ok());
    w.run_until(heal_at + S);
    // Once healed, even a fault "in the past" would land now, after the heal time.
    let now = w.now();
    assert_eq!(w.add_fault(FaultEvent { at: 0, fault: Fault::Heal }), Err(FaultError::AfterHeal { at: now, heal_at }));
    assert!(w.finish().is_empty(), "{:?}", w.violations());
}

#[test]
fn a_restart_with_a_chosen_floor_proposes_tokens_above_it() {
    let mut w = World::new(Swarm::calm(3), 23, WorldOptions::default());
    w.add_fault(FaultEvent { at: 100 * MS, fault: Fault::Crash { node: 0 } }).unwrap();
    w.add_fault(FaultEvent { at: 200 * MS, fault: Fault::Restart { node: 0, kind: RestartKind::Floor(1000) } })
        .unwrap();
    let a = w.add_request(Request::write(0, 5 * S, "x", 100 * MS));
    w.run_until(6 * S);
    assert!(w.outcome(a).token().is_some_and(|t| t > 1000), "{:?}", w.outcome(a));
    assert!(w.finish().is_empty(), "{:?}", w.violations());
}

/// Every node of a cluster that never granted restarts with its state wiped, as `kind`: the cluster boots
/// afresh, nobody quarantines, and the first lock gets token 1 again.
fn fresh_cluster(kind: RestartKind) -> World {
    let mut w = World::new(Swarm::calm(3), 24, WorldOptions::default());
    for node in 0..3 {
        w.add_fault(FaultEvent { at: S, fault: Fault::Crash { node } }).unwrap();
        w.add_fault(FaultEvent { at: S + 10 * MS * node as u64, fault: Fault::Restart { node, kind } }).unwrap();
    }
    w
}

#[test]
fn a_whole_cluster_restarts_as_a_fresh_cluster() {
    for kind in [RestartKind::Bootstrap, RestartKind::FirstBoot] {
        let mut w = fresh_cluster(kind);
        let a = w.add_request(Request::write(1, 2 * S, "x", 100 * MS));
        w.run_until(3 * S);
        assert_eq!(w.stats().quarantined, 0, "{kind:?}: a fresh cluster does not quarantine");
        assert_eq!(w.outcome(a).token(), Some(1), "{kind:?}: {:?}", w.outcome(a));
        assert!(w.finish().is_empty(), "{kind:?}: {:?}", w.violations());
    }
    // As `Wiped`, the last node to restart would have found nobody decided, and the world restarts it as
    // `Volatile` instead: it must learn its floor from peers, so the cluster quarantines.
    let mut w = fresh_cluster(RestartKind::Wiped);
    w.run_until(3 * S);
    assert!(w.stats().quarantined > 0);
}

#[test]
fn a_clock_jump_steps_a_crashed_nodes_machine_clock() {
    let mut w = World::new(Swarm::calm(3), 25, WorldOptions::default());
    let (hour, back) = (3600 * S, 100 * S);
    w.add_fault(FaultEvent { at: 100 * MS, fault: Fault::ClockJump { node: 1, by: hour as i64 } }).unwrap(); // running: ignored
    w.add_fault(FaultEvent { at: 200 * MS, fault: Fault::Crash { node: 2 } }).unwrap();
    w.add_fault(FaultEvent { at: 300 * MS, fault: Fault::ClockJump { node: 2, by: -(back as i64) } }).unwrap();
    w.add_fault(FaultEvent { at: 300 * MS, fault: Fault::Restart { node: 2, kind: RestartKind::Volatile } }).unwrap();
    let before: Vec<u64> = (0..3).map(|i| w.local_now(i).as_nanos()).collect();
    w.run_until(S);
    let after: Vec<u64> = (0..3).map(|i| w.local_now(i).as_nanos()).collect();
    assert_eq!(after[1] - before[1], S, "a running node's clock is never stepped");
    assert_eq!(before[2] - after[2], back - S, "node 2's clock went back 100 s while it was down");
    let a = w.add_request(Request::write(2, 5 * S, "x", 100 * MS));
    w.run_until(6 * S);
    assert!(w.outcome(a).token().is_some(), "{:?}", w.outcome(a));
    assert!(w.finish().is_empty(), "{:?}", w.violations());
}

/// Node 0 holds "x"; an operator on node 1 force-unlocks it, and node 2 gets "x" at once, while node 0 —
/// which neither the command nor any `Revoked` reaches (a one-way cut into it) — still trusts its lock until
/// its next refresh tells it the lock is lost. Force-unlock voids the guarantees of what it removes, so that
/// overlap is not a mutual-exclusion violation; the checkers still see everything after it.
#[test]
fn a_force_unlock_voids_the_lock_it_removes_until_its_holder_learns_lost() {
    let mut w = World::new(Swarm::calm(3), 26, WorldOptions::default());
    let a = w.add_request(Request::write(0, 10 * MS, "x", 10 * S));
    let cut = Fault::Partition { side: 0b110, one_way: true };
    w.add_fault(FaultEvent { at: 290 * MS, fault: cut }).unwrap();
    w.add_fault(FaultEvent { at: 400 * MS, fault: Fault::Heal }).unwrap();
    let force = Fault::ForceUnlock { node: 1, resource: "x".into() };
    w.add_fault(FaultEvent { at: 300 * MS, fault: force }).unwrap();
    let b = w.add_request(Request::write(2, 310 * MS, "x", 100 * MS));
    w.run_until(2 * S);
    assert!(matches!(w.outcome(a), RequestOutcome::Lost { .. }), "{:?}", w.outcome(a));
    assert!(w.outcome(b).token() > w.outcome(a).token(), "{:?} then {:?}", w.outcome(a), w.outcome(b));
    let h0 = w.holds().iter().find(|h| h.node == 0).unwrap().clone();
    let h2 = w.holds().iter().find(|h| h.node == 2).unwrap().clone();
    let voided = h0.voided.expect("node 0's lock was voided");
    assert!((300 * MS..310 * MS).contains(&voided), "voided at {voided}");
    let start2 = h2.intervals[0].0;
    assert!(h0.valid_at(start2), "node 0 still believed its lock when node 2 got it (the overlap)");
    assert!(!h0.trusted_at(start2) && h2.voided.is_none());
    assert!(w.finish().is_empty(), "{:?}", w.violations());
}

/// Node 0 holds "x"; node 2 force-unlocks it at 1 s (PROTOCOL.md §6.8). Returns the world after the run
/// and the holder's request.
fn forced_holder(bug: Option<PlantedBug>) -> (World, usize) {
    let mut w = World::new(Swarm::calm(3), 1, WorldOptions { planted_bug: bug, ..Default::default() });
    let holder = w.add_request(Request::write(0, 10 * MS, "x", Request::UNTIL_RELEASED));
    w.add_fault(FaultEvent { at: S, fault: Fault::ForceUnlock { node: 2, resource: "x".into() } }).unwrap();
    w.run_until(3 * S);
    (w, holder)
}

#[test]
fn a_force_unlocked_holder_is_told_lost_within_a_round_trip() {
    let (mut w, holder) = forced_holder(None);
    let RequestOutcome::Lost { at, .. } = w.outcome(holder) else { panic!("{:?}", w.outcome(holder)) };
    // Two hops of at most 2 ms each on the calm network; the refresh would come up to 600 ms later.
    assert!((S..S + 5 * MS).contains(&at), "lost at {:.6}s", at as f64 / 1e9);
    let v = w.finish().to_vec();
    assert!(v.is_empty(), "{v:?}");
    // The check is sharp: a holder that ignores `Revoked` believes on until its next refresh.
    let (mut bad, holder) = forced_holder(Some(PlantedBug::RevocationIgnored));
    let RequestOutcome::Lost { at, .. } = bad.outcome(holder) else { panic!("{:?}", bad.outcome(holder)) };
    assert!(at > S + 5 * MS, "lost at {:.6}s", at as f64 / 1e9);
    assert!(bad.finish().iter().any(|v| v.kind == Kind::Revocation), "the planted bug went unnoticed");
}
