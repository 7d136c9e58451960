//! User events and queries (issue #19): the engine's part that sends them, delivers each
//! once, forwards them down the sender's broadcast tree and repairs what loss took.
//! A query ([`Query`]) travels exactly as an event does: both are a [`Broadcast`], with
//! one id space per sender, one seen set, one rate bucket per sender and one repair
//! mechanism; only what a member does on delivery differs (`engine/queries.rs`).
//!
//! - **Tree push.** The sender owns the ring of every live member (all datacenters:
//!   an event is for everyone, and events are rare and small, so the WAN savings of the
//!   key-value path are not worth a second mechanism) and sends the event to its
//!   children with binomial halving ([`tree_children`], the same function the key-value
//!   tree uses); each receiver forwards it to the children of its span. Only an event
//!   that was news is forwarded, so a replay costs one datagram, not a tree.
//! - **Lazy repair.** Whoever delivers an event queues its id ([`Item::EventHave`]) on
//!   the broadcast queue with [`ID_BUDGET_MULT`] times the retransmit budget, so gossip
//!   rounds carry it to random peers. A member told of an id it has not seen waits the graft timeout, then
//!   asks the teller ([`Item::EventPull`]), up to [`PULL_TRIES`] times, each time of
//!   whoever told it last; the answer is the event without a span, and the receiver
//!   forwards it down the span it holds in the sender's tree ([`span_end_in_tree`]), so
//!   one pull heals a subtree.
//! - **Exactly once.** Delivery is deduplicated by `(sender, seq)` in a seen set bounded
//!   in time (`seen_ms`) and size ([`SEEN_MAX`]); what leaves the set raises its sender's
//!   floor, and a copy below the floor is dropped as stale, never delivered again. The
//!   seen set does not survive a restart, so an event sent before this life began (less
//!   the clock drift bound; a sequence number carries its sender's wall ms) is stale too.
//! - **Checked before anything else is done with it**: bounds, duplicates, then the
//!   sender's signature, then the sender's rate (a token bucket per sender). A refused
//!   event is counted and neither delivered nor forwarded; a forged copy is not marked
//!   seen, so the genuine event still gets through.
//!
//! [`Events`] owns the state and the decisions; the `impl Engine` block at the end is
//! the glue that routes items to it and sends what it decides.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::tree::{span_end_in_tree, tree_children};
use super::{Engine, Event, Output};
use crate::core::dissemination::Topic;
use crate::core::events::{check_event, EventConfig, EventError, EventId, EventStats, UserEvent};
use crate::core::limiter::Traffic;
use crate::core::proto::{encoded_len, Item, DATAGRAM_OVERHEAD};
use crate::core::queries::{check_query, Broadcast, Query, QueryConfig, QueryError, QueryFilter};
use crate::core::{NodeId, Now};

/// Repair requests per missing event before it is given up (counted).
pub const PULL_TRIES: u32 = 5;
/// Most ids remembered as seen, all senders together; beyond it the oldest leave early
/// (their senders' floors rise, so they still count as seen).
pub const SEEN_MAX: usize = 65_536;
/// Most missing events waiting for a repair at once; beyond it new ids are dropped.
const PULL_MAX: usize = 4_096;
/// Token bucket units per event (integer arithmetic keeps runs reproducible).
const UNIT: u64 = 1_000_000;
/// An event's id is sent this many times the membership retransmit budget by each
/// member that delivers it, and not cut by bandwidth back-off. Unlike a write, an event
/// has no anti-entropy behind it: a member that hears no id of an event whose tree copy
/// was lost never gets it. With a budget of B sends per member spread over N members at
/// 10 % loss, a member hears none with probability about e^(−0.9·B); at the delta
/// budget (B = 8 for N = 50) that was 1 in 1,300 (one miss in 5,000 deliveries,
/// measured), at 3 × it is below 1 in 10^9, for about 25 bytes per send.
pub const ID_BUDGET_MULT: u32 = 3;

