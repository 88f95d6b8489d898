//! Loading identities from PEM: what a real deployment does, and typed errors for bad input.

use dsync_quic::dev::DevCa;
use dsync_quic::{NodeIdentity, PemError};

fn files(dir: &std::path::Path, ca: &str, cert: &str, key: &str) -> [std::path::PathBuf; 3] {
    let paths = [dir.join("ca.pem"), dir.join("node.pem"), dir.join("node.key")];
    for (p, text) in paths.iter().zip([ca, cert, key]) {
        std::fs::write(p, text).unwrap();
    }
    paths
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("dsync-quic-pem-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn pem_files_load_into_an_identity_naming_its_node() {
    let ca = DevCa::new("prod").unwrap();
    let (cert, key) = ca.node_pem(3).unwrap();
    let dir = tempdir("ok");
    let [c, n, k] = files(&dir, &ca.cert_pem(), &cert, &key);
    let id = NodeIdentity::from_pem_files(&c, &n, &k).expect("valid PEM loads");
    assert_eq!(id.node_index("prod", 5), Some(3));
    assert_eq!(id.node_index("prod", 3), None, "index 3 is outside a 3-node cluster");
    assert_eq!(id.node_index("other", 5), None);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn bad_pem_gets_a_typed_error() {
    let ca = DevCa::new("prod").unwrap();
    let (cert, key) = ca.node_pem(0).unwrap();
    let ca_pem = ca.cert_pem();
    assert!(matches!(
        NodeIdentity::from_pem(b"", cert.as_bytes(), key.as_bytes()),
        Err(PemError::NoCertificate { what: "CA" })
    ));
    assert!(matches!(
        NodeIdentity::from_pem(ca_pem.as_bytes(), b"hello", key.as_bytes()),
        Err(PemError::NoCertificate { what: "node certificate" })
    ));
    assert!(matches!(
        NodeIdentity::from_pem(ca_pem.as_bytes(), cert.as_bytes(), cert.as_bytes()),
        Err(PemError::NoPrivateKey)
    ));
    let broken = ca_pem.replace('M', "!");
    assert!(matches!(
        NodeIdentity::from_pem(broken.as_bytes(), cert.as_bytes(), key.as_bytes()),
        Err(PemError::Malformed { .. })
    ));
    let missing = NodeIdentity::from_pem_files("/nonexistent/ca.pem", "/nonexistent/n.pem", "/nonexistent/k.pem");
    match missing {
        Err(e @ PemError::Io { .. }) => assert!(e.to_string().contains("/nonexistent/ca.pem")),
        other => panic!("expected an I/O error, got {other:?}"),
    }
}

#[test]
fn a_certificate_must_name_exactly_one_node() {
    let ca = DevCa::new("prod").unwrap();
    let now = dsync_quic::dev::OffsetDateTime::now_utc();
    let later = now + std::time::Duration::from_secs(3600);
    let names = |n: &[&str]| ca.identity_for_names(n.iter().map(|s| s.to_string()).collect(), now, later).unwrap();
    assert_eq!(names(&["node-2.prod"]).node_index("prod", 3), Some(2));
    assert_eq!(names(&["node-0.prod", "node-1.prod"]).node_index("prod", 3), None, "two nodes in one cert");
    assert_eq!(names(&["*.prod"]).node_index("prod", 3), None, "a wildcard names every node");
    assert_eq!(names(&["node-1.staging"]).node_index("prod", 3), None, "another cluster");
}
