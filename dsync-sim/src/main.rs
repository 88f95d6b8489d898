//! The `dsync-sim` command line: `run` sweeps seeds, `replay` shows (and shrinks) one, `bugs` lists the
//! planted bugs. Parsed with clap (the `cli` feature, on by default; library users turn it off).

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args as ClapArgs, Parser, Subcommand};
use dsync_sim::{generate, run_seed, shrink, PlantedBug, Report, RunOptions, Verdict};
use std::io::Write as _;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Deterministic simulator for dsync: sweeps seeds through faulty worlds, checks safety and liveness,
/// replays and shrinks a failing seed, and proves planted bugs are caught.
///
/// Exit status: 0 when the outcome is the expected one (no unexcused violation, or one with
/// --expect-violation), 1 otherwise, 2 for a bad command line.
#[derive(Parser)]
#[command(name = "dsync-sim", version, arg_required_else_help = true, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Sweep a range of seeds; prints one line per failing seed (with a `repro:` line) and a summary.
    Run(RunArgs),
    /// Run one seed with the full event log and a `verdict:` line; exits as `run` would for that seed.
    Replay(ReplayArgs),
    /// List the planted bug names, one per line (the values --plant-bug accepts).
    Bugs,
    /// Sweep seeds through the REAL dsync-tokio stack (driver, connection engine, TCP link with its
    /// handshake, state directory) under turmoil; same output and exit codes as `run`.
    #[cfg(feature = "stack")]
    Stack(StackArgs),
    /// Run one seed of `stack` with its plan, the event log and a `verdict:` line; exits as `stack` would.
    #[cfg(feature = "stack")]
    StackReplay(StackReplayArgs),
    /// List the planted bug names of the stack simulator (dsync-tokio's), one per line.
    #[cfg(feature = "stack")]
    StackBugs,
}

/// The flags that shape a stack run: the same in `stack`, `stack-replay` and the `repro:` lines.
#[cfg(feature = "stack")]
#[derive(ClapArgs)]
struct StackWorldArgs {
    /// Cluster size: N, or a range A..=B within 1..=16 (the size cycles with the seed: A + seed % span)
    #[arg(long, value_name = "N|A..=B", default_value = "3", value_parser = stack_nodes)]
    nodes: (u64, u64),
    /// Switch on one of dsync-tokio's planted bugs in every node (names: `dsync-sim stack-bugs`)
    #[arg(long, visible_alias = "plant-bug", value_name = "NAME", value_parser = stack_bug_parser())]
    planted_bug: Option<dsync_sim::stack::PlantedBug>,
    /// Switch on one of dsync-core's planted bugs (the protocol's; names: `dsync-sim bugs`) in every node
    #[arg(long, value_name = "NAME", value_parser = core_bug_parser())]
    plant_core_bug: Option<dsync_sim::PlantedBug>,
    /// Expect an unexcused violation: exit 0 if there is one, 1 if there is none
    #[arg(long)]
    expect_violation: bool,
}

#[cfg(feature = "stack")]
#[derive(ClapArgs)]
struct StackArgs {
    /// Seeds to run: A..B (exclusive), A..=B (inclusive) or one seed A
    #[arg(long, visible_alias = "seed", value_name = "A..B", default_value = "0..20", value_parser = range)]
    seeds: (u64, u64),
    #[command(flatten)]
    world: StackWorldArgs,
    /// Run every seed twice and fail on a trace-hash mismatch
    #[arg(long)]
    check_determinism: bool,
    /// Print every seed's event log (long)
    #[arg(long)]
    events_log: bool,
    /// Seeds run at once, each simulation still single-threaded
    #[arg(long, value_name = "J", default_value_t = 1)]
    jobs: usize,
    /// With --expect-violation, keep sweeping after the first violation instead of stopping
    #[arg(long)]
    keep_going: bool,
}

#[cfg(feature = "stack")]
#[derive(ClapArgs)]
struct StackReplayArgs {
    /// The seed to replay (of a range, the first)
    #[arg(long, visible_alias = "seeds", value_name = "S", default_value = "0", value_parser = range)]
    seed: (u64, u64),
    #[command(flatten)]
    world: StackWorldArgs,
    /// Leave out the event log
    #[arg(long)]
    quiet: bool,
    /// Accepted so that `stack`'s NONDETERMINISM repro lines run as printed; replay prints the trace hash
    #[arg(long)]
    check_determinism: bool,
}

