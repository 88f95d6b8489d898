//! Rounds that ask every node and merge the answers: holder queries, force-unlocks, and the fencing-floor
//! recovery of a restarted node.

use crate::config::Config;
use crate::event::{Event, HolderEntry, QueryId, RequestError};
use crate::locker::Locker;
use crate::outbox::Io;
use crate::quorum::{read_quorum, write_quorum};
use crate::time::{Duration, Instant};
use crate::timers::Timer;
use crate::wire::WireEntry;
use crate::NodeSet;
use crate::PlantedBug;
use crate::{ForceTarget, Message, Standing};
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

#[derive(Debug)]
enum Kind {
    Holders { merged: BTreeMap<(String, usize, u64), HolderEntry>, truncated: bool },
    Force { removed: usize },
}

#[derive(Debug)]
struct Query {
    kind: Kind,
    /// Nodes asked (reachable when the query started); the query ends when all answered or at timeout.
    asked: NodeSet,
    answered: NodeSet,
    armed: Instant,
}

/// Learning the highest fencing token from a read quorum of peers after a restart without durable state,
/// and, first, a bootstrap's question whether any peer has history (PROTOCOL.md §6.5).
#[derive(Debug)]
struct FloorRecovery {
    /// This node's incarnation: a reply naming another qid was sent to an earlier start of this node.
    qid: u64,
    /// Peers that answered with a known floor.
    answers: NodeSet,
    /// Peers whose latest answer had no floor.
    unknown: NodeSet,
    max: u64,
    armed: Instant,
    /// While a bootstrap is undecided: the peers whose latest standing is `Fresh` or `BootedWithYou`.
    boot: Option<NodeSet>,
    /// Per peer, the incarnation of its latest `Fresh` answer (0: none), vouched for if we boot.
    fresh_incarnations: Vec<u64>,
}

#[derive(Debug, Default)]
pub(crate) struct Queries {
    next: u64,
    active: BTreeMap<QueryId, Query>,
    floor: Option<FloorRecovery>,
}

impl Queries {
    pub(crate) fn start_holders(
        &mut self,
        cfg: &Config,
        now: Instant,
        resource: Option<String>,
        io: &mut Io,
    ) -> Result<QueryId, RequestError> {
        if let Some(r) = &resource {
            if r.len() > cfg.limits.max_resource_len {
                return Err(RequestError::NameTooLong { len: r.len(), limit: cfg.limits.max_resource_len });
            }
        }
        let kind = Kind::Holders { merged: BTreeMap::new(), truncated: false };
        self.start(cfg, now, kind, |qid| Message::Query { qid, resource }, io)
    }

    pub(crate) fn start_force(
        &mut self,
        cfg: &Config,
        now: Instant,
        target: ForceTarget,
        io: &mut Io,
    ) -> Result<QueryId, RequestError> {
        if let ForceTarget::Resource(r) = &target {
            if r.len() > cfg.limits.max_resource_len {
                return Err(RequestError::NameTooLong { len: r.len(), limit: cfg.limits.max_resource_len });
            }
        }
        self.start(cfg, now, Kind::Force { removed: 0 }, |qid| Message::ForceUnlock { qid, target }, io)
    }

    fn start(
        &mut self,
        cfg: &Config,
        now: Instant,
        kind: Kind,
        message: impl FnOnce(u64) -> Message,
        io: &mut Io,
    ) -> Result<QueryId, RequestError> {
        if self.active.len() >= cfg.limits.max_queries {
            return Err(RequestError::Overloaded);
        }
        let qid = self.next_qid();
        let id = QueryId(qid);
        let asked = io.reachable();
        let mut q = Query { kind, asked, answered: NodeSet::EMPTY, armed: Instant::MAX };
        io.timers.set(Timer::Query(id), &mut q.armed, now + cfg.query_timeout);
        self.active.insert(id, q);
        io.send_to(asked, message(qid));
        Ok(id)
    }

