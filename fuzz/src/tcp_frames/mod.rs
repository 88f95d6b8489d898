//! Target `tcp_frames`: the TCP transport's byte-level parsers, the frame decoder and the handshake.
//!
//! The first input byte picks the part; the rest is that part's input:
//! - frames (`frames.rs`): a byte stream fed to `decode_frames` in chunks, as the connection's read loop does;
//! - accept / dial ([`handshake`]): the peer's half of a handshake as raw bytes, over an in-memory duplex;
//! - relay ([`handshake`]): a real dialer and acceptor through a relay that corrupts one byte.

mod frames;
pub mod handshake;

/// The fuzz body.
pub fn run(data: &[u8]) {
    if data.first().is_some_and(|part| part % 4 == 0) {
        frames::run(&data[1..]);
    } else {
        handshake_outcome(data);
    }
}

/// For a handshake input (first byte 1, 2 or 3 mod 4), runs the body and returns what each real side of
/// the handshake ended with; `None` for a frames input or one too short to run.
pub fn handshake_outcome(data: &[u8]) -> Option<handshake::Outcome> {
    let (&part, rest) = data.split_first()?;
    match part % 4 {
        1 => handshake::accept_raw(rest),
        2 => handshake::dial_raw(rest),
        3 => handshake::relay(rest),
        _ => None,
    }
}
