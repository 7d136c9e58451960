//! The node state machine: inputs are `(now, event)`, outputs are [`Output`]s.

use std::collections::VecDeque;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::core::dissemination::{retransmit_budget, BroadcastQueue, Class, Topic};
use crate::core::limiter::{InboundLimiter, Limiter, LimiterConfig, Traffic};
use crate::core::membership::{Change, Membership, MAX_INCARNATION};
use crate::core::proto::{
    encoded_len, Datagram, Item, MemberInfo, MemberState, MemberStatus, SyncFrame, SyncKind,
    DATAGRAM_OVERHEAD, MAX_MEMBER_META,
};
use crate::core::state::{CausalContext, Entry, Limits, Snapshot, StateError, Store};
use crate::core::{NodeId, Now};

mod claims;
mod locality;
mod persist;
mod swim;
mod tree;

pub use persist::{Changes, DOT_LEASE_BLOCK};
pub use tree::GRAFT_TRIES;

/// Protocol tuning. Every field is settable in the node's configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Peers a fresh update is pushed to at once, and per gossip round.
    pub fanout: usize,
    /// Period of piggyback gossip rounds (ms).
    pub gossip_interval_ms: u64,
    /// Period of anti-entropy exchanges (ms).
    pub sync_interval_ms: u64,
    /// Retransmit multiplier λ: each update is sent about `λ·log10(N+1)` times.
    pub retransmit_mult: u32,
    /// Largest datagram the core packs (bytes); the runtime lowers it per peer to the
    /// connection's `max_datagram_size()`.
    pub max_datagram: usize,
    /// Push deltas as datagrams (false leaves replication to anti-entropy alone).
    pub push_deltas: bool,
    /// Push each update down a broadcast tree (about one copy per member, log₂ N hops)
    /// and repeat only its id in gossip rounds; members missing an id ask for it
    /// (`engine/tree.rs`). `false` is the older random push: `fanout` random peers per
    /// hop and the whole update repeated in gossip rounds.
    pub tree_push: bool,
    /// With `tree_push`: how long a member told of an update it lacks waits for the tree
    /// to bring it before asking the teller (ms; at least twice the round trip to it).
    pub graft_timeout_ms: u64,
    /// How long deletes are remembered (ms) before their tombstones are collected.
    pub tombstone_grace_ms: u64,
    /// Shortest wait between attempts to contact a seed (ms).
    pub seed_backoff_floor_ms: u64,
    /// Longest wait between attempts to contact a seed (ms).
    pub seed_backoff_cap_ms: u64,
    /// Most broadcasts waiting in the queue; beyond it the oldest low-priority ones drop.
    pub queue_max: usize,
    /// Prefer peers in our own datacenter (`dc`) for gossip rounds, eager pushes and
    /// anti-entropy, and let a write cross to another datacenter only through its
    /// writer's bounded relays (see ARCHITECTURE.md, "Locality and WAN"). `false` treats
    /// every member alike, wherever it is.
    pub locality: bool,
    /// With `locality`: the share, in (0, 1], of gossip-round targets and anti-entropy
    /// exchanges that go to other datacenters, so that every datacenter keeps hearing
    /// every other (a share of 0 would make each datacenter an island).
    pub cross_dc_share: f64,
    /// With `locality`: nodes of each other datacenter a write is pushed to at once by
    /// its writer; they spread it inside their datacenter.
    pub dc_relays: usize,
    /// With `locality`: later gossip rounds in which the writer sends a write once more
    /// to one node of each other datacenter (covers WAN loss).
    pub dc_retransmits: u32,
    /// Probe timeouts are at least this multiple of the peer's measured round-trip time,
    /// with `probe_timeout_ms` as the floor, so a far peer is not suspected for being far;
    /// 0 turns the adaptation off.
    pub probe_rtt_mult: u32,
    /// SWIM protocol period: one member is probed per period (ms).
    pub probe_interval_ms: u64,
    /// How long to wait for a direct ack before asking others to probe (ms).
    pub probe_timeout_ms: u64,
    /// Members asked to probe indirectly when a direct probe times out (`k`).
    pub indirect_checks: usize,
    /// Suspicion timeout = `suspicion_mult · log10(N) · probe_interval` at the least.
    pub suspicion_mult: u32,
    /// The longest suspicion timeout, as a multiple of the least (Lifeguard).
    pub suspicion_max_mult: u32,
    /// Ceiling of the local health multiplier (Lifeguard): a struggling node stretches
    /// its probe interval and timeout by up to this factor.
    pub awareness_max: u32,
    /// Dead and departed members are kept (as tombstones) this long before being
    /// forgotten (ms).
    pub reap_timeout_ms: u64,
    /// Cap on this node's gossip egress in bytes per second (datagrams and anti-entropy
    /// stream bytes alike); 0 means unlimited.
    pub gossip_bandwidth: u64,
    /// Token-bucket size in bytes: how far egress may run ahead of `gossip_bandwidth`
    /// (0 = automatic: 40 ms worth, so no 1-second window exceeds the cap by more
    /// than 4 %, and at least two datagrams).
    pub gossip_burst: u64,
    /// Share of `gossip_bandwidth` (and burst) one peer may take, in (0, 1].
    pub per_peer_share: f64,
    /// Datagrams accepted from one peer per second; beyond it they are dropped and
    /// counted (0 = unlimited).
    pub inbound_datagrams_per_peer: u32,
    /// Anti-entropy exchanges one peer may have open with us at once; more are refused.
    pub inbound_syncs_per_peer: u32,
    /// Key and value size limits.
    pub limits: Limits,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            fanout: 3,
            gossip_interval_ms: 200,
            sync_interval_ms: 2_000,
            retransmit_mult: 4,
            max_datagram: 1_200,
            push_deltas: true,
            tree_push: true,
            graft_timeout_ms: 20,
            tombstone_grace_ms: 24 * 3600 * 1000,
            seed_backoff_floor_ms: 1_000,
            seed_backoff_cap_ms: 30_000,
            queue_max: 4_096,
            locality: true,
            cross_dc_share: 0.1,
            dc_relays: 2,
            dc_retransmits: 1,
            probe_rtt_mult: 3,
            probe_interval_ms: 1_000,
            probe_timeout_ms: 500,
            indirect_checks: 3,
            suspicion_mult: 4,
            suspicion_max_mult: 6,
            awareness_max: 8,
            reap_timeout_ms: 3_600_000,
            gossip_bandwidth: 10_000_000,
            gossip_burst: 0,
            per_peer_share: 0.5,
            inbound_datagrams_per_peer: 2_000,
            inbound_syncs_per_peer: 2,
            limits: Limits::default(),
        }
    }
}

