//! The TCP transport: one authenticated connection per pair of nodes, length-prefixed postcard frames,
//! coalesced writes, bounded queues, and automatic reconnection.
//!
//! Node `i` dials every node `j > i` and accepts from every `j < i`, so each pair has exactly one
//! connection. A connection is used only after the handshake ([`handshake`]) proved the peer knows the
//! cluster secret and is the index it claims; a peer that fails it, or later sends an oversized or
//! malformed frame, is disconnected with one log line and nothing it sent reaches the core.
//!
//! Memory per peer is bounded: outgoing frames wait in one byte buffer of at most
//! [`TcpConfig::max_queued_bytes`] (beyond it messages are dropped and counted — the protocol tolerates
//! loss); incoming bytes are read into a buffer of at most one maximal frame plus one read, and decoded
//! batches wait in a bounded channel, so a slow driver pushes back on the socket instead of growing.

mod codec;
pub mod handshake;

pub use codec::{decode_frames, encode_frame, FrameError};
pub use handshake::cluster_id;

use crate::conn::{queue_frames, Backoff, Newest};
use crate::inbound::Inbound;
use crate::transport::{Transport, TransportEvent};
use handshake::Identity;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Notify, Semaphore};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

/// Settings of the TCP transport.
#[derive(Clone, Debug)]
pub struct TcpConfig {
    /// Every node's address, by index; this node's entry is where it listens.
    pub peers: Vec<SocketAddr>,
    /// This node's index.
    pub me: usize,
    /// The cluster id both sides must share (see [`cluster_id`]).
    pub cluster: u64,
    /// The shared cluster secret.
    pub secret: Arc<[u8]>,
    /// Largest frame accepted or sent, in bytes.
    pub max_frame: usize,
    /// Outgoing bytes queued per peer before further messages to it are dropped.
    pub max_queued_bytes: usize,
    /// First reconnection delay; doubles (with jitter) up to `reconnect_max`.
    pub reconnect_min: Duration,
    /// Largest reconnection delay.
    pub reconnect_max: Duration,
    /// How long a peer may take to complete the handshake.
    pub handshake_timeout: Duration,
}

impl TcpConfig {
    /// Defaults for node `me` of `peers`: 4 MiB frames and queues, reconnect 20 ms – 1 s, handshake 5 s.
    pub fn new(peers: Vec<SocketAddr>, me: usize, cluster: u64, secret: impl Into<Arc<[u8]>>) -> Self {
        TcpConfig {
            peers,
            me,
            cluster,
            secret: secret.into(),
            max_frame: 4 << 20,
            max_queued_bytes: 4 << 20,
            reconnect_min: Duration::from_millis(20),
            reconnect_max: Duration::from_secs(1),
            handshake_timeout: Duration::from_secs(5),
        }
    }
}

/// Counters of the transport, shared with its tasks.
#[derive(Debug, Default)]
pub struct TcpStats {
    /// Messages dropped because a peer was down or its queue full.
    pub dropped: AtomicU64,
    /// Connections refused for a failed handshake or a bad frame.
    pub rejected: AtomicU64,
    /// Write calls (each carries every frame queued since the previous one).
    pub writes: AtomicU64,
    /// Frames written.
    pub frames: AtomicU64,
}

/// Outgoing bytes of one peer, and whether the writer task is busy sending some.
#[derive(Default)]
struct Outgoing {
    buf: Vec<u8>,
    writing: bool,
    /// The live connection's write half, for the driver's direct, non-blocking writes.
    sink: Option<Arc<OwnedWriteHalf>>,
}

/// Outgoing state of one peer, shared between the driver (which appends) and the connection's writer.
///
/// The driver writes straight to the socket when nothing is queued and the writer is idle (one task hop
/// less per message, which is most of a lock's latency on loopback); what the socket does not take at once
/// is queued for the writer task, which owns sending until the queue is empty again. Both decide under
/// the same lock, so frames never overtake each other.
struct PeerQueue {
    out: Mutex<Outgoing>,
    ready: Notify,
    up: AtomicBool,
    /// The newest authenticated inbound stream for this peer (accepting side only).
    newest: Newest<TcpStream>,
}

/// Largest batch the driver writes to a socket itself; larger ones are left to the writer task.
const DIRECT_WRITE_MAX: usize = 256;

/// Decoded batches (each from one read of at most 64 KiB) a peer's connection may have waiting for the driver.
const INBOUND_BATCHES: usize = 8;

