//! The simulated network: per-message latency with a long tail, loss, duplication, optional per-link
//! FIFO order (off: messages reorder freely), partitions (one- and two-way) and clogged links that hold
//! messages until released. It owns the messages in flight (its own [`Queue`]) and the messages held on
//! clogged links; the world only pops what is due and hands it to the receiving node.

use crate::queue::{Due, Queue, Seq};
use crate::rng::Rng;
use dsync_core::Message;

/// How the network behaves for one seed.
#[derive(Clone, Debug, PartialEq)]
pub struct NetParams {
    /// Smallest one-way latency, nanoseconds.
    pub lat_min: u64,
    /// Typical one-way latency (the bulk is log-uniform between `lat_min` and this), nanoseconds.
    pub lat_typ: u64,
    /// Probability that a message takes the long tail.
    pub tail_prob: f64,
    /// Longest tail latency, nanoseconds (beyond an attempt timeout, so replies arrive late).
    pub tail_max: u64,
    /// Probability that a message is lost.
    pub loss: f64,
    /// Probability that a message is delivered twice.
    pub dup: f64,
    /// Deliver each link's messages in send order (TCP-like); otherwise latency reorders them.
    pub fifo: bool,
    /// A node whose inbound links are slow (replies to it arrive late: a distant or overloaded host).
    pub slow_to: Option<usize>,
    /// Extra latency on those links, up to this many nanoseconds (log-uniform from a tenth of it).
    pub slow_extra: u64,
}

impl Default for NetParams {
    fn default() -> Self {
        NetParams {
            lat_min: 100_000,
            lat_typ: 2_000_000,
            tail_prob: 0.0,
            tail_max: 100_000_000,
            loss: 0.0,
            dup: 0.0,
            fifo: true,
            slow_to: None,
            slow_extra: 0,
        }
    }
}

/// A message on the wire.
#[derive(Clone, Debug)]
pub struct Packet {
    /// Sender.
    pub from: usize,
    /// Receiver.
    pub to: usize,
    /// True time it left `from` (a grant sent before its locker crashed died with it).
    pub sent: u64,
    /// The message.
    pub msg: Message,
}

/// What became of a due packet at the receiver's end of its link.
#[derive(Debug)]
pub enum Arrival {
    /// A partition blocks the link: lost.
    Blocked,
    /// The link is clogged: held until it is released.
    Held,
    /// It arrives.
    Arrived(Packet),
}

/// Link state between `n` nodes, as directed `from → to` flags, and the messages in flight.
pub struct Net {
    n: usize,
    /// The behaviour parameters.
    pub params: NetParams,
    blocked: Vec<bool>,
    clogged: Vec<bool>,
    last: Vec<u64>,
    in_flight: Queue<Packet>,
    held: Vec<Packet>,
}

impl Net {
    /// A healthy network of `n` nodes.
    pub fn new(n: usize, params: NetParams) -> Self {
        Net {
            n,
            params,
            blocked: vec![false; n * n],
            clogged: vec![false; n * n],
            last: vec![0; n * n],
            in_flight: Queue::default(),
            held: Vec::new(),
        }
    }

    /// Sends `msg` on `from → to` at true time `now`: it may be lost, or delivered twice. Returns whether
    /// it was lost. (A duplicate is scheduled before the original, so it takes the earlier stamp.)
    pub fn send(&mut self, rng: &mut Rng, seq: &mut Seq, now: u64, from: usize, to: usize, msg: Message) -> bool {
        if rng.chance(self.params.loss) {
            return false;
        }
        if rng.chance(self.params.dup) {
            let at = self.arrival(rng, from, to, now);
            self.in_flight.push(seq, at, Packet { from, to, sent: now, msg: msg.clone() });
        }
        let at = self.arrival(rng, from, to, now);
        self.in_flight.push(seq, at, Packet { from, to, sent: now, msg });
        true
    }

    /// When the next message in flight is due.
    pub fn peek(&self) -> Option<Due> {
        self.in_flight.peek()
    }

    /// Takes the next message in flight off the wire (`peek` said it is due).
    pub fn pop(&mut self) -> Option<(u64, Packet)> {
        self.in_flight.pop()
    }

