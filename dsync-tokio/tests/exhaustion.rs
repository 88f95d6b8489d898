//! Resource exhaustion over real TCP: an authenticated peer that floods lock requests, and one that stops
//! reading. Either way the node's memory stays bounded and the other nodes — and the node's own
//! application — keep locking promptly.
//!
//! Node 0 of a 3-node cluster is a raw peer driven by the test (it knows the secret, so it passes the
//! handshake); nodes 1 and 2 are real, and together they are a write quorum.

mod common;
#[path = "common/raw_peer.rs"]
mod raw_peer;

use common::{soon, PATIENCE, SECRET};
use dsync_tokio::core::wire::{LockMsg, Outcome};
use dsync_tokio::core::{Config, DenyReason, Message, Mode};
use dsync_tokio::{Node, NodeBuilder};
use raw_peer::{connect_as, frames, write, FrameReader};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Locker table of 600 entries in a 3-node cluster: a guaranteed share of 100 per node, 300 shared.
const MAX_GRANTS: usize = 600;
const FLOOD_BUDGET: u64 = 100 + 300;

/// Leases far longer than any run of the test, so the flood's grants (never refreshed) stay counted.
fn long_leases_small_table(c: &mut Config) {
    c.lease = Duration::from_secs(600);
    c.refresh_interval = Duration::from_secs(60);
    c.limits.max_grants = MAX_GRANTS;
}

struct Cluster {
    addrs: Vec<SocketAddr>,
    n1: Node,
    n2: Node,
    /// Node 0's address stays bound (nobody listens behind it: node 0 is the raw peer, which only dials).
    _slot0: TcpListener,
}

async fn nodes_1_and_2(queue_bytes: Option<usize>) -> Cluster {
    let mut ls: Vec<TcpListener> = (0..3).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    let addrs: Vec<SocketAddr> = ls.iter().map(|l| l.local_addr().unwrap()).collect();
    let start = |i: usize, l: TcpListener| {
        // A new cluster whose node 0 is a test double that answers no bootstrap query: serve at once.
        let b = NodeBuilder::new(addrs.clone(), i).secret(SECRET).unsafe_skip_restart_safety();
        let mut b = b.listener(l).configure(long_leases_small_table);
        if let Some(q) = queue_bytes {
            b = b.max_queued_bytes(q);
        }
        b.start_tcp()
    };
    let l2 = ls.pop().unwrap();
    let l1 = ls.pop().unwrap();
    let n1 = start(1, l1).await.expect("node 1 starts");
    let n2 = start(2, l2).await.expect("node 2 starts");
    // Nodes 1 and 2 are a quorum: once a lock through node 2 succeeds, they are connected.
    let g = soon("nodes 1 and 2 connect", n2.mutex(["formed"]).lock()).await.expect("lock");
    g.release().await.expect("release");
    Cluster { addrs: addrs.clone(), n1, n2, _slot0: ls.pop().unwrap() }
}

fn lock_request(uid: u64, resource: String) -> Message {
    Message::Lock(LockMsg { uid, ticket: uid, mode: Mode::Write, proposal: uid + 1, resources: vec![resource] })
}

