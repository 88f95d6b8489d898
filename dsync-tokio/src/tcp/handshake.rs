//! The connection handshake: protocol version, cluster name, node indices and a per-process instance nonce,
//! proven by a mutual challenge–response over the shared cluster secret (HMAC-SHA256), and a refusal that
//! tells the other side why when a check fails.
//!
//! ```text
//! dialer   → acceptor : magic, version, dialer, acceptor, nonce_d, instance_d, name_len, name (HELLO)
//! acceptor → dialer   : magic, version, then a record: CHALLENGE acceptor, dialer, nonce_a, mac_a
//!                                                  or REFUSE reason, index, nodes, name_len, name
//! dialer   → acceptor : record: PROOF mac_d, or REFUSE (BadSecret: mac_a did not verify)
//! acceptor → dialer   : record: WELCOME mac_w, DUPLICATE retry_ms mac_u, or REFUSE (BadSecret: mac_d failed)
//! mac_x = HMAC(secret, label_x ‖ version ‖ name_len ‖ name ‖ dialer ‖ acceptor ‖ nonce_d ‖ nonce_a ‖ instance_d)
//! ```
//! Each side proves it knows the secret over both fresh nonces, so a recorded handshake cannot be replayed,
//! and the cluster name, the indices and the dialer's instance are inside the MAC, so a node cannot claim
//! another's index. A refusal before the proofs (another cluster name, an index that does not fit) is not
//! authenticated: it only carries what the refusing node would tell anyone, and the receiver prints its
//! contents escaped and bounded ([`MAX_NAME`] bytes). A wrong secret is reported by whichever side sees a
//! MAC fail, to the other side, so both log the real reason; the verdict after the proofs (welcome, or
//! "another live node holds your index") is authenticated. Every message is bounded and read with a
//! deadline, so a silent or garbage-speaking peer costs one short-lived task. Names are zero-padded and
//! every message after the first is a record of one fixed size ([`RECORD_LEN`]), so the two sides always
//! read exactly what the other wrote, whatever a corrupting relay changes. The secret authenticates the
//! peer, not each later frame and not their confidentiality: across an untrusted network, use the QUIC
//! transport (TLS).

use crate::entropy::Entropy;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub use super::name::{cluster_id, escape_name, ClusterName};

/// The handshake's magic; its last byte is the handshake format (2: named clusters, instances, refusals).
pub const MAGIC: [u8; 6] = *b"DSYNC\x02";
/// The handshake's own version; bumped with `dsync_core::wire::PROTOCOL_VERSION`.
pub const VERSION: u16 = dsync_core::wire::PROTOCOL_VERSION;
/// Longest cluster name, in bytes.
pub const MAX_NAME: usize = 64;
const NONCE: usize = 32;
const MAC: usize = 32;
/// Magic and version, at the start of each side's first message.
pub const HEADER_LEN: usize = 6 + 2;
/// The dialer's HELLO: header, dialer, acceptor, nonce, instance, name length, name zero-padded to
/// [`MAX_NAME`].
pub const HELLO_LEN: usize = HEADER_LEN + 1 + 1 + NONCE + 8 + 1 + MAX_NAME;
/// Every later message is a record of this size: a kind byte and a zero-padded body. One size for all
/// kinds means a corrupted kind byte can never make a side wait for bytes the other will not send.
pub const RECORD_LEN: usize = 1 + 3 + 1 + MAX_NAME;

/// Message kinds (the byte after the header, or the first byte of a later message).
pub mod kind {
    /// The acceptor's challenge.
    pub const CHALLENGE: u8 = 1;
    /// A refusal, with a [`super::reason`].
    pub const REFUSE: u8 = 2;
    /// The dialer's proof.
    pub const PROOF: u8 = 3;
    /// The acceptor's authenticated welcome.
    pub const WELCOME: u8 = 4;
    /// The acceptor's authenticated "another live node holds your index; retry after".
    pub const DUPLICATE: u8 = 5;
}

