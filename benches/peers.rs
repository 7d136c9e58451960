//! Peer comparison: gossamer and chitchat 0.13 (a Rust Scuttlebutt implementation) in one
//! run, on 127.0.0.1, with the same scenarios and equivalent settings.
//!
//! For each N (default 10, 25, 50) and each system: start N nodes in this process, all
//! seeded with the first; wait until every node sees all N alive; let the cluster settle;
//! measure idle traffic over a window; then write one key at a time on one node (nodes in
//! turn) and time it until every node has it. Both systems are measured the same way:
//! the write instant is taken just before the write call, and each node's arrival is the
//! instant its change notification runs (gossamer: `Node::subscribe` events; chitchat:
//! `Chitchat::subscribe_event` callbacks).
//!
//! Settings: both gossip every 200 ms (gossamer's default `gossip_interval_ms`; chitchat's
//! `gossip_interval` set to match) to 3 peers per round (gossamer's default `fanout`;
//! chitchat's fixed `GOSSIP_COUNT`). gossamer also pushes each new update to 3 peers at
//! once and runs anti-entropy every 2 s; chitchat's every round is a full digest exchange
//! (Syn, SynAck, Ack). chitchat runs protocol version V1 (compressed digests).
//!
//! gossamer is measured in its steady state: before the idle window it is warmed up with
//! writes until every node holds QUIC connections to most peers (see `warm_up`).
//!
//! Bytes are UDP payload bytes sent, counted for both in the same place: gossamer through
//! its `ChaosSocket` (fault-free; QUIC headers, encryption, ACKs and keep-alives included),
//! chitchat by wrapping its `UdpTransport` in a counting `Transport` (the
//! `SendOutcome::num_bytes_sent` of every datagram). IP and UDP headers are not counted
//! for either.
//!
//! Run: `cargo bench --bench peers` (options after `--`: `--nodes 10,25,50`,
//! `--writes 20`, `--idle 10`, `--interval-ms 200`, `--json FILE`).
//! Only chitchat's public API is used; nothing of it is copied.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chitchat::transport::{RecvOutcome, SendOutcome, Socket, Transport, UdpTransport};
use chitchat::{
    spawn_chitchat, ChitchatConfig, ChitchatEnvelope, ChitchatHandle, ChitchatId,
    FailureDetectorConfig, ProtocolVersion,
};
use gossamer::chaos::{ChaosControl, ChaosSocket};
use gossamer::core::{Config, Event};
use gossamer::local::LocalCluster;
use gossamer::node::Node;
use serde::Serialize;

/// Options (after `--` on the cargo command line).
#[derive(Debug, Clone)]
struct Opts {
    nodes: Vec<usize>,
    writes: usize,
    idle: Duration,
    interval: Duration,
    json: Option<String>,
}

fn opts() -> Opts {
    let mut o = Opts {
        nodes: vec![10, 25, 50],
        writes: 20,
        idle: Duration::from_secs(10),
        interval: Duration::from_millis(200),
        json: None,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    let value = |i: usize| -> &str {
        args.get(i + 1)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("{} needs a value", args[i]))
    };
    while i < args.len() {
        match args[i].as_str() {
            "--nodes" => {
                o.nodes = value(i)
                    .split(',')
                    .map(|s| s.trim().parse().expect("--nodes: comma-separated numbers"))
                    .collect();
                assert!(
                    o.nodes.iter().all(|&n| (2..=100).contains(&n)),
                    "--nodes: 2 to 100"
                );
                i += 1;
            }
            "--writes" => {
                o.writes = value(i).parse().expect("--writes: a number");
                assert!((1..=1_000).contains(&o.writes), "--writes: 1 to 1000");
                i += 1;
            }
            "--idle" => {
                let s: f64 = value(i).parse().expect("--idle: seconds");
                assert!(s > 0.0 && s <= 600.0, "--idle: 0 to 600 s");
                o.idle = Duration::from_secs_f64(s);
                i += 1;
            }
            "--interval-ms" => {
                let ms: u64 = value(i).parse().expect("--interval-ms: a number");
                assert!((10..=10_000).contains(&ms), "--interval-ms: 10 to 10000");
                o.interval = Duration::from_millis(ms);
                i += 1;
            }
            "--json" => {
                o.json = Some(value(i).to_string());
                i += 1;
            }
            // `cargo bench` passes `--bench`; filters and other flags are ignored.
            _ => {}
        }
        i += 1;
    }
    o
}

