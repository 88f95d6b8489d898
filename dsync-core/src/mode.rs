//! The lock mode, shared by requests, events and the wire.

use serde::{Deserialize, Serialize};

/// A lock's mode: readers share, writers exclude everybody.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Mode {
    /// Shared with other readers.
    Read,
    /// Exclusive.
    Write,
}
