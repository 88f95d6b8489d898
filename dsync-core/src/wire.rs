//! Messages between nodes, in a versioned envelope encoded with postcard.
//!
//! The envelope is `(version: u16, message)`. [`decode`] checks the size limit before parsing, the version
//! before the body, and that no bytes trail the message: any malformed input is a typed [`WireError`].
//! Semantic limits (how many resources, how long a name) are checked by the receiving locker, which answers
//! such a request with [`DenyReason::Invalid`] and changes nothing.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use serde::{Deserialize, Serialize};

/// The wire protocol version this crate speaks.
pub const PROTOCOL_VERSION: u16 = 2;

/// A lock's mode: readers share, writers exclude everybody.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Mode {
    /// Shared with other readers.
    Read,
    /// Exclusive.
    Write,
}

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

/// Why a locker refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DenyReason {
    /// A conflicting grant is held.
    Conflict,
    /// An older waiting lock has a reservation on one of the resources.
    Reserved,
    /// The proposed fencing token is not above the locker's high-water mark (sent back as `mark`).
    StaleToken,
    /// The locker restarted recently and grants nothing until its old grants have surely expired.
    Quarantined,
    /// The locker's table is full.
    Overloaded,
    /// The request breaks a limit or is malformed (empty, unsorted, too many or too long names).
    Invalid,
    /// The locker is waiting for its embedder to persist a fencing floor above the proposal.
    FloorPending,
}

/// A locker's answer to a [`LockMsg`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Granted: the locker holds the grant until released or expired.
    Granted,
    /// Refused, with the reason.
    Denied(DenyReason),
}

/// What a forced unlock removes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ForceTarget {
    /// Every grant that names this resource.
    Resource(String),
    /// The grant of one attempt.
    Uid {
        /// The node that requested it.
        owner: u8,
        /// The attempt's uid.
        uid: u64,
    },
}

/// What a node answering a [`Message::FloorQuery`] says about its own history (PROTOCOL.md §6.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Standing {
    /// The replier is an undecided bootstrapping node: it has granted nothing and sent no lock round.
    Fresh,
    /// The replier decided "first boot", and its decision counted the asker's incarnation given in the
    /// query as `Fresh`.
    BootedWithYou,
    /// Anything else: serving, restarted, quarantined, recovering, or booted without having seen this
    /// incarnation of the asker.
    History,
}

/// One grant as a locker reports it to a holder query.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireEntry {
    /// The resource.
    pub resource: String,
    /// Read or write.
    pub mode: Mode,
    /// The node that holds (or requested) the grant.
    pub owner: u8,
    /// The attempt's uid.
    pub uid: u64,
    /// Milliseconds since the locker granted it.
    pub age_ms: u64,
    /// The fencing token of the grant (for reads: the write mark at grant time).
    pub token: u64,
}

/// Every message of the protocol.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Coordinator → locker: grant this attempt.
    Lock(LockMsg),
    /// Locker → coordinator: the answer, with the locker's fencing mark over the resources.
    LockReply {
        /// The attempt.
        uid: u64,
        /// Granted or why not.
        outcome: Outcome,
        /// For a granted write, the token; otherwise the highest write token the locker knows there.
        mark: u64,
    },
    /// Holder → locker: extend the lease of this grant.
    Refresh {
        /// The grant.
        uid: u64,
        /// The refresh round, echoed back so replies count for the round that was sent.
        seq: u32,
    },
    /// Locker → holder: whether the grant was still held (and is now extended).
    RefreshReply {
        /// The grant.
        uid: u64,
        /// The refresh round.
        seq: u32,
        /// `false`: the locker does not hold it (expired, forced, restarted).
        held: bool,
    },
    /// Holder → locker: drop this grant; with the ticket, the lock is finished and its reservations go too.
    Unlock {
        /// The attempt.
        uid: u64,
        /// Set when the lock is finished (released, cancelled, failed, lost).
        ticket: Option<u64>,
        /// Whether the holder waits for an `UnlockReply` (an explicit release does; a dropped guard, a
        /// failed attempt or a late grant does not, which saves a quarter of a lock's messages).
        reply: bool,
    },
    /// Locker → holder: whether a grant was removed.
    UnlockReply {
        /// The attempt.
        uid: u64,
        /// Whether the locker held it.
        removed: bool,
    },
    /// Locker → waiting coordinator: a resource your lock has reserved became free; retry now.
    Wake {
        /// The waiting lock's ticket.
        ticket: u64,
    },
    /// Who holds what: one resource, or everything.
    Query {
        /// The query.
        qid: u64,
        /// One resource, or all.
        resource: Option<String>,
    },
    /// A locker's entries.
    QueryReply {
        /// The query.
        qid: u64,
        /// Its grants, sorted.
        entries: Vec<WireEntry>,
        /// Whether the locker cut the list at its limit.
        truncated: bool,
    },
    /// Administrative: remove grants regardless of their holder.
    ForceUnlock {
        /// The command.
        qid: u64,
        /// What to remove.
        target: ForceTarget,
    },
    /// How many grants the locker removed.
    ForceUnlockReply {
        /// The command.
        qid: u64,
        /// Grants removed.
        removed: u32,
    },
    /// A restarted or bootstrapping node asks for the highest fencing token its peers know, and their standing.
    FloorQuery {
        /// The query (the asker uses its incarnation, so replies to an earlier start are recognised).
        qid: u64,
        /// The asker's incarnation ([`crate::Node::incarnation`]).
        incarnation: u64,
    },
    /// The answer; `floor` is `None` while the peer does not know its own floor (it is recovering too).
    FloorReply {
        /// The query.
        qid: u64,
        /// The highest token this locker has granted or learned.
        floor: Option<u64>,
        /// What the replier says about its own history, relative to the asker's incarnation.
        standing: Standing,
        /// The replier's incarnation: a bootstrap that boots vouches for the `Fresh` repliers' incarnations.
        incarnation: u64,
    },
}

impl Message {
    /// A short name for logs and counters.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Lock(_) => "lock",
            Message::LockReply { .. } => "lock-reply",
            Message::Refresh { .. } => "refresh",
            Message::RefreshReply { .. } => "refresh-reply",
            Message::Unlock { .. } => "unlock",
            Message::UnlockReply { .. } => "unlock-reply",
            Message::Wake { .. } => "wake",
            Message::Query { .. } => "query",
            Message::QueryReply { .. } => "query-reply",
            Message::ForceUnlock { .. } => "force-unlock",
            Message::ForceUnlockReply { .. } => "force-unlock-reply",
            Message::FloorQuery { .. } => "floor-query",
            Message::FloorReply { .. } => "floor-reply",
        }
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
    fn rejects_trailing_bytes_and_truncation() {
        let mut bytes = encode(&lock());
        bytes.push(0);
        assert_eq!(decode(&bytes, 1024), Err(WireError::TrailingBytes(1)));
        bytes.truncate(bytes.len() - 3);
        assert_eq!(decode(&bytes, 1024), Err(WireError::Malformed));
    }
}
