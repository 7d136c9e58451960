//! Locality across datacenters: the engine's [`Locality`] part. It owns the view of live
//! peers by datacenter, the WAN relays of our writes and the round-trip estimates; the
//! engine lends it the member table, configuration, generator and clock per call.
//!
//! Every member carries a datacenter (`dc`). With [`Config::locality`] on:
//!
//! - **Gossip rounds and indirect-probe helpers** ([`Locality::pick_peers`]) choose each
//!   target in another datacenter with probability `cross_dc_share`, otherwise in ours.
//! - **Eager pushes** ([`Locality::pick_local_peers`]) stay inside our datacenter.
//! - **Deltas never cross the WAN on the broadcast queue**: datagrams to members of other
//!   datacenters carry membership gossip only ([`Locality::crosses_dc`]). A write crosses
//!   through its writer instead: at once to `dc_relays` nodes of each other datacenter,
//!   then to one node of each in `dc_retransmits` later gossip rounds. The nodes that
//!   receive it from afar spread it inside their own datacenter. So a write crosses the
//!   WAN `dc_relays + dc_retransmits` times per remote datacenter, whatever its size.
//! - **Anti-entropy** ([`Locality::sync_candidates`]) goes to another datacenter with
//!   probability `cross_dc_share`: whatever the relays lost crosses there, and no
//!   datacenter becomes an island.
//!
//! Probing covers every member whatever its datacenter. Probe timeouts adapt to the
//! peer's round-trip time (the transport's measurement of the path given to
//! [`Locality::observe_rtt`], else probe round trips), with the configured values as
//! floors.
//!
//! With a single datacenter every choice takes the same path, random draws included, as
//! without locality.

use std::collections::BTreeMap;

use rand::seq::IndexedRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::config::{bad, ConfigError};
use super::{Config, Engine, PushMode};
use crate::core::limiter::Traffic;
use crate::core::membership::Membership;
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
struct View {
    /// Peers in our datacenter.
    local: Vec<NodeId>,
    /// Peers elsewhere.
    remote: Vec<NodeId>,
    /// Peers elsewhere, by datacenter (sorted by name).
    by_dc: Vec<(String, Vec<NodeId>)>,
    /// The broadcast tree's ring: us and the live peers a write is pushed to (our
    /// datacenter with locality, everyone without), sorted by id.
    ring: Vec<NodeId>,
}

/// Locality state of one engine.
#[derive(Debug, Clone, Default)]
pub(super) struct Locality {
    view: View,
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

/// One datagram of our writes for a member of another datacenter, which the engine
/// charges and emits (`reliable`: too large for a datagram).
#[derive(Debug, Clone)]
pub(super) struct WanSend {
    /// The member it goes to.
    pub(super) to: NodeId,
    /// The writes, each with the class the bandwidth limiter charges it to.
    pub(super) items: Vec<(Item, Traffic)>,
    /// Sent on the reliable path rather than as a datagram.
    pub(super) reliable: bool,
}

impl WanSend {
    fn new(to: NodeId, items: &[Item], resend: bool, reliable: bool) -> Self {
        let class = if resend {
            Traffic::Retransmit
        } else {
            Traffic::Fresh
        };
        Self {
            to,
            items: items.iter().map(|i| (i.clone(), class)).collect(),
            reliable,
        }
    }
}

impl Locality {
    /// True if `peer` is in another datacenter and locality is on: datagrams to it carry
    /// no deltas from the broadcast queue.
    pub(super) fn crosses_dc(cfg: &Config, members: &Membership, peer: &NodeId) -> bool {
        cfg.locality
            && members
                .get(peer)
                .is_some_and(|m| m.state.info.dc != members.me().info.dc)
    }

    /// The broadcast tree's ring as of the last [`Locality::refresh_view`]: us and the
    /// live peers a write is pushed to, sorted by id.
    pub(super) fn ring(&self) -> &[NodeId] {
        &self.view.ring
    }

