//! Hand-written seed inputs: one valid instance of each input shape, so the fuzzers start from inputs
//! that pass the parsers' checks and the corpus test exercises every message type from the first run.
//! `cargo run -p dsync-fuzz --example write_seeds` writes them to `fuzz/corpus/<target>/seed-*`.
//!
//! The `tcp_frames` handshake seeds ([`tcp_handshakes`]) each name the outcome they reach, and a test runs
//! them to check it: together they reach every way a handshake ends, on each side.

#[cfg(feature = "tcp")]
use crate::tcp_frames::handshake::{setup, Kind, Outcome as Ends};
use dsync_core::wire::{self, LockMsg, Outcome, WireEntry, PROTOCOL_VERSION};
use dsync_core::{DenyReason, Standing};
use dsync_core::{ForceTarget, Message, Mode};
#[cfg(feature = "tcp")]
use dsync_tokio::tcp::encode_frame;
#[cfg(feature = "tcp")]
use dsync_tokio::tcp::handshake::{
    self as hs, kind, reason, Identity, HEADER_LEN, HELLO_LEN, MAGIC, MAX_NAME, RECORD_LEN, VERSION,
};

/// One message of every kind.
pub fn every_message() -> Vec<Message> {
    let entry = WireEntry { resource: "orders".into(), mode: Mode::Read, owner: 2, uid: 9, age_ms: 1500, token: 4 };
    vec![
        Message::Lock(LockMsg {
            uid: 7,
            ticket: 3,
            mode: Mode::Write,
            proposal: 42,
            resources: vec!["a".into(), "b".into()],
        }),
        Message::LockReply { uid: 7, outcome: Outcome::Granted, mark: 42 },
        Message::LockReply { uid: 7, outcome: Outcome::Denied(DenyReason::StaleToken), mark: 50 },
        Message::Refresh { uid: 7, seq: 1 },
        Message::RefreshReply { uid: 7, seq: 1, held: true },
        Message::Unlock { uid: 7, ticket: Some(3), reply: true },
        Message::UnlockReply { uid: 7, removed: true },
        Message::Wake { ticket: 3 },
        Message::Query { qid: 1, resource: Some("orders".into()) },
        Message::QueryReply { qid: 1, entries: vec![entry], truncated: false },
        Message::ForceUnlock { qid: 2, target: ForceTarget::Uid { owner: 1, uid: 7 } },
        Message::ForceUnlock { qid: 2, target: ForceTarget::Resource("orders".into()) },
        Message::ForceUnlockReply { qid: 2, removed: 1 },
        Message::FloorQuery { qid: 3, incarnation: 3 },
        Message::FloorReply { qid: 3, floor: Some(1 << 20), standing: Standing::History, incarnation: 4 },
        Message::FloorReply { qid: 3, floor: None, standing: Standing::Fresh, incarnation: 5 },
        Message::FloorReply { qid: 3, floor: Some(0), standing: Standing::BootedWithYou, incarnation: 6 },
        Message::Rejoin { qid: 4 },
        Message::RejoinReply {
            qid: 4,
            holds: vec![LockMsg {
                uid: 7,
                ticket: 3,
                mode: Mode::Write,
                proposal: 42,
                resources: vec!["orders".into(), "stock".into()],
            }],
            complete: true,
        },
        Message::RejoinReply { qid: 4, holds: vec![], complete: false },
        Message::Revoked { uid: 7 },
    ]
}

/// Seeds for `wire_decode`: (name, bytes).
pub fn wire_decode() -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = every_message()
        .iter()
        .enumerate()
        .map(|(i, m)| (format!("{i:02}-{}", m.kind()), [&[3u8][..], &wire::encode(m)].concat()))
        .collect();
    let mut other_version = wire::encode(&Message::Wake { ticket: 1 });
    other_version[0] = (PROTOCOL_VERSION + 1) as u8;
    out.push(("other-version".into(), [&[3u8][..], &other_version].concat()));
    out.push(("too-large".into(), [&[0u8][..], &wire::encode(&every_message()[0])].concat()));
    out
}

