//! `--cluster`: a running cluster measured only through its nodes' admin APIs (the
//! processes mode starts its nodes, then measures them the same way). Traffic comes
//! from each node's `/metrics`, arrivals from each node's watch stream; the writes go
//! under a prefix of the run's own, deleted at the end.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use gossamer::admin::client::{AdminClient, ClientError};
use tokio::task::JoinSet;

use super::host::{cpu_seconds_of, proc_status_mib_of};
use super::plan::{steady, Plan, DRAIN_LIMIT, SETTLE_LIMIT};
use super::progress::{sleep_showing, wait_until, Progress};
use super::remote_load::{follow, open_watches, RemoteSteps, Writer};
use super::report::{percentiles, Load, Row};
use super::scrape::{self, grew_all, NodeSnap};
use super::signal::{interrupted, Interrupted};
use super::throughput::max_rate;
use super::tracker::{lock, Tracker};

/// One node under test: its admin API, its id, and its process if it runs here.
pub(super) struct Target {
    /// Its admin API.
    pub(super) client: AdminClient,
    /// Its node id (from `/v1/status`).
    pub(super) id: String,
    /// Its process id, when the bench started it (CPU time and memory are then read).
    pub(super) pid: Option<u32>,
}

/// A failed request to the admin API at `addr` for `what`, as the bench says it: the
/// address first, and for a refused connection no hint at `--admin`, a flag the bench
/// does not have.
fn said(addr: &str, what: &str, e: ClientError) -> anyhow::Error {
    match e {
        ClientError::Connect { source, .. } => anyhow::anyhow!(
            "admin API {addr}: {what}: cannot connect: {source} (is the node running, and is this its admin address?)"
        ),
        e => anyhow::anyhow!("admin API {addr}: {what}: {e}"),
    }
}

/// Asks every address for its status: each must answer as a node, all of one cluster,
/// no two the same node. Fails naming the address that did not.
pub(super) async fn connect(clients: &[AdminClient]) -> anyhow::Result<Vec<Target>> {
    let mut set = JoinSet::new();
    for (i, c) in clients.iter().enumerate() {
        let c = c.clone();
        set.spawn(async move {
            let st = c.status().await;
            (i, c, st)
        });
    }
    let mut found: Vec<Option<(Target, String)>> = (0..clients.len()).map(|_| None).collect();
    while let Some(joined) = set.join_next().await {
        let (i, client, st) = joined.context("status task")?;
        let addr = client.addr().to_string();
        // A body that is not a node's status fails to decode here.
        let st = st.map_err(|e| said(&addr, "status", e))?;
        let (id, cluster) = (st.node_id.to_string(), st.cluster);
        found[i] = Some((
            Target {
                client,
                id,
                pid: None,
            },
            cluster,
        ));
    }
    let found: Vec<(Target, String)> = found.into_iter().flatten().collect();
    for (k, (t, cluster)) in found.iter().enumerate() {
        let (first, c0) = (&found[0].0, &found[0].1);
        if cluster != c0 {
            bail!(
                "admin API {} is node {} of cluster {cluster:?}, but {} is of cluster {c0:?}",
                t.client.addr(),
                t.id,
                first.client.addr()
            );
        }
        if let Some((other, _)) = found[..k].iter().find(|(o, _)| o.id == t.id) {
            bail!(
                "admin APIs {} and {} are the same node {}",
                other.client.addr(),
                t.client.addr(),
                t.id
            );
        }
    }
    Ok(found.into_iter().map(|(t, _)| t).collect())
}

/// Reads every node's counters at once; fails naming the node that did not answer.
async fn snapshot(nodes: &[Target]) -> anyhow::Result<Vec<NodeSnap>> {
    let mut set = JoinSet::new();
    for (i, t) in nodes.iter().enumerate() {
        let (c, pid) = (t.client.clone(), t.pid);
        set.spawn(async move {
            let text = c.metrics().await;
            let at = Instant::now();
            let cpu = pid.and_then(|p| cpu_seconds_of(&p.to_string()));
            let snap = text
                .map_err(|e| said(c.addr(), "metrics", e))
                .and_then(|t| {
                    NodeSnap::parse(&t, at, cpu)
                        .map_err(|e| anyhow::anyhow!("admin API {}: {e}", c.addr()))
                });
            (i, snap)
        });
    }
    let mut out: Vec<Option<NodeSnap>> = vec![None; nodes.len()];
    while let Some(joined) = set.join_next().await {
        let (i, s) = joined.context("metrics task")?;
        out[i] = Some(s?);
    }
    Ok(out.into_iter().flatten().collect())
}

