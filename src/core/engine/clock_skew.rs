//! How far ahead of our wall clock each writer's stamps arrive, and the writers whose
//! stamps were beyond the drift bound (`limits.max_clock_drift_ms`).

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;

use super::io::{Event, Output};
use crate::core::NodeId;

/// Most writers tracked; entries of further writers are still checked, just not listed.
const WRITERS_MAX: usize = 1_024;

/// One writer's clock as seen through its stamps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct WriterSkew {
    /// Largest amount (ms) a stamp of this writer was ahead of our clock.
    pub ahead_ms: u64,
    /// Entries of this writer stamped beyond the drift bound.
    pub beyond_bound: u64,
}

/// Per-writer clock skew, bounded.
#[derive(Debug, Clone, Default)]
pub struct ClockSkew {
    writers: BTreeMap<NodeId, WriterSkew>,
}

impl ClockSkew {
    /// Records a stamp `ahead_ms` ahead of our clock (0 or more).
    pub fn seen(&mut self, writer: &NodeId, ahead_ms: u64) {
        if ahead_ms == 0 {
            return;
        }
        if let Some(w) = self.slot(writer) {
            w.ahead_ms = w.ahead_ms.max(ahead_ms);
        }
    }

    /// Records a stamp beyond the drift bound; the writer's first is told to
    /// subscribers (the runtime logs it once, with the writer's id).
    pub fn beyond_bound(&mut self, writer: &NodeId, ahead_ms: u64, out: &mut VecDeque<Output>) {
        let Some(w) = self.slot(writer) else {
            return;
        };
        w.beyond_bound += 1;
        w.ahead_ms = w.ahead_ms.max(ahead_ms);
        if w.beyond_bound == 1 {
            out.push_back(Output::Event(Event::ClockAhead {
                writer: writer.clone(),
                ahead_ms,
            }));
        }
    }

    fn slot(&mut self, writer: &NodeId) -> Option<&mut WriterSkew> {
        if !self.writers.contains_key(writer) && self.writers.len() >= WRITERS_MAX {
            return None;
        }
        Some(self.writers.entry(writer.clone()).or_default())
    }

    /// Every tracked writer.
    pub fn writers(&self) -> &BTreeMap<NodeId, WriterSkew> {
        &self.writers
    }

    /// Largest amount (ms) a stamp of any writer was ahead of our clock.
    pub fn max_ahead_ms(&self) -> u64 {
        self.writers.values().map(|w| w.ahead_ms).max().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_writer_beyond_the_bound_is_told_once_and_the_table_stays_bounded() {
        let mut s = ClockSkew::default();
        let mut out = VecDeque::new();
        let w = NodeId::new("w").unwrap();
        s.beyond_bound(&w, 5_000_000, &mut out);
        s.beyond_bound(&w, 9_000_000, &mut out);
        s.seen(&w, 20);
        assert_eq!(out.len(), 1, "told once");
        assert_eq!(
            s.writers()[&w],
            WriterSkew {
                ahead_ms: 9_000_000,
                beyond_bound: 2
            }
        );
        for i in 0..2 * WRITERS_MAX {
            s.seen(&NodeId::new(&format!("n{i}")).unwrap(), 1);
        }
        assert_eq!(s.writers().len(), WRITERS_MAX);
    }
}