    fn next_qid(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    pub(crate) fn on_query_reply(&mut self, from: usize, qid: u64, entries: Vec<WireEntry>, cut: bool, io: &mut Io) {
        let id = QueryId(qid);
        let Some(Query { kind: Kind::Holders { merged, truncated }, asked, answered, .. }) = self.active.get_mut(&id)
        else {
            io.counters.stale_replies += 1;
            return;
        };
        if !asked.contains(from) || !answered.insert(from) {
            io.counters.stale_replies += 1;
            return;
        }
        *truncated |= cut;
        for e in entries {
            let key = (e.resource, e.owner, e.uid);
            let age = Duration::from_millis(e.age_ms);
            let entry = merged.entry(key.clone()).or_insert_with(|| HolderEntry {
                resource: key.0,
                mode: e.mode,
                owner: key.1,
                uid: key.2,
                token: e.token,
                age,
                granted_by: NodeSet::EMPTY,
            });
            entry.age = entry.age.max(age);
            entry.granted_by.insert(from);
        }
        self.finish_if_complete(id, io);
    }

    pub(crate) fn on_force_reply(&mut self, from: usize, qid: u64, n: u32, io: &mut Io) {
        let id = QueryId(qid);
        let Some(Query { kind: Kind::Force { removed }, asked, answered, .. }) = self.active.get_mut(&id) else {
            io.counters.stale_replies += 1;
            return;
        };
        if !asked.contains(from) || !answered.insert(from) {
            io.counters.stale_replies += 1;
            return;
        }
        *removed += n as usize;
        self.finish_if_complete(id, io);
    }

    pub(crate) fn on_timer(&mut self, id: QueryId, _now: Instant, io: &mut Io) {
        if let Some(q) = self.active.get_mut(&id) {
            q.armed = Instant::MAX;
            self.finish(id, io);
        }
    }

    pub(crate) fn on_peer_down(&mut self, peer: usize, _now: Instant, io: &mut Io) {
        let ids: Vec<QueryId> = self.active.keys().copied().collect();
        for id in ids {
            if let Some(q) = self.active.get_mut(&id) {
                q.asked.remove(peer);
            }
            self.finish_if_complete(id, io);
        }
    }

    fn finish_if_complete(&mut self, id: QueryId, io: &mut Io) {
        if self.active.get(&id).is_some_and(|q| q.asked.is_subset(q.answered)) {
            self.finish(id, io);
        }
    }

    fn finish(&mut self, id: QueryId, io: &mut Io) {
        let Some(mut q) = self.active.remove(&id) else { return };
        io.timers.set(Timer::Query(id), &mut q.armed, Instant::MAX);
        let event = match q.kind {
            Kind::Holders { merged, truncated } => {
                Event::Holders { query: id, entries: merged.into_values().collect(), answered: q.answered, truncated }
            }
            Kind::Force { removed } => Event::ForceUnlocked { query: id, removed, answered: q.answered },
        };
        io.emit(event);
    }

    // ----- floor recovery -----

    /// Starts asking the peers: for their floors, and first (`bootstrap`) for their standing.
    /// `incarnation` is this node's, sent in every query and used as the qid.
    pub(crate) fn start_floor_recovery(
        &mut self,
        cfg: &Config,
        now: Instant,
        incarnation: u64,
        bootstrap: bool,
        io: &mut Io,
    ) {
        self.floor = Some(FloorRecovery {
            qid: incarnation,
            answers: NodeSet::EMPTY,
            unknown: NodeSet::EMPTY,
            max: 0,
            armed: Instant::MAX,
            boot: bootstrap.then_some(NodeSet::EMPTY),
            fresh_incarnations: if bootstrap { alloc::vec![0; cfg.nodes] } else { Vec::new() },
        });
        self.on_floor_timer(cfg, now, io);
    }

    /// (Re)asks every reachable peer whose answer is still needed.
    pub(crate) fn on_floor_timer(&mut self, cfg: &Config, now: Instant, io: &mut Io) {
        let Some(f) = &mut self.floor else { return };
        f.armed = Instant::MAX;
        let ask = io.reachable().difference(f.needless(io.me));
        io.send_to(ask, Message::FloorQuery { qid: f.qid, incarnation: f.qid });
        io.timers.set(Timer::FloorRetry, &mut f.armed, now + cfg.attempt_timeout);
    }

    /// The transport connected to `peer`: ask it now rather than at the next retry.
    pub(crate) fn on_peer_up(&mut self, peer: usize, io: &mut Io) {
        let Some(f) = &self.floor else { return };
        if !f.needless(io.me).contains(peer) {
            io.send(peer, Message::FloorQuery { qid: f.qid, incarnation: f.qid });
        }
    }

    /// A peer's floor and standing. A bootstrap decides on the standings (§6.5); floor recovery ends once a
    /// read quorum of peers (this node excluded: it lost its state) gave a floor, whose maximum covers
    /// every write token a write quorum accepted before the crash.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_floor_reply(
        &mut self,
        from: usize,
        qid: u64,
        floor: Option<u64>,
        standing: Standing,
        incarnation: u64,
        now: Instant,
        cfg: &Config,
        locker: &mut Locker,
        io: &mut Io,
    ) {
        let Some(f) = &mut self.floor else { return };
        if f.qid != qid || from == io.me {
            io.counters.stale_replies += 1;
            return;
        }
        match floor {
            Some(value) => {
                f.answers.insert(from);
                f.unknown.remove(from);
                f.max = f.max.max(value);
            }
            None => {
                if !f.answers.contains(from) {
                    f.unknown.insert(from);
                }
            }
        }
        if let Some(fresh) = &mut f.boot {
            let history = standing == Standing::History && !cfg.bug(PlantedBug::BootstrapIgnoresHistory);
            if history {
                // Someone may rely on grants of an earlier incarnation: continue as a restart from our start.
                f.boot = None;
                let until = locker.boot_history(cfg);
                if until > now {
                    io.emit(Event::Quarantined { until });
                }
            } else {
                fresh.insert(from);
                if let Some(slot) = f.fresh_incarnations.get_mut(from) {
                    *slot = if standing == Standing::Fresh { incarnation } else { 0 };
                }
                let peers = cfg.nodes - 1;
                let needed =
                    if cfg.bug(PlantedBug::BootstrapQuorumOnly) { write_quorum(cfg.nodes).min(peers) } else { peers };
                if fresh.len() >= needed {
                    let vouched = core::mem::take(&mut f.fresh_incarnations);
                    io.timers.set(Timer::FloorRetry, &mut f.armed, Instant::MAX);
                    self.floor = None;
                    locker.boot_first(vouched, io);
                }
                return;
            }
        }
        if f.answers.len() >= read_quorum(cfg.nodes) {
            io.timers.set(Timer::FloorRetry, &mut f.armed, Instant::MAX);
            locker.learn_floor(f.max, io);
            self.floor = None;
        }
    }

    /// While a bootstrap is undecided: the peers that answered `Fresh`/`BootedWithYou` last.
    pub(crate) fn boot_fresh(&self) -> Option<NodeSet> {
        self.floor.as_ref().and_then(|f| f.boot)
    }

    /// Floor recovery in progress: peers that gave a floor, and peers that said they know none.
    pub(crate) fn floor_answers(&self) -> (NodeSet, NodeSet) {
        self.floor.as_ref().map_or((NodeSet::EMPTY, NodeSet::EMPTY), |f| (f.answers, f.unknown))
    }
}

impl FloorRecovery {
    /// Nodes not to ask (again): this node, and peers whose answer is final for what we wait for.
    fn needless(&self, me: usize) -> NodeSet {
        let mut done = match self.boot {
            Some(fresh) => fresh,
            None => self.answers,
        };
        done.insert(me);
        done
    }
}
