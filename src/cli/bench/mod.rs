//! `gossamer bench`: cluster benchmarks, one table row per cluster size.
//!
//! Four modes measure the same figures:
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

mod args;
mod chart;
mod cluster;
mod host;
mod plan;
mod processes;
mod progress;
mod quic;
mod remote_load;
mod report;
mod scrape;
mod signal;
mod sim;
mod table;
mod throughput;
mod tracker;

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;

pub use args::BenchArgs;
use args::Mode;
use chart::svg;
use cluster::cluster_row;
use host::machine;
use plan::{plan, settings};
use processes::processes_row;
use progress::Progress;
use quic::quic_row;
use report::Report;
use signal::Interrupted;
use sim::sim_row;
use table::{opt, table};

fn write_file(path: &Path, text: &str, what: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {what} to {}", path.display()))
}

/// Runs `gossamer bench`; returns the exit code (0: every row measured).
pub async fn run(args: BenchArgs) -> anyhow::Result<i32> {
    let p = plan(&args)?;
    // Shared with the simulator's thread, so that one display (one bar) serves the run.
    let progress = Arc::new(Progress::new(args.quiet));
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
        let measured = match p.mode {
            Mode::Quic => quic_row(&p, n, &progress).await,
            Mode::Processes => processes_row(&p, n, &progress).await,
            Mode::Cluster => cluster_row(&p, &progress).await,
            Mode::Sim => Ok({
                // The simulator is synchronous and CPU-bound: keep it off the runtime.
                let (pp, pr) = (p.clone(), progress.clone());
                tokio::task::spawn_blocking(move || sim_row(&pp, n, &pr))
                    .await
                    .context("simulator task")?
            }),
        };
        let row = match measured {
            Ok(r) => r,
            // An interrupted run ends, and so does a cluster that cannot be measured
            // (its only row); the rows measured before are not printed.
            Err(e) if e.is::<Interrupted>() || p.mode == Mode::Cluster => return Err(e),
            Err(e) => {
                progress.clear();
                eprintln!("error: N={n}: {e:#}");
                failed = true;
                continue;
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
        write_file(path, &svg(&report)?, "the chart")?;
        println!("chart written to {}", path.display());
    }
    Ok(if failed || report.rows.is_empty() {
        1
    } else {
        0
    })
}
