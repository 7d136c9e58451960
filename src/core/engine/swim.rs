//! SWIM failure detection with the Lifeguard extensions: the engine's [`Swim`] part.
//!
//! Every protocol period the engine probes one member (shuffled round robin) with a
//! `Ping`. Without an `Ack` by the probe timeout it asks `indirect_checks` other members
//! to probe (`PingReq`); they answer with the relayed `Ack`, or a `Nack` if the target
//! stayed silent. A member without any ack by the end of the period is suspected; the
//! suspicion is gossiped with its accuser, and times out into `Dead` after a timeout that
//! starts long and shrinks with each independent accuser (Lifeguard). The suspect learns
//! of it (suspicions ride on the pings sent to it) and refutes by raising its
//! incarnation. A node whose probes keep failing raises its awareness score and
//! stretches its own timeouts (Lifeguard's local health awareness). Members dead or
//! departed are reaped after `reap_timeout_ms`.
//!
//! [`Swim`] owns the probe order, the probe in flight, the pings relayed for others, the
//! suspicion timers and the awareness score, and decides with them; it is lent the
//! member table, the generator, the configuration and the RTT estimates per call. The
//! engine routes datagrams and timers to it, and does what it answers: send, suspect,
//! declare dead, count.

use std::collections::{BTreeMap, BTreeSet};

use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::locality::Locality;
use super::suspicion::Suspicion;
use super::{Config, Engine, Event, Output};
use crate::core::dissemination::Topic;
use crate::core::limiter::Traffic;
use crate::core::membership::{Change, Membership, MAX_INCARNATION};
use crate::core::proto::{Item, MemberState, MemberStatus};
use crate::core::{NodeId, Now};

#[derive(Debug, Clone)]
struct Probe {
    target: NodeId,
    seq: u64,
    sent_us: u64,
    indirect_at_us: u64,
    indirect_sent: bool,
    nacks_expected: u32,
    nacks: u32,
    acked: bool,
}

#[derive(Debug, Clone)]
struct Relay {
    requester: NodeId,
    their_seq: u64,
    deadline_us: u64,
}

/// What an `Ack` meant to SWIM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum AckOutcome {
    /// It acked our probe, directly and unambiguously: a round-trip measurement (µs).
    Measured { target: NodeId, rtt_us: u64 },
    /// It acked our probe, but its round trip is no measurement (Karn).
    Acked,
    /// It answers a ping we relayed: pass it on to the requester, under its seq.
    Relay { requester: NodeId, seq: u64 },
    /// Late or unknown: nothing to do.
    Stale,
}

/// SWIM state of one engine.
#[derive(Debug, Clone)]
pub(super) struct Swim {
    order: Vec<NodeId>,
    idx: usize,
    next_probe_us: u64,
    probe: Option<Probe>,
    relays: BTreeMap<u64, Relay>,
    suspicions: BTreeMap<NodeId, Suspicion>,
    /// The suspicions by deadline, kept in step with `suspicions`: the next deadline and
    /// the expired ones are found in O(log n), not by a scan (after a healed partition a
    /// node may suspect thousands of members at once).
    suspicion_due: BTreeSet<(u64, NodeId)>,
    seq: u64,
    /// Lifeguard local health score: 0 is healthy; timeouts scale by `score + 1`.
    awareness: u32,
    told: BTreeMap<NodeId, u64>,
    next_reap_us: u64,
}

const REAP_CHECK_US: u64 = 5_000_000;

impl Swim {
    pub(super) fn new(now_us: u64) -> Self {
        Self {
            order: Vec::new(),
            idx: 0,
            next_probe_us: now_us,
            probe: None,
            relays: BTreeMap::new(),
            suspicions: BTreeMap::new(),
            suspicion_due: BTreeSet::new(),
            seq: 0,
            awareness: 0,
            told: BTreeMap::new(),
            next_reap_us: now_us + REAP_CHECK_US,
        }
    }

