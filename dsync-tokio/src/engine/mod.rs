//! The connection engine: everything a connection-based [`Transport`] needs except the connections
//! themselves, written once for the TCP transport, `dsync-quic`, and any other link (a simulated network).
//!
//! A transport plugs in a [`Link`]: how to dial a peer, accept and authenticate an inbound connection, and
//! split an authenticated connection into a [`Reader`] and a [`Writer`]. [`Engine::start`] runs the rest:
//!
//! - **Topology.** Node `i` dials every node `j > i` and accepts from every `j < i`, so each pair has exactly
//!   one connection. Dials are retried with capped, jittered exponential backoff.
//! - **Newest connection wins.** A newer authenticated connection from a peer replaces the one in use, so a
//!   restarted peer rejoins at once; two live nodes claiming one index are detected instead of replacing
//!   each other forever (see [`Admit`]): reported once at ERROR and held off.
//! - **Bounded memory.** Outgoing frames wait in one byte buffer per peer of at most
//!   [`Settings::max_queued_bytes`] (whole frames are dropped beyond it and counted in [`Stats::dropped`] —
//!   the protocol tolerates loss); decoded batches wait in a bounded channel per peer, taken in turn
//!   ([`crate::Inbound`]), so a flooding peer is pushed back on alone.
//! - **Framing.** A `u32` little-endian length, then one postcard envelope ([`encode_frame`],
//!   [`decode_frames`]); an oversized or malformed frame ends the connection as a protocol violation and
//!   nothing after it reaches the core.
//! - **Events.** `PeerUp` once a connection is authenticated and split, `PeerDown` when it ends. Each is
//!   logged once at INFO, with the peer's index and address — "peer up", and "peer down" with the
//!   [`End::reason`] the connection ended for (`closed`, `reset`, `timed out`, `protocol violation`,
//!   `replaced`, `shutdown`, ...).
//! - **Shutdown.** Queued frames are written out and each writer [`Writer::finish`]es, for at most
//!   [`SHUTDOWN_DRAIN`]; then everything stops and [`Link::shutdown`] runs.
//!
//! Nothing here touches the OS network: a link only moves bytes (or messages) and names peers by index and
//! [`SocketAddr`] (which a simulated network may invent).

mod accept;
mod claim;
mod codec;
mod conn;
mod peer;
mod report;

pub use accept::Admit;
pub use codec::{decode_frames, encode_frame, FrameError};
pub use conn::queue_frames;
pub use peer::{ByteSource, Deliver};
pub use report::{Reporter, REPORT_EVERY};

use crate::entropy::Entropy;
use crate::inbound::Inbound;
use crate::transport::{Transport, TransportEvent};
use claim::Claim;
use conn::Newest;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

/// How long a shutdown waits for queued frames to be written out.
pub const SHUTDOWN_DRAIN: Duration = Duration::from_secs(1);

/// Decoded batches a peer's connection may have waiting for the driver.
const INBOUND_BATCHES: usize = 8;

/// One kind of connection between nodes: what a transport provides to run on the [`Engine`].
///
/// Every method may be called from several tasks at once. A link reports its own failures (it knows what
/// they mean); the engine counts them ([`Stats::rejected`]) and logs what is common to every link.
pub trait Link: Send + Sync + Sized + 'static {
    /// An inbound connection, not yet authenticated.
    type Incoming: Send + 'static;
    /// An authenticated connection to one peer.
    type Conn: Send + 'static;
    /// The receiving half of a connection.
    type Reader: Reader;
    /// The sending half of a connection.
    type Writer: Writer;

    /// The next inbound connection and where it comes from; `None` once none will come any more.
    /// Must be cancel-safe.
    fn accept(&self) -> impl Future<Output = Option<(Self::Incoming, SocketAddr)>> + Send;

    /// Turns away an inbound connection without authenticating it (too many handshakes in progress).
    fn refuse(&self, incoming: Self::Incoming) {
        drop(incoming);
    }

    /// Authenticates an inbound connection, within the link's own time limit. A connection is used only if
    /// it is returned *and* its peer's index was claimed through `admit` ([`Admit::claim`]); a failure is
    /// the link's to report (once), and the engine counts it in [`Stats::rejected`].
    fn authenticate(
        &self,
        incoming: Self::Incoming,
        addr: SocketAddr,
        admit: &mut Admit<'_>,
    ) -> impl Future<Output = Option<Self::Conn>> + Send;

    /// Connects to `peer` and authenticates it (this node dials only higher indices).
    fn dial(&self, peer: usize) -> impl Future<Output = Result<(Self::Conn, SocketAddr), Redial>> + Send;

    /// Splits an authenticated connection (`dialed`: this node dialed it) into its halves.
    fn split(
        &self,
        conn: Self::Conn,
        dialed: bool,
    ) -> impl Future<Output = Result<(Self::Reader, Self::Writer), String>> + Send;

    /// Runs once every connection has ended at shutdown (e.g. to let close notices go out).
    fn shutdown(&self) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// Called when the engine is dropped without a shutdown: close everything at once.
    fn stop(&self) {}
}

