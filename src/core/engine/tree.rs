//! Tree push with lazy repair: how key-value updates spread when
//! [`Config::tree_push`](super::Config::tree_push) is on (the default).
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
//!   times, with whoever announced the id last; after that anti-entropy repairs.
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

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::Engine;
use crate::core::dissemination::{Class, Topic};
use crate::core::limiter::Traffic;
use crate::core::proto::{encoded_len, Item, DATAGRAM_OVERHEAD};
use crate::core::state::Entry;
use crate::core::NodeId;

/// Most ids waiting to be grafted at once; beyond it new ones are dropped (counted) and
/// left to anti-entropy.
const GRAFT_MAX: usize = 4_096;
/// Graft requests per missing id before giving up to anti-entropy (an id announced again
/// later starts over).
pub const GRAFT_TRIES: u32 = 5;
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
}

/// Ids we were told of and lack, and updates that reached us before their tree did.
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
            return Some(ring[(base + 1 + hi) % n].clone());
        }
        base = (base + 1 + c) % n;
        t -= c + 1;
        hi -= c + 1;
    }
}

impl Engine {
    /// True when updates travel by tree push and lazy repair.
    pub(super) fn tree_mode(&self) -> bool {
        self.cfg.tree_push && self.cfg.push_deltas
    }

    /// Notes that `e` reached us outside its tree (anti-entropy, a graft): if its tree
    /// copy comes later, we still forward it down our span.
    pub(super) fn learned_elsewhere(&mut self, e: &Entry) {
        if !self.tree_mode() {
            return;
        }
        let dot = dot_of(e);
        if self.lazy.elsewhere.insert(dot.clone()) {
            self.lazy.elsewhere_order.push_back(dot);
            if self.lazy.elsewhere_order.len() > ELSEWHERE_MAX {
                if let Some(old) = self.lazy.elsewhere_order.pop_front() {
                    self.lazy.elsewhere.remove(&old);
                }
            }
        }
    }

    /// True (once) if the tree copy of `e` should be forwarded although `e` was not news:
    /// it reached us outside the tree first.
    pub(super) fn take_elsewhere(&mut self, e: &Entry) -> bool {
        self.lazy.elsewhere.remove(&dot_of(e))
    }

    /// Queues the id of `e`'s winning write for the gossip rounds (lazy push).
    pub(super) fn announce(&mut self, e: &Entry) {
        let (writer, counter) = dot_of(e);
        let budget = self.delta_budget();
        self.queue.push(
            Topic::Key(e.key.clone()),
            Class::Id,
            Item::IHave { writer, counter },
            budget,
        );
    }

    /// Adds `entry` to the datagrams for our children in the span `(us, until)`.
    pub(super) fn tree_forward(&mut self, batches: &mut Batches, entry: &Entry, until: &NodeId) {
        self.refresh_view();
        let me = self.id().clone();
        let mut targets = Vec::new();
        self.tree_targets(&me, until, &mut targets, 0);
        for (child, lim) in targets {
            batches.entry(child).or_default().push(Item::Tree {
                entry: entry.clone(),
                until: lim,
            });
        }
    }

