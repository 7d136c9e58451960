//! Scenarios as data: a TOML file describes the cluster, workload, faults and the
//! properties to check with their bounds; [`Scenario::run`] produces a [`Report`].

use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::topology::{self, DatacenterSpec, WanReport, WanSpec};
use super::{Action, Sim, SimConfig, SimDurability};
use crate::core::limiter::TRAFFIC_CLASSES;
use crate::core::Config;

mod report;
mod spec;

pub use report::{compare_table, BandwidthSummary, PropertyResult, Report};
use report::{detection_summary, percentile};
pub use spec::{FaultSpec, NetworkSpec, PropertiesSpec, WorkloadSpec};

/// Errors from loading a scenario.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("cannot read scenario {path}: {source}")]
    Read {
        /// File.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The TOML is invalid.
    #[error("scenario {path}: {reason}")]
    Parse {
        /// File.
        path: String,
        /// Parser message (names the field).
        reason: String,
    },
    /// A value is out of range.
    #[error("scenario field {field}: {reason}")]
    Invalid {
        /// Field.
        field: String,
        /// Why.
        reason: String,
    },
}

/// A scenario file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Name shown in reports.
    pub name: String,
    /// Cluster size.
    pub nodes: usize,
    /// Seed (overridable from the command line).
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Virtual duration (s). After it, the run continues fault-free and write-free for
    /// up to `settle_s` until every write is everywhere.
    pub duration_s: f64,
    /// Longest settle phase (s).
    #[serde(default = "default_settle")]
    pub settle_s: f64,
    /// Nodes start within this window (s).
    #[serde(default = "default_join")]
    pub join_window_s: f64,
    /// Every node starts at time 0 already joined, its member table preloaded with every
    /// member (as after a long run); `join_window_s` is then ignored. Lets a large
    /// cluster skip the join, whose announcement queues grow as N².
    #[serde(default)]
    pub warm_start: bool,
    /// Network model.
    #[serde(default)]
    pub network: NetworkSpec,
    /// Datacenters, in node order (their nodes must add up to `nodes`). With them, links
    /// inside a datacenter take its latency, jitter and loss, links between datacenters
    /// those of `wan`; `network` keeps only duplication and bandwidth.
    #[serde(default)]
    pub datacenters: Vec<DatacenterSpec>,
    /// Links between datacenters.
    #[serde(default)]
    pub wan: WanSpec,
    /// Protocol overrides.
    #[serde(default)]
    pub gossip: Config,
    /// Write workload.
    #[serde(default)]
    pub workload: WorkloadSpec,
    /// Fault schedule.
    #[serde(default)]
    pub faults: Vec<FaultSpec>,
    /// Properties.
    #[serde(default)]
    pub properties: PropertiesSpec,
    /// How nodes persist: "sync" (the default: local writes committed at once, entries
    /// from peers every 100 ms), "relaxed" (everything every `durability_interval_ms`) or
    /// "none" (no data directory: a restart keeps nothing). A crash keeps only what was
    /// committed.
    #[serde(default)]
    pub durability: DurabilitySpec,
    /// Relaxed durability: time between commits (ms).
    #[serde(default = "default_durability_interval")]
    pub durability_interval_ms: u64,
}

/// A scenario's durability mode (see [`SimDurability`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DurabilitySpec {
    /// Local writes committed before they are acknowledged.
    #[default]
    Sync,
    /// Commits every `durability_interval_ms`.
    Relaxed,
    /// No data directory.
    None,
}

fn default_durability_interval() -> u64 {
    100
}

fn default_seed() -> u64 {
    1
}
fn default_settle() -> f64 {
    120.0
}
fn default_join() -> f64 {
    2.0
}

const US: f64 = 1_000_000.0;

