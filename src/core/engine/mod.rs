//! The node state machine: inputs are `(now, event)`, outputs are [`Output`]s.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::core::authority::{Authority, RefusalCounts};
use crate::core::dissemination::{retransmit_budget, BroadcastQueue, Topic};
use crate::core::limiter::{InboundLimiter, Limiter, LimiterConfig, Traffic};
use crate::core::membership::{Change, Membership, MAX_INCARNATION};
use crate::core::proto::{Datagram, Item, MemberInfo, MemberState, MAX_MEMBER_META};
use crate::core::queries::Broadcast;
use crate::core::state::{Applied, CausalContext, Entry, Snapshot, Store};
use crate::core::{NodeId, Now};

mod anti_entropy;
mod authorship;
mod claims;
mod clock_skew;
mod config;
mod egress;
mod events;
mod io;
mod local_write;
mod locality;
mod persist;
mod queries;
mod repair_rounds;
mod seeds;
mod stability;
mod stats;
mod suspicion;
mod swim;
mod timers;
mod tree;

pub(crate) use anti_entropy::{compact_open, FenceCheck, Received};
pub use clock_skew::{ClockSkew, WriterSkew};
pub use config::{Config, ConfigError, PushMode};
pub use egress::MAX_BACKOFF;
use egress::{Backoff, Deferred};
pub use events::{ID_BUDGET_MULT, PULL_TRIES, SEEN_MAX};
pub use io::{Event, Output};
pub use persist::{Changes, DOT_LEASE_BLOCK};
pub use repair_rounds::LOSSY_PERMILLE;
pub use seeds::SeedView;
use seeds::Seeds;
pub use stats::EngineStats;
pub use tree::GRAFT_TRIES;

/// What a restarted node brings back from its data directory. `store.counter` is the
/// persisted dot lease end: every dot below it may have been issued.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Persisted {
    /// The key-value store.
    pub store: Snapshot,
    /// Our incarnation when it was saved.
    pub incarnation: u64,
}

