//! Both sides of the TCP handshake against a hostile or corrupting peer, over in-memory duplex streams on
//! a current-thread runtime.
//!
//! The handshake's nonces come from the OS, so no input can replay a MAC: a side fed raw bytes must
//! fail, and with the error its input calls for (`expected` re-derives it from the layout). A real
//! dialer and acceptor must agree exactly when no byte between them was corrupted.

use dsync_tokio::tcp::handshake::{accept, cluster_id, dial, HandshakeError, Identity, VERSION};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

/// `magic ‖ version ‖ cluster ‖ from ‖ to ‖ nonce`, as `handshake.rs` lays it out.
const MAGIC: &[u8; 6] = b"DSYNC\x01";
/// Bytes of a HELLO.
pub const HELLO_LEN: usize = 6 + 2 + 8 + 1 + 1 + 32;
/// Bytes of a CHALLENGE: a HELLO and a MAC.
pub const CHALLENGE_LEN: usize = HELLO_LEN + 32;
/// Bytes of the dialer's PROOF.
const PROOF_LEN: usize = 32;
/// The cluster every identity here belongs to.
pub fn cluster() -> u64 {
    cluster_id("fuzz")
}

fn identity(me: usize, secret: &[u8]) -> Identity {
    Identity { cluster: cluster(), me, nodes: 64, secret: Arc::from(secret) }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    thread_local! {
        static RT: tokio::runtime::Runtime =
            tokio::runtime::Builder::new_current_thread().build().expect("a current-thread runtime");
    }
    RT.with(|rt| rt.block_on(f))
}

/// What a side that receives `b` (and then end of stream) must fail with, by its stage: too short,
/// a header field, the indices, too short for what follows the header, else the MAC.
#[derive(Debug, PartialEq, Eq)]
enum Expected {
    Io,
    BadMagic,
    Version(u16),
    Cluster(u64),
    Index(usize),
    BadMac,
}

fn expected(b: &[u8], header_len: usize, total: usize, index_ok: impl Fn(usize, usize) -> bool) -> Expected {
    if b.len() < header_len {
        return Expected::Io;
    }
    if &b[..6] != MAGIC {
        return Expected::BadMagic;
    }
    let version = u16::from_le_bytes([b[6], b[7]]);
    if version != VERSION {
        return Expected::Version(version);
    }
    let c = u64::from_le_bytes(b[8..16].try_into().expect("8 bytes"));
    if c != cluster() {
        return Expected::Cluster(c);
    }
    let (from, to) = (usize::from(b[16]), usize::from(b[17]));
    if !index_ok(from, to) {
        return Expected::Index(from);
    }
    if b.len() < total {
        return Expected::Io;
    }
    Expected::BadMac
}

fn classify(e: &HandshakeError) -> Expected {
    match e {
        HandshakeError::Io(_) => Expected::Io,
        HandshakeError::BadMagic => Expected::BadMagic,
        HandshakeError::Version(v) => Expected::Version(*v),
        HandshakeError::Cluster(c) => Expected::Cluster(*c),
        HandshakeError::Index { claimed, .. } => Expected::Index(*claimed),
        HandshakeError::BadMac => Expected::BadMac,
    }
}

/// Writes `bytes` as the peer and closes the peer's sending side; the duplex holds all of it plus replies.
/// Returns (peer, ours): the peer half must live until the handshake ends, or our writes fail first.
async fn peer_says(bytes: &[u8]) -> (DuplexStream, DuplexStream) {
    let (mut peer, ours) = tokio::io::duplex(bytes.len() + 4 * CHALLENGE_LEN);
    peer.write_all(bytes).await.expect("the duplex has room");
    peer.shutdown().await.expect("closing an in-memory stream");
    (peer, ours)
}

/// Input: `me` (acceptor index), then a dialer's bytes: HELLO and PROOF.
pub fn accept_raw(data: &[u8]) {
    let [me, said @ ..] = data else { return };
    let me = usize::from(*me % 64);
    let result = block_on(async {
        let (_peer, mut s) = peer_says(said).await;
        accept(&mut s, &identity(me, b"secret")).await
    });
    let want = expected(said, HELLO_LEN, HELLO_LEN + PROOF_LEN, |from, to| from < me && to == me);
    match result {
        Ok(peer) => panic!("accepted a forged handshake from {peer}: {said:?}"),
        Err(e) => assert_eq!(classify(&e), want, "acceptor given {said:?} failed with {e}"),
    }
}

