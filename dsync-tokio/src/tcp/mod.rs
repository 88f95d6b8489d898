//! The TCP transport: one authenticated connection per pair of nodes, length-prefixed postcard frames,
//! coalesced writes, bounded queues, and automatic reconnection.
//!
//! Node `i` dials every node `j > i` and accepts from every `j < i`, so each pair has exactly one
//! connection. A connection is used only after the handshake ([`handshake`]) proved the peer knows the
//! cluster secret and is the index it claims; a peer that fails it, or later sends an oversized or
//! malformed frame, is disconnected and nothing it sent reaches the core.
//!
//! A misconfigured peer (another secret or cluster name, a shuffled peer list) retries forever, so each
//! (peer, reason) is logged once at WARN on both sides, in words that name the peer's address and what to
//! check, and then at most once a minute with the count of repeats (DEBUG in between). Two live nodes
//! claiming one index are detected on the accepting side (module `claim`): reported once at ERROR and held off
//! instead of replacing each other's connection in a storm.
//!
//! Memory per peer is bounded: outgoing frames wait in one byte buffer of at most
//! [`TcpConfig::max_queued_bytes`] (beyond it messages are dropped and counted — the protocol tolerates
//! loss); incoming bytes are read into a buffer of at most one maximal frame plus one read, and decoded
//! batches wait in a bounded channel, so a slow driver pushes back on the socket instead of growing.

mod claim;
mod codec;
pub mod handshake;
mod report;

pub use codec::{decode_frames, encode_frame, FrameError};
pub use handshake::{cluster_id, ClusterName};

use crate::conn::{queue_frames, Backoff, Newest};
use crate::inbound::Inbound;
use crate::transport::{Transport, TransportEvent};
use claim::{Claim, Decision};
use handshake::{HandshakeError, Identity, Verdict};
use report::Reporter;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Notify, Semaphore};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn, Level};

/// Settings of the TCP transport.
#[derive(Clone, Debug)]
pub struct TcpConfig {
    /// Every node's address, by index; this node's entry is where it listens.
    pub peers: Vec<SocketAddr>,
    /// This node's index.
    pub me: usize,
    /// The cluster name both sides must share (at most 64 bytes, no control characters).
    pub cluster: ClusterName,
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
    pub fn new(
        peers: Vec<SocketAddr>,
        me: usize,
        cluster: impl Into<ClusterName>,
        secret: impl Into<Arc<[u8]>>,
    ) -> Self {
        TcpConfig {
            peers,
            me,
            cluster: cluster.into(),
            secret: secret.into(),
            max_frame: 4 << 20,
            max_queued_bytes: 4 << 20,
            reconnect_min: Duration::from_millis(20),
            reconnect_max: Duration::from_secs(1),
            handshake_timeout: Duration::from_secs(5),
        }
    }
}

/// Why [`TcpTransport`] refused its configuration. The constructors return it inside an
/// [`std::io::Error`] of kind `InvalidInput`; get it back with
/// `e.get_ref().and_then(|e| e.downcast_ref::<TcpConfigError>())`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TcpConfigError {
    /// The peer list is empty, too long, or does not contain `me`.
    Size {
        /// Entries in the peer list.
        peers: usize,
        /// This node's index.
        me: usize,
    },
    /// Two entries of the peer list have the same address: the node would dial itself or one node twice.
    DuplicatePeer {
        /// The first index with the address.
        first: usize,
        /// The second.
        second: usize,
        /// The address.
        addr: SocketAddr,
    },
    /// This node's own listening address is also listed as another node's.
    OwnAddress {
        /// The other index.
        index: usize,
        /// The address.
        addr: SocketAddr,
    },
    /// The cluster name cannot be carried by the handshake.
    ClusterName(String),
}

impl fmt::Display for TcpConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TcpConfigError::Size { peers, me } => {
                write!(f, "node index {me} with {peers} peers (1 to 255 peers, index below their number)")
            }
            TcpConfigError::DuplicatePeer { first, second, addr } => {
                write!(f, "peer list entries {first} and {second} are both {addr}: each node must be listed once")
            }
            TcpConfigError::OwnAddress { index, addr } => {
                write!(f, "peer list entry {index} is this node's own address {addr}: check --peers / --id")
            }
            TcpConfigError::ClusterName(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for TcpConfigError {}

impl From<TcpConfigError> for std::io::Error {
    fn from(e: TcpConfigError) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, e)
    }
}

