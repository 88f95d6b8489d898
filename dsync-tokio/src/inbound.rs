//! What a transport's connections hand to the driver, one bounded channel per peer, taken in turn.
//!
//! Why per peer: with one shared first-in-first-out queue, a peer flooding requests fills it and every other
//! peer's messages wait behind the whole backlog (measured: a node's own lock took 6 s under an unpaced flood
//! in a debug build). With a channel per peer served round-robin, a flood delays the others by at most one of
//! its batches per turn, and a full channel stops only that peer's reads, so the transport's flow control
//! pushes back on the flooder alone. Memory stays bounded by `peers × per_peer` batches.

use crate::transport::TransportEvent;
use std::future::Future;
use std::task::Poll;
use tokio::sync::mpsc;

/// Per-peer inbound channels for a [`crate::Transport`], served in turn. Transports hand each connection
/// task [`Inbound::sender`] for its peer and implement `recv`/`try_recv` with [`Inbound::recv`] /
/// [`Inbound::try_recv`].
#[derive(Debug)]
pub struct Inbound {
    rx: Vec<mpsc::Receiver<TransportEvent>>,
    /// Kept so no channel ever ends while the transport lives (a 1-node cluster has no connections at all).
    tx: Vec<mpsc::Sender<TransportEvent>>,
    /// The peer looked at first next time.
    next: usize,
}

impl Inbound {
    /// Channels for `nodes` peers, each holding at most `per_peer` events (at least 1).
    pub fn new(nodes: usize, per_peer: usize) -> Self {
        let (tx, rx) = (0..nodes).map(|_| mpsc::channel(per_peer.max(1))).unzip();
        Inbound { rx, tx, next: 0 }
    }

    /// Where the connection to `peer` delivers its events. Sending waits while that peer's channel is full.
    ///
    /// # Panics
    /// If `peer` is not below the `nodes` given to [`Inbound::new`] (a transport's own indexing error).
    pub fn sender(&self, peer: usize) -> mpsc::Sender<TransportEvent> {
        self.tx[peer].clone()
    }

    /// The next event, taking peers in turn. Cancel-safe; never ends while `self` lives.
    pub fn recv(&mut self) -> impl Future<Output = Option<TransportEvent>> + Send + '_ {
        std::future::poll_fn(move |cx| {
            let n = self.rx.len();
            for i in 0..n {
                let p = (self.next + i) % n;
                // `poll_recv` takes an event only when it returns it, which is what makes this cancel-safe.
                if let Poll::Ready(Some(e)) = self.rx[p].poll_recv(cx) {
                    self.next = (p + 1) % n;
                    return Poll::Ready(Some(e));
                }
            }
            Poll::Pending
        })
    }

    /// An event that is already waiting, taking peers in turn.
    pub fn try_recv(&mut self) -> Option<TransportEvent> {
        let n = self.rx.len();
        for i in 0..n {
            let p = (self.next + i) % n;
            if let Ok(e) = self.rx[p].try_recv() {
                self.next = (p + 1) % n;
                return Some(e);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_busy_peer_cannot_starve_another() {
        let mut inbound = Inbound::new(3, 8);
        let (busy, quiet) = (inbound.sender(1), inbound.sender(2));
        for _ in 0..8 {
            busy.send(TransportEvent::PeerUp(1)).await.unwrap();
        }
        quiet.send(TransportEvent::PeerUp(2)).await.unwrap();
        // The quiet peer's event comes within the first two, not after the busy peer's backlog.
        let first_two: Vec<_> = [inbound.try_recv(), inbound.recv().await]
            .into_iter()
            .map(|e| match e {
                Some(TransportEvent::PeerUp(p)) => p,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert!(first_two.contains(&2), "{first_two:?}");
        assert!(busy.try_send(TransportEvent::PeerUp(1)).is_ok(), "taking one frees one place");
        assert!(busy.try_send(TransportEvent::PeerUp(1)).is_err(), "the busy peer's channel is bounded");
    }
}
