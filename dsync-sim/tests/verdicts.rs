//! Honest verdicts: a violation is excused as "assumption broken" only when the run's clocks actually left
//! the drift bound and the violation's kind rests on that bound; liveness deadlines are judged in true time.
//! (That `replay` reproduces `run`'s verdict and exit code is in tests/cli.rs, which runs the binary.)

use dsync_sim::{
    run_schedule, run_seed, Fault, FaultEvent, Kind, PlantedBug, Request, RunOptions, Schedule, Swarm, Verdict, World,
    WorldOptions,
};

const MS: u64 = 1_000_000;
const S: u64 = 1_000_000_000;

#[test]
fn a_planted_leak_fails_even_with_clocks_beyond_the_bound() {
    let opts = RunOptions {
        nodes: 3,
        planted_bug: Some(PlantedBug::NoLockerExpiry),
        drift_beyond_bound: true,
        wire_every: 4,
        ..Default::default()
    };
    let caught = (0..10).map(|seed| run_seed(seed, &opts)).find(|r| r.violations.iter().any(|v| v.kind == Kind::Leak));
    let r = caught.expect("no-locker-expiry leaks within 10 seeds");
    assert!(r.clocks_beyond_bound);
    assert_eq!(r.verdict(), Verdict::Violation, "a leak does not rest on the drift bound: {:?}", r.violations);
}

/// Node 0 holds "x" and is cut off; node 1 asks for "x" and gets it once the lockers expire node 0's
/// grants. Node 0's clock runs at `holder_ppm` against a configured bound of 1 %.
fn isolated_holder(holder_ppm: i64) -> dsync_sim::Report {
    let mut swarm = Swarm::calm(3);
    swarm.drift_ppm[0] = holder_ppm;
    let mut holder = Request::write(0, 10 * MS, "x", 10 * S);
    holder.writes = vec![dsync_sim::PlannedWrite { after: 3 * S, pause: 0 }];
    let mut other = Request::write(1, 200 * MS, "x", 3 * S);
    other.writes = vec![dsync_sim::PlannedWrite { after: 0, pause: 0 }];
    let schedule = Schedule {
        faults: vec![
            FaultEvent { at: 100 * MS, fault: Fault::Partition { side: 0b001, one_way: false } },
            FaultEvent { at: 8 * S, fault: Fault::Heal },
        ],
        requests: vec![holder, other],
    };
    run_schedule(5, swarm, &schedule, &RunOptions { nodes: 3, ..Default::default() })
}

#[test]
fn an_exclusion_violation_on_a_clock_beyond_the_bound_is_excused() {
    // Within the bound the scenario is clean ...
    let ok = isolated_holder(-10_000);
    assert!(!ok.clocks_beyond_bound);
    assert_eq!(ok.verdict(), Verdict::Pass, "{:?}", ok.violations);
    // ... and with the holder's clock at half speed it trusts its lock long after the lockers let go.
    let slow = isolated_holder(-500_000);
    assert!(slow.clocks_beyond_bound);
    assert!(slow.violations.iter().any(|v| v.kind == Kind::Exclusion), "{:?}", slow.violations);
    assert!(slow.violations.iter().all(|v| slow.excused(v)), "{:?}", slow.violations);
    assert_eq!(slow.verdict(), Verdict::AssumptionBroken);
}

#[test]
fn the_same_violation_within_the_bound_is_not_excused() {
    let mut r = isolated_holder(-10_000);
    r.violations.push(dsync_sim::Violation { kind: Kind::Exclusion, at: 0, detail: "synthetic".into() });
    assert_eq!(r.verdict(), Verdict::Violation, "clocks within the bound excuse nothing");
}

/// Node 1 holds "probe-hot" until the end, so every contended probe waits; node 0's clock runs ten times
/// slower than true time, so its probe's 1 s deadline comes after the clients stop. That is a probe cut
/// short, not a liveness failure (it was reported as "never resolved" when deadlines were judged on the
/// node's own clock).
#[test]
fn a_probe_on_a_slow_clock_cut_short_by_the_stop_is_not_a_liveness_violation() {
    let mut swarm = Swarm::calm(3);
    swarm.drift_ppm[0] = -900_000;
    let mut w = World::new(swarm, 9, WorldOptions::default());
    w.add_request(Request::write(1, 10 * MS, "probe-hot", Request::UNTIL_RELEASED));
    let v = w.finish().to_vec();
    assert!(v.iter().all(|v| v.kind != Kind::Liveness), "{v:?}");
}

#[test]
fn a_hold_until_released_does_not_overflow() {
    let mut w = World::new(Swarm::calm(3), 3, WorldOptions::default());
    let a = w.add_request(Request::write(0, 10 * MS, "x", u64::MAX));
    w.run_until(10 * S);
    assert!(matches!(w.outcome(a), dsync_sim::RequestOutcome::Acquired { .. }), "{:?}", w.outcome(a));
    let h = w.holds().iter().find(|h| h.node == 0).expect("held");
    assert!(h.open && h.valid_at(w.now()), "still held and refreshed at 10 s");
    assert!(w.finish().is_empty(), "{:?}", w.violations());
}
