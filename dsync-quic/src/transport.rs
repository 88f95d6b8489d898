//! The QUIC transport: one mutually authenticated connection per pair of nodes, length-prefixed postcard
//! frames on one long-lived unidirectional stream per direction, bounded queues, automatic reconnection.
//!
//! Everything but the connections — queues, reconnection, newest-connection hand-over, framing, stats and
//! the shutdown drain — is `dsync_tokio::engine`'s; `QuicLink` is what QUIC adds: quinn connections,
//! certificate identity (mutual TLS) and the mapping of frames onto streams.

use crate::config::{endpoint_config, transport_config, QuicConfig, StreamMode};
use crate::identity::{named_index, server_name};
use crate::{tls, QuicError};
use dsync_tokio::engine::{self, Admit, ByteSource, Deliver, End, Engine, Link, Redial, Settings};
use dsync_tokio::{Transport, TransportEvent};
use quinn::{Connection, Endpoint, RecvStream, SendStream};
use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinSet;
use tracing::{debug, warn};

/// Counters of the QUIC transport (the engine's [`engine::Stats`]).
pub type QuicStats = engine::Stats;

/// Application close codes, visible to the peer.
const CLOSE_SHUTDOWN: u32 = 0;
const CLOSE_REFUSED: u32 = 1;
const CLOSE_VIOLATION: u32 = 2;
const CLOSE_REPLACED: u32 = 3;

/// The first bytes of each side's first stream: magic and wire protocol version. The acceptor sends it
/// only after it checked the dialer's certificate, so the dialer reports the peer up only once it has been
/// accepted (in TLS 1.3 the client finishes its handshake before the server has judged its certificate).
pub fn preamble() -> [u8; 8] {
    let mut p = *b"DSYNCQ\0\0";
    p[6..].copy_from_slice(&dsync_core::wire::PROTOCOL_VERSION.to_le_bytes());
    p
}

/// A [`Transport`] over QUIC with mutual TLS: the connection engine (`dsync_tokio::engine`) running a QUIC link.
pub struct QuicTransport(Engine<QuicLink>);

impl QuicTransport {
    /// Binds this node's UDP address (from `cfg.peers[cfg.me]`) and starts connecting. Needs a tokio runtime.
    pub fn bind(cfg: QuicConfig) -> Result<Self, QuicError> {
        let socket = UdpSocket::bind(cfg.peers[cfg.me]).map_err(QuicError::Io)?;
        Self::with_socket(cfg, socket)
    }

    /// Starts on a UDP socket the caller bound (e.g. on port 0, so the OS chooses the port).
    pub fn with_socket(cfg: QuicConfig, socket: UdpSocket) -> Result<Self, QuicError> {
        let n = cfg.peers.len();
        if cfg.me >= n {
            return Err(QuicError::Config(format!("node index {} but only {n} peers", cfg.me)));
        }
        server_name(&cfg.cluster, cfg.me).map_err(QuicError::Config)?;
        match cfg.identity.chain.first().map(|leaf| named_index(leaf, &cfg.cluster, n)) {
            Some(Ok(i)) if i == cfg.me => {}
            Some(Ok(i)) => {
                return Err(QuicError::Identity(format!("the certificate names node {i}, this is node {}", cfg.me)))
            }
            Some(Err(e)) => return Err(QuicError::Identity(e)),
            None => return Err(QuicError::Identity("empty certificate chain".into())),
        }
        let transport = Arc::new(transport_config(&cfg));
        let server = tls::server_config(&cfg.identity, transport.clone())?;
        let client = tls::client_config(&cfg.identity, transport)?;
        let endpoint =
            Endpoint::new(endpoint_config(&cfg.identity), Some(server), socket, Arc::new(quinn::TokioRuntime))
                .map_err(QuicError::Io)?;
        let local = endpoint.local_addr().map_err(QuicError::Io)?;
        let settings = Settings {
            me: cfg.me,
            nodes: n,
            max_frame: cfg.max_frame,
            max_queued_bytes: cfg.max_queued_bytes,
            reconnect_min: cfg.reconnect_min,
            reconnect_max: cfg.reconnect_max,
            entropy: dsync_tokio::Entropy::os(),
        };
        let span = tracing::info_span!("dsync-quic", node = cfg.me);
        let link = QuicLink { refusals: Mutex::new(vec![None; n]), cfg, endpoint, client, local };
        Ok(QuicTransport(Engine::start(link, settings, span)))
    }

