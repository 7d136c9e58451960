//! The replicated key-value state: version vectors, HLC stamps, merge, the causal
//! context digest, anti-entropy diffs and tombstones (DESIGN.md sections 2 and 3).

pub mod batch_proof;
mod changes;
mod context;
mod entry;
mod fence;
mod hlc;
mod rebase;
mod sealed_run;
mod store;
mod store_stats;
mod vv;
mod write;

pub use batch_proof::{Proof, MAX_BATCH, MAX_BATCH_HEIGHT};
pub use changes::StoreChanges;
pub use context::{CausalContext, RangeSet};
pub use entry::{merge, Entry, Limits, Merged, StateError, MAX_SIBLINGS, MAX_SIBLING_DOTS};
pub use fence::Fence;
pub use hlc::{Hlc, HlcClock};
pub use rebase::RebaseProbe;
pub use sealed_run::{group_runs, RunKey, SealedRun};
pub use store::{plausible_own_dot, Applied, Snapshot, Store};
pub use store_stats::StoreStats;
pub use vv::{Causality, VersionVector};
pub use write::{signed_bytes, Signature, Write, MAX_SIGNATURE_LEN};

/// Keys under this prefix belong to gossamer itself (a writer's certificates): no user
/// can write them (the prefix is a control character) and user listings leave them out.
pub const SYSTEM_PREFIX: char = '\u{1}';

/// Whether `key` is one of gossamer's own.
pub fn is_system_key(key: &str) -> bool {
    key.starts_with(SYSTEM_PREFIX)
}

#[cfg(test)]
mod laws;
