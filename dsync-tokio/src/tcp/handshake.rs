//! The connection handshake: protocol version, cluster id and node indices, proven by a mutual
//! challenge–response over the shared cluster secret (HMAC-SHA256).
//!
//! ```text
//! dialer   → acceptor : HELLO   magic, version, cluster, dialer, acceptor, nonce_d
//! acceptor → dialer   : CHALLENGE magic, version, cluster, acceptor, dialer, nonce_a, mac_a
//! dialer   → acceptor : PROOF   mac_d
//! mac_x = HMAC(secret, label_x ‖ cluster ‖ dialer ‖ acceptor ‖ nonce_d ‖ nonce_a)
//! ```
//! Each side proves it knows the secret over both fresh nonces, so a recorded handshake cannot be replayed,
//! and the indices are inside the MAC, so a node cannot claim another's index. Messages are fixed-size and
//! read with a deadline, so a silent or garbage-speaking peer costs one short-lived task. The secret
//! authenticates the peer, not each later frame and not their confidentiality: across an untrusted network,
//! use the QUIC transport (TLS).

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const MAGIC: [u8; 6] = *b"DSYNC\x01";
/// The handshake's own version; bumped with `dsync_core::wire::PROTOCOL_VERSION`.
pub const VERSION: u16 = dsync_core::wire::PROTOCOL_VERSION;
const NONCE: usize = 32;
const MAC: usize = 32;
const HELLO_LEN: usize = 6 + 2 + 8 + 1 + 1 + NONCE;
const CHALLENGE_LEN: usize = HELLO_LEN + MAC;

/// What the two sides must agree on, and who this side is.
#[derive(Clone)]
pub struct Identity {
    /// The cluster id ([`cluster_id`]).
    pub cluster: u64,
    /// This node's index.
    pub me: usize,
    /// The cluster size.
    pub nodes: usize,
    /// The shared secret.
    pub secret: std::sync::Arc<[u8]>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("Identity").field("cluster", &self.cluster).field("me", &self.me).finish_non_exhaustive()
    }
}

/// Why a handshake failed; each is logged once and the connection dropped.
#[derive(Debug)]
pub enum HandshakeError {
    /// The connection failed or closed mid-handshake.
    Io(std::io::Error),
    /// The first bytes are not a dsync hello.
    BadMagic,
    /// The peer speaks another protocol version.
    Version(u16),
    /// The peer belongs to another cluster.
    Cluster(u64),
    /// The peer claims an index it may not use on this connection.
    Index {
        /// The index claimed.
        claimed: usize,
        /// What was acceptable.
        expected: String,
    },
    /// The MAC did not verify: wrong secret, or a forged index.
    BadMac,
}

impl std::error::Error for HandshakeError {}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::Io(e) => write!(f, "I/O during handshake: {e}"),
            HandshakeError::BadMagic => f.write_str("not a dsync peer (bad magic)"),
            HandshakeError::Version(v) => write!(f, "peer speaks protocol version {v}, this node speaks {VERSION}"),
            HandshakeError::Cluster(c) => write!(f, "peer belongs to cluster {c:#x}, not this one"),
            HandshakeError::Index { claimed, expected } => {
                write!(f, "peer claims node index {claimed}, expected {expected}")
            }
            HandshakeError::BadMac => f.write_str("authentication failed (wrong cluster secret or forged index)"),
        }
    }
}

impl From<std::io::Error> for HandshakeError {
    fn from(e: std::io::Error) -> Self {
        HandshakeError::Io(e)
    }
}

fn nonce() -> [u8; NONCE] {
    let mut n = [0u8; NONCE];
    // The OS RNG failing is not something a lock service can work around.
    getrandom::fill(&mut n).expect("the operating system's random source is unavailable");
    n
}

fn mac(id: &Identity, label: &[u8], dialer: usize, acceptor: usize, nd: &[u8], na: &[u8]) -> Hmac<Sha256> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&id.secret).expect("HMAC takes keys of any length");
    m.update(label);
    m.update(&id.cluster.to_le_bytes());
    m.update(&[dialer as u8, acceptor as u8]);
    m.update(nd);
    m.update(na);
    m
}

fn hello(id: &Identity, from: usize, to: usize, nonce: &[u8; NONCE]) -> Vec<u8> {
    let mut b = Vec::with_capacity(CHALLENGE_LEN);
    b.extend_from_slice(&MAGIC);
    b.extend_from_slice(&VERSION.to_le_bytes());
    b.extend_from_slice(&id.cluster.to_le_bytes());
    b.push(from as u8);
    b.push(to as u8);
    b.extend_from_slice(nonce);
    b
}

