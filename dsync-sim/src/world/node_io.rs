//! A node's inputs and outputs: messages handed to it from the network (with the wire round trip and the
//! grant bookkeeping of the leak checker), completed floor writes, and what the world does after every
//! step — send its transmits, act on its events, re-read the validity of its locks (refreshes move it)
//! and re-arm its one timer, as the core requires.

use super::{Ev, World, MS};
use crate::net::{Arrival, Packet};
use crate::trace::Tag;
use dsync_core::wire::{decode, encode, Outcome};
use dsync_core::{Event, ForceTarget, Message};

impl World {
    pub(super) fn send(&mut self, from: usize, to: usize, msg: Message) {
        if let Message::Unlock { uid, .. } = msg {
            self.owed.released(from, to, uid);
        }
        self.stats.sent += 1;
        if !self.net.send(&mut self.rng, &mut self.seq, self.now, from, to, msg) {
            self.stats.dropped += 1;
            self.disturb.message(from, to, self.now, self.now);
        }
    }

    pub(super) fn deliver(&mut self, p: Packet) {
        let (from, to, sent) = (p.from, p.to, p.sent);
        if self.slots[p.to].node.is_none() {
            self.stats.dropped += 1;
            self.disturb.message(from, to, sent, self.now);
            return;
        }
        let p = match self.net.admit(p) {
            Arrival::Blocked => {
                self.stats.dropped += 1;
                self.disturb.message(from, to, sent, self.now);
                return;
            }
            Arrival::Held => {
                self.disturb.message(from, to, sent, self.now);
                return;
            }
            Arrival::Arrived(p) => p,
        };
        if self.paused(p.to) {
            let at = self.slots[p.to].paused_until;
            self.net.requeue(&mut self.seq, at, p);
            return;
        }
        let Packet { from, to, sent, mut msg } = p;
        self.delivered += 1;
        if self.now - sent > self.usual_latency(to) {
            self.disturb.message(from, to, sent, self.now); // the tail, a pause, or behind a slow one (FIFO)
        }
        if self.opts.wire_every > 0 && self.delivered.is_multiple_of(self.opts.wire_every as u64) {
            let bytes = encode(&msg);
            self.trace.mix_bytes(&bytes);
            match decode(&bytes, usize::MAX) {
                Ok(m) if m == msg => msg = m,
                other => panic!("wire round trip changed {msg:?} into {other:?}"),
            }
        }
        match msg {
            // A grant made by an incarnation of `from` that crashed since is gone with it: nothing is owed.
            Message::LockReply { uid, outcome: Outcome::Granted, .. }
                if self.slots[from].crashed_at.is_none_or(|c| c < sent) =>
            {
                self.owed.granted(to, from, uid, self.now)
            }
            Message::RefreshReply { uid, held: false, .. } => self.owed.released(to, from, uid),
            _ => {}
        }
        if let Message::ForceUnlock { target: ForceTarget::Resource(r), .. } = &msg {
            let r = r.clone();
            self.void_resource(&r);
        }
        if let Message::ForceUnlockReply { qid, .. } = msg {
            self.force_answered(to, from, qid);
        }
        self.trace.record(self.now, Tag::Deliver, &[from as u64, to as u64]);
        self.trace.mix_bytes(msg.kind().as_bytes());
        if self.trace.logging() {
            self.trace.log(self.now, format!("deliver {from}->{to} {msg:?}"));
        }
        let local = self.local_now(to);
        self.slots[to].node.as_mut().expect("live").handle_message(local, from, msg);
        self.after_step(to);
    }

    /// The slowest one-way latency of a message into `to` that took neither the tail nor a detour (the
    /// swarm's parameters: healing turns the tail off but keeps these), plus a microsecond.
    pub(super) fn usual_latency(&self, to: usize) -> u64 {
        let p = &self.swarm.net;
        let slow = if p.slow_to == Some(to) { p.slow_extra } else { 0 };
        p.lat_typ.max(p.lat_min) + slow + 1_000
    }

