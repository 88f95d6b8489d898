//! Behaviour of a whole cluster of `dsync-core` nodes, one test per promise, on a virtual clock.

mod support;

use dsync_core::wire::{LockMsg, Outcome};
use dsync_core::{
    DenyReason, Event, FailReason, ForceTarget, Instant, Message, Mode, Node, NodeSet, RequestError, ServingState,
    Start,
};
use support::{ms, secs, Cluster, Msg};

const R: Mode = Mode::Read;
const W: Mode = Mode::Write;

/// Takes the in-flight messages matching `pred` out of the network (to deliver them later, or never).
fn hold(c: &mut Cluster, pred: impl Fn(&Msg) -> bool) -> Vec<Msg> {
    let (held, rest): (Vec<Msg>, Vec<Msg>) = c.inflight.drain(..).partition(|m| pred(m));
    c.inflight.extend(rest);
    held
}

/// Loses the rejoin that node `from` sent to `to` (so `from` keeps its quarantine, §6.7).
fn drop_rejoin(c: &mut Cluster, from: usize, to: usize) {
    let lost = hold(c, |m| m.from == from && m.to == to && matches!(m.message, Message::Rejoin { .. }));
    assert_eq!(lost.len(), 1, "one rejoin was on its way");
}

fn token_of(c: &Cluster, i: usize, lock: dsync_core::LockId) -> u64 {
    c.acquired(i, lock).unwrap_or_else(|| panic!("node {i} did not acquire {lock:?}")).1
}

// ----- mutual exclusion -----

#[test]
fn a_write_lock_excludes_other_writers_until_released() {
    let mut c = Cluster::new(3, |_| {});
    let a = c.lock(0, W, &["r"], None);
    c.settle();
    let ta = token_of(&c, 0, a);
    let b = c.lock(1, W, &["r"], None);
    c.run_for(secs(45)); // several refreshes of a's lease
    assert!(c.is_valid(0, a));
    assert_eq!(c.acquired(1, b), None, "a second writer got in while the first held");
    assert!(c.lost(0, a).is_none());

    let released_at = c.now;
    assert!(c.unlock(0, a));
    c.run_for(ms(100));
    assert!(c.released(0, a).is_some());
    let (at, tb) = c.acquired(1, b).expect("the waiting writer acquires after the release");
    assert!(at - released_at < ms(10), "the waiter is woken, not left to its backoff");
    assert!(tb > ta, "fencing token must grow: {ta} then {tb}");
    c.assert_safe();
}

#[test]
fn an_attempt_after_a_failed_one_proposes_above_what_that_one_taught_its_grantors() {
    let mut c = Cluster::new(3, |_| {});
    // Node 2 holds "r" with grants from nodes 0 and 2 only: node 1 never saw it.
    c.partition(&[1], &[0, 2]);
    let held = c.lock(2, W, &["r"], None);
    c.settle();
    let t_held = token_of(&c, 2, held);
    c.heal();
    let stale = |c: &Cluster| (0..3).map(|i| c.node(i).counters().stale_token_denials).sum::<u64>();
    let stale_before = stale(&c);
    // Node 0's attempts: its own locker and node 2 deny (conflict), node 1 grants, raising its mark to the
    // proposal; each attempt fails and backs off. Each next one must propose above that mark.
    let w = c.lock(0, W, &["r"], None);
    c.run_for(ms(500));
    assert_eq!(c.acquired(0, w), None);
    assert!(c.node(0).counters().retries >= 2, "several attempts while the lock is held");
    assert!(c.node(1).fencing_mark() > t_held, "node 1 accepted a failed attempt's proposal");
    // The holder leaves; node 0 is woken and gets the lock.
    c.unlock(2, held);
    c.settle();
    let t = token_of(&c, 0, w);
    assert!(t > t_held);
    assert_eq!(stale(&c), stale_before, "a locker denied an attempt as stale: a wasted round");
    c.assert_safe();
}

#[test]
fn readers_share_and_exclude_writers() {
    let mut c = Cluster::new(3, |_| {});
    let r1 = c.lock(0, R, &["r"], None);
    let r2 = c.lock(1, R, &["r"], None);
    c.settle();
    assert!(c.is_valid(0, r1) && c.is_valid(1, r2), "readers share");
    let w = c.lock(2, W, &["r"], Some(secs(2)));
    c.run_for(secs(3));
    assert_eq!(c.failed(2, w).map(|f| f.1), Some(FailReason::Timeout));
    assert!(c.is_valid(0, r1) && c.is_valid(1, r2));

    c.unlock(0, r1);
    c.unlock(1, r2);
    c.settle();
    let w2 = c.lock(2, W, &["r"], None);
    c.settle();
    assert!(c.is_valid(2, w2));
    let r3 = c.lock(0, R, &["r"], Some(secs(2)));
    c.run_for(secs(3));
    assert_eq!(c.failed(0, r3).map(|f| f.1), Some(FailReason::Timeout), "a writer excludes readers");
    c.assert_safe();
}

#[test]
fn a_multi_resource_lock_is_all_or_nothing() {
    let mut c = Cluster::new(3, |_| {});
    // Node 0 takes "b" while node 2 is cut off: only lockers 0 and 1 hold it.
    c.partition(&[2], &[0, 1]);
    let a = c.lock(0, W, &["b"], None);
    c.settle();
    assert!(c.is_valid(0, a));
    c.heal();
    // Node 1 asks for a, b, c: locker 2 grants all three, lockers 0 and 1 refuse; the attempt fails.
    let m = c.lock(1, W, &["c", "a", "b"], Some(secs(2)));
    c.run_for(secs(3));
    assert_eq!(c.failed(1, m).map(|f| f.1), Some(FailReason::Timeout));
    assert!(c.node(2).counters().grants >= 1, "locker 2 did grant the whole request at least once");
    let now = c.now;
    for i in 0..3 {
        for g in c.node(i).grants(now) {
            assert_eq!((g.owner, g.resource.as_str()), (0, "b"), "node {i} kept part of the failed lock: {g:?}");
        }
    }
    assert_eq!(c.node(2).grant_count(), 0);
    // "a" and "c" are free for others at once.
    let other = c.lock(2, W, &["a", "c"], None);
    c.settle();
    assert!(c.is_valid(2, other));
    assert!(c.is_valid(0, a));
    c.assert_safe();
}

// ----- availability and failures -----

#[test]
fn losing_a_minority_changes_nothing() {
    let mut c = Cluster::new(5, |_| {});
    c.partition(&[3, 4], &[0, 1, 2]);
    let a = c.lock(0, W, &["r"], None);
    let b = c.lock(1, R, &["s"], None);
    c.settle();
    assert!(c.is_valid(0, a) && c.is_valid(1, b));
    for _ in 0..5 {
        c.run_for(secs(30)); // five lease periods, refreshed by the majority alone
        assert!(c.is_valid(0, a) && c.is_valid(1, b));
    }
    assert!(c.lost(0, a).is_none() && c.lost(1, b).is_none());
    // The minority side cannot write.
    let m = c.lock(3, W, &["t"], Some(secs(2)));
    c.run_for(secs(3));
    assert_eq!(c.failed(3, m).map(|f| f.1), Some(FailReason::NoQuorum));
    c.assert_safe();
}

#[test]
fn a_two_node_cluster_reads_with_one_node_down_but_cannot_write() {
    let mut c = Cluster::new(2, |_| {});
    c.crash(1);
    let r = c.lock(0, R, &["r"], None);
    c.settle();
    assert!(c.is_valid(0, r), "read quorum of 2 nodes is 1");
    let w = c.lock(0, W, &["s"], Some(secs(2)));
    c.run_for(secs(100));
    assert_eq!(c.failed(0, w).map(|f| f.1), Some(FailReason::NoQuorum));
    assert!(c.is_valid(0, r), "the read lock keeps refreshing on one node");
    c.assert_safe();
}

#[test]
fn the_holder_is_told_lost_when_cut_off_and_stays_valid_until_then() {
    let mut c = Cluster::new(3, |_| {});
    let a = c.lock(0, W, &["r"], None);
    c.settle();
    c.run_for(secs(5));
    let cut_at = c.now;
    c.partition(&[0], &[1, 2]);
    let b = c.lock(1, W, &["r"], None);
    let mut lost_seen = false;
    for _ in 0..600 {
        c.run_for(ms(100));
        let lost = c.lost(0, a).is_some();
        assert_eq!(c.is_valid(0, a), !lost, "valid exactly until Lost, at {:?}", c.now);
        lost_seen |= lost;
    }
    let lost_at = c.lost(0, a).expect("the cut-off holder is told Lost");
    assert!(lost_seen);
    assert!(lost_at - cut_at <= c.cfgs[0].lease, "lost within one lease of the cut");
    let (b_at, _) = c.acquired(1, b).expect("the majority side acquires once the old grants expire");
    assert!(b_at >= lost_at);
    c.assert_safe();
}

