//! Membership: who is in the cluster, at which incarnation, with which status.
//!
//! This module holds the member table and the SWIM precedence rules (a higher
//! incarnation wins; at equal incarnation Left > Dead > Suspect > Alive; only the member
//! itself raises its incarnation, which is how it refutes). Failure detection (probes,
//! Lifeguard suspicion) builds on it.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::core::proto::{MemberInfo, MemberState, MemberStatus};
use crate::core::NodeId;

/// A member as tracked locally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Latest accepted state.
    pub state: MemberState,
    /// When (mono µs) we last heard from it directly.
    pub last_heard_us: Option<u64>,
    /// When (mono µs) we last completed an anti-entropy exchange with it.
    pub last_sync_us: Option<u64>,
    /// When (mono µs) its status last changed.
    pub since_us: u64,
    /// Smoothed round-trip time of direct probes (µs).
    pub rtt_us: Option<u64>,
}

impl Member {
    /// A member just entered into the table, in `state`, at `now_us`.
    fn new(state: MemberState, now_us: u64) -> Self {
        Self {
            state,
            last_heard_us: None,
            last_sync_us: None,
            since_us: now_us,
            rtt_us: None,
        }
    }
}

/// How a member table changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A member seen for the first time.
    Joined(MemberState),
    /// A member's status or metadata changed.
    Updated {
        /// Status before.
        old: MemberStatus,
        /// New state.
        new: MemberState,
    },
    /// Someone claimed we are not alive; we raised our incarnation to refute it.
    Refuted(MemberState),
    /// A dead or departed member was forgotten after the reap timeout.
    Reaped(MemberState),
}

/// Highest incarnation accepted in a claim. Honest incarnations start at wall-clock
/// milliseconds (about 2^41) and grow by one per refutation; a claim near `u64::MAX`
/// could only serve to leave a member unable to outrank a suspicion.
pub const MAX_INCARNATION: u64 = 1 << 62;

/// What to do with a claim about another member that did not come from that member
/// itself (a second-hand claim). A node may speak only for itself: second-hand gossip
/// may introduce a member we do not know and may make a known member worse, but it
/// never outranks what the member itself said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecondHand {
    /// Apply this state (the claim, with our metadata for a member we already know).
    Apply(MemberState),
    /// A death claim about a member we hold live: suspect it at this incarnation
    /// instead, so that it gets a suspicion timeout to refute.
    Suspect(u64),
    /// Refused: the claim would speak for the member (mark it left, revive it, refute a
    /// suspicion, raise its incarnation as alive, or change its metadata). It is still a
    /// hint: verify with the member directly. A refused leave of a member we hold live
    /// becomes a suspicion at `suspect_at`.
    Refuse {
        /// Suspect the member at this incarnation (a second-hand leave).
        suspect_at: Option<u64>,
    },
    /// Nothing to do: the claim is stale or what we hold already.
    Stale,
}

/// True if `new` should replace `old` (SWIM precedence).
pub fn overrides(new: &MemberState, old: &MemberState) -> bool {
    new.incarnation > old.incarnation
        || (new.incarnation == old.incarnation && new.status > old.status)
}

fn is_live(s: MemberStatus) -> bool {
    matches!(s, MemberStatus::Alive | MemberStatus::Suspect)
}

/// FNV-1a hash of the parts of a state that precedence looks at.
fn state_hash(s: &MemberState) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |b: u8| {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    };
    for b in s.info.id.as_str().bytes() {
        eat(b);
    }
    eat(0xff);
    for b in s.incarnation.to_le_bytes() {
        eat(b);
    }
    eat(s.status as u8);
    h
}

/// The member table of one node.
#[derive(Debug, Clone)]
pub struct Membership {
    me: MemberState,
    members: BTreeMap<NodeId, Member>,
    /// Ids of other members that are alive or suspect, kept in step with `members`.
    live: Vec<NodeId>,
    /// XOR of `state_hash` over every state, ours included: equal tables, equal digests.
    digest: u64,
    /// Members forgotten after the reap timeout, with when (mono µs): claims about them
    /// at or below their last incarnation are ignored, so stale gossip cannot bring back
    /// a ghost. Bounded; the oldest are forgotten first.
    reaped: BTreeMap<NodeId, (MemberState, u64)>,
}

/// Most reaped members remembered.
const MAX_REAPED: usize = 100_000;

