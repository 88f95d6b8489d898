//! `dsync-quic`: a QUIC transport (quinn, rustls with the `ring` provider) for `dsync-tokio`, with mutual
//! TLS where every node proves its index with a certificate from the cluster CA.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use dsync_quic::{NodeIdentity, QuicNodeBuilder};
//! use dsync_tokio::NodeBuilder;
//! let peers = vec!["10.0.0.1:7070".parse()?, "10.0.0.2:7070".parse()?, "10.0.0.3:7070".parse()?];
//! // node-1.orders as a DNS subject alternative name, signed by the cluster CA.
//! let id = NodeIdentity::from_pem_files("/etc/dsync/ca.pem", "/etc/dsync/node-1.pem", "/etc/dsync/node-1.key")?;
//! let node = NodeBuilder::new(peers, 1).cluster_name("orders").state_dir("/var/lib/dsync").start_quic(id, None)?;
//! let guard = node.mutex(["orders"]).lock().await?;
//! # drop(guard); Ok(()) }
//! ```
//!
//! # Identity
//! Node `i` of cluster `c` holds a certificate naming `node-<i>.<c>` (DNS subject alternative name), signed
//! by the cluster CA. Both sides verify the chain, validity period and key usage (rustls/webpki). The dialer
//! asks for the name of the index it dials, so a server with any other certificate fails the handshake; the
//! acceptor reads which index the client's certificate names and refuses it unless it names exactly one
//! node that may dial it (as over TCP, node `i` dials every `j > i`). A refused peer costs one log line
//! (`peer refused: ...`, with the reason) and nothing it sent reaches the core: streams are only read
//! after the certificate check. For development, [`dev::DevCa`] makes a throwaway CA (**not for
//! production**); real certificates are loaded with [`NodeIdentity::from_pem_files`], which returns a
//! typed [`PemError`] for unreadable or malformed PEM.
//!
//! # Behaviour (as the TCP transport)
//! Both run on `dsync_tokio::engine`, which owns queues, reconnection, hand-over, framing, stats and the
//! shutdown drain (queued frames are written out and acknowledged for up to 1 s); this crate adds the link.
//! - Reconnection with doubling, jittered backoff (20 ms – 1 s by default); `PeerUp`/`PeerDown` events;
//!   the newest connection from a peer replaces the older one, so a restarted node rejoins at once.
//! - A peer that vanishes without closing is detected by the idle timeout (5 s, keep-alives at a third of
//!   it). A node that restarts with the same key (after a crash, with no chance to close) resets its
//!   peers' stale connections at their next packet: its stateless-reset and connection-id keys are derived
//!   from the node's private key, so it recognises the old connections' ids and proves the reset.
//! - Bounded memory per peer: outgoing frames wait in one buffer of at most
//!   [`QuicConfig::max_queued_bytes`] (beyond it messages are dropped and counted — the protocol tolerates
//!   loss), quinn's send window is capped at the same size, the receive windows at a few frames, and
//!   decoded batches wait in a bounded channel, so a slow driver pushes back on the peer through QUIC flow
//!   control instead of growing.
//! - Frames are the TCP transport's (`u32` length, postcard envelope), bounded by
//!   [`QuicConfig::max_frame`] (the core's `Limits::max_message_size` when started with
//!   [`QuicNodeBuilder::start_quic`]). An oversized or malformed frame, or a stream ending inside a frame,
//!   closes the connection. Peers may open no bidirectional streams and send no datagrams.
//!
//! # Stream design, by measurement
//! Frames go on **one long-lived unidirectional stream per direction** ([`StreamMode::Single`]); the other
//! designs were measured or ruled out with short runs of dsync-tools' bench example (`--transport quic`,
//! thread-per-node, 5 loops per node, 4 s, loopback, on a busy 2-core machine, so only the ratios mean
//! anything; two alternating rounds):
//!
//! | design | n = 4 locks/s | n = 8 locks/s | n = 4 p99 | n = 8 p99 | hot lock, hand-off p50 |
//! |---|---|---|---|---|---|
//! | one stream per direction | 45.7k, 30.0k | 17.7k, 15.0k | 4.0–5.4 ms | 17–18 ms | 214 µs |
//! | a new stream per flushed batch | 31.2k, 31.5k | 14.4k, 9.2k | 5.3–5.5 ms | 22–23 ms | 222 µs |
//!
//! - *Stream per batch* (the closest to "a stream per request": the driver flushes once per wake-up, so a
//!   batch is every message to that peer from one wake-up) was never faster and up to ~40 % slower at n = 8:
//!   each stream costs a STREAM frame with an offset, open/finish bookkeeping on both sides, a reader task
//!   on the receiver and MAX_STREAMS credit updates. Its gain — no head-of-line blocking between batches
//!   when a packet is lost — does not show on loopback, and is small for dsync: messages are tiny, the
//!   protocol already tolerates loss and reordering, and one lost packet delays a batch by about one RTT
//!   either way. It also costs memory: a receiver must hold a partial frame per open stream (up to
//!   32 × `max_frame`) instead of one. It stays available as [`StreamMode::PerFlush`] for lossy links.
//! - *Datagrams* (e.g. for refreshes) were not built: a QUIC datagram must fit one packet (about 1,200 bytes
//!   on the Internet), but dsync messages are not bounded by that (multi-resource locks, holder replies), so
//!   a second, reliable path would be needed anyway; unreliable refreshes would turn congestion loss into
//!   lease expiries; and datagrams are not flow-controlled, so the receiver's memory bound would rest on a
//!   separate drop policy. Peers are not allowed to send any.
//!
//! Against TCP in the same conditions (same command, n = 4, 5 s): TCP 36.8k locks/s, p50 195 µs; QUIC 26.4k
//! locks/s, p50 294 µs — QUIC pays for encryption, user-space ACK processing and one more task hop per
//! batch (quinn's endpoint driver), in exchange for confidentiality and certificate identity. Since then
//! the transport negotiates QUIC's ACK-frequency extension (ACKs ride on replies instead of going out
//! alone: ~20 % fewer packets per lock, fewer than TCP's), which took QUIC from 0.65x / 0.63x / 0.51x of
//! TCP's locks/s at n = 4 / 8 / 16 to 0.88x / 0.84x / 0.67x (BENCHMARKS.md, "QUIC vs TCP"); what is left
//! is quinn's user-space per-packet work and task hops, not crypto.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod config;
pub mod dev;
mod identity;
pub mod tls;
mod transport;