    /// The UDP address this node listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.0.link().local
    }

    /// The transport's counters.
    pub fn stats(&self) -> Arc<QuicStats> {
        self.0.stats()
    }
}

impl Transport for QuicTransport {
    fn send(&mut self, to: usize, message: &dsync_core::Message) {
        self.0.send(to, message)
    }

    fn stats(&self) -> Option<Arc<QuicStats>> {
        Some(self.0.stats())
    }

    fn flush(&mut self) {
        self.0.flush()
    }

    fn recv(&mut self) -> impl std::future::Future<Output = Option<TransportEvent>> + Send {
        self.0.recv()
    }

    fn try_recv(&mut self) -> Option<TransportEvent> {
        self.0.try_recv()
    }

    fn shutdown(&mut self) -> impl std::future::Future<Output = ()> + Send {
        // What the driver flushed last (a shutdown's releases) is still queued: the engine lets every
        // connection write it out and have it acknowledged, briefly; then the endpoint closes.
        self.0.shutdown()
    }
}

/// QUIC connections with mutual TLS, for the connection engine: the certificate names the peer's index, and
/// frames go on unidirectional streams (see [`StreamMode`]).
pub struct QuicLink {
    cfg: QuicConfig,
    endpoint: Endpoint,
    client: quinn::ClientConfig,
    local: SocketAddr,
    /// The last dial refusal per peer, so a streak of the same refusal is logged (and counted) once.
    refusals: Mutex<Vec<Option<String>>>,
}

/// An authenticated connection; the dialer has already opened its stream and read the acceptor's preamble.
pub struct QuicConn {
    conn: Connection,
    first: Option<(SendStream, RecvStream)>,
}

/// Why a dial failed.
enum DialError {
    /// Unreachable, timed out, closed: retried quietly.
    Transient(String),
    /// The peer's certificate (or ours, by its verdict) was refused: logged once per streak.
    Refused(String),
}

impl Link for QuicLink {
    type Incoming = quinn::Incoming;
    type Conn = QuicConn;
    type Reader = QuicReader;
    type Writer = QuicWriter;

    async fn accept(&self) -> Option<(quinn::Incoming, SocketAddr)> {
        let incoming = self.endpoint.accept().await?;
        let addr = incoming.remote_address();
        Some((incoming, addr))
    }

    fn refuse(&self, incoming: quinn::Incoming) {
        incoming.refuse();
    }

    async fn authenticate(
        &self,
        incoming: quinn::Incoming,
        addr: SocketAddr,
        admit: &mut Admit<'_>,
    ) -> Option<QuicConn> {
        let conn = match tokio::time::timeout(self.cfg.handshake_timeout, async { incoming.accept()?.await }).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                warn!(%addr, reason = %e, "peer refused: TLS handshake failed");
                return None;
            }
            Err(_) => {
                warn!(%addr, "peer refused: handshake timed out");
                return None;
            }
        };
        // QUIC has no process instance: each connection counts as a new one, so the newest always wins.
        let why = match dialer_index(&conn, &self.cfg) {
            Ok(peer) => match admit.claim(peer, conn.stable_id() as u64) {
                Ok(()) => return Some(QuicConn { conn, first: None }),
                Err(retry) => format!("another live node holds index {peer}; retry in {retry:?}"),
            },
            Err(why) => why,
        };
        warn!(%addr, reason = %why, "peer refused: certificate does not identify a node that may dial this one");
        conn.close(CLOSE_REFUSED.into(), b"certificate refused");
        None
    }

    async fn dial(&self, peer: usize) -> Result<(QuicConn, SocketAddr), Redial> {
        let addr = self.cfg.peers[peer];
        let refusals = |last: Option<String>| {
            let mut all = self.refusals.lock().unwrap_or_else(|e| e.into_inner());
            std::mem::replace(&mut all[peer], last)
        };
        match self.connect(peer, addr).await {
            Ok(conn) => {
                refusals(None);
                Ok((conn, addr))
            }
            Err(DialError::Transient(why)) => {
                debug!(peer, reason = %why, "connect failed");
                Err(Redial::RETRY)
            }
            Err(DialError::Refused(why)) => {
                let new = refusals(Some(why.clone())).as_deref() != Some(&why);
                if new {
                    warn!(peer, reason = %why, "peer refused: a certificate check failed (see reason)");
                }
                Err(Redial { rejected: new, ..Redial::RETRY })
            }
        }
    }

    async fn split(&self, c: QuicConn, _dialed: bool) -> Result<(QuicReader, QuicWriter), String> {
        let (send, recv) = match c.first {
            Some((s, r)) => (s, Some(r)),
            None => {
                // Accepting: tell the dialer it was accepted.
                let mut s = c.conn.open_uni().await.map_err(|e| e.to_string())?;
                s.write_all(&preamble()).await.map_err(|e| e.to_string())?;
                (s, None)
            }
        };
        let mode = self.cfg.streams;
        let mut single = Some(send);
        if mode == StreamMode::PerFlush {
            if let Some(mut s) = single.take() {
                let _ = s.finish();
            }
        }
        let reader = QuicReader { conn: c.conn.clone(), first: recv };
        Ok((reader, QuicWriter { conn: c.conn, single, mode }))
    }

    async fn shutdown(&self) {
        // Tell peers at once (they mark us down and start redialling), and let the close go out.
        self.endpoint.close(CLOSE_SHUTDOWN.into(), b"shutdown");
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
    }

    fn stop(&self) {
        self.endpoint.close(CLOSE_SHUTDOWN.into(), b"shutdown");
    }
}

