//! Identity binding of membership claims: a node may speak only for itself.
//!
//! A claim about member Y is *first-hand* when it comes from Y: in a datagram whose
//! authenticated sender is Y, or in a `Members` frame of an anti-entropy exchange with
//! Y. Every other claim about Y is *second-hand*. Second-hand claims may introduce a
//! member we do not know (otherwise joins could not spread) and may make a known member
//! worse (suspect, dead), never better or different: they cannot mark Y left (a
//! second-hand leave of a live member becomes a suspicion), revive Y, refute a
//! suspicion of Y, raise Y's incarnation as alive, or change Y's metadata.
//!
//! A refused claim is a hint, not noise: it is counted, and we send Y our view of it
//! directly (at most once per probe timeout per member, retried while unanswered). Y,
//! when told something about
//! itself that is older than or different from its current state, answers the teller
//! directly with that state (at most once per probe timeout per teller), which is
//! first-hand. Refutations, revivals, leaves and metadata updates thus still reach every
//! node, one round trip later than gossip alone would bring them.
//!
//! [`Claims`] holds the rate limits, retries and announcement queue and decides with
//! them; the engine routes each claim between the member table, this part, SWIM and
//! the wire.

use std::collections::BTreeMap;

use super::{Config, Engine};
use crate::core::dissemination::Topic;
use crate::core::limiter::Traffic;
use crate::core::membership::{Membership, SecondHand};
use crate::core::proto::{Item, MemberState};
use crate::core::{NodeId, Now};

/// Most entries a rate-limit map keeps before old ones are dropped.
const MAX_TRACKED: usize = 1024;

/// Verifications of one hint sent before giving up (the first included): the round
/// trip is two datagrams, either of which may be lost.
const VERIFY_ATTEMPTS: u32 = 3;

/// The engine's claims part: rate limits and retries of the verification round trip,
/// the paced announcement of a refutation, and each relayer's introduction budget.
/// What a claim means is the member table's to judge (`Membership::judge_second_hand`);
/// this part decides when to verify, answer, announce and admit.
#[derive(Debug, Clone, Default)]
pub(super) struct Claims {
    /// Members we last sent our view of them, and when.
    verified: Gate,
    /// Peers we last answered with our own state, and when.
    answered: Gate,
    /// Member → (incarnation a refused claim named, verifications sent): retried every
    /// probe timeout until we hold the member at that incarnation or the attempts run out.
    pending: BTreeMap<NodeId, (u64, u32)>,
    /// When (mono µs) we last announced a refutation to every live member.
    announced_us: Option<u64>,
    /// Members the announcement has yet to reach (paced by the bandwidth bucket).
    to_announce: Vec<NodeId>,
    /// Second-hand introductions each peer may still make.
    intros: IntroBudget,
}

/// Per relaying peer, a token bucket of second-hand introductions (`intro_burst`
/// tokens, `intro_per_sec` back per second), over a bounded number of peers.
#[derive(Debug, Clone, Default)]
pub(super) struct IntroBudget {
    /// Peer → (tokens in thousandths, when last refilled in mono µs).
    peers: BTreeMap<NodeId, (u64, u64)>,
}

impl IntroBudget {
    /// Takes one token of `peer`'s; false when it has none left. A peer not yet
    /// tracked starts full; with [`MAX_TRACKED`] peers tracked, the full ones are
    /// forgotten first (they lose nothing by it).
    fn take(&mut self, peer: &NodeId, now_us: u64, burst: u32, per_sec: u32) -> bool {
        let cap = u64::from(burst) * 1_000;
        // Thousandths of a token per ms elapsed: per_sec tokens per second.
        let refilled = |t: u64, at: u64| {
            let back = now_us.saturating_sub(at) / 1_000 * u64::from(per_sec);
            t.saturating_add(back).min(cap)
        };
        if !self.peers.contains_key(peer) && self.peers.len() >= MAX_TRACKED {
            self.peers.retain(|_, (t, at)| refilled(*t, *at) < cap);
            if self.peers.len() >= MAX_TRACKED {
                return false;
            }
        }
        let (tokens, at) = self.peers.entry(peer.clone()).or_insert((cap, now_us));
        *tokens = refilled(*tokens, *at);
        *at = now_us;
        if *tokens < 1_000 {
            return false;
        }
        *tokens -= 1_000;
        true
    }
}

/// A rate limit per key (at most once per period each) over a bounded number of keys.
#[derive(Debug, Clone, Default)]
pub(super) struct Gate {
    /// Key → when (mono µs) it was last let through.
    at: BTreeMap<NodeId, u64>,
    /// When expired keys were last forgotten.
    pruned_us: u64,
}