/// A `tcp_frames` seed for the handshake: its name (the corpus file is `seed-<name>`), its bytes, and what
/// each real side of the handshake must end with.
#[cfg(feature = "tcp")]
#[derive(Debug)]
pub struct HandshakeSeed {
    /// The seed's name, after the outcome it reaches.
    pub name: &'static str,
    /// The input: a part byte (1 accept, 2 dial, 3 relay), then that part's input.
    pub bytes: Vec<u8>,
    /// What [`crate::tcp_frames::handshake_outcome`] must return for it.
    pub outcome: Ends,
}

/// The cluster of the fuzz harness's identities.
#[cfg(feature = "tcp")]
const CLUSTER: &str = "fuzz";
/// The raw acceptor's index (and the index the raw dialer dialed).
#[cfg(feature = "tcp")]
const ACCEPTOR: u8 = 3;
/// The raw dialer's index.
#[cfg(feature = "tcp")]
const DIALER: u8 = 1;

/// A format-2 HELLO from node `from` of `cluster` to node `to`, with a fixed nonce and instance.
#[cfg(feature = "tcp")]
fn hello(from: u8, to: u8, cluster: &str) -> Vec<u8> {
    let id = Identity {
        cluster: cluster.into(),
        me: usize::from(from),
        nodes: 64,
        secret: std::sync::Arc::from(&b"secret"[..]),
        instance: 0x0123_4567_89ab_cdef,
        // Unused: the nonce is given. Seeded, so writing the seeds draws nothing from the OS.
        entropy: dsync_tokio::Entropy::insecure_seeded(0),
    };
    let b = hs::hello(&id, usize::from(to), &[0x5a; 32]);
    debug_assert_eq!(b.len(), HELLO_LEN);
    b
}

/// Magic and `version`.
#[cfg(feature = "tcp")]
fn header(version: u16) -> Vec<u8> {
    [&MAGIC[..], &version.to_le_bytes()].concat()
}

/// A record of `kind` with `body`, zero-padded to `RECORD_LEN`.
#[cfg(feature = "tcp")]
fn record(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut r = vec![kind];
    r.extend_from_slice(body);
    r.resize(RECORD_LEN, 0);
    r
}

/// A REFUSE record: `why`, the refuser's index and cluster size, its name (`name_len` may lie).
#[cfg(feature = "tcp")]
fn refuse(why: u8, index: u8, nodes: u8, name_len: u8, name: &str) -> Vec<u8> {
    let mut body = vec![why, index, nodes, name_len];
    body.extend_from_slice(name.as_bytes());
    body.resize(3 + 1 + MAX_NAME, 0);
    record(kind::REFUSE, &body)
}

/// The acceptor's CHALLENGE from node `from` to node `to`, with a forged MAC.
#[cfg(feature = "tcp")]
fn challenge(from: u8, to: u8) -> Vec<u8> {
    record(kind::CHALLENGE, &[&[from, to][..], &[0xc3; 32], &[0x11; 32]].concat())
}

/// A `tcp_frames` input for the relay part: see [`crate::tcp_frames::handshake::relay`].
#[cfg(feature = "tcp")]
fn relay(d: u8, a: u8, bits: u8, dir: u8, offset: usize, mask: u8) -> Vec<u8> {
    let [lo, hi] = u16::try_from(offset).expect("an offset within the handshake").to_le_bytes();
    vec![3, d, a, bits, dir, lo, hi, mask]
}

