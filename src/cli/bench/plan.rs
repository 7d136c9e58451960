//! The flags, validated and resolved into what a run does ([`Plan`]), the fixed limits of
//! a run's phases, and the protocol settings reported with the results.

use std::time::Duration;

use anyhow::Context;
use gossamer::admin::client::AdminClient;
use gossamer::core::Config;
use gossamer::sim::NetModel;

use super::args::{BenchArgs, Mode};
use super::host::{mem_available_bytes, sim_bytes_per_n2};
use super::report::Settings;
use crate::cli::admin_conn::AdminConn;
use crate::cli::UsageError;

/// Microseconds per second (the simulator's clock counts µs).
pub(super) const US: u64 = 1_000_000;

/// Time the cluster is left alone after joining, before the idle window, so that join
/// gossip (membership broadcasts, member-list syncs) has died down.
pub(super) const SETTLE: Duration = Duration::from_secs(5);
/// Longest wait for steady traffic after [`SETTLE`].
pub(super) const SETTLE_LIMIT: Duration = Duration::from_secs(60);

/// Whether gossip traffic is steady: two consecutive one-second windows' rates (bytes
/// per node per second) within 10 % (or 200 B/node/s) of each other.
pub(super) fn steady(previous: f64, rate: f64) -> bool {
    (rate - previous).abs() <= (0.1 * previous.max(rate)).max(200.0)
}

/// Longest wait for writes to reach every node after the last one was made.
pub(super) const DRAIN_LIMIT: Duration = Duration::from_secs(15);

/// Everything a run does: the flags, validated and resolved.
#[derive(Debug, Clone)]
pub(super) struct Plan {
    pub(super) mode: Mode,
    pub(super) nodes: Vec<usize>,
    pub(super) writes: usize,
    pub(super) rate: f64,
    pub(super) idle: f64,
    pub(super) seed: u64,
    pub(super) gossip: Config,
    pub(super) throughput: bool,
    pub(super) warmup: f64,
    pub(super) mesh: f64,
    pub(super) faults: bool,
    pub(super) warm: bool,
    pub(super) settle_us: u64,
    pub(super) crashes: usize,
    pub(super) partition: f64,
    pub(super) net: NetModel,
    /// `--cluster`: a client for each admin API, in the order given.
    pub(super) cluster: Vec<AdminClient>,
}

/// Most admin addresses `--cluster` takes (each gets a watch and a request per write).
const MAX_CLUSTER: usize = 1_000;

/// The clients of `--cluster`'s addresses, with the admin commands' TLS and token flags
/// (and their environment variables): at least two distinct addresses.
fn cluster_clients(a: &BenchArgs) -> anyhow::Result<Vec<AdminClient>> {
    let mut seen = std::collections::HashSet::new();
    let mut clients = Vec::new();
    for addr in &a.cluster {
        let addr = addr.trim();
        if addr.is_empty() {
            return Err(UsageError("--cluster: an empty address in the list".into()).into());
        }
        if !seen.insert(
            addr.trim_start_matches("http://")
                .trim_start_matches("https://"),
        ) {
            return Err(UsageError(format!("--cluster: {addr} is listed twice")).into());
        }
        let conn = AdminConn {
            admin: Some(addr.to_string()),
            token: a.token.clone(),
            ca: a.ca.clone(),
            cert: a.cert.clone(),
            key: a.key.clone(),
        };
        clients.push(conn.client()?);
    }
    if !(2..=MAX_CLUSTER).contains(&clients.len()) {
        return Err(UsageError(format!(
            "--cluster: {} address(es); give 2 to {MAX_CLUSTER} admin addresses, comma-separated",
            clients.len()
        ))
        .into());
    }
    Ok(clients)
}

