//! Bandwidth governance: governor token buckets on a virtual clock.
//!
//! Every byte of gossip a node sends (datagrams and anti-entropy stream bytes alike)
//! passes one global bucket of `rate` bytes per second and `burst` bytes, and a per-peer
//! bucket beneath it (a `share` of both), so one peer cannot take the whole budget.
//! The buckets are [`governor`] rate limiters whose clock is a [`FakeRelativeClock`]
//! advanced to the `now` the caller passes in: the simulator and the runtime exercise
//! the same code, and time never comes from the wall.
//!
//! Priorities: each [`Traffic`] class may only spend tokens while the bucket stays above
//! a reserve (a fraction of the burst): probes have none, membership gossip leaves 5 %,
//! fresh deltas 15 %, retransmits and announcements 35 %, anti-entropy 50 %. When tokens are short,
//! probes and membership still pass while data waits: membership is never starved by
//! data, and the failure detector is never starved by membership gossip.
//!
//! Inbound, [`InboundLimiter`] caps the datagrams accepted from one peer per second.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::FakeRelativeClock;
use governor::middleware::{NoOpMiddleware, StateInformationMiddleware};
use governor::state::keyed::HashMapStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use serde::Serialize;

use crate::core::NodeId;

/// What a batch of bytes carries, in priority order (highest first). This is the one
/// priority of the engine: the bandwidth buckets' reserves and the broadcast queue's
/// sending order (`dissemination::BroadcastQueue`) both follow it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Traffic {
    /// Failure-detector traffic: pings, acks, indirect probes, nacks.
    Probe = 0,
    /// Membership gossip: suspicions, refutations, joins, leaves, metadata.
    Membership = 1,
    /// A delta's first transmission by this node.
    Fresh = 2,
    /// Later transmissions of a delta.
    Retransmit = 3,
    /// Ids of updates and events (lazy push: "I have these"), which let a member that
    /// missed one ask for it. They are charged like retransmits; the queue also lets
    /// them take a share of each datagram ahead of membership.
    Announce = 4,
    /// Anti-entropy stream bytes.
    AntiEntropy = 5,
}

/// Number of [`Traffic`] classes (the length of the per-class counters).
pub const TRAFFIC_CLASSES: usize = 6;

impl Traffic {
    /// All classes, highest priority first.
    pub const ALL: [Traffic; TRAFFIC_CLASSES] = [
        Traffic::Probe,
        Traffic::Membership,
        Traffic::Fresh,
        Traffic::Retransmit,
        Traffic::Announce,
        Traffic::AntiEntropy,
    ];

    /// Lower-case name (metrics label).
    pub fn name(self) -> &'static str {
        match self {
            Traffic::Probe => "probe",
            Traffic::Membership => "membership",
            Traffic::Fresh => "fresh",
            Traffic::Retransmit => "retransmit",
            Traffic::Announce => "announce",
            Traffic::AntiEntropy => "anti_entropy",
        }
    }

    /// Fraction (in thousandths) of a bucket this class must leave untouched.
    fn reserve_permille(self) -> u64 {
        match self {
            Traffic::Probe => 0,
            Traffic::Membership => 50,
            Traffic::Fresh => 150,
            Traffic::Retransmit | Traffic::Announce => 350,
            Traffic::AntiEntropy => 500,
        }
    }
}

/// Counters of the egress limiter, indexed by [`Traffic`] as `usize`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LimiterStats {
    /// Bytes admitted, per class.
    pub bytes: [u64; TRAFFIC_CLASSES],
    /// Sends refused for lack of tokens, per class.
    pub refused: [u64; TRAFFIC_CLASSES],
    /// Bytes refused, per class.
    pub refused_bytes: [u64; TRAFFIC_CLASSES],
    /// Refusals by governor itself after the allowance said yes (the estimate of the
    /// bucket was off); should stay near zero.
    pub governor_refused: u64,
}

/// Tokens known to be in a bucket at a moment (from governor's own state snapshot).
#[derive(Debug, Clone, Copy)]
struct Level {
    tokens: u64,
    at_us: u64,
}

