//! The node's change log and its watches: every key-value change the node applies (a
//! local write or a peer's, deletes included) gets an index, and a [`Watch`] follows the
//! changes under a prefix from an index on.
//!
//! **Indexes.** `index = (wall ms << 10) | sequence within the ms`, strictly increasing
//! within one process life (a burst of more than 1,024 changes in a millisecond borrows
//! from the next one). A life starts at `start wall ms << 10`, so indexes of a restarted
//! node lie above those of its previous life, and an index below the start of this life
//! can be told apart ([`ResetReason::BeforeThisLife`]). Limit: a wall clock stepped back
//! across a restart can make a new life's indexes overlap its previous life's.
//!
//! **The ring** keeps the latest changes, bounded by count and bytes
//! ([`WatchConfig`]). A watch resumed from an index `I` gets every change after `I` once,
//! in index order, as long as the ring still holds every change after `I` and `I` is of
//! this life; otherwise it gets a reset marker ("re-list, then resume from the listing's
//! index") and ends.
//!
//! **Watchers never hold the node up.** Each live watch has a queue of at most
//! [`WATCH_QUEUE`] changes (and [`WATCH_QUEUE_BYTES`]); the node only ever tries to push
//! into it. A watcher whose queue is full is sent a reset marker (one slot is kept for
//! it) and dropped: its stream ends after the changes already queued.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::core::engine::{Event, Output};
use crate::core::NodeId;

/// Changes a live watch may have queued before it is reset as too slow.
pub const WATCH_QUEUE: usize = 1_024;

/// Bytes of keys and values a live watch may have queued before it is reset as too slow
/// (so that slow watchers cannot pin evicted changes without bound).
pub const WATCH_QUEUE_BYTES: usize = 8 * 1024 * 1024;

/// Longest prefix a watch accepts, in bytes.
pub const MAX_PREFIX: usize = 4_096;

/// Changes of the ring a catching-up watch looks at per turn (bounds the time the log's
/// lock is held).
const CATCHUP_SCAN: usize = 4_096;

/// Changes a catching-up watch takes per turn.
const CATCHUP_BATCH: usize = 256;

/// What a logged change costs beyond its key, value and writer (index, pointers).
const CHANGE_OVERHEAD: u64 = 96;

/// The change log's bounds (`[watch]` in TOML).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WatchConfig {
    /// Most changes the ring keeps; a watch resumed from an older index is reset.
    pub log_changes: usize,
    /// Most bytes of keys and values the ring keeps.
    pub log_bytes: u64,
    /// Most watches open at once; more are refused (HTTP 429).
    pub max_watches: usize,
}

impl Default for WatchConfig {
    fn default() -> Self {
        Self {
            log_changes: 10_000,
            log_bytes: 64 * 1024 * 1024,
            max_watches: 64,
        }
    }
}

impl WatchConfig {
    /// Checks the values; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=10_000_000).contains(&self.log_changes) {
            return Err(format!(
                "watch.log_changes: {} is out of range; use 1 to 10000000 (changes a watch can resume across)",
                self.log_changes
            ));
        }
        const MIB: u64 = 1024 * 1024;
        if !(MIB..=64 * 1024 * MIB).contains(&self.log_bytes) {
            return Err(format!(
                "watch.log_bytes: {} is out of range; use 1 MiB (1048576) to 64 GiB (more than the largest value)",
                self.log_bytes
            ));
        }
        if !(1..=10_000).contains(&self.max_watches) {
            return Err(format!(
                "watch.max_watches: {} is out of range; use 1 to 10000",
                self.max_watches
            ));
        }
        Ok(())
    }
}

/// Why a watch was reset: the client must re-list and resume from the listing's index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResetReason {
    /// The ring no longer holds every change after the index asked for, or the watcher
    /// fell too far behind the node.
    Behind,
    /// The index is from before this process life (the node restarted).
    BeforeThisLife,
    /// The index is beyond the node's current index (another node's, or a forged one).
    Ahead,
}

impl ResetReason {
    /// Every reason, in the order metrics list them.
    pub const ALL: [ResetReason; 3] = [Self::Behind, Self::BeforeThisLife, Self::Ahead];

    /// The name used on the wire and as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Behind => "behind",
            Self::BeforeThisLife => "before_this_life",
            Self::Ahead => "ahead",
        }
    }
}

