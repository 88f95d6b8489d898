//! One peer's task: (re)connects, runs the connection's read and write loops, reports up/down.

use super::claim::Claim;
use super::conn::Backoff;
use super::{decode_frames, End, Link, Outgoing, Peer, Reader, Redial, Settings, Stats, Writer};
use crate::transport::TransportEvent;
use dsync_core::Message;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info};

/// Where a [`Reader`] delivers what its peer sent.
#[derive(Clone, Debug)]
pub struct Deliver {
    peer: usize,
    max_frame: usize,
    events: mpsc::Sender<TransportEvent>,
}

/// A source of bytes: a byte stream, or one stream of a multi-stream connection.
pub trait ByteSource: Send {
    /// Appends what arrives next to `buf` (which has room reserved); `Ok(0)` once the stream has ended.
    fn read_into(&mut self, buf: &mut Vec<u8>) -> impl Future<Output = Result<usize, String>> + Send;
}

/// Every tokio byte stream is a source (TCP halves, in-memory pipes).
impl<T: tokio::io::AsyncRead + Unpin + Send> ByteSource for T {
    async fn read_into(&mut self, buf: &mut Vec<u8>) -> Result<usize, String> {
        tokio::io::AsyncReadExt::read_buf(self, buf).await.map_err(|e| e.to_string())
    }
}

impl Deliver {
    /// The peer's index.
    pub fn peer(&self) -> usize {
        self.peer
    }

    /// Hands decoded messages to the driver, waiting while the peer's channel is full; `Err` once the
    /// transport has stopped.
    pub async fn messages(&self, messages: Vec<Message>) -> Result<(), End> {
        if messages.is_empty() {
            return Ok(());
        }
        let event = TransportEvent::Messages { from: self.peer, messages };
        self.events.send(event).await.map_err(|_| End::Stopped)
    }

    /// Reads length-prefixed frames from `src` until it ends, delivering each batch decoded from one read.
    /// Memory: at most one partial frame plus one read. A stream that ends inside a frame, or an oversized
    /// or malformed frame, is a protocol violation.
    pub async fn frames(&self, mut src: impl ByteSource) -> End {
        const READ: usize = 64 * 1024;
        let mut buf: Vec<u8> = Vec::with_capacity(READ);
        loop {
            if buf.capacity() - buf.len() < READ {
                buf.reserve(READ);
            }
            match src.read_into(&mut buf).await {
                Ok(0) if buf.is_empty() => return End::Closed("peer closed the connection".into()),
                Ok(0) => return End::Violation(format!("stream ended inside a frame ({} bytes left)", buf.len())),
                Ok(_) => {}
                Err(e) => return End::Closed(e),
            }
            let mut messages = Vec::new();
            match decode_frames(&buf, self.max_frame, &mut messages) {
                Ok(used) => {
                    buf.drain(..used);
                }
                Err(e) => return End::Violation(e.to_string()),
            }
            if let Err(end) = self.messages(messages).await {
                return end;
            }
        }
    }
}

/// One peer's connection manager.
pub(super) struct PeerTask<L: Link> {
    pub(super) peer: usize,
    pub(super) settings: Settings,
    pub(super) link: Arc<L>,
    pub(super) state: Arc<Peer<L::Conn>>,
    pub(super) claims: Arc<[Mutex<Claim>]>,
    pub(super) stats: Arc<Stats>,
    pub(super) events: mpsc::Sender<TransportEvent>,
    pub(super) stop: watch::Receiver<bool>,
    pub(super) drain: watch::Receiver<bool>,
}

