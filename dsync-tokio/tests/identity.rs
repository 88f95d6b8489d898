//! Misconfigured peers — another secret or cluster name, a shuffled peer list, two live nodes with one
//! index, a node listed twice or dialing itself — are reported once, in words that name the peer's address
//! and what to check, on both sides, and their retries do not flood the log.
//!
//! Each test installs its own log subscriber for its thread (`#[tokio::test]` runs every task of the test
//! on that thread), capturing INFO and above.

mod common;

use common::logs::Logs;
use common::{soon, tokio_listeners};
use dsync_tokio::tcp::handshake::{self, Identity};
use dsync_tokio::tcp::{TcpConfig, TcpConfigError, TcpTransport};
use dsync_tokio::Transport;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

const SECRET: &[u8] = b"identity secret";

/// Node `me` of `peers`, redialing quickly so a test sees many attempts.
fn config(peers: &[SocketAddr], me: usize, cluster: &str, secret: &[u8]) -> TcpConfig {
    let mut c = TcpConfig::new(peers.to_vec(), me, cluster, Arc::<[u8]>::from(secret));
    c.reconnect_min = Duration::from_millis(10);
    c.reconnect_max = Duration::from_millis(100);
    c
}

/// Starts a transport whose events are drained (nothing reads them in these tests, and a full channel
/// would stall its connections); returns its counters.
fn start(cfg: TcpConfig, listener: TcpListener) -> Arc<dsync_tokio::tcp::TcpStats> {
    let mut t = TcpTransport::with_listener(cfg, listener).expect("the transport starts");
    let stats = t.stats();
    tokio::spawn(async move { while t.recv().await.is_some() {} });
    stats
}

