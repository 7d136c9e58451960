//! Version vectors.

use std::cmp::Ordering;
use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use smallvec::SmallVec;

use crate::core::NodeId;

/// A version vector: for each writer, the counter of its latest write folded in.
///
/// Kept as (writer, counter) pairs sorted by writer, the first inline: most entries
/// hold one write, and an ordered map allocated a node of room for eleven for it (about
/// 190 bytes an entry, and an allocation at every clone and decode). It orders, encodes
/// and decodes as that map did: a map in writer order, a writer named twice keeping its
/// last counter.
///
/// Its `Ord` orders by writer, then counter (as the map's did), not by causality: see
/// [`VersionVector::compare`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct VersionVector(SmallVec<[(NodeId, u64); 1]>);

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

    fn find(&self, node: &NodeId) -> Result<usize, usize> {
        self.0.binary_search_by(|(n, _)| n.cmp(node))
    }

    /// The counter for `node` (0 if absent).
    pub fn get(&self, node: &NodeId) -> u64 {
        self.find(node).map_or(0, |i| self.0[i].1)
    }

    /// Sets the counter for `node`.
    pub fn set(&mut self, node: NodeId, counter: u64) {
        match self.find(&node) {
            Ok(i) => self.0[i].1 = counter,
            Err(i) => self.0.insert(i, (node, counter)),
        }
    }

    /// Forgets `node`'s counter; returns it, if it was named.
    pub fn remove(&mut self, node: &NodeId) -> Option<u64> {
        let i = self.find(node).ok()?;
        Some(self.0.remove(i).1)
    }

    /// Every (writer, counter) pair named, zero counters included, in writer order.
    pub fn iter(&self) -> impl Iterator<Item = (&NodeId, u64)> {
        self.0.iter().map(|(n, c)| (n, *c))
    }

    /// Pointwise maximum with `other`.
    pub fn join(&mut self, other: &VersionVector) {
        for (n, c) in other.iter() {
            match self.find(n) {
                Ok(i) => self.0[i].1 = self.0[i].1.max(c),
                Err(i) => self.0.insert(i, (n.clone(), c)),
            }
        }
    }

    /// Compares `self` with `other`.
    pub fn compare(&self, other: &VersionVector) -> Causality {
        let mut greater = false;
        let mut less = false;
        let mut a = self.iter().peekable();
        let mut b = other.iter().peekable();
        loop {
            match (a.peek(), b.peek()) {
                (None, None) => break,
                (Some(_), None) => {
                    greater |= a.any(|(_, c)| c > 0);
                    break;
                }
                (None, Some(_)) => {
                    less |= b.any(|(_, c)| c > 0);
                    break;
                }
                (Some((ka, ca)), Some((kb, cb))) => match ka.cmp(kb) {
                    Ordering::Less => {
                        greater |= *ca > 0;
                        a.next();
                    }
                    Ordering::Greater => {
                        less |= *cb > 0;
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
        self.iter().filter(|&(_, c)| c > 0)
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

impl FromIterator<(NodeId, u64)> for VersionVector {
    /// A vector of these pairs; a writer named twice keeps its last counter.
    fn from_iter<I: IntoIterator<Item = (NodeId, u64)>>(pairs: I) -> Self {
        let mut pairs: SmallVec<[(NodeId, u64); 1]> = pairs.into_iter().collect();
        sort_keeping_last(&mut pairs);
        Self(pairs)
    }
}

/// Sorts pairs by writer, a writer named twice keeping its last counter: O(n log n)
/// whatever the order (inserting each in place was quadratic for a hostile peer's map
/// in reverse order).
fn sort_keeping_last(pairs: &mut SmallVec<[(NodeId, u64); 1]>) {
    if pairs.windows(2).all(|w| w[0].0 < w[1].0) {
        return;
    }
    // Stable: a writer's repeats stay in arrival order, and the last one's counter is
    // kept.
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    pairs.dedup_by(|later, kept| {
        if later.0 == kept.0 {
            kept.1 = later.1;
            true
        } else {
            false
        }
    });
}

impl Serialize for VersionVector {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for VersionVector {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Pairs;
        impl<'de> Visitor<'de> for Pairs {
            type Value = VersionVector;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of node ids to counters")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<VersionVector, A::Error> {
                // Any order is read, as the map read it; ours come sorted.
                let mut pairs = SmallVec::new();
                while let Some(pair) = m.next_entry::<NodeId, u64>()? {
                    pairs.push(pair);
                }
                sort_keeping_last(&mut pairs);
                Ok(VersionVector(pairs))
            }
        }
        d.deserialize_map(Pairs)
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

    fn cbor<T: Serialize>(v: &T) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::into_writer(v, &mut out).unwrap();
        out
    }

    fn map(p: &[(&str, u64)]) -> std::collections::BTreeMap<NodeId, u64> {
        p.iter()
            .map(|(n, c)| (NodeId::new(n).unwrap(), *c))
            .collect()
    }

    #[test]
    fn encodes_and_orders_as_the_map_it_replaced() {
        let cases: [&[(&str, u64)]; 4] = [
            &[],
            &[("b", 7)],
            &[("c", 1), ("a", 0), ("b", u64::MAX)],
            &[("n2", 3), ("n10", 4), ("n1", 5)],
        ];
        for p in cases {
            assert_eq!(cbor(&vv(p)), cbor(&map(p)), "{p:?}");
            let back: VersionVector = ciborium::from_reader(&cbor(&map(p))[..]).unwrap();
            assert_eq!(back, vv(p));
            assert_eq!(back.iter().collect::<Vec<_>>().len(), p.len());
        }
        let (x, y) = (vv(&[("a", 1), ("b", 2)]), vv(&[("a", 1), ("c", 1)]));
        assert_eq!(
            x.cmp(&y),
            map(&[("a", 1), ("b", 2)]).cmp(&map(&[("a", 1), ("c", 1)]))
        );
    }

    #[test]
    fn decodes_any_order_and_a_repeated_writer_keeps_its_last_counter() {
        // A map with "b" before "a" and "a" twice, as a hostile peer could send it.
        let pairs = [("b", 2u64), ("a", 1), ("a", 9)];
        let mut bytes = vec![0xa3];
        for (n, c) in pairs {
            bytes.extend(cbor(&n));
            bytes.extend(cbor(&c));
        }
        let got: VersionVector = ciborium::from_reader(&bytes[..]).unwrap();
        let want: std::collections::BTreeMap<NodeId, u64> =
            ciborium::from_reader(&bytes[..]).unwrap();
        assert_eq!(
            got.iter().collect::<Vec<_>>(),
            want.iter().map(|(n, c)| (n, *c)).collect::<Vec<_>>()
        );
        assert_eq!(got.get(&NodeId::new("a").unwrap()), 9);
        // Shuffled maps with repeats, large ones included, read as the map reads them.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for len in [2usize, 5, 40, 3_000] {
            let pairs: Vec<(String, u64)> = (0..len)
                .map(|_| (format!("w{}", next() % (len as u64 / 2 + 1)), next()))
                .collect();
            let mut bytes = Vec::new();
            if len < 24 {
                bytes.push(0xa0 + len as u8);
            } else {
                bytes.push(0xb9);
                bytes.extend((len as u16).to_be_bytes());
            }
            for (n, c) in &pairs {
                bytes.extend(cbor(n));
                bytes.extend(cbor(c));
            }
            let got: VersionVector = ciborium::from_reader(&bytes[..]).unwrap();
            let want: std::collections::BTreeMap<NodeId, u64> =
                ciborium::from_reader(&bytes[..]).unwrap();
            let want: Vec<(&NodeId, u64)> = want.iter().map(|(n, c)| (n, *c)).collect();
            assert_eq!(got.iter().collect::<Vec<_>>(), want, "{len} pairs");
            let collected: VersionVector = pairs
                .iter()
                .map(|(n, c)| (NodeId::new(n).unwrap(), *c))
                .collect();
            assert_eq!(collected, got);
        }
        let bad = [0xa1, 0x61, b'A', 0x01];
        assert!(ciborium::from_reader::<VersionVector, _>(&bad[..]).is_err());
    }
}
