//! [`Node`]: the handle_* / poll_* surface of one dsync node, and nothing else.

use crate::config::{Config, ConfigError, Start};
use crate::coordinator::{Coordinator, LockInfo};
use crate::event::{Counters, Event, LockId, QueryId, RequestError, ServingState};
use crate::locker::Locker;
use crate::outbox::{Io, Transmit};
use crate::query::Queries;
use crate::quorum::read_quorum;
use crate::rejoin::{self, Rejoin};
use crate::sweep::Sweep;
use crate::time::Instant;
use crate::timers::Timer;
use crate::wire::WireEntry;
use crate::NodeSet;
use crate::{ForceTarget, Message, Mode, PlantedBug};
use alloc::string::String;
use alloc::vec::Vec;

/// One node of a dsync cluster: a locker (grants it has given) and a coordinator (locks its application
/// asked for), driven entirely by its caller.
///
/// Methods come in four groups: getters; `handle_*` for inputs (a message from a peer, time passing, a
/// peer going up or down, the embedder's acknowledgement of a persisted floor); commands from the
/// application (`lock`, `try_lock`, `unlock`, `cancel`, `query_holders`, `force_unlock`); and `poll_*` for
/// outputs.
/// After any `handle_*` or command call, drain in this order: [`Node::poll_transmit`] until `None`,
/// [`Node::poll_event`] until `None`, then arm a timer for [`Node::poll_timeout`]. Calling
/// [`Node::handle_timeout`] early or twice is harmless. `now` must not go backwards (an earlier value
/// is treated as the latest one seen).
#[derive(Debug)]
pub struct Node {
    cfg: Config,
    now: Instant,
    locker: Locker,
    coord: Coordinator,
    queries: Queries,
    io: Io,
    /// This start's incarnation (PROTOCOL.md §6.5).
    incarnation: u64,
    /// Whether `Event::Serving` was emitted.
    served: bool,
    /// Whether the coordinator may be holding locks back for an undecided bootstrap.
    held_back: bool,
    /// Releasing what earlier incarnations left at the lockers (PROTOCOL.md §6.6).
    sweep: Sweep,
    /// Ending a restart's quarantine early once every peer answered (PROTOCOL.md §6.7).
    rejoin: Rejoin,
}

impl Node {
    /// Starts a node at local time `now`. A [`Start::Restart`] node denies every request during its
    /// quarantine and, without a durable floor, until it has learned the fencing floor from its peers. A
    /// [`Start::Bootstrap`] node first asks every peer whether it has history (PROTOCOL.md §6.5).
    pub fn new(cfg: Config, now: Instant, start: Start) -> Result<Node, ConfigError> {
        cfg.validate()?;
        cfg.validate_start(start)?;
        let mut io = Io::new(cfg.id, cfg.nodes);
        let mut locker = Locker::new(&cfg, now, start);
        let mut queries = Queries::default();
        let incarnation = incarnation_of(cfg.seed);
        if locker.undecided() && cfg.nodes == 1 {
            locker.boot_first(alloc::vec::Vec::new(), &mut io); // nobody to ask: a lone node is a new cluster
        }
        if locker.quarantine_until() > now && locker.quarantine_until() != Instant::MAX {
            io.emit(Event::Quarantined { until: locker.quarantine_until() });
        }
        if locker.needs_floor() {
            queries.start_floor_recovery(&cfg, now, incarnation, locker.undecided(), &mut io);
        }
        locker.request_persist(&mut io);
        let coord = Coordinator::new(&cfg);
        let sweep = Sweep::start(incarnation, &mut io);
        let rejoin = match start {
            Start::Restart { .. } | Start::Bootstrap => Rejoin::start(incarnation, &mut io),
            Start::FirstBoot => Rejoin::none(),
        };
        let (served, held_back) = (false, false);
        let mut node = Node { cfg, now, locker, coord, queries, io, incarnation, served, held_back, sweep, rejoin };
        node.held_back = node.locker.undecided();
        node.check_serving(now);
        Ok(node)
    }

    // ----- getters -----

    /// The configuration this node runs with.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// This node's index.
    #[must_use]
    pub fn id(&self) -> usize {
        self.cfg.id
    }