/// Reasons carried by a REFUSE.
pub mod reason {
    /// Another protocol version (the header says which).
    pub const VERSION: u8 = 1;
    /// Another cluster name (the refusal carries the refuser's name).
    pub const CLUSTER: u8 = 2;
    /// The dialer addressed another index than the acceptor's (the refusal carries the acceptor's index).
    pub const NOT_THIS_NODE: u8 = 3;
    /// The dialer's index is out of the acceptor's peer list (the refusal carries its size).
    pub const OUT_OF_RANGE: u8 = 4;
    /// The dialer's index may not dial the acceptor (only lower indices dial higher ones).
    pub const MAY_NOT_DIAL: u8 = 5;
    /// The dialer reached its own process.
    pub const SELF_DIAL: u8 = 6;
    /// The other side's MAC did not verify: the secrets differ.
    pub const BAD_SECRET: u8 = 7;
}

/// What the two sides must agree on, and who this side is.
#[derive(Clone)]
pub struct Identity {
    /// The cluster's name.
    pub cluster: ClusterName,
    /// This node's index.
    pub me: usize,
    /// The cluster size.
    pub nodes: usize,
    /// The shared secret.
    pub secret: Arc<[u8]>,
    /// A random number drawn once per transport (process): tells two live nodes claiming one index apart,
    /// and recognises a dial that reached this very node.
    pub instance: u64,
    /// Where nonces (and the instance) come from: the operating system unless a simulator says otherwise.
    pub entropy: Entropy,
}

impl Identity {
    /// Node `me` of `nodes` in `cluster`, with a fresh random instance and the operating system's nonces.
    pub fn new(cluster: impl Into<ClusterName>, me: usize, nodes: usize, secret: impl Into<Arc<[u8]>>) -> Self {
        Self::with_entropy(cluster, me, nodes, secret, Entropy::os())
    }

    /// As [`Identity::new`], drawing the instance and every nonce from `entropy`.
    pub fn with_entropy(
        cluster: impl Into<ClusterName>,
        me: usize,
        nodes: usize,
        secret: impl Into<Arc<[u8]>>,
        entropy: Entropy,
    ) -> Self {
        let instance = entropy.next_u64();
        Identity { cluster: cluster.into(), me, nodes, secret: secret.into(), instance, entropy }
    }

    fn nonce(&self) -> [u8; NONCE] {
        let mut n = [0u8; NONCE];
        self.entropy.fill(&mut n);
        n
    }
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("Identity")
            .field("cluster", &self.cluster)
            .field("me", &self.me)
            .field("instance", &format_args!("{:016x}", self.instance))
            .finish_non_exhaustive()
    }
}

