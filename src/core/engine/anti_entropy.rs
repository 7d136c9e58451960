//! What the frames of an anti-entropy exchange carry, applied to the engine; the
//! exchange itself (which frame when, what to answer) is `core::sync::Exchange`.

use super::Engine;
use crate::core::proto::{MemberState, SyncFrame, SyncKind};
use crate::core::state::{plausible_own_dot, CausalContext, Entry, Fence};
use crate::core::{NodeId, Now};

impl Engine {
    /// Counts an exchange we open.
    pub(crate) fn sync_started(&mut self) {
        self.stats.syncs_started += 1;
    }

    /// Counts an exchange a peer opened.
    pub(crate) fn sync_accepted(&mut self) {
        self.stats.syncs_accepted += 1;
    }

    /// Our `Open` frame: causal context, fence and member digest. A responder builds it
    /// after [`Engine::sync_on_open`], so that a rebase shows.
    pub(crate) fn sync_open_frame(&self, kind: SyncKind) -> SyncFrame {
        SyncFrame::Open {
            kind,
            ctx: self.store.context().clone(),
            gc_horizon_ms: 0,
            stable: self.store.fence().vouched(),
            members_digest: self.members.digest(),
        }
    }

    /// Handles `peer`'s `Open`: records what it has seen (for causal stability) and, if
    /// it collected deletes we may never have seen, rebases against it
    /// ([`crate::core::state::Store::rebase`]). Returns how the peer stands against our
    /// fence.
    pub(crate) fn sync_on_open(
        &mut self,
        now: Now,
        peer: &NodeId,
        ctx: &CausalContext,
        stable: &CausalContext,
    ) -> PeerFence {
        let peer_behind = self.store.fence().peer_is_behind(ctx, stable);
        let stale = self.store.fence().peer_is_stale(ctx, stable);
        let writers = self.stability_writers();
        self.stability.record(peer, ctx, writers.iter());
        let plausible = plausible_own_dot(now.wall_ms, self.store.limits());
        if Fence::implausible(stable, plausible) {
            // A fence over dots nobody can have issued yet (`{w: [(1, u64::MAX)]}`):
            // made up, and rebasing against it would drop entries for nothing.
            self.stats.fences_refused += 1;
        } else if self.store.is_behind(stable) {
            if peer_behind && self.id() > peer {
                // Each side collected what the other missed (a healed partition). The
                // peer rebases first, against the context we showed it; we rebase in a
                // later exchange, against the context it holds then. Were both to
                // rebase at once, each against the other's context from before its
                // own rebase, an entry both dropped would be held by no one.
                self.stats.rebases_deferred += 1;
            } else {
                self.store
                    .rebase(stable, ctx, now.wall_ms, self.cfg.tombstone_grace_ms);
                self.stats.rebases += 1;
            }
        }
        self.store.observe_peer_context(ctx, now.wall_ms);
        PeerFence {
            behind: peer_behind,
            stale,
        }
    }

    /// The store's rebase count: an exchange remembers it when it starts, and joins its
    /// peer's context only if no rebase happened meanwhile.
    pub(crate) fn sync_generation(&self) -> u64 {
        self.store.generation()
    }

    /// What we send in our turn after the peer's `Open`: our member list if `members`,
    /// then the entries the peer lacks in frames of at most `per_frame` entries (and
    /// about 512 KiB).
    pub(crate) fn sync_reply_frames(
        &self,
        peer_ctx: &CausalContext,
        members: bool,
        per_frame: usize,
    ) -> Vec<SyncFrame> {
        let mut frames = Vec::new();
        if members {
            // Ourselves first: the peer checks that it matches our certificate.
            for chunk in self.members.all_states().chunks(256) {
                frames.push(SyncFrame::Members(chunk.to_vec()));
            }
        }
        let mut cur = Vec::new();
        let mut bytes = 0usize;
        for e in self.store.missing_for(peer_ctx) {
            bytes += e.key.len() + e.value.as_ref().map_or(0, Vec::len) + 32 * e.vv.len();
            cur.push(e);
            if cur.len() >= per_frame.max(1) || bytes >= 512 * 1024 {
                frames.push(SyncFrame::Entries(std::mem::take(&mut cur)));
                bytes = 0;
            }
        }
        if !cur.is_empty() {
            frames.push(SyncFrame::Entries(cur));
        }
        frames
    }

    /// Handles a `Members` frame from `peer`.
    pub(crate) fn sync_on_members(&mut self, now: Now, peer: &NodeId, members: Vec<MemberState>) {
        self.members.heard_from(peer, now.mono_us);
        for m in members {
            let first_hand = &m.info.id == peer;
            self.apply_member(now, peer, m, first_hand);
        }
        self.tell_if_down(now, peer);
    }

    /// Handles an `Entries` frame; returns how many entries were refused. `stale`: the
    /// peer has not caught up with our fence ([`PeerFence::stale`]).
    pub(crate) fn sync_on_entries(&mut self, now: Now, entries: Vec<Entry>, stale: bool) -> usize {
        let mut refused = 0;
        for e in entries {
            if stale
                && self
                    .store
                    .fence()
                    .is_dropped_copy(self.store.context(), e.vv.dots())
            {
                // A value our rebase dropped, from a member that has not rebased: most
                // likely one a collected delete superseded. Its owner sends it back if
                // it is alive.
                self.stats.stale_copies_refused += 1;
                refused += 1;
                continue;
            }
            match self.apply_remote(now, e) {
                None => refused += 1,
                Some(a) => {
                    if let Some(entry) = &a.changed {
                        if !a.already_seen {
                            self.learned_elsewhere(entry);
                        }
                        self.stats.sync_entries_applied += 1;
                    }
                }
            }
        }
        refused
    }

    /// Completes an exchange with `peer` after everything it sent was applied: joins its
    /// context (`join`: `None` when the exchange must not, because it refused one of the
    /// peer's entries, whose dots must not count as seen), unless we rebased since it
    /// began (`generation` is the rebase count then): the peer chose what to send from
    /// what we held before, so its context would cover entries we dropped.
    pub(crate) fn sync_finish(
        &mut self,
        now: Now,
        peer: &NodeId,
        join: Option<&CausalContext>,
        generation: u64,
    ) {
        if generation != self.store.generation() {
            // Another exchange soon brings back what the rebase dropped.
            self.next_sync_us = self.next_sync_us.min(now.mono_us);
            self.stats.sync_joins_skipped += 1;
        } else {
            match join {
                Some(ctx) => {
                    self.store.join_context(ctx);
                    self.store.settle_dropped(ctx);
                }
                None => self.stats.sync_joins_skipped += 1,
            }
        }
        self.members.synced_with(peer, now.mono_us);
        self.stats.syncs_completed += 1;
    }

    /// Records a failed exchange.
    pub(crate) fn sync_failed(&mut self, _now: Now, _peer: &NodeId) {
        self.stats.syncs_failed += 1;
    }
}

/// How a peer's `Open` stands against our fence.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PeerFence {
    /// Behind what we vouch for: it rebases against us in this exchange, so the context
    /// it showed is not what it will hold, and is not joined.
    pub behind: bool,
    /// Not caught up with every fence we know of: its copies of entries our rebase
    /// dropped are refused.
    pub stale: bool,
}