impl Membership {
    /// A table containing only ourselves, alive at `incarnation`.
    pub fn new(me: MemberInfo, incarnation: u64) -> Self {
        let me = MemberState {
            info: Arc::new(me),
            incarnation,
            status: MemberStatus::Alive,
        };
        Self {
            digest: state_hash(&me),
            me,
            members: BTreeMap::new(),
            live: Vec::new(),
            reaped: BTreeMap::new(),
        }
    }

    /// Digest of the whole table (ids, incarnations, statuses). Two nodes with equal
    /// digests skip sending member lists in anti-entropy.
    pub fn digest(&self) -> u64 {
        self.digest
    }

    fn set_me(&mut self, new: MemberState) {
        self.digest ^= state_hash(&self.me) ^ state_hash(&new);
        self.me = new;
    }

    /// Our own state.
    pub fn me(&self) -> &MemberState {
        &self.me
    }

    /// Our id.
    pub fn my_id(&self) -> &NodeId {
        &self.me.info.id
    }

    /// Other members, in id order.
    pub fn others(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    /// Members in the table, ourselves excluded (dead and left ones until reaped).
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// True when the table holds no member but ourselves.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// One other member.
    pub fn get(&self, id: &NodeId) -> Option<&Member> {
        self.members.get(id)
    }

    /// Mutable access to one other member.
    pub fn get_mut(&mut self, id: &NodeId) -> Option<&mut Member> {
        self.members.get_mut(id)
    }

    /// True if `id` is another member we hold alive or suspect.
    pub fn is_live(&self, id: &NodeId) -> bool {
        self.members
            .get(id)
            .is_some_and(|m| is_live(m.state.status))
    }

    /// Ids of other members that are alive or suspect (reachable candidates), in the
    /// order they became live.
    pub fn live_ids(&self) -> &[NodeId] {
        &self.live
    }

    /// Number of members believed alive or suspect, ourselves included.
    pub fn live_count(&self) -> usize {
        1 + self.live.len()
    }

    /// Every state we know, ourselves first (for a full membership exchange).
    pub fn all_states(&self) -> Vec<MemberState> {
        std::iter::once(self.me.clone())
            .chain(self.members.values().map(|m| m.state.clone()))
            .collect()
    }

    /// Applies a membership claim. `now_us` stamps status changes.
    pub fn apply(&mut self, now_us: u64, upd: MemberState) -> Option<Change> {
        if upd.info.id == self.me.info.id {
            return self.apply_about_me(upd);
        }
        match self.members.get_mut(&upd.info.id) {
            None => {
                // Only a member's own, newer life brings back one we reaped; and claims
                // that an unknown member is down carry no news worth a table entry.
                if let Some((old, _)) = self.reaped.get(&upd.info.id) {
                    if upd.incarnation <= old.incarnation {
                        return None;
                    }
                    self.reaped.remove(&upd.info.id);
                }
                if !is_live(upd.status) {
                    return None;
                }
                self.digest ^= state_hash(&upd);
                if is_live(upd.status) {
                    self.live.push(upd.info.id.clone());
                }
                self.members
                    .insert(upd.info.id.clone(), Member::new(upd.clone(), now_us));
                Some(Change::Joined(upd))
            }
            Some(m) => {
                if !overrides(&upd, &m.state) {
                    return None;
                }
                let old = m.state.status;
                let meta_changed = m.state.info != upd.info;
                if old != upd.status {
                    m.since_us = now_us;
                }
                self.digest ^= state_hash(&m.state) ^ state_hash(&upd);
                m.state = upd.clone();
                match (is_live(old), is_live(upd.status)) {
                    (true, false) => self.live.retain(|x| x != &upd.info.id),
                    (false, true) => self.live.push(upd.info.id.clone()),
                    _ => {}
                }
                // A suspicion at a new incarnation is news even if the member was
                // already suspect: its suspicion timer starts again.
                let new_suspicion = upd.status == MemberStatus::Suspect;
                (old != upd.status || meta_changed || new_suspicion)
                    .then_some(Change::Updated { old, new: upd })
            }
        }
    }

    /// Adds live members we did not know, in bulk: a snapshot learned out of band (a
    /// simulator's warm start). Members we already hold, claims about ourselves and
    /// claims that are not alive or suspect are skipped. Returns the ids added. The
    /// table is rebuilt once, so this costs O(n log n) for n members however many are
    /// added, where applying them one by one would cost a tree insertion each.
    pub fn preload(
        &mut self,
        now_us: u64,
        states: impl IntoIterator<Item = MemberState>,
    ) -> Vec<NodeId> {
        let mut added: Vec<(NodeId, Member)> = Vec::new();
        for s in states {
            let id = &s.info.id;
            if *id == self.me.info.id
                || !is_live(s.status)
                || self.members.contains_key(id)
                || self
                    .reaped
                    .get(id)
                    .is_some_and(|(old, _)| s.incarnation <= old.incarnation)
            {
                continue;
            }
            added.push((id.clone(), Member::new(s, now_us)));
        }
        added.sort_by(|a, b| a.0.cmp(&b.0));
        // Two claims about one member: the one that wins by precedence stays.
        added.dedup_by(|later, kept| {
            if later.0 != kept.0 {
                return false;
            }
            if overrides(&later.1.state, &kept.1.state) {
                std::mem::swap(later, kept);
            }
            true
        });
        let mut ids = Vec::with_capacity(added.len());
        for (id, m) in &added {
            self.digest ^= state_hash(&m.state);
            self.reaped.remove(id);
            ids.push(id.clone());
        }
        self.live.extend(ids.iter().cloned());
        // Collecting a sorted sequence builds the tree with full nodes.
        let mut all: Vec<(NodeId, Member)> =
            std::mem::take(&mut self.members).into_iter().collect();
        all.extend(added);
        all.sort_by(|a, b| a.0.cmp(&b.0));
        self.members = all.into_iter().collect();
        ids
    }

    /// Judges a claim about another member that did not come from that member (see
    /// [`SecondHand`]). Claims about ourselves are not second-hand: use [`Membership::apply`].
    pub fn judge_second_hand(&self, claim: &MemberState) -> SecondHand {
        let Some(held) = self.members.get(&claim.info.id).map(|m| &m.state) else {
            // Unknown (or reaped: `apply` keeps the reaped-set rules): joins must spread.
            return SecondHand::Apply(claim.clone());
        };
        if claim == held {
            return SecondHand::Stale;
        }
        if !overrides(claim, held) {
            // Same rank, other metadata: someone speaks for the member.
            let same_rank = claim.incarnation == held.incarnation && claim.status == held.status;
            return if same_rank {
                SecondHand::Refuse { suspect_at: None }
            } else {
                SecondHand::Stale
            };
        }
        let keep_meta = || MemberState {
            info: held.info.clone(),
            ..claim.clone()
        };
        match (is_live(held.status), claim.status) {
            (true, MemberStatus::Suspect) => SecondHand::Apply(keep_meta()),
            // Other nodes' suspicion of it ran out at the incarnation we suspect it at.
            (true, MemberStatus::Dead)
                if held.status == MemberStatus::Suspect
                    && claim.incarnation == held.incarnation =>
            {
                SecondHand::Apply(keep_meta())
            }
            // Seen alive here (or the death is at a life we never saw): suspect first.
            (true, MemberStatus::Dead) => SecondHand::Suspect(claim.incarnation),
            (true, MemberStatus::Left) => SecondHand::Refuse {
                suspect_at: Some(claim.incarnation),
            },
            // A refutation, restart or metadata change: only the member may say so.
            (true, MemberStatus::Alive) => SecondHand::Refuse { suspect_at: None },
            // Already down: a later death changes nothing that matters.
            (false, MemberStatus::Dead) => SecondHand::Apply(keep_meta()),
            // Revival, or a leave of a member we hold dead.
            (false, _) => SecondHand::Refuse { suspect_at: None },
        }
    }

    /// Adopts metadata the member itself sent at the incarnation and status we hold
    /// (first-hand metadata outranks whatever second-hand gossip introduced it with).
    pub fn refresh_info(&mut self, upd: &MemberState) -> Option<Change> {
        let m = self.members.get_mut(&upd.info.id)?;
        let same_rank = m.state.incarnation == upd.incarnation && m.state.status == upd.status;
        if !same_rank || m.state.info == upd.info {
            return None;
        }
        m.state.info = upd.info.clone();
        Some(Change::Updated {
            old: upd.status,
            new: upd.clone(),
        })
    }

    fn apply_about_me(&mut self, upd: MemberState) -> Option<Change> {
        let claims_down = upd.status != MemberStatus::Alive;
        if upd.incarnation > self.me.incarnation
            || (claims_down && upd.incarnation >= self.me.incarnation)
        {
            // Either a claim about an earlier life of ours, or a suspicion: outrank it.
            if self.me.status == MemberStatus::Left {
                return None;
            }
            let mut me = self.me.clone();
            me.incarnation = upd.incarnation.saturating_add(1);
            self.set_me(me);
            return Some(Change::Refuted(self.me.clone()));
        }
        None
    }

    /// Marks member `id` suspect at `incarnation` (from a `Suspect` claim), keeping its
    /// metadata. Returns the change if it is news: an alive member becomes suspect, or a
    /// suspect one is suspected again at a later incarnation (it refuted, we missed
    /// the refutation, and it is suspected anew). `None` if the claim is stale or about
    /// a member that is already suspect at that incarnation, dead or gone.
    pub fn suspect(&mut self, now_us: u64, id: &NodeId, incarnation: u64) -> Option<Change> {
        let m = self.members.get(id)?;
        let stale = incarnation < m.state.incarnation
            || (incarnation == m.state.incarnation && m.state.status != MemberStatus::Alive);
        if stale || !is_live(m.state.status) {
            return None;
        }
        let mut st = m.state.clone();
        st.incarnation = incarnation;
        st.status = MemberStatus::Suspect;
        self.apply(now_us, st)
    }

    /// Marks member `id` dead at its current incarnation (suspicion timed out).
    pub fn declare_dead(&mut self, now_us: u64, id: &NodeId) -> Option<Change> {
        let m = self.members.get(id)?;
        if !is_live(m.state.status) {
            return None;
        }
        let mut st = m.state.clone();
        st.status = MemberStatus::Dead;
        self.apply(now_us, st)
    }

    /// Forgets members that have been dead or gone for `reap_us`; returns them.
    pub fn reap(&mut self, now_us: u64, reap_us: u64) -> Vec<MemberState> {
        let due: Vec<NodeId> = self
            .members
            .values()
            .filter(|m| !is_live(m.state.status) && now_us.saturating_sub(m.since_us) >= reap_us)
            .map(|m| m.state.info.id.clone())
            .collect();
        let mut out = Vec::new();
        for id in due {
            if let Some(m) = self.members.remove(&id) {
                self.digest ^= state_hash(&m.state);
                self.reaped.insert(id, (m.state.clone(), now_us));
                out.push(m.state);
            }
        }
        while self.reaped.len() > MAX_REAPED {
            let oldest = self
                .reaped
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => {
                    self.reaped.remove(&k);
                }
                None => break,
            }
        }
        out
    }

