//! What the frames of an anti-entropy exchange carry, applied to the engine; the
//! exchange itself (which frame when, what to answer) is `core::sync::Exchange`.

use super::{Engine, Output};
use crate::core::proto::{
    encoded_len, open_digest, MemberState, OpenDigest, SyncFrame, SyncKind, OPEN_DIGEST_LEN,
    OPEN_SAME_CTX, OPEN_SAME_STABLE,
};
use crate::core::state::{group_runs, plausible_own_dot, CausalContext, Entry, Fence, RebaseProbe};
use crate::core::sync::FAR_BEHIND;
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

    /// Opens this interval's exchange: a rebase we owe first, else the member synced
    /// with least recently among a small random sample.
    pub(super) fn start_periodic_sync(&mut self) {
        // Anti-entropy comes last under pressure: put it off while the bucket is below
        // its reserve (the next interval tries again).
        if self.limiter.is_limited()
            && self.limiter.tokens(self.clock_us) < self.limiter.burst() / 2 + 1_024
        {
            self.stats.syncs_deferred += 1;
            return;
        }
        // A rebase we owe comes first (owed to a member that has left, it is dropped:
        // another member's fence will show we are behind, if we still are); then the
        // member synced with least recently, among a small random sample.
        let members = &self.members;
        self.rebase_due.retain(|id, _| members.get(id).is_some());
        let due = self
            .rebase_due
            .keys()
            .find(|id| self.members.is_live(id))
            .cloned();
        if let Some(with) = due {
            if let Some(addr) = self.addr_of(&with) {
                self.out.push_back(Output::Sync { with, addr });
                return;
            }
        }
        // Then the rest of what a peer held back from us, from that peer: it has it,
        // and its member list and most of its context match ours by now. Or the peer
        // a datagram of ours never left for: it may lack what that carried.
        if let Some(with) = self.pull_from.take().filter(|id| self.members.is_live(id)) {
            if let Some(addr) = self.addr_of(&with) {
                self.out.push_back(Output::Sync { with, addr });
                return;
            }
        }
        let sample = self.sync_candidates(4);
        let best = sample.into_iter().min_by_key(|id| {
            self.members
                .get(id)
                .and_then(|m| m.last_sync_us)
                .unwrap_or(0)
        });
        if let Some(with) = best {
            if let Some(addr) = self.addr_of(&with) {
                self.out.push_back(Output::Sync { with, addr });
            }
        }
    }

    /// Our `Open` frame: causal context (with a rebase's candidates hidden, so that the
    /// peer sends back those it still holds), what we vouch for, the member digest, and
    /// whether the peer may hold entries back (not while we rebase or are backed off).
    pub(crate) fn sync_open_frame(&self, kind: SyncKind, probe: Option<&RebaseProbe>) -> SyncFrame {
        let ctx = match probe {
            Some(p) => p.hide(self.store.context()),
            None => self.store.context().clone(),
        };
        SyncFrame::Open {
            kind,
            ctx,
            gc_horizon_ms: 0,
            stable: self.store.fence().vouched(),
            members_digest: self.members.digest(),
            compact: true,
            same: 0,
            digest: None,
            again: false,
            // A rebase must get back every candidate the peer holds in this exchange
            // (one held back would stay hidden in the next, and the rebase never end).
            reads_held: probe.is_none() && self.catches_up_in_steps(),
        }
    }

    /// Whether we catch up in bounded turns (our `Open`s say `reads_held`) and bring the
    /// next exchange forward when behind: not while backed off (bandwidth short, the
    /// cluster unstable), when anti-entropy keeps its longer interval and a whole turn,
    /// paced by the bandwidth bucket, catches us up faster than one bounded turn per
    /// interval.
    fn catches_up_in_steps(&self) -> bool {
        self.backoff.level == 0
    }

    /// Our context and fence as a whole `Open` names them (no rebase hiding anything).
    pub(crate) fn sync_own(&self) -> (CausalContext, CausalContext) {
        (self.store.context().clone(), self.store.fence().vouched())
    }

    /// The digest of our context and fence ([`open_digest`]).
    pub(crate) fn sync_own_digest(&self) -> OpenDigest {
        open_digest(self.store.context(), &self.store.fence().vouched())
    }

    /// Our opening of a periodic exchange as a digest of our context and fence in place
    /// of both, if they are larger than the digest (a small context costs less whole
    /// than as a digest and a fourth turn on a mismatch); `None` means a whole `Open`.
    pub(crate) fn sync_digest_open(&self, kind: SyncKind) -> Option<SyncFrame> {
        if kind != SyncKind::Periodic {
            return None;
        }
        let (ctx, stable) = (self.store.context(), self.store.fence().vouched());
        if encoded_len(ctx) + encoded_len(&stable) <= 2 * OPEN_DIGEST_LEN {
            return None;
        }
        Some(SyncFrame::Open {
            kind,
            ctx: CausalContext::new(),
            gc_horizon_ms: 0,
            stable: CausalContext::new(),
            members_digest: self.members.digest(),
            compact: true,
            same: 0,
            digest: Some(open_digest(ctx, &stable)),
            again: false,
            reads_held: self.catches_up_in_steps(),
        })
    }

    /// Counts a digest `Open` we sent (`shared` is `None`) or answered (whether its
    /// digest was ours).
    pub(crate) fn sync_digest_counted(&mut self, shared: Option<bool>) {
        match shared {
            None => self.stats.sync_digest_opens += 1,
            Some(true) => self.stats.sync_digests_shared += 1,
            Some(false) => self.stats.sync_digests_differed += 1,
        }
    }

    /// The rebase to run in an exchange we open with `peer`: one the peer's last `Open`
    /// showed we need ([`Engine::sync_on_open`] as initiator), against what it vouched
    /// for and had seen then (both only grow, so the candidates are, if anything, fewer).
    pub(crate) fn sync_probe_for(&self, now: Now, peer: &NodeId) -> Option<RebaseProbe> {
        let (vouched, ctx) = self.rebase_due.get(peer)?;
        Some(
            self.store
                .probe_rebase(vouched, ctx, now.wall_ms, self.cfg.tombstone_grace_ms),
        )
    }

    /// Handles `peer`'s `Open`: records what it has seen (for causal stability) and
    /// checks what it vouches for. If it collected deletes we may never have seen, a
    /// responder runs the rebase in this exchange (it builds its `Open` after this); an
    /// initiator, whose `Open` went out already, runs it in its next exchange with this
    /// peer, which it opens at once, and must not join the peer's context in this one:
    /// it names the collected deletes, whose values we may still hold.
    pub(crate) fn sync_on_open(
        &mut self,
        now: Now,
        peer: &NodeId,
        responder: bool,
        ctx: &CausalContext,
        vouched: &CausalContext,
    ) -> FenceCheck {
        let writers = self.stability_writers();
        self.stability.record(peer, ctx, writers.iter());
        self.store.observe_peer_context(ctx, now.wall_ms);
        let plausible = plausible_own_dot(now.wall_ms, self.store.limits());
        if Fence::implausible(vouched, plausible) {
            // A fence over dots nobody can have issued yet (`{w: [(1, u64::MAX)]}`):
            // made up, and a rebase against it would drop entries for nothing.
            self.stats.fences_refused += 1;
            return FenceCheck::Covered;
        }
        if !self.store.is_behind(vouched) {
            return FenceCheck::Covered;
        }
        if responder {
            return FenceCheck::Rebase(self.store.probe_rebase(
                vouched,
                ctx,
                now.wall_ms,
                self.cfg.tombstone_grace_ms,
            ));
        }
        self.rebase_due
            .insert(peer.clone(), (vouched.clone(), ctx.clone()));
        self.next_sync_us = self.next_sync_us.min(now.mono_us);
        FenceCheck::RebaseNext
    }

    /// What we send in our turn after the peer's `Open`: our member list if `members`,
    /// then the entries the peer lacks (at most `limit`, oldest first when more: see
    /// [`Store::missing_for_at_most`](crate::core::state::Store::missing_for_at_most)) in
    /// frames of at most `per_frame` entries (and about 512 KiB), and `Held` if some were
    /// left out.
    pub(crate) fn sync_reply_frames(
        &mut self,
        peer_ctx: &CausalContext,
        members: bool,
        per_frame: usize,
        limit: usize,
    ) -> Vec<SyncFrame> {
        let mut frames = Vec::new();
        if members {
            // Ourselves first: the peer checks that it matches our certificate.
            for chunk in self.members.all_states().chunks(256) {
                frames.push(SyncFrame::Members(chunk.to_vec()));
            }
        }
        let (missing, held) = self.store.missing_for_at_most(peer_ctx, limit);
        let mut cur = Vec::new();
        let mut bytes = 0usize;
        for e in missing {
            bytes += e.key.len() + e.value.as_ref().map_or(0, Vec::len) + 32 * e.vv.len();
            cur.push(e);
            if cur.len() >= per_frame.max(1) || bytes >= 512 * 1024 {
                push_entries(&mut frames, std::mem::take(&mut cur));
                bytes = 0;
            }
        }
        push_entries(&mut frames, cur);
        if held {
            self.stats.sync_turns_held += 1;
            frames.push(SyncFrame::Held);
        }
        frames
    }

    /// Starts the next exchange sooner than an interval later: the one with `peer` that
    /// just ended showed we are behind. If it held entries back (`held`) the next starts at
    /// once, with `peer` if `pull` (it brought news and nothing we refused: it has the
    /// rest); if it sent many we lacked, which the tree had not delivered, a quarter
    /// interval later. The next runs against our context as it is then, so what the tree
    /// delivered meanwhile is not sent again. Not while backed off.
    pub(crate) fn sync_follow_up(&mut self, now: Now, peer: &NodeId, held: bool, pull: bool) {
        if pull {
            self.pull_from = Some(peer.clone());
        }
        if !self.catches_up_in_steps() {
            // Only whom the next exchange goes to changes.
            return;
        }
        self.stats.sync_follow_ups += 1;
        let delay_us = if held { 0 } else { self.quarter_interval_us() };
        self.next_sync_us = self.next_sync_us.min(now.mono_us.saturating_add(delay_us));
    }

    /// Input from the driver: a datagram of ours to `peer` never left (the path to it
    /// had no room for it). `peer` may now lack what it carried and no one else knows,
    /// so our next exchange goes to it ([`Engine::sync_soon`]).
    pub fn datagram_refused(&mut self, now: Now, peer: &NodeId) {
        self.advance_clock(now);
        if !self.members.is_live(peer) {
            return;
        }
        if self.pull_from.is_none() {
            self.pull_from = Some(peer.clone());
        }
        self.sync_soon();
    }

    /// How much sooner than the interval an exchange comes after a sign we are behind
    /// (a follow-up, a known loss, the end of a burst): long enough for what the tree
    /// still carries to land, so the exchange sends only what was lost.
    fn quarter_interval_us(&self) -> u64 {
        self.cfg.sync_interval_ms * 1000 / 4
    }

    /// An update the tree or a graft brought us as news.
    pub(super) fn note_news(&mut self) {
        self.news_since_sync = self.news_since_sync.saturating_add(1);
        self.last_news_us = self.clock_us;
    }

    /// When our next exchange starts: at the interval's end, or a quarter interval after
    /// a burst ended, whichever is first. A burst is [`FAR_BEHIND`] or more updates
    /// brought by the tree or grafts since our last exchange began; it has ended when
    /// none came for a quarter interval (so what the tree still carried has landed, and
    /// the exchange sends only what was lost). Losses nobody knows of (a datagram dropped
    /// from a full receive buffer, or on the path) are likeliest in a burst, and this
    /// finds them sooner than the interval; under a steady load no quarter interval is
    /// quiet, so nothing is added. Not while backed off.
    pub(super) fn sync_deadline(&self) -> u64 {
        if self.news_since_sync >= FAR_BEHIND && self.catches_up_in_steps() {
            let quiet = self.last_news_us.saturating_add(self.quarter_interval_us());
            return self.next_sync_us.min(quiet);
        }
        self.next_sync_us
    }

    /// A known loss (a datagram that never left, grafts given up after every try): the
    /// next exchange comes a quarter interval from now, not whenever the interval
    /// brings it. Not while backed off: then the bandwidth is short and the storm's
    /// exchanges keep their spacing (whole turns catch up faster there).
    pub(crate) fn sync_soon(&mut self) {
        if !self.catches_up_in_steps() {
            return;
        }
        self.stats.sync_known_losses += 1;
        let at = self.clock_us.saturating_add(self.quarter_interval_us());
        self.next_sync_us = self.next_sync_us.min(at);
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

    /// Counts a malformed run of `count` writes from a peer's exchange; returns how many
    /// entries that refuses (at least one, so the exchange does not join the peer's
    /// context).
    pub(crate) fn sync_refused_run(&mut self, count: usize) -> usize {
        self.stats.items_invalid += 1;
        count.max(1)
    }

    /// Handles an `Entries` frame: how many entries changed our state and how many were
    /// refused. Entries for a rebase's candidates are noted in `probe`: the peer still
    /// holds them.
    pub(crate) fn sync_on_entries(
        &mut self,
        now: Now,
        entries: Vec<Entry>,
        mut probe: Option<&mut RebaseProbe>,
    ) -> Received {
        let mut got = Received::default();
        for e in entries {
            if let Some(p) = probe.as_deref_mut() {
                p.returned(&e.key);
            }
            match self.apply_remote(now, e) {
                None => got.refused += 1,
                Some(a) => {
                    if let Some(entry) = &a.changed {
                        if !a.already_seen {
                            self.learned_elsewhere(entry);
                        }
                        self.stats.sync_entries_applied += 1;
                        got.applied += 1;
                    }
                }
            }
        }
        got
    }

    /// Completes an exchange with `peer` after everything it sent was applied: joins its
    /// context and completes the exchange's rebase, if any (`join`: `None` when the
    /// exchange must do neither, because it refused one of the peer's entries: their
    /// dots must not count as seen, and a refused entry may be a rebase candidate the
    /// peer sent back).
    pub(crate) fn sync_finish(
        &mut self,
        now: Now,
        peer: &NodeId,
        join: Option<&CausalContext>,
        probe: Option<RebaseProbe>,
    ) {
        match join {
            Some(ctx) => {
                // The rebase first: the peer's context names the collected deletes,
                // and the values they removed must be gone before it is joined.
                if let Some(p) = probe {
                    self.store.finish_rebase(p, ctx);
                    self.rebase_due.remove(peer);
                    self.stats.rebases += 1;
                }
                self.store.join_context(peer, ctx);
            }
            None => self.stats.sync_joins_skipped += 1,
        }
        self.members.synced_with(peer, now.mono_us);
        self.stats.syncs_completed += 1;
    }

    /// Records a failed exchange.
    pub(crate) fn sync_failed(&mut self, _now: Now, _peer: &NodeId) {
        self.stats.syncs_failed += 1;
    }
}

