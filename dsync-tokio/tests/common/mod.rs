//! Starting in-process clusters on loopback with ports chosen by the OS.
#![allow(dead_code)]

pub mod logs;

use dsync_tokio::core::Config;
use dsync_tokio::{Node, NodeBuilder};
use std::net::{SocketAddr, TcpListener};
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

pub struct Cluster {
    pub addrs: Vec<SocketAddr>,
    pub nodes: Vec<Node>,
}

pub async fn cluster(n: usize) -> Cluster {
    cluster_with(n, quick).await
}

pub async fn cluster_with(n: usize, tweak: fn(&mut Config)) -> Cluster {
    let listeners: Vec<TcpListener> = (0..n).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    let addrs: Vec<SocketAddr> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
    let mut nodes = Vec::new();
    for (i, l) in listeners.into_iter().enumerate() {
        let b = NodeBuilder::new(addrs.clone(), i).secret(SECRET).bootstrap().listener(l).configure(tweak);
        nodes.push(b.start_tcp().await.expect("node starts"));
    }
    for node in &nodes {
        soon("the cluster forms", formed(node)).await;
    }
    Cluster { addrs, nodes }
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

/// `n` tokio listeners on loopback ports chosen by the OS, and their addresses.
pub async fn tokio_listeners(n: usize) -> (Vec<tokio::net::TcpListener>, Vec<SocketAddr>) {
    let mut ls = Vec::new();
    for _ in 0..n {
        ls.push(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let addrs = ls.iter().map(|l| l.local_addr().unwrap()).collect();
    (ls, addrs)
}

/// Binds `addr` again once a crashed node's socket has closed.
pub async fn rebind(addr: SocketAddr) -> TcpListener {
    soon("the address is free again", async {
        loop {
            match TcpListener::bind(addr) {
                Ok(l) => return l,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
    .await
}
