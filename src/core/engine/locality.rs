//! Locality across datacenters, as part of the [`Engine`].
//!
//! Every member carries a datacenter (`dc`). With [`Config::locality`] on:
//!
//! - **Gossip rounds and indirect-probe helpers** ([`Engine::pick_peers`]) choose each
//!   target in another datacenter with probability `cross_dc_share`, otherwise in ours.
//! - **Eager pushes** ([`Engine::pick_local_peers`]) stay inside our datacenter.
//! - **Deltas never cross the WAN on the broadcast queue**: datagrams to members of other
//!   datacenters carry membership gossip only ([`Engine::crosses_dc`]). A write crosses
//!   through its writer instead: at once to `dc_relays` nodes of each other datacenter,
//!   then to one node of each in `dc_retransmits` later gossip rounds. The nodes that
//!   receive it from afar spread it inside their own datacenter. So a write crosses the
//!   WAN `dc_relays + dc_retransmits` times per remote datacenter, whatever its size.
//! - **Anti-entropy** ([`Engine::sync_candidates`]) goes to another datacenter with
//!   probability `cross_dc_share`: whatever the relays lost crosses there, and no
//!   datacenter becomes an island.
//!
//! Probing covers every member whatever its datacenter. Probe timeouts adapt to the
//! peer's round-trip time (probe round trips, and the transport's estimate given to
//! [`Engine::observe_rtt`]), with the configured values as floors.
//!
//! With a single datacenter every choice takes the same path, random draws included, as
//! without locality.

use std::collections::BTreeMap;

use rand::seq::IndexedRandom;
use rand::Rng;

use super::config::{bad, ConfigError};
use super::{Config, Engine, PushMode};
use crate::core::limiter::Traffic;
use crate::core::proto::{encoded_len, Item, DATAGRAM_OVERHEAD};
use crate::core::state::Entry;
use crate::core::NodeId;

/// Most writes waiting for a WAN retransmit; beyond it the oldest are dropped
/// (anti-entropy carries them).
const WAN_PENDING_MAX: usize = 1_024;

/// How often (µs) the split of live peers by datacenter (and the broadcast tree's ring)
/// may be rebuilt, at most, while the member table keeps changing (a join storm); in
/// between it may lag by this much. Smaller clusters rebuild sooner: every
/// [`VIEW_REFRESH_PER_MEMBER_US`] per member, so the work stays about constant.
const VIEW_REFRESH_US: u64 = 1_000_000;
/// Rebuild throttle per live member (µs): 5 ms at 50 members, 100 ms at 1,000.
const VIEW_REFRESH_PER_MEMBER_US: u64 = 100;

/// Longest round-trip time (µs) that probe timeouts adapt to.
const MAX_ADAPTIVE_RTT_US: u64 = 10_000_000;

/// Live peers split by datacenter.
#[derive(Debug, Clone, Default)]
pub(super) struct View {
    /// Peers in our datacenter.
    local: Vec<NodeId>,
    /// Peers elsewhere.
    remote: Vec<NodeId>,
    /// Peers elsewhere, by datacenter (sorted by name).
    by_dc: Vec<(String, Vec<NodeId>)>,
    /// The broadcast tree's ring: us and the live peers a write is pushed to (our
    /// datacenter with locality, everyone without), sorted by id.
    pub(super) ring: Vec<NodeId>,
}

/// Locality state of one engine.
#[derive(Debug, Clone, Default)]
pub(super) struct Locality {
    pub(super) view: View,
    /// (member digest, live count) the view was built from.
    view_key: Option<(u64, usize)>,
    /// Our datacenter when the view was built.
    view_dc: String,
    /// The engine's clock when the view was built.
    view_built_us: u64,
    /// Our writes still to be resent across the WAN, with the resends left.
    wan: Vec<(Entry, u32)>,
    /// Round-trip times the transport reported, per peer (µs).
    transport_rtt: BTreeMap<NodeId, u64>,
    /// Smoothed round-trip time per datacenter (µs), from every measurement: the estimate
    /// for a peer not measured yet.
    dc_rtt: BTreeMap<String, u64>,
}

