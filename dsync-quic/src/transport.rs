//! The QUIC transport: one mutually authenticated connection per pair of nodes, length-prefixed postcard
//! frames on one long-lived unidirectional stream per direction, bounded queues, automatic reconnection.
//!
//! As over TCP, node `i` dials every node `j > i` and accepts from every `j < i`, so each pair has exactly
//! one connection, and a newer connection from a peer replaces the older one (a restarted peer rejoins).

use crate::config::{endpoint_config, transport_config, QuicConfig, StreamMode};
use crate::identity::{named_index, server_name};
use crate::{tls, QuicError};
use dsync_tokio::conn::{queue_frames, Backoff, Newest};
use dsync_tokio::tcp::{decode_frames, encode_frame};
use dsync_tokio::{Inbound, Transport, TransportEvent};
use quinn::{Connection, Endpoint, RecvStream, SendStream};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch, Notify, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tracing::{debug, info, warn};

/// Counters of the transport, shared with its tasks.
#[derive(Debug, Default)]
pub struct QuicStats {
    /// Messages dropped because a peer was down or its queue full.
    pub dropped: AtomicU64,
    /// Connections refused (certificate, index or TLS failure) or cut for a bad frame.
    pub rejected: AtomicU64,
    /// Stream writes (each carries every frame queued since the previous one).
    pub writes: AtomicU64,
    /// Frames queued.
    pub frames: AtomicU64,
}

/// Outgoing state of one peer, shared between the driver (which appends) and the connection's writer.
struct PeerQueue {
    out: Mutex<Vec<u8>>,
    ready: Notify,
    up: AtomicBool,
    /// The newest authenticated inbound connection from this peer (accepting side only).
    newest: Newest<Connection>,
}

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

/// How long a shutdown waits for queued messages to be delivered.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(1);

/// Most handshakes in progress at once: a flood of connection attempts costs bounded memory.
const MAX_HANDSHAKES: usize = 64;

/// Batches of decoded messages one peer may have waiting for the driver (see `dsync_tokio::Inbound`).
const INBOUND_BATCHES: usize = 8;

/// A [`Transport`] over QUIC with mutual TLS.
pub struct QuicTransport {
    cfg: QuicConfig,
    local: SocketAddr,
    endpoint: Endpoint,
    queues: Vec<Arc<PeerQueue>>,
    pending: Vec<Vec<u8>>,
    stats: Arc<QuicStats>,
    /// What each peer's connection delivers, one channel per peer, taken in turn (fair under a flood).
    inbound: Inbound,
    stop: watch::Sender<bool>,
    /// Set at shutdown: links write out what is queued, finish their streams and end.
    drain: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

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
        let inbound = Inbound::new(n, INBOUND_BATCHES);
        let (stop, stop_rx) = watch::channel(false);
        let (drain, drain_rx) = watch::channel(false);
        let stats = Arc::new(QuicStats::default());
        let queues: Vec<Arc<PeerQueue>> = (0..n)
            .map(|_| {
                Arc::new(PeerQueue {
                    out: Mutex::new(Vec::new()),
                    ready: Notify::new(),
                    up: AtomicBool::new(false),
                    newest: Newest::default(),
                })
            })
            .collect();
        let span = tracing::info_span!("dsync-quic", node = cfg.me);
        let mut tasks = Vec::new();
        let accept = accept_loop(endpoint.clone(), cfg.clone(), queues.clone(), stats.clone(), stop_rx.clone());
        tasks.push(tokio::spawn(tracing::Instrument::instrument(accept, span.clone())));
        for peer in (0..n).filter(|&p| p != cfg.me) {
            let link = Link {
                peer,
                cfg: cfg.clone(),
                endpoint: endpoint.clone(),
                client: client.clone(),
                queue: queues[peer].clone(),
                stats: stats.clone(),
                events: inbound.sender(peer),
                stop: stop_rx.clone(),
                drain: drain_rx.clone(),
            };
            tasks.push(tokio::spawn(tracing::Instrument::instrument(link.run(), span.clone())));
        }
        Ok(QuicTransport {
            pending: vec![Vec::new(); n],
            cfg,
            local,
            endpoint,
            queues,
            stats,
            inbound,
            stop,
            drain,
            tasks,
        })
    }

    /// The UDP address this node listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The transport's counters.
    pub fn stats(&self) -> Arc<QuicStats> {
        self.stats.clone()
    }
}

