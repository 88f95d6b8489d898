//! The locker: the table of grants this node has given, with expiry, quarantine, reservations and marks.
//!
//! Invariant: at any instant the table holds no two conflicting grants on one resource (a writer excludes
//! everyone else). Everything else in the protocol leans on this plus quorum intersection.
//!
//! Reservations make contention resolve instead of spin: a request denied for a conflict queues its lock
//! as a waiter on the resource, in rank order (lower ticket first). The best live waiter holds the
//! reservation: worse-ranked conflicting requests are denied while it lives, and when the resource frees,
//! the locker wakes that waiter so hand-off does not wait for a backoff. Every locker orders tickets the
//! same way, so after one split round all of them favour the same lock (MinIO's start-up herd), readers
//! cannot starve a waiting writer, and an old waiter outranks newcomers (tickets are Lamport timestamps,
//! so any request issued after a waiter's first attempt reached its node has a higher ticket).
//!
//! No one requesting node can fill the table or the waiter bookkeeping: see [`share`] for the per-origin
//! budgets and why.

mod reserve;
mod resource;
mod share;

use crate::config::{Config, Limits, Start};
use crate::event::Counters;
use crate::fencing::Fencing;
use crate::hash::{new_map, Map};
use crate::outbox::Io;
use crate::time::{Duration, Instant};
use crate::wire::{LockMsg, Outcome, WireEntry};
use crate::PlantedBug;
use crate::{DenyReason, ForceTarget, Message, Mode, Standing};
use alloc::boxed::Box;
use alloc::collections::BTreeSet;
use alloc::string::String;
use alloc::vec::Vec;
use resource::{priority, Res};
use share::Shares;

/// A grant is identified by the requesting node and the attempt's uid.
pub(crate) type Key = (usize, u64);

#[derive(Debug)]
struct Grant {
    mode: Mode,
    /// The lock's ticket, so freeing its resources never wakes the lock itself.
    ticket: u64,
    /// Boxed, not a `Vec`: a grant never grows, and every byte of this struct is paid per held lock.
    resources: Box<[String]>,
    token: u64,
    granted_at: Instant,
    /// `Instant::MAX` when expiry is switched off (planted bug).
    expires: Instant,
}

/// Upper bounds of a holder-query reply's encoding: per entry beyond its resource name (varints of at most
/// 10 bytes for the name's length, uid, age and token, a byte each for mode and owner), and for the rest
/// of the message (version, variant, qid, list length, flag).
const ENTRY_OVERHEAD: usize = 42;
const REPLY_OVERHEAD: usize = 32;

#[derive(Debug)]
pub(crate) struct Locker {
    hold: Duration,
    reservation_ttl: Duration,
    limits: Limits,
    expire_grants: bool,
    check_fencing: bool,
    grants: Map<Key, Grant>,
    res: Map<String, Res>,
    /// Grants by expiry instant, to expire them in order without scanning.
    expiry: BTreeSet<(Instant, Key)>,
    /// The resources each waiting lock has reserved, so finishing the lock clears them.
    reserved: Map<(usize, u64), (Vec<String>, Instant)>,
    /// Per-origin budgets of grant entries and of `reserved`.
    shares: Shares,
    /// When expired entries of `reserved` may next be swept (sweeps are rate-limited: each is O(table)).
    next_sweep: Instant,
    fencing: Fencing,
    /// `Instant::MAX` while a bootstrap is undecided.
    quarantine_until: Instant,
    /// When this incarnation started: a bootstrap that finds history counts its quarantine from here.
    started: Instant,
    boot: Boot,
}

/// Where a [`Start::Bootstrap`] node stands (PROTOCOL.md §6.5); what it answers to `FloorQuery`.
#[derive(Debug)]
enum Boot {
    /// Undecided: it has granted nothing and sent no round.
    Undecided,
    /// Decided first boot; per peer, the incarnation its decision counted as fresh (0: none).
    Booted { vouched: Vec<u64> },
    /// Any other start, or a bootstrap that found history.
    Other,
}

