//! Cancellation: a `lock()` future dropped at any await point — never polled, after a few polls, or cut
//! short by a timeout of any length — leaves no grant behind on any node.
//!
//! Leases here are far longer than the test's patience, so a grant left behind cannot quietly expire: the
//! holder query shows every node's table empty only if every abandoned acquisition was actually released.

mod common;

use common::{cluster_with, quick, soon, PATIENCE};
use dsync_tokio::core::Config;
use dsync_tokio::Node;
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

fn long_leases(c: &mut Config) {
    quick(c);
    c.lease = Duration::from_secs(120);
    c.refresh_interval = Duration::from_secs(30);
}

/// Hot resources, so that abandoned locks are dropped while waiting, while holding and in between.
const RESOURCES: usize = 3;

fn resource(i: usize) -> String {
    format!("cancel-{}", i % RESOURCES)
}

/// Polls the lock future `polls` times (letting the driver run in between), then drops it; a guard it
/// produced first is dropped too (that release is the guard's job, also checked here).
async fn drop_after_polls(node: Node, i: usize, polls: usize) -> bool {
    let mutex = node.mutex([resource(i)]);
    let mut fut = pin!(mutex.lock());
    for _ in 0..polls {
        // One poll with the task's own waker, then a turn for the driver.
        if let Poll::Ready(r) = poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await {
            drop(r);
            return true;
        }
        tokio::task::yield_now().await;
    }
    false
}

/// Cuts the lock future short after `micros`. Returns whether it finished first.
async fn drop_after_timeout(node: Node, i: usize, micros: u64) -> bool {
    let mutex = node.mutex([resource(i)]);
    tokio::time::timeout(Duration::from_micros(micros), mutex.lock()).await.is_ok()
}

async fn grants_left(node: &Node) -> usize {
    let entries = node.holders(None).await.expect("holder query");
    entries.iter().filter(|e| e.resource.starts_with("cancel-")).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_lock_futures_at_any_point_leaves_no_grant_anywhere() {
    let c = cluster_with(3, long_leases).await;
    // Rounds of concurrent acquisitions on a few hot resources from every node, each abandoned at a
    // different point: 0..8 polls (0: never polled), or timeouts from 0 µs to a few milliseconds.
    let (mut finished, mut abandoned) = (0, 0);
    for round in 0..4 {
        let mut tasks = Vec::new();
        for i in 0..120 {
            let node = c.nodes[i % c.nodes.len()].clone();
            let k = i + round * 120;
            tasks.push(if k % 2 == 0 {
                tokio::spawn(drop_after_polls(node, k, (k / 2) % 9))
            } else {
                tokio::spawn(drop_after_timeout(node, k, (k as u64 * 397) % 5_000))
            });
        }
        for t in tasks {
            if soon("an abandoned acquisition returns", t).await.expect("task") {
                finished += 1;
            } else {
                abandoned += 1;
            }
        }
    }
    println!("{abandoned} lock futures dropped before they finished, {finished} after");
    assert!(abandoned > 0, "the test must drop futures that are still acquiring");
    // Every grant, anywhere, goes away — by release, since no lease runs out within the test.
    soon("every node's table empties", async {
        loop {
            let mut left = 0;
            for node in &c.nodes {
                left += grants_left(node).await;
            }
            if left == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    // And nothing is waiting in a queue either: a fresh lock on every resource succeeds from every node.
    for (n, node) in c.nodes.iter().enumerate() {
        for r in 0..RESOURCES {
            let g = node.mutex([resource(r)]).try_lock_for(PATIENCE).await;
            let g = g.unwrap_or_else(|e| panic!("node {n}, resource {r}: {e}"));
            g.release().await.expect("release");
        }
    }
    for node in &c.nodes {
        node.shutdown().await;
    }
}
