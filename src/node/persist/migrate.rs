//! One-time migration of the `state.cbor` snapshot that earlier versions wrote every
//! 10 s into the transactional store.

use std::path::Path;

use super::PersistError;
use crate::core::engine::Persisted;
use crate::core::NodeId;

const STATE_FILE: &str = "state.cbor";
const MIGRATED_FILE: &str = "state.cbor.migrated";

/// Reads `dir/state.cbor` if there is one. Its dot counter was saved up to 10 s before
/// the node stopped, so dots above it may have been issued since: the counter is raised
/// to `wall_ms << 10` (the start of a node without state), which is above every dot of
/// an earlier life that averaged fewer than 1,024 writes per millisecond.
pub(crate) fn from_state_cbor(
    dir: &Path,
    node: &NodeId,
    wall_ms: u64,
) -> Result<Option<Persisted>, PersistError> {
    let path = dir.join(STATE_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(PersistError::Io {
                path,
                reason: e.to_string(),
            })
        }
    };
    let mut p: Persisted =
        ciborium::from_reader(&bytes[..]).map_err(|e| PersistError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
    if p.store.node != *node {
        return Err(PersistError::Foreign {
            path,
            found_node: p.store.node.to_string(),
            found_cluster: "?".into(),
            node: node.to_string(),
            cluster: "?".into(),
        });
    }
    p.store.counter = p.store.counter.max(wall_ms << 10);
    tracing::info!(
        entries = p.store.entries.len(),
        "migrating {} into the store",
        path.display()
    );
    Ok(Some(p))
}

/// Renames the migrated snapshot so that it is never read again.
pub(crate) fn retire_state_cbor(dir: &Path) -> Result<(), PersistError> {
    let from = dir.join(STATE_FILE);
    std::fs::rename(&from, dir.join(MIGRATED_FILE)).map_err(|e| PersistError::Io {
        path: from,
        reason: e.to_string(),
    })
}