/// What a failed dial asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Redial {
    /// Wait at least this long before the next attempt (on top of the backoff); `None`: never dial this
    /// peer again (e.g. the entry is this node's own address).
    pub after: Option<Duration>,
    /// Count the failure in [`Stats::rejected`] (the peer was refused, not merely unreachable).
    pub rejected: bool,
}

impl Redial {
    /// Retry after the backoff, without counting a refusal.
    pub const RETRY: Redial = Redial { after: Some(Duration::ZERO), rejected: false };
}

/// The receiving half of a connection.
pub trait Reader: Send + 'static {
    /// Delivers everything the peer sends until the connection ends: bytes through
    /// [`Deliver::frames`], or decoded messages through [`Deliver::messages`].
    fn run(self, deliver: Deliver) -> impl Future<Output = End> + Send;
}

/// The sending half of a connection.
pub trait Writer: Send + 'static {
    /// A non-blocking way to write bytes at once, if the link has one: the driver then writes small
    /// batches itself when nothing is queued (a task hop less per message).
    fn direct(&self) -> Option<Arc<dyn TryWrite>> {
        None
    }

    /// Writes all of `bytes` (whole frames, back to back).
    fn write(&mut self, bytes: &[u8]) -> impl Future<Output = Result<(), String>> + Send;

    /// At shutdown, after the last write: ends the stream and waits until the peer has it.
    fn finish(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// The connection ended for `why`; tells the peer if the link can.
    fn close(&mut self, why: &End) {
        let _ = why;
    }

    /// How a failed [`write`](Self::write) ended the connection, from its error: [`End::Closed`] unless
    /// the link knows better (the TCP link tells a reset or a timeout from the socket's error).
    fn failed(&mut self, error: String) -> End {
        End::Closed(error)
    }
}

/// A non-blocking write; see [`Writer::direct`].
pub trait TryWrite: Send + Sync {
    /// Writes a prefix of `bytes` without waiting; `Ok(0)` or an error means nothing more can go now.
    fn try_write(&self, bytes: &[u8]) -> std::io::Result<usize>;
}

/// Why a connection ended. Its [`reason`](End::reason) is the word the one "peer down" line gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// Closed by the peer (end of stream), or broken for a reason not told apart below.
    Closed(String),
    /// Reset by the peer or the network (connection reset, broken pipe, aborted): typically a peer that
    /// was killed or crashed with data in flight, not one that shut down.
    Reset(String),
    /// The connection timed out (the peer or the path to it went silent).
    TimedOut(String),
    /// The peer failed authentication on an established connection.
    AuthFailed(String),
    /// The peer broke the protocol (counted in [`Stats::rejected`]).
    Violation(String),
    /// A newer connection from the peer replaced it.
    Replaced,
    /// The transport stopped.
    Stopped,
}

impl End {
    /// Classifies an I/O error that ended a connection: a reset, broken pipe or abort is
    /// [`End::Reset`], a timeout [`End::TimedOut`], anything else (an unexpected end of stream) [`End::Closed`].
    pub fn from_io(e: &std::io::Error) -> End {
        Self::from_kind(e.kind(), e.to_string())
    }

