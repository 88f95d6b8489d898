//! Both sides of the TCP handshake against a hostile or corrupting peer, over in-memory duplex streams on
//! a current-thread runtime.
//!
//! The handshake's nonces come from the OS, so no input can replay a MAC: a side fed raw bytes must
//! fail, and with the error its input calls for (`expected_by_*` re-derive it from the layout). A real
//! dialer and acceptor must agree exactly when no byte between them was corrupted (a corrupted verdict,
//! the acceptor's last message, fails the dialer alone).

use dsync_tokio::tcp::handshake::{
    self, accept, dial, kind, reason, HandshakeError, Identity, HEADER_LEN, MAGIC, MAX_NAME, RECORD_LEN, VERSION,
};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

/// The format-1 HELLO length that `seeds.rs` still lays out (`magic ‖ version ‖ cluster id ‖ from ‖ to ‖
/// nonce`); such inputs now exercise the bad-magic path. The current layout is
/// [`dsync_tokio::tcp::handshake::HELLO_LEN`].
pub const HELLO_LEN: usize = 6 + 2 + 8 + 1 + 1 + 32;
/// The format-1 CHALLENGE length `seeds.rs` uses: a HELLO and a MAC.
pub const CHALLENGE_LEN: usize = HELLO_LEN + 32;
/// The cluster every identity here belongs to.
const CLUSTER: &str = "fuzz";
/// The format-1 cluster id of [`CLUSTER`] (FNV-1a), for `seeds.rs`.
pub fn cluster() -> u64 {
    CLUSTER.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

fn identity(me: usize, secret: &[u8]) -> Identity {
    Identity::new(CLUSTER, me, 64, Arc::<[u8]>::from(secret))
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    thread_local! {
        static RT: tokio::runtime::Runtime =
            tokio::runtime::Builder::new_current_thread().build().expect("a current-thread runtime");
    }
    RT.with(|rt| rt.block_on(f))
}

/// What a side that receives `b` (and then end of stream) must fail with, re-derived from the layout.
#[derive(Debug, PartialEq, Eq)]
enum Expected {
    Io,
    BadMagic,
    Malformed,
    Version(u16),
    Cluster,
    Index(usize),
    Misaddressed,
    WrongNode(usize),
    OutOfRange,
    SelfDial,
    BadMac,
    SecretRefused,
    Refused,
}

fn classify(e: &HandshakeError) -> Expected {
    match e {
        HandshakeError::Io(_) => Expected::Io,
        HandshakeError::BadMagic => Expected::BadMagic,
        HandshakeError::Malformed(_) => Expected::Malformed,
        HandshakeError::Version(v) => Expected::Version(*v),
        HandshakeError::Cluster { .. } => Expected::Cluster,
        HandshakeError::Index { claimed, .. } => Expected::Index(*claimed),
        HandshakeError::Misaddressed { .. } => Expected::Misaddressed,
        HandshakeError::WrongNode { answered, .. } => Expected::WrongNode(*answered),
        HandshakeError::OutOfRange { .. } => Expected::OutOfRange,
        HandshakeError::SelfDial => Expected::SelfDial,
        HandshakeError::BadMac => Expected::BadMac,
        HandshakeError::SecretRefused => Expected::SecretRefused,
        HandshakeError::Duplicate { .. } | HandshakeError::Refused(_) => Expected::Refused,
    }
}

fn header(b: &[u8]) -> Option<Expected> {
    if &b[..6] == b"DSYNC\x01" {
        return Some(Expected::Malformed);
    }
    if b[..6] != MAGIC {
        return Some(Expected::BadMagic);
    }
    let version = u16::from_le_bytes([b[6], b[7]]);
    (version != VERSION).then_some(Expected::Version(version))
}

/// `name_len ‖ name ‖ zero padding` is well-formed.
fn name_ok(b: &[u8]) -> Option<&[u8]> {
    let len = usize::from(b[0]);
    (len <= MAX_NAME && b[1 + len..1 + MAX_NAME].iter().all(|&x| x == 0)).then(|| &b[1..1 + len])
}

/// A record (`RECORD_LEN` bytes): `Err` with the failure its kind or padding calls for, else (kind, body).
fn record(b: &[u8]) -> Result<(u8, &[u8]), Expected> {
    if b.len() < RECORD_LEN {
        return Err(Expected::Io);
    }
    let used = match b[0] {
        kind::CHALLENGE => 2 + 32 + 32,
        kind::PROOF | kind::WELCOME => 32,
        kind::DUPLICATE => 4 + 32,
        kind::REFUSE => RECORD_LEN - 1,
        _ => return Err(Expected::Malformed),
    };
    if b[1 + used..RECORD_LEN].iter().any(|&x| x != 0) {
        return Err(Expected::Malformed);
    }
    Ok((b[0], &b[1..RECORD_LEN]))
}

/// What a refusal's body means.
fn refusal(body: &[u8]) -> Expected {
    if name_ok(&body[3..]).is_none() {
        return Expected::Malformed;
    }
    match body[0] {
        reason::CLUSTER => Expected::Cluster,
        reason::NOT_THIS_NODE => Expected::WrongNode(usize::from(body[1])),
        reason::OUT_OF_RANGE => Expected::OutOfRange,
        reason::SELF_DIAL => Expected::SelfDial,
        reason::BAD_SECRET => Expected::SecretRefused,
        _ => Expected::Refused,
    }
}

/// The acceptor `me` given a dialer's bytes.
fn expected_by_acceptor(b: &[u8], me: usize) -> Expected {
    let hello_len = handshake::HELLO_LEN;
    if b.len() < HEADER_LEN {
        return Expected::Io;
    }
    if let Some(e) = header(b) {
        return e;
    }
    if b.len() < hello_len {
        return Expected::Io;
    }
    let body = &b[HEADER_LEN..];
    let (from, to) = (usize::from(body[0]), usize::from(body[1]));
    let Some(name) = name_ok(&body[2 + 32 + 8..]) else { return Expected::Malformed };
    // (The instance is random: a forged one equals ours with probability 2^-64.)
    if name != CLUSTER.as_bytes() {
        return Expected::Cluster;
    }
    if from >= 64 {
        return Expected::Index(from);
    }
    if to != me {
        return Expected::Misaddressed;
    }
    if from >= me {
        return Expected::Index(from);
    }
    match record(&b[hello_len..]) {
        Err(e) => e,
        Ok((kind::PROOF, _)) => Expected::BadMac,
        Ok((kind::REFUSE, body)) => refusal(body),
        Ok(_) => Expected::Malformed,
    }
}

/// The dialer `me`, having dialed `peer`, given an acceptor's bytes.
fn expected_by_dialer(b: &[u8], me: usize, peer: usize) -> Expected {
    if b.len() < HEADER_LEN {
        return Expected::Io;
    }
    if let Some(e) = header(b) {
        return e;
    }
    match record(&b[HEADER_LEN..]) {
        Err(e) => e,
        Ok((kind::CHALLENGE, c)) => {
            let (from, to) = (usize::from(c[0]), usize::from(c[1]));
            if from != peer || to != me {
                Expected::WrongNode(from)
            } else {
                Expected::BadMac
            }
        }
        Ok((kind::REFUSE, body)) => refusal(body),
        Ok(_) => Expected::Malformed,
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
    let want = expected_by_acceptor(said, me);
    match result {
        Ok(peer) => panic!("accepted a forged handshake from {peer:?}: {said:?}"),
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
    let want = expected_by_dialer(said, me, peer);
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
    let sent_that_way = if to_acceptor { handshake::HELLO_LEN + RECORD_LEN } else { HEADER_LEN + 2 * RECORD_LEN };
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
    // The acceptor's verdict is its last word: corrupting it fails the dialer alone.
    let verdict_only = corrupted && !to_acceptor && offset >= HEADER_LEN + RECORD_LEN;
    if honest {
        assert!(dialed.is_ok(), "an honest dialer {d} → {a} failed: {dialed:?}");
        assert_eq!(accepted.ok().map(|h| h.peer), Some(d), "an honest acceptor {a} did not accept {d}");
    } else {
        // The acceptor's welcome is authenticated, so a dialer never succeeds where the acceptor failed.
        assert!(dialed.is_err(), "dialer succeeded against a corrupted, wrong or refusing acceptor");
        if !verdict_only {
            assert!(
                accepted.is_err(),
                "acceptor accepted: corrupted={corrupted} secrets differ={} {d}→{a}",
                other_secret % 2
            );
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every byte of either direction corrupted in turn, plus the honest and wrong-secret runs: the
    /// relay's checks hold and no corruption leaves a side waiting (a hang fails the test run).
    #[test]
    fn a_relay_corrupting_any_single_byte_is_caught() {
        relay(&[0, 2, 0, 0, 0xff, 0xff, 0]);
        relay(&[0, 2, 1, 0, 0xff, 0xff, 0]);
        relay(&[2, 0, 0, 0, 0xff, 0xff, 0]);
        let to_acceptor = handshake::HELLO_LEN + RECORD_LEN;
        let to_dialer = HEADER_LEN + 2 * RECORD_LEN;
        for (dir, len) in [(0u8, to_acceptor), (1, to_dialer)] {
            for off in 0..len as u16 {
                let [lo, hi] = off.to_le_bytes();
                relay(&[1, 3, 0, dir, lo, hi, 0x41]);
            }
        }
    }

    /// Raw peers: a real hello that reaches the wrong node, another cluster, and refusals of each kind.
    #[test]
    fn raw_inputs_fail_as_the_layout_says() {
        let nd = [7u8; 32];
        let good = handshake::hello(&identity(1, b"secret"), 3, &nd);
        accept_raw(&[&[3u8][..], &good].concat());
        accept_raw(&[&[4u8][..], &good].concat());
        let other = handshake::hello(&Identity::new("other", 1, 64, &b"secret"[..]), 3, &nd);
        accept_raw(&[&[3u8][..], &other].concat());
        for why in 0..9u8 {
            let mut r = vec![0u8; HEADER_LEN + RECORD_LEN];
            r[..6].copy_from_slice(&MAGIC);
            r[6..8].copy_from_slice(&VERSION.to_le_bytes());
            r[HEADER_LEN..HEADER_LEN + 5].copy_from_slice(&[kind::REFUSE, why, 3, 64, 4]);
            r[HEADER_LEN + 5..HEADER_LEN + 9].copy_from_slice(b"fuzz");
            dial_raw(&[&[1u8, 3][..], &r].concat());
        }
    }
}
