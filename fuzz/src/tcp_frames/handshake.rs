//! Both sides of the TCP handshake against a hostile or corrupting peer, over in-memory duplex streams on
//! a current-thread runtime.
//!
//! The handshake's nonces come from the OS, so no input can replay a MAC: a side fed raw bytes must
//! fail, and with the error its input calls for (`expected_by_*` re-derive it from the layout). A real
//! dialer and acceptor, set up to differ in one of the ways [`setup`] names (secret, cluster, instance,
//! verdict, peer list, index), must both end exactly as that setup calls for when the relay between them
//! leaves the stream alone; when it corrupts or cuts a byte, neither succeeds (except that tampering with
//! the verdict, the acceptor's last message, fails the dialer alone). Each part returns how each side
//! ended ([`Outcome`]), so the seeds can check they reach what they are named for.

use dsync_tokio::tcp::handshake::{
    self, accept, accept_with, dial, kind, reason, HandshakeError, Identity, Verdict, HEADER_LEN, MAGIC, MAX_NAME,
    RECORD_LEN, VERSION,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

/// The cluster every identity here belongs to.
const CLUSTER: &str = "fuzz";

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

/// How one side of a handshake ended: what a side fed raw bytes must fail with (re-derived from the
/// layout by `expected_by_*`), and what [`accept_raw`], [`dial_raw`] and [`relay`] report each side ended with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The handshake succeeded: the dialer was welcomed, the acceptor accepted the dialer's index.
    Success,
    /// [`HandshakeError::Io`]: the stream ended (or failed) mid-handshake.
    Io,
    /// [`HandshakeError::BadMagic`].
    BadMagic,
    /// [`HandshakeError::Malformed`], including a peer of handshake format 1.
    Malformed,
    /// [`HandshakeError::Version`], with the version the peer's header carries.
    Version(u16),
    /// [`HandshakeError::Cluster`].
    Cluster,
    /// [`HandshakeError::Index`], with the index claimed.
    Index(usize),
    /// [`HandshakeError::Misaddressed`].
    Misaddressed,
    /// [`HandshakeError::WrongNode`], with the index the answering node says it has.
    WrongNode(usize),
    /// [`HandshakeError::OutOfRange`].
    OutOfRange,
    /// [`HandshakeError::SelfDial`].
    SelfDial,
    /// [`HandshakeError::BadMac`]: the peer's MAC did not verify.
    BadMac,
    /// [`HandshakeError::SecretRefused`]: the peer says our MAC did not verify.
    SecretRefused,
    /// [`HandshakeError::Duplicate`]: the acceptor's authenticated "another live node holds this index".
    Duplicate,
    /// [`HandshakeError::Refused`]: a refusal for another reason (may not dial, version, unknown reason).
    Refused,
}

/// What each side of one handshake input ended with; `None` for a side the input plays itself as raw bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The real dialer's end ([`dial_raw`], [`relay`]).
    pub dialer: Option<Kind>,
    /// The real acceptor's end ([`accept_raw`], [`relay`]).
    pub acceptor: Option<Kind>,
}

fn classify(e: &HandshakeError) -> Kind {
    match e {
        HandshakeError::Io(_) => Kind::Io,
        HandshakeError::BadMagic => Kind::BadMagic,
        HandshakeError::Malformed(_) => Kind::Malformed,
        HandshakeError::Version(v) => Kind::Version(*v),
        HandshakeError::Cluster { .. } => Kind::Cluster,
        HandshakeError::Index { claimed, .. } => Kind::Index(*claimed),
        HandshakeError::Misaddressed { .. } => Kind::Misaddressed,
        HandshakeError::WrongNode { answered, .. } => Kind::WrongNode(*answered),
        HandshakeError::OutOfRange { .. } => Kind::OutOfRange,
        HandshakeError::SelfDial => Kind::SelfDial,
        HandshakeError::BadMac => Kind::BadMac,
        HandshakeError::SecretRefused => Kind::SecretRefused,
        HandshakeError::Duplicate { .. } => Kind::Duplicate,
        HandshakeError::Refused(_) => Kind::Refused,
    }
}

fn header(b: &[u8]) -> Option<Kind> {
    if &b[..6] == b"DSYNC\x01" {
        return Some(Kind::Malformed);
    }
    if b[..6] != MAGIC {
        return Some(Kind::BadMagic);
    }
    let version = u16::from_le_bytes([b[6], b[7]]);
    (version != VERSION).then_some(Kind::Version(version))
}

