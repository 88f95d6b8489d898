//! Quorum sizes and node sets.
//!
//! MinIO's current rule: tolerance `t = n/2`, read quorum `n − t`, write quorum the same plus one when it
//! equals `t` (even `n`). Two write quorums intersect because `2·w > n`; a read and a write quorum
//! intersect because `r + w > n`. Two read quorums need not intersect: readers share.

use crate::wire::Mode;

/// The largest cluster the protocol supports (node sets are 64-bit masks).
pub const MAX_NODES: usize = 64;

/// How many nodes may be lost while reads still reach quorum: `n / 2`.
pub const fn tolerance(n: usize) -> usize {
    n / 2
}

/// Grants needed for a read lock: `n − n/2`.
pub const fn read_quorum(n: usize) -> usize {
    n - tolerance(n)
}

/// Grants needed for a write lock: the read quorum, plus one when that equals the tolerance.
pub const fn write_quorum(n: usize) -> usize {
    let q = read_quorum(n);
    if q == tolerance(n) {
        q + 1
    } else {
        q
    }
}

/// Grants needed for a lock of `mode` in a cluster of `n` nodes.
pub const fn quorum(n: usize, mode: Mode) -> usize {
    match mode {
        Mode::Read => read_quorum(n),
        Mode::Write => write_quorum(n),
    }
}

/// A set of node indices `0..64`, as a bit mask.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeSet(pub u64);

impl NodeSet {
    /// The empty set.
    pub const EMPTY: NodeSet = NodeSet(0);

    /// All nodes `0..n`.
    pub fn all(n: usize) -> Self {
        if n >= 64 {
            NodeSet(u64::MAX)
        } else {
            NodeSet((1u64 << n) - 1)
        }
    }

    /// Adds `node`; returns whether it was new. Indices ≥ 64 are ignored.
    pub fn insert(&mut self, node: usize) -> bool {
        if node >= MAX_NODES {
            return false;
        }
        let bit = 1u64 << node;
        let new = self.0 & bit == 0;
        self.0 |= bit;
        new
    }

    /// Removes `node`.
    pub fn remove(&mut self, node: usize) {
        if node < MAX_NODES {
            self.0 &= !(1u64 << node);
        }
    }

    /// Whether `node` is in the set.
    pub fn contains(self, node: usize) -> bool {
        node < MAX_NODES && self.0 & (1u64 << node) != 0
    }

    /// Number of members.
    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Members of either set.
    pub fn union(self, other: NodeSet) -> NodeSet {
        NodeSet(self.0 | other.0)
    }

    /// Members in ascending order.
    pub fn iter(self) -> impl Iterator<Item = usize> {
        let mut bits = self.0;
        core::iter::from_fn(move || {
            if bits == 0 {
                return None;
            }
            let i = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            Some(i)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorums_match_minio_for_small_clusters() {
        // (n, read, write)
        for (n, r, w) in [(1, 1, 1), (2, 1, 2), (3, 2, 2), (4, 2, 3), (5, 3, 3), (16, 8, 9), (64, 32, 33)] {
            assert_eq!((read_quorum(n), write_quorum(n)), (r, w), "n = {n}");
        }
    }

    /// Quorum intersection, exhaustively over sizes: any two write quorums and any read+write pair of
    /// node sets of those sizes share a node (pigeonhole: |A| + |B| > n), and the sizes are reachable
    /// with `n/2` nodes down for reads.
    #[test]
    fn every_write_pair_and_read_write_pair_intersects_for_n_1_to_64() {
        for n in 1..=MAX_NODES {
            let (r, w) = (read_quorum(n), write_quorum(n));
            assert!(2 * w > n, "two write quorums must intersect at n = {n}");
            assert!(r + w > n, "read and write quorums must intersect at n = {n}");
            assert!(w <= n && r >= 1, "quorums must be reachable at n = {n}");
            assert!(n - tolerance(n) >= r, "reads survive n/2 failures at n = {n}");
            // Constructive check: the two most disjoint sets of these sizes still overlap.
            let a = NodeSet::all(w); // nodes 0..w
            let b_write = NodeSet(NodeSet::all(n).0 & !NodeSet::all(n - w).0); // nodes n-w..n
            let b_read = NodeSet(NodeSet::all(n).0 & !NodeSet::all(n - r).0);
            assert!(a.0 & b_write.0 != 0, "disjoint write quorums at n = {n}");
            assert!(a.0 & b_read.0 != 0, "disjoint read/write quorums at n = {n}");
        }
    }

    #[test]
    fn two_node_cluster_reads_with_one_node_down() {
        assert_eq!(read_quorum(2), 1);
        assert_eq!(write_quorum(2), 2);
    }

    #[test]
    fn node_set_iterates_in_ascending_order() {
        let mut s = NodeSet::EMPTY;
        for i in [63, 0, 5] {
            assert!(s.insert(i));
        }
        assert!(!s.insert(5));
        assert!(!s.insert(64));
        assert_eq!(s.iter().collect::<alloc::vec::Vec<_>>(), [0, 5, 63]);
        assert_eq!(NodeSet::all(64).len(), 64);
    }
}
