//! `dsync-quic`: a QUIC (quinn, mutual TLS) transport for `dsync-tokio`.
//!
//! Not built yet: this crate exists so the workspace layout is visible; it is tracked by its own issue.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
