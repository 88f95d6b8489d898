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
//! claiming one index are detected on the accepting side ([`crate::engine::Admit`]): reported once at ERROR
//! and held off instead of replacing each other's connection in a storm.
//!
//! Everything but the socket and the handshake — queues, reconnection, hand-over, framing, shutdown drain —
//! is the connection [`crate::engine`]'s; [`TcpLink`] is what TCP adds. Memory per peer is bounded:
//! outgoing frames wait in one byte buffer of at most [`TcpConfig::max_queued_bytes`] (beyond it messages
//! are dropped and counted — the protocol tolerates loss); incoming bytes are read into a buffer of at most
//! one maximal frame plus one read, and decoded batches wait in a bounded channel, so a slow driver pushes
//! back on the socket instead of growing.

pub mod handshake;
mod name;

pub use crate::engine::{decode_frames, encode_frame, FrameError};
pub use handshake::{cluster_id, ClusterName};

use crate::engine::{
    Admit, ByteSource, Deliver, End, Engine, Link, Reader, Redial, Reporter, Settings, Stats, TryWrite, Writer,
};
use crate::entropy::Entropy;
use handshake::{HandshakeError, Identity, Verdict};
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, info, Level};

/// Settings of the TCP transport.
#[derive(Clone, Debug)]
pub struct TcpConfig {
    /// Every node's address, by index; this node's entry is where it listens. For a peer with a name in
    /// [`peer_names`](Self::peer_names), the address the name resolved to at start.
    pub peers: Vec<SocketAddr>,
    /// Every node's host name, by index (`None`: the address is used as it is). A peer with a name is
    /// resolved again each time it is dialed, so one that moved to a new address is found again: the first
    /// address the name resolves to is dialed (the one in use if it is still among them), and a change is
    /// logged at INFO. A failed resolution is reported (rate-limited, per peer and reason) and the last
    /// good address is dialed. Resolution is bounded by [`handshake_timeout`](Self::handshake_timeout), and
    /// the handshake still proves who answers: a wrong resolution is refused, not trusted. Empty (the
    /// default from [`TcpConfig::new`] is all `None`) or one entry per peer; this node's own entry is not
    /// used (it listens where [`peers`](Self::peers) says).
    pub peer_names: Vec<Option<String>>,
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
    /// Where handshake nonces, the instance number and reconnection jitter come from: the operating system
    /// ([`Entropy::os`]); only a deterministic simulator sets [`Entropy::insecure_seeded`].
    pub entropy: Entropy,
}

impl TcpConfig {
    /// Defaults for node `me` of `peers`: 4 MiB frames and queues, reconnect 20 ms – 250 ms (a restarted peer is found again within a quarter second: its rejoin waits for every peer), handshake 5 s.
    pub fn new(
        peers: Vec<SocketAddr>,
        me: usize,
        cluster: impl Into<ClusterName>,
        secret: impl Into<Arc<[u8]>>,
    ) -> Self {
        TcpConfig {
            peer_names: vec![None; peers.len()],
            peers,
            me,
            cluster: cluster.into(),
            secret: secret.into(),
            max_frame: 4 << 20,
            max_queued_bytes: 4 << 20,
            reconnect_min: Duration::from_millis(20),
            reconnect_max: Duration::from_millis(250),
            handshake_timeout: Duration::from_secs(5),
            entropy: Entropy::os(),
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
    /// [`TcpConfig::peer_names`] is neither empty nor one entry per peer.
    PeerNames {
        /// Entries in the name list.
        names: usize,
        /// Entries in the peer list.
        peers: usize,
    },
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
            TcpConfigError::PeerNames { names, peers } => {
                write!(f, "{names} peer names for {peers} peers: give none or one per peer")
            }
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
        if !self.peer_names.is_empty() && self.peer_names.len() != n {
            return Err(TcpConfigError::PeerNames { names: self.peer_names.len(), peers: n });
        }
        self.cluster.check().map_err(TcpConfigError::ClusterName)
    }
}

/// Counters of the TCP transport (the engine's [`Stats`]).
pub type TcpStats = Stats;

/// A [`Transport`](crate::Transport) over TCP: the connection engine running a [`TcpLink`].
pub type TcpTransport = Engine<TcpLink>;

impl Engine<TcpLink> {
    /// Binds this node's address (from `cfg.peers[cfg.me]`) and starts connecting.
    pub async fn bind(cfg: TcpConfig) -> std::io::Result<Self> {
        cfg.check(None)?;
        let listener = TcpListener::bind(cfg.peers[cfg.me]).await?;
        Self::with_listener(cfg, listener)
    }

