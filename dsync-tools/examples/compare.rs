//! dsync against Redlock, side by side on this machine: starts `n` local `redis-server` processes on loopback
//! and drives them with the `rslock` crate under the dsync bench's workload (n clients × 5 closed loops, each
//! locking and unlocking its own resource), runs dsync over TCP and QUIC through the `bench` example, for
//! n = 4, 8, 16, alternating the systems every round so machine drift hits all alike; then the same with every
//! loop on one resource (hand-off latency, longest wait). Prints a markdown table, writes it to
//! `docs/compare.md`, and renders `docs/throughput.svg` and `docs/latency-cdf-n<N>.svg`.
//!
//! ```text
//! cargo run --release -p dsync-tools --features compare --example compare
//!     [-- --nodes 4,8,16 --rounds 2 --seconds 10 --hot-seconds 5 --loops 5 --warmup 1
//!         --systems redlock,tcp,quic --redlock-retry-ms 200 --ttl-ms 30000 --processes
//!         --out DIR --redis-server PATH --bench-bin PATH]
//! ```
//! Without `redis-server` (Debian: `apt-get install redis-server`) the Redlock rows are skipped with a
//! message; a bench without `--transport quic` skips the QUIC rows the same way.
//!
//! Redlock is set up as its crate intends: each client one `LockManager` over all `n` servers, the key's TTL
//! equal to dsync's default lease (30 s), a failed attempt retried after a random 0–200 ms (rslock's default;
//! made by this harness, one attempt per `lock()`, so failed attempts are counted), and `unlock` awaited (a
//! dropped rslock guard keeps the key until its TTL). Hand-off is timed from the holder's release call to the
//! next holder's acquire, by any client or node in the process.

// An example's modules live beside it, under `examples/compare/`.
#[path = "compare/dsync.rs"]
mod dsync;
#[path = "compare/hist.rs"]
mod hist;
#[path = "compare/plots.rs"]
mod plots;
#[path = "compare/redis.rs"]
mod redis;
#[path = "compare/redlock.rs"]
mod redlock;
#[path = "compare/report.rs"]
mod report;

use clap::Parser;
use report::{Cell, Results, System};
use std::path::PathBuf;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};

#[derive(Clone, Debug)]
struct Opts {
    nodes: Vec<usize>,
    rounds: usize,
    seconds: f64,
    hot_seconds: f64,
    loops: usize,
    warmup: f64,
    systems: Vec<System>,
    retry: Duration,
    ttl: Duration,
    processes: bool,
    out: PathBuf,
    redis_server: String,
    bench_bin: Option<PathBuf>,
}

