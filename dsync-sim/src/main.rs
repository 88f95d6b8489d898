//! The `dsync-sim` command line: `run` sweeps seeds, `replay` shows (and shrinks) one, `bugs` lists the
//! planted bugs. Parsed with clap (the `cli` feature, on by default; library users turn it off).

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args as ClapArgs, Parser, Subcommand};
use dsync_sim::{generate, run_seed, shrink, PlantedBug, Report, RunOptions, Verdict};
use std::io::Write as _;
use std::process::ExitCode;

mod sweep;

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
    let planted = a.bug.map(|b| b.name());
    sweep::sweep(&sweep::Sweep {
        seeds: a.seeds,
        jobs: a.jobs,
        determinism: a.determinism,
        expect: a.expect,
        keep_going: a.keep_going,
        run: &|seed| run_seed(seed, &opts_for(&a, seed, false)),
        each: &|_, _| {},
        repro: &|seed, nodes| repro(&a, seed, nodes),
        planted,
        drift: a.drift,
    })
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
    let log = |seed: u64, r: &Report| {
        if a.events_log {
            let mut out = std::io::stdout().lock();
            for line in &r.log {
                let _ = writeln!(out, "seed={seed} {line}");
            }
        }
    };
    sweep::sweep(&sweep::Sweep {
        seeds: a.seeds,
        jobs: a.jobs,
        determinism: a.check_determinism,
        expect: a.world.expect_violation,
        keep_going: a.keep_going,
        run: &|seed| dsync_sim::run_stack_seed(seed, &stack_opts(&a.world, seed, a.events_log)),
        each: &log,
        repro: &|seed, nodes| stack_repro(&a.world, seed, nodes),
        planted: stack_bug_name(&a.world),
        drift: false,
    })
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
