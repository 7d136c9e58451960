//! Deterministic discrete-event simulator: many [`Engine`]s, virtual time, one seeded
//! random generator, and a network model with latency, jitter, loss, duplication,
//! reordering (through jitter), bandwidth, partitions, crashes, restarts and clock skew.
//!
//! The same seed gives the same run, event for event: every random choice comes from
//! generators seeded from [`SimConfig::seed`], events are ordered by (time, sequence
//! number), and nothing iterates a hash map.

mod authority;
mod durable;
mod events;
mod exchange;
mod network;
mod oracle;
mod queries;
mod scenario;
mod topology;
mod traffic;
mod writes;

pub use scenario::{
    compare_table, BandwidthSummary, DurabilitySpec, FaultSpec, NetworkSpec, PropertiesSpec,
    PropertyResult, Report, Scenario, ScenarioError, WorkloadSpec,
};

pub use authority::SimAuthority;
pub use durable::{SimDurability, PEER_COMMIT_US};
pub use events::EventLog;
pub use queries::{LoggedReply, QueryLog};
pub use topology::{Datacenter, Topology, WanTraffic};

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::core::engine::{Event as EngineEvent, Output, Persisted};
use crate::core::membership::Change;
use crate::core::proto::{
    encoded_len, Datagram, MemberInfo, MemberStatus, SyncFrame, SyncKind, DATAGRAM_OVERHEAD,
};
use crate::core::{Config, Engine, NodeId, Now};
use exchange::{Pace, SyncState};
pub use network::NetModel;
pub use oracle::LiveDiff;
pub use traffic::{EgressWindow, NodeTraffic};
pub use writes::TrackedWrite;

/// Wall clock at virtual time zero (ms since the UNIX epoch).
pub const SIM_EPOCH_MS: u64 = 1_700_000_000_000;

/// How a simulation starts.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Number of nodes.
    pub nodes: usize,
    /// Seed of every random choice.
    pub seed: u64,
    /// Protocol configuration of every node.
    pub gossip: Config,
    /// Network model.
    pub net: NetModel,
    /// Nodes start over this window (µs), each at a random instant, seeded with node 0.
    pub join_window_us: u64,
    /// Start every node at time 0 already joined (a warm start: each table is preloaded
    /// with every member) instead of joining through node 0 over the join window.
    pub joined: bool,
}

/// Counters of a run.
#[derive(Debug, Clone, Default)]
pub struct SimStats {
    /// Events processed.
    pub events: u64,
    /// Datagrams lost by the loss model.
    pub lost: u64,
    /// Datagrams dropped by a partition or a down node.
    pub cut: u64,
    /// Datagrams duplicated.
    pub duplicated: u64,
    /// Anti-entropy exchanges completed.
    pub syncs: u64,
    /// Exchanges that failed (partition, crash, refused frame).
    pub syncs_failed: u64,
    /// Exchanges abandoned on a frame the protocol does not allow (core::sync).
    pub syncs_refused: u64,
    /// Of those, peers whose first listed member was not themselves.
    pub identity_mismatches: u64,
    /// Writers reported (once per observer) for stamps beyond the drift bound.
    pub clock_ahead_told: u64,
    /// Membership events declaring a healthy, reachable node suspect or dead.
    pub false_suspicions: u64,
    /// Same, declaring it dead.
    pub false_failures: u64,
    /// Events bringing a node that is down back to alive (or joining it) somewhere:
    /// ghosts.
    pub ghosts: u64,
    /// Simulated commits to the nodes' data directories.
    pub commits: u64,
    /// Dots issued a second time with other content (must stay 0).
    pub dots_reused: u64,
    /// Local writes acknowledged (committed, with sync durability).
    pub writes_acked: u64,
}

/// When each observer declared a crashed node suspect and dead.
#[derive(Debug, Clone)]
pub struct Detection {
    /// The crashed node.
    pub node: usize,
    /// When it crashed (µs).
    pub crashed_us: u64,
    /// Per observer: first suspicion (µs after the crash).
    pub suspected_after_us: BTreeMap<usize, u64>,
    /// Per observer: declared dead (µs after the crash).
    pub dead_after_us: BTreeMap<usize, u64>,
}

