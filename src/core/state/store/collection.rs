//! Collection at causal stability: tombstones every member has seen, writers that left,
//! and the rebase of a node that missed collections (see `core::state::fence`).

use std::sync::Arc;

use super::Store;
use crate::core::state::{CausalContext, Fence, RebaseProbe};
use crate::core::NodeId;

impl Store {
    /// Writers named by the version vectors of tombstones we hold: the writers whose
    /// dots peers must have seen before a tombstone can be collected.
    pub fn tombstone_writers(&self) -> impl Iterator<Item = &NodeId> {
        self.tombstone_writers.keys()
    }

    /// Removes the tombstones stamped more than `grace_ms` before `wall_ms` whose every
    /// dot is in `stable` (dots every member has seen, ourselves included). Returns how
    /// many were removed.
    ///
    /// Stability is what makes removal safe: every member holds the delete or something
    /// newer, so none can hold a value it deletes, and none will send one (their
    /// contexts cover its dots). The grace keeps deletes around a while for members that
    /// have seen them but are slow to act on them, and bounds what a rebase may drop.
    pub fn collect_stable(&mut self, wall_ms: u64, grace_ms: u64, stable: &CausalContext) -> usize {
        let cutoff = wall_ms.saturating_sub(grace_ms);
        let due: Vec<Arc<str>> = self
            .tombstones
            .iter()
            .take_while(|(hlc, _)| hlc.ms < cutoff)
            .filter(|(_, key)| {
                self.entries
                    .get(key)
                    .is_some_and(|e| e.vv.dots().all(|(w, c)| stable.contains(w, c)))
            })
            .map(|(_, key)| key.clone())
            .collect();
        if due.is_empty() {
            return 0;
        }
        let mut fenced = CausalContext::new();
        for key in &due {
            if let Some(e) = self.entries.get(key) {
                for (w, _) in e.vv.dots() {
                    if let Some(r) = stable.ranges(w) {
                        fenced.join_writer(w, r);
                    }
                }
            }
            self.remove(key);
        }
        // Members that were not in our table (reaped, new) learn from these dots that
        // deletes were collected without them.
        self.fence.stable.join(&fenced);
        self.tracker.fence();
        self.stats.tombstones_collected += due.len() as u64;
        due.len()
    }

    /// Compacts departed writers out of the context: each of `departed` (writers no
    /// longer in the member table) whose every dot is in `stable` and that no entry we
    /// hold names. Returns how many were compacted.
    ///
    /// Such a writer's keys were all deleted and collected (a version vector never loses
    /// a writer, so any surviving key would still name it), and every member has seen
    /// all it wrote, so nothing of it remains to send or to receive. Typical of
    /// short-lived nodes (pods with generated names) whose keys go when they do.
    pub fn compact_departed<'a>(
        &mut self,
        departed: impl Iterator<Item = &'a NodeId>,
        stable: &CausalContext,
    ) -> usize {
        let mut n = 0;
        for w in departed {
            if w == &self.me || self.held_max(w) > 0 {
                continue;
            }
            let Some(mine) = self.ctx.ranges(w) else {
                continue;
            };
            if !stable.ranges(w).is_some_and(|s| s.covers(mine)) {
                continue;
            }
            let top = mine.max();
            let seen = self.fence.compacted.entry(w.clone()).or_default();
            *seen = (*seen).max(top);
            self.ctx.0.remove(w);
            for c in [&mut self.fence.stable, &mut self.fence.adopted] {
                c.0.remove(w);
            }
            n += 1;
        }
        if n > 0 {
            self.tracker.ctx();
            self.tracker.fence();
            self.stats.writers_compacted += n as u64;
        }
        n
    }

    /// Writers in our context that are not `me`.
    pub fn context_writers(&self) -> impl Iterator<Item = &NodeId> {
        self.ctx.0.keys().filter(move |w| *w != &self.me)
    }

    /// What we know about collected deletes.
    pub fn fence(&self) -> &Fence {
        &self.fence
    }

    /// True when a peer's `stable` dots are not all covered by our context or fence: the
    /// peer collected deletes we may never have seen, and we must rebase against it.
    pub fn is_behind(&self, peer_stable: &CausalContext) -> bool {
        self.fence.is_behind(&self.ctx, peer_stable)
    }

    /// Begins a rebase against a peer whose fence we are behind ([`RebaseProbe`]): the
    /// candidates are the entries stamped more than `grace_ms` ago whose dots are all in
    /// what the peer vouches for and in its context `peer_ctx`.
    ///
    /// Nothing else can be dropped: an entry the peer has not seen goes to it in this
    /// exchange, and an entry younger than the grace cannot lie under a collected delete
    /// (the delete came after it, and was collected only once older than the grace), so
    /// a lying peer cannot make us drop a recent write, ours or anyone's.
    pub fn probe_rebase(
        &self,
        peer_vouched: &CausalContext,
        peer_ctx: &CausalContext,
        wall_ms: u64,
        grace_ms: u64,
    ) -> RebaseProbe {
        let cutoff = wall_ms.saturating_sub(grace_ms);
        let mut probe = RebaseProbe {
            vouched: peer_vouched.clone(),
            ..RebaseProbe::default()
        };
        for e in self.entries.values().filter(|e| {
            e.hlc.ms < cutoff
                && e.vv
                    .dots()
                    .all(|(w, c)| peer_vouched.contains(w, c) && peer_ctx.contains(w, c))
        }) {
            for (w, c) in e.vv.dots() {
                probe.hidden.insert(w, c);
            }
            probe.candidates.insert(e.key.clone(), e.vv.clone());
        }
        probe
    }

    /// Completes a rebase once the peer has sent everything it holds that our hidden
    /// context lacked: drops each candidate it did not send back and that did not change
    /// meanwhile (the peer collected a delete over it), and adopts what the peer vouches
    /// for. The dropped entries' dots stay in the context. Returns how many were dropped.
    ///
    /// The dots the peer both vouches for and shows in `peer_ctx` (clipped, per writer,
    /// at our own evidence) then join our context: they are the writes its collected
    /// deletes removed, which we may never have seen, and a copy of one arriving later
    /// (from a member of our side that has not rebased yet) must change nothing. This
    /// trusts the peer's fence as the rebase itself does (fences are not signed yet).
    pub fn finish_rebase(&mut self, probe: RebaseProbe, peer_ctx: &CausalContext) -> usize {
        let mut dropped = 0;
        for (key, vv) in &probe.candidates {
            if probe.returned.contains(key) {
                continue;
            }
            let Some((k, e)) = self.entries.get_key_value(key.as_str()) else {
                continue;
            };
            if &e.vv == vv {
                let k = k.clone();
                self.remove(&k);
                dropped += 1;
            }
        }
        for (w, vouched) in &probe.vouched.0 {
            // Clipped at our evidence of `w` (its writes we received), not at the dots
            // our entries name: another writer may name any dot of `w`'s in a key of its
            // own, and with a plausible fence would then reach `w`'s future.
            let Some(shown) = peer_ctx.ranges(w) else {
                continue;
            };
            let clipped = vouched.intersection(shown).clipped(self.ctx.max(w));
            if self.ctx.join_writer(w, &clipped) {
                self.tracker.ctx();
            }
        }
        self.fence.adopted.join(&probe.vouched);
        self.tracker.fence();
        self.stats.rebase_dropped += dropped as u64;
        dropped
    }
}
