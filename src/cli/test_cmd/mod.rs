//! `gossamer test`: an operator's fault tool. Starts a local cluster of real QUIC nodes on
//! 127.0.0.1, each on a [`ChaosSocket`], runs a write workload under the chosen faults
//! (loss, latency, jitter, duplication, a partition schedule), stops the faults, and
//! reports whether and how fast the cluster joined, propagated writes, detected the
//! partition, healed and converged.
//!
//! Times of the partition schedule count from the start of the workload, which begins
//! once every node sees every node alive. Faults (except the partition, which follows its
//! own schedule) last from the first node's start to the end of the run.

mod args;
mod drive;
pub(crate) mod partition;
mod plan;
mod print;
mod report;
mod tracker;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;
use gossamer::chaos::ChaosSocket;
use gossamer::local::LocalCluster;

pub use args::TestArgs;
use drive::drive;
use plan::{gossip_config, plan};
use print::print_report;
use tracker::{watch_events, Tracker};

/// Runs `gossamer test`; returns the exit code (0 converged, 1 not).
pub async fn run(args: TestArgs) -> anyhow::Result<i32> {
    let p = plan(&args)?;
    let n = p.nodes;
    let say = |s: String| {
        if !p.json {
            println!("{s}");
        }
    };
    say(format!(
        "gossamer test: {n} nodes on 127.0.0.1, real QUIC through chaos sockets (seed {})",
        p.seed
    ));

    // Nodes on chaos sockets, faults on from the start.
    let mut c = LocalCluster::start(0, n, gossip_config())
        .await
        .context("generating certificates")?;
    let t_start = Instant::now();
    let mut controls = Vec::with_capacity(n);
    let tracker = Arc::new(Mutex::new(Tracker::new(n, p.total_writes)));
    let mut watchers = tokio::task::JoinSet::new();
    for i in 1..=n {
        let (sock, ctl) = ChaosSocket::bind(
            SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            p.seed.wrapping_add(i as u64),
        )
        .context("binding a UDP socket on 127.0.0.1")?;
        ctl.set_faults(p.faults);
        let cfg = c.config(i, c.seed_addrs());
        let node = c
            .start_with_socket(cfg, sock)
            .await
            .with_context(|| format!("starting node n{i}"))?;
        watchers.spawn(watch_events(node, i - 1, tracker.clone()));
        controls.push(ctl);
    }
    let nodes = c.nodes.clone();

    let outcome = drive(&p, &nodes, &controls, tracker.clone(), t_start).await;

    watchers.abort_all();
    let mut closing = tokio::task::JoinSet::new();
    for node in nodes {
        closing.spawn(async move { node.shutdown().await });
    }
    while closing.join_next().await.is_some() {}
    drop(c);

    let report = outcome;
    if p.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    match &report.failure {
        None => Ok(0),
        Some(why) => {
            eprintln!("error: {why}");
            Ok(1)
        }
    }
}
