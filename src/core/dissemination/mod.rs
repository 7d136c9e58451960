//! The broadcast queue: what this node still has to gossip, with retransmit budgets,
//! priorities and datagram packing.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::core::limiter::Traffic;
use crate::core::proto::{encoded_len, Item, DATAGRAM_OVERHEAD};
use crate::core::NodeId;

/// What a broadcast is about; a newer broadcast about the same thing replaces the older.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Topic {
    /// A member.
    Member(NodeId),
    /// A key.
    Key(String),
    /// A user event (its id: sender and sequence number).
    Event(NodeId, u64),
}

#[derive(Debug, Clone)]
struct Pending {
    topic: Topic,
    item: Item,
    /// The class it was queued with.
    class: Traffic,
    len: usize,
    transmits: u32,
    budget: u32,
}

impl Pending {
    /// Its class now: a delta is fresh until its first transmission, a retransmit after.
    fn traffic(&self) -> Traffic {
        match self.class {
            Traffic::Fresh if self.transmits > 0 => Traffic::Retransmit,
            c => c,
        }
    }

    /// Its place in the sending order.
    fn key(&self, seq: u64) -> OrderKey {
        (self.traffic(), self.transmits, Reverse(seq))
    }
}

/// Counters of the queue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Broadcasts queued.
    pub queued: u64,
    /// Broadcasts replaced by a newer one on the same topic before their budget ran out.
    pub superseded: u64,
    /// Broadcasts dropped because the queue was full (anti-entropy repairs them).
    pub dropped_full: u64,
    /// Of those, membership broadcasts (the rest were deltas).
    pub dropped_full_membership: u64,
    /// Items too large for any datagram, handed to the reliable path.
    pub oversized: u64,
}

/// Sending order: class, then fewest transmissions, then newest.
type OrderKey = (Traffic, u32, Reverse<u64>);

/// Bounded queue of broadcasts, indexed so that packing a datagram costs
/// O(items taken · log n), not a sort of the whole queue.
#[derive(Debug, Clone)]
pub struct BroadcastQueue {
    by_seq: BTreeMap<u64, Pending>,
    /// Hashed, never iterated (so the order of nothing depends on the hash): a burst
    /// keeps the queue full, and every push looked up and removed string keys in an
    /// ordered map.
    by_topic: HashMap<Topic, u64>,
    order: BTreeSet<OrderKey>,
    oversized: Vec<Item>,
    max_items: usize,
    datagram_limit: usize,
    seq: u64,
    stats: QueueStats,
}

/// How many queued items one `pack` call looks at, at most.
const PACK_SCAN: usize = 256;
/// Consecutive items that did not fit after which `pack` stops looking.
const MAX_MISSES: usize = 16;
/// Room below which no item can fit (the smallest items are ~10 bytes).
const MIN_ITEM: usize = 8;
/// The classes a queued item can have, in the order of `pack_classified`'s caps.
pub const CAPPED: usize = 4;

/// Ids (lazy push) take up to this fraction (1/n) of a datagram's room ahead of
/// membership; past it they wait behind membership and data, in priority order.
const ID_SHARE_DIV: usize = 4;

impl BroadcastQueue {
    /// A queue holding at most `max_items` broadcasts, for datagrams of at most
    /// `datagram_limit` bytes (larger items are set aside for the reliable path).
    pub fn new(max_items: usize, datagram_limit: usize) -> Self {
        Self {
            by_seq: BTreeMap::new(),
            by_topic: HashMap::new(),
            order: BTreeSet::new(),
            oversized: Vec::new(),
            max_items: max_items.max(1),
            datagram_limit,
            seq: 0,
            stats: QueueStats::default(),
        }
    }

    fn remove_seq(&mut self, seq: u64) -> Option<Pending> {
        let p = self.by_seq.remove(&seq)?;
        self.order.remove(&p.key(seq));
        self.by_topic.remove(&p.topic);
        Some(p)
    }