impl Config {
    /// The LAN profile (the default): memberlist's LAN timings, 200 ms gossip rounds.
    pub fn lan() -> Self {
        Self::default()
    }

    /// The loopback profile, for in-process clusters (tests, demos, `gossamer test`):
    /// faster gossip rounds, anti-entropy and seed retries than the LAN profile.
    pub fn local() -> Self {
        Self {
            gossip_interval_ms: 100,
            sync_interval_ms: 500,
            seed_backoff_floor_ms: 200,
            seed_backoff_cap_ms: 2_000,
            ..Self::default()
        }
    }

    /// The WAN profile: longer probe period and timeouts, slower gossip and
    /// anti-entropy, and a 1 MB/s gossip cap, for links of tens to hundreds of
    /// milliseconds.
    pub fn wan() -> Self {
        Self {
            gossip_interval_ms: 500,
            sync_interval_ms: 10_000,
            probe_interval_ms: 5_000,
            probe_timeout_ms: 3_000,
            suspicion_mult: 6,
            gossip_bandwidth: 1_000_000,
            ..Self::default()
        }
    }
}

impl Config {
    /// Checks the values; the error names the field and what would fix it.
    pub fn validate(&self) -> Result<(), String> {
        let pos = |name: &str, v: u64| {
            if v == 0 {
                Err(format!("{name} must be greater than 0"))
            } else {
                Ok(())
            }
        };
        pos("fanout", self.fanout as u64)?;
        pos("gossip_interval_ms", self.gossip_interval_ms)?;
        pos("sync_interval_ms", self.sync_interval_ms)?;
        pos("retransmit_mult", self.retransmit_mult as u64)?;
        pos("seed_backoff_floor_ms", self.seed_backoff_floor_ms)?;
        pos("queue_max", self.queue_max as u64)?;
        if self.graft_timeout_ms > 60_000 {
            return Err(format!(
                "graft_timeout_ms must be at most 60000 (got {}): a missing update waits that \
                 long before it is asked for",
                self.graft_timeout_ms
            ));
        }
        self.validate_locality()?;
        pos("probe_interval_ms", self.probe_interval_ms)?;
        pos("probe_timeout_ms", self.probe_timeout_ms)?;
        pos("suspicion_mult", self.suspicion_mult as u64)?;
        pos("suspicion_max_mult", self.suspicion_max_mult as u64)?;
        pos("awareness_max", self.awareness_max as u64)?;
        if self.probe_timeout_ms > self.probe_interval_ms {
            return Err(format!(
                "probe_timeout_ms ({}) must not exceed probe_interval_ms ({})",
                self.probe_timeout_ms, self.probe_interval_ms
            ));
        }
        if self.max_datagram < 256 || self.max_datagram > 65_000 {
            return Err(format!(
                "max_datagram must be between 256 and 65000 bytes (got {})",
                self.max_datagram
            ));
        }
        if !(self.per_peer_share > 0.0 && self.per_peer_share <= 1.0) {
            return Err(format!(
                "per_peer_share must be in (0, 1] (got {}); 1 lets one peer use the whole budget",
                self.per_peer_share
            ));
        }
        if self.gossip_bandwidth > 0 && self.gossip_bandwidth < 4 * self.max_datagram as u64 {
            return Err(format!(
                "gossip_bandwidth must be 0 (unlimited) or at least 4 datagrams per second ({} bytes/s) (got {})",
                4 * self.max_datagram,
                self.gossip_bandwidth
            ));
        }
        if self.gossip_burst > 0 && self.gossip_burst < 2 * self.max_datagram as u64 {
            return Err(format!(
                "gossip_burst must be 0 (automatic) or at least two datagrams ({} bytes) (got {})",
                2 * self.max_datagram,
                self.gossip_burst
            ));
        }
        if self.gossip_bandwidth > u32::MAX as u64 || self.gossip_burst > u32::MAX as u64 {
            return Err(
                "gossip_bandwidth and gossip_burst must fit in 32 bits (at most 4 GB/s)".into(),
            );
        }
        if self.seed_backoff_cap_ms < self.seed_backoff_floor_ms {
            return Err("seed_backoff_cap_ms must be at least seed_backoff_floor_ms".into());
        }
        Ok(())
    }
}

/// Something the caller must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Send a datagram to a member.
    Datagram {
        /// Recipient.
        to: NodeId,
        /// Its advertised address.
        addr: String,
        /// Contents.
        datagram: Datagram,
    },
    /// Send items too large for a datagram on a reliable (uni) stream.
    Reliable {
        /// Recipient.
        to: NodeId,
        /// Its advertised address.
        addr: String,
        /// Contents.
        datagram: Datagram,
    },
    /// Run an anti-entropy exchange with a member (see [`Engine::sync_start`]).
    Sync {
        /// Peer.
        with: NodeId,
        /// Its advertised address.
        addr: String,
    },
    /// Contact a seed address: connect, then run a `Join` exchange with whoever answers,
    /// then report with [`Engine::seed_result`].
    Contact {
        /// Index of the seed in the configured list.
        seed: usize,
        /// The address as configured (re-resolve names every time).
        addr: String,
    },
    /// Tell subscribers.
    Event(Event),
}

/// A change subscribers hear about.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A key changed (set or deleted).
    Kv {
        /// The new entry (a tombstone for a delete).
        entry: Entry,
        /// Written by this node.
        local: bool,
        /// The change resolved concurrent writes.
        conflict: bool,
    },
    /// Membership changed.
    Member(Change),
}

