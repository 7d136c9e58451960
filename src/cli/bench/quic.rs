//! Quic mode: N real nodes in this process on 127.0.0.1, each on a fault-free
//! [`ChaosSocket`] that counts the UDP datagrams it sends; times are wall-clock.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use gossamer::chaos::{ChaosControl, ChaosSocket};
use gossamer::core::engine::LOSSY_PERMILLE;
use gossamer::core::Event;
use gossamer::local::LocalCluster;
use gossamer::node::SubscriptionError;
use gossamer::node::{Node, QuicFrameStats};

use super::host::{cpu_seconds, proc_status_mib};
use super::plan::{steady, Plan, DRAIN_LIMIT, SETTLE, SETTLE_LIMIT};
use super::progress::{sleep_showing, wait_until, Progress};
use super::report::{Load, Row, Traffic};
use super::throughput::{max_rate, QuicSteps};
use super::tracker::{lock, Tracker};

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
    repair_rounds: u64,
    /// Nodes whose transport reported loss enough for repair rounds.
    lossy_nodes: u64,
    udp_bytes: u64,
    gossip_bytes: u64,
    gossip_datagrams: u64,
    sync_bytes: u64,
    syncs_started: u64,
    digest_opens: u64,
    digests_shared: u64,
    digests_differed: u64,
    quic: QuicFrameStats,
    handshakes: u64,
    copies: u64,
    cpu_s: Option<f64>,
}

/// Longest wait, with `--loss`, for every node to see the loss before the writes.
const LOSS_SEEN_LIMIT: Duration = Duration::from_secs(15);

/// True if `node`'s transport reports loss enough for repair rounds.
fn sees_loss(node: &Node) -> bool {
    node.bandwidth().path_loss_permille >= LOSSY_PERMILLE
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
        repair_rounds: 0,
        lossy_nodes: 0,
        udp_bytes: 0,
        gossip_bytes: 0,
        gossip_datagrams: 0,
        sync_bytes: 0,
        syncs_started: 0,
        digest_opens: 0,
        digests_shared: 0,
        digests_differed: 0,
        quic: QuicFrameStats::default(),
        handshakes: 0,
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
        s.gossip_datagrams += r.datagrams_sent.load(Ordering::Relaxed);
        s.sync_bytes += r.sync_bytes_sent.load(Ordering::Relaxed);
        let st = node.with_store_stats();
        s.copies += st.duplicates + st.remote_applied;
        let es = node.engine_stats();
        s.suspicions += es.suspicions;
        s.grafts += es.grafts_sent;
        s.repair_rounds += es.repair_rounds;
        s.lossy_nodes += u64::from(sees_loss(node));
        s.syncs_started += es.syncs_started;
        s.digest_opens += es.sync_digest_opens;
        s.digests_shared += es.sync_digests_shared;
        s.digests_differed += es.sync_digests_differed;
        let q = node.quic_frame_stats();
        s.quic.connections += q.connections;
        s.quic.pings += q.pings;
        s.quic.acks += q.acks;
        s.quic.datagrams += q.datagrams;
        s.handshakes += node.handshake_stats().snapshot().accepted;
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
        gossip_datagrams_per_node_s: per(a.gossip_datagrams, b.gossip_datagrams),
        cpu_percent_per_node: match (a.cpu_s, b.cpu_s) {
            (Some(x), Some(y)) => Some((y - x) / dt / n as f64 * 100.0),
            _ => None,
        },
    }
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
            Err(SubscriptionError::Missed(_)) => lock(&tracker).lagged = true,
            Err(SubscriptionError::Closed) => break,
        }
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

/// Writes at the plan's rate until nodes hold connections to `p.mesh` of their peers on
/// average, or `p.warmup` seconds; returns the fraction reached.
async fn warm_up(p: &Plan, n: usize, nodes: &[Node], progress: &Progress) -> f64 {
    let limit = Duration::from_secs_f64(p.warmup);
    let start = Instant::now();
    let mut k = 0usize;
    let mut mesh = mesh_fraction(nodes);
    let mut checked = Instant::now();
    while mesh < p.mesh && start.elapsed() < limit {
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
            if steady(p, rate) {
                return;
            }
        }
        prev = Some(rate);
        a = b;
    }
}

/// Longest wait for the cluster to join.
const JOIN_LIMIT: Duration = Duration::from_secs(120);