struct SimNode {
    id: NodeId,
    engine: Option<Engine>,
    epoch: u64,
    skew_ms: i64,
    /// Extra one-way delay on everything this node sends and receives (µs).
    slow_us: u64,
    timer_at: Option<u64>,
    saved: Option<Persisted>,
    /// The data directory: what the last simulated commit left on disk.
    image: Option<durable::DurableImage>,
    /// Next periodic commit (µs).
    next_commit_us: u64,
    egress_free_us: u64,
    traffic: NodeTraffic,
}

enum Ev {
    Start(usize),
    /// Node `.0`'s engine timer, armed for `.1` (µs); stale if re-armed since.
    Timer(usize, u64),
    Datagram {
        from: usize,
        to: usize,
        epoch: u64,
        dg: Datagram,
    },
    /// One turn of a sync exchange arrives at `to`.
    SyncTurn {
        id: u64,
        to: usize,
        frames: Vec<SyncFrame>,
    },
    /// A sync or contact attempt that cannot complete fails at `node` after a timeout.
    SyncFail {
        id: u64,
    },
    /// A sync turn waiting for the sender's bandwidth tokens.
    SyncPace(Pace),
    /// An action scheduled by the caller.
    Action(Action),
}

/// Something scheduled to happen to the cluster.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Split the cluster: nodes in different groups cannot talk. Nodes not listed form
    /// one more group together.
    Partition(Vec<Vec<usize>>),
    /// Remove every partition.
    Heal,
    /// Stop a node (its in-flight traffic is lost).
    Crash(usize),
    /// Start a crashed node again, with or without its persisted state.
    Restart {
        /// Node index.
        node: usize,
        /// Keep what it had saved.
        keep_state: bool,
    },
    /// Make a node slow: everything it sends or receives is delayed by `ms` more.
    Slow {
        /// Node index.
        node: usize,
        /// Extra delay (ms).
        ms: u64,
    },
    /// Set a node's clock offset (ms).
    Skew {
        /// Node index.
        node: usize,
        /// Offset in ms.
        ms: i64,
    },
    /// Replace the network model.
    Net(NetModel),
    /// A write of `value` to `key` on `node`.
    Write {
        /// Node index.
        node: usize,
        /// Key.
        key: String,
        /// Value (`None`: delete).
        value: Option<Vec<u8>>,
    },
}