impl Transport for QuicTransport {
    fn send(&mut self, to: usize, message: &dsync_core::Message) {
        if to == self.cfg.me || to >= self.queues.len() || !self.queues[to].up.load(Ordering::Relaxed) {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        encode_frame(message, &mut self.pending[to]);
        self.stats.frames.fetch_add(1, Ordering::Relaxed);
    }

    fn flush(&mut self) {
        for (to, pending) in self.pending.iter_mut().enumerate() {
            if pending.is_empty() {
                continue;
            }
            let q = &self.queues[to];
            let queued = {
                let mut out = q.out.lock().expect("queue lock poisoned");
                let before = out.len();
                // Beyond the bound, whole frames are dropped: the peer is not reading fast enough.
                let dropped = queue_frames(&mut out, pending, self.cfg.max_queued_bytes);
                self.stats.dropped.fetch_add(dropped, Ordering::Relaxed);
                out.len() > before
            };
            pending.clear();
            if queued {
                q.ready.notify_one();
            }
        }
    }

    fn recv(&mut self) -> impl std::future::Future<Output = Option<TransportEvent>> + Send {
        self.inbound.recv()
    }

    fn try_recv(&mut self) -> Option<TransportEvent> {
        self.inbound.try_recv()
    }

    async fn shutdown(&mut self) {
        // What the driver flushed last (a shutdown's releases) is still queued: unlike TCP, nothing has
        // reached the kernel yet. Let every link write it out and have it acknowledged, briefly.
        let _ = self.drain.send(true);
        let mut tasks = std::mem::take(&mut self.tasks);
        let links = async {
            for t in tasks.iter_mut().skip(1) {
                let _ = t.await;
            }
        };
        let _ = tokio::time::timeout(SHUTDOWN_DRAIN, links).await;
        let _ = self.stop.send(true);
        for t in tasks {
            if !t.is_finished() {
                t.abort();
                let _ = t.await;
            }
        }
        // Tell peers at once (they mark us down and start redialling), and let the close go out.
        self.endpoint.close(CLOSE_SHUTDOWN.into(), b"shutdown");
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
    }
}

impl Drop for QuicTransport {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for t in &self.tasks {
            t.abort();
        }
        self.endpoint.close(CLOSE_SHUTDOWN.into(), b"shutdown");
    }
}

/// Accepts connections, checks the certificate's node index, and hands each to its peer's link.
async fn accept_loop(
    endpoint: Endpoint,
    cfg: QuicConfig,
    queues: Vec<Arc<PeerQueue>>,
    stats: Arc<QuicStats>,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let incoming = tokio::select! {
            i = endpoint.accept() => match i { Some(i) => i, None => return },
            _ = stop.changed() => return,
        };
        let addr = incoming.remote_address();
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            warn!(%addr, "too many handshakes in progress; connection refused");
            incoming.refuse();
            continue;
        };
        let (cfg, queues, stats) = (cfg.clone(), queues.clone(), stats.clone());
        let task = async move {
            let _permit = permit;
            let conn = match tokio::time::timeout(cfg.handshake_timeout, async { incoming.accept()?.await }).await {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => {
                    stats.rejected.fetch_add(1, Ordering::Relaxed);
                    warn!(%addr, reason = %e, "peer refused: TLS handshake failed");
                    return;
                }
                Err(_) => {
                    stats.rejected.fetch_add(1, Ordering::Relaxed);
                    warn!(%addr, "peer refused: handshake timed out");
                    return;
                }
            };
            match dialer_index(&conn, &cfg) {
                Ok(peer) => {
                    let q = &queues[peer];
                    q.newest.put(conn);
                }
                Err(why) => {
                    stats.rejected.fetch_add(1, Ordering::Relaxed);
                    warn!(%addr, reason = %why, "peer refused: certificate does not identify a node that may dial this one");
                    conn.close(CLOSE_REFUSED.into(), b"certificate refused");
                }
            }
        };
        tokio::spawn(tracing::Instrument::in_current_span(task));
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

/// One peer's connection manager: (re)connects, runs the connection, reports up/down.
struct Link {
    peer: usize,
    cfg: QuicConfig,
    endpoint: Endpoint,
    client: quinn::ClientConfig,
    queue: Arc<PeerQueue>,
    stats: Arc<QuicStats>,
    events: mpsc::Sender<TransportEvent>,
    stop: watch::Receiver<bool>,
    drain: watch::Receiver<bool>,
}

/// Why a connection ended.
enum End {
    Closed(String),
    Violation(String),
    Replaced,
    Stopped,
}

/// Why a dial failed.
enum DialError {
    /// Unreachable, timed out, closed: retried quietly.
    Transient(String),
    /// The peer's certificate (or ours, by its verdict) was refused: logged once per streak.
    Refused(String),
}