#[test]
fn a_dead_holders_grants_expire_and_another_node_then_acquires() {
    let mut c = Cluster::new(3, |_| {});
    let a = c.lock(0, W, &["r"], None);
    c.settle();
    c.run_for(secs(15)); // one refresh at 10 s
    assert!(c.is_valid(0, a));
    let crash_at = c.now;
    c.crash(0);
    let b = c.lock(1, W, &["r"], None);
    c.run_for(ms(1));
    assert_eq!((c.node(1).grant_count(), c.node(2).grant_count()), (1, 1), "the dead holder's grants live on");
    let hold = c.cfgs[0].locker_hold();
    c.run_until(crash_at + hold);
    let now = c.now;
    for i in [1, 2] {
        assert!(c.node(i).grants(now).iter().all(|g| g.owner != 0), "node {i} still holds the dead node's grant");
        assert!(c.node(i).counters().expirations >= 1);
    }
    c.run_for(secs(2));
    let (at, _) = c.acquired(1, b).expect("another node acquires after expiry");
    assert!(at > crash_at && at <= crash_at + hold + secs(1));
    c.assert_safe();
}

/// The same restart when every peer answers the rejoin: the restarted node reinstalls the holder's grant,
/// serves at once, and the holder keeps its lock (PROTOCOL.md §6.7).
#[test]
fn a_restarted_node_that_every_peer_answers_rejoins_at_once_and_keeps_the_holders_grant() {
    let (mut c, a, _) = node_0_holds_r_granted_by_0_and_1();
    c.heal();
    c.crash(1);
    let restarted = c.now;
    c.restart(1, None);
    c.settle();
    assert_eq!(c.node(1).counters().rejoins, 1);
    assert!(c.node(1).is_serving(c.now), "serving one round trip after the restart, not after 30 s");
    assert!(c.now - restarted < ms(100));
    c.partition(&[0], &[2]); // as above: only node 1 could give node 2 a second quorum
    let b = c.lock(2, W, &["r"], None);
    for _ in 0..600 {
        c.run_for(ms(100));
        assert!(c.is_valid(0, a), "the holder keeps its lock across node 1's restart");
        assert_eq!(c.acquired(2, b), None, "second writer at {:?}", c.now);
    }
    c.assert_safe();
}

/// The race of §6.7: node 1 grants node 0's attempt, crashes with the grant reply still on its way, and
/// rejoins before it arrives. Node 0 must not count that grant (the new incarnation does not have it), or
/// node 2 gets a second write quorum through the new incarnation. Returns whether both believed `r`.
fn stale_grant_across_a_rejoin(bug: Option<dsync_core::PlantedBug>) -> (Cluster, bool) {
    let mut c = Cluster::new(3, |cfg| cfg.planted_bug = bug);
    c.settle();
    let a = c.lock(0, W, &["r"], None);
    let is_lock = |m: &Msg| matches!(m.message, Message::Lock(_));
    let is_grant = |m: &Msg| matches!(m.message, Message::LockReply { outcome: Outcome::Granted, .. });
    hold(&mut c, |m| m.to == 2 && is_lock(m)); // node 2 never hears this attempt
    let to_1 = c.inflight.iter().position(|m| m.to == 1 && is_lock(m)).expect("the request to node 1");
    c.deliver_at(to_1); // node 1 grants
    let stale = hold(&mut c, |m| m.from == 1 && is_grant(m));
    assert_eq!(stale.len(), 1, "node 1's grant is on its way");
    c.crash(1);
    c.restart(1, None);
    c.settle(); // node 1 rejoins: every peer answered, floor known
    assert!(c.node(1).is_serving(c.now), "rejoined without a quarantine");
    c.inflight.extend(stale); // the dead incarnation's grant arrives
    c.deliver_all();
    let b = c.lock(2, W, &["r"], None);
    c.run_for(ms(500));
    let both = c.is_valid(0, a) && c.is_valid(2, b);
    (c, both)
}

#[test]
fn a_grant_sent_before_a_restart_is_not_counted_once_the_node_rejoined() {
    let (c, both) = stale_grant_across_a_rejoin(None);
    assert!(!both, "two writers");
    assert!(c.violations.is_empty(), "{:?}", c.violations);
}

#[cfg(feature = "planted-bugs")]
#[test]
fn counting_a_grant_of_the_dead_incarnation_lets_a_second_writer_in() {
    let (c, both) = stale_grant_across_a_rejoin(Some(dsync_core::PlantedBug::RejoinCountsStaleReplies));
    assert!(both && !c.violations.is_empty(), "the checker saw two writers");
}

#[cfg(feature = "planted-bugs")]
#[test]
fn a_rejoin_that_does_not_reinstall_lets_a_second_writer_in() {
    let mut c = Cluster::new(3, |cfg| cfg.planted_bug = Some(dsync_core::PlantedBug::RejoinWithoutReinstall));
    c.partition(&[2], &[0, 1]);
    let a = c.lock(0, W, &["r"], None);
    c.settle();
    c.heal();
    c.crash(1);
    c.restart(1, None);
    c.settle();
    c.partition(&[0], &[2]);
    let b = c.lock(2, W, &["r"], None);
    c.run_for(secs(1));
    assert!(c.is_valid(0, a) && c.is_valid(2, b));
    assert!(!c.violations.is_empty(), "the checker saw two writers");
}

/// Three nodes; node 0 holds a write lock on "r" granted by nodes 0 and 1 (node 2, cut off, never heard
/// the request; the partition stays): where both restart scenarios of MinIO's double writer start.
fn node_0_holds_r_granted_by_0_and_1() -> (Cluster, dsync_core::LockId, dsync_core::LockInfo) {
    let mut c = Cluster::new(3, |_| {});
    c.partition(&[2], &[0, 1]);
    let a = c.lock(0, W, &["r"], None);
    c.settle();
    let info = c.node(0).lock_info(a).unwrap();
    assert_eq!(info.grantors, NodeSet::from([0, 1]));
    (c, a, info)
}

/// MinIO's double writer: a node restarts without state while another node is cut off from the holder;
/// without a quarantine the cut-off node and the restarted one would form a second write quorum.
#[test]
fn a_restarted_node_does_not_enable_a_second_writer() {
    let (mut c, a, info) = node_0_holds_r_granted_by_0_and_1();
    c.run_for(secs(1));
    c.crash(1);
    c.restart(1, None);
    c.settle(); // node 2 cannot answer node 1's rejoin: the quarantine stays (§6.7)
    c.heal();
    c.partition(&[0], &[2]); // node 1 talks to both; 0 and 2 cannot talk
    let b = c.lock(2, W, &["r"], None);
    for _ in 0..600 {
        c.run_for(ms(100));
        if c.is_valid(0, a) {
            assert_eq!(c.acquired(2, b), None, "second writer while the first is valid at {:?}", c.now);
        }
    }
    assert!(c.node(1).counters().quarantined_denials > 0, "node 1 answered Quarantined");
    let lost_at = c.lost(0, a).expect("A cannot refresh without a quorum");
    let (b_at, tb) = c.acquired(2, b).expect("node 2 acquires once A's lease is gone");
    assert!(b_at >= lost_at);
    assert!(tb > info.token, "token {tb} must exceed the earlier writer's {}", info.token);
    c.assert_safe();
}

#[test]
fn a_restarted_node_releases_the_locks_its_previous_incarnation_held() {
    let mut c = Cluster::new(3, |_| {});
    c.settle();
    let dead = c.lock(0, W, &["r"], None);
    c.settle();
    assert!(c.is_valid(0, dead));
    c.crash(0); // its application died holding "r": nodes 1 and 2 keep the grants
    let w = c.lock(1, W, &["r"], None);
    c.run_for(secs(2));
    assert_eq!(c.acquired(1, w), None, "the dead holder's grants still block");
    let restarted_at = c.now;
    c.restart(0, None);
    c.run_for(secs(2));
    assert_eq!(c.node(0).counters().dead_grants_released, 2, "one dead grant at each peer");
    let (at, _) = c.acquired(1, w).expect("the waiter gets the lock once the dead grants are gone");
    let lease = c.cfgs[1].lease;
    assert!(at - restarted_at < lease / 4, "acquired {:?} after the restart (lease {lease:?})", at - restarted_at);
    c.assert_safe();
}

#[test]
fn the_sweep_of_a_reconnected_peer_keeps_this_incarnations_own_locks() {
    let mut c = Cluster::new(3, |_| {});
    c.settle();
    let mine = c.lock(0, W, &["r"], None);
    c.settle();
    // Node 1 drops out and comes back: node 0 sweeps it again and finds only its live grant.
    c.with_node(0, |n, now| n.handle_peer_down(now, 1));
    c.with_node(0, |n, now| n.handle_peer_up(now, 1));
    c.settle();
    assert_eq!(c.node(0).counters().dead_grants_released, 0);
    c.run_for(secs(40)); // across refreshes: node 1 still holds the grant
    assert!(c.is_valid(0, mine));
    let other = c.lock(2, W, &["r"], Some(secs(1)));
    c.run_for(secs(2));
    assert_eq!(c.acquired(2, other), None);
    c.assert_safe();
}

// ----- fencing -----