    fn view_refresh_us(members: &Membership) -> u64 {
        (members.live_count() as u64 * VIEW_REFRESH_PER_MEMBER_US).min(VIEW_REFRESH_US)
    }

    /// Rebuilds the split of live peers by datacenter if the member table changed (at
    /// most once per `view_refresh_us` while it keeps changing). `now_us` is the
    /// engine's clock.
    pub(super) fn refresh_view(&mut self, cfg: &Config, members: &Membership, now_us: u64) {
        let key = (members.digest(), members.live_count());
        let my_dc = members.me().info.dc.as_str();
        let same_dc = self.view_dc == my_dc;
        if self.view_key.is_some()
            && same_dc
            && (self.view_key == Some(key)
                || now_us < self.view_built_us + Self::view_refresh_us(members))
        {
            return;
        }
        let mut view = View::default();
        let mut by_dc: BTreeMap<&str, Vec<NodeId>> = BTreeMap::new();
        for id in members.live_ids() {
            let Some(m) = members.get(id) else {
                continue;
            };
            if m.state.info.dc == my_dc {
                view.local.push(id.clone());
            } else {
                view.remote.push(id.clone());
                by_dc.entry(&m.state.info.dc).or_default().push(id.clone());
            }
        }
        let pool = if cfg.locality {
            &view.local[..]
        } else {
            members.live_ids()
        };
        let mut ring = Vec::with_capacity(pool.len() + 1);
        ring.extend_from_slice(pool);
        ring.push(members.my_id().clone());
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
        self.view = view;
        self.view_key = Some(key);
        self.view_dc = my_dc.to_string();
        self.view_built_us = now_us;
    }

    /// `n` from a view list (which may lag the table), live ones only.
    fn choose_live(
        &self,
        members: &Membership,
        rng: &mut ChaCha8Rng,
        remote: bool,
        n: usize,
        exclude: Option<&NodeId>,
    ) -> Vec<NodeId> {
        let pool = if remote {
            &self.view.remote
        } else {
            &self.view.local
        };
        let mut out = choose(rng, pool, n, exclude);
        out.retain(|id| members.is_live(id));
        out
    }

    /// True when locality applies: it is on and live peers are in both our datacenter
    /// and others. Refreshes the view.
    fn split_applies(&mut self, cfg: &Config, members: &Membership, now_us: u64) -> bool {
        if !cfg.locality {
            return false;
        }
        self.refresh_view(cfg, members, now_us);
        !self.view.local.is_empty() && !self.view.remote.is_empty()
    }

    /// Up to `k` distinct random live peers for a gossip round (or to help probe), never
    /// `exclude`: each in another datacenter with probability `cross_dc_share`, in ours
    /// otherwise (see the module docs). Peers in our datacenter come first.
    pub(super) fn pick_peers(
        &mut self,
        cfg: &Config,
        members: &Membership,
        rng: &mut ChaCha8Rng,
        now_us: u64,
        k: usize,
        exclude: Option<&NodeId>,
    ) -> Vec<NodeId> {
        if !self.split_applies(cfg, members, now_us) {
            return choose(rng, members.live_ids(), k, exclude);
        }
        let far = (0..k)
            .filter(|_| rng.random_bool(cfg.cross_dc_share))
            .count();
        let mut out = self.choose_live(members, rng, false, k - far, exclude);
        let want_far = k - out.len();
        out.extend(self.choose_live(members, rng, true, want_far, exclude));
        out
    }

    /// Up to `k` distinct random live peers in our own datacenter, never `exclude`: the
    /// targets of an eager push (deltas cross datacenters only through the writer's
    /// relays). Without locality, or with a single datacenter, any live peers.
    pub(super) fn pick_local_peers(
        &mut self,
        cfg: &Config,
        members: &Membership,
        rng: &mut ChaCha8Rng,
        now_us: u64,
        k: usize,
        exclude: Option<&NodeId>,
    ) -> Vec<NodeId> {
        if !cfg.locality {
            return choose(rng, members.live_ids(), k, exclude);
        }
        self.refresh_view(cfg, members, now_us);
        if self.view.remote.is_empty() {
            return choose(rng, members.live_ids(), k, exclude);
        }
        self.choose_live(members, rng, false, k, exclude)
    }

