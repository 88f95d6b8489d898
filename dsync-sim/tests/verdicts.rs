//! Honest verdicts: a violation is excused as "assumption broken" only when the run's clocks actually left
//! the drift bound and the violation's kind rests on that bound; `replay` reproduces `run`'s verdict and
//! exit code; liveness deadlines are judged in true time.

use dsync_sim::{
    run_schedule, run_seed, Fault, FaultEvent, Kind, PlantedBug, Request, RunOptions, Schedule, Swarm, Verdict, World,
    WorldOptions,
};
use std::process::Command;

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

fn sim(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dsync-sim")).args(args).output().expect("runs");
    (out.status.code().expect("exit code"), String::from_utf8_lossy(&out.stdout).into_owned())
}

/// For each seed and set of flags: `run` on that one seed and `replay` (and the `repro:` line `run` prints,
/// run as printed) agree on the verdict line and the exit code.
#[test]
fn run_and_replay_agree_on_verdict_and_exit_code() {
    let flag_sets: [&[&str]; 4] = [
        &[],
        &["--drift-beyond-bound"],
        &["--drift-beyond-bound", "--plant-bug", "no-locker-expiry"],
        &["--plant-bug", "no-drift-margin", "--wire-every", "1"],
    ];
    let mut excused = 0;
    for flags in flag_sets {
        for seed in [1u64, 5, 7] {
            let seeds = format!("{seed}..{}", seed + 1);
            let mut run_args = vec!["run", "--nodes", "3..=5", "--seeds", &seeds];
            run_args.extend_from_slice(flags);
            let (run_code, run_out) = sim(&run_args);
            let s = seed.to_string();
            let mut replay_args = vec!["replay", "--quiet", "--nodes", "3..=5", "--seed", &s];
            replay_args.extend_from_slice(flags);
            let (replay_code, replay_out) = sim(&replay_args);
            assert_eq!(run_code, replay_code, "seed {seed} {flags:?}:\n{run_out}\n---\n{replay_out}");
            let verdict = replay_out.lines().find_map(|l| l.strip_prefix("verdict: ")).expect("a verdict line");
            match run_out.lines().find(|l| l.starts_with("VIOLATION") || l.starts_with("ASSUMPTION")) {
                Some(line) => {
                    assert_eq!(line, verdict, "seed {seed} {flags:?}");
                    excused += usize::from(line.starts_with("ASSUMPTION"));
                    let repro = run_out.lines().find_map(|l| l.trim().strip_prefix("repro: dsync-sim "));
                    let mut args: Vec<&str> = repro.expect("a repro line").split(' ').collect();
                    args.push("--quiet");
                    let (code, out) = sim(&args);
                    assert_eq!(code, run_code, "repro of seed {seed} {flags:?}");
                    assert!(out.contains(&format!("verdict: {line}")), "repro of seed {seed} {flags:?}");
                }
                None => assert!(verdict.starts_with("PASS"), "seed {seed} {flags:?}: {verdict}"),
            }
        }
    }
    assert!(excused > 0, "the seeds should include an excused drift run");
}
