//! Restarts that cost little (PROTOCOL.md §6.6–§6.7): a rolling restart keeps writes available, because a
//! restarted node rejoins once every peer answered instead of sitting out a `lease·(1+ρ)` quarantine.

mod common;

use common::{rebind, soon, SECRET};
use dsync_tokio::{Node, NodeBuilder};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dsync-restarts-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Default lease (30 s): a quarantine would be 30.3 s, far beyond this test's patience.
async fn start(addrs: &[SocketAddr], i: usize, l: TcpListener, dir: &Path) -> Node {
    let b = NodeBuilder::new(addrs.to_vec(), i).secret(SECRET).state_dir(dir.join(i.to_string())).listener(l);
    b.start_tcp().await.expect("node starts")
}

/// The scenario: 4 nodes, one restarted every 2 s, under a write load. With quarantines the second
/// restart would leave two of four nodes quarantined — no write quorum for 30 s. Every write must succeed
/// within a deadline far below the quarantine, and writes must go on during every restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_every_node_keeps_writes_available() {
    let dir = scratch("rolling");
    let ls: Vec<TcpListener> = (0..4).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    let addrs: Vec<SocketAddr> = ls.iter().map(|l| l.local_addr().unwrap()).collect();
    let mut started = Vec::new();
    for (i, l) in ls.into_iter().enumerate() {
        started.push(start(&addrs, i, l, &dir).await);
    }
    for node in &started {
        soon("ready", node.ready()).await.expect("ready");
    }
    let nodes = Arc::new(Mutex::new(started));
    let restarting = Arc::new(AtomicU64::new(u64::MAX));
    let stop = Arc::new(AtomicBool::new(false));
    // Writes completed per restart window (index = the node being restarted), and failures.
    let done: Arc<Vec<AtomicU64>> = Arc::new((0..4).map(|_| AtomicU64::new(0)).collect());
    let failures = Arc::new(Mutex::new(Vec::new()));
    let mut writers = Vec::new();
    for w in 0..2u64 {
        let (nodes, restarting, stop, done, failures) =
            (nodes.clone(), restarting.clone(), stop.clone(), done.clone(), failures.clone());
        writers.push(tokio::spawn(async move {
            let mut k = w;
            while !stop.load(Ordering::Relaxed) {
                k += 1;
                let window = restarting.load(Ordering::Relaxed);
                // A node that is not being restarted right now.
                let i = (0..4).map(|d| ((k + d) % 4) as usize).find(|&i| i as u64 != window).unwrap();
                let node = nodes.lock().unwrap()[i].clone();
                match node.mutex([format!("r{}", k % 3)]).try_lock_for(Duration::from_secs(10)).await {
                    Ok(g) => {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        drop(g);
                        if let Some(c) = done.get(window as usize) {
                            c.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    // The node was crashed under us while we waited: not a failure of the cluster.
                    Err(_) if restarting.load(Ordering::Relaxed) == i as u64 => {}
                    Err(e) => failures.lock().unwrap().push(format!("node {i}: {e}")),
                }
            }
        }));
    }
    for victim in 0..4usize {
        let window = tokio::time::Instant::now();
        restarting.store(victim as u64, Ordering::Relaxed);
        let node = nodes.lock().unwrap()[victim].clone();
        node.crash().await;
        let l = rebind(addrs[victim]).await;
        let node = start(&addrs, victim, l, &dir).await;
        nodes.lock().unwrap()[victim] = node.clone();
        // The next restart comes 2 s after this one, whether or not this node is back (the pace).
        let _ = tokio::time::timeout_at(window + Duration::from_secs(2), node.ready()).await;
        tokio::time::sleep_until(window + Duration::from_secs(2)).await;
        let rejoins = node.counters().await.unwrap().rejoins;
        assert_eq!(rejoins, 1, "node {victim} did not rejoin within 2 s (a quarantine is 30.3 s): {:?}", node.status());
    }
    restarting.store(u64::MAX, Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        soon("writers stop", w).await.unwrap();
    }
    let failures = failures.lock().unwrap().clone();
    assert!(failures.is_empty(), "writes failed during the rolling restart: {failures:?}");
    for (victim, c) in done.iter().enumerate() {
        assert!(c.load(Ordering::Relaxed) > 0, "no write completed while node {victim} restarted");
    }
    let all: Vec<Node> = nodes.lock().unwrap().clone();
    for node in all {
        node.shutdown().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}
