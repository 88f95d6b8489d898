//! MinIO dsync's load harness, on dsync: every node runs `--loops` loops, each locking and unlocking its own
//! resource (or, with `--hot`, all contending for one), for `--seconds`, all on loopback.
//!
//! ```text
//! cargo run --release -p dsync-tools --example bench -- --nodes 4 --loops 5 --seconds 10
//!     [--hot] [--processes | --threads K | --shared-runtime] [--rate LOCKS_PER_SEC] [--warmup S]
//!     [--transport tcp|quic]
//! ```
//! Nodes run in this process, spread over `--threads` OS threads (default: one per core, at most one per node),
//! each thread with a single-threaded tokio runtime; `--threads N` gives every node its own thread,
//! `--processes` its own OS process, `--shared-runtime` puts all nodes on one multi-threaded runtime. With more
//! node threads than cores, the OS time-slices them, and every quorum waits for its share of that.
//! `--transport quic` runs the nodes over QUIC with mutual TLS; their certificates come from a development CA
//! (dsync-quic's `dev` module, not for production) written as PEM files to a temporary directory, which every
//! node (thread or `--processes` child) loads like a real deployment would.
//! Reports total locks/s, p50/p99 acquire latency, CPU seconds per 1,000 locks (all processes), and with
//! `--hot` the hand-off latency (release → next holder acquired) and the longest wait. `--rate` offers a steady
//! total load: a pacing thread hands the loops their turns at evenly spaced instants (see `Pacer`). The first
//! line also gives `steal_pct`, the share of CPU time the hypervisor took from this machine's vCPUs while
//! measuring (from `/proc/stat`): latency tails follow it. The last line is
//! `nodes=<n> locks_per_sec=<x> p50_us=<y> p99_us=<z>`. `--latency-out PATH` writes the acquire (`lat`) and
//! hand-off (`hand`) latencies as `<kind> <ns> <count>` lines, each value cut to three significant digits, and
//! `maxwait <ns>` (read by the `compare` example for its CDF plots).

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};
use dsync_quic::QuicNodeBuilder;
use dsync_tokio::{Node, NodeBuilder};
use dsync_tools::Transport;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

#[derive(Clone)]
struct Opts {
    nodes: usize,
    loops: usize,
    seconds: f64,
    warmup: f64,
    hot: bool,
    processes: bool,
    shared_runtime: bool,
    /// OS threads the in-process nodes are spread over.
    threads: usize,
    rate: Option<f64>,
    latency_out: Option<std::path::PathBuf>,
    child: Option<(usize, Vec<SocketAddr>)>,
    /// With `--transport quic`: the directory of the cluster's PEM files (children get it as `--quic-certs`).
    quic_certs: Option<std::path::PathBuf>,
}

/// `Opts::quic_certs`, for `start`.
static QUIC_CERTS: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