#[test]
fn fencing_tokens_increase_across_release_expiry_and_a_minority_restart() {
    let mut c = Cluster::new(3, |_| {});
    let w1 = c.lock(0, W, &["r"], None);
    c.settle();
    let t1 = token_of(&c, 0, w1);
    c.unlock(0, w1);
    c.settle();

    // After a release.
    let w2 = c.lock(1, W, &["r"], None);
    c.settle();
    let t2 = token_of(&c, 1, w2);
    assert!(t2 > t1);

    // After expiry: the holder crashes; another node acquires once its grants expire.
    c.crash(1);
    let w3 = c.lock(2, W, &["r"], None);
    c.run_for(secs(40));
    let t3 = token_of(&c, 2, w3);
    assert!(t3 > t2);

    // A minority restart without state: node 1 learns the floor from its peers. Node 2 does not hear its
    // rejoin, so it keeps its quarantine (§6.7).
    c.restart(1, None);
    drop_rejoin(&mut c, 1, 2);
    c.settle();
    assert!(c.node(1).fencing_mark() >= t3, "the restarted node learned its floor from peers");
    assert!(!c.node(1).is_serving(c.now), "but serves nothing during its quarantine");
    c.unlock(2, w3);
    c.settle();
    let w4 = c.lock(0, W, &["r"], None);
    c.settle();
    let t4 = token_of(&c, 0, w4);
    assert!(t4 > t3);
    assert!(c.node(1).fencing_mark() < t4, "node 1 was quarantined while t4 was granted");
    c.unlock(0, w4);
    c.run_for(c.cfgs[1].effective_quarantine());
    assert!(c.node(1).is_serving(c.now));

    // The restarted node coordinates: its own hint is stale, peers deny StaleToken, it retries higher.
    let stale_before: u64 = (0..3).map(|i| c.node(i).counters().stale_token_denials).sum();
    let w5 = c.lock(1, W, &["r"], None);
    c.settle();
    let t5 = token_of(&c, 1, w5);
    assert!(t5 > t4, "{t5} must exceed {t4}");
    let stale_after: u64 = (0..3).map(|i| c.node(i).counters().stale_token_denials).sum();
    assert!(stale_after > stale_before, "the low proposal was denied as stale");
    assert!(c.node(1).counters().retries >= 1);
    assert_eq!(c.node(1).fencing_mark(), t5);
    c.assert_safe();
}

#[test]
fn a_whole_cluster_restart_with_durable_floors_keeps_tokens_increasing() {
    let mut c = Cluster::new(3, |cfg| {
        cfg.persist_floor = true;
        cfg.floor_chunk = 4; // small, so floors are persisted several times
    });
    let mut last = 0;
    for i in 0..10 {
        let w = c.lock(i % 3, W, &["r"], None);
        c.settle();
        let t = token_of(&c, i % 3, w);
        assert!(t > last);
        last = t;
        c.unlock(i % 3, w);
        c.settle();
    }
    assert!(c.durable.iter().all(|d| d.is_some_and(|f| f >= last)), "floors: {:?}", c.durable);
    for i in 0..3 {
        c.crash(i);
    }
    for i in 0..3 {
        let floor = c.durable[i];
        c.restart(i, floor);
    }
    c.run_for(c.cfgs[0].effective_quarantine());
    let w = c.lock(0, W, &["r"], None);
    c.settle();
    let t = token_of(&c, 0, w);
    assert!(t > last, "token {t} after the restart must exceed {last}");
    c.assert_safe();
}

/// Without durable floors, a node recovers its floor only from peers that know theirs; after a
/// whole-cluster restart nobody does, so the cluster stays unavailable (it never reissues low tokens).
#[test]
fn a_whole_cluster_restart_without_durable_floors_stays_unavailable() {
    let mut c = Cluster::new(3, |_| {});
    let w = c.lock(0, W, &["r"], None);
    c.settle();
    assert!(token_of(&c, 0, w) >= 1);
    for i in 0..3 {
        c.crash(i);
    }
    for i in 0..3 {
        c.restart(i, None);
    }
    c.run_for(secs(100));
    let now = c.now;
    for i in 0..3 {
        assert!(!c.node(i).is_serving(now), "node {i} serves without knowing its floor");
        assert_eq!(c.node(i).fencing_mark(), 0);
    }
    let w = c.lock(1, W, &["r"], Some(secs(5)));
    let r = c.lock(2, R, &["r"], Some(secs(5)));
    c.run_for(secs(6));
    assert_eq!(c.failed(1, w).map(|f| f.1), Some(FailReason::NoQuorum));
    assert_eq!(c.failed(2, r).map(|f| f.1), Some(FailReason::NoQuorum));
    assert!(c.acquisitions.len() == 1, "nothing acquired after the restart");
}

// ----- contention -----

#[test]
fn the_start_up_herd_resolves_within_a_few_retries() {
    let mut c = Cluster::new(5, |_| {});
    let locks: Vec<_> = (0..5).map(|i| c.lock(i, W, &["r"], None)).collect();
    // Each locker has already granted its own node's request (loopback): round one will split.
    for i in 0..5 {
        let g = c.node(i).grants(c.now);
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].owner, i);
    }
    let holders = |c: &Cluster| -> Vec<usize> { (0..5).filter(|&i| c.acquired(i, locks[i]).is_some()).collect() };
    while holders(&c).is_empty() && c.now < Instant::from_millis(2_000) {
        c.run_for(ms(1));
    }
    let at = c.now;
    let retries: u64 = (0..5).map(|i| c.node(i).counters().retries).sum();
    c.run_for(secs(2));
    let holders = holders(&c);
    assert_eq!(holders.len(), 1, "exactly one of the herd holds: {holders:?}");
    assert!(at <= Instant::from_millis(50), "the herd took until {at:?}");
    assert!(retries <= 10, "the herd retried {retries} times");
    c.assert_safe();
}

#[test]
fn a_waiting_writer_is_not_starved_by_overlapping_readers() {
    let mut c = Cluster::new(3, |_| {});
    let mut readers = Vec::new();
    let mut writer = None;
    for step in 0..100u64 {
        c.run_until(Instant::from_millis(step * 10));
        let now = c.now;
        // A new reader every 10 ms, each holding 25 ms: readers always overlap.
        readers.push((step as usize % 3, c.lock(step as usize % 3, R, &["r"], None)));
        for &(i, l) in &readers {
            if c.acquired(i, l).is_some_and(|(at, _)| now - at >= ms(25)) && c.is_valid(i, l) {
                c.unlock(i, l);
            }
        }
        if step == 5 {
            writer = Some(c.lock(0, W, &["r"], None));
        }
    }
    let w = writer.unwrap();
    let (at, _) = c.acquired(0, w).expect("the writer acquires");
    assert!(at <= Instant::from_millis(50 + 60), "the writer waited until {at:?}");
    c.assert_safe();
}

#[test]
fn an_old_waiter_is_not_starved_by_newcomers() {
    let mut c = Cluster::new(3, |_| {});
    let first = c.lock(0, W, &["r"], None);
    c.settle();
    let waiter = c.lock(1, W, &["r"], None);
    c.settle();
    let mut newcomers = Vec::new();
    for step in 1..=50u64 {
        c.run_until(Instant::from_millis(step * 10));
        let now = c.now;
        if step == 10 {
            c.unlock(0, first);
        }
        // Newcomers on nodes 0 and 2 grab the lock and give it back at once, over and over.
        for i in [0, 2] {
            newcomers.push((i, c.lock(i, W, &["r"], Some(ms(500)))));
        }
        for &(i, l) in &newcomers {
            if c.is_valid(i, l) && c.acquired(i, l).is_some_and(|(at, _)| now - at >= ms(10)) {
                c.unlock(i, l);
            }
        }
        if c.is_valid(1, waiter) && c.acquired(1, waiter).is_some_and(|(at, _)| now - at >= ms(10)) {
            c.unlock(1, waiter);
        }
    }
    let (w_at, _) = c.acquired(1, waiter).expect("the old waiter acquires");
    assert!(w_at <= Instant::from_millis(110), "the old waiter got it only at {w_at:?}");
    let first_after = c.acquisitions.iter().find(|a| a.lock != first || a.node != 0).unwrap();
    assert_eq!((first_after.node, first_after.lock), (1, waiter), "a newcomer overtook the waiter");
    c.assert_safe();
}

// ----- administration -----

