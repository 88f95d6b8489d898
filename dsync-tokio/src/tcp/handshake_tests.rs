//! Unit tests of the handshake.

use super::*;

fn ident(me: usize, secret: &[u8]) -> Identity {
    Identity::new("test", me, 3, secret)
}

async fn run(d: Identity, a: Identity, peer: usize) -> (Result<(), HandshakeError>, Result<Hello, HandshakeError>) {
    let (mut x, mut y) = tokio::io::duplex(1024);
    let dialer = async move { dial(&mut x, &d, peer).await };
    let acceptor = async move { accept(&mut y, &a).await };
    tokio::join!(dialer, acceptor)
}

#[tokio::test]
async fn peers_with_the_same_secret_authenticate_each_other() {
    let d = ident(0, b"s3cret");
    let instance = d.instance;
    let (d, a) = run(d, ident(2, b"s3cret"), 2).await;
    assert!(d.is_ok(), "{d:?}");
    assert_eq!(a.unwrap(), Hello { peer: 0, instance });
}

#[tokio::test]
async fn a_wrong_secret_fails_on_both_sides_with_the_reason() {
    let (d, a) = run(ident(0, b"wrong"), ident(2, b"s3cret"), 2).await;
    assert!(matches!(d, Err(HandshakeError::BadMac)), "{d:?}");
    assert!(matches!(a, Err(HandshakeError::SecretRefused)), "{a:?}");
}

#[tokio::test]
async fn a_peer_claiming_an_index_that_may_not_dial_is_refused() {
    // Node 2 may not dial node 1 (only lower indices dial higher ones).
    let (d, a) = run(ident(2, b"s"), ident(1, b"s"), 1).await;
    assert!(matches!(a, Err(HandshakeError::Index { claimed: 2, .. })), "{a:?}");
    assert!(matches!(d, Err(HandshakeError::Refused(_))), "{d:?}");
}

#[tokio::test]
async fn a_node_at_another_index_says_so() {
    let (d, a) = run(ident(0, b"s"), ident(2, b"s"), 1).await;
    assert!(matches!(d, Err(HandshakeError::WrongNode { dialed: 1, answered: 2 })), "{d:?}");
    assert!(matches!(a, Err(HandshakeError::Misaddressed { from: 0, to: 1 })), "{a:?}");
}

#[tokio::test]
async fn another_cluster_or_version_is_refused_and_both_names_are_known() {
    let other = Identity::new("other\n\x1b[31m", 0, 3, &b"s"[..]);
    let (d, a) = run(other, ident(2, b"s"), 2).await;
    match (&d, &a) {
        (
            Err(HandshakeError::Cluster { ours: o1, theirs: t1 }),
            Err(HandshakeError::Cluster { ours: o2, theirs: t2 }),
        ) => {
            assert_eq!((o1.as_str(), t1.as_str()), (r#""other\n\x1b[31m""#, r#""test""#));
            assert_eq!((o2.as_str(), t2.as_str()), (r#""test""#, r#""other\n\x1b[31m""#));
        }
        _ => panic!("{d:?} {a:?}"),
    }
    let (mut x, mut y) = tokio::io::duplex(1024);
    let mut h = hello(&ident(0, b"s"), 2, &[0; NONCE]);
    h[6] = 99;
    x.write_all(&h).await.unwrap();
    assert!(matches!(accept(&mut y, &ident(2, b"s")).await, Err(HandshakeError::Version(99))));
    // A node of the first handshake format is named as such after 8 bytes (it sends only 50).
    let (mut x, mut y) = tokio::io::duplex(1024);
    x.write_all(&[&b"DSYNC\x01"[..], &[0u8; 44]].concat()).await.unwrap();
    let old = accept(&mut y, &ident(2, b"s")).await;
    assert!(matches!(&old, Err(HandshakeError::Malformed(m)) if m.contains("older dsync")), "{old:?}");
}

#[tokio::test]
async fn a_dial_that_reaches_the_same_instance_is_a_self_dial() {
    let me = ident(0, b"s");
    let mut other = me.clone();
    other.me = 2;
    let (d, a) = run(me, other, 2).await;
    assert!(matches!(d, Err(HandshakeError::SelfDial)), "{d:?}");
    assert!(matches!(a, Err(HandshakeError::SelfDial)), "{a:?}");
}

#[tokio::test]
async fn a_duplicate_verdict_reaches_the_dialer() {
    let (mut x, mut y) = tokio::io::duplex(1024);
    let (d, a) = (ident(0, b"s"), ident(2, b"s"));
    let dialer = async move { dial(&mut x, &d, 2).await };
    let acceptor = async move { accept_with(&mut y, &a, |_| Verdict::Duplicate(Duration::from_millis(1500))).await };
    let (d, a) = tokio::join!(dialer, acceptor);
    assert!(matches!(d, Err(HandshakeError::Duplicate { retry }) if retry == Duration::from_millis(1500)), "{d:?}");
    assert!(matches!(a, Err(HandshakeError::Duplicate { .. })), "{a:?}");
}

#[test]
fn names_are_escaped_and_bounded() {
    assert_eq!(escape_name(b"a\"b\xff"), r#""a\"b\xff""#);
    assert_eq!(escape_name(&[b'x'; 100]).len(), MAX_NAME + 2 + '…'.len_utf8());
    assert!(ClusterName::new("x".repeat(65)).check().is_err());
    assert!(ClusterName::new("a\u{202e}b\n").check().is_err());
    assert!(ClusterName::new("prod-eu").check().is_ok());
}