/// Seeds for the handshake parts of `tcp_frames`, each with the outcome it reaches: every failure an
/// acceptor or a dialer can meet from raw bytes (truncation at each step included), and real pairs that
/// succeed, are refused for each reason, or are broken by a relay at each step.
#[cfg(feature = "tcp")]
pub fn tcp_handshakes() -> Vec<HandshakeSeed> {
    let acceptor = |k| Ends { dialer: None, acceptor: Some(k) };
    let dialer = |k| Ends { dialer: Some(k), acceptor: None };
    let both = |d, a| Ends { dialer: Some(d), acceptor: Some(a) };
    let seed = |name, bytes, outcome| HandshakeSeed { name, bytes, outcome };
    // Raw acceptor `ACCEPTOR`, given a dialer's bytes.
    let accept = |name, said: &[&[u8]], k| seed(name, [&[1u8, ACCEPTOR][..], &said.concat()].concat(), acceptor(k));
    // Raw dialer `DIALER` that dialed `ACCEPTOR`, given an acceptor's bytes.
    let dial = |name, said: &[&[u8]], k| seed(name, [&[2u8, DIALER, ACCEPTOR][..], &said.concat()].concat(), dialer(k));

    let good = hello(DIALER, ACCEPTOR, CLUSTER);
    let proof = record(kind::PROOF, &[0x11; 32]);
    let other_version = VERSION.wrapping_add(1);
    let mut wrong_version = good.clone();
    wrong_version[6..8].copy_from_slice(&other_version.to_le_bytes());
    let name_at = HEADER_LEN + 2 + 32 + 8;
    let mut long_name = good.clone();
    long_name[name_at] = MAX_NAME as u8 + 1;
    let mut name_padding = good.clone();
    name_padding[name_at + 1 + CLUSTER.len()] = b'!';
    let mut proof_padding = proof.clone();
    proof_padding[RECORD_LEN - 1] = 1;
    let format_1 = [&b"DSYNC\x01"[..], &[0; 44]].concat();
    let ours = header(VERSION);
    let r = usize::from;

    vec![
        // The acceptor.
        accept("accept-forged-proof", &[&good, &proof], Kind::BadMac),
        accept(
            "accept-refused-bad-secret",
            &[&good, &refuse(reason::BAD_SECRET, DIALER, 64, 4, CLUSTER)],
            Kind::SecretRefused,
        ),
        accept("accept-cluster", &[&hello(DIALER, ACCEPTOR, "other")], Kind::Cluster),
        accept("accept-out-of-range", &[&hello(64, ACCEPTOR, CLUSTER)], Kind::Index(64)),
        accept("accept-misaddressed", &[&hello(DIALER, ACCEPTOR + 1, CLUSTER)], Kind::Misaddressed),
        accept("accept-may-not-dial", &[&hello(ACCEPTOR + 2, ACCEPTOR, CLUSTER)], Kind::Index(r(ACCEPTOR + 2))),
        accept("accept-self-index", &[&hello(ACCEPTOR, ACCEPTOR, CLUSTER)], Kind::Index(r(ACCEPTOR))),
        accept("accept-version", &[&wrong_version], Kind::Version(other_version)),
        accept("accept-format-1", &[&format_1], Kind::Malformed),
        accept("accept-bad-magic", &[b"GET / HTTP/1.1\r\n\r\n"], Kind::BadMagic),
        accept("accept-long-name", &[&long_name], Kind::Malformed),
        accept("accept-name-padding", &[&name_padding], Kind::Malformed),
        accept("accept-unexpected-record", &[&good, &record(kind::WELCOME, &[0x22; 32])], Kind::Malformed),
        accept("accept-unknown-kind", &[&good, &record(9, &[])], Kind::Malformed),
        accept("accept-proof-padding", &[&good, &proof_padding], Kind::Malformed),
        accept("accept-truncated-header", &[&good[..HEADER_LEN - 1]], Kind::Io),
        accept("accept-truncated-hello", &[&good[..HELLO_LEN - 1]], Kind::Io),
        accept("accept-no-proof", &[&good], Kind::Io),
        accept("accept-truncated-proof", &[&good, &proof[..RECORD_LEN - 1]], Kind::Io),
        // The dialer.
        dial("dial-forged-challenge", &[&ours, &challenge(ACCEPTOR, DIALER)], Kind::BadMac),
        dial("dial-wrong-node", &[&ours, &challenge(ACCEPTOR + 1, DIALER)], Kind::WrongNode(r(ACCEPTOR + 1))),
        dial("dial-refused-cluster", &[&ours, &refuse(reason::CLUSTER, ACCEPTOR, 64, 5, "other")], Kind::Cluster),
        dial(
            "dial-refused-not-this-node",
            &[&ours, &refuse(reason::NOT_THIS_NODE, ACCEPTOR + 1, 64, 4, CLUSTER)],
            Kind::WrongNode(r(ACCEPTOR + 1)),
        ),
        dial("dial-refused-out-of-range", &[&ours, &refuse(reason::OUT_OF_RANGE, 0, 1, 4, CLUSTER)], Kind::OutOfRange),
        dial(
            "dial-refused-may-not-dial",
            &[&ours, &refuse(reason::MAY_NOT_DIAL, ACCEPTOR, 64, 4, CLUSTER)],
            Kind::Refused,
        ),
        dial("dial-refused-self-dial", &[&ours, &refuse(reason::SELF_DIAL, ACCEPTOR, 64, 4, CLUSTER)], Kind::SelfDial),
        dial(
            "dial-refused-bad-secret",
            &[&ours, &refuse(reason::BAD_SECRET, ACCEPTOR, 64, 4, CLUSTER)],
            Kind::SecretRefused,
        ),
        dial(
            "dial-refused-version",
            &[&header(other_version), &refuse(reason::VERSION, ACCEPTOR, 64, 4, CLUSTER)],
            Kind::Version(other_version),
        ),
        dial("dial-refused-unknown-reason", &[&ours, &refuse(99, ACCEPTOR, 64, 4, CLUSTER)], Kind::Refused),
        dial("dial-refusal-long-name", &[&ours, &refuse(reason::CLUSTER, ACCEPTOR, 64, 65, CLUSTER)], Kind::Malformed),
        dial("dial-format-1", &[&format_1], Kind::Malformed),
        dial("dial-bad-magic", &[b"SSH-2.0-OpenSSH_9.6\r\n"], Kind::BadMagic),
        dial("dial-unexpected-record", &[&ours, &proof], Kind::Malformed),
        dial("dial-unknown-kind", &[&ours, &record(0, &[])], Kind::Malformed),
        dial("dial-truncated-header", &[&ours[..HEADER_LEN - 1]], Kind::Io),
        dial("dial-no-record", &[&ours], Kind::Io),
        dial("dial-truncated-challenge", &[&ours, &challenge(ACCEPTOR, DIALER)[..RECORD_LEN - 1]], Kind::Io),
        // A real dialer 0 and acceptor 2, untouched.
        seed("relay-honest", relay(0, 2, 0, 0, 0xffff, 0), both(Kind::Success, Kind::Success)),
        seed("relay-wrong-secret", relay(0, 2, setup::SECRET, 0, 0xffff, 0), both(Kind::BadMac, Kind::SecretRefused)),
        seed("relay-other-cluster", relay(0, 2, setup::CLUSTER, 0, 0xffff, 0), both(Kind::Cluster, Kind::Cluster)),
        seed("relay-self-dial", relay(0, 2, setup::SELF_DIAL, 0, 0xffff, 0), both(Kind::SelfDial, Kind::SelfDial)),
        seed("relay-duplicate", relay(0, 2, setup::DUPLICATE, 0, 0xffff, 0), both(Kind::Duplicate, Kind::Duplicate)),
        seed(
            "relay-out-of-range",
            relay(5, 1, setup::SHORT_LIST, 0, 0xffff, 0),
            both(Kind::OutOfRange, Kind::Index(5)),
        ),
        seed(
            "relay-misaddressed",
            relay(0, 2, setup::MOVED, 0, 0xffff, 0),
            both(Kind::WrongNode(3), Kind::Misaddressed),
        ),
        seed("relay-may-not-dial", relay(2, 0, 0, 0, 0xffff, 0), both(Kind::Refused, Kind::Index(2))),
        // ... through a relay that corrupts one byte.
        seed("relay-corrupt-version", relay(0, 2, 0, 0, 6, 1), both(Kind::Refused, Kind::Version(VERSION ^ 1))),
        seed("relay-corrupt-proof", relay(0, 2, 0, 0, HELLO_LEN + 1, 1), both(Kind::SecretRefused, Kind::BadMac)),
        seed(
            "relay-corrupt-challenge",
            relay(0, 2, 0, 1, HEADER_LEN + 3, 0x80),
            both(Kind::BadMac, Kind::SecretRefused),
        ),
        seed(
            "relay-corrupt-verdict",
            relay(0, 2, 0, 1, HEADER_LEN + RECORD_LEN + 1, 1),
            both(Kind::BadMac, Kind::Success),
        ),
        // ... through a relay that ends a direction within each message.
        seed("relay-cut-hello", relay(0, 2, setup::CUT, 0, 50, 1), both(Kind::Io, Kind::Io)),
        seed("relay-cut-challenge", relay(0, 2, setup::CUT, 1, HEADER_LEN + 10, 1), both(Kind::Io, Kind::Io)),
        seed("relay-cut-proof", relay(0, 2, setup::CUT, 0, HELLO_LEN + 10, 1), both(Kind::Io, Kind::Io)),
        seed(
            "relay-cut-verdict",
            relay(0, 2, setup::CUT, 1, HEADER_LEN + RECORD_LEN + 10, 1),
            both(Kind::Io, Kind::Success),
        ),
    ]
}

