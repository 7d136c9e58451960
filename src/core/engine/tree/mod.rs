//! Tree push with lazy repair: how key-value updates spread when
//! [`Config::push`](super::Config::push) is [`PushMode::Tree`](super::PushMode::Tree) (the default).
//!
//! - **Eager push down a broadcast tree.** The members a write is pushed to (our
//!   datacenter with locality, everyone without) form a ring sorted by id. The writer
//!   owns the whole ring and sends the update to about log₂ N children, halving its span
//!   each time: the first child gets the far half, the next a quarter, and so on. Each
//!   [`Item::Tree`] names where the receiver's span ends (`until`, an id), and every
//!   receiver splits its span the same way. With agreeing views every member receives
//!   the update exactly once, after at most ⌈log₂ N⌉ hops. Spans are bounded by ids,
//!   not by counts, so members that only some views hold still fall in somebody's span;
//!   a child our table no longer holds alive has its span split by us instead. Only an
//!   update that was news is forwarded (or one that reached us first by anti-entropy or
//!   a graft, once): a replayed item costs one datagram, not a tree.
//! - **Lazy push of ids.** Whoever learns an update queues its id ([`Item::IHave`]:
//!   writer and dot counter, about 20 bytes) with the retransmit budget; gossip rounds
//!   carry these ids to random peers, and tree datagrams carry them in their spare room.
//! - **Graft.** A member told of an id it lacks waits `graft_timeout_ms` (the tree may
//!   still be on its way), then asks the announcer for it ([`Item::Graft`]) and gets the
//!   entry as an [`Item::Delta`]. A graft unanswered is retried, up to [`GRAFT_TRIES`]
//!   times, after twice the round trip (at least a quarter of the graft timeout), with
//!   whoever announced the id last; after that anti-entropy repairs. Under loss an id
//!   told by our own parent in the writer's tree waits only a retry's time: its copy
//!   was lost, not late (`repair_rounds.rs`).
//! - **Subtree heal.** A grafted update's tree copy was lost on the way to us or above
//!   us, so our whole span lacks it: we compute the span we hold in the writer's tree
//!   ([`span_end_in_tree`]) and forward the update down it at once, so one graft heals
//!   the subtree.
//!
//! A lost or refused tree datagram therefore costs its subtree one gossip round and a
//! round trip, not the update. Payloads travel about once per member (the figure the
//! benchmarks call copies per update); only the small ids are repeated. Deltas that
//! arrive from another datacenter (the writer's relays, see `locality.rs`) start a tree
//! of their own at home.

mod pack;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::{Config, Engine, PushMode};
use crate::core::dissemination::Topic;
use crate::core::limiter::Traffic;
use crate::core::membership::Membership;
use crate::core::proto::{encoded_len, Item, DATAGRAM_OVERHEAD};
use crate::core::state::{CausalContext, Entry};
use crate::core::NodeId;

/// Most ids waiting to be grafted at once; beyond it new ones are dropped (counted) and
/// left to anti-entropy.
const GRAFT_MAX: usize = 4_096;
/// Graft requests per missing id before giving up to anti-entropy (an id announced again
/// later starts over).
pub const GRAFT_TRIES: u32 = 5;
/// A graft retry waits this fraction of the graft timeout (or twice the round trip).
const GRAFT_RETRY_DIV: u64 = 4;
/// Oversized entries (sent on a reliable stream) answered per graft datagram.
const GRAFT_OVERSIZED_MAX: usize = 2;
/// How deep a dead child's span is split by us before we give it up to lazy repair.
const DEAD_CHILD_DEPTH: u32 = 8;

/// A write's id: writer and dot counter.
type Dot = (NodeId, u64);

/// Tree datagrams being assembled, per child.
pub(super) type Batches = BTreeMap<NodeId, Vec<Item>>;

#[derive(Debug, Clone)]
struct PendingGraft {
    /// Who announced it last (asked next).
    from: NodeId,
    tries: u32,
    /// When it is next asked for (mono µs; its entry in `Lazy::due`).
    due_us: u64,
}

