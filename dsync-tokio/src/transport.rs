//! The seam between the driver (which owns the core, its timer and the application's handles) and the wire.
//!
//! The driver never waits on a peer: [`Transport::send`] queues without blocking (a transport that cannot
//! take a message drops it — the protocol tolerates loss, and a bounded queue is what keeps a stuck peer
//! from growing memory), and [`Transport::flush`] hands everything queued since the last flush to the
//! peers, so one wake-up (and usually one syscall) carries many messages.
//!
//! Nothing here must arrive in order: the protocol tolerates loss, duplication and reordering (PROTOCOL.md
//! §1). The TCP link happens to deliver one peer's messages in the order they were sent, even across a
//! reconnect; the QUIC link's stream-per-flush mode does not, nor need a transport of your own, and
//! dsync-sim's stack simulator checks the protocol against one that reorders (`dsync_sim::stack::reorder`).

use crate::engine::Stats;
use dsync_core::Message;
use std::future::Future;
use std::sync::Arc;

/// What the transport reports to the driver.
#[derive(Debug)]
pub enum TransportEvent {
    /// Messages from an authenticated peer, in the order received.
    Messages {
        /// The peer's node index (proven by the transport's authentication).
        from: usize,
        /// Decoded messages.
        messages: Vec<Message>,
    },
    /// An authenticated connection to `0` is up.
    PeerUp(usize),
    /// The connection to `0` is gone; the transport keeps trying to restore it.
    PeerDown(usize),
}

/// A way to exchange messages with the other nodes of the cluster.
pub trait Transport: Send + 'static {
    /// Queues `message` for node `to` without blocking; drops it if the peer is down or its queue is full.
    fn send(&mut self, to: usize, message: &Message);

    /// Pushes what was queued since the last flush towards the peers.
    fn flush(&mut self);

    /// The next event; `None` once the transport has stopped. Must be cancel-safe (it is raced in `select!`).
    fn recv(&mut self) -> impl Future<Output = Option<TransportEvent>> + Send;

    /// An event that is already waiting, without blocking; lets the driver batch everything that is ready
    /// before flushing. The default never has one.
    fn try_recv(&mut self) -> Option<TransportEvent> {
        None
    }

    /// Closes every connection and stops the transport's tasks.
    fn shutdown(&mut self) -> impl Future<Output = ()> + Send;

    /// The transport's live counters, if it keeps the connection engine's ([`crate::Node::transport_stats`]
    /// reads them without a round trip to the driver). The default has none.
    fn stats(&self) -> Option<Arc<Stats>> {
        None
    }
}