impl Scenario {
    /// Parses a scenario from TOML text.
    pub fn from_toml(text: &str, path: &str) -> Result<Self, ScenarioError> {
        let s: Scenario = toml::from_str(text).map_err(|e| ScenarioError::Parse {
            path: path.to_string(),
            reason: e.to_string(),
        })?;
        s.validate()?;
        Ok(s)
    }

    /// Reads and parses a scenario file.
    pub fn load(path: &std::path::Path) -> Result<Self, ScenarioError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: p.clone(),
            source,
        })?;
        Self::from_toml(&text, &p)
    }

    fn validate(&self) -> Result<(), ScenarioError> {
        let bad = |field: &str, reason: String| {
            Err(ScenarioError::Invalid {
                field: field.to_string(),
                reason,
            })
        };
        if self.nodes == 0 || self.nodes > 100_000 {
            return bad("nodes", format!("must be 1 to 100000 (got {})", self.nodes));
        }
        if self.duration_s.is_nan() || self.duration_s <= 0.0 {
            return bad("duration_s", "must be positive".into());
        }
        for (f, v) in [
            ("network.loss", self.network.loss),
            ("network.duplicate", self.network.duplicate),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return bad(f, format!("must be between 0 and 1 (got {v})"));
            }
        }
        topology::validate_datacenters(&self.datacenters, &self.wan, self.nodes)
            .or_else(|(field, reason)| bad(&field, reason))?;
        self.gossip.validate().map_err(|e| ScenarioError::Invalid {
            field: format!("gossip.{}", e.field),
            reason: e.problem,
        })?;
        for (i, f) in self.faults.iter().enumerate() {
            let node_ok = |n: usize| n < self.nodes;
            let ok = match f {
                FaultSpec::Partition { groups, halves, .. } => {
                    *halves || groups.iter().flatten().all(|&n| node_ok(n))
                }
                FaultSpec::Crash { node, .. }
                | FaultSpec::Skew { node, .. }
                | FaultSpec::Slow { node, .. } => node_ok(*node),
                FaultSpec::Network { .. } => true,
                FaultSpec::Flap {
                    nodes,
                    fraction,
                    down_s,
                    up_s,
                    ..
                } => {
                    if !(0.0..=1.0).contains(fraction) || *down_s <= 0.0 || *up_s <= 0.0 {
                        return bad(
                            &format!("faults[{i}]"),
                            "flap needs fraction in [0, 1] and positive down_s and up_s".into(),
                        );
                    }
                    nodes.iter().all(|&n| node_ok(n))
                }
            };
            if !ok {
                return bad(
                    &format!("faults[{i}]"),
                    format!("node index out of range 0..{}", self.nodes),
                );
            }
        }
        Ok(())
    }

    /// Builds the simulator with every fault and write scheduled.
    pub fn build(&self, seed: u64) -> Sim {
        let mut sim = Sim::new(SimConfig {
            nodes: self.nodes,
            seed,
            gossip: self.gossip.clone(),
            net: self.network.model(),
            join_window_us: (self.join_window_s * US) as u64,
            joined: self.warm_start,
        });
        if let Some(t) = topology::topology_of(&self.datacenters, &self.wan) {
            sim.set_topology(t).expect("datacenters validated");
        }
        if self.properties.live_views_match {
            sim.track_reference();
        }
        sim.set_durability(match self.durability {
            DurabilitySpec::Sync => SimDurability::Sync,
            DurabilitySpec::Relaxed => SimDurability::Relaxed {
                interval_us: self.durability_interval_ms.max(1) * 1000,
            },
            DurabilitySpec::None => SimDurability::None,
        });
        let end_us = (self.duration_s * US) as u64;
        for f in &self.faults {
            match f {
                FaultSpec::Partition {
                    at_s,
                    until_s,
                    groups,
                    halves,
                } => {
                    let groups = if *halves {
                        vec![
                            (0..self.nodes / 2).collect(),
                            (self.nodes / 2..self.nodes).collect(),
                        ]
                    } else {
                        groups.clone()
                    };
                    sim.schedule_action((at_s * US) as u64, Action::Partition(groups));
                    sim.schedule_action((until_s * US) as u64, Action::Heal);
                }
                FaultSpec::Crash {
                    node,
                    at_s,
                    restart_s,
                    keep_state,
                } => {
                    sim.schedule_action((at_s * US) as u64, Action::Crash(*node));
                    if let Some(r) = restart_s {
                        sim.schedule_action(
                            (r * US) as u64,
                            Action::Restart {
                                node: *node,
                                keep_state: *keep_state,
                            },
                        );
                    }
                }
                FaultSpec::Slow { node, ms, at_s } => sim.schedule_action(
                    (at_s * US) as u64,
                    Action::Slow {
                        node: *node,
                        ms: *ms,
                    },
                ),
                FaultSpec::Skew { node, ms, at_s } => sim.schedule_action(
                    (at_s * US) as u64,
                    Action::Skew {
                        node: *node,
                        ms: *ms,
                    },
                ),
                FaultSpec::Network {
                    at_s,
                    until_s,
                    network,
                } => {
                    sim.schedule_action((at_s * US) as u64, Action::Net(network.model()));
                    sim.schedule_action((until_s * US) as u64, Action::Net(self.network.model()));
                }
                FaultSpec::Flap {
                    nodes,
                    fraction,
                    at_s,
                    until_s,
                    down_s,
                    up_s,
                } => {
                    use rand::Rng;
                    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(
                        seed ^ 0xf1a9,
                    );
                    let list: Vec<usize> = if nodes.is_empty() {
                        let k = ((self.nodes as f64) * fraction).round() as usize;
                        // Spread over the cluster, never the seed (node 0).
                        (0..k)
                            .map(|j| 1 + j * (self.nodes - 1) / k.max(1))
                            .filter(|&n| n < self.nodes)
                            .collect()
                    } else {
                        nodes.clone()
                    };
                    let (start, end) = ((at_s * US) as u64, (until_s * US) as u64);
                    let (down, up) = ((down_s * US) as u64, (up_s * US) as u64);
                    for node in list {
                        let mut t = start + rng.random_range(0..=up);
                        while t + down < end {
                            sim.schedule_action(t, Action::Crash(node));
                            sim.schedule_action(
                                t + down,
                                Action::Restart {
                                    node,
                                    keep_state: true,
                                },
                            );
                            t += down + up;
                        }
                    }
                }
            }
        }
        // The workload: evenly spaced writes on random writer nodes, keys and values from
        // a generator seeded by the scenario seed.
        let w = &self.workload;
        if w.writes_per_sec > 0.0 {
            let mut rng =
                <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(seed ^ 0x5eed);
            let start = (w.start_s * US) as u64;
            let stop = if w.stop_s > 0.0 {
                (w.stop_s * US) as u64
            } else {
                end_us
            };
            let step = (US / w.writes_per_sec) as u64;
            let writers = if w.writers == 0 {
                self.nodes
            } else {
                w.writers.min(self.nodes)
            };
            let mut t = start;
            let mut n = 0u64;
            while t < stop.min(end_us) {
                use rand::Rng;
                let node = rng.random_range(0..writers);
                let key = format!("k{}", rng.random_range(0..w.keys.max(1)));
                let value = if w.deletes > 0.0 && rng.random_bool(w.deletes.min(1.0)) {
                    None
                } else {
                    let mut v = vec![0u8; w.value_size];
                    rng.fill(&mut v[..]);
                    Some(v)
                };
                sim.schedule_action(t, Action::Write { node, key, value });
                n += 1;
                t = start + n * step;
            }
        }
        sim
    }

    /// Runs the scenario with `seed` and checks its properties.
    pub fn run(&self, seed: u64) -> Report {
        let wall = Instant::now();
        let mut sim = self.build(seed);
        let end_us = (self.duration_s * US) as u64;
        sim.run_until(end_us);
        // Settle: faults are over (or the scenario ends them); wait for convergence.
        let settle_end = end_us + (self.settle_s * US) as u64;
        let mut t = end_us;
        while t < settle_end {
            t = (t + 500_000).min(settle_end);
            sim.run_until(t);
            let writes_done = sim.pending_writes() == 0;
            let members_done = !self.properties.membership_converges || sim.membership_converged();
            if writes_done && members_done && sim.stores_identical() {
                break;
            }
        }
        let virtual_s = sim.now_us() as f64 / US;
        let mut prop: Vec<f64> = sim
            .writes()
            .iter()
            .filter_map(|w| w.done_us.map(|d| (d - w.at_us) as f64 / 1000.0))
            .collect();
        prop.sort_by(|a, b| a.total_cmp(b));
        let converged = prop.len();
        let n = sim.len();
        let (mut bytes, mut dgrams, mut sync) = (0u64, 0u64, 0u64);
        let mut conflicts = 0;
        let mut rebases = (0u64, 0u64);
        let (mut copies, mut grafts) = (0u64, 0u64);
        for i in 0..n {
            let t = sim.traffic(i);
            bytes += t.datagram_bytes + t.sync_bytes;
            sync += t.sync_bytes;
            dgrams += t.datagrams;
            if let Some(e) = sim.engine(i) {
                let st = e.store().stats();
                conflicts += st.conflicts;
                rebases.0 += e.stats().rebases;
                rebases.1 += st.rebase_dropped;
                copies += st.duplicates + st.remote_applied;
                grafts += e.stats().grafts_sent;
            }
        }
        let copies_per_update = if sim.writes().is_empty() || n < 2 {
            0.0
        } else {
            copies as f64 / (sim.writes().len() as f64 * (n - 1) as f64)
        };
        let per = |x: u64| x as f64 / n as f64 / virtual_s.max(1e-9);
        let p = [
            percentile(&prop, 0.5),
            percentile(&prop, 0.99),
            prop.last().copied().unwrap_or(0.0),
        ];
        let stats = sim.stats().clone();
        let mut properties = Vec::new();
        let pr = &self.properties;
        if pr.converge {
            let identical = sim.stores_identical();
            let missing = sim.writes_missing_now();
            properties.push(PropertyResult {
                name: "converge".into(),
                pass: missing == 0 && identical,
                detail: format!(
                    "{}/{} writes on every live node at the end; stores identical: {identical}",
                    sim.writes().len() - missing,
                    sim.writes().len()
                ),
            });
        }
        if pr.live_views_match {
            let diffs = sim.live_view_diffs();
            let bad: Vec<String> = diffs
                .iter()
                .enumerate()
                .filter_map(|(i, d)| d.as_ref().filter(|d| !d.is_empty()).map(|d| (i, d)))
                .take(3)
                .map(|(i, d)| {
                    format!(
                        "node {i}: resurrected {:?}, missing {:?}, different {:?}",
                        d.resurrected, d.missing, d.different
                    )
                })
                .collect();
            let concurrent = diffs
                .iter()
                .flatten()
                .map(|d| d.concurrent.len())
                .max()
                .unwrap_or(0);
            properties.push(PropertyResult {
                name: "live_views_match".into(),
                pass: bad.is_empty(),
                detail: if bad.is_empty() {
                    format!(
                        "no value lost, stale or resurrected on any live node ({} keys \
                         live in the reference; {concurrent} with a value and a delete \
                         concurrent)",
                        sim.reference_live_keys()
                    )
                } else {
                    bad.join("; ")
                },
            });
        }
        if stats.commits > 0 {
            // Always checked where nodes persist: a dot issued twice with other content
            // would be dropped as a duplicate by every node that saw the first.
            properties.push(PropertyResult {
                name: "no_dot_reuse".into(),
                pass: stats.dots_reused == 0,
                detail: format!(
                    "{} dots issued twice; {} simulated commits",
                    stats.dots_reused, stats.commits
                ),
            });
        }
        if let Some(b) = pr.p99_propagation_ms {
            properties.push(PropertyResult {
                name: "p99_propagation_ms".into(),
                pass: p[1] <= b,
                detail: format!("{:.1} ms (bound {b} ms)", p[1]),
            });
        }
        if let Some(b) = pr.max_propagation_ms {
            properties.push(PropertyResult {
                name: "max_propagation_ms".into(),
                pass: p[2] <= b,
                detail: format!("{:.1} ms (bound {b} ms)", p[2]),
            });
        }
        if pr.no_false_failures {
            properties.push(PropertyResult {
                name: "no_false_failures".into(),
                pass: stats.false_failures == 0,
                detail: format!(
                    "{} false failures, {} false suspicions (refuted)",
                    stats.false_failures, stats.false_suspicions
                ),
            });
        }
        if pr.membership_converges {
            let ok = sim.membership_converged();
            properties.push(PropertyResult {
                name: "membership_converges".into(),
                pass: ok,
                detail: format!(
                    "every live node sees all {} live nodes alive: {ok}",
                    sim.live_nodes()
                ),
            });
        }
        let detection_ms = detection_summary(&sim);
        let mut bandwidth = BandwidthSummary {
            cap_bytes_s: self.gossip.gossip_bandwidth,
            ..Default::default()
        };
        for i in 0..n {
            let t = sim.traffic(i);
            if t.egress.peak > bandwidth.peak_window_bytes {
                bandwidth.peak_window_bytes = t.egress.peak;
                bandwidth.peak_node = i;
            }
            if let Some(e) = sim.engine(i) {
                let ls = e.limiter().stats();
                for c in 0..TRAFFIC_CLASSES {
                    bandwidth.bytes_by_class[c] += ls.bytes[c];
                    bandwidth.refused_by_class[c] += ls.refused[c];
                }
                let qs = e.queue().stats();
                bandwidth.queue_dropped[0] += qs.dropped_full - qs.dropped_full_membership;
                bandwidth.queue_dropped[1] += qs.dropped_full_membership;
                bandwidth.inbound_dropped += e.stats().inbound_dropped;
                bandwidth.syncs_deferred += e.stats().syncs_deferred;
                bandwidth.governor_refused += ls.governor_refused;
                bandwidth.backoff_steps += e.stats().backoff_steps;
            }
        }
        if let Some(tol) = pr.egress_within_cap {
            let cap = self.gossip.gossip_bandwidth;
            let bound = (cap as f64 * (1.0 + tol)) as u64;
            properties.push(PropertyResult {
                name: "egress_within_cap".into(),
                pass: cap > 0 && bandwidth.peak_window_bytes <= bound,
                detail: format!(
                    "highest 1-s egress {} B (node {}) against cap {} B/s + {:.0}% = {} B",
                    bandwidth.peak_window_bytes,
                    bandwidth.peak_node,
                    cap,
                    tol * 100.0,
                    bound
                ),
            });
        }
        let wan = topology::wan_report(&sim);
        if let Some(bound) = pr.max_wan_bytes_per_write {
            let got = wan.as_ref().map(|w| w.bytes_per_write);
            properties.push(PropertyResult {
                name: "max_wan_bytes_per_write".into(),
                pass: got.is_some_and(|b| b <= bound),
                detail: match got {
                    Some(b) => format!("{b:.0} B per write (bound {bound} B)"),
                    None => "no datacenters in this scenario".into(),
                },
            });
        }
        let last_write_done_s = sim
            .writes()
            .iter()
            .filter_map(|w| w.done_us)
            .max()
            .unwrap_or(0) as f64
            / US;
        if pr.no_ghosts {
            properties.push(PropertyResult {
                name: "no_ghosts".into(),
                pass: stats.ghosts == 0,
                detail: format!("{} events revived a node that was down", stats.ghosts),
            });
        }
        if let Some(bound) = pr.detect_within_ms {
            let (pass, detail) = match &detection_ms {
                Some(d) => (
                    d.undetected == 0 && d.all_dead_max_ms <= bound,
                    format!(
                        "{} crashes: first suspicion {:.0} ms, all dead mean {:.0} / max {:.0} ms, {} undetected (bound {bound} ms)",
                        d.crashes, d.first_suspicion_ms, d.all_dead_ms, d.all_dead_max_ms, d.undetected
                    ),
                ),
                None => (false, "no crash to detect".into()),
            };
            properties.push(PropertyResult {
                name: "detect_within_ms".into(),
                pass,
                detail,
            });
        }
        if let Some(bound) = pr.detect_median_within_ms {
            let (pass, detail) = match &detection_ms {
                Some(d) => (
                    d.undetected == 0 && d.all_dead_p50_ms <= bound,
                    format!(
                        "{} crashes: all dead median {:.0} / p99 {:.0} ms, {} undetected (bound {bound} ms)",
                        d.crashes, d.all_dead_p50_ms, d.all_dead_p99_ms, d.undetected
                    ),
                ),
                None => (false, "no crash to detect".into()),
            };
            properties.push(PropertyResult {
                name: "detect_median_within_ms".into(),
                pass,
                detail,
            });
        }
        if let Some(bound) = pr.max_bytes_per_node_s {
            let got = per(bytes);
            properties.push(PropertyResult {
                name: "max_bytes_per_node_s".into(),
                pass: got <= bound,
                detail: format!("{got:.0} B per node per s (bound {bound} B)"),
            });
        }
        Report {
            name: self.name.clone(),
            seed,
            nodes: n,
            virtual_s,
            wall_s: wall.elapsed().as_secs_f64(),
            events: stats.events,
            writes: sim.writes().len(),
            writes_converged: converged,
            propagation_ms: p,
            bytes_per_node_s: per(bytes),
            datagrams_per_node_s: per(dgrams),
            sync_bytes_per_node_s: per(sync),
            conflicts,
            rebases,
            copies_per_update,
            grafts,
            lost: stats.lost,
            cut: stats.cut,
            false_suspicions: stats.false_suspicions,
            false_failures: stats.false_failures,
            ghosts: stats.ghosts,
            detection_ms,
            bandwidth,
            last_write_done_s,
            wan,
            trace_hash: format!("{:016x}", sim.trace_hash()),
            properties,
        }
    }
}

