//! Your own application on the real dsync-tokio stack, in deterministic virtual time.
//!
//! Three nodes; every node's application increments a counter protected by the lock "counter" 5 times,
//! writing to the fenced register under its guard. Midway, node 2 is cut off from the others (its TCP
//! segments held) for 3 s while it may be holding the lock, and node 1 crashes and restarts from its state
//! directory. The checkers then judge mutual exclusion, fencing, liveness and leaks.
//!
//! ```sh
//! cargo run -p dsync-sim --example stack_scenario -- 42     # the seed (default 1)
//! ```

use dsync_sim::stack::plan::Fault;
use dsync_sim::stack::{Scenario, StackOptions};
use std::time::Duration;

fn main() -> std::process::ExitCode {
    let seed = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(1);
    let scenario = Scenario::new(StackOptions { nodes: 3, log: true, ..StackOptions::default() }, seed)
        .calm()
        .heal_at(Duration::from_secs(15))
        .fault(Duration::from_secs(2), Fault::Hold { side: 0b100, until: 5_000_000_000 })
        .and_then(|s| {
            s.fault(Duration::from_secs(6), Fault::Crash { nodes: 0b010, restart: 6_500_000_000, wipe: false })
        });
    let scenario = match scenario {
        Ok(s) => s,
        Err(e) => {
            eprintln!("bad scenario: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let report = scenario
        .app(|ctx| async move {
            for _ in 0..5 {
                // lock() never gives up: across the partition and the crash it waits for a quorum.
                let Ok(guard) = ctx.node().mutex(["counter"]).lock().await else { return };
                let held = ctx.hold(guard, &["counter"]);
                if !held.work(Duration::from_millis(300)).await {
                    held.write(); // read-modify-write with the guard's fencing token
                }
                held.release().await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .run();
    for line in report.log.iter().filter(|l| !l.contains(" ask ")) {
        println!("{line}");
    }
    for v in &report.violations {
        println!("VIOLATION {v}");
    }
    println!(
        "seed={seed} events={} hash={:016x} holds={} lost={} writes accepted={} rejected={} violations={}",
        report.events,
        report.hash,
        report.stats.acquired,
        report.stats.lost,
        report.stats.writes_accepted,
        report.stats.writes_rejected,
        report.violations.len()
    );
    if report.violations.is_empty() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