impl QuicLink {
    /// Connects, then waits until the acceptor accepted this node (its preamble arrives).
    async fn connect(&self, peer: usize, addr: SocketAddr) -> Result<QuicConn, DialError> {
        let name = server_name(&self.cfg.cluster, peer).map_err(DialError::Refused)?;
        let connecting = self
            .endpoint
            .connect_with(self.client.clone(), addr, &name.to_str())
            .map_err(|e| DialError::Transient(e.to_string()))?;
        let attempt = async {
            let conn = connecting.await.map_err(classify)?;
            let mut send = conn.open_uni().await.map_err(classify)?;
            send.write_all(&preamble()).await.map_err(|e| DialError::Transient(e.to_string()))?;
            let mut recv = conn.accept_uni().await.map_err(classify)?;
            check_preamble(&mut recv).await.map_err(DialError::Refused)?;
            Ok(QuicConn { conn, first: Some((send, recv)) })
        };
        match tokio::time::timeout(self.cfg.handshake_timeout, attempt).await {
            Ok(r) => r,
            Err(_) => Err(DialError::Transient("handshake timed out".into())),
        }
    }
}

/// The index a dialer's (chain-verified) certificate names, if that node may dial this one.
fn dialer_index(conn: &Connection, cfg: &QuicConfig) -> Result<usize, String> {
    let leaf = peer_leaf(conn).ok_or("no client certificate")?;
    let i = named_index(&leaf, &cfg.cluster, cfg.peers.len())?;
    if i >= cfg.me {
        return Err(format!("the certificate names node {i}; only nodes below {} dial it", cfg.me));
    }
    Ok(i)
}

fn peer_leaf(conn: &Connection) -> Option<rustls::pki_types::CertificateDer<'static>> {
    let chain = conn.peer_identity()?.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>().ok()?;
    chain.into_iter().next()
}

/// A failed dial is a refusal when TLS (ours or the peer's verdict) rejected a certificate.
fn classify(e: quinn::ConnectionError) -> DialError {
    let text = e.to_string();
    match &e {
        quinn::ConnectionError::TransportError(t)
            if t.code.to_string().contains("crypto") || text.contains("certificate") =>
        {
            DialError::Refused(text)
        }
        quinn::ConnectionError::ConnectionClosed(c)
            if text.contains("certificate") || c.error_code.to_string().contains("crypto") =>
        {
            DialError::Refused(text)
        }
        quinn::ConnectionError::ApplicationClosed(c) if u64::from(c.error_code) == u64::from(CLOSE_REFUSED) => {
            DialError::Refused(text)
        }
        _ => DialError::Transient(text),
    }
}

