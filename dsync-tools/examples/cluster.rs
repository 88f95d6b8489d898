//! A 5-node dsync cluster in one process on loopback (TCP, or QUIC with mutual TLS), under a contended
//! workload.
//!
//! Every node runs several workers that take read and write locks on a few hot resources and, while
//! holding a write lock, update a fenced counter that rejects stale fencing tokens and notices overlapping
//! holders. Midway one node crashes (nothing released; its peers see the connection drop) and restarts
//! from its state directory: it releases what its previous incarnation held, rejoins, and serves again once
//! every peer answered (PROTOCOL.md §6.6–§6.7); the summary's `serving_after_restart_ms` is how long that took.
//!
//! `cargo run --release -p dsync-tools --example cluster [-- --seconds 10 --nodes 5 --workers 4 --transport tcp|quic]`
//!
//! With `--transport quic` every node gets a certificate from a development CA made at start (dsync-quic's
//! `dev` module: not for production; real deployments load PEM files).
//!
//! The last line is `violations=0` when no two conflicting holders overlapped and no stale token was
//! accepted; the process exits non-zero otherwise.

use clap::Parser;
use dsync_quic::dev::DevCa;
use dsync_quic::QuicNodeBuilder;
use dsync_tokio::{LockError, Node, NodeBuilder};
use dsync_tools::Transport;
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const HOT: [&str; 4] = ["orders", "invoices", "stock", "ledger"];
const SECRET: &str = "example cluster secret";

/// What the locks protect: per resource, the highest token accepted, a value, and who is inside now.
#[derive(Default)]
struct FencedCounter {
    state: Mutex<HashMap<&'static str, Slot>>,
    violations: AtomicU64,
}

#[derive(Default)]
struct Slot {
    max_token: u64,
    value: u64,
    writers: u32,
    readers: u32,
}

impl FencedCounter {
    fn enter(&self, res: &'static str, write: bool, token: u64) {
        let mut s = self.state.lock().unwrap();
        let slot = s.entry(res).or_default();
        if slot.writers > 0 || (write && slot.readers > 0) {
            self.violations.fetch_add(1, Ordering::Relaxed);
            eprintln!("VIOLATION: overlapping holders on {res}");
        }
        if write {
            if token < slot.max_token {
                self.violations.fetch_add(1, Ordering::Relaxed);
                eprintln!("VIOLATION: stale token {token} < {} accepted on {res}", slot.max_token);
            }
            slot.max_token = token;
            slot.value += 1;
            slot.writers += 1;
        } else {
            slot.readers += 1;
        }
    }

    fn leave(&self, res: &'static str, write: bool) {
        let mut s = self.state.lock().unwrap();
        let slot = s.get_mut(res).expect("entered before");
        if write {
            slot.writers -= 1;
        } else {
            slot.readers -= 1;
        }
    }
}

#[derive(Default)]
struct Stats {
    locks: AtomicU64,
    failed: AtomicU64,
    lost: AtomicU64,
    latencies_us: Mutex<Vec<u64>>,
}

/// The transport the nodes use.
enum Net {
    Tcp,
    /// QUIC, with the cluster's development CA.
    Quic(Box<DevCa>),
}

/// A socket bound before the node starts, so the OS chooses the port.
enum Bound {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

impl Net {
    fn new(transport: Transport) -> Net {
        match transport {
            Transport::Tcp => Net::Tcp,
            Transport::Quic => Net::Quic(Box::new(DevCa::new("dsync").expect("development CA"))),
        }
    }

