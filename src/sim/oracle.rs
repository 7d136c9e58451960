//! The reference replica: every acknowledged write merged into one store that never
//! crashes, collects, compacts or rebases. Because merging is a join (order and
//! repetition do not matter), its live keys are what every replica must hold once the
//! run has settled: a key it holds and a node lacks is a lost write; a value a node holds
//! that a delete came after (the delete's vector covers the value's) is a resurrection.
//!
//! One outcome differs from the reference by design: a value written concurrently with
//! a delete that was collected on its side of a partition before the two met wins, even
//! where the delete carries the later stamp (nothing is left to order the two; the same
//! on every node). Such keys are reported as `concurrent`, not as failures.

use std::collections::BTreeMap;

use crate::core::state::{Causality, Entry, Limits, Store, VersionVector};
use crate::core::NodeId;

/// The reference replica of a run.
#[derive(Debug)]
pub(crate) struct Oracle {
    store: Store,
    /// Every delete's version vector, per key.
    deletes: BTreeMap<String, Vec<VersionVector>>,
}

/// How one node's live keys differ from the reference.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveDiff {
    /// Live on the node, deleted (or never written) in the reference.
    pub resurrected: Vec<String>,
    /// Live in the reference, absent or deleted on the node.
    pub missing: Vec<String>,
    /// Live on both with different values.
    pub different: Vec<String>,
    /// Live on the node, deleted in the reference by a delete concurrent with the value
    /// (not a failure: see the module documentation).
    pub concurrent: Vec<String>,
}

impl LiveDiff {
    /// True if the node agrees with the reference (`concurrent` keys aside).
    pub fn is_empty(&self) -> bool {
        self.resurrected.is_empty() && self.missing.is_empty() && self.different.is_empty()
    }
}

impl Oracle {
    /// An empty reference; `limits` are the nodes' (its vectors are never refused for
    /// length: a write every node refuses is not a write).
    pub(crate) fn new(limits: &Limits) -> Self {
        let limits = Limits {
            max_clock_drift_ms: u64::MAX,
            ..*limits
        };
        let me = NodeId::new("oracle").expect("valid id");
        Self {
            store: Store::new(me, limits, 0),
            deletes: BTreeMap::new(),
        }
    }

    /// Merges an acknowledged write, exactly as its writer made it.
    pub(crate) fn record(&mut self, e: Entry) {
        let at = e.hlc.ms;
        if e.is_tombstone() {
            self.deletes
                .entry(e.key.clone())
                .or_default()
                .push(e.vv.clone());
        }
        // An entry its own writer made and accepted passes the same checks here.
        let _ = self.store.apply(e, at);
    }

    /// Compares `node`'s live keys with the reference's.
    pub(crate) fn diff(&self, node: &Store) -> LiveDiff {
        let mut d = LiveDiff::default();
        for e in node.iter().filter(|e| !e.is_tombstone()) {
            let after = self.deletes.get(&e.key).is_some_and(|ds| {
                ds.iter()
                    .any(|d| matches!(d.compare(&e.vv), Causality::Dominates | Causality::Equal))
            });
            match self.store.get(&e.key) {
                Some(v) if Some(v) == e.value.as_deref() => {}
                _ if after => d.resurrected.push(e.key.clone()),
                None => d.concurrent.push(e.key.clone()),
                Some(_) => d.different.push(e.key.clone()),
            }
        }
        for e in self.store.iter().filter(|e| !e.is_tombstone()) {
            if node.get(&e.key).is_none() {
                d.missing.push(e.key.clone());
            }
        }
        d
    }

    /// Live keys of the reference.
    pub(crate) fn live_len(&self) -> usize {
        self.store.live_len()
    }
}
