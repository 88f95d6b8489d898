//! Typed errors of the async API.

use dsync_core::{FailReason, RequestError};
use std::fmt;

/// Why a lock could not be acquired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockError {
    /// The deadline passed while others held or reserved the resources.
    Timeout,
    /// The deadline passed while a quorum of nodes could not be reached.
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
            LockError::Timeout => f.write_str("timed out waiting for the lock"),
            LockError::NoQuorum => f.write_str("no quorum of nodes reachable"),
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
            FailReason::NoQuorum => LockError::NoQuorum,
            FailReason::Overloaded => LockError::Overloaded,
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

/// Why a node could not start.
#[derive(Debug)]
pub enum StartError {
    /// The core refused the configuration.
    Config(dsync_core::ConfigError),
    /// The peer list does not match the cluster size, or this node's index.
    Peers(String),
    /// Binding the listener, or reading the state directory, failed.
    Io(std::io::Error),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Config(e) => write!(f, "invalid configuration: {e}"),
            StartError::Peers(e) => write!(f, "invalid peer list: {e}"),
            StartError::Io(e) => write!(f, "I/O error: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

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