/// The tree's lazy repair, a part of the engine: ids we were told of and lack (grafted
/// when the tree does not bring them in time), and updates that reached us before their
/// tree did. The tree push itself keeps no state: it is a function of Locality's ring.
#[derive(Debug, Clone, Default)]
pub(super) struct Lazy {
    pending: BTreeMap<Dot, PendingGraft>,
    due: BTreeSet<(u64, Dot)>,
    /// Updates we learned by anti-entropy or a graft whose tree copy has not come yet
    /// (bounded, oldest forgotten first): that copy is still forwarded down our span.
    elsewhere: BTreeSet<Dot>,
    elsewhere_order: VecDeque<Dot>,
}

/// Most updates remembered as learned outside the tree.
const ELSEWHERE_MAX: usize = 4_096;

/// The id of `e`'s winning write.
pub(super) fn dot_of(e: &Entry) -> Dot {
    (e.writer.clone(), e.vv.get(&e.writer))
}

/// The children of `me` for its span `(me, until)` of `ring` (sorted, holding `me`), each
/// with the end of its own span: binomial halving, the largest part first.
pub(super) fn tree_children(ring: &[NodeId], me: &NodeId, until: &NodeId) -> Vec<(NodeId, NodeId)> {
    let n = ring.len();
    let Ok(pos) = ring.binary_search(me) else {
        return Vec::new();
    };
    // Ring positions pos+1, pos+2, ... (wrapping) up to, not including, `until`.
    let m = if until == me {
        n - 1
    } else {
        let u = match ring.binary_search(until) {
            Ok(i) | Err(i) => i,
        };
        (u + 2 * n - pos - 1) % n
    };
    let at = |i: usize| ring[(pos + 1 + i) % n].clone();
    let mut out = Vec::new();
    let mut hi = m;
    let mut lim = until.clone();
    while hi > 0 {
        let c = hi / 2;
        let child = at(c);
        out.push((child.clone(), lim));
        lim = child;
        hi = c;
    }
    out
}

/// The end of `me`'s span in the tree rooted at `root` over `ring` (sorted): what
/// `me` would have been sent as `until` had the tree copy arrived. `None` if either is
/// not in the ring, or `me` is the root. O(log n), following [`tree_children`]'s
/// halving down from the root.
pub(super) fn span_end_in_tree(ring: &[NodeId], root: &NodeId, me: &NodeId) -> Option<NodeId> {
    place_in_tree(ring, root, me).map(|(_, until)| until)
}

/// Who pushes `me` its copy in the tree rooted at `root` over `ring` (sorted): `None`
/// as for [`span_end_in_tree`].
pub(super) fn parent_in_tree(ring: &[NodeId], root: &NodeId, me: &NodeId) -> Option<NodeId> {
    place_in_tree(ring, root, me).map(|(parent, _)| parent)
}

/// `me`'s parent and the end of its span in the tree rooted at `root` over `ring`.
fn place_in_tree(ring: &[NodeId], root: &NodeId, me: &NodeId) -> Option<(NodeId, NodeId)> {
    let n = ring.len();
    let root_pos = ring.binary_search(root).ok()?;
    let my_pos = ring.binary_search(me).ok()?;
    if root_pos == my_pos {
        return None;
    }
    // The current subtree's root sits at `base`; its span holds offsets 0..hi after it,
    // and we are at offset t (t < hi). Its children sit at offsets hi/2, hi/4, ..., each
    // spanning up to the previous one.
    let mut base = root_pos;
    let mut t = (my_pos + n - root_pos - 1) % n;
    let mut hi = n - 1;
    loop {
        let mut c = hi / 2;
        while c > t {
            hi = c;
            c = hi / 2;
        }
        if c == t {
            return Some((ring[base].clone(), ring[(base + 1 + hi) % n].clone()));
        }
        base = (base + 1 + c) % n;
        t -= c + 1;
        hi -= c + 1;
    }
}

