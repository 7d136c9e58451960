//! What a store changed since it was last persisted, and the dot lease.
//!
//! A node with a data directory persists its store incrementally: the store remembers
//! which keys changed (and whether the causal context did) since the last drain, and
//! [`super::Store::take_changes`] hands that over as a [`StoreChanges`], which costs
//! O(changed entries), never O(state). The runtime writes it in one transaction; the
//! simulator applies it to an in-memory image at its simulated commit instants.
//!
//! The dot lease: a node never issues a dot above `durable_end`, the largest lease end
//! a commit has made durable. When the counter passes half of the block the store asks
//! for a longer lease (`want`), which the next drain carries; the runtime reports the
//! commit back with [`super::Store::lease_durable`]. After any crash the node restarts
//! its counter at the persisted lease end, above every dot it can have issued.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::{CausalContext, Entry, Fence, Hlc};

/// The store's changes since the previous drain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreChanges {
    /// Entries written or replaced.
    pub upserts: Vec<Entry>,
    /// Keys removed (collected tombstones).
    pub removed: Vec<String>,
    /// The causal context, if it changed.
    pub ctx: Option<CausalContext>,
    /// A dot lease end to make durable, if one was asked for.
    pub lease_end: Option<u64>,
    /// The HLC's last stamp.
    pub hlc: Hlc,
    /// The fence, if it changed.
    pub fence: Option<Fence>,
}

/// Change tracking of a store (off until persistence is switched on).
#[derive(Debug, Clone, Default)]
pub(super) struct Tracker {
    /// Tracking is on.
    pub on: bool,
    /// Keys written or removed since the last drain.
    pub keys: BTreeSet<Arc<str>>,
    /// The fence changed.
    pub fence: bool,
    /// The causal context changed.
    pub ctx: bool,
    /// Something in the store's bookkeeping (clock, counters, horizons) changed.
    pub meta: bool,
    /// Bumped on every change; a drain reports the value it covers.
    pub seq: u64,
}

impl Tracker {
    /// Records a change of `key`.
    pub fn key(&mut self, key: &Arc<str>) {
        if self.on {
            self.keys.insert(key.clone());
            self.seq += 1;
        }
    }

    /// Records a change of the causal context.
    pub fn ctx(&mut self) {
        if self.on {
            self.ctx = true;
            self.seq += 1;
        }
    }

    /// Records a change of the fence.
    pub fn fence(&mut self) {
        if self.on {
            self.fence = true;
            self.seq += 1;
        }
    }

    /// Records a change of bookkeeping only.
    pub fn meta(&mut self) {
        if self.on {
            self.meta = true;
        }
    }

    /// True when a drain would carry something.
    pub fn dirty(&self) -> bool {
        self.on && (self.fence || self.ctx || self.meta || !self.keys.is_empty())
    }
}

/// The dot lease of a store with a data directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Lease {
    /// Largest lease end known durable: no dot above it may be issued.
    pub durable_end: u64,
    /// Counters per lease extension.
    pub block: u64,
    /// A lease end asked for and not yet reported durable.
    pub want: Option<u64>,
}

impl Lease {
    /// Asks for a longer lease once `counter` has used half the current block.
    pub fn maybe_extend(&mut self, counter: u64) -> bool {
        if counter.saturating_add(self.block / 2) <= self.durable_end {
            return false;
        }
        let end = counter.saturating_add(self.block);
        if self
            .want
            .is_some_and(|w| w >= end.saturating_sub(self.block / 2))
        {
            return false;
        }
        self.want = Some(end);
        true
    }
}

#[cfg(test)]
mod tests {
    use crate::core::state::{Limits, StateError, Store};
    use crate::core::NodeId;

    fn store() -> Store {
        Store::new(NodeId::new("a").unwrap(), Limits::default(), 1)
    }

    #[test]
    fn no_dot_is_issued_above_the_durable_lease() {
        let mut s = store();
        let start = s.counter();
        s.track_changes(8);
        // Nothing is durable yet: the write must wait for the first lease.
        assert!(matches!(
            s.write("k", Some(b"v".to_vec()), 1),
            Err(StateError::LeaseExhausted { .. })
        ));
        let c = s.take_changes();
        assert_eq!(c.lease_end, Some(start + 8));
        s.lease_durable(start + 8);
        for i in 0..8 {
            s.write(&format!("k{i}"), Some(b"v".to_vec()), 1).unwrap();
        }
        assert_eq!(s.counter(), start + 8);
        // The ninth would pass the lease: refused until the extension asked for at
        // half the block is reported durable.
        assert!(s.write("k9", Some(b"v".to_vec()), 1).is_err());
        let c = s.take_changes();
        let end = c.lease_end.expect("an extension was asked for");
        assert!(end > start + 8);
        s.lease_durable(end);
        s.write("k9", Some(b"v".to_vec()), 1).unwrap();
        assert_eq!(s.counter(), start + 9);
    }

    #[test]
    fn changes_carry_only_what_changed_since_the_last_drain() {
        let mut s = store();
        s.track_changes(1 << 20);
        let c = s.take_changes();
        s.lease_durable(c.lease_end.unwrap());
        s.write("a", Some(b"1".to_vec()), 1).unwrap();
        s.write("b", Some(b"2".to_vec()), 1).unwrap();
        let seq = s.change_seq();
        let c = s.take_changes();
        assert_eq!(c.upserts.len(), 2);
        assert!(c.ctx.is_some());
        assert_eq!(s.change_seq(), seq, "a drain does not move the sequence");
        s.write("a", None, 2).unwrap();
        let c = s.take_changes();
        assert_eq!(c.upserts.len(), 1);
        assert!(c.upserts[0].is_tombstone());
        assert!(s.change_seq() > seq);
        // Tombstone collection removes the key.
        let all = s.context().clone();
        s.collect_stable(u64::MAX, 0, &all);
        let c = s.take_changes();
        assert_eq!(c.removed, vec!["a".to_string()]);
        assert!(!s.has_changes());
    }

    #[test]
    fn without_persistence_nothing_is_tracked_and_no_lease_applies() {
        let mut s = store();
        s.write("a", Some(b"1".to_vec()), 1).unwrap();
        assert!(!s.has_changes());
        assert_eq!(s.change_seq(), 0);
        assert!(s.lease_ready());
    }
}