/// Counters of the engine (the runtime and simulator add transport-level ones).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EngineStats {
    /// Datagrams handed out for sending.
    pub datagrams_out: u64,
    /// Items inside those datagrams.
    pub items_out: u64,
    /// Datagrams received.
    pub datagrams_in: u64,
    /// Items received.
    pub items_in: u64,
    /// Items received that broke a limit or rule, dropped.
    pub items_invalid: u64,
    /// Anti-entropy exchanges this node opened.
    pub syncs_started: u64,
    /// Anti-entropy exchanges peers opened with this node.
    pub syncs_accepted: u64,
    /// Completed exchanges.
    pub syncs_completed: u64,
    /// Failed exchanges.
    pub syncs_failed: u64,
    /// Entries received through anti-entropy that changed the state.
    pub sync_entries_applied: u64,
    /// Full resynchronisations after being away longer than the tombstone grace.
    pub resyncs: u64,
    /// Seed contact attempts.
    pub seed_attempts: u64,
    /// Refutations of suspicion about ourselves.
    pub refutations: u64,
    /// Second-hand membership claims refused because they would speak for another
    /// member (mark it left, revive it, refute its suspicion, change its metadata).
    pub claims_refused: u64,
    /// Members sent our view of them directly to verify a refused claim.
    pub claims_verified: u64,
    /// Peers sent our own state directly because they told us an older or different one.
    pub claims_answered: u64,
    /// Direct probes sent.
    pub probes: u64,
    /// Probes that got no ack, direct or indirect, within the period.
    pub probes_failed: u64,
    /// Indirect probe requests sent.
    pub ping_reqs: u64,
    /// Members we declared suspect.
    pub suspicions: u64,
    /// Members we declared dead.
    pub deaths: u64,
    /// Dead or departed members forgotten after the reap timeout.
    pub reaped: u64,
    /// Datagrams from a peer beyond `inbound_datagrams_per_peer`, dropped.
    pub inbound_dropped: u64,
    /// Gossip datagrams (or reliable sends) not sent for lack of tokens; what they would
    /// have carried stays queued or is repaired by anti-entropy.
    pub sends_limited: u64,
    /// Periodic anti-entropy exchanges put off because the bucket was below the
    /// anti-entropy reserve.
    pub syncs_deferred: u64,
    /// Times the bandwidth back-off stepped up.
    pub backoff_steps: u64,
    /// Direct membership messages (probes, acks, suspicions, answers) that waited for
    /// tokens instead of being dropped.
    pub sends_deferred: u64,
    /// Of those, dropped after all: stale (older than a probe period) or the wait list
    /// was full.
    pub deferred_dropped: u64,
    /// Updates sent down the broadcast tree (one per child).
    pub tree_sent: u64,
    /// Ids announced to us of updates we lacked.
    pub ids_missing: u64,
    /// Graft requests sent (an update asked for by id).
    pub grafts_sent: u64,
    /// Updates sent in answer to grafts.
    pub grafts_answered: u64,
    /// Missing ids given up after every graft try (anti-entropy repairs them).
    pub grafts_abandoned: u64,
    /// Missing ids not tracked because too many were pending (anti-entropy repairs them).
    pub grafts_dropped: u64,
    /// Updates a graft brought us that we forwarded down our own span of the writer's
    /// tree (its tree copy was lost above us, so our subtree lacked it too).
    pub subtrees_healed: u64,
}

/// What a restarted node brings back from its data directory. `store.counter` is the
/// persisted dot lease end: every dot below it may have been issued.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Persisted {
    /// The key-value store.
    pub store: Snapshot,
    /// Our incarnation when it was saved.
    pub incarnation: u64,
}

#[derive(Debug, Clone)]
struct Seed {
    addr: String,
    next_us: u64,
    backoff_ms: u64,
    member: Option<NodeId>,
    in_flight: bool,
}

/// One side of an anti-entropy exchange in progress (held by the caller).
#[derive(Debug, Clone)]
pub struct SyncSession {
    /// The peer.
    pub peer: NodeId,
    /// Why it was opened.
    pub kind: SyncKind,
    peer_ctx: Option<CausalContext>,
    peer_digest: Option<u64>,
    reset: bool,
}

impl SyncSession {
    fn new(peer: NodeId, kind: SyncKind) -> Self {
        Self {
            peer,
            kind,
            peer_ctx: None,
            peer_digest: None,
            reset: false,
        }
    }
}

/// The protocol state machine of one node.
pub struct Engine {
    cfg: Config,
    rng: ChaCha8Rng,
    store: Store,
    members: Membership,
    queue: BroadcastQueue,
    seeds: Vec<Seed>,
    out: VecDeque<Output>,
    next_gossip_us: u64,
    next_sync_us: u64,
    next_gc_us: u64,
    stats: EngineStats,
    swim: swim::Swim,
    loc: locality::Locality,
    claims: claims::Claims,
    limiter: Limiter,
    inbound: InboundLimiter,
    backoff: Backoff,
    /// The latest `now.mono_us` any entry point was given.
    clock_us: u64,
    /// Direct membership messages waiting for tokens: (to, items, expiry µs).
    deferred: VecDeque<Deferred>,
    /// Ids we were told of and lack (tree push's lazy repair).
    lazy: tree::Lazy,
    /// The incarnation the last drain of changes carried (persistence only).
    persisted_inc: Option<u64>,
}

/// A direct message waiting for tokens: recipient, items, expiry (mono µs).
type Deferred = (NodeId, Vec<(Item, Traffic)>, u64);

/// Most direct membership messages waiting for tokens at once.
const DEFERRED_MAX: usize = 1_024;

/// Bandwidth back-off: under pressure fanout and retransmit budgets halve and the
/// anti-entropy interval doubles per level; calm rounds step it back down.
#[derive(Debug, Clone, Default)]
struct Backoff {
    level: u32,
    calm_rounds: u32,
    refused_seen: u64,
}

/// Highest back-off level: fanout and budgets divided by 8, anti-entropy interval × 8.
pub const MAX_BACKOFF: u32 = 3;
/// Gossip rounds without pressure before the back-off steps down one level.
const CALM_ROUNDS: u32 = 5;

const GC_PERIOD_US: u64 = 60_000_000;

