//! `gossamer test`: an operator's fault tool. Starts a local cluster of real QUIC nodes on
//! 127.0.0.1, each on a [`ChaosSocket`], runs a write workload under the chosen faults
//! (loss, latency, jitter, duplication, a partition schedule), stops the faults, and
//! reports whether and how fast the cluster joined, propagated writes, detected the
//! partition, healed and converged.
//!
//! Times of the partition schedule count from the start of the workload, which begins
//! once every node sees every node alive. Faults (except the partition, which follows its
//! own schedule) last from the first node's start to the end of the run.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Args;
use gossamer::chaos::{self, ChaosControl, ChaosSocket, ChaosStats, Faults};
use gossamer::core::{Config, Event, NodeId};
use gossamer::node::local::LocalCluster;
use gossamer::node::Node;
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;

use super::UsageError;

/// Flags of `gossamer test`.
#[derive(Debug, Clone, Args)]
pub struct TestArgs {
    /// Number of nodes (2 to 50).
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub nodes: usize,
    /// Probability (0 to 1) that a datagram is lost, on every node's sends.
    #[arg(
        long,
        default_value_t = 0.0,
        value_name = "P",
        allow_negative_numbers = true
    )]
    pub loss: f64,
    /// Delay added to every datagram (milliseconds).
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub latency: u64,
    /// Uniform random delay added on top of --latency (milliseconds).
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub jitter: u64,
    /// Probability (0 to 1) that a datagram is sent twice.
    #[arg(
        long,
        default_value_t = 0.0,
        value_name = "P",
        allow_negative_numbers = true
    )]
    pub duplicate: f64,
    /// Partition schedule: node groups (1-based, separated by `/`) that cannot reach
    /// each other from START to END after the workload starts, e.g. `1,2/3,4,5@5s..20s`.
    #[arg(long, value_name = "GROUPS@START..END")]
    pub partition: Option<String>,
    /// Writes per second, spread over the nodes in turn.
    #[arg(
        long,
        default_value_t = 20.0,
        value_name = "R",
        allow_negative_numbers = true
    )]
    pub writes_per_sec: f64,
    /// Length of the run in seconds (default: partition end + 10 s, or 10 s).
    #[arg(long, value_name = "S", allow_negative_numbers = true)]
    pub duration: Option<f64>,
    /// Seconds the cluster has to converge once the faults end (and to join at start).
    #[arg(
        long,
        default_value_t = 30.0,
        value_name = "S",
        allow_negative_numbers = true
    )]
    pub deadline: f64,
    /// Seed of the fault decisions (default: from the clock; printed either way).
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// A parsed `--partition` flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionSpec {
    /// Groups of 0-based node indices that cannot reach each other.
    pub groups: Vec<Vec<usize>>,
    /// Start, from the start of the workload.
    pub start: Duration,
    /// End, from the start of the workload.
    pub end: Duration,
}

const PARTITION_HELP: &str = "expected GROUPS@START..END, e.g. 1,2/3,4,5@5s..20s";

/// Parses `GROUPS@START..END` (node numbers 1-based, groups separated by `/`, times
/// with an `s` or `ms` suffix) for a cluster of `nodes`. The error names the flag.
pub fn parse_partition(s: &str, nodes: usize) -> Result<PartitionSpec, UsageError> {
    let err = |why: String| UsageError(format!("--partition {s:?}: {why}"));
    let (groups_s, times_s) = s
        .split_once('@')
        .ok_or_else(|| err(PARTITION_HELP.to_string()))?;
    let (start_s, end_s) = times_s
        .split_once("..")
        .ok_or_else(|| err(format!("missing START..END; {PARTITION_HELP}")))?;
    let start = parse_time(start_s).map_err(&err)?;
    let end = parse_time(end_s).map_err(&err)?;
    if end <= start {
        return Err(err(format!(
            "the end ({end_s}) must come after the start ({start_s})"
        )));
    }
    let mut seen = HashSet::new();
    let mut groups = Vec::new();
    for g in groups_s.split('/') {
        let mut group = Vec::new();
        for part in g.split(',') {
            let part = part.trim();
            if part.is_empty() {
                return Err(err(format!(
                    "empty node number in group {g:?}; {PARTITION_HELP}"
                )));
            }
            let n: usize = part
                .parse()
                .map_err(|_| err(format!("{part:?} is not a node number")))?;
            if n == 0 || n > nodes {
                return Err(err(format!(
                    "node {n} is out of range: nodes are numbered 1 to {nodes}"
                )));
            }
            if !seen.insert(n) {
                return Err(err(format!("node {n} is in more than one group")));
            }
            group.push(n - 1);
        }
        groups.push(group);
    }
    if groups.len() < 2 {
        return Err(err(format!(
            "a partition needs at least two groups separated by '/'; {PARTITION_HELP}"
        )));
    }
    Ok(PartitionSpec { groups, start, end })
}

