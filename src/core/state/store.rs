//! The versioned key-value store.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::changes::{Lease, StoreChanges, Tracker};
use super::entry::{merge, Merged};
use super::store_stats::StoreStats;
use super::{CausalContext, Entry, Fence, Hlc, HlcClock, Limits, Signature, StateError, Write};
use crate::core::NodeId;

mod collection;

/// The highest dot counter a life of ours can have issued by `wall_ms`: a store that
/// starts without state counts from `wall_ms << 10` (see [`Store::new`]), so anything
/// above `(wall_ms + max_clock_drift_ms) << 10` is not ours.
pub fn plausible_own_dot(wall_ms: u64, limits: &Limits) -> u64 {
    wall_ms
        .saturating_add(limits.max_clock_drift_ms)
        .saturating_mul(1 << 10)
}

/// What applying a remote entry did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Every dot of the remote entry had already been seen (a duplicate copy).
    pub already_seen: bool,
    /// The stored entry changed; `Some(new entry)`.
    pub changed: Option<Entry>,
    /// The remote write was concurrent with the local one.
    pub conflict: bool,
    /// The entry's stamp was this far (ms) ahead of our wall clock, beyond the drift
    /// bound: the entry is kept (its writer's write is not lost) but our clock moved
    /// only up to the bound. `None` within the bound.
    pub clock_ahead_ms: Option<u64>,
}

/// Persisted form of a store.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    /// Node the snapshot belongs to.
    pub node: NodeId,
    /// Last dot counter issued.
    pub counter: u64,
    /// Last HLC stamp issued or observed.
    pub clock: Hlc,
    /// Causal context.
    pub ctx: CausalContext,
    /// What this node knows about collected deletes (absent in stores written before
    /// collection at causal stability: empty then).
    #[serde(default)]
    pub fence: Fence,
    /// Every entry, tombstones included.
    pub entries: Vec<Entry>,
}

/// The versioned key-value store of one node.
#[derive(Debug, Clone)]
pub struct Store {
    me: NodeId,
    limits: Limits,
    entries: BTreeMap<Arc<str>, Entry>,
    /// (writer, counter) -> key, for every dot named by a stored entry's vv.
    index: BTreeMap<(NodeId, u64), Arc<str>>,
    /// Tombstones by stamp, for collection.
    tombstones: BTreeSet<(Hlc, Arc<str>)>,
    /// Writers named by tombstones' version vectors, with how many tombstones name each:
    /// the writers whose dots decide whether a tombstone is stable.
    tombstone_writers: BTreeMap<NodeId, usize>,
    ctx: CausalContext,
    fence: Fence,
    clock: HlcClock,
    counter: u64,
    stats: StoreStats,
    /// What changed since the last drain (with a data directory only).
    tracker: Tracker,
    /// The dot lease (with a data directory only).
    lease: Option<Lease>,
}

impl Store {
    /// A fresh, empty store for node `me`.
    ///
    /// A node that starts without persisted state cannot know which dot counters it
    /// used in an earlier life, so its counter starts at `wall_ms << 10`: above every
    /// dot of any earlier life that averaged fewer than 1,024 writes per millisecond.
    /// Should a peer still show a higher dot of ours, [`Store::observe_peer_context`]
    /// moves the counter past it before it can be reused, as long as that dot is one
    /// this scheme could have issued by now ([`plausible_own_dot`]); a higher one is a
    /// forgery and is ignored.
    pub fn new(me: NodeId, limits: Limits, wall_ms: u64) -> Self {
        Self {
            me,
            limits,
            entries: BTreeMap::new(),
            index: BTreeMap::new(),
            tombstones: BTreeSet::new(),
            tombstone_writers: BTreeMap::new(),
            ctx: CausalContext::new(),
            fence: Fence::default(),
            clock: HlcClock::new(),
            counter: wall_ms << 10,
            stats: StoreStats::default(),
            tracker: Tracker::default(),
            lease: None,
        }
    }

