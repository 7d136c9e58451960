//! The node's recent user events and their watchers: every event the node delivers
//! (its own included) gets an index and enters a bounded ring, which
//! `GET /v1/events` lists and `GET /v1/watch/events` follows.
//!
//! **Indexes** start each process life at `start wall ms << 10` and rise by one per
//! event, so a restarted node's indexes lie above its previous life's (unless its wall
//! clock was stepped back).
//!
//! **Watchers never hold the node up.** Live events reach watchers through a
//! `tokio::sync::broadcast` channel of [`WATCH_LAG`] slots: the node only ever sends
//! into it, and a watcher that falls further behind learns how many events it missed
//! ([`EventWatchNext::Missed`]) and goes on. A watch resumed from an index the ring no
//! longer covers learns the same, then gets what the ring holds.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::core::events::UserEvent;

/// Events the ring keeps (the most recent).
pub const RECENT_EVENTS: usize = 1_024;

/// Bytes of payload the ring keeps at most.
pub const RECENT_BYTES: usize = 16 * 1024 * 1024;

/// Events a live watcher may fall behind before it is told it missed some.
pub const WATCH_LAG: usize = 1_024;

/// Most event watches open at once; more are refused (HTTP 429).
pub const MAX_EVENT_WATCHES: usize = 64;

/// A delivered event as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventView {
    /// Its index on this node.
    pub index: u64,
    /// The member that sent it.
    pub sender: String,
    /// The sender's sequence number (with `sender`, the event's id).
    pub seq: u64,
    /// The event's name.
    pub name: String,
    /// The payload as UTF-8 (invalid sequences replaced by U+FFFD).
    pub payload: String,
    /// Length of the payload in bytes.
    pub payload_len: usize,
}

impl EventView {
    fn new(index: u64, e: &UserEvent) -> Self {
        Self {
            index,
            sender: e.sender.to_string(),
            seq: e.seq,
            name: e.name.clone(),
            payload: String::from_utf8_lossy(&e.payload).into_owned(),
            payload_len: e.payload.len(),
        }
    }
}

/// Counters of the recent-events ring and its watchers.
#[derive(Debug, Default)]
pub struct RecentStats {
    /// Event watches opened.
    pub watches_opened: AtomicU64,
    /// Event watches refused (too many open).
    pub watches_refused: AtomicU64,
    /// Event watches open now.
    pub watches_open: AtomicUsize,
    /// Events watchers missed (fell behind, or resumed past the ring).
    pub watch_missed: AtomicU64,
    /// Events coalesced watches dropped (a later event of the same name came within the
    /// window).
    pub coalesced: AtomicU64,
}

struct Ring {
    next: u64,
    events: VecDeque<EventView>,
    bytes: usize,
}

/// The ring of recent events and the channel its watchers follow.
pub struct RecentEvents {
    ring: Mutex<Ring>,
    live: broadcast::Sender<EventView>,
    stats: Arc<RecentStats>,
}

/// Why an event watch was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventWatchError {
    /// [`MAX_EVENT_WATCHES`] are open.
    #[error("{MAX_EVENT_WATCHES} event watches are open already; close one or try later")]
    TooMany,
    /// The backend keeps no events.
    #[error("this node keeps no events")]
    Unsupported,
}