/// The protocol state machine of one node.
pub struct Engine {
    cfg: Config,
    rng: ChaCha8Rng,
    store: Store,
    members: Membership,
    queue: BroadcastQueue,
    seeds: Seeds,
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
    /// How far ahead of our clock each writer's stamps arrive.
    clock_ahead: ClockSkew,
    /// What each member had seen at its latest exchange with us.
    stability: stability::Stability,
    /// Peers whose last `Open` showed we must rebase against them, with what they
    /// vouched for and had seen then: our next exchange with each runs the rebase.
    rebase_due: BTreeMap<NodeId, (CausalContext, CausalContext)>,
    /// Whom our next exchange goes to: the peer that held entries back from our last
    /// exchange with it (`SyncFrame::Held`; the next, at once, pulls the rest), or one
    /// a datagram of ours never left for (`Engine::datagram_refused`).
    pull_from: Option<NodeId>,
    /// Updates the tree or a graft brought us as news since our last exchange began, and
    /// when the last came (mono µs): a burst that ends is followed by an exchange a
    /// quarter interval later (`Engine::sync_deadline`).
    news_since_sync: usize,
    last_news_us: u64,
    /// The incarnation the last drain of changes carried (persistence only).
    persisted_inc: Option<u64>,
    /// Signs our writes and verifies everyone else's.
    authorship: authorship::Authorship,
    /// User events and queries: dedup, repair, rate limits.
    events: events::Events,
    /// Queries: ours waiting for answers, others' waiting for ours.
    queries: queries::Queries,
    /// Loss the transport reported, and the ids repair rounds owe (`repair_rounds.rs`).
    repair: repair_rounds::RepairRounds,
}

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
        let seeds = Seeds::new(
            seeds,
            now.mono_us,
            cfg.seed_backoff_floor_ms,
            cfg.seed_backoff_cap_ms,
        );
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
            clock_ahead: ClockSkew::default(),
            stability: stability::Stability::default(),
            rebase_due: BTreeMap::new(),
            pull_from: None,
            news_since_sync: 0,
            last_news_us: 0,
            persisted_inc: None,
            authorship: authorship::Authorship::default(),
            events: events::Events::new(
                cfg.events.clone(),
                now.wall_ms,
                cfg.limits.max_clock_drift_ms,
            )
            .with_max_query_timeout(cfg.queries.max_timeout_ms),
            queries: queries::Queries::new(cfg.queries.clone()),
            repair: repair_rounds::RepairRounds::default(),
            cfg,
        }
    }

    /// Every input but a local write: our unsigned writes leave first.
    fn tick(&mut self, now: Now) {
        self.advance_clock(now);
        self.seal_writes();
    }

    fn advance_clock(&mut self, now: Now) {
        self.clock_us = self.clock_us.max(now.mono_us);
    }

    /// Signs our writes and verifies every peer's with `authority` from now on.
    pub fn set_authority(&mut self, authority: Box<dyn Authority>) {
        self.authorship.set(authority);
    }

    /// Writes refused by reason (bad or missing signatures, grants, revocations).
    pub fn writes_refused(&self) -> &RefusalCounts {
        self.authorship.refused()
    }

    /// How far ahead of our clock each writer's stamps arrive, and refusals.
    pub fn clock_skew(&self) -> &ClockSkew {
        &self.clock_ahead
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
        self.seeds_from_members(now);
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
    /// Seals our unsigned writes first, as every other way out of the engine does.
    pub fn persisted(&mut self) -> Persisted {
        self.seal_writes();
        Persisted {
            store: self.store.snapshot(),
            incarnation: self.members.me().incarnation,
        }
    }

    /// The next output, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.seal_writes();
        self.out.pop_front()
    }

    /// Every output ready, appended to `into` in order: what [`Engine::poll_output`] in a
    /// loop gives, with one seal and one reservation (a burst leaves thousands).
    pub fn drain_outputs(&mut self, into: &mut Vec<Output>) {
        self.seal_writes();
        into.extend(self.out.drain(..));
    }

    /// When (mono µs) [`Engine::handle_timeout`] must next be called: the earliest
    /// deadline of the timer table (`timers.rs`).
    pub fn poll_timeout(&self) -> u64 {
        self.earliest_deadline()
    }

    /// Runs every periodic task that is due (the timer table, `timers.rs`).
    pub fn handle_timeout(&mut self, now: Now) {
        self.tick(now);
        self.fire_due(now);
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
    // route to `Locality` (locality.rs).

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
                // Membership only: no deltas and no ids (caps after the first).
                caps[1..].fill(0);
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

    /// Collects the tombstones past the grace that every member in the table has seen
    /// (see `stability`); waits while a member has not shown us its context yet.
    /// Then compacts departed writers whose every dot everyone has seen out of the
    /// context.
    fn collect_tombstones(&mut self, now: Now) {
        let members = &self.members;
        self.stability.retain(|id| members.get(id).is_some());
        let writers = self.stability_writers();
        if writers.is_empty() {
            return;
        }
        let ids = self.members.others().map(|m| &m.state.info.id);
        match self.stability.stable(self.store.context(), ids, &writers) {
            Some(stable) => {
                self.store
                    .collect_stable(now.wall_ms, self.cfg.tombstone_grace_ms, &stable);
                let members = &self.members;
                let departed: Vec<NodeId> = self
                    .store
                    .context_writers()
                    .filter(|w| members.get(w).is_none())
                    .cloned()
                    .collect();
                self.store.compact_departed(departed.iter(), &stable);
            }
            None => self.stats.gc_waiting += 1,
        }
    }

    /// The writers whose dots stability is tracked for: those our tombstones name, and
    /// those in our context that are no longer members (candidates for compaction).
    fn stability_writers(&self) -> BTreeSet<NodeId> {
        let members = &self.members;
        self.store
            .tombstone_writers()
            .chain(
                self.store
                    .context_writers()
                    .filter(|w| members.get(w).is_none()),
            )
            .cloned()
            .collect()
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
            Traffic::Membership,
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
                Item::Delta(e) => self.on_delta(now, from, &mut batches, &mut fresh, e),
                Item::DeltaRun(run) => match run.unpack() {
                    Ok(entries) => {
                        for e in entries {
                            self.on_delta(now, from, &mut batches, &mut fresh, e);
                        }
                    }
                    Err(_) => self.stats.items_invalid += 1,
                },
                Item::Tree { entry, until } => self.on_tree(now, &mut batches, entry, &until),
                Item::TreeRun { run, until } => match run.unpack() {
                    Ok(entries) => {
                        for entry in entries {
                            self.on_tree(now, &mut batches, entry, &until);
                        }
                    }
                    Err(_) => self.stats.items_invalid += 1,
                },
                Item::IHave { writer, counter } => self.on_ihave(from, writer, counter),
                Item::Graft { writer, counter } => self.on_graft(&mut answers, &writer, counter),
                Item::Event { event, until } => {
                    self.on_broadcast(now, Broadcast::Event(event), until)
                }
                Item::Query { query, until } => {
                    self.on_broadcast(now, Broadcast::Query(query), until)
                }
                item @ (Item::QueryAck { .. } | Item::QueryResponse { .. }) => {
                    self.on_query_item(from, item)
                }
                Item::EventHave { sender, seq } => self.on_event_have(from, sender, seq),
                Item::EventPull { sender, seq } => self.on_event_pull(from, sender, seq),
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

    /// A delta: in tree mode, a relay from another datacenter starts a tree at home and
    /// anything else (a graft's answer) heals the subtree below us; in push mode, news
    /// is queued in `fresh` for the eager push.
    fn on_delta(
        &mut self,
        now: Now,
        from: &NodeId,
        batches: &mut tree::Batches,
        fresh: &mut Vec<u64>,
        e: Entry,
    ) {
        if !self.tree_mode() {
            fresh.extend(self.apply_delta(now, e));
            return;
        }
        if let Some(e) = self.apply_fresh(now, e) {
            if self.crosses_dc(from) {
                let me = self.id().clone();
                self.tree_forward(batches, &e, &me);
            } else {
                self.heal_subtree(batches, &e);
            }
        }
    }

    /// A tree-pushed update: applied, and forwarded down our span if it was news.
    fn on_tree(&mut self, now: Now, batches: &mut tree::Batches, entry: Entry, until: &NodeId) {
        if self.apply_tree(now, entry.clone()) {
            self.tree_forward(batches, &entry, until);
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
            return self.apply_remote(now, e).is_some();
        }
        match self.apply_remote(now, e) {
            None => false,
            Some(a) => {
                if let (Some(entry), false) = (&a.changed, a.already_seen) {
                    self.announce(entry);
                    self.note_news();
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
        self.note_news();
        Some(entry)
    }

    /// Applies an entry from a peer and tells subscribers if it changed the state;
    /// returns the stored entry and whether every write in it was already known.
    fn apply_and_tell(&mut self, now: Now, e: Entry) -> Option<(Entry, bool)> {
        let a = self.apply_remote(now, e)?;
        Some((a.changed?, a.already_seen))
    }

    /// The one path by which a peer's entry enters the store, however it came (tree,
    /// gossip, graft answer, anti-entropy): applies it, tells subscribers when it
    /// changed the state, records its writer's clock skew, and counts a refusal.
    /// `None` if refused.
    fn apply_remote(&mut self, now: Now, e: Entry) -> Option<Applied> {
        let writer = e.writer.clone();
        // Verify only what could change the state: a copy we hold already costs nothing.
        if e.validate(self.store.limits()).is_ok()
            && !self.store.has_seen(&e)
            && self.authorship.verify(&e).is_err()
        {
            self.stats.items_invalid += 1;
            return None;
        }
        match self.store.apply(e, now.wall_ms) {
            Err(_) => {
                self.stats.items_invalid += 1;
                None
            }
            Ok(a) => {
                if let Some(ahead_ms) = a.clock_ahead_ms {
                    self.stats.stamps_clamped += 1;
                    self.clock_ahead
                        .beyond_bound(&writer, ahead_ms, &mut self.out);
                }
                if let Some(entry) = &a.changed {
                    let ahead_ms = entry.hlc.ms.saturating_sub(now.wall_ms);
                    self.clock_ahead.seen(&entry.writer, ahead_ms);
                    self.out.push_back(Output::Event(Event::Kv {
                        entry: entry.clone(),
                        local: false,
                        conflict: a.conflict,
                    }));
                }
                Some(a)
            }
        }
    }

    /// Applies a gossiped delta; if it was news worth forwarding, returns its handle in
    /// the broadcast queue.
    fn apply_delta(&mut self, now: Now, e: Entry) -> Option<u64> {
        let (entry, already_seen) = self.apply_and_tell(now, e)?;
        if already_seen || self.cfg.push == PushMode::Off {
            return None;
        }
        let budget = self.delta_budget();
        Some(self.queue.push(
            Topic::Key(entry.key.clone()),
            Traffic::Fresh,
            Item::Delta(entry),
            budget,
        ))
    }

    /// Leaves the cluster: announces `Left` to every live member at once.
    pub fn leave(&mut self, now: Now) {
        self.tick(now);
        let me = self.members.leave();
        let budget = self.budget();
        let seq = self.queue.push(
            Topic::Member(me.info.id.clone()),
            Traffic::Membership,
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
            Traffic::Membership,
            Item::Member(me),
            budget,
        );
        Ok(())
    }
}