#[derive(Debug, Clone, Default)]
struct Seen {
    /// Every sequence number below it counts as seen.
    floor: u64,
    /// Sequence numbers at or above the floor that were seen.
    recent: BTreeSet<u64>,
}

#[derive(Debug, Clone)]
struct Pull {
    /// Who told us of the id last (asked next).
    from: NodeId,
    tries: u32,
}

/// A sender's token bucket (units of 1/[`UNIT`] event).
#[derive(Debug, Clone)]
struct Bucket {
    tokens: u64,
    at_us: u64,
}

/// The state of user events at one node, and the decisions about them.
#[derive(Debug, Clone)]
pub(super) struct Events {
    cfg: EventConfig,
    /// Longest timeout a query may carry (`queries.max_timeout_ms`).
    max_query_timeout_ms: u64,
    /// Wall ms when this life of the node began, less the clock drift bound: an event
    /// sent before it (by the time its sequence number carries) may have been delivered
    /// by an earlier life, whose seen set is gone, so it is stale.
    life_floor_ms: u64,
    next_seq: u64,
    seen: BTreeMap<NodeId, Seen>,
    /// Ids in the seen set, oldest first, with when they entered it (µs).
    seen_order: VecDeque<(u64, EventId)>,
    /// Events and queries held to answer repair requests, oldest first in `kept_order`.
    kept: BTreeMap<EventId, Broadcast>,
    kept_order: VecDeque<(u64, EventId)>,
    pending: BTreeMap<EventId, Pull>,
    due: BTreeSet<(u64, EventId)>,
    buckets: BTreeMap<NodeId, Bucket>,
    stats: EventStats,
    /// The same counters for queries.
    query_stats: EventStats,
}

impl Events {
    /// The part of a node whose life began at `start_wall_ms`, with clocks trusted to
    /// `drift_ms`.
    pub(super) fn new(cfg: EventConfig, start_wall_ms: u64, drift_ms: u64) -> Self {
        Self {
            cfg,
            max_query_timeout_ms: QueryConfig::default().max_timeout_ms,
            life_floor_ms: start_wall_ms.saturating_sub(drift_ms),
            next_seq: 1,
            seen: BTreeMap::new(),
            seen_order: VecDeque::new(),
            kept: BTreeMap::new(),
            kept_order: VecDeque::new(),
            pending: BTreeMap::new(),
            due: BTreeSet::new(),
            buckets: BTreeMap::new(),
            stats: EventStats::default(),
            query_stats: EventStats::default(),
        }
    }

    /// Queries may carry timeouts up to `ms` (`queries.max_timeout_ms`).
    pub(super) fn with_max_query_timeout(mut self, ms: u64) -> Self {
        self.max_query_timeout_ms = ms;
        self
    }

    pub(super) fn stats(&self) -> &EventStats {
        &self.stats
    }

    /// How queries travelled: the counters of events, for queries.
    pub(super) fn query_stats(&self) -> &EventStats {
        &self.query_stats
    }

    /// The counters of `b`'s kind.
    fn counts(&mut self, b: &Broadcast) -> &mut EventStats {
        match b {
            Broadcast::Event(_) => &mut self.stats,
            Broadcast::Query(_) => &mut self.query_stats,
        }
    }

    /// Takes a token of `sender`'s bucket; false when it is empty.
    fn admit(&mut self, now_us: u64, sender: &NodeId) -> bool {
        let cap = self.cfg.per_sender_burst as u64 * UNIT;
        let rate = self.cfg.per_sender_per_sec as u64; // units per µs: UNIT per second
        let b = self.buckets.entry(sender.clone()).or_insert(Bucket {
            tokens: cap,
            at_us: now_us,
        });
        let refill = now_us.saturating_sub(b.at_us).saturating_mul(rate);
        b.tokens = b.tokens.saturating_add(refill).min(cap);
        b.at_us = b.at_us.max(now_us);
        if b.tokens < UNIT {
            return false;
        }
        b.tokens -= UNIT;
        true
    }

