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

use std::collections::BTreeMap;

use super::Engine;
use crate::core::dissemination::Topic;
use crate::core::limiter::Traffic;
use crate::core::membership::SecondHand;
use crate::core::proto::{Item, MemberState};
use crate::core::{NodeId, Now};

/// Most entries a rate-limit map keeps before old ones are dropped.
const MAX_TRACKED: usize = 1024;

/// Verifications of one hint sent before giving up (the first included): the round
/// trip is two datagrams, either of which may be lost.
const VERIFY_ATTEMPTS: u32 = 3;

/// Rate limits and retries of the verification round trip.
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
            let (burst, per_sec) = (self.cfg.intro_burst, self.cfg.intro_per_sec);
            if !self.claims.intros.take(sender, now.mono_us, burst, per_sec) {
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
                self.note_pending(&id, s.incarnation);
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

    /// Remembers that a refused claim named member `id` at `incarnation`, a later life
    /// than the one we hold: worth asking again if the first answer does not arrive.
    fn note_pending(&mut self, id: &NodeId, incarnation: u64) {
        let held = self.members.get(id).map_or(0, |m| m.state.incarnation);
        if incarnation <= held {
            return;
        }
        let p = &mut self.claims.pending;
        if let Some(e) = p.get_mut(id) {
            if e.0 < incarnation {
                *e = (incarnation, 0);
            }
        } else if p.len() < MAX_TRACKED {
            p.insert(id.clone(), (incarnation, 0));
        }
    }

    /// Sends member `id` our view of it, so that it answers first-hand if the view is
    /// out of date (at most once per probe timeout per member: an answer takes a round
    /// trip, and a lost one is asked again as soon as an ack would be overdue).
    fn verify_with(&mut self, now: Now, id: &NodeId) {
        let Some(view) = self.members.get(id).map(|m| m.state.clone()) else {
            return;
        };
        let period = self.cfg.probe_timeout_ms * 1000;
        if !self.claims.verified.admit(id, now.mono_us, period) {
            return;
        }
        if let Some(e) = self.claims.pending.get_mut(id) {
            e.1 += 1;
        }
        self.stats.claims_verified += 1;
        self.send_with_piggyback(id, vec![Item::Member(view)]);
    }

    /// Continues a paced announcement, and asks again, once per probe timeout, the
    /// members a refused claim said had moved on
    /// when their answer has not arrived (the verification or the answer was lost).
    pub(super) fn retry_verifications(&mut self, now: Now) {
        self.continue_announcing(now);
        if self.claims.pending.is_empty() {
            return;
        }
        let members = &self.members;
        self.claims.pending.retain(|id, (incarnation, attempts)| {
            *attempts < VERIFY_ATTEMPTS
                && members
                    .get(id)
                    .is_some_and(|m| m.state.incarnation < *incarnation)
        });
        let due: Vec<NodeId> = self.claims.pending.keys().cloned().collect();
        for id in due {
            self.verify_with(now, &id);
        }
    }

    /// After a refutation, tells every live member at once, first-hand (at most once per
    /// probe period; the refutation is gossiped as well). Second-hand copies of a
    /// refutation are refused, so gossip alone would leave every member that suspected
    /// us a verification round trip to make, and a lost one a suspicion that lingers.
    pub(super) fn announce_refutation(&mut self, now: Now) {
        let period = self.cfg.probe_interval_ms * 1000;
        let horizon = now.mono_us.saturating_sub(period);
        if self.claims.announced_us.is_some_and(|at| at > horizon) {
            return;
        }
        self.claims.announced_us = Some(now.mono_us);
        self.claims.to_announce = self.members.live_ids().to_vec();
        self.continue_announcing(now);
    }

    /// Sends our current state alone (no piggybacked gossip) to as many of the members
    /// still to be told as the bandwidth bucket affords while keeping half of it: a burst
    /// to every member would otherwise drain the bucket and push the node into back-off.
    /// The rest wait for the next timer tick.
    fn continue_announcing(&mut self, now: Now) {
        if self.claims.to_announce.is_empty() {
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
        let n = room.min(self.claims.to_announce.len());
        let batch: Vec<NodeId> = self.claims.to_announce.drain(..n).collect();
        for id in batch {
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
        let period = self.cfg.probe_timeout_ms * 1000;
        if !self.claims.answered.admit(sender, now.mono_us, period) {
            return;
        }
        self.stats.claims_answered += 1;
        let me = self.members.me().clone();
        self.send_with_piggyback(sender, vec![Item::Member(me)]);
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Config, Output};
    use super::*;
    use crate::core::proto::{Datagram, MemberInfo, MemberStatus};
    use std::sync::Arc;

    fn at(ms: u64) -> Now {
        Now {
            mono_us: ms * 1000,
            wall_ms: 1_000_000 + ms,
        }
    }

    fn id(s: &str) -> NodeId {
        NodeId::new(s).unwrap()
    }

    fn engine(name: &str, seed: u64) -> Engine {
        let info = MemberInfo {
            id: id(name),
            addr: format!("{name}:7000"),
            dc: "dc1".into(),
            zone: "z1".into(),
            tags: [("role".to_string(), "kv".to_string())].into(),
        };
        // The timelines below step through a 500 ms probe timeout and 1 s period.
        let cfg = Config {
            probe_interval_ms: 1_000,
            probe_timeout_ms: 500,
            ..Config::local()
        };
        Engine::new(cfg, info, Vec::new(), seed, at(0), None)
    }

    /// Three engines that know each other first-hand; outputs drained.
    fn cluster() -> (Engine, Engine, Engine) {
        let mut es = [engine("y", 1), engine("r", 2), engine("x", 3)];
        let mes: Vec<MemberState> = es.iter().map(|e| e.members().me().clone()).collect();
        for e in es.iter_mut() {
            for m in &mes {
                if &m.info.id != e.id() {
                    let dg = Datagram {
                        items: vec![Item::Member(m.clone())],
                    };
                    e.handle_datagram(at(0), &m.info.id.clone(), dg);
                }
            }
            drain(e);
        }
        let [y, r, x] = es;
        (y, r, x)
    }

    fn drain(e: &mut Engine) -> Vec<Output> {
        std::iter::from_fn(|| e.poll_output()).collect()
    }

    /// Claims about `about` sent directly to `to` (datagrams and reliable sends),
    /// leaving out piggybacked gossip about others.
    fn members_sent(outs: &[Output], to: &NodeId, about: &NodeId) -> Vec<MemberState> {
        outs.iter()
            .filter_map(|o| match o {
                Output::Datagram {
                    to: t, datagram, ..
                }
                | Output::Reliable {
                    to: t, datagram, ..
                } if t == to => Some(datagram.items.iter()),
                _ => None,
            })
            .flatten()
            .filter_map(|i| match i {
                Item::Member(s) => Some(s.clone()),
                _ => None,
            })
            .filter(|s| &s.info.id == about)
            .collect()
    }

    fn send(e: &mut Engine, now: Now, from: &NodeId, items: Vec<Item>) -> Vec<Output> {
        e.handle_datagram(now, from, Datagram { items });
        drain(e)
    }

    fn view(e: &Engine, of: &str) -> MemberState {
        e.members().get(&id(of)).unwrap().state.clone()
    }

    /// Y answers R's verification first-hand, and R applies the answer.
    fn round_trip(y: &mut Engine, r: &mut Engine, now: Now, r_out: &[Output]) -> MemberState {
        let asked = members_sent(r_out, y.id(), y.id());
        assert_eq!(asked.len(), 1, "R verifies with Y once: {asked:?}");
        let r_id = r.id().clone();
        let y_out = send(y, now, &r_id, vec![Item::Member(asked[0].clone())]);
        let mut answer = members_sent(&y_out, &r_id, y.id());
        // The answer, and possibly the same state piggybacked from the broadcast queue.
        answer.dedup();
        assert_eq!(answer.len(), 1, "Y answers R directly: {y_out:?}");
        assert_eq!(answer[0], *y.members().me());
        let y_id = y.id().clone();
        send(r, now, &y_id, vec![Item::Member(answer[0].clone())]);
        answer[0].clone()
    }

    #[test]
    fn a_forged_leave_becomes_a_suspicion_that_the_member_refutes_first_hand() {
        let (mut y, mut r, x) = cluster();
        let genuine = y.members().me().clone();
        let mut forged = genuine.clone();
        forged.incarnation += 1;
        forged.status = MemberStatus::Left;
        let out = send(&mut r, at(10), x.id(), vec![Item::Member(forged)]);
        let held = view(&r, "y");
        assert_eq!(held.status, MemberStatus::Suspect, "not Left: {held:?}");
        assert_eq!(held.info, genuine.info, "metadata untouched");
        assert_eq!(r.stats().claims_refused, 1);
        assert_eq!(r.stats().claims_verified, 1);

        let answer = round_trip(&mut y, &mut r, at(20), &out);
        assert_eq!(answer.status, MemberStatus::Alive);
        assert_eq!(answer.incarnation, genuine.incarnation + 2, "Y refuted");
        assert_eq!(view(&r, "y"), answer, "the refutation arrived first-hand");
    }

    #[test]
    fn a_forged_refutation_with_forged_metadata_is_refused() {
        let (mut y, mut r, x) = cluster();
        let genuine = y.members().me().clone();
        // R suspects Y (its own probe failed, say).
        let r_id = r.id().clone();
        r.on_suspect(at(5), id("y"), genuine.incarnation, r_id);
        drain(&mut r);
        let suspected = view(&r, "y");
        assert_eq!(suspected.status, MemberStatus::Suspect);

        let mut forged = genuine.clone();
        forged.incarnation += 1;
        Arc::make_mut(&mut forged.info).addr = "evil.example:7000".into();
        Arc::make_mut(&mut forged.info)
            .tags
            .insert("role".into(), "owned".into());
        let out = send(&mut r, at(10), x.id(), vec![Item::Member(forged.clone())]);
        assert_eq!(view(&r, "y"), suspected, "view of Y unchanged");
        assert_eq!(r.stats().claims_refused, 1);

        // The same forgery again within the probe timeout: counted, not re-verified.
        let again = send(&mut r, at(30), x.id(), vec![Item::Member(forged)]);
        assert_eq!(r.stats().claims_refused, 2);
        assert!(members_sent(&again, y.id(), y.id()).is_empty());

        // Y is told the suspicion, refutes it, and R takes that from Y itself.
        let answer = round_trip(&mut y, &mut r, at(40), &out);
        assert_eq!(answer.info, genuine.info);
        assert_eq!(answer.incarnation, genuine.incarnation + 1);
        assert_eq!(view(&r, "y"), answer);
    }

    #[test]
    fn a_genuine_metadata_update_relayed_second_hand_arrives_through_the_member() {
        let (mut y, mut r, x) = cluster();
        let before = view(&r, "y");
        let mut info = MemberInfo::clone(&y.members().me().info);
        info.zone = "z2".into();
        y.update_meta(info.clone()).unwrap();
        drain(&mut y);
        let updated = y.members().me().clone();
        // X honestly relays Y's update: second-hand, so R does not take it...
        let out = send(&mut r, at(10), x.id(), vec![Item::Member(updated.clone())]);
        assert_eq!(view(&r, "y"), before);
        assert_eq!(r.stats().claims_refused, 1);
        // ...but asks Y, whose answer carries the update first-hand.
        round_trip(&mut y, &mut r, at(20), &out);
        assert_eq!(view(&r, "y"), updated);
        // Y sending it directly works without a round trip, too.
        let (_, mut r2, _) = cluster();
        let y_id = y.id().clone();
        send(&mut r2, at(10), &y_id, vec![Item::Member(updated.clone())]);
        assert_eq!(view(&r2, "y"), updated);
        assert_eq!(r2.stats().claims_refused, 0);
    }

    #[test]
    fn forged_metadata_at_the_current_incarnation_changes_nothing() {
        let (mut y, mut r, x) = cluster();
        let genuine = view(&r, "y");
        let mut forged = genuine.clone();
        Arc::make_mut(&mut forged.info).dc = "elsewhere".into();
        let out = send(&mut r, at(10), x.id(), vec![Item::Member(forged)]);
        assert_eq!(view(&r, "y"), genuine);
        assert_eq!(r.stats().claims_refused, 1);
        // R's view matches Y's own state: Y has nothing to answer.
        let asked = members_sent(&out, y.id(), y.id());
        let r_id = r.id().clone();
        let y_out = send(&mut y, at(20), &r_id, vec![Item::Member(asked[0].clone())]);
        assert!(members_sent(&y_out, &r_id, y.id()).is_empty());
        assert_eq!(y.stats().claims_answered, 0);
    }

    #[test]
    fn a_dead_member_is_revived_only_by_itself() {
        let (mut y, mut r, x) = cluster();
        let genuine = y.members().me().clone();
        let mut dead = genuine.clone();
        dead.status = MemberStatus::Dead;
        // R suspects Y, and the suspicion runs out elsewhere: Y is dead at R.
        let r_id = r.id().clone();
        r.on_suspect(at(5), id("y"), genuine.incarnation, r_id);
        send(&mut r, at(6), x.id(), vec![Item::Member(dead.clone())]);
        assert_eq!(view(&r, "y").status, MemberStatus::Dead);
        let mut revived = genuine.clone();
        revived.incarnation += 1;
        let out = send(&mut r, at(10), x.id(), vec![Item::Member(revived)]);
        assert_eq!(
            view(&r, "y").status,
            MemberStatus::Dead,
            "X cannot revive Y"
        );
        assert_eq!(r.stats().claims_refused, 1);
        let answer = round_trip(&mut y, &mut r, at(20), &out);
        assert_eq!(
            answer.incarnation,
            genuine.incarnation + 1,
            "Y refuted its death"
        );
        assert_eq!(view(&r, "y").status, MemberStatus::Alive);
    }

    #[test]
    fn second_hand_gossip_still_introduces_members_and_spreads_suspicion() {
        let (_, mut r, x) = cluster();
        let newcomer = engine("n", 9).members().me().clone();
        send(&mut r, at(10), x.id(), vec![Item::Member(newcomer.clone())]);
        assert_eq!(view(&r, "n"), newcomer, "a join spreads second-hand");
        let mut suspect = view(&r, "y");
        suspect.status = MemberStatus::Suspect;
        Arc::make_mut(&mut suspect.info).addr = "evil.example:7000".into();
        send(&mut r, at(20), x.id(), vec![Item::Member(suspect.clone())]);
        let held = view(&r, "y");
        assert_eq!(held.status, MemberStatus::Suspect);
        assert_eq!(held.info.addr, "y:7000", "a suspicion carries no metadata");
        assert_eq!(r.stats().claims_refused, 0);
    }

    /// #16, finding 7: below the table's cap, one member could still introduce as many
    /// invented members as it liked, as fast as it liked. Each peer now has a budget of
    /// introductions; past it they are refused and counted, while another peer's
    /// introductions and a member speaking for itself still get in.
    #[test]
    fn a_peer_introduces_members_second_hand_only_within_its_budget() {
        let (_, mut r, x) = cluster();
        r.cfg.intro_burst = 3;
        r.cfg.intro_per_sec = 1;
        let fake = |i: u64| engine(&format!("fake{i}"), 10 + i).members().me().clone();
        r.sync_on_members(at(10), x.id(), (0..10).map(fake).collect());
        assert_eq!(r.members().len(), 2 + 3, "the burst, no more");
        assert_eq!(r.stats().intros_limited, 7);
        // Two seconds later, two more tokens.
        r.sync_on_members(at(2_010), x.id(), (10..20).map(fake).collect());
        assert_eq!(r.members().len(), 2 + 5);
        // Another peer has its own budget; a member speaking for itself needs none.
        r.sync_on_members(at(2_010), &id("y"), vec![fake(30)]);
        let newcomer = engine("n", 99).members().me().clone();
        send(&mut r, at(2_020), &id("n"), vec![Item::Member(newcomer)]);
        assert_eq!(r.members().len(), 2 + 7);
    }

    /// #16, finding 7: a member could introduce any number of invented members
    /// second-hand, growing every node's table without bound.
    #[test]
    fn a_full_table_refuses_second_hand_introductions_but_not_members_themselves() {
        let (_, mut r, x) = cluster();
        r.cfg.max_members = 4;
        let fakes: Vec<MemberState> = (0..10)
            .map(|i| engine(&format!("fake{i}"), 10 + i).members().me().clone())
            .collect();
        r.sync_on_members(at(10), x.id(), fakes);
        assert_eq!(r.members().len(), 4, "two real members and two fakes");
        assert_eq!(r.stats().members_refused_full, 8);
        let newcomer = engine("n", 99).members().me().clone();
        send(
            &mut r,
            at(20),
            &id("n"),
            vec![Item::Member(newcomer.clone())],
        );
        assert_eq!(
            view(&r, "n"),
            newcomer,
            "a member speaking for itself gets in"
        );
    }

    #[test]
    fn anti_entropy_lists_are_first_hand_only_for_the_peer_itself() {
        let (y, mut r, x) = cluster();
        let mut x_self = x.members().me().clone();
        Arc::make_mut(&mut x_self.info).zone = "z9".into();
        x_self.incarnation += 1;
        let mut y_left = y.members().me().clone();
        y_left.incarnation += 1;
        y_left.status = MemberStatus::Left;
        r.sync_on_members(at(10), x.id(), vec![x_self.clone(), y_left]);
        assert_eq!(view(&r, "x"), x_self, "the peer speaks for itself");
        assert_ne!(view(&r, "y").status, MemberStatus::Left);
        assert_eq!(r.stats().claims_refused, 1);
    }

    #[test]
    fn a_refutation_is_announced_first_hand_to_every_live_member() {
        let (mut y, r, x) = cluster();
        let mut suspect = y.members().me().clone();
        suspect.status = MemberStatus::Suspect;
        let out = send(&mut y, at(10), r.id(), vec![Item::Member(suspect)]);
        let me = y.members().me().clone();
        assert_eq!(me.incarnation, view(&r, "y").incarnation + 1, "refuted");
        for to in [r.id(), x.id()] {
            assert!(
                members_sent(&out, to, y.id()).contains(&me),
                "{to} not told first-hand: {out:?}"
            );
        }
        assert_eq!(y.stats().refutations, 1);
    }

    #[test]
    fn the_gate_lets_each_key_through_once_per_period_and_holds_a_bounded_number() {
        let mut g = Gate::default();
        let key = |i: usize| NodeId::new(&format!("k{i}")).unwrap();
        assert!(g.admit(&key(0), 1_000, 500));
        assert!(!g.admit(&key(0), 1_400, 500), "within the period");
        assert!(g.admit(&key(0), 1_500, 500), "a period later");
        for i in 1..MAX_TRACKED {
            assert!(g.admit(&key(i), 1_600, 500));
        }
        assert!(
            !g.admit(&key(MAX_TRACKED), 1_700, 500),
            "full of recent keys: waits"
        );
        assert_eq!(g.at.len(), MAX_TRACKED);
        assert!(
            g.admit(&key(MAX_TRACKED), 2_200, 500),
            "expired keys forgotten"
        );
        assert!(g.at.len() <= MAX_TRACKED);
    }

    #[test]
    fn an_unanswered_verification_is_retried_each_probe_timeout() {
        let (y, mut r, x) = cluster();
        let mut refuted = y.members().me().clone();
        refuted.incarnation += 1;
        let first = send(&mut r, at(10), x.id(), vec![Item::Member(refuted)]);
        assert_eq!(members_sent(&first, y.id(), y.id()).len(), 1);
        // Neither the verification nor an answer arrives; it is asked again once per
        // probe timeout (each retry sends Y what R then holds), until the attempts run out.
        let mut counts = Vec::new();
        for t in [300, 600, 1_200, 2_200, 3_300] {
            r.handle_timeout(at(t));
            let o = drain(&mut r);
            assert!(
                r.stats().claims_verified == counts.last().copied().unwrap_or(1)
                    || !members_sent(&o, y.id(), y.id()).is_empty(),
                "a retry must send Y our view"
            );
            counts.push(r.stats().claims_verified);
        }
        assert_eq!(counts, [1, 2, 3, 3, 3]);
        assert_eq!(VERIFY_ATTEMPTS, 3);
    }

    #[test]
    fn answers_to_one_peer_are_rate_limited() {
        let (mut y, r, _) = cluster();
        let mut stale = y.members().me().clone();
        stale.incarnation -= 1;
        let r_id = r.id().clone();
        let first = send(&mut y, at(10), &r_id, vec![Item::Member(stale.clone())]);
        assert!(!members_sent(&first, &r_id, y.id()).is_empty());
        let second = send(&mut y, at(500), &r_id, vec![Item::Member(stale.clone())]);
        assert!(members_sent(&second, &r_id, y.id()).is_empty());
        let later = send(&mut y, at(1_500), &r_id, vec![Item::Member(stale)]);
        assert!(!members_sent(&later, &r_id, y.id()).is_empty());
        assert_eq!(y.stats().claims_answered, 2);
    }

    #[test]
    fn absurd_incarnations_are_invalid() {
        let (_, mut r, x) = cluster();
        let mut s = view(&r, "y");
        s.status = MemberStatus::Suspect;
        s.incarnation = u64::MAX;
        send(&mut r, at(10), x.id(), vec![Item::Member(s)]);
        assert_eq!(view(&r, "y").status, MemberStatus::Alive);
        assert_eq!(r.stats().items_invalid, 1);
    }
}