impl Gate {
    /// True (and records `now_us`) if `key` was not let through within `period_us`.
    /// At most [`MAX_TRACKED`] keys are held: expired ones are forgotten when it is full,
    /// at most once per quarter period (a scan costs O(keys), and after a healed
    /// partition thousands of members pass through here), and while it is still full
    /// of keys let through within the period, new keys wait (their callers retry).
    fn admit(&mut self, key: &NodeId, now_us: u64, period_us: u64) -> bool {
        let horizon = now_us.saturating_sub(period_us);
        if let Some(at) = self.at.get_mut(key) {
            if *at > horizon {
                return false;
            }
            *at = now_us;
            return true;
        }
        if self.at.len() >= MAX_TRACKED {
            if now_us >= self.pruned_us + period_us / 4 {
                self.at.retain(|_, at| *at > horizon);
                self.pruned_us = now_us;
            }
            if self.at.len() >= MAX_TRACKED {
                return false;
            }
        }
        self.at.insert(key.clone(), now_us);
        true
    }
}

impl Claims {
    /// Takes one of `sender`'s second-hand introductions (`intro_burst` tokens,
    /// `intro_per_sec` back per second); false when it has none left.
    pub(super) fn admit_intro(&mut self, cfg: &Config, sender: &NodeId, now_us: u64) -> bool {
        self.intros
            .take(sender, now_us, cfg.intro_burst, cfg.intro_per_sec)
    }

    /// Remembers that a refused claim named member `id` at `incarnation`, a later life
    /// than the `held` one: worth asking again if the first answer does not arrive.
    pub(super) fn note_pending(&mut self, id: &NodeId, incarnation: u64, held: u64) {
        if incarnation <= held {
            return;
        }
        let p = &mut self.pending;
        if let Some(e) = p.get_mut(id) {
            if e.0 < incarnation {
                *e = (incarnation, 0);
            }
        } else if p.len() < MAX_TRACKED {
            p.insert(id.clone(), (incarnation, 0));
        }
    }

    /// True if we may send member `id` our view of it now (at most once per probe
    /// timeout per member: an answer takes a round trip, and a lost one is asked again
    /// as soon as an ack would be overdue); counts the attempt.
    pub(super) fn admit_verification(&mut self, cfg: &Config, id: &NodeId, now_us: u64) -> bool {
        let period = cfg.probe_timeout_ms * 1000;
        if !self.verified.admit(id, now_us, period) {
            return false;
        }
        if let Some(e) = self.pending.get_mut(id) {
            e.1 += 1;
        }
        true
    }

    /// The members still owed a verification: those whose refused claim named a later
    /// life than `members` holds, with attempts left (the others are forgotten).
    pub(super) fn unanswered(&mut self, members: &Membership) -> Vec<NodeId> {
        if self.pending.is_empty() {
            return Vec::new();
        }
        self.pending.retain(|id, (incarnation, attempts)| {
            *attempts < VERIFY_ATTEMPTS
                && members
                    .get(id)
                    .is_some_and(|m| m.state.incarnation < *incarnation)
        });
        self.pending.keys().cloned().collect()
    }

    /// After a refutation: true if every live member of `members` is to be told at once
    /// (at most once per probe period), and queues them.
    pub(super) fn start_announcing(
        &mut self,
        cfg: &Config,
        members: &Membership,
        now_us: u64,
    ) -> bool {
        let period = cfg.probe_interval_ms * 1000;
        let horizon = now_us.saturating_sub(period);
        if self.announced_us.is_some_and(|at| at > horizon) {
            return false;
        }
        self.announced_us = Some(now_us);
        self.to_announce = members.live_ids().to_vec();
        true
    }

    /// True while members wait to be told of our refutation.
    pub(super) fn announcing(&self) -> bool {
        !self.to_announce.is_empty()
    }

    /// The next (up to) `n` members to tell of our refutation, taken off the list.
    pub(super) fn next_to_announce(&mut self, n: usize) -> Vec<NodeId> {
        let n = n.min(self.to_announce.len());
        self.to_announce.drain(..n).collect()
    }

    /// True if we may answer `sender`, which holds an out-of-date state of ours, with
    /// our own now (at most once per probe timeout per sender).
    pub(super) fn admit_answer(&mut self, cfg: &Config, sender: &NodeId, now_us: u64) -> bool {
        let period = cfg.probe_timeout_ms * 1000;
        self.answered.admit(sender, now_us, period)
    }
}

// Routing: claims between the member table, the `Claims` part's rate limits and
// retries, SWIM and the wire.
impl Engine {
    /// A claim a member makes about itself: applied as SWIM says. Metadata the member
    /// sends at the incarnation we hold replaces what second-hand gossip introduced.
    pub(super) fn first_hand_claim(&mut self, now: Now, s: MemberState, broadcast: bool) {
        let change = match self.members.apply(now.mono_us, s.clone()) {
            Some(c) => Some(c),
            None => self.members.refresh_info(&s),
        };
        if let Some(change) = change {
            self.emit_member_change(now, change, broadcast);
        }
    }

