//! The messages nodes exchange; [`crate::wire`] encodes them.

use crate::wire::{LockMsg, Outcome, WireEntry};
use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

/// Why a locker refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
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

/// What a forced unlock removes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ForceTarget {
    /// Every grant that names this resource.
    Resource(String),
    /// The grant of one attempt.
    Uid {
        /// The node that requested it (encoded in one byte; decoding refuses indices of 64 and above).
        #[serde(with = "crate::wire::owner")]
        owner: usize,
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
    /// A restarted or bootstrapping node asks which of the peer's locks count it as a grantor, to reinstall
    /// them and skip its quarantine (PROTOCOL.md §6.7). From now on the peer counts no grant of the asker's
    /// previous incarnation.
    Rejoin {
        /// The asker's incarnation.
        qid: u64,
    },
    /// The answer to [`Message::Rejoin`].
    RejoinReply {
        /// The query.
        qid: u64,
        /// The peer's held locks that count the asker as a grantor, each as the `Lock` that would grant it
        /// (`proposal` = the lock's token).
        holds: Vec<LockMsg>,
        /// `false` when the list did not fit one message: the answer cannot end a quarantine.
        complete: bool,
    },
    /// Locker → the owner of a grant it removed because of a [`Message::ForceUnlock`]: the grant
    /// `(recipient, uid)` is gone, stop counting it (PROTOCOL.md §6.8). It can only make the holder lose sooner.
    Revoked {
        /// The removed grant's attempt.
        uid: u64,
    },
}

impl Message {
    /// A short name for logs and counters.
    #[must_use]
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
            Message::Rejoin { .. } => "rejoin",
            Message::RejoinReply { .. } => "rejoin-reply",
            Message::Revoked { .. } => "revoked",
        }
    }
}