/// What a frame of a peer's entries did to our state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Received {
    /// Entries that changed it (we lacked them).
    pub(crate) applied: usize,
    /// Entries refused (their dots must not count as seen).
    pub(crate) refused: usize,
}

/// What a peer's `Open` shows about our fence against what it vouches for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FenceCheck {
    /// We have seen all it vouches for (or it vouches for the impossible, and is
    /// ignored).
    Covered,
    /// We are behind and answer the exchange: the rebase runs in it.
    Rebase(RebaseProbe),
    /// We are behind and opened the exchange: the rebase runs in our next one with this
    /// peer, and this one must not join its context.
    RebaseNext,
}

/// Adds frames carrying `entries`: the writes of one signed batch as runs (their
/// signature and shared path hashes once), the others as they are.
fn push_entries(frames: &mut Vec<SyncFrame>, entries: Vec<Entry>) {
    let (runs, alone) = group_runs(entries);
    if !runs.is_empty() {
        frames.push(SyncFrame::Sealed(runs));
    }
    if !alone.is_empty() {
        frames.push(SyncFrame::Entries(alone));
    }
}

/// A responder's `Open` with what equals the initiator's `Open` (`peer_ctx`,
/// `peer_stable`) sent empty and marked in `same`: the initiator substitutes what it sent.
/// Equal as sent, so the initiator reads exactly the `Open` it would have read in full.
pub(crate) fn compact_open(
    open: &mut SyncFrame,
    peer_ctx: &CausalContext,
    peer_stable: &CausalContext,
) {
    if let SyncFrame::Open {
        ctx, stable, same, ..
    } = open
    {
        if ctx == peer_ctx {
            *ctx = CausalContext::new();
            *same |= OPEN_SAME_CTX;
        }
        if stable == peer_stable {
            *stable = CausalContext::new();
            *same |= OPEN_SAME_STABLE;
        }
    }
}
