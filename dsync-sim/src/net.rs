//! The simulated network: per-message latency with a long tail, loss, duplication, optional per-link
//! FIFO order (off: messages reorder freely), partitions (one- and two-way) and clogged links that hold
//! messages until released.

use crate::rng::Rng;

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

/// Link state between `n` nodes, as directed `from → to` flags.
#[derive(Clone, Debug)]
pub struct Net {
    n: usize,
    /// The behaviour parameters.
    pub params: NetParams,
    blocked: Vec<bool>,
    clogged: Vec<bool>,
    last: Vec<u64>,
}

impl Net {
    /// A healthy network of `n` nodes.
    pub fn new(n: usize, params: NetParams) -> Self {
        Net { n, params, blocked: vec![false; n * n], clogged: vec![false; n * n], last: vec![0; n * n] }
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

    /// Blocks messages leaving `side` (and entering it unless `one_way`); returns the pairs changed.
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

    /// Holds messages on `from → to` until [`Net::set_clog`] with `false`.
    pub fn set_clog(&mut self, from: usize, to: usize, on: bool) {
        self.clogged[from * self.n + to] = on;
    }

    /// Whether `a` and `b` can talk both ways.
    pub fn connected(&self, a: usize, b: usize) -> bool {
        !self.is_blocked(a, b) && !self.is_blocked(b, a)
    }
}
