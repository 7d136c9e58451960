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

mod chart;
mod faults;
mod host;
mod plan;
mod progress;
mod quic;
mod report;
mod sim;
mod table;
mod throughput;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use serde::Serialize;

use chart::svg;
use host::machine;
use plan::{plan, settings};
use progress::Progress;
use quic::quic_row;
use report::Report;
use sim::sim_row;
use table::{opt, table};

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

/// Microseconds per second (the simulator's clock counts µs).
const US: u64 = 1_000_000;

/// Time the cluster is left alone after joining, before the idle window, so that join
/// gossip (membership broadcasts, member-list syncs) has died down.
const SETTLE: Duration = Duration::from_secs(5);
/// Longest wait for writes to reach every node after the last one was made.
const DRAIN_LIMIT: Duration = Duration::from_secs(15);

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
