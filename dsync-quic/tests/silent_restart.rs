//! A node that dies without closing anything (as under SIGKILL) and comes back on the same address with the
//! same key resets its peers' stale connections at once (stateless reset), instead of leaving them to the
//! idle timeout.

use dsync_core::Message;
use dsync_quic::dev::DevCa;
use dsync_quic::{NodeIdentity, QuicConfig, QuicTransport};
use dsync_tokio::{Transport, TransportEvent};
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

/// Far longer than the test may take: only a stateless reset can make node 0 notice the restart in time.
const IDLE: Duration = Duration::from_secs(120);
const PATIENCE: Duration = Duration::from_secs(30);

fn config(addrs: &[SocketAddr], me: usize, id: NodeIdentity) -> QuicConfig {
    let mut cfg = QuicConfig::new(addrs.to_vec(), me, "test", id);
    cfg.idle_timeout = IDLE;
    cfg
}

async fn next_peer_event(t: &mut QuicTransport) -> TransportEvent {
    loop {
        match tokio::time::timeout(PATIENCE, t.recv()).await.expect("an event in time").expect("transport runs") {
            TransportEvent::Messages { .. } => continue,
            e => return e,
        }
    }
}

/// Runs node 1 on its own runtime in a thread until `kill` fires, then drops the runtime without letting
/// anything run again: no close frame, no goodbye, like a killed process.
fn run_until_killed(
    cfg: QuicConfig,
    socket: UdpSocket,
    kill: std::sync::mpsc::Receiver<()>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let transport = rt.block_on(async { QuicTransport::with_socket(cfg, socket).unwrap() });
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let _ = kill.recv();
            let _ = tx.send(());
        });
        rt.block_on(async { rx.await.unwrap() });
        drop(rt); // its tasks (connections, the endpoint driver) are dropped unpolled
        drop(transport);
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silently_restarted_peer_resets_the_stale_connection_at_once() {
    let ca = DevCa::new("test").unwrap();
    let id1 = ca.node_identity(1).unwrap();
    let sockets: Vec<UdpSocket> = (0..2).map(|_| UdpSocket::bind("127.0.0.1:0").unwrap()).collect();
    let addrs: Vec<SocketAddr> = sockets.iter().map(|s| s.local_addr().unwrap()).collect();
    let mut sockets = sockets.into_iter();
    let mut node0 =
        QuicTransport::with_socket(config(&addrs, 0, ca.node_identity(0).unwrap()), sockets.next().unwrap()).unwrap();
    let (kill, killed) = std::sync::mpsc::channel();
    let first = run_until_killed(config(&addrs, 1, id1.clone()), sockets.next().unwrap(), killed);
    assert!(matches!(next_peer_event(&mut node0).await, TransportEvent::PeerUp(1)));

    kill.send(()).unwrap();
    first.join().unwrap();
    // The same node, same key, same address: a new process.
    let socket = UdpSocket::bind(addrs[1]).expect("the dead node's address is free");
    let mut node1 = QuicTransport::with_socket(config(&addrs, 1, id1), socket).unwrap();
    // Node 0 still believes in the old connection; its next packet draws a stateless reset.
    let big = Message::Query { qid: 1, resource: Some("r".repeat(500)) };
    node0.send(1, &big);
    node0.flush();
    let began = tokio::time::Instant::now();
    assert!(matches!(next_peer_event(&mut node0).await, TransportEvent::PeerDown(1)));
    assert!(matches!(next_peer_event(&mut node0).await, TransportEvent::PeerUp(1)));
    assert!(began.elapsed() < IDLE / 4, "took {:?}: the idle timeout, not a reset", began.elapsed());
    assert!(matches!(next_peer_event(&mut node1).await, TransportEvent::PeerUp(0)));
}
