//! Who holds a peer index on the accepting side, and the detection of two live nodes claiming one index.
//!
//! A peer that restarts dials again as a new instance while its old connection may still look alive: the
//! new one must replace it at once. Two live nodes with the same index (a copy-pasted `--id`) look the same
//! the first time, but the displaced one comes straight back while the other's connection is still live,
//! and they would replace each other forever. So: a new instance replaces a live connection once; if the
//! instance it displaced comes back while the newer connection is still live, that is a duplicate — it is
//! reported and refused for a hold-off that grows from [`HOLDOFF_MIN`] to [`HOLDOFF_MAX`], during which
//! any other instance is refused too. A connection that ends frees the index at once.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::time::Instant;

/// First hold-off after a duplicate is detected.
pub(crate) const HOLDOFF_MIN: Duration = Duration::from_secs(1);
/// Largest hold-off.
pub(crate) const HOLDOFF_MAX: Duration = Duration::from_secs(30);
/// How long a displaced instance coming back counts as a duplicate (beyond the current hold-off).
const WINDOW: Duration = Duration::from_secs(10);
/// After this long without a conflict, the hold-off starts again from [`HOLDOFF_MIN`].
const FORGET: Duration = Duration::from_secs(300);

#[derive(Clone, Copy, Debug)]
struct Holder {
    conn: u64,
    instance: u64,
    addr: SocketAddr,
    live: bool,
}

#[derive(Clone, Copy, Debug)]
struct Rival {
    instance: u64,
    seen: Instant,
}

/// What to do with an authenticated connection.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Use it; `conn` names it for [`Claim::ended`].
    Welcome { conn: u64 },
    /// Refuse it for `retry`; `detected` holds (live holder, newcomer) addresses when this is a (renewed)
    /// detection rather than a refusal during a hold-off.
    Refuse { retry: Duration, detected: Option<(SocketAddr, SocketAddr)> },
}

/// One peer index's holder on the accepting side.
#[derive(Debug)]
pub(crate) struct Claim {
    holder: Option<Holder>,
    rival: Option<Rival>,
    holdoff: Duration,
    blocked_until: Option<Instant>,
    next_conn: u64,
}

impl Default for Claim {
    fn default() -> Self {
        Claim { holder: None, rival: None, holdoff: HOLDOFF_MIN, blocked_until: None, next_conn: 0 }
    }
}

impl Claim {
    /// Decides about a connection from `instance` at `addr` that just authenticated as this index.
    pub(crate) fn decide(&mut self, instance: u64, addr: SocketAddr, now: Instant) -> Decision {
        if self.rival.is_some_and(|r| now.duration_since(r.seen) > FORGET) {
            self.rival = None;
            self.holdoff = HOLDOFF_MIN;
        }
        if let Some(h) = self.holder.filter(|h| h.live && h.instance != instance) {
            if let Some(until) = self.blocked_until.filter(|&u| now < u) {
                if let Some(r) = self.rival.as_mut().filter(|r| r.instance == instance) {
                    r.seen = now;
                }
                return Decision::Refuse { retry: until - now, detected: None };
            }
            let back = self
                .rival
                .is_some_and(|r| r.instance == instance && now.duration_since(r.seen) <= self.holdoff + WINDOW);
            if back {
                let retry = self.holdoff;
                self.blocked_until = Some(now + retry);
                self.holdoff = (retry * 2).min(HOLDOFF_MAX);
                self.rival = Some(Rival { instance, seen: now });
                return Decision::Refuse { retry, detected: Some((h.addr, addr)) };
            }
            // A restart whose old connection is not yet seen dead, or the first move of a duplicate.
            self.rival = Some(Rival { instance: h.instance, seen: now });
        }
        self.next_conn += 1;
        self.holder = Some(Holder { conn: self.next_conn, instance, addr, live: true });
        Decision::Welcome { conn: self.next_conn }
    }

    /// The connection `conn` ended (or was never used).
    pub(crate) fn ended(&mut self, conn: u64) {
        if let Some(h) = self.holder.as_mut().filter(|h| h.conn == conn) {
            h.live = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn a_restart_replaces_a_live_connection_at_once() {
        let (mut c, t) = (Claim::default(), Instant::now());
        assert!(matches!(c.decide(1, addr(1), t), Decision::Welcome { .. }));
        assert!(matches!(c.decide(2, addr(2), t), Decision::Welcome { .. }), "the new instance is taken");
        assert!(matches!(c.decide(3, addr(3), t), Decision::Welcome { .. }), "and another restart too");
        assert!(matches!(c.decide(3, addr(4), t), Decision::Welcome { .. }), "the same instance reconnects");
    }

    #[test]
    fn an_alternating_pair_is_refused_with_a_growing_holdoff_until_the_holder_ends() {
        let (mut c, t) = (Claim::default(), Instant::now());
        let Decision::Welcome { .. } = c.decide(1, addr(1), t) else { panic!() };
        let Decision::Welcome { conn } = c.decide(2, addr(2), t) else { panic!() };
        assert_eq!(
            c.decide(1, addr(3), t),
            Decision::Refuse { retry: HOLDOFF_MIN, detected: Some((addr(2), addr(3))) }
        );
        assert!(matches!(c.decide(1, addr(4), t), Decision::Refuse { detected: None, .. }), "during the hold-off");
        assert!(matches!(c.decide(7, addr(4), t), Decision::Refuse { detected: None, .. }), "anyone else too");
        let later = t + HOLDOFF_MIN;
        assert_eq!(
            c.decide(1, addr(5), later),
            Decision::Refuse { retry: HOLDOFF_MIN * 2, detected: Some((addr(2), addr(5))) }
        );
        c.ended(conn);
        assert!(matches!(c.decide(1, addr(6), later), Decision::Welcome { .. }), "a dead holder frees the index");
    }
}