/// How long to give the tree before grafting an id announced by a peer whose round
/// trip is `rtt_us`: the graft timeout, or two round trips if that is longer.
pub(super) fn graft_delay_us(cfg: &Config, rtt_us: Option<u64>) -> u64 {
    (cfg.graft_timeout_ms * 1000).max(2 * rtt_us.unwrap_or(0))
}

/// How long to wait for a graft's answer from a peer whose round trip is `rtt_us`
/// before asking again: twice the round trip, at least a quarter of the graft timeout,
/// since by then the tree copy is overdue and only the graft's own round trip is waited
/// for. While `backed_off`, bandwidth is short and a retry may only duplicate an answer
/// still queued: the whole [`graft_delay_us`].
pub(super) fn graft_retry_us(cfg: &Config, rtt_us: Option<u64>, backed_off: bool) -> u64 {
    let div = if backed_off { 1 } else { GRAFT_RETRY_DIV };
    (cfg.graft_timeout_ms * 1000 / div).max(2 * rtt_us.unwrap_or(0))
}

/// The live children of `from`'s span `(from, until)` of `ring`, never us; a child no
/// longer alive in `members` has its own span split in its place.
fn tree_targets(
    ring: &[NodeId],
    members: &Membership,
    from: &NodeId,
    until: &NodeId,
    out: &mut Vec<(NodeId, NodeId)>,
    depth: u32,
) {
    for (child, lim) in tree_children(ring, from, until) {
        if &child == members.my_id() {
            continue;
        }
        if members.is_live(&child) {
            out.push((child, lim));
        } else if depth < DEAD_CHILD_DEPTH {
            tree_targets(ring, members, &child, &lim, out, depth + 1);
        }
    }
}

/// The graft requests for `dots`, packed into datagrams of at most `max` bytes.
fn graft_datagrams(dots: Vec<Dot>, max: usize) -> Vec<Vec<Item>> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    let mut used = DATAGRAM_OVERHEAD;
    for (writer, counter) in dots {
        let item = Item::Graft { writer, counter };
        let len = encoded_len(&item);
        if used + len > max {
            out.push(std::mem::take(&mut cur));
            used = DATAGRAM_OVERHEAD;
        }
        used += len;
        cur.push(item);
    }
    out.push(cur);
    out
}

/// What an announced id did to the lazy repair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Told {
    /// We hold the write already (or the id is void).
    Held,
    /// Already waiting for it: the teller is asked next.
    Retold,
    /// Too many ids waiting: left to anti-entropy.
    Dropped,
    /// New: it is grafted if the tree has not brought it in time.
    Missing,
}

impl Lazy {
    /// Notes that `e` reached us outside its tree (anti-entropy, a graft): if its tree
    /// copy comes later, we still forward it down our span.
    pub(super) fn learned_elsewhere(&mut self, e: &Entry) {
        let dot = dot_of(e);
        if self.elsewhere.insert(dot.clone()) {
            self.elsewhere_order.push_back(dot);
            if self.elsewhere_order.len() > ELSEWHERE_MAX {
                if let Some(old) = self.elsewhere_order.pop_front() {
                    self.elsewhere.remove(&old);
                }
            }
        }
    }

    /// True (once) if the tree copy of `e` should be forwarded although `e` was not news:
    /// it reached us outside the tree first.
    pub(super) fn take_elsewhere(&mut self, e: &Entry) -> bool {
        self.elsewhere.remove(&dot_of(e))
    }