/// Input: `me`, `peer` (the index dialed), then an acceptor's bytes: CHALLENGE.
pub fn dial_raw(data: &[u8]) {
    let [me, peer, said @ ..] = data else { return };
    let (me, peer) = (usize::from(*me % 64), usize::from(*peer % 64));
    let result = block_on(async {
        let (_peer, mut s) = peer_says(said).await;
        dial(&mut s, &identity(me, b"secret"), peer).await
    });
    let want = expected(said, CHALLENGE_LEN, CHALLENGE_LEN, |from, to| from == peer && to == me);
    match result {
        Ok(()) => panic!("dialer accepted a forged challenge: {said:?}"),
        Err(e) => assert_eq!(classify(&e), want, "dialer given {said:?} failed with {e}"),
    }
}

/// Input: dialer index, acceptor index, whether the secrets differ, the direction, the offset and the
/// XOR mask of one corrupted byte. A real dialer and acceptor talk through a relay that applies it.
pub fn relay(data: &[u8]) {
    let [d, a, other_secret, dir, off_lo, off_hi, mask, ..] = data else { return };
    let (d, a) = (usize::from(*d % 64), usize::from(*a % 64));
    let to_acceptor = dir % 2 == 0;
    let offset = usize::from(u16::from_le_bytes([*off_lo, *off_hi]));
    let secret_a: &[u8] = if other_secret % 2 == 0 { b"secret" } else { b"secreT" };
    let sent_that_way = if to_acceptor { HELLO_LEN + PROOF_LEN } else { CHALLENGE_LEN };
    let corrupted = *mask != 0 && offset < sent_that_way;

    let (dialed, accepted) = block_on(async {
        let (mut ds, relay_d) = tokio::io::duplex(256);
        let (relay_a, mut acs) = tokio::io::duplex(256);
        let (rd_r, rd_w) = tokio::io::split(relay_d);
        let (ra_r, ra_w) = tokio::io::split(relay_a);
        let (m_da, m_ad) = if to_acceptor { (Some((offset, *mask)), None) } else { (None, Some((offset, *mask))) };
        let dialer = async move {
            let r = dial(&mut ds, &identity(d, b"secret"), a).await;
            drop(ds);
            r
        };
        let acceptor = async move {
            let r = accept(&mut acs, &identity(a, secret_a)).await;
            drop(acs);
            r
        };
        let (dialed, accepted, (), ()) = tokio::join!(dialer, acceptor, pump(rd_r, ra_w, m_da), pump(ra_r, rd_w, m_ad));
        (dialed, accepted)
    });

    let honest = !corrupted && other_secret % 2 == 0 && d < a;
    if honest {
        assert!(dialed.is_ok(), "an honest dialer {d} → {a} failed: {dialed:?}");
        assert_eq!(accepted.ok(), Some(d), "an honest acceptor {a} did not accept {d}");
    } else {
        assert!(
            accepted.is_err(),
            "acceptor accepted: corrupted={corrupted} secrets differ={} {d}→{a}",
            other_secret % 2
        );
        if (corrupted && !to_acceptor) || other_secret % 2 == 1 || d >= a {
            assert!(dialed.is_err(), "dialer succeeded against a corrupted, wrong or refusing acceptor");
        }
    }
}

/// Copies one direction, XOR-ing the byte at `corrupt.0` (counted over the direction) with `corrupt.1`;
/// closes the far side when the near side ends, so each handshake side sees its peer go away.
async fn pump<R, W>(mut from: R, mut to: W, corrupt: Option<(usize, u8)>)
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let mut seen = 0;
    let mut buf = [0u8; 64];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some((at, mask)) = corrupt {
            if (seen..seen + n).contains(&at) {
                buf[at - seen] ^= mask;
            }
        }
        seen += n;
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
