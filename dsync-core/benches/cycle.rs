//! Handled messages per second for a full uncontended lock/unlock cycle, on one core.
//!
//! `cargo bench -p dsync-core` — n nodes live in memory; the coordinator rotates over the nodes and each
//! cycle takes a write lock on a resource of its own, delivers every message, unlocks, and delivers again.
//! A cycle is 4·(n−1) network messages (lock, grant, unlock, confirmation to and from every peer) plus
//! the coordinator's exchange with its own locker, which never leaves the node. Only network messages
//! are counted. Options: `-- --seconds S` per cluster size (default 3), `-- --nodes 4,16,64`.

use dsync_core::{Config, Event, Instant, Mode, Node, Start};
use std::hint::black_box;
use std::time::{Duration, Instant as WallClock};

fn main() {
    let mut seconds = 3.0f64;
    let mut sizes = vec![4usize, 16, 64];
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => seconds = args.next().and_then(|s| s.parse().ok()).expect("--seconds takes a number"),
            "--nodes" => {
                sizes = args
                    .next()
                    .map(|s| s.split(',').map(|n| n.trim().parse().expect("--nodes takes e.g. 4,16,64")).collect())
                    .expect("--nodes takes a list")
            }
            _ => {} // cargo bench passes --bench
        }
    }
    println!("dsync-core lock/unlock cycle, one core, messages moved in memory");
    for n in sizes {
        let r = run(n, Duration::from_secs_f64(seconds));
        println!(
            "n={n:<3} cycles={:<9} messages={:<10} msgs_per_sec={:>10.0} cycles_per_sec={:>9.0} ns_per_msg={:.1}",
            r.cycles,
            r.messages,
            r.messages as f64 / r.elapsed.as_secs_f64(),
            r.cycles as f64 / r.elapsed.as_secs_f64(),
            r.elapsed.as_nanos() as f64 / r.messages as f64,
        );
    }
}

struct Report {
    cycles: u64,
    messages: u64,
    elapsed: Duration,
}

fn run(n: usize, budget: Duration) -> Report {
    let mut nodes: Vec<Node> = (0..n)
        .map(|id| {
            let mut cfg = Config::new(n, id);
            cfg.seed = 0xbe_4c ^ id as u64;
            Node::new(cfg, Instant::ZERO, Start::FirstBoot).expect("valid config")
        })
        .collect();
    let names: Vec<String> = (0..n).map(|i| format!("resource-{i}")).collect();
    let mut queue = Vec::with_capacity(4 * n);
    let mut now = Instant::from_millis(1);
    let (mut cycles, mut messages) = (0u64, 0u64);
    let start = WallClock::now();
    while start.elapsed() < budget {
        for _ in 0..256 {
            let c = (cycles as usize) % n;
            now = now + Duration::from_micros(1);
            let lock = nodes[c].lock(now, Mode::Write, [names[c].as_str()], None).expect("lock");
            messages += pump(&mut nodes, &mut queue, now);
            let acquired = drain_events(&mut nodes[c]);
            assert!(acquired, "an uncontended lock must be acquired in one round");
            nodes[c].unlock(now, lock);
            messages += pump(&mut nodes, &mut queue, now);
            drain_events(&mut nodes[c]);
            cycles += 1;
        }
    }
    Report { cycles, messages, elapsed: start.elapsed() }
}

/// Moves messages until none are in flight; returns how many were handled.
fn pump(nodes: &mut [Node], queue: &mut Vec<(usize, dsync_core::Transmit)>, now: Instant) -> u64 {
    let mut handled = 0;
    loop {
        for (from, node) in nodes.iter_mut().enumerate() {
            while let Some(t) = node.poll_transmit() {
                queue.push((from, t));
            }
        }
        if queue.is_empty() {
            return handled;
        }
        for (from, t) in queue.drain(..) {
            nodes[t.to].handle_message(now, from, black_box(t.message));
            handled += 1;
        }
    }
}

fn drain_events(node: &mut Node) -> bool {
    let mut acquired = false;
    while let Some(e) = node.poll_event() {
        acquired |= matches!(e, Event::Acquired { .. });
    }
    acquired
}