    /// The live children of `from`'s span `(from, until)`; a child no longer alive in our
    /// table has its own span split in its place.
    fn tree_targets(
        &self,
        from: &NodeId,
        until: &NodeId,
        out: &mut Vec<(NodeId, NodeId)>,
        depth: u32,
    ) {
        for (child, lim) in tree_children(&self.loc.view.ring, from, until) {
            if &child == self.id() {
                continue;
            }
            if self.members.is_live(&child) {
                out.push((child, lim));
            } else if depth < DEAD_CHILD_DEPTH {
                self.tree_targets(&child, &lim, out, depth + 1);
            }
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
            let mut cur: Vec<(Item, Traffic)> = Vec::new();
            let mut used = DATAGRAM_OVERHEAD;
            for item in items {
                let len = encoded_len(&item);
                if len + DATAGRAM_OVERHEAD > max {
                    self.emit(&child, addr.clone(), vec![(item, Traffic::Fresh)], true);
                    continue;
                }
                if used + len > max {
                    self.emit(&child, addr.clone(), std::mem::take(&mut cur), false);
                    used = DATAGRAM_OVERHEAD;
                }
                used += len;
                cur.push((item, Traffic::Fresh));
            }
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
        let Some(until) = span_end_in_tree(&self.loc.view.ring, &e.writer, self.id()) else {
            return;
        };
        // Forwarded now: a late tree copy is not forwarded again.
        self.lazy.elsewhere.remove(&dot_of(e));
        self.stats.subtrees_healed += 1;
        self.tree_forward(batches, e, &until);
    }

    /// Someone holds the write `(writer, counter)`: if we lack it, ask for it once the
    /// tree has had time to bring it.
    pub(super) fn on_ihave(&mut self, from: &NodeId, writer: NodeId, counter: u64) {
        if self.store.context().contains(&writer, counter) || counter == 0 {
            return;
        }
        let dot = (writer, counter);
        if let Some(p) = self.lazy.pending.get_mut(&dot) {
            p.from = from.clone();
            return;
        }
        if self.lazy.pending.len() >= GRAFT_MAX {
            self.stats.grafts_dropped += 1;
            return;
        }
        self.stats.ids_missing += 1;
        let due = self.clock_us + self.graft_delay_us(from);
        self.lazy.due.insert((due, dot.clone()));
        self.lazy.pending.insert(
            dot,
            PendingGraft {
                from: from.clone(),
                tries: 0,
            },
        );
    }

    fn graft_delay_us(&self, from: &NodeId) -> u64 {
        let rtt = self.rtt_estimate(from).unwrap_or(0);
        (self.cfg.graft_timeout_ms * 1000).max(2 * rtt)
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
        let max = self.cfg.max_datagram;
        let mut cur = Vec::new();
        let mut used = DATAGRAM_OVERHEAD;
        let mut oversized = 0;
        for e in answers {
            let item = Item::Delta(e);
            let len = encoded_len(&item);
            if len + DATAGRAM_OVERHEAD > max {
                if oversized < GRAFT_OVERSIZED_MAX {
                    oversized += 1;
                    self.stats.grafts_answered += 1;
                    self.emit(to, addr.clone(), vec![(item, Traffic::Retransmit)], true);
                }
                continue;
            }
            if used + len > max {
                // One datagram per request datagram: the rest is asked again or synced.
                break;
            }
            used += len;
            self.stats.grafts_answered += 1;
            cur.push((item, Traffic::Retransmit));
        }
        self.emit(to, addr, cur, false);
    }

    /// Sends the grafts that are due, retrying earlier ones.
    pub(super) fn graft_timers(&mut self) {
        let now = self.clock_us;
        let mut asks: BTreeMap<NodeId, Vec<Dot>> = BTreeMap::new();
        while let Some((due, dot)) = self.lazy.due.first().cloned() {
            if due > now {
                break;
            }
            self.lazy.due.remove(&(due, dot.clone()));
            if self.store.context().contains(&dot.0, dot.1) {
                self.lazy.pending.remove(&dot);
                continue;
            }
            let Some(p) = self.lazy.pending.get(&dot).cloned() else {
                continue;
            };
            if p.tries >= GRAFT_TRIES {
                self.lazy.pending.remove(&dot);
                self.stats.grafts_abandoned += 1;
                continue;
            }
            // Retry after the graft timeout again (at least twice the round trip): the
            // request or its answer was lost, or the teller no longer had it.
            let next = now + self.graft_delay_us(&p.from);
            self.lazy.due.insert((next, dot.clone()));
            self.lazy.pending.insert(
                dot.clone(),
                PendingGraft {
                    from: p.from.clone(),
                    tries: p.tries + 1,
                },
            );
            asks.entry(p.from).or_default().push(dot);
        }
        let max = self.cfg.max_datagram;
        for (to, dots) in asks {
            let Some(addr) = self.addr_of(&to) else {
                continue;
            };
            let mut cur = Vec::new();
            let mut used = DATAGRAM_OVERHEAD;
            for (writer, counter) in dots {
                let item = Item::Graft { writer, counter };
                let len = encoded_len(&item);
                if used + len > max {
                    self.emit(&to, addr.clone(), std::mem::take(&mut cur), false);
                    used = DATAGRAM_OVERHEAD;
                }
                used += len;
                self.stats.grafts_sent += 1;
                cur.push((item, Traffic::Retransmit));
            }
            self.emit(&to, addr, cur, false);
        }
    }

    /// When the next graft is due (mono µs).
    pub(super) fn graft_deadline(&self) -> Option<u64> {
        self.lazy.due.first().map(|(t, _)| *t)
    }

    /// Ids waiting to be grafted.
    pub fn grafts_pending(&self) -> usize {
        self.lazy.pending.len()
    }

    /// The due time recorded for a pending id (tests).
    #[cfg(test)]
    fn graft_due(&self, writer: &NodeId, counter: u64) -> Option<u64> {
        let dot = (writer.clone(), counter);
        self.lazy
            .due
            .iter()
            .find(|(_, d)| *d == dot)
            .map(|(t, _)| *t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::engine::{Config, Output};
    use crate::core::proto::{Datagram, MemberInfo, MemberState, MemberStatus};
    use crate::core::Now;

    fn id(s: &str) -> NodeId {
        NodeId::new(s).unwrap()
    }

    fn ring(n: usize) -> Vec<NodeId> {
        let mut r: Vec<NodeId> = (0..n).map(|i| id(&format!("n{i:03}"))).collect();
        r.sort();
        r
    }

    /// Walks the whole tree from `root`: how often each member is reached, and the depth.
    fn walk(r: &[NodeId], root: &NodeId) -> (BTreeMap<NodeId, u32>, u32) {
        let mut got: BTreeMap<NodeId, u32> = BTreeMap::new();
        let mut depth = 0;
        let mut level = vec![(root.clone(), root.clone())];
        while !level.is_empty() {
            let mut next = Vec::new();
            for (node, until) in level {
                for (c, lim) in tree_children(r, &node, &until) {
                    *got.entry(c.clone()).or_default() += 1;
                    next.push((c, lim));
                }
            }
            if !next.is_empty() {
                depth += 1;
            }
            level = next;
        }
        (got, depth)
    }

    #[test]
    fn the_tree_reaches_every_member_once_in_log2_hops() {
        for n in [1usize, 2, 3, 7, 50, 100, 1000] {
            let r = ring(n);
            for root in [&r[0], &r[n / 2], &r[n - 1]] {
                let (got, depth) = walk(&r, root);
                assert_eq!(got.len(), n - 1, "n={n}: everyone but the root");
                assert!(got.values().all(|&c| c == 1), "n={n}: exactly once");
                assert!(!got.contains_key(root));
                let bound = (n as f64).log2().ceil() as u32;
                assert!(depth <= bound, "n={n}: depth {depth} > {bound}");
            }
        }
    }

    #[test]
    fn spans_bounded_by_ids_cover_members_the_sender_does_not_know() {
        // The root's view lacks m; a child whose view has it covers it.
        let full = ring(20);
        let missing = full[7].clone();
        let partial: Vec<NodeId> = full.iter().filter(|x| **x != missing).cloned().collect();
        let root = full[0].clone();
        let mut reached = BTreeSet::new();
        let mut level = vec![(root.clone(), root.clone(), true)];
        while let Some((node, until, is_root)) = level.pop() {
            let view = if is_root { &partial } else { &full };
            for (c, lim) in tree_children(view, &node, &until) {
                reached.insert(c.clone());
                level.push((c, lim, false));
            }
        }
        assert!(reached.contains(&missing));
        assert_eq!(reached.len(), 19);
    }

    /// True if `x` lies strictly inside the clockwise ring interval from `a` to `b`.
    fn between(a: &NodeId, x: &NodeId, b: &NodeId) -> bool {
        if x == a {
            return false;
        }
        if a < b {
            a < x && x < b
        } else {
            x > a || x < b
        }
    }

    #[test]
    fn spans_match_the_ring_interval() {
        let r = ring(12);
        for me in &r {
            for until in &r {
                let mut covered: Vec<NodeId> = Vec::new();
                let mut level = vec![(me.clone(), until.clone())];
                while let Some((node, lim)) = level.pop() {
                    for (c, l) in tree_children(&r, &node, &lim) {
                        covered.push(c.clone());
                        level.push((c, l));
                    }
                }
                covered.sort();
                let want: Vec<NodeId> = r
                    .iter()
                    .filter(|x| between(me, x, until))
                    .cloned()
                    .collect();
                assert_eq!(covered, want, "span ({me}, {until})");
            }
        }
    }

    #[test]
    fn between_wraps_around_the_ring() {
        let (a, b, c) = (id("a"), id("b"), id("c"));
        assert!(between(&a, &b, &c));
        assert!(!between(&a, &c, &b));
        assert!(between(&c, &a, &b), "wraps");
        assert!(between(&b, &a, &b), "whole ring but b");
        assert!(!between(&b, &b, &b));
    }

    fn info(name: &str) -> MemberInfo {
        MemberInfo {
            id: id(name),
            addr: format!("{name}:1"),
            dc: "dc1".into(),
            zone: String::new(),
            tags: Default::default(),
        }
    }

    fn at(ms: u64) -> Now {
        Now {
            mono_us: ms * 1000,
            wall_ms: 1_700_000_000_000 + ms,
        }
    }

    fn engine(name: &str, peers: &[&str]) -> Engine {
        let mut e = Engine::new(Config::default(), info(name), vec![], 1, at(0), None);
        for p in peers {
            let s = MemberState {
                info: info(p).into(),
                incarnation: 1,
                status: MemberStatus::Alive,
            };
            e.handle_datagram(
                at(1),
                &id(p),
                Datagram {
                    items: vec![Item::Member(s)],
                },
            );
        }
        while e.poll_output().is_some() {}
        e
    }

    fn datagrams(e: &mut Engine) -> Vec<(NodeId, Datagram)> {
        let mut out = Vec::new();
        while let Some(o) = e.poll_output() {
            if let Output::Datagram { to, datagram, .. } = o {
                out.push((to, datagram));
            }
        }
        out
    }

    /// Engine p00 knowing p01..p15.
    fn hub() -> Engine {
        let peers: Vec<String> = (1..16).map(|i| format!("p{i:02}")).collect();
        let refs: Vec<&str> = peers.iter().map(String::as_str).collect();
        engine("p00", &refs)
    }

    /// Datagrams carrying a tree item.
    fn trees(out: &[(NodeId, Datagram)]) -> usize {
        out.iter()
            .filter(|(_, d)| d.items.iter().any(|i| matches!(i, Item::Tree { .. })))
            .count()
    }

    #[test]
    fn a_write_goes_down_the_tree_once_and_its_id_is_queued() {
        let peers: Vec<String> = (1..16).map(|i| format!("p{i:02}")).collect();
        let refs: Vec<&str> = peers.iter().map(String::as_str).collect();
        let mut e = engine("p00", &refs);
        e.set(at(10), "k", b"v".to_vec()).unwrap();
        let out = datagrams(&mut e);
        let trees: Vec<&NodeId> = out
            .iter()
            .filter(|(_, d)| d.items.iter().any(|i| matches!(i, Item::Tree { .. })))
            .map(|(to, _)| to)
            .collect();
        // 16 members: the root's children sit at offsets 7, 3, 1 and 0 of its 15 peers.
        assert_eq!(trees.len(), 4, "{trees:?}");
        let copies: usize = out
            .iter()
            .map(|(_, d)| {
                d.items
                    .iter()
                    .filter(|i| matches!(i, Item::Tree { .. }))
                    .count()
            })
            .sum();
        assert_eq!(copies, 4, "one copy per child");
        // The id rides in the tree datagrams' spare room and in gossip rounds.
        let mut ids = out
            .iter()
            .filter(|(_, d)| d.items.iter().any(|i| matches!(i, Item::IHave { .. })))
            .count();
        for ms in (300..2_000).step_by(100) {
            e.handle_timeout(at(ms));
            ids += datagrams(&mut e)
                .iter()
                .filter(|(_, d)| d.items.iter().any(|i| matches!(i, Item::IHave { .. })))
                .count();
        }
        assert_eq!(
            ids as u32,
            e.budget(),
            "the id is announced its budget's worth"
        );
    }

    #[test]
    fn a_replayed_tree_item_is_not_forwarded_again() {
        let mut e = hub();
        let mut w = engine("p05", &["p00"]);
        let entry = w.set(at(5), "k", b"v".to_vec()).unwrap();
        let dg = Datagram {
            items: vec![Item::Tree {
                entry,
                until: id("p00"),
            }],
        };
        e.handle_datagram(at(10), &id("p05"), dg.clone());
        assert_eq!(trees(&datagrams(&mut e)), 4, "news goes down our span");
        e.handle_datagram(at(11), &id("p05"), dg);
        assert_eq!(trees(&datagrams(&mut e)), 0, "a replay is not forwarded");
    }

    #[test]
    fn a_tree_copy_of_an_update_synced_first_is_still_forwarded_once() {
        let mut e = hub();
        let mut w = engine("p05", &["p00"]);
        let entry = w.set(at(5), "k", b"v".to_vec()).unwrap();
        e.sync_on_entries(at(8), vec![entry.clone()]);
        let dg = Datagram {
            items: vec![Item::Tree {
                entry,
                until: id("p00"),
            }],
        };
        e.handle_datagram(at(10), &id("p05"), dg.clone());
        assert_eq!(trees(&datagrams(&mut e)), 4, "our span still needs it");
        e.handle_datagram(at(11), &id("p05"), dg);
        assert_eq!(trees(&datagrams(&mut e)), 0, "but only once");
    }

    #[test]
    fn the_span_computed_from_the_ring_is_the_one_the_tree_sends() {
        for n in (1..=70).chain([255, 256, 257, 1000]) {
            let r = ring(n);
            let roots: Vec<usize> = if n <= 70 {
                (0..n).collect()
            } else {
                vec![0, 1, n / 3, n - 1]
            };
            for root in roots {
                let root = &r[root];
                // Every member's `until` as the tree hands it down.
                let mut sent: BTreeMap<NodeId, NodeId> = BTreeMap::new();
                let mut level = vec![(root.clone(), root.clone())];
                while let Some((node, until)) = level.pop() {
                    for (c, lim) in tree_children(&r, &node, &until) {
                        sent.insert(c.clone(), lim.clone());
                        level.push((c, lim));
                    }
                }
                for me in &r {
                    assert_eq!(
                        span_end_in_tree(&r, root, me),
                        sent.get(me).cloned(),
                        "n={n} root={root} me={me}"
                    );
                }
            }
        }
        let r = ring(10);
        assert_eq!(
            span_end_in_tree(&r, &id("zz"), &r[1]),
            None,
            "root not in the ring"
        );
        assert_eq!(
            span_end_in_tree(&r, &r[0], &id("zz")),
            None,
            "we are not in it"
        );
    }

    #[test]
    fn a_grafted_update_heals_the_subtree_below_us() {
        // p00 writes; in its tree over p00..p15 the child at offset 7 (p08) spans
        // p09..p15. p08 lost its tree copy and grafts the update from someone.
        let peers: Vec<String> = (0..16)
            .filter(|&i| i != 8)
            .map(|i| format!("p{i:02}"))
            .collect();
        let refs: Vec<&str> = peers.iter().map(String::as_str).collect();
        let mut me = engine("p08", &refs);
        let mut w = hub();
        let entry = w.set(at(5), "k", b"v".to_vec()).unwrap();
        let answer = Datagram {
            items: vec![Item::Delta(entry.clone())],
        };
        me.handle_datagram(at(10), &id("p03"), answer.clone());
        let out = datagrams(&mut me);
        let mut children: Vec<(NodeId, NodeId)> = out
            .iter()
            .flat_map(|(to, d)| {
                d.items.iter().filter_map(move |i| match i {
                    Item::Tree { until, .. } => Some((to.clone(), until.clone())),
                    _ => None,
                })
            })
            .collect();
        children.sort();
        let want: Vec<(NodeId, NodeId)> = [("p09", "p10"), ("p10", "p12"), ("p12", "p00")]
            .iter()
            .map(|(c, u)| (id(c), id(u)))
            .collect();
        assert_eq!(children, want, "our span p09..p15, split as the tree would");
        assert_eq!(me.stats().subtrees_healed, 1);
        // The late tree copy is not news and is not forwarded again.
        let late = Datagram {
            items: vec![Item::Tree {
                entry,
                until: id("p00"),
            }],
        };
        me.handle_datagram(at(12), &id("p00"), late);
        assert_eq!(trees(&datagrams(&mut me)), 0);
        // A graft answer about a writer outside our ring heals nothing.
        let mut far = engine("q1", &["p08"]);
        let other = far.set(at(5), "k2", b"v".to_vec()).unwrap();
        me.handle_datagram(
            at(20),
            &id("p03"),
            Datagram {
                items: vec![Item::Delta(other)],
            },
        );
        assert_eq!(trees(&datagrams(&mut me)), 0);
        assert_eq!(me.stats().subtrees_healed, 1);
    }

    #[test]
    fn an_id_we_lack_is_grafted_after_the_timeout_and_answered() {
        let mut a = engine("a", &["b", "c"]);
        let mut b = engine("b", &["a", "c"]);
        let e = b.set(at(10), "k", b"v".to_vec()).unwrap();
        while b.poll_output().is_some() {}
        let counter = e.vv.get(&e.writer);
        a.handle_datagram(
            at(20),
            &id("b"),
            Datagram {
                items: vec![Item::IHave {
                    writer: id("b"),
                    counter,
                }],
            },
        );
        let due = a.graft_due(&id("b"), counter).expect("pending");
        assert_eq!(due, 20_000 + Config::default().graft_timeout_ms * 1000);
        a.handle_timeout(at(20 + Config::default().graft_timeout_ms - 1));
        assert!(datagrams(&mut a)
            .iter()
            .all(|(_, d)| !d.items.iter().any(|i| matches!(i, Item::Graft { .. }))));
        a.handle_timeout(at(20 + Config::default().graft_timeout_ms));
        let asks: Vec<(NodeId, Datagram)> = datagrams(&mut a)
            .into_iter()
            .filter(|(_, d)| d.items.iter().any(|i| matches!(i, Item::Graft { .. })))
            .collect();
        assert_eq!(asks.len(), 1);
        assert_eq!(asks[0].0, id("b"));
        b.handle_datagram(at(100), &id("a"), asks[0].1.clone());
        let answer: Vec<(NodeId, Datagram)> = datagrams(&mut b)
            .into_iter()
            .filter(|(_, d)| d.items.iter().any(|i| matches!(i, Item::Delta(_))))
            .collect();
        assert_eq!(answer.len(), 1);
        a.handle_datagram(at(101), &id("b"), answer[0].1.clone());
        assert_eq!(a.store().get("k"), Some(&b"v"[..]));
        a.handle_timeout(at(2_000));
        assert_eq!(a.grafts_pending(), 0, "a held id is no longer pending");
        assert_eq!(a.stats().grafts_abandoned, 0);
    }

    #[test]
    fn an_unanswered_graft_is_retried_then_left_to_anti_entropy() {
        let mut a = engine("a", &["b"]);
        a.handle_datagram(
            at(10),
            &id("b"),
            Datagram {
                items: vec![Item::IHave {
                    writer: id("b"),
                    counter: 7,
                }],
            },
        );
        let mut asked = 0;
        for ms in (10..5_000).step_by(10) {
            a.handle_timeout(at(ms));
            asked += datagrams(&mut a)
                .iter()
                .filter(|(_, d)| d.items.iter().any(|i| matches!(i, Item::Graft { .. })))
                .count();
        }
        assert_eq!(asked as u32, GRAFT_TRIES);
        assert_eq!(a.stats().grafts_abandoned, 1);
        assert_eq!(a.grafts_pending(), 0);
    }
}
