//! Arrival times of tracked writes on every node, and the propagation times they give:
//! shared by the modes that watch real nodes (quic through each node's events, processes
//! and cluster through each admin API's watch stream).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

/// Arrival times of tracked writes on every node.
pub(super) struct Tracker {
    n: usize,
    index: HashMap<String, usize>,
    at: Vec<Instant>,
    arrivals: Vec<Vec<Option<Instant>>>,
    remaining: Vec<usize>,
    pub(super) lagged: bool,
}

impl Tracker {
    /// A tracker of writes to `n` nodes.
    pub(super) fn new(n: usize) -> Self {
        Self {
            n,
            index: HashMap::new(),
            at: Vec::new(),
            arrivals: Vec::new(),
            remaining: Vec::new(),
            lagged: false,
        }
    }

    /// Tracks the write of `key`, made now; returns its number.
    pub(super) fn register(&mut self, key: String) -> usize {
        let w = self.at.len();
        self.index.insert(key, w);
        self.at.push(Instant::now());
        self.arrivals.push(vec![None; self.n]);
        self.remaining.push(self.n);
        w
    }

    /// `key` arrived on `node` at `t` (the first arrival counts; untracked keys are
    /// ignored).
    pub(super) fn arrived(&mut self, key: &str, node: usize, t: Instant) {
        if let Some(&w) = self.index.get(key) {
            if self.arrivals[w][node].is_none() {
                self.arrivals[w][node] = Some(t);
                self.remaining[w] -= 1;
            }
        }
    }

    /// Writes tracked so far.
    pub(super) fn registered(&self) -> usize {
        self.at.len()
    }

    /// Writes that reached every node.
    pub(super) fn complete(&self) -> usize {
        self.remaining.iter().filter(|&&r| r == 0).count()
    }

    /// Time (ms) from write `w` until it arrived on `node`, if it did.
    pub(super) fn arrival_ms(&self, w: usize, node: usize) -> Option<f64> {
        let t = (*self.arrivals.get(w)?.get(node)?)?;
        Some(t.saturating_duration_since(self.at[w]).as_secs_f64() * 1000.0)
    }

    /// Propagation times (ms) of the complete writes.
    pub(super) fn propagation_ms(&self) -> Vec<f64> {
        (0..self.at.len())
            .filter(|&w| self.remaining[w] == 0)
            .filter_map(|w| {
                let last = self.arrivals[w].iter().flatten().max()?;
                Some(last.saturating_duration_since(self.at[w]).as_secs_f64() * 1000.0)
            })
            .collect()
    }
}

/// The tracker, also after a panic of another holder (its state stays consistent: every
/// method updates it in one step).
pub(super) fn lock(t: &Mutex<Tracker>) -> MutexGuard<'_, Tracker> {
    t.lock().unwrap_or_else(|p| p.into_inner())
}
