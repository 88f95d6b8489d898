//! The stack simulator: real dsync-tokio nodes under turmoil. Determinism, a short clean sweep, every
//! planted bug of dsync-tokio caught at a known seed, and a scenario written the way a user would.

use dsync_sim::stack::plan::Fault;
use dsync_sim::stack::{run_stack_seed, PlantedBug, Scenario, ScenarioCtx, StackOptions};
use dsync_sim::{Kind, Verdict};
use std::time::Duration;

fn opts(nodes: usize, bug: Option<PlantedBug>) -> StackOptions {
    StackOptions { nodes, planted_bug: bug, core_bug: None, log: false }
}

#[test]
fn same_seed_same_trace_and_different_seeds_differ() {
    let a = run_stack_seed(5, &opts(3, None));
    let b = run_stack_seed(5, &opts(3, None));
    assert_eq!(a.hash, b.hash, "same seed, same binary: same trace");
    assert_eq!(a.events, b.events);
    assert!(a.events > 100, "the run did something: {} events", a.events);
    let c = run_stack_seed(6, &opts(3, None));
    assert_ne!(a.hash, c.hash, "another seed, another trace");
}

#[test]
fn a_short_clean_sweep_has_no_violation() {
    for seed in 0..6 {
        let nodes = 3 + (seed % 3) as usize;
        let r = run_stack_seed(seed, &opts(nodes, None));
        assert_eq!(r.verdict(), Verdict::Pass, "seed {seed} nodes {nodes}: {:?}", r.violations);
        assert!(r.stats.acquired > 0, "seed {seed}: nothing was ever acquired");
    }
}

/// Each planted bug, at the first seed of `dsync-sim stack --nodes N --planted-bug B` that catches it.
#[test]
fn every_planted_bug_is_caught() {
    let cases = [
        (PlantedBug::AbandonOvertakesRequest, 3, 0, &[Kind::Leak, Kind::Liveness][..]),
        (PlantedBug::LostNotSignalled, 4, 1, &[Kind::Exclusion][..]),
        (PlantedBug::FloorWithoutFsync, 4, 10, &[Kind::TokenOrder][..]),
    ];
    for (bug, nodes, seed, kinds) in cases {
        let r = run_stack_seed(seed, &opts(nodes, Some(bug)));
        assert_eq!(r.verdict(), Verdict::Violation, "{} at seed {seed} was not caught", bug.name());
        let kind = r.first_unexcused().map(|v| v.kind);
        assert!(
            kind.is_some_and(|k| kinds.contains(&k)),
            "{}: caught as {kind:?}, expected one of {kinds:?}",
            bug.name()
        );
        // The same seed without the bug passes: the violation is the bug's.
        let clean = run_stack_seed(seed, &opts(nodes, None));
        assert_eq!(clean.verdict(), Verdict::Pass, "seed {seed} fails without the bug: {:?}", clean.violations);
    }
}

/// The protocol's planted bugs of revocation (PROTOCOL.md §6.8) and fast rejoin (§6.7, step 2) reach the
/// applications through the whole stack: a force-unlocked holder that keeps believing in a quiet network,
/// and a dead incarnation's grant counted after its rejoin (the stack's rejoin race, with the dead
/// connection's frames delivered late). Each at the first seed of `dsync-sim stack --nodes 3
/// --plant-core-bug B` that catches it; the same seed passes without the bug.
#[test]
fn the_protocol_bugs_of_revocation_and_rejoin_are_caught_through_the_stack() {
    use dsync_core::PlantedBug as CoreBug;
    let cases =
        [(CoreBug::RevocationIgnored, 4, Kind::Revocation), (CoreBug::RejoinCountsStaleReplies, 0, Kind::Exclusion)];
    for (bug, seed, kind) in cases {
        let o = StackOptions { core_bug: Some(bug), ..opts(3, None) };
        let r = run_stack_seed(seed, &o);
        let got = r.first_unexcused().map(|v| v.kind);
        assert_eq!(got, Some(kind), "{} at seed {seed}: {:?}", bug.name(), r.violations);
        let clean = run_stack_seed(seed, &opts(3, None));
        assert_eq!(clean.verdict(), Verdict::Pass, "seed {seed} fails without the bug: {:?}", clean.violations);
    }
}