/// `name_len ‖ name ‖ zero padding` is well-formed.
fn name_ok(b: &[u8]) -> Option<&[u8]> {
    let len = usize::from(b[0]);
    (len <= MAX_NAME && b[1 + len..1 + MAX_NAME].iter().all(|&x| x == 0)).then(|| &b[1..1 + len])
}

/// A record (`RECORD_LEN` bytes): `Err` with the failure its kind or padding calls for, else (kind, body).
fn record(b: &[u8]) -> Result<(u8, &[u8]), Kind> {
    if b.len() < RECORD_LEN {
        return Err(Kind::Io);
    }
    let used = match b[0] {
        kind::CHALLENGE => 2 + 32 + 32,
        kind::PROOF | kind::WELCOME => 32,
        kind::DUPLICATE => 4 + 32,
        kind::REFUSE => RECORD_LEN - 1,
        _ => return Err(Kind::Malformed),
    };
    if b[1 + used..RECORD_LEN].iter().any(|&x| x != 0) {
        return Err(Kind::Malformed);
    }
    Ok((b[0], &b[1..RECORD_LEN]))
}

/// What a refusal's body means.
fn refusal(body: &[u8]) -> Kind {
    if name_ok(&body[3..]).is_none() {
        return Kind::Malformed;
    }
    match body[0] {
        reason::CLUSTER => Kind::Cluster,
        reason::NOT_THIS_NODE => Kind::WrongNode(usize::from(body[1])),
        reason::OUT_OF_RANGE => Kind::OutOfRange,
        reason::SELF_DIAL => Kind::SelfDial,
        reason::BAD_SECRET => Kind::SecretRefused,
        _ => Kind::Refused,
    }
}

/// The acceptor `me` given a dialer's bytes.
fn expected_by_acceptor(b: &[u8], me: usize) -> Kind {
    let hello_len = handshake::HELLO_LEN;
    if b.len() < HEADER_LEN {
        return Kind::Io;
    }
    if let Some(e) = header(b) {
        return e;
    }
    if b.len() < hello_len {
        return Kind::Io;
    }
    let body = &b[HEADER_LEN..];
    let (from, to) = (usize::from(body[0]), usize::from(body[1]));
    let Some(name) = name_ok(&body[2 + 32 + 8..]) else { return Kind::Malformed };
    // (The instance is random: a forged one equals ours with probability 2^-64.)
    if name != CLUSTER.as_bytes() {
        return Kind::Cluster;
    }
    if from >= 64 {
        return Kind::Index(from);
    }
    if to != me {
        return Kind::Misaddressed;
    }
    if from >= me {
        return Kind::Index(from);
    }
    match record(&b[hello_len..]) {
        Err(e) => e,
        Ok((kind::PROOF, _)) => Kind::BadMac,
        Ok((kind::REFUSE, body)) => refusal(body),
        Ok(_) => Kind::Malformed,
    }
}

/// The dialer `me`, having dialed `peer`, given an acceptor's bytes.
fn expected_by_dialer(b: &[u8], me: usize, peer: usize) -> Kind {
    if b.len() < HEADER_LEN {
        return Kind::Io;
    }
    if let Some(e) = header(b) {
        return e;
    }
    match record(&b[HEADER_LEN..]) {
        Err(e) => e,
        Ok((kind::CHALLENGE, c)) => {
            let (from, to) = (usize::from(c[0]), usize::from(c[1]));
            if from != peer || to != me {
                Kind::WrongNode(from)
            } else {
                Kind::BadMac
            }
        }
        Ok((kind::REFUSE, body)) => refusal(body),
        Ok(_) => Kind::Malformed,
    }
}

/// Writes `bytes` as the peer and closes the peer's sending side; the duplex holds all of it plus replies.
/// Returns (peer, ours): the peer half must live until the handshake ends, or our writes fail first.
async fn peer_says(bytes: &[u8]) -> (DuplexStream, DuplexStream) {
    let (mut peer, ours) = tokio::io::duplex(bytes.len() + 4 * RECORD_LEN);
    peer.write_all(bytes).await.expect("the duplex has room");
    peer.shutdown().await.expect("closing an in-memory stream");
    (peer, ours)
}

/// Input: `me` (acceptor index), then a dialer's bytes: HELLO and PROOF. Returns what the acceptor ended
/// with (`None` for an empty input).
pub fn accept_raw(data: &[u8]) -> Option<Outcome> {
    let [me, said @ ..] = data else { return None };
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
    Some(Outcome { dialer: None, acceptor: Some(want) })
}