type Direct = RateLimiter<NotKeyed, InMemoryState, FakeRelativeClock, StateInformationMiddleware>;
type Keyed =
    RateLimiter<NodeId, HashMapStateStore<NodeId>, FakeRelativeClock, StateInformationMiddleware>;

struct Bucket<L> {
    limiter: L,
    /// Bytes per second.
    rate: u64,
    burst: u64,
}

impl<L> Bucket<L> {
    fn level(&self, known: Option<Level>, now_us: u64) -> u64 {
        match known {
            None => self.burst,
            Some(l) => {
                let refill =
                    (now_us.saturating_sub(l.at_us) as u128 * self.rate as u128 / 1_000_000) as u64;
                (l.tokens + refill).min(self.burst)
            }
        }
    }

    /// Keeps the estimate on the safe side of governor's own rounding, so what the
    /// allowance lets through, governor admits.
    fn margin(&self) -> u64 {
        4 + self.burst / 100
    }

    fn reserve(&self, class: Traffic) -> u64 {
        self.burst * class.reserve_permille() / 1000
    }

    /// Microseconds until `need` tokens above the class reserve are available.
    fn wait_us(&self, level: u64, class: Traffic, need: u64) -> u64 {
        let want = self.reserve(class) + self.margin() + need;
        if level >= want {
            0
        } else {
            ((want - level) as u128 * 1_000_000).div_ceil(self.rate as u128) as u64
        }
    }
}

fn quota(rate: u64, burst: u64) -> Quota {
    // One cell per byte: a cell is replenished every 1/rate seconds.
    let per_byte = Duration::from_nanos((1_000_000_000 / rate.max(1)).max(1));
    let burst = NonZeroU32::new(burst.clamp(1, u32::MAX as u64) as u32).unwrap_or(NonZeroU32::MIN);
    Quota::with_period(per_byte)
        .unwrap_or(Quota::per_second(NonZeroU32::MAX))
        .allow_burst(burst)
}

/// Settings of the egress limiter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimiterConfig {
    /// Bytes per second for the whole node; 0 = unlimited.
    pub rate: u64,
    /// Bucket size in bytes; 0 = 40 ms worth of `rate` (so no 1-second window exceeds
    /// the rate by more than 4 %), at least `min_burst`.
    pub burst: u64,
    /// The smallest burst allowed (room for a couple of datagrams).
    pub min_burst: u64,
    /// Share of rate and burst one peer may use, in (0, 1].
    pub per_peer_share: f64,
}

/// The egress token buckets of one node: global, and per peer beneath it.
pub struct Limiter {
    clock: FakeRelativeClock,
    clock_us: u64,
    global: Option<Bucket<Direct>>,
    peers: Option<Bucket<Keyed>>,
    global_level: Option<Level>,
    peer_levels: BTreeMap<NodeId, Level>,
    stats: LimiterStats,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("rate", &self.rate())
            .field("burst", &self.burst())
            .field("stats", &self.stats)
            .finish()
    }
}

impl Limiter {
    /// A limiter with the given settings, its clock starting at `now_us`.
    pub fn new(cfg: LimiterConfig, now_us: u64) -> Self {
        let clock = FakeRelativeClock::default();
        let (global, peers) = if cfg.rate == 0 {
            (None, None)
        } else {
            let burst = if cfg.burst == 0 {
                (cfg.rate / 25).max(cfg.min_burst)
            } else {
                cfg.burst.max(cfg.min_burst)
            };
            let share = cfg.per_peer_share.clamp(0.01, 1.0);
            let peer_rate = ((cfg.rate as f64 * share) as u64).max(1);
            let peer_burst = ((burst as f64 * share) as u64)
                .max(cfg.min_burst)
                .min(burst);
            let global = Bucket {
                limiter: RateLimiter::direct_with_clock(quota(cfg.rate, burst), clock.clone())
                    .with_middleware::<StateInformationMiddleware>(),
                rate: cfg.rate,
                burst,
            };
            let peers = Bucket {
                limiter: RateLimiter::hashmap_with_clock(
                    quota(peer_rate, peer_burst),
                    clock.clone(),
                )
                .with_middleware::<StateInformationMiddleware>(),
                rate: peer_rate,
                burst: peer_burst,
            };
            (Some(global), Some(peers))
        };
        Self {
            clock,
            clock_us: now_us,
            global,
            peers,
            global_level: None,
            peer_levels: BTreeMap::new(),
            stats: LimiterStats::default(),
        }
    }