/// The flags that shape a world: the same in `run`, `replay` and the `repro:` lines.
#[derive(ClapArgs)]
struct WorldArgs {
    /// Cluster size: N, or a range A..=B / A..B within 1..=64 (the size cycles with the seed: A + seed % span)
    #[arg(long, value_name = "N|A..=B", default_value = "3", value_parser = nodes_range)]
    nodes: (u64, u64),
    /// Switch on one planted bug in every node (names: `dsync-sim bugs`)
    #[arg(long, value_name = "NAME", value_parser = bug_parser())]
    plant_bug: Option<PlantedBug>,
    /// Let clocks drift beyond the configured bound; violations of kinds that rest on it are excused
    #[arg(long)]
    drift_beyond_bound: bool,
    /// Send every K-th delivered message through the wire encoding and back (0: never, 1: all)
    #[arg(long, value_name = "K", default_value_t = DEFAULT_WIRE_EVERY)]
    wire_every: u32,
    /// Expect an unexcused violation: exit 0 if there is one, 1 if there is none
    #[arg(long)]
    expect_violation: bool,
}

#[derive(ClapArgs)]
struct RunArgs {
    /// Seeds to run: A..B (exclusive), A..=B (inclusive) or one seed A
    #[arg(long, visible_alias = "seed", value_name = "A..B", default_value = "0..100", value_parser = range)]
    seeds: (u64, u64),
    #[command(flatten)]
    world: WorldArgs,
    /// Run every seed twice and fail on a trace-hash mismatch
    #[arg(long)]
    check_determinism: bool,
    /// Seeds run at once, each world still single-threaded
    #[arg(long, value_name = "J", default_value_t = 1)]
    jobs: usize,
    /// With --expect-violation, keep sweeping after the first violation instead of stopping
    #[arg(long)]
    keep_going: bool,
}

#[derive(ClapArgs)]
struct ReplayArgs {
    /// The seed to replay (of a range, the first)
    #[arg(long, visible_alias = "seeds", value_name = "S", default_value = "0", value_parser = range)]
    seed: (u64, u64),
    #[command(flatten)]
    world: WorldArgs,
    /// Shrink the schedule of a failing seed to a minimal one that still fails the same way
    #[arg(long)]
    shrink: bool,
    /// Leave out the event log
    #[arg(long)]
    quiet: bool,
    /// Accepted so that `run`'s NONDETERMINISM repro lines run as printed; replay prints the trace hash
    #[arg(long)]
    check_determinism: bool,
}

/// What `run` and `replay` share once parsed.
struct Args {
    seeds: (u64, u64),
    nodes: (usize, usize),
    bug: Option<PlantedBug>,
    expect: bool,
    determinism: bool,
    drift: bool,
    jobs: usize,
    wire_every: u32,
    keep_going: bool,
    shrink: bool,
    quiet: bool,
}

impl Args {
    fn new(seeds: (u64, u64), w: WorldArgs) -> Args {
        Args {
            seeds,
            nodes: (w.nodes.0 as usize, w.nodes.1 as usize),
            bug: w.plant_bug,
            expect: w.expect_violation,
            determinism: false,
            drift: w.drift_beyond_bound,
            jobs: 1,
            wire_every: w.wire_every,
            keep_going: false,
            shrink: false,
            quiet: false,
        }
    }
}

const DEFAULT_WIRE_EVERY: u32 = 4;

/// `A..B` (exclusive), `A..=B` (inclusive) or `A`.
fn range(s: &str) -> Result<(u64, u64), String> {
    let bad = || format!("bad range {s:?}");
    if let Some((a, b)) = s.split_once("..=") {
        let b: u64 = b.parse().map_err(|_| bad())?;
        Ok((a.parse().map_err(|_| bad())?, b.checked_add(1).ok_or_else(bad)?))
    } else if let Some((a, b)) = s.split_once("..") {
        Ok((a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?))
    } else {
        let a: u64 = s.parse().map_err(|_| bad())?;
        Ok((a, a.checked_add(1).ok_or_else(bad)?))
    }
}

fn nodes_range(s: &str) -> Result<(u64, u64), String> {
    let (lo, hi) = range(s)?;
    if lo < 1 || hi > 65 || lo >= hi {
        return Err("--nodes must be within 1..=64".into());
    }
    Ok((lo, hi))
}

fn bug_parser() -> impl TypedValueParser<Value = PlantedBug> {
    PossibleValuesParser::new(PlantedBug::ALL.map(PlantedBug::name))
        .map(|name| PlantedBug::from_name(&name).expect("a listed name"))
}

