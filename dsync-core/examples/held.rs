//! One locker holding a million grants: heap bytes per held lock, and how long granting takes with the
//! table empty versus full.
//!
//! ```sh
//! cargo run --release -p dsync-core --example held            # 1,000,000 held locks
//! cargo run --release -p dsync-core --example held -- 200000  # another count
//! ```
//!
//! Node 0 of a 3-node cluster receives single-resource write requests from node 1 (names `held-00000001`,
//! 13 bytes) and grants them all; nothing is released. The heap is measured with a counting global
//! allocator (bytes requested, live), so the figure is what the tables cost, independent of the system
//! allocator's own overhead. Latency is one `handle_message` of a fresh request plus draining its reply:
//! the locker's whole service time for a grant, without any network.

use dsync_core::wire::LockMsg;
use dsync_core::Message;
use dsync_core::{Config, Instant, Mode, Node, Start};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The system allocator, keeping count of live bytes.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Requests granted, timed one by one, for the latency figures.
const SAMPLE: u64 = 20_000;

fn request(uid: u64) -> Message {
    Message::Lock(LockMsg {
        uid,
        ticket: uid,
        mode: Mode::Write,
        proposal: uid,
        resources: vec![format!("held-{uid:08}")],
    })
}

/// Grants request `uid` at node 0 and drains the reply; panics if it was not granted.
fn grant(node: &mut Node, uid: u64) {
    node.handle_message(Instant::from_nanos(uid), 1, request(uid));
    match node.poll_transmit().map(|t| t.message) {
        Some(Message::LockReply { outcome: dsync_core::wire::Outcome::Granted, .. }) => {}
        other => panic!("request {uid} was not granted: {other:?}"),
    }
    while node.poll_event().is_some() {}
}

/// Grants `uids`, timing each; returns (p50, p99, max) in nanoseconds.
fn timed(node: &mut Node, uids: std::ops::Range<u64>) -> (u64, u64, u64) {
    let mut ns: Vec<u64> = uids
        .map(|uid| {
            let t0 = std::time::Instant::now();
            grant(node, uid);
            t0.elapsed().as_nanos() as u64
        })
        .collect();
    ns.sort_unstable();
    let at = |q: f64| ns[((ns.len() - 1) as f64 * q) as usize];
    (at(0.50), at(0.99), *ns.last().unwrap_or(&0))
}

fn node() -> Node {
    Node::new(Config::new(3, 0), Instant::ZERO, Start::FirstBoot).expect("valid config")
}

fn main() {
    let held: u64 = match std::env::args().nth(1) {
        Some(a) => a.parse().expect("usage: held [COUNT]"),
        None => 1_000_000,
    };
    // Granting into an empty table (a node of its own, so the figures do not depend on what came before).
    let mut fresh = node();
    let empty = timed(&mut fresh, 1..1 + SAMPLE);
    drop(fresh);

    let mut n = node();
    let before = LIVE.load(Ordering::Relaxed);
    let t0 = std::time::Instant::now();
    for uid in 1..=held {
        grant(&mut n, uid);
    }
    let fill = t0.elapsed();
    let heap = LIVE.load(Ordering::Relaxed) - before;
    assert_eq!(n.grant_count() as u64, held);
    let full = timed(&mut n, held + 1..held + 1 + SAMPLE);

    let per_lock = heap as f64 / held as f64;
    println!("held={held} heap_bytes={heap} bytes_per_lock={per_lock:.0} fill_secs={:.2}", fill.as_secs_f64());
    println!("| table | grant p50 | grant p99 | grant max |");
    println!("|---|---|---|---|");
    for (name, (p50, p99, max)) in [("empty", empty), (&format!("{held} held") as &str, full)] {
        println!("| {name} | {:.2} µs | {:.2} µs | {:.1} µs |", p50 as f64 / 1e3, p99 as f64 / 1e3, max as f64 / 1e3);
    }
}
