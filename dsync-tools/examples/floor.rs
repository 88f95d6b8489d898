//! What this machine allows before any dsync code runs: the floor under the `bench` example's figures.
//!
//! ```text
//! cargo run --release -p dsync-tools --example floor -- [--seconds S] [--nodes N --rate LOCKS_PER_SEC]
//! ```
//! Measures, with the standard library only:
//! - `msg_us`: one small message over loopback TCP (a write and the matching read, same thread, no wake-up);
//! - `wake_us`: one-way latency of a message to a thread blocked reading it (the wake-up every hop between
//!   node threads pays);
//! - `stalls`: every core spins reading the clock for `--seconds`; a gap of 50 µs or more between two reads
//!   is time the core was taken away (hypervisor steal, interrupts). Latency percentiles cannot be better
//!   than these gaps allow.
//!
//! With `--nodes` and `--rate` it adds the kernel's share of an uncontended lock at that load: a lock is
//! `3·(n−1)` messages (request, grant, release), each at least `msg_us` of syscalls.

use clap::Parser;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// Bytes per message: about a `Lock` frame for a short resource name.
const MSG: usize = 48;

/// What this machine allows before any dsync code runs: loopback message cost, thread wake-up latency and
/// stalls (time the cores were taken away), the floor under the `bench` example's figures.
#[derive(Parser, Debug)]
#[command(name = "floor", version)]
struct Cli {
    /// How long every core spins reading the clock to find stalls, in seconds (> 0).
    #[arg(long, value_name = "S", default_value_t = 5.0, value_parser = positive)]
    seconds: f64,
    /// With --rate: the cluster size whose kernel share of a lock to estimate (1..=64).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=64))]
    nodes: Option<u64>,
    /// With --nodes: the offered load in locks per second (> 0).
    #[arg(long, value_name = "R", value_parser = positive)]
    rate: Option<f64>,
}

/// A number above zero.
fn positive(v: &str) -> Result<f64, String> {
    v.parse::<f64>().ok().filter(|&v| v > 0.0).ok_or_else(|| format!("{v:?} is not a number above 0"))
}

fn main() {
    let Cli { seconds, nodes, rate } = Cli::parse();
    let nodes = nodes.map(|n| n as usize);
    let msg = message_cost();
    println!("msg_us={msg:.2} (one {MSG}-byte message over loopback TCP: write + read in one thread)");
    let w = wake_latency();
    println!("wake_us p50={:.1} p99={:.1} p999={:.1} (one-way, to a thread blocked reading)", w[0], w[1], w[2]);
    let cores = std::thread::available_parallelism().map(|c| c.get()).unwrap_or(1);
    let (lost, long_per_s, max) = stalls(cores, seconds);
    println!(
        "stalls cores={cores} lost_pct={lost:.2} gaps_ge_1ms_per_s={long_per_s:.1} max_gap_us={max} (each core \
         spinning {seconds} s)"
    );
    if let (Some(n), Some(r)) = (nodes, rate) {
        let per_lock = 3.0 * (n - 1) as f64 * msg;
        println!(
            "floor nodes={n} messages_per_lock={} kernel_us_per_lock={per_lock:.0} at rate={r}: {:.0}% of {cores} \
             cores",
            3 * (n - 1),
            100.0 * r * per_lock / 1e6 / cores as f64
        );
    }
}

fn pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let a = TcpStream::connect(l.local_addr().expect("address")).expect("connect");
    let (b, _) = l.accept().expect("accept");
    a.set_nodelay(true).expect("nodelay");
    b.set_nodelay(true).expect("nodelay");
    (a, b)
}

/// Mean µs of a write plus the read that takes it, in one thread (the cheapest a message can be).
fn message_cost() -> f64 {
    let (mut a, mut b) = pair();
    let mut buf = [7u8; MSG];
    let run = |n: u32, a: &mut TcpStream, b: &mut TcpStream, buf: &mut [u8; MSG]| {
        let t = Instant::now();
        for _ in 0..n {
            a.write_all(buf).expect("write");
            b.read_exact(buf).expect("read");
        }
        t.elapsed().as_secs_f64() * 1e6 / n as f64
    };
    run(2_000, &mut a, &mut b, &mut buf); // warm up
    run(50_000, &mut a, &mut b, &mut buf)
}

/// p50/p99/p99.9 µs from a write to the moment a thread blocked in `read` has the message; the writer pauses
/// 300 µs between messages so the reader is asleep each time.
fn wake_latency() -> [f64; 3] {
    let (mut a, mut b) = pair();
    let epoch = Instant::now();
    let n = 5_000;
    let reader = std::thread::spawn(move || {
        let mut lat = Vec::with_capacity(n);
        let mut buf = [0u8; 8];
        for _ in 0..n {
            b.read_exact(&mut buf).expect("read");
            lat.push(epoch.elapsed().as_nanos() as u64 - u64::from_le_bytes(buf));
        }
        lat
    });
    for _ in 0..n {
        a.write_all(&(epoch.elapsed().as_nanos() as u64).to_le_bytes()).expect("write");
        std::thread::sleep(Duration::from_micros(300));
    }
    let mut lat = reader.join().expect("reader");
    lat.sort_unstable();
    [0.5, 0.99, 0.999].map(|q| lat[((n as f64 * q) as usize).min(n - 1)] as f64 / 1000.0)
}

/// Spins on every core for `seconds`; returns the percent of time lost in gaps ≥ 50 µs, gaps ≥ 1 ms per
/// second per core, and the longest gap in µs.
fn stalls(cores: usize, seconds: f64) -> (f64, f64, u64) {
    let spinners: Vec<_> = (0..cores)
        .map(|_| {
            std::thread::spawn(move || {
                let start = Instant::now();
                let mut last = start;
                let (mut lost, mut long, mut max) = (0u64, 0u64, 0u64);
                while (last - start).as_secs_f64() < seconds {
                    let now = Instant::now();
                    let gap = (now - last).as_micros() as u64;
                    if gap >= 50 {
                        lost += gap;
                        long += u64::from(gap >= 1000);
                        max = max.max(gap);
                    }
                    last = now;
                }
                (lost, long, max)
            })
        })
        .collect();
    let (mut lost, mut long, mut max) = (0, 0, 0);
    for s in spinners {
        let (l, g, m) = s.join().expect("spinner");
        (lost, long, max) = (lost + l, long + g, max.max(m));
    }
    let core_us = seconds * 1e6 * cores as f64;
    (100.0 * lost as f64 / core_us, long as f64 / seconds / cores as f64, max)
}