    /// A few candidates for the next anti-entropy exchange: from another datacenter with
    /// probability `cross_dc_share`, from ours otherwise.
    pub(super) fn sync_candidates(
        &mut self,
        cfg: &Config,
        members: &Membership,
        rng: &mut ChaCha8Rng,
        now_us: u64,
        k: usize,
    ) -> Vec<NodeId> {
        if !self.split_applies(cfg, members, now_us) {
            return choose(rng, members.live_ids(), k, None);
        }
        let far = rng.random_bool(cfg.cross_dc_share);
        self.choose_live(members, rng, far, k, None)
    }

    /// The relays of our fresh write `e`: to `dc_relays` live nodes of every other
    /// datacenter, in datacenter order; `e` is kept for `dc_retransmits` more WAN
    /// rounds. Nothing without locality.
    pub(super) fn relay_to_other_dcs(
        &mut self,
        cfg: &Config,
        members: &Membership,
        rng: &mut ChaCha8Rng,
        now_us: u64,
        e: &Entry,
    ) -> Vec<WanSend> {
        if !cfg.locality || cfg.push == PushMode::Off {
            return Vec::new();
        }
        self.refresh_view(cfg, members, now_us);
        if self.view.by_dc.is_empty() {
            return Vec::new();
        }
        let item = [Item::Delta(e.clone())];
        let reliable = encoded_len(&item[0]) + DATAGRAM_OVERHEAD > cfg.max_datagram;
        let mut sends = Vec::new();
        for (_, ids) in &self.view.by_dc {
            for t in choose(rng, ids, cfg.dc_relays, None) {
                if members.is_live(&t) {
                    sends.push(WanSend::new(t, &item, false, reliable));
                }
            }
        }
        if cfg.dc_retransmits > 0 {
            self.wan.retain(|(old, _)| old.key != e.key);
            if self.wan.len() >= WAN_PENDING_MAX {
                self.wan.remove(0);
            }
            self.wan.push((e.clone(), cfg.dc_retransmits));
        }
        sends
    }

    /// One WAN retransmit round (with each gossip round): our writes still owed a resend
    /// go, packed, to one random live node of every other datacenter.
    pub(super) fn wan_round(
        &mut self,
        cfg: &Config,
        members: &Membership,
        rng: &mut ChaCha8Rng,
        now_us: u64,
    ) -> Vec<WanSend> {
        if self.wan.is_empty() {
            return Vec::new();
        }
        if !cfg.locality {
            self.wan.clear();
            return Vec::new();
        }
        self.refresh_view(cfg, members, now_us);
        // What fits in one datagram, oldest first; an oversized write goes alone, reliably.
        let mut taken = Vec::new();
        let mut used = DATAGRAM_OVERHEAD;
        let mut reliable = false;
        for (i, (e, _)) in self.wan.iter().enumerate() {
            let len = encoded_len(&Item::Delta(e.clone()));
            if taken.is_empty() && len + DATAGRAM_OVERHEAD > cfg.max_datagram {
                taken.push(i);
                reliable = true;
                break;
            }
            if used + len > cfg.max_datagram {
                break;
            }
            used += len;
            taken.push(i);
        }
        let items: Vec<Item> = taken
            .iter()
            .map(|&i| Item::Delta(self.wan[i].0.clone()))
            .collect();
        let mut sends = Vec::new();
        for (_, ids) in &self.view.by_dc {
            for t in choose(rng, ids, 1, None) {
                if members.is_live(&t) {
                    sends.push(WanSend::new(t, &items, true, reliable));
                }
            }
        }
        for &i in &taken {
            self.wan[i].1 -= 1;
        }
        self.wan.retain(|(_, left)| *left > 0);
        sends
    }