#[test]
fn a_holder_query_merges_every_nodes_entries() {
    let mut c = Cluster::new(3, |_| {});
    let a = c.lock(0, W, &["x"], None);
    let b = c.lock(1, R, &["y", "z"], None);
    c.settle();
    let (ia, ib) = (c.node(0).lock_info(a).unwrap(), c.node(1).lock_info(b).unwrap());
    let q = c.with_node(2, |n, now| n.query_holders(now, None)).unwrap();
    c.settle();
    let (_, Event::Holders { query, entries, answered, truncated }) = c.events[2].last().unwrap().clone() else {
        panic!("expected a Holders event, got {:?}", c.events[2]);
    };
    assert_eq!(query, q);
    assert_eq!(answered, NodeSet::all(3));
    assert!(!truncated);
    let got: Vec<_> =
        entries.iter().map(|e| (e.resource.as_str(), e.mode, e.owner, e.uid, e.token, e.granted_by)).collect();
    let all = NodeSet::all(3);
    assert_eq!(
        got,
        [("x", W, 0, ia.uid, ia.token, all), ("y", R, 1, ib.uid, ib.token, all), ("z", R, 1, ib.uid, ib.token, all)]
    );

    let q = c.with_node(2, |n, now| n.query_holders(now, Some("y".into()))).unwrap();
    c.settle();
    let Some((_, Event::Holders { query, entries, .. })) = c.events[2].last() else { panic!() };
    assert_eq!(*query, q);
    assert_eq!(entries.len(), 1);
    assert_eq!((entries[0].resource.as_str(), entries[0].owner), ("y", 1));
}

/// The fallback of §6.8: when no `Revoked` reaches a holder (lost on the way, and the command did not reach the
/// holder's own locker either), it learns at its next refresh, as before.
#[test]
fn force_unlock_by_resource_or_uid_removes_grants_and_an_unreached_holder_loses_at_its_next_refresh() {
    let mut c = Cluster::new(3, |_| {});
    let a = c.lock(0, W, &["x"], None);
    let b = c.lock(1, R, &["y"], None);
    c.settle();
    c.run_for(secs(1));
    let ib = c.node(1).lock_info(b).unwrap();
    // The network loses every `Revoked`, and the command to the holders' own nodes.
    let lossy = |c: &mut Cluster| {
        let unreached = |m: &Msg| match &m.message {
            Message::ForceUnlock { target: ForceTarget::Resource(_), .. } => m.to == 0,
            Message::ForceUnlock { target: ForceTarget::Uid { .. }, .. } => m.to == 1,
            _ => false,
        };
        drop(hold(c, |m| matches!(m.message, Message::Revoked { .. }) || unreached(m)))
    };

    c.with_node(2, |n, now| n.force_unlock(now, ForceTarget::Resource("x".into()))).unwrap();
    c.with_node(2, |n, now| n.force_unlock(now, ForceTarget::Uid { owner: 1, uid: ib.uid })).unwrap();
    while !c.inflight.is_empty() {
        lossy(&mut c);
        c.deliver_at(0);
    }
    assert_eq!(c.total_grants(), 2, "only the holders' own lockers still hold their grants");
    assert!(c.is_valid(0, a) && c.is_valid(1, b), "not told: holders learn only at their next refresh");
    c.run_for(secs(10));
    assert!(c.lost(0, a).is_some() && c.lost(1, b).is_some());
    assert!(!c.is_valid(0, a) && !c.is_valid(1, b));
    let refresh = c.cfgs[0].refresh_interval;
    assert!(c.lost(0, a).unwrap() <= Instant::ZERO + refresh + ms(1));
    assert_eq!(c.total_grants(), 0);
}

/// Delivers the messages in flight now (not those sent in answer); returns how many.
fn deliver_wave(c: &mut Cluster) -> usize {
    let wave = c.inflight.len();
    for _ in 0..wave {
        c.deliver_at(0);
    }
    wave
}

/// A force-unlock: node 2 removes node 0's write lock on "x" and node 1's read lock on "y" (by uid). Returns
/// the cluster after the given number of message waves (no time passes), and the two locks.
fn force_two_holders(bug: Option<dsync_core::PlantedBug>) -> (Cluster, dsync_core::LockId, dsync_core::LockId) {
    let mut c = Cluster::new(3, |cfg| cfg.planted_bug = bug);
    let a = c.lock(0, W, &["x"], None);
    let b = c.lock(1, R, &["y"], None);
    c.settle();
    c.run_for(secs(1));
    let ib = c.node(1).lock_info(b).unwrap();
    c.with_node(2, |n, now| n.force_unlock(now, ForceTarget::Resource("x".into()))).unwrap();
    c.with_node(2, |n, now| n.force_unlock(now, ForceTarget::Uid { owner: 1, uid: ib.uid })).unwrap();
    (c, a, b)
}

/// §6.8: the holder is told `Lost` one round trip after the force-unlock (the `ForceUnlock` out, the
/// `Revoked` back), as the administrator gets its answers — not at its next refresh.
#[test]
fn a_force_unlocked_holder_is_told_lost_one_round_trip_later() {
    let (mut c, a, b) = force_two_holders(None);
    let forced_at = c.now;
    // Wave 1: the `ForceUnlock`s reach nodes 0 and 1, and node 2's own locker's `Revoked`s reach the holders.
    assert!(deliver_wave(&mut c) > 0);
    assert!(c.is_valid(0, a) || c.lost(0, a).is_some());
    // Wave 2: the other lockers' `Revoked`s (and the replies to the administrator).
    deliver_wave(&mut c);
    assert_eq!(c.lost(0, a), Some(forced_at), "the writer is told at once");
    assert_eq!(c.lost(1, b), Some(forced_at), "the reader is told at once");
    assert!(!c.is_valid(0, a) && !c.is_valid(1, b));
    c.settle();
    assert!(c.node(0).counters().lost == 1 && c.node(1).counters().lost == 1);
    assert_eq!(c.total_grants(), 0);
    // Another writer can have "x" at once, and the old holder no longer believes it.
    let d = c.lock(1, W, &["x"], None);
    c.settle();
    assert!(c.acquired(1, d).is_some());
    c.assert_safe();
}

/// The same force-unlock with `Revoked` ignored (planted bug `revocation-ignored`): both holders go on
/// believing until their next refresh finds the grants gone.
#[cfg(feature = "planted-bugs")]
#[test]
fn ignoring_revoked_keeps_a_force_unlocked_holder_believing_until_its_next_refresh() {
    let (mut c, a, b) = force_two_holders(Some(dsync_core::PlantedBug::RevocationIgnored));
    c.settle();
    assert!(c.is_valid(0, a) && c.is_valid(1, b), "the bug: told, but still believing");
    assert_eq!(c.total_grants(), 0);
    c.run_for(secs(10));
    assert!(c.lost(0, a).is_some() && c.lost(1, b).is_some(), "the refresh path still ends it");
}

/// An attempt in flight when a force-unlock removes its grants does not count them: a grant reply that left
/// a locker before the removal arrives after its `Revoked` and is released, not used.
#[test]
fn an_attempt_does_not_count_a_grant_revoked_while_its_reply_was_on_the_way() {
    let mut c = Cluster::new(3, |_| {});
    c.settle();
    let a = c.lock(0, W, &["x"], None);
    let is_grant = |m: &Msg| matches!(m.message, Message::LockReply { outcome: Outcome::Granted, .. });
    let mut replies = Vec::new();
    for _ in 0..4 {
        c.deliver_at(0);
        replies.extend(hold(&mut c, |m| m.to == 0 && is_grant(m)));
    }
    assert_eq!(replies.len(), 2, "nodes 1 and 2 granted; their replies are on the way");
    c.with_node(1, |n, now| n.force_unlock(now, ForceTarget::Resource("x".into()))).unwrap();
    // Every `Revoked` arrives first; then the grants that no locker holds any more.
    c.deliver_all();
    c.inflight.extend(replies);
    c.deliver_all();
    assert_eq!(c.acquired(0, a), None, "the attempt counted grants a force-unlock had removed");
    assert_eq!(c.total_grants(), 0, "nothing is left behind");
    c.run_for(secs(2));
    assert!(c.acquired(0, a).is_some(), "a later attempt acquires");
    c.assert_safe();
}

// ----- limits -----

#[test]
fn limits_give_typed_errors_and_change_nothing() {
    let mut c = Cluster::new(3, |cfg| {
        cfg.limits.max_resources_per_lock = 2;
        cfg.limits.max_resource_len = 4;
        cfg.limits.max_pending = 1;
        cfg.limits.max_queries = 1;
    });
    c.settle(); // the start's sweep queries (§6.6)
    let before = c.node(0).counters().clone();
    assert_eq!(c.try_lock(0, W, &[], None), Err(RequestError::NoResources));
    assert_eq!(c.try_lock(0, W, &["a", "b", "c"], None), Err(RequestError::TooManyResources { count: 3, limit: 2 }));
    assert_eq!(c.try_lock(0, W, &["abcde"], None), Err(RequestError::NameTooLong { len: 5, limit: 4 }));
    let long = c.with_node(0, |n, now| n.query_holders(now, Some("abcde".into())));
    assert_eq!(long, Err(RequestError::NameTooLong { len: 5, limit: 4 }));
    assert_eq!(c.node(0).counters(), &before);
    assert!(c.inflight.is_empty() && c.events[0].is_empty() && c.node(0).grant_count() == 0);
    assert_eq!(c.node(0).poll_timeout(), None);

    // Duplicates are removed before the limit applies.
    let a = c.lock(0, W, &["a", "b", "a"], None);
    assert_eq!(c.try_lock(0, W, &["c"], None), Err(RequestError::Overloaded), "max_pending is 1");
    c.settle();
    assert!(c.is_valid(0, a));
    assert!(c.try_lock(0, W, &["c"], None).is_ok(), "room again once acquired");

    c.with_node(1, |n, now| n.query_holders(now, None)).unwrap();
    assert_eq!(c.with_node(1, |n, now| n.query_holders(now, None)), Err(RequestError::Overloaded));
    c.settle();
    c.assert_safe();
}

