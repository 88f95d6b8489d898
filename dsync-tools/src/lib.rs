//! What dsync's tools share: log output, the `--transport` choice, secret files, and the admin endpoint.
//!
//! The tools themselves are the `dsync-node` and `dsync-admin` binaries (`src/bin/`) and the examples
//! `bench`, `floor`, `cluster` and `compare` (the last behind feature `compare`); see the crate's README.

pub mod admin;

use std::io::IsTerminal;

/// Sends `tracing` output to stderr, filtered by `RUST_LOG` (or `default` when it is unset), with ANSI colours
/// only when stderr is a terminal.
pub fn init_logging(default: &str) {
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| default.into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// The transport a tool's nodes use (`--transport`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    /// TCP with the cluster secret's authenticated handshake.
    Tcp,
    /// QUIC with mutual TLS (certificates from a development CA made at start: not for production).
    Quic,
}

impl Transport {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Quic => "quic",
        }
    }
}

/// A secret or token file's content with one trailing line break removed, so `echo secret > F` matches
/// `--secret secret`.
pub fn secret_from_file(bytes: &[u8]) -> Vec<u8> {
    let s = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    s.strip_suffix(b"\r").unwrap_or(s).to_vec()
}