/// Input: `me`, `peer` (the index dialed), then an acceptor's bytes: CHALLENGE or REFUSE. Returns what the
/// dialer ended with (`None` for an input shorter than two bytes).
pub fn dial_raw(data: &[u8]) -> Option<Outcome> {
    let [me, peer, said @ ..] = data else { return None };
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
    Some(Outcome { dialer: Some(want), acceptor: None })
}

/// Bits of the relay's setup byte: how the acceptor differs from an honest peer of the dialer.
pub mod setup {
    /// The acceptor has another secret.
    pub const SECRET: u8 = 0x01;
    /// The acceptor belongs to another cluster.
    pub const CLUSTER: u8 = 0x02;
    /// The acceptor is the dialer's own process (same instance).
    pub const SELF_DIAL: u8 = 0x04;
    /// The acceptor's verdict is "another live node holds your index".
    pub const DUPLICATE: u8 = 0x08;
    /// The acceptor's peer list ends at the acceptor (its cluster size is its index + 1).
    pub const SHORT_LIST: u8 = 0x10;
    /// The node at the dialed address has the next index (mod 64), not the one dialed.
    pub const MOVED: u8 = 0x20;
    /// The relay ends the direction at the offset instead of XOR-ing the byte there.
    pub const CUT: u8 = 0x40;
}

/// The retry delay of a duplicate verdict.
const RETRY_MS: u64 = 1500;

/// How an untouched handshake between dialer `d`, dialing index `a`, and an acceptor of index `a_me` in a
/// cluster of `a_nodes` ends, for the setup bits `s`: (dialer, acceptor, whether the acceptor challenged).
fn expected_pair(d: usize, a: usize, a_me: usize, a_nodes: usize, s: u8) -> (Kind, Kind, bool) {
    // The acceptor's checks, in its order.
    if s & setup::SELF_DIAL != 0 {
        (Kind::SelfDial, Kind::SelfDial, false)
    } else if s & setup::CLUSTER != 0 {
        (Kind::Cluster, Kind::Cluster, false)
    } else if d >= a_nodes {
        (Kind::OutOfRange, Kind::Index(d), false)
    } else if a != a_me {
        (Kind::WrongNode(a_me), Kind::Misaddressed, false)
    } else if d >= a_me {
        (Kind::Refused, Kind::Index(d), false)
    } else if s & setup::SECRET != 0 {
        (Kind::BadMac, Kind::SecretRefused, true)
    } else if s & setup::DUPLICATE != 0 {
        (Kind::Duplicate, Kind::Duplicate, true)
    } else {
        (Kind::Success, Kind::Success, true)
    }
}

