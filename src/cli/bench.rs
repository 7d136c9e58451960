//! `gossamer bench`: cluster benchmarks, one table row per cluster size.
//!
//! Two modes measure the same figures:
//!
//! - `--mode quic`: N real nodes in this process on 127.0.0.1, mutually authenticated
//!   QUIC, each on a fault-free [`ChaosSocket`] that counts every UDP datagram it sends
//!   (so bytes are UDP payload bytes: QUIC headers, encryption, ACKs, keep-alives and
//!   handshakes included). Times are wall-clock; CPU time and resident memory are the
//!   process's, divided by N.
//! - `--mode sim`: N engines in the deterministic simulator (virtual time, by default a
//!   one-way latency of 5 ms plus up to 2 ms of jitter, no loss). Bytes are the engine's
//!   messages as encoded (CBOR plus a 16-byte modelled header), without QUIC or UDP
//!   overhead. Adds a partition of the cluster into halves (heal time) and crashes
//!   (failure detection time).
//!
//! Per N: time to join; traffic per node while idle; then a write load (`--writes` at
//! `--rate` per second, spread over the nodes) with the time for each write to reach
//! every node (p50/p99/max), traffic under load and redundancy (copies of each update a
//! node receives, from the store counters `duplicates` + `remote_applied`, the same
//! counters as `gossamer_duplicate_updates_total` and `gossamer_remote_applied_total`).
//! Every wait is bounded.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, ValueEnum};
use gossamer::chaos::{ChaosControl, ChaosSocket};
use gossamer::core::proto::MemberStatus;
use gossamer::core::{Config, Event};
use gossamer::node::local::LocalCluster;
use gossamer::node::Node;
use gossamer::sim::{sim_id, Action, NetModel, Sim, SimConfig};
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;

use super::UsageError;

/// Where the cluster runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Real QUIC nodes in this process on 127.0.0.1 (N up to 100).
    Quic,
    /// The deterministic simulator (N up to 10,000).
    Sim,
}

/// Flags of `gossamer bench`.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Real QUIC nodes on 127.0.0.1, or the simulator.
    #[arg(long, value_enum, default_value_t = Mode::Quic)]
    pub mode: Mode,
    /// Cluster sizes, comma-separated: one row each [default: 10,25,50 (quic),
    /// 100,1000,2000 (sim)].
    #[arg(long, value_delimiter = ',', value_name = "N,N,...")]
    pub nodes: Vec<usize>,
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
    /// Quic mode: longest warm-up (s). Before measuring, writes at `--rate` until every
    /// node holds connections to 90 % of its peers (a steady cluster's mesh: keep-alives
    /// hold connections open), so that TLS handshakes are not what is measured; 0 skips.
    #[arg(long, default_value_t = 60.0, value_name = "S")]
    pub warmup: f64,
    /// Quic mode: also find the highest write rate the cluster sustains (doubling from
    /// 50 writes/s while every step's writes reach every node within 3 s).
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

// ---------------------------------------------------------------------------------------
// Plan and settings.

#[derive(Debug, Clone)]
struct Plan {
    mode: Mode,
    nodes: Vec<usize>,
    writes: usize,
    rate: f64,
    idle: f64,
    seed: u64,
    gossip: Config,
    throughput: bool,
    warmup: f64,
    faults: bool,
    warm: bool,
    settle_us: u64,
    crashes: usize,
    partition: f64,
    net: NetModel,
}

fn plan(a: &BenchArgs) -> anyhow::Result<Plan> {
    let (max, default): (usize, &[usize]) = match a.mode {
        Mode::Quic => (100, &[10, 25, 50]),
        Mode::Sim => (10_000, &[100, 1_000, 2_000]),
    };
    let mut nodes = if a.nodes.is_empty() {
        default.to_vec()
    } else {
        a.nodes.clone()
    };
    for &n in &nodes {
        if !(2..=max).contains(&n) {
            return Err(UsageError(format!(
                "--nodes {n}: {} mode runs 2 to {max} nodes",
                if a.mode == Mode::Quic { "quic" } else { "sim" }
            ))
            .into());
        }
    }
    nodes.sort_unstable();
    nodes.dedup();
    if a.mode == Mode::Sim {
        if let (Some(&n), Some(avail)) = (nodes.last(), mem_available_bytes()) {
            let per_n2 = sim_bytes_per_n2(a.warm);
            let need = (per_n2 * (n as f64).powi(2)) as u64;
            if need > avail {
                let fits = |per: f64| ((avail as f64 / per).sqrt() / 100.0).floor() * 100.0;
                let hint = if a.warm {
                    String::new()
                } else {
                    format!(
                        "; with --warm (nodes start joined: no join queues) about N = {:.0} fits",
                        fits(sim_bytes_per_n2(true))
                    )
                };
                return Err(UsageError(format!(
                    "--nodes {n}: the simulator would need about {:.0} GB (every node's member table{} holds \
                     up to N entries, so memory grows as N²), but {:.0} GB are available; about N = {:.0} fits here{hint}",
                    need as f64 / 1e9,
                    if a.warm { "" } else { " and join queue" },
                    avail as f64 / 1e9,
                    fits(per_n2),
                ))
                .into());
            }
        }
    }
    if a.writes == 0 || a.writes > 100_000 {
        return Err(UsageError(format!("--writes {}: must be 1 to 100000", a.writes)).into());
    }
    if !(a.rate.is_finite() && a.rate > 0.0 && a.rate <= 10_000.0) {
        return Err(UsageError(format!(
            "--rate {}: must be more than 0 and at most 10000 writes/s",
            a.rate
        ))
        .into());
    }
    if !(a.duration.is_finite() && a.duration > 0.0 && a.duration <= 3_600.0) {
        return Err(UsageError(format!(
            "--duration {}: must be more than 0 and at most 3600 seconds",
            a.duration
        ))
        .into());
    }
    for (flag, v) in [
        ("--sim-latency", a.sim_latency),
        ("--sim-jitter", a.sim_jitter),
    ] {
        if !(v.is_finite() && (0.0..=10_000.0).contains(&v)) {
            return Err(UsageError(format!("{flag} {v}: must be 0 to 10000 ms")).into());
        }
    }
    if !(a.settle.is_finite() && (0.0..=3_600.0).contains(&a.settle)) {
        return Err(UsageError(format!("--settle {}: must be 0 to 3600 seconds", a.settle)).into());
    }
    if !(a.warmup.is_finite() && (0.0..=600.0).contains(&a.warmup)) {
        return Err(UsageError(format!("--warmup {}: must be 0 to 600 seconds", a.warmup)).into());
    }
    if !(a.partition.is_finite() && a.partition > 0.0 && a.partition <= 3_600.0) {
        return Err(UsageError(format!(
            "--partition {}: must be more than 0 and at most 3600 seconds",
            a.partition
        ))
        .into());
    }
    let mut gossip = match &a.protocol {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading --protocol {}", p.display()))?;
            toml::from_str::<Config>(&text)
                .map_err(|e| UsageError(format!("--protocol {}: {e}", p.display())))?
        }
        None => Config::default(),
    };
    if let Some(f) = a.fanout {
        gossip.fanout = f;
    }
    if let Some(ms) = a.gossip_interval {
        gossip.gossip_interval_ms = ms;
    }
    if let Some(ms) = a.sync_interval {
        gossip.sync_interval_ms = ms;
    }
    if a.mode == Mode::Quic {
        // Joining is not what is measured: contact the seed quickly.
        gossip.seed_backoff_floor_ms = gossip.seed_backoff_floor_ms.min(200);
        gossip.seed_backoff_cap_ms = gossip.seed_backoff_cap_ms.min(2_000);
    }
    gossip
        .validate()
        .map_err(|e| UsageError(format!("protocol settings: {e}")))?;
    Ok(Plan {
        mode: a.mode,
        nodes,
        writes: a.writes,
        rate: a.rate,
        idle: a.duration,
        seed: a.seed,
        gossip,
        throughput: a.throughput,
        warmup: a.warmup,
        faults: !a.no_faults,
        warm: a.warm,
        settle_us: (a.settle * US as f64) as u64,
        crashes: a.crashes.min(100),
        partition: a.partition,
        net: NetModel {
            latency_us: (a.sim_latency * 1000.0) as u64,
            jitter_us: (a.sim_jitter * 1000.0) as u64,
            ..NetModel::default()
        },
    })
}