/// Why a handshake failed; the transport logs it (rate-limited) and drops the connection.
#[derive(Debug)]
pub enum HandshakeError {
    /// The connection failed or closed mid-handshake, without a refusal.
    Io(std::io::Error),
    /// The first bytes are not a dsync handshake of this format.
    BadMagic,
    /// A message of the right format with an impossible field (unknown kind, over-long name).
    Malformed(&'static str),
    /// The peer speaks another protocol version.
    Version(u16),
    /// The peer belongs to another cluster. `theirs` is escaped and bounded ([`escape_name`]).
    Cluster {
        /// This node's cluster name, escaped.
        ours: String,
        /// The peer's, escaped.
        theirs: String,
    },
    /// The peer claims an index it may not use on this connection (accepting side).
    Index {
        /// The index claimed.
        claimed: usize,
        /// What was acceptable.
        expected: String,
    },
    /// The peer (node `from`) dialed this node as node `to`, but this node has another index (accepting side).
    Misaddressed {
        /// The index the peer claims.
        from: usize,
        /// The index it thought it dialed.
        to: usize,
    },
    /// We dialed node `dialed`, and the node that answered says it is node `answered`.
    WrongNode {
        /// The index our peer list gives the address.
        dialed: usize,
        /// The index the peer says it has.
        answered: usize,
    },
    /// The peer's peer list has `nodes` entries; our index is not among them.
    OutOfRange {
        /// Our index.
        ours: usize,
        /// The peer's cluster size.
        nodes: usize,
    },
    /// The dial reached this node itself.
    SelfDial,
    /// The peer's MAC did not verify: it does not know our secret (or the handshake was forged).
    BadMac,
    /// The peer says our MAC did not verify: we do not know its secret.
    SecretRefused,
    /// Another live node holds the dialer's index; retry after the delay.
    Duplicate {
        /// How long the acceptor refuses that index from other instances.
        retry: Duration,
    },
    /// The peer refused for another reason.
    Refused(String),
}

impl std::error::Error for HandshakeError {}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::Io(e) => write!(f, "connection lost during the handshake: {e}"),
            HandshakeError::BadMagic => f.write_str("not a dsync peer of this handshake format (bad magic)"),
            HandshakeError::Malformed(what) => write!(f, "malformed handshake: {what}"),
            HandshakeError::Version(v) => write!(f, "peer speaks protocol version {v}, this node speaks {VERSION}"),
            HandshakeError::Cluster { ours, theirs } => {
                write!(f, "peer belongs to cluster {theirs}, this node to cluster {ours}")
            }
            HandshakeError::Index { claimed, expected } => {
                write!(f, "peer claims node index {claimed}, expected {expected}")
            }
            HandshakeError::Misaddressed { from, to } => write!(f, "peer (node {from}) dialed us as node {to}"),
            HandshakeError::WrongNode { dialed, answered } => {
                write!(f, "dialed node {dialed}, but the peer says it is node {answered}")
            }
            HandshakeError::OutOfRange { ours, nodes } => {
                write!(f, "the peer has {nodes} nodes in its peer list, so our index {ours} is out of range")
            }
            HandshakeError::SelfDial => f.write_str("the peer is this node itself"),
            HandshakeError::BadMac => f.write_str("the peer does not know our cluster secret (its proof failed)"),
            HandshakeError::SecretRefused => {
                f.write_str("we do not know the secret the peer expects (it rejected our proof)")
            }
            HandshakeError::Duplicate { retry } => {
                write!(f, "another live node holds our index at the peer; retry in {retry:?}")
            }
            HandshakeError::Refused(why) => write!(f, "the peer refused: {why}"),
        }
    }
}

impl From<std::io::Error> for HandshakeError {
    fn from(e: std::io::Error) -> Self {
        HandshakeError::Io(e)
    }
}

/// The transcript both sides authenticate.
struct Transcript<'a> {
    id: &'a Identity,
    dialer: usize,
    acceptor: usize,
    nd: [u8; NONCE],
    na: [u8; NONCE],
    instance_d: u64,
}

impl Transcript<'_> {
    fn mac(&self, label: &[u8]) -> Hmac<Sha256> {
        let id = self.id;
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&id.secret).expect("HMAC takes keys of any length");
        m.update(label);
        m.update(&VERSION.to_le_bytes());
        let name = id.cluster.as_str().as_bytes();
        m.update(&[name.len() as u8]);
        m.update(name);
        m.update(&[self.dialer as u8, self.acceptor as u8]);
        m.update(&self.nd);
        m.update(&self.na);
        m.update(&self.instance_d.to_le_bytes());
        m
    }

    fn tag(&self, label: &[u8]) -> [u8; MAC] {
        self.mac(label).finalize().into_bytes().into()
    }

    fn verify(&self, label: &[u8], tag: &[u8]) -> bool {
        self.mac(label).verify_slice(tag).is_ok()
    }
}

const ACCEPTOR: &[u8] = b"dsync-acceptor-2";
const DIALER: &[u8] = b"dsync-dialer-2";
const WELCOME: &[u8] = b"dsync-welcome-2";
const DUPLICATE: &[u8] = b"dsync-duplicate-2";

fn header() -> Vec<u8> {
    let mut b = Vec::with_capacity(HELLO_LEN);
    b.extend_from_slice(&MAGIC);
    b.extend_from_slice(&VERSION.to_le_bytes());
    b
}

/// `name_len ‖ name`, zero-padded to [`MAX_NAME`].
fn put_name(out: &mut Vec<u8>, name: &ClusterName) {
    let name = name.as_str().as_bytes();
    let name = &name[..name.len().min(MAX_NAME)];
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out.resize(out.len() + MAX_NAME - name.len(), 0);
}

