//! The broadcast queue: what this node still has to gossip, with retransmit budgets,
//! priorities and datagram packing.

use std::collections::BTreeMap;

use crate::core::proto::{encoded_len, Item, DATAGRAM_OVERHEAD};
use crate::core::NodeId;

/// Priority class of a broadcast; lower sorts first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    /// Membership changes (refutations, suspicions, leaves): never starved by data.
    Membership = 0,
    /// Key-value deltas.
    Delta = 1,
}

/// What a broadcast is about; a newer broadcast about the same thing replaces the older.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Topic {
    /// A member.
    Member(NodeId),
    /// A key.
    Key(String),
}

#[derive(Debug, Clone)]
struct Pending {
    item: Item,
    class: Class,
    len: usize,
    transmits: u32,
    budget: u32,
    seq: u64,
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
    /// Items too large for any datagram, handed to the reliable path.
    pub oversized: u64,
}

/// Bounded queue of broadcasts.
#[derive(Debug, Clone)]
pub struct BroadcastQueue {
    items: BTreeMap<Topic, Pending>,
    max_items: usize,
    seq: u64,
    stats: QueueStats,
}

impl BroadcastQueue {
    /// A queue holding at most `max_items` broadcasts.
    pub fn new(max_items: usize) -> Self {
        Self {
            items: BTreeMap::new(),
            max_items: max_items.max(1),
            seq: 0,
            stats: QueueStats::default(),
        }
    }

    /// Queues `item` to be sent `budget` times, replacing any broadcast on `topic`.
    /// When full, the lowest-priority, oldest broadcast is dropped (and counted).
    pub fn push(&mut self, topic: Topic, class: Class, item: Item, budget: u32) {
        self.seq += 1;
        let len = encoded_len(&item);
        let p = Pending {
            item,
            class,
            len,
            transmits: 0,
            budget: budget.max(1),
            seq: self.seq,
        };
        self.stats.queued += 1;
        if self.items.insert(topic, p).is_some() {
            self.stats.superseded += 1;
            return;
        }
        if self.items.len() > self.max_items {
            // Victim: the highest class value (lowest priority), then the oldest.
            if let Some(victim) = self
                .items
                .iter()
                .max_by(|a, b| a.1.class.cmp(&b.1.class).then(b.1.seq.cmp(&a.1.seq)))
                .map(|(t, _)| t.clone())
            {
                self.items.remove(&victim);
                self.stats.dropped_full += 1;
            }
        }
    }

    /// Packs items into at most `max_bytes` (encoded), highest priority and fewest
    /// transmissions first, charging one transmission to each item taken; items whose
    /// budget is spent leave the queue. `exclude` drops items from consideration (e.g.
    /// the deltas a peer sent us itself).
    pub fn pack(&mut self, max_bytes: usize, exclude: impl Fn(&Item) -> bool) -> Vec<Item> {
        let mut order: Vec<(&Topic, &Pending)> = self.items.iter().collect();
        order.sort_by(|a, b| {
            (a.1.class, a.1.transmits, std::cmp::Reverse(a.1.seq)).cmp(&(
                b.1.class,
                b.1.transmits,
                std::cmp::Reverse(b.1.seq),
            ))
        });
        let mut room = max_bytes.saturating_sub(DATAGRAM_OVERHEAD);
        let mut taken: Vec<Topic> = Vec::new();
        for (topic, p) in order {
            if p.len <= room && !exclude(&p.item) {
                room -= p.len;
                taken.push(topic.clone());
            }
            if room < 8 {
                break;
            }
        }
        let mut out = Vec::with_capacity(taken.len());
        for t in taken {
            if let Some(p) = self.items.get_mut(&t) {
                p.transmits += 1;
                out.push(p.item.clone());
                if p.transmits >= p.budget {
                    self.items.remove(&t);
                }
            }
        }
        out
    }

    /// Removes and returns items too large to ever fit in `max_bytes`; the caller sends
    /// them on a reliable stream instead.
    pub fn take_oversized(&mut self, max_bytes: usize) -> Vec<Item> {
        let limit = max_bytes.saturating_sub(DATAGRAM_OVERHEAD);
        let big: Vec<Topic> = self
            .items
            .iter()
            .filter(|(_, p)| p.len > limit)
            .map(|(t, _)| t.clone())
            .collect();
        let mut out = Vec::new();
        for t in big {
            if let Some(p) = self.items.remove(&t) {
                self.stats.oversized += 1;
                out.push(p.item);
            }
        }
        out
    }

    /// Number of queued broadcasts.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
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
        let mut q = BroadcastQueue::new(100);
        let id = NodeId::new("a").unwrap();
        q.push(Topic::Key("k".into()), Class::Delta, ping(1), 2);
        q.push(Topic::Member(id), Class::Membership, ping(2), 1);
        let first = q.pack(1200, |_| false);
        assert_eq!(first, vec![ping(2), ping(1)]);
        assert_eq!(q.len(), 1, "membership item had a budget of one");
        assert_eq!(q.pack(1200, |_| false), vec![ping(1)]);
        assert!(q.is_empty());
        // Nothing fits in a tiny datagram.
        q.push(Topic::Key("k".into()), Class::Delta, ping(3), 2);
        assert!(q.pack(DATAGRAM_OVERHEAD + 1, |_| false).is_empty());
    }

    #[test]
    fn full_queue_drops_lowest_priority_oldest_and_counts_it() {
        let mut q = BroadcastQueue::new(2);
        q.push(Topic::Key("a".into()), Class::Delta, ping(1), 3);
        q.push(Topic::Key("b".into()), Class::Delta, ping(2), 3);
        q.push(
            Topic::Member(NodeId::new("m").unwrap()),
            Class::Membership,
            ping(3),
            3,
        );
        assert_eq!(q.len(), 2);
        assert_eq!(q.stats().dropped_full, 1);
        let items = q.pack(1200, |_| false);
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