    fn bind(&self) -> Bound {
        match self {
            Net::Tcp => Bound::Tcp(TcpListener::bind("127.0.0.1:0").unwrap()),
            Net::Quic(_) => Bound::Udp(UdpSocket::bind("127.0.0.1:0").unwrap()),
        }
    }
}

impl Bound {
    fn addr(&self) -> SocketAddr {
        match self {
            Bound::Tcp(l) => l.local_addr().unwrap(),
            Bound::Udp(s) => s.local_addr().unwrap(),
        }
    }
}

/// A dsync cluster in one process on loopback under a contended workload, checked by a fenced counter; midway
/// one node crashes and restarts from its state directory.
///
/// The last line is `violations=0` when no two conflicting holders overlapped and no stale token was accepted;
/// the exit status is 1 otherwise.
#[derive(Parser, Debug)]
#[command(name = "cluster", version)]
struct Cli {
    /// How long the workload runs, in seconds (the crash comes at 35 %, the restart at 45 %).
    #[arg(long, value_name = "S", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    seconds: u64,
    /// Nodes in the cluster (1..=64).
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=64))]
    nodes: u64,
    /// Workers per node, each taking read and write locks on a few hot resources.
    #[arg(long, value_name = "K", default_value_t = 4)]
    workers: u64,
    /// The transport between the nodes (QUIC: mutual TLS with certificates from a development CA made at start).
    #[arg(long, value_enum, default_value_t = Transport::Tcp)]
    transport: Transport,
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    dsync_tools::init_logging("warn");
    let (seconds, n, workers) = (cli.seconds, cli.nodes as usize, cli.workers);
    let net = Net::new(cli.transport);
    let listeners: Vec<Bound> = (0..n).map(|_| net.bind()).collect();
    let addrs: Vec<SocketAddr> = listeners.iter().map(Bound::addr).collect();
    let state = std::env::temp_dir().join(format!("dsync-cluster-example-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    let mut nodes = Vec::new();
    for (i, l) in listeners.into_iter().enumerate() {
        nodes.push(start(&net, &addrs, i, Some(l), &state).await);
    }
    let kind = if matches!(net, Net::Tcp) { "tcp" } else { "quic" };
    println!("started {n} nodes ({kind}) on {}", addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", "));
    // A brand-new cluster (empty state directories) forms as soon as every node is up and new.
    let t0 = Instant::now();
    for node in &nodes {
        node.ready().await.expect("node ready");
    }
    let ready_ms = t0.elapsed().as_secs_f64() * 1e3;
    let t1 = Instant::now();
    drop(nodes[0].mutex(["first"]).lock().await.expect("first lock"));
    println!("ready after {ready_ms:.1} ms; first lock after ready took {:.2} ms", t1.elapsed().as_secs_f64() * 1e3);
    let counter = Arc::new(FencedCounter::default());
    let stats = Arc::new(Stats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let nodes = Arc::new(Mutex::new(nodes));
    let mut tasks = Vec::new();
    for node in 0..n {
        for w in 0..workers {
            let (nodes, counter, stats, stop) = (nodes.clone(), counter.clone(), stats.clone(), stop.clone());
            tasks.push(tokio::spawn(worker(node, w, nodes, counter, stats, stop)));
        }
    }
    let begin = Instant::now();
    let victim = n / 2;
    let (mut crashed, mut restarted) = (false, false);
    // From the restart to `ready()` (serving, floor durable, a quorum connected).
    let serving_ms: Arc<Mutex<Option<f64>>> = Arc::default();
    let mut last = 0;
    while begin.elapsed() < Duration::from_secs(seconds) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let t = begin.elapsed().as_secs_f64();
        if !crashed && t >= seconds as f64 * 0.35 {
            let node = nodes.lock().unwrap()[victim].clone();
            node.crash().await;
            println!("t={t:>4.1}s node {victim} crashed (nothing released)");
            crashed = true;
        } else if crashed && !restarted && t >= seconds as f64 * 0.45 {
            let since = Instant::now();
            let node = start(&net, &addrs, victim, None, &state).await;
            nodes.lock().unwrap()[victim] = node.clone();
            println!("t={t:>4.1}s node {victim} restarted from its state directory (it rejoins: PROTOCOL.md §6.7)");
            restarted = true;
            let serving_ms = serving_ms.clone();
            tokio::spawn(async move {
                if node.ready().await.is_ok() {
                    *serving_ms.lock().unwrap() = Some(since.elapsed().as_secs_f64() * 1e3);
                }
            });
        }
        let locks = stats.locks.load(Ordering::Relaxed);
        println!(
            "t={t:>4.1}s locks={locks} locks/s={} failed={} lost={} violations={}",
            locks - last,
            stats.failed.load(Ordering::Relaxed),
            stats.lost.load(Ordering::Relaxed),
            counter.violations.load(Ordering::Relaxed)
        );
        last = locks;
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = begin.elapsed().as_secs_f64();
    let mut lat = std::mem::take(&mut *stats.latencies_us.lock().unwrap());
    lat.sort_unstable();
    let pct =
        |p: f64| lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1))).copied().unwrap_or(0);
    let locks = stats.locks.load(Ordering::Relaxed);
    let writes: u64 = counter.state.lock().unwrap().values().map(|s| s.value).sum();
    let serving_after_restart = match *serving_ms.lock().unwrap() {
        Some(ms) => format!("{ms:.1}"),
        None => "none".into(),
    };
    println!(
        "summary: nodes={n} locks={locks} locks_per_sec={:.0} p50_us={} p99_us={} failed={} lost={} fenced_writes={writes} \
         serving_after_restart_ms={serving_after_restart}",
        locks as f64 / elapsed,
        pct(0.50),
        pct(0.99),
        stats.failed.load(Ordering::Relaxed),
        stats.lost.load(Ordering::Relaxed),
    );
    let all: Vec<Node> = nodes.lock().unwrap().clone();
    for node in all {
        node.shutdown().await;
    }
    let _ = std::fs::remove_dir_all(&state);
    let violations = counter.violations.load(Ordering::Relaxed);
    println!("violations={violations}");
    std::process::exit(i32::from(violations > 0));
}

