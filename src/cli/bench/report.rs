//! The results of a run, as serialized to JSON: one [`Row`] per cluster size, and the
//! figures the rows are compared with (theory, percentiles).

use serde::Serialize;

use super::args::Mode;

/// Propagation-time percentiles of a set of writes (ms).
#[derive(Debug, Clone, Serialize)]
pub struct Percentiles {
    /// Writes measured.
    pub count: usize,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile (nearest rank).
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
}

/// Traffic sent per node per second over a window.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Traffic {
    /// Length of the window (s).
    pub window_s: f64,
    /// Bytes sent per node per second (quic: UDP payload; sim: encoded messages).
    pub bytes_per_node_s: f64,
    /// Datagrams sent per node per second (quic: UDP datagrams; sim: gossip datagrams).
    pub datagrams_per_node_s: f64,
    /// Of which gossip datagram payload (before QUIC), per node per second.
    pub gossip_bytes_per_node_s: f64,
    /// Anti-entropy stream payload per node per second.
    pub sync_bytes_per_node_s: f64,
    /// Gossip (application) datagrams per node per second (quic; the rest of
    /// `datagrams_per_node_s` is QUIC's own packets: ACKs, keep-alives, stream packets).
    #[serde(default)]
    pub gossip_datagrams_per_node_s: f64,
    /// Process CPU time over the window, per node, as a percentage of one core (quic).
    pub cpu_percent_per_node: Option<f64>,
}

/// Results for one cluster size.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Cluster size.
    pub nodes: usize,
    /// Time until every node saw every node alive (ms).
    pub join_ms: Option<f64>,
    /// Idle traffic.
    pub idle: Traffic,
    /// Traffic while the write load runs (from the first write until every write is
    /// everywhere).
    pub load: Traffic,
    /// Writes made.
    pub writes: usize,
    /// Writes that reached every node.
    pub writes_everywhere: usize,
    /// Time for a write to reach every node.
    pub propagation: Option<Percentiles>,
    /// Mean copies of each update a node other than the writer received (1.0 = no
    /// redundancy).
    pub copies_per_update: Option<f64>,
    /// Push-gossip rounds in theory: `log_{f+1}(N) + ln(N)/f`.
    pub theory_rounds: f64,
    /// Hops in theory: `⌈log₂ N⌉` down the broadcast tree, `log_f(N)` for random push.
    pub theory_hops: f64,
    /// p99 propagation in gossip rounds (p99 / gossip interval).
    pub measured_rounds_p99: Option<f64>,
    /// Highest write rate sustained (writes/s across the cluster; quic `--throughput`).
    pub max_writes_per_s: Option<f64>,
    /// Sim: failure detection after crashes.
    pub detection: Option<Detection>,
    /// Sim: time from the end of a partition into halves until every write made during
    /// it is on every node and every node sees every other alive (ms).
    pub partition_heal_ms: Option<f64>,
    /// Resident memory per node (MiB): quic, process RSS growth / N; sim, whole
    /// simulator RSS / N.
    pub rss_mib_per_node: Option<f64>,
    /// Wall-clock seconds this row took.
    pub wall_s: f64,
    /// Sim: events processed.
    pub sim_events: Option<u64>,
    /// What could not be measured, and why.
    pub notes: Vec<String>,
    /// Processes and cluster: each node's traffic, from its `/metrics`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub per_node: Vec<NodeTraffic>,
}

/// One node's payload bytes per second (gossip datagrams and anti-entropy streams, from
/// its `/metrics`), idle and under the write load.
#[derive(Debug, Clone, Serialize)]
pub struct NodeTraffic {
    /// The node's id.
    pub node: String,
    /// Its admin API address.
    pub addr: String,
    /// Bytes sent per second, idle.
    pub idle_sent_bytes_s: f64,
    /// Bytes received per second, idle.
    pub idle_received_bytes_s: f64,
    /// Bytes sent per second under load.
    pub load_sent_bytes_s: f64,
    /// Bytes received per second under load.
    pub load_received_bytes_s: f64,
}

/// The machine the run used.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// Logical CPUs available.
    pub cpus: usize,
    /// CPU model (from /proc/cpuinfo).
    pub cpu_model: String,
    /// Total memory (GiB).
    pub memory_gib: f64,
}

/// Protocol settings in force.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// Peers per push.
    pub fanout: usize,
    /// Gossip round period (ms).
    pub gossip_interval_ms: u64,
    /// Anti-entropy period (ms).
    pub sync_interval_ms: u64,
    /// Retransmit multiplier.
    pub retransmit_mult: u32,
    /// SWIM probe period (ms), if this build has one.
    pub probe_interval_ms: Option<u64>,
}