    /// A new event of ours, not signed yet: bounds and our own rate checked, the next
    /// sequence number taken (above `wall ms << 10`, so a restart never reuses one).
    pub(super) fn create(
        &mut self,
        now: Now,
        me: &NodeId,
        name: &str,
        payload: Vec<u8>,
    ) -> Result<UserEvent, EventError> {
        check_event(name, payload.len(), self.cfg.max_payload)?;
        let Some(seq) = self.take_seq(now, me) else {
            self.stats.send_refused += 1;
            return Err(EventError::RateLimited {
                per_sec: self.cfg.per_sender_per_sec,
                burst: self.cfg.per_sender_burst,
            });
        };
        self.stats.sent += 1;
        Ok(UserEvent {
            sender: me.clone(),
            seq,
            name: name.to_string(),
            payload,
            sig: Default::default(),
        })
    }

    /// A new query of ours, not signed yet: bounds (an event's, the filter's and the
    /// timeout's) and our own rate (the one events have) checked, the next sequence
    /// number of the sequence events use taken.
    pub(super) fn create_query(
        &mut self,
        now: Now,
        me: &NodeId,
        name: &str,
        payload: Vec<u8>,
        filter: QueryFilter,
        timeout_ms: u64,
    ) -> Result<Query, QueryError> {
        let (max, max_ms) = (self.cfg.max_payload, self.max_query_timeout_ms);
        check_query(name, payload.len(), &filter, timeout_ms, max, max_ms)?;
        let Some(seq) = self.take_seq(now, me) else {
            self.query_stats.send_refused += 1;
            return Err(QueryError::RateLimited {
                per_sec: self.cfg.per_sender_per_sec,
                burst: self.cfg.per_sender_burst,
            });
        };
        self.query_stats.sent += 1;
        Ok(Query {
            asker: me.clone(),
            seq,
            name: name.to_string(),
            payload,
            filter,
            timeout_ms,
            sig: Default::default(),
        })
    }

    /// Our next sequence number (above `wall ms << 10`, so a restart never reuses one),
    /// if our own rate allows one more event or query.
    fn take_seq(&mut self, now: Now, me: &NodeId) -> Option<u64> {
        if !self.admit(now.mono_us, me) {
            return None;
        }
        let seq = self.next_seq.max(now.wall_ms.saturating_mul(1 << 10));
        self.next_seq = seq.saturating_add(1);
        Some(seq)
    }

    fn is_seen(&self, id: &EventId) -> bool {
        self.seen
            .get(&id.0)
            .is_some_and(|s| id.1 < s.floor || s.recent.contains(&id.1))
    }

    fn is_stale(&self, id: &EventId) -> bool {
        self.seen.get(&id.0).is_some_and(|s| id.1 < s.floor)
    }

    fn mark_seen(&mut self, now_us: u64, id: &EventId) {
        let s = self.seen.entry(id.0.clone()).or_default();
        if id.1 < s.floor || !s.recent.insert(id.1) {
            return;
        }
        self.seen_order.push_back((now_us, id.clone()));
        if self.seen_order.len() > SEEN_MAX {
            self.forget_oldest_seen();
        }
        self.pending.remove(id);
    }

    fn forget_oldest_seen(&mut self) {
        let Some((_, (sender, seq))) = self.seen_order.pop_front() else {
            return;
        };
        if let Some(s) = self.seen.get_mut(&sender) {
            s.recent.remove(&seq);
            s.floor = s.floor.max(seq.saturating_add(1));
            // Everything below the floor counts as seen already.
            s.recent = s.recent.split_off(&s.floor);
        }
    }

    fn keep(&mut self, now_us: u64, b: &Broadcast) {
        if self.kept.insert(b.id(), b.clone()).is_none() {
            self.kept_order.push_back((now_us, b.id()));
        }
        while self.kept_order.len() > self.cfg.keep {
            if let Some((_, id)) = self.kept_order.pop_front() {
                self.kept.remove(&id);
            }
        }
    }

