//! Transport-level cluster tests, generic over the transport, so TCP and QUIC are held to the same
//! behaviour: formation, exchange, loss of a majority, shutdown, restart rejoin and a stalled peer.
//! `transport_tcp.rs` and `transport_quic.rs` instantiate every test with [`transport_suite!`].

use crate::common::{formed, quick, soon, PATIENCE};
use dsync_tokio::core::Message;
use dsync_tokio::{ForceTarget, LockError, Mode, Node, NodeBuilder, Transport, TransportEvent};
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

/// What the suite needs from a transport: bound sockets, nodes over them, and bare transports.
pub trait Net: Send + Sync + Sized + 'static {
    /// A socket bound before the node starts (so the OS can choose ports).
    type Slot: Send + 'static;
    /// The bare transport.
    type T: Transport;
    /// Binds `addr` (port 0 for any).
    fn bind(&self, addr: SocketAddr) -> std::io::Result<Self::Slot>;
    /// The address `slot` is bound to.
    fn addr(slot: &Self::Slot) -> SocketAddr;
    /// Starts node `builder` on `slot`.
    fn start(&self, builder: NodeBuilder, slot: Self::Slot) -> impl Future<Output = Node> + Send;
    /// A bare transport for node `me` of `addrs`, queueing at most `queue_bytes` per peer.
    fn transport(&self, addrs: &[SocketAddr], me: usize, slot: Self::Slot, queue_bytes: usize) -> Self::T;
    /// Messages the transport dropped (peer down or queue full).
    fn dropped(t: &Self::T) -> u64;
}

/// Instantiates every suite test for the transport made by `$net` (an expression building a [`Net`]).
#[macro_export]
macro_rules! transport_suite {
    ($net:expr) => {
        $crate::transport_suite!(@tests $net;
            a_cluster_forms_and_a_write_lock_hands_over_with_a_higher_token,
            five_nodes_share_read_locks_and_a_writer_waits,
            holder_queries_and_force_unlock_reach_every_node,
            lost_fires_when_the_majority_is_gone,
            shutdown_releases_held_locks_at_once,
            a_restarted_dialer_rejoins,
            a_restarted_acceptor_rejoins,
            a_stalled_peer_costs_bounded_memory_and_others_are_unaffected,
        );
    };
    (@tests $net:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                transport_suite::$name(&$net).await;
            }
        )*
    };
}