/// Per node: members it sees alive among `ids`, and the fraction of its other live
/// members it holds a connection to (an RTT).
async fn views(nodes: &[Target]) -> anyhow::Result<Vec<(usize, f64)>> {
    let ids: Vec<String> = nodes.iter().map(|t| t.id.clone()).collect();
    let mut set = JoinSet::new();
    for (i, t) in nodes.iter().enumerate() {
        let (c, ids) = (t.client.clone(), ids.clone());
        set.spawn(async move {
            let m = c.members().await;
            let view = m.map(|m| {
                let alive = |x: &&gossamer::node::MemberView| x.status == "alive";
                let seen = ids
                    .iter()
                    .filter(|id| m.iter().filter(alive).any(|x| x.id.as_str() == id.as_str()))
                    .count();
                let others: Vec<_> = m.iter().filter(alive).filter(|x| !x.is_self).collect();
                let rtt = others.iter().filter(|x| x.rtt_ms.is_some()).count();
                (seen, rtt as f64 / others.len().max(1) as f64)
            });
            (i, view.map_err(|e| said(c.addr(), "members", e)))
        });
    }
    let mut out = vec![(0, 0.0); nodes.len()];
    while let Some(joined) = set.join_next().await {
        let (i, v) = joined.context("members task")?;
        out[i] = v?;
    }
    Ok(out)
}

/// Whether every node sees every node of `nodes` alive (errors count as not yet).
pub(super) async fn all_see_all(nodes: &[Target]) -> bool {
    views(nodes)
        .await
        .is_ok_and(|v| v.iter().all(|(seen, _)| *seen == nodes.len()))
}

/// A prefix no other run uses: `bench/<16 hex digits>/` from a randomly keyed hash.
fn run_prefix() -> String {
    let r = RandomState::new().hash_one((std::process::id(), Instant::now()));
    format!("bench/{r:016x}/")
}

/// `--cluster`: one row for the cluster behind `p.cluster`.
pub(super) async fn cluster_row(p: &Plan, progress: &Progress) -> anyhow::Result<Row> {
    let wall = Instant::now();
    let nodes = connect(&p.cluster).await?;
    let mut notes = vec![
        "protocol settings above are this build's defaults and the flags, not read from the cluster"
            .to_string(),
    ];
    let views = views(&nodes).await?;
    for (t, (seen, _)) in nodes.iter().zip(&views) {
        if *seen < nodes.len() {
            notes.push(format!(
                "at the start {} saw {seen} of the {} nodes alive",
                t.id,
                nodes.len()
            ));
        }
    }
    let mut row = measure(p, &nodes, Duration::ZERO, true, progress).await?;
    notes.append(&mut row.notes);
    row.notes = notes;
    row.wall_s = wall.elapsed().as_secs_f64();
    Ok(row)
}

/// Warms up and settles the cluster, measures idle traffic, the write load (and with
/// `--throughput` the highest sustained rate), and deletes the run's keys. `settle`:
/// time left alone before waiting for steady traffic (join gossip of a new cluster).
/// With `on_signal`, Ctrl-C or SIGTERM ends the measurement and the keys are deleted
/// before [`Interrupted`] is returned (a second one gives up on them).
pub(super) async fn measure(
    p: &Plan,
    nodes: &[Target],
    settle: Duration,
    on_signal: bool,
    progress: &Progress,
) -> anyhow::Result<Row> {
    let prefix = run_prefix();
    let mut writer = Writer::new(Arc::new(clients_of(nodes)));
    let result = tokio::select! {
        r = load_phases(p, nodes, &prefix, &mut writer, settle, progress) => r,
        _ = interrupted(), if on_signal => {
            progress.clear();
            eprintln!("interrupted: deleting the run's keys under {prefix} (Ctrl-C again to leave them)");
            Err(Interrupted(String::new()).into())
        }
    };
    // Delete whatever was written, also after a failure.
    let cleanup = tokio::select! {
        c = writer.delete_all(&prefix, progress) => c,
        _ = interrupted(), if on_signal => Some(format!("cleanup interrupted: keys are left under {prefix}")),
    };
    if matches!(&result, Err(e) if e.is::<Interrupted>()) {
        let how = cleanup.unwrap_or_else(|| format!("the run's keys under {prefix} were deleted"));
        return Err(Interrupted(how).into());
    }
    let mut row = match result {
        Ok(row) => row,
        Err(e) => {
            // No row will carry the note: say it before the error.
            if let Some(c) = cleanup {
                eprintln!("{c}");
            }
            return Err(e);
        }
    };
    row.notes.extend(cleanup);
    Ok(row)
}