    /// Our own event or query, signed: seen, held for repair and delivered.
    pub(super) fn accept_own(&mut self, now_us: u64, b: &Broadcast) {
        self.mark_seen(now_us, &b.id());
        self.keep(now_us, b);
        self.counts(b).delivered += 1;
    }

    /// An event or query from a peer: true if it is to be delivered and forwarded.
    /// `verify` checks the sender's signature; it runs only for one within bounds that
    /// we have not seen, and before the sender's rate is charged (a forgery must not
    /// spend an honest sender's tokens).
    pub(super) fn receive(
        &mut self,
        now_us: u64,
        b: &Broadcast,
        verify: impl FnOnce(&Broadcast) -> bool,
    ) -> bool {
        let id = b.id();
        let within = match b {
            Broadcast::Event(e) => e.check(self.cfg.max_payload).is_ok(),
            Broadcast::Query(q) => q
                .check(self.cfg.max_payload, self.max_query_timeout_ms)
                .is_ok(),
        };
        if !within {
            self.counts(b).oversized += 1;
            return false;
        }
        // A sequence number is at least its sender's wall ms << 10 when it sent.
        if self.is_stale(&id) || (id.1 >> 10) < self.life_floor_ms {
            self.counts(b).stale += 1;
            return false;
        }
        if self.is_seen(&id) {
            self.counts(b).duplicates += 1;
            return false;
        }
        if !verify(b) {
            self.counts(b).bad_signature += 1;
            return false;
        }
        // Seen either way: a capped event is not asked for again.
        self.mark_seen(now_us, &id);
        if !self.admit(now_us, &id.0) {
            self.counts(b).rate_limited += 1;
            return false;
        }
        self.keep(now_us, b);
        self.counts(b).delivered += 1;
        true
    }

    /// `from` holds the event `id`: if we have not seen it, ask for it after
    /// `delay_us` (the tree may still bring it).
    pub(super) fn heard(&mut self, now_us: u64, from: &NodeId, id: EventId, delay_us: u64) {
        if self.is_seen(&id) {
            return;
        }
        if let Some(p) = self.pending.get_mut(&id) {
            p.from = from.clone();
            return;
        }
        if self.pending.len() >= PULL_MAX {
            self.stats.pulls_dropped += 1;
            return;
        }
        self.due.insert((now_us + delay_us, id.clone()));
        self.pending.insert(
            id,
            Pull {
                from: from.clone(),
                tries: 0,
            },
        );
    }

    /// The event or query `id` if we still hold it, for a repair request.
    pub(super) fn answer(&mut self, id: &EventId) -> Option<Broadcast> {
        let b = self.kept.get(id).cloned()?;
        self.counts(&b).pulls_answered += 1;
        Some(b)
    }

    /// The repair requests due now, to whom (the teller that told us last). The caller
    /// schedules each again with [`Events::retry_at`] until it is answered or has been
    /// asked [`PULL_TRIES`] times.
    pub(super) fn due_pulls(&mut self, now_us: u64) -> Vec<(NodeId, EventId)> {
        let mut asks = Vec::new();
        while let Some((at, id)) = self.due.first().cloned() {
            if at > now_us {
                break;
            }
            self.due.remove(&(at, id.clone()));
            let Some(p) = self.pending.get_mut(&id) else {
                continue;
            };
            if p.tries >= PULL_TRIES {
                self.pending.remove(&id);
                self.stats.pulls_abandoned += 1;
                continue;
            }
            p.tries += 1;
            self.stats.pulls_sent += 1;
            asks.push((p.from.clone(), id));
        }
        asks
    }

    /// Asks for `id` again at `at_us` if it is still missing then.
    pub(super) fn retry_at(&mut self, at_us: u64, id: EventId) {
        self.due.insert((at_us, id));
    }