    /// Queues `item` to be sent `budget` times, replacing any broadcast on `topic`, and
    /// returns its handle. `class` is `Membership`, `Fresh` (a delta: it is sent as a
    /// retransmit after its first transmission) or `Announce` (ids). When full, the
    /// lowest-priority, oldest broadcast is dropped (and counted).
    pub fn push(&mut self, topic: Topic, class: Traffic, item: Item, budget: u32) -> u64 {
        self.seq += 1;
        let seq = self.seq;
        self.stats.queued += 1;
        if let Some(old) = self.by_topic.get(&topic).copied() {
            self.remove_seq(old);
            self.stats.superseded += 1;
        }
        let len = encoded_len(&item);
        if len + DATAGRAM_OVERHEAD > self.datagram_limit {
            self.stats.oversized += 1;
            self.oversized.push(item);
            return seq;
        }
        self.order.insert((class, 0, Reverse(seq)));
        self.by_topic.insert(topic.clone(), seq);
        self.by_seq.insert(
            seq,
            Pending {
                topic,
                item,
                class,
                len,
                transmits: 0,
                budget: budget.max(1),
            },
        );
        if self.by_seq.len() > self.max_items {
            // Victim: the lowest priority, then the most transmitted, then the oldest:
            // the last in sending order.
            if let Some(&(class, _, Reverse(v))) = self.order.last() {
                self.remove_seq(v);
                self.stats.dropped_full += 1;
                if class == Traffic::Membership {
                    self.stats.dropped_full_membership += 1;
                }
            }
        }
        seq
    }

    /// Packs items into at most `max_bytes` (encoded): first the broadcasts named in
    /// `first` (still queued), then by priority and fewest transmissions. Each item
    /// taken is charged one transmission; items whose budget is spent leave the queue.
    /// `exclude` skips items (e.g. a member's own announcement, sent back to it).
    pub fn pack(
        &mut self,
        max_bytes: usize,
        first: &[u64],
        exclude: impl Fn(&Item) -> bool,
    ) -> Vec<Item> {
        self.pack_classified(max_bytes, [usize::MAX; CAPPED], first, exclude)
            .into_iter()
            .map(|(item, _)| item)
            .collect()
    }

    /// Like [`BroadcastQueue::pack`], under a byte cap per traffic class: an item of
    /// class `c` (membership, fresh delta, retransmitted delta, announcement: see
    /// [`CAPPED`]) is taken only while the datagram, with it, stays within `caps[c]`
    /// bytes (the bandwidth limiter's allowance for that class). Returns each item with
    /// its class.
    pub fn pack_classified(
        &mut self,
        max_bytes: usize,
        caps: [usize; CAPPED],
        first: &[u64],
        exclude: impl Fn(&Item) -> bool,
    ) -> Vec<(Item, Traffic)> {
        let limit = max_bytes.min(self.datagram_limit);
        let mut used = DATAGRAM_OVERHEAD;
        if used >= limit {
            return Vec::new();
        }
        let mut taken: Vec<u64> = Vec::new();
        let mut misses = 0usize;
        let consider = |seq: u64, used: &mut usize, taken: &mut Vec<u64>| -> bool {
            match self.by_seq.get(&seq) {
                Some(p) if !exclude(&p.item) && !taken.contains(&seq) => {
                    let cap = caps[p.traffic() as usize - Traffic::Membership as usize].min(limit);
                    if *used + p.len <= cap {
                        *used += p.len;
                        taken.push(seq);
                        true
                    } else {
                        false
                    }
                }
                _ => false,
            }
        };
        for &seq in first {
            consider(seq, &mut used, &mut taken);
        }
        // Ids first, up to their share of the room: membership comes before ids in
        // priority, and a join or a suspicion storm would otherwise hold back the ids
        // that members lacking an update wait for.
        let id_room = DATAGRAM_OVERHEAD + (limit - DATAGRAM_OVERHEAD) / ID_SHARE_DIV;
        let ids = self
            .order
            .range((Traffic::Announce, 0, Reverse(u64::MAX))..);
        for &(_, _, Reverse(seq)) in ids.take(PACK_SCAN) {
            let len = self.by_seq.get(&seq).map_or(0, |p| p.len);
            if used + len > id_room {
                break;
            }
            consider(seq, &mut used, &mut taken);
        }
        for &(_, _, Reverse(seq)) in self.order.iter().take(PACK_SCAN) {
            // Stop when the datagram is nearly full, or after a run of items that did
            // not fit: the rest of the queue waits for the next datagram.
            if limit.saturating_sub(used) < MIN_ITEM || misses >= MAX_MISSES {
                break;
            }
            if consider(seq, &mut used, &mut taken) {
                misses = 0;
            } else {
                misses += 1;
            }
        }
        let mut out = Vec::with_capacity(taken.len());
        for seq in taken {
            let Some(p) = self.by_seq.get_mut(&seq) else {
                continue;
            };
            let traffic = p.traffic();
            let old_key = p.key(seq);
            p.transmits += 1;
            if p.transmits >= p.budget {
                self.order.remove(&old_key);
                if let Some(p) = self.by_seq.remove(&seq) {
                    self.by_topic.remove(&p.topic);
                    out.push((p.item, traffic));
                }
            } else {
                out.push((p.item.clone(), traffic));
                let new_key = p.key(seq);
                self.order.remove(&old_key);
                self.order.insert(new_key);
            }
        }
        out
    }