async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    soon(what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

#[tokio::test]
async fn a_wrong_secret_is_reported_once_on_both_sides_with_the_address() {
    let (logs, _guard) = Logs::capture();
    let (mut ls, addrs) = tokio_listeners(2).await;
    let acceptor = start(config(&addrs, 1, "test", SECRET), ls.pop().unwrap());
    let dialer = start(config(&addrs, 0, "test", b"not the secret"), ls.pop().unwrap());
    logs.wait_for(0, "WARN", "does not know our cluster secret").await;
    logs.wait_for(1, "WARN", "we do not know the secret peer").await;
    until("several more attempts", || acceptor.rejected.load(Ordering::Relaxed) >= 6).await;
    // Both sides count the refusals (the operator's `dsync_transport_rejected_total`), not only the acceptor.
    until("the dialer counts them too", || dialer.rejected.load(Ordering::Relaxed) >= 3).await;
    let dialer_side = logs.of(0, "WARN", "does not know our cluster secret");
    let acceptor_side = logs.of(1, "WARN", "we do not know the secret peer");
    assert_eq!(dialer_side.len(), 1, "repeats are suppressed:\n{}", logs.dump());
    assert_eq!(acceptor_side.len(), 1, "repeats are suppressed:\n{}", logs.dump());
    assert!(dialer_side[0].contains(&format!("peer {} (node 1)", addrs[1])), "{}", dialer_side[0]);
    assert!(acceptor_side[0].contains("expects: it rejected our handshake proof"), "{}", acceptor_side[0]);
    assert!(
        acceptor_side[0].contains("peer 127.0.0.1:") && acceptor_side[0].contains("(says it is node 0)"),
        "{}",
        acceptor_side[0]
    );
    assert!(!logs.dump().contains("eof"), "the real reason, not an early eof:\n{}", logs.dump());
    assert_eq!(logs.of(0, "WARN", "").len() + logs.of(1, "WARN", "").len(), 2, "{}", logs.dump());
}

#[tokio::test]
async fn a_cluster_name_mismatch_prints_both_names_escaped() {
    let (logs, _guard) = Logs::capture();
    let (mut ls, addrs) = tokio_listeners(2).await;
    let acceptor = start(config(&addrs, 1, "beta", SECRET), ls.pop().unwrap());
    let _dialer = start(config(&addrs, 0, "alpha", SECRET), ls.pop().unwrap());
    let both = "belongs to cluster \"beta\", this node to cluster \"alpha\"";
    logs.wait_for(0, "WARN", both).await;
    logs.wait_for(1, "WARN", "belongs to cluster \"alpha\", this node to cluster \"beta\"").await;
    assert!(logs.of(0, "WARN", both)[0].contains(&format!("peer {} (node 1)", addrs[1])));
    until("several more attempts", || acceptor.rejected.load(Ordering::Relaxed) >= 5).await;
    assert_eq!(logs.of(0, "WARN", "").len(), 1, "{}", logs.dump());
    assert_eq!(logs.of(1, "WARN", "").len(), 1, "{}", logs.dump());

    // A peer that has not authenticated cannot put raw control characters into our log.
    let mut s = TcpStream::connect(addrs[1]).await.unwrap();
    let evil = Identity::new("evil\n\x1b[2Jname", 0, 2, SECRET);
    let err = soon("handshake", handshake::dial(&mut s, &evil, 1)).await.unwrap_err();
    assert!(err.to_string().contains("cluster \"beta\""), "{err}");
    // (Same IP and reason as the dialer above: rate-limited to DEBUG; check the escaping on a fresh key.)
    let (logs2, _g2) = Logs::capture();
    let (mut ls, addrs) = tokio_listeners(1).await;
    let _lone = start(config(&["127.0.0.1:9".parse().unwrap(), addrs[0]], 1, "beta", SECRET), ls.pop().unwrap());
    let mut s = TcpStream::connect(addrs[0]).await.unwrap();
    let _ = soon("handshake", handshake::dial(&mut s, &evil, 1)).await;
    logs2.wait_for(1, "WARN", "belongs to cluster").await;
    let line = &logs2.of(1, "WARN", "belongs to cluster")[0];
    assert!(line.contains(r#"cluster "evil\n\x1b[2Jname""#), "{line}");
    assert!(!logs2.dump().contains('\x1b'), "{}", logs2.dump());
}

#[tokio::test]
async fn a_node_at_another_index_than_our_peer_list_says_is_named_on_both_sides() {
    let (logs, _guard) = Logs::capture();
    let (mut ls, addrs) = tokio_listeners(3).await;
    let node2 = start(config(&addrs, 2, "test", SECRET), ls.pop().unwrap());
    let _node1 = start(config(&addrs, 1, "test", SECRET), ls.pop().unwrap());
    // Node 0's list has nodes 1 and 2 swapped.
    let swapped = [addrs[0], addrs[2], addrs[1]];
    let _node0 = start(config(&swapped, 0, "test", SECRET), ls.pop().unwrap());
    let dialer = format!(
        "peer at {} says it is node 2, but our peer list has node 1 there: check --peers order / --id",
        addrs[2]
    );
    logs.wait_for(0, "WARN", &dialer).await;
    logs.wait_for(2, "WARN", "(node 0) dialed us as node 1, but this is node 2: check --peers order / --id").await;
    logs.wait_for(0, "WARN", "says it is node 1, but our peer list has node 2 there").await;
    until("several more attempts", || node2.rejected.load(Ordering::Relaxed) >= 5).await;
    assert_eq!(logs.of(0, "WARN", &dialer).len(), 1, "{}", logs.dump());
    assert_eq!(logs.of(2, "WARN", "dialed us as node 1").len(), 1, "{}", logs.dump());
}

#[tokio::test]
async fn two_live_nodes_with_one_index_are_reported_once_and_do_not_storm() {
    let (logs, _guard) = Logs::capture();
    let (mut ls, addrs) = tokio_listeners(3).await;
    let peers = [addrs[0], addrs[1]];
    let _b = start(config(&peers, 1, "test", SECRET), ls.remove(1));
    let _a = start(config(&peers, 0, "test", SECRET), ls.remove(0));
    // A copy of node 0 listening elsewhere, with the same peer list and --id.
    let _copy = start(config(&peers, 0, "test", SECRET), ls.remove(0));
    logs.wait_for(1, "ERROR", "two live nodes claim index 0:").await;
    logs.wait_for(0, "WARN", "another live node also claims our index 0").await;
    // Let the pair run for a while: they must not replace each other in a loop.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let all = logs.lines();
    assert!(all.len() < 50, "{} lines at INFO and above in 3 s:\n{}", all.len(), logs.dump());
    let errors = logs.of(1, "ERROR", "two live nodes claim index 0:");
    assert_eq!(errors.len(), 1, "{}", logs.dump());
    assert_eq!(errors[0].matches("127.0.0.1:").count(), 2, "both addresses: {}", errors[0]);
    assert!(errors[0].contains("configuration error (duplicate --id?)"), "{}", errors[0]);
    assert_eq!(logs.of(0, "WARN", "another live node also claims our index 0").len(), 1, "{}", logs.dump());
}

#[tokio::test]
async fn a_peer_list_with_a_duplicate_or_our_own_address_is_refused() {
    let (mut ls, addrs) = tokio_listeners(2).await;
    let twice = config(&[addrs[0], addrs[1], addrs[1]], 0, "test", SECRET);
    let err = TcpTransport::with_listener(twice, ls.remove(0)).err().expect("refused");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    let typed = err.get_ref().and_then(|e| e.downcast_ref::<TcpConfigError>()).cloned();
    assert_eq!(typed, Some(TcpConfigError::DuplicatePeer { first: 1, second: 2, addr: addrs[1] }));

    // Node 0's entry names another address, and ours is listed as node 1's.
    let other: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let own = config(&[other, addrs[1]], 0, "test", SECRET);
    let err = TcpTransport::with_listener(own, ls.remove(0)).err().expect("refused");
    let typed = err.get_ref().and_then(|e| e.downcast_ref::<TcpConfigError>()).cloned();
    assert_eq!(typed, Some(TcpConfigError::OwnAddress { index: 1, addr: addrs[1] }));
    assert!(err.to_string().contains("peer list entry 1 is this node's own address"), "{err}");
}

#[tokio::test]
async fn a_dial_that_reaches_this_node_is_one_error_and_not_retried() {
    let (logs, _guard) = Logs::capture();
    // Listening on every interface, and listed as node 1 under another loopback address.
    let l = TcpListener::bind("0.0.0.0:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let me = SocketAddr::from(([127, 0, 0, 1], port));
    let also_me = SocketAddr::from(([127, 0, 0, 2], port));
    let stats = start(config(&[me, also_me], 0, "test", SECRET), l);
    let line = format!("peer list entry 1 ({also_me}) is this node's own address");
    logs.wait_for(0, "ERROR", &line).await;
    until("the acceptor refused it", || stats.rejected.load(Ordering::Relaxed) >= 1).await;
    // Long enough for several redials at the 100 ms cap, had the link not stopped.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(stats.rejected.load(Ordering::Relaxed), 1, "not dialed again");
    assert_eq!(logs.lines().len(), 1, "{}", logs.dump());
}
