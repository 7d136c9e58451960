//! `gossamer demo`: the embedded default. A local cluster with generated certificates
//! that shows joining, replication, a conflict and a delete, with timings.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use gossamer::core::Config;
use gossamer::local::{wait_for, LocalCluster};
use gossamer::node::Durability;

/// Flags of `gossamer demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Number of nodes (2 to 50).
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// Keep the cluster running after the demo, with an admin API per node, until
    /// Ctrl-C or SIGTERM: try `gossamer kv set`, `members`, `status` against it
    #[arg(long)]
    pub keep: bool,
}

const DEADLINE: Duration = Duration::from_secs(30);

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// Runs the demo; fails if the cluster does not converge within the deadline.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    if !(2..=50).contains(&args.nodes) {
        return Err(super::UsageError(format!(
            "--nodes {}: the demo runs 2 to 50 nodes",
            args.nodes
        ))
        .into());
    }
    let n = args.nodes;
    println!("gossamer demo: {n} nodes on 127.0.0.1, each with its own certificate\n");
    let t0 = Instant::now();
    let gossip = Config {
        sync_interval_ms: 1_000,
        seed_backoff_floor_ms: 200,
        ..Config::default()
    };
    // Like a real fleet, each node keeps its state in a data directory of its own.
    let c = LocalCluster::start_durable(n, 0, gossip, Some(Durability::Sync), args.keep)
        .await
        .context("starting the local cluster")?;
    println!(
        "  generated a CA and {n} node certificates in {}, and a data directory per node (deleted on exit)",
        c.certs_dir().display()
    );
    for node in &c.nodes {
        println!(
            "  started {:<4} QUIC {}",
            node.id().to_string(),
            node.advertise_addr()
        );
    }
    let (ok, joined) = wait_for(DEADLINE, || c.fully_joined()).await;
    if !ok {
        bail!("the nodes did not all see each other within {DEADLINE:?}");
    }
    println!(
        "\n  every node sees {n} members alive        {}",
        ms(joined)
    );

    // One write per node, on different nodes at once. Timed from the first write: each
    // `set` returns only once durable, and replication runs meanwhile.
    let writes = Instant::now();
    for (i, node) in c.nodes.iter().enumerate() {
        node.set(
            &format!("demo/greeting-{}", i + 1),
            format!("hello from {}", node.id()).into_bytes(),
        )?;
    }
    let (ok, _) = wait_for(DEADLINE, || {
        c.nodes.iter().enumerate().all(|(i, w)| {
            c.agree_on(
                &format!("demo/greeting-{}", i + 1),
                Some(format!("hello from {}", w.id()).as_bytes()),
            )
        })
    })
    .await;
    if !ok {
        bail!("writes did not reach every node within {DEADLINE:?}");
    }
    println!(
        "  {n} writes on {n} nodes reached every node   {}",
        ms(writes.elapsed())
    );

    // Concurrent writes to one key: every node must pick the same winner.
    let writes = Instant::now();
    for node in &c.nodes {
        node.set("demo/leader", node.id().to_string().into_bytes())?;
    }
    let (ok, _) = wait_for(DEADLINE, || {
        let first = c.nodes[0].get("demo/leader");
        first.as_ref().is_some_and(|f| f.version.len() == n)
            && c.nodes.iter().all(|x| x.get("demo/leader") == first)
    })
    .await;
    if !ok {
        bail!("concurrent writes did not resolve identically within {DEADLINE:?}");
    }
    let t = writes.elapsed();
    let winner = c.nodes[0].get("demo/leader").context("winner vanished")?;
    println!(
        "  {n} concurrent writes to one key resolved  {}  (winner: {}, by hybrid clock)",
        ms(t),
        String::from_utf8_lossy(&winner.value)
    );

    // A delete.
    let writes = Instant::now();
    c.nodes[n - 1].delete("demo/greeting-1")?;
    let (ok, _) = wait_for(DEADLINE, || c.agree_on("demo/greeting-1", None)).await;
    if !ok {
        bail!("a delete did not reach every node within {DEADLINE:?}");
    }
    println!(
        "  a delete reached every node              {}",
        ms(writes.elapsed())
    );

    println!("\n  what {} holds now:", c.nodes[0].id());
    for e in c.nodes[0].list("demo/") {
        println!("    {} = {}", e.key, String::from_utf8_lossy(&e.value));
    }
    let dgrams: u64 = c
        .nodes
        .iter()
        .map(|x| {
            x.runtime_stats()
                .datagrams_sent
                .load(std::sync::atomic::Ordering::Relaxed)
        })
        .sum();
    if args.keep {
        keep_running(&c).await?;
    }
    println!("\n  {dgrams} gossip datagrams in all; leaving the cluster gracefully");
    let mut leaving = tokio::task::JoinSet::new();
    for node in c.nodes.clone() {
        leaving.spawn(async move { node.leave().await });
    }
    while leaving.join_next().await.is_some() {}
    println!("done in {}", ms(t0.elapsed()));
    Ok(())
}

/// Prints how to reach the running cluster, then waits for Ctrl-C or SIGTERM.
async fn keep_running(c: &LocalCluster) -> anyhow::Result<()> {
    // Listen for SIGTERM before saying how to stop us, so no signal falls between.
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("listening for SIGTERM")?;
    println!("\n  the cluster keeps running; each node's admin API:");
    for node in &c.nodes {
        if let Some(addr) = c.admin_addr(node) {
            println!("    {:<4} admin {addr}", node.id().to_string());
        }
    }
    let first = c.nodes.iter().find_map(|x| c.admin_addr(x));
    let last = c.nodes.iter().rev().find_map(|x| c.admin_addr(x));
    if let (Some(a), Some(b)) = (first, last) {
        println!("\n  try, from another terminal:");
        println!("    gossamer kv set --admin {a} demo/hello world");
        println!("    gossamer kv get --admin {b} demo/hello");
        println!("    gossamer members --admin {b}");
        println!("    gossamer status --admin {a}");
    }
    println!("\n  Ctrl-C leaves the cluster and deletes its folders");
    // Whoever reads our output through a pipe must see the addresses now.
    use std::io::Write;
    let _ = std::io::stdout().flush();
    #[cfg(unix)]
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    Ok(())
}