    /// A claim about another member, relayed by `sender` (see the module comment).
    pub(super) fn second_hand_claim(
        &mut self,
        now: Now,
        sender: &NodeId,
        s: MemberState,
        broadcast: bool,
    ) {
        let id = s.info.id.clone();
        if self.members.get(&id).is_none() {
            if self.members.len() >= self.cfg.max_members {
                // Introduced by someone else to a full table: only the member itself,
                // over its own authenticated connection, gets a place now.
                self.stats.members_refused_full += 1;
                return;
            }
            if !self.claims.admit_intro(&self.cfg, sender, now.mono_us) {
                // Not lost: other members introduce it too, later exchanges list it
                // again, and it is admitted at once when it speaks for itself.
                self.stats.intros_limited += 1;
                return;
            }
        }
        match self.members.judge_second_hand(&s) {
            SecondHand::Apply(st) => {
                if let Some(change) = self.members.apply(now.mono_us, st) {
                    self.emit_member_change(now, change, broadcast);
                }
            }
            SecondHand::Suspect(incarnation) => {
                // A death claim about a member we hold alive (e.g. a tombstone from the
                // other side of a healed partition): it gets a suspicion timeout to
                // refute instead.
                let me = self.id().clone();
                self.suspect_instead(now, &id, incarnation, me);
            }
            SecondHand::Refuse { suspect_at } => {
                self.stats.claims_refused += 1;
                let held = self.members.get(&id).map_or(0, |m| m.state.incarnation);
                self.claims.note_pending(&id, s.incarnation, held);
                if let Some(incarnation) = suspect_at {
                    // A leave we did not hear from the member: it is no longer trusted
                    // to be there, but only the member itself can say it left. The
                    // relayer is the accuser, so that one relayer counts once.
                    self.suspect_instead(now, &id, incarnation, sender.clone());
                }
                self.verify_with(now, &id);
            }
            SecondHand::Stale => {}
        }
    }

    /// Marks `id` suspect at `incarnation` and gossips the suspicion.
    fn suspect_instead(&mut self, now: Now, id: &NodeId, incarnation: u64, accuser: NodeId) {
        let Some(change) = self.members.suspect(now.mono_us, id, incarnation) else {
            return;
        };
        let budget = self.budget();
        self.emit_member_change(now, change, false);
        self.queue.push(
            Topic::Member(id.clone()),
            Traffic::Membership,
            Item::Suspect {
                id: id.clone(),
                incarnation,
                accuser,
            },
            budget,
        );
    }

    /// Sends member `id` our view of it, so that it answers first-hand if the view is
    /// out of date (rate-limited: see [`Claims::admit_verification`]).
    fn verify_with(&mut self, now: Now, id: &NodeId) {
        let Some(view) = self.members.get(id).map(|m| m.state.clone()) else {
            return;
        };
        if !self.claims.admit_verification(&self.cfg, id, now.mono_us) {
            return;
        }
        self.stats.claims_verified += 1;
        self.send_with_piggyback(id, vec![Item::Member(view)]);
    }

    /// Continues a paced announcement, and asks again, once per probe timeout, the
    /// members a refused claim said had moved on
    /// when their answer has not arrived (the verification or the answer was lost).
    pub(super) fn retry_verifications(&mut self, now: Now) {
        self.continue_announcing(now);
        for id in self.claims.unanswered(&self.members) {
            self.verify_with(now, &id);
        }
    }

    /// After a refutation, tells every live member at once, first-hand (at most once per
    /// probe period; the refutation is gossiped as well). Second-hand copies of a
    /// refutation are refused, so gossip alone would leave every member that suspected
    /// us a verification round trip to make, and a lost one a suspicion that lingers.
    pub(super) fn announce_refutation(&mut self, now: Now) {
        if self
            .claims
            .start_announcing(&self.cfg, &self.members, now.mono_us)
        {
            self.continue_announcing(now);
        }
    }

    /// Sends our current state alone (no piggybacked gossip) to as many of the members
    /// still to be told as the bandwidth bucket affords while keeping half of it: a burst
    /// to every member would otherwise drain the bucket and push the node into back-off.
    /// The rest wait for the next timer tick.
    fn continue_announcing(&mut self, now: Now) {
        if !self.claims.announcing() {
            return;
        }
        let item = (Item::Member(self.members.me().clone()), Traffic::Membership);
        let (cost, _) = Self::wire_cost(std::slice::from_ref(&item));
        let room = if self.limiter.is_limited() {
            let spare = self
                .limiter
                .tokens(now.mono_us)
                .saturating_sub(self.limiter.burst() / 2);
            (spare / cost.max(1) as u64) as usize
        } else {
            usize::MAX
        };
        for id in self.claims.next_to_announce(room) {
            if let Some(addr) = self.addr_of(&id) {
                self.emit(&id, addr, vec![item.clone()], false);
            }
        }
    }

    /// A claim about ourselves from `sender`: refuted if it says we are down (or names a
    /// later life); if what `sender` holds is not our current state, we tell it
    /// directly (at most once per probe timeout per sender).
    pub(super) fn claim_about_me(&mut self, now: Now, sender: &NodeId, s: MemberState) {
        if let Some(change) = self.members.apply(now.mono_us, s.clone()) {
            self.emit_member_change(now, change, true);
        }
        if sender == self.id() || s == *self.members.me() {
            return;
        }
        if !self.claims.admit_answer(&self.cfg, sender, now.mono_us) {
            return;
        }
        self.stats.claims_answered += 1;
        let me = self.members.me().clone();
        self.send_with_piggyback(sender, vec![Item::Member(me)]);
    }
}

#[cfg(test)]
#[path = "claims_tests.rs"]
mod tests;
