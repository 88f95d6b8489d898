//! What the node tells its application: events, identifiers, typed errors and counters.

use crate::time::{Duration, Instant};
use crate::Mode;
use crate::NodeSet;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// A lock requested through this node ([`crate::Node::lock`]); unique for the node's lifetime.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LockId(pub u64);

/// A holder query or force-unlock issued through this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QueryId(pub u64);

/// Why an acquisition ended without the lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailReason {
    /// The deadline passed while the resources were held or reserved by others.
    Timeout,
    /// The deadline passed while a quorum of nodes could not be reached.
    NoQuorum,
    /// Lockers refused because their tables are full.
    Overloaded,
    /// A [`crate::Node::try_lock`] attempt was refused because others hold or wait for the resources, while
    /// a quorum of nodes did answer.
    Contended,
}

impl fmt::Display for FailReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FailReason::Timeout => "timed out waiting for the lock",
            FailReason::NoQuorum => "no quorum of nodes reachable",
            FailReason::Overloaded => "lockers overloaded",
            FailReason::Contended => "held or reserved by others",
        })
    }
}

/// A request the node refused on the spot; nothing was sent and nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestError {
    /// A lock must name at least one resource.
    NoResources,
    /// More resources than [`crate::Limits::max_resources_per_lock`].
    TooManyResources {
        /// Resources asked for.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// A resource name longer than [`crate::Limits::max_resource_len`] bytes.
    NameTooLong {
        /// The name's length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// Too many locks waiting ([`crate::Limits::max_pending`]) or queries in flight.
    Overloaded,
    /// A node index outside the cluster.
    NoSuchNode {
        /// The index given.
        node: usize,
        /// The cluster size.
        nodes: usize,
    },
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::NoResources => f.write_str("a lock must name at least one resource"),
            RequestError::TooManyResources { count, limit } => {
                write!(f, "{count} resources exceed the limit of {limit} per lock")
            }
            RequestError::NameTooLong { len, limit } => {
                write!(f, "resource name of {len} bytes exceeds the limit of {limit}")
            }
            RequestError::Overloaded => f.write_str("too many requests waiting on this node"),
            RequestError::NoSuchNode { node, nodes } => {
                write!(f, "node {node} is not in the cluster of {nodes} nodes")
            }
        }
    }
}

impl core::error::Error for RequestError {}

/// One grant, merged across the lockers that reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HolderEntry {
    /// The resource.
    pub resource: String,
    /// Read or write.
    pub mode: Mode,
    /// The node whose application holds (or requested) it.
    pub owner: usize,
    /// The attempt's uid.
    pub uid: u64,
    /// The fencing token.
    pub token: u64,
    /// The oldest age any locker reported.
    pub age: Duration,
    /// The lockers that hold this grant.
    pub granted_by: NodeSet,
}

/// Whether this node's locker grants requests, and if not, what it waits for ([`crate::Node::serving_state`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServingState {
    /// The locker grants requests.
    Serving,
    /// A [`crate::Start::Bootstrap`] node has not decided yet whether it is a first boot: it waits for the
    /// standing of every peer (PROTOCOL.md §6.5).
    Bootstrapping {
        /// Peers whose latest answer was `Fresh` or `BootedWithYou`.
        fresh: NodeSet,
        /// Peers still to answer so (they may be down, unreachable or slow).
        waiting: NodeSet,
    },
    /// Restart quarantine: grants of an earlier incarnation may still be believed until `until`.
    Quarantined {
        /// Local instant at which the quarantine ends.
        until: Instant,
        /// Whether the fencing floor is known already (otherwise floor recovery follows).
        floor_known: bool,
    },
    /// Quarantine over, learning the fencing floor from a read quorum of peers (PROTOCOL.md §7.2).
    RecoveringFloor {
        /// Peers that answered with their floor.
        known: NodeSet,
        /// Peers that answered they do not know theirs (recovering or bootstrapping too).
        unknown: NodeSet,
        /// How many peers must know theirs (a read quorum).
        needed: usize,
    },
}

/// What the application learns; drained with [`crate::Node::poll_event`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The lock is held. Valid until `valid_until` on this node's clock unless refreshed.
    Acquired {
        /// The lock.
        lock: LockId,
        /// The fencing token: pass it to every store the lock protects.
        token: u64,
        /// The nodes that granted it.
        grantors: NodeSet,
        /// Local instant until which the holder may act, absent a successful refresh.
        valid_until: Instant,
    },
    /// The acquisition ended without the lock (every partial grant is being released).
    Failed {
        /// The lock.
        lock: LockId,
        /// Why.
        reason: FailReason,
    },
    /// A held lock can no longer be trusted: stop touching the resource now.
    Lost {
        /// The lock.
        lock: LockId,
    },
    /// An unlock finished: `confirmed` of the `grantors` nodes acknowledged dropping their grant
    /// (the rest expire by lease).
    Released {
        /// The lock.
        lock: LockId,
        /// Lockers that confirmed removal.
        confirmed: usize,
        /// Lockers that had granted it.
        grantors: usize,
    },
    /// A holder query finished.
    Holders {
        /// The query.
        query: QueryId,
        /// Grants merged by (resource, owner, uid), sorted.
        entries: Vec<HolderEntry>,
        /// The nodes that answered.
        answered: NodeSet,
        /// Whether some locker cut its list at its limit.
        truncated: bool,
    },
    /// A force-unlock finished.
    ForceUnlocked {
        /// The command.
        query: QueryId,
        /// Grants removed, summed over lockers.
        removed: usize,
        /// The nodes that answered.
        answered: NodeSet,
    },
    /// Persist `floor` durably, then call [`crate::Node::handle_floor_persisted`]; give it back as
    /// `Start::Restart { durable_floor }` after a restart. Only with `Config::persist_floor`.
    PersistFloor {
        /// The floor to store.
        floor: u64,
    },
    /// This node's locker starts granting requests (emitted once per node: at the first poll for a first
    /// boot, when a restart's quarantine ended and its floor is known, or when a bootstrap decided).
    Serving,
    /// A restart quarantine began (at start for a restart, at the decision for a bootstrap that found
    /// history): this node grants nothing before `until` on its clock.
    Quarantined {
        /// Local instant at which the quarantine ends.
        until: Instant,
    },
}

/// What the node has done, readable at any time without I/O.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Grants this node's locker gave.
    pub grants: u64,
    /// Requests this node's locker denied (any reason).
    pub denials: u64,
    /// Denials because the locker was in its restart quarantine.
    pub quarantined_denials: u64,
    /// Denials because a proposed fencing token was not above the mark.
    pub stale_token_denials: u64,
    /// Grants this node's locker expired because they were not refreshed.
    pub expirations: u64,
    /// Acquisition attempts after the first, over all locks.
    pub retries: u64,
    /// Locks acquired.
    pub acquired: u64,
    /// Acquisitions that failed.
    pub failed: u64,
    /// Held locks lost.
    pub lost: u64,
    /// Grants that arrived for attempts already given up, and were released.
    pub late_grants_released: u64,
    /// Grants of this node's earlier incarnations found at the lockers after a restart, and released.
    pub dead_grants_released: u64,
    /// Restart quarantines ended early because every peer answered the rejoin (PROTOCOL.md §6.7).
    pub rejoins: u64,
    /// Messages handed in by the transport.
    pub messages_in: u64,
    /// Messages queued for the transport.
    pub messages_out: u64,
    /// Messages ignored: from unknown nodes, or invalid for their context.
    pub invalid_messages: u64,
    /// Replies ignored because their round was over.
    pub stale_replies: u64,
}