/// One change of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedChange {
    /// Its index.
    pub index: u64,
    /// The key.
    pub key: String,
    /// The new value; `None` for a delete.
    pub value: Option<Vec<u8>>,
    /// The node whose write won.
    pub writer: NodeId,
}

impl LoggedChange {
    fn size(&self) -> u64 {
        let value = self.value.as_ref().map_or(0, Vec::len);
        (self.key.len() + value + self.writer.as_str().len()) as u64 + CHANGE_OVERHEAD
    }
}

/// What a watch yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchItem {
    /// A change under the watch's prefix.
    Change(Arc<LoggedChange>),
    /// The watch cannot go on: re-list, then resume from the listing's index (at least
    /// `index`). The last item of a watch.
    Reset {
        /// The node's index when the watch was reset.
        index: u64,
        /// Why.
        reason: ResetReason,
    },
}

/// The outcome of [`Watch::next`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchNext {
    /// A change or the reset marker.
    Item(WatchItem),
    /// Nothing for the idle time given: every change up to `index` under the prefix was
    /// delivered (a resume from `index` misses nothing).
    Idle {
        /// The node's current index.
        index: u64,
    },
    /// The watch ended (after a reset, or the node shut down).
    End,
}

/// Why a watch could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WatchError {
    /// The prefix is longer than [`MAX_PREFIX`].
    #[error("prefix is {len} bytes long; at most {MAX_PREFIX} are accepted")]
    PrefixTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// `watch.max_watches` watches are open already.
    #[error("{open} watches are open, the most this node allows (watch.max_watches); close one or retry later")]
    TooMany {
        /// Watches open.
        open: usize,
    },
    /// The node is shutting down.
    #[error("the node is shutting down")]
    Closed,
    /// This backend keeps no change log.
    #[error("this node keeps no change log")]
    Unsupported,
}

/// The change log's counters.
#[derive(Debug, Default)]
pub struct WatchStats {
    /// Watches open now.
    pub open: AtomicU64,
    /// Watches opened.
    pub opened: AtomicU64,
    /// Watches refused because `max_watches` were open.
    pub refused: AtomicU64,
    /// Reset markers sent, by reason (in the order of [`ResetReason::ALL`]).
    pub resets: [AtomicU64; 3],
    /// Changes logged.
    pub logged: AtomicU64,
}

impl WatchStats {
    fn reset(&self, reason: ResetReason) {
        let i = ResetReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        self.resets[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Reset markers sent, per reason.
    pub fn resets_by_reason(&self) -> Vec<(&'static str, u64)> {
        ResetReason::ALL
            .iter()
            .zip(&self.resets)
            .map(|(r, n)| (r.as_str(), n.load(Ordering::Relaxed)))
            .collect()
    }
}

/// A live watch as the log sees it.
struct Watcher {
    prefix: String,
    tx: mpsc::Sender<WatchItem>,
    /// Bytes of changes queued and not yet taken by the watch.
    queued_bytes: Arc<AtomicUsize>,
}

struct LogState {
    /// The first index of this life (no change of this life is at or below it).
    life_start: u64,
    /// The latest index given out (`life_start` before the first change).
    last: u64,
    /// Every change after `floor` is in the ring.
    floor: u64,
    ring: VecDeque<Arc<LoggedChange>>,
    bytes: u64,
    watchers: Vec<Watcher>,
    closed: bool,
}

/// The node's change log (see the module documentation).
pub struct ChangeLog {
    cfg: WatchConfig,
    state: Mutex<LogState>,
    stats: WatchStats,
}

impl std::fmt::Debug for ChangeLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeLog")
            .field("cfg", &self.cfg)
            .field("index", &self.index())
            .finish()
    }
}

