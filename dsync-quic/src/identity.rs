//! Who a node is: its certificate chain and key, the cluster CA it trusts, and the name its certificate
//! must carry.
//!
//! Node `i` of cluster `c` is the DNS name `node-<i>.<c>` (a subject alternative name of its certificate).
//! The dialer asks TLS for exactly that name, so a server holding another node's certificate fails the
//! handshake; the acceptor reads the name from the client's certificate after TLS verified the chain, and
//! refuses a certificate that names no index, names several, or names one that may not dial it.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::fmt;
use std::path::{Path, PathBuf};

/// Why PEM input could not be used; nothing is guessed.
#[derive(Debug)]
pub enum PemError {
    /// A file could not be read.
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// No `CERTIFICATE` block where one is required (`what` says which input).
    NoCertificate {
        /// `"CA"` or `"node certificate"`.
        what: &'static str,
    },
    /// No private key block (PKCS#8, PKCS#1 or SEC1) in the key input.
    NoPrivateKey,
    /// A block could not be decoded (bad base64, truncated, unexpected structure).
    Malformed {
        /// Which input.
        what: &'static str,
        /// The decoder's message.
        reason: String,
    },
    /// The CA certificate is not usable as a trust anchor.
    BadCa(String),
}

impl fmt::Display for PemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PemError::Io { path, source } => write!(f, "cannot read {}: {source}", path.display()),
            PemError::NoCertificate { what } => write!(f, "no CERTIFICATE block in the {what} PEM"),
            PemError::NoPrivateKey => f.write_str("no private key block in the key PEM"),
            PemError::Malformed { what, reason } => write!(f, "malformed {what} PEM: {reason}"),
            PemError::BadCa(why) => write!(f, "the CA certificate cannot be a trust anchor: {why}"),
        }
    }
}

impl std::error::Error for PemError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PemError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A node's TLS identity: its certificate chain (leaf first), its private key, and the cluster CA
/// certificates it trusts for its peers.
pub struct NodeIdentity {
    /// The node's certificate, then any intermediates.
    pub chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    /// Trust anchors: the cluster CA (or CAs, during a rotation).
    pub roots: Vec<CertificateDer<'static>>,
}

impl Clone for NodeIdentity {
    fn clone(&self) -> Self {
        NodeIdentity { chain: self.chain.clone(), key: self.key.clone_key(), roots: self.roots.clone() }
    }
}

impl fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the key.
        f.debug_struct("NodeIdentity")
            .field("chain", &self.chain.len())
            .field("roots", &self.roots.len())
            .finish_non_exhaustive()
    }
}

impl NodeIdentity {
    /// An identity from DER parts (a chain with the leaf first, its key, the trusted CA certificates).
    pub fn from_der(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        roots: Vec<CertificateDer<'static>>,
    ) -> Self {
        NodeIdentity { chain, key, roots }
    }

    /// Parses PEM text: `ca` holds the cluster CA certificate(s), `cert` the node's certificate (then any
    /// intermediates), `key` its private key. This is how real, externally issued certificates are loaded:
    ///
    /// ```no_run
    /// # fn demo() -> Result<(), dsync_quic::PemError> {
    /// let id = dsync_quic::NodeIdentity::from_pem_files("/etc/dsync/ca.pem", "/etc/dsync/node-2.pem", "/etc/dsync/node-2.key")?;
    /// # let _ = id; Ok(()) }
    /// ```
    /// The node certificate must name `node-<index>.<cluster>` as a DNS subject alternative name, be valid
    /// for both TLS server and client authentication (or carry no extended key usage), and chain to the CA.
    pub fn from_pem(ca: &[u8], cert: &[u8], key: &[u8]) -> Result<Self, PemError> {
        let roots = certs(ca, "CA")?;
        let chain = certs(cert, "node certificate")?;
        let key = match PrivateKeyDer::from_pem_slice(key) {
            Ok(k) => k,
            Err(rustls::pki_types::pem::Error::NoItemsFound) => return Err(PemError::NoPrivateKey),
            Err(e) => return Err(PemError::Malformed { what: "key", reason: e.to_string() }),
        };
        let mut store = rustls::RootCertStore::empty();
        for r in &roots {
            store.add(r.clone()).map_err(|e| PemError::BadCa(e.to_string()))?;
        }
        Ok(NodeIdentity { chain, key, roots })
    }

    /// [`NodeIdentity::from_pem`] from three files.
    pub fn from_pem_files(
        ca: impl AsRef<Path>,
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<Self, PemError> {
        let read = |p: &Path| std::fs::read(p).map_err(|source| PemError::Io { path: p.to_owned(), source });
        Self::from_pem(&read(ca.as_ref())?, &read(cert.as_ref())?, &read(key.as_ref())?)
    }

    /// The same identity trusting `roots` instead (for example the old and the new CA during a rotation).
    pub fn with_roots(mut self, roots: Vec<CertificateDer<'static>>) -> Self {
        self.roots = roots;
        self
    }

    pub(crate) fn key(&self) -> PrivateKeyDer<'static> {
        self.key.clone_key()
    }

    /// The node index this identity's certificate names in `cluster` of `nodes` nodes, if exactly one.
    pub fn node_index(&self, cluster: &str, nodes: usize) -> Option<usize> {
        self.chain.first().and_then(|leaf| named_index(leaf, cluster, nodes).ok())
    }
}

fn certs(pem: &[u8], what: &'static str) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let mut out = Vec::new();
    for c in CertificateDer::pem_slice_iter(pem) {
        out.push(c.map_err(|e| PemError::Malformed { what, reason: e.to_string() })?);
    }
    if out.is_empty() {
        return Err(PemError::NoCertificate { what });
    }
    Ok(out)
}

/// The DNS name node `index` of `cluster` has in its certificate.
pub fn node_name(cluster: &str, index: usize) -> String {
    format!("node-{index}.{cluster}")
}

/// The TLS server name for node `index`; an error if the cluster name is not a valid DNS name.
pub(crate) fn server_name(cluster: &str, index: usize) -> Result<ServerName<'static>, String> {
    match ServerName::try_from(node_name(cluster, index)) {
        Ok(n @ ServerName::DnsName(_)) => Ok(n),
        _ => Err(format!("cluster name {cluster:?} does not make a DNS name (use letters, digits, '-' and '.')")),
    }
}

/// Which index a (chain-verified) leaf certificate names: exactly one `node-<i>.<cluster>` with `i < nodes`.
pub(crate) fn named_index(leaf: &CertificateDer<'_>, cluster: &str, nodes: usize) -> Result<usize, String> {
    let cert = webpki::EndEntityCert::try_from(leaf).map_err(|e| format!("unparsable certificate: {e}"))?;
    let mut found = None;
    for i in 0..nodes {
        let name = server_name(cluster, i)?;
        if cert.verify_is_valid_for_subject_name(&name).is_ok() {
            if let Some(j) = found {
                return Err(format!("certificate names several nodes ({j} and {i})"));
            }
            found = Some(i);
        }
    }
    found.ok_or_else(|| format!("certificate names no node of cluster {cluster:?} (expected node-<i>.{cluster})"))
}