    /// This start's incarnation: a non-zero number derived from [`Config::seed`] (fresh per start), which
    /// peers use to tell this start from earlier ones of the same node.
    #[must_use]
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// Whether this node's locker serves at `now`, and if not, what it waits for.
    #[must_use]
    pub fn serving_state(&self, now: Instant) -> ServingState {
        let now = self.now.max(now);
        if self.locker.serving(now) {
            return ServingState::Serving;
        }
        let mut peers = NodeSet::all(self.cfg.nodes);
        peers.remove(self.cfg.id);
        if let Some(fresh) = self.queries.boot_fresh() {
            return ServingState::Bootstrapping { fresh, waiting: peers.difference(fresh) };
        }
        let until = self.locker.quarantine_until();
        if now < until {
            return ServingState::Quarantined { until, floor_known: self.locker.floor_known() };
        }
        let (known, unknown) = self.queries.floor_answers();
        ServingState::RecoveringFloor { known, unknown, needed: read_quorum(self.cfg.nodes) }
    }

    /// Counters since start.
    #[must_use]
    pub fn counters(&self) -> &Counters {
        &self.io.counters
    }

    /// Whether this node's locker grants requests at `now` (false during restart quarantine, floor recovery
    /// or an undecided bootstrap; [`Node::serving_state`] says which).
    #[must_use]
    pub fn is_serving(&self, now: Instant) -> bool {
        self.locker.serving(now)
    }

    /// The state of a lock of this node's application, if it is held.
    #[must_use]
    pub fn lock_info(&self, lock: LockId) -> Option<LockInfo> {
        self.coord.info(lock)
    }

    /// Whether the application may act under `lock` at local time `now`: held and within its validity.
    #[must_use]
    pub fn is_valid(&self, lock: LockId, now: Instant) -> bool {
        self.coord.info(lock).is_some_and(|i| now < i.valid_until)
    }

    /// Number of grants this node's locker holds.
    #[must_use]
    pub fn grant_count(&self) -> usize {
        self.locker.grant_count()
    }

    /// This node's locker table at `now`, sorted by (resource, owner, uid).
    #[must_use]
    pub fn grants(&self, now: Instant) -> Vec<WireEntry> {
        self.locker.entries(now, None, usize::MAX).0
    }

    /// The highest fencing token this node's locker has granted or learned.
    #[must_use]
    pub fn fencing_mark(&self) -> u64 {
        self.locker.fencing_max()
    }

    /// Locks of this node's application that are acquiring or backing off.
    #[must_use]
    pub fn pending_count(&self) -> usize {
        self.coord.pending_count()
    }

    /// Checks this node's local invariants (no conflicting grants, outputs address real peers, ...);
    /// the error names the first broken one. For fuzzers and tests; costs `O(grants · resources)`.
    #[doc(hidden)]
    pub fn check_invariants(&self) -> Result<(), String> {
        crate::invariants::check(&self.cfg, self.now, &self.locker, &self.coord, &self.io)
    }

    // ----- handle_* -----

    /// A message from node `from`, already authenticated by the transport. Messages from unknown
    /// indices or claiming to come from this node are counted and ignored.
    pub fn handle_message(&mut self, now: Instant, from: usize, message: Message) {
        let now = self.advance(now);
        self.io.counters.messages_in += 1;
        if from >= self.cfg.nodes || from == self.cfg.id {
            self.io.counters.invalid_messages += 1;
            return;
        }
        // Expire first, so a late timer never lets a refresh revive a grant whose lease already ran out.
        self.locker.expire(now, &mut self.io);
        self.dispatch(now, from, message);
        self.pump(now);
    }

