//! Typed errors of the async API.

use dsync_core::{FailReason, RequestError};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Why a lock could not be acquired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LockError {
    /// The deadline passed while others held or reserved the resources.
    Timeout,
    /// An immediate attempt ([`crate::Mutex::try_lock`], `try_read`, `try_write`) found the resources held
    /// or reserved by others. A quorum of nodes answered; retrying later may succeed.
    WouldBlock,
    /// The deadline passed (or an immediate attempt ended) while a quorum of serving nodes could not be
    /// reached: peers down or partitioned, or still starting (quarantine, floor recovery, bootstrap).
    NoQuorum,
    /// Too many requests are waiting on this node, or lockers' tables are full.
    Overloaded,
    /// The node is shutting down or has shut down.
    ShutDown,
    /// The request is invalid (no resources, too many, a name too long).
    Invalid(RequestError),
}

impl fmt::Display for LockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::Timeout => f.write_str("timed out waiting for the lock: others held it"),
            LockError::WouldBlock => f.write_str("the lock is held or reserved by others"),
            LockError::NoQuorum => f.write_str("no quorum of serving nodes reachable"),
            LockError::Overloaded => f.write_str("overloaded: too many requests waiting"),
            LockError::ShutDown => f.write_str("the dsync node has shut down"),
            LockError::Invalid(e) => write!(f, "invalid lock request: {e}"),
        }
    }
}

impl std::error::Error for LockError {}

impl From<FailReason> for LockError {
    fn from(r: FailReason) -> Self {
        match r {
            FailReason::Timeout => LockError::Timeout,
            FailReason::Contended => LockError::WouldBlock,
            FailReason::NoQuorum => LockError::NoQuorum,
            FailReason::Overloaded => LockError::Overloaded,
            _ => LockError::Timeout,
        }
    }
}

impl From<RequestError> for LockError {
    fn from(e: RequestError) -> Self {
        match e {
            RequestError::Overloaded => LockError::Overloaded,
            other => LockError::Invalid(other),
        }
    }
}

/// Why a node could not start. Every variant names the address, path or setting involved, and keeps the
/// underlying error as its [`std::error::Error::source`].
#[derive(Debug)]
#[non_exhaustive]
pub enum StartError {
    /// The core refused the configuration; the message gives the values and the fix.
    Config(dsync_core::ConfigError),
    /// The peer list does not match the cluster size or this node's index, or names an address twice.
    Peers(String),
    /// No cluster secret was given, or it is empty: every connection's handshake proves it, so a node
    /// without one would let anybody who can reach its port join the cluster.
    MissingSecret,
    /// Two settings contradict each other (for example an index set through `configure` that differs from
    /// the builder's, or an explicit start mode together with a state directory).
    Conflict(String),
    /// The listener could not be bound to this address (in use, not local, no permission).
    Bind {
        /// The address from the peer list (or the given listener's).
        addr: SocketAddr,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The state directory (or a file in it) could not be created, read or written, or belongs to another
    /// node or cluster.
    StateDir {
        /// The directory or file.
        path: PathBuf,
        /// What went wrong, and what to do.
        problem: String,
        /// The operating system's error, if any.
        source: Option<std::io::Error>,
    },
    /// A 1-node cluster without a state directory cannot restart safely (it has no peer to learn its
    /// fencing floor from).
    NeedsStateDir,
    /// Another I/O error (entropy for seeds, transport set-up).
    Io(std::io::Error),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Config(e) => write!(f, "invalid configuration: {e}"),
            StartError::Peers(e) => write!(f, "invalid peer list: {e}"),
            StartError::MissingSecret => f.write_str(
                "no cluster secret: set one with NodeBuilder::secret (dsync-node: --secret-file or --secret); \
                 every node of the cluster needs the same non-empty secret",
            ),
            StartError::Conflict(e) => write!(f, "conflicting settings: {e}"),
            StartError::Bind { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
            StartError::StateDir { path, problem, source } => match source {
                Some(s) => write!(f, "state directory {}: {problem}: {s}", path.display()),
                None => write!(f, "state directory {}: {problem}", path.display()),
            },
            StartError::NeedsStateDir => f.write_str(
                "a 1-node cluster needs a state directory: without one a restart would reissue fencing tokens \
                 (NodeBuilder::state_dir, dsync-node --state-dir); for a throwaway node use \
                 NodeBuilder::bootstrap (dsync-node --bootstrap)",
            ),
            StartError::Io(e) => write!(f, "I/O error: {e}"),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::Config(e) => Some(e),
            StartError::Bind { source, .. } => Some(source),
            StartError::StateDir { source: Some(s), .. } => Some(s),
            StartError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<std::io::Error> for StartError {
    fn from(e: std::io::Error) -> Self {
        StartError::Io(e)
    }
}

impl From<dsync_core::ConfigError> for StartError {
    fn from(e: dsync_core::ConfigError) -> Self {
        StartError::Config(e)
    }
}