/// Parses `5s`, `2.5s` or `500ms`.
fn parse_time(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let (num, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else {
        return Err(format!("time {t:?} needs a unit: s or ms (e.g. 5s, 500ms)"));
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("time {t:?} is not a number of s or ms"))?;
    if !v.is_finite() || v < 0.0 || v * scale > 86_400.0 {
        return Err(format!("time {t:?} must be between 0 and 24 h"));
    }
    Ok(Duration::from_secs_f64(v * scale))
}

/// Everything the run needs, validated.
#[derive(Debug, Clone)]
struct Plan {
    nodes: usize,
    faults: Faults,
    partition: Option<PartitionSpec>,
    writes_per_sec: f64,
    duration: Duration,
    deadline: Duration,
    total_writes: usize,
    seed: u64,
    json: bool,
}

const MAX_WRITES: f64 = 200_000.0;

fn probability(flag: &str, p: f64) -> Result<f64, UsageError> {
    if (0.0..=1.0).contains(&p) {
        Ok(p)
    } else {
        Err(UsageError(format!(
            "{flag} {p}: must be a probability between 0 and 1"
        )))
    }
}

fn plan(a: &TestArgs) -> Result<Plan, UsageError> {
    if !(2..=50).contains(&a.nodes) {
        return Err(UsageError(format!(
            "--nodes {}: the test runs 2 to 50 nodes",
            a.nodes
        )));
    }
    let loss = probability("--loss", a.loss)?;
    let duplicate = probability("--duplicate", a.duplicate)?;
    for (flag, v) in [("--latency", a.latency), ("--jitter", a.jitter)] {
        if v > 10_000 {
            return Err(UsageError(format!(
                "{flag} {v}: at most 10000 milliseconds"
            )));
        }
    }
    let partition = a
        .partition
        .as_deref()
        .map(|s| parse_partition(s, a.nodes))
        .transpose()?;
    if !(a.writes_per_sec.is_finite() && a.writes_per_sec > 0.0 && a.writes_per_sec <= 10_000.0) {
        return Err(UsageError(format!(
            "--writes-per-sec {}: must be more than 0 and at most 10000",
            a.writes_per_sec
        )));
    }
    let duration = match a.duration {
        Some(d) => {
            if !(d.is_finite() && d > 0.0 && d <= 3_600.0) {
                return Err(UsageError(format!(
                    "--duration {d}: must be more than 0 and at most 3600 seconds"
                )));
            }
            Duration::from_secs_f64(d)
        }
        None => partition
            .as_ref()
            .map(|p| p.end + Duration::from_secs(10))
            .unwrap_or(Duration::from_secs(10)),
    };
    if let Some(p) = &partition {
        if p.end > duration {
            return Err(UsageError(format!(
                "--duration {:.1}: the run would end before the partition ends at {:.1} s (--partition)",
                duration.as_secs_f64(),
                p.end.as_secs_f64()
            )));
        }
    }
    if !(a.deadline.is_finite() && a.deadline >= 1.0 && a.deadline <= 3_600.0) {
        return Err(UsageError(format!(
            "--deadline {}: must be between 1 and 3600 seconds",
            a.deadline
        )));
    }
    let writes = a.writes_per_sec * duration.as_secs_f64();
    if writes > MAX_WRITES {
        return Err(UsageError(format!(
            "--writes-per-sec {} over {:.0} s makes {writes:.0} writes; at most {MAX_WRITES} per run",
            a.writes_per_sec,
            duration.as_secs_f64()
        )));
    }
    let seed = a.seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    Ok(Plan {
        nodes: a.nodes,
        faults: Faults {
            loss,
            delay: Duration::from_millis(a.latency),
            jitter: Duration::from_millis(a.jitter),
            duplicate,
            ..Faults::none()
        },
        partition,
        writes_per_sec: a.writes_per_sec,
        duration,
        deadline: Duration::from_secs_f64(a.deadline),
        total_writes: writes.floor() as usize,
        seed,
        json: a.json,
    })
}

/// Protocol timing of the test cluster: quick rounds, so that runs take seconds.
fn gossip_config() -> Config {
    Config {
        gossip_interval_ms: 100,
        sync_interval_ms: 500,
        seed_backoff_floor_ms: 200,
        seed_backoff_cap_ms: 2_000,
        ..Config::default()
    }
}

// ---------------------------------------------------------------------------------------
// Tracking writes and their arrivals.

struct Write {
    key: String,
    at: Instant,
}

/// Which node holds which write since when.
struct Tracker {
    n: usize,
    writes: Vec<Write>,
    index: HashMap<String, usize>,
    arrivals: Vec<Vec<Option<Instant>>>,
    remaining: Vec<usize>,
    incomplete: BTreeSet<usize>,
    /// Receivers that lost events (their arrivals are then found by polling).
    lagged: Vec<bool>,
    /// Presence seen by polling without an event yet: (write, node) -> first seen.
    seen: HashMap<(usize, usize), Instant>,
    /// Arrivals measured by polling rather than by an event.
    polled: u64,
}

impl Tracker {
    fn new(n: usize, capacity: usize) -> Self {
        Self {
            n,
            writes: Vec::with_capacity(capacity),
            index: HashMap::with_capacity(capacity),
            arrivals: Vec::with_capacity(capacity),
            remaining: Vec::with_capacity(capacity),
            incomplete: BTreeSet::new(),
            lagged: vec![false; n],
            seen: HashMap::new(),
            polled: 0,
        }
    }

    fn register(&mut self, key: String, at: Instant) {
        let w = self.writes.len();
        self.index.insert(key.clone(), w);
        self.writes.push(Write { key, at });
        self.arrivals.push(vec![None; self.n]);
        self.remaining.push(self.n);
        self.incomplete.insert(w);
    }

    fn arrived(&mut self, w: usize, node: usize, at: Instant) -> bool {
        if self.arrivals[w][node].is_some() {
            return false;
        }
        self.arrivals[w][node] = Some(at);
        self.remaining[w] -= 1;
        if self.remaining[w] == 0 {
            self.incomplete.remove(&w);
        }
        true
    }

    /// True if every write made before `t` is on every node.
    fn complete_before(&self, t: Instant) -> bool {
        self.incomplete
            .first()
            .is_none_or(|&w| self.writes[w].at >= t)
    }

    /// Finds arrivals that events did not report: on nodes whose receiver lagged, or for
    /// writes older than two seconds. A presence counts once seen on two polls in a row
    /// (so an event on its way wins), and dates from the first.
    fn poll_fallback(&mut self, nodes: &[Node], now: Instant) {
        let old = now.checked_sub(Duration::from_secs(2));
        let candidates: Vec<usize> = self.incomplete.iter().copied().collect();
        let mut budget = POLL_BUDGET;
        for w in candidates {
            if budget == 0 {
                break;
            }
            let aged = old.is_some_and(|o| self.writes[w].at < o);
            for (i, node) in nodes.iter().enumerate() {
                if self.arrivals[w][i].is_some() || !(aged || self.lagged[i]) {
                    continue;
                }
                budget = budget.saturating_sub(1);
                if node.get(&self.writes[w].key).is_none() {
                    self.seen.remove(&(w, i));
                    continue;
                }
                match self.seen.get(&(w, i)) {
                    Some(&first) => {
                        if self.arrived(w, i, first) {
                            self.polled += 1;
                        }
                        self.seen.remove(&(w, i));
                    }
                    None => {
                        self.seen.insert((w, i), now);
                    }
                }
            }
        }
    }

    /// Propagation time (write to last node) of the complete writes made in `window`.
    fn propagation(&self, keep: impl Fn(Instant) -> bool) -> Vec<Duration> {
        self.writes
            .iter()
            .enumerate()
            .filter(|(w, x)| self.remaining[*w] == 0 && keep(x.at))
            .filter_map(|(w, x)| {
                self.arrivals[w]
                    .iter()
                    .flatten()
                    .max()
                    .map(|last| last.saturating_duration_since(x.at))
            })
            .collect()
    }

    /// Writes missing on node `i`.
    fn missing_on(&self, i: usize) -> usize {
        self.incomplete
            .iter()
            .filter(|&&w| self.arrivals[w][i].is_none())
            .count()
    }
}

/// Most `get` calls of one fallback poll (keeps big runs cheap; the rest waits).
const POLL_BUDGET: usize = 5_000;

fn lock(t: &Mutex<Tracker>) -> MutexGuard<'_, Tracker> {
    t.lock().unwrap_or_else(|p| p.into_inner())
}

