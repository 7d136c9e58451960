//! Version vectors.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::core::NodeId;

/// A version vector: for each writer, the counter of its latest write folded in.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct VersionVector(pub BTreeMap<NodeId, u64>);

/// How two version vectors relate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Causality {
    /// Identical.
    Equal,
    /// Left has seen everything right has, and more.
    Dominates,
    /// Right has seen everything left has, and more.
    DominatedBy,
    /// Each has seen something the other has not.
    Concurrent,
}

impl VersionVector {
    /// An empty vector.
    pub fn new() -> Self {
        Self::default()
    }

    /// The counter for `node` (0 if absent).
    pub fn get(&self, node: &NodeId) -> u64 {
        self.0.get(node).copied().unwrap_or(0)
    }

    /// Sets the counter for `node`.
    pub fn set(&mut self, node: NodeId, counter: u64) {
        self.0.insert(node, counter);
    }

    /// Pointwise maximum with `other`.
    pub fn join(&mut self, other: &VersionVector) {
        for (n, &c) in &other.0 {
            let e = self.0.entry(n.clone()).or_insert(0);
            if c > *e {
                *e = c;
            }
        }
    }

    /// Compares `self` with `other`.
    pub fn compare(&self, other: &VersionVector) -> Causality {
        let mut greater = false;
        let mut less = false;
        let mut a = self.0.iter().peekable();
        let mut b = other.0.iter().peekable();
        loop {
            match (a.peek(), b.peek()) {
                (None, None) => break,
                (Some(_), None) => {
                    greater |= a.any(|(_, &c)| c > 0);
                    break;
                }
                (None, Some(_)) => {
                    less |= b.any(|(_, &c)| c > 0);
                    break;
                }
                (Some((ka, ca)), Some((kb, cb))) => match ka.cmp(kb) {
                    Ordering::Less => {
                        greater |= **ca > 0;
                        a.next();
                    }
                    Ordering::Greater => {
                        less |= **cb > 0;
                        b.next();
                    }
                    Ordering::Equal => {
                        greater |= ca > cb;
                        less |= ca < cb;
                        a.next();
                        b.next();
                    }
                },
            }
            if greater && less {
                return Causality::Concurrent;
            }
        }
        match (greater, less) {
            (false, false) => Causality::Equal,
            (true, false) => Causality::Dominates,
            (false, true) => Causality::DominatedBy,
            (true, true) => Causality::Concurrent,
        }
    }

    /// The (writer, counter) dots this vector names.
    pub fn dots(&self) -> impl Iterator<Item = (&NodeId, u64)> {
        self.0.iter().map(|(n, &c)| (n, c)).filter(|&(_, c)| c > 0)
    }

    /// Number of writers named.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when no writer is named.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vv(p: &[(&str, u64)]) -> VersionVector {
        let mut v = VersionVector::new();
        for (n, c) in p {
            v.set(NodeId::new(n).unwrap(), *c);
        }
        v
    }

    #[test]
    fn compare_covers_all_four_cases() {
        assert_eq!(vv(&[("a", 1)]).compare(&vv(&[("a", 1)])), Causality::Equal);
        assert_eq!(
            vv(&[("a", 2)]).compare(&vv(&[("a", 1)])),
            Causality::Dominates
        );
        assert_eq!(
            vv(&[("a", 1)]).compare(&vv(&[("a", 1), ("b", 1)])),
            Causality::DominatedBy
        );
        assert_eq!(
            vv(&[("a", 2)]).compare(&vv(&[("a", 1), ("b", 1)])),
            Causality::Concurrent
        );
        assert_eq!(vv(&[("a", 0)]).compare(&vv(&[])), Causality::Equal);
    }
}
