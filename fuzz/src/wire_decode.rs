//! Target `wire_decode`: arbitrary bytes through [`wire::decode`], every message type reachable.
//!
//! Input: one byte choosing the size limit, then the envelope. A decoded message must fit the limit,
//! re-encode to something no longer than its input (postcard's encoding is canonical, so the same or
//! shorter), and decode back to itself; every refusal must be the typed error that matches the input.

use dsync_core::wire::{self, WireError};

/// Limits the first byte selects from: tiny ones reach `TooLarge`, the last is the production default.
const LIMITS: [usize; 4] = [16, 64, 1024, 4 << 20];

/// The fuzz body.
pub fn run(data: &[u8]) {
    let Some((&pick, bytes)) = data.split_first() else { return };
    let limit = LIMITS[usize::from(pick) % LIMITS.len()];
    match wire::decode(bytes, limit) {
        Ok(msg) => {
            assert!(bytes.len() <= limit, "decoded {} bytes past the {limit}-byte limit", bytes.len());
            let encoded = wire::encode(&msg);
            assert!(encoded.len() <= bytes.len(), "{msg:?} re-encodes longer than the input it came from");
            assert_eq!(wire::decode(&encoded, usize::MAX).as_ref(), Ok(&msg), "{msg:?} does not round-trip");
            // `encode_into` appends after whatever the buffer holds.
            let mut buf = vec![0xA5; 3];
            wire::encode_into(&msg, &mut buf);
            assert_eq!(&buf[3..], &encoded[..], "encode_into differs from encode for {msg:?}");
            assert!(!msg.kind().is_empty());
        }
        Err(WireError::TooLarge { len, limit: l }) => {
            assert_eq!((len, l), (bytes.len(), limit), "TooLarge reports the wrong sizes");
            assert!(len > l);
        }
        Err(WireError::TrailingBytes(n)) => {
            assert!(n > 0 && n < bytes.len(), "{n} trailing bytes of {}", bytes.len());
            // The prefix without the trailing bytes is a whole message.
            assert!(
                wire::decode(&bytes[..bytes.len() - n], limit).is_ok(),
                "prefix before trailing bytes is not a message"
            );
        }
        Err(WireError::UnsupportedVersion(v)) => assert_ne!(v, wire::PROTOCOL_VERSION),
        Err(e @ WireError::Malformed) => assert!(!e.to_string().is_empty()),
    }
}
