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
//! tombstones; it travels in every `Open`. A node whose context does not cover a peer's
//! `stable` dots missed something that was collected without it, and *rebases* against
//! that peer (`Store::rebase`): it drops what the peer vouches every member had seen, the
//! peer sends back what it still holds, and the node adopts the peer's `stable` dots
//! into `adopted` so that it does not rebase again for the same collections. `adopted`
//! is used only for that decision: it never enters the causal context, so a peer that
//! lies about its fence cannot hide writes from us. `dropped` remembers what a rebase
//! took out of the context until an exchange accounts for it.

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
    /// Dots of entries a rebase dropped that no exchange has accounted for since: a peer
    /// that holds such an entry sends it back; the next completed exchange whose peer has
    /// seen the dot and did not send it shows the write is dead (superseded, or under a
    /// collected delete), and the dot re-enters our context (`Store::settle_dropped`), so
    /// that a late copy cannot bring it back.
    #[serde(default)]
    pub dropped: CausalContext,
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
    ///
    /// An adopted fence is passed on only once every dot our rebase dropped is accounted
    /// for: until then our context lacks those dots, and a member rebasing against it
    /// would keep the stale values we are about to find dead.
    ///
    /// Dots a rebase dropped and no exchange has accounted for yet go with it: we have
    /// seen them (they are out of our context only so that their holders send them
    /// back), and a peer must not take us for one that missed them.
    pub fn vouched(&self) -> CausalContext {
        let mut v = self.stable.clone();
        if self.dropped.is_empty() {
            v.join(&self.adopted);
        } else {
            v.join(&self.dropped);
        }
        v
    }

    /// True when a peer that opened with `peer_ctx` and `peer_stable` has not caught up
    /// with every fence we know of (adopted ones included): it may hold values under
    /// deletes collected without it, so what it sends of the dots our rebase dropped is
    /// stale, not a sign that those writes are alive.
    pub fn peer_is_stale(&self, peer_ctx: &CausalContext, peer_stable: &CausalContext) -> bool {
        let mut all = self.stable.clone();
        all.join(&self.adopted);
        uncovered(peer_ctx, [peer_stable, peer_stable], &all)
    }

    /// True when every dot of an entry is in our context or `dropped`, and one at least
    /// in `dropped`: a copy of an entry our rebase dropped.
    pub fn is_dropped_copy<'a>(
        &self,
        ctx: &CausalContext,
        mut dots: impl Iterator<Item = (&'a crate::core::NodeId, u64)>,
    ) -> bool {
        let mut any = false;
        let all = dots.all(|(w, c)| {
            let d = self.dropped.contains(w, c);
            any |= d;
            d || ctx.contains(w, c)
        });
        all && any
    }

    /// True if `peer_stable` names a dot no writer can have issued by `wall_ms`
    /// (`plausible`: the highest such counter): the fence was made up, and is ignored.
    pub fn implausible(peer_stable: &CausalContext, plausible: u64) -> bool {
        peer_stable.0.values().any(|r| r.max() > plausible)
    }

    /// True when `peer_stable` names dots that neither our context nor our fence covers:
    /// deletes were collected that we may not have seen.
    pub fn is_behind(&self, ctx: &CausalContext, peer_stable: &CausalContext) -> bool {
        uncovered(ctx, [&self.stable, &self.adopted], peer_stable)
    }

    /// True when a peer that opened with `peer_ctx` and `peer_stable` is behind what we
    /// vouch for: it will rebase against us, so the context it showed is not what it
    /// will hold, and we must not take it as seen.
    pub fn peer_is_behind(&self, peer_ctx: &CausalContext, peer_stable: &CausalContext) -> bool {
        uncovered(peer_ctx, [peer_stable, peer_stable], &self.vouched())
    }
}

/// True when `ctx` and `fence` together do not cover every dot of `other`.
fn uncovered(ctx: &CausalContext, fence: [&CausalContext; 2], other: &CausalContext) -> bool {
    other.0.iter().any(|(w, theirs)| {
        let mut known = ctx.ranges(w).cloned().unwrap_or_default();
        for part in fence.iter().filter_map(|f| f.ranges(w)) {
            known.union(part);
        }
        !known.covers(theirs)
    })
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
