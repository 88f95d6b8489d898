//! What the transport suite and the process tests share: the secret, short leases, patience, and waiting
//! for a cluster to form. (dsync-tokio/tests/common has the same helpers and starts TCP clusters.)
#![allow(dead_code)]

use dsync_tokio::core::Config;
use dsync_tokio::Node;
use std::time::Duration;

pub const SECRET: &str = "test secret";

/// A generous bound for anything that should happen "soon" on a busy 2-core machine.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Short leases so that expiry and loss happen within a test.
pub fn quick(c: &mut Config) {
    c.lease = Duration::from_millis(1500);
    c.refresh_interval = Duration::from_millis(400);
    c.attempt_timeout = Duration::from_millis(300);
    c.backoff_max = Duration::from_millis(50);
    c.query_timeout = Duration::from_millis(1000);
}

/// Waits until a lock taken through `node` is granted by every node: all its connections are up, so a test's
/// timing assertions are about locking, not about connections still being made.
pub async fn formed(node: &Node) {
    let name = format!("formed-{}", node.id());
    loop {
        if let Ok(g) = node.mutex([name.clone()]).try_lock_for(Duration::from_secs(5)).await {
            let everyone = node.holders(Some(&name)).await.ok().and_then(|e| e.first().map(|e| e.granted_by.len()));
            g.release().await.expect("release");
            if everyone == Some(node.nodes()) {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Runs `f` with the test's patience; a hang fails the test instead of stalling CI.
pub async fn soon<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(PATIENCE, f).await {
        Ok(v) => v,
        Err(_) => panic!("{what} did not happen within {PATIENCE:?}"),
    }
}