    /// `from` holds the write `(writer, counter)`: unless `held` has it, it is grafted
    /// at `now_us + delay_us(from)`, when the tree has had time to bring it; an id not
    /// asked for yet is asked for sooner if `from`'s word makes it due sooner.
    pub(super) fn on_ihave(
        &mut self,
        held: &CausalContext,
        now_us: u64,
        from: &NodeId,
        (writer, counter): Dot,
        delay_us: impl Fn(&NodeId) -> u64,
    ) -> Told {
        if held.contains(&writer, counter) || counter == 0 {
            return Told::Held;
        }
        let dot = (writer, counter);
        if let Some(p) = self.pending.get_mut(&dot) {
            p.from = from.clone();
            let sooner = now_us + delay_us(from);
            if p.tries == 0 && sooner < p.due_us {
                self.due.remove(&(p.due_us, dot.clone()));
                self.due.insert((sooner, dot));
                p.due_us = sooner;
            }
            return Told::Retold;
        }
        if self.pending.len() >= GRAFT_MAX {
            return Told::Dropped;
        }
        let due = now_us + delay_us(from);
        self.due.insert((due, dot.clone()));
        self.pending.insert(
            dot,
            PendingGraft {
                from: from.clone(),
                tries: 0,
                due_us: due,
            },
        );
        Told::Missing
    }

    /// The grafts due by `now_us`, by whom to ask, each rescheduled `retry_us(teller)`
    /// later; ids `held` now holds are forgotten, and ids asked [`GRAFT_TRIES`] times
    /// are given up to anti-entropy (counted in the second value).
    pub(super) fn due_grafts(
        &mut self,
        held: &CausalContext,
        now_us: u64,
        retry_us: impl Fn(&NodeId) -> u64,
    ) -> (BTreeMap<NodeId, Vec<Dot>>, u64) {
        let mut asks: BTreeMap<NodeId, Vec<Dot>> = BTreeMap::new();
        let mut abandoned = 0;
        while let Some((due, dot)) = self.due.first().cloned() {
            if due > now_us {
                break;
            }
            self.due.remove(&(due, dot.clone()));
            if held.contains(&dot.0, dot.1) {
                self.pending.remove(&dot);
                continue;
            }
            let Some(p) = self.pending.get(&dot).cloned() else {
                continue;
            };
            if p.tries >= GRAFT_TRIES {
                self.pending.remove(&dot);
                abandoned += 1;
                continue;
            }
            // The request or its answer was lost, or the teller no longer had it.
            let next = now_us + retry_us(&p.from);
            self.due.insert((next, dot.clone()));
            self.pending.insert(
                dot.clone(),
                PendingGraft {
                    from: p.from.clone(),
                    tries: p.tries + 1,
                    due_us: next,
                },
            );
            asks.entry(p.from).or_default().push(dot);
        }
        (asks, abandoned)
    }

    /// When the next graft is due (mono µs).
    pub(super) fn deadline(&self) -> Option<u64> {
        self.due.first().map(|(t, _)| *t)
    }

    /// Ids waiting to be grafted.
    pub(super) fn pending(&self) -> usize {
        self.pending.len()
    }

    /// The due time recorded for a pending id (tests).
    #[cfg(test)]
    fn due_of(&self, writer: &NodeId, counter: u64) -> Option<u64> {
        let dot = (writer.clone(), counter);
        self.due.iter().find(|(_, d)| *d == dot).map(|(t, _)| *t)
    }
}

// Routing: tree pushes and lazy repair between the datagrams, the store, the
// `Lazy` part and the broadcast tree's ring (from `Locality`).
impl Engine {
    /// True when updates travel by tree push and lazy repair.
    pub(super) fn tree_mode(&self) -> bool {
        self.cfg.push == PushMode::Tree
    }

    /// Notes that `e` reached us outside its tree (see [`Lazy::learned_elsewhere`]).
    pub(super) fn learned_elsewhere(&mut self, e: &Entry) {
        if self.tree_mode() {
            self.lazy.learned_elsewhere(e);
        }
    }

    /// True (once) if the tree copy of `e` should be forwarded although `e` was not news
    /// (see [`Lazy::take_elsewhere`]).
    pub(super) fn take_elsewhere(&mut self, e: &Entry) -> bool {
        self.lazy.take_elsewhere(e)
    }

    /// Queues the id of `e`'s winning write for the gossip rounds (lazy push).
    pub(super) fn announce(&mut self, e: &Entry) {
        let (writer, counter) = dot_of(e);
        let budget = self.delta_budget();
        self.queue.push(
            Topic::Key(e.key.clone()),
            Traffic::Announce,
            Item::IHave { writer, counter },
            budget,
        );
        self.pull_repair_round();
    }

