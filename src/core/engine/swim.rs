//! SWIM failure detection with the Lifeguard extensions, as part of the [`Engine`].
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

use std::collections::{BTreeMap, BTreeSet};

use rand::seq::SliceRandom;
use rand::Rng;

use super::locality::Locality;
use super::suspicion::Suspicion;
use super::{Engine, Event, Output};
use crate::core::dissemination::Topic;
use crate::core::limiter::Traffic;
use crate::core::membership::{Change, MAX_INCARNATION};
use crate::core::proto::{encoded_len, Item, MemberState, MemberStatus, DATAGRAM_OVERHEAD};
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
    fn remove_suspicion(&mut self, id: &NodeId) -> Option<Suspicion> {
        let s = self.suspicions.remove(id)?;
        self.suspicion_due.remove(&(s.deadline_us(), id.clone()));
        Some(s)
    }

    /// Adds an independent accuser to the suspicion of `id` (shortening its timeout);
    /// false if there is no such suspicion or the accuser was already counted.
    fn add_accuser(&mut self, id: &NodeId, accuser: NodeId) -> bool {
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

    /// The Lifeguard multiplier applied to our own probe interval and timeout.
    pub(super) fn health_multiplier(&self) -> u64 {
        self.awareness as u64 + 1
    }
}

impl Engine {
    /// Lifeguard's local health score (0 = healthy).
    pub fn awareness(&self) -> u32 {
        self.swim.awareness
    }

    fn adjust_awareness(&mut self, delta: i32) {
        let max = self.cfg.awareness_max.saturating_sub(1);
        let a = self.swim.awareness as i64 + delta as i64;
        self.swim.awareness = a.clamp(0, max as i64) as u32;
    }

    fn next_seq(&mut self) -> u64 {
        self.swim.seq += 1;
        self.swim.seq
    }

    /// Sends `items` (membership traffic) to `to` in one datagram, filling the rest with
    /// queued gossip as far as the bandwidth limiter allows.
    fn send_with_piggyback(&mut self, to: &NodeId, items: Vec<Item>) {
        let Some(addr) = self.addr_of(to) else { return };
        let used: usize = items.iter().map(encoded_len).sum();
        let room = self.cfg.max_datagram.saturating_sub(used);
        // Probes (ping, ack, ping-req, nack) ride on the failure detector's tokens;
        // anything else sent directly (a suspicion, a member's state) is membership.
        let mut items: Vec<(Item, Traffic)> = items
            .into_iter()
            .map(|i| {
                let t = match i {
                    Item::Ping { .. }
                    | Item::Ack { .. }
                    | Item::PingReq { .. }
                    | Item::Nack { .. } => Traffic::Probe,
                    _ => Traffic::Membership,
                };
                (i, t)
            })
            .collect();
        let n_direct = items.len();
        if room > DATAGRAM_OVERHEAD + 8 {
            let caps = self.caps(to).map(|c| c.saturating_sub(used));
            // Probes of other datacenters carry no deltas (locality.rs).
            let far = self.crosses_dc(to);
            let more = self.queue.pack_classified(room, caps, &[], |item| {
                (far && item.is_data()) || matches!(item, Item::Member(s) if &s.info.id == to)
            });
            items.extend(more);
        }
        let direct: Vec<(Item, Traffic)> = items[..n_direct].to_vec();
        if !self.emit(to, addr, items, false) {
            // Not lost: direct membership traffic waits for tokens (see `defer`).
            self.defer(to, direct);
        }
    }