    /// What we last knew of a member we consider dead, departed or reaped — to tell it,
    /// should it talk to us, so that it refutes. `None` if we think it is alive.
    pub fn down_state(&self, id: &NodeId) -> Option<MemberState> {
        match self.members.get(id) {
            Some(m) if !is_live(m.state.status) => {
                let mut s = m.state.clone();
                s.status = MemberStatus::Dead;
                Some(s)
            }
            Some(_) => None,
            None => self.reaped.get(id).map(|(s, _)| {
                let mut s = s.clone();
                s.status = MemberStatus::Dead;
                s
            }),
        }
    }

    /// Address of a member, reaped ones included.
    pub fn addr_of(&self, id: &NodeId) -> Option<&str> {
        self.members
            .get(id)
            .map(|m| m.state.info.addr.as_str())
            .or_else(|| self.reaped.get(id).map(|(s, _)| s.info.addr.as_str()))
    }

    /// Folds a direct probe's round-trip time into the member's smoothed RTT.
    pub fn record_rtt(&mut self, id: &NodeId, rtt_us: u64) {
        if let Some(m) = self.members.get_mut(id) {
            m.rtt_us = Some(match m.rtt_us {
                Some(old) => (old * 7 + rtt_us) / 8,
                None => rtt_us,
            });
        }
    }