    /// Adds `entry` to the datagrams for our children in the span `(us, until)`.
    pub(super) fn tree_forward(&mut self, batches: &mut Batches, entry: &Entry, until: &NodeId) {
        self.refresh_view();
        let mut targets = Vec::new();
        tree_targets(
            self.loc.ring(),
            &self.members,
            self.members.my_id(),
            until,
            &mut targets,
            0,
        );
        let owe = self.owes_ids_for(entry);
        for (child, lim) in targets {
            if owe {
                self.owe_id(&child, dot_of(entry));
            }
            batches.entry(child).or_default().push(Item::Tree {
                entry: entry.clone(),
                until: lim,
            });
        }
    }

    /// Sends the assembled tree datagrams; their spare room carries queued gossip
    /// (membership, ids).
    pub(super) fn send_tree_batches(&mut self, batches: Batches) {
        let max = self.cfg.max_datagram;
        for (child, items) in batches {
            let Some(addr) = self.addr_of(&child) else {
                continue;
            };
            self.stats.tree_sent += items.len() as u64;
            let packed = pack::pack(items, max);
            for item in packed.oversized {
                self.emit(&child, addr.clone(), vec![(item, Traffic::Fresh)], true);
            }
            for datagram in packed.full {
                let items = datagram.into_iter().map(|i| (i, Traffic::Fresh)).collect();
                self.emit(&child, addr.clone(), items, false);
            }
            let (mut cur, used): (Vec<(Item, Traffic)>, usize) = (
                packed
                    .last
                    .into_iter()
                    .map(|i| (i, Traffic::Fresh))
                    .collect(),
                packed.last_len,
            );
            if cur.is_empty() {
                continue;
            }
            let taken = used - DATAGRAM_OVERHEAD;
            let caps = self.caps(&child).map(|c| c.saturating_sub(taken));
            let far = self.crosses_dc(&child);
            let fill = self.queue.pack_classified(max - taken, caps, &[], |item| {
                (far && item.is_data()) || matches!(item, Item::Member(s) if s.info.id == child)
            });
            cur.extend(fill);
            self.emit(&child, addr, cur, false);
        }
    }

    /// A graft brought us `e`, so its tree copy was lost on the way to us or above us,
    /// and our subtree lacks it too: forward it down the span we hold in the writer's
    /// tree (computed from our view of the ring), so that one graft heals the subtree
    /// instead of every member of it grafting on its own. Nothing when the writer is
    /// not in our ring (another datacenter's tree) or is us.
    pub(super) fn heal_subtree(&mut self, batches: &mut Batches, e: &Entry) {
        self.refresh_view();
        let Some(until) = span_end_in_tree(self.loc.ring(), &e.writer, self.id()) else {
            return;
        };
        // Forwarded now: a late tree copy is not forwarded again.
        self.lazy.take_elsewhere(e);
        self.stats.subtrees_healed += 1;
        self.tree_forward(batches, e, &until);
    }

    /// Someone holds the write `(writer, counter)`: if we lack it, ask for it once the
    /// tree has had time to bring it (see [`Lazy::on_ihave`]). Under loss (repair rounds
    /// on), an id told by our own parent in the writer's tree means the copy was lost,
    /// not late: the parent sent it before the id, on the same path, so only a retry's
    /// wait is left to give it (a reordered datagram). Not without loss: a copy too large
    /// for a datagram goes on a stream and may come after the id.
    pub(super) fn on_ihave(&mut self, from: &NodeId, writer: NodeId, counter: u64) {
        let lossy = self.repairing();
        if lossy && !self.store.context().contains(&writer, counter) {
            self.refresh_view();
        }
        let backed_off = self.backoff.level > 0;
        let (cfg, loc, members) = (&self.cfg, &self.loc, &self.members);
        let me = members.my_id();
        let root = writer.clone();
        let told = self.lazy.on_ihave(
            self.store.context(),
            self.clock_us,
            from,
            (writer, counter),
            |p| {
                let rtt = loc.rtt_estimate(members, p);
                if lossy && parent_in_tree(loc.ring(), &root, me).as_ref() == Some(p) {
                    graft_retry_us(cfg, rtt, backed_off)
                } else {
                    graft_delay_us(cfg, rtt)
                }
            },
        );
        match told {
            Told::Missing => self.stats.ids_missing += 1,
            Told::Dropped => self.stats.grafts_dropped += 1,
            Told::Held | Told::Retold => {}
        }
    }

