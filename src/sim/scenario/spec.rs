//! The parts of a scenario file: network model, workload, faults and the properties to
//! check.

use serde::{Deserialize, Serialize};

use crate::sim::NetModel;

/// Network settings of a scenario.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkSpec {
    /// One-way latency (ms).
    pub latency_ms: f64,
    /// Uniform jitter (ms).
    pub jitter_ms: f64,
    /// Datagram loss probability.
    pub loss: f64,
    /// Datagram duplication probability.
    pub duplicate: f64,
    /// Per-node egress bandwidth (bytes/s; 0 = unlimited).
    pub bandwidth_bps: u64,
}

impl Default for NetworkSpec {
    fn default() -> Self {
        Self {
            latency_ms: 5.0,
            jitter_ms: 2.0,
            loss: 0.0,
            duplicate: 0.0,
            bandwidth_bps: 0,
        }
    }
}

impl NetworkSpec {
    pub(super) fn model(&self) -> NetModel {
        NetModel {
            latency_us: (self.latency_ms * 1000.0) as u64,
            jitter_us: (self.jitter_ms * 1000.0) as u64,
            loss: self.loss,
            duplicate: self.duplicate,
            bandwidth_bps: self.bandwidth_bps,
        }
    }
}

/// Write workload.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkloadSpec {
    /// Writes per second across the cluster.
    pub writes_per_sec: f64,
    /// Number of distinct keys.
    pub keys: u64,
    /// Value size (bytes).
    pub value_size: usize,
    /// Only the first `writers` nodes write (0 = all).
    pub writers: usize,
    /// Fraction of writes that are deletes.
    pub deletes: f64,
    /// Writes start at this time (s).
    pub start_s: f64,
    /// Writes stop at this time (s; 0 = end of run).
    pub stop_s: f64,
}

impl Default for WorkloadSpec {
    fn default() -> Self {
        Self {
            writes_per_sec: 1.0,
            keys: 100,
            value_size: 32,
            writers: 0,
            deletes: 0.0,
            start_s: 5.0,
            stop_s: 0.0,
        }
    }
}

/// One scheduled fault.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum FaultSpec {
    /// Split into groups (node indices, 0-based) from `at_s` until `until_s`; `halves`
    /// splits into two halves instead.
    Partition {
        /// Start (s).
        at_s: f64,
        /// End (s).
        until_s: f64,
        /// Groups of node indices.
        #[serde(default)]
        groups: Vec<Vec<usize>>,
        /// Split into two halves.
        #[serde(default)]
        halves: bool,
    },
    /// Crash a node at `at_s`, optionally restart it at `restart_s`.
    Crash {
        /// Node index.
        node: usize,
        /// When (s).
        at_s: f64,
        /// Restart time (s).
        #[serde(default)]
        restart_s: Option<f64>,
        /// Whether the restarted node keeps its persisted state.
        #[serde(default)]
        keep_state: bool,
    },
    /// Delay everything a node sends and receives by `ms` from `at_s` on.
    Slow {
        /// Node index.
        node: usize,
        /// Extra one-way delay (ms).
        ms: u64,
        /// When (s).
        #[serde(default)]
        at_s: f64,
    },
    /// Offset a node's clock.
    Skew {
        /// Node index.
        node: usize,
        /// Offset (ms).
        ms: i64,
        /// When (s).
        #[serde(default)]
        at_s: f64,
    },
    /// Nodes that crash and restart (keeping their state) over and over between
    /// `at_s` and `until_s`: down for `down_s`, then up for `up_s`, each with its own
    /// random phase. `nodes` lists them, or `fraction` picks that share of the cluster
    /// (never node 0, the seed).
    Flap {
        /// Node indices.
        #[serde(default)]
        nodes: Vec<usize>,
        /// Share of the cluster instead of a list.
        #[serde(default)]
        fraction: f64,
        /// Start (s).
        at_s: f64,
        /// End (s): every flapping node is up again by then.
        until_s: f64,
        /// Time down per cycle (s).
        down_s: f64,
        /// Time up per cycle (s).
        up_s: f64,
    },
    /// Change the network model for a time window.
    Network {
        /// Start (s).
        at_s: f64,
        /// End (s).
        until_s: f64,
        /// Model during the window.
        network: NetworkSpec,
    },
}

/// Properties to check and their bounds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PropertiesSpec {
    /// Every write reaches every live node, and all live stores end identical.
    pub converge: bool,
    /// Every live node's live keys and values equal those of a reference replica that
    /// merged every acknowledged write: no write lost, no deleted key alive, no live key
    /// missing. Needs sync durability wherever a node crashes.
    pub live_views_match: bool,
    /// Bound on the p99 time for a write to reach every live node (ms).
    pub p99_propagation_ms: Option<f64>,
    /// Bound on the slowest write (ms).
    pub max_propagation_ms: Option<f64>,
    /// No healthy, reachable node is ever declared suspect or dead.
    pub no_false_failures: bool,
    /// Every live node sees every other live node alive at the end.
    pub membership_converges: bool,
    /// No node that is down is ever brought back to alive (ghosts).
    pub no_ghosts: bool,
    /// Every crash that was not followed by a restart is detected by every live node,
    /// each within this bound (ms).
    pub detect_within_ms: Option<f64>,
    /// Bound on the median over crashes (that no restart followed) of the time until
    /// every live node declared the crashed node dead (ms).
    pub detect_median_within_ms: Option<f64>,
    /// Bound on the mean bytes each node sends per second (datagrams and anti-entropy).
    pub max_bytes_per_node_s: Option<f64>,
    /// Every node's egress over every 1-second window stays within this fraction above
    /// its `gossip_bandwidth` cap (e.g. 0.05).
    pub egress_within_cap: Option<f64>,
    /// Bound on the bytes sent between datacenters per write (everything that crossed,
    /// divided by the writes; needs `datacenters`).
    pub max_wan_bytes_per_write: Option<f64>,
}

impl Default for PropertiesSpec {
    fn default() -> Self {
        Self {
            converge: true,
            live_views_match: false,
            p99_propagation_ms: None,
            max_propagation_ms: None,
            no_false_failures: false,
            membership_converges: true,
            no_ghosts: false,
            detect_within_ms: None,
            detect_median_within_ms: None,
            max_bytes_per_node_s: None,
            egress_within_cap: None,
            max_wan_bytes_per_write: None,
        }
    }
}
