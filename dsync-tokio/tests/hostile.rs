//! Peers that lie, babble or stall: each is cut off with nothing reaching the core, and nobody else suffers.

mod common;

use common::{soon, tokio_listeners};
use dsync_tokio::core::Message;
use dsync_tokio::tcp::handshake::{self, Identity};
use dsync_tokio::tcp::{cluster_id, encode_frame, TcpConfig, TcpTransport};
use dsync_tokio::{Transport, TransportEvent};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SECRET: &[u8] = b"transport secret";

fn config(addrs: &[SocketAddr], me: usize, secret: &[u8]) -> TcpConfig {
    let mut c = TcpConfig::new(addrs.to_vec(), me, cluster_id("test"), Arc::<[u8]>::from(secret));
    c.max_frame = 64 * 1024;
    c
}

fn identity(me: usize, nodes: usize) -> Identity {
    Identity::new(cluster_id("test"), me, nodes, SECRET)
}

/// Waits until `cond` holds, polling; fails the test after PATIENCE.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    soon(what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

/// The stream ends (the other side closed it) without us closing it.
async fn closed_by_peer(s: &mut TcpStream) {
    let mut buf = [0u8; 256];
    soon("the node closes the connection", async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
}

async fn no_messages(t: &mut TcpTransport) -> Vec<TransportEvent> {
    let mut seen = Vec::new();
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(1), t.recv()).await {
        assert!(!matches!(e, TransportEvent::Messages { .. }), "a message from a bad peer reached the driver: {e:?}");
        seen.push(e);
    }
    seen
}

#[tokio::test]
async fn a_peer_with_the_wrong_secret_never_comes_up() {
    let (mut ls, addrs) = tokio_listeners(2).await;
    let b = TcpTransport::with_listener(config(&addrs, 1, SECRET), ls.pop().unwrap()).unwrap();
    let mut a = TcpTransport::with_listener(config(&addrs, 0, b"not the secret"), ls.pop().unwrap()).unwrap();
    let stats = b.stats();
    until("node 1 rejects node 0's handshake", || stats.rejected.load(Ordering::Relaxed) >= 1).await;
    let events = no_messages(&mut a).await;
    assert!(events.iter().all(|e| !matches!(e, TransportEvent::PeerUp(_))), "{events:?}");
}

#[tokio::test]
async fn garbage_before_the_handshake_is_cut_off() {
    let (mut ls, addrs) = tokio_listeners(2).await;
    let mut node = TcpTransport::with_listener(config(&addrs, 1, SECRET), ls.pop().unwrap()).unwrap();
    let mut s = TcpStream::connect(addrs[1]).await.unwrap();
    s.write_all(&[0xAB; 200]).await.unwrap();
    closed_by_peer(&mut s).await;
    assert!(node.stats().rejected.load(Ordering::Relaxed) >= 1);
    assert!(no_messages(&mut node).await.is_empty());
}

#[tokio::test]
async fn a_peer_claiming_an_index_it_may_not_use_is_refused() {
    let (mut ls, addrs) = tokio_listeners(3).await;
    let _node1 = TcpTransport::with_listener(config(&addrs, 1, SECRET), ls.remove(1)).unwrap();
    // Only node 0 may dial node 1; this peer knows the secret but claims to be node 2.
    let mut s = TcpStream::connect(addrs[1]).await.unwrap();
    let err = soon("handshake", handshake::dial(&mut s, &identity(2, 3), 1)).await;
    assert!(err.is_err(), "the node accepted a forged index");
}

async fn authenticated_as_node_0(addrs: &[SocketAddr]) -> TcpStream {
    let mut s = TcpStream::connect(addrs[1]).await.unwrap();
    soon("handshake", handshake::dial(&mut s, &identity(0, addrs.len()), 1)).await.expect("valid handshake");
    s
}

#[tokio::test]
async fn an_oversized_frame_disconnects_the_peer_and_nothing_reaches_the_core() {
    let (mut ls, addrs) = tokio_listeners(2).await;
    let mut node = TcpTransport::with_listener(config(&addrs, 1, SECRET), ls.pop().unwrap()).unwrap();
    let mut s = authenticated_as_node_0(&addrs).await;
    let mut bytes = Vec::new();
    encode_frame(&Message::Wake { ticket: 1 }, &mut bytes); // a valid frame first ...
    let valid = bytes.len();
    bytes.extend_from_slice(&(1u32 << 30).to_le_bytes()); // ... then an announced gigabyte
    s.write_all(&bytes).await.unwrap();
    closed_by_peer(&mut s).await;
    let mut delivered = 0;
    soon("peer up, then down", async {
        loop {
            match node.recv().await.unwrap() {
                TransportEvent::Messages { messages, .. } => delivered += messages.len(),
                TransportEvent::PeerDown(0) => break,
                TransportEvent::PeerUp(0) => {}
                e => panic!("unexpected {e:?}"),
            }
        }
    })
    .await;
    assert!(delivered <= 1, "only the valid frame before the bad one may arrive ({valid} bytes)");
    assert!(node.stats().rejected.load(Ordering::Relaxed) >= 1);
}

#[tokio::test]
async fn a_malformed_frame_disconnects_the_peer() {
    let (mut ls, addrs) = tokio_listeners(2).await;
    let mut node = TcpTransport::with_listener(config(&addrs, 1, SECRET), ls.pop().unwrap()).unwrap();
    let mut s = authenticated_as_node_0(&addrs).await;
    s.write_all(&[5, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff]).await.unwrap();
    closed_by_peer(&mut s).await;
    soon("peer down", async {
        loop {
            match node.recv().await.unwrap() {
                TransportEvent::Messages { .. } => panic!("a malformed frame reached the driver"),
                TransportEvent::PeerDown(0) => break,
                _ => {}
            }
        }
    })
    .await;
}

// A peer that stops reading: the transport suite (dsync-tools/tests/transport_suite) checks it over TCP and
// QUIC, and tests/exhaustion.rs with a raw authenticated peer at the level of a whole node.
