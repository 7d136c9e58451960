//! `gossamer bench-durable`: what durability costs. Write throughput into a local
//! cluster of real QUIC nodes with `sync`, `relaxed` or no data directory, the
//! group-commit factor (writes per commit, fsyncs per write), and with `--startup-keys`
//! the startup time and disk bytes per key of a large store.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, ValueEnum};
use gossamer::core::Config;
use gossamer::local::LocalCluster;
use gossamer::node::{Durability, Node, NodeConfig};

use super::UsageError;

/// Durability of the nodes measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// A data directory; a write returns after its commit.
    Sync,
    /// A data directory; commits every `--interval-ms`.
    Relaxed,
    /// No data directory (state in memory only).
    None,
}

/// Flags of `gossamer bench-durable`.
#[derive(Debug, Clone, Args)]
pub struct BenchDurableArgs {
    /// Nodes in the cluster (1 to 20); writes go to every node in turn.
    #[arg(long, default_value_t = 1)]
    pub nodes: usize,
    /// Durability of every node.
    #[arg(long, value_enum, default_value_t = Mode::Sync)]
    pub durability: Mode,
    /// Relaxed durability: time between commits (ms).
    #[arg(long, default_value_t = 100)]
    pub interval_ms: u64,
    /// Threads writing at once (each waits for its write before the next).
    #[arg(long, default_value_t = 16)]
    pub writers: usize,
    /// Writes in all (at most 1,000,000).
    #[arg(long, default_value_t = 20_000)]
    pub writes: usize,
    /// Value size (bytes).
    #[arg(long, default_value_t = 100)]
    pub value_size: usize,
    /// Nodes neither sign their writes nor verify others' (`security.signed_writes =
    /// false`): what signing costs.
    #[arg(long)]
    pub unsigned: bool,
    /// Every 100 ms of the throughput run, print to stderr the fewest and most keys a
    /// node holds, the process's CPU time, and the entries anti-entropy applied and the
    /// grafts sent so far (all nodes): where a burst's time goes.
    #[arg(long)]
    pub timeline: bool,
    /// Instead of the throughput run: fill one node's store with this many keys
    /// (relaxed, 1 s commits), stop it, and measure its restart and its file size.
    #[arg(long)]
    pub startup_keys: Option<usize>,
}

fn durability(m: Mode) -> Option<Durability> {
    match m {
        Mode::Sync => Some(Durability::Sync),
        Mode::Relaxed => Some(Durability::Relaxed),
        Mode::None => None,
    }
}