#[test]
fn full_locker_tables_deny_overloaded_and_the_attempt_fails_overloaded() {
    let mut c = Cluster::new(3, |cfg| cfg.limits.max_grants = 1);
    let a = c.lock(0, W, &["a"], None);
    c.settle();
    assert!(c.is_valid(0, a));
    let b = c.lock(1, W, &["b"], Some(secs(1)));
    c.run_for(secs(2));
    assert_eq!(c.failed(1, b).map(|f| f.1), Some(FailReason::Overloaded));
    assert!((0..3).all(|i| c.node(i).grant_count() == 1));
    assert!(c.is_valid(0, a));
}

// ----- hostile input -----

#[test]
fn hostile_input_changes_nothing_and_never_panics() {
    let mut c = Cluster::new(3, |_| {});
    let a = c.lock(0, W, &["r"], None);
    c.settle();
    let info = c.node(0).lock_info(a).unwrap();
    let now = c.now;
    let grants_before: Vec<_> = (0..3).map(|i| c.node(i).grants(now)).collect();

    // Unknown senders and "myself".
    let unlock = Message::Unlock { uid: info.uid, ticket: None, reply: true };
    for from in [3, 64, usize::MAX, 1] {
        c.with_node(1, |n, now| n.handle_message(now, from, unlock.clone()));
    }
    assert_eq!(c.node(1).counters().invalid_messages, 4);
    // Node 2 tries to unlock node 0's grant at node 1: grants are keyed by owner, so nothing goes.
    c.with_node(1, |n, now| n.handle_message(now, 2, unlock.clone()));
    c.settle();
    let now = c.now;
    assert_eq!((0..3).map(|i| c.node(i).grants(now)).collect::<Vec<_>>(), grants_before);

    // Replies to unknown uids and query ids.
    let stale_before = c.node(0).counters().stale_replies;
    let junk = [
        Message::LockReply { uid: 12345, outcome: Outcome::Denied(DenyReason::Conflict), mark: 9 },
        Message::RefreshReply { uid: 12345, seq: 1, held: true },
        Message::RefreshReply { uid: info.uid, seq: 999, held: false },
        Message::UnlockReply { uid: 12345, removed: true },
        Message::QueryReply { qid: 77, entries: vec![], truncated: true },
        Message::ForceUnlockReply { qid: 77, removed: 5 },
        Message::FloorReply {
            qid: 77,
            floor: Some(u64::MAX),
            standing: dsync_core::Standing::BootedWithYou,
            incarnation: 1,
        },
        Message::Wake { ticket: 12345 },
    ];
    for m in junk {
        c.with_node(0, |n, now| n.handle_message(now, 1, m));
    }
    assert!(c.node(0).counters().stale_replies >= stale_before + 5);
    assert!(c.inflight.is_empty(), "junk replies provoke no message: {:?}", c.inflight);
    assert!(c.events[0].iter().all(|(_, e)| matches!(e, Event::Acquired { .. })));
    assert_eq!(c.node(0).fencing_mark(), info.token, "a floor reply nobody asked for is ignored");
    // A grant for an unknown uid is answered by releasing it.
    c.with_node(0, |n, now| {
        n.handle_message(now, 1, Message::LockReply { uid: 5, outcome: Outcome::Granted, mark: 0 })
    });
    assert!(matches!(&c.inflight[0].message, Message::Unlock { uid: 5, .. }));
    c.settle();
    assert!(c.is_valid(0, a));

    // Malformed lock requests are denied Invalid and change no table.
    let bad = |resources: &[&str]| {
        Message::Lock(LockMsg {
            uid: 4242,
            ticket: 1,
            mode: W,
            proposal: 100,
            resources: resources.iter().map(|s| s.to_string()).collect(),
        })
    };
    let too_many: Vec<String> = (0..1001).map(|i| format!("{i:05}")).collect();
    let too_many: Vec<&str> = too_many.iter().map(|s| s.as_str()).collect();
    let long = "x".repeat(1025);
    for m in [bad(&["b", "a"]), bad(&["a", "a"]), bad(&[]), bad(&too_many), bad(&[long.as_str()])] {
        c.with_node(1, |n, now| n.handle_message(now, 2, m));
        let reply = c.inflight.pop_back().expect("a reply");
        assert_eq!((reply.from, reply.to), (1, 2));
        assert!(
            matches!(reply.message, Message::LockReply { outcome: Outcome::Denied(DenyReason::Invalid), .. }),
            "{reply:?}"
        );
    }
    // A proposal absurdly far above every mark cannot poison the locker.
    let mut huge = bad(&["q"]);
    if let Message::Lock(m) = &mut huge {
        m.proposal = u64::MAX;
    }
    c.with_node(1, |n, now| n.handle_message(now, 2, huge));
    let reply = c.inflight.pop_back().unwrap();
    assert!(matches!(reply.message, Message::LockReply { outcome: Outcome::Denied(DenyReason::Invalid), .. }));
    assert_eq!(c.node(1).grants(c.now), grants_before[1]);
    assert!(c.node(1).fencing_mark() < 1 << 40);
    assert!(c.is_valid(0, a));
    c.assert_safe();
}

#[test]
fn duplicated_and_reordered_replies_are_harmless() {
    let mut c = Cluster::new(5, |_| {});
    let a = c.lock(0, W, &["r"], None);
    // Deliver the requests, then the replies twice and in reverse order.
    for _ in 0..4 {
        c.deliver_at(0);
    }
    let mut replies: Vec<Msg> = c.inflight.drain(..).collect();
    replies.reverse();
    let dup = replies.clone();
    c.inflight.extend(replies.into_iter().chain(dup));
    c.settle();
    assert!(c.is_valid(0, a));
    assert_eq!(c.node(0).lock_info(a).unwrap().grantors, NodeSet::all(5));
    assert_eq!(c.events[0].iter().filter(|(_, e)| matches!(e, Event::Acquired { .. })).count(), 1);
    // Duplicated lock requests are answered again but granted once.
    let b = c.lock(1, W, &["s"], None);
    let dups: Vec<Msg> = c.inflight.iter().cloned().collect();
    c.inflight.extend(dups);
    c.settle();
    assert!(c.is_valid(1, b));
    assert_eq!(c.total_grants(), 10);
    c.unlock(1, b);
    c.unlock(0, a);
    c.settle();
    assert_eq!(c.total_grants(), 0);
}

// ----- giving up -----

#[test]
fn a_grant_that_arrives_after_the_attempt_gave_up_is_released() {
    let mut c = Cluster::new(3, |_| {});
    let a = c.lock(0, W, &["r"], Some(ms(100)));
    let late = hold(&mut c, |m| matches!(m.message, Message::Lock(_)));
    assert_eq!(late.len(), 2);
    c.run_for(ms(200));
    assert_eq!(c.failed(0, a).map(|f| f.1), Some(FailReason::NoQuorum));
    assert_eq!(c.total_grants(), 0);
    // The requests arrive after the unlock: lockers grant, and the coordinator releases each grant.
    c.inflight.extend(late);
    c.settle();
    assert_eq!(c.total_grants(), 0);
    assert_eq!(c.node(0).counters().late_grants_released, 2);
}

/// Found by dsync-sim (seed 61, 8 nodes): a locker answers a duplicated request twice, denied then granted.
#[test]
fn a_grant_to_a_duplicated_request_after_a_denial_is_used_not_leaked() {
    let mut c = Cluster::new(3, |_| {});
    c.partition(&[0], &[1, 2]);
    // A read lock held at lockers 1 and 2 only (a read, so fencing marks stay where node 0 sees them).
    let b = c.lock(1, R, &["r"], None);
    c.settle();
    assert!(c.acquired(1, b).is_some());
    c.heal();
    let a = c.lock(0, W, &["r"], None);
    let reqs = hold(&mut c, |m| m.from == 0 && matches!(m.message, Message::Lock(_)));
    let to2 = reqs.iter().find(|m| m.to == 2).expect("a request to node 2").clone();
    c.inflight.push_back(to2.clone());
    c.settle(); // node 2 denies: node 1 reads r there. Node 0 has its own grant; node 1 has not answered.
    assert!(c.acquired(0, a).is_none());
    c.unlock(1, b);
    c.settle();
    c.inflight.push_back(to2); // the network duplicated the request; node 2 now grants it
    c.settle();
    assert!(c.acquired(0, a).is_some(), "the second answer's grant completes the quorum");
    c.unlock(0, a);
    c.settle();
    assert_eq!(c.total_grants(), 0, "no grant may outlive the lock");
}