impl RecentEvents {
    /// An empty ring whose indexes start at `start_wall_ms << 10`.
    pub fn new(start_wall_ms: u64) -> Self {
        Self {
            ring: Mutex::new(Ring {
                next: start_wall_ms << 10,
                events: VecDeque::new(),
                bytes: 0,
            }),
            live: broadcast::channel(WATCH_LAG).0,
            stats: Arc::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a delivered event and passes it to the watchers (never waits).
    pub fn push(&self, e: &UserEvent) {
        let mut r = self.lock();
        let view = EventView::new(r.next, e);
        r.next += 1;
        r.bytes += view.payload_len;
        r.events.push_back(view.clone());
        while r.events.len() > RECENT_EVENTS || (r.bytes > RECENT_BYTES && r.events.len() > 1) {
            if let Some(old) = r.events.pop_front() {
                r.bytes -= old.payload_len;
            }
        }
        // Sent under the lock, so a watch that subscribes under it sees each event once.
        let _ = self.live.send(view);
    }

    /// The events held with an index above `after` (all held: `None`), oldest first.
    pub fn list(&self, after: Option<u64>) -> Vec<EventView> {
        let r = self.lock();
        r.events
            .iter()
            .filter(|v| after.is_none_or(|a| v.index > a))
            .cloned()
            .collect()
    }

    /// The index the next event will get.
    pub fn next_index(&self) -> u64 {
        self.lock().next
    }

    /// Counters.
    pub fn stats(&self) -> &RecentStats {
        &self.stats
    }

    /// Follows the events after `index` (none: from now on): first those the ring
    /// holds, then each new one.
    pub fn watch(&self, index: Option<u64>) -> Result<EventWatch, EventWatchError> {
        let open = self.stats.watches_open.fetch_add(1, Ordering::Relaxed);
        if open >= MAX_EVENT_WATCHES {
            self.stats.watches_open.fetch_sub(1, Ordering::Relaxed);
            self.stats.watches_refused.fetch_add(1, Ordering::Relaxed);
            return Err(EventWatchError::TooMany);
        }
        self.stats.watches_opened.fetch_add(1, Ordering::Relaxed);
        let r = self.lock();
        let rx = self.live.subscribe();
        let last = index.unwrap_or(r.next - 1).min(r.next - 1);
        let backlog: VecDeque<EventView> = r
            .events
            .iter()
            .filter(|v| v.index > last)
            .cloned()
            .collect();
        // Events between `last` and the oldest held were evicted: say how many.
        let oldest = backlog.front().map_or(r.next, |v| v.index);
        let missed = oldest.saturating_sub(last + 1);
        drop(r);
        Ok(EventWatch {
            coalesce: None,
            ready: VecDeque::new(),
            rx,
            backlog,
            last,
            missed,
            stats: self.stats.clone(),
        })
    }
}

/// What an event watch yields next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventWatchNext {
    /// An event.
    Event(EventView),
    /// This many events were missed (evicted before the watch reached them).
    Missed(u64),
    /// Nothing happened for the idle period; every event up to `index` was sent.
    Idle {
        /// The last index the watch has covered.
        index: u64,
    },
    /// The node is shutting down.
    End,
}

/// A watch of the node's events (see [`RecentEvents::watch`]).
pub struct EventWatch {
    /// With coalescing (Serf's): the window, and what it let through, ready to go.
    coalesce: Option<Duration>,
    ready: VecDeque<EventWatchNext>,
    rx: broadcast::Receiver<EventView>,
    backlog: VecDeque<EventView>,
    last: u64,
    missed: u64,
    stats: Arc<RecentStats>,
}

impl EventWatch {
    /// The index the watch starts after.
    pub fn start(&self) -> u64 {
        self.last
    }

    /// Coalesces events as Serf does: from the first event of a burst, for `window`, only
    /// the latest event of each name is delivered (in index order, when the window
    /// closes); the others are dropped and counted. Resuming from the last line's index
    /// still misses nothing the node holds, as that index covers the dropped ones.
    pub fn coalesce(mut self, window: Duration) -> Self {
        self.coalesce = Some(window).filter(|w| !w.is_zero());
        self
    }

    /// The next event, a note of missed events, or `Idle` after `idle` of silence.
    pub async fn next(&mut self, idle: Duration) -> EventWatchNext {
        if let Some(x) = self.ready.pop_front() {
            return x;
        }
        let Some(window) = self.coalesce else {
            return self.next_raw(idle).await;
        };
        let first = match self.next_raw(idle).await {
            EventWatchNext::Event(v) => v,
            other => return other,
        };
        let mut latest: std::collections::BTreeMap<String, EventView> = Default::default();
        let mut taken = 1u64;
        latest.insert(first.name.clone(), first);
        let deadline = tokio::time::Instant::now() + window;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            match self.next_raw(left).await {
                EventWatchNext::Event(v) => {
                    taken += 1;
                    latest.insert(v.name.clone(), v);
                }
                EventWatchNext::Idle { .. } => break,
                // Told after the events taken so far.
                other => {
                    self.ready.push_back(other);
                    break;
                }
            }
        }
        let mut out: Vec<EventView> = latest.into_values().collect();
        out.sort_by_key(|v| v.index);
        self.stats
            .coalesced
            .fetch_add(taken - out.len() as u64, Ordering::Relaxed);
        let after = std::mem::take(&mut self.ready);
        self.ready
            .extend(out.into_iter().map(EventWatchNext::Event));
        self.ready.extend(after);
        self.ready
            .pop_front()
            .unwrap_or(EventWatchNext::Idle { index: self.last })
    }