/// An event with its firing time; the heap pops the earliest, ties by insertion order.
struct Scheduled {
    at_us: u64,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Scheduled {
    fn eq(&self, o: &Self) -> bool {
        (self.at_us, self.seq) == (o.at_us, o.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        Reverse((self.at_us, self.seq)).cmp(&Reverse((o.at_us, o.seq)))
    }
}

/// Rewrites a turn of sync frames a hostile node sends (see [`Sim::tamper_sync_frames`]).
pub type FrameTamper = Box<dyn FnMut(&mut Vec<SyncFrame>)>;

/// The simulator.
pub struct Sim {
    now_us: u64,
    seq: u64,
    queue: BinaryHeap<Scheduled>,
    rng: ChaCha8Rng,
    nodes: Vec<SimNode>,
    cfg: SimConfig,
    group: Vec<u32>,
    syncs: BTreeMap<u64, SyncState>,
    next_sync: u64,
    /// Nodes whose sync frames are rewritten on the way out (hostile members).
    tamper: BTreeMap<usize, FrameTamper>,
    writes: Vec<TrackedWrite>,
    pending_writes: Vec<usize>,
    write_by_dot: BTreeMap<(NodeId, u64), usize>,
    next_sweep_us: u64,
    stats: SimStats,
    trace: u64,
    words: usize,
    detections: Vec<Detection>,
    /// Datacenters, if the run has them (topology.rs).
    topo: Option<topology::Placed>,
    wan: WanTraffic,
    /// Per write, per datacenter: when its last node first held the write.
    dc_arrive: Vec<Vec<u64>>,
    /// How nodes persist (default: sync).
    durability: SimDurability,
    /// Every dot ever issued → a hash of its key and value (dot reuse check).
    issued: BTreeMap<(NodeId, u64), u64>,
    /// Every acknowledged write, when the run checks replicas against them (oracle.rs).
    oracle: Option<oracle::Oracle>,
    /// User events sent and delivered (events.rs).
    events: EventLog,
    /// Queries asked, their replies and reports (queries.rs).
    queries: QueryLog,
}

const SYNC_FAIL_US: u64 = 1_000_000;
/// Above this many writes in flight, a node's changes mark writes by dot rather than
/// by scanning every pending write.
const MARK_SCAN_MAX: usize = 2_048;
/// Period of the full sweep while many writes are in flight (µs).
const SWEEP_US: u64 = 1_000_000;

fn fnv(h: &mut u64, x: u64) {
    for b in x.to_le_bytes() {
        *h ^= b as u64;
        *h = h.wrapping_mul(0x0100_0000_01b3);
    }
}

/// Node id of the simulator's `i`-th node.
pub fn sim_id(i: usize) -> NodeId {
    NodeId::new(&format!("n{i}")).expect("valid id")
}

fn sim_addr(i: usize) -> String {
    format!("sim-{i}:7946")
}

fn parse_addr(a: &str) -> Option<usize> {
    a.strip_prefix("sim-")?.strip_suffix(":7946")?.parse().ok()
}

impl Sim {
    /// A simulation with every node scheduled to start within the join window.
    pub fn new(cfg: SimConfig) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let nodes = (0..cfg.nodes)
            .map(|i| SimNode {
                id: sim_id(i),
                engine: None,
                epoch: 0,
                skew_ms: 0,
                slow_us: 0,
                timer_at: None,
                saved: None,
                image: None,
                next_commit_us: 0,
                egress_free_us: 0,
                traffic: NodeTraffic::default(),
            })
            .collect();
        let mut sim = Self {
            now_us: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            nodes,
            group: vec![0; cfg.nodes],
            syncs: BTreeMap::new(),
            next_sync: 0,
            tamper: BTreeMap::new(),
            writes: Vec::new(),
            pending_writes: Vec::new(),
            write_by_dot: BTreeMap::new(),
            next_sweep_us: 0,
            stats: SimStats::default(),
            trace: 0xcbf2_9ce4_8422_2325,
            words: cfg.nodes.div_ceil(64),
            detections: Vec::new(),
            topo: None,
            wan: WanTraffic::default(),
            dc_arrive: Vec::new(),
            durability: SimDurability::default(),
            issued: BTreeMap::new(),
            oracle: None,
            events: EventLog::default(),
            queries: QueryLog::default(),
            rng: ChaCha8Rng::seed_from_u64(0),
            cfg,
        };
        if sim.cfg.joined {
            sim.start_joined();
            sim.rng = rng;
            return sim;
        }
        for i in 0..sim.cfg.nodes {
            let at = if i == 0 || sim.cfg.join_window_us == 0 {
                0
            } else {
                rng.random_range(0..sim.cfg.join_window_us)
            };
            sim.schedule(at, Ev::Start(i));
        }
        sim.rng = rng;
        sim
    }

    /// Starts every node at once, already joined: each engine is given every other
    /// node's state as anti-entropy would have brought it (`Engine::preload_members`).
    /// Every table holds the same shared states, so memory per table entry is small.
    fn start_joined(&mut self) {
        for i in 0..self.nodes.len() {
            self.start_node(i, None);
        }
        let states: Vec<_> = self
            .nodes
            .iter()
            .filter_map(|n| n.engine.as_ref().map(|e| e.members().me().clone()))
            .collect();
        for i in 0..self.nodes.len() {
            let now = self.now_of(i);
            if let Some(e) = self.nodes[i].engine.as_mut() {
                e.preload_members(now, states.iter().cloned());
            }
            self.drain(i);
        }
    }

    fn schedule(&mut self, at_us: u64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Scheduled {
            at_us,
            seq: self.seq,
            ev,
        });
    }

    /// Schedules an action at virtual time `at_us`.
    pub fn schedule_action(&mut self, at_us: u64, a: Action) {
        self.schedule(at_us, Ev::Action(a));
    }

    /// Current virtual time (µs).
    pub fn now_us(&self) -> u64 {
        self.now_us
    }

    fn now_of(&self, i: usize) -> Now {
        let wall = (SIM_EPOCH_MS + self.now_us / 1000) as i64 + self.nodes[i].skew_ms;
        Now::new(self.now_us, wall.max(0) as u64)
    }

    /// The engine of node `i`, if it is up.
    pub fn engine(&self, i: usize) -> Option<&Engine> {
        self.nodes[i].engine.as_ref()
    }