/// Input: dialer index, acceptor index (the one dialed), the [`setup`] bits, the direction, the offset and
/// the XOR mask of one corrupted byte (a zero mask leaves the stream alone; with [`setup::CUT`] the
/// direction ends at the offset instead). A real dialer and acceptor talk through a relay that applies it.
/// Untouched, both sides end as the setup calls for; tampered with, no side succeeds except an acceptor
/// whose verdict alone was tampered with. Returns what each side ended with.
pub fn relay(data: &[u8]) -> Option<Outcome> {
    let [d, a, bits, dir, off_lo, off_hi, mask, ..] = data else { return None };
    let (d, a, bits) = (usize::from(*d % 64), usize::from(*a % 64), *bits);
    let to_acceptor = dir % 2 == 0;
    let offset = usize::from(u16::from_le_bytes([*off_lo, *off_hi]));
    let a_me = if bits & setup::MOVED != 0 { (a + 1) % 64 } else { a };
    let a_nodes = if bits & setup::SHORT_LIST != 0 { a_me + 1 } else { 64 };
    let (want_d, want_a, challenged) = expected_pair(d, a, a_me, a_nodes, bits);
    // What each direction carries when nothing is tampered with.
    let sent_that_way = if to_acceptor {
        handshake::HELLO_LEN + if challenged { RECORD_LEN } else { 0 }
    } else {
        HEADER_LEN + RECORD_LEN + if challenged && want_a != Kind::SecretRefused { RECORD_LEN } else { 0 }
    };
    let tampered = *mask != 0 && offset < sent_that_way;
    let cut = bits & setup::CUT != 0;

    let dialer_id = identity(d, b"secret");
    let secret_a: &[u8] = if bits & setup::SECRET != 0 { b"secreT" } else { b"secret" };
    let cluster_a = if bits & setup::CLUSTER != 0 { "other" } else { CLUSTER };
    let mut acceptor_id = Identity::new(cluster_a, a_me, a_nodes, Arc::<[u8]>::from(secret_a));
    if bits & setup::SELF_DIAL != 0 {
        acceptor_id.instance = dialer_id.instance;
    }
    let instance = dialer_id.instance;
    let verdict = if bits & setup::DUPLICATE != 0 {
        Verdict::Duplicate(Duration::from_millis(RETRY_MS))
    } else {
        Verdict::Welcome
    };

    let (dialed, accepted) = block_on(async {
        let (mut ds, relay_d) = tokio::io::duplex(256);
        let (relay_a, mut acs) = tokio::io::duplex(256);
        let (rd_r, rd_w) = tokio::io::split(relay_d);
        let (ra_r, ra_w) = tokio::io::split(relay_a);
        let tamper = Some((offset, *mask, cut)).filter(|_| *mask != 0);
        let (t_da, t_ad) = if to_acceptor { (tamper, None) } else { (None, tamper) };
        let dialer = async move {
            let r = dial(&mut ds, &dialer_id, a).await;
            drop(ds);
            r
        };
        let acceptor = async move {
            let r = accept_with(&mut acs, &acceptor_id, |_| verdict).await;
            drop(acs);
            r
        };
        let (dialed, accepted, (), ()) = tokio::join!(dialer, acceptor, pump(rd_r, ra_w, t_da), pump(ra_r, rd_w, t_ad));
        (dialed, accepted)
    });
    let got_d = dialed.as_ref().map_or_else(classify, |()| Kind::Success);
    let got_a = accepted.as_ref().map_or_else(classify, |_| Kind::Success);

    // The acceptor's verdict is its last word: tampering with it fails the dialer alone.
    let verdict_only = tampered && !to_acceptor && offset >= HEADER_LEN + RECORD_LEN;
    if !tampered {
        assert_eq!(
            (got_d, got_a),
            (want_d, want_a),
            "an untouched handshake {d} → {a} (acceptor {a_me} of {a_nodes}, setup {bits:#04x}) ended with \
             {dialed:?} / {accepted:?}"
        );
        if let Ok(hello) = &accepted {
            assert_eq!((hello.peer, hello.instance), (d, instance), "the acceptor mistook its peer");
        }
        if let Err(HandshakeError::Duplicate { retry }) = &dialed {
            assert_eq!(*retry, Duration::from_millis(RETRY_MS), "the dialer read another retry delay");
        }
    } else {
        // The acceptor's welcome is authenticated, so a dialer never succeeds where the acceptor failed.
        assert!(dialed.is_err(), "dialer succeeded through a tampering relay (setup {bits:#04x})");
        if !verdict_only {
            assert!(accepted.is_err(), "acceptor accepted through a tampering relay: {d}→{a} setup {bits:#04x}");
        }
    }
    Some(Outcome { dialer: Some(got_d), acceptor: Some(got_a) })
}

/// Copies one direction, XOR-ing the byte at `tamper.0` (counted over the direction) with `tamper.1`, or
/// with `tamper.2` ending the direction there; closes the far side when the near side ends, so each
/// handshake side sees its peer go away.
async fn pump<R, W>(mut from: R, mut to: W, tamper: Option<(usize, u8, bool)>)
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let mut seen = 0;
    let mut buf = [0u8; 64];
    loop {
        let mut n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut end = false;
        if let Some((at, mask, cut)) = tamper {
            if (seen..seen + n).contains(&at) {
                if cut {
                    n = at - seen;
                    end = true;
                } else {
                    buf[at - seen] ^= mask;
                }
            }
        }
        seen += n;
        if to.write_all(&buf[..n]).await.is_err() || end {
            break;
        }
    }
    let _ = to.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every byte of either direction corrupted in turn, and the stream cut there, plus the untouched runs
    /// of every setup bit: the relay's checks hold and no tampering leaves a side waiting (a hang fails
    /// the test run).
    #[test]
    fn a_relay_corrupting_or_cutting_any_byte_is_caught() {
        for bits in 0..0x40u8 {
            for (d, a) in [(0, 2), (2, 0), (1, 1), (5, 1), (1, 63)] {
                relay(&[d, a, bits, 0, 0xff, 0xff, 0]);
            }
        }
        let to_acceptor = handshake::HELLO_LEN + RECORD_LEN;
        let to_dialer = HEADER_LEN + 2 * RECORD_LEN;
        for bits in [0, setup::CUT] {
            for (dir, len) in [(0u8, to_acceptor), (1, to_dialer)] {
                for off in 0..len as u16 {
                    let [lo, hi] = off.to_le_bytes();
                    relay(&[1, 3, bits, dir, lo, hi, 0x41]);
                }
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
