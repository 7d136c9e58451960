//! Causal stability: which dots every member has seen, so that tombstones over them
//! can be collected.
//!
//! Each anti-entropy exchange shows us the peer's causal context (its `Open`). We keep,
//! per member, the part of its latest context that names writers of tombstones we hold:
//! what it had acknowledged. A dot is *stable* when our own context and every member's
//! acknowledgement contain it; a member we have not exchanged with yet acknowledges
//! nothing. Contexts only grow (a rebase shrinks one, but a rebasing node holds nothing
//! a collected delete would supersede), so an acknowledgement stays true after it was
//! made. Dead members count until they are reaped; a reaped member's acknowledgement is
//! forgotten, and if it returns, the fence (`core::state::Fence`) catches it.
//!
//! Learning every member's context takes one exchange with each: exchanges go first to
//! the member synced with least recently, so with N members about N sync intervals.

use std::collections::{BTreeMap, BTreeSet};

use crate::core::state::CausalContext;
use crate::core::NodeId;

/// Per member, the dots it had seen at its latest exchange with us (only for writers
/// named by our tombstones).
#[derive(Debug, Clone, Default)]
pub struct Stability {
    acked: BTreeMap<NodeId, CausalContext>,
}

impl Stability {
    /// Records what `member` showed it had seen, keeping only `writers`' dots.
    pub fn record<'a>(
        &mut self,
        member: &NodeId,
        ctx: &CausalContext,
        writers: impl Iterator<Item = &'a NodeId>,
    ) {
        let mut kept = CausalContext::new();
        for w in writers {
            if let Some(r) = ctx.ranges(w) {
                kept.join_writer(w, r);
            }
        }
        self.acked.insert(member.clone(), kept);
    }

    /// Forgets members no longer in the table.
    pub fn retain(&mut self, mut in_table: impl FnMut(&NodeId) -> bool) {
        self.acked.retain(|id, _| in_table(id));
    }

    /// The dots of `writers` that `own` and every one of `members` have seen; `None`
    /// while a member has not shown us its context yet.
    pub fn stable<'a>(
        &self,
        own: &CausalContext,
        members: impl Iterator<Item = &'a NodeId>,
        writers: &BTreeSet<NodeId>,
    ) -> Option<CausalContext> {
        let mut meet = CausalContext::new();
        for w in writers {
            if let Some(r) = own.ranges(w) {
                meet.0.insert(w.clone(), r.clone());
            }
        }
        for m in members {
            let acked = self.acked.get(m)?;
            meet.0.retain(|w, r| match acked.ranges(w) {
                Some(theirs) => {
                    *r = r.intersection(theirs);
                    !r.is_empty()
                }
                None => false,
            });
        }
        Some(meet)
    }

    /// Members whose acknowledgement we hold.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.acked.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::state::RangeSet;

    fn id(s: &str) -> NodeId {
        NodeId::new(s).unwrap()
    }

    fn ctx(dots: &[(&str, u64, u64)]) -> CausalContext {
        let mut c = CausalContext::new();
        for &(w, a, b) in dots {
            c.join_writer(&id(w), &RangeSet::from_ranges(vec![(a, b)]));
        }
        c
    }

    #[test]
    fn stable_is_what_everyone_has_seen_and_nothing_before_everyone_spoke() {
        let mut s = Stability::default();
        let writers: BTreeSet<NodeId> = [id("w")].into();
        let own = ctx(&[("w", 1, 10), ("x", 1, 5)]);
        let members = [id("b"), id("c")];
        s.record(&id("b"), &ctx(&[("w", 1, 8), ("x", 1, 5)]), writers.iter());
        assert_eq!(
            s.stable(&own, members.iter(), &writers),
            None,
            "c has not spoken"
        );
        s.record(&id("c"), &ctx(&[("w", 3, 12)]), writers.iter());
        assert_eq!(
            s.stable(&own, members.iter(), &writers),
            Some(ctx(&[("w", 3, 8)]))
        );
        s.retain(|m| m != &id("c"));
        assert_eq!(s.len(), 1);
    }
}