/// The name in `b` (`name_len ‖ name ‖ zero padding`, `1 + MAX_NAME` bytes).
fn get_name(b: &[u8]) -> Result<&[u8], HandshakeError> {
    let len = usize::from(b[0]);
    if len > MAX_NAME {
        return Err(HandshakeError::Malformed("cluster name longer than 64 bytes"));
    }
    if b[1 + len..1 + MAX_NAME].iter().any(|&x| x != 0) {
        return Err(HandshakeError::Malformed("bytes after the cluster name"));
    }
    Ok(&b[1..1 + len])
}

/// The dialer's first message.
pub fn hello(id: &Identity, to: usize, nonce: &[u8; NONCE]) -> Vec<u8> {
    let mut b = header();
    b.push(id.me as u8);
    b.push(to as u8);
    b.extend_from_slice(nonce);
    b.extend_from_slice(&id.instance.to_le_bytes());
    put_name(&mut b, &id.cluster);
    debug_assert_eq!(b.len(), HELLO_LEN);
    b
}

/// Appends a record of `kind` with `body`, zero-padded to [`RECORD_LEN`].
fn record(out: &mut Vec<u8>, kind: u8, body: &[u8]) {
    debug_assert!(body.len() < RECORD_LEN);
    out.push(kind);
    out.extend_from_slice(body);
    out.resize(out.len() + RECORD_LEN - 1 - body.len(), 0);
}

/// Reads a record: its kind and body, checking that the padding after `used(kind)` body bytes is zero.
async fn read_record<S: AsyncRead + Unpin>(s: &mut S) -> Result<(u8, [u8; RECORD_LEN - 1]), HandshakeError> {
    let mut r = [0u8; RECORD_LEN];
    s.read_exact(&mut r).await?;
    let used = match r[0] {
        kind::CHALLENGE => 2 + NONCE + MAC,
        kind::PROOF | kind::WELCOME => MAC,
        kind::DUPLICATE => 4 + MAC,
        // The name's own padding is checked when it is read.
        kind::REFUSE => RECORD_LEN - 1,
        _ => return Err(HandshakeError::Malformed("unknown message kind")),
    };
    if r[1 + used..].iter().any(|&x| x != 0) {
        return Err(HandshakeError::Malformed("nonzero padding"));
    }
    Ok((r[0], r[1..].try_into().expect("record body")))
}

/// Sends a REFUSE (after `out`, the header or nothing) telling the other side why, with what this node
/// would tell anyone, and returns `err`; a failure to send is ignored (the connection is dropped anyway).
async fn refuse<S: AsyncWrite + Unpin>(
    s: &mut S,
    mut out: Vec<u8>,
    id: &Identity,
    why: u8,
    err: HandshakeError,
) -> HandshakeError {
    let mut body = vec![why, id.me as u8, id.nodes as u8];
    put_name(&mut body, &id.cluster);
    record(&mut out, kind::REFUSE, &body);
    if s.write_all(&out).await.is_ok() {
        let _ = s.flush().await;
    }
    err
}

/// The magic of the first handshake format (no names, refusals or instances).
const MAGIC_1: [u8; 6] = *b"DSYNC\x01";

/// Checks magic and version.
fn check_header(b: &[u8]) -> Result<(), HandshakeError> {
    if b[..6] == MAGIC_1 {
        return Err(HandshakeError::Malformed("the peer runs an older dsync (handshake format 1): upgrade it"));
    }
    if b[..6] != MAGIC {
        return Err(HandshakeError::BadMagic);
    }
    let version = u16::from_le_bytes([b[6], b[7]]);
    if version != VERSION {
        return Err(HandshakeError::Version(version));
    }
    Ok(())
}

