//! The harness: a few core nodes, the messages in flight between them, one shared clock, and a
//! well-behaved embedder around each node (drain transmits, then events; acknowledge persisted floors).
//! Every action is applied to one node, then that node's outputs and invariants are checked.

use super::book::Book;
use super::input::{names, Action, Advance, Setup, Tweak};
use dsync_core::wire;
use dsync_core::{Config, Instant, Limits, Mode, Node, RequestError, Start, Transmit};
use dsync_core::{ForceTarget, Message};
use std::time::Duration;

/// Messages remembered for [`super::input::Pick::Seen`].
const SEEN_CAP: usize = 64;

/// One node, its application's book, and the messages it sent that are still in flight.
struct Member {
    node: Node,
    book: Book,
    in_flight: Vec<Transmit>,
    starts: u64,
}

/// The cluster under test.
pub struct Cluster {
    members: Vec<Member>,
    now: Instant,
    persist: bool,
    /// Ids, tickets and tokens seen on the wire, for forged messages to reuse.
    seen: Vec<u64>,
    base: Config,
    acquired: u64,
}

fn config(setup: &Setup) -> Config {
    let n = usize::from(setup.nodes % 5) + 1;
    let mut cfg = Config::new(n, 0);
    // Short timings, so the clock steps the fuzzer can express reach every timer.
    cfg.lease = Duration::from_secs(3);
    cfg.refresh_interval = Duration::from_secs(1);
    cfg.attempt_timeout = Duration::from_millis(200);
    cfg.backoff_min = Duration::from_millis(5);
    cfg.backoff_max = Duration::from_millis(100);
    cfg.query_timeout = Duration::from_millis(200);
    cfg.persist_floor = setup.persist_floor;
    cfg.floor_chunk = 4;
    cfg.seed = setup.seed;
    if setup.tight_limits {
        cfg.limits = Limits {
            max_resources_per_lock: 4,
            max_resource_len: 16,
            max_grants: 6,
            max_pending: 3,
            max_queries: 2,
            max_query_entries: 8,
            // Room for a few query entries only, so lockers must cut their replies to fit.
            max_message_size: 160,
        };
    }
    cfg
}

impl Cluster {
    /// Starts every node of `setup` on first boot.
    pub fn new(setup: &Setup) -> Cluster {
        let base = config(setup);
        let now = Instant::from_millis(1);
        let members = (0..base.nodes)
            .map(|id| {
                let cfg = Config { id, seed: base.seed.wrapping_add(id as u64), ..base.clone() };
                let node = Node::new(cfg, now, Start::FirstBoot).expect("the harness config is valid");
                Member { node, book: Book::default(), in_flight: Vec::new(), starts: 1 }
            })
            .collect();
        let mut cluster = Cluster { members, now, persist: base.persist_floor, seen: Vec::new(), base, acquired: 0 };
        for i in 0..cluster.members.len() {
            cluster.settle(i, None);
        }
        cluster
    }

    /// Locks acquired so far, over all nodes and lifetimes (shows how deep an input got).
    pub fn acquired(&self) -> u64 {
        self.acquired
    }

    fn n(&self) -> usize {
        self.members.len()
    }

    fn idx(&self, node: u8) -> usize {
        usize::from(node) % self.n()
    }