    /// Starts with a listener the caller bound (e.g. on port 0, so the OS chooses the port).
    pub fn with_listener(cfg: TcpConfig, listener: TcpListener) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        Self::start_on(cfg, TokioNet, listener, local)
    }
}

impl<N: Net> Engine<TcpLink<N>> {
    /// Starts on a listener of any [`Net`] (a simulated network's); `local` is where it listens.
    pub fn start_on(cfg: TcpConfig, net: N, listener: N::Listener, local: SocketAddr) -> std::io::Result<Self> {
        cfg.check(Some(local))?;
        let settings = Settings {
            me: cfg.me,
            nodes: cfg.peers.len(),
            max_frame: cfg.max_frame,
            max_queued_bytes: cfg.max_queued_bytes,
            reconnect_min: cfg.reconnect_min,
            reconnect_max: cfg.reconnect_max,
            entropy: cfg.entropy.clone(),
        };
        let id = Identity::with_entropy(
            cfg.cluster.clone(),
            cfg.me,
            cfg.peers.len(),
            cfg.secret.clone(),
            cfg.entropy.clone(),
        );
        // Connection events are logged inside a span naming this node.
        let span = tracing::info_span!("dsync-tcp", node = cfg.me);
        let addrs = cfg.peers.iter().map(|&a| Mutex::new(a)).collect();
        let link = TcpLink { net, listener, local, id, cfg, addrs, reporter: Reporter::default() };
        Ok(Engine::start(link, settings, span))
    }

    /// The address this node listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.link().local
    }
}

/// The sockets a [`TcpLink`] runs on: the operating system's ([`TokioNet`]), or a simulated network's
/// (`dsync-sim stack` runs the whole TCP transport — handshake, framing, reconnection — over one).
pub trait Net: Send + Sync + Sized + 'static {
    /// A bound listening socket.
    type Listener: Send + Sync + 'static;
    /// A connected stream (the handshake runs on it).
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// The receiving half of an authenticated stream.
    type Reader: Reader;
    /// The sending half of an authenticated stream.
    type Writer: Writer;

    /// The next inbound connection and its peer's address. Must be cancel-safe.
    fn accept(
        &self,
        listener: &Self::Listener,
    ) -> impl Future<Output = std::io::Result<(Self::Stream, SocketAddr)>> + Send;

    /// Connects to `addr`.
    fn connect(&self, addr: SocketAddr) -> impl Future<Output = std::io::Result<Self::Stream>> + Send;

    /// The addresses a peer's `host:port` name resolves to ([`TcpConfig::peer_names`]), best first. By
    /// default names are not resolved (a simulated network knows only addresses): an error, so the link
    /// dials the address the name had at start.
    fn resolve(&self, name: &str) -> impl Future<Output = std::io::Result<Vec<SocketAddr>>> + Send {
        let _ = name;
        async { Err(std::io::Error::new(std::io::ErrorKind::Unsupported, "names are not resolved on this network")) }
    }

    /// Splits an authenticated stream into the engine's halves.
    fn split(&self, stream: Self::Stream) -> (Self::Reader, Self::Writer);
}

/// The operating system's TCP (tokio's sockets).
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioNet;

impl Net for TokioNet {
    type Listener = TcpListener;
    type Stream = TcpStream;
    type Reader = TcpReader;
    type Writer = TcpWriter;

    async fn accept(&self, listener: &TcpListener) -> std::io::Result<(TcpStream, SocketAddr)> {
        listener.accept().await
    }

    async fn connect(&self, addr: SocketAddr) -> std::io::Result<TcpStream> {
        TcpStream::connect(addr).await
    }