/// dsync against Redlock, side by side on this machine: local redis-server processes driven by the rslock
/// crate and dsync over TCP and QUIC through the `bench` example, under the same workload; writes a markdown
/// table (compare.md) and SVG plots to --out.
#[derive(Parser, Debug)]
#[command(name = "compare", version)]
struct Cli {
    /// Cluster sizes to compare (each 1..=64).
    #[arg(long, value_name = "N,N,..", value_delimiter = ',', default_value = "4,8,16", value_parser = node_count)]
    nodes: Vec<usize>,
    /// Rounds per cluster size, alternating the systems every round (≥ 1).
    #[arg(long, value_name = "R", default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..))]
    rounds: u64,
    /// Seconds measured per run (> 0).
    #[arg(long, value_name = "S", default_value_t = 10.0, value_parser = positive)]
    seconds: f64,
    /// Seconds measured per hot run, every loop on one resource (0: no hot runs).
    #[arg(long, value_name = "S", default_value_t = 5.0, value_parser = non_negative)]
    hot_seconds: f64,
    /// Closed loops per node or client (≥ 1).
    #[arg(long, value_name = "L", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    loops: u64,
    /// Seconds of load before each run's measurement.
    #[arg(long, value_name = "S", default_value_t = 1.0, value_parser = non_negative)]
    warmup: f64,
    /// The systems to run: redlock, tcp (dsync over TCP), quic (dsync over QUIC).
    #[arg(long, value_name = "S,S,..", value_delimiter = ',', default_value = "redlock,tcp,quic", value_parser = system)]
    systems: Vec<System>,
    // rslock's own default; shorter delays made contended Redlock slower and, from n = 8, livelock-prone
    // (split votes that every client retries at once).
    /// Redlock: a failed attempt is retried after a random 0..MS milliseconds (rslock's default).
    #[arg(long, value_name = "MS", default_value_t = 200.0, value_parser = non_negative)]
    redlock_retry_ms: f64,
    // dsync's default lease: the same promise of how long a crashed holder blocks others.
    /// Redlock keys' TTL in milliseconds (> 0; dsync's default lease).
    #[arg(long, value_name = "MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..))]
    ttl_ms: u64,
    /// Every dsync node in its own OS process (the bench's --processes).
    #[arg(long)]
    processes: bool,
    /// Where compare.md and the plots go [default: the workspace's docs/].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// The redis-server binary to start.
    #[arg(long, value_name = "PATH", default_value = "redis-server")]
    redis_server: String,
    /// The bench example's binary [default: built with the cargo that runs compare, beside compare's binary].
    #[arg(long, value_name = "PATH")]
    bench_bin: Option<PathBuf>,
}

/// One `--nodes` entry.
fn node_count(v: &str) -> Result<usize, String> {
    v.parse().ok().filter(|n| (1..=64).contains(n)).ok_or(format!("bad node count {v} (1..=64)"))
}

/// One `--systems` entry.
fn system(v: &str) -> Result<System, String> {
    match v {
        "redlock" => Ok(System::Redlock),
        "tcp" => Ok(System::DsyncTcp),
        "quic" => Ok(System::DsyncQuic),
        _ => Err(format!("unknown system {v} (redlock, tcp, quic)")),
    }
}

/// A finite number ≥ 0.
fn non_negative(v: &str) -> Result<f64, String> {
    v.parse::<f64>().ok().filter(|x| x.is_finite() && *x >= 0.0).ok_or(format!("{v:?} is not a number ≥ 0"))
}

/// A finite number > 0.
fn positive(v: &str) -> Result<f64, String> {
    non_negative(v).ok().filter(|&x| x > 0.0).ok_or(format!("{v:?} is not a number > 0"))
}

fn opts() -> Opts {
    let cli = Cli::parse();
    Opts {
        nodes: cli.nodes,
        rounds: cli.rounds as usize,
        seconds: cli.seconds,
        hot_seconds: cli.hot_seconds,
        loops: cli.loops as usize,
        warmup: cli.warmup,
        systems: cli.systems,
        retry: Duration::from_secs_f64(cli.redlock_retry_ms / 1000.0),
        ttl: Duration::from_millis(cli.ttl_ms),
        processes: cli.processes,
        // The workspace's docs/, wherever the command is run from.
        out: cli.out.unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().map_or(PathBuf::from("docs"), |w| w.join("docs"))
        }),
        redis_server: cli.redis_server,
        bench_bin: cli.bench_bin,
    }
}

fn main() {
    let o = opts();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let code = rt.block_on(async {
        // Registered before anything starts, so Ctrl-C always drops `run` (and with it the child processes).
        let (mut int, mut term) = match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
            (Ok(i), Ok(t)) => (i, t),
            _ => {
                eprintln!("compare: cannot install signal handlers");
                return 1;
            }
        };
        tokio::select! {
            r = run(o) => match r {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("compare: {e}");
                    1
                }
            },
            _ = int.recv() => { eprintln!("compare: interrupted; redis-server and bench processes stopped"); 130 }
            _ = term.recv() => { eprintln!("compare: terminated; redis-server and bench processes stopped"); 143 }
        }
    });
    // Redlock client threads may still be winding down; they hold no processes.
    rt.shutdown_timeout(Duration::from_secs(2));
    std::process::exit(code);
}