    /// Shrinks every queued delta's (and id's) remaining budget to at most `max` further
    /// transmissions (bandwidth back-off; membership broadcasts keep theirs).
    pub fn cap_delta_budgets(&mut self, max: u32) {
        for p in self.by_seq.values_mut() {
            if p.class != Traffic::Membership {
                p.budget = p.budget.min(p.transmits + max.max(1));
            }
        }
    }

    /// Removes and returns the items too large for a datagram; the caller sends them on
    /// a reliable stream instead.
    pub fn take_oversized(&mut self) -> Vec<Item> {
        std::mem::take(&mut self.oversized)
    }

    /// Number of queued broadcasts (oversized ones included).
    pub fn len(&self) -> usize {
        self.by_seq.len() + self.oversized.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.by_seq.is_empty() && self.oversized.is_empty()
    }

    /// Counters.
    pub fn stats(&self) -> &QueueStats {
        &self.stats
    }
}

/// Retransmit budget for a cluster of `n` members: `mult * ceil(log10(n + 1))`, as in
/// memberlist, at least 1.
pub fn retransmit_budget(mult: u32, n: usize) -> u32 {
    let x = n as u64 + 1;
    let (mut l, mut pow) = (0u32, 1u64);
    while pow < x {
        pow = pow.saturating_mul(10);
        l += 1;
    }
    (mult * l.max(1)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ping(seq: u64) -> Item {
        Item::Ping { seq }
    }

    #[test]
    fn packs_by_priority_within_size_and_spends_budgets() {
        let mut q = BroadcastQueue::new(100, 1200);
        let id = NodeId::new("a").unwrap();
        q.push(Topic::Key("k".into()), Traffic::Fresh, ping(1), 2);
        q.push(Topic::Member(id), Traffic::Membership, ping(2), 1);
        let first = q.pack(1200, &[], |_| false);
        assert_eq!(first, vec![ping(2), ping(1)]);
        assert_eq!(q.len(), 1, "membership item had a budget of one");
        assert_eq!(q.pack(1200, &[], |_| false), vec![ping(1)]);
        assert!(q.is_empty());
        // Nothing fits in a tiny datagram.
        q.push(Topic::Key("k".into()), Traffic::Fresh, ping(3), 2);
        assert!(q.pack(DATAGRAM_OVERHEAD + 1, &[], |_| false).is_empty());
    }

    #[test]
    fn ids_get_a_share_of_the_room_ahead_of_a_membership_backlog() {
        let mut q = BroadcastQueue::new(10_000, 1200);
        let member = |i: u64| Item::Suspect {
            id: NodeId::new(&format!("m{i}")).unwrap(),
            incarnation: i,
            accuser: NodeId::new("a").unwrap(),
        };
        for i in 0..500 {
            let id = NodeId::new(&format!("m{i}")).unwrap();
            q.push(Topic::Member(id), Traffic::Membership, member(i), 4);
        }
        let writer = NodeId::new("w").unwrap();
        for k in 0..100 {
            let item = Item::IHave {
                writer: writer.clone(),
                counter: k,
            };
            q.push(Topic::Key(format!("k{k}")), Traffic::Announce, item, 4);
        }
        let is_id = |i: &Item| matches!(i, Item::IHave { .. });
        let items = q.pack(1200, &[], |_| false);
        let id_bytes: usize = items.iter().filter(|i| is_id(i)).map(encoded_len).sum();
        assert!(
            id_bytes > 0 && id_bytes <= (1200 - DATAGRAM_OVERHEAD) / ID_SHARE_DIV,
            "{id_bytes} bytes of ids"
        );
        assert!(items.iter().any(|i| !is_id(i)), "membership fills the rest");
        // With membership gone, ids take the whole datagram.
        let mut q2 = BroadcastQueue::new(10_000, 1200);
        for k in 0..100 {
            let item = Item::IHave {
                writer: writer.clone(),
                counter: k,
            };
            q2.push(Topic::Key(format!("k{k}")), Traffic::Announce, item, 4);
        }
        let all: usize = q2.pack(1200, &[], |_| false).iter().map(encoded_len).sum();
        assert!(all > 2 * (1200 - DATAGRAM_OVERHEAD) / ID_SHARE_DIV);
    }

    #[test]
    fn named_items_go_first_even_behind_higher_priority_ones() {
        let mut q = BroadcastQueue::new(1000, 1200);
        for i in 0..200 {
            let id = NodeId::new(&format!("m{i}")).unwrap();
            q.push(Topic::Member(id), Traffic::Membership, ping(i), 4);
        }
        let fresh = q.push(Topic::Key("k".into()), Traffic::Fresh, ping(9999), 4);
        let items = q.pack(300, &[fresh], |_| false);
        assert_eq!(items[0], ping(9999));
        assert!(items.len() > 1, "the rest of the room is filled");
        // Oversized items are set aside at once.
        let big = Item::Delta(crate::core::state::Entry {
            key: "big".into(),
            value: Some(vec![0; 5000]),
            vv: Default::default(),
            hlc: Default::default(),
            writer: NodeId::new("a").unwrap(),
            sig: Default::default(),
            siblings: Vec::new(),
        });
        q.push(Topic::Key("big".into()), Traffic::Fresh, big.clone(), 4);
        assert_eq!(q.take_oversized(), vec![big]);
    }

    #[test]
    fn full_queue_drops_lowest_priority_oldest_and_counts_it() {
        let mut q = BroadcastQueue::new(2, 1200);
        q.push(Topic::Key("a".into()), Traffic::Fresh, ping(1), 3);
        q.push(Topic::Key("b".into()), Traffic::Fresh, ping(2), 3);
        q.push(
            Topic::Member(NodeId::new("m").unwrap()),
            Traffic::Membership,
            ping(3),
            3,
        );
        assert_eq!(q.len(), 2);
        assert_eq!(q.stats().dropped_full, 1);
        let items = q.pack(1200, &[], |_| false);
        assert_eq!(
            items,
            vec![ping(3), ping(2)],
            "the oldest delta was dropped"
        );
    }

    #[test]
    fn budget_grows_with_log_of_cluster_size() {
        assert_eq!(retransmit_budget(4, 1), 4);
        assert_eq!(retransmit_budget(4, 9), 4);
        assert_eq!(retransmit_budget(4, 10), 8);
        assert_eq!(retransmit_budget(4, 99), 8);
        assert_eq!(retransmit_budget(4, 100), 12);
    }
}