/// The receiving half: every unidirectional stream the peer opens.
pub struct QuicReader {
    conn: Connection,
    /// The dialer's first stream, its preamble already checked.
    first: Option<RecvStream>,
}

impl engine::Reader for QuicReader {
    async fn run(self, deliver: Deliver) -> End {
        tokio::select! {
            e = read_streams(&self.conn, self.first, deliver) => e,
            e = self.conn.closed() => End::Closed(e.to_string()),
        }
    }
}

/// Reads every unidirectional stream the peer opens, decoding frames. `first` is the peer's first stream
/// with its preamble already checked (dialing side); otherwise the first stream accepted must start with it.
async fn read_streams(conn: &Connection, first: Option<RecvStream>, deliver: Deliver) -> End {
    let mut streams: JoinSet<End> = JoinSet::new();
    let mut expect_preamble = first.is_none();
    if let Some(recv) = first {
        let deliver = deliver.clone();
        streams.spawn(async move { deliver.frames(Stream(recv)).await });
    }
    loop {
        tokio::select! {
            s = conn.accept_uni() => match s {
                Ok(mut recv) => {
                    let deliver = deliver.clone();
                    let preamble = std::mem::take(&mut expect_preamble);
                    streams.spawn(async move {
                        if preamble {
                            if let Err(e) = check_preamble(&mut recv).await {
                                return End::Violation(e);
                            }
                        }
                        deliver.frames(Stream(recv)).await
                    });
                }
                Err(e) => return End::Closed(e.to_string()),
            },
            Some(done) = streams.join_next() => match done {
                Ok(End::Closed(_)) | Err(_) => {} // a finished stream (per-flush mode)
                Ok(end) => return end,
            },
        }
    }
}

/// One receive stream as a byte source. Memory: at most one partial frame plus one chunk.
struct Stream(RecvStream);

impl ByteSource for Stream {
    async fn read_into(&mut self, buf: &mut Vec<u8>) -> Result<usize, String> {
        loop {
            match self.0.read_chunk(64 * 1024, true).await {
                Ok(Some(c)) if c.bytes.is_empty() => continue,
                Ok(Some(c)) => {
                    buf.extend_from_slice(&c.bytes);
                    return Ok(c.bytes.len());
                }
                Ok(None) => return Ok(0),
                Err(e) => return Err(e.to_string()),
            }
        }
    }
}

/// The sending half. In [`StreamMode::Single`] frames go on this side's first stream (preamble written);
/// at shutdown it finishes that stream and waits until the peer acknowledged it.
pub struct QuicWriter {
    conn: Connection,
    single: Option<SendStream>,
    mode: StreamMode,
}

impl engine::Writer for QuicWriter {
    async fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        match self.mode {
            StreamMode::Single => {
                if self.single.is_none() {
                    self.single = Some(self.conn.open_uni().await.map_err(|e| e.to_string())?);
                }
                let s = self.single.as_mut().expect("opened above");
                s.write_all(bytes).await.map_err(|e| e.to_string())
            }
            StreamMode::PerFlush => {
                let mut s = self.conn.open_uni().await.map_err(|e| e.to_string())?;
                s.write_all(bytes).await.map_err(|e| e.to_string())?;
                s.finish().map_err(|e| e.to_string())
            }
        }
    }

    async fn finish(&mut self) {
        if let Some(mut s) = self.single.take() {
            if s.finish().is_ok() {
                let _ = s.stopped().await;
            }
        }
    }

    fn close(&mut self, why: &End) {
        let (code, reason): (u32, &[u8]) = match why {
            End::Violation(_) => (CLOSE_VIOLATION, b"protocol violation"),
            End::Replaced => (CLOSE_REPLACED, b"replaced"),
            _ => (CLOSE_SHUTDOWN, b"closed"),
        };
        self.conn.close(code.into(), reason);
    }
}

/// Reads and checks the peer's preamble.
async fn check_preamble(recv: &mut RecvStream) -> Result<(), String> {
    let mut got = [0u8; 8];
    recv.read_exact(&mut got).await.map_err(|e| format!("no preamble: {e}"))?;
    if got != preamble() {
        return Err(format!("bad preamble {got:02x?} (not dsync-quic, or another protocol version)"));
    }
    Ok(())
}