    /// Applies one action and checks the node it touched.
    pub fn apply(&mut self, action: &Action) {
        match *action {
            Action::Deliver { node, pick } => self.deliver(node, pick, true, |m, _| Some(m), None),
            Action::Drop { node, pick } => self.deliver(node, pick, true, |_, _| None, None),
            Action::Duplicate { node, pick } => self.deliver(node, pick, false, |m, _| Some(m), None),
            Action::Misattribute { node, pick, claimed } => {
                self.deliver(node, pick, true, |m, _| Some(m), Some(usize::from(claimed)))
            }
            Action::Tamper { node, pick, tweak } => {
                self.deliver(node, pick, true, move |m, seen| Some(Tweak::apply(tweak, m, seen)), None)
            }
            Action::Inject { to, from, ref msg } => {
                let (to, from) = (self.idx(to), usize::from(from));
                let msg = msg.message(&self.seen);
                self.message(to, from, msg);
            }
            Action::Tick { node, advance } => {
                self.advance(advance);
                self.tick(self.idx(node));
            }
            Action::TickAll { advance } => {
                self.advance(advance);
                for i in 0..self.n() {
                    self.tick(i);
                }
            }
            Action::Lock { node, write, mask, deadline_ms } => self.lock(self.idx(node), write, mask, deadline_ms),
            Action::Unlock { node, pick } => {
                let (i, now) = (self.idx(node), self.now);
                let id = self.members[i].book.pick(pick);
                let before = self.members[i].node.poll_timeout();
                let known = self.members[i].node.unlock(now, id);
                self.members[i].book.unlocked(id, known);
                self.settle(i, Some(before));
            }
            Action::Cancel { node, pick } => {
                let (i, now) = (self.idx(node), self.now);
                let id = self.members[i].book.pick(pick);
                let before = self.members[i].node.poll_timeout();
                let known = self.members[i].node.cancel(now, id);
                self.members[i].book.cancelled(id, known);
                self.settle(i, Some(before));
            }
            Action::Query { node, name } => {
                let resource = name.map(|n| super::input::NAMES[usize::from(n) % 8].to_string());
                self.query(self.idx(node), |node, now| node.query_holders(now, resource));
            }
            Action::ForceResource { node, name } => {
                let target = ForceTarget::Resource(super::input::NAMES[usize::from(name) % 8].to_string());
                self.query(self.idx(node), |node, now| node.force_unlock(now, target));
            }
            Action::ForceUid { node, owner, uid } => {
                let target = ForceTarget::Uid { owner: usize::from(owner), uid: uid.get(&self.seen) };
                self.query(self.idx(node), |node, now| node.force_unlock(now, target));
            }
            Action::PeerUp { node, peer } => {
                let (i, now) = (self.idx(node), self.now);
                let before = self.members[i].node.poll_timeout();
                self.members[i].node.handle_peer_up(now, usize::from(peer));
                self.settle(i, Some(before));
            }
            Action::PeerDown { node, peer } => {
                let (i, now) = (self.idx(node), self.now);
                let before = self.members[i].node.poll_timeout();
                self.members[i].node.handle_peer_down(now, usize::from(peer));
                self.settle(i, Some(before));
            }
            Action::Restart { node, durable } => self.restart(self.idx(node), durable),
            Action::FloorPersisted { node } => {
                let (i, now) = (self.idx(node), self.now);
                let m = &mut self.members[i];
                if let Some(floor) = m.book.floor_requested.take() {
                    m.book.floor_persisted = Some(floor);
                    let before = m.node.poll_timeout();
                    m.node.handle_floor_persisted(now, floor);
                    self.settle(i, Some(before));
                }
            }
        }
    }

    fn advance(&mut self, by: Advance) {
        self.now = self.now + by.duration();
    }

    fn tick(&mut self, i: usize) {
        let now = self.now;
        self.members[i].node.handle_timeout(now);
        self.settle(i, None);
        if let Some(at) = self.members[i].node.poll_timeout() {
            assert!(at > now, "node {i}: after handle_timeout({now:?}) the next timeout {at:?} is already due");
        }
    }

    /// Takes the `pick`-th in-flight message of `node` (removing it when `take`), alters it with `f`
    /// and delivers the result, attributed to `claimed` instead of the real sender when given.
    fn deliver(
        &mut self,
        node: u8,
        pick: u8,
        take: bool,
        f: impl FnOnce(Message, &[u64]) -> Option<Message>,
        claimed: Option<usize>,
    ) {
        let from = self.idx(node);
        let queue = &mut self.members[from].in_flight;
        if queue.is_empty() {
            return;
        }
        let at = usize::from(pick) % queue.len();
        let t = if take { queue.remove(at) } else { queue[at].clone() };
        if let Some(msg) = f(t.message, &self.seen) {
            self.message(t.to, claimed.unwrap_or(from), msg);
        }
    }

    fn message(&mut self, to: usize, from: usize, msg: Message) {
        let now = self.now;
        let before = self.members[to].node.poll_timeout();
        self.members[to].node.handle_message(now, from, msg);
        self.settle(to, Some(before));
    }

    fn lock(&mut self, i: usize, write: bool, mask: u8, deadline_ms: Option<u16>) {
        let now = self.now;
        let mode = if write { Mode::Write } else { Mode::Read };
        let resources = names(mask);
        let deadline = deadline_ms.map(|ms| now + Duration::from_millis(ms.into()));
        let empty = resources.is_empty();
        let before = self.members[i].node.poll_timeout();
        match self.members[i].node.lock(now, mode, resources, deadline) {
            Ok(id) => {
                assert!(!empty, "a lock on no resources was accepted");
                self.members[i].book.issued(id, mode);
            }
            Err(e) => assert_eq!(empty, e == RequestError::NoResources, "lock on {mask:#b} refused with {e:?}"),
        }
        self.settle(i, Some(before));
    }