/// A user's scenario: node 0 takes "x" and is cut off from the others; its application then freezes (a GC
/// pause) long past the lease. Node 1 takes "x" meanwhile and writes. When node 0 wakes up and writes
/// with its old token, the fenced register rejects it — and that is no violation, because node 0's guard
/// had signalled `lost()` before.
#[test]
fn a_paused_holder_is_fenced_off_and_that_is_no_violation() {
    let scenario = Scenario::new(opts(3, None), 1)
        .calm()
        .heal_at(Duration::from_secs(12))
        .fault(Duration::from_millis(500), Fault::Hold { side: 0b001, until: 9_000_000_000 })
        .expect("before the heal time")
        .app(|ctx| async move {
            match ctx.id() {
                0 => {
                    let guard = ctx.node().mutex(["x"]).lock().await.expect("lock");
                    let held = ctx.hold(guard, &["x"]);
                    assert!(held.write(), "the first holder's write is accepted");
                    held.freeze(Duration::from_secs(7)).await; // cut off at 0.5 s, frozen until ~7 s
                    assert!(held.guard().is_lost(), "the lease ran out while node 0 was cut off");
                    assert!(!held.write(), "the stale write is fenced off");
                    held.release().await;
                }
                1 => {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    let guard = ctx.node().mutex(["x"]).lock().await.expect("lock");
                    let held = ctx.hold(guard, &["x"]);
                    assert!(held.write(), "the new holder writes with a higher token");
                    held.work(Duration::from_millis(100)).await;
                    held.release().await;
                }
                _ => {}
            }
        });
    let r = scenario.run();
    assert_eq!(r.verdict(), Verdict::Pass, "{:?}", r.violations);
    assert_eq!(r.stats.writes_rejected, 1, "exactly the stale write was rejected: {:?}", r.stats);
    assert!(r.stats.lost >= 1);
}

/// A user's scenario with an administrator: node 1 holds "x" for a long time, node 0 force-unlocks it, and
/// node 2 takes it. The old holder is told `lost()` within a few latencies — and its later stale write is
/// rejected, which is no violation for a voided hold. With the protocol's `revocation-ignored` bug the same
/// scenario is a revocation violation: the old holder kept believing until its next refresh.
#[test]
fn a_force_unlocked_holder_learns_at_once_and_the_new_holder_is_no_violation() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    /// Sleeps until `ms` after node 1 took "x" (recorded in `taken`, true ns; 0 until then).
    async fn after_taken(ctx: &ScenarioCtx, taken: &AtomicU64, ms: u64) {
        loop {
            let t = taken.load(Ordering::SeqCst);
            let wait = if t == 0 { 10_000_000 } else { (t + ms * 1_000_000).saturating_sub(ctx.now()) };
            if t != 0 && wait == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_nanos(wait)).await;
        }
    }

    let run = |core_bug| {
        let o = StackOptions { core_bug, ..opts(3, None) };
        // The others act relative to node 1's acquisition, between two of its refreshes (every 500 ms).
        let taken = Arc::new(AtomicU64::new(0));
        let scenario = Scenario::new(o, 2).calm().heal_at(Duration::from_secs(6)).app(move |ctx| {
            let taken = taken.clone();
            async move {
                match ctx.id() {
                    1 => {
                        let guard = ctx.node().mutex(["x"]).lock().await.expect("lock");
                        taken.store(ctx.now(), Ordering::SeqCst);
                        let held = ctx.hold(guard, &["x"]);
                        assert!(held.write());
                        let lost = held.work(Duration::from_secs(3)).await;
                        assert!(lost, "the force-unlock reached the holder");
                        // A careless application that writes anyway, after the new holder did.
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        assert!(!held.write(), "its stale write is rejected once the new holder wrote");
                        held.release().await;
                    }
                    0 => {
                        after_taken(&ctx, &taken, 1250).await;
                        let report = ctx.force_unlock("x").await.expect("force-unlock");
                        assert_eq!(report.answered.len(), 3, "every node answered");
                        assert!(report.removed >= 2, "a write quorum's grants: {report:?}");
                    }
                    _ => {
                        after_taken(&ctx, &taken, 1300).await;
                        let guard = ctx.node().mutex(["x"]).lock().await.expect("lock");
                        let held = ctx.hold(guard, &["x"]);
                        assert!(held.write(), "the new holder's token is above the old one's");
                        tokio::time::sleep(Duration::from_millis(1500)).await;
                        held.release().await;
                    }
                }
            }
        });
        scenario.run()
    };
    let r = run(None);
    assert_eq!(r.verdict(), Verdict::Pass, "{:?}", r.violations);
    assert_eq!(r.stats.writes_rejected, 1, "the voided holder's stale write: {:?}", r.stats);
    let r = run(Some(dsync_core::PlantedBug::RevocationIgnored));
    assert_eq!(r.first_unexcused().map(|v| v.kind), Some(Kind::Revocation), "{:?}", r.violations);
}