impl TcpConfig {
    /// Checks the peer list and cluster name; `local` is where this node actually listens.
    pub fn check(&self, local: Option<SocketAddr>) -> Result<(), TcpConfigError> {
        let n = self.peers.len();
        if n == 0 || n > 255 || self.me >= n {
            return Err(TcpConfigError::Size { peers: n, me: self.me });
        }
        for (second, addr) in self.peers.iter().enumerate() {
            if let Some(first) = self.peers[..second].iter().position(|a| a == addr) {
                return Err(TcpConfigError::DuplicatePeer { first, second, addr: *addr });
            }
        }
        if let Some(local) = local {
            if let Some(index) = self.peers.iter().enumerate().position(|(i, a)| i != self.me && *a == local) {
                return Err(TcpConfigError::OwnAddress { index, addr: local });
            }
        }
        self.cluster.check().map_err(TcpConfigError::ClusterName)
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
    newest: Newest<Accepted>,
    /// Who holds this peer's index (accepting side only).
    claim: Mutex<Claim>,
}

/// An authenticated inbound connection, waiting for its peer's task.
struct Accepted {
    stream: TcpStream,
    addr: SocketAddr,
    /// Its name in the peer's [`Claim`].
    conn: u64,
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
        cfg.check(None)?;
        let listener = TcpListener::bind(cfg.peers[cfg.me]).await?;
        Self::with_listener(cfg, listener)
    }

