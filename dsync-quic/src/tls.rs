//! Building quinn's client and server configurations: TLS 1.3 only, the `ring` provider, mutual
//! authentication against the cluster CA, and an ALPN that carries the wire protocol version (so nodes of
//! incompatible versions fail the handshake instead of exchanging frames they cannot read).

use crate::identity::NodeIdentity;
use crate::QuicError;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use std::sync::Arc;

/// The ALPN protocol id: `dsync/<wire protocol version>`.
pub fn alpn() -> Vec<u8> {
    format!("dsync/{}", dsync_core::wire::PROTOCOL_VERSION).into_bytes()
}

/// Newer rustls releases than our lock file's deprecate `ring::default_provider` (ring has no post-quantum key
/// exchange). We keep ring (no C toolchain or cmake needed to build) until we switch providers deliberately,
/// and a user who resolves a newer rustls must not get a warning from our code for it.
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(id: &NodeIdentity) -> Result<Arc<rustls::RootCertStore>, QuicError> {
    let mut store = rustls::RootCertStore::empty();
    for r in &id.roots {
        store.add(r.clone()).map_err(QuicError::Tls)?;
    }
    Ok(Arc::new(store))
}

/// The acceptor's side: presents `id`'s certificate and requires a client certificate that chains to
/// `id`'s CA (which index it names is checked after the handshake).
pub fn server_config(
    id: &NodeIdentity,
    transport: Arc<quinn::TransportConfig>,
) -> Result<quinn::ServerConfig, QuicError> {
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(roots(id)?, provider())
        .build()
        .map_err(|e| QuicError::Config(format!("client verifier: {e}")))?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(QuicError::Tls)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(id.chain.clone(), id.key())
        .map_err(QuicError::Tls)?;
    tls.alpn_protocols = vec![alpn()];
    let crypto = QuicServerConfig::try_from(tls).map_err(|e| QuicError::Config(e.to_string()))?;
    let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    cfg.transport_config(transport);
    Ok(cfg)
}

/// The dialer's side: presents `id`'s certificate and accepts only a server certificate that chains to
/// `id`'s CA and names the server name passed to `connect` (the node index being dialled).
pub fn client_config(
    id: &NodeIdentity,
    transport: Arc<quinn::TransportConfig>,
) -> Result<quinn::ClientConfig, QuicError> {
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(QuicError::Tls)?
        .with_root_certificates(roots(id)?)
        .with_client_auth_cert(id.chain.clone(), id.key())
        .map_err(QuicError::Tls)?;
    tls.alpn_protocols = vec![alpn()];
    let crypto = QuicClientConfig::try_from(tls).map_err(|e| QuicError::Config(e.to_string()))?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(crypto));
    cfg.transport_config(transport);
    Ok(cfg)
}
