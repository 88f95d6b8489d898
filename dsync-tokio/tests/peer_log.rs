//! Each connection change is one INFO line, with the peer's index, its address and the reason the
//! connection ended: a peer that vanished with a reset (as a SIGKILLed one with data in flight does) is told
//! apart from a clean shutdown, which the stopping node logs as `shutdown` and its peer as `closed`.
//!
//! Each test installs its own log subscriber for its thread (`#[tokio::test]` runs every task of the test
//! on that thread), capturing INFO and above.

mod common;
#[path = "common/raw_peer.rs"]
mod raw_peer;

use common::logs::Logs;
use common::{soon, tokio_listeners};
use dsync_tokio::tcp::{TcpConfig, TcpTransport};
use dsync_tokio::Transport;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// Node `me` of `peers`, with `NodeBuilder`'s default cluster name (the raw peer's).
fn config(peers: &[SocketAddr], me: usize) -> TcpConfig {
    let mut c = TcpConfig::new(peers.to_vec(), me, "dsync", Arc::<[u8]>::from(common::SECRET.as_bytes()));
    c.reconnect_min = Duration::from_millis(10);
    c.reconnect_max = Duration::from_millis(100);
    c
}

/// Runs a transport, draining its events, until the returned sender fires: then shuts it down cleanly.
fn run(cfg: TcpConfig, listener: TcpListener) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let mut t = TcpTransport::with_listener(cfg, listener).expect("the transport starts");
    let (stop, mut stopped) = oneshot::channel();
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                e = t.recv() => if e.is_none() { return },
            }
        }
        t.shutdown().await;
    });
    (stop, task)
}

/// The one up and one down line of node `node`: exactly one of each, both at INFO.
fn one_up_one_down(logs: &Logs, node: usize) -> (String, String) {
    let ups = logs.of(node, "", "peer up");
    let downs = logs.of(node, "", "peer down");
    assert_eq!(ups.len(), 1, "one line per connection start:\n{}", logs.dump());
    assert_eq!(downs.len(), 1, "one line per connection end:\n{}", logs.dump());
    for l in ups.iter().chain(&downs) {
        assert!(l.contains(" INFO "), "at INFO: {l}");
    }
    (ups[0].clone(), downs[0].clone())
}

#[tokio::test]
async fn a_reset_connection_is_one_down_line_saying_reset() {
    let (logs, _guard) = Logs::capture();
    let (mut ls, addrs) = tokio_listeners(2).await;
    let (_stop, _task) = run(config(&addrs, 1), ls.pop().unwrap());
    // Node 0, as a peer that passes the handshake and then dies abruptly: a zero linger makes the close a
    // reset, as when a killed process leaves unread data behind.
    let s = raw_peer::connect_as(addrs[1], 0, 2, 1, common::SECRET, None).await;
    let from = s.local_addr().unwrap();
    logs.wait_for(1, "", "peer up").await;
    // A zero linger does not block on drop (what the deprecation warns of).
    #[allow(deprecated)]
    s.set_linger(Some(Duration::ZERO)).unwrap();
    drop(s);
    logs.wait_for(1, "", "peer down").await;
    // Nothing more comes (node 1 does not dial node 0).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (up, down) = one_up_one_down(&logs, 1);
    for l in [&up, &down] {
        assert!(l.contains("peer=0") && l.contains(&from.to_string()), "index and address: {l}");
    }
    assert!(down.contains("reason=\"reset\""), "a reset, not a clean close: {down}");
    // The driver's events are not logged at INFO a second time.
    assert_eq!(logs.lines().len(), 2, "{}", logs.dump());
}

#[tokio::test]
async fn a_clean_shutdown_is_shutdown_on_one_side_and_closed_on_the_other() {
    let (logs, _guard) = Logs::capture();
    let (mut ls, addrs) = tokio_listeners(2).await;
    let (_stop1, _task1) = run(config(&addrs, 1), ls.pop().unwrap());
    let (stop0, task0) = run(config(&addrs, 0), ls.pop().unwrap());
    logs.wait_for(0, "", "peer up").await;
    logs.wait_for(1, "", "peer up").await;
    stop0.send(()).unwrap();
    soon("node 0 shuts down", task0).await.unwrap();
    logs.wait_for(1, "", "peer down").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (up0, down0) = one_up_one_down(&logs, 0);
    let (up1, down1) = one_up_one_down(&logs, 1);
    assert!(up0.contains("peer=1") && up0.contains(&addrs[1].to_string()), "{up0}");
    assert!(down0.contains("peer=1") && down0.contains(&addrs[1].to_string()), "{down0}");
    assert!(up1.contains("peer=0") && down1.contains("peer=0"), "{up1}\n{down1}");
    assert!(down0.contains("reason=\"shutdown\""), "the stopping node: {down0}");
    assert!(down1.contains("reason=\"closed\""), "its peer sees a clean close, not a reset: {down1}");
}