async fn load_phases(
    p: &Plan,
    nodes: &[Target],
    prefix: &str,
    writer: &mut Writer,
    settle: Duration,
    progress: &Progress,
) -> anyhow::Result<Row> {
    let n = nodes.len();
    let mut notes = Vec::new();
    if p.warmup > 0.0 {
        let mesh = warm_up(p, nodes, prefix, writer, progress).await?;
        if mesh < p.mesh {
            notes.push(format!(
                "warm-up: nodes held connections to only {:.0} % of their peers after {} s",
                mesh * 100.0,
                p.warmup
            ));
        }
    }
    settle_steady(nodes, settle, progress).await?;

    // Idle.
    let a = snapshot(nodes).await?;
    sleep_showing(Duration::from_secs_f64(p.idle), |f| {
        progress.show(n, "idle", f, "")
    })
    .await;
    let b = snapshot(nodes).await?;
    let idle = scrape::traffic(&a, &b);

    // Write load: every watch open before the first write.
    let tracker = Arc::new(Mutex::new(Tracker::new(n)));
    let watch_notes = Arc::new(Mutex::new(Vec::new()));
    let streams = open_watches(&clients_of(nodes), prefix).await?;
    let mut watchers = JoinSet::new();
    for (i, s) in streams.into_iter().enumerate() {
        watchers.spawn(follow(
            nodes[i].client.clone(),
            i,
            prefix.to_string(),
            s,
            tracker.clone(),
            watch_notes.clone(),
        ));
    }
    writer.tracker = Some(tracker.clone());
    let before = snapshot(nodes).await?;
    // Failed warm-up writes are not the load's.
    let failed_before = writer.errors().0;
    let start = Instant::now();
    for k in 0..p.writes {
        let due = start + Duration::from_secs_f64(k as f64 / p.rate);
        tokio::time::sleep_until(due.into()).await;
        writer.issue(format!("{prefix}{k:06}"), k % n).await;
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
    writer.settle().await;
    let after = snapshot(nodes).await?;
    let load = scrape::traffic(&before, &after);
    let rss = mean_rss(nodes);
    let (prop, complete, own) = {
        let t = lock(&tracker);
        // Write k went through node k % n: its arrival there took only the admin path.
        let own: Vec<f64> = (0..p.writes)
            .filter_map(|k| t.arrival_ms(k, k % n))
            .collect();
        (t.propagation_ms(), t.complete(), percentiles(own))
    };
    if let Some(o) = own {
        notes.push(format!(
            "admin path alone (a write's PUT until its own node's watch line): p50 {:.1} ms, p99 {:.1} ms, part of every propagation time",
            o.p50_ms, o.p99_ms
        ));
    }
    let (errors, first) = writer.errors();
    let errors = errors - failed_before;
    if errors >= p.writes {
        bail!(
            "every write failed (first: {}); may the nodes write under {prefix}? (`gossamer status` shows what a node may write)",
            first.unwrap_or_default()
        );
    }
    if errors > 0 {
        notes.push(format!(
            "{errors} writes failed (first: {})",
            first.unwrap_or_default()
        ));
    }
    if drained.is_none() {
        notes.push(format!(
            "{} of {} writes had not reached every node {} s after the last write",
            p.writes - complete,
            p.writes,
            DRAIN_LIMIT.as_secs()
        ));
    }
    for (what, name) in [
        (
            "gossip datagrams dropped on send (no connection yet, or quinn refused)",
            scrape::DROPPED,
        ),
        ("dial failures", scrape::DIAL_FAILURES),
        (
            "suspicions raised (members' views differ while they last)",
            scrape::SUSPICIONS,
        ),
        (
            "grafts (an update the tree did not bring in time, asked for by id)",
            scrape::GRAFTS,
        ),
    ] {
        let x = grew_all(&before, &after, name);
        if x > 0.0 {
            notes.push(format!("under load: {x:.0} {what}"));
        }
    }
    let copies = grew_all(&before, &after, scrape::REMOTE_APPLIED)
        + grew_all(&before, &after, scrape::DUPLICATES);
    let names: Vec<(String, String)> = nodes
        .iter()
        .map(|t| (t.id.clone(), t.client.addr().to_string()))
        .collect();
    let per_node = scrape::per_node(&names, (&a, &b), (&before, &after));
    let max_writes_per_s = if p.throughput {
        let mut steps = RemoteSteps {
            writer,
            tracker: tracker.clone(),
            prefix,
        };
        max_rate(&mut steps, progress, &mut notes).await
    } else {
        None
    };
    watchers.abort_all();
    notes.extend(
        watch_notes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..),
    );
    notes.push(
        "arrival = when the bench read the node's watch line: includes the admin API's path from the node to the bench"
            .into(),
    );
    let row = Row::measured(
        n,
        &p.gossip,
        Load {
            idle,
            load,
            writes: p.writes,
            writes_everywhere: complete,
            propagation_ms: prop,
            copies,
        },
    );
    Ok(Row {
        max_writes_per_s,
        rss_mib_per_node: rss,
        notes,
        per_node,
        ..row
    })
}