impl Engine {
    /// Creates the engine of node `me`. `rng_seed` makes every random choice
    /// reproducible; `persisted` is what the data directory held, if anything.
    ///
    /// The incarnation starts at `max(persisted + 1, wall ms)`, so a restarted node
    /// always outranks its earlier life even when nothing was persisted.
    pub fn new(
        cfg: Config,
        me: MemberInfo,
        seeds: Vec<String>,
        rng_seed: u64,
        now: Now,
        persisted: Option<Persisted>,
    ) -> Self {
        let (store, inc) = match persisted {
            Some(p) if p.store.node == me.id => (
                Store::from_snapshot(p.store, cfg.limits),
                (p.incarnation + 1).max(now.wall_ms),
            ),
            _ => (
                Store::new(me.id.clone(), cfg.limits, now.wall_ms),
                now.wall_ms,
            ),
        };
        let mut rng = ChaCha8Rng::seed_from_u64(rng_seed);
        let jitter = |rng: &mut ChaCha8Rng, ms: u64| rng.random_range(0..=ms * 1000);
        let next_gossip_us = now.mono_us + jitter(&mut rng, cfg.gossip_interval_ms);
        let next_sync_us = now.mono_us + jitter(&mut rng, cfg.sync_interval_ms);
        let seeds = seeds
            .into_iter()
            .map(|addr| Seed {
                addr,
                next_us: now.mono_us,
                backoff_ms: cfg.seed_backoff_floor_ms,
                member: None,
                in_flight: false,
            })
            .collect();
        Self {
            queue: BroadcastQueue::new(cfg.queue_max, cfg.max_datagram),
            members: Membership::new(me, inc),
            store,
            rng,
            seeds,
            out: VecDeque::new(),
            next_gossip_us,
            next_sync_us,
            next_gc_us: now.mono_us + GC_PERIOD_US,
            stats: EngineStats::default(),
            swim: swim::Swim::new(now.mono_us),
            loc: locality::Locality::default(),
            claims: claims::Claims::default(),
            limiter: Limiter::new(
                LimiterConfig {
                    rate: cfg.gossip_bandwidth,
                    burst: cfg.gossip_burst,
                    min_burst: 2 * cfg.max_datagram as u64,
                    per_peer_share: cfg.per_peer_share,
                },
                now.mono_us,
            ),
            inbound: InboundLimiter::new(cfg.inbound_datagrams_per_peer, now.mono_us),
            backoff: Backoff::default(),
            clock_us: now.mono_us,
            deferred: VecDeque::new(),
            lazy: tree::Lazy::default(),
            persisted_inc: None,
            cfg,
        }
    }

    fn tick(&mut self, now: Now) {
        self.clock_us = self.clock_us.max(now.mono_us);
    }

    /// The egress token buckets (read-only).
    pub fn limiter(&self) -> &Limiter {
        &self.limiter
    }

    /// Datagrams dropped by the inbound per-peer cap.
    pub fn inbound_dropped(&self) -> u64 {
        self.inbound.dropped()
    }

    /// Current bandwidth back-off level (0 = none, up to [`MAX_BACKOFF`]).
    pub fn backoff_level(&self) -> u32 {
        self.backoff.level
    }

    /// Fanout after back-off.
    fn fanout(&self) -> usize {
        (self.cfg.fanout >> self.backoff.level).max(1)
    }

    /// The class a sync stream's bytes are charged to: a join (a node entering or
    /// re-entering the cluster) is membership traffic; periodic exchanges are
    /// anti-entropy, the lowest priority.
    fn stream_class(kind: SyncKind) -> Traffic {
        match kind {
            SyncKind::Join => Traffic::Membership,
            _ => Traffic::AntiEntropy,
        }
    }

    /// Charges `bytes` of a sync stream of `kind` to `peer`. Returns `Err(at)` (mono
    /// µs) when the tokens are not there yet: wait until then and ask again. Send big
    /// transfers in pieces of at most [`Engine::stream_chunk`] bytes.
    pub fn stream_admit(
        &mut self,
        now: Now,
        peer: &NodeId,
        kind: SyncKind,
        bytes: usize,
    ) -> Result<(), u64> {
        self.tick(now);
        let class = Self::stream_class(kind);
        if self.limiter.allowance(now.mono_us, peer, class) >= bytes
            && self.limiter.admit(now.mono_us, peer, class, bytes)
        {
            return Ok(());
        }
        let at = self
            .limiter
            .ready_at(now.mono_us, peer, class, bytes as u64)
            .max(now.mono_us + 1_000);
        Err(at)
    }

    /// The largest piece of a sync stream of `kind` to pass to [`Engine::stream_admit`]
    /// at once.
    pub fn stream_chunk(&self, kind: SyncKind) -> usize {
        self.limiter.max_chunk(Self::stream_class(kind))
    }

    /// Charges and emits one datagram (or reliable send) made of `items`, each tagged
    /// with its traffic class. Returns false (and counts it) when the tokens are not
    /// there; the caller's items are then lost for this peer and anti-entropy repairs.
    fn emit(
        &mut self,
        to: &NodeId,
        addr: String,
        items: Vec<(Item, Traffic)>,
        reliable: bool,
    ) -> bool {
        if items.is_empty() {
            return false;
        }
        // What the datagram costs on the wire: items, the datagram's own header (at most
        // DATAGRAM_OVERHEAD), the version byte, and DATAGRAM_OVERHEAD for the packet.
        let (bytes, lowest) = Self::wire_cost(&items);
        if !self.limiter.admit(self.clock_us, to, lowest, bytes) {
            self.stats.sends_limited += 1;
            return false;
        }
        let datagram = Datagram {
            items: items.into_iter().map(|(i, _)| i).collect(),
        };
        if reliable {
            self.out.push_back(Output::Reliable {
                to: to.clone(),
                addr,
                datagram,
            });
        } else {
            self.stats.datagrams_out += 1;
            self.stats.items_out += datagram.items.len() as u64;
            self.out.push_back(Output::Datagram {
                to: to.clone(),
                addr,
                datagram,
            });
        }
        true
    }

    /// Keeps direct membership `items` for `to` until tokens allow (bounded; stale ones
    /// expire after a probe period, as a late probe or answer is worthless).
    fn defer(&mut self, to: &NodeId, items: Vec<(Item, Traffic)>) {
        if items.is_empty() {
            return;
        }
        self.stats.sends_deferred += 1;
        if self.deferred.len() >= DEFERRED_MAX {
            self.deferred.pop_front();
            self.stats.deferred_dropped += 1;
        }
        let expires = self.clock_us + self.cfg.probe_interval_ms * 1000;
        self.deferred.push_back((to.clone(), items, expires));
    }

    fn wire_cost(items: &[(Item, Traffic)]) -> (usize, Traffic) {
        let mut bytes = 2 * DATAGRAM_OVERHEAD + 1;
        let mut lowest = Traffic::Probe;
        for (item, t) in items {
            bytes += encoded_len(item);
            lowest = lowest.max(*t);
        }
        (bytes, lowest)
    }