    /// Forgets ids past `seen_ms` and held events past `keep_ms`.
    pub(super) fn expire(&mut self, now_us: u64) {
        let seen_us = self.cfg.seen_ms * 1000;
        while self
            .seen_order
            .front()
            .is_some_and(|(t, _)| t + seen_us <= now_us)
        {
            self.forget_oldest_seen();
        }
        let keep_us = self.cfg.keep_ms * 1000;
        while let Some((t, id)) = self.kept_order.front().cloned() {
            if t + keep_us > now_us {
                break;
            }
            self.kept_order.pop_front();
            self.kept.remove(&id);
        }
    }

    /// When [`Events::due_pulls`] or [`Events::expire`] must next run (µs).
    pub(super) fn deadline(&self) -> Option<u64> {
        let pull = self.due.first().map(|(t, _)| *t);
        let seen = self
            .seen_order
            .front()
            .map(|(t, _)| t + self.cfg.seen_ms * 1000);
        let kept = self
            .kept_order
            .front()
            .map(|(t, _)| t + self.cfg.keep_ms * 1000);
        [pull, seen, kept].into_iter().flatten().min()
    }

    /// Drops the buckets and floors of senders `keep` no longer wants (departed
    /// members), so the maps stay bounded by the member table.
    pub(super) fn prune(&mut self, keep: impl Fn(&NodeId) -> bool) {
        self.buckets.retain(|id, _| keep(id));
        self.seen.retain(|id, s| keep(id) || !s.recent.is_empty());
    }
}

impl Engine {
    /// Sends a user event from this node to every live member (ourselves included:
    /// our subscribers get it too). Refused when the name or payload break the bounds or
    /// we exceed our own rate (`gossip.events`).
    pub fn send_event(
        &mut self,
        now: Now,
        name: &str,
        payload: Vec<u8>,
    ) -> Result<EventId, EventError> {
        self.tick(now);
        let me = self.id().clone();
        let mut e = self.events.create(now, &me, name, payload)?;
        self.authorship.sign_event(&mut e);
        let b = Broadcast::Event(e);
        self.events.accept_own(now.mono_us, &b);
        self.event_forward(&b, &me);
        self.event_announce(&b);
        let id = b.id();
        if let Broadcast::Event(e) = b {
            self.out.push_back(Output::Event(Event::User(e)));
        }
        Ok(id)
    }

    /// Sends a query of ours down our tree, as an event: signed, seen, held for repair,
    /// forwarded and announced. Returns it (signed) for the asker's bookkeeping.
    pub(super) fn broadcast_query(&mut self, now: Now, mut q: Query) -> Query {
        self.authorship.sign_query(&mut q);
        let me = self.id().clone();
        let b = Broadcast::Query(q.clone());
        self.events.accept_own(now.mono_us, &b);
        self.event_forward(&b, &me);
        self.event_announce(&b);
        q
    }

    /// Counters of user events.
    pub fn event_stats(&self) -> &EventStats {
        self.events.stats()
    }

    /// How queries travelled: the counters of user events, for queries (drops of
    /// forged, flooded, oversized and duplicate queries among them). Repairs of both
    /// are counted with events.
    pub fn query_delivery_stats(&self) -> &EventStats {
        self.events.query_stats()
    }

    /// A user event or query from a peer: a tree copy (`until` ends our span) or a
    /// repair answer (`None`: we forward it down the span we hold in the sender's
    /// tree). Checked, forwarded and announced alike; then an event is delivered and a
    /// query handed to the queries part (which answers it if it is for us).
    pub(super) fn on_broadcast(&mut self, now: Now, b: Broadcast, until: Option<NodeId>) {
        let authorship = &mut self.authorship;
        let verify = |b: &Broadcast| match b {
            Broadcast::Event(e) => authorship.verify_event(e).is_ok(),
            Broadcast::Query(q) => authorship.verify_query(q).is_ok(),
        };
        if !self.events.receive(now.mono_us, &b, verify) {
            return;
        }
        let until = until.or_else(|| span_end_in_tree(&self.event_ring(), b.sender(), self.id()));
        if let Some(until) = until {
            self.event_forward(&b, &until);
        }
        self.event_announce(&b);
        match b {
            Broadcast::Event(e) => self.out.push_back(Output::Event(Event::User(e))),
            Broadcast::Query(q) => self.query_delivered(q),
        }
    }

