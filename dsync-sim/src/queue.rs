//! Time-ordered queues. Each part of the world that schedules things (the network its messages in flight,
//! the failure detector its notices, the world everything else) keeps its own [`Queue`], and all of them
//! stamp their items from one shared [`Seq`]. Merging the queues by `(true_time, seq)` therefore gives the
//! same total order a single heap would: ties at one instant break in insertion order across all queues,
//! which is what keeps a run a pure function of its seed.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// The insertion counter shared by every queue of one world.
#[derive(Clone, Debug, Default)]
pub struct Seq(u64);

impl Seq {
    /// The next stamp (the first is 1).
    pub fn stamp(&mut self) -> u64 {
        self.0 += 1;
        self.0
    }
}

/// When an item is due: true time, then insertion stamp.
pub type Due = (u64, u64);

struct Entry<T> {
    at: u64,
    seq: u64,
    item: T,
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl<T> Eq for Entry<T> {}
impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl<T> Ord for Entry<T> {
    fn cmp(&self, o: &Self) -> Ordering {
        (o.at, o.seq).cmp(&(self.at, self.seq)) // reversed: BinaryHeap is a max-heap, we want the earliest
    }
}

/// A min-queue of items by `(true_time, seq)`.
pub struct Queue<T> {
    heap: BinaryHeap<Entry<T>>,
}

impl<T> Default for Queue<T> {
    fn default() -> Self {
        Queue { heap: BinaryHeap::new() }
    }
}

impl<T> Queue<T> {
    /// Schedules `item` at true time `at`, stamped from `seq`.
    pub fn push(&mut self, seq: &mut Seq, at: u64, item: T) {
        self.heap.push(Entry { at, seq: seq.stamp(), item });
    }

    /// When the earliest item is due.
    pub fn peek(&self) -> Option<Due> {
        self.heap.peek().map(|e| (e.at, e.seq))
    }

    /// Removes the earliest item, with its true time.
    pub fn pop(&mut self) -> Option<(u64, T)> {
        self.heap.pop().map(|e| (e.at, e.item))
    }
}