/// A whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Mode.
    pub mode: Mode,
    /// Seed.
    pub seed: u64,
    /// gossamer version.
    pub version: String,
    /// The machine.
    pub machine: Machine,
    /// Protocol settings.
    pub settings: Settings,
    /// Write load: writes and rate.
    pub writes: usize,
    /// Writes per second of the load.
    pub rate: f64,
    /// Idle window (s).
    pub idle_s: f64,
    /// Sim: length of the partition (s).
    pub partition_s: f64,
    /// Sim: crashes measured per row.
    pub crashes: usize,
    /// Command line that reproduces the run.
    pub command: String,
    /// One row per cluster size.
    pub rows: Vec<Row>,
}

/// Failure detection measured on crashes in the simulator (ms, means over the samples).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Detection {
    /// Crashes measured.
    pub samples: usize,
    /// Crash until the first live node suspects the crashed node (or declares it dead).
    pub first_ms: Option<f64>,
    /// Crash until every live node sees it suspect or dead.
    pub all_ms: Option<f64>,
    /// Crash until every live node has declared it dead (suspicion timeout included).
    pub dead_ms: Option<f64>,
    /// Each crash: (first, all, dead) in ms; `None` where it did not happen in time.
    pub each: Vec<CrashTimes>,
}

/// What every mode measures of its write load.
pub struct Load {
    /// Idle traffic.
    pub idle: Traffic,
    /// Traffic under the write load.
    pub load: Traffic,
    /// Writes made.
    pub writes: usize,
    /// Writes that reached every node.
    pub writes_everywhere: usize,
    /// Propagation time of each write that reached every node (ms).
    pub propagation_ms: Vec<f64>,
    /// Copies of the writes received by nodes other than their writer.
    pub copies: f64,
}

impl Row {
    /// A row of `n` nodes from a write load's measurements, held against the theory for
    /// `gossip`; every figure only some modes measure is left empty.
    pub fn measured(n: usize, gossip: &gossamer::core::Config, m: Load) -> Row {
        let propagation = percentiles(m.propagation_ms);
        let measured_rounds_p99 = propagation
            .as_ref()
            .map(|x| x.p99_ms / gossip.gossip_interval_ms as f64);
        Row {
            nodes: n,
            join_ms: None,
            idle: m.idle,
            load: m.load,
            writes: m.writes,
            writes_everywhere: m.writes_everywhere,
            propagation,
            copies_per_update: Some(m.copies / (m.writes as f64 * (n - 1) as f64)),
            theory_rounds: theory_rounds(n, gossip.fanout),
            theory_hops: theory_hops(
                n,
                gossip.fanout,
                gossip.push == gossamer::core::PushMode::Tree,
            ),
            measured_rounds_p99,
            max_writes_per_s: None,
            detection: None,
            partition_heal_ms: None,
            rss_mib_per_node: None,
            wall_s: 0.0,
            sim_events: None,
            notes: Vec::new(),
            per_node: Vec::new(),
        }
    }
}

/// Times (ms) of one crash: first suspicion, suspected everywhere, dead everywhere.
pub type CrashTimes = (Option<f64>, Option<f64>, Option<f64>);

/// `log_{f+1}(N) + ln(N)/f`: rounds for push gossip with fanout f to reach all N.
pub fn theory_rounds(n: usize, fanout: usize) -> f64 {
    let (n, f) = (n as f64, fanout.max(1) as f64);
    n.ln() / (f + 1.0).ln() + n.ln() / f
}

/// Hops for an update to reach all N: `⌈log₂ N⌉` down the broadcast tree (`tree`), or
/// `log_f(N)` for a random eager push with fanout f (f = 1 counts as 2).
pub fn theory_hops(n: usize, fanout: usize, tree: bool) -> f64 {
    if tree {
        (n.max(1) as f64).log2().ceil()
    } else {
        (n as f64).ln() / (fanout.max(2) as f64).ln()
    }
}

pub(super) fn percentiles(mut v: Vec<f64>) -> Option<Percentiles> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = |p: f64| {
        let i = ((p / 100.0) * v.len() as f64).ceil() as usize;
        v[i.clamp(1, v.len()) - 1]
    };
    let r3 = |x: f64| (x * 1000.0).round() / 1000.0;
    Some(Percentiles {
        count: v.len(),
        p50_ms: r3(rank(50.0)),
        p99_ms: r3(rank(99.0)),
        max_ms: r3(v[v.len() - 1]),
    })
}