impl<L: Link> PeerTask<L> {
    pub(super) async fn run(mut self) {
        let s = &self.settings;
        let mut backoff = Backoff::new(s.reconnect_min, s.reconnect_max, &s.entropy);
        let dialing = s.me < self.peer;
        loop {
            let (conn, addr, claim) = if dialing {
                let dialed = tokio::select! {
                    biased;
                    d = self.link.dial(self.peer) => d,
                    _ = self.stop.changed() => return,
                    _ = self.drain.wait_for(|d| *d) => return,
                };
                match dialed {
                    Ok((conn, addr)) => (conn, addr, None),
                    Err(Redial { after, rejected }) => {
                        if rejected {
                            self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                        }
                        // `None`: dialing this peer again cannot help.
                        let Some(at_least) = after else { return };
                        tokio::select! {
                            biased;
                            _ = tokio::time::sleep(backoff.next_wait().max(at_least)) => {}
                            _ = self.stop.changed() => return,
                            _ = self.drain.wait_for(|d| *d) => return,
                        }
                        continue;
                    }
                }
            } else {
                tokio::select! {
                    biased;
                    _ = self.state.newest.arrived() => {}
                    _ = self.stop.changed() => return,
                    _ = self.drain.wait_for(|d| *d) => return,
                }
                match self.state.newest.take() {
                    Some(p) => (p.conn, p.addr, Some(p.claim)),
                    None => continue,
                }
            };
            backoff.reset();
            let end = self.serve(conn, addr, dialing).await;
            if let Some(claim) = claim {
                self.claims[self.peer].lock().unwrap_or_else(|e| e.into_inner()).ended(claim);
            }
            match end {
                End::Stopped => return,
                End::Violation(_) => {
                    self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            }
        }
    }

    async fn serve(&mut self, conn: L::Conn, addr: SocketAddr, dialed: bool) -> End {
        let (reader, mut writer) = match self.link.split(conn, dialed).await {
            Ok(halves) => halves,
            Err(e) => {
                // Never up: no "peer up" line, so no "peer down" either.
                debug!(peer = self.peer, %addr, error = %e, "connection failed before it was up");
                return End::Closed(e);
            }
        };
        *self.state.out.lock().expect("queue lock poisoned") =
            Outgoing { buf: Vec::new(), writing: false, sink: writer.direct() };
        self.state.up.store(true, Ordering::Release);
        // The one line of this connection's start (the driver logs the event at DEBUG only).
        info!(peer = self.peer, %addr, "peer up");
        if self.events.send(TransportEvent::PeerUp(self.peer)).await.is_err() {
            writer.close(&End::Stopped);
            peer_down(self.peer, addr, &End::Stopped);
            return End::Stopped;
        }
        let deliver = Deliver { peer: self.peer, max_frame: self.settings.max_frame, events: self.events.clone() };
        let end = tokio::select! {
            biased;
            e = reader.run(deliver) => e,
            e = write_loop(&mut writer, &self.state, &self.stats, self.drain.clone()) => e,
            _ = self.state.newest.arrived(), if !dialed => End::Replaced,
            _ = self.stop.changed() => End::Stopped,
        };
        self.state.up.store(false, Ordering::Release);
        *self.state.out.lock().expect("queue lock poisoned") = Outgoing::default();
        writer.close(&end);
        peer_down(self.peer, addr, &end);
        if !matches!(end, End::Stopped) && self.events.send(TransportEvent::PeerDown(self.peer)).await.is_err() {
            return End::Stopped;
        }
        if matches!(end, End::Replaced) {
            // The newer connection is waiting in `newest`; wake ourselves to take it.
            self.state.newest.rewake();
        }
        end
    }
}

/// The one line of a connection's end: the peer, its address, and why ([`End::reason`]).
fn peer_down(peer: usize, addr: SocketAddr, end: &End) {
    info!(peer, %addr, reason = end.reason(), detail = end.detail(), "peer down");
}

/// Sends what the driver could not write directly, coalescing everything queued meanwhile into one write.
/// At shutdown (`drain`) it writes what is left, finishes the stream and ends.
async fn write_loop<C>(
    writer: &mut impl Writer,
    state: &Peer<C>,
    stats: &Stats,
    mut drain: watch::Receiver<bool>,
) -> End {
    let mut spare = Vec::new();
    loop {
        let draining = tokio::select! {
            biased;
            _ = state.ready.notified() => false,
            _ = drain.wait_for(|d| *d) => true,
        };
        loop {
            {
                let mut out = state.out.lock().expect("queue lock poisoned");
                if out.buf.is_empty() {
                    out.writing = false;
                    break;
                }
                out.writing = true;
                std::mem::swap(&mut out.buf, &mut spare);
            }
            if let Err(e) = writer.write(&spare).await {
                return writer.failed(e);
            }
            stats.writes.fetch_add(1, Ordering::Relaxed);
            spare.clear();
        }
        if draining {
            writer.finish().await;
            return End::Stopped;
        }
    }
}
