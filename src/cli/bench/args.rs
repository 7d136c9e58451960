//! The flags of `gossamer bench`.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use serde::Serialize;

/// Where the cluster runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Real QUIC nodes in this process on 127.0.0.1 (N up to 100).
    Quic,
    /// The deterministic simulator (N up to 10,000).
    Sim,
    /// N `gossamer run` processes on 127.0.0.1 (N up to 100), measured through their
    /// admin APIs as `--cluster` measures a running cluster.
    Processes,
    /// A running cluster, through the admin APIs of `--cluster` (chosen by that flag).
    #[value(skip)]
    Cluster,
}

impl Mode {
    /// The mode's name, as `--mode` and the JSON spell it.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Quic => "quic",
            Mode::Sim => "sim",
            Mode::Processes => "processes",
            Mode::Cluster => "cluster",
        }
    }

    /// What the traffic figures count, in the mode's terms.
    pub fn traffic_bytes(self) -> &'static str {
        match self {
            Mode::Quic => "UDP payload bytes",
            Mode::Sim => "encoded message bytes",
            // The nodes' own counters: no QUIC or UDP overhead is visible through /metrics.
            Mode::Processes | Mode::Cluster => {
                "gossip datagram + anti-entropy stream payload bytes (from /metrics, before QUIC)"
            }
        }
    }
}

/// Flags of `gossamer bench`.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Real QUIC nodes on 127.0.0.1, the simulator, or `gossamer run` processes.
    #[arg(long, value_enum, default_value_t = Mode::Quic)]
    pub mode: Mode,
    /// Cluster sizes, comma-separated: one row each [default: 10,25,50 (quic),
    /// 100,1000,2000 (sim), 10 (processes)].
    #[arg(long, value_delimiter = ',', value_name = "N,N,...")]
    pub nodes: Vec<usize>,
    /// Benchmark a running cluster instead, through the admin APIs at these addresses
    /// (host:port, or https://host:port with --ca): writes go under a prefix of the run's
    /// own (`bench/<random>/`), deleted at the end.
    #[arg(long, value_delimiter = ',', value_name = "ADDR,ADDR,...", conflicts_with_all = ["mode", "nodes"])]
    pub cluster: Vec<String>,
    /// `--cluster`: bearer token of the admin APIs [env: GOSSAMER_ADMIN_TOKEN].
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
    /// `--cluster`: speak HTTPS, trusting nodes of the fleet CA in FILE
    /// [env: GOSSAMER_ADMIN_CA].
    #[arg(id = "tls_ca", long = "ca", value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// `--cluster`: operator certificate for HTTPS (`gossamer certs issue --client NAME`)
    /// [env: GOSSAMER_ADMIN_CERT].
    #[arg(id = "tls_cert", long = "cert", value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// `--cluster`: the operator certificate's private key [env: GOSSAMER_ADMIN_KEY].
    #[arg(id = "tls_key", long = "key", value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Writes of the write-load phase.
    #[arg(long, default_value_t = 100, value_name = "W")]
    pub writes: usize,
    /// Rate of the write load, writes per second across the cluster.
    #[arg(long, default_value_t = 20.0, value_name = "R")]
    pub rate: f64,
    /// Seconds of the idle measurement (virtual seconds in sim mode).
    #[arg(long, default_value_t = 5.0, value_name = "S")]
    pub duration: f64,
    /// Seed of the simulator and of the nodes' random choices.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub seed: u64,
    /// Peers each update is pushed to (default: the protocol default).
    #[arg(long, value_name = "K")]
    pub fanout: Option<usize>,
    /// Gossip round period in ms (default: the protocol default).
    #[arg(long, value_name = "MS")]
    pub gossip_interval: Option<u64>,
    /// Anti-entropy period in ms (default: the protocol default).
    #[arg(long, value_name = "MS")]
    pub sync_interval: Option<u64>,
    /// Protocol settings as TOML (the `[gossip]` fields of a node configuration, at top
    /// level); the flags above override it.
    #[arg(long, value_name = "FILE")]
    pub protocol: Option<PathBuf>,
    /// Quic, processes and cluster: longest warm-up (s). Before measuring, writes at
    /// `--rate` until the nodes hold connections to `--mesh` of their peers (a steady
    /// cluster's mesh: SWIM probes every member, and the connections stay open), so that
    /// TLS handshakes are not what is measured; 0 skips.
    #[arg(long, default_value_t = 60.0, value_name = "S")]
    pub warmup: f64,
    /// Quic, processes and cluster: the share of its peers a node must hold connections
    /// to, on average, before the warm-up ends (0 to 1; 0.9 before #18's full mesh).
    #[arg(long, default_value_t = 1.0, value_name = "FRACTION")]
    pub mesh: f64,
    /// Quic, processes and cluster: also find the highest write rate the cluster
    /// sustains (doubling from 50 writes/s while every step's writes reach every node
    /// within 3 s).
    #[arg(long)]
    pub throughput: bool,
    /// Sim mode: skip the partition and crash scenarios.
    #[arg(long)]
    pub no_faults: bool,
    /// Sim mode: start every node already joined, its member table preloaded with every
    /// member as after a long run, instead of joining through one seed (no join time is
    /// measured). A gossip join makes every node queue announcements of up to 4,096
    /// others, which is what limits N in memory; a warm start lets N = 10,000 fit.
    #[arg(long)]
    pub warm: bool,
    /// Sim mode: longest wait (virtual s) after joining for the join announcements to be
    /// spent before the idle window (the cluster then settles 5 s more).
    #[arg(long, default_value_t = 120.0, value_name = "S")]
    pub settle: f64,
    /// Sim mode: crashes to measure failure detection on, one after the other (0 skips).
    #[arg(long, default_value_t = 5, value_name = "K")]
    pub crashes: usize,
    /// Sim mode: one-way latency of every link (ms).
    #[arg(long, default_value_t = 5.0, value_name = "MS")]
    pub sim_latency: f64,
    /// Sim mode: uniform jitter added to the latency (ms).
    #[arg(long, default_value_t = 2.0, value_name = "MS")]
    pub sim_jitter: f64,
    /// Quic and sim modes: probability (0 to 0.5) that a datagram is lost (quic: each
    /// node's socket drops that share of what it sends, from before the write load, once
    /// the idle window is measured, until its end; the writes start when every node has
    /// seen the loss, at most 15 s later; sim: every link, the whole run).
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    pub loss: f64,
    /// Sim mode: length of the partition into halves (virtual seconds).
    #[arg(long, default_value_t = 10.0, value_name = "S")]
    pub partition: f64,
    /// Write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Draw propagation time and traffic against N as an SVG chart in FILE.
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,
    /// No progress display on stderr.
    #[arg(long)]
    pub quiet: bool,
}