/// MinIO dsync's load harness, on dsync: every node's loops lock and unlock their own resource (or, with
/// --hot, all contend for one) for --seconds, all on loopback.
///
/// The last line is `nodes=<n> locks_per_sec=<x> p50_us=<y> p99_us=<z>`.
#[derive(Parser, Debug)]
#[command(name = "bench", version)]
struct Cli {
    /// Nodes in the cluster (1..=64).
    #[arg(long, value_name = "N", default_value_t = 4)]
    nodes: usize,
    /// Locking loops per node (≥ 1).
    #[arg(long, value_name = "L", default_value_t = 5)]
    loops: usize,
    /// How long to measure, in seconds.
    #[arg(long, value_name = "S", default_value_t = 10.0)]
    seconds: f64,
    /// Seconds of load before measuring starts.
    #[arg(long, value_name = "S", default_value_t = 1.0)]
    warmup: f64,
    /// Offer a steady total load of R locks per second (evenly paced) instead of locking as fast as possible.
    #[arg(long, value_name = "R")]
    rate: Option<f64>,
    /// Write the acquire and hand-off latencies to PATH (`<kind> <ns> <count>` lines; read by `compare`).
    #[arg(long, value_name = "PATH")]
    latency_out: Option<std::path::PathBuf>,
    /// All loops contend for one resource; also reports hand-off latency and the longest wait.
    #[arg(long)]
    hot: bool,
    /// Every node in its own OS process.
    #[arg(long)]
    processes: bool,
    /// All nodes on one multi-threaded runtime.
    #[arg(long)]
    shared_runtime: bool,
    /// OS threads the in-process nodes are spread over, each with a single-threaded runtime [default: one
    /// per core, at most one per node].
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u64).range(1..))]
    threads: Option<u64>,
    /// The transport between the nodes (QUIC: mutual TLS with development certificates written to a temporary
    /// directory).
    #[arg(long, value_enum, default_value_t = Transport::Tcp)]
    transport: Transport,
    /// Internal (--processes): run only node INDEX of --peers, reporting to the parent on stdout.
    #[arg(long, value_name = "INDEX", requires = "peers")]
    child: Option<usize>,
    /// Internal (with --child): every node's address, in index order.
    #[arg(long, value_name = "A,B,C", value_delimiter = ',')]
    peers: Vec<SocketAddr>,
    /// Internal (with --transport quic): the directory of the cluster's PEM files.
    #[arg(long, value_name = "DIR")]
    quic_certs: Option<std::path::PathBuf>,
    /// Ignored (passed by `cargo bench`-style runners).
    #[arg(long, hide = true)]
    bench: bool,
}

fn opts() -> Result<Opts, String> {
    let cli = Cli::parse();
    if cli.nodes == 0 || cli.nodes > 64 || cli.loops == 0 {
        Cli::command().error(ErrorKind::ValueValidation, "--nodes must be 1..=64 and --loops positive").exit();
    }
    let threads = match cli.threads {
        Some(t) => t as usize,
        None => std::thread::available_parallelism().map(|c| c.get()).unwrap_or(2),
    };
    let mut o = Opts {
        nodes: cli.nodes,
        loops: cli.loops,
        seconds: cli.seconds,
        warmup: cli.warmup,
        hot: cli.hot,
        processes: cli.processes,
        shared_runtime: cli.shared_runtime,
        threads: threads.min(cli.nodes),
        rate: cli.rate,
        latency_out: cli.latency_out,
        child: cli.child.map(|id| (id, cli.peers)),
        quic_certs: cli.quic_certs,
    };
    if cli.transport == Transport::Quic && o.quic_certs.is_none() {
        o.quic_certs = Some(dev_certs(o.nodes)?);
    }
    if let Some(dir) = &o.quic_certs {
        let _ = QUIC_CERTS.set(dir.clone());
    }
    Ok(o)
}

/// A development CA and node certificates as PEM files (not for production: see dsync-quic's `dev`).
fn dev_certs(nodes: usize) -> Result<std::path::PathBuf, String> {
    let dir = std::env::temp_dir().join(format!("dsync-bench-certs-{}", std::process::id()));
    let ca = dsync_quic::dev::DevCa::new("dsync").map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("ca.pem"), ca.cert_pem()).map_err(|e| e.to_string())?;
    for i in 0..nodes {
        let (cert, key) = ca.node_pem(i).map_err(|e| e.to_string())?;
        std::fs::write(dir.join(format!("node-{i}.pem")), cert).map_err(|e| e.to_string())?;
        std::fs::write(dir.join(format!("node-{i}.key")), key).map_err(|e| e.to_string())?;
    }
    Ok(dir)
}

/// What one node's loops measured.
#[derive(Default)]
struct Tally {
    locks: AtomicU64,
    latencies_ns: Mutex<Vec<u64>>,
    handoffs_ns: Mutex<Vec<u64>>,
    max_wait_ns: AtomicU64,
}

