//! The counters a store keeps.

use serde::{Deserialize, Serialize};

/// Counters kept by the store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreStats {
    /// Local writes (sets and deletes).
    pub local_writes: u64,
    /// Remote entries that changed the state.
    pub remote_applied: u64,
    /// Remote entries whose dots had all been seen already.
    pub duplicates: u64,
    /// Concurrent writes resolved by (hlc, writer).
    pub conflicts: u64,
    /// Tombstones removed once stable and past the grace period.
    pub tombstones_collected: u64,
    /// Entries dropped by rebases (the peer had collected a delete over them).
    pub rebase_dropped: u64,
    /// Departed writers compacted out of the context.
    pub writers_compacted: u64,
    /// Times a peer showed dots of ours above our counter (restart without state).
    pub dot_collisions_avoided: u64,
}
