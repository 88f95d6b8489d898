//! Peers whose certificate does not prove the node index they claim are refused with one log line, and
//! nothing they send reaches the core; so are peers that send garbage or oversized frames after a valid
//! handshake.

use dsync_core::Message;
use dsync_quic::dev::{DevCa, OffsetDateTime};
use dsync_quic::{tls, NodeIdentity, QuicConfig, QuicError, QuicStats, QuicTransport};
use dsync_tokio::{Transport, TransportEvent};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(30);

async fn soon<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, f).await.unwrap_or_else(|_| panic!("{what} did not happen within {PATIENCE:?}"))
}

async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    soon(what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

/// Log lines of this test binary, captured by one global subscriber. Each test creates its transports
/// inside a span naming the test, so it counts only its own lines.
static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        LOG.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One test's view of the captured log.
struct Logs(&'static str);

impl Logs {
    fn capture(test: &'static str) -> Self {
        static INIT: std::sync::Once = std::sync::Once::new();
        INIT.call_once(|| {
            let sub = tracing_subscriber::fmt().with_ansi(false).with_writer(|| LogWriter).finish();
            tracing::subscriber::set_global_default(sub).expect("no other subscriber");
        });
        Logs(test)
    }

    /// Lines logged by node `node`'s transport in this test that contain `text`.
    fn count(&self, node: usize, text: &str) -> usize {
        let all = String::from_utf8_lossy(&LOG.lock().unwrap()).into_owned();
        let tag = format!("case{{test=\"{}\"}}:dsync-quic{{node={node}}}", self.0);
        all.lines().filter(|l| l.contains(&tag) && l.contains(text)).count()
    }
}

fn sockets(n: usize) -> (Vec<UdpSocket>, Vec<SocketAddr>) {
    let s: Vec<UdpSocket> = (0..n).map(|_| UdpSocket::bind("127.0.0.1:0").unwrap()).collect();
    let a = s.iter().map(|s| s.local_addr().unwrap()).collect();
    (s, a)
}

/// Node `me`, started inside a span naming `test` (its log lines carry it).
fn node(test: &str, addrs: &[SocketAddr], me: usize, id: NodeIdentity, socket: UdpSocket) -> QuicTransport {
    let _span = tracing::info_span!("case", test).entered();
    let mut cfg = QuicConfig::new(addrs.to_vec(), me, "test", id);
    cfg.max_frame = 64 * 1024;
    QuicTransport::with_socket(cfg, socket).expect("transport starts")
}

fn expired(ca: &DevCa, index: usize) -> NodeIdentity {
    let now = OffsetDateTime::now_utc();
    ca.node_identity_valid(index, now - Duration::from_secs(86400 * 30), now - Duration::from_secs(86400)).unwrap()
}

/// Drains what a transport has reported for a while; fails if any message or `PeerUp` arrived.
async fn nothing_came_up(t: &mut QuicTransport, settle: Duration) {
    let deadline = tokio::time::Instant::now() + settle;
    while let Ok(Some(e)) = tokio::time::timeout_at(deadline, t.recv()).await {
        assert!(
            !matches!(e, TransportEvent::Messages { .. } | TransportEvent::PeerUp(_)),
            "a refused peer got through: {e:?}"
        );
    }
}

/// One log line per refused connection: the count of "peer refused" lines on `node` equals its counter.
fn one_line_each(logs: &Logs, node: usize, stats: &QuicStats) {
    let refused = stats.rejected.load(Ordering::Relaxed) as usize;
    assert!(refused >= 1);
    assert_eq!(logs.count(node, "peer refused"), refused, "one log line per refused connection");
}

/// A dialer (node 0) whose identity is refused by node 1; returns node 1 after its refusals were logged.
async fn refused_dialer(dialer_id: NodeIdentity, ca: &DevCa, logs: &Logs) {
    let (mut s, addrs) = sockets(2);
    let mut acceptor = node(logs.0, &addrs, 1, ca.node_identity(1).unwrap(), s.pop().unwrap());
    let mut dialer = node(logs.0, &addrs, 0, dialer_id, s.pop().unwrap());
    let stats = acceptor.stats();
    until("node 1 refuses node 0", || stats.rejected.load(Ordering::Relaxed) >= 2).await;
    nothing_came_up(&mut acceptor, Duration::from_millis(300)).await;
    nothing_came_up(&mut dialer, Duration::from_millis(1)).await;
    // Stop both before counting, so no refusal is between its counter and its log line.
    acceptor.shutdown().await;
    dialer.shutdown().await;
    one_line_each(logs, 1, &stats);
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused() {
    let logs = Logs::capture("a_certificate_from_another_ca_is_refused");
    let ca = DevCa::new("test").unwrap();
    let rogue = DevCa::new("test").unwrap(); // same cluster and name, different key: not the cluster's CA
                                             // The impostor trusts the real CA, so it is node 1 that judges (and refuses) its certificate.
    let impostor = rogue.node_identity(0).unwrap().with_roots(vec![ca.cert_der()]);
    refused_dialer(impostor, &ca, &logs).await;
    assert!(logs.count(1, "BadSignature") >= 1, "the log says why");
    assert_eq!(logs.count(1, "aborted by peer"), 0, "node 1 refused it, not the other way round");
}

#[tokio::test]
async fn an_expired_certificate_is_refused() {
    let logs = Logs::capture("an_expired_certificate_is_refused");
    let ca = DevCa::new("test").unwrap();
    refused_dialer(expired(&ca, 0), &ca, &logs).await;
    assert!(logs.count(1, "certificate expired") >= 1, "the log says why");
    assert_eq!(logs.count(1, "aborted by peer"), 0, "node 1 refused it, not the other way round");
}

#[tokio::test]
async fn a_valid_certificate_for_another_index_is_refused_by_the_acceptor() {
    let logs = Logs::capture("a_valid_certificate_for_another_index_is_refused_by_the_acceptor");
    let ca = DevCa::new("test").unwrap();
    let (mut s, addrs) = sockets(3);
    let mut node1 = node(logs.0, &addrs, 1, ca.node_identity(1).unwrap(), s.remove(1));
    // A peer with node 2's genuine certificate tries to be node 0 towards node 1 (only node 0 dials node 1).
    let client = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let cfg = tls::client_config(&ca.node_identity(2).unwrap(), Arc::new(quinn::TransportConfig::default())).unwrap();
    let conn = soon("TLS handshake", client.connect_with(cfg, addrs[1], "node-1.test").unwrap()).await;
    if let Ok(conn) = conn {
        // Whatever it manages to send is never read.
        if let Ok(mut s) = conn.open_uni().await {
            let mut frame = Vec::new();
            dsync_tokio::tcp::encode_frame(&Message::Wake { ticket: 7 }, &mut frame);
            let _ = s.write_all(&frame).await;
        }
        let why = soon("node 1 closes the connection", conn.closed()).await;
        assert!(matches!(why, quinn::ConnectionError::ApplicationClosed(_)), "{why:?}");
    }
    let stats = node1.stats();
    until("node 1 counts the refusal", || stats.rejected.load(Ordering::Relaxed) >= 1).await;
    nothing_came_up(&mut node1, Duration::from_millis(300)).await;
    node1.shutdown().await;
    one_line_each(&logs, 1, &stats);
    assert_eq!(logs.count(1, "names node 2"), 1, "the log line says which index the certificate names");
}

#[tokio::test]
async fn a_server_with_another_nodes_certificate_is_refused_by_the_dialer() {
    let logs = Logs::capture("a_server_with_another_nodes_certificate_is_refused_by_the_dialer");
    let ca = DevCa::new("test").unwrap();
    let (mut s, addrs) = sockets(2);
    // At node 1's address, a server presents node 2's genuine certificate.
    let server =
        tls::server_config(&ca.node_identity(2).unwrap(), Arc::new(quinn::TransportConfig::default())).unwrap();
    let impostor =
        quinn::Endpoint::new(Default::default(), Some(server), s.pop().unwrap(), Arc::new(quinn::TokioRuntime))
            .unwrap();
    let accepting = tokio::spawn(async move {
        while let Some(i) = impostor.accept().await {
            let _ = i.await;
        }
    });
    let mut node0 = node(logs.0, &addrs, 0, ca.node_identity(0).unwrap(), s.pop().unwrap());
    let stats = node0.stats();
    until("node 0 refuses the impostor", || stats.rejected.load(Ordering::Relaxed) >= 1).await;
    nothing_came_up(&mut node0, Duration::from_millis(300)).await;
    node0.shutdown().await;
    // Retries with the same reason are not logged again.
    assert_eq!(logs.count(0, "peer refused"), 1);
    assert_eq!(stats.rejected.load(Ordering::Relaxed), 1);
    accepting.abort();
}

/// A raw client holding node 0's genuine certificate, connected to node 1 of 2.
async fn authenticated_as_node_0(ca: &DevCa, addr: SocketAddr) -> quinn::Connection {
    let client = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let cfg = tls::client_config(&ca.node_identity(0).unwrap(), Arc::new(quinn::TransportConfig::default())).unwrap();
    soon("handshake", client.connect_with(cfg, addr, "node-1.test").unwrap()).await.expect("valid handshake")
}

/// Sends `bytes` on node 0's first stream after a valid handshake (and the preamble, if `preamble`).
async fn bad_bytes_disconnect(preamble: bool, bytes: Vec<u8>) -> usize {
    let ca = DevCa::new("test").unwrap();
    let (mut s, addrs) = sockets(2);
    let mut node1 = node("-", &addrs, 1, ca.node_identity(1).unwrap(), s.pop().unwrap());
    let conn = authenticated_as_node_0(&ca, addrs[1]).await;
    let mut stream = conn.open_uni().await.unwrap();
    if preamble {
        stream.write_all(&dsync_quic::preamble()).await.unwrap();
    }
    stream.write_all(&bytes).await.unwrap();
    let mut delivered = 0;
    soon("peer up, then down", async {
        loop {
            match node1.recv().await.unwrap() {
                TransportEvent::Messages { messages, .. } => delivered += messages.len(),
                TransportEvent::PeerDown(0) => break,
                TransportEvent::PeerUp(0) => {}
                e => panic!("unexpected {e:?}"),
            }
        }
    })
    .await;
    let why = soon("node 1 closes the connection", conn.closed()).await;
    assert!(matches!(why, quinn::ConnectionError::ApplicationClosed(_)), "{why:?}");
    assert_eq!(node1.stats().rejected.load(Ordering::Relaxed), 1);
    delivered
}

#[tokio::test]
async fn an_oversized_frame_disconnects_the_peer() {
    let mut bytes = Vec::new();
    dsync_tokio::tcp::encode_frame(&Message::Wake { ticket: 1 }, &mut bytes); // a valid frame first ...
    bytes.extend_from_slice(&(1u32 << 30).to_le_bytes()); // ... then an announced gigabyte
    assert!(bad_bytes_disconnect(true, bytes).await <= 1, "only the valid frame before the bad one may arrive");
}

#[tokio::test]
async fn a_malformed_frame_disconnects_the_peer() {
    assert_eq!(bad_bytes_disconnect(true, vec![5, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff]).await, 0);
}

#[tokio::test]
async fn a_stream_without_the_preamble_disconnects_the_peer() {
    let mut bytes = Vec::new();
    dsync_tokio::tcp::encode_frame(&Message::Wake { ticket: 1 }, &mut bytes); // valid frames, no preamble
    bytes.extend_from_slice(&bytes.clone());
    assert_eq!(bad_bytes_disconnect(false, bytes).await, 0);
}

/// The control for the tests above: the same raw client, well-behaved, gets its messages through, also
/// after `garbage` UDP datagrams were thrown at the node.
async fn valid_frames_are_delivered(garbage: usize) {
    let ca = DevCa::new("test").unwrap();
    let (mut s, addrs) = sockets(2);
    let mut node1 = node("-", &addrs, 1, ca.node_identity(1).unwrap(), s.pop().unwrap());
    let junk = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for i in 0..garbage {
        let len = 1 + i % 1400;
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let _ = junk.send_to(&bytes, addrs[1]);
    }
    let conn = authenticated_as_node_0(&ca, addrs[1]).await;
    let mut stream = conn.open_uni().await.unwrap();
    let mut bytes = dsync_quic::preamble().to_vec();
    dsync_tokio::tcp::encode_frame(&Message::Wake { ticket: 9 }, &mut bytes);
    stream.write_all(&bytes).await.unwrap();
    soon("the message arrives", async {
        loop {
            if let Some(TransportEvent::Messages { from: 0, messages }) = node1.recv().await {
                assert_eq!(messages, [Message::Wake { ticket: 9 }]);
                return;
            }
        }
    })
    .await;
    assert_eq!(node1.stats().rejected.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn valid_frames_after_the_preamble_are_delivered() {
    valid_frames_are_delivered(0).await;
}

#[tokio::test]
async fn garbage_datagrams_are_ignored() {
    valid_frames_are_delivered(2000).await;
}

#[tokio::test]
async fn a_node_whose_certificate_names_another_index_does_not_start() {
    let ca = DevCa::new("test").unwrap();
    let (mut s, addrs) = sockets(2);
    let cfg = QuicConfig::new(addrs.clone(), 0, "test", ca.node_identity(1).unwrap());
    assert!(matches!(QuicTransport::with_socket(cfg, s.pop().unwrap()), Err(QuicError::Identity(_))));
    let cfg = QuicConfig::new(addrs, 0, "not a dns name!", ca.node_identity(0).unwrap());
    assert!(matches!(QuicTransport::with_socket(cfg, s.pop().unwrap()), Err(QuicError::Config(_))));
}