impl Config {
    /// The locality fields' checks (part of [`Config::validate`]).
    pub(super) fn validate_locality(&self) -> Result<(), ConfigError> {
        if !(self.cross_dc_share > 0.0 && self.cross_dc_share <= 1.0) {
            return Err(bad(
                "cross_dc_share",
                format!(
                    "must be in (0, 1] (got {}): 0 would cut datacenters off from each \
                     other's gossip and anti-entropy; turn locality off to treat all peers alike",
                    self.cross_dc_share
                ),
            ));
        }
        if self.locality && self.dc_relays == 0 {
            return Err(bad(
                "dc_relays",
                "must be at least 1 with locality on (0 would leave writes to cross \
                 datacenters by anti-entropy alone)",
            ));
        }
        for (field, v) in [
            ("dc_relays", self.dc_relays as u64),
            ("dc_retransmits", u64::from(self.dc_retransmits)),
        ] {
            if v > 16 {
                return Err(bad(
                    field,
                    format!(
                        "must be at most 16 (got {v}): each is one WAN datagram per write and \
                         remote datacenter"
                    ),
                ));
            }
        }
        if self.probe_rtt_mult > 20 {
            return Err(bad(
                "probe_rtt_mult",
                format!("must be 0 (off) to 20 (got {})", self.probe_rtt_mult),
            ));
        }
        Ok(())
    }
}

/// Up to `n` distinct random members of `pool`, never `exclude`.
fn choose(rng: &mut impl Rng, pool: &[NodeId], n: usize, exclude: Option<&NodeId>) -> Vec<NodeId> {
    if n == 0 {
        return Vec::new();
    }
    let extra = usize::from(exclude.is_some());
    let mut out: Vec<NodeId> = pool
        .choose_multiple(rng, n + extra)
        .filter(|id| Some(*id) != exclude)
        .cloned()
        .collect();
    out.truncate(n);
    out
}

impl Engine {
    /// Our datacenter.
    fn my_dc(&self) -> &str {
        &self.members.me().info.dc
    }

    /// True if `peer` is in another datacenter and locality is on: datagrams to it carry
    /// no deltas from the broadcast queue.
    pub(super) fn crosses_dc(&self, peer: &NodeId) -> bool {
        self.cfg.locality
            && self
                .members
                .get(peer)
                .is_some_and(|m| m.state.info.dc != self.members.me().info.dc)
    }

    fn view_refresh_us(&self) -> u64 {
        (self.members.live_count() as u64 * VIEW_REFRESH_PER_MEMBER_US).min(VIEW_REFRESH_US)
    }

    /// Rebuilds the split of live peers by datacenter if the member table changed (at
    /// most once per `view_refresh_us` while it keeps changing).
    pub(super) fn refresh_view(&mut self) {
        let key = (self.members.digest(), self.members.live_count());
        let same_dc = self.loc.view_dc == self.my_dc();
        if self.loc.view_key.is_some()
            && same_dc
            && (self.loc.view_key == Some(key)
                || self.clock_us < self.loc.view_built_us + self.view_refresh_us())
        {
            return;
        }
        let me = self.my_dc().to_string();
        let mut view = View::default();
        let mut by_dc: BTreeMap<&str, Vec<NodeId>> = BTreeMap::new();
        for id in self.members.live_ids() {
            let Some(m) = self.members.get(id) else {
                continue;
            };
            if m.state.info.dc == me {
                view.local.push(id.clone());
            } else {
                view.remote.push(id.clone());
                by_dc.entry(&m.state.info.dc).or_default().push(id.clone());
            }
        }
        let pool = if self.cfg.locality {
            &view.local[..]
        } else {
            self.members.live_ids()
        };
        let mut ring = Vec::with_capacity(pool.len() + 1);
        ring.extend_from_slice(pool);
        ring.push(self.id().clone());
        ring.sort_unstable();
        ring.dedup();
        view.ring = ring;
        // Every node holds these lists of (nearly) every member: no spare capacity.
        view.local.shrink_to_fit();
        view.remote.shrink_to_fit();
        view.by_dc = by_dc
            .into_iter()
            .map(|(dc, mut ids)| {
                ids.shrink_to_fit();
                (dc.to_string(), ids)
            })
            .collect();
        self.loc.view = view;
        self.loc.view_key = Some(key);
        self.loc.view_dc = me;
        self.loc.view_built_us = self.clock_us;
    }

    /// Up to `k` distinct random live peers, never `exclude`, whatever their datacenter.
    fn pick_uniform(&mut self, k: usize, exclude: Option<&NodeId>) -> Vec<NodeId> {
        choose(&mut self.rng, self.members.live_ids(), k, exclude)
    }

