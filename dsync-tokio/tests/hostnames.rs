//! Peers named by host name ([`TcpConfig::peer_names`]) are resolved again on every dial: a peer that moved
//! is found at its new address, and a name that stops resolving falls back to the last good address.
//!
//! Each test installs its own log subscriber for its thread, capturing INFO and above.

mod common;

use common::logs::Logs;
use common::{tokio_listeners, PATIENCE};
use dsync_tokio::tcp::{TcpConfig, TcpTransport};
use dsync_tokio::{Transport, TransportEvent};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

fn config(peers: &[SocketAddr], me: usize) -> TcpConfig {
    let mut c = TcpConfig::new(peers.to_vec(), me, "test", Arc::<[u8]>::from(&b"names secret"[..]));
    c.reconnect_min = Duration::from_millis(10);
    c.reconnect_max = Duration::from_millis(100);
    c.handshake_timeout = Duration::from_secs(3);
    c
}

/// Waits for `t`'s first `PeerUp`.
async fn up(t: &mut TcpTransport) -> usize {
    let first = async {
        loop {
            if let Some(TransportEvent::PeerUp(p)) = t.recv().await {
                return p;
            }
        }
    };
    tokio::time::timeout(PATIENCE, first).await.expect("the peer comes up")
}

/// An address nothing listens on.
async fn dead_address() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap()
}

#[tokio::test]
async fn a_peer_that_moved_is_found_again_through_its_name() {
    let (logs, _guard) = Logs::capture();
    let (mut ls, addrs) = tokio_listeners(2).await;
    let name = format!("localhost:{}", addrs[1].port());
    let found: Vec<SocketAddr> = tokio::net::lookup_host(name.as_str()).await.unwrap().collect();
    if !found.contains(&addrs[1]) || found[0] != addrs[1] {
        eprintln!("skipped: {name} resolves to {found:?}, not first to {}", addrs[1]);
        return;
    }
    let mut one = TcpTransport::with_listener(config(&addrs, 1), ls.pop().unwrap()).unwrap();
    // Node 0 knows node 1 at its old address, and by name.
    let old = dead_address().await;
    let mut cfg = config(&[addrs[0], old], 0);
    cfg.peer_names = vec![None, Some(name.clone())];
    let mut zero = TcpTransport::with_listener(cfg, ls.pop().unwrap()).unwrap();
    assert_eq!(up(&mut zero).await, 1);
    assert_eq!(up(&mut one).await, 0);
    let moved = logs.with("peer's name resolves to a new address");
    assert_eq!(moved.len(), 1, "{moved:?}");
    assert!(moved[0].contains(&old.to_string()) && moved[0].contains(&addrs[1].to_string()), "{}", moved[0]);
    assert!(moved[0].contains(" INFO "), "{}", moved[0]);
}

#[tokio::test]
async fn a_name_that_does_not_resolve_falls_back_to_the_last_address_and_is_reported_once() {
    let (logs, _guard) = Logs::capture();
    let (mut ls, addrs) = tokio_listeners(2).await;
    let mut one = TcpTransport::with_listener(config(&addrs, 1), ls.pop().unwrap()).unwrap();
    let mut cfg = config(&addrs, 0);
    cfg.peer_names = vec![None, Some("no-such-host.invalid:7000".into())];
    let mut zero = TcpTransport::with_listener(cfg, ls.pop().unwrap()).unwrap();
    assert_eq!(up(&mut zero).await, 1);
    assert_eq!(up(&mut one).await, 0);
    let failed = logs.with("cannot resolve peer 1's name no-such-host.invalid:7000");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(failed[0].contains(" WARN ") && failed[0].contains(&addrs[1].to_string()), "{}", failed[0]);
}

#[test]
fn a_name_list_of_the_wrong_length_is_refused() {
    let addrs: Vec<SocketAddr> = vec!["127.0.0.1:1".parse().unwrap(), "127.0.0.1:2".parse().unwrap()];
    let mut cfg = config(&addrs, 0);
    cfg.peer_names = vec![None];
    let err = cfg.check(None).unwrap_err();
    assert!(err.to_string().contains("1 peer names for 2 peers"), "{err}");
    cfg.peer_names = Vec::new();
    assert!(cfg.check(None).is_ok(), "empty: no names");
}