    /// Starts with a listener the caller bound (e.g. on port 0, so the OS chooses the port).
    pub fn with_listener(cfg: TcpConfig, listener: TcpListener) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        cfg.check(Some(local))?;
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
                    claim: Mutex::new(Claim::default()),
                })
            })
            .collect();
        let id = Identity::new(cfg.cluster.clone(), cfg.me, n, cfg.secret.clone());
        let reporter = Arc::new(Reporter::default());
        let mut tasks = Vec::new();
        // Connection events are logged inside a span naming this node.
        let span = tracing::info_span!("dsync-tcp", node = cfg.me);
        let accept = accept_loop(
            listener,
            id.clone(),
            cfg.clone(),
            queues.clone(),
            stats.clone(),
            reporter.clone(),
            stop_rx.clone(),
        );
        tasks.push(tokio::spawn(tracing::Instrument::instrument(accept, span.clone())));
        for peer in (0..n).filter(|&p| p != cfg.me) {
            let link = Link {
                peer,
                id: id.clone(),
                cfg: cfg.clone(),
                queue: queues[peer].clone(),
                stats: stats.clone(),
                reporter: reporter.clone(),
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

/// A short name of a handshake failure, for rate-limiting its reports.
fn kind_of(e: &HandshakeError) -> &'static str {
    match e {
        HandshakeError::Io(_) => "io",
        HandshakeError::BadMagic => "magic",
        HandshakeError::Malformed(_) => "malformed",
        HandshakeError::Version(_) => "version",
        HandshakeError::Cluster { .. } => "cluster",
        HandshakeError::Index { .. } => "index",
        HandshakeError::Misaddressed { .. } | HandshakeError::WrongNode { .. } => "misaddressed",
        HandshakeError::OutOfRange { .. } => "range",
        HandshakeError::SelfDial => "self",
        HandshakeError::BadMac | HandshakeError::SecretRefused => "secret",
        HandshakeError::Duplicate { .. } => "duplicate",
        HandshakeError::Refused(_) => "refused",
    }
}

/// "peer ADDR", with the index it claims if its hello said (not proven: for the reader, not for decisions).
fn who(addr: SocketAddr, claimed: Option<usize>) -> String {
    match claimed {
        Some(c) => format!("peer {addr} (says it is node {c})"),
        None => format!("peer {addr}"),
    }
}

/// Logs why an inbound handshake from `addr` failed (rate-limited per peer IP and reason).
fn report_accept_failure(reporter: &Reporter, me: usize, addr: SocketAddr, claimed: Option<usize>, e: &HandshakeError) {
    let peer = who(addr, claimed);
    let msg = match e {
        // The dialing half of this node reports it.
        HandshakeError::SelfDial => return debug!(%addr, "a dial of this node's own address reached itself"),
        // Reported when decided.
        HandshakeError::Duplicate { .. } => return,
        HandshakeError::SecretRefused => format!(
            "we do not know the secret {peer} expects: it rejected our handshake proof (the nodes have different cluster secrets)"
        ),
        HandshakeError::BadMac => {
            format!("{peer} does not know our cluster secret: its handshake proof failed")
        }
        HandshakeError::Cluster { ours, theirs } => {
            format!("{peer} belongs to cluster {theirs}, this node to cluster {ours}: the cluster names differ")
        }
        HandshakeError::Misaddressed { from, to } => format!(
            "peer {addr} (node {from}) dialed us as node {to}, but this is node {me}: check --peers order / --id"
        ),
        HandshakeError::Index { claimed, expected } => {
            format!("peer {addr} claims node index {claimed}, expected {expected}: check --peers / --id")
        }
        other => format!("{peer} failed the handshake: {other}"),
    };
    reporter.report(Level::WARN, format!("{}/{}", addr.ip(), kind_of(e)), &msg);
}

/// Accepts connections, authenticates them, and hands each to its peer's link (newest wins, unless another
/// live node holds the index: see [`claim`]).
async fn accept_loop(
    listener: TcpListener,
    id: Identity,
    cfg: TcpConfig,
    queues: Vec<Arc<PeerQueue>>,
    stats: Arc<TcpStats>,
    reporter: Arc<Reporter>,
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
                reporter.report(Level::WARN, "accept".into(), &format!("accept failed: {e}"));
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            reporter.report(
                Level::WARN,
                "busy".into(),
                &format!("too many handshakes in progress; connection from {addr} refused"),
            );
            continue;
        };
        let (id, queues, stats, reporter) = (id.clone(), queues.clone(), stats.clone(), reporter.clone());
        let timeout = cfg.handshake_timeout;
        let task = async move {
            let _permit = permit;
            let mut admitted: Option<(usize, u64)> = None;
            let decide = |h: &handshake::Hello| {
                let claim = &queues[h.peer].claim;
                match claim.lock().unwrap_or_else(|e| e.into_inner()).decide(h.instance, addr, Instant::now()) {
                    Decision::Welcome { conn } => {
                        admitted = Some((h.peer, conn));
                        Verdict::Welcome
                    }
                    Decision::Refuse { retry, detected } => {
                        match detected {
                            Some((holder, newcomer)) => reporter.report(
                                Level::ERROR,
                                format!("duplicate/{}", h.peer),
                                &format!(
                                    "two live nodes claim index {}: {holder} and {newcomer} — configuration error \
                                     (duplicate --id?); refusing the newcomer for {retry:?}",
                                    h.peer
                                ),
                            ),
                            None => debug!(%addr, peer = h.peer, "index held by another live node; refused"),
                        }
                        Verdict::Duplicate(retry)
                    }
                }
            };
            let mut claimed = None;
            let handshake = handshake::accept_claimed(&mut stream, &id, decide, &mut claimed);
            let result = tokio::time::timeout(timeout, handshake).await;
            match (result, admitted) {
                (Ok(Ok(hello)), Some((_, conn))) => queues[hello.peer].newest.put(Accepted { stream, addr, conn }),
                (result, admitted) => {
                    if let Some((peer, conn)) = admitted {
                        queues[peer].claim.lock().unwrap_or_else(|e| e.into_inner()).ended(conn);
                    }
                    stats.rejected.fetch_add(1, Ordering::Relaxed);
                    match result {
                        Ok(Err(e)) => report_accept_failure(&reporter, id.me, addr, claimed, &e),
                        _ => reporter.report(
                            Level::WARN,
                            format!("{}/timeout", addr.ip()),
                            &format!("{} did not complete the handshake within {timeout:?}", who(addr, claimed)),
                        ),
                    }
                }
            }
        };
        tokio::spawn(tracing::Instrument::in_current_span(task));
    }
}