    /// A limiter that admits everything (and still counts bytes).
    pub fn unlimited(now_us: u64) -> Self {
        Self::new(
            LimiterConfig {
                rate: 0,
                burst: 0,
                min_burst: 0,
                per_peer_share: 1.0,
            },
            now_us,
        )
    }

    /// True when a cap is configured.
    pub fn is_limited(&self) -> bool {
        self.global.is_some()
    }

    /// The cap in bytes per second (0 = unlimited).
    pub fn rate(&self) -> u64 {
        self.global.as_ref().map_or(0, |b| b.rate)
    }

    /// The bucket size in bytes (0 = unlimited).
    pub fn burst(&self) -> u64 {
        self.global.as_ref().map_or(0, |b| b.burst)
    }

    /// Counters.
    pub fn stats(&self) -> &LimiterStats {
        &self.stats
    }

    fn advance(&mut self, now_us: u64) {
        if now_us > self.clock_us {
            self.clock
                .advance(Duration::from_micros(now_us - self.clock_us));
            self.clock_us = now_us;
        }
    }

    /// Tokens (bytes) in the global bucket now; `u64::MAX` when unlimited.
    pub fn tokens(&self, now_us: u64) -> u64 {
        match &self.global {
            None => u64::MAX,
            Some(g) => g.level(self.global_level, now_us),
        }
    }

    /// Bytes that traffic of `class` to `peer` may send now without dipping into the
    /// reserve of a higher class.
    pub fn allowance(&self, now_us: u64, peer: &NodeId, class: Traffic) -> usize {
        let (Some(g), Some(p)) = (&self.global, &self.peers) else {
            return usize::MAX;
        };
        let gl = g
            .level(self.global_level, now_us)
            .saturating_sub(g.reserve(class) + g.margin());
        let pl = p
            .level(self.peer_levels.get(peer).copied(), now_us)
            .saturating_sub(p.reserve(class) + p.margin());
        gl.min(pl) as usize
    }

    /// When (µs) `bytes` of `class` to `peer` would be admitted, if nothing else is sent
    /// meanwhile. `bytes` larger than a bucket are capped to it: send big transfers in
    /// chunks of at most [`Limiter::max_chunk`].
    pub fn ready_at(&self, now_us: u64, peer: &NodeId, class: Traffic, bytes: u64) -> u64 {
        let (Some(g), Some(p)) = (&self.global, &self.peers) else {
            return now_us;
        };
        let need_g = bytes.min(g.burst - g.reserve(class));
        let need_p = bytes.min(p.burst - p.reserve(class));
        let wg = g.wait_us(g.level(self.global_level, now_us), class, need_g);
        let wp = p.wait_us(
            p.level(self.peer_levels.get(peer).copied(), now_us),
            class,
            need_p,
        );
        now_us + wg.max(wp)
    }

    /// The largest chunk of `class` a stream should ask for at once.
    pub fn max_chunk(&self, class: Traffic) -> usize {
        match (&self.global, &self.peers) {
            (Some(g), Some(p)) => {
                let room = (g.burst - g.reserve(class)).min(p.burst - p.reserve(class));
                (room / 2).clamp(1, 16 * 1024) as usize
            }
            _ => 64 * 1024,
        }
    }