/// Polls `cond` until it holds; fails the test after PATIENCE.
async fn until<F: std::future::Future<Output = bool>>(what: &str, mut cond: impl FnMut() -> F) {
    soon(what, async {
        while !cond().await {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
}

/// Locks through `via`, checks that node `granter` is among the grantors, and returns the latency.
async fn lock_granted_by(via: &Node, resource: &str, granter: usize) -> Duration {
    let t0 = Instant::now();
    let guard = via.mutex([resource]).try_lock_for(PATIENCE).await.expect("lock while the node is under attack");
    let took = t0.elapsed();
    let holders = via.holders(Some(resource)).await.expect("holders");
    assert!(
        holders.iter().any(|h| h.granted_by.contains(granter)),
        "node {granter} must have granted {resource}: {holders:?}"
    );
    guard.release().await.expect("release");
    took
}

#[derive(Default)]
struct Replies {
    granted: AtomicU64,
    overloaded: AtomicU64,
    other_denials: AtomicU64,
}

impl Replies {
    fn answered(&self) -> u64 {
        self.granted.load(Ordering::Relaxed)
            + self.overloaded.load(Ordering::Relaxed)
            + self.other_denials.load(Ordering::Relaxed)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_peer_is_refused_overloaded_with_bounded_memory_and_others_still_lock_promptly() {
    let c = nodes_1_and_2(None).await;
    let stream = connect_as(c.addrs[1], 0, 3, 1, SECRET, None).await;
    let (read, mut write_half) = stream.into_split();
    let replies = Arc::new(Replies::default());
    let reader = tokio::spawn({
        let replies = replies.clone();
        async move {
            let mut r = FrameReader::new(read);
            while let Some(batch) = r.next().await {
                for m in batch {
                    if let Message::LockReply { outcome, .. } = m {
                        let counter = match outcome {
                            Outcome::Granted => &replies.granted,
                            Outcome::Denied(DenyReason::Overloaded) => &replies.overloaded,
                            Outcome::Denied(_) => &replies.other_denials,
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    });
    // The flood: fresh single-resource write requests, as fast as the node answers them, until told to stop.
    // It keeps at most IN_FLIGHT unanswered, so the test measures the locker's budgets rather than how fast
    // this machine decodes a flood. (Unpaced, the per-peer inbound channels that the driver takes in turn
    // still keep others' locks to about 0.1 s / 0.7 s in a debug build; with one shared FIFO queue it was 6 s.)
    const IN_FLIGHT: u64 = 20_000;
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let flood = tokio::spawn({
        let (stop, sent, replies) = (stop.clone(), sent.clone(), replies.clone());
        async move {
            let mut uid = 1u64;
            while !stop.load(Ordering::Relaxed) {
                if uid - 1 > replies.answered() + IN_FLIGHT {
                    tokio::task::yield_now().await;
                    continue;
                }
                let batch: Vec<Message> = (uid..uid + 256).map(|u| lock_request(u, format!("flood-{u}"))).collect();
                write(&mut write_half, &frames(&batch)).await;
                uid += 256;
                sent.store(uid - 1, Ordering::Relaxed);
            }
            write_half
        }
    });
    until("the flood is refused Overloaded", || {
        let r = replies.clone();
        async move { r.overloaded.load(Ordering::Relaxed) >= 2_000 }
    })
    .await;

    // While the flood goes on, node 2 and node 1's own application lock, granted by the flooded node.
    let other = lock_granted_by(&c.n2, "victim", 1).await;
    let own = lock_granted_by(&c.n1, "own", 1).await;
    println!("under the flood: node 2 locked in {other:?}, node 1's application in {own:?}");

    stop.store(true, Ordering::Relaxed);
    let _write_half = flood.await.expect("flood task");
    let sent = sent.load(Ordering::Relaxed);
    // Everything sent is answered (the node keeps up, nothing is queued without bound) ...
    until("every flood request is answered", || {
        let r = replies.clone();
        async move { r.answered() >= sent }
    })
    .await;
    // ... the flood got exactly its own share plus the shared pool, the rest was refused Overloaded ...
    assert_eq!(replies.granted.load(Ordering::Relaxed), FLOOD_BUDGET);
    assert_eq!(replies.other_denials.load(Ordering::Relaxed), 0);
    assert!(replies.overloaded.load(Ordering::Relaxed) >= sent - FLOOD_BUDGET);
    // ... and the node's table holds no more than that for it.
    let table = c.n1.holders(None).await.expect("holders");
    let flood_entries = table.iter().filter(|h| h.owner == 0 && h.granted_by.contains(1)).count();
    assert_eq!(flood_entries as u64, FLOOD_BUDGET, "node 1's table holds the flood's budget, no more");
    assert!(table.len() <= MAX_GRANTS);
    let counters = c.n1.counters().await.expect("counters");
    assert!(counters.denials >= sent - FLOOD_BUDGET, "{counters:?}");
    reader.abort();
    c.n1.shutdown().await;
    c.n2.shutdown().await;
}

/// The upper bound Linux autotuning may give a socket's send buffer (`tcp_wmem`'s maximum); `None` when
/// it cannot be read (then only the relative assertions run).
fn kernel_send_buffer_max() -> Option<usize> {
    let s = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem").ok()?;
    s.split_whitespace().nth(2)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stops_reading_costs_a_bounded_queue_and_nobody_else_waits() {
    const QUEUE: usize = 64 * 1024;
    const HELD: u64 = 300;
    const QUERIES: u64 = 200;
    const MARKER: u64 = 1 << 40;
    let c = nodes_1_and_2(Some(QUEUE)).await;
    let stream = connect_as(c.addrs[1], 0, 3, 1, SECRET, Some(4096)).await;
    let (read, mut w) = stream.into_split();
    let mut r = FrameReader::new(read);
    // The raw peer takes grants with long names, so that every holder query it sends next is answered with
    // some 50 KB (less than the queue: a single frame larger than the queue is never queued at all).
    let held: Vec<Message> = (1..=HELD).map(|u| lock_request(u, format!("{u:0>150}"))).collect();
    write(&mut w, &frames(&held)).await;
    let mut granted = 0;
    soon("the raw peer's grants", async {
        while granted < HELD {
            for m in r.next().await.expect("stream open") {
                if matches!(m, Message::LockReply { outcome: Outcome::Granted, .. }) {
                    granted += 1;
                }
            }
        }
    })
    .await;

    // Now it stops reading and asks for far more than the queue, the socket buffers and its own tiny
    // receive buffer can hold.
    // One query at a time, each handled before the next is sent: the node then answers them in separate
    // turns, so some answers fit its queue (it drops a turn's output to a peer whole when it does not
    // fit, so a burst of many answers would simply all be dropped).
    for chunk in (0..QUERIES).collect::<Vec<_>>().chunks(1) {
        let before = c.n1.counters().await.expect("counters").messages_in;
        let queries: Vec<Message> = chunk.iter().map(|&q| Message::Query { qid: q, resource: None }).collect();
        write(&mut w, &frames(&queries)).await;
        until("node 1 has handled the queries", || {
            let n1 = c.n1.clone();
            async move { n1.counters().await.expect("counters").messages_in >= before + chunk.len() as u64 }
        })
        .await;
    }
    // Nobody else waits for the stalled peer.
    let other = lock_granted_by(&c.n2, "victim", 1).await;
    let own = lock_granted_by(&c.n1, "own", 1).await;
    println!("with a stalled peer: node 2 locked in {other:?}, node 1's application in {own:?}");

    // It reads again. Replies queued for it arrive whole (dropping is per whole frame), then a marker
    // request sent now is answered: the connection survived.
    let (mut replies, mut reply_bytes, mut reply_size) = (0u64, 0usize, 0usize);
    let mut next_marker = MARKER;
    soon("the marker's reply", async {
        loop {
            write(&mut w, &frames(&[lock_request(next_marker, "marker".into())])).await;
            next_marker += 1;
            let batch = r.next().await.expect("the node keeps the connection");
            let mut done = false;
            for m in batch {
                match m {
                    Message::QueryReply { ref entries, .. } => {
                        replies += 1;
                        reply_size = frames([&m]).len();
                        reply_bytes += reply_size;
                        assert!(entries.len() as u64 >= HELD);
                    }
                    Message::LockReply { uid, .. } if uid >= MARKER => done = true,
                    _ => {}
                }
            }
            if done {
                return;
            }
        }
    })
    .await;
    println!(
        "{replies} of {QUERIES} query replies of {reply_size} bytes reached the stalled peer ({reply_bytes} bytes)"
    );
    assert!(replies > 0, "what was queued before the queue filled is delivered");
    assert!(replies < QUERIES, "the stalled peer's replies were not bounded: all {QUERIES} arrived");
    if let Some(wmem) = kernel_send_buffer_max() {
        // What got through is at most the queue, the kernel's buffers on both ends and one reply of slack.
        let bound = QUEUE + wmem + 64 * 1024 + reply_size;
        assert!(reply_bytes <= bound, "{reply_bytes} bytes reached the stalled peer, bound {bound}");
    }
    c.n1.shutdown().await;
    c.n2.shutdown().await;
}