/// Found by dsync-sim (seed 994, 3 nodes): a lock released while a grantor was believed down.
#[test]
fn a_release_reaches_grantors_believed_down() {
    let mut c = Cluster::new(3, |_| {});
    let a = c.lock(0, W, &["r"], None);
    c.settle();
    assert!(c.acquired(0, a).is_some());
    assert_eq!(c.total_grants(), 3);
    c.with_node(0, |n, now| n.handle_peer_down(now, 2)); // a stale belief: node 2 is in fact reachable
    c.unlock(0, a);
    c.settle();
    assert_eq!(c.total_grants(), 0, "node 2's grant must be released, not left to expire");
}

/// A crashed node's waiting lock must not keep the head of the queue (blocking everyone behind it until its
/// entry expires) once its node is reported down.
#[test]
fn a_down_peers_waiting_lock_loses_its_place_in_the_queue() {
    let mut c = Cluster::new(3, |_| {});
    let held = c.lock(1, W, &["r"], None);
    c.settle();
    assert!(c.acquired(1, held).is_some());
    let _dead = c.lock(2, W, &["r"], None); // queued first: the best-ranked waiter
    c.settle();
    let waiter = c.lock(0, W, &["r"], None);
    c.settle();
    c.crash(2);
    for i in [0, 1] {
        c.with_node(i, |n, now| n.handle_peer_down(now, 2));
    }
    c.settle();
    c.unlock(1, held);
    let released_at = c.now;
    c.run_for(ms(50));
    let (at, _) = c.acquired(0, waiter).expect("the next waiter acquires once the holder releases");
    assert!(at - released_at < ms(50), "woken at once, not after the dead waiter's entry expired");
}

/// Seen over TCP: the deadline cut short an attempt sent a moment before; lockers that had just denied the
/// previous attempt for a conflict are contention, not a missing quorum.
#[test]
fn a_deadline_during_a_fresh_attempt_after_conflicts_is_a_timeout() {
    let mut c = Cluster::new(3, |_| {});
    let a = c.lock(0, W, &["x"], None);
    c.settle();
    assert!(c.acquired(0, a).is_some());
    let b = c.lock(1, W, &["x"], Some(ms(300)));
    c.deliver_all(); // the first attempt: every locker denies it (conflict)
    let until = c.at(400);
    c.fire_timers_until(until); // later attempts get no answer before the deadline
    assert_eq!(c.failed(1, b).map(|f| f.1), Some(FailReason::Timeout));
}

/// Found by dsync-sim (seed 1307, 12 nodes): a refresh while a grantor was believed down dropped it from the
/// grantors, so the release skipped it and its grant lingered until expiry.
#[test]
fn a_refresh_keeps_grantors_believed_down_so_the_release_reaches_them() {
    let mut c = Cluster::new(3, |_| {});
    let a = c.lock(0, W, &["r"], None);
    c.settle();
    assert_eq!(c.total_grants(), 3);
    c.with_node(0, |n, now| n.handle_peer_down(now, 2)); // a stale belief: node 2 still holds its grant
    let refresh = c.cfgs[0].refresh_interval;
    c.run_for(refresh + ms(10)); // one refresh round, confirmed by nodes 0 and 1
    assert!(c.is_valid(0, a));
    c.unlock(0, a);
    c.settle();
    assert_eq!(c.total_grants(), 0, "node 2's grant must be released, not left to expire");
}

#[test]
fn cancel_releases_partial_grants() {
    let mut c = Cluster::new(3, |_| {});
    let a = c.lock(0, W, &["r"], None);
    let late = hold(&mut c, |m| matches!(m.message, Message::Lock(_)));
    assert_eq!(c.node(0).grant_count(), 1, "own locker granted at once");
    assert_eq!(c.node(0).pending_count(), 1);
    assert!(c.cancel(0, a));
    assert!(!c.cancel(0, a), "already gone");
    assert_eq!(c.node(0).grant_count(), 0);
    assert_eq!(c.node(0).pending_count(), 0);
    c.settle();
    c.inflight.extend(late);
    c.settle();
    assert_eq!(c.total_grants(), 0);
    assert!(c.events[0].is_empty(), "cancel emits no event");
}

#[test]
fn cancel_releases_reservations() {
    let mut c = Cluster::new(3, |_| {});
    let a = c.lock(0, W, &["r"], None);
    c.settle();
    let b = c.lock(1, W, &["r"], None);
    c.run_for(ms(10)); // denied and reserved; backing off
    assert!(c.cancel(1, b));
    let d = c.lock(2, W, &["r"], None);
    c.run_for(ms(10));
    let released_at = c.now;
    c.unlock(0, a);
    c.run_for(ms(100));
    let (at, _) = c.acquired(2, d).expect("node 2 acquires");
    // A leftover reservation of the better-ticketed cancelled lock would block node 2 for seconds.
    assert!(at - released_at < ms(20), "node 2 waited until {at:?}");
    assert_eq!(c.acquired(1, b), None);
}

#[test]
fn deadlines_fail_with_timeout_when_held_and_no_quorum_when_a_majority_is_down() {
    let mut c = Cluster::new(3, |_| {});
    let a = c.lock(0, W, &["r"], None);
    c.settle();
    let b = c.lock(1, W, &["r"], Some(ms(300)));
    c.run_for(secs(1));
    let (at, reason) = c.failed(1, b).unwrap();
    assert_eq!(reason, FailReason::Timeout);
    assert!(at <= Instant::from_millis(300));
    assert!(c.is_valid(0, a));

    c.crash(0);
    c.crash(2);
    let d = c.lock(1, W, &["s"], Some(ms(300)));
    let r = c.lock(1, R, &["s"], Some(ms(300)));
    c.run_for(secs(1));
    assert_eq!(c.failed(1, d).map(|f| f.1), Some(FailReason::NoQuorum));
    assert_eq!(c.failed(1, r).map(|f| f.1), Some(FailReason::NoQuorum));
    assert_eq!(c.node(1).pending_count(), 0);
    let now = c.now;
    let own: Vec<_> = c.node(1).grants(now).into_iter().filter(|g| g.owner == 1).collect();
    assert!(own.is_empty(), "partial grants of failed attempts are released: {own:?}");
}

#[test]
fn release_reports_how_many_grantors_confirmed() {
    let mut c = Cluster::new(3, |_| {});
    let a = c.lock(0, W, &["r"], None);
    c.settle();
    c.partition(&[0], &[2]);
    c.unlock(0, a);
    c.run_for(secs(2)); // node 2 never answers: the release ends at its timeout
    let released = c.events[0].iter().find_map(|(_, e)| match e {
        Event::Released { lock, confirmed, grantors } if *lock == a => Some((*confirmed, *grantors)),
        _ => None,
    });
    assert_eq!(released, Some((2, 3)));
    assert!(!c.is_valid(0, a) && c.node(0).lock_info(a).is_none());
    assert_eq!(c.node(2).grant_count(), 1, "node 2's grant expires by lease");
    c.run_for(c.cfgs[0].locker_hold());
    assert_eq!(c.total_grants(), 0);
}

#[test]
fn a_peer_reported_down_counts_as_a_refusal_at_once() {
    let mut c = Cluster::new(3, |_| {});
    c.settle(); // the start's sweep queries and their answers (§6.6)
    c.partition(&[0], &[1]);
    c.crash(2);
    c.with_node(0, |n, now| {
        n.handle_peer_down(now, 1);
        n.handle_peer_down(now, 7); // unknown peers are ignored
    });
    let sent = c.node(0).counters().messages_out;
    let w = c.lock(0, W, &["r"], Some(secs(1)));
    c.settle();
    assert_eq!(c.node(0).counters().messages_out, sent + 1, "nothing is sent to a peer known to be down");
    c.with_node(0, |n, now| n.handle_peer_down(now, 2));
    c.run_for(secs(2));
    let (at, reason) = c.failed(0, w).unwrap();
    assert_eq!(reason, FailReason::NoQuorum);
    assert!(at <= Instant::from_millis(1_000));
    assert_eq!(c.node(0).grant_count(), 0);

    // Back up: rounds include the peers again. (Restarting both 1 and 2 without durable floors would
    // leave them waiting for each other: a restarted node needs a read quorum of peers that know theirs.)
    c.heal();
    c.restart(2, None);
    c.with_node(0, |n, now| {
        n.handle_peer_up(now, 1);
        n.handle_peer_up(now, 2);
    });
    c.run_for(c.cfgs[1].effective_quarantine());
    let w = c.lock(0, W, &["r"], None);
    c.settle();
    assert!(c.is_valid(0, w));
}

// ----- timers -----