pub(super) fn plan(a: &BenchArgs) -> anyhow::Result<Plan> {
    let cluster = if a.cluster.is_empty() {
        if a.token.is_some() || a.ca.is_some() || a.cert.is_some() || a.key.is_some() {
            return Err(UsageError(
                "--token/--ca/--cert/--key: these reach the admin APIs of --cluster, which is not given"
                    .into(),
            )
            .into());
        }
        Vec::new()
    } else {
        cluster_clients(a)?
    };
    let mode = if cluster.is_empty() {
        a.mode
    } else {
        Mode::Cluster
    };
    let (max, default): (usize, &[usize]) = match mode {
        Mode::Quic => (100, &[10, 25, 50]),
        Mode::Sim => (10_000, &[100, 1_000, 2_000]),
        Mode::Processes => (100, &[10]),
        Mode::Cluster => (MAX_CLUSTER, &[]),
    };
    let mut nodes = if mode == Mode::Cluster {
        vec![cluster.len()]
    } else if a.nodes.is_empty() {
        default.to_vec()
    } else {
        a.nodes.clone()
    };
    for &n in &nodes {
        if !(2..=max).contains(&n) {
            return Err(UsageError(format!(
                "--nodes {n}: {} mode runs 2 to {max} nodes",
                mode.name()
            ))
            .into());
        }
    }
    nodes.sort_unstable();
    nodes.dedup();
    if mode == Mode::Sim {
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
    if !(a.loss.is_finite() && (0.0..=0.5).contains(&a.loss)) {
        return Err(UsageError(format!(
            "--loss {}: must be a probability from 0 to 0.5",
            a.loss
        ))
        .into());
    }
    if a.loss > 0.0 && !matches!(mode, Mode::Quic | Mode::Sim) {
        return Err(UsageError(
            "--loss: only the quic and sim modes can drop datagrams; leave it out".into(),
        )
        .into());
    }
    if !(a.settle.is_finite() && (0.0..=3_600.0).contains(&a.settle)) {
        return Err(UsageError(format!("--settle {}: must be 0 to 3600 seconds", a.settle)).into());
    }
    if !(a.warmup.is_finite() && (0.0..=600.0).contains(&a.warmup)) {
        return Err(UsageError(format!("--warmup {}: must be 0 to 600 seconds", a.warmup)).into());
    }
    if !(a.mesh.is_finite() && (0.0..=1.0).contains(&a.mesh)) {
        return Err(UsageError(format!("--mesh {}: must be 0 to 1", a.mesh)).into());
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
    if matches!(mode, Mode::Quic | Mode::Processes) {
        // Joining is not what is measured: contact the seed quickly.
        gossip.seed_backoff_floor_ms = gossip.seed_backoff_floor_ms.min(200);
        gossip.seed_backoff_cap_ms = gossip.seed_backoff_cap_ms.min(2_000);
    }
    gossip
        .validate()
        .map_err(|e| UsageError(format!("protocol settings: {e}")))?;
    Ok(Plan {
        mode,
        nodes,
        writes: a.writes,
        rate: a.rate,
        idle: a.duration,
        seed: a.seed,
        gossip,
        throughput: a.throughput,
        warmup: a.warmup,
        mesh: a.mesh,
        faults: !a.no_faults,
        warm: a.warm,
        settle_us: (a.settle * US as f64) as u64,
        crashes: a.crashes.min(100),
        partition: a.partition,
        net: NetModel {
            latency_us: (a.sim_latency * 1000.0) as u64,
            jitter_us: (a.sim_jitter * 1000.0) as u64,
            loss: a.loss,
            ..NetModel::default()
        },
        cluster,
    })
}

/// A protocol field that not every build has (read through serde, so this file builds
/// before and after it exists).
fn config_field(cfg: &Config, name: &str) -> Option<u64> {
    serde_json::to_value(cfg).ok()?.get(name)?.as_u64()
}

pub(super) fn settings(cfg: &Config) -> Settings {
    Settings {
        fanout: cfg.fanout,
        gossip_interval_ms: cfg.gossip_interval_ms,
        sync_interval_ms: cfg.sync_interval_ms,
        retransmit_mult: cfg.retransmit_mult,
        probe_interval_ms: config_field(cfg, "probe_interval_ms"),
    }
}