async fn start(net: &Net, addrs: &[SocketAddr], i: usize, bound: Option<Bound>, state: &std::path::Path) -> Node {
    let mut b = NodeBuilder::new(addrs.to_vec(), i).secret(SECRET).state_dir(state).configure(|c| {
        c.lease = Duration::from_secs(3);
        c.refresh_interval = Duration::from_secs(1);
        c.attempt_timeout = Duration::from_millis(500);
        c.backoff_max = Duration::from_millis(100);
    });
    // A restart (`bound` is None) binds the same address again.
    match net {
        Net::Tcp => {
            if let Some(Bound::Tcp(l)) = bound {
                b = b.listener(l);
            }
            b.start_tcp().await.expect("node starts")
        }
        Net::Quic(ca) => {
            let id = ca.node_identity(i).expect("node certificate");
            let socket = match bound {
                Some(Bound::Udp(s)) => s,
                _ => rebind(addrs[i]).await,
            };
            b.start_quic(id, Some(socket)).expect("node starts")
        }
    }
}

/// The crashed node's UDP socket closes once its endpoint has wound down; wait for the address.
async fn rebind(addr: SocketAddr) -> UdpSocket {
    for _ in 0..250 {
        if let Ok(s) = UdpSocket::bind(addr) {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{addr} stayed in use after the crash");
}

async fn worker(
    node: usize,
    w: u64,
    nodes: Arc<Mutex<Vec<Node>>>,
    counter: Arc<FencedCounter>,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
) {
    let mut rng = dsync_tokio::core::rng::SplitMix64::new(((node as u64) << 32) ^ w);
    while !stop.load(Ordering::Relaxed) {
        let rng = rng.next_u64();
        let res = HOT[(rng >> 33) as usize % HOT.len()];
        let write = !(rng >> 40).is_multiple_of(4);
        let handle = nodes.lock().unwrap()[node].clone();
        let lock = handle.rwlock([res]);
        let asked = Instant::now();
        let guard = if write {
            lock.try_write_for(Duration::from_secs(2)).await
        } else {
            lock.try_read_for(Duration::from_secs(2)).await
        };
        let guard = match guard {
            Ok(g) => g,
            Err(LockError::ShutDown) => {
                tokio::time::sleep(Duration::from_millis(50)).await; // crashed: wait for the restart
                continue;
            }
            Err(_) => {
                stats.failed.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        stats.latencies_us.lock().unwrap().push(asked.elapsed().as_micros() as u64);
        stats.locks.fetch_add(1, Ordering::Relaxed);
        counter.enter(res, write, guard.fencing_token());
        tokio::select! {
            _ = guard.lost() => stats.lost.fetch_add(1, Ordering::Relaxed),
            _ = tokio::time::sleep(Duration::from_micros(200 + (rng >> 50) % 800)) => 0,
        };
        counter.leave(res, write);
        drop(guard);
    }
}