    /// When (mono µs) SWIM next has something to do.
    pub(super) fn next_deadline(&self) -> u64 {
        let mut t = self.next_probe_us.min(self.next_reap_us);
        if let Some(p) = &self.probe {
            if !p.acked && !p.indirect_sent {
                t = t.min(p.indirect_at_us);
            }
        }
        if let Some(r) = self.relays.values().map(|r| r.deadline_us).min() {
            t = t.min(r);
        }
        if let Some((s, _)) = self.suspicion_due.first() {
            t = t.min(*s);
        }
        t
    }

    /// Starts (or restarts) the suspicion of `id`.
    fn insert_suspicion(&mut self, id: NodeId, s: Suspicion) {
        self.remove_suspicion(&id);
        self.suspicion_due.insert((s.deadline_us(), id.clone()));
        self.suspicions.insert(id, s);
    }

    /// Ends the suspicion of `id`, if any.
    pub(super) fn remove_suspicion(&mut self, id: &NodeId) -> Option<Suspicion> {
        let s = self.suspicions.remove(id)?;
        self.suspicion_due.remove(&(s.deadline_us(), id.clone()));
        Some(s)
    }

    /// Adds an independent accuser to the suspicion of `id` (shortening its timeout);
    /// false if there is no such suspicion or the accuser was already counted.
    pub(super) fn add_accuser(&mut self, id: &NodeId, accuser: NodeId) -> bool {
        let Some(s) = self.suspicions.get_mut(id) else {
            return false;
        };
        let before = s.deadline_us();
        if !s.accusers.insert(accuser) {
            return false;
        }
        self.suspicion_due.remove(&(before, id.clone()));
        self.suspicion_due.insert((s.deadline_us(), id.clone()));
        true
    }

    /// Starts the suspicion of `id` at `incarnation`, its timeout set by the cluster's
    /// size (`live_count`) and our health.
    pub(super) fn start_suspicion(
        &mut self,
        cfg: &Config,
        live_count: usize,
        now_us: u64,
        id: &NodeId,
        incarnation: u64,
        accuser: Option<NodeId>,
    ) {
        let s = Suspicion::new(
            cfg,
            live_count,
            self.health_multiplier(),
            incarnation,
            now_us,
            accuser,
        );
        self.insert_suspicion(id.clone(), s);
    }

    /// The suspicions whose timeout ran out by `now_us`, in id order (still held: the
    /// engine removes each as it judges it).
    pub(super) fn expired_suspicions(&self, now_us: u64) -> Vec<NodeId> {
        let mut due: Vec<NodeId> = self
            .suspicion_due
            .iter()
            .take_while(|(at, _)| *at <= now_us)
            .map(|(_, id)| id.clone())
            .collect();
        // In id order, as before the deadline index (same traces).
        due.sort_unstable();
        due
    }

    /// The Lifeguard multiplier applied to our own probe interval and timeout.
    pub(super) fn health_multiplier(&self) -> u64 {
        self.awareness as u64 + 1
    }

    /// Lifeguard's local health score (0 = healthy).
    pub(super) fn awareness(&self) -> u32 {
        self.awareness
    }

