//! The causal context: every (writer, counter) dot a node has seen.
//!
//! DESIGN.md describes it as "per writer, the contiguous maximum plus the dots beyond a
//! gap". We store each writer's dots as a sorted list of disjoint inclusive ranges, which
//! is that representation generalised: a writer that restarted without its state begins a
//! new dot range far above its old one (see `Store::new`), and a range list keeps such a
//! jump as two ranges instead of a gap set that grows with every write.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::core::NodeId;

/// Sorted, disjoint, non-adjacent inclusive ranges of counters (all >= 1).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RangeSet(Vec<(u64, u64)>);

impl RangeSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// The ranges, sorted.
    pub fn ranges(&self) -> &[(u64, u64)] {
        &self.0
    }

    /// The ranges, by value.
    pub fn into_ranges(self) -> Vec<(u64, u64)> {
        self.0
    }

    /// Builds a set from arbitrary ranges (normalising order, overlap and adjacency;
    /// empty or zero-based ranges are clipped). Used on decoded input.
    pub fn from_ranges(mut v: Vec<(u64, u64)>) -> Self {
        v.retain(|&(a, b)| a <= b && b >= 1);
        for r in &mut v {
            r.0 = r.0.max(1);
        }
        v.sort_unstable();
        let mut out: Vec<(u64, u64)> = Vec::with_capacity(v.len());
        for (a, b) in v {
            match out.last_mut() {
                Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
                _ => out.push((a, b)),
            }
        }
        Self(out)
    }

    /// True if `c` is in the set.
    pub fn contains(&self, c: u64) -> bool {
        match self.0.binary_search_by(|&(a, _)| a.cmp(&c)) {
            Ok(_) => true,
            Err(0) => false,
            Err(i) => self.0[i - 1].1 >= c,
        }
    }

    /// Adds one counter.
    pub fn insert(&mut self, c: u64) {
        if c == 0 {
            return;
        }
        // Fast path: extends the last range (the common case for in-order writes).
        if let Some(last) = self.0.last_mut() {
            // Checked: a range may end at u64::MAX (hostile or corrupt input).
            if last.1.checked_add(1) == Some(c) {
                last.1 = c;
                return;
            }
            if c > last.1.saturating_add(1) {
                self.0.push((c, c));
                return;
            }
        } else {
            self.0.push((c, c));
            return;
        }
        self.insert_range(c, c);
    }

    /// Adds every counter in `a..=b`.
    pub fn insert_range(&mut self, a: u64, b: u64) {
        if a > b {
            return;
        }
        let a = a.max(1);
        // First range that could touch [a,b] (its end >= a-1).
        let start = self.0.partition_point(|&(_, e)| e.saturating_add(1) < a);
        let mut end = start;
        let mut lo = a;
        let mut hi = b;
        while end < self.0.len() && self.0[end].0 <= b.saturating_add(1) {
            lo = lo.min(self.0[end].0);
            hi = hi.max(self.0[end].1);
            end += 1;
        }
        self.0.splice(start..end, std::iter::once((lo, hi)));
    }

    /// Adds every counter of `other`.
    pub fn union(&mut self, other: &RangeSet) {
        if self.0.is_empty() {
            self.0 = other.0.clone();
            return;
        }
        for &(a, b) in &other.0 {
            self.insert_range(a, b);
        }
    }

    /// The ranges of counters >= 1 that are *not* in the set (the last one open-ended
    /// up to `u64::MAX`).
    pub fn gaps(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let mut next = 1u64;
        let mut i = 0usize;
        let mut done = false;
        std::iter::from_fn(move || loop {
            if done {
                return None;
            }
            if i < self.0.len() {
                let (a, b) = self.0[i];
                i += 1;
                let gap = (next < a).then_some((next, a - 1));
                if b == u64::MAX {
                    done = true;
                } else {
                    next = b + 1;
                }
                if gap.is_some() {
                    return gap;
                }
            } else {
                done = true;
                return Some((next, u64::MAX));
            }
        })
    }

    /// True if every counter of `other` is in the set.
    pub fn covers(&self, other: &RangeSet) -> bool {
        other.0.iter().all(|&(a, b)| {
            let i = self.0.partition_point(|&(x, _)| x <= a);
            i > 0 && self.0[i - 1].1 >= b
        })
    }

    /// The counters of the set up to `max` (inclusive).
    pub fn clipped(&self, max: u64) -> RangeSet {
        RangeSet(
            self.0
                .iter()
                .filter(|&&(a, _)| a <= max)
                .map(|&(a, b)| (a, b.min(max)))
                .collect(),
        )
    }

    /// The counters in both sets.
    pub fn intersection(&self, other: &RangeSet) -> RangeSet {
        let (mut i, mut j) = (0, 0);
        let mut out = Vec::new();
        while i < self.0.len() && j < other.0.len() {
            let (a, b) = self.0[i];
            let (c, d) = other.0[j];
            let (lo, hi) = (a.max(c), b.min(d));
            if lo <= hi {
                out.push((lo, hi));
            }
            if b < d {
                i += 1;
            } else {
                j += 1;
            }
        }
        RangeSet(out)
    }

    /// Removes every counter in `a..=b`.
    pub fn remove_range(&mut self, a: u64, b: u64) {
        if a > b {
            return;
        }
        let mut out = Vec::with_capacity(self.0.len() + 1);
        for &(x, y) in &self.0 {
            if y < a || x > b {
                out.push((x, y));
                continue;
            }
            if x < a {
                out.push((x, a - 1));
            }
            if y > b {
                out.push((b + 1, y));
            }
        }
        self.0 = out;
    }

    /// Removes one counter (splitting its range).
    pub fn remove(&mut self, c: u64) {
        let i = self.0.partition_point(|&(a, _)| a <= c);
        if i == 0 || self.0[i - 1].1 < c {
            return;
        }
        let (a, b) = self.0[i - 1];
        match (a == c, b == c) {
            (true, true) => {
                self.0.remove(i - 1);
            }
            (true, false) => self.0[i - 1].0 = c + 1,
            (false, true) => self.0[i - 1].1 = c - 1,
            (false, false) => {
                self.0[i - 1].1 = c - 1;
                self.0.insert(i, (c + 1, b));
            }
        }
    }

    /// The largest counter in the set (0 if empty).
    pub fn max(&self) -> u64 {
        self.0.last().map(|r| r.1).unwrap_or(0)
    }

    /// True if empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Every dot a node has seen, per writer.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CausalContext(pub BTreeMap<NodeId, RangeSet>);