pub(super) async fn quic_row(p: &Plan, n: usize, progress: &Progress) -> anyhow::Result<Row> {
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
        if mesh < p.mesh {
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
    notes.push(format!(
        "idle: {} exchanges opened, {} with a digest: {} shared, {} differed (four turns)",
        b.syncs_started - a.syncs_started,
        b.digest_opens - a.digest_opens,
        b.digests_shared - a.digests_shared,
        b.digests_differed - a.digests_differed,
    ));
    let per = |x: u64, y: u64| y.saturating_sub(x) as f64 / n as f64 / idle_d.as_secs_f64();
    notes.push(format!(
        "idle: {:.1} connections per node; per node per s: {:.2} QUIC PING frames, {:.2} ACK \
         frames, {:.2} datagrams on connections held throughout; {} handshakes accepted",
        b.quic.connections as f64 / n as f64,
        per(a.quic.pings, b.quic.pings),
        per(a.quic.acks, b.quic.acks),
        per(a.quic.datagrams, b.quic.datagrams),
        b.handshakes - a.handshakes,
    ));
    // Lifeguard stretches a node's probe period by its health score + 1: a score above 0
    // at idle means SWIM probes (and keeps connections busy) less than its settings say.
    let scores: Vec<u32> = nodes.iter().map(Node::awareness).collect();
    notes.push(format!(
        "idle: Lifeguard health scores at the window's end: mean {:.2}, max {}, {} of {n} nodes above 0",
        scores.iter().sum::<u32>() as f64 / n.max(1) as f64,
        scores.iter().max().copied().unwrap_or(0),
        scores.iter().filter(|&&x| x > 0).count(),
    ));
    // A probe's timeout follows the RTT the transport measured (times `probe_rtt_mult`),
    // and a longer timeout stretches the probe period too.
    let mut rtts: Vec<f64> = nodes
        .iter()
        .flat_map(|x| x.members().into_iter().filter_map(|m| m.rtt_ms))
        .collect();
    rtts.sort_by(f64::total_cmp);
    if let Some(&max) = rtts.last() {
        let at = |q: f64| rtts[((rtts.len() - 1) as f64 * q) as usize];
        notes.push(format!(
            "idle: QUIC smoothed RTTs of the connections held: p50 {:.1} ms, p99 {:.1} ms, max {max:.1} ms",
            at(0.5),
            at(0.99),
        ));
    }

    // Write load.
    let tracker = Arc::new(Mutex::new(Tracker::new(n)));
    let mut watchers = tokio::task::JoinSet::new();
    for (i, node) in nodes.iter().enumerate() {
        watchers.spawn(watch(node.clone(), i, tracker.clone()));
    }
    tokio::task::yield_now().await;
    if p.net.loss > 0.0 {
        for ctl in controls {
            ctl.set_loss(p.net.loss);
        }
        // A lossy network is lossy before the writes: let the nodes see it (QUIC's
        // loss counts, read once a second), as they would have long before.
        let seen = || nodes.iter().filter(|n| sees_loss(n)).count();
        let took = wait_until(
            LOSS_SEEN_LIMIT,
            || seen() == n,
            |f| progress.show(n, "loss on", f, ""),
        )
        .await;
        notes.push(format!(
            "each node's socket dropped {:.0} % of what it sent from {:.1} s before the \
             write load to its end; {} of {n} nodes saw the loss before the first write",
            p.net.loss * 100.0,
            took.unwrap_or(LOSS_SEEN_LIMIT).as_secs_f64(),
            seen(),
        ));
    }
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
    for ctl in controls.iter().filter(|_| p.net.loss > 0.0) {
        ctl.set_loss(0.0);
    }
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
        (
            "repair rounds (ids told early because QUIC reported loss)",
            after.repair_rounds - before.repair_rounds,
        ),
        (
            "nodes seeing loss at the start (repair rounds on)",
            before.lossy_nodes,
        ),
        (
            "nodes seeing loss at the end (repair rounds on)",
            after.lossy_nodes,
        ),
    ] {
        if x > 0 {
            notes.push(format!("under load: {x} {what}"));
        }
    }
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
    let max_writes_per_s = if p.throughput {
        max_rate(&mut QuicSteps::new(nodes), progress, notes).await
    } else {
        None
    };
    Ok(Row {
        join_ms: Some(join_ms),
        max_writes_per_s,
        ..row
    })
}