impl Tally {
    /// What was measured, for the report (no child CPU: the caller adds it in `--processes` mode).
    fn outcome(&self, (elapsed, steal): (f64, f64)) -> Outcome {
        Outcome {
            locks: self.locks.load(Ordering::Relaxed),
            lat: std::mem::take(&mut *self.latencies_ns.lock().unwrap()),
            hand: std::mem::take(&mut *self.handoffs_ns.lock().unwrap()),
            max_wait: self.max_wait_ns.load(Ordering::Relaxed),
            elapsed,
            child_cpu: 0.0,
            steal,
        }
    }
}

/// A whole run's measurements.
struct Outcome {
    locks: u64,
    lat: Vec<u64>,
    hand: Vec<u64>,
    max_wait: u64,
    elapsed: f64,
    /// CPU seconds of `--processes` children.
    child_cpu: f64,
    /// Percent of CPU time the hypervisor stole while measuring.
    steal: f64,
}

/// Warm up, measure for `--seconds`, then tell the loops to stop; returns the measured duration and the
/// share of CPU time stolen by the hypervisor meanwhile (percent).
async fn measure(o: &Opts, measuring: &AtomicBool, stop: &AtomicBool) -> (f64, f64) {
    tokio::time::sleep(Duration::from_secs_f64(o.warmup)).await;
    measuring.store(true, Ordering::Relaxed);
    let began = Instant::now();
    let before = cpu_ticks();
    tokio::time::sleep(Duration::from_secs_f64(o.seconds)).await;
    let after = cpu_ticks();
    measuring.store(false, Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    let steal = 100.0 * after.0.saturating_sub(before.0) as f64 / after.1.saturating_sub(before.1).max(1) as f64;
    (began.elapsed().as_secs_f64(), steal)
}

/// (steal, all) CPU time of the whole machine so far, in clock ticks (the first line of Linux's /proc/stat).
fn cpu_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let t: Vec<u64> =
        stat.lines().next().unwrap_or("").split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest time is already inside user).
    (t.get(7).copied().unwrap_or(0), t.iter().take(8).sum())
}

fn cpu_seconds() -> f64 {
    // utime + stime of this process, in clock ticks of 1/100 s (Linux); children report their own.
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    // After the command name: state (not numeric, skipped), ppid, ..., utime (14th field), stime (15th).
    let f: Vec<u64> = after.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    f.get(10..12).map(|v| v.iter().sum::<u64>() as f64 / 100.0).unwrap_or(0.0)
}

fn main() {
    let o = match opts() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("bench: {e}");
            std::process::exit(1);
        }
    };
    // A node per process (or per thread, below) runs on a single-threaded runtime: its driver, connections
    // and loops then wake each other without crossing threads, as in a deployment of one node per machine.
    if let Some((id, peers)) = o.child.clone() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(child(o, id, peers));
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(parent(o));
}

async fn start(peers: &[SocketAddr], id: usize, listener: Option<TcpListener>) -> Node {
    let mut b = NodeBuilder::new(peers.to_vec(), id).secret("bench").bootstrap();
    if let Some(dir) = QUIC_CERTS.get() {
        // QUIC binds UDP on the port the OS picked for the TCP listener (a separate port space).
        drop(listener);
        let id = dsync_quic::NodeIdentity::from_pem_files(
            dir.join("ca.pem"),
            dir.join(format!("node-{id}.pem")),
            dir.join(format!("node-{id}.key")),
        )
        .expect("node certificate");
        return b.start_quic(id, None).expect("node starts");
    }
    if let Some(l) = listener {
        b = b.listener(l);
    }
    b.start_tcp().await.expect("node starts")
}

