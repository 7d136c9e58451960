//! The reference: every acknowledged write, with the earlier writes of the same key its
//! writer had seen when it made it (from the writer's causal context, not the entry's
//! version vector, which starts afresh when a key is written again after its delete was
//! collected), so that the end state of a run is judged by causality rather than by
//! replaying one merge. Per key, the *frontier* is the set of writes no other write came
//! after. Once a run has settled, every replica must hold, for each key:
//! - no value outside the frontier: a value a delete came after is a resurrection, a
//!   value another value came after is stale;
//! - a frontier value when the frontier holds only values: a replica without the key
//!   lost a write;
//! - when the frontier holds a value and a delete concurrent with it, either: the
//!   stamps rank them while the delete is held, and the value wins once the delete was
//!   collected on its side of a partition before the two met (nothing is left to order
//!   them; ARCHITECTURE.md, "Tombstone collection at causal stability"). Such keys are
//!   reported as `concurrent`, not failed.
//!
//! Which of several concurrent frontier values a key ends with is the merge's choice;
//! that every replica made the same one is the `converge` property's check.

use std::collections::BTreeMap;

use crate::core::state::{CausalContext, Entry, Store};
use crate::core::NodeId;

/// One acknowledged write.
#[derive(Debug, Clone)]
struct Write {
    writer: NodeId,
    dot: u64,
    value: Option<Vec<u8>>,
    /// Earlier writes of the key (indices) its writer had seen.
    after: Vec<usize>,
}

/// The reference of a run: every acknowledged write, per key.
#[derive(Debug, Default)]
pub(crate) struct Oracle {
    writes: BTreeMap<String, Vec<Write>>,
}

/// How one node's live keys differ from the reference.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveDiff {
    /// Live on the node although a delete came after the value.
    pub resurrected: Vec<String>,
    /// The frontier holds only values, and the node lacks the key.
    pub missing: Vec<String>,
    /// Live on the node with a value another value came after (stale).
    pub different: Vec<String>,
    /// Keys whose frontier holds a value and a delete concurrent with it (not a
    /// failure, see the module documentation).
    pub concurrent: Vec<String>,
}

impl LiveDiff {
    /// True if the node agrees with the reference (`concurrent` keys aside).
    pub fn is_empty(&self) -> bool {
        self.resurrected.is_empty() && self.missing.is_empty() && self.different.is_empty()
    }
}

impl Oracle {
    /// Records an acknowledged write; `seen` is its writer's causal context just after.
    pub(crate) fn record(&mut self, e: Entry, seen: &CausalContext) {
        let dot = e.vv.get(&e.writer);
        let ws = self.writes.entry(e.key).or_default();
        let after = ws
            .iter()
            .enumerate()
            .filter(|(_, o)| seen.contains(&o.writer, o.dot))
            .map(|(i, _)| i)
            .collect();
        ws.push(Write {
            writer: e.writer,
            dot,
            value: e.value,
            after,
        });
    }

    /// The writes of `key` no other write came after.
    fn frontier(&self, key: &str) -> Vec<&Write> {
        let Some(ws) = self.writes.get(key) else {
            return Vec::new();
        };
        ws.iter()
            .enumerate()
            .filter(|(i, _)| !ws.iter().any(|o| o.after.contains(i)))
            .map(|(_, w)| w)
            .collect()
    }

    /// Compares `node`'s live keys with the reference.
    pub(crate) fn diff(&self, node: &Store) -> LiveDiff {
        let mut d = LiveDiff::default();
        for e in node.iter().filter(|e| !e.is_tombstone()) {
            let frontier = self.frontier(&e.key);
            let dot = e.vv.get(&e.writer);
            let held = frontier
                .iter()
                .any(|w| w.writer == e.writer && w.dot == dot);
            if held {
                if frontier.iter().any(|w| w.value.is_none()) {
                    d.concurrent.push(e.key.clone());
                }
                continue;
            }
            let ws = self.writes.get(&e.key).map(Vec::as_slice).unwrap_or(&[]);
            let mine = ws.iter().position(|w| w.writer == e.writer && w.dot == dot);
            let mut later = ws
                .iter()
                .filter(|o| mine.is_some_and(|m| o.after.contains(&m)));
            if later.any(|o| o.value.is_none()) {
                d.resurrected.push(e.key.clone());
            } else {
                d.different.push(e.key.clone());
            }
        }
        for key in self.writes.keys() {
            let frontier = self.frontier(key);
            let values_only = !frontier.is_empty() && frontier.iter().all(|w| w.value.is_some());
            if values_only && node.get(key).is_none() {
                d.missing.push(key.clone());
            }
        }
        d
    }

    /// Keys whose frontier holds only values: live on every replica at the end.
    pub(crate) fn live_len(&self) -> usize {
        self.writes
            .keys()
            .filter(|k| {
                let f = self.frontier(k);
                !f.is_empty() && f.iter().all(|w| w.value.is_some())
            })
            .count()
    }
}
