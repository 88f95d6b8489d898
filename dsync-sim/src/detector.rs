//! The transport's failure detector, as an embedder would run one: after a delay it tells each node that
//! a peer went down (crashed, or cut off by a partition when partitions are reported) or came back up.
//! It owns its notices in flight (its own [`Queue`]) and remembers, per node, which peers it last reported
//! down, so a node hears only about changes.

use crate::queue::{Due, Queue, Seq};

/// "Tell `node` whether `peer` is reachable now."
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Notice {
    /// The node told.
    pub node: usize,
    /// The peer it is told about.
    pub peer: usize,
}

/// Failure-detector state of one world.
pub struct Detector {
    n: usize,
    delay: u64,
    partitions: bool,
    /// Per node, a bit per peer last reported down (so at most 64 nodes).
    told_down: Vec<u64>,
    notices: Queue<Notice>,
}

impl Detector {
    /// A detector for `n` nodes that reports after `delay` nanoseconds, and reports peers behind a
    /// partition as down when `partitions` is set (crashes are always reported).
    pub fn new(n: usize, delay: u64, partitions: bool) -> Self {
        Detector { n, delay, partitions, told_down: vec![0; n], notices: Queue::default() }
    }

    /// Whether peers behind a partition count as down.
    pub fn reports_partitions(&self) -> bool {
        self.partitions
    }

    /// `node` crashed at `now`: every other node will hear about it.
    pub fn crashed(&mut self, seq: &mut Seq, now: u64, node: usize) {
        let at = now + self.delay;
        for p in (0..self.n).filter(|&p| p != node) {
            self.notices.push(seq, at, Notice { node: p, peer: node });
        }
    }

    /// `node` started a new incarnation at `now`: it has been told nothing yet, and it and every other node
    /// will hear about each other.
    pub fn restarted(&mut self, seq: &mut Seq, now: u64, node: usize) {
        self.told_down[node] = 0;
        let at = now + self.delay;
        for p in (0..self.n).filter(|&p| p != node) {
            self.notices.push(seq, at, Notice { node: p, peer: node });
            self.notices.push(seq, at, Notice { node, peer: p });
        }
    }

    /// Links changed (a partition began or healed): every node re-checks every peer, if partitions are
    /// reported at all.
    pub fn links_changed(&mut self, seq: &mut Seq, now: u64) {
        if self.partitions {
            self.everyone(seq, now);
        }
    }

    /// Every node re-checks every peer.
    pub fn everyone(&mut self, seq: &mut Seq, now: u64) {
        let at = now + self.delay;
        for a in 0..self.n {
            for b in (0..self.n).filter(|&b| b != a) {
                self.notices.push(seq, at, Notice { node: a, peer: b });
            }
        }
    }

    /// When the next notice is due.
    pub fn peek(&self) -> Option<Due> {
        self.notices.peek()
    }

    /// Takes the next notice (`peek` said it is due).
    pub fn pop(&mut self) -> Option<(u64, Notice)> {
        self.notices.pop()
    }

    /// Delivers `notice` later, at `at` (its node was paused).
    pub fn requeue(&mut self, seq: &mut Seq, at: u64, notice: Notice) {
        self.notices.push(seq, at, notice);
    }

    /// Records that `node` now sees `peer` as `up`; returns whether that is news to `node` (and so must
    /// be reported to it).
    pub fn observe(&mut self, node: usize, peer: usize, up: bool) -> bool {
        let bit = 1u64 << peer;
        let told_down = self.told_down[node] & bit != 0;
        if up && told_down {
            self.told_down[node] &= !bit;
            true
        } else if !up && !told_down {
            self.told_down[node] |= bit;
            true
        } else {
            false
        }
    }
}
