//! Durable state in the data directory: an embedded transactional store (redb) that
//! the engine's changes are committed to incrementally, and the committer that
//! acknowledges writes once their commit is durable.
//!
//! See ARCHITECTURE.md, "Persistence", for the guarantee and its limits.

mod committer;
mod dir;
mod migrate;
mod redb_store;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub(crate) use committer::Committer;
pub use committer::PersistStats;
pub(crate) use dir::prepare_dir;
pub(crate) use redb_store::DurableStore;
pub use redb_store::STORE_FILE;

/// When a write is acknowledged with a data directory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// A write returns once its commit is durable (fsync'd); concurrent writes share
    /// one commit. No acknowledged write is lost by a crash of any number of nodes.
    #[default]
    Sync,
    /// Writes return at once; changes are committed at most every
    /// `durability_interval_ms`. A whole-cluster crash loses at most that much.
    Relaxed,
}

impl Durability {
    /// Parses `sync` or `relaxed`; the error names the field and the values.
    pub fn parse(field: &str, s: &str) -> Result<Self, String> {
        match s {
            "sync" => Ok(Self::Sync),
            "relaxed" => Ok(Self::Relaxed),
            other => Err(format!(
                "{field}: {other:?} is not a durability mode; use \"sync\" (a write returns once it is on disk) or \"relaxed\" (writes are committed every durability_interval_ms and a whole-cluster crash loses at most that much)"
            )),
        }
    }

    /// The name used in configuration files.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Sync => "sync",
            Self::Relaxed => "relaxed",
        }
    }
}

/// Errors of the data directory and its store.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// The data directory cannot be created or written.
    #[error("data directory {path} is not writable: {source}; give the node a folder it can create and write (data_dir / --data-dir)")]
    Unwritable {
        /// The folder.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The store file is damaged (truncated, overwritten, not a store).
    #[error("store {path} is corrupted or truncated ({reason}); the node will not start on it: move it aside (e.g. `mv {path} {path}.broken`) and the node starts empty and resyncs from its peers. An unclean shutdown alone does not cause this: redb repairs that by itself when it opens the file")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The store belongs to another node or cluster.
    #[error("store {path} belongs to node {found_node} of cluster {found_cluster}, but this is node {node} of cluster {cluster}; point data_dir at this node's own folder, or move the file aside to start empty")]
    Foreign {
        /// The file.
        path: PathBuf,
        /// Node id recorded in the store.
        found_node: String,
        /// Cluster recorded in the store.
        found_cluster: String,
        /// This node.
        node: String,
        /// This node's cluster.
        cluster: String,
    },
    /// Another process has the store open.
    #[error("store {path} is in use by another process (is another gossamer node running with this data directory?)")]
    Locked {
        /// The file.
        path: PathBuf,
    },
    /// Reading or committing failed while running.
    #[error("store {path}: {reason}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// An earlier commit failed; writes are no longer made durable.
    #[error("writes are no longer persisted since a commit failed ({0}); restart the node")]
    Failed(String),
}

#[cfg(test)]
mod tests;