    /// As [`End::from_io`], from the error's kind and its text.
    pub fn from_kind(kind: std::io::ErrorKind, text: String) -> End {
        use std::io::ErrorKind as K;
        match kind {
            K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe => End::Reset(text),
            K::TimedOut => End::TimedOut(text),
            _ => End::Closed(text),
        }
    }

    /// The reason in one or two words, for the "peer down" line: `closed`, `reset`, `timed out`,
    /// `auth failed`, `protocol violation`, `replaced` or `shutdown`.
    pub fn reason(&self) -> &'static str {
        match self {
            End::Closed(_) => "closed",
            End::Reset(_) => "reset",
            End::TimedOut(_) => "timed out",
            End::AuthFailed(_) => "auth failed",
            End::Violation(_) => "protocol violation",
            End::Replaced => "replaced",
            End::Stopped => "shutdown",
        }
    }

    /// What more the link said about it, if anything.
    pub fn detail(&self) -> &str {
        match self {
            End::Closed(d) | End::Reset(d) | End::TimedOut(d) | End::AuthFailed(d) | End::Violation(d) => d,
            End::Replaced => "a newer connection from the peer took over",
            End::Stopped => "this node is stopping",
        }
    }
}

/// The engine's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// This node's index.
    pub me: usize,
    /// Nodes in the cluster.
    pub nodes: usize,
    /// Largest frame accepted, in bytes.
    pub max_frame: usize,
    /// Outgoing bytes queued per peer before further messages to it are dropped.
    pub max_queued_bytes: usize,
    /// First reconnection delay; doubles (with jitter) up to `reconnect_max`.
    pub reconnect_min: Duration,
    /// Largest reconnection delay.
    pub reconnect_max: Duration,
    /// Where the reconnection jitter comes from ([`Entropy::os`] unless simulated).
    pub entropy: Entropy,
}

/// Counters of a transport, shared with its tasks.
#[derive(Debug, Default)]
pub struct Stats {
    /// Messages dropped because a peer was down or its queue full.
    pub dropped: AtomicU64,
    /// Connections refused (failed authentication) or cut for a protocol violation.
    pub rejected: AtomicU64,
    /// Writes (each carries every frame queued since the previous one).
    pub writes: AtomicU64,
    /// Frames sent or queued.
    pub frames: AtomicU64,
}

/// Outgoing bytes of one peer, and whether the writer task is busy sending some.
#[derive(Default)]
struct Outgoing {
    buf: Vec<u8>,
    writing: bool,
    /// The live connection's direct writer ([`Writer::direct`]).
    sink: Option<Arc<dyn TryWrite>>,
}

/// An authenticated inbound connection, waiting for its peer's task.
struct Pending<C> {
    conn: C,
    addr: SocketAddr,
    /// Its name in the peer's [`Claim`].
    claim: u64,
}

/// One peer's shared state: its outgoing queue (the driver appends, the connection's writer sends) and the
/// hand-over of its newest inbound connection.
///
/// The driver writes straight to the connection when nothing is queued and the writer is idle; what does
/// not go at once is queued for the writer task, which owns sending until the queue is empty again. Both
/// decide under the same lock, so frames never overtake each other.
struct Peer<C> {
    out: Mutex<Outgoing>,
    ready: Notify,
    up: AtomicBool,
    newest: Newest<Pending<C>>,
}

/// Largest batch the driver writes to a connection itself; larger ones are left to the writer task.
const DIRECT_WRITE_MAX: usize = 256;

/// A [`Transport`] running a [`Link`]: the way to plug in a connection-based transport.
pub struct Engine<L: Link> {
    me: usize,
    max_queued_bytes: usize,
    link: Arc<L>,
    peers: Vec<Arc<Peer<L::Conn>>>,
    pending: Vec<Vec<u8>>,
    stats: Arc<Stats>,
    inbound: Inbound,
    stop: watch::Sender<bool>,
    drain: watch::Sender<bool>,
    /// The accept loop, then one task per peer.
    tasks: Vec<JoinHandle<()>>,
}