    /// Charges `bytes` of `class` to `peer`. Returns false, and counts the refusal, when
    /// the tokens are not there: the caller must then not send.
    pub fn admit(&mut self, now_us: u64, peer: &NodeId, class: Traffic, bytes: usize) -> bool {
        let c = class as usize;
        if self.global.is_none() {
            self.stats.bytes[c] += bytes as u64;
            return true;
        }
        self.advance(now_us);
        let refuse = |s: &mut LimiterStats| {
            s.refused[c] += 1;
            s.refused_bytes[c] += bytes as u64;
            false
        };
        if bytes == 0 {
            return true;
        }
        if self.allowance(now_us, peer, class) < bytes {
            return refuse(&mut self.stats);
        }
        let n = NonZeroU32::new(bytes.min(u32::MAX as usize) as u32).unwrap_or(NonZeroU32::MIN);
        let (Some(g), Some(p)) = (&self.global, &self.peers) else {
            return true;
        };
        // governor is the authority; the levels it reports keep the allowance exact.
        match g.limiter.check_n(n) {
            Ok(Ok(snap)) => {
                self.global_level = Some(Level {
                    tokens: snap.remaining_burst_capacity() as u64,
                    at_us: now_us,
                })
            }
            _ => {
                self.global_level = Some(Level {
                    tokens: 0,
                    at_us: now_us,
                });
                self.stats.governor_refused += 1;
                return refuse(&mut self.stats);
            }
        }
        match p.limiter.check_key_n(peer, n) {
            Ok(Ok(snap)) => {
                self.peer_levels.insert(
                    peer.clone(),
                    Level {
                        tokens: snap.remaining_burst_capacity() as u64,
                        at_us: now_us,
                    },
                );
            }
            _ => {
                // The global tokens are spent anyway: a loss of throughput, never of the cap.
                self.peer_levels.insert(
                    peer.clone(),
                    Level {
                        tokens: 0,
                        at_us: now_us,
                    },
                );
                self.stats.governor_refused += 1;
                return refuse(&mut self.stats);
            }
        }
        self.stats.bytes[c] += bytes as u64;
        true
    }

    /// Forgets per-peer state of peers not in `keep` and of full buckets.
    pub fn prune(&mut self, now_us: u64, keep: impl Fn(&NodeId) -> bool) {
        if let Some(p) = &self.peers {
            self.peer_levels
                .retain(|id, l| keep(id) && p.level(Some(*l), now_us) < p.burst);
            p.limiter.retain_recent();
        }
    }
}

/// Per-peer cap on inbound datagrams (a count per second, with a burst of the same size).
pub struct InboundLimiter {
    clock: FakeRelativeClock,
    clock_us: u64,
    limiter: Option<
        RateLimiter<
            NodeId,
            HashMapStateStore<NodeId>,
            FakeRelativeClock,
            NoOpMiddleware<governor::nanos::Nanos>,
        >,
    >,
    dropped: u64,
}

impl std::fmt::Debug for InboundLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboundLimiter")
            .field("dropped", &self.dropped)
            .finish()
    }
}

impl InboundLimiter {
    /// Admits `per_second` datagrams per peer (0 = unlimited).
    pub fn new(per_second: u32, now_us: u64) -> Self {
        let clock = FakeRelativeClock::default();
        let limiter = NonZeroU32::new(per_second)
            .map(|n| RateLimiter::hashmap_with_clock(Quota::per_second(n), clock.clone()));
        Self {
            clock,
            clock_us: now_us,
            limiter,
            dropped: 0,
        }
    }

    /// Whether a datagram from `peer` is accepted now; refusals are counted.
    pub fn admit(&mut self, now_us: u64, peer: &NodeId) -> bool {
        let Some(l) = &self.limiter else { return true };
        if now_us > self.clock_us {
            self.clock
                .advance(Duration::from_micros(now_us - self.clock_us));
            self.clock_us = now_us;
        }
        if l.check_key(peer).is_ok() {
            true
        } else {
            self.dropped += 1;
            false
        }
    }