    /// `n` from `pool` (a view list, which may lag the table), live ones only.
    fn choose_live(&mut self, remote: bool, n: usize, exclude: Option<&NodeId>) -> Vec<NodeId> {
        let pool = if remote {
            &self.loc.view.remote
        } else {
            &self.loc.view.local
        };
        let mut out = choose(&mut self.rng, pool, n, exclude);
        out.retain(|id| self.members.is_live(id));
        out
    }

    /// True when locality applies: it is on and live peers are in both our datacenter
    /// and others. Refreshes the view.
    fn split_applies(&mut self) -> bool {
        if !self.cfg.locality {
            return false;
        }
        self.refresh_view();
        !self.loc.view.local.is_empty() && !self.loc.view.remote.is_empty()
    }

    /// Up to `k` distinct random live peers for a gossip round (or to help probe), never
    /// `exclude`: each in another datacenter with probability `cross_dc_share`, in ours
    /// otherwise (see the module docs). Peers in our datacenter come first.
    pub(super) fn pick_peers(&mut self, k: usize, exclude: Option<&NodeId>) -> Vec<NodeId> {
        if !self.split_applies() {
            return self.pick_uniform(k, exclude);
        }
        let share = self.cfg.cross_dc_share;
        let far = (0..k).filter(|_| self.rng.random_bool(share)).count();
        let mut out = self.choose_live(false, k - far, exclude);
        let want_far = k - out.len();
        out.extend(self.choose_live(true, want_far, exclude));
        out
    }

    /// Up to `k` distinct random live peers in our own datacenter, never `exclude`: the
    /// targets of an eager push (deltas cross datacenters only through the writer's
    /// relays). Without locality, or with a single datacenter, any live peers.
    pub(super) fn pick_local_peers(&mut self, k: usize, exclude: Option<&NodeId>) -> Vec<NodeId> {
        if !self.cfg.locality {
            return self.pick_uniform(k, exclude);
        }
        self.refresh_view();
        if self.loc.view.remote.is_empty() {
            return self.pick_uniform(k, exclude);
        }
        self.choose_live(false, k, exclude)
    }

    /// A few candidates for the next anti-entropy exchange: from another datacenter with
    /// probability `cross_dc_share`, from ours otherwise.
    pub(super) fn sync_candidates(&mut self, k: usize) -> Vec<NodeId> {
        if !self.split_applies() {
            return self.pick_uniform(k, None);
        }
        let far = self.rng.random_bool(self.cfg.cross_dc_share);
        self.choose_live(far, k, None)
    }

    /// Sends our fresh write `e` to `dc_relays` nodes of every other datacenter, and keeps
    /// it for `dc_retransmits` more WAN rounds. Does nothing without locality.
    pub(super) fn relay_to_other_dcs(&mut self, e: &Entry) {
        if !self.cfg.locality || self.cfg.push == PushMode::Off {
            return;
        }
        self.refresh_view();
        if self.loc.view.by_dc.is_empty() {
            return;
        }
        let item = Item::Delta(e.clone());
        let reliable = encoded_len(&item) + DATAGRAM_OVERHEAD > self.cfg.max_datagram;
        for d in 0..self.loc.view.by_dc.len() {
            let targets = choose(
                &mut self.rng,
                &self.loc.view.by_dc[d].1,
                self.cfg.dc_relays,
                None,
            );
            for t in targets {
                if !self.members.is_live(&t) {
                    continue;
                }
                if let Some(addr) = self.addr_of(&t) {
                    self.send_far(&t, addr, vec![item.clone()], false, reliable);
                }
            }
        }
        if self.cfg.dc_retransmits > 0 {
            self.loc.wan.retain(|(old, _)| old.key != e.key);
            if self.loc.wan.len() >= WAN_PENDING_MAX {
                self.loc.wan.remove(0);
            }
            self.loc.wan.push((e.clone(), self.cfg.dc_retransmits));
        }
    }

    /// Sends a relay of our writes to a member of another datacenter, through the
    /// bandwidth limiter (`resend`: a WAN retransmit rather than the first copy).
    fn send_far(
        &mut self,
        to: &NodeId,
        addr: String,
        items: Vec<Item>,
        resend: bool,
        reliable: bool,
    ) {
        let class = if resend {
            Traffic::Retransmit
        } else {
            Traffic::Fresh
        };
        let items = items.into_iter().map(|i| (i, class)).collect();
        self.emit(to, addr, items, reliable);
    }