    /// The signing keys of node `i` (a lying member signs in its own name with them).
    pub fn authority_of(&self, i: usize) -> SimAuthority {
        SimAuthority::new(self.cfg.seed, self.nodes[i].id.clone())
    }

    /// Number of nodes (up or down).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True for a simulation without nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Counters.
    pub fn stats(&self) -> &SimStats {
        &self.stats
    }

    /// Traffic sent by node `i`.
    pub fn traffic(&self, i: usize) -> &NodeTraffic {
        &self.nodes[i].traffic
    }

    /// Every tracked write.
    pub fn writes(&self) -> &[TrackedWrite] {
        &self.writes
    }

    /// A hash of every event processed so far: equal seeds give equal hashes.
    pub fn trace_hash(&self) -> u64 {
        self.trace
    }

    /// True if `a` and `b` can talk.
    pub fn reachable(&self, a: usize, b: usize) -> bool {
        self.group[a] == self.group[b]
    }

    /// Runs every event up to and including virtual time `until_us`.
    pub fn run_until(&mut self, until_us: u64) {
        while self.queue.peek().is_some_and(|s| s.at_us <= until_us) {
            let Some(Scheduled { at_us: t, ev, .. }) = self.queue.pop() else {
                break;
            };
            self.now_us = t;
            self.stats.events += 1;
            fnv(&mut self.trace, t);
            self.handle(ev);
            if self.pending_writes.len() > MARK_SCAN_MAX && t >= self.next_sweep_us {
                self.next_sweep_us = t + SWEEP_US;
                self.sweep_writes();
            }
        }
        self.now_us = self.now_us.max(until_us);
        self.sweep_writes();
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Start(i) => self.start_node(i, None),
            Ev::Timer(i, at) => {
                if self.nodes[i].timer_at != Some(at) {
                    // Superseded by an earlier arming (or the node restarted): firing it
                    // too would re-arm a second timer chain beside the live one.
                    return;
                }
                self.nodes[i].timer_at = None;
                let now = self.now_of(i);
                let loss = self.nodes[i].traffic.loss_report(now.mono_us);
                if let Some(e) = self.nodes[i].engine.as_mut() {
                    if let Some((sent, lost)) = loss {
                        e.observe_path_loss(now.mono_us, sent, lost);
                    }
                    if e.poll_timeout() <= now.mono_us {
                        e.handle_timeout(now);
                    }
                    fnv(&mut self.trace, 1 + i as u64);
                    self.drain(i);
                }
            }
            Ev::Datagram {
                from,
                to,
                epoch,
                dg,
            } => {
                if self.nodes[to].epoch != epoch || !self.reachable(from, to) {
                    self.stats.cut += 1;
                    self.nodes[from].traffic.datagrams_lost += 1;
                    return;
                }
                let now = self.now_of(to);
                let from_id = self.nodes[from].id.clone();
                if let Some(e) = self.nodes[to].engine.as_mut() {
                    fnv(&mut self.trace, (from as u64) << 32 | to as u64);
                    e.handle_datagram(now, &from_id, dg);
                    self.drain(to);
                } else {
                    self.stats.cut += 1;
                }
            }
            Ev::SyncTurn { id, to, frames } => self.sync_turn(id, to, frames),
            Ev::SyncFail { id } => self.sync_fail(id),
            Ev::SyncPace(p) => {
                let alive = self.syncs.get(&p.id).is_some_and(|s| self.sync_alive(s));
                if alive {
                    self.pace_turn(p);
                } else if self.syncs.contains_key(&p.id) {
                    self.sync_fail(p.id);
                }
            }
            Ev::Action(a) => self.act(a),
        }
    }

    fn start_node(&mut self, i: usize, persisted: Option<Persisted>) {
        match &persisted {
            None => {
                for w in &mut self.writes {
                    w.have[i / 64] &= !(1u64 << (i % 64));
                }
            }
            Some(p) => {
                // What the node held but had not committed is gone.
                for w in &mut self.writes {
                    if !p.store.ctx.contains(&w.dot.0, w.dot.1) {
                        w.have[i / 64] &= !(1u64 << (i % 64));
                    }
                }
            }
        }
        for &w in &self.pending_writes {
            if !self.writes[w].has(i) {
                self.writes[w].missing += 1;
            }
        }
        let dc_name = self.dc_name(i);
        let n = &mut self.nodes[i];
        n.epoch += 1;
        let me = MemberInfo {
            id: n.id.clone(),
            addr: sim_addr(i),
            dc: dc_name,
            zone: String::new(),
            tags: Default::default(),
        };
        let seeds = if i == 0 {
            Vec::new()
        } else {
            vec![sim_addr(0)]
        };
        let seed = self.cfg.seed ^ ((i as u64 + 1) << 20) ^ (n.epoch << 48);
        let now = self.now_of(i);
        let mut engine = Engine::new(self.cfg.gossip.clone(), me, seeds, seed, now, persisted);
        engine.set_authority(Box::new(self.authority_of(i)));
        self.nodes[i].engine = Some(engine);
        self.start_persistence(i);
        self.drain(i);
    }

    fn act(&mut self, a: Action) {
        match a {
            Action::Partition(groups) => {
                self.group = vec![0; self.nodes.len()];
                for (g, members) in groups.iter().enumerate() {
                    for &m in members {
                        if m < self.group.len() {
                            self.group[m] = g as u32 + 1;
                        }
                    }
                }
            }
            Action::Heal => self.group = vec![0; self.nodes.len()],
            Action::Crash(i) => {
                let Some(e) = self.nodes[i].engine.take() else {
                    return;
                };
                self.detections.push(Detection {
                    node: i,
                    crashed_us: self.now_us,
                    suspected_after_us: BTreeMap::new(),
                    dead_after_us: BTreeMap::new(),
                });
                // A crash keeps what was committed, not what the engine held.
                drop(e);
                self.nodes[i].saved = self.nodes[i]
                    .image
                    .as_ref()
                    .and_then(|img| img.to_persisted());
                self.nodes[i].epoch += 1;
                self.nodes[i].timer_at = None;
                // A down node is no longer waited for.
                let now = self.now_us;
                let writes = &mut self.writes;
                self.pending_writes.retain(|&w| {
                    let tw = &mut writes[w];
                    if !tw.has(i) {
                        tw.missing -= 1;
                    }
                    if tw.missing == 0 {
                        tw.done_us = Some(now);
                    }
                    tw.missing > 0
                });
            }
            Action::Restart { node, keep_state } => {
                if self.nodes[node].engine.is_some() {
                    return;
                }
                let saved = self.nodes[node].saved.take();
                if !keep_state {
                    // A new, empty data directory.
                    self.nodes[node].image = None;
                }
                self.start_node(node, if keep_state { saved } else { None });
            }
            Action::Skew { node, ms } => self.nodes[node].skew_ms = ms,
            Action::Slow { node, ms } => self.nodes[node].slow_us = ms * 1000,
            Action::Net(m) => self.cfg.net = m,
            Action::Write { node, key, value } => self.write(node, &key, value),
        }
    }

    fn drain(&mut self, i: usize) {
        let mut outs = Vec::new();
        let mut changed = false;
        let mut dots: Vec<(NodeId, u64)> = Vec::new();
        if let Some(e) = self.nodes[i].engine.as_mut() {
            while let Some(o) = e.poll_output() {
                outs.push(o);
            }
        }
        for o in outs {
            match o {
                Output::Datagram { addr, datagram, .. } => self.send_to(i, &addr, datagram, false),
                Output::Reliable { addr, datagram, .. } => self.send_to(i, &addr, datagram, true),
                Output::Sync { addr, .. } => {
                    if let Some(t) = parse_addr(&addr) {
                        self.start_sync(i, t, SyncKind::Periodic, None);
                    }
                }
                Output::Contact { seed, addr } => match parse_addr(&addr) {
                    Some(t) if t == i => {
                        let now = self.now_of(i);
                        let id = self.nodes[i].id.clone();
                        if let Some(e) = self.nodes[i].engine.as_mut() {
                            e.seed_result(now, seed, Some(id));
                        }
                    }
                    Some(t) => self.start_sync(i, t, SyncKind::Join, Some(seed)),
                    None => {}
                },
                Output::Event(ev) => match ev {
                    EngineEvent::Kv { entry, .. } => {
                        changed = true;
                        let c = entry.vv.get(&entry.writer);
                        dots.push((entry.writer, c));
                    }
                    EngineEvent::Member(Change::Updated { new, .. }) => {
                        self.observe_member(i, &new.info.addr, new.status);
                    }
                    EngineEvent::Member(Change::Joined(st)) => {
                        self.observe_member(i, &st.info.addr, st.status);
                    }
                    EngineEvent::Member(_) => {}
                    EngineEvent::ClockAhead { .. } => self.stats.clock_ahead_told += 1,
                    EngineEvent::User(e) => self.events.record(i, &e, self.now_us),
                    ev @ (EngineEvent::Query(_)
                    | EngineEvent::QueryReply { .. }
                    | EngineEvent::QueryDone { .. }) => self.on_query_event(i, ev),
                },
            }
        }
        if changed {
            if self.pending_writes.len() > MARK_SCAN_MAX {
                // Many writes in flight (a storm): mark just the writes whose entries
                // arrived; syncs and the periodic sweep catch the rest.
                self.mark_dots(i, &dots);
            } else {
                self.mark_node(i);
            }
        }
        self.answer_queries(i);
        self.periodic_commit(i);
        // Re-arm the timer if the engine now wants to run earlier.
        if let Some(e) = self.nodes[i].engine.as_ref() {
            let t = e.poll_timeout().max(self.now_us);
            if self.nodes[i].timer_at.is_none_or(|at| t < at) {
                self.nodes[i].timer_at = Some(t);
                self.schedule(t, Ev::Timer(i, t));
            }
        }
    }

    /// Bookkeeping of what observer `i` now believes about the node at `addr`.
    fn observe_member(&mut self, i: usize, addr: &str, status: MemberStatus) {
        let Some(j) = parse_addr(addr) else { return };
        let up = self.nodes[j].engine.is_some();
        // A node made slow on purpose is not "healthy": suspecting it is no false alarm.
        let healthy = up && self.nodes[j].slow_us == 0;
        match status {
            MemberStatus::Suspect | MemberStatus::Dead if healthy && self.reachable(i, j) => {
                if status == MemberStatus::Dead {
                    self.stats.false_failures += 1;
                } else {
                    self.stats.false_suspicions += 1;
                }
            }
            MemberStatus::Suspect | MemberStatus::Dead if !up => {
                if let Some(d) = self.detections.iter_mut().rev().find(|d| d.node == j) {
                    let after = self.now_us - d.crashed_us;
                    d.suspected_after_us.entry(i).or_insert(after);
                    if status == MemberStatus::Dead {
                        d.dead_after_us.entry(i).or_insert(after);
                    }
                }
            }
            MemberStatus::Alive if !up => self.stats.ghosts += 1,
            _ => {}
        }
    }

    /// Crash detections recorded so far.
    pub fn detections(&self) -> &[Detection] {
        &self.detections
    }

    /// Number of nodes that are up.
    pub fn live_nodes(&self) -> usize {
        self.nodes.iter().filter(|n| n.engine.is_some()).count()
    }

    /// True when every live node sees every other live node alive.
    pub fn membership_converged(&self) -> bool {
        let live: Vec<&NodeId> = self
            .nodes
            .iter()
            .filter(|n| n.engine.is_some())
            .map(|n| &n.id)
            .collect();
        self.nodes
            .iter()
            .filter_map(|n| n.engine.as_ref())
            .all(|e| {
                live.iter().all(|id| {
                    *id == e.id()
                        || e.members()
                            .get(id)
                            .is_some_and(|m| m.state.status == MemberStatus::Alive)
                })
            })
    }

    /// A random live node among the first `among` (from the simulation's generator).
    pub fn random_live_node(&mut self, among: usize) -> Option<usize> {
        let n = among.min(self.nodes.len());
        for _ in 0..64 {
            let i = self.rng.random_range(0..n.max(1));
            if self.nodes[i].engine.is_some() {
                return Some(i);
            }
        }
        (0..n).find(|&i| self.nodes[i].engine.is_some())
    }

    /// A random value from the simulation's generator (for workloads).
    pub fn random_u64(&mut self) -> u64 {
        self.rng.random()
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod durable_tests;

#[cfg(test)]
mod forgery_tests;

#[cfg(test)]
mod event_tests;
#[cfg(test)]
mod query_tests;
#[cfg(test)]
mod swim_tests;
