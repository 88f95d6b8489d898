//! A host's socket table: every turmoil stream (and stream half) the host opened, in creation order, so
//! that a crash closes them in a *fixed* order.
//!
//! Why: `Sim::crash` drops the host's tokio runtime, which drops its tasks shard by shard — and tokio puts a
//! task in a shard by its id, drawn from a process-wide counter. So the order in which a crashed host's
//! sockets are dropped (each sending a FIN or RST, each drawing a latency from turmoil's random generator)
//! would depend on how many tasks earlier runs in the same process spawned. Instead, the first socket
//! dropped while its host crashes closes *all* of them, oldest first; the others then find theirs gone.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use turmoil::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use turmoil::net::TcpStream;

/// A turmoil socket: a whole stream (during the handshake) or one half of an authenticated one.
pub(crate) enum Sock {
    Stream(TcpStream),
    Read(OwnedReadHalf),
    Write(OwnedWriteHalf),
}

/// Where a socket lives; `None` once closed.
pub(crate) type Slot = Mutex<Option<Sock>>;

#[derive(Default)]
struct Table {
    crashing: bool,
    socks: Vec<Weak<Slot>>,
}

/// One host's sockets (cheap to clone; the harness keeps one per host).
#[derive(Clone, Default)]
pub struct SocketTable(Arc<Mutex<Table>>);

impl SocketTable {
    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a socket.
    pub(crate) fn add(&self, s: Sock) -> Arc<Slot> {
        let slot = Arc::new(Mutex::new(Some(s)));
        let mut t = self.table();
        t.socks.retain(|w| w.strong_count() > 0);
        t.socks.push(Arc::downgrade(&slot));
        slot
    }

    /// Marks the host as crashing (`true` right before `Sim::crash`, `false` right after).
    pub fn crashing(&self, on: bool) {
        self.table().crashing = on;
    }

    /// A socket's owner is dropped: closes it — or, while the host crashes, every socket, oldest first.
    pub(crate) fn dropped(&self, slot: &Slot) {
        let all: Vec<Arc<Slot>> = {
            let t = self.table();
            if t.crashing {
                t.socks.iter().filter_map(Weak::upgrade).collect()
            } else {
                Vec::new()
            }
        };
        for s in all {
            drop(take(&s));
        }
        drop(take(slot));
    }
}

/// Takes the socket out of its slot.
pub(crate) fn take(slot: &Slot) -> Option<Sock> {
    slot.lock().unwrap_or_else(|e| e.into_inner()).take()
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, "socket closed (host crashed)")
}

/// Runs `f` on the socket in `slot`, or fails as a closed connection.
pub(crate) fn with<T>(slot: &Slot, f: impl FnOnce(&mut Sock) -> Poll<io::Result<T>>) -> Poll<io::Result<T>> {
    match slot.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        Some(s) => f(s),
        None => Poll::Ready(Err(closed())),
    }
}

/// A turmoil stream in a host's socket table: what the TCP link's handshake runs on.
pub struct SimStream {
    pub(crate) slot: Arc<Slot>,
    pub(crate) table: SocketTable,
}

impl Drop for SimStream {
    fn drop(&mut self) {
        self.table.dropped(&self.slot);
    }
}

impl AsyncRead for SimStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        with(&self.slot, |s| match s {
            Sock::Stream(t) => Pin::new(t).poll_read(cx, buf),
            Sock::Read(r) => Pin::new(r).poll_read(cx, buf),
            Sock::Write(_) => Poll::Ready(Err(io::Error::other("read on a write half"))),
        })
    }
}

impl AsyncWrite for SimStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        with(&self.slot, |s| match s {
            Sock::Stream(t) => Pin::new(t).poll_write(cx, buf),
            Sock::Write(w) => Pin::new(w).poll_write(cx, buf),
            Sock::Read(_) => Poll::Ready(Err(io::Error::other("write on a read half"))),
        })
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        with(&self.slot, |s| match s {
            Sock::Stream(t) => Pin::new(t).poll_flush(cx),
            Sock::Write(w) => Pin::new(w).poll_flush(cx),
            Sock::Read(_) => Poll::Ready(Ok(())),
        })
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        with(&self.slot, |s| match s {
            Sock::Stream(t) => Pin::new(t).poll_shutdown(cx),
            Sock::Write(w) => Pin::new(w).poll_shutdown(cx),
            Sock::Read(_) => Poll::Ready(Ok(())),
        })
    }
}
