//! Sets of node indices.

use crate::quorum::MAX_NODES;

/// A set of node indices `0..64`.
///
/// The bit mask behind it is private so that every use reads as a set operation; build sets with
/// [`NodeSet::all`], [`NodeSet::insert`] or by collecting indices.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeSet(u64);

impl NodeSet {
    /// The empty set.
    pub const EMPTY: NodeSet = NodeSet(0);

    /// All nodes `0..n` (`n` above 64 means all 64).
    #[must_use]
    pub const fn all(n: usize) -> Self {
        if n >= MAX_NODES {
            NodeSet(u64::MAX)
        } else {
            NodeSet((1u64 << n) - 1)
        }
    }

    /// The set holding just `node` (empty for indices ≥ 64).
    #[must_use]
    pub const fn single(node: usize) -> Self {
        if node >= MAX_NODES {
            NodeSet::EMPTY
        } else {
            NodeSet(1u64 << node)
        }
    }

    /// Adds `node`; returns whether it was new. Indices ≥ 64 are ignored.
    pub fn insert(&mut self, node: usize) -> bool {
        let new = !self.contains(node) && node < MAX_NODES;
        *self = self.union(NodeSet::single(node));
        new
    }

    /// Removes `node`; returns whether it was present.
    pub fn remove(&mut self, node: usize) -> bool {
        let was = self.contains(node);
        *self = self.difference(NodeSet::single(node));
        was
    }

    /// Whether `node` is in the set.
    #[must_use]
    pub const fn contains(self, node: usize) -> bool {
        node < MAX_NODES && self.0 & (1u64 << node) != 0
    }

    /// Number of members.
    #[must_use]
    pub const fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// Whether the set is empty.
    #[must_use]
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Members of either set.
    #[must_use]
    pub const fn union(self, other: NodeSet) -> NodeSet {
        NodeSet(self.0 | other.0)
    }

    /// Members of both sets.
    #[must_use]
    pub const fn intersection(self, other: NodeSet) -> NodeSet {
        NodeSet(self.0 & other.0)
    }

    /// Members of `self` that are not in `other`.
    #[must_use]
    pub const fn difference(self, other: NodeSet) -> NodeSet {
        NodeSet(self.0 & !other.0)
    }

    /// Whether every member of `self` is in `other`.
    #[must_use]
    pub const fn is_subset(self, other: NodeSet) -> bool {
        self.0 & !other.0 == 0
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

impl FromIterator<usize> for NodeSet {
    /// The set of the given indices; indices ≥ 64 are ignored.
    fn from_iter<I: IntoIterator<Item = usize>>(iter: I) -> Self {
        let mut set = NodeSet::EMPTY;
        for node in iter {
            set.insert(node);
        }
        set
    }
}

impl<const N: usize> From<[usize; N]> for NodeSet {
    fn from(nodes: [usize; N]) -> Self {
        nodes.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_beyond_the_largest_cluster_are_never_members() {
        let s: NodeSet = [1, 64, 200].into_iter().collect();
        assert_eq!(s, NodeSet::single(1));
        assert!(!s.contains(64) && NodeSet::single(64).is_empty());
        assert_eq!(NodeSet::all(100), NodeSet::all(64));
    }
}