/// What a refusal's body means for this side; `dialed` is the index we dialed, if we are the dialer.
fn refusal(b: &[u8], id: &Identity, dialed: Option<usize>) -> HandshakeError {
    let (why, index, nodes) = (b[0], usize::from(b[1]), usize::from(b[2]));
    let name = match get_name(&b[3..]) {
        Ok(n) => n,
        Err(e) => return e,
    };
    match why {
        reason::CLUSTER => HandshakeError::Cluster { ours: id.cluster.to_string(), theirs: escape_name(name) },
        reason::NOT_THIS_NODE => HandshakeError::WrongNode { dialed: dialed.unwrap_or(usize::MAX), answered: index },
        reason::OUT_OF_RANGE => HandshakeError::OutOfRange { ours: id.me, nodes },
        reason::MAY_NOT_DIAL => HandshakeError::Refused(format!(
            "node {index} says node {} may not dial it (only lower indices dial higher ones)",
            id.me
        )),
        reason::SELF_DIAL => HandshakeError::SelfDial,
        reason::BAD_SECRET => HandshakeError::SecretRefused,
        reason::VERSION => HandshakeError::Refused("another protocol version".into()),
        other => HandshakeError::Refused(format!("unknown reason {other}")),
    }
}

/// The dialing side: this node connects to `peer`. Ok once the acceptor welcomed us.
pub async fn dial<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    id: &Identity,
    peer: usize,
) -> Result<(), HandshakeError> {
    let nd = id.nonce();
    s.write_all(&hello(id, peer, &nd)).await?;
    s.flush().await?;
    let mut h = [0u8; HEADER_LEN];
    s.read_exact(&mut h).await?;
    check_header(&h)?;
    let c = match read_record(s).await? {
        (kind::CHALLENGE, c) => c,
        (kind::REFUSE, b) => return Err(refusal(&b, id, Some(peer))),
        _ => return Err(HandshakeError::Malformed("unexpected reply to a hello")),
    };
    let (from, to) = (usize::from(c[0]), usize::from(c[1]));
    if from != peer || to != id.me {
        return Err(HandshakeError::WrongNode { dialed: peer, answered: from });
    }
    let t = Transcript {
        id,
        dialer: id.me,
        acceptor: peer,
        nd,
        na: c[2..2 + NONCE].try_into().expect("32 bytes"),
        instance_d: id.instance,
    };
    if !t.verify(ACCEPTOR, &c[2 + NONCE..2 + NONCE + MAC]) {
        return Err(refuse(s, Vec::new(), id, reason::BAD_SECRET, HandshakeError::BadMac).await);
    }
    let mut proof = Vec::with_capacity(RECORD_LEN);
    record(&mut proof, kind::PROOF, &t.tag(DIALER));
    s.write_all(&proof).await?;
    s.flush().await?;
    match read_record(s).await? {
        (kind::WELCOME, m) if t.verify(WELCOME, &m[..MAC]) => Ok(()),
        (kind::DUPLICATE, m) => {
            let mut tag = t.mac(DUPLICATE);
            tag.update(&m[..4]);
            if tag.verify_slice(&m[4..4 + MAC]).is_err() {
                return Err(HandshakeError::BadMac);
            }
            let ms = u32::from_le_bytes(m[..4].try_into().expect("4 bytes"));
            Err(HandshakeError::Duplicate { retry: Duration::from_millis(u64::from(ms)) })
        }
        (kind::REFUSE, b) => Err(refusal(&b, id, Some(peer))),
        (kind::WELCOME, _) => Err(HandshakeError::BadMac),
        _ => Err(HandshakeError::Malformed("unexpected reply to a proof")),
    }
}

/// Who an accepted peer is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hello {
    /// Its node index (proven).
    pub peer: usize,
    /// Its instance ([`Identity::instance`]), inside the MAC.
    pub instance: u64,
}

/// What the accepting side decides about an authenticated peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Use the connection.
    Welcome,
    /// Another live node holds the peer's index: refuse, asking it to wait this long.
    Duplicate(Duration),
}

/// The accepting side; returns the authenticated peer. Only lower indices dial higher ones.
pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, id: &Identity) -> Result<Hello, HandshakeError> {
    accept_with(s, id, |_| Verdict::Welcome).await
}

/// The accepting side, with `decide` choosing, once the peer proved who it is, whether to use the connection.
pub async fn accept_with<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    id: &Identity,
    decide: impl FnOnce(&Hello) -> Verdict,
) -> Result<Hello, HandshakeError> {
    accept_claimed(s, id, decide, &mut None).await
}