impl Locker {
    pub(crate) fn new(cfg: &Config, now: Instant, start: Start) -> Self {
        let quarantined = matches!(start, Start::Restart { .. }) && !cfg.bug(PlantedBug::NoRestartQuarantine);
        let quarantine_until = match start {
            Start::Bootstrap => Instant::MAX,
            _ if quarantined => now + cfg.effective_quarantine(),
            _ => now,
        };
        let boot = match start {
            Start::Bootstrap => Boot::Undecided,
            _ => Boot::Other,
        };
        let seed = cfg.seed ^ 0x6c6f_636b_6572; // "locker": hash keys differ from the coordinator's
        Locker {
            hold: cfg.locker_hold(),
            reservation_ttl: cfg.reservation_ttl(),
            limits: cfg.limits.clone(),
            expire_grants: !cfg.bug(PlantedBug::NoLockerExpiry),
            check_fencing: !cfg.bug(PlantedBug::NoFencingCheck),
            grants: new_map(seed),
            res: new_map(seed.rotate_left(1)),
            expiry: BTreeSet::new(),
            reserved: new_map(seed.rotate_left(2)),
            shares: Shares::new(cfg.nodes, cfg.limits.max_grants, cfg.limits.max_pending),
            next_sweep: now,
            fencing: Fencing::new(cfg, start),
            quarantine_until,
            started: now,
            boot,
        }
    }

    // ----- getters -----

    pub(crate) fn serving(&self, now: Instant) -> bool {
        self.fencing.known() && now >= self.quarantine_until
    }

    pub(crate) fn needs_floor(&self) -> bool {
        !self.fencing.known()
    }

    /// Whether fencing marks are known (a first boot, a durable floor, or recovered from peers).
    pub(crate) fn floor_known(&self) -> bool {
        self.fencing.known()
    }

    /// A bootstrap that has not decided yet: no grants, and no lock rounds from this node's coordinator.
    pub(crate) fn undecided(&self) -> bool {
        matches!(self.boot, Boot::Undecided)
    }

    /// When the restart quarantine ends (`Instant::MAX` while a bootstrap is undecided).
    pub(crate) fn quarantine_until(&self) -> Instant {
        self.quarantine_until
    }

    pub(crate) fn grant_count(&self) -> usize {
        self.grants.len()
    }