#[test]
fn handle_timeout_early_or_repeated_is_harmless() {
    let mut c = Cluster::new(3, |_| {});
    c.settle(); // the start's sweep queries and their answers (§6.6)
    let sent = c.node(0).counters().messages_out;
    let a = c.lock(0, W, &["r"], None);
    c.settle();
    let timeout = c.node(0).poll_timeout();
    let events = c.events[0].len();
    for t in [0, 1, 1, 500, 9_999] {
        c.run_until(Instant::from_millis(t).max(c.now)); // nothing is due yet
        for i in 0..3 {
            c.with_node(i, |n, now| {
                n.handle_timeout(now);
                n.handle_timeout(now);
                n.handle_timeout(Instant::ZERO); // time never goes back
            });
        }
        c.settle();
    }
    assert_eq!(c.node(0).poll_timeout(), timeout);
    assert_eq!(c.events[0].len(), events);
    assert!(c.is_valid(0, a));
    assert_eq!(c.node(0).counters().messages_out, sent + 2, "one lock request to each peer, nothing more");
}

#[test]
fn poll_timeout_advances_after_each_handle_timeout() {
    // One node alone: every message is loopback, so each timeout stands on its own.
    let mut solo = Node::new(dsync_core::Config::new(1, 0), Instant::ZERO, Start::FirstBoot).unwrap();
    assert_eq!(solo.poll_event(), Some(Event::Serving), "a first boot serves at once");
    let lock = solo.lock(Instant::ZERO, W, ["r"], None).unwrap();
    let q = solo.query_holders(Instant::ZERO, None).unwrap();
    assert!(matches!(solo.poll_event(), Some(Event::Acquired { .. })));
    assert!(matches!(solo.poll_event(), Some(Event::Holders { query, .. }) if query == q));
    for _ in 0..100 {
        let t = solo.poll_timeout().expect("the held lock keeps a timer");
        solo.handle_timeout(t);
        assert!(solo.poll_timeout().expect("still held") > t, "poll_timeout did not move past {t:?}");
        assert!(solo.poll_transmit().is_none());
        assert!(solo.poll_event().is_none(), "a lone node never loses its lock");
    }
    assert!(solo.is_valid(lock, solo.poll_timeout().unwrap()));

    // A cluster with a holder, a waiter, a query and a cut-off node: every timer fired moves on.
    let mut c = Cluster::new(3, |_| {});
    c.partition(&[2], &[0, 1]);
    let _held = c.lock(0, W, &["r"], None);
    c.settle();
    let _waiter = c.lock(1, W, &["r"], None);
    c.with_node(1, |n, now| n.query_holders(now, None)).unwrap();
    for _ in 0..500 {
        let Some(t) = c.next_timeout() else { break };
        c.now = c.now.max(t);
        c.fire_due();
        c.deliver_all();
        for i in 0..3 {
            if let Some(next) = c.node(i).poll_timeout() {
                assert!(next > c.now, "node {i} stays due at {:?}: busy loop", c.now);
            }
        }
    }
    assert!(c.now > Instant::from_millis(60_000), "time moved on: {:?}", c.now);
    c.assert_safe();
}

// ----- the scenarios above fail when their safety mechanism is switched off -----

#[cfg(feature = "planted-bugs")]
mod planted {
    use super::*;
    use dsync_core::PlantedBug;

    #[test]
    fn without_the_restart_quarantine_the_minio_double_writer_happens() {
        let mut c = Cluster::new(3, |cfg| cfg.planted_bug = Some(PlantedBug::NoRestartQuarantine));
        c.partition(&[2], &[0, 1]);
        let a = c.lock(0, W, &["r"], None);
        c.settle();
        c.crash(1);
        c.restart(1, None);
        c.settle(); // node 2 does not hear the rejoin: no reinstall
        c.heal();
        c.partition(&[0], &[2]);
        let b = c.lock(2, W, &["r"], None);
        c.run_for(secs(2));
        assert!(c.is_valid(0, a) && c.is_valid(2, b));
        assert!(!c.violations.is_empty(), "the checker saw the double writer");
    }

    #[test]
    fn without_the_fencing_check_a_restarted_coordinator_reuses_a_token() {
        let mut c = Cluster::new(3, |cfg| cfg.planted_bug = Some(PlantedBug::NoFencingCheck));
        c.crash(1);
        c.restart(1, None);
        drop_rejoin(&mut c, 1, 2); // no rejoin shortcut: node 1 stays quarantined
        c.settle();
        let w = c.lock(0, W, &["r"], None); // granted by 0 and 2 while 1 is quarantined
        c.settle();
        c.unlock(0, w);
        c.run_for(c.cfgs[1].effective_quarantine());
        let w = c.lock(1, W, &["r"], None);
        c.settle();
        assert!(c.acquired(1, w).is_some());
        assert!(c.fencing_violation().is_some(), "tokens: {:?}", c.acquisitions);
    }
}

#[cfg(feature = "planted-bugs")]
#[test]
fn a_sweep_that_releases_every_own_grant_lets_a_second_writer_in() {
    use dsync_core::PlantedBug;
    let mut c = Cluster::new(3, |cfg| cfg.planted_bug = Some(PlantedBug::ReleaseOwnLiveGrants));
    c.settle();
    c.partition(&[2], &[0, 1]);
    let mine = c.lock(0, W, &["r"], None); // granted by nodes 0 and 1
    c.settle();
    c.heal();
    c.with_node(0, |n, now| n.handle_peer_down(now, 1));
    c.with_node(0, |n, now| n.handle_peer_up(now, 1));
    c.settle(); // node 1 drops node 0's live grant
    let other = c.lock(2, W, &["r"], Some(secs(1)));
    c.run_for(ms(500));
    assert!(c.acquired(2, other).is_some() && c.is_valid(0, mine));
    assert!(!c.violations.is_empty(), "the checker saw two writers");
}

// ----- bootstrap (PROTOCOL.md §6.5) and serving status -----

fn statuses(c: &Cluster, i: usize) -> Vec<Event> {
    c.status[i].iter().map(|(_, e)| e.clone()).collect()
}

#[test]
fn a_brand_new_cluster_of_bootstrap_nodes_serves_at_once_without_quarantine() {
    let mut c = Cluster::starting(3, 1, Start::Bootstrap, |_| {});
    for i in 0..3 {
        assert!(matches!(c.node(i).serving_state(c.now), ServingState::Bootstrapping { .. }));
        assert_ne!(c.node(i).incarnation(), 0);
    }
    c.settle();
    for i in 0..3 {
        assert_eq!(c.status[i], vec![(Instant::ZERO, Event::Serving)], "node {i}");
        assert_eq!(c.node(i).serving_state(c.now), ServingState::Serving);
    }
    let w = c.lock(0, W, &["r"], None);
    c.settle();
    assert_eq!(token_of(&c, 0, w), 1, "a new cluster's tokens start again");
    c.assert_safe();
}

#[test]
fn a_late_bootstrap_node_is_vouched_for_by_peers_that_booted_counting_it_fresh() {
    let mut c = Cluster::starting(3, 2, Start::Bootstrap, |_| {});
    // Node 2's own questions are slow: nodes 0 and 1 decide first (node 2 answered them Fresh).
    let late = hold(&mut c, |m| m.from == 2 && matches!(m.message, Message::FloorQuery { .. }));
    assert_eq!(late.len(), 2);
    c.settle();
    assert_eq!(statuses(&c, 0), [Event::Serving]);
    assert_eq!(statuses(&c, 1), [Event::Serving]);
    assert_eq!(
        c.node(2).serving_state(c.now),
        ServingState::Bootstrapping { fresh: NodeSet::EMPTY, waiting: NodeSet::from([0, 1]) }
    );
    c.inflight.extend(late);
    c.settle();
    assert_eq!(statuses(&c, 2), [Event::Serving], "booted with its peers: no quarantine in a new cluster");
}

#[test]
fn a_wiped_node_rejoining_a_running_cluster_finds_history_and_is_quarantined_until_serving() {
    let mut c = Cluster::new(3, |_| {});
    assert_eq!(statuses(&c, 1), [Event::Serving], "a first boot serves at once");
    let a = c.lock(1, W, &["r"], None);
    c.settle();
    c.crash(1);
    c.run_for(secs(1));
    let start = c.now;
    c.start(1, Start::Bootstrap);
    drop_rejoin(&mut c, 1, 2); // node 2 cannot answer the rejoin: no shortcut (§6.7)
    c.settle();
    let until = start + c.cfgs[1].effective_quarantine();
    assert_eq!(statuses(&c, 1), [Event::Quarantined { until }], "the quarantine counts from the start");
    assert_eq!(c.node(1).serving_state(c.now), ServingState::Quarantined { until, floor_known: true });
    let b = c.lock(0, W, &["s"], None);
    c.settle();
    assert!(c.is_valid(0, b));
    assert_eq!(c.node(1).grant_count(), 0, "it grants nothing in quarantine");
    let _ = a;
    c.run_until(Instant::from_nanos(until.as_nanos() - 1_000_000));
    assert!(!c.node(1).is_serving(c.now));
    c.run_until(until);
    assert_eq!(c.status[1].last(), Some(&(until, Event::Serving)), "a timer fires when the quarantine ends");
    c.run_for(secs(5));
    assert_eq!(c.status[1].len(), 2, "Serving is reported once");
    c.assert_safe();
}