fn opts_for(a: &Args, seed: u64, log: bool) -> RunOptions {
    let span = (a.nodes.1 - a.nodes.0) as u64;
    RunOptions {
        nodes: a.nodes.0 + (seed % span) as usize,
        planted_bug: a.bug,
        drift_beyond_bound: a.drift,
        log,
        wire_every: a.wire_every,
    }
}

fn repro(a: &Args, seed: u64, nodes: usize) -> String {
    let mut s = format!("dsync-sim replay --seed {seed} --nodes {nodes}");
    if let Some(b) = a.bug {
        s += &format!(" --plant-bug {}", b.name());
    }
    if a.drift {
        s += " --drift-beyond-bound";
    }
    if a.wire_every != DEFAULT_WIRE_EVERY {
        s += &format!(" --wire-every {}", a.wire_every);
    }
    s
}

/// The line `run` prints for a failing or excused seed, and `replay` prints as its verdict.
fn verdict_line(seed: u64, r: &Report) -> Option<String> {
    let first = r.first_unexcused()?;
    Some(match r.verdict() {
        Verdict::Pass => return None,
        Verdict::AssumptionBroken => {
            format!("ASSUMPTION BROKEN (drift beyond bound) seed={seed} nodes={}: {first}", r.nodes)
        }
        Verdict::Violation => {
            format!("VIOLATION seed={seed} nodes={} ({} found): {first}", r.nodes, r.violations.len())
        }
    })
}