/// A [`Transport`] over TCP.
pub struct TcpTransport {
    cfg: TcpConfig,
    local: SocketAddr,
    queues: Vec<Arc<PeerQueue>>,
    pending: Vec<Vec<u8>>,
    stats: Arc<TcpStats>,
    /// What each peer's connection delivers, one channel per peer, taken in turn.
    inbound: Inbound,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl TcpTransport {
    /// Binds this node's address (from `cfg.peers[cfg.me]`) and starts connecting.
    pub async fn bind(cfg: TcpConfig) -> std::io::Result<Self> {
        let listener = TcpListener::bind(cfg.peers[cfg.me]).await?;
        Self::with_listener(cfg, listener)
    }

    /// Starts with a listener the caller bound (e.g. on port 0, so the OS chooses the port).
    pub fn with_listener(cfg: TcpConfig, listener: TcpListener) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let n = cfg.peers.len();
        let inbound = Inbound::new(n, INBOUND_BATCHES);
        let (stop, stop_rx) = watch::channel(false);
        let stats = Arc::new(TcpStats::default());
        let queues: Vec<Arc<PeerQueue>> = (0..n)
            .map(|_| {
                Arc::new(PeerQueue {
                    out: Mutex::new(Outgoing::default()),
                    ready: Notify::new(),
                    up: AtomicBool::new(false),
                    newest: Newest::default(),
                })
            })
            .collect();
        let id = Identity { cluster: cfg.cluster, me: cfg.me, nodes: n, secret: cfg.secret.clone() };
        let mut tasks = Vec::new();
        // Connection events are logged inside a span naming this node.
        let span = tracing::info_span!("dsync-tcp", node = cfg.me);
        let accept = accept_loop(listener, id.clone(), cfg.clone(), queues.clone(), stats.clone(), stop_rx.clone());
        tasks.push(tokio::spawn(tracing::Instrument::instrument(accept, span.clone())));
        for peer in (0..n).filter(|&p| p != cfg.me) {
            let link = Link {
                peer,
                id: id.clone(),
                cfg: cfg.clone(),
                queue: queues[peer].clone(),
                stats: stats.clone(),
                events: inbound.sender(peer),
                stop: stop_rx.clone(),
            };
            tasks.push(tokio::spawn(tracing::Instrument::instrument(link.run(), span.clone())));
        }
        Ok(TcpTransport { pending: vec![Vec::new(); n], cfg, local, queues, stats, inbound, stop, tasks })
    }

    /// The address this node listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The transport's counters.
    pub fn stats(&self) -> Arc<TcpStats> {
        self.stats.clone()
    }
}

