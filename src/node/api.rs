//! Public types of the embedding API.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::core::NodeId;

/// Errors from starting or using a node.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A configuration value is unusable; the message names the field and the fix.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Certificates could not be loaded or do not fit the configuration.
    #[error(transparent)]
    Identity(#[from] crate::identity::IdentityError),
    /// The node's key cannot sign writes, or the trust bundle cannot verify them.
    #[error(transparent)]
    Authority(#[from] super::AuthorityError),
    /// The QUIC endpoint or admin listener could not be set up.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// Address that failed.
        addr: SocketAddr,
        /// Underlying error.
        source: std::io::Error,
    },
    /// A key or value outside the limits.
    #[error(transparent)]
    State(#[from] crate::core::state::StateError),
    /// A user event refused: name or payload beyond the bounds, or our own rate.
    #[error(transparent)]
    Event(#[from] crate::core::events::EventError),
    /// A query refused: bounds, our own rate, or too many of ours pending.
    #[error(transparent)]
    Query(#[from] crate::core::queries::QueryError),
    /// Reading or writing the data directory failed.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// File involved.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The data directory's store refused to open, or a write could not be made durable.
    #[error(transparent)]
    Store(#[from] super::persist::PersistError),
    /// The node has shut down.
    #[error("node is shut down")]
    Shutdown,
}

/// A key's current value as returned by the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KvEntry {
    /// The key.
    pub key: String,
    /// The value bytes.
    pub value: Vec<u8>,
    /// Node whose write won.
    pub writer: NodeId,
    /// HLC stamp of the winning write: wall milliseconds.
    pub hlc_ms: u64,
    /// HLC stamp of the winning write: logical counter.
    pub hlc_lc: u32,
    /// Version vector (writer -> counter).
    pub version: BTreeMap<String, u64>,
}

/// One member as seen by this node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberView {
    /// Node id.
    pub id: NodeId,
    /// Advertised QUIC address.
    pub addr: String,
    /// "alive", "suspect", "dead" or "left".
    pub status: String,
    /// Incarnation number.
    pub incarnation: u64,
    /// Datacenter.
    pub dc: String,
    /// Zone.
    pub zone: String,
    /// Free-form tags.
    pub tags: BTreeMap<String, String>,
    /// Milliseconds since this node last heard from the member directly (None for self
    /// or never).
    pub last_heard_ms_ago: Option<u64>,
    /// Smoothed round-trip time, if connected.
    pub rtt_ms: Option<f64>,
    /// True for the local node.
    pub is_self: bool,
}

impl MemberView {
    /// The view of member state `s` (`is_self` for this node), without RTT or
    /// last-heard time.
    pub fn of(s: &crate::core::proto::MemberState, is_self: bool) -> Self {
        Self {
            id: s.info.id.clone(),
            addr: s.info.addr.clone(),
            status: s.status.as_str().to_string(),
            incarnation: s.incarnation,
            dc: s.info.dc.clone(),
            zone: s.info.zone.clone(),
            tags: s.info.tags.clone(),
            last_heard_ms_ago: None,
            rtt_ms: None,
            is_self,
        }
    }
}

/// Summary of the local node. Every field but `node_id` may be missing from a node of an
/// older release, and reads as empty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusView {
    /// Node id.
    pub node_id: NodeId,
    /// Cluster name.
    #[serde(default)]
    pub cluster: String,
    /// QUIC listen address.
    #[serde(default)]
    pub listen: String,
    /// Datacenter.
    #[serde(default)]
    pub dc: String,
    /// Members by status ("alive" -> 3, ...), self included.
    #[serde(default)]
    pub members: BTreeMap<String, usize>,
    /// Live keys.
    #[serde(default)]
    pub keys: usize,
    /// Tombstones held.
    #[serde(default)]
    pub tombstones: usize,
    /// Largest amount (ms) a peer's stamp was ahead of this node's clock (a peer's
    /// clock error as seen from here; per peer in `/metrics`).
    #[serde(default)]
    pub clock_ahead_ms: u64,
    /// Every configured seed and how contacting it goes.
    #[serde(default)]
    pub seeds: Vec<SeedStatus>,
    /// What this node may write: "all keys", the granted prefixes, or "unsigned" when
    /// `security.signed_writes` is off.
    #[serde(default)]
    pub may_write: String,
    /// Seconds since start.
    #[serde(default)]
    pub uptime_s: u64,
    /// gossamer version.
    #[serde(default)]
    pub version: String,
}

/// One configured seed, as `gossamer status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedStatus {
    /// Who answered there, failures in a row, the next attempt.
    #[serde(flatten)]
    pub seed: crate::core::engine::SeedView,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}