/// Writes `total` keys through `nodes` from `writers` threads; returns the elapsed time
/// and the writes that succeeded.
fn write_load(
    nodes: &[Node],
    writers: usize,
    total: usize,
    value_size: usize,
) -> (Duration, usize) {
    let next = Arc::new(AtomicUsize::new(0));
    let ok = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..writers.max(1) {
            let (next, ok) = (next.clone(), ok.clone());
            s.spawn(move || loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= total {
                    break;
                }
                let key = format!("bench/{k:08}");
                if nodes[k % nodes.len()]
                    .set(&key, vec![0x5a; value_size])
                    .is_ok()
                {
                    ok.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    (start.elapsed(), ok.load(Ordering::Relaxed))
}

/// Node `n<i>` of `c`, with a data directory of its own when `d` is set.
fn node_config(c: &LocalCluster, i: usize, d: Option<Durability>, interval_ms: u64) -> NodeConfig {
    let mut cfg = c.config(i, c.seed_addrs());
    if let Some(d) = d {
        cfg.data_dir = Some(c.certs_dir().join(format!("data-n{i}")));
        cfg.durability = d;
        cfg.durability_interval_ms = interval_ms;
    }
    cfg
}

fn gossip() -> Config {
    Config {
        sync_interval_ms: 1_000,
        seed_backoff_floor_ms: 200,
        ..Config::default()
    }
}

/// Runs the benchmark and prints one Markdown row.
pub async fn run(a: BenchDurableArgs) -> anyhow::Result<i32> {
    if !(1..=20).contains(&a.nodes) {
        return Err(UsageError(format!("--nodes {}: use 1 to 20", a.nodes)).into());
    }
    if a.writes == 0 || a.writes > 1_000_000 {
        return Err(UsageError(format!("--writes {}: use 1 to 1000000", a.writes)).into());
    }
    if let Some(n) = a.startup_keys {
        return startup(n, a.value_size).await;
    }
    let mut c = LocalCluster::start(0, a.nodes, gossip())
        .await
        .context("making certificates")?;
    for i in 1..=a.nodes {
        let mut cfg = node_config(&c, i, durability(a.durability), a.interval_ms);
        cfg.security.signed_writes = !a.unsigned;
        c.start_with(cfg).await.context("starting a node")?;
    }
    let (ok, _) = gossamer::local::wait_for(Duration::from_secs(30), || c.fully_joined()).await;
    if !ok {
        anyhow::bail!("the nodes did not join within 30 s");
    }
    // Signed writes: measure the steady state, not the start-up moment when a writer's
    // certificates have not reached every node yet (its writes are refused, then
    // fetched again by anti-entropy).
    let (ok, _) = gossamer::local::wait_for(Duration::from_secs(30), || c.writers_known()).await;
    if !ok {
        anyhow::bail!("the nodes did not learn each other's certificates within 30 s");
    }
    let nodes = c.nodes.clone();
    let (writers, writes, size) = (a.writers, a.writes, a.value_size);
    let start = Instant::now();
    let timeline = a
        .timeline
        .then(|| tokio::spawn(print_timeline(c.nodes.clone(), start)));
    let (elapsed, done) =
        tokio::task::spawn_blocking(move || write_load(&nodes, writers, writes, size)).await?;
    let (mut commits, mut fsyncs, mut acked) = (0u64, 0u64, 0u64);
    for n in &c.nodes {
        if let Some(s) = n.persist_stats() {
            commits += s.commits.load(Ordering::Relaxed);
            fsyncs += s.fsyncs.load(Ordering::Relaxed);
            acked += s.writes_acked.load(Ordering::Relaxed);
        }
    }
    // Until every write is on every node (bounded: a stuck cluster shows as "-").
    let all = |n: &Node| n.status().keys >= done;
    let (everywhere, _) =
        gossamer::local::wait_for(Duration::from_secs(120), || c.nodes.iter().all(all)).await;
    let everywhere_s = everywhere.then(|| start.elapsed().as_secs_f64());
    if let Some(t) = timeline {
        t.abort();
    }
    let rate = done as f64 / elapsed.as_secs_f64();
    println!("| nodes | durability | signed | writers | writes ok | seconds | writes/s | everywhere after s | writes/s everywhere | commits (all nodes) | acked writes per commit (all nodes) | fsyncs per write (all nodes) |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mode = match a.durability {
        Mode::Sync => "sync".to_string(),
        Mode::Relaxed => format!("relaxed {} ms", a.interval_ms),
        Mode::None => "none".to_string(),
    };
    let per = |x: f64, y: f64| {
        if y > 0.0 {
            format!("{:.2}", x / y)
        } else {
            "-".into()
        }
    };
    let (ev_s, ev_rate) = match everywhere_s {
        Some(t) => (format!("{t:.2}"), format!("{:.0}", done as f64 / t)),
        None => ("-".into(), "-".into()),
    };
    println!(
        "| {} | {mode} | {} | {} | {done} | {:.2} | {rate:.0} | {ev_s} | {ev_rate} | {commits} | {} | {} |",
        a.nodes,
        if a.unsigned { "no" } else { "yes" },
        a.writers,
        elapsed.as_secs_f64(),
        per(acked as f64, commits as f64),
        per(fsyncs as f64, done as f64),
    );
    print_paths(&c.nodes);
    for n in &c.nodes {
        n.shutdown().await;
    }
    Ok(0)
}

/// `--timeline`: one line every 100 ms until aborted (or for at most 120 s).
async fn print_timeline(nodes: Vec<Node>, start: Instant) {
    eprintln!("ms\tfewest keys\tmost keys\tcpu ms\tanti-entropy applied\tgrafts sent");
    for _ in 0..1_200 {
        let keys = nodes.iter().map(|n| n.status().keys);
        let (fewest, most) = keys.fold((usize::MAX, 0), |(lo, hi), k| (lo.min(k), hi.max(k)));
        let (mut synced, mut grafts) = (0, 0);
        for n in &nodes {
            let e = n.engine_stats();
            synced += e.sync_entries_applied;
            grafts += e.grafts_sent;
        }
        eprintln!(
            "{}\t{fewest}\t{most}\t{}\t{synced}\t{grafts}",
            start.elapsed().as_millis(),
            cpu_ms()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// CPU time (user and system) this process has used, in ms.
fn cpu_ms() -> u64 {
    #[cfg(unix)]
    {
        // SAFETY: getrusage only writes the struct it is given.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } == 0 {
            let ms = |t: libc::timeval| t.tv_sec as u64 * 1_000 + t.tv_usec as u64 / 1_000;
            return ms(u.ru_utime) + ms(u.ru_stime);
        }
    }
    0
}

/// How the writes travelled, summed over the nodes: by the tree, by repair (grafts and
/// anti-entropy), and what the limits held back or dropped.
fn print_paths(nodes: &[Node]) {
    let (mut tree, mut grafts, mut synced, mut limited, mut dropped) = (0, 0, 0, 0, 0);
    let (mut refused, mut repair_rounds, mut suspicions, mut received) = (0, 0, 0, 0);
    let (mut sent, mut bytes, mut lost, mut sync_bytes) = (0, 0, 0, 0);
    let mut reliable_lost = 0;
    for n in nodes {
        let e = n.engine_stats();
        tree += e.tree_sent;
        grafts += e.grafts_sent;
        repair_rounds += e.repair_rounds;
        suspicions += e.suspicions;
        synced += e.sync_entries_applied;
        limited += e.sends_limited;
        dropped += e.deferred_dropped + e.inbound_dropped + e.items_invalid;
        let r = n.writes_refused();
        refused += r.unsigned + r.unknown_writer + r.bad_signature + r.outside_grant + r.revoked;
        let r = n.runtime_stats();
        sent += r.datagrams_sent.load(Ordering::Relaxed);
        received += r.datagrams_received.load(Ordering::Relaxed);
        bytes += r.datagram_bytes_sent.load(Ordering::Relaxed);
        lost += r.datagrams_dropped.load(Ordering::Relaxed);
        reliable_lost += r.reliable_dropped.load(Ordering::Relaxed);
        sync_bytes += r.sync_bytes_sent.load(Ordering::Relaxed);
    }
    println!();
    println!("| tree copies sent | datagrams sent | datagrams received | datagram bytes sent | datagrams dropped | reliable dropped | grafts sent | repair rounds | entries applied by anti-entropy | anti-entropy bytes sent | sends held by the bucket | items dropped by the engine | writes refused | suspicions |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    println!("| {tree} | {sent} | {received} | {bytes} | {lost} | {reliable_lost} | {grafts} | {repair_rounds} | {synced} | {sync_bytes} | {limited} | {dropped} | {refused} | {suspicions} |");
}

/// Fills one node's store with `keys` keys, stops it, and restarts it: the restart
/// time (open + load of the whole store + first commit) and the file's bytes per key.
async fn startup(keys: usize, value_size: usize) -> anyhow::Result<i32> {
    let mut c = LocalCluster::start(0, 1, gossip())
        .await
        .context("making certificates")?;
    let mut cfg = node_config(&c, 1, Some(Durability::Relaxed), 1_000);
    let node = c
        .start_with(cfg.clone())
        .await
        .context("starting the node")?;
    let n = node.clone();
    let fill = Instant::now();
    let (_, done) =
        tokio::task::spawn_blocking(move || write_load(&[n], 4, keys, value_size)).await?;
    let fill = fill.elapsed();
    node.shutdown().await;
    drop(node);
    c.nodes.clear();
    let dir = cfg.data_dir.clone().context("data dir")?;
    let file = dir.join(gossamer::node::persist::STORE_FILE);
    let bytes = std::fs::metadata(&file)
        .with_context(|| format!("reading {}", file.display()))?
        .len();
    cfg.durability = Durability::Sync;
    let t = Instant::now();
    let again = Node::start(cfg).await.context("restarting")?;
    let startup = t.elapsed();
    let held = again.status().keys;
    again.shutdown().await;
    println!("| keys | value bytes | fill (relaxed, 4 writers) s | store file MB | bytes per key | restart s | keys after restart |");
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {done} | {value_size} | {:.1} | {:.1} | {:.0} | {:.2} | {held} |",
        fill.as_secs_f64(),
        bytes as f64 / 1e6,
        bytes as f64 / done.max(1) as f64,
        startup.as_secs_f64(),
    );
    Ok(if held == done { 0 } else { 1 })
}