/// One peer's connection manager: (re)connects, runs the connection, reports up/down.
struct Link {
    peer: usize,
    id: Identity,
    cfg: TcpConfig,
    queue: Arc<PeerQueue>,
    stats: Arc<TcpStats>,
    reporter: Arc<Reporter>,
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
            let (stream, addr, conn) = if self.id.me < self.peer {
                match self.dial().await {
                    Ok(s) => (s, self.cfg.peers[self.peer], None),
                    Err(at_least) => {
                        if *self.stop.borrow() {
                            return;
                        }
                        // `None`: this entry is our own address; dialing it again cannot help.
                        let Some(at_least) = at_least else { return };
                        tokio::select! {
                            _ = tokio::time::sleep(backoff.next_wait().max(at_least)) => {}
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
                    Some(a) => (a.stream, a.addr, Some(a.conn)),
                    None => continue,
                }
            };
            backoff.reset();
            let end = self.serve(stream, addr).await;
            if let Some(conn) = conn {
                self.queue.claim.lock().unwrap_or_else(|e| e.into_inner()).ended(conn);
            }
            match end {
                End::Stopped => return,
                End::Closed(why) => info!(peer = self.peer, %addr, reason = %why, "peer connection closed"),
                End::Violation(why) => {
                    self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                    warn!(peer = self.peer, %addr, reason = %why, "peer disconnected for a protocol violation");
                }
                End::Replaced => info!(peer = self.peer, %addr, "peer reconnected; old connection replaced"),
            }
        }
    }

    /// A connected, authenticated stream; else how long to wait at least before the next attempt, or
    /// `None` when this peer must not be dialed again.
    async fn dial(&mut self) -> Result<TcpStream, Option<Duration>> {
        let addr = self.cfg.peers[self.peer];
        let t = self.cfg.handshake_timeout;
        let mut s = match tokio::time::timeout(t, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                // Usually the peer is not (yet) running: not worth more than DEBUG.
                debug!(peer = self.peer, %addr, error = %e, "connect failed");
                return Err(Some(Duration::ZERO));
            }
            Err(_) => {
                debug!(peer = self.peer, %addr, "connect timed out");
                return Err(Some(Duration::ZERO));
            }
        };
        let e = match tokio::time::timeout(t, handshake::dial(&mut s, &self.id, self.peer)).await {
            Ok(Ok(())) => return Ok(s),
            Ok(Err(e)) => e,
            Err(_) => {
                self.reporter.report(
                    Level::WARN,
                    format!("{}/timeout", self.peer),
                    &format!("peer {addr} (node {}) did not complete the handshake within {t:?}", self.peer),
                );
                return Err(Some(Duration::ZERO));
            }
        };
        let (j, me) = (self.peer, self.id.me);
        let mut wait = Some(Duration::ZERO);
        let mut level = Level::WARN;
        let msg = match &e {
            HandshakeError::BadMac => format!(
                "peer {addr} (node {j}) does not know our cluster secret: its handshake proof failed (the nodes have different cluster secrets)"
            ),
            HandshakeError::SecretRefused => format!(
                "we do not know the secret peer {addr} (node {j}) expects: it rejected our handshake proof (the nodes have different cluster secrets)"
            ),
            HandshakeError::Cluster { ours, theirs } => format!(
                "peer {addr} (node {j}) belongs to cluster {theirs}, this node to cluster {ours}: the cluster names differ"
            ),
            HandshakeError::WrongNode { answered, .. } => format!(
                "peer at {addr} says it is node {answered}, but our peer list has node {j} there: check --peers order / --id"
            ),
            HandshakeError::OutOfRange { nodes, .. } => format!(
                "peer {addr} (node {j}) has {nodes} nodes in its peer list, so our index {me} is out of range: check --peers / --id"
            ),
            HandshakeError::SelfDial => {
                level = Level::ERROR;
                wait = None;
                format!("peer list entry {j} ({addr}) is this node's own address: not dialing it (check --peers / --id)")
            }
            HandshakeError::Duplicate { retry } => {
                wait = Some(*retry);
                format!(
                    "peer {addr} (node {j}) refuses us: another live node also claims our index {me} — configuration \
                     error (duplicate --id?); retrying in {retry:?}"
                )
            }
            HandshakeError::Io(io) => format!(
                "peer {addr} (node {j}) closed the connection during the handshake without saying why ({io}): an \
                 older dsync version, or not a dsync node?"
            ),
            other => format!("handshake with peer {addr} (node {j}) failed: {other}"),
        };
        self.reporter.report(level, format!("{j}/{}", kind_of(&e)), &msg);
        Err(wait)
    }

    async fn serve(&mut self, stream: TcpStream, addr: SocketAddr) -> End {
        let _ = stream.set_nodelay(true);
        let (read, write) = stream.into_split();
        let write = Arc::new(write);
        *self.queue.out.lock().expect("queue lock poisoned") =
            Outgoing { buf: Vec::new(), writing: false, sink: Some(write.clone()) };
        self.queue.up.store(true, Ordering::Release);
        // The driver logs "peer up" at INFO; this adds the address.
        debug!(peer = self.peer, %addr, "peer connected");
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