/// Waits until every node can take a lock granted by every node (all connections up), so the clock starts on
/// a formed cluster.
async fn ready(node: &Node) {
    let name = format!("ready-{}", node.id());
    let m = node.mutex([name.clone()]);
    loop {
        if let Ok(g) = m.try_lock_for(Duration::from_secs(5)).await {
            let everyone = node.holders(Some(&name)).await.ok().and_then(|e| e.first().map(|e| e.granted_by.len()));
            drop(g);
            if everyone == Some(node.nodes()) {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The last release by any loop in this process, ns since the epoch: a hand-off is timed from the previous
/// holder's release whichever node held it (with `--processes`, only this node's own releases are seen).
static LAST_RELEASE: AtomicU64 = AtomicU64::new(0);

/// `--rate`: one thread hands the loops their turns at evenly spaced instants — turn `k` goes to loop
/// `k mod loops` (numbered across all nodes) at Unix time `k / rate` seconds, a schedule every `--processes`
/// child shares — so the load arrives steadily. (Each loop sleeping on a runtime timer instead rounds its
/// wake-up to a 1 ms tick, and the loops ask in bursts that flatter the result: messages of a burst share
/// syscalls.) A loop still busy when its turn comes takes it when done.
struct Pacer {
    turns: Mutex<Vec<Option<mpsc::UnboundedSender<()>>>>,
}

/// The pacer of this process (one bench run per process).
static PACER: std::sync::OnceLock<Arc<Pacer>> = std::sync::OnceLock::new();

impl Pacer {
    /// Starts the pacing thread for `all` loops and `rate` turns per second in all; it ends, closing every
    /// loop's receiver, once `stop` is set.
    fn start(rate: f64, all: usize, stop: Arc<AtomicBool>) -> Arc<Pacer> {
        let pacer = Arc::new(Pacer { turns: Mutex::new(vec![None; all]) });
        let p = pacer.clone();
        std::thread::spawn(move || p.run(rate, all, &stop));
        pacer
    }

    /// Where loop `g` receives its turns from now on.
    fn join(&self, g: usize) -> mpsc::UnboundedReceiver<()> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.turns.lock().unwrap()[g] = Some(tx);
        rx
    }

    fn run(&self, rate: f64, all: usize, stop: &AtomicBool) {
        // How far ahead of the clock turns of absent loops may be skipped: one round of all loops. Without a
        // bound, skipping (which takes no time) would run ahead while few loops have joined, and the first
        // present loop's turn would then lie seconds in the future.
        let round = Duration::from_secs_f64(all as f64 / rate);
        let unix0 = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let (t0, unix0) = (Instant::now(), unix0.as_secs_f64());
        let mut k = (unix0 * rate).ceil() as u64;
        while !stop.load(Ordering::Relaxed) {
            let turn = {
                let turns = self.turns.lock().unwrap();
                turns[k as usize % turns.len()].clone()
            };
            let due = t0 + Duration::from_secs_f64((k as f64 / rate - unix0).max(0.0));
            match turn {
                Some(tx) => {
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    let _ = tx.send(());
                }
                // Turns of loops in other processes (or not started yet) pass without waiting, up to a round ahead.
                None => {
                    if let Some(wait) = due.checked_duration_since(Instant::now() + round) {
                        std::thread::sleep(wait);
                    }
                }
            }
            k += 1;
        }
        self.turns.lock().unwrap().iter_mut().for_each(|t| *t = None);
    }
}

async fn run_loops(
    node: Node,
    o: &Opts,
    tally: Arc<Tally>,
    measuring: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    epoch: Instant,
) {
    let last_release: &'static AtomicU64 = &LAST_RELEASE;
    let mut tasks = Vec::new();
    for l in 0..o.loops {
        let name = if o.hot { "hot".to_string() } else { format!("node{}-loop{l}", node.id()) };
        let m = node.mutex([name]);
        let all = o.nodes * o.loops;
        let pacer = o.rate.map(|r| PACER.get_or_init(|| Pacer::start(r, all, stop.clone())));
        let mut turns = pacer.map(|p| p.join(node.id() * o.loops + l));
        let (tally, measuring, stop) = (tally.clone(), measuring.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if let Some(turns) = &mut turns {
                    if turns.recv().await.is_none() {
                        return;
                    }
                }
                // Timed from when the loop asks, as MinIO's harness does (a turn taken late is not counted).
                let asked = Instant::now();
                let Ok(g) = m.lock().await else { return };
                let got = Instant::now();
                if measuring.load(Ordering::Relaxed) {
                    let wait = (got - asked).as_nanos() as u64;
                    tally.latencies_ns.lock().unwrap().push(wait);
                    tally.locks.fetch_add(1, Ordering::Relaxed);
                    tally.max_wait_ns.fetch_max(wait, Ordering::Relaxed);
                    let rel = last_release.load(Ordering::Relaxed);
                    let now_ns = (got - epoch).as_nanos() as u64;
                    if rel != 0 && rel <= now_ns {
                        tally.handoffs_ns.lock().unwrap().push(now_ns - rel);
                    }
                }
                drop(g); // released without waiting, like MinIO's Unlock
                last_release.store((Instant::now() - epoch).as_nanos() as u64, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

async fn parent(o: Opts) {
    let listeners: Vec<TcpListener> = (0..o.nodes).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    let peers: Vec<SocketAddr> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
    let cpu0 = cpu_seconds();
    let Outcome { locks, mut lat, mut hand, max_wait, elapsed, child_cpu, steal } = if o.processes {
        drop(listeners);
        processes(&o, &peers).await
    } else if o.shared_runtime {
        in_process(&o, &peers, listeners).await
    } else {
        threaded(&o, &peers, listeners).await
    };
    let cpu = cpu_seconds() - cpu0 + child_cpu;
    lat.sort_unstable();
    hand.sort_unstable();
    let pct = |v: &[u64], p: f64| {
        v.get(((v.len() as f64 * p) as usize).min(v.len().saturating_sub(1))).copied().unwrap_or(0) / 1000
    };
    let rate = locks as f64 / elapsed;
    println!(
        "mode={} loops_per_node={} seconds={:.1} locks={locks} cpu_s_per_1000_locks={:.3} steal_pct={steal:.1}",
        if o.processes {
            "processes".to_string()
        } else if o.shared_runtime {
            "one-shared-runtime".to_string()
        } else {
            format!("threads-{}", o.threads)
        },
        o.loops,
        elapsed,
        cpu / (locks.max(1) as f64 / 1000.0)
    );
    if o.hot {
        println!(
            "hot: handoff_p50_us={} handoff_p99_us={} max_wait_us={}",
            pct(&hand, 0.5),
            pct(&hand, 0.99),
            max_wait / 1000
        );
    }
    if let Some(path) = &o.latency_out {
        if let Err(e) = write_latencies(path, &lat, &hand, max_wait) {
            eprintln!("bench: --latency-out {}: {e}", path.display());
        }
    }
    println!("nodes={} locks_per_sec={:.0} p50_us={} p99_us={}", o.nodes, rate, pct(&lat, 0.5), pct(&lat, 0.99));
    if let Some(dir) = &o.quic_certs {
        let _ = std::fs::remove_dir_all(dir);
    }
    if locks == 0 {
        eprintln!("bench: no lock was acquired while measuring; the figures above mean nothing");
        std::process::exit(1);
    }
}

/// Writes sorted latency samples as a histogram with three significant digits (≤ 1 % error): small enough for
/// millions of samples, exact enough for a CDF.
fn write_latencies(path: &std::path::Path, lat: &[u64], hand: &[u64], max_wait: u64) -> std::io::Result<()> {
    use std::io::Write;
    let cut = |mut v: u64| {
        let mut scale = 1;
        while v >= 1000 {
            v /= 10;
            scale *= 10;
        }
        v * scale
    };
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    for (kind, sorted) in [("lat", lat), ("hand", hand)] {
        for run in sorted.chunk_by(|a, b| cut(*a) == cut(*b)) {
            writeln!(f, "{kind} {} {}", cut(run[0]), run.len())?;
        }
    }
    writeln!(f, "maxwait {max_wait}")?;
    f.flush()
}

async fn in_process(o: &Opts, peers: &[SocketAddr], listeners: Vec<TcpListener>) -> Outcome {
    let mut nodes = Vec::new();
    for (i, l) in listeners.into_iter().enumerate() {
        nodes.push(start(peers, i, Some(l)).await);
    }
    for n in &nodes {
        ready(n).await;
    }
    let tally = Arc::new(Tally::default());
    let (measuring, stop) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let epoch = Instant::now();
    let mut tasks = Vec::new();
    for n in &nodes {
        let (n, o, t, m, s) = (n.clone(), o.clone(), tally.clone(), measuring.clone(), stop.clone());
        tasks.push(tokio::spawn(async move { run_loops(n, &o, t, m, s, epoch).await }));
    }
    let measured = measure(o, &measuring, &stop).await;
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }
    for n in &nodes {
        n.shutdown().await;
    }
    tally.outcome(measured)
}

/// The nodes spread over `--threads` OS threads (node `i` on thread `i mod threads`), each thread with a
/// single-threaded runtime, all in this process.
async fn threaded(o: &Opts, peers: &[SocketAddr], listeners: Vec<TcpListener>) -> Outcome {
    let tally = Arc::new(Tally::default());
    let (measuring, stop) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let ready_count = Arc::new(AtomicU64::new(0));
    let epoch = Instant::now();
    let mut groups: Vec<Vec<(usize, TcpListener)>> = (0..o.threads).map(|_| Vec::new()).collect();
    for (i, l) in listeners.into_iter().enumerate() {
        groups[i % o.threads].push((i, l));
    }
    let mut threads = Vec::new();
    for group in groups {
        let (o, peers, tally) = (o.clone(), peers.to_vec(), tally.clone());
        let (measuring, stop, ready_count) = (measuring.clone(), stop.clone(), ready_count.clone());
        threads.push(std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            let nodes = group.into_iter().map(|(i, l)| {
                let (o, peers, tally) = (o.clone(), peers.clone(), tally.clone());
                let (measuring, stop, ready_count) = (measuring.clone(), stop.clone(), ready_count.clone());
                rt.spawn(async move {
                    let node = start(&peers, i, Some(l)).await;
                    ready(&node).await;
                    ready_count.fetch_add(1, Ordering::SeqCst);
                    run_loops(node.clone(), &o, tally, measuring, stop, epoch).await;
                    // Keep serving until every node's loops stopped, so nobody loses its peers mid-run.
                    ready_count.fetch_add(1, Ordering::SeqCst);
                    while ready_count.load(Ordering::SeqCst) < 2 * o.nodes as u64 {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    node.shutdown().await;
                })
            });
            let nodes: Vec<_> = nodes.collect();
            rt.block_on(async move {
                for n in nodes {
                    let _ = n.await;
                }
            });
        }));
    }
    while ready_count.load(Ordering::SeqCst) < o.nodes as u64 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let measured = measure(o, &measuring, &stop).await;
    for t in threads {
        let _ = tokio::task::spawn_blocking(move || t.join()).await;
    }
    tally.outcome(measured)
}

/// Each node in its own OS process (this binary, with `--child`); results come back on stdout.
async fn processes(o: &Opts, peers: &[SocketAddr]) -> Outcome {
    let exe = std::env::current_exe().expect("own path");
    let list = peers.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(",");
    let mut children = Vec::new();
    for i in 0..o.nodes {
        let mut cmd = tokio::process::Command::new(&exe);
        cmd.args(["--child", &i.to_string(), "--peers", &list, "--nodes", &o.nodes.to_string()])
            .args([
                "--loops",
                &o.loops.to_string(),
                "--seconds",
                &o.seconds.to_string(),
                "--warmup",
                &o.warmup.to_string(),
            ])
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true);
        if o.hot {
            cmd.arg("--hot");
        }
        if let Some(r) = o.rate {
            cmd.args(["--rate", &r.to_string()]);
        }
        if let Some(dir) = &o.quic_certs {
            cmd.args(["--transport".as_ref(), "quic".as_ref(), "--quic-certs".as_ref(), dir.as_os_str()]);
        }
        children.push(cmd.spawn().expect("child starts"));
    }
    let mut all =
        Outcome { locks: 0, lat: Vec::new(), hand: Vec::new(), max_wait: 0, elapsed: 0.0, child_cpu: 0.0, steal: 0.0 };
    let num = |v: Option<&str>| v.and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    for c in children {
        let out = c.wait_with_output().await.expect("child finishes");
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let mut it = line.split_whitespace();
            match it.next() {
                Some("locks") => all.locks += num(it.next()) as u64,
                Some("elapsed") => all.elapsed = all.elapsed.max(num(it.next())),
                Some("cpu") => all.child_cpu += num(it.next()),
                // Steal is machine-wide: every child saw about the same; keep the largest.
                Some("steal") => all.steal = all.steal.max(num(it.next())),
                Some("maxwait") => all.max_wait = all.max_wait.max(num(it.next()) as u64),
                Some("lat") => all.lat.extend(it.filter_map(|v| v.parse::<u64>().ok())),
                Some("hand") => all.hand.extend(it.filter_map(|v| v.parse::<u64>().ok())),
                _ => {}
            }
        }
    }
    all.elapsed = all.elapsed.max(1e-9);
    all
}

/// A `--processes` child: one node, its loops, results on stdout. Start and stop are agreed by all children
/// forming the cluster first, then measuring for the same wall-clock window.
async fn child(o: Opts, id: usize, peers: Vec<SocketAddr>) {
    let node = start(&peers, id, None).await;
    ready(&node).await;
    let tally = Arc::new(Tally::default());
    let (measuring, stop) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let epoch = Instant::now();
    let loops = {
        let (n, o, t, m, s) = (node.clone(), o.clone(), tally.clone(), measuring.clone(), stop.clone());
        tokio::spawn(async move { run_loops(n, &o, t, m, s, epoch).await })
    };
    let cpu0 = cpu_seconds();
    let (elapsed, steal) = measure(&o, &measuring, &stop).await;
    let _ = tokio::time::timeout(Duration::from_secs(10), loops).await;
    let cpu = cpu_seconds() - cpu0;
    // Keep serving a little so slower peers finish their window with a full cluster.
    tokio::time::sleep(Duration::from_millis(500)).await;
    node.shutdown().await;
    let join = |v: &[u64]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(" ");
    println!("locks {}", tally.locks.load(Ordering::Relaxed));
    println!("elapsed {elapsed}");
    println!("steal {steal}");
    println!("cpu {cpu}");
    println!("maxwait {}", tally.max_wait_ns.load(Ordering::Relaxed));
    println!("lat {}", join(&tally.latencies_ns.lock().unwrap()));
    println!("hand {}", join(&tally.handoffs_ns.lock().unwrap()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn a_loop_that_joins_late_still_gets_its_turns() {
        // 4 loops at 2,000 turns/s: loop 2's turn comes every 2 ms. While nobody has joined, the pacer skips
        // turns without waiting — bounded to one round ahead of the clock. Unbounded, 20 ms of skipping ran
        // minutes ahead and the loop waited that long for its first turn.
        let stop = Arc::new(AtomicBool::new(false));
        let pacer = Pacer::start(2000.0, 4, stop.clone());
        std::thread::sleep(Duration::from_millis(20));
        let mut turns = pacer.join(2);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let got = rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(20), async {
                for _ in 0..10 {
                    turns.recv().await.expect("pacer running");
                }
            })
            .await
        });
        stop.store(true, Ordering::Relaxed);
        assert!(got.is_ok(), "10 turns (20 ms of pacing) did not come within 20 s");
        // Stopping closes the loops' receivers.
        assert!(rt.block_on(async {
            while turns.recv().await.is_some() {}
            true
        }));
    }
}