    /// The embedder's floor write for incarnation `inc` completed: the floor is durable now.
    pub(super) fn floor_persisted(&mut self, node: usize, inc: u32, floor: u64) {
        if self.slots[node].inc != inc || self.slots[node].node.is_none() {
            return; // the write died with the process
        }
        if self.defer_if_paused(node, Ev::PersistDone { node, inc, floor }).is_none() {
            return;
        }
        self.slots[node].durable = Some(self.slots[node].durable.unwrap_or(0).max(floor));
        self.trace.record(self.now, Tag::FloorPersisted, &[node as u64, floor]);
        let local = self.local_now(node);
        self.slots[node].node.as_mut().expect("live").handle_floor_persisted(local, floor);
        self.after_step(node);
    }

    pub(super) fn after_step(&mut self, i: usize) {
        let node = self.slots[i].node.as_mut().expect("live");
        while let Some(t) = node.poll_transmit() {
            self.tx.push(t);
        }
        while let Some(e) = node.poll_event() {
            self.evs.push(e);
        }
        let mut tx = std::mem::take(&mut self.tx);
        for t in tx.drain(..) {
            self.send(i, t.to, t.message);
        }
        self.tx = tx;
        let mut evs = std::mem::take(&mut self.evs);
        for e in evs.drain(..) {
            self.on_event(i, e);
        }
        self.evs = evs;
        self.refresh_beliefs(i);
        self.rearm(i);
    }

    /// Re-reads `valid_until` of every lock node `i` holds: a refresh extends the belief, and a refresh
    /// that succeeds after the belief lapsed starts a new belief interval.
    pub(super) fn refresh_beliefs(&mut self, i: usize) {
        let now = self.now;
        let slot = &self.slots[i];
        let Some(node) = slot.node.as_ref() else { return };
        for (id, c) in &slot.locks {
            let Some(h) = c.held else { continue };
            let Some(info) = node.lock_info(*id) else { continue };
            let end = slot.clock.to_true(info.valid_until.as_nanos());
            let rec = &mut self.holds[h];
            let last = rec.intervals.last_mut().expect("an interval");
            if now < last.1 {
                last.1 = end.max(now);
            } else if end > now {
                rec.intervals.push((now, end));
            }
        }
    }

    /// Keeps one live timer per node, at the true time its clock reaches the core's `poll_timeout`.
    pub(super) fn rearm(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        let Some(node) = slot.node.as_ref() else { return };
        let want = node.poll_timeout().map_or(u64::MAX, |l| slot.clock.to_true(l.as_nanos()).max(self.now));
        if want != slot.timer_at {
            slot.timer_gen += 1;
            slot.timer_at = want;
            if want != u64::MAX {
                let gen = slot.timer_gen;
                self.push(want, Ev::Timer { node: i, gen });
            }
        }
    }

    pub(super) fn on_event(&mut self, i: usize, e: Event) {
        let now = self.now;
        match e {
            Event::Acquired { lock, token, grantors, valid_until } => {
                self.acquired(i, lock, token, grantors, valid_until)
            }
            Event::Failed { lock, reason } => self.failed(i, lock, reason),
            Event::Lost { lock } => self.lost(i, lock),
            Event::Holders { query, entries, .. } => self.holders_answered(i, query, &entries),
            Event::PersistFloor { floor } => {
                // The embedder's write takes a while; a crash before it completes loses it.
                let inc = self.slots[i].inc;
                let at = now + self.rng.log_range(100_000, 20 * MS);
                self.push(at, Ev::PersistDone { node: i, inc, floor });
            }
            Event::Serving | Event::Quarantined { .. } => {
                if e == Event::Serving {
                    self.stats.serving += 1;
                    self.history = true; // from now on it may grant
                } else {
                    self.stats.quarantined += 1;
                }
                self.trace.record(now, Tag::Serving, &[i as u64]);
                if self.trace.logging() {
                    self.trace.log(now, format!("node{i} {e:?}"));
                }
            }
            Event::Released { .. } | Event::ForceUnlocked { .. } => {}
            // An event the simulator does not model yet changes nothing it checks.
            _ => {}
        }
    }
}