    /// Whether the link lets a due packet through now, or drops it (partition) or holds it (clog). The
    /// world drops packets to a crashed receiver before asking, so those are never held.
    pub fn admit(&mut self, p: Packet) -> Arrival {
        if self.is_blocked(p.from, p.to) {
            Arrival::Blocked
        } else if self.is_clogged(p.from, p.to) {
            self.held.push(p);
            Arrival::Held
        } else {
            Arrival::Arrived(p)
        }
    }

    /// Puts a packet back on the wire, due at `at` (its receiver was paused; it is handed over then).
    pub fn requeue(&mut self, seq: &mut Seq, at: u64, p: Packet) {
        self.in_flight.push(seq, at, p);
    }

    /// Releases the clog on `from → to`: its held messages go on the wire again, in the order they were
    /// held, each with a fresh latency from `now`.
    pub fn unclog(&mut self, rng: &mut Rng, seq: &mut Seq, now: u64, from: usize, to: usize) {
        self.set_clog(from, to, false);
        let held = std::mem::take(&mut self.held);
        let (go, stay): (Vec<_>, Vec<_>) = held.into_iter().partition(|p| p.from == from && p.to == to);
        self.held = stay;
        for p in go {
            let at = self.arrival(rng, p.from, p.to, now);
            self.in_flight.push(seq, at, p);
        }
    }

    /// The end of the fault phase: every partition and clog ends, and the network stops losing,
    /// duplicating and taking the long tail. It keeps its latency; the end-phase checks (liveness,
    /// holder query, leaks) need every message of a correct node to arrive.
    pub fn heal(&mut self, rng: &mut Rng, seq: &mut Seq, now: u64) {
        self.heal_partitions();
        self.params.loss = 0.0;
        self.params.dup = 0.0;
        self.params.tail_prob = 0.0;
        for a in 0..self.n {
            for b in 0..self.n {
                if a != b && self.is_clogged(a, b) {
                    self.unclog(rng, seq, now, a, b);
                }
            }
        }
    }

    /// A latency draw.
    pub fn latency(&self, r: &mut Rng) -> u64 {
        let p = &self.params;
        if r.chance(p.tail_prob) {
            r.log_range(p.lat_typ.max(p.lat_min), p.tail_max.max(p.lat_typ))
        } else {
            r.log_range(p.lat_min, p.lat_typ.max(p.lat_min))
        }
    }

    /// When a message sent now on `from → to` arrives (FIFO links never overtake).
    pub fn arrival(&mut self, r: &mut Rng, from: usize, to: usize, now: u64) -> u64 {
        let mut at = now + self.latency(r);
        if self.params.slow_to == Some(to) && self.params.slow_extra > 0 {
            at += r.log_range(self.params.slow_extra / 10, self.params.slow_extra);
        }
        if self.params.fifo {
            let l = &mut self.last[from * self.n + to];
            let at = at.max(*l);
            *l = at;
            at
        } else {
            at
        }
    }

    /// Whether messages on `from → to` are dropped.
    pub fn is_blocked(&self, from: usize, to: usize) -> bool {
        self.blocked[from * self.n + to]
    }

    /// Whether messages on `from → to` are held.
    pub fn is_clogged(&self, from: usize, to: usize) -> bool {
        self.clogged[from * self.n + to]
    }

    /// Blocks messages leaving `side` (and entering it unless `one_way`). Bits beyond the cluster are
    /// ignored.
    pub fn partition(&mut self, side: u64, one_way: bool) {
        for a in 0..self.n {
            for b in 0..self.n {
                let (ia, ib) = (side >> a & 1 == 1, side >> b & 1 == 1);
                if ia && !ib || (!one_way && !ia && ib) {
                    self.blocked[a * self.n + b] = true;
                }
            }
        }
    }

    /// Removes every partition.
    pub fn heal_partitions(&mut self) {
        self.blocked.iter_mut().for_each(|b| *b = false);
    }

    /// Holds messages on `from → to` (`on`), or lets new ones through (`off`; [`Net::unclog`] also
    /// releases the held ones).
    pub fn set_clog(&mut self, from: usize, to: usize, on: bool) {
        self.clogged[from * self.n + to] = on;
    }

    /// Whether `a` and `b` can talk both ways.
    pub fn connected(&self, a: usize, b: usize) -> bool {
        !self.is_blocked(a, b) && !self.is_blocked(b, a)
    }
}
