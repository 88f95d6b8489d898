//! The seed sweep `run` and `stack` share (the binary's, not the library's): seeds spread over `--jobs`
//! threads, an optional second run of each for the determinism check, progress lines on stderr, then the
//! failing seeds with their `repro:` lines, the histogram of violation kinds, the planted-bug line and the
//! summary line `seeds=… events=… violations=… events_per_sec=…`; the exit status says whether the outcome
//! was the expected one.

use crate::verdict_line;
use dsync_sim::{Report, Verdict};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// What to sweep and how to report it.
pub(crate) struct Sweep<'a> {
    /// Seeds `lo..hi`.
    pub(crate) seeds: (u64, u64),
    /// Seeds run at once.
    pub(crate) jobs: usize,
    /// Run every seed twice and compare the trace hashes.
    pub(crate) determinism: bool,
    /// A violation is expected (a planted bug): exit 0 only if one is found.
    pub(crate) expect: bool,
    /// With `expect`, keep sweeping after the first violation.
    pub(crate) keep_going: bool,
    /// Runs one seed.
    pub(crate) run: &'a (dyn Fn(u64) -> Report + Sync),
    /// Sees every report as it finishes (e.g. to print its event log).
    pub(crate) each: &'a (dyn Fn(u64, &Report) + Sync),
    /// The `repro:` command for a seed and its cluster size.
    pub(crate) repro: &'a (dyn Fn(u64, usize) -> String + Sync),
    /// The planted bug's name, for the "caught at seed" line.
    pub(crate) planted: Option<&'a str>,
    /// Always print the `assumption_broken=` line (clocks were allowed beyond the bound).
    pub(crate) drift: bool,
}

/// Runs the sweep and prints its report.
pub(crate) fn sweep(s: &Sweep) -> ExitCode {
    let start = Instant::now();
    let (lo, hi) = s.seeds;
    let total = hi.saturating_sub(lo);
    let (next, stop) = (AtomicU64::new(lo), AtomicBool::new(false));
    let (done, events) = (AtomicU64::new(0), AtomicU64::new(0));
    let results: Mutex<Vec<(u64, Report, Option<u64>)>> = Mutex::new(Vec::new());
    let last_progress = Mutex::new(Instant::now());
    // Seeds are independent runs; `--jobs` runs several at once, each still single-threaded.
    std::thread::scope(|sc| {
        for _ in 0..s.jobs.max(1) {
            sc.spawn(|| loop {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= hi {
                    break;
                }
                let r = (s.run)(seed);
                let second = s.determinism.then(|| (s.run)(seed).hash);
                (s.each)(seed, &r);
                events.fetch_add(r.events, Ordering::Relaxed);
                let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                let failed = r.verdict() == Verdict::Violation || second.is_some_and(|h| h != r.hash);
                if failed && s.expect && !s.keep_going {
                    stop.store(true, Ordering::Relaxed);
                }
                if failed || !r.violations.is_empty() {
                    results.lock().expect("no panics").push((seed, r, second));
                }
                let mut lp = last_progress.lock().expect("no panics");
                if lp.elapsed().as_secs_f64() >= 2.0 {
                    *lp = Instant::now();
                    let ev = events.load(Ordering::Relaxed);
                    eprintln!("progress: {d}/{total} seeds, {ev} events, {:.1}s", start.elapsed().as_secs_f64());
                }
            });
        }
    });
    let mut results = results.into_inner().expect("no panics");
    results.sort_by_key(|r| r.0);
    let (mut violations, mut broken) = (0u64, 0u64);
    for (seed, r, second) in &results {
        if let Some(h) = second.filter(|h| *h != r.hash) {
            violations += 1;
            println!("NONDETERMINISM seed={seed} nodes={}: hash {:016x} then {h:016x}", r.nodes, r.hash);
            println!("  repro: {} --check-determinism", (s.repro)(*seed, r.nodes));
            continue;
        }
        let Some(line) = verdict_line(*seed, r) else { continue };
        match r.verdict() {
            Verdict::AssumptionBroken => broken += 1,
            _ => violations += 1,
        }
        println!("{line}");
        println!("  repro: {}", (s.repro)(*seed, r.nodes));
    }
    let mut kinds: std::collections::BTreeMap<String, u64> = Default::default();
    for (_, r, _) in &results {
        let mut ks: Vec<_> = r.violations.iter().map(|v| format!("{:?}", v.kind)).collect();
        ks.sort();
        ks.dedup();
        for k in ks {
            *kinds.entry(k).or_default() += 1;
        }
    }
    if !kinds.is_empty() {
        println!("seeds with each violation kind: {kinds:?}");
    }
    let seeds = done.load(Ordering::Relaxed);
    if s.drift || broken > 0 {
        println!(
            "assumption_broken={broken} (clocks beyond the configured bound; only violations of kinds that rest \
             on it are excused)"
        );
    }
    if let Some(b) = s.planted {
        match results.iter().find(|r| r.1.verdict() == Verdict::Violation) {
            Some((seed, r, _)) => {
                let kind = r.first_unexcused().map(|v| v.kind);
                println!("planted bug {b} caught at seed {seed} ({:?})", kind.expect("a violation"))
            }
            None => println!("planted bug {b} NOT caught in {seeds} seeds"),
        }
    }
    let ev = events.load(Ordering::Relaxed);
    let secs = start.elapsed().as_secs_f64().max(1e-9);
    println!("seeds={seeds} events={ev} violations={violations} events_per_sec={:.0}", ev as f64 / secs);
    if (violations > 0) != s.expect {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