/// A protocol field that not every build has (read through serde, so this file builds
/// before and after it exists).
fn config_field(cfg: &Config, name: &str) -> Option<u64> {
    serde_json::to_value(cfg).ok()?.get(name)?.as_u64()
}

fn settings(cfg: &Config) -> Settings {
    Settings {
        fanout: cfg.fanout,
        gossip_interval_ms: cfg.gossip_interval_ms,
        sync_interval_ms: cfg.sync_interval_ms,
        retransmit_mult: cfg.retransmit_mult,
        probe_interval_ms: config_field(cfg, "probe_interval_ms"),
    }
}

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

// ---------------------------------------------------------------------------------------
// Process and machine readings (Linux /proc; None elsewhere).

/// CPU time (user + system) of this process in seconds.
fn cpu_seconds() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may contain spaces) start at state (field 3).
    let rest = s.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    // USER_HZ is 100 on every Linux ABI.
    Some((utime + stime) / 100.0)
}

/// Simulator peak memory per N² (bytes), measured with `/usr/bin/time -v`. Joining
/// through gossip: every node's queue fills with announcements of other members (up to
/// `queue_max`) besides its member table: 1.6 GB at N = 2,000. A warm start holds only
/// the tables (and the write load's queues): 3.5 GB at N = 5,000, 13.0 GB at 10,000.
fn sim_bytes_per_n2(warm: bool) -> f64 {
    if warm {
        150.0
    } else {
        450.0
    }
}

/// `MemAvailable` of /proc/meminfo in bytes.
fn mem_available_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = s.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// A `kB` field of /proc/self/status (e.g. `VmRSS`), in MiB.
fn proc_status_mib(field: &str) -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(&format!("{field}:")))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn machine() -> Machine {
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let memory_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map(|kb| (kb / 1024.0 / 1024.0 * 10.0).round() / 10.0)
        .unwrap_or(0.0);
    Machine {
        cpus: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        cpu_model,
        memory_gib,
    }
}

// ---------------------------------------------------------------------------------------
// Progress display on stderr.

struct Progress {
    quiet: bool,
    tty: bool,
    last: Mutex<(String, Instant)>,
}

impl Progress {
    fn new(quiet: bool) -> Self {
        Self {
            quiet,
            tty: std::io::stderr().is_terminal(),
            last: Mutex::new((String::new(), Instant::now())),
        }
    }

    /// Shows `phase` of the row for `n` nodes, `frac` done (0 to 1), and a detail.
    fn show(&self, n: usize, phase: &str, frac: f64, detail: &str) {
        if self.quiet {
            return;
        }
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let head = format!("N={n} {phase}");
        let mut err = std::io::stderr().lock();
        if self.tty {
            let width = 24;
            let full = ((frac.clamp(0.0, 1.0)) * width as f64).round() as usize;
            let bar = format!("{}{}", "#".repeat(full), ".".repeat(width - full));
            let _ = write!(err, "\r\x1b[2K[{bar}] {head} {detail}");
            let _ = err.flush();
        } else if last.0 != head || last.1.elapsed() > Duration::from_secs(10) {
            // Not a terminal: one line per phase, and one every 10 s within a long one.
            let _ = writeln!(err, "bench: {head} {detail}");
            *last = (head, Instant::now());
        }
    }

    fn clear(&self) {
        if !self.quiet && self.tty {
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
        }
    }
}

fn percentiles(mut v: Vec<f64>) -> Option<Percentiles> {
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

// ---------------------------------------------------------------------------------------
// Quic mode.

/// Counters summed over the cluster at one instant.
#[derive(Debug, Clone, Copy)]
struct QuicSnap {
    at: Instant,
    udp_datagrams: u64,
    udp_received: u64,
    dropped: u64,
    dial_failures: u64,
    suspicions: u64,
    grafts: u64,
    udp_bytes: u64,
    gossip_bytes: u64,
    sync_bytes: u64,
    copies: u64,
    cpu_s: Option<f64>,
}

fn quic_snap(nodes: &[Node], controls: &[ChaosControl]) -> QuicSnap {
    let mut s = QuicSnap {
        at: Instant::now(),
        udp_datagrams: 0,
        udp_received: 0,
        dropped: 0,
        dial_failures: 0,
        suspicions: 0,
        grafts: 0,
        udp_bytes: 0,
        gossip_bytes: 0,
        sync_bytes: 0,
        copies: 0,
        cpu_s: cpu_seconds(),
    };
    for (node, ctl) in nodes.iter().zip(controls) {
        let c = ctl.stats();
        s.udp_datagrams += c.sent;
        s.udp_bytes += c.sent_bytes;
        s.udp_received += c.received;
        let r = node.runtime_stats();
        s.dropped += r.datagrams_dropped.load(Ordering::Relaxed);
        s.dial_failures += r.dial_failures.load(Ordering::Relaxed);
        s.gossip_bytes += r.datagram_bytes_sent.load(Ordering::Relaxed);
        s.sync_bytes += r.sync_bytes_sent.load(Ordering::Relaxed);
        let st = node.with_store_stats();
        s.copies += st.duplicates + st.remote_applied;
        let es = node.engine_stats();
        s.suspicions += es.suspicions;
        s.grafts += es.grafts_sent;
    }
    s
}

fn quic_traffic(a: &QuicSnap, b: &QuicSnap, n: usize) -> Traffic {
    let dt = b.at.duration_since(a.at).as_secs_f64().max(1e-9);
    let per = |x: u64, y: u64| y.saturating_sub(x) as f64 / n as f64 / dt;
    Traffic {
        window_s: dt,
        bytes_per_node_s: per(a.udp_bytes, b.udp_bytes),
        datagrams_per_node_s: per(a.udp_datagrams, b.udp_datagrams),
        gossip_bytes_per_node_s: per(a.gossip_bytes, b.gossip_bytes),
        sync_bytes_per_node_s: per(a.sync_bytes, b.sync_bytes),
        cpu_percent_per_node: match (a.cpu_s, b.cpu_s) {
            (Some(x), Some(y)) => Some((y - x) / dt / n as f64 * 100.0),
            _ => None,
        },
    }
}

/// Arrival times of tracked writes on every node.
struct Tracker {
    n: usize,
    index: HashMap<String, usize>,
    at: Vec<Instant>,
    arrivals: Vec<Vec<Option<Instant>>>,
    remaining: Vec<usize>,
    lagged: bool,
}

impl Tracker {
    fn new(n: usize) -> Self {
        Self {
            n,
            index: HashMap::new(),
            at: Vec::new(),
            arrivals: Vec::new(),
            remaining: Vec::new(),
            lagged: false,
        }
    }

    fn register(&mut self, key: String) -> usize {
        let w = self.at.len();
        self.index.insert(key, w);
        self.at.push(Instant::now());
        self.arrivals.push(vec![None; self.n]);
        self.remaining.push(self.n);
        w
    }

    fn arrived(&mut self, key: &str, node: usize, t: Instant) {
        if let Some(&w) = self.index.get(key) {
            if self.arrivals[w][node].is_none() {
                self.arrivals[w][node] = Some(t);
                self.remaining[w] -= 1;
            }
        }
    }

    fn complete(&self) -> usize {
        self.remaining.iter().filter(|&&r| r == 0).count()
    }

    /// Propagation times (ms) of the complete writes.
    fn propagation_ms(&self) -> Vec<f64> {
        (0..self.at.len())
            .filter(|&w| self.remaining[w] == 0)
            .filter_map(|w| {
                let last = self.arrivals[w].iter().flatten().max()?;
                Some(last.saturating_duration_since(self.at[w]).as_secs_f64() * 1000.0)
            })
            .collect()
    }
}

fn lock(t: &Mutex<Tracker>) -> MutexGuard<'_, Tracker> {
    t.lock().unwrap_or_else(|p| p.into_inner())
}