/// Seeds for `tcp_frames`: (name, bytes). The framing seeds, then [`tcp_handshakes`].
#[cfg(feature = "tcp")]
pub fn tcp_frames() -> Vec<(String, Vec<u8>)> {
    let mut stream = Vec::new();
    for m in every_message() {
        encode_frame(&m, &mut stream);
    }
    let mut out: Vec<(String, Vec<u8>)> = vec![
        ("frames".into(), [&[0u8, 2, 6][..], &stream].concat()),
        ("frames-oversized".into(), [&[0u8, 0, 0][..], &(1u32 << 20).to_le_bytes()].concat()),
    ];
    out.extend(tcp_handshakes().into_iter().map(|s| (s.name.to_string(), s.bytes)));
    out
}

#[cfg(all(test, feature = "tcp"))]
mod tests {
    use super::*;
    use crate::tcp_frames::handshake_outcome;
    use std::mem::discriminant;

    /// Each handshake seed ends, on each real side, as its declared outcome (and so as its name says):
    /// a seed that stopped at the magic (a layout change the seeds missed) fails here.
    #[test]
    fn each_handshake_seed_reaches_the_outcome_it_is_named_for() {
        for s in tcp_handshakes() {
            let part = match s.bytes[0] {
                1 => "accept-",
                2 => "dial-",
                _ => "relay-",
            };
            assert!(s.name.starts_with(part), "seed {} is a {part} input", s.name);
            let got = handshake_outcome(&s.bytes);
            assert_eq!(got, Some(s.outcome), "seed {}", s.name);
            let sides = [s.outcome.dialer, s.outcome.acceptor];
            if !s.name.ends_with("bad-magic") {
                assert!(!sides.contains(&Some(Kind::BadMagic)), "seed {} only reaches the magic", s.name);
            }
        }
    }

