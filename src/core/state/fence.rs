//! The fence: what a node knows about deletes that were collected.
//!
//! A tombstone is collected only once every member in the table has seen it (causal
//! stability, see `core::engine::stability`), so no member left holds a value it
//! deletes. A node that was not in that table (reaped after a long absence, cut off in
//! a partition its peers reaped, or new) can still hold such a value: its peers' contexts
//! cover the value's dots, so nobody would ever send it the delete, and the value would
//! stay on it alone. The fence is how it finds out.
//!
//! `stable` is the union of the dots every member had seen when this node collected
//! tombstones; with `adopted` (the fences it rebased against) it is what the node
//! vouches for in every `Open`. A node whose context and fence do not cover what a peer
//! vouches for missed something that was collected without it, and *rebases* against
//! that peer (`core::state::rebase`): it asks the peer for the old entries the fence
//! covers, drops the ones the peer no longer holds, and adopts the peer's dots so that it
//! does not rebase again for the same collections. `adopted` is used only for that
//! decision and to pass the news on: it never enters the causal context, so a peer that
//! lies about its fence cannot hide writes from us.

use serde::{Deserialize, Serialize};

use super::CausalContext;

/// What a node knows about collected deletes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Fence {
    /// Dots every member had seen when we collected tombstones over them; sent to peers.
    #[serde(default)]
    pub stable: CausalContext,
    /// Dots of peers' fences we rebased against.
    #[serde(default)]
    pub adopted: CausalContext,
    /// Writers compacted out of the context, with the highest dot they had: they left
    /// (reaped), every member had seen all their dots, and no entry we hold names them.
    /// Their dots up to that count as seen, so a late copy changes nothing; they are not
    /// sent in our `Open`, which is why the context does not grow with every id ever
    /// seen. One id and a number each.
    #[serde(default)]
    pub compacted: std::collections::BTreeMap<crate::core::NodeId, u64>,
}

impl Fence {
    /// What we vouch for in our `Open`: the dots of our own collections and of the
    /// fences we rebased against. Passing adopted fences on is what lets a member that
    /// never meets the collector (the rest of a cut-off minority) rebase too: otherwise
    /// it would hand the stale values back to the members that did.
    pub fn vouched(&self) -> CausalContext {
        let mut v = self.stable.clone();
        v.join(&self.adopted);
        v
    }

    /// True if `peer_stable` names a dot no writer can have issued by `wall_ms`
    /// (`plausible`: the highest such counter): the fence was made up, and is ignored.
    pub fn implausible(peer_stable: &CausalContext, plausible: u64) -> bool {
        peer_stable.0.values().any(|r| r.max() > plausible)
    }

    /// True when `peer_stable` names dots that neither our context nor our fence covers:
    /// deletes were collected that we may not have seen.
    pub fn is_behind(&self, ctx: &CausalContext, peer_stable: &CausalContext) -> bool {
        peer_stable.0.iter().any(|(w, theirs)| {
            let mut known = ctx.ranges(w).cloned().unwrap_or_default();
            for mine in [self.stable.ranges(w), self.adopted.ranges(w)]
                .into_iter()
                .flatten()
            {
                known.union(mine);
            }
            !known.covers(theirs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::state::RangeSet;
    use crate::core::NodeId;

    fn ctx(w: &str, ranges: Vec<(u64, u64)>) -> CausalContext {
        let mut c = CausalContext::new();
        c.0.insert(NodeId::new(w).unwrap(), RangeSet::from_ranges(ranges));
        c
    }

    #[test]
    fn behind_until_context_or_fence_covers_the_peers_stable_dots() {
        let mut f = Fence::default();
        let peer = ctx("w", vec![(1, 10)]);
        assert!(f.is_behind(&ctx("w", vec![(1, 5)]), &peer));
        assert!(!f.is_behind(&ctx("w", vec![(1, 12)]), &peer));
        f.adopted = ctx("w", vec![(6, 10)]);
        assert!(!f.is_behind(&ctx("w", vec![(1, 5)]), &peer));
        assert!(!f.is_behind(&CausalContext::new(), &CausalContext::new()));
    }
}