    /// Records a round-trip time to `peer` measured by the transport (members unknown
    /// to `members` are ignored).
    pub(super) fn observe_rtt(&mut self, members: &Membership, peer: &NodeId, rtt_us: u64) {
        if members.get(peer).is_none() {
            return;
        }
        self.transport_rtt.insert(peer.clone(), rtt_us);
        self.note_dc_rtt(members, peer, rtt_us);
    }

    /// Records the round trip of a direct probe of `peer`: into the member's own
    /// smoothed RTT, and its datacenter's.
    pub(super) fn note_probe_rtt(&mut self, members: &mut Membership, peer: &NodeId, rtt_us: u64) {
        members.record_rtt(peer, rtt_us);
        self.note_dc_rtt(members, peer, rtt_us);
    }

    fn note_dc_rtt(&mut self, members: &Membership, peer: &NodeId, rtt_us: u64) {
        let Some(m) = members.get(peer) else {
            return;
        };
        let dc = &m.state.info.dc;
        match self.dc_rtt.get_mut(dc.as_str()) {
            Some(old) => *old = (*old * 7 + rtt_us) / 8,
            None => {
                self.dc_rtt.insert(dc.clone(), rtt_us);
            }
        }
    }

    /// Our best estimate of the round-trip time to `peer` (µs): the transport's
    /// measurement of the path, else our smoothed probe round trips, else the smoothed RTT
    /// of its datacenter.
    ///
    /// The transport's figure (the runtime hands QUIC's minimum RTT) is the path's delay.
    /// Probe round trips also carry both ends' processing, and a member is probed only
    /// every N / 2 probe periods, so a smoothed figure that took in a moment of saturation
    /// (a join, a burst of writes) stays high for minutes: taking the larger of the two
    /// stretched every probe's timeout and period by that moment long after it passed
    /// (BENCHMARKS.md 14.6). A member slow to answer is what Lifeguard's health score and
    /// suspicion are for.
    pub(super) fn rtt_estimate(&self, members: &Membership, peer: &NodeId) -> Option<u64> {
        let m = members.get(peer)?;
        let own = self.transport_rtt.get(peer).copied().or(m.rtt_us);
        own.or_else(|| self.dc_rtt.get(m.state.info.dc.as_str()).copied())
            .map(|r| r.min(MAX_ADAPTIVE_RTT_US))
    }

    /// How long to wait for `peer`'s direct ack (µs, before the health multiplier):
    /// `probe_rtt_mult` round trips, never less than `probe_timeout_ms`.
    pub(super) fn probe_timeout_us(
        &self,
        cfg: &Config,
        members: &Membership,
        peer: &NodeId,
    ) -> u64 {
        let floor = cfg.probe_timeout_ms * 1000;
        if cfg.probe_rtt_mult == 0 {
            return floor;
        }
        let rtt = self.rtt_estimate(members, peer).unwrap_or(0);
        floor.max(rtt * cfg.probe_rtt_mult as u64)
    }

    /// How long a helper waits for `target`'s ack before answering a `PingReq` with a
    /// `Nack` (µs): 80 % of the configured probe timeout, or `probe_rtt_mult − 1` round
    /// trips if that is longer, so the nack still reaches a requester whose own timeout
    /// adapted to the same distance.
    pub(super) fn relay_timeout_us(
        &self,
        cfg: &Config,
        members: &Membership,
        target: &NodeId,
    ) -> u64 {
        let floor = cfg.probe_timeout_ms * 1000 * 8 / 10;
        if cfg.probe_rtt_mult == 0 {
            return floor;
        }
        let rtt = self.rtt_estimate(members, target).unwrap_or(0);
        floor.max(rtt * (cfg.probe_rtt_mult as u64).saturating_sub(1))
    }