    /// Together the seeds reach every way each side of a handshake ends.
    #[test]
    fn the_handshake_seeds_reach_every_outcome() {
        let seeds = tcp_handshakes();
        let mut names: Vec<&str> = seeds.iter().map(|s| s.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), seeds.len(), "two seeds share a name");
        let every = [
            Kind::Success,
            Kind::Io,
            Kind::Malformed,
            Kind::Version(0),
            Kind::Cluster,
            Kind::SelfDial,
            Kind::BadMac,
            Kind::SecretRefused,
            Kind::Duplicate,
        ];
        let dialer_only = [Kind::WrongNode(0), Kind::OutOfRange, Kind::Refused, Kind::BadMagic];
        let acceptor_only = [Kind::Index(0), Kind::Misaddressed, Kind::BadMagic];
        for (side, wanted) in
            [("dialer", [&every[..], &dialer_only].concat()), ("acceptor", [&every[..], &acceptor_only].concat())]
        {
            let reached: Vec<Kind> = seeds
                .iter()
                .filter_map(|s| if side == "dialer" { s.outcome.dialer } else { s.outcome.acceptor })
                .collect();
            for k in wanted {
                assert!(
                    reached.iter().any(|r| discriminant(r) == discriminant(&k)),
                    "no seed ends the {side} with {k:?}"
                );
            }
        }
    }
}
