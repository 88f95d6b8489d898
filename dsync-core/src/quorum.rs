//! Quorum sizes and node sets.
//!
//! MinIO's current rule: tolerance `t = n/2`, read quorum `n − t`, write quorum the same plus one when it
//! equals `t` (even `n`). Two write quorums intersect because `2·w > n`; a read and a write quorum
//! intersect because `r + w > n`. Two read quorums need not intersect: readers share.

use crate::Mode;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NodeSet;

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
            let b_write = NodeSet::all(n).difference(NodeSet::all(n - w)); // nodes n-w..n
            let b_read = NodeSet::all(n).difference(NodeSet::all(n - r));
            assert!(!a.intersection(b_write).is_empty(), "disjoint write quorums at n = {n}");
            assert!(!a.intersection(b_read).is_empty(), "disjoint read/write quorums at n = {n}");
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
        assert_eq!(s, NodeSet::from([0, 5, 63]));
        assert!(s.remove(5) && !s.remove(5));
        assert_eq!(s.union(NodeSet::single(1)).difference(NodeSet::single(0)), NodeSet::from([1, 63]));
        assert_eq!(s.intersection(NodeSet::all(10)), NodeSet::single(0));
        assert!(NodeSet::single(0).is_subset(s) && !NodeSet::all(2).is_subset(s));
    }
}