/// Records the arrival instant of every tracked write a node reports.
async fn watch_events(node: Node, i: usize, tracker: Arc<Mutex<Tracker>>) {
    let mut rx = node.subscribe();
    drop(node);
    loop {
        match rx.recv().await {
            Ok(Event::Kv { entry, .. }) => {
                let at = Instant::now();
                if entry.value.is_none() {
                    continue;
                }
                let mut t = lock(&tracker);
                if let Some(&w) = t.index.get(&entry.key) {
                    t.arrived(w, i, at);
                }
            }
            Ok(_) => {}
            Err(RecvError::Lagged(_)) => lock(&tracker).lagged[i] = true,
            Err(RecvError::Closed) => break,
        }
    }
}

/// Sends the workload: `total` writes at `rate` per second, on the nodes in turn.
async fn workload(
    nodes: Vec<Node>,
    tracker: Arc<Mutex<Tracker>>,
    start: Instant,
    rate: f64,
    total: usize,
    errors: Arc<AtomicU64>,
) {
    for k in 0..total {
        let due = start + Duration::from_secs_f64(k as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        let key = format!("gossamer-test/{k:06}");
        let value = format!("w{k}").into_bytes();
        // Register first: the writer's own event may arrive before `set` returns.
        lock(&tracker).register(key.clone(), Instant::now());
        if nodes[k % nodes.len()].set(&key, value).is_err() {
            errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

// ---------------------------------------------------------------------------------------
// The report.

#[derive(Debug, Serialize)]
struct Percentiles {
    count: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

fn percentiles(mut v: Vec<Duration>) -> Option<Percentiles> {
    if v.is_empty() {
        return None;
    }
    v.sort();
    let rank = |p: f64| {
        let i = ((p / 100.0) * v.len() as f64).ceil() as usize;
        ms(v[i.clamp(1, v.len()) - 1])
    };
    Some(Percentiles {
        count: v.len(),
        p50_ms: rank(50.0),
        p99_ms: rank(99.0),
        max_ms: ms(v[v.len() - 1]),
    })
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

#[derive(Debug, Serialize)]
struct FaultsReport {
    loss: f64,
    latency_ms: u64,
    jitter_ms: u64,
    duplicate: f64,
}

#[derive(Debug, Serialize)]
struct PartitionReport {
    /// Groups of 1-based node numbers.
    groups: Vec<Vec<usize>>,
    start_s: f64,
    end_s: f64,
}

#[derive(Debug, Serialize)]
struct Detection {
    /// 1-based node numbers of this side.
    group: Vec<usize>,
    /// Time from the partition's start until every node of this side saw every node of
    /// the other sides as not alive; None if it never happened during the partition.
    detected_ms: Option<f64>,
}

#[derive(Debug, Serialize)]
struct NodeTraffic {
    node: String,
    datagrams_sent_per_s: f64,
    datagram_bytes_sent_per_s: f64,
    sync_bytes_sent_per_s: f64,
    udp_datagrams_sent_per_s: f64,
    udp_bytes_sent_per_s: f64,
    chaos: ChaosStats,
}

#[derive(Debug, Serialize)]
struct Report {
    nodes: usize,
    seed: u64,
    faults: FaultsReport,
    partition: Option<PartitionReport>,
    duration_s: f64,
    writes_per_sec: f64,
    deadline_s: f64,
    join_ms: Option<f64>,
    writes: usize,
    write_errors: u64,
    writes_everywhere: usize,
    propagation: Option<Percentiles>,
    propagation_outside_partition: Option<Percentiles>,
    propagation_during_partition: Option<Percentiles>,
    arrivals_by_polling: u64,
    partition_detection: Vec<Detection>,
    heal_ms: Option<f64>,
    convergence_ms: Option<f64>,
    measured_s: f64,
    traffic: Vec<NodeTraffic>,
    chaos_total: ChaosStats,
    converged: bool,
    failure: Option<String>,
}

#[derive(Clone, Copy)]
struct TrafficSnap {
    dgrams: u64,
    dgram_bytes: u64,
    sync_bytes: u64,
    chaos: ChaosStats,
}

fn snap(node: &Node, ctl: &ChaosControl) -> TrafficSnap {
    let s = node.runtime_stats();
    TrafficSnap {
        dgrams: s.datagrams_sent.load(Ordering::Relaxed),
        dgram_bytes: s.datagram_bytes_sent.load(Ordering::Relaxed),
        sync_bytes: s.sync_bytes_sent.load(Ordering::Relaxed),
        chaos: ctl.stats(),
    }
}

// ---------------------------------------------------------------------------------------
// The run.

/// True if every node of `side` sees every node in `others` as not alive (or not at all).
fn side_detects(nodes: &[Node], side: &[usize], others: &HashSet<NodeId>) -> bool {
    side.iter().all(|&i| {
        let members = nodes[i].members();
        others.iter().all(|id| {
            members
                .iter()
                .find(|m| &m.id == id)
                .is_none_or(|m| m.status != "alive")
        })
    })
}

fn everyone_alive(nodes: &[Node]) -> bool {
    nodes.iter().all(|x| x.alive_count() == nodes.len())
}

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

/// Everything after the nodes are up: join, workload, faults schedule, convergence.
async fn drive(
    p: &Plan,
    nodes: &[Node],
    controls: &[ChaosControl],
    tracker: Arc<Mutex<Tracker>>,
    t_start: Instant,
) -> Report {
    let n = nodes.len();
    let mut report = Report {
        nodes: n,
        seed: p.seed,
        faults: FaultsReport {
            loss: p.faults.loss,
            latency_ms: p.faults.delay.as_millis() as u64,
            jitter_ms: p.faults.jitter.as_millis() as u64,
            duplicate: p.faults.duplicate,
        },
        partition: p.partition.as_ref().map(|s| PartitionReport {
            groups: s
                .groups
                .iter()
                .map(|g| g.iter().map(|i| i + 1).collect())
                .collect(),
            start_s: s.start.as_secs_f64(),
            end_s: s.end.as_secs_f64(),
        }),
        duration_s: p.duration.as_secs_f64(),
        writes_per_sec: p.writes_per_sec,
        deadline_s: p.deadline.as_secs_f64(),
        join_ms: None,
        writes: 0,
        write_errors: 0,
        writes_everywhere: 0,
        propagation: None,
        propagation_outside_partition: None,
        propagation_during_partition: None,
        arrivals_by_polling: 0,
        partition_detection: Vec::new(),
        heal_ms: None,
        convergence_ms: None,
        measured_s: 0.0,
        traffic: Vec::new(),
        chaos_total: ChaosStats::default(),
        converged: false,
        failure: None,
    };

    // Join.
    let tick = Duration::from_millis(20);
    let join_deadline = Instant::now() + p.deadline;
    let mut joined = everyone_alive(nodes);
    while !joined && Instant::now() < join_deadline {
        tokio::time::sleep(tick).await;
        joined = everyone_alive(nodes);
    }
    if !joined {
        let alive: Vec<String> = nodes
            .iter()
            .map(|x| format!("{} sees {}", x.id(), x.alive_count()))
            .collect();
        report.failure = Some(format!(
            "the {n} nodes did not all see each other alive within {:.0} s of starting ({})",
            p.deadline.as_secs_f64(),
            alive.join(", ")
        ));
        finish_traffic(&mut report, nodes, controls, None, Instant::now());
        return report;
    }
    report.join_ms = Some(ms(t_start.elapsed()));

    // Workload, faults schedule, monitoring.
    let t0 = Instant::now();
    let before: Vec<TrafficSnap> = nodes
        .iter()
        .zip(controls)
        .map(|(x, c)| snap(x, c))
        .collect();
    let errors = Arc::new(AtomicU64::new(0));
    let workload_done = Arc::new(AtomicBool::new(false));
    {
        let (nodes, tracker, errors, done) = (
            nodes.to_vec(),
            tracker.clone(),
            errors.clone(),
            workload_done.clone(),
        );
        let (rate, total) = (p.writes_per_sec, p.total_writes);
        tokio::spawn(async move {
            workload(nodes, tracker, t0, rate, total, errors).await;
            done.store(true, Ordering::Relaxed);
        });
    }

    let sides: Vec<(Vec<usize>, HashSet<NodeId>)> = p
        .partition
        .as_ref()
        .map(|s| {
            s.groups
                .iter()
                .enumerate()
                .map(|(gi, g)| {
                    let others = s
                        .groups
                        .iter()
                        .enumerate()
                        .filter(|(gj, _)| *gj != gi)
                        .flat_map(|(_, o)| o.iter().map(|&i| nodes[i].id()))
                        .collect();
                    (g.clone(), others)
                })
                .collect()
        })
        .unwrap_or_default();
    let mut detected: Vec<Option<Duration>> = vec![None; sides.len()];
    let mut part_start: Option<Instant> = None;
    let mut part_end: Option<Instant> = None;
    let mut faults_end: Option<Instant> = None;
    let mut heal: Option<Duration> = None;
    let mut converged: Option<Duration> = None;
    let mut last_poll = t0;

    // Bounded: ends at the latest `deadline` after the end of the run.
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let hard_stop = t0 + p.duration + p.deadline + Duration::from_secs(1);
    while Instant::now() < hard_stop {
        interval.tick().await;
        let now = Instant::now();
        let t = now.saturating_duration_since(t0);
        if let Some(s) = &p.partition {
            if part_start.is_none() && t >= s.start {
                let groups: Vec<Vec<ChaosControl>> = s
                    .groups
                    .iter()
                    .map(|g| g.iter().map(|&i| controls[i].clone()).collect())
                    .collect();
                let refs: Vec<&[ChaosControl]> = groups.iter().map(|g| g.as_slice()).collect();
                chaos::partition(&refs);
                part_start = Some(now);
            }
            if let (Some(ps), None) = (part_start, part_end) {
                if t >= s.end {
                    chaos::heal_partition(controls);
                    part_end = Some(now);
                } else {
                    for (si, (side, others)) in sides.iter().enumerate() {
                        if detected[si].is_none() && side_detects(nodes, side, others) {
                            detected[si] = Some(now - ps);
                        }
                    }
                }
            }
        }
        if faults_end.is_none() && t >= p.duration {
            for ctl in controls {
                ctl.heal();
            }
            faults_end = Some(now);
        }
        let poll = now.duration_since(last_poll) >= Duration::from_millis(250);
        if poll {
            last_poll = now;
        }
        let (done_before_part_end, all_done) = {
            let mut tr = lock(&tracker);
            if poll {
                tr.poll_fallback(nodes, now);
            }
            (
                part_end.is_some_and(|pe| tr.complete_before(pe)),
                tr.incomplete.is_empty(),
            )
        };
        if let Some(pe) = part_end {
            if heal.is_none() && done_before_part_end && everyone_alive(nodes) {
                heal = Some(now - pe);
            }
        }
        if let Some(fe) = faults_end {
            if converged.is_none()
                && workload_done.load(Ordering::Relaxed)
                && all_done
                && everyone_alive(nodes)
            {
                converged = Some(now - fe);
                break;
            }
            if now.duration_since(fe) > p.deadline {
                break;
            }
        }
    }
    let t_end = Instant::now();

    // Results.
    let tr = lock(&tracker);
    report.writes = tr.writes.len();
    report.write_errors = errors.load(Ordering::Relaxed);
    report.writes_everywhere = tr.writes.len() - tr.incomplete.len();
    report.arrivals_by_polling = tr.polled;
    report.propagation = percentiles(tr.propagation(|_| true));
    if let Some(ps) = part_start {
        let pe = part_end.unwrap_or(t_end);
        let during = |at: Instant| at >= ps && at < pe;
        report.propagation_outside_partition = percentiles(tr.propagation(|at| !during(at)));
        report.propagation_during_partition = percentiles(tr.propagation(during));
    }
    report.partition_detection = sides
        .iter()
        .zip(&detected)
        .map(|((g, _), d)| Detection {
            group: g.iter().map(|i| i + 1).collect(),
            detected_ms: d.map(ms),
        })
        .collect();
    report.heal_ms = heal.map(ms);
    report.convergence_ms = converged.map(ms);
    report.converged = converged.is_some();
    if converged.is_none() {
        let mut why = Vec::new();
        for (i, x) in nodes.iter().enumerate() {
            let missing = tr.missing_on(i);
            let alive = x.alive_count();
            if missing > 0 || alive != n {
                why.push(format!(
                    "{} lacks {missing} writes and sees {alive}/{n} alive",
                    x.id()
                ));
            }
        }
        if !workload_done.load(Ordering::Relaxed) {
            why.push("the workload did not finish".to_string());
        }
        report.failure = Some(format!(
            "the cluster did not converge within {:.0} s after the faults ended: {}",
            p.deadline.as_secs_f64(),
            why.join("; ")
        ));
    }
    drop(tr);
    finish_traffic(&mut report, nodes, controls, Some((&before, t0)), t_end);
    report
}

fn finish_traffic(
    report: &mut Report,
    nodes: &[Node],
    controls: &[ChaosControl],
    since: Option<(&[TrafficSnap], Instant)>,
    end: Instant,
) {
    let zero = TrafficSnap {
        dgrams: 0,
        dgram_bytes: 0,
        sync_bytes: 0,
        chaos: ChaosStats::default(),
    };
    let secs = since
        .map(|(_, t0)| end.saturating_duration_since(t0).as_secs_f64())
        .unwrap_or(0.0);
    report.measured_s = (secs * 1000.0).round() / 1000.0;
    let rate = |a: u64, b: u64| {
        if secs > 0.0 {
            ((a.saturating_sub(b)) as f64 / secs * 10.0).round() / 10.0
        } else {
            0.0
        }
    };
    for (i, (x, ctl)) in nodes.iter().zip(controls).enumerate() {
        let now = snap(x, ctl);
        let b = since.map(|(s, _)| s[i]).unwrap_or(zero);
        report.traffic.push(NodeTraffic {
            node: x.id().to_string(),
            datagrams_sent_per_s: rate(now.dgrams, b.dgrams),
            datagram_bytes_sent_per_s: rate(now.dgram_bytes, b.dgram_bytes),
            sync_bytes_sent_per_s: rate(now.sync_bytes, b.sync_bytes),
            udp_datagrams_sent_per_s: rate(now.chaos.sent, b.chaos.sent),
            udp_bytes_sent_per_s: rate(now.chaos.sent_bytes, b.chaos.sent_bytes),
            chaos: now.chaos,
        });
        report.chaos_total = report.chaos_total.add(&now.chaos);
    }
}

fn fmt_ms(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.2} s", v / 1000.0)
    } else {
        format!("{v:.1} ms")
    }
}

fn fmt_pct(p: &Option<Percentiles>) -> String {
    match p {
        Some(p) => format!(
            "p50 {:>9}   p99 {:>9}   max {:>9}   ({} writes)",
            fmt_ms(p.p50_ms),
            fmt_ms(p.p99_ms),
            fmt_ms(p.max_ms),
            p.count
        ),
        None => "no complete writes".to_string(),
    }
}

fn group_names(g: &[usize]) -> String {
    g.iter()
        .map(|i| format!("n{i}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn print_report(r: &Report) {
    let f = &r.faults;
    println!(
        "  faults      loss {:.1} %, latency {} ms + jitter {} ms, duplicate {:.1} %",
        f.loss * 100.0,
        f.latency_ms,
        f.jitter_ms,
        f.duplicate * 100.0
    );
    if let Some(p) = &r.partition {
        let groups: Vec<String> = p.groups.iter().map(|g| group_names(g)).collect();
        println!(
            "  partition   {} from {:.1} s to {:.1} s",
            groups.join(" | "),
            p.start_s,
            p.end_s
        );
    }
    println!(
        "  workload    {} writes/s for {:.1} s on the nodes in turn; deadline {:.0} s",
        r.writes_per_sec, r.duration_s, r.deadline_s
    );
    println!();
    match r.join_ms {
        Some(j) => println!(
            "  join                    every node sees {} alive after {}",
            r.nodes,
            fmt_ms(j)
        ),
        None => println!("  join                    did not complete"),
    }
    if r.join_ms.is_none() {
        return;
    }
    println!(
        "  writes                  {} made, {} on every node{}",
        r.writes,
        r.writes_everywhere,
        if r.write_errors > 0 {
            format!(", {} refused", r.write_errors)
        } else {
            String::new()
        }
    );
    println!("  propagation (all)       {}", fmt_pct(&r.propagation));
    if r.partition.is_some() {
        println!(
            "    outside partition     {}",
            fmt_pct(&r.propagation_outside_partition)
        );
        println!(
            "    during partition      {}",
            fmt_pct(&r.propagation_during_partition)
        );
        for d in &r.partition_detection {
            println!(
                "  partition detection     {:<14} {}",
                group_names(&d.group),
                match d.detected_ms {
                    Some(v) => format!("sees the other side down after {}", fmt_ms(v)),
                    None => "not detected".to_string(),
                }
            );
        }
        println!(
            "  heal                    {}",
            match r.heal_ms {
                Some(v) => format!(
                    "{} after the partition ended (all alive, earlier writes everywhere)",
                    fmt_ms(v)
                ),
                None => "not healed".to_string(),
            }
        );
    }
    println!(
        "  convergence             {}",
        match r.convergence_ms {
            Some(v) if v < 1.0 => "already there when the faults ended".to_string(),
            Some(v) => format!("{} after the faults ended", fmt_ms(v)),
            None => "not converged".to_string(),
        }
    );
    if r.arrivals_by_polling > 0 {
        println!(
            "  ({} arrivals were timed by polling instead of events)",
            r.arrivals_by_polling
        );
    }
    println!();
    println!(
        "  per node, over {:.1} s   {:>9} {:>11} {:>11} {:>9} {:>11} {:>8} {:>8} {:>6}",
        r.measured_s, "dgram/s", "dgram B/s", "sync B/s", "udp/s", "udp B/s", "lost", "cut", "dup"
    );
    for t in &r.traffic {
        println!(
            "    {:<20} {:>9.1} {:>11.1} {:>11.1} {:>9.1} {:>11.1} {:>8} {:>8} {:>6}",
            t.node,
            t.datagrams_sent_per_s,
            t.datagram_bytes_sent_per_s,
            t.sync_bytes_sent_per_s,
            t.udp_datagrams_sent_per_s,
            t.udp_bytes_sent_per_s,
            t.chaos.dropped_loss,
            t.chaos.dropped_partition(),
            t.chaos.duplicated
        );
    }
    let c = &r.chaos_total;
    println!(
        "  chaos total             {} UDP datagrams sent, {} lost, {} cut by the partition, {} duplicated, {} delayed, {} send errors",
        c.sent,
        c.dropped_loss,
        c.dropped_partition(),
        c.duplicated,
        c.delayed,
        c.dropped_error
    );
    println!();
    if r.converged {
        println!(
            "result: converged — every write on every node and every node alive everywhere, within {} of the faults ending (deadline {:.0} s)",
            fmt_ms(r.convergence_ms.unwrap_or(0.0)),
            r.deadline_s
        );
    } else {
        println!("result: NOT converged");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn spec(s: &str, n: usize) -> Result<PartitionSpec, String> {
        parse_partition(s, n).map_err(|e| e.0)
    }

    #[test]
    fn parses_groups_and_times() {
        let p = spec("1,2/3,4,5@5s..20s", 5).unwrap();
        assert_eq!(p.groups, vec![vec![0, 1], vec![2, 3, 4]]);
        assert_eq!(p.start, Duration::from_secs(5));
        assert_eq!(p.end, Duration::from_secs(20));
        let p = spec("1/2/3@0ms..1.5s", 3).unwrap();
        assert_eq!(p.groups, vec![vec![0], vec![1], vec![2]]);
        assert_eq!(p.start, Duration::ZERO);
        assert_eq!(p.end, Duration::from_millis(1500));
        let p = spec(" 1 , 3 /2@250ms..500ms", 4).unwrap();
        assert_eq!(p.groups, vec![vec![0, 2], vec![1]]);
    }

    #[test]
    fn rejects_bad_partitions_naming_the_flag() {
        for (s, why) in [
            ("1,2/3,4,5", "GROUPS@START..END"),
            ("1,2/3@5s", "START..END"),
            ("1,2/3@5..20s", "unit"),
            ("1,2/3@5s..20", "unit"),
            ("1,2/3@20s..5s", "after the start"),
            ("1,2/3@5s..5s", "after the start"),
            ("1,2,3@5s..20s", "two groups"),
            ("1,2/6@5s..20s", "out of range"),
            ("0,2/3@5s..20s", "out of range"),
            ("1,2/2,3@5s..20s", "more than one group"),
            ("1,,2/3@5s..20s", "empty"),
            ("1,2//3@5s..20s", "empty"),
            ("a/3@5s..20s", "not a node number"),
            ("1/3@-1s..20s", "between 0 and 24 h"),
            ("1/3@xs..20s", "not a number"),
        ] {
            let e = spec(s, 5).unwrap_err();
            assert!(e.starts_with("--partition"), "{s}: {e}");
            assert!(e.contains(why), "{s}: {e:?} should mention {why:?}");
        }
    }

    #[derive(Debug, Parser)]
    struct Wrap {
        #[command(flatten)]
        args: TestArgs,
    }

    fn plan_of(flags: &[&str]) -> Result<Plan, String> {
        let mut argv = vec!["test"];
        argv.extend_from_slice(flags);
        plan(&Wrap::try_parse_from(argv).unwrap().args).map_err(|e| e.0)
    }

    #[test]
    fn flags_are_validated_naming_the_flag() {
        let p = plan_of(&["--partition", "1,2/3,4,5@5s..20s", "--seed", "7"]).unwrap();
        assert_eq!(p.duration, Duration::from_secs(30));
        assert_eq!(p.total_writes, 600);
        assert_eq!(p.seed, 7);
        assert_eq!(plan_of(&[]).unwrap().duration, Duration::from_secs(10));
        for (flags, name) in [
            (&["--loss", "1.5"][..], "--loss"),
            (&["--loss", "-0.1"][..], "--loss"),
            (&["--duplicate", "2"][..], "--duplicate"),
            (&["--nodes", "1"][..], "--nodes"),
            (
                &["--nodes", "3", "--partition", "1/4@1s..2s"][..],
                "--partition",
            ),
            (
                &["--partition", "1/2@1s..20s", "--duration", "10"][..],
                "--duration",
            ),
            (&["--writes-per-sec", "0"][..], "--writes-per-sec"),
            (&["--deadline", "0"][..], "--deadline"),
            (&["--latency", "20000"][..], "--latency"),
        ] {
            let e = plan_of(flags).unwrap_err();
            assert!(e.starts_with(name), "{flags:?}: {e}");
        }
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let p = percentiles(v).unwrap();
        assert_eq!(
            (p.p50_ms, p.p99_ms, p.max_ms, p.count),
            (50.0, 99.0, 100.0, 100)
        );
        assert!(percentiles(Vec::new()).is_none());
    }

    #[test]
    fn tracker_counts_completion_in_write_order() {
        let mut t = Tracker::new(2, 4);
        let t0 = Instant::now();
        t.register("a".into(), t0);
        t.register("b".into(), t0 + Duration::from_secs(1));
        assert!(!t.complete_before(t0 + Duration::from_millis(1)));
        t.arrived(0, 0, t0);
        assert!(!t.arrived(0, 0, t0), "an arrival counts once");
        t.arrived(0, 1, t0 + Duration::from_millis(5));
        assert!(t.complete_before(t0 + Duration::from_millis(1)));
        assert!(!t.complete_before(t0 + Duration::from_secs(2)));
        assert_eq!(t.propagation(|_| true), vec![Duration::from_millis(5)]);
        assert_eq!((t.missing_on(0), t.missing_on(1)), (1, 1));
    }
}