    /// Moves the health score by `delta`, within `0..awareness_max`.
    pub(super) fn adjust_awareness(&mut self, cfg: &Config, delta: i32) {
        let max = cfg.awareness_max.saturating_sub(1);
        let a = self.awareness as i64 + delta as i64;
        self.awareness = a.clamp(0, max as i64) as u32;
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// The pings we relayed whose target stayed silent past the deadline, forgotten:
    /// each owes its requester a nack (requester, its seq), in seq order.
    pub(super) fn expired_relays(&mut self, now_us: u64) -> Vec<(NodeId, u64)> {
        let expired: Vec<u64> = self
            .relays
            .iter()
            .filter(|(_, r)| r.deadline_us <= now_us)
            .map(|(s, _)| *s)
            .collect();
        expired
            .into_iter()
            .filter_map(|s| self.relays.remove(&s))
            .map(|r| (r.requester, r.their_seq))
            .collect()
    }

    /// If the probe in flight went unacked past its ack timeout, the indirect probes
    /// are due: marks them sent and returns the target and seq they are about.
    pub(super) fn indirect_due(&mut self, now_us: u64) -> Option<(NodeId, u64)> {
        let p = self.probe.as_mut()?;
        if p.acked || p.indirect_sent || now_us < p.indirect_at_us {
            return None;
        }
        p.indirect_sent = true;
        Some((p.target.clone(), p.seq))
    }

    /// How many helpers were asked to probe: each owes us an ack or a nack.
    pub(super) fn expect_nacks(&mut self, helpers: usize) {
        if let Some(p) = self.probe.as_mut() {
            p.nacks_expected = helpers as u32;
        }
    }

    /// True when the protocol period is over: judge the probe and start the next.
    pub(super) fn period_over(&self, now_us: u64) -> bool {
        now_us >= self.next_probe_us
    }

    /// Ends the probe in flight; returns its target if no ack came, after raising the
    /// health score (Lifeguard: a failed probe, and each nack we expected but never
    /// got, suggest that the problem may be ours).
    pub(super) fn finish_probe(&mut self, cfg: &Config) -> Option<NodeId> {
        let p = self.probe.take()?;
        if p.acked {
            return None;
        }
        let missed = p.nacks_expected.saturating_sub(p.nacks);
        self.adjust_awareness(cfg, 1 + missed as i32);
        Some(p.target)
    }

    /// Starts the next protocol period: picks the next live member and returns it with
    /// the seq of the ping to send, or `None` with nobody to probe. RTT-adaptive: a far
    /// peer gets a longer ack timeout (the configured one is the floor) and a period
    /// stretched to keep room for the indirect probes.
    pub(super) fn start_probe(
        &mut self,
        cfg: &Config,
        members: &Membership,
        loc: &Locality,
        rng: &mut ChaCha8Rng,
        now_us: u64,
    ) -> Option<(NodeId, u64)> {
        let mult = self.health_multiplier();
        self.next_probe_us = now_us + cfg.probe_interval_ms * 1000 * mult;
        let target = self.next_probe_target(members, rng)?;
        let timeout = loc.probe_timeout_us(cfg, members, &target);
        self.next_probe_us = now_us + Locality::probe_period_us(cfg, timeout) * mult;
        let seq = self.next_seq();
        self.probe = Some(Probe {
            target: target.clone(),
            seq,
            sent_us: now_us,
            indirect_at_us: now_us + timeout * mult,
            indirect_sent: false,
            nacks_expected: 0,
            nacks: 0,
            acked: false,
        });
        Some((target, seq))
    }

    /// Next member in the shuffled round robin; reshuffles when the round is over.
    fn next_probe_target(&mut self, members: &Membership, rng: &mut ChaCha8Rng) -> Option<NodeId> {
        for _ in 0..2 {
            while self.idx < self.order.len() {
                let id = self.order[self.idx].clone();
                self.idx += 1;
                if members.is_live(&id) {
                    return Some(id);
                }
            }
            let mut order = members.live_ids().to_vec();
            // Fisher-Yates with the engine's generator.
            for i in (1..order.len()).rev() {
                let j = rng.random_range(0..=i);
                order.swap(i, j);
            }
            self.order = order;
            self.idx = 0;
            if self.order.is_empty() {
                return None;
            }
        }
        None
    }

    /// An `Ack` with `seq` from `from` at `now_us`: our probe's (lowering the health
    /// score), or one to relay.
    pub(super) fn on_ack(
        &mut self,
        cfg: &Config,
        now_us: u64,
        from: &NodeId,
        seq: u64,
    ) -> AckOutcome {
        if let Some(p) = self.probe.as_mut() {
            if p.seq == seq && !p.acked {
                p.acked = true;
                // Karn: after the second direct ping (sent with the indirect probes,
                // same seq) the ack is ambiguous, so it is not a measurement.
                let outcome = if &p.target == from && !p.indirect_sent {
                    AckOutcome::Measured {
                        target: p.target.clone(),
                        rtt_us: now_us.saturating_sub(p.sent_us),
                    }
                } else {
                    AckOutcome::Acked
                };
                self.adjust_awareness(cfg, -1);
                return outcome;
            }
        }
        match self.relays.remove(&seq) {
            Some(r) => AckOutcome::Relay {
                requester: r.requester,
                seq: r.their_seq,
            },
            None => AckOutcome::Stale,
        }
    }

    /// Takes on a `PingReq` from `requester` (its `their_seq`): returns the seq of our
    /// own ping to the target, whose ack or silence by `deadline_us` we pass back.
    pub(super) fn relay(&mut self, requester: &NodeId, their_seq: u64, deadline_us: u64) -> u64 {
        let my_seq = self.next_seq();
        self.relays.insert(
            my_seq,
            Relay {
                requester: requester.clone(),
                their_seq,
                deadline_us,
            },
        );
        my_seq
    }

    /// A helper's `Nack`: it could not reach our probe's target either.
    pub(super) fn on_nack(&mut self, seq: u64) {
        if let Some(p) = self.probe.as_mut() {
            if p.seq == seq {
                p.nacks += 1;
            }
        }
    }

    /// True when the reap check is due; schedules the next (often enough that a member
    /// is forgotten close to its reap timeout) and forgets whom we told they were down
    /// more than a probe period ago.
    pub(super) fn reap_due(&mut self, cfg: &Config, now_us: u64) -> bool {
        if now_us < self.next_reap_us {
            return false;
        }
        let every = REAP_CHECK_US
            .min(cfg.reap_timeout_ms * 1000 / 4)
            .max(100_000);
        self.next_reap_us = now_us + every;
        let horizon = now_us.saturating_sub(cfg.probe_interval_ms * 1000);
        self.told.retain(|_, at| *at > horizon);
        true
    }

    /// Puts members added in bulk into the probe order, which is shuffled again (one
    /// shuffle instead of an insertion at a random place per member).
    pub(super) fn preload(&mut self, added: Vec<NodeId>, rng: &mut ChaCha8Rng) {
        if added.is_empty() {
            return;
        }
        self.order.extend(added);
        self.order.shuffle(rng);
        self.idx = 0;
    }

    /// Keeps the probe order and suspicion timers in step with a change of the member
    /// table (`members`, already changed).
    pub(super) fn on_change(
        &mut self,
        cfg: &Config,
        members: &Membership,
        rng: &mut ChaCha8Rng,
        now_us: u64,
        change: &Change,
    ) {
        match change {
            Change::Joined(s) => {
                // New members enter the probe order at a random place.
                let at = rng.random_range(0..=self.order.len());
                self.order.insert(at, s.info.id.clone());
                if at < self.idx {
                    self.idx += 1;
                }
            }
            Change::Updated { new, .. } => match new.status {
                MemberStatus::Suspect => {
                    let known = self
                        .suspicions
                        .get(&new.info.id)
                        .is_some_and(|s| s.incarnation == new.incarnation);
                    if !known {
                        let live = members.live_count();
                        self.start_suspicion(
                            cfg,
                            live,
                            now_us,
                            &new.info.id,
                            new.incarnation,
                            None,
                        );
                    }
                }
                _ => {
                    self.remove_suspicion(&new.info.id);
                }
            },
            Change::Refuted(_) | Change::Reaped(_) => {}
        }
    }

    /// True if we should tell `peer` that it is down in our view: at most once per
    /// probe period (records that we do).
    pub(super) fn should_tell(&mut self, cfg: &Config, now_us: u64, peer: &NodeId) -> bool {
        let horizon = now_us.saturating_sub(cfg.probe_interval_ms * 1000);
        if self.told.get(peer).is_some_and(|&at| at > horizon) {
            return false;
        }
        self.told.insert(peer.clone(), now_us);
        true
    }
}

// Routing: the engine's timers and datagrams into `Swim`, and what it answers out.
impl Engine {
    /// Lifeguard's local health score (0 = healthy).
    pub fn awareness(&self) -> u32 {
        self.swim.awareness()
    }

