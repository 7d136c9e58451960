//! The engine's side of incremental persistence: draining what changed for the
//! runtime's committer (or the simulator's durable image) to make durable.

use super::Engine;
use crate::core::state::StoreChanges;

/// Counters per dot lease extension with a data directory: a node restarted after a
/// crash skips at most this many counters (see ARCHITECTURE.md, "Persistence").
pub const DOT_LEASE_BLOCK: u64 = 1 << 20;

/// Everything to persist since the previous [`Engine::take_changes`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Covers every change up to this sequence number (see [`Engine::change_seq`]).
    pub seq: u64,
    /// The store's entries, context, dot lease and bookkeeping.
    pub store: StoreChanges,
    /// Our incarnation, if it changed.
    pub incarnation: Option<u64>,
}

impl Engine {
    /// Switches incremental persistence on (a node with a data directory), with a dot
    /// lease of `lease_block` counters. The first [`Engine::take_changes`] then carries
    /// the incarnation and the first lease; no local write succeeds until the caller
    /// reports that lease durable ([`Engine::lease_durable`]).
    pub fn enable_persistence(&mut self, lease_block: u64) {
        self.store.track_changes(lease_block);
        self.persisted_inc = None;
    }

    /// True when persistence is on and something is waiting to be made durable.
    pub fn has_changes(&self) -> bool {
        self.store.has_changes() || self.incarnation_changed().is_some()
    }

    /// Sequence number of the latest change (see [`Changes::seq`]).
    pub fn change_seq(&self) -> u64 {
        self.store.change_seq()
    }

    /// True when the next local write has a durable dot; otherwise asks for a lease
    /// extension (carried by the next [`Engine::take_changes`]) and returns false: the
    /// write must wait for that commit.
    pub fn lease_ready(&mut self) -> bool {
        self.store.lease_ready()
    }

    /// Drains what changed since the previous call: O(changed entries + context),
    /// never a copy of the whole state.
    pub fn take_changes(&mut self) -> Changes {
        // Never persist an unsigned write: after a crash it could not be sent.
        self.seal_writes();
        let incarnation = self.incarnation_changed();
        if let Some(inc) = incarnation {
            self.persisted_inc = Some(inc);
        }
        Changes {
            seq: self.store.change_seq(),
            store: self.store.take_changes(),
            incarnation,
        }
    }

    /// Reports a committed lease end: dots up to it may now be issued.
    pub fn lease_durable(&mut self, end: u64) {
        self.store.lease_durable(end);
    }

    fn incarnation_changed(&self) -> Option<u64> {
        let inc = self.members.me().incarnation;
        (self.store.lease_end().is_some() && self.persisted_inc != Some(inc)).then_some(inc)
    }
}