/// Which systems are still in the run, and why any was dropped.
struct Roster {
    systems: Vec<System>,
    bench: Option<PathBuf>,
}

async fn run(o: Opts) -> Result<(), String> {
    let mut roster = Roster { systems: o.systems.clone(), bench: None };
    if roster.systems.contains(&System::Redlock) {
        match redis::check(&o.redis_server) {
            Ok(v) => eprintln!("compare: using {v}"),
            Err(e) => {
                eprintln!("compare: {e}");
                roster.systems.retain(|&s| s != System::Redlock);
            }
        }
    }
    if roster.systems.is_empty() {
        eprintln!("compare: no system left to measure; nothing written");
        return Ok(());
    }
    if roster.systems.iter().any(|&s| s != System::Redlock) {
        roster.bench = Some(dsync::locate(o.bench_bin.clone())?);
    }
    let load_start = loadavg();
    let scratch = std::env::temp_dir().join(format!("dsync-compare-{}.lat", std::process::id()));
    let mut results = Results::default();
    let workloads: &[(bool, f64)] =
        if o.hot_seconds > 0.0 { &[(false, o.seconds), (true, o.hot_seconds)] } else { &[(false, o.seconds)] };
    for round in 0..o.rounds {
        for &n in &o.nodes {
            for &(hot, seconds) in workloads {
                // Alternate the order every round (and per workload) so slow drift of the machine is shared.
                let mut order = roster.systems.clone();
                if (round + hot as usize) % 2 == 1 {
                    order.reverse();
                }
                for sys in order {
                    if !roster.systems.contains(&sys) {
                        continue; // dropped earlier in this round
                    }
                    let what = if hot { "hot" } else { "spread" };
                    eprint!("compare: round {}/{} n={n} {what} {} ... ", round + 1, o.rounds, sys.label());
                    match measure(&o, &mut roster, sys, n, hot, seconds, &scratch).await? {
                        Some(cell) => {
                            eprintln!("{:.0} locks/s", cell.rates[0]);
                            let table = if hot { &mut results.hot } else { &mut results.spread };
                            let into = table.entry((n, sys)).or_default();
                            into.rates.extend(cell.rates);
                            into.acquire.merge(&cell.acquire);
                            into.handoff.merge(&cell.handoff);
                            into.max_wait_ns = into.max_wait_ns.max(cell.max_wait_ns);
                            if let Some(f) = cell.failed_attempts {
                                *into.failed_attempts.get_or_insert(0) += f;
                            }
                        }
                        None => eprintln!("skipped"),
                    }
                }
            }
        }
    }
    finish(&o, &results, &load_start)
}

/// One run of `sys`; `Ok(None)` when the system turned out to be unavailable (it is then dropped).
async fn measure(
    o: &Opts,
    roster: &mut Roster,
    sys: System,
    n: usize,
    hot: bool,
    seconds: f64,
    scratch: &std::path::Path,
) -> Result<Option<Cell>, String> {
    if sys == System::Redlock {
        let servers = redis::start(&o.redis_server, n)?;
        let settings =
            redlock::Settings { loops: o.loops, seconds, warmup: o.warmup, hot, ttl: o.ttl, retry_delay: o.retry };
        let addrs = servers.addrs.clone();
        // `servers` stays owned here, so an interrupt that drops this future kills them.
        let out = tokio::task::spawn_blocking(move || redlock::run(&addrs, &settings))
            .await
            .map_err(|e| format!("Redlock run: {e}"))??;
        drop(servers);
        return Ok(Some(Cell {
            rates: vec![out.locks as f64 / out.elapsed],
            acquire: out.acquire,
            handoff: out.handoff,
            max_wait_ns: out.max_wait_ns,
            failed_attempts: Some(out.failed_attempts),
        }));
    }
    let transport = if sys == System::DsyncQuic { "quic" } else { "tcp" };
    let bin = roster.bench.clone().ok_or("no bench binary")?;
    let req =
        dsync::Request { transport, nodes: n, loops: o.loops, seconds, warmup: o.warmup, hot, processes: o.processes };
    match dsync::run(&bin, &req, scratch).await {
        Ok(b) => Ok(Some(Cell {
            rates: vec![b.locks_per_sec],
            acquire: b.latencies.acquire,
            handoff: b.latencies.handoff,
            max_wait_ns: b.latencies.max_wait_ns,
            failed_attempts: None,
        })),
        Err(dsync::BenchError::Unsupported(why)) => {
            eprintln!("\ncompare: the bench has no {transport} transport ({why}); skipping its rows");
            roster.systems.retain(|&s| s != sys);
            Ok(None)
        }
        Err(dsync::BenchError::Failed(why)) => Err(format!("dsync over {transport}, n={n}: {why}")),
    }
}