impl ChangeLog {
    /// A log whose life starts at `start_wall_ms`.
    pub fn new(cfg: WatchConfig, start_wall_ms: u64) -> Arc<Self> {
        let start = start_wall_ms << 10;
        Arc::new(Self {
            cfg,
            state: Mutex::new(LogState {
                life_start: start,
                last: start,
                floor: start,
                ring: VecDeque::new(),
                bytes: 0,
                watchers: Vec::new(),
                closed: false,
            }),
            stats: WatchStats::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, LogState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The latest index: a listing taken now reflects every change up to it.
    pub fn index(&self) -> u64 {
        self.lock().last
    }

    /// The log's counters.
    pub fn stats(&self) -> &WatchStats {
        &self.stats
    }

    /// Logs the key-value change `out` carries, if it carries one (gossamer's own keys
    /// are not the application's and are left out). The runtime calls it for every
    /// output it takes from the engine, under the engine's lock, so the log's order is
    /// the store's.
    pub fn record(&self, out: &Output, wall_ms: u64) {
        if let Output::Event(Event::Kv { entry, .. }) = out {
            if !crate::core::state::is_system_key(&entry.key) {
                self.append(
                    wall_ms,
                    entry.key.clone(),
                    entry.value.clone(),
                    entry.writer.clone(),
                );
            }
        }
    }

    /// Logs one change at wall time `wall_ms`; returns its index.
    pub fn append(&self, wall_ms: u64, key: String, value: Option<Vec<u8>>, writer: NodeId) -> u64 {
        let mut s = self.lock();
        if s.closed {
            return s.last;
        }
        let index = (s.last + 1).max(wall_ms << 10);
        s.last = index;
        let change = Arc::new(LoggedChange {
            index,
            key,
            value,
            writer,
        });
        let size = change.size();
        s.ring.push_back(change.clone());
        s.bytes += size;
        while s.ring.len() > self.cfg.log_changes || s.bytes > self.cfg.log_bytes {
            let Some(old) = s.ring.pop_front() else { break };
            s.bytes -= old.size();
            s.floor = old.index;
        }
        let stats = &self.stats;
        s.watchers
            .retain(|w| offer(w, &change, size as usize, stats));
        stats.logged.fetch_add(1, Ordering::Relaxed);
        index
    }

    /// Opens a watch of the keys starting with `prefix`: from the current index
    /// (`index` none: only changes from now on), or of every change after `index`. An
    /// index the log cannot resume from gives a watch whose only item is a reset marker.
    pub fn watch(self: &Arc<Self>, prefix: &str, index: Option<u64>) -> Result<Watch, WatchError> {
        if prefix.len() > MAX_PREFIX {
            return Err(WatchError::PrefixTooLong { len: prefix.len() });
        }
        let mut s = self.lock();
        if s.closed {
            return Err(WatchError::Closed);
        }
        let open = self.stats.open.load(Ordering::Relaxed) as usize;
        if open >= self.cfg.max_watches {
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
            return Err(WatchError::TooMany { open });
        }
        self.stats.open.fetch_add(1, Ordering::Relaxed);
        self.stats.opened.fetch_add(1, Ordering::Relaxed);
        let mut w = Watch {
            log: self.clone(),
            prefix: prefix.to_string(),
            state: State::Done,
            pending: VecDeque::new(),
            queued_bytes: Arc::new(AtomicUsize::new(0)),
            start: None,
        };
        let reset = match index {
            None => {
                w.start = Some(s.last);
                w.go_live(&mut s);
                None
            }
            Some(i) if i > s.last => Some(ResetReason::Ahead),
            Some(i) if i < s.life_start => Some(ResetReason::BeforeThisLife),
            Some(i) if i < s.floor => Some(ResetReason::Behind),
            Some(i) => {
                w.start = Some(i);
                w.state = State::CatchUp { after: i };
                None
            }
        };
        if let Some(reason) = reset {
            self.stats.reset(reason);
            w.pending.push_back(WatchItem::Reset {
                index: s.last,
                reason,
            });
        }
        Ok(w)
    }

    /// Ends every watch (the node is shutting down): live ones after what they have
    /// queued. Later changes are not logged and later watches are refused.
    pub fn close(&self) {
        let mut s = self.lock();
        s.closed = true;
        s.watchers.clear();
    }
}

/// Offers `change` to a live watcher; false when the watcher is to be dropped (gone,
/// or too slow: then it was sent a reset marker).
fn offer(w: &Watcher, change: &Arc<LoggedChange>, size: usize, stats: &WatchStats) -> bool {
    if w.tx.is_closed() {
        return false;
    }
    if !change.key.starts_with(&w.prefix) {
        return true;
    }
    // One slot stays free for the reset marker.
    let queued = w.queued_bytes.load(Ordering::Relaxed);
    if w.tx.capacity() <= 1 || queued + size > WATCH_QUEUE_BYTES {
        let reset = WatchItem::Reset {
            index: change.index,
            reason: ResetReason::Behind,
        };
        if w.tx.try_send(reset).is_ok() {
            stats.reset(ResetReason::Behind);
        }
        return false;
    }
    w.queued_bytes.fetch_add(size, Ordering::Relaxed);
    w.tx.try_send(WatchItem::Change(change.clone())).is_ok()
}

enum State {
    /// Reading the ring after index `after`.
    CatchUp { after: u64 },
    /// Up to date: new changes arrive through the queue.
    Live(mpsc::Receiver<WatchItem>),
    /// Nothing more comes.
    Done,
}

/// A watch of the changes under a prefix (see [`ChangeLog::watch`]); it counts as open
/// until dropped.
pub struct Watch {
    log: Arc<ChangeLog>,
    prefix: String,
    state: State,
    pending: VecDeque<WatchItem>,
    queued_bytes: Arc<AtomicUsize>,
    start: Option<u64>,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch")
            .field("prefix", &self.prefix)
            .field("start", &self.start)
            .finish()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.log.stats.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Watch {
    /// The index the watch starts after (none when it was reset at once).
    pub fn start(&self) -> Option<u64> {
        self.start
    }

    /// The next change or reset marker; [`WatchNext::Idle`] when nothing came for
    /// `idle`; [`WatchNext::End`] once the watch is over.
    pub async fn next(&mut self, idle: Duration) -> WatchNext {
        loop {
            if let Some(item) = self.pending.pop_front() {
                if matches!(item, WatchItem::Reset { .. }) {
                    self.pending.clear();
                    self.state = State::Done;
                }
                return WatchNext::Item(item);
            }
            let got = match &mut self.state {
                State::Done => return WatchNext::End,
                State::CatchUp { after } => {
                    let after = *after;
                    self.catch_up(after);
                    continue;
                }
                State::Live(rx) => match tokio::time::timeout(idle, rx.recv()).await {
                    Ok(got) => got,
                    Err(_) => {
                        // Changes are queued under the log's lock: an empty queue seen
                        // under it means every change up to `last` was delivered.
                        let s = self.log.lock();
                        match rx.try_recv() {
                            Ok(item) => Some(item),
                            Err(mpsc::error::TryRecvError::Empty) => {
                                return WatchNext::Idle { index: s.last }
                            }
                            Err(mpsc::error::TryRecvError::Disconnected) => None,
                        }
                    }
                },
            };
            match got {
                Some(item) => {
                    if let WatchItem::Change(c) = &item {
                        self.queued_bytes
                            .fetch_sub(c.size() as usize, Ordering::Relaxed);
                    }
                    self.pending.push_back(item);
                }
                None => {
                    self.state = State::Done;
                    return WatchNext::End;
                }
            }
        }
    }

    /// One turn of reading the ring after `after`: a batch of matching changes, then
    /// live once the end is reached.
    fn catch_up(&mut self, after: u64) {
        let log = self.log.clone();
        let mut s = log.lock();
        if s.closed {
            self.state = State::Done;
            return;
        }
        if after < s.floor {
            log.stats.reset(ResetReason::Behind);
            self.pending.push_back(WatchItem::Reset {
                index: s.last,
                reason: ResetReason::Behind,
            });
            return;
        }
        let from = s.ring.partition_point(|c| c.index <= after);
        let mut scanned = after;
        let mut taken = 0;
        for c in s.ring.range(from..).take(CATCHUP_SCAN) {
            scanned = c.index;
            if c.key.starts_with(&self.prefix) {
                self.pending.push_back(WatchItem::Change(c.clone()));
                taken += 1;
                if taken == CATCHUP_BATCH {
                    break;
                }
            }
        }
        if scanned == s.last {
            self.go_live(&mut s);
        } else {
            self.state = State::CatchUp { after: scanned };
        }
    }

    /// Registers the watch's queue with the log: every later change reaches it.
    fn go_live(&mut self, s: &mut LogState) {
        let (tx, rx) = mpsc::channel(WATCH_QUEUE + 1);
        s.watchers.push(Watcher {
            prefix: self.prefix.clone(),
            tx,
            queued_bytes: self.queued_bytes.clone(),
        });
        self.state = State::Live(rx);
    }
}

#[cfg(test)]
#[path = "watch_tests.rs"]
mod tests;
