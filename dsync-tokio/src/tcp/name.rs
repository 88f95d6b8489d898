//! A cluster's name as the handshake carries it: bounded, and escaped whenever it is printed.

use super::handshake::MAX_NAME;
use std::fmt;
use std::sync::Arc;

/// A cluster's name, which both sides of a handshake must share (at most [`MAX_NAME`] bytes, no control
/// characters; [`crate::tcp::TcpTransport`] refuses a configuration with another).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ClusterName(Arc<str>);

impl ClusterName {
    /// The name; checked when a transport starts ([`ClusterName::check`]).
    pub fn new(name: impl Into<String>) -> Self {
        ClusterName(Arc::from(name.into()))
    }

    /// The name as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the name can be carried by the handshake: at most [`MAX_NAME`] bytes, no control characters.
    pub fn check(&self) -> Result<(), String> {
        if self.0.len() > MAX_NAME {
            return Err(format!("cluster name {self} is {} bytes long; at most {MAX_NAME} are allowed", self.0.len()));
        }
        if self.0.chars().any(char::is_control) {
            return Err(format!("cluster name {self} contains control characters"));
        }
        Ok(())
    }
}

impl From<&str> for ClusterName {
    fn from(s: &str) -> Self {
        ClusterName::new(s)
    }
}

impl From<String> for ClusterName {
    fn from(s: String) -> Self {
        ClusterName::new(s)
    }
}

impl From<&String> for ClusterName {
    fn from(s: &String) -> Self {
        ClusterName::new(s.as_str())
    }
}

impl fmt::Display for ClusterName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&escape_name(self.0.as_bytes()))
    }
}

impl fmt::Debug for ClusterName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A name for a log line: quoted, at most [`MAX_NAME`] bytes (then `…`), every byte that is not printable
/// ASCII escaped, so a peer cannot inject lines, terminal sequences or lookalike text into our logs.
pub fn escape_name(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() + 2);
    s.push('"');
    for &c in b.iter().take(MAX_NAME) {
        s.extend(std::ascii::escape_default(c).map(char::from));
    }
    if b.len() > MAX_NAME {
        s.push('…');
    }
    s.push('"');
    s
}

/// The cluster's identity in the handshake, from its name. (Kept under its old name: the handshake now
/// carries the name itself, so that a mismatch can print both.)
pub fn cluster_id(name: &str) -> ClusterName {
    ClusterName::new(name)
}
