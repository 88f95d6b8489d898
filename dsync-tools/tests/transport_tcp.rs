//! The shared transport suite over TCP.

mod common;
#[macro_use]
mod transport_suite;

use dsync_tokio::tcp::{cluster_id, TcpConfig, TcpTransport};
use dsync_tokio::{Node, NodeBuilder};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::Ordering;
use std::sync::Arc;

struct Tcp;

impl transport_suite::Net for Tcp {
    type Slot = TcpListener;
    type T = TcpTransport;

    fn bind(&self, addr: SocketAddr) -> std::io::Result<TcpListener> {
        TcpListener::bind(addr)
    }

    fn addr(slot: &TcpListener) -> SocketAddr {
        slot.local_addr().expect("bound")
    }

    async fn start(&self, builder: NodeBuilder, slot: TcpListener) -> Node {
        builder.listener(slot).start_tcp().await.expect("node starts")
    }

    fn transport(&self, addrs: &[SocketAddr], me: usize, slot: TcpListener, queue_bytes: usize) -> TcpTransport {
        let mut cfg = TcpConfig::new(addrs.to_vec(), me, cluster_id("test"), Arc::<[u8]>::from(&b"suite"[..]));
        cfg.max_queued_bytes = queue_bytes;
        slot.set_nonblocking(true).expect("nonblocking");
        TcpTransport::with_listener(cfg, tokio::net::TcpListener::from_std(slot).expect("listener")).expect("transport")
    }

    fn dropped(t: &TcpTransport) -> u64 {
        t.stats().dropped.load(Ordering::Relaxed)
    }
}

transport_suite!(Tcp);