    /// Records direct contact with a member.
    pub fn heard_from(&mut self, id: &NodeId, now_us: u64) {
        if let Some(m) = self.members.get_mut(id) {
            m.last_heard_us = Some(now_us);
        }
    }

    /// Records a completed anti-entropy exchange with a member.
    pub fn synced_with(&mut self, id: &NodeId, now_us: u64) {
        if let Some(m) = self.members.get_mut(id) {
            m.last_sync_us = Some(now_us);
            m.last_heard_us = Some(now_us);
        }
    }

    /// Marks ourselves as leaving; returns the state to broadcast.
    pub fn leave(&mut self) -> MemberState {
        let mut me = self.me.clone();
        me.incarnation += 1;
        me.status = MemberStatus::Left;
        self.set_me(me);
        self.me.clone()
    }

    /// Replaces our metadata (raising the incarnation so it propagates).
    pub fn update_me(&mut self, info: MemberInfo) -> MemberState {
        let mut me = self.me.clone();
        me.info = Arc::new(info);
        me.incarnation += 1;
        self.set_me(me);
        self.me.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: &str) -> MemberInfo {
        MemberInfo {
            id: NodeId::new(id).unwrap(),
            addr: format!("{id}:1"),
            dc: "dc1".into(),
            zone: String::new(),
            tags: Default::default(),
        }
    }