    /// Time has passed: expire grants, end attempts, refresh, retry. Safe to call at any time.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.advance(now);
        self.locker.expire(now, &mut self.io);
        while let Some(timer) = self.io.timers.pop_due(now) {
            match timer {
                Timer::Lock(id) => self.coord.on_timer(id, now, &self.cfg, &self.locker, &mut self.io),
                Timer::Query(id) => self.queries.on_timer(id, now, &mut self.io),
                Timer::FloorRetry => self.queries.on_floor_timer(&self.cfg, now, &mut self.io),
            }
        }
        self.pump(now);
    }

    /// The transport (re)connected to `peer`. Nothing waits for a retry timer because of the outage: a
    /// bootstrap or floor recovery asks the peer at once, lock rounds and refreshes in flight send it their
    /// request, and locks backing off for want of a quorum retry now.
    pub fn handle_peer_up(&mut self, now: Instant, peer: usize) {
        let now = self.advance(now);
        if peer >= self.cfg.nodes || peer == self.cfg.id {
            return;
        }
        self.io.down.remove(peer);
        self.queries.on_peer_up(peer, &mut self.io);
        self.sweep.on_peer_up(peer, &mut self.io);
        self.rejoin.on_peer_up(peer, &mut self.io);
        self.coord.on_peer_up(peer, now, &self.cfg, &self.locker, &mut self.io);
        self.pump(now);
    }

    /// The transport lost `peer`: rounds stop waiting for it and count it as a refusal.
    pub fn handle_peer_down(&mut self, now: Instant, peer: usize) {
        let now = self.advance(now);
        if peer >= self.cfg.nodes || peer == self.cfg.id {
            return;
        }
        self.io.down.insert(peer);
        self.locker.forget_waiters_of(peer, now, &mut self.io);
        self.coord.on_peer_down(peer, now, &self.cfg, &self.locker, &mut self.io);
        self.queries.on_peer_down(peer, now, &mut self.io);
        self.pump(now);
    }

    /// The embedder durably stored `floor` (answering [`Event::PersistFloor`]).
    pub fn handle_floor_persisted(&mut self, now: Instant, floor: u64) {
        self.advance(now);
        self.locker.floor_persisted(floor, &mut self.io);
    }

    // ----- commands -----

    /// Asks for a lock on `resources` (sorted and deduplicated here) in `mode`, giving up at `deadline`
    /// (`None`: keep trying). The outcome arrives as [`Event::Acquired`] or [`Event::Failed`].
    pub fn lock<I, S>(
        &mut self,
        now: Instant,
        mode: Mode,
        resources: I,
        deadline: Option<Instant>,
    ) -> Result<LockId, RequestError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let now = self.advance(now);
        let resources: Vec<String> = resources.into_iter().map(Into::into).collect();
        let id = self.coord.lock(now, mode, resources, deadline, false, &self.cfg, &self.locker, &mut self.io)?;
        self.pump(now);
        Ok(id)
    }

    /// Tries `resources` in `mode` once, without waiting: the outcome arrives as [`Event::Acquired`], or as
    /// [`Event::Failed`] with [`crate::FailReason::Contended`] (others hold or wait for them, and a quorum answered),
    /// [`crate::FailReason::NoQuorum`] (a quorum could not answer or grant; at once while a bootstrap is undecided)
    /// or [`crate::FailReason::Overloaded`]. It never backs off; an attempt ends as soon as its outcome is decided,
    /// at the latest after `attempt_timeout`. Quick re-proposals after a stale fencing token still happen.
    pub fn try_lock<I, S>(&mut self, now: Instant, mode: Mode, resources: I) -> Result<LockId, RequestError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let now = self.advance(now);
        let resources: Vec<String> = resources.into_iter().map(Into::into).collect();
        let id = self.coord.lock(now, mode, resources, None, true, &self.cfg, &self.locker, &mut self.io)?;
        self.pump(now);
        Ok(id)
    }

    /// Releases a held lock ([`Event::Released`] follows), or cancels one still being acquired (no event).
    /// Returns whether the lock was known.
    pub fn unlock(&mut self, now: Instant, lock: LockId) -> bool {
        let now = self.advance(now);
        let known = self.coord.unlock(lock, now, &self.cfg, &mut self.io);
        self.pump(now);
        known
    }

    /// Abandons a lock in any state without an event; any grant it has is released. Returns whether it was known.
    pub fn cancel(&mut self, now: Instant, lock: LockId) -> bool {
        let now = self.advance(now);
        let known = self.coord.cancel(lock, &mut self.io);
        self.pump(now);
        known
    }

    /// Asks every reachable node which grants it holds (for one resource, or all); answered by [`Event::Holders`].
    pub fn query_holders(&mut self, now: Instant, resource: Option<String>) -> Result<QueryId, RequestError> {
        let now = self.advance(now);
        let id = self.queries.start_holders(&self.cfg, now, resource, &mut self.io)?;
        self.pump(now);
        Ok(id)
    }

    /// Administrative: removes matching grants on every reachable node; answered by [`Event::ForceUnlocked`].
    /// A [`ForceTarget::Uid`] whose owner is not a node of the cluster is refused with
    /// [`RequestError::NoSuchNode`].
    pub fn force_unlock(&mut self, now: Instant, target: ForceTarget) -> Result<QueryId, RequestError> {
        if let ForceTarget::Uid { owner, .. } = target {
            if owner >= self.cfg.nodes {
                return Err(RequestError::NoSuchNode { node: owner, nodes: self.cfg.nodes });
            }
        }
        let now = self.advance(now);
        let id = self.queries.start_force(&self.cfg, now, target, &mut self.io)?;
        self.pump(now);
        Ok(id)
    }

    // ----- poll_* -----

    /// The next message to send.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.io.transmits.pop_front()
    }

    /// The next event for the application.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.io.events.pop_front()
    }

    /// When to call [`Node::handle_timeout`] next; `None` when nothing is waiting.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        // The quarantine's end, so `Event::Serving` is reported on time (only while it is still ahead).
        let until = self.locker.quarantine_until();
        let quarantine = (!self.served && until > self.now && until != Instant::MAX).then_some(until);
        [self.io.timers.next(), self.locker.next_expiry(), quarantine].into_iter().flatten().min()
    }

    // ----- internals -----

    fn advance(&mut self, now: Instant) -> Instant {
        self.now = self.now.max(now);
        self.now
    }

    /// Routes one message to the locker, the coordinator or the query tracker.
    fn dispatch(&mut self, now: Instant, from: usize, message: Message) {
        let (cfg, io, locker) = (&self.cfg, &mut self.io, &mut self.locker);
        match message {
            Message::Lock(m) => {
                self.coord.observe_ticket(m.ticket);
                locker.handle_lock(now, from, m, io)
            }
            Message::Refresh { uid, seq } => locker.handle_refresh(now, from, uid, seq, io),
            Message::Unlock { uid, ticket, reply } => locker.handle_unlock(now, from, uid, ticket, reply, io),
            Message::Query { qid, resource } => locker.handle_query(now, from, qid, resource, io),
            Message::ForceUnlock { qid, target } => locker.handle_force(now, from, qid, target, io),
            Message::FloorQuery { qid, incarnation } => {
                locker.handle_floor_query(cfg, from, qid, incarnation, self.incarnation, io)
            }
            Message::LockReply { uid, outcome, mark } => {
                self.coord.on_lock_reply(from, uid, outcome, mark, now, cfg, locker, io)
            }
            Message::RefreshReply { uid, seq, held } => self.coord.on_refresh_reply(from, uid, seq, held, now, cfg, io),
            Message::UnlockReply { uid, removed } => self.coord.on_unlock_reply(from, uid, removed, io),
            Message::Wake { ticket } => self.coord.on_wake(ticket, now, cfg, locker, io),
            Message::QueryReply { qid, entries, .. } if self.sweep.owns(qid) => {
                let coord = &self.coord;
                let all = cfg.bug(PlantedBug::ReleaseOwnLiveGrants);
                let released = self.sweep.on_reply(from, &entries, |uid| coord.issued(uid), all, io);
                io.counters.dead_grants_released += released;
            }
            Message::QueryReply { qid, entries, truncated } => {
                self.queries.on_query_reply(from, qid, entries, truncated, io)
            }
            Message::ForceUnlockReply { qid, removed } => self.queries.on_force_reply(from, qid, removed, io),
            Message::FloorReply { qid, floor, standing, incarnation } => {
                self.queries.on_floor_reply(from, qid, floor, standing, incarnation, now, cfg, locker, io)
            }
            Message::Rejoin { qid } => {
                let holds = self.coord.on_rejoin(from, now, cfg, locker, io);
                io.send(from, rejoin::reply(qid, holds, cfg.limits.max_message_size));
            }
            Message::RejoinReply { qid, holds, complete } => self.rejoin.on_reply(from, qid, holds, complete, io),
            Message::Revoked { uid } => self.coord.on_revoked(from, uid, now, cfg, locker, io),
        }
    }

    /// Delivers messages this node sent to itself until none are left; then lets locks held back by an
    /// undecided bootstrap go once it decided, and reports when the locker starts serving.
    fn pump(&mut self, now: Instant) {
        loop {
            while let Some(message) = self.io.loopback.pop_front() {
                self.dispatch(now, self.cfg.id, message);
            }
            if self.rejoin.ready(self.cfg.nodes, self.cfg.id, self.cfg.bug(PlantedBug::RejoinOnQuorum))
                && !self.locker.undecided()
            {
                let holds = self.rejoin.finish();
                let reinstall = !self.cfg.bug(PlantedBug::RejoinWithoutReinstall);
                if self.locker.rejoin(now, holds, reinstall) {
                    self.io.counters.rejoins += 1;
                }
            }
            if self.held_back && !self.locker.undecided() {
                self.held_back = false;
                self.coord.on_gate_open(now, &self.cfg, &self.locker, &mut self.io);
                continue;
            }
            break;
        }
        self.check_serving(now);
    }

    /// Emits `Event::Serving` the first time the locker serves.
    fn check_serving(&mut self, now: Instant) {
        if !self.served && self.locker.serving(now) {
            self.served = true;
            self.io.emit(Event::Serving);
        }
    }
}

/// A non-zero incarnation from the start's seed (mixed, so nearby seeds give unrelated incarnations).
fn incarnation_of(seed: u64) -> u64 {
    match crate::rng::mix64(seed ^ 0x696e_6361_726e) {
        0 => 1,
        x => x,
    }
}