    pub(super) fn swim_timers(&mut self, now: Now) {
        let t = now.mono_us;
        // Indirect probes whose target stayed silent: tell the requester (Lifeguard nack).
        for (requester, seq) in self.swim.expired_relays(t) {
            self.send_with_piggyback(&requester, vec![Item::Nack { seq }]);
        }
        // Direct probe timed out: ask k others.
        if let Some((target, seq)) = self.swim.indirect_due(t) {
            self.send_indirect_probes(target, seq);
        }
        // End of the protocol period: judge the probe, start the next.
        if self.swim.period_over(t) {
            self.finish_probe(now);
            self.start_probe(now);
        }
        // Suspicions that ran out become deaths.
        for id in self.swim.expired_suspicions(t) {
            let s = self.swim.remove_suspicion(&id);
            let still = self.members.get(&id).is_some_and(|m| {
                m.state.status == MemberStatus::Suspect
                    && s.as_ref()
                        .is_some_and(|s| s.incarnation == m.state.incarnation)
            });
            if still {
                if let Some(change) = self.members.declare_dead(t, &id) {
                    self.stats.deaths += 1;
                    self.emit_member_change(now, change, true);
                }
            }
        }
        if self.swim.reap_due(&self.cfg, t) {
            for s in self.members.reap(t, self.cfg.reap_timeout_ms * 1000) {
                self.stats.reaped += 1;
                self.out
                    .push_back(Output::Event(Event::Member(Change::Reaped(s))));
            }
        }
        // Refused membership claims whose verification went unanswered (claims.rs).
        self.retry_verifications(now);
    }

