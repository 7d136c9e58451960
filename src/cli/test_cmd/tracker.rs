//! Tracking writes and their arrivals on every node: the workload that makes them, and
//! the event watchers and polls that time them.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use gossamer::core::Event;
use gossamer::node::Node;
use gossamer::node::SubscriptionError;

pub(super) struct Write {
    key: String,
    at: Instant,
}

/// Which node holds which write since when.
pub(super) struct Tracker {
    n: usize,
    pub(super) writes: Vec<Write>,
    index: HashMap<String, usize>,
    arrivals: Vec<Vec<Option<Instant>>>,
    remaining: Vec<usize>,
    pub(super) incomplete: BTreeSet<usize>,
    /// Receivers that lost events (their arrivals are then found by polling).
    lagged: Vec<bool>,
    /// Presence seen by polling without an event yet: (write, node) -> first seen.
    seen: HashMap<(usize, usize), Instant>,
    /// Arrivals measured by polling rather than by an event.
    pub(super) polled: u64,
}

impl Tracker {
    pub(super) fn new(n: usize, capacity: usize) -> Self {
        Self {
            n,
            writes: Vec::with_capacity(capacity),
            index: HashMap::with_capacity(capacity),
            arrivals: Vec::with_capacity(capacity),
            remaining: Vec::with_capacity(capacity),
            incomplete: BTreeSet::new(),
            lagged: vec![false; n],
            seen: HashMap::new(),
            polled: 0,
        }
    }

    fn register(&mut self, key: String, at: Instant) {
        let w = self.writes.len();
        self.index.insert(key.clone(), w);
        self.writes.push(Write { key, at });
        self.arrivals.push(vec![None; self.n]);
        self.remaining.push(self.n);
        self.incomplete.insert(w);
    }

    fn arrived(&mut self, w: usize, node: usize, at: Instant) -> bool {
        if self.arrivals[w][node].is_some() {
            return false;
        }
        self.arrivals[w][node] = Some(at);
        self.remaining[w] -= 1;
        if self.remaining[w] == 0 {
            self.incomplete.remove(&w);
        }
        true
    }

    /// True if every write made before `t` is on every node.
    pub(super) fn complete_before(&self, t: Instant) -> bool {
        self.incomplete
            .first()
            .is_none_or(|&w| self.writes[w].at >= t)
    }

    /// Finds arrivals that events did not report: on nodes whose receiver lagged, or for
    /// writes older than two seconds. A presence counts once seen on two polls in a row
    /// (so an event on its way wins), and dates from the first.
    pub(super) fn poll_fallback(&mut self, nodes: &[Node], now: Instant) {
        let old = now.checked_sub(Duration::from_secs(2));
        let candidates: Vec<usize> = self.incomplete.iter().copied().collect();
        let mut budget = POLL_BUDGET;
        for w in candidates {
            if budget == 0 {
                break;
            }
            let aged = old.is_some_and(|o| self.writes[w].at < o);
            for (i, node) in nodes.iter().enumerate() {
                if self.arrivals[w][i].is_some() || !(aged || self.lagged[i]) {
                    continue;
                }
                budget = budget.saturating_sub(1);
                if node.get(&self.writes[w].key).is_none() {
                    self.seen.remove(&(w, i));
                    continue;
                }
                match self.seen.get(&(w, i)) {
                    Some(&first) => {
                        if self.arrived(w, i, first) {
                            self.polled += 1;
                        }
                        self.seen.remove(&(w, i));
                    }
                    None => {
                        self.seen.insert((w, i), now);
                    }
                }
            }
        }
    }

    /// Propagation time (write to last node) of the complete writes made in `window`.
    pub(super) fn propagation(&self, keep: impl Fn(Instant) -> bool) -> Vec<Duration> {
        self.writes
            .iter()
            .enumerate()
            .filter(|(w, x)| self.remaining[*w] == 0 && keep(x.at))
            .filter_map(|(w, x)| {
                self.arrivals[w]
                    .iter()
                    .flatten()
                    .max()
                    .map(|last| last.saturating_duration_since(x.at))
            })
            .collect()
    }

    /// Writes missing on node `i`.
    pub(super) fn missing_on(&self, i: usize) -> usize {
        self.incomplete
            .iter()
            .filter(|&&w| self.arrivals[w][i].is_none())
            .count()
    }
}

/// Most `get` calls of one fallback poll (keeps big runs cheap; the rest waits).
const POLL_BUDGET: usize = 5_000;

pub(super) fn lock(t: &Mutex<Tracker>) -> MutexGuard<'_, Tracker> {
    t.lock().unwrap_or_else(|p| p.into_inner())
}

/// Records the arrival instant of every tracked write a node reports.
pub(super) async fn watch_events(node: Node, i: usize, tracker: Arc<Mutex<Tracker>>) {
    let mut rx = node.subscribe();
    drop(node);
    loop {
        match rx.recv().await {
            Ok(Event::Kv { entry, .. }) => {
                let at = Instant::now();
                if entry.value.is_none() {
                    continue;
                }
                let mut t = lock(&tracker);
                if let Some(&w) = t.index.get(&entry.key) {
                    t.arrived(w, i, at);
                }
            }
            Ok(_) => {}
            Err(SubscriptionError::Missed(_)) => lock(&tracker).lagged[i] = true,
            Err(SubscriptionError::Closed) => break,
        }
    }
}

/// Sends the workload: `total` writes at `rate` per second, on the nodes in turn.
pub(super) async fn workload(
    nodes: Vec<Node>,
    tracker: Arc<Mutex<Tracker>>,
    start: Instant,
    rate: f64,
    total: usize,
    errors: Arc<AtomicU64>,
) {
    for k in 0..total {
        let due = start + Duration::from_secs_f64(k as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        let key = format!("gossamer-test/{k:06}");
        let value = format!("w{k}").into_bytes();
        // Register first: the writer's own event may arrive before `set` returns.
        lock(&tracker).register(key.clone(), Instant::now());
        if nodes[k % nodes.len()].set(&key, value).is_err() {
            errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracker_counts_completion_in_write_order() {
        let mut t = Tracker::new(2, 4);
        let t0 = Instant::now();
        t.register("a".into(), t0);
        t.register("b".into(), t0 + Duration::from_secs(1));
        assert!(!t.complete_before(t0 + Duration::from_millis(1)));
        t.arrived(0, 0, t0);
        assert!(!t.arrived(0, 0, t0), "an arrival counts once");
        t.arrived(0, 1, t0 + Duration::from_millis(5));
        assert!(t.complete_before(t0 + Duration::from_millis(1)));
        assert!(!t.complete_before(t0 + Duration::from_secs(2)));
        assert_eq!(t.propagation(|_| true), vec![Duration::from_millis(5)]);
        assert_eq!((t.missing_on(0), t.missing_on(1)), (1, 1));
    }
}