impl Transport for TcpTransport {
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
            let mut wake = false;
            {
                let mut out = q.out.lock().expect("queue lock poisoned");
                let mut from = 0;
                // Small batches (light load) go out at once for latency; big ones (heavy load) go to the writer
                // task, which coalesces whatever accumulates meanwhile into fewer syscalls.
                if !out.writing && out.buf.is_empty() && pending.len() <= DIRECT_WRITE_MAX {
                    if let Some(sink) = &out.sink {
                        while from < pending.len() {
                            match sink.try_write(&pending[from..]) {
                                Ok(0) | Err(_) => break, // would block, or broken: the writer task sorts it out
                                Ok(k) => from += k,
                            }
                        }
                        if from == pending.len() {
                            self.stats.writes.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                let rest = &pending[from..];
                if rest.is_empty() {
                    // all written directly
                } else if from > 0 {
                    // The tail of a partly written direct batch (at most DIRECT_WRITE_MAX bytes) always goes:
                    // dropping it would cut a frame in half.
                    out.buf.extend_from_slice(rest);
                    wake = true;
                } else {
                    // Beyond the bound, whole frames are dropped: the peer is not reading fast enough.
                    let before = out.buf.len();
                    let dropped = queue_frames(&mut out.buf, rest, self.cfg.max_queued_bytes);
                    self.stats.dropped.fetch_add(dropped, Ordering::Relaxed);
                    wake = out.buf.len() > before;
                }
            }
            pending.clear();
            if wake {
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

    fn shutdown(&mut self) -> impl std::future::Future<Output = ()> + Send {
        let _ = self.stop.send(true);
        let tasks = std::mem::take(&mut self.tasks);
        async move {
            for t in tasks {
                t.abort();
                let _ = t.await;
            }
        }
    }
}

impl Drop for TcpTransport {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Accepts connections, authenticates them, and hands each to its peer's link (newest wins).
async fn accept_loop(
    listener: TcpListener,
    id: Identity,
    cfg: TcpConfig,
    queues: Vec<Arc<PeerQueue>>,
    stats: Arc<TcpStats>,
    mut stop: watch::Receiver<bool>,
) {
    // At most this many handshakes at once: a flood of connections costs bounded memory.
    let slots = Arc::new(Semaphore::new(64));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => return,
        };
        let (mut stream, addr) = match accepted {
            Ok(a) => a,
            Err(e) => {
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            warn!(%addr, "too many handshakes in progress; connection refused");
            continue;
        };
        let (id, queues, stats, timeout) = (id.clone(), queues.clone(), stats.clone(), cfg.handshake_timeout);
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(timeout, handshake::accept(&mut stream, &id)).await {
                Ok(Ok(peer)) => {
                    let q = &queues[peer];
                    q.newest.put(stream);
                }
                Ok(Err(e)) => {
                    stats.rejected.fetch_add(1, Ordering::Relaxed);
                    warn!(%addr, reason = %e, "peer rejected during handshake");
                }
                Err(_) => {
                    stats.rejected.fetch_add(1, Ordering::Relaxed);
                    warn!(%addr, "peer rejected: handshake timed out");
                }
            }
        });
    }
}

/// One peer's connection manager: (re)connects, runs the connection, reports up/down.
struct Link {
    peer: usize,
    id: Identity,
    cfg: TcpConfig,
    queue: Arc<PeerQueue>,
    stats: Arc<TcpStats>,
    events: mpsc::Sender<TransportEvent>,
    stop: watch::Receiver<bool>,
}

/// Why a connection ended.
enum End {
    Closed(String),
    Violation(String),
    Replaced,
    Stopped,
}

impl Link {
    async fn run(mut self) {
        let mut backoff = Backoff::new(self.cfg.reconnect_min, self.cfg.reconnect_max);
        loop {
            let stream = if self.id.me < self.peer {
                match self.dial().await {
                    Some(s) => s,
                    None => {
                        if *self.stop.borrow() {
                            return;
                        }
                        tokio::select! {
                            _ = tokio::time::sleep(backoff.next_wait()) => {}
                            _ = self.stop.changed() => return,
                        }
                        continue;
                    }
                }
            } else {
                tokio::select! {
                    _ = self.queue.newest.arrived() => {}
                    _ = self.stop.changed() => return,
                }
                match self.queue.newest.take() {
                    Some(s) => s,
                    None => continue,
                }
            };
            backoff.reset();
            match self.serve(stream).await {
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

    async fn dial(&mut self) -> Option<TcpStream> {
        let addr = self.cfg.peers[self.peer];
        let attempt = async {
            let mut s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
            handshake::dial(&mut s, &self.id, self.peer).await.map_err(|e| e.to_string())?;
            Ok::<_, String>(s)
        };
        match tokio::time::timeout(self.cfg.handshake_timeout, attempt).await {
            Ok(Ok(s)) => Some(s),
            Ok(Err(e)) => {
                debug!(peer = self.peer, %addr, error = %e, "connect failed");
                None
            }
            Err(_) => {
                debug!(peer = self.peer, %addr, "connect timed out");
                None
            }
        }
    }

    async fn serve(&mut self, stream: TcpStream) -> End {
        let _ = stream.set_nodelay(true);
        let (read, write) = stream.into_split();
        let write = Arc::new(write);
        *self.queue.out.lock().expect("queue lock poisoned") =
            Outgoing { buf: Vec::new(), writing: false, sink: Some(write.clone()) };
        self.queue.up.store(true, Ordering::Release);
        info!(peer = self.peer, "peer connected");
        if self.events.send(TransportEvent::PeerUp(self.peer)).await.is_err() {
            return End::Stopped;
        }
        let accepting = self.id.me > self.peer;
        let end = tokio::select! {
            e = read_loop(read, self.peer, self.cfg.max_frame, &self.events) => e,
            e = write_loop(write.clone(), &self.queue, &self.stats) => e,
            _ = self.queue.newest.arrived(), if accepting => End::Replaced,
            _ = self.stop.changed() => End::Stopped,
        };
        self.queue.up.store(false, Ordering::Release);
        *self.queue.out.lock().expect("queue lock poisoned") = Outgoing::default();
        if !matches!(end, End::Stopped) && self.events.send(TransportEvent::PeerDown(self.peer)).await.is_err() {
            return End::Stopped;
        }
        if matches!(end, End::Replaced) {
            // The newer stream is waiting in `newest`; wake ourselves to take it.
            self.queue.newest.rewake();
        }
        end
    }
}

async fn read_loop(
    mut read: OwnedReadHalf,
    peer: usize,
    max_frame: usize,
    events: &mpsc::Sender<TransportEvent>,
) -> End {
    const READ: usize = 64 * 1024;
    let mut buf: Vec<u8> = Vec::with_capacity(READ);
    loop {
        if buf.capacity() - buf.len() < READ {
            buf.reserve(READ);
        }
        match read.read_buf(&mut buf).await {
            Ok(0) => return End::Closed("peer closed the connection".into()),
            Ok(_) => {}
            Err(e) => return End::Closed(e.to_string()),
        }
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

/// Sends what the driver could not write directly, coalescing everything queued meanwhile into one write.
async fn write_loop(write: Arc<OwnedWriteHalf>, queue: &PeerQueue, stats: &TcpStats) -> End {
    let mut spare = Vec::new();
    loop {
        queue.ready.notified().await;
        loop {
            {
                let mut out = queue.out.lock().expect("queue lock poisoned");
                if out.buf.is_empty() {
                    out.writing = false;
                    break;
                }
                out.writing = true;
                std::mem::swap(&mut out.buf, &mut spare);
            }
            let mut from = 0;
            while from < spare.len() {
                if let Err(e) = write.writable().await {
                    return End::Closed(e.to_string());
                }
                match write.try_write(&spare[from..]) {
                    Ok(0) => return End::Closed("connection closed while writing".into()),
                    Ok(k) => from += k,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return End::Closed(e.to_string()),
                }
            }
            stats.writes.fetch_add(1, Ordering::Relaxed);
            spare.clear();
        }
    }
}