/// [`accept_with`], also telling the index the peer claimed (not proven) once its hello was read, for
/// the log line of a failure.
pub(crate) async fn accept_claimed<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    id: &Identity,
    decide: impl FnOnce(&Hello) -> Verdict,
    claimed: &mut Option<usize>,
) -> Result<Hello, HandshakeError> {
    let mut b = [0u8; HELLO_LEN];
    // The header first: a peer of another format or protocol is told so without waiting for more bytes.
    s.read_exact(&mut b[..HEADER_LEN]).await?;
    match check_header(&b) {
        Ok(()) => {}
        Err(e @ HandshakeError::Version(_)) => return Err(refuse(s, header(), id, reason::VERSION, e).await),
        Err(e) => return Err(e),
    }
    s.read_exact(&mut b[HEADER_LEN..]).await?;
    let body = &b[HEADER_LEN..];
    let (from, to) = (usize::from(body[0]), usize::from(body[1]));
    *claimed = Some(from);
    let nd: [u8; NONCE] = body[2..2 + NONCE].try_into().expect("32 bytes");
    let instance = u64::from_le_bytes(body[2 + NONCE..2 + NONCE + 8].try_into().expect("8 bytes"));
    let name = get_name(&body[2 + NONCE + 8..])?;
    if instance == id.instance {
        return Err(refuse(s, header(), id, reason::SELF_DIAL, HandshakeError::SelfDial).await);
    }
    if name != id.cluster.as_str().as_bytes() {
        let e = HandshakeError::Cluster { ours: id.cluster.to_string(), theirs: escape_name(name) };
        return Err(refuse(s, header(), id, reason::CLUSTER, e).await);
    }
    if from >= id.nodes {
        let e = HandshakeError::Index { claimed: from, expected: format!("one of 0..{} (the peer list)", id.nodes) };
        return Err(refuse(s, header(), id, reason::OUT_OF_RANGE, e).await);
    }
    if to != id.me {
        return Err(refuse(s, header(), id, reason::NOT_THIS_NODE, HandshakeError::Misaddressed { from, to }).await);
    }
    if from >= id.me {
        let e = HandshakeError::Index {
            claimed: from,
            expected: format!("below {} (only lower indices dial higher ones)", id.me),
        };
        return Err(refuse(s, header(), id, reason::MAY_NOT_DIAL, e).await);
    }
    let t = Transcript { id, dialer: from, acceptor: id.me, nd, na: id.nonce(), instance_d: instance };
    let mut c = header();
    let mut body = vec![id.me as u8, from as u8];
    body.extend_from_slice(&t.na);
    body.extend_from_slice(&t.tag(ACCEPTOR));
    record(&mut c, kind::CHALLENGE, &body);
    s.write_all(&c).await?;
    s.flush().await?;
    let proof = match read_record(s).await? {
        (kind::PROOF, p) => p,
        (kind::REFUSE, b) => return Err(refusal(&b, id, None)),
        _ => return Err(HandshakeError::Malformed("unexpected reply to a challenge")),
    };
    if !t.verify(DIALER, &proof[..MAC]) {
        return Err(refuse(s, Vec::new(), id, reason::BAD_SECRET, HandshakeError::BadMac).await);
    }
    debug_assert!(id.nodes > from);
    let hello = Hello { peer: from, instance };
    let mut v = Vec::with_capacity(RECORD_LEN);
    let result = match decide(&hello) {
        Verdict::Welcome => {
            record(&mut v, kind::WELCOME, &t.tag(WELCOME));
            Ok(hello)
        }
        Verdict::Duplicate(retry) => {
            let ms = u32::try_from(retry.as_millis()).unwrap_or(u32::MAX).to_le_bytes();
            let mut tag = t.mac(DUPLICATE);
            tag.update(&ms);
            record(&mut v, kind::DUPLICATE, &[&ms[..], &tag.finalize().into_bytes()].concat());
            Err(HandshakeError::Duplicate { retry })
        }
    };
    s.write_all(&v).await?;
    s.flush().await?;
    result
}

#[cfg(test)]
#[path = "handshake_tests.rs"]
mod tests;