impl CausalContext {
    /// An empty context.
    pub fn new() -> Self {
        Self::default()
    }

    /// True if the dot (`writer`, `counter`) has been seen.
    pub fn contains(&self, writer: &NodeId, counter: u64) -> bool {
        counter == 0 || self.0.get(writer).is_some_and(|r| r.contains(counter))
    }

    /// Records one dot.
    pub fn insert(&mut self, writer: &NodeId, counter: u64) {
        if counter == 0 {
            return;
        }
        match self.0.get_mut(writer) {
            Some(r) => r.insert(counter),
            None => {
                let mut r = RangeSet::new();
                r.insert(counter);
                self.0.insert(writer.clone(), r);
            }
        }
    }

    /// Joins `other` into `self`.
    pub fn join(&mut self, other: &CausalContext) {
        for (w, r) in &other.0 {
            let _ = self.join_writer(w, r);
        }
    }

    /// Adds `ranges` to what `writer` has been seen with; returns whether that added
    /// anything.
    pub fn join_writer(&mut self, writer: &NodeId, ranges: &RangeSet) -> bool {
        match self.0.get_mut(writer) {
            Some(mine) if mine.covers(ranges) => false,
            Some(mine) => {
                mine.union(ranges);
                true
            }
            None if ranges.is_empty() => false,
            None => {
                self.0.insert(writer.clone(), ranges.clone());
                true
            }
        }
    }

    /// Forgets one dot (a writer without dots left is dropped).
    pub fn remove(&mut self, writer: &NodeId, counter: u64) {
        if let Some(r) = self.0.get_mut(writer) {
            r.remove(counter);
            if r.is_empty() {
                self.0.remove(writer);
            }
        }
    }