/// Arrival instants of the tracked writes on every node.
struct Book {
    n: usize,
    writes: HashMap<String, (Instant, Vec<Option<Instant>>, usize)>,
}

impl Book {
    fn new(n: usize) -> Arc<Mutex<Self>> {
        Arc::new(Mutex::new(Self {
            n,
            writes: HashMap::new(),
        }))
    }

    /// Registers a write about to be made on `writer` (which holds it from now on).
    fn register(&mut self, key: &str, writer: usize) {
        let now = Instant::now();
        let mut arr = vec![None; self.n];
        arr[writer] = Some(now);
        self.writes.insert(key.to_string(), (now, arr, self.n - 1));
    }

    fn arrived(&mut self, key: &str, node: usize, t: Instant) {
        if let Some((_, arr, left)) = self.writes.get_mut(key) {
            if arr[node].is_none() {
                arr[node] = Some(t);
                *left -= 1;
            }
        }
    }

    /// Write to last arrival (ms), once every node has it.
    fn done_ms(&self, key: &str) -> Option<f64> {
        let (at, arr, left) = self.writes.get(key)?;
        if *left > 0 {
            return None;
        }
        let last = arr.iter().flatten().max()?;
        Some(last.duration_since(*at).as_secs_f64() * 1000.0)
    }
}

fn lock(b: &Mutex<Book>) -> std::sync::MutexGuard<'_, Book> {
    b.lock().unwrap_or_else(|p| p.into_inner())
}

/// CPU time (user + system) of this process in seconds, from /proc/self/stat.
fn cpu_seconds() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    let f: Vec<&str> = s.rsplit_once(')')?.1.split_whitespace().collect();
    let t: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(t / 100.0)
}