    /// Restores a store from a snapshot (entries that fail validation are skipped).
    pub fn from_snapshot(snap: Snapshot, limits: Limits) -> Self {
        let mut s = Self::new(snap.node.clone(), limits, 0);
        s.counter = snap.counter;
        s.clock.restore(snap.clock);
        s.ctx = snap.ctx;
        s.fence = snap.fence;
        for e in snap.entries {
            if e.validate(&limits).is_ok() {
                s.put(e);
            }
        }
        s
    }

    /// The persisted form of this store.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            node: self.me.clone(),
            counter: self.counter,
            clock: self.clock.last(),
            ctx: self.ctx.clone(),
            fence: self.fence.clone(),
            entries: self.entries.values().cloned().collect(),
        }
    }

    /// This store's node.
    pub fn node(&self) -> &NodeId {
        &self.me
    }

    /// Limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The causal context (digest of everything held).
    pub fn context(&self) -> &CausalContext {
        &self.ctx
    }

    /// Counters.
    pub fn stats(&self) -> &StoreStats {
        &self.stats
    }

    /// The HLC clock.
    pub fn clock(&self) -> &HlcClock {
        &self.clock
    }

    /// Live (non-tombstone) keys.
    pub fn live_len(&self) -> usize {
        self.entries.len() - self.tombstones.len()
    }

    /// All entries, tombstones included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no entry (not even a tombstone) is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of tombstones held.
    pub fn tombstone_len(&self) -> usize {
        self.tombstones.len()
    }

    /// The entry for `key`, tombstones included.
    pub fn entry(&self, key: &str) -> Option<&Entry> {
        self.entries.get(key)
    }

    /// The live value for `key`.
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.entries.get(key).and_then(|e| e.value.as_deref())
    }

    /// Live entries whose key starts with `prefix`, in key order.
    pub fn scan_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a Entry> + 'a {
        self.scan_prefix_after(prefix, None)
    }

    /// Live entries whose key starts with `prefix` and sorts after `after`, in key order:
    /// a page of a listing that resumes where the previous one ended.
    pub fn scan_prefix_after<'a>(
        &'a self,
        prefix: &'a str,
        after: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Entry> + 'a {
        use std::ops::Bound;
        let start = match after {
            Some(a) if a >= prefix => Bound::Excluded(a),
            _ => Bound::Included(prefix),
        };
        self.entries
            .range::<str, _>((start, Bound::Unbounded))
            .take_while(move |(k, _)| k.starts_with(prefix))
            .map(|(_, e)| e)
            .filter(|e| !e.is_tombstone())
    }

    /// Every entry, tombstones included, in key order.
    pub fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    /// A local write (`Some(value)`) or delete (`None`), not signed yet: the engine
    /// signs its writes in batches ([`Store::seal`]) before any of them leaves the
    /// node. Returns the new entry.
    pub fn write(
        &mut self,
        key: &str,
        value: Option<Vec<u8>>,
        wall_ms: u64,
    ) -> Result<Entry, StateError> {
        if key.is_empty() || key.len() > self.limits.max_key_len {
            return Err(StateError::KeyLength {
                len: key.len(),
                max: self.limits.max_key_len,
            });
        }
        let own_prefix = usize::from(super::is_system_key(key));
        if let Some((at, found)) = key
            .char_indices()
            .skip(own_prefix)
            .find(|(_, c)| c.is_control())
        {
            return Err(StateError::KeyControl { found, at });
        }
        if let Some(v) = &value {
            if v.len() > self.limits.max_value_len {
                return Err(StateError::ValueLength {
                    len: v.len(),
                    max: self.limits.max_value_len,
                });
            }
        }
        if !self.lease_ready() {
            // Never issue a dot the persisted lease does not cover: after a crash the
            // counter restarts at the persisted lease end.
            return Err(StateError::LeaseExhausted {
                counter: self.counter,
                lease_end: self.lease.map_or(0, |l| l.durable_end),
            });
        }
        let mut vv = self
            .entries
            .get(key)
            .map(|e| e.vv.clone())
            .unwrap_or_default();
        let counter = self
            .counter
            .checked_add(1)
            .ok_or(StateError::CountersExhausted)?;
        vv.set(self.me.clone(), counter);
        if vv.len() > self.limits.max_vv_len {
            // Every peer would refuse this entry; refuse it here, where the writer can
            // hear why, instead of accepting a write that never replicates.
            return Err(StateError::VersionVectorTooLong {
                len: vv.len(),
                max: self.limits.max_vv_len,
            });
        }
        self.counter = counter;
        self.extend_lease_early();
        let hlc = self.clock.tick(wall_ms);
        let e = Entry {
            key: key.to_string(),
            value,
            vv,
            hlc,
            writer: self.me.clone(),
            sig: Signature::default(),
            siblings: Vec::new(),
        };
        self.ctx.insert(&self.me.clone(), self.counter);
        self.tracker.ctx();
        self.tracker.meta();
        self.put(e.clone());
        self.stats.local_writes += 1;
        Ok(e)
    }

    /// Our write `counter` to `key`, if the entry still holds it (a later write of ours
    /// supersedes it): what [`Store::seal`] signs.
    pub fn own_write(&self, key: &str, counter: u64) -> Option<Write> {
        self.entries
            .get(key)?
            .writes()
            .into_iter()
            .find(|w| w.writer == self.me && w.vv.get(&self.me) == counter)
    }

    /// Sets the signature of our write `counter` to `key`, if the entry still holds it.
    pub fn seal(&mut self, key: &str, counter: u64, sig: Signature) {
        let Some(k) = self.entries.get_key_value(key).map(|(k, _)| k.clone()) else {
            return;
        };
        let e = self.entries.get_mut(&k).expect("just found");
        let me = &self.me;
        let ours = |w: &NodeId, vv: &super::VersionVector| w == me && vv.get(me) == counter;
        if e.siblings.is_empty() {
            if !ours(&e.writer, &e.vv) {
                return;
            }
            e.sig = sig;
        } else {
            let Some(w) = e.siblings.iter_mut().find(|w| ours(&w.writer, &w.vv)) else {
                return;
            };
            w.sig = sig.clone();
            if ours(&e.writer, &e.vv) {
                e.sig = sig;
            }
        }
        self.tracker.key(&k);
    }

    /// Whether every write `remote` holds is one we have seen (it or what superseded
    /// it, or a delete over it that was collected): such a copy changes nothing.
    ///
    /// Judged by the writes' own dots only: the superseded dots its vector also names
    /// are another writer's word, and a copy naming one we never saw is merged, which
    /// changes nothing either if our entry already holds what supersedes it.
    pub fn has_seen(&self, remote: &Entry) -> bool {
        remote.own_dots().all(|(w, c)| self.seen_dot(w, c))
    }

    /// True if we hold the write `(writer, counter)` of `key`, what superseded it, or a
    /// delete over it that was collected. Unlike the context alone, this counts a write
    /// superseded before it reached us (our entry for `key` names it) while its writer
    /// has not vouched for it yet.
    pub fn holds_write(&self, key: &str, writer: &NodeId, counter: u64) -> bool {
        self.seen_dot(writer, counter)
            || self
                .entries
                .get(key)
                .is_some_and(|e| e.vv.get(writer) >= counter)
    }

    /// True if the write `(w, c)` is in our context or below a compacted writer's top.
    fn seen_dot(&self, w: &NodeId, c: u64) -> bool {
        self.ctx.contains(w, c) || self.fence.compacted.get(w).is_some_and(|&m| c <= m)
    }

    /// Applies an entry received from a peer. Invalid entries are rejected unchanged.
    pub fn apply(&mut self, remote: Entry, wall_ms: u64) -> Result<Applied, StateError> {
        remote.validate(&self.limits)?;
        let clock_ahead_ms = self
            .clock
            .observe(remote.hlc, wall_ms, self.limits.max_clock_drift_ms)
            .err()
            .map(|far| far.ahead_ms);
        let already_seen = self.has_seen(&remote);
        let own = remote.vv.get(&self.me);
        if own > self.counter {
            if own > plausible_own_dot(wall_ms, &self.limits) {
                // No life of ours can have issued it: a forgery, which would otherwise
                // move our counter to its end.
                return Err(StateError::ForgedOwnDot { counter: own });
            }
            // A dot of ours from an earlier life: never issue it again.
            self.counter = own;
            self.stats.dot_collisions_avoided += 1;
        }
        if already_seen {
            // We hold this write or what superseded it, or a delete over it that was
            // collected: a late or replayed copy must change nothing (it would bring a
            // collected key back to life).
            self.stats.duplicates += 1;
            self.tracker.meta();
            return Ok(Applied {
                already_seen,
                changed: None,
                conflict: false,
                clock_ahead_ms,
            });
        }
        // Only the writes' own dots become evidence (see `join_context`): a dot of
        // another writer that this entry's vector names stays a fact about this key.
        let dots: Vec<(NodeId, u64)> = remote.own_dots().map(|(w, c)| (w.clone(), c)).collect();
        let outcome = match self.entries.get(remote.key.as_str()) {
            None => {
                self.put(remote.clone());
                Applied {
                    already_seen,
                    changed: Some(remote),
                    conflict: false,
                    clock_ahead_ms,
                }
            }
            Some(local) => match merge(local, &remote) {
                Merged::KeepLocal => Applied {
                    already_seen,
                    changed: None,
                    conflict: false,
                    clock_ahead_ms,
                },
                Merged::TakeRemote => {
                    self.put(remote.clone());
                    Applied {
                        already_seen,
                        changed: Some(remote),
                        conflict: false,
                        clock_ahead_ms,
                    }
                }
                Merged::Conflict(m) => {
                    let changed = (&m != local).then(|| m.clone());
                    if changed.is_some() {
                        self.put(m);
                    }
                    Applied {
                        already_seen,
                        changed,
                        conflict: true,
                        clock_ahead_ms,
                    }
                }
            },
        };
        for (w, c) in &dots {
            self.ctx.insert(w, *c);
        }
        self.tracker.ctx();
        self.tracker.meta();
        if outcome.changed.is_some() {
            self.stats.remote_applied += 1;
        }
        if outcome.conflict {
            self.stats.conflicts += 1;
        }
        Ok(outcome)
    }

    /// Every entry holding a dot that `peer` has not seen: what the peer lacks.
    ///
    /// Cost is O((writers + ranges) · log n + difference), independent of the number of
    /// entries the peer already has.
    pub fn missing_for(&self, peer: &CausalContext) -> Vec<Entry> {
        self.missing_for_at_most(peer, usize::MAX).0
    }

    /// What `peer` lacks, at most `limit` entries, and whether some were left out. When
    /// everything fits, the entries come in key order (as [`Store::missing_for`]);
    /// otherwise the oldest writes first, a writer's next only after every writer's
    /// previous one: a peer far behind is first sent what the broadcast tree most likely
    /// lost, not what it is still delivering, and no writer waits for another. Only the
    /// entries sent are cloned.
    pub fn missing_for_at_most(&self, peer: &CausalContext, limit: usize) -> (Vec<Entry>, bool) {
        // A key found through a superseded dot the peer never saw is sent only if the
        // peer also lacks one of the writes it holds now.
        let lacked = |k: &Arc<str>| {
            self.entries
                .get(k)
                .filter(|e| e.own_dots().any(|(w, c)| !peer.contains(w, c)))
        };
        // Per writer, the keys holding the dots the peer has not seen, oldest first,
        // walked lazily: a peer far behind costs what is sent, not all it lacks.
        let mut per_writer: Vec<Box<dyn Iterator<Item = &Arc<str>> + '_>> = Vec::new();
        for writer in self.ctx.0.keys() {
            let gaps: Vec<(u64, u64)> = match peer.ranges(writer) {
                None => vec![(1, u64::MAX)],
                Some(r) => r.gaps().collect(),
            };
            per_writer.push(Box::new(gaps.into_iter().flat_map(move |(a, b)| {
                self.index
                    .range((writer.clone(), a)..=(writer.clone(), b))
                    .map(|(_, k)| k)
            })));
        }
        let mut taken: BTreeSet<&Arc<str>> = BTreeSet::new();
        let mut out: Vec<&Entry> = Vec::new();
        let mut held = false;
        'all: loop {
            let mut any = false;
            for keys in per_writer.iter_mut() {
                let Some(k) = keys.next() else { continue };
                any = true;
                if !taken.insert(k) {
                    continue;
                }
                if let Some(e) = lacked(k) {
                    if out.len() == limit {
                        held = true;
                        break 'all;
                    }
                    out.push(e);
                }
            }
            if !any {
                break;
            }
        }
        if !held {
            // Everything fits: in key order, as a whole exchange always sent it.
            out.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        }
        (out.into_iter().cloned().collect(), held)
    }

    /// The stored entry whose version vector names the write `(writer, counter)`, if
    /// that write is still part of one (a later write by the same writer to the same
    /// key replaces it).
    pub fn entry_by_dot(&self, writer: &NodeId, counter: u64) -> Option<&Entry> {
        let key = self.index.get(&(writer.clone(), counter))?;
        self.entries.get(key)
    }

    /// Joins what `peer` says about its own writes into our context, once everything it
    /// sent in an exchange has been applied. This closes the gaps its superseded writes
    /// left: each of them lies under a write it sent us or that we held already.
    ///
    /// Only the peer's own dots: what a peer says it has seen of a third writer's is
    /// never evidence, because joining it would mark that writer's writes as held
    /// without holding them, and no honest peer would send them to us again. A peer
    /// naming a third writer's future (or just a write still in flight to us) could
    /// silence it that way. Only the peer can hide the peer's writes from us, and only
    /// as far as our own evidence of them goes (the highest dot of it we hold or that an
    /// entry we hold names), so a claim on its own far future changes nothing either.
    /// The gaps third writers leave close when we meet them.
    pub fn join_context(&mut self, peer: &NodeId, claimed: &CausalContext) {
        let Some(ranges) = claimed.ranges(peer) else {
            return;
        };
        let held = self.held_max(peer).max(self.ctx.max(peer));
        if held > 0 && self.ctx.join_writer(peer, &ranges.clipped(held)) {
            self.tracker.ctx();
        }
    }

    /// The highest dot of `writer` named by an entry we hold (0 if none).
    fn held_max(&self, writer: &NodeId) -> u64 {
        self.index
            .range((writer.clone(), 0)..=(writer.clone(), u64::MAX))
            .next_back()
            .map_or(0, |((_, c), _)| *c)
    }

    /// Moves the dot counter past any dot of ours that `peer` has seen, if one of our
    /// earlier lives can have issued it ([`plausible_own_dot`]).
    pub fn observe_peer_context(&mut self, peer: &CausalContext, wall_ms: u64) {
        let theirs = peer.max(&self.me);
        if theirs > self.counter && theirs <= plausible_own_dot(wall_ms, &self.limits) {
            self.counter = theirs;
            self.stats.dot_collisions_avoided += 1;
            self.tracker.meta();
        }
    }

    fn put(&mut self, e: Entry) {
        let key: Arc<str> = match self.entries.get_key_value(e.key.as_str()) {
            Some((k, _)) => k.clone(),
            None => Arc::from(e.key.as_str()),
        };
        self.remove(&key);
        for (w, c) in e.vv.dots() {
            self.index.insert((w.clone(), c), key.clone());
        }
        if e.is_tombstone() {
            self.tombstones.insert((e.hlc, key.clone()));
            for (w, _) in e.vv.dots() {
                *self.tombstone_writers.entry(w.clone()).or_default() += 1;
            }
        }
        self.tracker.key(&key);
        self.entries.insert(key, e);
    }

    fn remove(&mut self, key: &Arc<str>) {
        if let Some(old) = self.entries.remove(key) {
            for (w, c) in old.vv.dots() {
                self.index.remove(&(w.clone(), c));
            }
            if old.is_tombstone() {
                self.tombstones.remove(&(old.hlc, key.clone()));
                for (w, _) in old.vv.dots() {
                    if let Some(n) = self.tombstone_writers.get_mut(w) {
                        *n -= 1;
                        if *n == 0 {
                            self.tombstone_writers.remove(w);
                        }
                    }
                }
            }
            self.tracker.key(key);
        }
    }

    // ----- persistence -----

    /// Starts tracking changes for incremental persistence, with a dot lease of
    /// `lease_block` counters. Until a first [`Store::lease_durable`] no dot can be
    /// issued: the lease starts at the current counter, which for a restored store is
    /// the persisted lease end (every dot below it may have been used).
    pub fn track_changes(&mut self, lease_block: u64) {
        let block = lease_block.max(2);
        self.tracker.on = true;
        self.tracker.meta = true;
        self.tracker.seq += 1;
        self.lease = Some(Lease {
            durable_end: self.counter,
            block,
            want: Some(self.counter.saturating_add(block)),
        });
    }

    /// True when persistence is on and something changed since the last drain.
    pub fn has_changes(&self) -> bool {
        self.tracker.dirty() || self.lease.is_some_and(|l| l.want.is_some())
    }

    /// Sequence number of the latest change: a drain covers every change up to the
    /// value this returned before it.
    pub fn change_seq(&self) -> u64 {
        self.tracker.seq
    }

    /// True when the next local write has a durable dot (or no lease is in force);
    /// otherwise asks for a lease extension and returns false.
    pub fn lease_ready(&mut self) -> bool {
        let exhausted = self.lease.is_some_and(|l| self.counter >= l.durable_end);
        if exhausted {
            self.extend_lease_early();
        }
        !exhausted
    }

    /// Asks for a lease extension once half the block is used, so that it is durable
    /// before it is needed; a request is a change for the next drain to carry.
    fn extend_lease_early(&mut self) {
        if let Some(l) = &mut self.lease {
            if l.maybe_extend(self.counter) {
                self.tracker.seq += 1;
            }
        }
    }

    /// Drains what changed since the previous drain: O(changed entries + context).
    /// A lease extension asked for stays asked for until [`Store::lease_durable`].
    pub fn take_changes(&mut self) -> StoreChanges {
        let t = std::mem::take(&mut self.tracker);
        self.tracker.on = t.on;
        self.tracker.seq = t.seq;
        let mut upserts = Vec::new();
        let mut removed = Vec::new();
        for k in t.keys {
            match self.entries.get(&k) {
                Some(e) => upserts.push(e.clone()),
                None => removed.push(k.to_string()),
            }
        }
        StoreChanges {
            upserts,
            removed,
            ctx: t.ctx.then(|| self.ctx.clone()),
            lease_end: self.lease.and_then(|l| l.want),
            hlc: self.clock.last(),
            fence: t.fence.then(|| self.fence.clone()),
        }
    }

    /// Records that a lease end was committed: dots up to it may now be issued.
    pub fn lease_durable(&mut self, end: u64) {
        if let Some(l) = &mut self.lease {
            l.durable_end = l.durable_end.max(end);
            if l.want.is_some_and(|w| w <= l.durable_end) {
                l.want = None;
            }
            l.maybe_extend(self.counter);
        }
    }

    /// The durable dot lease end, if a lease is in force.
    pub fn lease_end(&self) -> Option<u64> {
        self.lease.map(|l| l.durable_end)
    }

    /// The last dot counter issued (or moved to).
    pub fn counter(&self) -> u64 {
        self.counter
    }
}