    /// `from` holds the event `(sender, seq)`.
    pub(super) fn on_event_have(&mut self, from: &NodeId, sender: NodeId, seq: u64) {
        let delay = self.graft_delay_us(from);
        self.events.heard(self.clock_us, from, (sender, seq), delay);
    }

    /// `from` asks for the event `(sender, seq)`: sent back without a span.
    pub(super) fn on_event_pull(&mut self, from: &NodeId, sender: NodeId, seq: u64) {
        if let Some(b) = self.events.answer(&(sender, seq)) {
            self.event_send(from, tree_item(b, None), Traffic::Retransmit);
        }
    }

    /// Repair requests due, expiry of ids and held events, and pruning of departed
    /// senders' state.
    pub(super) fn event_timers(&mut self) {
        self.query_timers();
        let now = self.clock_us;
        self.events.expire(now);
        let asks = self.events.due_pulls(now);
        for (to, (sender, seq)) in asks {
            // Asked again after the graft timeout (at least twice the round trip): the
            // request or its answer was lost, or the teller no longer held it.
            let at = now + self.graft_delay_us(&to);
            self.events.retry_at(at, (sender.clone(), seq));
            self.event_send(&to, Item::EventPull { sender, seq }, Traffic::Retransmit);
        }
    }

    /// When the events part (queries' deadlines included) must next run (µs).
    pub(super) fn event_deadline(&self) -> Option<u64> {
        [self.events.deadline(), self.query_deadline()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Drops the state kept for senders that are no longer members.
    pub(super) fn event_prune(&mut self) {
        let members = &self.members;
        let me = members.my_id().clone();
        self.events
            .prune(|id| *id == me || members.get(id).is_some());
    }

    /// The ring of an event's tree: every live member and us, sorted by id.
    fn event_ring(&self) -> Vec<NodeId> {
        let mut ring: Vec<NodeId> = self.members.live_ids().to_vec();
        ring.push(self.id().clone());
        ring.sort();
        ring
    }

    /// Sends `b` to our children for the span `(us, until)`.
    fn event_forward(&mut self, b: &Broadcast, until: &NodeId) {
        let ring = self.event_ring();
        for (child, lim) in tree_children(&ring, self.id(), until) {
            self.event_send(&child, tree_item(b.clone(), Some(lim)), Traffic::Fresh);
        }
    }

    /// Queues `b`'s id for the gossip rounds (lazy push), with [`ID_BUDGET_MULT`] times
    /// the membership budget.
    fn event_announce(&mut self, b: &Broadcast) {
        let budget = self.budget() * ID_BUDGET_MULT;
        let (sender, seq) = b.id();
        self.queue.push(
            Topic::Event(sender.clone(), seq),
            Traffic::Announce,
            Item::EventHave { sender, seq },
            budget,
        );
    }

    /// One item to one member, on a stream if it is too large for a datagram.
    pub(super) fn event_send(&mut self, to: &NodeId, item: Item, class: Traffic) {
        let Some(addr) = self.addr_of(to) else {
            return;
        };
        let reliable = encoded_len(&item) + DATAGRAM_OVERHEAD > self.cfg.max_datagram;
        self.emit(to, addr, vec![(item, class)], reliable);
    }
}

/// The item carrying `b` down a tree (`until` ends the receiver's span) or as a repair
/// answer (`None`).
fn tree_item(b: Broadcast, until: Option<NodeId>) -> Item {
    match b {
        Broadcast::Event(event) => Item::Event { event, until },
        Broadcast::Query(query) => Item::Query { query, until },
    }
}

#[cfg(test)]
mod tests;
