//! The accept loop: authenticates inbound connections (a bounded number at once) and hands each to its
//! peer's task, newest first, unless another live node holds the index.

use super::claim::{Claim, Decision};
use super::{Link, Peer, Pending, Reporter, Stats};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;
use tracing::{debug, Level};

/// Most handshakes in progress at once: a flood of connection attempts costs bounded memory.
const MAX_HANDSHAKES: usize = 64;

/// The accepting side's say over who may hold a peer index, handed to [`Link::authenticate`].
///
/// A peer that restarts dials again as a new instance while its old connection may still look alive: the
/// new one replaces it at once. Two live nodes with the same index (a copy-pasted `--id`) would replace each
/// other forever; the second time a displaced instance comes back while the newer connection is still live,
/// that is reported once at ERROR and the index is held off (1 s doubling to 30 s).
pub struct Admit<'a> {
    claims: &'a [Mutex<Claim>],
    reporter: &'a Reporter,
    addr: SocketAddr,
    admitted: Option<(usize, u64)>,
}

impl Admit<'_> {
    /// Claims `peer`'s index for this connection, once the peer proved it. `instance` names the peer's
    /// process (drawn at its start); a link without one passes a number unique to the connection (then a
    /// newer connection always wins). `Err(retry)`: another live node holds the index; refuse the
    /// connection, asking it to wait `retry`.
    pub fn claim(&mut self, peer: usize, instance: u64) -> Result<(), Duration> {
        let addr = self.addr;
        let decision =
            self.claims[peer].lock().unwrap_or_else(|e| e.into_inner()).decide(instance, addr, Instant::now());
        match decision {
            Decision::Welcome { conn } => {
                self.admitted = Some((peer, conn));
                Ok(())
            }
            Decision::Refuse { retry, detected } => {
                match detected {
                    Some((holder, newcomer)) => self.reporter.report(
                        Level::ERROR,
                        format!("duplicate/{peer}"),
                        &format!(
                            "two live nodes claim index {peer}: {holder} and {newcomer} — configuration error \
                             (duplicate --id?); refusing the newcomer for {retry:?}"
                        ),
                    ),
                    None => debug!(%addr, peer, "index held by another live node; refused"),
                }
                Err(retry)
            }
        }
    }
}

pub(super) async fn accept_loop<L: Link>(
    link: Arc<L>,
    peers: Vec<Arc<Peer<L::Conn>>>,
    claims: Arc<[Mutex<Claim>]>,
    stats: Arc<Stats>,
    reporter: Arc<Reporter>,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        // Biased (here and in every select of this crate): the same inputs pick the same branch, which a
        // deterministic simulation of this code needs; a stop goes first so a flood cannot delay it.
        let (incoming, addr) = tokio::select! {
            biased;
            _ = stop.changed() => return,
            a = link.accept() => match a {
                Some(a) => a,
                None => return,
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            reporter.report(
                Level::WARN,
                "busy".into(),
                &format!("too many handshakes in progress; connection from {addr} refused"),
            );
            link.refuse(incoming);
            continue;
        };
        let (link, peers, claims, stats, reporter) =
            (link.clone(), peers.clone(), claims.clone(), stats.clone(), reporter.clone());
        let task = async move {
            let _permit = permit;
            let mut admit = Admit { claims: &claims, reporter: &reporter, addr, admitted: None };
            let conn = link.authenticate(incoming, addr, &mut admit).await;
            match (conn, admit.admitted) {
                (Some(conn), Some((peer, claim))) => peers[peer].newest.put(Pending { conn, addr, claim }),
                (_, admitted) => {
                    if let Some((peer, claim)) = admitted {
                        claims[peer].lock().unwrap_or_else(|e| e.into_inner()).ended(claim);
                    }
                    stats.rejected.fetch_add(1, Ordering::Relaxed);
                }
            }
        };
        tokio::spawn(tracing::Instrument::in_current_span(task));
    }
}