/// The 1-minute load average, to tell a quiet machine from a busy one in the report.
fn loadavg() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace().next().unwrap_or("?").to_string()
}

fn finish(o: &Opts, r: &Results, load_start: &str) -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut md = format!(
        "<!-- written by compare.rs; rerun: cargo run --release -p dsync-tools --features compare --example \
         compare -- {} -->\n\
         Machine: {cpus} CPUs, 1-minute load average {load_start} at the start and {} at the end.\n\
         Settings: {} round(s), {} s measured per run after {} s warm-up ({}), {} loops per \
         node/client; Redlock TTL {} ms, retry after a random 0–{} ms; dsync nodes {}. Locks/s is the median \
         of the rounds, latencies are over all rounds.\n\n",
        args.join(" "),
        loadavg(),
        o.rounds,
        o.seconds,
        o.warmup,
        if o.hot_seconds > 0.0 { format!("{} s for the hot runs", o.hot_seconds) } else { "no hot runs".into() },
        o.loops,
        o.ttl.as_millis(),
        o.retry.as_secs_f64() * 1000.0,
        if o.processes {
            "each in its own process"
        } else {
            "spread over one thread per core (the bench default), each thread with a single-threaded runtime"
        }
    );
    md.push_str(&report::markdown(r));
    let failed: Vec<String> = [("own resources", &r.spread), ("hot", &r.hot)]
        .into_iter()
        .flat_map(|(what, t)| {
            t.iter().filter_map(move |(&(n, _), c)| c.failed_attempts.map(|f| format!("n={n} {what}: {f}")))
        })
        .collect();
    if !failed.is_empty() {
        md.push_str(&format!("\nRedlock attempts without a quorum (each retried): {}.\n", failed.join("; ")));
    }
    println!("{md}");
    std::fs::create_dir_all(&o.out).map_err(|e| format!("{}: {e}", o.out.display()))?;
    let table = o.out.join("compare.md");
    std::fs::write(&table, &md).map_err(|e| format!("{}: {e}", table.display()))?;
    let plots = plots::render(r, &o.out).map_err(|e| format!("plots: {e}"))?;
    eprintln!("compare: wrote {}", table.display());
    for p in plots {
        eprintln!("compare: wrote {}", p.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent_and_lists_default_to_everything() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["compare"]).expect("defaults parse");
        assert_eq!(cli.nodes, [4, 8, 16]);
        assert_eq!(cli.systems, [System::Redlock, System::DsyncTcp, System::DsyncQuic]);
        let cli = Cli::try_parse_from(["compare", "--nodes", "3,5", "--systems", "tcp"]).expect("lists parse");
        assert_eq!((cli.nodes, cli.systems), (vec![3, 5], vec![System::DsyncTcp]));
        assert!(Cli::try_parse_from(["compare", "--nodes", "65"]).is_err());
    }
}