    /// [`EventWatch::next`] without coalescing.
    async fn next_raw(&mut self, idle: Duration) -> EventWatchNext {
        if self.missed > 0 {
            let n = std::mem::take(&mut self.missed);
            self.stats.watch_missed.fetch_add(n, Ordering::Relaxed);
            return EventWatchNext::Missed(n);
        }
        if let Some(v) = self.backlog.pop_front() {
            self.last = v.index;
            return EventWatchNext::Event(v);
        }
        loop {
            match tokio::time::timeout(idle, self.rx.recv()).await {
                Err(_) => return EventWatchNext::Idle { index: self.last },
                Ok(Ok(v)) if v.index <= self.last => continue,
                Ok(Ok(v)) => {
                    self.last = v.index;
                    return EventWatchNext::Event(v);
                }
                Ok(Err(broadcast::error::RecvError::Lagged(n))) => {
                    self.stats.watch_missed.fetch_add(n, Ordering::Relaxed);
                    return EventWatchNext::Missed(n);
                }
                Ok(Err(broadcast::error::RecvError::Closed)) => return EventWatchNext::End,
            }
        }
    }
}

impl Drop for EventWatch {
    fn drop(&mut self) {
        self.stats.watches_open.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::NodeId;

    fn event(seq: u64) -> UserEvent {
        UserEvent {
            sender: NodeId::new("n1").unwrap(),
            seq,
            name: "e".into(),
            payload: vec![b'p'; 10],
            sig: Default::default(),
        }
    }

    async fn next_event(w: &mut EventWatch) -> EventWatchNext {
        w.next(Duration::from_secs(5)).await
    }

    #[tokio::test]
    async fn a_watch_gets_held_events_then_new_ones_each_once() {
        let r = RecentEvents::new(1);
        r.push(&event(1));
        r.push(&event(2));
        let start = 1 << 10;
        let mut w = r.watch(Some(start)).unwrap();
        r.push(&event(3));
        for seq in [2, 3] {
            match next_event(&mut w).await {
                EventWatchNext::Event(v) => assert_eq!(v.seq, seq),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(
            w.next(Duration::from_millis(10)).await,
            EventWatchNext::Idle { index: start + 2 }
        );
        assert_eq!(r.list(Some(start)).len(), 2);
    }

    #[tokio::test]
    async fn a_watch_resumed_past_the_ring_learns_how_many_it_missed() {
        let r = RecentEvents::new(1);
        for seq in 0..(RECENT_EVENTS as u64 + 5) {
            r.push(&event(seq));
        }
        let mut w = r.watch(Some((1 << 10) - 1)).unwrap();
        assert_eq!(next_event(&mut w).await, EventWatchNext::Missed(5));
        match next_event(&mut w).await {
            EventWatchNext::Event(v) => assert_eq!(v.seq, 5),
            other => panic!("{other:?}"),
        }
        assert_eq!(r.stats().watch_missed.load(Ordering::Relaxed), 5);
    }

    #[tokio::test]
    async fn a_slow_watcher_is_told_what_it_missed_and_never_holds_the_node() {
        let r = RecentEvents::new(1);
        let mut w = r.watch(None).unwrap();
        for seq in 0..(WATCH_LAG as u64 + 10) {
            r.push(&event(seq));
        }
        assert_eq!(next_event(&mut w).await, EventWatchNext::Missed(10));
        match next_event(&mut w).await {
            EventWatchNext::Event(v) => assert_eq!(v.seq, 10),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_coalescing_watch_delivers_the_latest_event_of_each_name_in_its_window() {
        let r = RecentEvents::new(1);
        let mut w = r.watch(None).unwrap().coalesce(Duration::from_millis(200));
        let named = |name: &str, seq| UserEvent {
            name: name.into(),
            ..event(seq)
        };
        r.push(&named("deploy", 1));
        r.push(&named("other", 2));
        r.push(&named("deploy", 3));
        let mut got = Vec::new();
        for _ in 0..2 {
            match next_event(&mut w).await {
                EventWatchNext::Event(v) => got.push((v.name, v.seq)),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(got, [("other".to_string(), 2), ("deploy".to_string(), 3)]);
        assert_eq!(r.stats().coalesced.load(Ordering::Relaxed), 1);
        // The window closed: a later event of the same name is delivered too.
        r.push(&named("deploy", 4));
        match next_event(&mut w).await {
            EventWatchNext::Event(v) => assert_eq!(v.seq, 4),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn watches_beyond_the_limit_are_refused() {
        let r = RecentEvents::new(1);
        let open: Vec<_> = (0..MAX_EVENT_WATCHES)
            .map(|_| r.watch(None).unwrap())
            .collect();
        assert_eq!(r.watch(None).err(), Some(EventWatchError::TooMany));
        drop(open);
        assert!(r.watch(None).is_ok());
    }
}