    async fn resolve(&self, name: &str) -> std::io::Result<Vec<SocketAddr>> {
        let found: Vec<SocketAddr> = tokio::net::lookup_host(name).await?.collect();
        if found.is_empty() {
            return Err(std::io::Error::new(std::io::ErrorKind::NotFound, "the name has no addresses"));
        }
        Ok(found)
    }

    fn split(&self, stream: TcpStream) -> (TcpReader, TcpWriter) {
        let _ = stream.set_nodelay(true);
        let (read, write) = stream.into_split();
        (TcpReader(read), TcpWriter(Arc::new(write), None))
    }
}

/// TCP connections authenticated by the cluster secret ([`handshake`]), for the connection engine.
pub struct TcpLink<N: Net = TokioNet> {
    net: N,
    listener: N::Listener,
    local: SocketAddr,
    id: Identity,
    cfg: TcpConfig,
    /// Each peer's last good address (from [`TcpConfig::peers`], then from resolving its name).
    addrs: Vec<Mutex<SocketAddr>>,
    reporter: Reporter,
}

/// A TCP connection's write half, shared by the driver's direct writes and the writer task.
pub struct TcpWriter(Arc<OwnedWriteHalf>, Option<std::io::ErrorKind>);

/// A TCP connection's read half.
pub struct TcpReader(OwnedReadHalf);

/// A read half that remembers the kind of the error that ended it, so the connection's end is classified
/// ([`End::from_kind`]: a reset is not a clean close).
struct Classified<'a> {
    read: OwnedReadHalf,
    error: &'a mut Option<std::io::ErrorKind>,
}

impl ByteSource for Classified<'_> {
    async fn read_into(&mut self, buf: &mut Vec<u8>) -> Result<usize, String> {
        tokio::io::AsyncReadExt::read_buf(&mut self.read, buf).await.map_err(|e| {
            *self.error = Some(e.kind());
            e.to_string()
        })
    }
}

impl TryWrite for OwnedWriteHalf {
    fn try_write(&self, bytes: &[u8]) -> std::io::Result<usize> {
        OwnedWriteHalf::try_write(self, bytes)
    }
}

impl Writer for TcpWriter {
    fn direct(&self) -> Option<Arc<dyn TryWrite>> {
        Some(self.0.clone())
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        let mut from = 0;
        while from < bytes.len() {
            if let Err(e) = self.0.writable().await {
                self.1 = Some(e.kind());
                return Err(e.to_string());
            }
            match self.0.try_write(&bytes[from..]) {
                Ok(0) => return Err("connection closed while writing".into()),
                Ok(k) => from += k,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    self.1 = Some(e.kind());
                    return Err(e.to_string());
                }
            }
        }
        Ok(())
    }

    fn failed(&mut self, error: String) -> End {
        match self.1 {
            Some(kind) => End::from_kind(kind, error),
            None => End::Closed(error),
        }
    }
}

impl Reader for TcpReader {
    async fn run(self, deliver: Deliver) -> End {
        let mut error = None;
        let end = deliver.frames(Classified { read: self.0, error: &mut error }).await;
        match (end, error) {
            (End::Closed(text), Some(kind)) => End::from_kind(kind, text),
            (end, _) => end,
        }
    }
}

impl<N: Net> Link for TcpLink<N> {
    type Incoming = N::Stream;
    type Conn = N::Stream;
    type Reader = N::Reader;
    type Writer = N::Writer;