#[test]
fn two_restarts_in_a_row_are_never_vouched_for_by_an_old_first_boot_decision() {
    let mut c = Cluster::starting(3, 3, Start::Bootstrap, |_| {});
    c.settle();
    let a = c.lock(2, W, &["r"], None);
    c.settle();
    assert!(c.is_valid(2, a));
    for round in 0..2 {
        c.crash(2);
        c.start(2, Start::Bootstrap);
        c.settle();
        assert!(
            matches!(statuses(&c, 2)[..], [Event::Quarantined { .. }, Event::Serving]),
            "restart {round}: peers that booted with an earlier incarnation answer History (then it rejoins): {:?}",
            c.status[2]
        );
        assert_eq!(c.node(2).counters().rejoins, 1, "every peer answered: the quarantine ended at once");
    }
    c.assert_safe();
}

#[test]
fn an_undecided_bootstrap_sends_no_lock_round_until_every_peer_answered() {
    let mut c = Cluster::starting(3, 4, Start::Bootstrap, |_| {});
    c.partition(&[2], &[0, 1]);
    c.settle();
    assert_eq!(
        c.node(0).serving_state(c.now),
        ServingState::Bootstrapping { fresh: NodeSet::from([1]), waiting: NodeSet::from([2]) },
        "one silent peer keeps it undecided: it may hold a lock relying on our old grants"
    );
    let sent = c.node(0).counters().messages_out;
    let waiting = c.lock(0, W, &["r"], None);
    let with_deadline = c.lock(0, W, &["s"], Some(secs(2)));
    let once = c.try_once(0, W, &["t"]);
    c.settle();
    assert_eq!(c.node(0).counters().messages_out, sent, "no lock round while undecided");
    assert_eq!(c.failed(0, once), Some((c.now, FailReason::NoQuorum)), "try_lock fails at once");
    c.run_for(secs(3));
    assert_eq!(c.failed(0, with_deadline).map(|f| f.1), Some(FailReason::NoQuorum));
    assert_eq!(c.failed(0, with_deadline).map(|f| f.0), Some(Instant::from_millis(2_000)), "at its deadline");
    assert_eq!(c.failed(0, waiting), None, "without a deadline it waits");
    c.heal();
    c.run_for(secs(2));
    assert!(c.is_valid(0, waiting), "acquired once every peer answered and it booted");
    for i in 0..3 {
        assert_eq!(statuses(&c, i), [Event::Serving], "node {i}");
    }
    c.assert_safe();
}

#[test]
fn serving_state_reports_floor_recovery_when_the_quarantine_is_over() {
    let mut c = Cluster::new(3, |_| {});
    c.crash(1);
    c.crash(2);
    c.restart(1, None);
    c.restart(2, None);
    c.settle();
    let q = c.cfgs[1].effective_quarantine();
    // Every peer answered the rejoin, so the quarantine is over at once; one floor is not a read quorum.
    assert_eq!(c.node(1).counters().rejoins, 1);
    assert_eq!(
        c.node(1).serving_state(c.now),
        ServingState::RecoveringFloor { known: NodeSet::from([0]), unknown: NodeSet::from([2]), needed: 2 }
    );
    assert_eq!(statuses(&c, 1), [Event::Quarantined { until: Instant::ZERO + q }], "not serving: no Serving");
}

// ----- try_lock -----

#[test]
fn try_lock_fails_contended_at_once_when_another_node_holds_the_lock() {
    let mut c = Cluster::new(3, |_| {});
    let a = c.lock(0, W, &["r"], None);
    c.settle();
    let retries = c.node(1).counters().retries;
    let t = c.try_once(1, W, &["r"]);
    c.settle();
    assert_eq!(c.failed(1, t), Some((Instant::ZERO, FailReason::Contended)), "decided by the answers, at once");
    assert_eq!(c.node(1).counters().retries, retries, "no retry");
    c.unlock(0, a);
    c.settle();
    let t = c.try_once(1, W, &["r"]);
    c.settle();
    assert!(c.is_valid(1, t), "a free lock is taken in one round");
    c.assert_safe();
}

#[test]
fn try_lock_fails_no_quorum_when_a_majority_cannot_answer() {
    let mut c = Cluster::new(3, |_| {});
    c.crash(1);
    c.crash(2);
    let t = c.try_once(0, W, &["r"]);
    c.run_for(secs(3));
    let (at, reason) = c.failed(0, t).expect("fails after one attempt");
    assert_eq!(reason, FailReason::NoQuorum);
    assert_eq!(at, Instant::ZERO + c.cfgs[0].attempt_timeout, "after one attempt, no backoff retries");
}

#[test]
fn a_deadline_after_conflicts_is_a_timeout_even_when_refusals_end_every_attempt_before_all_answers() {
    // n = 4 (write quorum 3): the own locker and the first remote refusal end each attempt before the
    // other two nodes' answers arrive. They are slower, not unreachable.
    for n in [2, 4] {
        let mut c = Cluster::new(n, |_| {});
        let a = c.lock(0, W, &["r"], None);
        c.settle();
        let b = c.lock(1, W, &["r"], Some(secs(2)));
        c.run_for(secs(3));
        assert_eq!(c.failed(1, b).map(|f| f.1), Some(FailReason::Timeout), "n = {n}: held by node 0");
        assert!(c.is_valid(0, a));
    }
}

// ----- peers coming up -----

#[test]
fn a_round_sent_before_a_peer_connected_reaches_it_as_soon_as_it_comes_up() {
    let mut c = Cluster::new(3, |_| {});
    c.with_node(0, |n, now| n.handle_peer_down(now, 2)); // not connected yet
    c.partition(&[0], &[1]); // and the request to node 1 is lost on the way
    let w = c.lock(0, W, &["r"], None);
    c.settle();
    assert_eq!(c.acquired(0, w), None);
    c.heal();
    c.with_node(0, |n, now| n.handle_peer_up(now, 2));
    c.settle();
    assert_eq!(c.acquired(0, w).map(|a| a.0), Some(Instant::ZERO), "no wait for the attempt timeout");
    c.assert_safe();
}

#[test]
fn a_lock_backing_off_for_want_of_a_quorum_retries_when_a_peer_comes_up() {
    let mut c = Cluster::new(3, |_| {});
    c.with_node(0, |n, now| {
        n.handle_peer_down(now, 1);
        n.handle_peer_down(now, 2);
    });
    let w = c.lock(0, W, &["r"], None);
    c.settle();
    assert_eq!(c.acquired(0, w), None, "both peers down: the attempt failed at once");
    c.with_node(0, |n, now| n.handle_peer_up(now, 1));
    c.settle();
    assert_eq!(c.acquired(0, w).map(|a| a.0), Some(Instant::ZERO), "retried at once, not after its backoff");
}

#[test]
fn a_restarted_node_asks_a_peer_for_its_floor_as_soon_as_it_comes_up() {
    let mut c = Cluster::new(3, |_| {});
    c.crash(1);
    c.partition(&[1], &[0, 2]);
    c.restart(1, None); // its first floor queries are lost
    c.settle();
    c.heal();
    assert!(matches!(c.node(1).serving_state(c.now), ServingState::Quarantined { floor_known: false, .. }));
    c.with_node(1, |n, now| {
        n.handle_peer_up(now, 0);
        n.handle_peer_up(now, 2);
    });
    c.settle();
    // The floor queries and the rejoin go out again on peer up: floor learned, every peer answered.
    assert_eq!(c.node(1).serving_state(c.now), ServingState::Serving, "floor learned at once, not at the next retry");
    assert_eq!(c.node(1).counters().rejoins, 1);
}

#[test]
fn a_refresh_in_flight_is_sent_to_a_peer_that_comes_up() {
    let mut c = Cluster::new(3, |c| c.attempt_timeout = secs(5));
    let a = c.lock(0, W, &["r"], None);
    c.settle();
    c.with_node(0, |n, now| n.handle_peer_down(now, 2));
    c.partition(&[0], &[1]);
    let refresh = c.cfgs[0].refresh_interval;
    c.run_for(refresh); // the refresh round: 1 unreachable, 2 believed down
    c.heal();
    let before = c.node(0).lock_info(a).unwrap().valid_until;
    c.with_node(0, |n, now| n.handle_peer_up(now, 2));
    c.settle();
    assert!(c.node(0).lock_info(a).unwrap().valid_until > before, "extended at once by node 2's answer");
}

#[test]
fn a_bootstrap_that_finds_history_after_its_quarantine_would_have_ended_serves_at_once() {
    let mut c = Cluster::new(3, |_| {});
    c.crash(1);
    c.partition(&[1], &[0, 2]);
    c.start(1, Start::Bootstrap);
    let q = c.cfgs[1].effective_quarantine();
    c.run_for(q + secs(1));
    assert!(matches!(c.node(1).serving_state(c.now), ServingState::Bootstrapping { .. }));
    assert!(c.status[1].is_empty());
    c.heal();
    c.with_node(1, |n, now| n.handle_peer_up(now, 0));
    c.with_node(1, |n, now| n.handle_peer_up(now, 2));
    c.settle();
    assert_eq!(statuses(&c, 1), [Event::Serving], "it granted nothing since its start: no quarantine left");
}