async fn watch(node: Node, i: usize, tracker: Arc<Mutex<Tracker>>) {
    let mut rx = node.subscribe();
    drop(node);
    loop {
        match rx.recv().await {
            Ok(Event::Kv { entry, .. }) => {
                let t = Instant::now();
                if entry.value.is_some() {
                    lock(&tracker).arrived(&entry.key, i, t);
                }
            }
            Ok(_) => {}
            Err(RecvError::Lagged(_)) => lock(&tracker).lagged = true,
            Err(RecvError::Closed) => break,
        }
    }
}

/// Sleeps in small steps until `cond` holds or `limit` passes; shows progress. Returns
/// the time it took, if it held.
async fn wait_until(
    limit: Duration,
    mut cond: impl FnMut() -> bool,
    mut show: impl FnMut(f64),
) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if cond() {
            return Some(start.elapsed());
        }
        let e = start.elapsed();
        if e >= limit {
            return None;
        }
        show(e.as_secs_f64() / limit.as_secs_f64());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn sleep_showing(d: Duration, mut show: impl FnMut(f64)) {
    let start = Instant::now();
    while start.elapsed() < d {
        show(start.elapsed().as_secs_f64() / d.as_secs_f64());
        tokio::time::sleep(Duration::from_millis(100).min(d.saturating_sub(start.elapsed()))).await;
    }
}

/// Mean fraction of its peers a node holds a connection to.
fn mesh_fraction(nodes: &[Node]) -> f64 {
    let n = nodes.len();
    let conns: usize = nodes
        .iter()
        .map(|x| x.members().iter().filter(|m| m.rtt_ms.is_some()).count())
        .sum();
    conns as f64 / (n * (n - 1)).max(1) as f64
}

/// Writes at the plan's rate until nodes hold connections to 90 % of their peers on
/// average, or `p.warmup` seconds; returns the fraction reached.
async fn warm_up(p: &Plan, n: usize, nodes: &[Node], progress: &Progress) -> f64 {
    let limit = Duration::from_secs_f64(p.warmup);
    let start = Instant::now();
    let mut k = 0usize;
    let mut mesh = mesh_fraction(nodes);
    let mut checked = Instant::now();
    while mesh < 0.9 && start.elapsed() < limit {
        let due = start + Duration::from_secs_f64(k as f64 / p.rate);
        tokio::time::sleep_until(due.into()).await;
        let _ = nodes[k % n].set(&format!("bench/warmup/{n}/{k:06}"), vec![0; 32]);
        k += 1;
        if checked.elapsed() >= Duration::from_secs(1) {
            mesh = mesh_fraction(nodes);
            checked = Instant::now();
            progress.show(
                n,
                "warming up",
                start.elapsed().as_secs_f64() / limit.as_secs_f64(),
                &format!("{:.0} % of peers connected", mesh * 100.0),
            );
        }
    }
    mesh
}