fn run(a: Args) -> ExitCode {
    let start = Instant::now();
    let (lo, hi) = a.seeds;
    let total = hi.saturating_sub(lo);
    let next = AtomicU64::new(lo);
    let stop = AtomicBool::new(false);
    let done = AtomicU64::new(0);
    let events = AtomicU64::new(0);
    let results: Mutex<Vec<(u64, Report, Option<u64>)>> = Mutex::new(Vec::new());
    let last_progress = Mutex::new(Instant::now());
    // Seeds are independent worlds; `--jobs` runs several at once, each world still single-threaded.
    std::thread::scope(|s| {
        for _ in 0..a.jobs.max(1) {
            s.spawn(|| loop {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= hi {
                    break;
                }
                let opts = opts_for(&a, seed, false);
                let r = run_seed(seed, &opts);
                let second = a.determinism.then(|| run_seed(seed, &opts).hash);
                events.fetch_add(r.events, Ordering::Relaxed);
                let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                let failed = r.verdict() == Verdict::Violation || second.is_some_and(|h| h != r.hash);
                if failed && a.expect && !a.keep_going {
                    stop.store(true, Ordering::Relaxed);
                }
                if failed || !r.violations.is_empty() {
                    results.lock().expect("no panics").push((seed, r, second));
                }
                let mut lp = last_progress.lock().expect("no panics");
                if lp.elapsed().as_secs_f64() >= 2.0 {
                    *lp = Instant::now();
                    eprintln!(
                        "progress: {d}/{total} seeds, {} events, {:.1}s",
                        events.load(Ordering::Relaxed),
                        start.elapsed().as_secs_f64()
                    );
                }
            });
        }
    });
    let mut results = results.into_inner().expect("no panics");
    results.sort_by_key(|r| r.0);
    let mut violations = 0u64;
    let mut broken = 0u64;
    for (seed, r, second) in &results {
        if let Some(h) = second {
            if *h != r.hash {
                violations += 1;
                println!("NONDETERMINISM seed={seed} nodes={}: hash {:016x} then {h:016x}", r.nodes, r.hash);
                println!("  repro: {} --check-determinism", repro(&a, *seed, r.nodes));
                continue;
            }
        }
        let Some(line) = verdict_line(*seed, r) else { continue };
        match r.verdict() {
            Verdict::AssumptionBroken => broken += 1,
            _ => violations += 1,
        }
        println!("{line}");
        println!("  repro: {}", repro(&a, *seed, r.nodes));
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
    let ev = events.load(Ordering::Relaxed);
    let secs = start.elapsed().as_secs_f64().max(1e-9);
    if a.drift || broken > 0 {
        println!(
            "assumption_broken={broken} (clocks beyond the configured bound; only violations of kinds that rest \
             on it are excused)"
        );
    }
    if let Some(b) = a.bug {
        match results.iter().find(|r| r.1.verdict() == Verdict::Violation) {
            Some((seed, r, _)) => {
                let kind = r.first_unexcused().map(|v| v.kind);
                println!("planted bug {} caught at seed {seed} ({:?})", b.name(), kind.expect("a violation"))
            }
            None => println!("planted bug {} NOT caught in {seeds} seeds", b.name()),
        }
    }
    println!("seeds={seeds} events={ev} violations={violations} events_per_sec={:.0}", ev as f64 / secs);
    let failed = violations > 0;
    if failed != a.expect {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn replay(a: Args) -> ExitCode {
    let seed = a.seeds.0;
    let opts = opts_for(&a, seed, !a.quiet);
    let (swarm, schedule) = generate(seed, &opts);
    println!("seed={seed} nodes={}", opts.nodes);
    println!("{swarm}");
    println!("schedule: {} faults, {} requests", schedule.faults.len(), schedule.requests.len());
    let r = dsync_sim::run_schedule(seed, swarm.clone(), &schedule, &opts);
    for line in &r.log {
        println!("{line}");
    }
    for v in &r.violations {
        let excused = if r.excused(v) { " (excused: clocks beyond the drift bound)" } else { "" };
        println!("VIOLATION {v}{excused}");
    }
    println!("events={} hash={:016x} violations={} stats={:?}", r.events, r.hash, r.violations.len(), r.stats);
    let verdict = r.verdict();
    match verdict_line(seed, &r) {
        Some(line) => println!("verdict: {line}"),
        None => println!("verdict: PASS seed={seed} nodes={}", r.nodes),
    }
    if a.shrink {
        if let Some(v) = r.first_unexcused() {
            let sopts = RunOptions { log: false, ..opts.clone() };
            let s = shrink::shrink(seed, &swarm, &schedule, &sopts, v.kind, 2000);
            println!(
                "shrunk in {} runs to {} faults and {} requests (still {:?}):",
                s.runs,
                s.schedule.faults.len(),
                s.schedule.requests.len(),
                v.kind
            );
            for f in &s.schedule.faults {
                println!("  {f}");
            }
            for q in &s.schedule.requests {
                println!("  {q}");
            }
            for v in &s.report.violations {
                println!("  VIOLATION {v}");
            }
        } else {
            println!("nothing to shrink: the seed passes");
        }
    }
    // The same rule as `run` for one seed: fail on an unexcused violation, inverted by --expect-violation.
    if (verdict == Verdict::Violation) != a.expect {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(feature = "stack")]
fn stack_nodes(s: &str) -> Result<(u64, u64), String> {
    let (lo, hi) = range(s)?;
    if lo < 1 || hi > 17 || lo >= hi {
        return Err("--nodes must be within 1..=16 for the stack simulator".into());
    }
    Ok((lo, hi))
}

#[cfg(feature = "stack")]
fn stack_bug_parser() -> impl TypedValueParser<Value = dsync_sim::stack::PlantedBug> {
    use dsync_sim::stack::PlantedBug as B;
    PossibleValuesParser::new(B::ALL.map(B::name)).map(|name| B::from_name(&name).expect("a listed name"))
}

#[cfg(feature = "stack")]
fn core_bug_parser() -> impl TypedValueParser<Value = dsync_sim::PlantedBug> {
    use dsync_sim::PlantedBug as B;
    PossibleValuesParser::new(B::ALL.map(B::name)).map(|name| B::from_name(&name).expect("a listed name"))
}

#[cfg(feature = "stack")]
fn stack_opts(w: &StackWorldArgs, seed: u64, log: bool) -> dsync_sim::StackOptions {
    let span = w.nodes.1 - w.nodes.0;
    let nodes = (w.nodes.0 + seed % span) as usize;
    dsync_sim::StackOptions { nodes, planted_bug: w.planted_bug, core_bug: w.plant_core_bug, log }
}

/// The planted bug a stack run was asked to catch, by name (either layer's).
#[cfg(feature = "stack")]
fn stack_bug_name(w: &StackWorldArgs) -> Option<&'static str> {
    w.planted_bug.map(|b| b.name()).or(w.plant_core_bug.map(|b| b.name()))
}

#[cfg(feature = "stack")]
fn stack_repro(w: &StackWorldArgs, seed: u64, nodes: usize) -> String {
    let mut s = format!("dsync-sim stack-replay --nodes {nodes} --seed {seed}");
    if let Some(b) = w.planted_bug {
        s += &format!(" --planted-bug {}", b.name());
    }
    if let Some(b) = w.plant_core_bug {
        s += &format!(" --plant-core-bug {}", b.name());
    }
    s
}

/// `stack`: the same sweep as `run` (progress, failing lines with `repro:`, the kinds histogram, the
/// planted-bug line and the summary line), over real dsync-tokio nodes.
#[cfg(feature = "stack")]
fn stack(a: StackArgs) -> ExitCode {
    let start = Instant::now();
    let (lo, hi) = a.seeds;
    let total = hi.saturating_sub(lo);
    let next = AtomicU64::new(lo);
    let stop = AtomicBool::new(false);
    let done = AtomicU64::new(0);
    let events = AtomicU64::new(0);
    let results: Mutex<Vec<(u64, Report, Option<u64>)>> = Mutex::new(Vec::new());
    let last_progress = Mutex::new(Instant::now());
    std::thread::scope(|s| {
        for _ in 0..a.jobs.max(1) {
            s.spawn(|| loop {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= hi {
                    break;
                }
                let opts = stack_opts(&a.world, seed, a.events_log);
                let r = dsync_sim::run_stack_seed(seed, &opts);
                let second = a.check_determinism.then(|| dsync_sim::run_stack_seed(seed, &opts).hash);
                events.fetch_add(r.events, Ordering::Relaxed);
                let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                let failed = r.verdict() == Verdict::Violation || second.is_some_and(|h| h != r.hash);
                if failed && a.world.expect_violation && !a.keep_going {
                    stop.store(true, Ordering::Relaxed);
                }
                if a.events_log {
                    let mut out = std::io::stdout().lock();
                    for line in &r.log {
                        let _ = writeln!(out, "seed={seed} {line}");
                    }
                }
                if failed || !r.violations.is_empty() {
                    results.lock().expect("no panics").push((seed, r, second));
                }
                let mut lp = last_progress.lock().expect("no panics");
                if lp.elapsed().as_secs_f64() >= 2.0 {
                    *lp = Instant::now();
                    eprintln!(
                        "progress: {d}/{total} seeds, {} events, {:.1}s",
                        events.load(Ordering::Relaxed),
                        start.elapsed().as_secs_f64()
                    );
                }
            });
        }
    });
    let mut results = results.into_inner().expect("no panics");
    results.sort_by_key(|r| r.0);
    let mut violations = 0u64;
    for (seed, r, second) in &results {
        if let Some(h) = second {
            if *h != r.hash {
                violations += 1;
                println!("NONDETERMINISM seed={seed} nodes={}: hash {:016x} then {h:016x}", r.nodes, r.hash);
                println!("  repro: {} --check-determinism", stack_repro(&a.world, *seed, r.nodes));
                continue;
            }
        }
        let Some(line) = verdict_line(*seed, r) else { continue };
        violations += 1;
        println!("{line}");
        println!("  repro: {}", stack_repro(&a.world, *seed, r.nodes));
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
    if let Some(b) = stack_bug_name(&a.world) {
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
    if (violations > 0) != a.world.expect_violation {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(feature = "stack")]
fn stack_replay(a: StackReplayArgs) -> ExitCode {
    let seed = a.seed.0;
    let opts = stack_opts(&a.world, seed, !a.quiet);
    println!("seed={seed} nodes={}", opts.nodes);
    print!("{}", dsync_sim::stack::plan_for(seed, &opts));
    let r = dsync_sim::run_stack_seed(seed, &opts);
    for line in &r.log {
        println!("{line}");
    }
    for v in &r.violations {
        println!("VIOLATION {v}");
    }
    println!("events={} hash={:016x} violations={} stats={:?}", r.events, r.hash, r.violations.len(), r.stats);
    let verdict = r.verdict();
    match verdict_line(seed, &r) {
        Some(line) => println!("verdict: {line}"),
        None => println!("verdict: PASS seed={seed} nodes={}", r.nodes),
    }
    if (verdict == Verdict::Violation) != a.world.expect_violation {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn main() -> ExitCode {
    match Cli::parse().command {
        #[cfg(feature = "stack")]
        Command::Stack(s) => stack(s),
        #[cfg(feature = "stack")]
        Command::StackReplay(r) => {
            let _ = r.check_determinism;
            stack_replay(r)
        }
        #[cfg(feature = "stack")]
        Command::StackBugs => {
            for b in dsync_sim::stack::PlantedBug::ALL {
                println!("{}", b.name());
            }
            ExitCode::SUCCESS
        }
        Command::Bugs => {
            for b in PlantedBug::ALL {
                println!("{}", b.name());
            }
            ExitCode::SUCCESS
        }
        Command::Run(r) => run(Args {
            determinism: r.check_determinism,
            jobs: r.jobs,
            keep_going: r.keep_going,
            ..Args::new(r.seeds, r.world)
        }),
        Command::Replay(r) => {
            // `--check-determinism` changes nothing here: replay runs the seed once and prints its hash.
            let _ = r.check_determinism;
            replay(Args { shrink: r.shrink, quiet: r.quiet, ..Args::new(r.seed, r.world) })
        }
    }
}