/// What one system measured at one N.
#[derive(Debug, Clone, Serialize)]
struct Measured {
    system: &'static str,
    nodes: usize,
    join_s: f64,
    idle_bytes_per_node_s: f64,
    idle_datagrams_per_node_s: f64,
    idle_cpu_percent_per_node: Option<f64>,
    writes: usize,
    writes_everywhere: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

fn rank(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[i.clamp(1, v.len()) - 1]
}

/// Counters of one cluster at one instant: (UDP bytes, UDP datagrams, CPU s).
type Snap = (u64, u64, Option<f64>, Instant);

/// The part of a run both systems share: idle window, then single writes.
trait Cluster {
    fn n(&self) -> usize;
    fn snap(&self) -> Snap;
    /// Writes `key` on node `i`.
    async fn write(&self, i: usize, key: &str);
}

const JOIN_LIMIT: Duration = Duration::from_secs(120);
const WRITE_LIMIT: Duration = Duration::from_secs(30);
const SETTLE: Duration = Duration::from_secs(5);

async fn measure<C: Cluster>(
    system: &'static str,
    c: &C,
    book: &Arc<Mutex<Book>>,
    join_s: f64,
    o: &Opts,
) -> Measured {
    let n = c.n();
    tokio::time::sleep(SETTLE).await;
    let a = c.snap();
    tokio::time::sleep(o.idle).await;
    let b = c.snap();
    let dt = b.3.duration_since(a.3).as_secs_f64();
    let per = |x: u64, y: u64| (y - x) as f64 / n as f64 / dt;
    let cpu = match (a.2, b.2) {
        (Some(x), Some(y)) => Some((y - x) / dt / n as f64 * 100.0),
        _ => None,
    };
    let mut times = Vec::new();
    for k in 0..o.writes {
        let key = format!("w{k}");
        let writer = k % n;
        lock(book).register(&key, writer);
        c.write(writer, &key).await;
        let start = Instant::now();
        while start.elapsed() < WRITE_LIMIT {
            if let Some(ms) = lock(book).done_ms(&key) {
                times.push(ms);
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        eprint!(".");
        // Let retransmissions of this write die down before the next one.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!();
    let everywhere = times.len();
    Measured {
        system,
        nodes: n,
        join_s,
        idle_bytes_per_node_s: per(a.0, b.0),
        idle_datagrams_per_node_s: per(a.1, b.1),
        idle_cpu_percent_per_node: cpu,
        writes: o.writes,
        writes_everywhere: everywhere,
        p50_ms: rank(&mut times, 50.0),
        p99_ms: rank(&mut times, 99.0),
        max_ms: rank(&mut times, 100.0),
    }
}

// ---------------------------------------------------------------------------------------
// gossamer

struct Gossamer {
    nodes: Vec<Node>,
    controls: Vec<ChaosControl>,
}

impl Cluster for Gossamer {
    fn n(&self) -> usize {
        self.nodes.len()
    }

    fn snap(&self) -> Snap {
        let (mut bytes, mut dgrams) = (0, 0);
        for c in &self.controls {
            let s = c.stats();
            bytes += s.sent_bytes;
            dgrams += s.sent;
        }
        (bytes, dgrams, cpu_seconds(), Instant::now())
    }

    async fn write(&self, i: usize, key: &str) {
        self.nodes[i]
            .set(key, b"value".to_vec())
            .expect("gossamer write");
    }
}

async fn run_gossamer(n: usize, o: &Opts) -> Measured {
    let cfg = Config {
        fanout: 3,
        gossip_interval_ms: o.interval.as_millis() as u64,
        seed_backoff_floor_ms: 200,
        seed_backoff_cap_ms: 2_000,
        ..Config::default()
    };
    let mut c = LocalCluster::start(0, n, cfg).await.expect("certificates");
    let start = Instant::now();
    let mut controls = Vec::new();
    for i in 1..=n {
        let (sock, ctl) =
            ChaosSocket::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), i as u64).expect("bind");
        let cfg = c.config(i, c.seed_addrs());
        c.start_with_socket(cfg, sock).await.expect("node starts");
        controls.push(ctl);
    }
    let nodes = c.nodes.clone();
    while !nodes.iter().all(|x| x.alive_count() == n) {
        assert!(start.elapsed() < JOIN_LIMIT, "gossamer: N={n} did not join");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let join_s = start.elapsed().as_secs_f64();
    warm_up(&nodes).await;
    let book = Book::new(n);
    let mut watchers = tokio::task::JoinSet::new();
    for (i, node) in nodes.iter().enumerate() {
        let mut rx = node.subscribe();
        let book = book.clone();
        watchers.spawn(async move {
            while let Ok(ev) = rx.recv().await {
                if let Event::Kv { entry, .. } = ev {
                    lock(&book).arrived(&entry.key, i, Instant::now());
                }
            }
        });
    }
    let g = Gossamer { nodes, controls };
    let m = measure("gossamer", &g, &book, join_s, o).await;
    watchers.abort_all();
    for node in &g.nodes {
        node.shutdown().await;
    }
    m
}

/// Brings gossamer to its steady state before measuring: writes (20 per second) until
/// nodes hold connections to 90 % of their peers, as a long-running cluster does (QUIC
/// keep-alives hold connections open), so that TLS handshakes are not what is timed.
/// chitchat needs no such step: it has no connections.
async fn warm_up(nodes: &[Node]) {
    let n = nodes.len();
    let start = Instant::now();
    let mut k = 0;
    while start.elapsed() < Duration::from_secs(60) {
        let conns: usize = nodes
            .iter()
            .map(|x| x.members().iter().filter(|m| m.rtt_ms.is_some()).count())
            .sum();
        if conns * 10 >= n * (n - 1) * 9 {
            return;
        }
        for _ in 0..20 {
            let _ = nodes[k % n].set(&format!("warmup/{k}"), vec![0; 32]);
            k += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    eprint!("(warm-up: mesh below 90 % after 60 s) ");
}

// ---------------------------------------------------------------------------------------
// chitchat

/// chitchat's UDP transport with every datagram sent counted.
struct CountingTransport {
    bytes: Arc<AtomicU64>,
    datagrams: Arc<AtomicU64>,
}

struct CountingSocket {
    inner: Box<dyn Socket>,
    bytes: Arc<AtomicU64>,
    datagrams: Arc<AtomicU64>,
}

#[async_trait]
impl Transport for CountingTransport {
    async fn open(&self, listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let inner = UdpTransport.open(listen_addr).await?;
        Ok(Box::new(CountingSocket {
            inner,
            bytes: self.bytes.clone(),
            datagrams: self.datagrams.clone(),
        }))
    }
}

#[async_trait]
impl Socket for CountingSocket {
    fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        self.inner.local_addr()
    }

    async fn send(
        &mut self,
        to: SocketAddr,
        envelope: ChitchatEnvelope,
    ) -> anyhow::Result<SendOutcome> {
        let out = self.inner.send(to, envelope).await?;
        self.bytes
            .fetch_add(out.num_bytes_sent as u64, Ordering::Relaxed);
        self.datagrams.fetch_add(1, Ordering::Relaxed);
        Ok(out)
    }

    async fn recv(&mut self) -> anyhow::Result<RecvOutcome> {
        self.inner.recv().await
    }
}

struct Chitchat {
    handles: Vec<ChitchatHandle>,
    bytes: Arc<AtomicU64>,
    datagrams: Arc<AtomicU64>,
}

impl Cluster for Chitchat {
    fn n(&self) -> usize {
        self.handles.len()
    }

    fn snap(&self) -> Snap {
        (
            self.bytes.load(Ordering::Relaxed),
            self.datagrams.load(Ordering::Relaxed),
            cpu_seconds(),
            Instant::now(),
        )
    }

    async fn write(&self, i: usize, key: &str) {
        self.handles[i]
            .chitchat()
            .lock()
            .await
            .self_node_state()
            .set(format!("bench/{key}"), "value");
    }
}

/// Free loopback UDP ports: chitchat advertises the address it binds, so the port must be
/// known before it starts (the sockets are released just before the nodes bind them).
fn free_ports(n: usize) -> Vec<SocketAddr> {
    let socks: Vec<std::net::UdpSocket> = (0..n)
        .map(|_| std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind"))
        .collect();
    socks
        .iter()
        .map(|s| s.local_addr().expect("local address"))
        .collect()
}

async fn run_chitchat(n: usize, o: &Opts) -> Measured {
    let transport = CountingTransport {
        bytes: Arc::new(AtomicU64::new(0)),
        datagrams: Arc::new(AtomicU64::new(0)),
    };
    let addrs = free_ports(n);
    let book = Book::new(n);
    let start = Instant::now();
    let mut handles = Vec::new();
    let mut listeners = Vec::new();
    for (i, addr) in addrs.iter().enumerate() {
        let config = ChitchatConfig {
            chitchat_id: ChitchatId::new(format!("n{}", i + 1), 0, *addr),
            cluster_id: "bench".into(),
            gossip_interval: o.interval,
            listen_addr: *addr,
            seed_nodes: vec![addrs[0].to_string()],
            failure_detector_config: FailureDetectorConfig::default(),
            marked_for_deletion_grace_period: Duration::from_secs(3_600),
            catchup_callback: None,
            extra_liveness_predicate: None,
            protocol_version: ProtocolVersion::V1,
        };
        let h = spawn_chitchat(config, Vec::new(), &transport)
            .await
            .expect("chitchat starts");
        let b = book.clone();
        let listener = h
            .chitchat()
            .lock()
            .await
            .subscribe_event("bench/", move |ev| {
                lock(&b).arrived(ev.key, i, Instant::now());
            });
        listeners.push(listener);
        handles.push(h);
    }
    loop {
        let mut joined = true;
        for h in &handles {
            if h.chitchat().lock().await.live_nodes().count() < n {
                joined = false;
                break;
            }
        }
        if joined {
            break;
        }
        assert!(start.elapsed() < JOIN_LIMIT, "chitchat: N={n} did not join");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let join_s = start.elapsed().as_secs_f64();
    let c = Chitchat {
        handles,
        bytes: transport.bytes.clone(),
        datagrams: transport.datagrams.clone(),
    };
    let m = measure("chitchat", &c, &book, join_s, o).await;
    drop(listeners);
    for h in c.handles {
        let _ = h.shutdown().await;
    }
    m
}

// ---------------------------------------------------------------------------------------

fn main() {
    let o = opts();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    println!(
        "peer comparison on 127.0.0.1: gossamer {} vs chitchat 0.13; both gossip every {} ms to 3 peers \
         (gossamer: fanout 3, tree push of updates, ids in gossip rounds, anti-entropy every 2 s; chitchat: GOSSIP_COUNT 3, protocol V1); \
         {} single writes per N, idle window {} s; bytes = UDP payload sent",
        env!("CARGO_PKG_VERSION"),
        o.interval.as_millis(),
        o.writes,
        o.idle.as_secs_f64()
    );
    let mut rows: Vec<(Measured, Measured)> = Vec::new();
    rt.block_on(async {
        for &n in &o.nodes {
            eprint!("N={n} gossamer ");
            let g = run_gossamer(n, &o).await;
            eprint!("N={n} chitchat ");
            let c = run_chitchat(n, &o).await;
            rows.push((g, c));
        }
    });
    println!(
        "\n{:>4} {:<9} {:>7} | {:>8} {:>8} {:>8} | {:>9} {:>8} {:>7} | {:>6}",
        "N",
        "system",
        "join s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "idle B/s",
        "idle d/s",
        "cpu %",
        "writes"
    );
    for (g, c) in &rows {
        for m in [g, c] {
            println!(
                "{:>4} {:<9} {:>7.2} | {:>8.1} {:>8.1} {:>8.1} | {:>9.0} {:>8.2} {:>7} | {:>3}/{:<3}",
                m.nodes,
                m.system,
                m.join_s,
                m.p50_ms,
                m.p99_ms,
                m.max_ms,
                m.idle_bytes_per_node_s,
                m.idle_datagrams_per_node_s,
                m.idle_cpu_percent_per_node
                    .map(|x| format!("{x:.2}"))
                    .unwrap_or_else(|| "n/a".into()),
                m.writes_everywhere,
                m.writes
            );
        }
    }
    println!(
        "\nratios (per node; propagation: chitchat / gossamer, higher = gossamer faster; idle bytes: gossamer / chitchat, lower = gossamer cheaper)"
    );
    println!(
        "{:>4} | {:>9} {:>9} {:>9} | {:>10} {:>10}",
        "N", "p50 x", "p99 x", "max x", "idle B", "idle dgram"
    );
    for (g, c) in &rows {
        println!(
            "{:>4} | {:>9.1} {:>9.1} {:>9.1} | {:>10.2} {:>10.2}",
            g.nodes,
            c.p50_ms / g.p50_ms,
            c.p99_ms / g.p99_ms,
            c.max_ms / g.max_ms,
            g.idle_bytes_per_node_s / c.idle_bytes_per_node_s,
            g.idle_datagrams_per_node_s / c.idle_datagrams_per_node_s
        );
    }
    if let Some(path) = &o.json {
        let all: Vec<&Measured> = rows.iter().flat_map(|(g, c)| [g, c]).collect();
        std::fs::write(
            path,
            serde_json::to_string_pretty(&all).expect("serialisable"),
        )
        .expect("writing --json");
        println!("\nJSON written to {path}");
    }
}