/// Parsed HELLO/CHALLENGE header: (from, to, nonce).
fn parse_hello(id: &Identity, b: &[u8]) -> Result<(usize, usize, [u8; NONCE]), HandshakeError> {
    if b[..6] != MAGIC {
        return Err(HandshakeError::BadMagic);
    }
    let version = u16::from_le_bytes([b[6], b[7]]);
    if version != VERSION {
        return Err(HandshakeError::Version(version));
    }
    let cluster = u64::from_le_bytes(b[8..16].try_into().expect("8 bytes"));
    if cluster != id.cluster {
        return Err(HandshakeError::Cluster(cluster));
    }
    let (from, to) = (usize::from(b[16]), usize::from(b[17]));
    let nonce: [u8; NONCE] = b[18..18 + NONCE].try_into().expect("32 bytes");
    Ok((from, to, nonce))
}

/// The dialing side: this node connects to `peer`.
pub async fn dial<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    id: &Identity,
    peer: usize,
) -> Result<(), HandshakeError> {
    let nd = nonce();
    s.write_all(&hello(id, id.me, peer, &nd)).await?;
    let mut b = [0u8; CHALLENGE_LEN];
    s.read_exact(&mut b).await?;
    let (from, to, na) = parse_hello(id, &b)?;
    if from != peer || to != id.me {
        return Err(HandshakeError::Index { claimed: from, expected: format!("{peer}") });
    }
    mac(id, b"dsync-acceptor", id.me, peer, &nd, &na)
        .verify_slice(&b[HELLO_LEN..])
        .map_err(|_| HandshakeError::BadMac)?;
    let proof = mac(id, b"dsync-dialer", id.me, peer, &nd, &na).finalize().into_bytes();
    s.write_all(&proof).await?;
    s.flush().await?;
    Ok(())
}

/// The accepting side; returns the authenticated peer's index. Only lower indices dial higher ones.
pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, id: &Identity) -> Result<usize, HandshakeError> {
    let mut b = [0u8; HELLO_LEN];
    s.read_exact(&mut b).await?;
    let (peer, to, nd) = parse_hello(id, &b)?;
    if peer >= id.me || to != id.me {
        return Err(HandshakeError::Index {
            claimed: peer,
            expected: format!("below {} addressed to {}", id.me, id.me),
        });
    }
    let na = nonce();
    let mut c = hello(id, id.me, peer, &na);
    c.extend_from_slice(&mac(id, b"dsync-acceptor", peer, id.me, &nd, &na).finalize().into_bytes());
    s.write_all(&c).await?;
    let mut proof = [0u8; MAC];
    s.read_exact(&mut proof).await?;
    mac(id, b"dsync-dialer", peer, id.me, &nd, &na).verify_slice(&proof).map_err(|_| HandshakeError::BadMac)?;
    debug_assert!(id.nodes > peer);
    Ok(peer)
}

/// A cluster id from a human-readable cluster name (FNV-1a; it only has to differ between clusters).
pub fn cluster_id(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ident(me: usize, secret: &[u8]) -> Identity {
        Identity { cluster: 7, me, nodes: 3, secret: secret.into() }
    }

    async fn run(d: Identity, a: Identity, peer: usize) -> (Result<(), HandshakeError>, Result<usize, HandshakeError>) {
        let (mut x, mut y) = tokio::io::duplex(1024);
        let dialer = async move { dial(&mut x, &d, peer).await };
        let acceptor = async move { accept(&mut y, &a).await };
        tokio::join!(dialer, acceptor)
    }

    #[tokio::test]
    async fn peers_with_the_same_secret_authenticate_each_other() {
        let (d, a) = run(ident(0, b"s3cret"), ident(2, b"s3cret"), 2).await;
        assert!(d.is_ok(), "{d:?}");
        assert_eq!(a.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_wrong_secret_fails_on_both_sides() {
        let (d, a) = run(ident(0, b"wrong"), ident(2, b"s3cret"), 2).await;
        assert!(matches!(d, Err(HandshakeError::BadMac)), "{d:?}");
        assert!(a.is_err());
    }

    #[tokio::test]
    async fn a_peer_claiming_an_index_that_may_not_dial_is_refused() {
        // Node 2 may not dial node 1 (only lower indices dial higher ones).
        let (_, a) = run(ident(2, b"s"), ident(1, b"s"), 1).await;
        assert!(matches!(a, Err(HandshakeError::Index { claimed: 2, .. })), "{a:?}");
    }

    #[tokio::test]
    async fn another_cluster_or_version_is_refused() {
        let mut other = ident(0, b"s");
        other.cluster = 8;
        let (_, a) = run(other, ident(2, b"s"), 2).await;
        assert!(matches!(a, Err(HandshakeError::Cluster(8))), "{a:?}");
        let (mut x, mut y) = tokio::io::duplex(1024);
        let mut h = hello(&ident(0, b"s"), 0, 2, &[0; NONCE]);
        h[6] = 99;
        x.write_all(&h).await.unwrap();
        assert!(matches!(accept(&mut y, &ident(2, b"s")).await, Err(HandshakeError::Version(99))));
    }
}
