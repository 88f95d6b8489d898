//! Rounds that ask every node and merge the answers: holder queries, force-unlocks, and the fencing-floor
//! recovery of a restarted node.

use crate::config::Config;
use crate::event::{Event, HolderEntry, QueryId, RequestError};
use crate::locker::Locker;
use crate::outbox::Io;
use crate::quorum::{read_quorum, NodeSet};
use crate::time::{Duration, Instant};
use crate::timers::Timer;
use crate::wire::{ForceTarget, Message, WireEntry};
use alloc::collections::BTreeMap;
use alloc::string::String;

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

/// Learning the highest fencing token from a read quorum of peers after a restart without durable state.
#[derive(Debug)]
struct FloorRecovery {
    qid: u64,
    answers: NodeSet,
    max: u64,
    armed: Instant,
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

    pub(crate) fn on_query_reply(
        &mut self,
        from: usize,
        qid: u64,
        entries: alloc::vec::Vec<WireEntry>,
        cut: bool,
        io: &mut Io,
    ) {
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
            let key = (e.resource, usize::from(e.owner), e.uid);
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
        let ids: alloc::vec::Vec<QueryId> = self.active.keys().copied().collect();
        for id in ids {
            if let Some(q) = self.active.get_mut(&id) {
                q.asked.remove(peer);
            }
            self.finish_if_complete(id, io);
        }
    }

    fn finish_if_complete(&mut self, id: QueryId, io: &mut Io) {
        if self.active.get(&id).is_some_and(|q| q.asked.0 & !q.answered.0 == 0) {
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

    pub(crate) fn start_floor_recovery(&mut self, cfg: &Config, now: Instant, io: &mut Io) {
        let qid = self.next_qid();
        self.floor = Some(FloorRecovery { qid, answers: NodeSet::EMPTY, max: 0, armed: Instant::MAX });
        self.on_floor_timer(cfg, now, io);
    }

    /// (Re)asks every peer that has not answered yet.
    pub(crate) fn on_floor_timer(&mut self, cfg: &Config, now: Instant, io: &mut Io) {
        let Some(f) = &mut self.floor else { return };
        f.armed = Instant::MAX;
        let mut ask = NodeSet(io.reachable().0 & !f.answers.0);
        ask.remove(io.me);
        io.send_to(ask, Message::FloorQuery { qid: f.qid });
        io.timers.set(Timer::FloorRetry, &mut f.armed, now + cfg.attempt_timeout);
    }

    /// A peer's floor; once a read quorum of peers (this node excluded: it lost its state) answered, their
    /// maximum covers every write token a write quorum accepted before the crash.
    pub(crate) fn on_floor_reply(
        &mut self,
        from: usize,
        qid: u64,
        floor: Option<u64>,
        cfg: &Config,
        locker: &mut Locker,
        io: &mut Io,
    ) {
        let Some(f) = &mut self.floor else { return };
        let Some(value) = floor else { return };
        if f.qid != qid || from == io.me {
            return;
        }
        f.answers.insert(from);
        f.max = f.max.max(value);
        if f.answers.len() >= read_quorum(cfg.nodes) {
            io.timers.set(Timer::FloorRetry, &mut f.armed, Instant::MAX);
            locker.learn_floor(f.max, io);
            self.floor = None;
        }
    }
}