    /// Forgets the dots `a..=b` of `writer` (a writer without dots left is dropped).
    pub fn remove_range(&mut self, writer: &NodeId, a: u64, b: u64) {
        if let Some(r) = self.0.get_mut(writer) {
            r.remove_range(a, b);
            if r.is_empty() {
                self.0.remove(writer);
            }
        }
    }

    /// True if every dot of `other` is in `self`.
    pub fn covers(&self, other: &CausalContext) -> bool {
        other
            .0
            .iter()
            .all(|(w, r)| r.is_empty() || self.0.get(w).is_some_and(|mine| mine.covers(r)))
    }

    /// The ranges seen for `writer`.
    pub fn ranges(&self, writer: &NodeId) -> Option<&RangeSet> {
        self.0.get(writer)
    }

    /// Largest counter seen for `writer`.
    pub fn max(&self, writer: &NodeId) -> u64 {
        self.0.get(writer).map(RangeSet::max).unwrap_or(0)
    }

    /// True when no dot is held.
    pub fn is_empty(&self) -> bool {
        self.0.values().all(RangeSet::is_empty)
    }

    /// Total number of ranges (a measure of the context's encoded size).
    pub fn range_count(&self) -> usize {
        self.0.values().map(|r| r.ranges().len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    /// #16, finding 5: a range ending at u64::MAX made `insert` overflow.
    #[test]
    fn counters_at_the_top_of_the_range_do_not_overflow() {
        let mut rs = RangeSet::from_ranges(vec![(1, u64::MAX)]);
        rs.insert(u64::MAX);
        rs.insert(7);
        assert_eq!(rs.ranges(), &[(1, u64::MAX)]);
        let mut rs = RangeSet::from_ranges(vec![(u64::MAX - 1, u64::MAX)]);
        rs.insert(3);
        rs.insert_range(u64::MAX - 5, u64::MAX);
        assert_eq!(rs.ranges(), &[(3, 3), (u64::MAX - 5, u64::MAX)]);
        assert_eq!(rs.gaps().last(), Some((4, u64::MAX - 6)));
    }

    proptest! {
        #[test]
        fn rangeset_matches_a_plain_set(ops in proptest::collection::vec((1u64..60, 0u64..4), 0..60)) {
            let mut rs = RangeSet::new();
            let mut set = BTreeSet::new();
            for (a, len) in ops {
                if len == 0 { rs.insert(a); set.insert(a); }
                else { rs.insert_range(a, a + len); for c in a..=a + len { set.insert(c); } }
            }
            for c in 0..80 { prop_assert_eq!(rs.contains(c), set.contains(&c)); }
            // Normal form: sorted, disjoint, non-adjacent.
            for w in rs.ranges().windows(2) { prop_assert!(w[0].1 + 1 < w[1].0); }
            // Gaps are exactly the complement.
            let mut gap_set = BTreeSet::new();
            for (a, b) in rs.gaps() { for c in a..=b.min(80) { gap_set.insert(c); } }
            for c in 1..80 { prop_assert_eq!(gap_set.contains(&c), !set.contains(&c)); }
            prop_assert_eq!(RangeSet::from_ranges(rs.ranges().to_vec()), rs);
        }

        #[test]
        fn intersection_and_remove_match_a_plain_set(
            xs in proptest::collection::btree_set(1u64..60, 0..40),
            ys in proptest::collection::btree_set(1u64..60, 0..40),
            gone in proptest::collection::vec(0u64..62, 0..10),
        ) {
            let of = |s: &BTreeSet<u64>| RangeSet::from_ranges(s.iter().map(|&c| (c, c)).collect());
            let (mut x, y) = (of(&xs), of(&ys));
            let both: BTreeSet<u64> = xs.intersection(&ys).copied().collect();
            prop_assert_eq!(x.intersection(&y), of(&both));
            let mut left = xs.clone();
            for c in gone { x.remove(c); left.remove(&c); }
            prop_assert_eq!(&x, &of(&left));
            let mut y2 = y.clone();
            y2.remove_range(10, 30);
            let outside: BTreeSet<u64> = ys.iter().copied().filter(|c| !(10..=30).contains(c)).collect();
            prop_assert_eq!(y2, of(&outside));
        }
    }
}