    /// Sends what waited for tokens, oldest first, as far as the tokens go.
    fn flush_deferred(&mut self) {
        let now = self.clock_us;
        let mut keep = VecDeque::new();
        while let Some((to, items, expires)) = self.deferred.pop_front() {
            if expires <= now {
                self.stats.deferred_dropped += 1;
                continue;
            }
            let (bytes, class) = Self::wire_cost(&items);
            let addr = self.addr_of(&to);
            match addr {
                Some(addr) if self.limiter.allowance(now, &to, class) >= bytes => {
                    self.emit(&to, addr, items, false);
                }
                Some(_) => keep.push_back((to, items, expires)),
                None => self.stats.deferred_dropped += 1,
            }
        }
        self.deferred = keep;
    }

    /// When the first deferred message can go (mono µs).
    fn deferred_deadline(&self) -> Option<u64> {
        let (to, items, expires) = self.deferred.front()?;
        let (bytes, class) = Self::wire_cost(items);
        let ready = self
            .limiter
            .ready_at(self.clock_us, to, class, bytes as u64)
            .max(self.clock_us + 1_000);
        Some(ready.min(*expires))
    }

    /// Byte caps per class (membership, fresh, retransmit) for a datagram to `peer`.
    fn caps(&self, peer: &NodeId) -> [usize; 3] {
        let now = self.clock_us;
        // `pack` counts one DATAGRAM_OVERHEAD; `emit` charges the version byte and the
        // packet overhead on top.
        let extra = DATAGRAM_OVERHEAD + 1;
        [Traffic::Membership, Traffic::Fresh, Traffic::Retransmit]
            .map(|t| self.limiter.allowance(now, peer, t).saturating_sub(extra))
    }

    /// One gossip round's worth of back-off bookkeeping: step up when the limiter
    /// refused something or the bucket sank below the retransmit reserve since the last
    /// round; step down after [`CALM_ROUNDS`] calm rounds.
    fn update_backoff(&mut self) {
        if !self.limiter.is_limited() {
            return;
        }
        let refused: u64 = self.limiter.stats().refused.iter().sum();
        let low = self.limiter.tokens(self.clock_us) < self.limiter.burst() * 3 / 10;
        let pressure = refused > self.backoff.refused_seen || low;
        self.backoff.refused_seen = refused;
        if pressure {
            self.backoff.calm_rounds = 0;
            if self.backoff.level < MAX_BACKOFF {
                self.backoff.level += 1;
                self.stats.backoff_steps += 1;
                // Budgets already queued shrink with the level too.
                let cap = self.delta_budget();
                self.queue.cap_delta_budgets(cap);
            }
        } else if self.backoff.level > 0 {
            self.backoff.calm_rounds += 1;
            if self.backoff.calm_rounds >= CALM_ROUNDS {
                self.backoff.level -= 1;
                self.backoff.calm_rounds = 0;
            }
        }
    }

    /// Our id.
    pub fn id(&self) -> &NodeId {
        self.members.my_id()
    }

    /// Protocol configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The key-value store (read-only).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The member table (read-only).
    pub fn members(&self) -> &Membership {
        &self.members
    }

    /// Adds members known out of band, as if an anti-entropy exchange had brought them:
    /// nothing is gossiped and no event is emitted. A simulator starts a large cluster
    /// this way already joined (a warm start), where joining through gossip would make
    /// every node queue an announcement of every other. Invalid states and ones that
    /// are not news are skipped; a seed whose address is a known member counts as
    /// answered by it. Returns how many members were added.
    pub fn preload_members(
        &mut self,
        now: Now,
        states: impl IntoIterator<Item = MemberState>,
    ) -> usize {
        self.tick(now);
        let valid = states.into_iter().filter(Self::member_valid);
        let added = self.members.preload(now.mono_us, valid);
        let n = added.len();
        self.swim_preload(added);
        for i in 0..self.seeds.len() {
            if self.seeds[i].member.is_some() {
                continue;
            }
            let found = self
                .members
                .others()
                .find(|m| m.state.info.addr == self.seeds[i].addr)
                .map(|m| m.state.info.id.clone());
            if let Some(id) = found {
                self.seed_result(now, i, Some(id));
            }
        }
        n
    }

    /// Counters.
    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// The broadcast queue (read-only).
    pub fn queue(&self) -> &BroadcastQueue {
        &self.queue
    }

    /// A copy of the whole state, as `Engine::new` takes it back. O(state): the runtime
    /// persists incrementally with [`Engine::take_changes`] instead; this serves tools
    /// and tests (and is the format of the `state.cbor` files of earlier versions).
    pub fn persisted(&self) -> Persisted {
        Persisted {
            store: self.store.snapshot(),
            incarnation: self.members.me().incarnation,
        }
    }