    fn send_indirect_probes(&mut self, target: NodeId, seq: u64) {
        let helpers = self.pick_peers(self.cfg.indirect_checks + 1, Some(&target));
        let helpers: Vec<NodeId> = helpers.into_iter().take(self.cfg.indirect_checks).collect();
        self.swim.expect_nacks(helpers.len());
        for h in helpers {
            self.stats.ping_reqs += 1;
            self.send_with_piggyback(
                &h,
                vec![Item::PingReq {
                    seq,
                    target: target.clone(),
                }],
            );
        }
        // Lifeguard: also try the target directly once more, carrying the suspicion
        // state if any, in case only our first ping was lost.
        self.send_with_piggyback(&target, vec![Item::Ping { seq }]);
    }

    fn finish_probe(&mut self, now: Now) {
        let Some(target) = self.swim.finish_probe(&self.cfg) else {
            return;
        };
        self.stats.probes_failed += 1;
        let Some(m) = self.members.get(&target) else {
            return;
        };
        // Alive: a new suspicion. Already suspect: our failed probe is an independent
        // confirmation that shortens the timeout everywhere (Lifeguard).
        if !matches!(m.state.status, MemberStatus::Alive | MemberStatus::Suspect) {
            return;
        }
        let inc = m.state.incarnation;
        let me = self.id().clone();
        self.on_suspect(now, target, inc, me);
    }

    fn start_probe(&mut self, now: Now) {
        let Some((target, seq)) = self.swim.start_probe(
            &self.cfg,
            &self.members,
            &self.loc,
            &mut self.rng,
            now.mono_us,
        ) else {
            return;
        };
        self.stats.probes += 1;
        let mut items = vec![Item::Ping { seq }];
        // Lifeguard: a suspect learns of the suspicion from the probe itself.
        if let Some(m) = self.members.get(&target) {
            if m.state.status == MemberStatus::Suspect {
                items.push(Item::Suspect {
                    id: target.clone(),
                    incarnation: m.state.incarnation,
                    accuser: self.id().clone(),
                });
            }
        }
        self.send_with_piggyback(&target, items);
    }

    pub(super) fn on_ping(&mut self, _now: Now, from: &NodeId, seq: u64) {
        self.send_with_piggyback(from, vec![Item::Ack { seq }]);
    }