/// Waits [`SETTLE`], then until the cluster's gossip datagram traffic is steady: two
/// consecutive one-second windows within 10 % (or 200 B/node/s) of each other, or
/// [`SETTLE_LIMIT`]. Join announcements spend their retransmit budgets meanwhile.
async fn settle_quic(n: usize, nodes: &[Node], controls: &[ChaosControl], progress: &Progress) {
    sleep_showing(SETTLE, |f| progress.show(n, "settling", f, "")).await;
    let start = Instant::now();
    let mut prev: Option<f64> = None;
    let mut a = quic_snap(nodes, controls);
    while start.elapsed() < SETTLE_LIMIT {
        progress.show(
            n,
            "settling",
            start.elapsed().as_secs_f64() / SETTLE_LIMIT.as_secs_f64(),
            "waiting for steady traffic",
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        let b = quic_snap(nodes, controls);
        let rate = quic_traffic(&a, &b, n).gossip_bytes_per_node_s;
        if let Some(p) = prev {
            if (rate - p).abs() <= (0.1 * p.max(rate)).max(200.0) {
                return;
            }
        }
        prev = Some(rate);
        a = b;
    }
}

/// Longest wait for steady traffic after [`SETTLE`].
const SETTLE_LIMIT: Duration = Duration::from_secs(60);

/// Time the cluster is left alone after joining, before the idle window, so that join
/// gossip (membership broadcasts, member-list syncs) has died down.
const SETTLE: Duration = Duration::from_secs(5);
/// Longest wait for the cluster to join.
const JOIN_LIMIT: Duration = Duration::from_secs(120);
/// Longest wait for writes to reach every node after the last one was made.
const DRAIN_LIMIT: Duration = Duration::from_secs(15);

async fn quic_row(p: &Plan, n: usize, progress: &Progress) -> anyhow::Result<Row> {
    let wall = Instant::now();
    let mut notes = Vec::new();
    let rss_before = proc_status_mib("VmRSS");
    let mut c = LocalCluster::start(0, n, p.gossip.clone())
        .await
        .context("generating certificates")?;
    let mut controls = Vec::with_capacity(n);
    let t_start = Instant::now();
    for i in 1..=n {
        progress.show(
            n,
            "starting nodes",
            i as f64 / n as f64,
            &format!("{i}/{n}"),
        );
        let (sock, ctl) = ChaosSocket::bind(
            SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            p.seed.wrapping_add(i as u64),
        )
        .context("binding a UDP socket on 127.0.0.1")?;
        let mut cfg = c.config(i, c.seed_addrs());
        cfg.rng_seed = Some(p.seed.wrapping_mul(1_000_003).wrapping_add(i as u64));
        c.start_with_socket(cfg, sock)
            .await
            .with_context(|| format!("starting node n{i}"))?;
        controls.push(ctl);
    }
    let nodes = c.nodes.clone();
    let result = quic_measure(p, n, &nodes, &controls, t_start, progress, &mut notes).await;
    let rss_after = proc_status_mib("VmRSS");
    progress.show(n, "stopping nodes", 1.0, "");
    let mut closing = tokio::task::JoinSet::new();
    for node in nodes {
        closing.spawn(async move { node.shutdown().await });
    }
    while closing.join_next().await.is_some() {}
    drop(c);
    let mut row = result?;
    row.rss_mib_per_node = match (rss_before, rss_after) {
        (Some(a), Some(b)) => Some((b - a).max(0.0) / n as f64),
        _ => None,
    };
    row.wall_s = wall.elapsed().as_secs_f64();
    row.notes.extend(notes);
    Ok(row)
}

async fn quic_measure(
    p: &Plan,
    n: usize,
    nodes: &[Node],
    controls: &[ChaosControl],
    t_start: Instant,
    progress: &Progress,
    notes: &mut Vec<String>,
) -> anyhow::Result<Row> {
    let everyone = || nodes.iter().all(|x| x.alive_count() == n);
    let joined = wait_until(JOIN_LIMIT, everyone, |f| progress.show(n, "joining", f, "")).await;
    let Some(_) = joined else {
        anyhow::bail!(
            "the {n} nodes did not all see each other alive within {} s",
            JOIN_LIMIT.as_secs()
        );
    };
    let join_ms = t_start.elapsed().as_secs_f64() * 1000.0;
    if p.warmup > 0.0 {
        let mesh = warm_up(p, n, nodes, progress).await;
        if mesh < 0.9 {
            notes.push(format!(
                "warm-up: nodes held connections to only {:.0} % of their peers after {} s",
                mesh * 100.0,
                p.warmup
            ));
        }
    }
    settle_quic(n, nodes, controls, progress).await;

    // Idle.
    let idle_d = Duration::from_secs_f64(p.idle);
    let a = quic_snap(nodes, controls);
    sleep_showing(idle_d, |f| progress.show(n, "idle", f, "")).await;
    let b = quic_snap(nodes, controls);
    let idle = quic_traffic(&a, &b, n);

    // Write load.
    let tracker = Arc::new(Mutex::new(Tracker::new(n)));
    let mut watchers = tokio::task::JoinSet::new();
    for (i, node) in nodes.iter().enumerate() {
        watchers.spawn(watch(node.clone(), i, tracker.clone()));
    }
    tokio::task::yield_now().await;
    let before = quic_snap(nodes, controls);
    let start = Instant::now();
    let mut errors = 0usize;
    for k in 0..p.writes {
        let due = start + Duration::from_secs_f64(k as f64 / p.rate);
        tokio::time::sleep_until(due.into()).await;
        let key = format!("bench/{n}/{k:06}");
        // Register first: the writer's own event may arrive before `set` returns.
        lock(&tracker).register(key.clone());
        if nodes[k % n].set(&key, vec![0xab; 32]).is_err() {
            errors += 1;
        }
        if k % 10 == 0 {
            progress.show(
                n,
                "writing",
                k as f64 / p.writes as f64,
                &format!("{k}/{} writes", p.writes),
            );
        }
    }
    let drained = wait_until(
        DRAIN_LIMIT,
        || lock(&tracker).complete() == p.writes,
        |f| progress.show(n, "draining", f, ""),
    )
    .await;
    let after = quic_snap(nodes, controls);
    watchers.abort_all();
    let load = quic_traffic(&before, &after, n);
    let (prop, complete, lagged) = {
        let t = lock(&tracker);
        (t.propagation_ms(), t.complete(), t.lagged)
    };
    if errors > 0 {
        notes.push(format!("{errors} writes failed"));
    }
    if drained.is_none() {
        notes.push(format!(
            "{} of {} writes had not reached every node {} s after the last write",
            p.writes - complete,
            p.writes,
            DRAIN_LIMIT.as_secs()
        ));
    }
    if lagged {
        notes.push("an event receiver lagged: some arrivals were not seen".into());
    }
    let copies = after.copies.saturating_sub(before.copies) as f64;
    let (sent, received) = (
        after.udp_datagrams - before.udp_datagrams,
        after.udp_received - before.udp_received,
    );
    if sent > 0 && received < sent * 99 / 100 {
        notes.push(format!(
            "under load {} of {sent} UDP datagrams sent were not received ({:.1} %)",
            sent - received,
            (sent - received) as f64 * 100.0 / sent as f64
        ));
    }
    for (what, x) in [
        (
            "gossip datagrams dropped on send (no connection yet, or quinn refused)",
            after.dropped - before.dropped,
        ),
        ("dial failures", after.dial_failures - before.dial_failures),
        (
            "suspicions raised (members' views differ while they last)",
            after.suspicions - before.suspicions,
        ),
        (
            "grafts (an update the tree did not bring in time, asked for by id)",
            after.grafts - before.grafts,
        ),
    ] {
        if x > 0 {
            notes.push(format!("under load: {x} {what}"));
        }
    }
    let propagation = percentiles(prop);
    let measured_rounds_p99 = propagation
        .as_ref()
        .map(|x| x.p99_ms / p.gossip.gossip_interval_ms as f64);
    let max_writes_per_s = if p.throughput {
        quic_throughput(n, nodes, progress, notes).await
    } else {
        None
    };
    Ok(Row {
        nodes: n,
        join_ms: Some(join_ms),
        idle,
        load,
        writes: p.writes,
        writes_everywhere: complete,
        propagation,
        copies_per_update: Some(copies / (p.writes as f64 * (n - 1) as f64)),
        theory_rounds: theory_rounds(n, p.gossip.fanout),
        theory_hops: theory_hops(
            n,
            p.gossip.fanout,
            p.gossip.tree_push && p.gossip.push_deltas,
        ),
        measured_rounds_p99,
        max_writes_per_s,
        detection: None,
        partition_heal_ms: None,
        rss_mib_per_node: None,
        wall_s: 0.0,
        sim_events: None,
        notes: Vec::new(),
    })
}

/// Doubles the write rate from 50 writes/s; a step (2 s of writes on the nodes in turn)
/// is sustained when every node holds all its keys within 3 s of its end. Returns the
/// highest sustained rate.
async fn quic_throughput(
    n: usize,
    nodes: &[Node],
    progress: &Progress,
    notes: &mut Vec<String>,
) -> Option<f64> {
    const STEP: Duration = Duration::from_secs(2);
    const GRACE: Duration = Duration::from_secs(3);
    let base: Vec<usize> = nodes.iter().map(|x| x.status().keys).collect();
    let mut total = 0usize;
    let mut best = None;
    let mut rate = 50.0f64;
    while rate <= 12_800.0 {
        let count = (rate * STEP.as_secs_f64()) as usize;
        let start = Instant::now();
        let tick = Duration::from_millis(10);
        let per_tick = (rate * tick.as_secs_f64()).max(1.0);
        let mut made = 0usize;
        let mut errors = 0usize;
        let mut t = 0u32;
        while made < count {
            tokio::time::sleep_until((start + tick * t).into()).await;
            t += 1;
            let due = ((t as f64 * per_tick) as usize).min(count);
            while made < due {
                let key = format!("bench/tp/{n}/{rate}/{made:06}");
                if nodes[made % n].set(&key, vec![0xcd; 32]).is_err() {
                    errors += 1;
                }
                made += 1;
            }
            progress.show(
                n,
                "throughput",
                made as f64 / count as f64,
                &format!("{rate} w/s"),
            );
        }
        let wrote_in = start.elapsed();
        total += count;
        let target = total;
        let ok = wait_until(
            GRACE,
            || {
                nodes
                    .iter()
                    .zip(&base)
                    .all(|(x, b)| x.status().keys >= b + target)
            },
            |_| {},
        )
        .await
        .is_some();
        // A step whose writes could not even be issued at the rate does not count.
        let on_time = wrote_in < STEP + STEP / 4;
        if !(ok && on_time && errors == 0) {
            if !on_time {
                notes.push(format!(
                    "throughput: the load generator could not issue {rate} writes/s"
                ));
            }
            break;
        }
        best = Some(rate);
        rate *= 2.0;
        // Let the next step start from a drained cluster.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    best
}

// ---------------------------------------------------------------------------------------
// Sim mode.

const US: u64 = 1_000_000;

#[derive(Debug, Clone, Copy)]
struct SimSnap {
    at_us: u64,
    datagrams: u64,
    bytes: u64,
    gossip_bytes: u64,
    sync_bytes: u64,
    copies: u64,
}

fn sim_snap(sim: &Sim) -> SimSnap {
    let mut s = SimSnap {
        at_us: sim.now_us(),
        datagrams: 0,
        bytes: 0,
        gossip_bytes: 0,
        sync_bytes: 0,
        copies: 0,
    };
    for i in 0..sim.len() {
        let t = sim.traffic(i);
        s.datagrams += t.datagrams;
        s.gossip_bytes += t.datagram_bytes;
        s.sync_bytes += t.sync_bytes;
        s.bytes += t.datagram_bytes + t.sync_bytes;
        if let Some(e) = sim.engine(i) {
            let st = e.store().stats();
            s.copies += st.duplicates + st.remote_applied;
        }
    }
    s
}

fn sim_traffic(a: &SimSnap, b: &SimSnap, n: usize) -> Traffic {
    let dt = (b.at_us.saturating_sub(a.at_us) as f64 / US as f64).max(1e-9);
    let per = |x: u64, y: u64| y.saturating_sub(x) as f64 / n as f64 / dt;
    Traffic {
        window_s: dt,
        bytes_per_node_s: per(a.bytes, b.bytes),
        datagrams_per_node_s: per(a.datagrams, b.datagrams),
        gossip_bytes_per_node_s: per(a.gossip_bytes, b.gossip_bytes),
        sync_bytes_per_node_s: per(a.sync_bytes, b.sync_bytes),
        cpu_percent_per_node: None,
    }
}

/// True when every node is up and sees all N members alive or suspect (itself
/// included): O(N), unlike a pairwise check.
fn sim_joined(sim: &Sim) -> bool {
    let n = sim.len();
    (0..n).all(|i| sim.engine(i).is_some_and(|e| e.members().live_count() == n))
}

/// Runs the simulation in `step_us` steps until `cond` holds or `limit_us` passes;
/// returns the virtual time it took (µs), if it held.
fn sim_until(
    sim: &mut Sim,
    step_us: u64,
    limit_us: u64,
    mut cond: impl FnMut(&Sim) -> bool,
    mut show: impl FnMut(f64, &str),
) -> Option<u64> {
    let start = sim.now_us();
    loop {
        if cond(sim) {
            return Some(sim.now_us() - start);
        }
        let e = sim.now_us() - start;
        if e >= limit_us {
            return None;
        }
        show(
            e as f64 / limit_us as f64,
            &format!("virtual time {:.1} s", sim.now_us() as f64 / US as f64),
        );
        let next = sim.now_us() + step_us;
        sim.run_until(next);
    }
}

fn sim_row(p: &Plan, n: usize, progress: &Progress) -> Row {
    let wall = Instant::now();
    let mut notes = Vec::new();
    let rss_before = proc_status_mib("VmRSS");
    let join_window_us = 2 * US + n as u64 * 1_000;
    let mut sim = Sim::new(SimConfig {
        nodes: n,
        seed: p.seed,
        gossip: p.gossip.clone(),
        net: p.net.clone(),
        join_window_us,
        joined: p.warm,
    });
    if p.warm {
        notes.push("warm start: every node began with the full member table".into());
    }
    // Join: until every node sees all N.
    let join = if p.warm {
        None
    } else {
        sim_until(
            &mut sim,
            US / 2,
            join_window_us + 300 * US,
            sim_joined,
            |f, d| progress.show(n, "joining", f, d),
        )
    };
    if join.is_none() && !p.warm {
        notes.push("membership did not converge within 300 virtual s of the join window".into());
    }
    // Settle: until no node has anything left to gossip (join announcements spent),
    // then a little longer for the last member-list exchanges.
    let quiet = sim_until(
        &mut sim,
        US / 2,
        p.settle_us,
        |s| (0..n).all(|i| s.engine(i).is_none_or(|e| e.queue().is_empty())),
        |f, d| progress.show(n, "settling", f, d),
    );
    if quiet.is_none() {
        let (busy, items) = (0..n)
            .filter_map(|i| sim.engine(i).map(|e| e.queue().len()))
            .filter(|&l| l > 0)
            .fold((0, 0), |(b, t), l| (b + 1, t + l));
        notes.push(format!(
            "{busy} nodes still had {items} broadcasts queued {:.0} virtual s after joining (join announcements)",
            p.settle_us as f64 / US as f64
        ));
    }
    let settle_until = sim.now_us() + SETTLE.as_micros() as u64;
    sim.run_until(settle_until);
    let rss_joined = proc_status_mib("VmRSS");

    // Idle.
    progress.show(n, "idle", 0.0, "virtual");
    let a = sim_snap(&sim);
    let idle_until = sim.now_us() + (p.idle * US as f64) as u64;
    sim.run_until(idle_until);
    let b = sim_snap(&sim);
    let idle = sim_traffic(&a, &b, n);

    // Write load, on random nodes.
    let first_write = sim.writes().len();
    let t0 = sim.now_us() + 1_000;
    for k in 0..p.writes {
        let node = sim.random_live_node(n).unwrap_or(0);
        let at = t0 + (k as f64 * US as f64 / p.rate) as u64;
        sim.schedule_action(
            at,
            Action::Write {
                node,
                key: format!("bench/{k:06}"),
                value: Some(vec![0xab; 32]),
            },
        );
    }
    let before = sim_snap(&sim);
    let last_at = t0 + ((p.writes - 1) as f64 * US as f64 / p.rate) as u64;
    let total_us = last_at - sim.now_us();
    let mut last_shown = sim.now_us();
    while sim.now_us() < last_at {
        let next = (sim.now_us() + US / 2).min(last_at);
        sim.run_until(next);
        if sim.now_us() - last_shown >= US / 2 {
            let done = 1.0 - (last_at - sim.now_us()) as f64 / total_us.max(1) as f64;
            progress.show(n, "writing", done, "virtual");
            last_shown = sim.now_us();
        }
    }
    let drained = sim_until(
        &mut sim,
        US / 20,
        DRAIN_LIMIT.as_micros() as u64 * 4,
        |s| s.pending_writes() == 0,
        |f, d| progress.show(n, "draining", f, d),
    );
    let after = sim_snap(&sim);
    let load = sim_traffic(&before, &after, n);
    let ws = &sim.writes()[first_write..];
    let prop: Vec<f64> = ws
        .iter()
        .filter_map(|w| w.done_us.map(|d| (d - w.at_us) as f64 / 1000.0))
        .collect();
    let complete = prop.len();
    if drained.is_none() {
        notes.push(format!(
            "{} of {} writes had not reached every node 60 virtual s after the last write",
            ws.len() - complete,
            ws.len()
        ));
    }
    let copies = after.copies.saturating_sub(before.copies) as f64;
    let propagation = percentiles(prop);
    let measured_rounds_p99 = propagation
        .as_ref()
        .map(|x| x.p99_ms / p.gossip.gossip_interval_ms as f64);

    let (mut partition_heal_ms, mut detection) = (None, None);
    if p.faults {
        partition_heal_ms = sim_partition(p, n, &mut sim, progress, &mut notes);
        if p.crashes > 0 {
            detection = Some(sim_crash(n, p.crashes, &mut sim, progress, &mut notes));
        }
    }
    let rss = match (rss_before, rss_joined) {
        (Some(a), Some(b)) => Some((b - a).max(0.0) / n as f64),
        _ => None,
    };
    Row {
        nodes: n,
        join_ms: join.map(|us| us as f64 / 1000.0),
        idle,
        load,
        writes: p.writes,
        writes_everywhere: complete,
        propagation,
        copies_per_update: Some(copies / (p.writes as f64 * (n - 1) as f64)),
        theory_rounds: theory_rounds(n, p.gossip.fanout),
        theory_hops: theory_hops(
            n,
            p.gossip.fanout,
            p.gossip.tree_push && p.gossip.push_deltas,
        ),
        measured_rounds_p99,
        max_writes_per_s: None,
        detection,
        partition_heal_ms,
        rss_mib_per_node: rss,
        wall_s: wall.elapsed().as_secs_f64(),
        sim_events: Some(sim.stats().events),
        notes,
    }
}

/// Splits the cluster into halves for `p.partition` s with writes on both sides, heals,
/// and returns the time from the heal until every write is everywhere and every node
/// sees every node alive.
fn sim_partition(
    p: &Plan,
    n: usize,
    sim: &mut Sim,
    progress: &Progress,
    notes: &mut Vec<String>,
) -> Option<f64> {
    let start = sim.now_us() + US;
    let len = (p.partition * US as f64) as u64;
    let heal_at = start + len;
    let halves = vec![(0..n / 2).collect(), (n / 2..n).collect()];
    sim.schedule_action(start, Action::Partition(halves));
    sim.schedule_action(heal_at, Action::Heal);
    let writes = 20usize;
    for k in 0..writes {
        // Alternate sides, evenly through the partition.
        let node = if k % 2 == 0 {
            k / 2 % (n / 2).max(1)
        } else {
            n / 2 + k / 2 % (n - n / 2)
        };
        let at = start + len / 10 + (k as u64 * len * 8 / 10) / writes as u64;
        sim.schedule_action(
            at,
            Action::Write {
                node,
                key: format!("bench/partition/{k}"),
                value: Some(vec![0xef; 32]),
            },
        );
    }
    progress.show(n, "partition", 0.0, "virtual");
    sim.run_until(heal_at);
    let limit = 120 * US;
    let healed = sim_until(
        sim,
        US / 10,
        limit,
        |s| s.pending_writes() == 0 && sim_joined(s),
        |f, d| progress.show(n, "healing", f, d),
    );
    if healed.is_none() {
        notes.push(format!(
            "partition: not healed {} virtual s after the partition ended",
            limit / US
        ));
    }
    healed.map(|us| us as f64 / 1000.0)
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

/// Times (ms) of one crash: first suspicion, suspected everywhere, dead everywhere.
pub type CrashTimes = (Option<f64>, Option<f64>, Option<f64>);

/// Crashes the last `crashes` nodes one at a time (each after the previous one was
/// declared dead everywhere, or 60 virtual s) and measures how long the live nodes take
/// to suspect and to declare each dead.
fn sim_crash(
    n: usize,
    crashes: usize,
    sim: &mut Sim,
    progress: &Progress,
    notes: &mut Vec<String>,
) -> Detection {
    let limit = 60 * US;
    let mut d = Detection::default();
    let ms = |us: u64| us as f64 / 1000.0;
    for c in 0..crashes.min(n / 4) {
        let victim = n - 1 - c;
        let id = sim_id(victim);
        let at = sim.now_us() + US;
        sim.schedule_action(at, Action::Crash(victim));
        sim.run_until(at);
        let status = |s: &Sim, i: usize| {
            s.engine(i).map(|e| {
                e.members()
                    .get(&id)
                    .map_or(MemberStatus::Dead, |m| m.state.status)
            })
        };
        let (mut first, mut all) = (None, None);
        let dead = sim_until(
            sim,
            US / 100,
            limit,
            |s| {
                let now = s.now_us() - at;
                let live = (0..n).filter_map(|i| status(s, i));
                let (mut any_down, mut all_down, mut all_dead) = (false, true, true);
                for st in live {
                    let down = st != MemberStatus::Alive;
                    any_down |= down;
                    all_down &= down;
                    all_dead &= matches!(st, MemberStatus::Dead | MemberStatus::Left);
                }
                if any_down && first.is_none() {
                    first = Some(now);
                }
                if all_down && all.is_none() {
                    all = Some(now);
                }
                all_dead
            },
            |f, t| progress.show(n, &format!("crash {}/{crashes}, detecting", c + 1), f, t),
        );
        d.each.push((first.map(ms), all.map(ms), dead.map(ms)));
    }
    d.samples = d.each.len();
    let mean = |f: &dyn Fn(&CrashTimes) -> Option<f64>| {
        let v: Vec<f64> = d.each.iter().filter_map(f).collect();
        (v.len() == d.each.len() && !v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    d.first_ms = mean(&|x| x.0);
    d.all_ms = mean(&|x| x.1);
    d.dead_ms = mean(&|x| x.2);
    let missed = d.each.iter().filter(|x| x.2.is_none()).count();
    if missed > 0 {
        notes.push(format!(
            "failure detection: {missed} of {} crashed nodes were not declared dead everywhere within {} virtual s{}",
            d.samples,
            limit / US,
            if d.each.iter().all(|x| x.0.is_none()) {
                " (no node even suspected them: no failure detector ran)"
            } else {
                ""
            }
        ));
    }
    d
}

// ---------------------------------------------------------------------------------------
// Output: table, JSON, SVG.

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map(|x| format!("{x:.digits$}"))
        .unwrap_or_else(|| "n/a".into())
}

/// The results as a text table.
pub fn table(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "gossamer bench --mode {}: fanout {}, gossip {} ms, sync {} ms, retransmit x{}{}; {} writes at {}/s; idle window {} s; seed {}",
        if r.mode == Mode::Quic { "quic" } else { "sim" },
        r.settings.fanout,
        r.settings.gossip_interval_ms,
        r.settings.sync_interval_ms,
        r.settings.retransmit_mult,
        r.settings
            .probe_interval_ms
            .map(|p| format!(", probe {p} ms"))
            .unwrap_or_default(),
        r.writes,
        r.rate,
        r.idle_s,
        r.seed
    );
    let _ = writeln!(
        s,
        "machine: {} CPUs ({}), {} GiB",
        r.machine.cpus, r.machine.cpu_model, r.machine.memory_gib
    );
    let bytes = if r.mode == Mode::Quic {
        "UDP payload bytes"
    } else {
        "encoded message bytes"
    };
    let _ = writeln!(
        s,
        "traffic columns are {bytes} and datagrams sent per node per second\n"
    );
    let _ = writeln!(
        s,
        "{:>6} {:>7} | {:>8} {:>8} {:>8} | {:>7} {:>6} | {:>8} {:>7} | {:>6} {:>6} {:>6} | {:>6} {:>6} | {:>6}",
        "N", "join s", "p50 ms", "p99 ms", "max ms", "idle B", "idle d", "load B", "load d",
        "copies", "rounds", "theory", "cpu% i", "cpu% l", "MiB/n"
    );
    for row in &r.rows {
        let p = row.propagation.as_ref();
        let _ = writeln!(
            s,
            "{:>6} {:>7} | {:>8} {:>8} {:>8} | {:>7.0} {:>6.2} | {:>8.0} {:>7.2} | {:>6} {:>6} {:>6.1} | {:>6} {:>6} | {:>6}",
            row.nodes,
            opt(row.join_ms.map(|x| x / 1000.0), 1),
            opt(p.map(|x| x.p50_ms), 1),
            opt(p.map(|x| x.p99_ms), 1),
            opt(p.map(|x| x.max_ms), 1),
            row.idle.bytes_per_node_s,
            row.idle.datagrams_per_node_s,
            row.load.bytes_per_node_s,
            row.load.datagrams_per_node_s,
            opt(row.copies_per_update, 2),
            opt(row.measured_rounds_p99, 2),
            row.theory_rounds,
            opt(row.idle.cpu_percent_per_node, 2),
            opt(row.load.cpu_percent_per_node, 2),
            opt(row.rss_mib_per_node, 2),
        );
    }
    let _ = writeln!(
        s,
        "\ncolumns: join = until every node sees all N; p50/p99/max = write until the last node has it;\n\
         idle/load B, d = bytes, datagrams sent per node per s; copies = copies of each update received per node;\n\
         rounds = p99 / gossip interval; theory = push-gossip rounds log_(f+1) N + ln N / f;\n\
         cpu% i/l = process CPU per node, idle/under load (% of one core); MiB/n = resident memory per node."
    );
    if r.rows.iter().any(|x| x.detection.is_some()) {
        let theory = r
            .settings
            .probe_interval_ms
            .map(|p| format!("{:.0}", p as f64 * 1.582))
            .unwrap_or_else(|| "n/a".into());
        let _ = writeln!(
            s,
            "\nfaults (virtual time, ms): crash detection (mean of {} crashes) and heal of a {} s partition into halves",
            r.crashes,
            r.partition_s
        );
        let _ = writeln!(
            s,
            "{:>6} | {:>10} {:>10} {:>10} {:>12} | {:>10}",
            "N", "suspect 1", "suspect all", "dead all", "theory first", "heal"
        );
        for row in &r.rows {
            let d = row.detection.clone().unwrap_or_default();
            let _ = writeln!(
                s,
                "{:>6} | {:>10} {:>11} {:>10} {:>12} | {:>10}",
                row.nodes,
                opt(d.first_ms, 0),
                opt(d.all_ms, 0),
                opt(d.dead_ms, 0),
                theory,
                opt(row.partition_heal_ms, 0),
            );
        }
        let _ = writeln!(
            s,
            "suspect 1 = crash until the first node suspects it; suspect all = until every node sees it suspect or dead;\n\
             dead all = until every node declared it dead; theory first = SWIM's expected first detection,\n\
             e/(e-1) = 1.58 probe periods (plus the probe timeout before suspicion);\n\
             heal = partition end until every write made during it is everywhere and every node sees all N alive."
        );
    }
    if r.rows.iter().any(|x| x.max_writes_per_s.is_some()) {
        let _ = writeln!(s);
        for row in &r.rows {
            let _ = writeln!(
                s,
                "N={}: max sustained write rate {} writes/s",
                row.nodes,
                opt(row.max_writes_per_s, 0)
            );
        }
    }
    let notes: Vec<String> = r
        .rows
        .iter()
        .flat_map(|x| x.notes.iter().map(move |m| format!("N={}: {m}", x.nodes)))
        .collect();
    if !notes.is_empty() {
        let _ = writeln!(s, "\nnotes:");
        for m in notes {
            let _ = writeln!(s, "  {m}");
        }
    }
    s
}

/// One line of a chart.
struct Series {
    name: &'static str,
    color: &'static str,
    dashed: bool,
    points: Vec<(f64, f64)>,
}

fn nice_max(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if v <= m * mag {
            return m * mag;
        }
    }
    10.0 * mag
}

fn fmt_tick(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v >= 100.0 || v == v.round() {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// Draws one panel (axes, ticks, lines, legend) at `(x0, y0)` of size `w × h`.
fn panel(
    svg: &mut String,
    (x0, y0, w, h): (f64, f64, f64, f64),
    title: &str,
    y_label: &str,
    xs: &[f64],
    series: &[Series],
    log_x: bool,
) {
    let (l, r, t, b) = (60.0, 15.0, 30.0, 45.0);
    let (pw, ph) = (w - l - r, h - t - b);
    let (xmin, xmax) = (
        xs.iter().copied().fold(f64::INFINITY, f64::min),
        xs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    );
    let tx = |x: f64| {
        let (a, b, v) = if log_x {
            (xmin.ln(), xmax.ln(), x.ln())
        } else {
            (xmin, xmax, x)
        };
        let f = if b > a { (v - a) / (b - a) } else { 0.5 };
        x0 + l + f * pw
    };
    let ymax = nice_max(
        series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .fold(0.0, f64::max),
    );
    let ty = |y: f64| y0 + t + ph - (y / ymax) * ph;
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" font-size="14" font-weight="bold">{title}</text>"#,
        x0 + l,
        y0 + 18.0
    );
    let _ = writeln!(
        svg,
        r##"<rect x="{:.1}" y="{:.1}" width="{pw:.1}" height="{ph:.1}" fill="none" stroke="#888"/>"##,
        x0 + l,
        y0 + t
    );
    for i in 0..=5 {
        let v = ymax * i as f64 / 5.0;
        let y = ty(v);
        let _ = writeln!(
            svg,
            r##"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"##,
            x0 + l,
            x0 + l + pw,
            x0 + l - 5.0,
            y + 4.0,
            fmt_tick(v)
        );
    }
    for &x in xs {
        let px = tx(x);
        let _ = writeln!(
            svg,
            r##"<line x1="{px:.1}" y1="{:.1}" x2="{px:.1}" y2="{:.1}" stroke="#ddd"/><text x="{px:.1}" y="{:.1}" font-size="11" text-anchor="middle">{}</text>"##,
            y0 + t,
            y0 + t + ph,
            y0 + t + ph + 15.0,
            fmt_tick(x)
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle">nodes (N){}</text>"#,
        x0 + l + pw / 2.0,
        y0 + h - 8.0,
        if log_x { ", log scale" } else { "" }
    );
    let _ = writeln!(
        svg,
        r#"<text transform="translate({:.1},{:.1}) rotate(-90)" font-size="12" text-anchor="middle">{y_label}</text>"#,
        x0 + 15.0,
        y0 + t + ph / 2.0
    );
    for (k, s) in series.iter().enumerate() {
        if s.points.is_empty() {
            continue;
        }
        let pts: Vec<String> = s
            .points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", tx(x), ty(y)))
            .collect();
        let dash = if s.dashed {
            r#" stroke-dasharray="5,4""#
        } else {
            ""
        };
        let _ = writeln!(
            svg,
            r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"{dash}/>"#,
            pts.join(" "),
            s.color
        );
        for &(x, y) in &s.points {
            let _ = writeln!(
                svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{}"/>"#,
                tx(x),
                ty(y),
                s.color
            );
        }
        let ly = y0 + t + 14.0 + 16.0 * k as f64;
        let lx = x0 + l + 10.0;
        let _ = writeln!(
            svg,
            r#"<line x1="{lx:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{}" stroke-width="2"{dash}/><text x="{:.1}" y="{:.1}" font-size="11">{}</text>"#,
            ly - 4.0,
            lx + 20.0,
            ly - 4.0,
            s.color,
            lx + 25.0,
            ly,
            s.name
        );
    }
}

/// The results as an SVG chart: propagation time and traffic against N.
pub fn svg(r: &Report) -> String {
    let (w, h) = (1000.0, 380.0);
    let xs: Vec<f64> = r.rows.iter().map(|x| x.nodes as f64).collect();
    let log_x = xs.len() > 1 && xs.iter().copied().fold(0.0, f64::max) / xs[0] >= 20.0;
    let pick = |f: &dyn Fn(&Row) -> Option<f64>| -> Vec<(f64, f64)> {
        r.rows
            .iter()
            .filter_map(|x| f(x).map(|y| (x.nodes as f64, y)))
            .collect()
    };
    let prop = [
        Series {
            name: "p50",
            color: "#1f77b4",
            dashed: false,
            points: pick(&|x| x.propagation.as_ref().map(|p| p.p50_ms)),
        },
        Series {
            name: "p99",
            color: "#d62728",
            dashed: false,
            points: pick(&|x| x.propagation.as_ref().map(|p| p.p99_ms)),
        },
        Series {
            name: "max",
            color: "#7f7f7f",
            dashed: true,
            points: pick(&|x| x.propagation.as_ref().map(|p| p.max_ms)),
        },
    ];
    let traffic = [
        Series {
            name: "idle",
            color: "#2ca02c",
            dashed: false,
            points: pick(&|x| Some(x.idle.bytes_per_node_s)),
        },
        Series {
            name: "under write load",
            color: "#ff7f0e",
            dashed: false,
            points: pick(&|x| Some(x.load.bytes_per_node_s)),
        },
    ];
    let mode = if r.mode == Mode::Quic {
        "real QUIC on 127.0.0.1"
    } else {
        "simulator"
    };
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r##"<text x="{:.0}" y="{:.0}" font-size="11" fill="#555" text-anchor="end">gossamer bench, {mode}: fanout {}, gossip {} ms, sync {} ms; {} writes at {}/s</text>"##,
        w - 10.0,
        h - 6.0,
        r.settings.fanout,
        r.settings.gossip_interval_ms,
        r.settings.sync_interval_ms,
        r.writes,
        r.rate
    );
    panel(
        &mut s,
        (0.0, 0.0, w / 2.0, h - 15.0),
        "Time for a write to reach every node",
        "ms",
        &xs,
        &prop,
        log_x,
    );
    let traffic_label = if r.mode == Mode::Quic {
        "UDP bytes sent per node per s"
    } else {
        "bytes sent per node per s"
    };
    panel(
        &mut s,
        (w / 2.0, 0.0, w / 2.0, h - 15.0),
        "Traffic per node",
        traffic_label,
        &xs,
        &traffic,
        log_x,
    );
    s.push_str("</svg>\n");
    s
}

fn write_file(path: &Path, text: &str, what: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {what} to {}", path.display()))
}

/// Runs `gossamer bench`; returns the exit code (0: every row measured).
pub async fn run(args: BenchArgs) -> anyhow::Result<i32> {
    let p = plan(&args)?;
    let progress = Progress::new(args.quiet);
    let mut report = Report {
        mode: p.mode,
        seed: p.seed,
        version: env!("CARGO_PKG_VERSION").to_string(),
        machine: machine(),
        settings: settings(&p.gossip),
        writes: p.writes,
        rate: p.rate,
        idle_s: p.idle,
        partition_s: p.partition,
        crashes: p.crashes,
        // The program as `gossamer`, not the path it ran from (a copied binary).
        command: std::iter::once("gossamer".to_string())
            .chain(std::env::args().skip(1))
            .collect::<Vec<_>>()
            .join(" "),
        rows: Vec::new(),
    };
    let mut failed = false;
    for &n in &p.nodes {
        let row = match p.mode {
            Mode::Quic => match quic_row(&p, n, &progress).await {
                Ok(r) => r,
                Err(e) => {
                    progress.clear();
                    eprintln!("error: N={n}: {e:#}");
                    failed = true;
                    continue;
                }
            },
            Mode::Sim => {
                // The simulator is synchronous and CPU-bound: keep it off the runtime.
                let (pp, pr) = (p.clone(), Progress::new(args.quiet));
                tokio::task::spawn_blocking(move || sim_row(&pp, n, &pr))
                    .await
                    .context("simulator task")?
            }
        };
        progress.clear();
        if !args.quiet {
            let p50 = row.propagation.as_ref().map(|x| x.p50_ms);
            eprintln!(
                "bench: N={n} done in {:.1} s (p50 {} ms)",
                row.wall_s,
                opt(p50, 1)
            );
        }
        report.rows.push(row);
    }
    progress.clear();
    print!("{}", table(&report));
    if let Some(path) = &args.json {
        write_file(path, &serde_json::to_string_pretty(&report)?, "JSON")?;
        println!("JSON written to {}", path.display());
    }
    if let Some(path) = &args.plot {
        write_file(path, &svg(&report), "the chart")?;
        println!("chart written to {}", path.display());
    }
    Ok(if failed || report.rows.is_empty() {
        1
    } else {
        0
    })
}