    fn query<E: std::fmt::Debug>(
        &mut self,
        i: usize,
        f: impl FnOnce(&mut Node, Instant) -> Result<dsync_core::QueryId, E>,
    ) {
        let now = self.now;
        let before = self.members[i].node.poll_timeout();
        if let Ok(id) = f(&mut self.members[i].node, now) {
            self.members[i].book.query_started(id);
        }
        self.settle(i, Some(before));
    }

    fn restart(&mut self, i: usize, durable: bool) {
        let now = self.now;
        let m = &mut self.members[i];
        let durable_floor = if self.persist && durable { m.book.floor_persisted } else { None };
        let cfg = Config { id: i, seed: self.base.seed ^ (m.starts << 32) ^ i as u64, ..self.base.clone() };
        // Every third non-durable restart comes back with a wiped state directory instead.
        let start = if !durable && m.starts % 3 == 2 { Start::Bootstrap } else { Start::Restart { durable_floor } };
        match Node::new(cfg, now, start) {
            Ok(node) => {
                let persisted = m.book.floor_persisted;
                m.node = node;
                m.book = Book::default();
                m.book.floor_persisted = persisted;
                m.starts += 1;
                self.settle(i, None);
            }
            // A lone node cannot learn its floor from peers; the embedder must not start it this way.
            Err(e) => assert!(self.n() == 1 && durable_floor.is_none(), "restart refused: {e}"),
        }
    }

    /// After an input to node `i`: its invariants, then its transmits (each to another real node,
    /// each decodable within the size limit), then its events, then its next timeout. `before`: the
    /// timeout it reported before the input, `None` after a timeout or a start (nothing may be overdue).
    fn settle(&mut self, i: usize, before: Option<Option<Instant>>) {
        let (n, now, persist) = (self.n(), self.now, self.persist);
        let m = &mut self.members[i];
        if let Err(e) = m.node.check_invariants() {
            panic!("node {i}: {e}");
        }
        let limit = m.node.config().limits.max_message_size;
        while let Some(t) = m.node.poll_transmit() {
            assert!(t.to < n && t.to != i, "node {i} of {n} sent to {}: {:?}", t.to, t.message);
            let bytes = wire::encode(&t.message);
            assert_eq!(wire::decode(&bytes, limit).as_ref(), Ok(&t.message), "node {i} sent an undecodable message");
            remember(&mut self.seen, &t.message);
            m.in_flight.push(t);
        }
        // An unreliable network still has finite buffers.
        if m.in_flight.len() > 256 {
            m.in_flight.drain(..m.in_flight.len() - 256);
        }
        while let Some(e) = m.node.poll_event() {
            m.book.event(&e, n, persist, now);
            self.acquired += u64::from(matches!(e, dsync_core::Event::Acquired { .. }));
        }
        let after = m.node.poll_timeout();
        match (before, after) {
            (_, None) => {}
            (None, Some(at)) => assert!(at >= now, "node {i}: next timeout {at:?} is before now {now:?}"),
            // Only a deadline that was already overdue before this input may still be in the past.
            (Some(was), Some(at)) => {
                assert!(at >= now || was.is_some_and(|w| w <= at), "node {i}: new timeout {at:?} before now {now:?}")
            }
        }
    }
}

/// Records the ids and numbers of `msg` that forged messages may reuse.
fn remember(seen: &mut Vec<u64>, msg: &Message) {
    let mut push = |v: u64| {
        if seen.len() == SEEN_CAP {
            seen.remove(0);
        }
        seen.push(v);
    };
    match msg {
        Message::Lock(m) => {
            push(m.uid);
            push(m.ticket);
            push(m.proposal);
        }
        Message::LockReply { uid, mark, .. } => {
            push(*uid);
            push(*mark);
        }
        Message::Refresh { uid, .. }
        | Message::RefreshReply { uid, .. }
        | Message::UnlockReply { uid, .. }
        | Message::Revoked { uid } => push(*uid),
        Message::Unlock { uid, ticket, .. } => {
            push(*uid);
            if let Some(t) = ticket {
                push(*t);
            }
        }
        Message::Wake { ticket } => push(*ticket),
        Message::Query { qid, .. }
        | Message::QueryReply { qid, .. }
        | Message::ForceUnlock { qid, .. }
        | Message::ForceUnlockReply { qid, .. }
        | Message::FloorQuery { qid, .. }
        | Message::FloorReply { qid, .. }
        | Message::Rejoin { qid } => push(*qid),
        Message::RejoinReply { qid, holds, .. } => {
            push(*qid);
            for h in holds {
                push(h.uid);
                push(h.ticket);
            }
        }
    }
}
