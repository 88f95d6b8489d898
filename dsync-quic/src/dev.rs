//! **Development only — not for production.** A throwaway cluster CA and node certificates generated in
//! memory with rcgen, for examples, tests and trying things out.
//!
//! Not for production because the CA key lives in the same process as the nodes (anyone who can read it can
//! mint a certificate for any node index), is never persisted or protected, and nothing here handles
//! revocation or rotation. In production, issue certificates with your own PKI and load them with
//! [`NodeIdentity::from_pem_files`](crate::NodeIdentity::from_pem_files).

use crate::identity::{node_name, NodeIdentity};
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};

/// Instants for certificate validity (the `time` crate's type, as rcgen takes it).
pub use time::OffsetDateTime;

const DAY: time::Duration = time::Duration::DAY;

/// Why a development certificate could not be generated.
pub type DevError = rcgen::Error;

/// A development cluster CA. **Not for production** (see the module docs).
pub struct DevCa {
    cluster: String,
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl std::fmt::Debug for DevCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevCa").field("cluster", &self.cluster).finish_non_exhaustive()
    }
}

impl DevCa {
    /// A fresh self-signed CA for `cluster`.
    pub fn new(cluster: &str) -> Result<Self, DevError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, format!("dsync development CA for {cluster}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key)?;
        Ok(DevCa { cluster: cluster.to_owned(), cert, key })
    }

    /// The cluster this CA was made for.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }

    /// The CA certificate, PEM (what nodes load as their trust anchor).
    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    /// An identity for node `index`, valid from yesterday for ten years.
    pub fn node_identity(&self, index: usize) -> Result<NodeIdentity, DevError> {
        let now = OffsetDateTime::now_utc();
        self.node_identity_valid(index, now - DAY, now + 3650 * DAY)
    }

    /// An identity for node `index`, valid between the two instants (tests use this for expired ones).
    pub fn node_identity_valid(
        &self,
        index: usize,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<NodeIdentity, DevError> {
        self.identity_for_names(vec![node_name(&self.cluster, index)], not_before, not_after)
    }

    /// An identity whose certificate carries exactly `names` (tests use this for malformed identities).
    pub fn identity_for_names(
        &self,
        names: Vec<String>,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<NodeIdentity, DevError> {
        let (cert, key) = self.issue(names, not_before, not_after)?;
        Ok(NodeIdentity::from_der(
            vec![CertificateDer::from(cert.der().to_vec())],
            PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
            vec![self.cert_der()],
        ))
    }

    /// Node `index`'s certificate and key as PEM text (certificate, key), e.g. to write files for
    /// [`NodeIdentity::from_pem_files`](crate::NodeIdentity::from_pem_files).
    pub fn node_pem(&self, index: usize) -> Result<(String, String), DevError> {
        let now = OffsetDateTime::now_utc();
        let (cert, key) = self.issue(vec![node_name(&self.cluster, index)], now - DAY, now + 3650 * DAY)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    fn issue(
        &self,
        names: Vec<String>,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<(rcgen::Certificate, KeyPair), DevError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(names.clone())?;
        params.distinguished_name.push(DnType::CommonName, names.first().cloned().unwrap_or_default());
        params.not_before = not_before;
        params.not_after = not_after;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        Ok((cert, key))
    }
}