impl Scenario {
    /// This scenario with the protocol fields of `overrides` (TOML text: fields of the
    /// `[gossip]` section at top level, e.g. a profile of another implementation's
    /// failure-detector constants) set over its own `[gossip]` settings. `source` names
    /// the text in errors. The result is validated like a scenario file.
    pub fn with_protocol(&self, overrides: &str, source: &str) -> Result<Scenario, ScenarioError> {
        let parse = |reason: String| ScenarioError::Parse {
            path: source.to_string(),
            reason,
        };
        let extra: toml::Table = toml::from_str(overrides).map_err(|e| parse(e.to_string()))?;
        let mut table = toml::Table::try_from(&self.gossip).map_err(|e| parse(e.to_string()))?;
        for (k, v) in extra {
            table.insert(k, v);
        }
        let mut s = self.clone();
        s.gossip = table
            .try_into()
            .map_err(|e: toml::de::Error| parse(e.to_string()))?;
        s.validate()?;
        Ok(s)
    }

    /// This scenario with the bandwidth cap removed (and the cap property dropped).
    pub fn unlimited(&self) -> Scenario {
        let mut u = self.clone();
        u.name = format!("{} (no limiter)", self.name);
        u.gossip.gossip_bandwidth = 0;
        u.properties.egress_within_cap = None;
        u
    }
}