fn clients_of(nodes: &[Target]) -> Vec<AdminClient> {
    nodes.iter().map(|t| t.client.clone()).collect()
}

/// Mean resident memory of the node processes (MiB), when every one runs here.
fn mean_rss(nodes: &[Target]) -> Option<f64> {
    let each: Option<Vec<f64>> = nodes
        .iter()
        .map(|t| proc_status_mib_of(&t.pid?.to_string(), "VmRSS"))
        .collect();
    each.filter(|v| !v.is_empty())
        .map(|v| v.iter().sum::<f64>() / v.len() as f64)
}

/// Writes at the plan's rate until the nodes hold connections to `p.mesh` of their live
/// peers on average, or `p.warmup` seconds; returns the fraction reached. A cluster
/// that has run for a while is there at once.
async fn warm_up(
    p: &Plan,
    nodes: &[Target],
    prefix: &str,
    writer: &mut Writer,
    progress: &Progress,
) -> anyhow::Result<f64> {
    let n = nodes.len();
    let limit = Duration::from_secs_f64(p.warmup);
    let start = Instant::now();
    let mesh = |v: &[(usize, f64)]| v.iter().map(|x| x.1).sum::<f64>() / v.len().max(1) as f64;
    let mut reached = mesh(&views(nodes).await?);
    let mut checked = Instant::now();
    let mut k = 0usize;
    while reached < p.mesh && start.elapsed() < limit {
        let due = start + Duration::from_secs_f64(k as f64 / p.rate);
        tokio::time::sleep_until(due.into()).await;
        writer.issue(format!("{prefix}warmup/{k:06}"), k % n).await;
        k += 1;
        if checked.elapsed() >= Duration::from_secs(1) {
            reached = mesh(&views(nodes).await?);
            checked = Instant::now();
            progress.show(
                n,
                "warming up",
                start.elapsed().as_secs_f64() / limit.as_secs_f64(),
                &format!("{:.0} % of peers connected", reached * 100.0),
            );
        }
    }
    writer.settle().await;
    Ok(reached)
}

/// Waits `first`, then until the nodes' gossip datagram traffic is steady: two
/// consecutive one-second windows within 10 % (or 200 B/node/s) of each other, or
/// [`SETTLE_LIMIT`].
async fn settle_steady(
    nodes: &[Target],
    first: Duration,
    progress: &Progress,
) -> anyhow::Result<()> {
    let n = nodes.len();
    sleep_showing(first, |f| progress.show(n, "settling", f, "")).await;
    let start = Instant::now();
    let mut prev: Option<f64> = None;
    let mut a = snapshot(nodes).await?;
    while start.elapsed() < SETTLE_LIMIT {
        progress.show(
            n,
            "settling",
            start.elapsed().as_secs_f64() / SETTLE_LIMIT.as_secs_f64(),
            "waiting for steady traffic",
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        let b = snapshot(nodes).await?;
        let rate = scrape::traffic(&a, &b).gossip_bytes_per_node_s;
        if let Some(p) = prev {
            if steady(p, rate) {
                return Ok(());
            }
        }
        prev = Some(rate);
        a = b;
    }
    Ok(())
}