    /// One WAN retransmit round (with each gossip round): our writes still owed a resend
    /// go, packed, to one random node of every other datacenter.
    pub(super) fn wan_round(&mut self) {
        if self.loc.wan.is_empty() {
            return;
        }
        if !self.cfg.locality {
            self.loc.wan.clear();
            return;
        }
        self.refresh_view();
        // What fits in one datagram, oldest first; an oversized write goes alone, reliably.
        let mut taken = Vec::new();
        let mut used = DATAGRAM_OVERHEAD;
        let mut reliable = false;
        for (i, (e, _)) in self.loc.wan.iter().enumerate() {
            let len = encoded_len(&Item::Delta(e.clone()));
            if taken.is_empty() && len + DATAGRAM_OVERHEAD > self.cfg.max_datagram {
                taken.push(i);
                reliable = true;
                break;
            }
            if used + len > self.cfg.max_datagram {
                break;
            }
            used += len;
            taken.push(i);
        }
        let items: Vec<Item> = taken
            .iter()
            .map(|&i| Item::Delta(self.loc.wan[i].0.clone()))
            .collect();
        for d in 0..self.loc.view.by_dc.len() {
            let target = choose(&mut self.rng, &self.loc.view.by_dc[d].1, 1, None);
            for t in target {
                if !self.members.is_live(&t) {
                    continue;
                }
                if let Some(addr) = self.addr_of(&t) {
                    self.send_far(&t, addr, items.clone(), true, reliable);
                }
            }
        }
        for &i in &taken {
            self.loc.wan[i].1 -= 1;
        }
        self.loc.wan.retain(|(_, left)| *left > 0);
    }

    /// Records a round-trip time to `peer` measured by the transport (for example the QUIC
    /// connection's smoothed RTT). Probe timeouts toward `peer` adapt to the larger
    /// of this and the probes' own round trips.
    pub fn observe_rtt(&mut self, peer: &NodeId, rtt_us: u64) {
        if self.members.get(peer).is_none() {
            return;
        }
        self.loc.transport_rtt.insert(peer.clone(), rtt_us);
        self.note_dc_rtt(peer, rtt_us);
    }

    /// Records the round trip of a direct probe of `peer`.
    pub(super) fn note_probe_rtt(&mut self, peer: &NodeId, rtt_us: u64) {
        self.members.record_rtt(peer, rtt_us);
        self.note_dc_rtt(peer, rtt_us);
    }

    fn note_dc_rtt(&mut self, peer: &NodeId, rtt_us: u64) {
        let Some(m) = self.members.get(peer) else {
            return;
        };
        let dc = &m.state.info.dc;
        match self.loc.dc_rtt.get_mut(dc.as_str()) {
            Some(old) => *old = (*old * 7 + rtt_us) / 8,
            None => {
                self.loc.dc_rtt.insert(dc.clone(), rtt_us);
            }
        }
    }

    /// Our best estimate of the round-trip time to `peer` (µs): the larger of the probe
    /// and transport measurements, else the smoothed RTT of its datacenter.
    pub fn rtt_estimate(&self, peer: &NodeId) -> Option<u64> {
        let m = self.members.get(peer)?;
        let own = m.rtt_us.max(self.loc.transport_rtt.get(peer).copied());
        own.or_else(|| self.loc.dc_rtt.get(m.state.info.dc.as_str()).copied())
            .map(|r| r.min(MAX_ADAPTIVE_RTT_US))
    }

    /// How long to wait for `peer`'s direct ack (µs, before the health multiplier):
    /// `probe_rtt_mult` round trips, never less than `probe_timeout_ms`.
    pub fn probe_timeout_us(&self, peer: &NodeId) -> u64 {
        let floor = self.cfg.probe_timeout_ms * 1000;
        if self.cfg.probe_rtt_mult == 0 {
            return floor;
        }
        let rtt = self.rtt_estimate(peer).unwrap_or(0);
        floor.max(rtt * self.cfg.probe_rtt_mult as u64)
    }