#[test]
fn a_partition_over_a_link_another_one_cuts_at_the_same_time_is_refused() {
    let ms = Duration::from_millis;
    let s = Scenario::new(opts(3, None), 0).calm();
    let s = s.fault(ms(500), Fault::Hold { side: 0b001, until: 1_500_000_000 }).expect("the first partition");
    // Node 0 to node 2 is cut already; node 1 to node 2 is not: one two-way partition over both is refused...
    let both = s.fault(ms(800), Fault::HoldLinks { node: 2, peers: 0b011, until: 1_200_000_000 });
    let Err(e) = both else { panic!("an overlapping partition was accepted") };
    assert_eq!(e, dsync_sim::FaultError::Overlap { at: 800_000_000, other: 500_000_000, link: (0, 2) });
    assert!(e.to_string().contains("link 0–2"), "{e}");
    // ...while the free link alone, or the same links once the first partition is over, are fine.
    let s = Scenario::new(opts(3, None), 0).calm();
    let s = s.fault(ms(500), Fault::Hold { side: 0b001, until: 1_500_000_000 }).expect("the first partition");
    let s = s.fault(ms(800), Fault::HoldLinks { node: 2, peers: 0b010, until: 1_200_000_000 }).expect("another link");
    s.fault(ms(1500), Fault::OneWay { from: 0b001, until: 2_500_000_000 }).expect("after the first ended");
}

#[test]
fn a_fault_after_the_heal_time_is_refused() {
    let s = Scenario::new(opts(3, None), 0).calm();
    let late = s.fault(Duration::from_secs(3), Fault::Reset { a: 0, b: 1 });
    assert!(matches!(late, Err(dsync_sim::FaultError::AfterHeal { .. })));
    let s = Scenario::new(opts(3, None), 0).calm();
    let bad = s.fault(Duration::from_secs(1), Fault::Reset { a: 0, b: 7 });
    assert!(matches!(bad, Err(dsync_sim::FaultError::NoSuchNode { node: 7, nodes: 3 })));
}

/// The command line: `stack` prints `run`'s summary line and exits 0 on a clean sweep; `stack-replay` of a
/// seed where a planted bug is caught prints the plan and a `verdict:` line and exits 1; a bad command line
/// exits 2.
#[test]
fn the_stack_commands_print_and_exit_like_run() {
    let bin = env!("CARGO_BIN_EXE_dsync-sim");
    let out =
        std::process::Command::new(bin).args(["stack", "--nodes", "3", "--seeds", "0..2"]).output().expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let last = stdout.lines().last().unwrap_or_default();
    assert!(last.starts_with("seeds=2 events=") && last.contains(" violations=0 events_per_sec="), "{last}");

    let args = ["stack-replay", "--nodes", "4", "--seed", "1", "--planted-bug", "lost-not-signalled", "--quiet"];
    let out = std::process::Command::new(bin).args(args).output().expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("plan: nodes=4"), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("verdict: VIOLATION seed=1 nodes=4")), "{stdout}");

    let out = std::process::Command::new(bin).args(["stack", "--nodes", "0"]).output().expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let out = std::process::Command::new(bin).args(["stack", "--planted-bug", "nonsense"]).output().expect("runs");
    assert_eq!(out.status.code(), Some(2));
}