pub use config::{QuicConfig, StreamMode};
pub use identity::{node_name, NodeIdentity, PemError};
pub use transport::{preamble, QuicStats, QuicTransport};

use dsync_tokio::{Node, NodeBuilder, StartError};
use std::fmt;

/// Why the QUIC transport could not start.
#[derive(Debug)]
pub enum QuicError {
    /// Binding the UDP socket failed.
    Io(std::io::Error),
    /// rustls refused the certificate, key or CA.
    Tls(rustls::Error),
    /// This node's certificate does not name this node's index.
    Identity(String),
    /// The configuration is inconsistent (index out of range, cluster name not a DNS name, ...).
    Config(String),
    /// The node itself did not start.
    Start(StartError),
}

impl fmt::Display for QuicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QuicError::Io(e) => write!(f, "I/O: {e}"),
            QuicError::Tls(e) => write!(f, "TLS: {e}"),
            QuicError::Identity(e) => write!(f, "identity: {e}"),
            QuicError::Config(e) => write!(f, "configuration: {e}"),
            QuicError::Start(e) => write!(f, "start: {e}"),
        }
    }
}

impl std::error::Error for QuicError {}

/// Starting a [`NodeBuilder`]'s node over QUIC.
pub trait QuicNodeBuilder {
    /// Starts the node over QUIC with `identity`; binds its peer address unless `socket` is given (for
    /// example one bound on port 0). Peers, index, cluster name, frame limit and queue bound come from
    /// the builder. Needs a tokio runtime.
    fn start_quic(self, identity: NodeIdentity, socket: Option<std::net::UdpSocket>) -> Result<Node, QuicError>;
}

impl QuicNodeBuilder for NodeBuilder {
    fn start_quic(self, identity: NodeIdentity, socket: Option<std::net::UdpSocket>) -> Result<Node, QuicError> {
        let core = self.core_config();
        let mut cfg = QuicConfig::new(self.peer_addrs().to_vec(), core.id, self.name(), identity);
        cfg.max_frame = core.limits.max_message_size;
        if let Some(b) = self.queued_bytes() {
            cfg.max_queued_bytes = b;
        }
        if cfg.me >= cfg.peers.len() {
            return Err(QuicError::Config(format!("node index {} but only {} peers", cfg.me, cfg.peers.len())));
        }
        let transport = match socket {
            Some(s) => QuicTransport::with_socket(cfg, s)?,
            None => QuicTransport::bind(cfg)?,
        };
        let addr = transport.local_addr();
        self.start_with(transport, Some(addr)).map_err(QuicError::Start)
    }
}
