//! Messages between nodes, in a versioned envelope encoded with postcard.
//!
//! The envelope is `(version: u16, message)`. [`decode`] checks the size limit before parsing, the version
//! before the body, and that no bytes trail the message: any malformed input is a typed [`WireError`].
//! Semantic limits (how many resources, how long a name) are checked by the receiving locker, which answers
//! such a request with [`DenyReason::Invalid`] and changes nothing.

use crate::{DenyReason, Message, Mode};
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use serde::{Deserialize, Serialize};

/// The wire protocol version this crate speaks.
pub const PROTOCOL_VERSION: u16 = 3;

/// One acquisition attempt's request to a locker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockMsg {
    /// Identifies this attempt (fresh per attempt, unique per requesting node).
    pub uid: u64,
    /// The lock's ticket: fixed across attempts, a Lamport timestamp; lower tickets have priority.
    pub ticket: u64,
    /// Read or write.
    pub mode: Mode,
    /// Fencing token proposed for a write (ignored for reads).
    pub proposal: u64,
    /// Resource names, strictly ascending (sorted, no duplicates).
    pub resources: Vec<String>,
}

/// A locker's answer to a [`LockMsg`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Granted: the locker holds the grant until released or expired.
    Granted,
    /// Refused, with the reason.
    Denied(DenyReason),
}

/// One grant as a locker reports it to a holder query.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireEntry {
    /// The resource.
    pub resource: String,
    /// Read or write.
    pub mode: Mode,
    /// The node that holds (or requested) the grant (encoded in one byte; decoding refuses indices of 64
    /// and above).
    #[serde(with = "owner")]
    pub owner: usize,
    /// The attempt's uid.
    pub uid: u64,
    /// Milliseconds since the locker granted it.
    pub age_ms: u64,
    /// The fencing token of the grant (for reads: the write mark at grant time).
    pub token: u64,
}

/// Node indices travel as one byte; a byte naming a node beyond the largest cluster is malformed.
pub(crate) mod owner {
    use crate::quorum::MAX_NODES;
    use serde::{de, Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(owner: &usize, s: S) -> Result<S::Ok, S::Error> {
        // Core never builds a message naming a node ≥ 64, so the clamp only guards a misused public field.
        s.serialize_u8(u8::try_from(*owner).unwrap_or(u8::MAX))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
        let owner = usize::from(u8::deserialize(d)?);
        if owner >= MAX_NODES {
            return Err(de::Error::custom("node index out of range"));
        }
        Ok(owner)
    }
}

/// Why bytes could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireError {
    /// The input exceeds the caller's size limit.
    TooLarge {
        /// Input length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The envelope names a version this crate does not speak.
    UnsupportedVersion(u16),
    /// The bytes are not a valid message.
    Malformed,
    /// A valid message is followed by extra bytes.
    TrailingBytes(usize),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::TooLarge { len, limit } => write!(f, "message of {len} bytes exceeds the {limit}-byte limit"),
            WireError::UnsupportedVersion(v) => {
                write!(f, "protocol version {v} is not supported (this node speaks {PROTOCOL_VERSION})")
            }
            WireError::Malformed => f.write_str("malformed message"),
            WireError::TrailingBytes(n) => write!(f, "{n} bytes trail the message"),
        }
    }
}

impl core::error::Error for WireError {}

/// Appends the envelope of `msg` to `buf` (reuse `buf` to avoid an allocation per message).
pub fn encode_into(msg: &Message, buf: &mut Vec<u8>) {
    // Serialising plain data into a growable Vec cannot fail.
    let start = core::mem::take(buf);
    *buf = postcard::to_extend(&(PROTOCOL_VERSION, msg), start).unwrap_or_default();
}

/// The envelope of `msg` as a new byte vector.
#[must_use]
pub fn encode(msg: &Message) -> Vec<u8> {
    let mut buf = Vec::new();
    encode_into(msg, &mut buf);
    buf
}