impl<L: Link> Engine<L> {
    /// Starts accepting and dialing over `link`; its tasks run inside `span`. Needs a tokio runtime.
    pub fn start(link: L, settings: Settings, span: tracing::Span) -> Self {
        let n = settings.nodes;
        let link = Arc::new(link);
        let inbound = Inbound::new(n, INBOUND_BATCHES);
        let (stop, stop_rx) = watch::channel(false);
        let (drain, drain_rx) = watch::channel(false);
        let stats = Arc::new(Stats::default());
        let peers: Vec<_> = (0..n)
            .map(|_| {
                Arc::new(Peer {
                    out: Mutex::new(Outgoing::default()),
                    ready: Notify::new(),
                    up: AtomicBool::new(false),
                    newest: Newest::default(),
                })
            })
            .collect();
        let claims: Arc<[Mutex<Claim>]> = (0..n).map(|_| Mutex::new(Claim::default())).collect();
        let accept = accept::accept_loop(
            link.clone(),
            peers.clone(),
            claims.clone(),
            stats.clone(),
            Arc::new(Reporter::default()),
            stop_rx.clone(),
        );
        let mut tasks = vec![tokio::spawn(tracing::Instrument::instrument(accept, span.clone()))];
        for peer in (0..n).filter(|&p| p != settings.me) {
            let task = peer::PeerTask {
                peer,
                settings: settings.clone(),
                link: link.clone(),
                state: peers[peer].clone(),
                claims: claims.clone(),
                stats: stats.clone(),
                events: inbound.sender(peer),
                stop: stop_rx.clone(),
                drain: drain_rx.clone(),
            };
            tasks.push(tokio::spawn(tracing::Instrument::instrument(task.run(), span.clone())));
        }
        Engine {
            me: settings.me,
            max_queued_bytes: settings.max_queued_bytes,
            link,
            peers,
            pending: vec![Vec::new(); n],
            stats,
            inbound,
            stop,
            drain,
            tasks,
        }
    }

    /// The link the engine runs.
    pub fn link(&self) -> &L {
        &self.link
    }

    /// The transport's counters.
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }
}

impl<L: Link> Transport for Engine<L> {
    fn stats(&self) -> Option<Arc<Stats>> {
        Some(self.stats.clone())
    }

    fn send(&mut self, to: usize, message: &dsync_core::Message) {
        if to == self.me || to >= self.peers.len() || !self.peers[to].up.load(Ordering::Relaxed) {
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
            let q = &self.peers[to];
            let mut wake = false;
            {
                let mut out = q.out.lock().expect("queue lock poisoned");
                let mut from = 0;
                // Small batches (light load) go out at once for latency; big ones (heavy load) go to the writer
                // task, which coalesces whatever accumulates meanwhile into fewer writes.
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
                    let dropped = queue_frames(&mut out.buf, rest, self.max_queued_bytes);
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

    fn recv(&mut self) -> impl Future<Output = Option<TransportEvent>> + Send {
        self.inbound.recv()
    }

    fn try_recv(&mut self) -> Option<TransportEvent> {
        self.inbound.try_recv()
    }

    async fn shutdown(&mut self) {
        // What the driver flushed last (a shutdown's releases) may still be queued: let every peer's task
        // write it out and finish its stream, briefly.
        let _ = self.drain.send(true);
        let mut tasks = std::mem::take(&mut self.tasks);
        let peers = async {
            for t in tasks.iter_mut().skip(1) {
                let _ = t.await;
            }
        };
        let _ = tokio::time::timeout(SHUTDOWN_DRAIN, peers).await;
        let _ = self.stop.send(true);
        for t in tasks {
            if !t.is_finished() {
                t.abort();
                let _ = t.await;
            }
        }
        self.link.shutdown().await;
    }
}

impl<L: Link> Drop for Engine<L> {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for t in &self.tasks {
            t.abort();
        }
        self.link.stop();
    }
}

#[cfg(test)]
mod memory;
