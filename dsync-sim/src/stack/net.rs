//! [`SimNet`]: dsync-tokio's TCP link over turmoil's simulated TCP, with connections the harness can reset.
//!
//! Everything above the socket is production code: the connection engine dials, accepts, runs the HMAC
//! handshake, frames and queues exactly as over `tokio::net`. What this file adds is the one thing turmoil's
//! TCP lacks: a *timeout*. Turmoil drops the segments of a one-way partition and never retransmits them, so a
//! connection that lost a segment stalls forever, where a real kernel would retransmit and, failing that,
//! reset the connection after its user timeout. The harness models that timeout by *poisoning* every
//! connection between two hosts when such a partition is repaired ([`Resets::reset_between`]): both halves
//! then fail with "connection reset", the engine reconnects, and the protocol carries on.

use super::sockets::{self, SimStream, Sock, SocketTable};
use dsync_tokio::engine::{ByteSource, Deliver, End, Reader, Writer};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;
use turmoil::net::{TcpListener, TcpStream};

/// A connection's poison switch. Not a `tokio::sync::watch`: a watch wakes its waiters in an order drawn
/// from tokio's per-runtime random generator (seeded from the OS), which would make runs differ. A
/// `Notify` wakes them in a fixed order.
#[derive(Default)]
pub(crate) struct Poison {
    set: AtomicBool,
    wake: Notify,
}

impl Poison {
    fn is_set(&self) -> bool {
        self.set.load(Ordering::SeqCst)
    }

    fn set(&self) {
        self.set.store(true, Ordering::SeqCst);
        self.wake.notify_waiters();
    }

    async fn wait(&self) {
        loop {
            let woken = self.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if self.is_set() {
                return;
            }
            woken.await;
        }
    }
}

/// A live connection: its local and remote host, and its poison switch.
type Conn = (IpAddr, IpAddr, Arc<Poison>);

/// The live connections of a run, by the pair of hosts they join, so the harness can reset them.
#[derive(Clone, Default)]
pub struct Resets {
    conns: Arc<Mutex<Vec<Conn>>>,
}

impl Resets {
    /// A poison switch for a connection from `local` to `remote`; forgets connections that have ended.
    fn register(&self, local: IpAddr, remote: IpAddr) -> Arc<Poison> {
        let p = Arc::new(Poison::default());
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        // Both halves hold the switch while the connection lives.
        conns.retain(|(_, _, p)| Arc::strong_count(p) > 1);
        conns.push((local, remote, p.clone()));
        p
    }

    /// Resets every connection between hosts `a` and `b` (either side, either direction); returns how many
    /// connection ends were reset.
    pub fn reset_between(&self, a: IpAddr, b: IpAddr) -> usize {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        conns.retain(|(_, _, p)| Arc::strong_count(p) > 1);
        let mut k = 0;
        for (l, r, p) in conns.iter() {
            if (*l == a && *r == b) || (*l == b && *r == a) {
                p.set();
                k += 1;
            }
        }
        k
    }
}

/// dsync-tokio's [`Net`](dsync_tokio::tcp::Net) over `turmoil::net`: the TCP link's sockets in the
/// simulator, registered in the host's [`SocketTable`] (closed in a fixed order when the host crashes) and
/// in the run's [`Resets`].
#[derive(Clone, Default)]
pub struct SimNet {
    resets: Resets,
    table: SocketTable,
}

impl SimNet {
    /// A host's network: its connections registered in `resets` and its sockets in `table`.
    pub fn new(resets: Resets, table: SocketTable) -> Self {
        SimNet { resets, table }
    }

    fn wrap(&self, s: Sock) -> SimStream {
        SimStream { slot: self.table.add(s), table: self.table.clone() }
    }
}

impl dsync_tokio::tcp::Net for SimNet {
    type Listener = TcpListener;
    type Stream = SimStream;
    type Reader = SimReader;
    type Writer = SimWriter;

    async fn accept(&self, l: &TcpListener) -> io::Result<(SimStream, SocketAddr)> {
        let (s, addr) = l.accept().await?;
        Ok((self.wrap(Sock::Stream(s)), addr))
    }

    async fn connect(&self, addr: SocketAddr) -> io::Result<SimStream> {
        Ok(self.wrap(Sock::Stream(TcpStream::connect(addr).await?)))
    }

    fn split(&self, s: SimStream) -> (SimReader, SimWriter) {
        let Some(Sock::Stream(t)) = sockets::take(&s.slot) else {
            // Closed under us (the host is crashing): halves that fail at once.
            let poison = Arc::new(Poison::default());
            poison.set.store(true, Ordering::SeqCst);
            let dead = || SimStream { slot: Arc::new(std::sync::Mutex::new(None)), table: self.table.clone() };
            return (SimReader { half: dead(), poison: poison.clone() }, SimWriter { half: dead(), poison });
        };
        let poison = match (t.local_addr(), t.peer_addr()) {
            (Ok(l), Ok(r)) => self.resets.register(l.ip(), r.ip()),
            // Unknown ends: a connection nobody can reset (never happens with turmoil streams).
            _ => Arc::new(Poison::default()),
        };
        let (r, w) = t.into_split();
        (
            SimReader { half: self.wrap(Sock::Read(r)), poison: poison.clone() },
            SimWriter { half: self.wrap(Sock::Write(w)), poison },
        )
    }
}

/// The receiving half of a simulated connection. It is deliberately *not* `AsyncRead`: it is its own
/// [`ByteSource`], which fails with "connection reset" once the harness poisons the connection.
pub struct SimReader {
    half: SimStream,
    poison: Arc<Poison>,
}

/// The sending half of a simulated connection: `write_all` + `flush`, failing once poisoned.
pub struct SimWriter {
    half: SimStream,
    poison: Arc<Poison>,
}

const RESET: &str = "connection reset (simulated TCP user timeout)";

impl ByteSource for SimReader {
    async fn read_into(&mut self, buf: &mut Vec<u8>) -> Result<usize, String> {
        if self.poison.is_set() {
            return Err(RESET.into());
        }
        let SimReader { half, poison } = self;
        tokio::select! {
            biased;
            _ = poison.wait() => Err(RESET.into()),
            r = tokio::io::AsyncReadExt::read_buf(half, buf) => r.map_err(|e| e.to_string()),
        }
    }
}

impl Reader for SimReader {
    async fn run(self, deliver: Deliver) -> End {
        deliver.frames(self).await
    }
}

impl Writer for SimWriter {
    async fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        if self.poison.is_set() {
            return Err(RESET.into());
        }
        let SimWriter { half, poison } = self;
        tokio::select! {
            biased;
            _ = poison.wait() => Err(RESET.into()),
            r = async { half.write_all(bytes).await?; half.flush().await } => r.map_err(|e| e.to_string()),
        }
    }
}
