//! The engine over an in-memory network (no OS sockets): what a simulated network plugs in.

use super::*;
use dsync_core::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};
use tokio::sync::mpsc;

type Inboxes = Arc<Mutex<Vec<Option<mpsc::UnboundedSender<(DuplexStream, SocketAddr)>>>>>;

/// A node of the in-memory network: a connection is a duplex pipe whose first 9 bytes name the dialer's
/// index and instance.
struct MemLink {
    me: usize,
    instance: u64,
    net: Inboxes,
    inbox: tokio::sync::Mutex<mpsc::UnboundedReceiver<(DuplexStream, SocketAddr)>>,
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7000 + i as u16))
}

struct MemReader(ReadHalf<DuplexStream>);
struct MemWriter(WriteHalf<DuplexStream>);

impl Reader for MemReader {
    async fn run(self, deliver: Deliver) -> End {
        deliver.frames(self.0).await
    }
}

impl Writer for MemWriter {
    async fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.0.write_all(bytes).await.map_err(|e| e.to_string())
    }
}

impl Link for MemLink {
    type Incoming = DuplexStream;
    type Conn = DuplexStream;
    type Reader = MemReader;
    type Writer = MemWriter;

    async fn accept(&self) -> Option<(DuplexStream, SocketAddr)> {
        self.inbox.lock().await.recv().await
    }

    async fn authenticate(&self, mut s: DuplexStream, _: SocketAddr, admit: &mut Admit<'_>) -> Option<DuplexStream> {
        let mut hello = [0u8; 9];
        s.read_exact(&mut hello).await.ok()?;
        let instance = u64::from_le_bytes(hello[1..].try_into().expect("8 bytes"));
        admit.claim(usize::from(hello[0]), instance).ok()?;
        Some(s)
    }

    async fn dial(&self, peer: usize) -> Result<(DuplexStream, SocketAddr), Redial> {
        let (mut ours, theirs) = tokio::io::duplex(64 << 10);
        let mut hello = vec![self.me as u8];
        hello.extend_from_slice(&self.instance.to_le_bytes());
        ours.write_all(&hello).await.map_err(|_| Redial::RETRY)?;
        let inbox = self.net.lock().unwrap()[peer].clone().ok_or(Redial::RETRY)?;
        inbox.send((theirs, addr(self.me))).map_err(|_| Redial::RETRY)?;
        Ok((ours, addr(peer)))
    }

    async fn split(&self, s: DuplexStream, _: bool) -> Result<(MemReader, MemWriter), String> {
        let (r, w) = tokio::io::split(s);
        Ok((MemReader(r), MemWriter(w)))
    }
}

fn node(net: &Inboxes, me: usize, nodes: usize, instance: u64) -> Engine<MemLink> {
    let (tx, rx) = mpsc::unbounded_channel();
    net.lock().unwrap()[me] = Some(tx);
    let link = MemLink { me, instance, net: net.clone(), inbox: tokio::sync::Mutex::new(rx) };
    let settings = Settings {
        me,
        nodes,
        max_frame: 1 << 16,
        max_queued_bytes: 1 << 20,
        reconnect_min: Duration::from_millis(5),
        reconnect_max: Duration::from_millis(50),
        entropy: crate::Entropy::os(),
    };
    Engine::start(link, settings, tracing::Span::none())
}

/// The next message `t` delivers, skipping peer events.
async fn next_message(t: &mut Engine<MemLink>) -> (usize, Message) {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), t.recv()).await.expect("in time").expect("running") {
            TransportEvent::Messages { from, mut messages } => return (from, messages.remove(0)),
            TransportEvent::PeerUp(_) | TransportEvent::PeerDown(_) => {}
        }
    }
}

async fn up(t: &mut Engine<MemLink>, peer: usize) {
    loop {
        let e = tokio::time::timeout(Duration::from_secs(5), t.recv()).await.expect("in time").expect("running");
        if matches!(e, TransportEvent::PeerUp(p) if p == peer) {
            return;
        }
    }
}

#[tokio::test]
async fn three_nodes_exchange_frames_and_a_shutdown_drains_what_is_queued() {
    let net: Inboxes = Arc::new(Mutex::new(vec![None, None, None]));
    let mut nodes: Vec<_> = (0..3).map(|i| node(&net, i, 3, 100 + i as u64)).collect();
    up(&mut nodes[0], 2).await;
    up(&mut nodes[2], 0).await;
    nodes[2].send(0, &Message::Wake { ticket: 7 });
    nodes[2].flush();
    assert_eq!(next_message(&mut nodes[0]).await, (2, Message::Wake { ticket: 7 }));
    // Queued just before a shutdown: still delivered.
    nodes[0].send(2, &Message::Wake { ticket: 8 });
    nodes[0].flush();
    nodes[0].shutdown().await;
    assert_eq!(next_message(&mut nodes[2]).await, (0, Message::Wake { ticket: 8 }));
    assert!(nodes[0].stats().writes.load(Ordering::Relaxed) >= 1);
}

#[tokio::test]
async fn a_restart_replaces_a_live_connection_and_the_displaced_instance_is_held_off() {
    let net: Inboxes = Arc::new(Mutex::new(vec![None, None]));
    let _old = node(&net, 0, 2, 1);
    let mut acceptor = node(&net, 1, 2, 2);
    up(&mut acceptor, 0).await;
    // A second instance of node 0 (a restart whose old connection still looks alive, or a duplicate --id).
    let mut newer = node(&net, 0, 2, 3);
    up(&mut newer, 1).await;
    newer.send(1, &Message::Wake { ticket: 9 });
    newer.flush();
    assert_eq!(next_message(&mut acceptor).await, (0, Message::Wake { ticket: 9 }));
    // The displaced instance redials at once, is recognised as a duplicate and refused.
    let stats = acceptor.stats();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while stats.rejected.load(Ordering::Relaxed) == 0 {
        assert!(tokio::time::Instant::now() < deadline, "the displaced instance was never refused");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    newer.send(1, &Message::Wake { ticket: 10 });
    newer.flush();
    assert_eq!(next_message(&mut acceptor).await, (0, Message::Wake { ticket: 10 }), "the newer one kept the index");
}
