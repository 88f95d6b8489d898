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
    let Some((&part, rest)) = data.split_first() else { return };
    match part % 4 {
        0 => frames::run(rest),
        1 => handshake::accept_raw(rest),
        2 => handshake::dial_raw(rest),
        _ => handshake::relay(rest),
    }
}