    async fn accept(&self) -> Option<(N::Stream, SocketAddr)> {
        loop {
            match self.net.accept(&self.listener).await {
                Ok(a) => return Some(a),
                Err(e) => {
                    self.reporter.report(Level::WARN, "accept".into(), &format!("accept failed: {e}"));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }

    async fn authenticate(&self, mut stream: N::Stream, addr: SocketAddr, admit: &mut Admit<'_>) -> Option<N::Stream> {
        let timeout = self.cfg.handshake_timeout;
        let decide = |h: &handshake::Hello| match admit.claim(h.peer, h.instance) {
            Ok(()) => Verdict::Welcome,
            Err(retry) => Verdict::Duplicate(retry),
        };
        let mut claimed = None;
        let handshake = handshake::accept_claimed(&mut stream, &self.id, decide, &mut claimed);
        match tokio::time::timeout(timeout, handshake).await {
            Ok(Ok(_)) => return Some(stream),
            Ok(Err(e)) => report_accept_failure(&self.reporter, self.id.me, addr, claimed, &e),
            Err(_) => self.reporter.report(
                Level::WARN,
                format!("{}/timeout", addr.ip()),
                &format!("{} did not complete the handshake within {timeout:?}", who(addr, claimed)),
            ),
        }
        None
    }

    async fn split(&self, stream: N::Stream, _dialed: bool) -> Result<(N::Reader, N::Writer), String> {
        Ok(self.net.split(stream))
    }

    /// A connected, authenticated stream; else how long to wait at least before the next attempt, or
    /// `None` when this peer must not be dialed again.
    async fn dial(&self, peer: usize) -> Result<(N::Stream, SocketAddr), Redial> {
        let addr = self.address(peer).await;
        let t = self.cfg.handshake_timeout;
        let mut s = match tokio::time::timeout(t, self.net.connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                // Usually the peer is not (yet) running: not worth more than DEBUG.
                debug!(peer, %addr, error = %e, "connect failed");
                return Err(Redial::RETRY);
            }
            Err(_) => {
                debug!(peer, %addr, "connect timed out");
                return Err(Redial::RETRY);
            }
        };
        let e = match tokio::time::timeout(t, handshake::dial(&mut s, &self.id, peer)).await {
            Ok(Ok(())) => return Ok((s, addr)),
            Ok(Err(e)) => e,
            Err(_) => {
                self.reporter.report(
                    Level::WARN,
                    format!("{peer}/timeout"),
                    &format!("peer {addr} (node {peer}) did not complete the handshake within {t:?}"),
                );
                return Err(Redial::RETRY);
            }
        };
        let (j, me) = (peer, self.id.me);
        let mut wait = Redial::RETRY;
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
                wait.after = None;
                format!("peer list entry {j} ({addr}) is this node's own address: not dialing it (check --peers / --id)")
            }
            HandshakeError::Duplicate { retry } => {
                wait.after = Some(*retry);
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
        // A refusal, not an unreachable peer: counted like an inbound refusal (`dsync_transport_rejected_total`),
        // every attempt. A dial that reached this node itself is counted once, by the accepting side.
        wait.rejected = !matches!(e, HandshakeError::Io(_) | HandshakeError::SelfDial);
        Err(wait)
    }
}

impl<N: Net> TcpLink<N> {
    /// Where to dial `peer`: its name resolved again if it has one ([`TcpConfig::peer_names`]), else (or
    /// when that fails) its last good address.
    async fn address(&self, peer: usize) -> SocketAddr {
        let last = *self.addrs[peer].lock().unwrap_or_else(|e| e.into_inner());
        let Some(name) = self.cfg.peer_names.get(peer).and_then(|n| n.as_deref()) else { return last };
        let t = self.cfg.handshake_timeout;
        let (reason, error) = match tokio::time::timeout(t, self.net.resolve(name)).await {
            Ok(Ok(found)) if !found.is_empty() => {
                // Stay on the address in use while the name still has it (several addresses, or their order
                // changing, is not a move).
                let now = if found.contains(&last) { last } else { found[0] };
                if now != last {
                    info!(peer, name, was = %last, now = %now, "peer's name resolves to a new address");
                    *self.addrs[peer].lock().unwrap_or_else(|e| e.into_inner()) = now;
                }
                return now;
            }
            Ok(Ok(_)) => ("empty".to_string(), "it has no addresses".to_string()),
            Ok(Err(e)) => (format!("{:?}", e.kind()), e.to_string()),
            Err(_) => ("timeout".to_string(), format!("no answer within {t:?}")),
        };
        self.reporter.report(
            Level::WARN,
            format!("{peer}/resolve/{reason}"),
            &format!("cannot resolve peer {peer}'s name {name} ({error}): dialing its last address {last}"),
        );
        last
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