/// A started cluster and the sockets' addresses.
pub struct Cluster {
    pub addrs: Vec<SocketAddr>,
    pub nodes: Vec<Node>,
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn builder(addrs: &[SocketAddr], i: usize) -> NodeBuilder {
    NodeBuilder::new(addrs.to_vec(), i).secret(crate::common::SECRET).cluster_name("test").bootstrap().configure(quick)
}

/// `n` nodes on OS-chosen ports, returned once every node's lock is granted by every node.
pub async fn cluster<N: Net>(net: &N, n: usize) -> Cluster {
    let slots: Vec<N::Slot> = (0..n).map(|_| net.bind(loopback()).expect("bind")).collect();
    let addrs: Vec<SocketAddr> = slots.iter().map(N::addr).collect();
    let mut nodes = Vec::new();
    for (i, s) in slots.into_iter().enumerate() {
        nodes.push(net.start(builder(&addrs, i), s).await);
    }
    for node in &nodes {
        soon("the cluster forms", formed(node)).await;
    }
    Cluster { addrs, nodes }
}

pub async fn a_cluster_forms_and_a_write_lock_hands_over_with_a_higher_token<N: Net>(net: &N) {
    let c = cluster(net, 3).await;
    let g = soon("node 0 locks", c.nodes[0].mutex(["x"]).lock()).await.unwrap();
    assert!(g.holders().len() >= 2, "a quorum granted: {:?}", g.holders());
    let err = c.nodes[1].mutex(["x"]).try_lock_for(Duration::from_millis(300)).await.unwrap_err();
    assert_eq!(err, LockError::Timeout);
    let token = g.fencing_token();
    let waiter = tokio::spawn({
        let m = c.nodes[1].mutex(["x"]);
        async move { m.lock().await }
    });
    drop(g); // release on drop
    let g1 = soon("node 1 acquires after the release", waiter).await.unwrap().unwrap();
    assert!(g1.fencing_token() > token);
}

pub async fn five_nodes_share_read_locks_and_a_writer_waits<N: Net>(net: &N) {
    let c = cluster(net, 5).await;
    let r0 = soon("read 0", c.nodes[0].rwlock(["doc"]).read()).await.unwrap();
    let r1 = soon("read 1", c.nodes[1].rwlock(["doc"]).read()).await.unwrap();
    assert_eq!((r0.mode(), r1.mode()), (Mode::Read, Mode::Read));
    let w = c.nodes[4].rwlock(["doc"]);
    assert_eq!(w.try_write_for(Duration::from_millis(300)).await.unwrap_err(), LockError::Timeout);
    drop(r0);
    drop(r1);
    let g = soon("write after readers left", w.write()).await.unwrap();
    assert_eq!(g.mode(), Mode::Write);
}

pub async fn holder_queries_and_force_unlock_reach_every_node<N: Net>(net: &N) {
    let c = cluster(net, 3).await;
    let g = soon("lock", c.nodes[0].mutex(["q"]).lock()).await.unwrap();
    let entries = soon("holders", c.nodes[1].holders(Some("q"))).await.unwrap();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let e = &entries[0];
    assert_eq!((e.owner, e.mode, e.token), (0, Mode::Write, g.fencing_token()));
    assert!(e.granted_by.len() >= 2);
    let removed = soon("force unlock", c.nodes[2].force_unlock(ForceTarget::Resource("q".into()))).await.unwrap();
    assert!(removed >= 2, "removed {removed}");
    soon("the forced-out holder is told its lock is lost", g.lost()).await;
    soon("another node takes it", c.nodes[1].mutex(["q"]).lock()).await.unwrap();
}

pub async fn lost_fires_when_the_majority_is_gone<N: Net>(net: &N) {
    let c = cluster(net, 5).await;
    let g = soon("lock", c.nodes[0].mutex(["z"]).lock()).await.unwrap();
    assert!(!g.is_lost());
    for n in &c.nodes[2..] {
        n.crash().await;
    }
    soon("lost() resolves", g.lost()).await;
    assert!(g.is_lost());
}

pub async fn shutdown_releases_held_locks_at_once<N: Net>(net: &N) {
    let c = cluster(net, 3).await;
    let g = soon("lock", c.nodes[0].mutex(["s"]).lock()).await.unwrap();
    soon("shutdown", c.nodes[0].shutdown()).await;
    assert!(g.is_lost(), "guards of a stopped node report lost");
    // Well before the 1.5 s lease could expire, node 1 gets the lock: the release was sent.
    let got = tokio::time::timeout(Duration::from_millis(1200), c.nodes[1].mutex(["s"]).lock()).await;
    assert!(got.is_ok(), "the lock was not released by the shutdown");
    assert_eq!(c.nodes[0].mutex(["s"]).lock().await.unwrap_err(), LockError::ShutDown);
}

/// Node `i` crashes and a new process-like node starts on the same address; it must rejoin every peer.
async fn restart_rejoins<N: Net>(net: &N, i: usize) {
    let mut c = cluster(net, 3).await;
    let before = soon("lock before", c.nodes[i].mutex(["r"]).lock()).await.unwrap();
    let token = before.fencing_token();
    drop(before);
    c.nodes[i].crash().await;
    // The crashed node's socket may take a moment to close; binding is retried until it is free.
    let slot = soon("the address is free again", async {
        loop {
            match net.bind(c.addrs[i]) {
                Ok(s) => return s,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
    .await;
    // `bootstrap()` is still set, as in a service definition that never changes: the peers have history, so
    // the node restarts safely (quarantine, floor from its peers) instead of booting fresh.
    let b = builder(&c.addrs, i);
    c.nodes[i] = net.start(b, slot).await;
    // Formed again: a lock through the restarted node is granted by all three (every link is back up).
    soon("the restarted node rejoins every peer", formed(&c.nodes[i])).await;
    let after = soon("lock after", c.nodes[i].mutex(["r"]).lock()).await.unwrap();
    assert!(after.fencing_token() > token, "tokens keep increasing across the restart");
    for (j, n) in c.nodes.iter().enumerate().filter(|&(j, _)| j != i) {
        let seen = soon("holders", n.holders(Some("r"))).await.unwrap();
        assert!(seen.iter().any(|e| e.owner == i), "node {j} does not see the restarted node's lock: {seen:?}");
    }
}

pub async fn a_restarted_dialer_rejoins<N: Net>(net: &N) {
    restart_rejoins(net, 0).await; // node 0 dials everyone
}

pub async fn a_restarted_acceptor_rejoins<N: Net>(net: &N) {
    restart_rejoins(net, 2).await; // node 2 accepts from everyone
}

pub async fn a_stalled_peer_costs_bounded_memory_and_others_are_unaffected<N: Net>(net: &N) {
    let slots: Vec<N::Slot> = (0..3).map(|_| net.bind(loopback()).expect("bind")).collect();
    let addrs: Vec<SocketAddr> = slots.iter().map(N::addr).collect();
    let mut slots = slots.into_iter();
    // Node 0 is a real transport whose driver never reads: its inbound queue fills, then it stops reading
    // the connection, and node 1's sends to it back up.
    let _stalled = net.transport(&addrs, 0, slots.next().unwrap(), 4 << 20);
    let mut node1 = net.transport(&addrs, 1, slots.next().unwrap(), 64 * 1024);
    let mut node2 = net.transport(&addrs, 2, slots.next().unwrap(), 4 << 20);
    let mut up = std::collections::BTreeSet::new();
    soon("node 1 sees peers 0 and 2", async {
        while up.len() < 2 {
            if let Some(TransportEvent::PeerUp(p)) = node1.recv().await {
                up.insert(p);
            }
        }
    })
    .await;
    // Push towards the stalled peer until node 1 has to drop; a bound that never bites would fail here.
    let big = Message::Query { qid: 1, resource: Some("r".repeat(1000)) };
    let mut sent = 0u64;
    soon("node 1 drops for the stalled peer", async {
        while N::dropped(&node1) == 0 {
            for _ in 0..64 {
                node1.send(0, &big);
            }
            node1.flush();
            sent += 64;
            assert!(sent < 200_000, "200 MB went to a stalled peer without a drop");
            tokio::task::yield_now().await;
        }
    })
    .await;
    // The drops were for a full queue, not for a peer that went down.
    while let Some(e) = node1.try_recv() {
        assert!(!matches!(e, TransportEvent::PeerDown(0)), "the stalled peer was disconnected instead");
    }
    // Node 2 still gets what node 1 sends it.
    node1.send(2, &Message::Wake { ticket: 42 });
    node1.flush();
    let got = tokio::time::timeout(PATIENCE, async {
        loop {
            if let Some(TransportEvent::Messages { from: 1, messages }) = node2.recv().await {
                if messages.contains(&Message::Wake { ticket: 42 }) {
                    return;
                }
            }
        }
    })
    .await;
    assert!(got.is_ok(), "node 2 did not receive node 1's message while peer 0 was stalled");
}
