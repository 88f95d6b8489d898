//! Hand-written seed inputs: one valid instance of each input shape, so the fuzzers start from inputs
//! that pass the parsers' checks and the corpus test exercises every message type from the first run.
//! `cargo run -p dsync-fuzz --example write_seeds` writes them to `fuzz/corpus/<target>/seed-*`.

#[cfg(feature = "tcp")]
use crate::tcp_frames::handshake::{cluster, CHALLENGE_LEN, HELLO_LEN};
use dsync_core::wire::{self, ForceTarget, LockMsg, Message, Mode, Outcome, WireEntry, PROTOCOL_VERSION};
use dsync_core::{DenyReason, Standing};
#[cfg(feature = "tcp")]
use dsync_tokio::tcp::encode_frame;

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

#[cfg(feature = "tcp")]
fn hello(from: u8, to: u8) -> Vec<u8> {
    let mut b = b"DSYNC\x01".to_vec();
    b.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    b.extend_from_slice(&cluster().to_le_bytes());
    b.extend_from_slice(&[from, to]);
    b.extend_from_slice(&[0x5a; 32]);
    debug_assert_eq!(b.len(), HELLO_LEN);
    b
}

/// Seeds for `tcp_frames`: (name, bytes).
#[cfg(feature = "tcp")]
pub fn tcp_frames() -> Vec<(String, Vec<u8>)> {
    let mut stream = Vec::new();
    for m in every_message() {
        encode_frame(&m, &mut stream);
    }
    let mut challenge = hello(2, 0);
    challenge.extend_from_slice(&[0xc3; 32]);
    debug_assert_eq!(challenge.len(), CHALLENGE_LEN);
    vec![
        ("frames".into(), [&[0u8, 2, 6][..], &stream].concat()),
        ("frames-oversized".into(), [&[0u8, 0, 0][..], &(1u32 << 20).to_le_bytes()].concat()),
        ("accept".into(), [&[1u8, 2][..], &hello(0, 2), &[0x11; 32]].concat()),
        ("dial".into(), [&[2u8, 0, 2][..], &challenge].concat()),
        ("relay-honest".into(), vec![3, 0, 2, 0, 0, 0xff, 0xff, 0]),
        ("relay-corrupt-proof".into(), vec![3, 0, 2, 0, 0, 60, 0, 1]),
        ("relay-corrupt-challenge".into(), vec![3, 1, 3, 0, 1, 17, 0, 0x80]),
    ]
}