    /// How long to give the tree (or an event's) before grafting what `from` announced.
    pub(super) fn graft_delay_us(&self, from: &NodeId) -> u64 {
        graft_delay_us(&self.cfg, self.rtt_estimate(from))
    }

    /// Collects the entry holding `(writer, counter)` for an answer to `from`.
    pub(super) fn on_graft(&mut self, answers: &mut Vec<Entry>, writer: &NodeId, counter: u64) {
        let Some(e) = self.store.entry_by_dot(writer, counter) else {
            return;
        };
        if !answers.iter().any(|a| a.key == e.key) {
            answers.push(e.clone());
        }
    }

    /// Sends the entries a peer grafted, as deltas (retransmit class).
    pub(super) fn answer_grafts(&mut self, to: &NodeId, answers: Vec<Entry>) {
        let Some(addr) = self.addr_of(to) else {
            return;
        };
        let items = answers.into_iter().map(Item::Delta).collect();
        let packed = pack::pack(items, self.cfg.max_datagram);
        for item in packed.oversized.into_iter().take(GRAFT_OVERSIZED_MAX) {
            self.stats.grafts_answered += 1;
            self.emit(to, addr.clone(), vec![(item, Traffic::Retransmit)], true);
        }
        // One datagram per request datagram: the rest is asked again or synced.
        let first = packed.full.into_iter().next().unwrap_or(packed.last);
        for item in &first {
            self.stats.grafts_answered += match item {
                Item::DeltaRun(run) => run.entries.len() as u64,
                _ => 1,
            };
        }
        let items = first
            .into_iter()
            .map(|i| (i, Traffic::Retransmit))
            .collect();
        self.emit(to, addr, items, false);
    }

    /// Sends the grafts that are due, retrying earlier ones (see [`Lazy::due_grafts`]).
    pub(super) fn graft_timers(&mut self) {
        let (cfg, loc, members) = (&self.cfg, &self.loc, &self.members);
        let backed_off = self.backoff.level > 0;
        let (asks, abandoned) = self
            .lazy
            .due_grafts(self.store.context(), self.clock_us, |p| {
                graft_retry_us(cfg, loc.rtt_estimate(members, p), backed_off)
            });
        self.stats.grafts_abandoned += abandoned;
        if abandoned > 0 {
            // We know we lack these and the tree's repair gave up: the next exchange
            // brings them, sooner than a whole interval. Its peer is picked as usual:
            // the teller did not answer, and by now most members hold the update.
            self.sync_soon();
        }
        for (to, dots) in asks {
            let Some(addr) = self.addr_of(&to) else {
                continue;
            };
            for datagram in graft_datagrams(dots, self.cfg.max_datagram) {
                self.stats.grafts_sent += datagram.len() as u64;
                let items = datagram
                    .into_iter()
                    .map(|i| (i, Traffic::Retransmit))
                    .collect();
                self.emit(&to, addr.clone(), items, false);
            }
        }
    }

    /// When the next graft is due (mono µs).
    pub(super) fn graft_deadline(&self) -> Option<u64> {
        self.lazy.deadline()
    }

    /// Ids waiting to be grafted.
    pub fn grafts_pending(&self) -> usize {
        self.lazy.pending()
    }

    /// The due time recorded for a pending id (tests).
    #[cfg(test)]
    fn graft_due(&self, writer: &NodeId, counter: u64) -> Option<u64> {
        self.lazy.due_of(writer, counter)
    }
}

#[cfg(test)]
pub(super) mod tests;