    /// How long a helper waits for `target`'s ack before answering a `PingReq` with a
    /// `Nack` (µs): 80 % of the configured probe timeout, or `probe_rtt_mult − 1` round
    /// trips if that is longer, so the nack still reaches a requester whose own timeout
    /// adapted to the same distance.
    pub(super) fn relay_timeout_us(&self, target: &NodeId) -> u64 {
        let floor = self.cfg.probe_timeout_ms * 1000 * 8 / 10;
        if self.cfg.probe_rtt_mult == 0 {
            return floor;
        }
        let rtt = self.rtt_estimate(target).unwrap_or(0);
        floor.max(rtt * (self.cfg.probe_rtt_mult as u64).saturating_sub(1))
    }

    /// The protocol period for a probe of a peer whose ack timeout is `timeout_us` (µs,
    /// before the health multiplier): the configured interval, stretched by twice what
    /// the RTT added to the timeout, so the indirect probes keep their time after it.
    pub(super) fn probe_period_us(&self, timeout_us: u64) -> u64 {
        let floor = self.cfg.probe_timeout_ms * 1000;
        self.cfg.probe_interval_ms * 1000 + 2 * timeout_us.saturating_sub(floor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::proto::{Datagram, MemberInfo, MemberState, MemberStatus};
    use crate::core::{Now, Output};

    fn info(id: &str, dc: &str) -> MemberInfo {
        MemberInfo {
            id: NodeId::new(id).unwrap(),
            addr: format!("{id}:1"),
            dc: dc.into(),
            zone: String::new(),
            tags: Default::default(),
        }
    }

    fn now(ms: u64) -> Now {
        Now::new(ms * 1000, 1_700_000_000_000 + ms)
    }

    /// Engine `a0` in dc "a", knowing 5 more in "a" and 6 in each of "b" and "c".
    fn engine(cfg: Config) -> Engine {
        let mut e = Engine::new(cfg, info("a0", "a"), vec![], 7, now(0), None);
        let mut members = Vec::new();
        for i in 1..6 {
            members.push(info(&format!("a{i}"), "a"));
        }
        for dc in ["b", "c"] {
            for i in 0..6 {
                members.push(info(&format!("{dc}{i}"), dc));
            }
        }
        let states = members
            .into_iter()
            .map(|m| MemberState {
                info: m.into(),
                incarnation: 1,
                status: MemberStatus::Alive,
            })
            .collect();
        let peer = NodeId::new("a1").unwrap();
        e.sync_on_members(now(0), &peer, states);
        assert_eq!(e.members().live_count(), 18);
        while e.poll_output().is_some() {}
        e
    }

    /// A delta or a tree push: the update itself, not its id.
    fn carries_update(i: &Item) -> bool {
        matches!(
            i,
            Item::Delta(_) | Item::DeltaRun(_) | Item::Tree { .. } | Item::TreeRun { .. }
        )
    }

    fn dc_of(id: &NodeId) -> char {
        id.as_str().chars().next().unwrap()
    }

    fn sent(e: &mut Engine) -> Vec<(NodeId, Datagram)> {
        let mut v = Vec::new();
        while let Some(o) = e.poll_output() {
            if let Output::Datagram { to, datagram, .. } | Output::Reliable { to, datagram, .. } = o
            {
                v.push((to, datagram));
            }
        }
        v
    }

    #[test]
    fn gossip_targets_cross_at_the_configured_share() {
        let mut e = engine(Config::default());
        let (mut far, mut all) = (0, 0);
        for _ in 0..2_000 {
            for p in e.pick_peers(3, None) {
                all += 1;
                far += usize::from(dc_of(&p) != 'a');
            }
        }
        let share = far as f64 / all as f64;
        assert!((0.07..0.13).contains(&share), "cross share {share}");
        let local = e.pick_local_peers(3, None);
        assert_eq!(local.len(), 3);
        assert!(local.iter().all(|p| dc_of(p) == 'a'), "{local:?}");
        // Without locality, two thirds of the targets are remote.
        let mut off = engine(Config {
            locality: false,
            ..Config::default()
        });
        let far: usize = (0..1_000)
            .map(|_| {
                off.pick_peers(3, None)
                    .iter()
                    .filter(|p| dc_of(p) != 'a')
                    .count()
            })
            .sum();
        assert!(far > 1_500, "{far} of 3000 remote without locality");
    }

    #[test]
    fn a_write_crosses_a_bounded_number_of_times_per_remote_dc() {
        let mut e = engine(Config::default());
        e.set(now(10), "k", b"v".to_vec()).unwrap();
        let out = sent(&mut e);
        let deltas_to = |dc: char, out: &[(NodeId, Datagram)]| {
            out.iter()
                .filter(|(to, d)| dc_of(to) == dc && d.items.iter().any(carries_update))
                .count()
        };
        assert_eq!(deltas_to('b', &out), 2, "{out:?}");
        assert_eq!(deltas_to('c', &out), 2);
        assert_eq!(deltas_to('a', &out), 3);
        // Gossip rounds: one WAN retransmit per remote dc, then none; what the queue
        // repeats (ids, or deltas with random push) stays in dc "a".
        let mut wan = 0;
        for r in 1..40 {
            e.handle_timeout(now(10 + r * 200));
            let out = sent(&mut e);
            wan += deltas_to('b', &out) + deltas_to('c', &out);
        }
        assert_eq!(wan, 2, "one resend to each of the two remote dcs");
    }

    #[test]
    fn a_delta_from_afar_spreads_only_at_home() {
        let mut e = engine(Config::default());
        // A write by b0 (dc "b"), as its relay would deliver it to a0.
        let mut b0 = Engine::new(Config::default(), info("b0", "b"), vec![], 1, now(0), None);
        let entry = b0.set(now(1), "x", b"1".to_vec()).unwrap();
        let b0_id = NodeId::new("b0").unwrap();
        e.handle_datagram(
            now(20),
            &b0_id,
            Datagram {
                items: vec![Item::Delta(entry)],
            },
        );
        let mut out = sent(&mut e);
        for r in 1..40 {
            e.handle_timeout(now(20 + r * 200));
            out.extend(sent(&mut e));
        }
        let home = out
            .iter()
            .filter(|(to, d)| dc_of(to) == 'a' && d.items.iter().any(carries_update))
            .count();
        let away = out
            .iter()
            .filter(|(to, d)| dc_of(to) != 'a' && d.items.iter().any(carries_update))
            .count();
        assert!(home >= 3, "spread at home {home} times");
        assert_eq!(away, 0, "a delta from another dc went back across the WAN");
    }

    #[test]
    fn probe_timeouts_follow_rtt_with_the_configured_floor() {
        // A 500 ms floor and a 1 s period, whatever the defaults.
        let timing = Config {
            probe_interval_ms: 1_000,
            probe_timeout_ms: 500,
            ..Config::default()
        };
        let mut e = engine(timing.clone());
        let near = NodeId::new("a1").unwrap();
        let far = NodeId::new("b1").unwrap();
        let far2 = NodeId::new("b2").unwrap();
        e.note_probe_rtt(&near, 2_000);
        e.note_probe_rtt(&far, 300_000);
        assert_eq!(e.probe_timeout_us(&near), 500_000, "the floor");
        assert_eq!(e.probe_timeout_us(&far), 900_000, "3 RTTs");
        // b2 is unmeasured: its datacenter's estimate applies.
        assert_eq!(e.probe_timeout_us(&far2), 900_000);
        // The transport's estimate counts when larger.
        e.observe_rtt(&near, 400_000);
        assert_eq!(e.probe_timeout_us(&near), 1_200_000);
        assert_eq!(e.probe_period_us(500_000), 1_000_000);
        assert_eq!(e.probe_period_us(900_000), 1_800_000);
        let off = engine(Config {
            probe_rtt_mult: 0,
            ..timing
        });
        assert_eq!(off.probe_timeout_us(&far), 500_000);
    }

    #[test]
    fn invalid_locality_settings_are_named() {
        for (cfg, field) in [
            (
                Config {
                    cross_dc_share: 0.0,
                    ..Config::default()
                },
                "cross_dc_share",
            ),
            (
                Config {
                    dc_relays: 0,
                    ..Config::default()
                },
                "dc_relays",
            ),
            (
                Config {
                    probe_rtt_mult: 99,
                    ..Config::default()
                },
                "probe_rtt_mult",
            ),
        ] {
            let err = cfg.validate().unwrap_err();
            assert_eq!(err.field, field, "{err}");
        }
        assert!(Config {
            locality: false,
            dc_relays: 0,
            ..Config::default()
        }
        .validate()
        .is_ok());
    }
}
