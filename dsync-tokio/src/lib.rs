//! `dsync-tokio`: the async lock API and the TCP transport for [`dsync-core`].
//!
//! Not built yet: this crate exists so the workspace layout is visible. The driver task, the
//! `Mutex`/`RwLock` handles, the `Transport` seam and the TCP transport are tracked by their own issue.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