    pub(super) fn swim_timers(&mut self, now: Now) {
        let t = now.mono_us;
        // Indirect probes whose target stayed silent: tell the requester (Lifeguard nack).
        let expired: Vec<u64> = self
            .swim
            .relays
            .iter()
            .filter(|(_, r)| r.deadline_us <= t)
            .map(|(s, _)| *s)
            .collect();
        for s in expired {
            if let Some(r) = self.swim.relays.remove(&s) {
                self.send_with_piggyback(&r.requester, vec![Item::Nack { seq: r.their_seq }]);
            }
        }
        // Direct probe timed out: ask k others.
        let need_indirect = self
            .swim
            .probe
            .as_ref()
            .is_some_and(|p| !p.acked && !p.indirect_sent && t >= p.indirect_at_us);
        if need_indirect {
            self.send_indirect_probes();
        }
        // End of the protocol period: judge the probe, start the next.
        if t >= self.swim.next_probe_us {
            self.finish_probe(now);
            self.start_probe(now);
        }
        // Suspicions that ran out become deaths.
        let mut due: Vec<NodeId> = self
            .swim
            .suspicion_due
            .iter()
            .take_while(|(at, _)| *at <= t)
            .map(|(_, id)| id.clone())
            .collect();
        // In id order, as before the deadline index (same traces).
        due.sort_unstable();
        for id in due {
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
        if t >= self.swim.next_reap_us {
            // Check often enough that a member is forgotten close to its reap timeout.
            let every = REAP_CHECK_US
                .min(self.cfg.reap_timeout_ms * 1000 / 4)
                .max(100_000);
            self.swim.next_reap_us = t + every;
            for s in self.members.reap(t, self.cfg.reap_timeout_ms * 1000) {
                self.stats.reaped += 1;
                self.out
                    .push_back(Output::Event(Event::Member(Change::Reaped(s))));
            }
            let horizon = t.saturating_sub(self.cfg.probe_interval_ms * 1000);
            self.swim.told.retain(|_, at| *at > horizon);
        }
        // Refused membership claims whose verification went unanswered (claims.rs).
        self.retry_verifications(now);
    }

    fn send_indirect_probes(&mut self) {
        let Some(p) = self.swim.probe.as_mut() else {
            return;
        };
        p.indirect_sent = true;
        let (target, seq) = (p.target.clone(), p.seq);
        let helpers = self.pick_peers(self.cfg.indirect_checks + 1, Some(&target));
        let helpers: Vec<NodeId> = helpers.into_iter().take(self.cfg.indirect_checks).collect();
        if let Some(p) = self.swim.probe.as_mut() {
            p.nacks_expected = helpers.len() as u32;
        }
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
        let Some(p) = self.swim.probe.take() else {
            return;
        };
        if p.acked {
            return;
        }
        self.stats.probes_failed += 1;
        // Lifeguard: a failed probe, and each nack we expected but never got, suggest
        // that the problem may be ours.
        let missed = p.nacks_expected.saturating_sub(p.nacks);
        self.adjust_awareness(1 + missed as i32);
        let Some(m) = self.members.get(&p.target) else {
            return;
        };
        // Alive: a new suspicion. Already suspect: our failed probe is an independent
        // confirmation that shortens the timeout everywhere (Lifeguard).
        if !matches!(m.state.status, MemberStatus::Alive | MemberStatus::Suspect) {
            return;
        }
        let inc = m.state.incarnation;
        let me = self.id().clone();
        self.on_suspect(now, p.target, inc, me);
    }

    fn start_probe(&mut self, now: Now) {
        let mult = self.swim.health_multiplier();
        self.swim.next_probe_us = now.mono_us + self.cfg.probe_interval_ms * 1000 * mult;
        let Some(target) = self.next_probe_target() else {
            return;
        };
        // RTT-adaptive: a far peer gets a longer ack timeout (the configured one is the
        // floor) and a period stretched to keep room for the indirect probes.
        let timeout = self.probe_timeout_us(&target);
        self.swim.next_probe_us =
            now.mono_us + Locality::probe_period_us(&self.cfg, timeout) * mult;
        let seq = self.next_seq();
        self.stats.probes += 1;
        self.swim.probe = Some(Probe {
            target: target.clone(),
            seq,
            sent_us: now.mono_us,
            indirect_at_us: now.mono_us + timeout * mult,
            indirect_sent: false,
            nacks_expected: 0,
            nacks: 0,
            acked: false,
        });
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

    /// Next member in the shuffled round robin; reshuffles when the round is over.
    fn next_probe_target(&mut self) -> Option<NodeId> {
        for _ in 0..2 {
            while self.swim.idx < self.swim.order.len() {
                let id = self.swim.order[self.swim.idx].clone();
                self.swim.idx += 1;
                if self.members.is_live(&id) {
                    return Some(id);
                }
            }
            let mut order = self.members.live_ids().to_vec();
            // Fisher-Yates with the engine's generator.
            for i in (1..order.len()).rev() {
                let j = self.rng.random_range(0..=i);
                order.swap(i, j);
            }
            self.swim.order = order;
            self.swim.idx = 0;
            if self.swim.order.is_empty() {
                return None;
            }
        }
        None
    }

    pub(super) fn on_ping(&mut self, _now: Now, from: &NodeId, seq: u64) {
        self.send_with_piggyback(from, vec![Item::Ack { seq }]);
    }

    pub(super) fn on_ack(&mut self, now: Now, from: &NodeId, seq: u64) {
        if let Some(p) = self.swim.probe.as_mut() {
            if p.seq == seq && !p.acked {
                p.acked = true;
                // Karn: after the second direct ping (sent with the indirect probes,
                // same seq) the ack is ambiguous, so it is not a measurement.
                if &p.target == from && !p.indirect_sent {
                    let rtt = now.mono_us.saturating_sub(p.sent_us);
                    let target = p.target.clone();
                    self.loc.note_probe_rtt(&mut self.members, &target, rtt);
                }
                self.adjust_awareness(-1);
                return;
            }
        }
        if let Some(r) = self.swim.relays.remove(&seq) {
            self.send_with_piggyback(&r.requester, vec![Item::Ack { seq: r.their_seq }]);
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
        let my_seq = self.next_seq();
        // Answer the requester a little before its own period ends.
        let deadline = now.mono_us + self.loc.relay_timeout_us(&self.cfg, &self.members, &target);
        self.swim.relays.insert(
            my_seq,
            Relay {
                requester: from.clone(),
                their_seq: seq,
                deadline_us: deadline,
            },
        );
        self.send_with_piggyback(&target, vec![Item::Ping { seq: my_seq }]);
    }

    pub(super) fn on_nack(&mut self, seq: u64) {
        if let Some(p) = self.swim.probe.as_mut() {
            if p.seq == seq {
                p.nacks += 1;
            }
        }
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
                self.adjust_awareness(1);
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
            self.start_suspicion(now, &id, incarnation, Some(accuser));
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

    fn start_suspicion(
        &mut self,
        now: Now,
        id: &NodeId,
        incarnation: u64,
        accuser: Option<NodeId>,
    ) {
        let s = Suspicion::new(
            &self.cfg,
            self.members.live_count(),
            self.swim.health_multiplier(),
            incarnation,
            now.mono_us,
            accuser,
        );
        self.swim.insert_suspicion(id.clone(), s);
    }

    /// Puts members added in bulk into the probe order, which is shuffled again (one
    /// shuffle instead of an insertion at a random place per member).
    pub(super) fn swim_preload(&mut self, added: Vec<NodeId>) {
        if added.is_empty() {
            return;
        }
        self.swim.order.extend(added);
        self.swim.order.shuffle(&mut self.rng);
        self.swim.idx = 0;
    }

    /// Keeps the probe order and suspicion timers in step with the member table.
    pub(super) fn swim_on_change(&mut self, now: Now, change: &Change) {
        match change {
            Change::Joined(s) => {
                // New members enter the probe order at a random place.
                let at = self.rng.random_range(0..=self.swim.order.len());
                self.swim.order.insert(at, s.info.id.clone());
                if at < self.swim.idx {
                    self.swim.idx += 1;
                }
            }
            Change::Updated { new, .. } => match new.status {
                MemberStatus::Suspect => {
                    let known = self
                        .swim
                        .suspicions
                        .get(&new.info.id)
                        .is_some_and(|s| s.incarnation == new.incarnation);
                    if !known {
                        self.start_suspicion(now, &new.info.id, new.incarnation, None);
                    }
                }
                _ => {
                    self.swim.remove_suspicion(&new.info.id);
                }
            },
            Change::Refuted(_) | Change::Reaped(_) => {}
        }
    }

    /// Sends `items` straight to `to`, filling the datagram with queued gossip: used to
    /// verify a refused second-hand claim with the member it is about, and to answer a
    /// peer that holds an out-of-date state of ours (see `claims.rs`).
    pub(super) fn send_direct(&mut self, to: &NodeId, items: Vec<Item>) {
        self.send_with_piggyback(to, items);
    }

    /// If `from`, which just talked to us directly, is dead or reaped in our view, tell
    /// it so that it refutes with a higher incarnation (at most once per probe period).
    pub(super) fn tell_if_down(&mut self, now: Now, from: &NodeId) {
        let Some(dead) = self.members.down_state(from) else {
            return;
        };
        let horizon = now
            .mono_us
            .saturating_sub(self.cfg.probe_interval_ms * 1000);
        if self.swim.told.get(from).is_some_and(|&at| at > horizon) {
            return;
        }
        self.swim.told.insert(from.clone(), now.mono_us);
        self.send_with_piggyback(from, vec![Item::Member(dead)]);
    }
}