    /// Datagrams dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Forgets peers whose buckets are full again.
    pub fn prune(&mut self) {
        if let Some(l) = &self.limiter {
            l.retain_recent();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> NodeId {
        NodeId::new(s).unwrap()
    }

    fn limiter(rate: u64, burst: u64, share: f64) -> Limiter {
        Limiter::new(
            LimiterConfig {
                rate,
                burst,
                min_burst: 1_000,
                per_peer_share: share,
            },
            0,
        )
    }

    #[test]
    fn holds_the_rate_over_every_window() {
        // 100 kB/s, 5 kB burst: offer far more than that for 10 s in 1 ms steps.
        let mut l = limiter(100_000, 5_000, 1.0);
        let peer = id("p");
        let mut sent_at: Vec<(u64, u64)> = Vec::new();
        for ms in 0..10_000u64 {
            for _ in 0..5 {
                if l.admit(ms * 1000, &peer, Traffic::Membership, 1_000) {
                    sent_at.push((ms, 1_000));
                }
            }
        }
        let total: u64 = sent_at.iter().map(|x| x.1).sum();
        assert!((990_000..=1_005_000).contains(&total), "total {total}");
        // Every sliding 1-s window stays within rate + burst.
        let mut worst = 0;
        for start in 0..9_000u64 {
            let w: u64 = sent_at
                .iter()
                .filter(|(t, _)| *t >= start && *t < start + 1000)
                .map(|x| x.1)
                .sum();
            worst = worst.max(w);
        }
        assert!(worst <= 105_000, "worst window {worst}");
    }

    #[test]
    fn membership_passes_when_data_is_held_back() {
        let mut l = limiter(100_000, 10_000, 1.0);
        let p = id("p");
        // Drain the bucket with fresh deltas down to their reserve (15% + a 104 B margin).
        let mut n = 0;
        while l.admit(0, &p, Traffic::Fresh, 500) {
            n += 1;
        }
        assert_eq!(n, 16, "fresh data stops at its reserve");
        assert!(!l.admit(0, &p, Traffic::Retransmit, 100));
        assert!(!l.admit(0, &p, Traffic::AntiEntropy, 100));
        assert!(
            l.admit(0, &p, Traffic::Membership, 900),
            "membership uses the reserve"
        );
        assert!(
            !l.admit(0, &p, Traffic::Membership, 500),
            "down to its own reserve"
        );
        assert!(
            l.admit(0, &p, Traffic::Probe, 300),
            "probes use the last tokens"
        );
        assert_eq!(l.stats().refused[Traffic::Fresh as usize], 1);
        assert_eq!(l.stats().refused[Traffic::Retransmit as usize], 1);
        assert_eq!(l.stats().bytes[Traffic::Membership as usize], 900);
        // 800 B are left. Anti-entropy waits for half the bucket, its 1 kB and the
        // margin: 5,304 B at 100 kB/s is 53 ms.
        let at = l.ready_at(0, &p, Traffic::AntiEntropy, 1_000);
        assert!((52_000..=55_000).contains(&at), "ready at {at}");
        assert!(!l.admit(at - 2_000, &p, Traffic::AntiEntropy, 1_000));
        assert!(l.admit(at, &p, Traffic::AntiEntropy, 1_000));
    }

    #[test]
    fn one_peer_cannot_take_the_whole_budget() {
        let mut l = limiter(100_000, 10_000, 0.25);
        let (a, b) = (id("a"), id("b"));
        let mut to_a = 0;
        for ms in 0..1_000u64 {
            for _ in 0..4 {
                if l.admit(ms * 1000, &a, Traffic::Fresh, 200) {
                    to_a += 200;
                }
            }
            // A second peer still gets its share alongside.
            if ms % 10 == 0 {
                assert!(
                    l.admit(ms * 1000, &b, Traffic::Membership, 100),
                    "at {ms} ms"
                );
            }
        }
        assert!(to_a <= 25_000 + 2_500, "peer a got {to_a}");
        assert!(to_a >= 20_000, "peer a got {to_a}");
    }

    #[test]
    fn unlimited_admits_everything_and_counts() {
        let mut l = Limiter::unlimited(0);
        assert!(!l.is_limited());
        assert!(l.admit(0, &id("p"), Traffic::AntiEntropy, 10_000_000));
        assert_eq!(l.stats().bytes[Traffic::AntiEntropy as usize], 10_000_000);
        assert_eq!(l.allowance(0, &id("p"), Traffic::Fresh), usize::MAX);
    }

    #[test]
    fn inbound_cap_per_peer() {
        let mut l = InboundLimiter::new(100, 0);
        let (a, b) = (id("a"), id("b"));
        let ok = (0..150).filter(|_| l.admit(0, &a)).count();
        assert_eq!(ok, 100);
        assert_eq!(l.dropped(), 50);
        assert!(l.admit(0, &b), "another peer has its own bucket");
        assert!(l.admit(10_000, &a), "refilled after 10 ms");
    }
}
