//! Scenarios written against the public API, as a user of the simulator would.

use dsync_core::Mode;
use dsync_sim::{
    run_seed, Fault, FaultEvent, Kind, PlantedBug, Request, RequestOutcome, RunOptions, Swarm, World, WorldOptions,
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
    w.add_fault(FaultEvent { at: 100 * MS, fault: Fault::Partition { side: 1, one_way: false } });
    w.add_fault(FaultEvent { at: 8 * S, fault: Fault::Heal });
    let mut other = Request::write(3, 200 * MS, "x", 100 * MS);
    other.deadline = Some(6 * S);
    let other = w.add_request(other);
    w.run_until(S);
    assert!(matches!(w.outcome(holder), RequestOutcome::Acquired(_)));
    assert_eq!(w.outcome(other), RequestOutcome::Pending, "node 0's grants still stand");
    w.run_until(7 * S);
    let RequestOutcome::Acquired(t1) = w.outcome(holder) else { unreachable!() };
    let RequestOutcome::Acquired(t2) = w.outcome(other) else {
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
    assert!(matches!(w.outcome(a), RequestOutcome::Acquired(_)));
    assert!(matches!(w.outcome(b), RequestOutcome::Acquired(_)));
    assert_eq!(w.outcome(wr), RequestOutcome::Pending);
    w.run_until(2 * S);
    assert!(matches!(w.outcome(wr), RequestOutcome::Acquired(_)));
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
