//! In-process clusters of 1, 3 and 5 nodes over loopback TCP.

mod common;

use common::{cluster, soon};
use dsync_tokio::{ForceTarget, LockError, Mode};
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
async fn a_write_lock_excludes_other_nodes_and_hands_over_with_a_higher_token() {
    let c = cluster(3).await;
    let g = soon("node 0 locks", c.nodes[0].mutex(["x"]).lock()).await.unwrap();
    assert!(g.holders().len() >= 2, "a quorum granted: {:?}", g.holders());
    let err = c.nodes[1].mutex(["x"]).try_lock_for(Duration::from_millis(300)).await.unwrap_err();
    assert_eq!(err, LockError::Timeout);
    let token = g.fencing_token();
    let waiter = tokio::spawn({
        let m = c.nodes[1].mutex(["x"]);
        async move { m.lock().await }
    });
    drop(g); // release on drop
    let g1 = soon("node 1 acquires after the release", waiter).await.unwrap().unwrap();
    assert!(g1.fencing_token() > token);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_share_and_writers_wait_for_them() {
    let c = cluster(5).await;
    let r0 = soon("read 0", c.nodes[0].rwlock(["doc"]).read()).await.unwrap();
    let r1 = soon("read 1", c.nodes[1].rwlock(["doc"]).read()).await.unwrap();
    assert_eq!((r0.mode(), r1.mode()), (Mode::Read, Mode::Read));
    let w = c.nodes[2].rwlock(["doc"]);
    assert_eq!(w.try_write_for(Duration::from_millis(300)).await.unwrap_err(), LockError::Timeout);
    drop(r0);
    drop(r1);
    let g = soon("write after readers left", w.write()).await.unwrap();
    assert_eq!(g.mode(), Mode::Write);
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
async fn the_holder_query_shows_the_holder_and_force_unlock_removes_it() {
    let c = cluster(3).await;
    let g = soon("lock", c.nodes[0].mutex(["q"]).lock()).await.unwrap();
    let entries = soon("holders", c.nodes[1].holders(Some("q"))).await.unwrap();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let e = &entries[0];
    assert_eq!((e.owner, e.mode, e.token), (0, Mode::Write, g.fencing_token()));
    assert!(e.granted_by.len() >= 2);
    let removed = soon("force unlock", c.nodes[2].force_unlock(ForceTarget::Resource("q".into()))).await.unwrap();
    assert!(removed >= 2, "removed {removed}");
    soon("the forced-out holder is told its lock is lost", g.lost()).await;
    soon("another node takes it", c.nodes[1].mutex(["q"]).lock()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_fires_when_the_majority_is_gone() {
    let c = cluster(5).await;
    let g = soon("lock", c.nodes[0].mutex(["z"]).lock()).await.unwrap();
    assert!(!g.is_lost());
    for n in &c.nodes[2..] {
        n.crash().await;
    }
    soon("lost() resolves", g.lost()).await;
    assert!(g.is_lost());
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
async fn shutdown_releases_held_locks_at_once() {
    let c = cluster(3).await;
    let g = soon("lock", c.nodes[0].mutex(["s"]).lock()).await.unwrap();
    soon("shutdown", c.nodes[0].shutdown()).await;
    assert!(g.is_lost(), "guards of a stopped node report lost");
    // Well before the 1.5 s lease could expire, node 1 gets the lock: the release was sent.
    let got = tokio::time::timeout(Duration::from_millis(1200), c.nodes[1].mutex(["s"]).lock()).await;
    assert!(got.is_ok(), "the lock was not released by the shutdown");
    assert_eq!(c.nodes[0].mutex(["s"]).lock().await.unwrap_err(), LockError::ShutDown);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_count_grants() {
    let c = cluster(3).await;
    let g = soon("lock", c.nodes[0].mutex(["c"]).lock()).await.unwrap();
    drop(g);
    let counters = soon("counters", c.nodes[0].counters()).await.unwrap();
    assert!(counters.acquired >= 1 && counters.grants >= 1, "{counters:?}");
}
