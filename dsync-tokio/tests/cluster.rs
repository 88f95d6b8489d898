//! Lock semantics on in-process clusters over loopback TCP. Transport-level behaviour (formation,
//! exchange, majority loss, shutdown, restart, stalled peers) is in the shared suite
//! dsync-tools/tests/transport_suite/, run over TCP and QUIC by `transport_tcp.rs` and `transport_quic.rs`.

mod common;

use common::{cluster, soon};
use dsync_tokio::LockError;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_node_cluster_locks_and_unlocks() {
    let c = cluster(1).await;
    let m = c.nodes[0].mutex(["solo"]);
    let g = soon("lock", m.lock()).await.unwrap();
    assert_eq!(g.holders(), vec![0]);
    let first = g.fencing_token();
    let released = soon("release", g.release()).await.unwrap();
    assert_eq!((released.confirmed, released.grantors), (1, 1));
    let g = soon("relock", m.lock()).await.unwrap();
    assert!(g.fencing_token() > first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_resource_lock_conflicts_on_any_shared_resource() {
    let c = cluster(3).await;
    let ab = soon("lock a+b", c.nodes[0].mutex(["a", "b"]).lock()).await.unwrap();
    let bc = c.nodes[1].mutex(["c", "b"]);
    assert_eq!(bc.try_lock_for(Duration::from_millis(300)).await.unwrap_err(), LockError::Timeout);
    let _c_alone = soon("c alone is free", c.nodes[1].mutex(["c"]).try_lock_for(Duration::from_secs(5))).await.unwrap();
    drop(ab);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_requests_get_typed_errors() {
    let c = cluster(1).await;
    let none: [&str; 0] = [];
    assert!(matches!(c.nodes[0].mutex(none).lock().await, Err(LockError::Invalid(_))));
    let long = "x".repeat(2000);
    assert!(matches!(c.nodes[0].mutex([long]).lock().await, Err(LockError::Invalid(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_guard_in_a_thread_without_a_runtime_releases_it() {
    let c = cluster(3).await;
    let g = soon("lock", c.nodes[0].mutex(["y"]).lock()).await.unwrap();
    std::thread::spawn(move || drop(g)).join().unwrap();
    soon("node 2 acquires", c.nodes[2].mutex(["y"]).lock()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_lock_future_leaves_no_grant_behind() {
    let c = cluster(3).await;
    let g = soon("lock", c.nodes[0].mutex(["k"]).lock()).await.unwrap();
    // Node 1 waits, then gives up by dropping the future.
    let _ = tokio::time::timeout(Duration::from_millis(200), c.nodes[1].mutex(["k"]).lock()).await;
    drop(g);
    // Once everything settled, nothing may hold "k": node 2 gets it and is then the only holder.
    let g2 = soon("node 2 locks", c.nodes[2].mutex(["k"]).lock()).await.unwrap();
    let entries = soon("holders", c.nodes[2].holders(Some("k"))).await.unwrap();
    assert!(entries.iter().all(|e| e.owner == 2), "only node 2 may hold k: {entries:?}");
    drop(g2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_count_grants() {
    let c = cluster(3).await;
    let g = soon("lock", c.nodes[0].mutex(["c"]).lock()).await.unwrap();
    drop(g);
    let counters = soon("counters", c.nodes[0].counters()).await.unwrap();
    assert!(counters.acquired >= 1 && counters.grants >= 1, "{counters:?}");
}
