//! What dsync's tools share: log output and the `--transport` choice.
//!
//! The tools themselves are the `dsync-node` binary (`src/bin/dsync-node.rs`) and the examples `bench`,
//! `floor`, `cluster` and `compare` (the last behind feature `compare`); see the crate's README.

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