impl Link {
    async fn run(mut self) {
        let mut backoff = Backoff::new(self.cfg.reconnect_min, self.cfg.reconnect_max);
        let mut last_refusal: Option<String> = None;
        loop {
            let (conn, first) = if self.cfg.me < self.peer {
                match self.dial().await {
                    Ok((c, send, recv)) => (c, Some((send, recv))),
                    Err(e) => {
                        if *self.stop.borrow() || *self.drain.borrow() {
                            return;
                        }
                        match e {
                            DialError::Transient(why) => debug!(peer = self.peer, reason = %why, "connect failed"),
                            DialError::Refused(why) => {
                                if last_refusal.as_deref() != Some(&why) {
                                    self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                                    warn!(peer = self.peer, reason = %why, "peer refused: a certificate check failed (see reason)");
                                }
                                last_refusal = Some(why);
                            }
                        }
                        tokio::select! {
                            _ = tokio::time::sleep(backoff.next_wait()) => {}
                            _ = self.stop.changed() => return,
                            _ = self.drain.wait_for(|d| *d) => return,
                        }
                        continue;
                    }
                }
            } else {
                tokio::select! {
                    _ = self.queue.newest.arrived() => {}
                    _ = self.stop.changed() => return,
                    _ = self.drain.wait_for(|d| *d) => return,
                }
                match self.queue.newest.take() {
                    Some(c) => (c, None),
                    None => continue,
                }
            };
            backoff.reset();
            last_refusal = None;
            match self.serve(conn, first).await {
                End::Stopped => return,
                End::Closed(why) => info!(peer = self.peer, reason = %why, "peer connection closed"),
                End::Violation(why) => {
                    self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                    warn!(peer = self.peer, reason = %why, "peer disconnected for a protocol violation");
                }
                End::Replaced => info!(peer = self.peer, "peer reconnected; old connection replaced"),
            }
        }
    }

    /// Connects, then waits until the acceptor accepted this node (its preamble arrives).
    async fn dial(&mut self) -> Result<(Connection, SendStream, RecvStream), DialError> {
        let addr = self.cfg.peers[self.peer];
        let name = server_name(&self.cfg.cluster, self.peer).map_err(DialError::Refused)?;
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
            Ok((conn, send, recv))
        };
        match tokio::time::timeout(self.cfg.handshake_timeout, attempt).await {
            Ok(r) => r,
            Err(_) => Err(DialError::Transient("handshake timed out".into())),
        }
    }

    /// Runs one connection; `first` is the dialer's already opened stream pair.
    async fn serve(&mut self, conn: Connection, first: Option<(SendStream, RecvStream)>) -> End {
        let (send, recv) = match first {
            Some((s, r)) => (s, Some(r)),
            None => {
                // Accepting: tell the dialer it was accepted.
                let opened = async {
                    let mut s = conn.open_uni().await.map_err(|e| e.to_string())?;
                    s.write_all(&preamble()).await.map_err(|e| e.to_string())?;
                    Ok::<_, String>(s)
                };
                match opened.await {
                    Ok(s) => (s, None),
                    Err(e) => return End::Closed(e),
                }
            }
        };
        self.queue.out.lock().expect("queue lock poisoned").clear();
        self.queue.up.store(true, Ordering::Release);
        info!(peer = self.peer, "peer connected");
        if self.events.send(TransportEvent::PeerUp(self.peer)).await.is_err() {
            conn.close(CLOSE_SHUTDOWN.into(), b"shutdown");
            return End::Stopped;
        }
        let accepting = self.cfg.me > self.peer;
        let end = tokio::select! {
            e = read_streams(&conn, recv, self.peer, self.cfg.max_frame, &self.events) => e,
            e = write_loop(&conn, send, self.cfg.streams, &self.queue, &self.stats, self.drain.clone()) => e,
            e = conn.closed() => End::Closed(e.to_string()),
            _ = self.queue.newest.arrived(), if accepting => End::Replaced,
            _ = self.stop.changed() => End::Stopped,
        };
        self.queue.up.store(false, Ordering::Release);
        self.queue.out.lock().expect("queue lock poisoned").clear();
        let (code, why): (u32, &[u8]) = match &end {
            End::Violation(_) => (CLOSE_VIOLATION, b"protocol violation"),
            End::Replaced => (CLOSE_REPLACED, b"replaced"),
            _ => (CLOSE_SHUTDOWN, b"closed"),
        };
        conn.close(code.into(), why);
        if !matches!(end, End::Stopped) && self.events.send(TransportEvent::PeerDown(self.peer)).await.is_err() {
            return End::Stopped;
        }
        if matches!(end, End::Replaced) {
            // The newer connection is waiting in `newest`; wake ourselves to take it.
            self.queue.newest.rewake();
        }
        end
    }
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

