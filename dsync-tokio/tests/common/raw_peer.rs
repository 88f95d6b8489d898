//! A raw peer for exhaustion tests: it passes the real handshake as some node index, then speaks frames
//! directly — flooding, stalling, or reading whatever it wants — with no core behind it.
#![allow(dead_code)]

use dsync_tokio::core::Message;
use dsync_tokio::tcp::handshake::{self, Identity};
use dsync_tokio::tcp::{cluster_id, decode_frames, encode_frame};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Connects to `addr` (node `peer`) and authenticates as node `me` of `nodes`, with `NodeBuilder`'s default
/// cluster name. `recv_buffer`: a small kernel receive buffer, so a peer that stops reading stops the
/// sender quickly instead of letting the kernel absorb megabytes.
pub async fn connect_as(
    addr: SocketAddr,
    me: usize,
    nodes: usize,
    peer: usize,
    secret: &str,
    recv_buffer: Option<u32>,
) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    if let Some(bytes) = recv_buffer {
        socket.set_recv_buffer_size(bytes).expect("SO_RCVBUF");
    }
    let mut s = socket.connect(addr).await.expect("connect");
    let id = Identity::new(cluster_id("dsync"), me, nodes, Arc::<[u8]>::from(secret.as_bytes()));
    handshake::dial(&mut s, &id, peer).await.expect("the handshake of a peer that knows the secret succeeds");
    s
}

/// The frames of `messages`, back to back.
pub fn frames<'a>(messages: impl IntoIterator<Item = &'a Message>) -> Vec<u8> {
    let mut out = Vec::new();
    for m in messages {
        encode_frame(m, &mut out);
    }
    out
}

/// Reads frames from a stream, keeping partial frames between reads.
pub struct FrameReader<R> {
    read: R,
    buf: Vec<u8>,
    /// Bytes read so far.
    pub bytes: usize,
}

impl<R: AsyncReadExt + Unpin> FrameReader<R> {
    pub fn new(read: R) -> Self {
        FrameReader { read, buf: Vec::new(), bytes: 0 }
    }

    /// The next batch of whole messages; `None` when the stream ended. Panics on a malformed or torn
    /// stream: a sender that drops messages must drop whole frames.
    pub async fn next(&mut self) -> Option<Vec<Message>> {
        loop {
            let mut chunk = [0u8; 64 * 1024];
            let k = self.read.read(&mut chunk).await.ok()?;
            if k == 0 {
                return None;
            }
            self.bytes += k;
            self.buf.extend_from_slice(&chunk[..k]);
            let mut out = Vec::new();
            let used = decode_frames(&self.buf, 4 << 20, &mut out).expect("the node sends only whole, valid frames");
            self.buf.drain(..used);
            if !out.is_empty() {
                return Some(out);
            }
        }
    }
}

/// Writes `bytes` to the stream.
pub async fn write<W: AsyncWriteExt + Unpin>(w: &mut W, bytes: &[u8]) {
    w.write_all(bytes).await.expect("write to the node");
}
