//! Length-prefixed frames: a `u32` little-endian length, then one postcard envelope from `dsync_core::wire`.

use dsync_core::wire::{self, WireError};
use dsync_core::Message;
use std::fmt;

/// Why a peer's byte stream was refused; the connection is dropped and nothing reaches the core.
#[derive(Debug, PartialEq, Eq)]
pub enum FrameError {
    /// A frame longer than the limit was announced.
    Oversized {
        /// Announced length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// A frame's payload is not a valid message.
    Malformed(WireError),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Oversized { len, limit } => write!(f, "oversized frame: {len} bytes, limit {limit}"),
            FrameError::Malformed(e) => write!(f, "malformed frame: {e}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Appends one frame carrying `msg` to `out`.
pub fn encode_frame(msg: &Message, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    wire::encode_into(msg, out);
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
}

/// Decodes every complete frame at the front of `buf` into `out`; returns how many bytes it consumed.
/// Stops at the first error: the caller drops the connection, so nothing after a bad frame is trusted.
pub fn decode_frames(buf: &[u8], limit: usize, out: &mut Vec<Message>) -> Result<usize, FrameError> {
    let mut at = 0;
    while buf.len() - at >= 4 {
        let len = u32::from_le_bytes(buf[at..at + 4].try_into().expect("4 bytes")) as usize;
        if len > limit {
            return Err(FrameError::Oversized { len, limit });
        }
        if buf.len() - at - 4 < len {
            break;
        }
        let msg = wire::decode(&buf[at + 4..at + 4 + len], limit).map_err(FrameError::Malformed)?;
        out.push(msg);
        at += 4 + len;
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_partial_frames_wait_for_more_bytes() {
        let msgs = [Message::Wake { ticket: 9 }, Message::Unlock { uid: 3, ticket: None, reply: false }];
        let mut buf = Vec::new();
        encode_frame(&msgs[0], &mut buf);
        let first = buf.len();
        encode_frame(&msgs[1], &mut buf);
        let mut out = Vec::new();
        assert_eq!(decode_frames(&buf[..buf.len() - 1], 64, &mut out), Ok(first));
        assert_eq!(out, [msgs[0].clone()]);
        out.clear();
        assert_eq!(decode_frames(&buf, 64, &mut out), Ok(buf.len()));
        assert_eq!(out, msgs);
    }

    #[test]
    fn an_oversized_announcement_is_refused_before_buffering_it() {
        let mut out = Vec::new();
        let buf = (1u32 << 30).to_le_bytes();
        assert_eq!(decode_frames(&buf, 1024, &mut out), Err(FrameError::Oversized { len: 1 << 30, limit: 1024 }));
    }

    #[test]
    fn garbage_is_malformed_and_yields_nothing() {
        let mut out = Vec::new();
        let buf = [3, 0, 0, 0, 0xff, 0xff, 0xff];
        assert!(matches!(decode_frames(&buf, 1024, &mut out), Err(FrameError::Malformed(_))));
        assert!(out.is_empty());
    }
}
