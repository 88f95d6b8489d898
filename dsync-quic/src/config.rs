//! The transport's settings, and how they become quinn's transport and endpoint configurations.

use crate::identity::NodeIdentity;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// How frames are laid onto QUIC streams (see the crate docs for the measurements behind the default).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamMode {
    /// One long-lived unidirectional stream per direction, frames back to back (the default).
    Single,
    /// A new unidirectional stream for every flushed batch (no head-of-line blocking between batches).
    PerFlush,
}

/// Settings of the QUIC transport.
#[derive(Clone, Debug)]
pub struct QuicConfig {
    /// Every node's UDP address, by index; this node's entry is where it listens.
    pub peers: Vec<SocketAddr>,
    /// This node's index; its certificate must name it.
    pub me: usize,
    /// The cluster name: node `i`'s certificate names `node-<i>.<cluster>`.
    pub cluster: String,
    /// This node's certificate, key and the cluster CA.
    pub identity: NodeIdentity,
    /// Largest frame accepted or sent, in bytes; set it to the core's `Limits::max_message_size`.
    pub max_frame: usize,
    /// Outgoing bytes queued per peer before further messages to it are dropped.
    pub max_queued_bytes: usize,
    /// First reconnection delay; doubles (with jitter) up to `reconnect_max`.
    pub reconnect_min: Duration,
    /// Largest reconnection delay.
    pub reconnect_max: Duration,
    /// How long a connection (QUIC and TLS handshake) may take.
    pub handshake_timeout: Duration,
    /// A connection that hears nothing for this long is down (keep-alives are sent at a third of it).
    pub idle_timeout: Duration,
    /// How frames map onto streams.
    pub streams: StreamMode,
}

impl QuicConfig {
    /// Defaults for node `me` of `peers`: frames up to the core's default message size, 4 MiB queues,
    /// reconnect 20 ms – 250 ms, handshake 5 s, idle timeout 5 s, one stream per direction.
    pub fn new(peers: Vec<SocketAddr>, me: usize, cluster: impl Into<String>, identity: NodeIdentity) -> Self {
        QuicConfig {
            peers,
            me,
            cluster: cluster.into(),
            identity,
            max_frame: dsync_core::Limits::default().max_message_size,
            max_queued_bytes: 4 << 20,
            reconnect_min: Duration::from_millis(20),
            reconnect_max: Duration::from_millis(250),
            handshake_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(5),
            streams: StreamMode::Single,
        }
    }
}

/// Streams one peer may have open towards us at once in [`StreamMode::PerFlush`].
const PER_FLUSH_STREAMS: u32 = 32;

/// Streams, windows and timeouts: what a peer may open and have in flight towards us is bounded.
pub(crate) fn transport_config(cfg: &QuicConfig) -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    let idle = quinn::IdleTimeout::try_from(cfg.idle_timeout)
        .unwrap_or(quinn::IdleTimeout::from(quinn::VarInt::from_u32(5000)));
    t.max_idle_timeout(Some(idle));
    t.keep_alive_interval(Some(cfg.idle_timeout / 3));
    // Peers only ever open unidirectional streams; no datagrams are accepted.
    t.max_concurrent_bidi_streams(0u32.into());
    let uni = match cfg.streams {
        StreamMode::Single => 1u32,
        StreamMode::PerFlush => PER_FLUSH_STREAMS,
    };
    t.max_concurrent_uni_streams(uni.into());
    t.datagram_receive_buffer_size(None);
    // What a peer may have in flight towards us, unread: a few frames' worth, not unbounded.
    let window = (cfg.max_frame as u64).clamp(256 << 10, 8 << 20);
    t.stream_receive_window(quinn::VarInt::from_u64(window).unwrap_or(quinn::VarInt::MAX));
    t.receive_window(quinn::VarInt::from_u64(window * 2).unwrap_or(quinn::VarInt::MAX));
    t.send_window(cfg.max_queued_bytes as u64);
    t.ack_frequency_config(Some(ack_frequency()));
    t
}

/// Ack-eliciting packets a peer may receive from us before it must acknowledge at once.
const ACK_ELICITING_THRESHOLD: u32 = 8;

/// Fewer standalone ACK packets (the QUIC ACK-frequency extension; both sides are quinn). Without it a
/// receiver acknowledges every second packet at once, so with dsync's request/reply traffic about one
/// packet in five was an ACK alone, sent just before the reply that could have carried it: each costs a
/// `sendmsg`, a `recvmmsg`, header protection, AEAD and a connection-task wake-up on both sides, and on
/// loopback the per-packet cost is what QUIC loses to TCP by. With a threshold of 8 the ACK rides on the
/// reply (or goes out after the peer's `max_ack_delay`, 25 ms by default, bounded by the RTT).
/// Measured (bench, loopback, UDP+TCP packets per lock from /proc/net/snmp): n = 8: 3.6 -> 2.9,
/// n = 16: 7.8 -> 6.3 (TCP: 3.8 and 8.0). Eight ~250-byte packets stay well inside the initial
/// congestion window (12,000 bytes), so a sender is not left waiting for a delayed ACK in normal operation.
fn ack_frequency() -> quinn::AckFrequencyConfig {
    let mut a = quinn::AckFrequencyConfig::default();
    a.ack_eliciting_threshold(ACK_ELICITING_THRESHOLD.into());
    a
}

/// The endpoint's stateless-reset key and connection-id key are derived from the node's private key, so a
/// node that restarted (same key, new process) recognises the connection ids it issued before and answers
/// packets on its peers' stale connections with a stateless reset: they drop the connection at once instead
/// of waiting for the idle timeout.
pub(crate) fn endpoint_config(id: &NodeIdentity) -> quinn::EndpointConfig {
    let derive = |label: &[u8]| {
        let key = id.key();
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(label);
        ctx.update(key.secret_der());
        ctx.finish()
    };
    let reset = derive(b"dsync-quic stateless reset v1");
    let cid = derive(b"dsync-quic connection ids v1");
    let cid_key = u64::from_le_bytes(cid.as_ref()[..8].try_into().expect("a SHA-256 digest has 8 bytes"));
    let mut cfg = quinn::EndpointConfig::new(Arc::new(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, reset.as_ref())));
    cfg.cid_generator(move || Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key)));
    cfg
}