    pub(crate) fn fencing_max(&self) -> u64 {
        self.fencing.max()
    }

    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        self.expiry.first().map(|(at, _)| *at)
    }

    /// The token a coordinator on this node proposes: one above every mark it can see here.
    pub(crate) fn hint(&self, resources: &[String]) -> u64 {
        let floor = self.fencing.floor();
        let mark = resources.iter().map(|r| self.res.get(r).map_or(floor, |s| s.mark)).max().unwrap_or(floor);
        mark.max(floor).saturating_add(1)
    }

    /// This locker's grants (for one resource or all), sorted, at most `limit`; and whether it cut the list.
    pub(crate) fn entries(&self, now: Instant, resource: Option<&str>, limit: usize) -> (Vec<WireEntry>, bool) {
        let entry = |resource: &str, key: &Key, g: &Grant| WireEntry {
            resource: String::from(resource),
            mode: g.mode,
            owner: key.0,
            uid: key.1,
            age_ms: (now - g.granted_at).as_millis() as u64,
            token: g.token,
        };
        let mut out = Vec::new();
        match resource {
            Some(r) => {
                if let Some(st) = self.res.get(r) {
                    for key in st.writer.iter().chain(st.readers().iter()) {
                        if let Some(g) = self.grants.get(key) {
                            out.push(entry(r, key, g));
                        }
                    }
                }
            }
            None => {
                for (key, g) in self.grants.iter() {
                    for r in &g.resources {
                        out.push(entry(r, key, g));
                    }
                }
            }
        }
        out.sort_unstable_by(|a, b| (&a.resource, a.owner, a.uid).cmp(&(&b.resource, b.owner, b.uid)));
        let truncated = out.len() > limit;
        out.truncate(limit);
        (out, truncated)
    }

    // ----- handlers -----

    pub(crate) fn handle_lock(&mut self, now: Instant, from: usize, m: LockMsg, io: &mut Io) {
        let key = (from, m.uid);
        let (outcome, mark) = if let Some(g) = self.grants.get(&key) {
            if g.mode == m.mode && *g.resources == *m.resources {
                (Outcome::Granted, g.token) // a duplicate of a request already granted
            } else {
                // The same uid for another request: a peer reusing uids (restarted with the same seed).
                count_denial(&mut io.counters, DenyReason::Invalid);
                (Outcome::Denied(DenyReason::Invalid), 0)
            }
        } else {
            match self.decide(now, from, &m) {
                Ok(token) => {
                    self.grant(now, key, m, token);
                    io.counters.grants += 1;
                    self.fencing.request_persist(token, io);
                    (Outcome::Granted, token)
                }
                Err((reason, mark)) => {
                    count_denial(&mut io.counters, reason);
                    if reason == DenyReason::FloorPending {
                        self.fencing.request_persist(m.proposal, io);
                    }
                    (Outcome::Denied(reason), mark)
                }
            }
        };
        io.send(from, Message::LockReply { uid: key.1, outcome, mark });
    }

    pub(crate) fn handle_refresh(&mut self, now: Instant, from: usize, uid: u64, seq: u32, io: &mut Io) {
        let key = (from, uid);
        let held = match self.grants.get_mut(&key) {
            Some(g) => {
                if g.expires != Instant::MAX {
                    self.expiry.remove(&(g.expires, key));
                    g.expires = now + self.hold;
                    self.expiry.insert((g.expires, key));
                }
                true
            }
            None => false,
        };
        io.send(from, Message::RefreshReply { uid, seq, held });
    }

    pub(crate) fn handle_unlock(
        &mut self,
        now: Instant,
        from: usize,
        uid: u64,
        ticket: Option<u64>,
        reply: bool,
        io: &mut Io,
    ) {
        let removed = self.remove((from, uid), now, io, ticket.is_some());
        if let Some(ticket) = ticket {
            self.clear_reservations(from, ticket);
        }
        if reply {
            io.send(from, Message::UnlockReply { uid, removed });
        }
    }

    pub(crate) fn handle_query(&mut self, now: Instant, from: usize, qid: u64, resource: Option<String>, io: &mut Io) {
        let (mut entries, mut truncated) = self.entries(now, resource.as_deref(), self.limits.max_query_entries);
        // The reply must fit one message: the asker's decoder refuses a longer one (over TCP, as a protocol
        // violation that drops the connection), and 10 000 entries of 1 KiB names would not fit 4 MiB.
        let budget = self.limits.max_message_size.saturating_sub(REPLY_OVERHEAD);
        let mut used = 0;
        if let Some(cut) = entries.iter().position(|e| {
            used += e.resource.len() + ENTRY_OVERHEAD;
            used > budget
        }) {
            entries.truncate(cut);
            truncated = true;
        }
        io.send(from, Message::QueryReply { qid, entries, truncated });
    }

    pub(crate) fn handle_force(&mut self, now: Instant, from: usize, qid: u64, target: ForceTarget, io: &mut Io) {
        let keys: Vec<Key> = match &target {
            ForceTarget::Resource(r) => self
                .res
                .get(r)
                .map(|st| st.writer.iter().chain(st.readers().iter()).copied().collect())
                .unwrap_or_default(),
            ForceTarget::Uid { owner, uid } => alloc::vec![(*owner, *uid)],
        };
        let mut removed = 0u32;
        for key in keys {
            if self.remove(key, now, io, true) {
                removed += 1;
                // Tell the owner at once (PROTOCOL.md §6.8): its holder stops counting this grant.
                io.send(key.0, Message::Revoked { uid: key.1 });
            }
        }
        io.send(from, Message::ForceUnlockReply { qid, removed });
    }

    /// Answers with our floor and standing. `me`: this node's incarnation, `incarnation`: the asker's.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn handle_floor_query(
        &mut self,
        cfg: &Config,
        from: usize,
        qid: u64,
        incarnation: u64,
        me: u64,
        io: &mut Io,
    ) {
        let floor = self.fencing.known().then(|| self.fencing.max());
        let standing = match &self.boot {
            Boot::Undecided => Standing::Fresh,
            Boot::Booted { vouched } => match vouched.get(from).copied() {
                Some(v) if v != 0 && (v == incarnation || cfg.bug(PlantedBug::VouchAnyIncarnation)) => {
                    Standing::BootedWithYou
                }
                _ => Standing::History,
            },
            Boot::Other => Standing::History,
        };
        io.send(from, Message::FloorReply { qid, floor, standing, incarnation: me });
    }

    /// The bootstrap decided first boot: the floor is 0 and known, no quarantine, and each peer is vouched
    /// for at the incarnation whose `Fresh` answer was counted (`vouched[peer]`, 0: none).
    pub(crate) fn boot_first(&mut self, vouched: Vec<u64>, io: &mut Io) {
        if !self.undecided() {
            return;
        }
        self.boot = Boot::Booted { vouched };
        self.quarantine_until = self.started;
        self.fencing.learn(0);
        self.request_persist(io);
    }

    /// The bootstrap found history: from now on exactly a restart without a durable floor, started at
    /// `started`. Returns when its quarantine ends.
    pub(crate) fn boot_history(&mut self, cfg: &Config) -> Instant {
        if !self.undecided() {
            return self.quarantine_until;
        }
        self.boot = Boot::Other;
        self.quarantine_until = if cfg.bug(PlantedBug::NoRestartQuarantine) {
            self.started
        } else {
            self.started + cfg.effective_quarantine()
        };
        self.quarantine_until
    }

    /// A restart's rejoin completed (PROTOCOL.md §6.7): reinstalls the grants its peers' holders count
    /// (`(holder, lock)` pairs, `proposal` = token) with a fresh lease, and ends the quarantine; returns
    /// whether that cut a quarantine short. Refuses — changing nothing — while a bootstrap is undecided or
    /// after it booted fresh, or if a hold is malformed, two holds (or a hold and
    /// the table) conflict, or a holder's budget would overflow: the quarantine then runs out as usual.
    pub(crate) fn rejoin(&mut self, now: Instant, holds: Vec<(usize, LockMsg)>, reinstall: bool) -> bool {
        // Undecided: wait. Booted fresh: every peer was new, so nothing counts on this node's grants.
        if !matches!(self.boot, Boot::Other) {
            return false;
        }
        if reinstall {
            if !self.reinstallable(&holds) {
                return false;
            }
            for (holder, m) in holds {
                let token = m.proposal;
                self.insert(now, (holder, m.uid), m, token);
            }
        }
        let shortened = self.quarantine_until > now;
        self.quarantine_until = self.quarantine_until.min(now);
        shortened
    }

    /// Whether `holds` can all go into the table: well-formed, new keys, no conflicts, within budgets.
    fn reinstallable(&self, holds: &[(usize, LockMsg)]) -> bool {
        let mut writers: BTreeSet<&str> = BTreeSet::new();
        let mut readers: BTreeSet<&str> = BTreeSet::new();
        let mut per_holder: Vec<usize> = Vec::new();
        for (holder, m) in holds {
            if !self.is_valid_request(m) || self.grants.contains_key(&(*holder, m.uid)) {
                return false;
            }
            if per_holder.len() <= *holder {
                per_holder.resize(*holder + 1, 0);
            }
            per_holder[*holder] += m.resources.len();
            for r in &m.resources {
                let taken = self.res.get(r.as_str()).is_some_and(|st| st.conflicts(m.mode));
                let clash = match m.mode {
                    Mode::Write => writers.contains(r.as_str()) || readers.contains(r.as_str()),
                    Mode::Read => writers.contains(r.as_str()),
                };
                if taken || clash {
                    return false;
                }
                match m.mode {
                    Mode::Write => writers.insert(r),
                    Mode::Read => readers.insert(r),
                };
            }
        }
        self.shares.admits_all(&per_holder)
    }

    /// Drops every grant whose lease ran out by `now`.
    pub(crate) fn expire(&mut self, now: Instant, io: &mut Io) {
        while let Some(&(at, key)) = self.expiry.first() {
            if at > now {
                break;
            }
            if self.remove(key, now, io, true) {
                io.counters.expirations += 1;
            }
        }
    }

    pub(crate) fn learn_floor(&mut self, floor: u64, io: &mut Io) {
        self.fencing.learn(floor);
        self.fencing.request_persist(floor, io);
    }

    pub(crate) fn request_persist(&mut self, io: &mut Io) {
        let max = self.fencing.max();
        self.fencing.request_persist(max, io);
    }

    pub(crate) fn floor_persisted(&mut self, floor: u64, io: &mut Io) {
        self.fencing.persisted(floor);
        self.request_persist(io);
    }

    // ----- internals -----

    /// Whether `m` may be granted now: `Ok(token)` or the reason and the mark to send back.
    fn decide(&mut self, now: Instant, from: usize, m: &LockMsg) -> Result<u64, (DenyReason, u64)> {
        if !self.is_valid_request(m) {
            return Err((DenyReason::Invalid, 0));
        }
        if !self.serving(now) {
            return Err((DenyReason::Quarantined, 0));
        }
        if !self.shares.admits(from, m.resources.len()) {
            return Err((DenyReason::Overloaded, 0));
        }
        let prio = priority(from, m.ticket);
        let floor = self.fencing.floor();
        let (mut conflict, mut reserved, mut mark) = (false, false, floor);
        for r in &m.resources {
            let Some(st) = self.res.get(r) else { continue };
            mark = mark.max(st.mark);
            conflict |= st.conflicts(m.mode);
            if let Some(rv) = st.live_reservation(now) {
                let other = (rv.owner, rv.ticket) != (from, m.ticket);
                let blocks = rv.mode == Mode::Write || m.mode == Mode::Write;
                reserved |= other && blocks && priority(rv.owner, rv.ticket) < prio;
            }
        }
        if conflict || reserved {
            self.reserve(now, from, m, prio);
            return Err((if conflict { DenyReason::Conflict } else { DenyReason::Reserved }, mark));
        }
        match m.mode {
            Mode::Read => Ok(mark),
            Mode::Write => {
                if m.proposal <= mark && self.check_fencing {
                    return Err((DenyReason::StaleToken, mark));
                }
                self.fencing.admits(m.proposal).map_err(|reason| (reason, mark))?;
                Ok(m.proposal)
            }
        }
    }

    fn is_valid_request(&self, m: &LockMsg) -> bool {
        let l = &self.limits;
        !m.resources.is_empty()
            && m.resources.len() <= l.max_resources_per_lock
            && m.resources.iter().all(|r| r.len() <= l.max_resource_len)
            && m.resources.windows(2).all(|w| w[0] < w[1])
    }

    fn grant(&mut self, now: Instant, key: Key, m: LockMsg, token: u64) {
        if m.mode == Mode::Write {
            self.fencing.record(token);
        }
        self.insert(now, key, m, token);
    }

    /// Puts a grant in the table: resources, marks, waiters it satisfies, budget, expiry.
    fn insert(&mut self, now: Instant, key: Key, m: LockMsg, token: u64) {
        let floor = self.fencing.floor();
        for r in &m.resources {
            if !self.res.contains_key(r.as_str()) {
                self.res.insert(r.clone(), Res { mark: floor, ..Res::default() });
            }
            let st = self.res.get_mut(r.as_str()).expect("inserted above");
            match m.mode {
                Mode::Write => {
                    st.writer = Some(key);
                    st.mark = st.mark.max(token);
                }
                Mode::Read => st.crowd().readers.push(key),
            }
            st.forget_waiter(key.0, m.ticket);
        }
        self.forget_reserved(key.0, m.ticket);
        self.shares.take(key.0, m.resources.len());
        let expires = if self.expire_grants { now + self.hold } else { Instant::MAX };
        if expires != Instant::MAX {
            self.expiry.insert((expires, key));
        }
        let ticket = m.ticket;
        self.grants.insert(
            key,
            Grant { mode: m.mode, ticket, resources: m.resources.into(), token, granted_at: now, expires },
        );
        if self.res.len() > self.limits.max_grants {
            self.forget_idle(now);
        }
    }

    /// Removes a grant and wakes the best waiter on each resource it frees. `finished`: the lock is done
    /// (released, expired, forced); otherwise this is a failed attempt's partial grant, which only wakes a
    /// waiter that ranks better than the failed lock — so two locks whose attempts keep failing cannot wake
    /// each other forever without time passing (every such wake goes strictly up the ranking).
    /// Returns whether the grant existed.
    fn remove(&mut self, key: Key, now: Instant, io: &mut Io, finished: bool) -> bool {
        let Some(g) = self.grants.remove(&key) else { return false };
        self.shares.give_back(key.0, g.resources.len());
        if g.expires != Instant::MAX {
            self.expiry.remove(&(g.expires, key));
        }
        for r in &g.resources {
            let Some(st) = self.res.get_mut(r.as_str()) else { continue };
            match g.mode {
                Mode::Write => {
                    if st.writer == Some(key) {
                        st.writer = None;
                    }
                }
                Mode::Read => {
                    if let Some(c) = st.crowd.as_mut() {
                        c.readers.retain(|k| *k != key);
                    }
                    st.tidy();
                }
            }
            if st.is_free() {
                // Wake the best waiter; if it only reads, the readers queued right behind it may share.
                // Not the lock whose grant this was: it released it itself (a failed attempt) and retries on its own.
                let mut live =
                    st.waiters().iter().filter(|w| w.until > now && (w.owner, w.ticket) != (key.0, g.ticket));
                let released = priority(key.0, g.ticket);
                if let Some(first) = live.next().filter(|w| finished || priority(w.owner, w.ticket) < released) {
                    io.send(first.owner, Message::Wake { ticket: first.ticket });
                    if first.mode == Mode::Read {
                        for w in live.take_while(|w| w.mode == Mode::Read) {
                            io.send(w.owner, Message::Wake { ticket: w.ticket });
                        }
                    }
                }
            }
        }
        true
    }

    /// Bounds the resource table: idle entries go, their marks folded into the floor.
    fn forget_idle(&mut self, now: Instant) {
        let fencing = &mut self.fencing;
        self.res.retain(|_, st| {
            let keep = !st.is_free() || st.has_waiters(now);
            if !keep {
                fencing.fold(st.mark);
            }
            keep
        });
    }
}

fn count_denial(c: &mut Counters, reason: DenyReason) {
    c.denials += 1;
    match reason {
        DenyReason::Quarantined => c.quarantined_denials += 1,
        DenyReason::StaleToken => c.stale_token_denials += 1,
        _ => {}
    }
}