/// Decodes one envelope, refusing inputs longer than `limit` bytes, other versions and trailing bytes.
pub fn decode(bytes: &[u8], limit: usize) -> Result<Message, WireError> {
    if bytes.len() > limit {
        return Err(WireError::TooLarge { len: bytes.len(), limit });
    }
    let (version, rest): (u16, &[u8]) = postcard::take_from_bytes(bytes).map_err(|_| WireError::Malformed)?;
    if version != PROTOCOL_VERSION {
        return Err(WireError::UnsupportedVersion(version));
    }
    let (msg, rest): (Message, &[u8]) = postcard::take_from_bytes(rest).map_err(|_| WireError::Malformed)?;
    if !rest.is_empty() {
        return Err(WireError::TrailingBytes(rest.len()));
    }
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Standing;
    use alloc::string::ToString;
    use alloc::vec;

    fn lock() -> Message {
        Message::Lock(LockMsg {
            uid: 7,
            ticket: 3,
            mode: Mode::Write,
            proposal: 42,
            resources: vec!["a".to_string(), "b".to_string()],
        })
    }

    #[test]
    fn round_trips_floor_messages_with_incarnation_and_standing() {
        for m in [
            Message::FloorQuery { qid: 9, incarnation: u64::MAX },
            Message::FloorReply { qid: 9, floor: None, standing: Standing::Fresh, incarnation: 5 },
            Message::FloorReply { qid: 9, floor: Some(3), standing: Standing::BootedWithYou, incarnation: 6 },
            Message::FloorReply { qid: 9, floor: Some(3), standing: Standing::History, incarnation: u64::MAX },
        ] {
            assert_eq!(decode(&encode(&m), 1024), Ok(m));
        }
    }

    #[test]
    fn round_trips_a_revocation() {
        for m in [Message::Revoked { uid: 0 }, Message::Revoked { uid: u64::MAX }] {
            assert_eq!(decode(&encode(&m), 1024), Ok(m));
        }
    }

    #[test]
    fn version_one_envelopes_are_refused() {
        let mut bytes = encode(&lock());
        bytes[0] = 1;
        assert_eq!(decode(&bytes, 1024), Err(WireError::UnsupportedVersion(1)));
    }

    #[test]
    fn round_trips_a_lock_request() {
        let bytes = encode(&lock());
        assert_eq!(decode(&bytes, 1024), Ok(lock()));
    }

    #[test]
    fn rejects_oversized_input_before_parsing() {
        let bytes = encode(&lock());
        assert_eq!(decode(&bytes, 3), Err(WireError::TooLarge { len: bytes.len(), limit: 3 }));
    }

    #[test]
    fn rejects_another_protocol_version() {
        let mut bytes = encode(&lock());
        bytes[0] = 9; // version is the first varint
        assert_eq!(decode(&bytes, 1024), Err(WireError::UnsupportedVersion(9)));
    }

    #[test]
    fn owner_indices_beyond_the_largest_cluster_are_malformed() {
        let force = |owner| Message::ForceUnlock { qid: 1, target: crate::ForceTarget::Uid { owner, uid: 2 } };
        assert_eq!(decode(&encode(&force(63)), 1024), Ok(force(63)));
        let mut bytes = encode(&force(63));
        let at = bytes.iter().rposition(|&b| b == 63).expect("owner byte");
        bytes[at] = 64;
        assert_eq!(decode(&bytes, 1024), Err(WireError::Malformed));
    }

    #[test]
    fn rejects_trailing_bytes_and_truncation() {
        let mut bytes = encode(&lock());
        bytes.push(0);
        assert_eq!(decode(&bytes, 1024), Err(WireError::TrailingBytes(1)));
        bytes.truncate(bytes.len() - 3);
        assert_eq!(decode(&bytes, 1024), Err(WireError::Malformed));
    }
}