    pub(super) fn on_ack(&mut self, now: Now, from: &NodeId, seq: u64) {
        match self.swim.on_ack(&self.cfg, now.mono_us, from, seq) {
            AckOutcome::Measured { target, rtt_us } => {
                self.loc.note_probe_rtt(&mut self.members, &target, rtt_us);
            }
            AckOutcome::Relay { requester, seq } => {
                self.send_with_piggyback(&requester, vec![Item::Ack { seq }]);
            }
            AckOutcome::Acked | AckOutcome::Stale => {}
        }
    }

    pub(super) fn on_ping_req(&mut self, now: Now, from: &NodeId, seq: u64, target: NodeId) {
        if &target == self.id() {
            self.send_with_piggyback(from, vec![Item::Ack { seq }]);
            return;
        }
        if self.addr_of(&target).is_none() {
            self.send_with_piggyback(from, vec![Item::Nack { seq }]);
            return;
        }
        // Answer the requester a little before its own period ends.
        let wait = self.loc.relay_timeout_us(&self.cfg, &self.members, &target);
        let my_seq = self.swim.relay(from, seq, now.mono_us + wait);
        self.send_with_piggyback(&target, vec![Item::Ping { seq: my_seq }]);
    }

    pub(super) fn on_nack(&mut self, seq: u64) {
        self.swim.on_nack(seq);
    }

    /// Handles a suspicion claim (ours or gossiped).
    pub(super) fn on_suspect(&mut self, now: Now, id: NodeId, incarnation: u64, accuser: NodeId) {
        if incarnation > MAX_INCARNATION {
            self.stats.items_invalid += 1;
            return;
        }
        if &id == self.id() {
            let me = self.members.me().clone();
            let claim = MemberState {
                info: me.info,
                incarnation,
                status: MemberStatus::Suspect,
            };
            if let Some(change) = self.members.apply(now.mono_us, claim) {
                // We were suspected: our links may be the slow ones (Lifeguard).
                self.swim.adjust_awareness(&self.cfg, 1);
                self.emit_member_change(now, change, true);
            }
            return;
        }
        let budget = self.budget();
        let item = Item::Suspect {
            id: id.clone(),
            incarnation,
            accuser: accuser.clone(),
        };
        if let Some(change) = self.members.suspect(now.mono_us, &id, incarnation) {
            self.stats.suspicions += u64::from(&accuser == self.id());
            let live = self.members.live_count();
            self.swim.start_suspicion(
                &self.cfg,
                live,
                now.mono_us,
                &id,
                incarnation,
                Some(accuser),
            );
            self.queue
                .push(Topic::Member(id), Traffic::Membership, item, budget);
            self.out.push_back(Output::Event(Event::Member(change)));
            return;
        }
        // Already suspect at this incarnation: a new, independent accuser shortens the
        // timeout, and the confirmation is gossiped on.
        let same = self.members.get(&id).is_some_and(|m| {
            m.state.status == MemberStatus::Suspect && m.state.incarnation == incarnation
        });
        if same && self.swim.add_accuser(&id, accuser) {
            self.queue
                .push(Topic::Member(id), Traffic::Membership, item, budget);
        }
    }

    /// Puts members added in bulk into the probe order (see [`Swim::preload`]).
    pub(super) fn swim_preload(&mut self, added: Vec<NodeId>) {
        self.swim.preload(added, &mut self.rng);
    }

    /// Keeps SWIM in step with the member table (see [`Swim::on_change`]).
    pub(super) fn swim_on_change(&mut self, now: Now, change: &Change) {
        self.swim
            .on_change(&self.cfg, &self.members, &mut self.rng, now.mono_us, change);
    }

    /// If `from`, which just talked to us directly, is dead or reaped in our view, tell
    /// it so that it refutes with a higher incarnation (at most once per probe period).
    pub(super) fn tell_if_down(&mut self, now: Now, from: &NodeId) {
        let Some(dead) = self.members.down_state(from) else {
            return;
        };
        if self.swim.should_tell(&self.cfg, now.mono_us, from) {
            self.send_with_piggyback(from, vec![Item::Member(dead)]);
        }
    }
}

#[cfg(test)]
#[path = "swim_tests.rs"]
mod tests;