    fn st(id: &str, inc: u64, status: MemberStatus) -> MemberState {
        MemberState {
            info: info(id).into(),
            incarnation: inc,
            status,
        }
    }

    #[test]
    fn precedence_follows_incarnation_then_status() {
        let mut m = Membership::new(info("me"), 1);
        assert!(matches!(
            m.apply(0, st("b", 1, MemberStatus::Alive)),
            Some(Change::Joined(_))
        ));
        assert!(m.apply(0, st("b", 1, MemberStatus::Suspect)).is_some());
        assert!(
            m.apply(0, st("b", 1, MemberStatus::Alive)).is_none(),
            "same incarnation cannot undo suspicion"
        );
        assert!(
            m.apply(0, st("b", 2, MemberStatus::Alive)).is_some(),
            "a refutation can"
        );
        assert!(
            m.apply(0, st("b", 1, MemberStatus::Dead)).is_none(),
            "stale claims are ignored"
        );
        assert_eq!(
            m.get(&NodeId::new("b").unwrap()).unwrap().state.incarnation,
            2
        );
    }

    #[test]
    fn live_list_and_digest_follow_the_table() {
        let mut a = Membership::new(info("a"), 1);
        let mut b = Membership::new(info("b"), 1);
        a.apply(0, st("b", 1, MemberStatus::Alive));
        b.apply(0, st("a", 1, MemberStatus::Alive));
        assert_eq!(a.digest(), b.digest(), "same states, same digest");
        a.apply(0, st("c", 3, MemberStatus::Alive));
        assert_ne!(a.digest(), b.digest());
        assert_eq!(a.live_ids().len(), 2);
        a.apply(0, st("c", 3, MemberStatus::Dead));
        assert_eq!(a.live_ids(), &[NodeId::new("b").unwrap()]);
        assert!(
            b.apply(0, st("c", 3, MemberStatus::Dead)).is_none(),
            "a death claim about an unknown member adds nothing"
        );
        b.apply(0, st("c", 3, MemberStatus::Alive));
        b.apply(0, st("c", 3, MemberStatus::Dead));
        assert_eq!(a.digest(), b.digest());
        a.apply(0, st("c", 4, MemberStatus::Alive));
        assert_eq!(a.live_count(), 3);
    }

    #[test]
    fn preload_matches_applying_one_by_one_and_skips_what_is_not_news() {
        let claims = || {
            vec![
                st("d", 2, MemberStatus::Alive),
                st("me", 9, MemberStatus::Alive),
                st("b", 1, MemberStatus::Suspect),
                st("c", 4, MemberStatus::Dead),
                st("b", 7, MemberStatus::Alive),
                st("e", 1, MemberStatus::Alive),
            ]
        };
        let mut one = Membership::new(info("me"), 1);
        one.apply(0, st("e", 3, MemberStatus::Alive));
        let mut bulk = one.clone();
        for c in claims() {
            if c.info.id.as_str() != "me" {
                one.apply(0, c);
            }
        }
        let added = bulk.preload(0, claims());
        let names: Vec<&str> = added.iter().map(NodeId::as_str).collect();
        assert_eq!(names, ["b", "d"], "known, dead and own claims are skipped");
        assert_eq!(bulk.me().incarnation, 1, "a claim about us is not applied");
        assert_eq!(bulk.live_count(), 4);
        let b = NodeId::new("b").unwrap();
        assert_eq!(
            bulk.get(&b).unwrap().state.incarnation,
            7,
            "of two claims about one member, the one that wins by precedence stays"
        );
        assert_eq!(bulk.digest(), one.digest(), "same states, same digest");
        let ids = |m: &Membership| {
            m.others()
                .map(|x| x.state.info.id.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&bulk), ids(&one), "the table stays sorted by id");
    }

    #[test]
    fn suspicion_of_self_is_refuted_with_a_higher_incarnation() {
        let mut m = Membership::new(info("me"), 5);
        let c = m.apply(0, st("me", 5, MemberStatus::Suspect));
        assert!(
            matches!(c, Some(Change::Refuted(ref s)) if s.incarnation == 6 && s.status == MemberStatus::Alive)
        );
        assert!(m.apply(0, st("me", 5, MemberStatus::Dead)).is_none());
        assert!(
            m.apply(0, st("me", 9, MemberStatus::Alive)).is_some(),
            "an earlier life is outranked"
        );
        assert_eq!(m.me().incarnation, 10);
    }
}
