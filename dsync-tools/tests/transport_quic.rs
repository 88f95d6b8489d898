//! The shared transport suite over QUIC (mutual TLS with a development CA made per test).

mod common;
#[macro_use]
mod transport_suite;

use dsync_quic::dev::DevCa;
use dsync_quic::{QuicConfig, QuicNodeBuilder, QuicTransport};
use dsync_tokio::{Node, NodeBuilder};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::Ordering;

struct Quic {
    ca: DevCa,
}

fn quic() -> Quic {
    Quic { ca: DevCa::new("test").expect("development CA") }
}

impl transport_suite::Net for Quic {
    type Slot = UdpSocket;
    type T = QuicTransport;

    fn bind(&self, addr: SocketAddr) -> std::io::Result<UdpSocket> {
        UdpSocket::bind(addr)
    }

    fn addr(slot: &UdpSocket) -> SocketAddr {
        slot.local_addr().expect("bound")
    }

    async fn start(&self, builder: NodeBuilder, slot: UdpSocket) -> Node {
        let id = self.ca.node_identity(builder.core_config().id).expect("node certificate");
        builder.start_quic(id, Some(slot)).expect("node starts")
    }

    fn transport(&self, addrs: &[SocketAddr], me: usize, slot: UdpSocket, queue_bytes: usize) -> QuicTransport {
        let id = self.ca.node_identity(me).expect("node certificate");
        let mut cfg = QuicConfig::new(addrs.to_vec(), me, "test", id);
        cfg.max_queued_bytes = queue_bytes;
        QuicTransport::with_socket(cfg, slot).expect("transport")
    }

    fn dropped(t: &QuicTransport) -> u64 {
        t.stats().dropped.load(Ordering::Relaxed)
    }
}

transport_suite!(quic());