    /// The protocol period for a probe of a peer whose ack timeout is `timeout_us` (µs,
    /// before the health multiplier): the configured interval, stretched by twice what
    /// the RTT added to the timeout, so the indirect probes keep their time after it.
    pub(super) fn probe_period_us(cfg: &Config, timeout_us: u64) -> u64 {
        let floor = cfg.probe_timeout_ms * 1000;
        cfg.probe_interval_ms * 1000 + 2 * timeout_us.saturating_sub(floor)
    }
}

// Routing: the engine's entry points into `Locality`, lending it the member table,
// the configuration, the generator and the clock, and emitting what it returns.
impl Engine {
    /// True if `peer` is in another datacenter and locality is on (see
    /// [`Locality::crosses_dc`]).
    pub(super) fn crosses_dc(&self, peer: &NodeId) -> bool {
        Locality::crosses_dc(&self.cfg, &self.members, peer)
    }

    /// Refreshes the datacenter view (see [`Locality::refresh_view`]).
    pub(super) fn refresh_view(&mut self) {
        self.loc
            .refresh_view(&self.cfg, &self.members, self.clock_us);
    }

    /// Gossip targets (see [`Locality::pick_peers`]).
    pub(super) fn pick_peers(&mut self, k: usize, exclude: Option<&NodeId>) -> Vec<NodeId> {
        self.loc.pick_peers(
            &self.cfg,
            &self.members,
            &mut self.rng,
            self.clock_us,
            k,
            exclude,
        )
    }

    /// Eager push targets (see [`Locality::pick_local_peers`]).
    pub(super) fn pick_local_peers(&mut self, k: usize, exclude: Option<&NodeId>) -> Vec<NodeId> {
        self.loc.pick_local_peers(
            &self.cfg,
            &self.members,
            &mut self.rng,
            self.clock_us,
            k,
            exclude,
        )
    }

    /// Anti-entropy candidates (see [`Locality::sync_candidates`]).
    pub(super) fn sync_candidates(&mut self, k: usize) -> Vec<NodeId> {
        self.loc
            .sync_candidates(&self.cfg, &self.members, &mut self.rng, self.clock_us, k)
    }

    /// Relays our fresh write `e` to the other datacenters (see
    /// [`Locality::relay_to_other_dcs`]).
    pub(super) fn relay_to_other_dcs(&mut self, e: &Entry) {
        let sends =
            self.loc
                .relay_to_other_dcs(&self.cfg, &self.members, &mut self.rng, self.clock_us, e);
        self.send_far(sends);
    }

    /// One WAN retransmit round (see [`Locality::wan_round`]).
    pub(super) fn wan_round(&mut self) {
        let sends = self
            .loc
            .wan_round(&self.cfg, &self.members, &mut self.rng, self.clock_us);
        self.send_far(sends);
    }

    /// Emits relays of our writes to other datacenters, through the bandwidth limiter.
    fn send_far(&mut self, sends: Vec<WanSend>) {
        for s in sends {
            if let Some(addr) = self.addr_of(&s.to) {
                self.emit(&s.to, addr, s.items, s.reliable);
            }
        }
    }

    /// Records a round-trip time to `peer` measured by the transport (for example the QUIC
    /// connection's smoothed RTT). Probe timeouts toward `peer` adapt to the larger
    /// of this and the probes' own round trips.
    pub fn observe_rtt(&mut self, peer: &NodeId, rtt_us: u64) {
        self.loc.observe_rtt(&self.members, peer, rtt_us);
    }

    /// Our best estimate of the round-trip time to `peer` (µs): the larger of the probe
    /// and transport measurements, else the smoothed RTT of its datacenter.
    pub fn rtt_estimate(&self, peer: &NodeId) -> Option<u64> {
        self.loc.rtt_estimate(&self.members, peer)
    }

    /// How long to wait for `peer`'s direct ack (µs, before the health multiplier):
    /// `probe_rtt_mult` round trips, never less than `probe_timeout_ms`.
    pub fn probe_timeout_us(&self, peer: &NodeId) -> u64 {
        self.loc.probe_timeout_us(&self.cfg, &self.members, peer)
    }
}

#[cfg(test)]
#[path = "locality_tests.rs"]
mod tests;