/// Reads every unidirectional stream the peer opens, decoding frames. `first` is the peer's first stream
/// with its preamble already checked (dialing side); otherwise the first stream accepted must start with it.
async fn read_streams(
    conn: &Connection,
    first: Option<RecvStream>,
    peer: usize,
    max_frame: usize,
    events: &mpsc::Sender<TransportEvent>,
) -> End {
    let mut streams: JoinSet<End> = JoinSet::new();
    let mut expect_preamble = first.is_none();
    if let Some(recv) = first {
        let events = events.clone();
        streams.spawn(async move { read_frames(recv, false, peer, max_frame, &events).await });
    }
    loop {
        tokio::select! {
            s = conn.accept_uni() => match s {
                Ok(recv) => {
                    let events = events.clone();
                    let preamble = std::mem::take(&mut expect_preamble);
                    streams.spawn(async move { read_frames(recv, preamble, peer, max_frame, &events).await });
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

/// Decodes frames from one stream until it finishes. Memory: at most one partial frame plus one chunk.
async fn read_frames(
    mut recv: RecvStream,
    preamble: bool,
    peer: usize,
    max_frame: usize,
    events: &mpsc::Sender<TransportEvent>,
) -> End {
    const READ: usize = 64 * 1024;
    if preamble {
        if let Err(e) = check_preamble(&mut recv).await {
            return End::Violation(e);
        }
    }
    let mut buf: Vec<u8> = Vec::with_capacity(READ);
    loop {
        let chunk = match recv.read_chunk(READ, true).await {
            Ok(Some(c)) => c,
            Ok(None) => {
                return if buf.is_empty() {
                    End::Closed("stream finished".into())
                } else {
                    End::Violation(format!("stream finished inside a frame ({} bytes left)", buf.len()))
                }
            }
            Err(e) => return End::Closed(e.to_string()),
        };
        buf.extend_from_slice(&chunk.bytes);
        let mut messages = Vec::new();
        match decode_frames(&buf, max_frame, &mut messages) {
            Ok(used) => {
                buf.drain(..used);
            }
            Err(e) => return End::Violation(e.to_string()),
        }
        if !messages.is_empty() && events.send(TransportEvent::Messages { from: peer, messages }).await.is_err() {
            return End::Stopped;
        }
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

/// Sends what the driver queued, coalescing everything queued meanwhile into one stream write. `first` is
/// this side's first stream (preamble written): the data stream in [`StreamMode::Single`]. At shutdown (`drain`) it
/// writes what is left, finishes its stream and waits until the peer acknowledged it.
async fn write_loop(
    conn: &Connection,
    first: SendStream,
    mode: StreamMode,
    queue: &PeerQueue,
    stats: &QuicStats,
    mut drain: watch::Receiver<bool>,
) -> End {
    let mut single = Some(first);
    if mode == StreamMode::PerFlush {
        if let Some(mut s) = single.take() {
            let _ = s.finish();
        }
    }
    let mut spare = Vec::new();
    loop {
        let draining = tokio::select! {
            _ = queue.ready.notified() => false,
            _ = drain.wait_for(|d| *d) => true,
        };
        loop {
            {
                let mut out = queue.out.lock().expect("queue lock poisoned");
                if out.is_empty() {
                    break;
                }
                std::mem::swap(&mut *out, &mut spare);
            }
            let written = match mode {
                StreamMode::Single => {
                    if single.is_none() {
                        match conn.open_uni().await {
                            Ok(s) => single = Some(s),
                            Err(e) => return End::Closed(e.to_string()),
                        }
                    }
                    let s = single.as_mut().expect("opened above");
                    s.write_all(&spare).await.map_err(|e| e.to_string())
                }
                StreamMode::PerFlush => match conn.open_uni().await {
                    Ok(mut s) => match s.write_all(&spare).await {
                        Ok(()) => s.finish().map_err(|e| e.to_string()),
                        Err(e) => Err(e.to_string()),
                    },
                    Err(e) => Err(e.to_string()),
                },
            };
            if let Err(e) = written {
                return End::Closed(e);
            }
            stats.writes.fetch_add(1, Ordering::Relaxed);
            spare.clear();
        }
        if draining {
            if let Some(mut s) = single.take() {
                if s.finish().is_ok() {
                    let _ = s.stopped().await;
                }
            }
            return End::Stopped;
        }
    }
}