    /// The next output, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When (mono µs) [`Engine::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> u64 {
        let mut t = self
            .next_gossip_us
            .min(self.next_sync_us)
            .min(self.next_gc_us)
            .min(self.swim.next_deadline())
            .min(self.deferred_deadline().unwrap_or(u64::MAX))
            .min(self.graft_deadline().unwrap_or(u64::MAX));
        for s in &self.seeds {
            if !s.in_flight && !self.seed_satisfied(s) {
                t = t.min(s.next_us);
            }
        }
        t
    }

    /// Runs every periodic task that is due.
    pub fn handle_timeout(&mut self, now: Now) {
        self.tick(now);
        let t = now.mono_us;
        if !self.deferred.is_empty() {
            self.flush_deferred();
        }
        self.swim_timers(now);
        if self.graft_deadline().is_some_and(|d| d <= t) {
            self.graft_timers();
        }
        if t >= self.next_gossip_us {
            self.next_gossip_us = t + self.cfg.gossip_interval_ms * 1000;
            self.update_backoff();
            self.gossip_round();
            self.wan_round();
        }
        if t >= self.next_sync_us {
            // ±10% jitter keeps nodes from synchronising their exchanges.
            let base = (self.cfg.sync_interval_ms * 1000) << self.backoff.level;
            self.next_sync_us = t + base - base / 10 + self.rng.random_range(0..=base / 5);
            self.start_periodic_sync();
        }
        if t >= self.next_gc_us {
            self.next_gc_us = t + GC_PERIOD_US;
            self.store
                .collect_tombstones(now.wall_ms, self.cfg.tombstone_grace_ms);
            let members = &self.members;
            self.limiter.prune(t, |id| {
                members
                    .get(id)
                    .is_some_and(|m| m.state.status == MemberStatus::Alive)
            });
            self.inbound.prune();
        }
        for i in 0..self.seeds.len() {
            let s = &self.seeds[i];
            if s.in_flight || t < s.next_us || self.seed_satisfied(s) {
                continue;
            }
            let addr = s.addr.clone();
            self.seeds[i].in_flight = true;
            self.stats.seed_attempts += 1;
            self.out.push_back(Output::Contact { seed: i, addr });
        }
    }

    fn seed_satisfied(&self, s: &Seed) -> bool {
        match &s.member {
            Some(id) if id == self.id() => true,
            Some(id) => self.members.is_live(id),
            None => false,
        }
    }

    /// Reports the outcome of an [`Output::Contact`]: the node that answered, or failure.
    pub fn seed_result(&mut self, now: Now, seed: usize, answered: Option<NodeId>) {
        let floor = self.cfg.seed_backoff_floor_ms;
        let cap = self.cfg.seed_backoff_cap_ms;
        let jitter = self.rng.random_range(0..=floor * 1000 / 2);
        let Some(s) = self.seeds.get_mut(seed) else {
            return;
        };
        s.in_flight = false;
        match answered {
            Some(id) => {
                s.member = Some(id);
                s.backoff_ms = floor;
                s.next_us = now.mono_us + floor * 1000 + jitter;
            }
            None => {
                s.next_us = now.mono_us + s.backoff_ms * 1000 + jitter;
                s.backoff_ms = (s.backoff_ms * 2).min(cap);
            }
        }
    }

    /// Retransmit budget of a membership broadcast (never cut by back-off).
    fn budget(&self) -> u32 {
        retransmit_budget(self.cfg.retransmit_mult, self.members.live_count())
    }

    /// Retransmit budget of a delta: halved per back-off level.
    fn delta_budget(&self) -> u32 {
        (self.budget() >> self.backoff.level).max(1)
    }

    // `pick_peers`, `pick_local_peers` and `sync_candidates` (peer choice with locality)
    // live in locality.rs.

    fn addr_of(&self, id: &NodeId) -> Option<String> {
        self.members.addr_of(id).map(str::to_string)
    }

    /// Packs the queue into one datagram for each of `peers`, the broadcasts named in
    /// `first` ahead of everything else.
    fn push_to(&mut self, peers: &[NodeId], skip_from: Option<&NodeId>, first: &[u64]) {
        self.push_to_with(peers, skip_from, first, usize::MAX);
    }

    /// [`Engine::push_to`], where only the first `data_peers` peers get deltas; the
    /// others get membership gossip only (bandwidth back-off cuts data, not membership).
    fn push_to_with(
        &mut self,
        peers: &[NodeId],
        skip_from: Option<&NodeId>,
        first: &[u64],
        data_peers: usize,
    ) {
        let max = self.cfg.max_datagram;
        for big in self.queue.take_oversized() {
            for p in peers {
                if matches!(big, Item::Delta(_)) && self.crosses_dc(p) {
                    continue; // the writer's relays carry it across (locality.rs)
                }
                if let Some(addr) = self.addr_of(p) {
                    self.emit(p, addr, vec![(big.clone(), Traffic::Fresh)], true);
                }
            }
        }
        for (k, p) in peers.iter().enumerate() {
            let Some(addr) = self.addr_of(p) else {
                continue;
            };
            let mut caps = self.caps(p);
            if k >= data_peers {
                caps[1] = 0;
                caps[2] = 0;
            }
            // Deltas cross datacenters only through the writer's relays (locality.rs).
            let far = self.crosses_dc(p);
            let items = self.queue.pack_classified(max, caps, first, |item| {
                // Never echo a member's own announcement back to it.
                (far && item.is_data())
                    || matches!(item, Item::Member(s) if Some(&s.info.id) == skip_from.filter(|f| *f == p))
            });
            if items.is_empty() {
                if self.queue.is_empty() {
                    break;
                }
                continue;
            }
            self.emit(p, addr, items, false);
        }
    }

    fn gossip_round(&mut self) {
        if self.queue.is_empty() {
            return;
        }
        // Membership gossip keeps the full fanout; deltas go to the backed-off fanout.
        let peers = self.pick_peers(self.cfg.fanout, None);
        let data_peers = self.fanout();
        self.push_to_with(&peers, None, &[], data_peers);
    }

    fn start_periodic_sync(&mut self) {
        // Anti-entropy comes last under pressure: put it off while the bucket is below
        // its reserve (the next interval tries again).
        if self.limiter.is_limited()
            && self.limiter.tokens(self.clock_us) < self.limiter.burst() / 2 + 1_024
        {
            self.stats.syncs_deferred += 1;
            return;
        }
        // Bias toward the member synced with least recently, among a small random sample.
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

    fn emit_member_change(&mut self, now: Now, change: Change, broadcast: bool) {
        self.swim_on_change(now, &change);
        let state = match &change {
            Change::Joined(s) | Change::Refuted(s) => s.clone(),
            Change::Updated { new, .. } => new.clone(),
            Change::Reaped(_) => {
                self.out.push_back(Output::Event(Event::Member(change)));
                return;
            }
        };
        if !broadcast && !matches!(change, Change::Refuted(_)) {
            self.out.push_back(Output::Event(Event::Member(change)));
            return;
        }
        let budget = self.budget();
        let refuted = matches!(change, Change::Refuted(_));
        if refuted {
            self.stats.refutations += 1;
        }
        self.queue.push(
            Topic::Member(state.info.id.clone()),
            Class::Membership,
            Item::Member(state),
            budget,
        );
        if refuted {
            // Only we can say it: tell everyone first-hand (claims.rs).
            self.announce_refutation(now);
        }
        self.out.push_back(Output::Event(Event::Member(change)));
    }

    fn member_valid(s: &MemberState) -> bool {
        s.info.meta_len() <= MAX_MEMBER_META
            && s.info.tags.len() <= 64
            && s.incarnation <= MAX_INCARNATION
    }

    /// Applies a membership claim received from the authenticated peer `sender` (the
    /// datagram's sender, or the peer of an anti-entropy exchange). A node may speak only
    /// for itself: a claim about `sender` is first-hand and applied as SWIM says; any
    /// other claim is second-hand and may introduce an unknown member or make a known one
    /// worse, but never mark it left, revive it, refute its suspicion or change its
    /// metadata (see `claims.rs`). `broadcast` re-gossips a change (gossip received as
    /// gossip spreads epidemically; state learned by anti-entropy is not re-broadcast,
    /// except what a peer says about itself).
    fn apply_member(&mut self, now: Now, sender: &NodeId, s: MemberState, broadcast: bool) {
        if !Self::member_valid(&s) {
            self.stats.items_invalid += 1;
            return;
        }
        if &s.info.id == self.id() {
            self.claim_about_me(now, sender, s);
        } else if &s.info.id == sender {
            self.first_hand_claim(now, s, broadcast);
        } else {
            self.second_hand_claim(now, sender, s, broadcast);
        }
    }

    /// Handles a datagram from an authenticated peer.
    pub fn handle_datagram(&mut self, now: Now, from: &NodeId, dg: Datagram) {
        self.tick(now);
        if !self.inbound.admit(now.mono_us, from) {
            self.stats.inbound_dropped += 1;
            return;
        }
        self.stats.datagrams_in += 1;
        self.stats.items_in += dg.items.len() as u64;
        self.members.heard_from(from, now.mono_us);
        let mut fresh: Vec<u64> = Vec::new();
        let mut batches = tree::Batches::new();
        let mut answers = Vec::new();
        for item in dg.items {
            match item {
                Item::Delta(e) if self.tree_mode() => {
                    // A relay from another datacenter starts a tree at home; anything
                    // else (a graft's answer) heals the subtree below us.
                    if let Some(e) = self.apply_fresh(now, e) {
                        if self.crosses_dc(from) {
                            let me = self.id().clone();
                            self.tree_forward(&mut batches, &e, &me);
                        } else {
                            self.heal_subtree(&mut batches, &e);
                        }
                    }
                }
                Item::Delta(e) => fresh.extend(self.apply_delta(now, e)),
                Item::Tree { entry, until } => {
                    if self.apply_tree(now, entry.clone()) {
                        self.tree_forward(&mut batches, &entry, &until);
                    }
                }
                Item::IHave { writer, counter } => self.on_ihave(from, writer, counter),
                Item::Graft { writer, counter } => self.on_graft(&mut answers, &writer, counter),
                Item::Member(s) => self.apply_member(now, from, s, true),
                Item::Ping { seq } => self.on_ping(now, from, seq),
                Item::Ack { seq } => self.on_ack(now, from, seq),
                Item::PingReq { seq, target } => self.on_ping_req(now, from, seq, target),
                Item::Nack { seq } => self.on_nack(seq),
                Item::Suspect {
                    id,
                    incarnation,
                    accuser,
                } => self.on_suspect(now, id, incarnation, accuser),
            }
        }
        self.tell_if_down(now, from);
        if !batches.is_empty() {
            self.send_tree_batches(batches);
        }
        if !answers.is_empty() {
            self.answer_grafts(from, answers);
        }
        if !fresh.is_empty() {
            // Eager push: forward what we just learned at once, ahead of anything queued.
            let peers = self.pick_local_peers(self.fanout(), Some(from));
            self.push_to(&peers, Some(from), &fresh);
        }
    }

    /// Applies a tree-pushed update (announcing it if it was news); true if it was news,
    /// and only then does the caller forward it down its span. A copy we already had is
    /// not forwarded, so a replayed item cannot make the tree send it again, unless we
    /// learned it by anti-entropy or a graft before its tree copy came (once).
    fn apply_tree(&mut self, now: Now, e: Entry) -> bool {
        if self.take_elsewhere(&e) {
            // It reached us by anti-entropy or a graft before its tree did; our span
            // still waits for it.
            if self.store.apply(e, now.wall_ms).is_err() {
                self.stats.items_invalid += 1;
                return false;
            }
            return true;
        }
        match self.store.apply(e, now.wall_ms) {
            Err(_) => {
                self.stats.items_invalid += 1;
                false
            }
            Ok(a) => {
                if let Some(entry) = a.changed {
                    if !a.already_seen {
                        self.announce(&entry);
                    }
                    self.out.push_back(Output::Event(Event::Kv {
                        entry,
                        local: false,
                        conflict: a.conflict,
                    }));
                }
                !a.already_seen
            }
        }
    }

    /// Applies a delta (tree mode); returns the stored entry if it was news, after
    /// queueing its id.
    fn apply_fresh(&mut self, now: Now, e: Entry) -> Option<Entry> {
        let (entry, already_seen) = self.apply_and_tell(now, e)?;
        if already_seen {
            return None;
        }
        self.announce(&entry);
        self.learned_elsewhere(&entry);
        Some(entry)
    }

    /// Applies an entry from a peer and tells subscribers if it changed the state;
    /// returns the stored entry and whether every write in it was already known.
    fn apply_and_tell(&mut self, now: Now, e: Entry) -> Option<(Entry, bool)> {
        match self.store.apply(e, now.wall_ms) {
            Err(_) => {
                self.stats.items_invalid += 1;
                None
            }
            Ok(a) => {
                let entry = a.changed?;
                self.out.push_back(Output::Event(Event::Kv {
                    entry: entry.clone(),
                    local: false,
                    conflict: a.conflict,
                }));
                Some((entry, a.already_seen))
            }
        }
    }

    /// Applies a gossiped delta; if it was news worth forwarding, returns its handle in
    /// the broadcast queue.
    fn apply_delta(&mut self, now: Now, e: Entry) -> Option<u64> {
        let (entry, already_seen) = self.apply_and_tell(now, e)?;
        if already_seen || !self.cfg.push_deltas {
            return None;
        }
        let budget = self.delta_budget();
        Some(self.queue.push(
            Topic::Key(entry.key.clone()),
            Class::Delta,
            Item::Delta(entry),
            budget,
        ))
    }

    /// Sets `key` to `value`.
    pub fn set(&mut self, now: Now, key: &str, value: Vec<u8>) -> Result<Entry, StateError> {
        self.write(now, key, Some(value))
    }

    /// Deletes `key`; returns whether it held a live value.
    pub fn delete(&mut self, now: Now, key: &str) -> Result<bool, StateError> {
        if self.store.get(key).is_none() {
            return Ok(false);
        }
        self.write(now, key, None).map(|_| true)
    }

    fn write(&mut self, now: Now, key: &str, value: Option<Vec<u8>>) -> Result<Entry, StateError> {
        self.tick(now);
        let e = self.store.write(key, value, now.wall_ms)?;
        self.out.push_back(Output::Event(Event::Kv {
            entry: e.clone(),
            local: true,
            conflict: false,
        }));
        if self.tree_mode() {
            self.announce(&e);
            let mut batches = tree::Batches::new();
            let me = self.id().clone();
            self.tree_forward(&mut batches, &e, &me);
            self.send_tree_batches(batches);
            self.relay_to_other_dcs(&e);
        } else if self.cfg.push_deltas {
            let budget = self.delta_budget();
            let seq = self.queue.push(
                Topic::Key(e.key.clone()),
                Class::Delta,
                Item::Delta(e.clone()),
                budget,
            );
            let peers = self.pick_local_peers(self.fanout(), None);
            self.push_to(&peers, None, &[seq]);
            self.relay_to_other_dcs(&e);
        }
        Ok(e)
    }

    /// Leaves the cluster: announces `Left` to every live member at once.
    pub fn leave(&mut self, now: Now) {
        self.tick(now);
        let me = self.members.leave();
        let budget = self.budget();
        let seq = self.queue.push(
            Topic::Member(me.info.id.clone()),
            Class::Membership,
            Item::Member(me),
            budget,
        );
        let everyone = self.members.live_ids().to_vec();
        self.push_to(&everyone, None, &[seq]);
    }

    /// Replaces our metadata and gossips it.
    pub fn update_meta(&mut self, info: MemberInfo) -> Result<(), String> {
        if info.id != *self.id() {
            return Err("metadata must keep the node id".into());
        }
        if info.meta_len() > MAX_MEMBER_META {
            return Err(format!("member metadata exceeds {MAX_MEMBER_META} bytes"));
        }
        let me = self.members.update_me(info);
        let budget = self.budget();
        self.queue.push(
            Topic::Member(me.info.id.clone()),
            Class::Membership,
            Item::Member(me),
            budget,
        );
        Ok(())
    }

    // ----- anti-entropy -----

    /// Begins an exchange we initiate with `peer`; send [`Engine::sync_open_frame`] first.
    pub fn sync_start(&mut self, peer: NodeId, kind: SyncKind) -> SyncSession {
        self.stats.syncs_started += 1;
        SyncSession::new(peer, kind)
    }

    /// Begins the responder's side of an exchange `peer` opened.
    pub fn sync_accept(&mut self, peer: NodeId, kind: SyncKind) -> SyncSession {
        self.stats.syncs_accepted += 1;
        SyncSession::new(peer, kind)
    }

    /// Our `Open` frame: causal context, tombstone horizon and member digest. A responder
    /// builds it after [`Engine::sync_on_open`], so that a resynchronisation shows.
    pub fn sync_open_frame(&self, kind: SyncKind) -> SyncFrame {
        SyncFrame::Open {
            kind,
            ctx: self.store.context().clone(),
            gc_horizon_ms: self.store.gc_horizon_ms(),
            members_digest: self.members.digest(),
        }
    }

    /// Handles the peer's `Open`. If the peer may have collected deletes we never saw,
    /// our state is rebuilt from scratch (and the exchange will not join contexts).
    pub fn sync_on_open(
        &mut self,
        s: &mut SyncSession,
        ctx: CausalContext,
        gc_horizon_ms: u64,
        members_digest: u64,
    ) {
        if self.store.needs_resync(gc_horizon_ms) {
            self.store.reset_for_resync();
            self.stats.resyncs += 1;
            s.reset = true;
        }
        self.store.observe_peer_context(&ctx);
        s.peer_ctx = Some(ctx);
        s.peer_digest = Some(members_digest);
    }

    /// What we send in our turn after the peer's `Open`: our member list (on a join, or
    /// when the digests differ), then the entries the peer lacks in frames of at most
    /// `per_frame` entries (and about 512 KiB).
    pub fn sync_reply_frames(&self, s: &SyncSession, per_frame: usize) -> Vec<SyncFrame> {
        let Some(ctx) = &s.peer_ctx else {
            return Vec::new();
        };
        let mut frames = Vec::new();
        if s.kind == SyncKind::Join || s.peer_digest != Some(self.members.digest()) {
            // Ourselves first: the peer checks that it matches our certificate.
            for chunk in self.members.all_states().chunks(256) {
                frames.push(SyncFrame::Members(chunk.to_vec()));
            }
        }
        let mut cur = Vec::new();
        let mut bytes = 0usize;
        for e in self.store.missing_for(ctx) {
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

    /// Handles a `Members` frame.
    pub fn sync_on_members(&mut self, now: Now, s: &SyncSession, members: Vec<MemberState>) {
        self.members.heard_from(&s.peer, now.mono_us);
        for m in members {
            let first_hand = m.info.id == s.peer;
            self.apply_member(now, &s.peer, m, first_hand);
        }
        self.tell_if_down(now, &s.peer);
    }

    /// Handles an `Entries` frame.
    pub fn sync_on_entries(&mut self, now: Now, _s: &SyncSession, entries: Vec<Entry>) {
        for e in entries {
            match self.store.apply(e, now.wall_ms) {
                Err(_) => self.stats.items_invalid += 1,
                Ok(a) => {
                    if let Some(entry) = a.changed {
                        if !a.already_seen {
                            self.learned_elsewhere(&entry);
                        }
                        self.stats.sync_entries_applied += 1;
                        self.out.push_back(Output::Event(Event::Kv {
                            entry,
                            local: false,
                            conflict: a.conflict,
                        }));
                    }
                }
            }
        }
    }

    /// Completes an exchange after everything the peer sent was applied.
    pub fn sync_finish(&mut self, now: Now, s: SyncSession) {
        if let Some(ctx) = &s.peer_ctx {
            if !s.reset {
                self.store.join_context(ctx);
                self.store.mark_synced(now.wall_ms);
            } else {
                // Our state was rebuilt mid-exchange: run another one soon to finish.
                self.next_sync_us = now.mono_us;
            }
        }
        self.members.synced_with(&s.peer, now.mono_us);
        self.stats.syncs_completed += 1;
    }

    /// Records a failed exchange.
    pub fn sync_failed(&mut self, _now: Now, _peer: &NodeId) {
        self.stats.syncs_failed += 1;
    }
}
