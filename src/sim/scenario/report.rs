//! What a scenario run reports: the figures, each property with its verdict, and the
//! text and JSON forms of both.

use super::*;
use crate::core::limiter::{Traffic, TRAFFIC_CLASSES};

/// How fast crashed nodes were detected.
#[derive(Debug, Clone, Serialize)]
pub struct DetectionSummary {
    /// Crashes measured.
    pub crashes: usize,
    /// Mean time until the first observer suspected the node (ms).
    pub first_suspicion_ms: f64,
    /// Mean time until every live observer declared it dead (ms).
    pub all_dead_ms: f64,
    /// Median over crashes of the time until every live observer declared it dead (ms).
    pub all_dead_p50_ms: f64,
    /// 99th percentile over crashes of that time (ms; the slowest with under 100 crashes).
    pub all_dead_p99_ms: f64,
    /// Slowest crash until every live observer declared it dead (ms).
    pub all_dead_max_ms: f64,
    /// Each detected crash's time until every live observer declared it dead (ms), in
    /// crash order: to pool crashes over several seeds.
    pub all_dead_each_ms: Vec<f64>,
    /// Crashes some live observer never declared dead.
    pub undetected: usize,
}

/// What bandwidth governance did over a run (sums over nodes alive at the end).
#[derive(Debug, Clone, Default, Serialize)]
pub struct BandwidthSummary {
    /// The configured cap per node (bytes/s; 0 = unlimited).
    pub cap_bytes_s: u64,
    /// The highest egress of any node over any 1-second window (bytes).
    pub peak_window_bytes: u64,
    /// Node with that peak.
    pub peak_node: usize,
    /// Bytes admitted per traffic class: probe, membership, fresh, retransmit,
    /// announce, anti-entropy.
    pub bytes_by_class: [u64; TRAFFIC_CLASSES],
    /// Sends refused for lack of tokens, per class.
    pub refused_by_class: [u64; TRAFFIC_CLASSES],
    /// Broadcasts dropped from full queues (deltas, membership).
    pub queue_dropped: [u64; 2],
    /// Datagrams dropped by the inbound per-peer cap.
    pub inbound_dropped: u64,
    /// Anti-entropy exchanges put off under pressure.
    pub syncs_deferred: u64,
    /// Back-off steps taken.
    pub backoff_steps: u64,
    /// Refusals by governor after the allowance said yes (estimate off).
    pub governor_refused: u64,
}

/// Outcome of one property.
#[derive(Debug, Clone, Serialize)]
pub struct PropertyResult {
    /// Property name.
    pub name: String,
    /// Passed?
    pub pass: bool,
    /// What was measured.
    pub detail: String,
}

/// What a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Scenario name.
    pub name: String,
    /// Seed used.
    pub seed: u64,
    /// Nodes.
    pub nodes: usize,
    /// Virtual seconds simulated (including settling).
    pub virtual_s: f64,
    /// Wall-clock seconds the run took.
    pub wall_s: f64,
    /// Events processed.
    pub events: u64,
    /// Writes made.
    pub writes: usize,
    /// Writes that reached every live node.
    pub writes_converged: usize,
    /// Propagation time percentiles (ms): p50, p99, max.
    pub propagation_ms: [f64; 3],
    /// Mean bytes sent per node per second (datagrams + sync).
    pub bytes_per_node_s: f64,
    /// Mean datagrams sent per node per second.
    pub datagrams_per_node_s: f64,
    /// Mean anti-entropy bytes per node per second.
    pub sync_bytes_per_node_s: f64,
    /// Concurrent writes resolved (sum over nodes).
    pub conflicts: u64,
    /// Rebases against a peer's fence, and entries they dropped (summed over live nodes).
    pub rebases: (u64, u64),
    /// Copies of each write received per node (store duplicates plus applied updates,
    /// over writes × (N − 1)): about 1 with tree push.
    pub copies_per_update: f64,
    /// Graft requests sent (updates asked for by id after the tree missed them).
    pub grafts: u64,
    /// Datagrams lost / cut by partitions.
    pub lost: u64,
    /// Cut by partitions or down nodes.
    pub cut: u64,
    /// Healthy nodes declared suspect (sum of events).
    pub false_suspicions: u64,
    /// Healthy nodes declared dead.
    pub false_failures: u64,
    /// Down nodes brought back to alive somewhere.
    pub ghosts: u64,
    /// Crash detection: mean and max time (ms) until every live observer declared the
    /// crashed node suspect, then dead.
    pub detection_ms: Option<DetectionSummary>,
    /// Bandwidth: the cap, the highest 1-second egress of any node, and what the
    /// limiter and the queues did.
    pub bandwidth: BandwidthSummary,
    /// Virtual time (s) at which the last write reached every live node.
    pub last_write_done_s: f64,
    /// Traffic between datacenters and propagation per datacenter (with datacenters).
    pub wan: Option<WanReport>,
    /// Hash of the event trace (equal for equal seeds).
    pub trace_hash: String,
    /// Property outcomes.
    pub properties: Vec<PropertyResult>,
}

impl Report {
    /// True when every property held.
    pub fn passed(&self) -> bool {
        self.properties.iter().all(|p| p.pass)
    }

    /// A readable table.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let row = |s: &mut String, k: &str, v: String| s.push_str(&format!("  {k:<28} {v}\n"));
        s.push_str(&format!(
            "scenario {} (seed {}, {} nodes)\n",
            self.name, self.seed, self.nodes
        ));
        row(&mut s, "virtual time", format!("{:.1} s", self.virtual_s));
        row(
            &mut s,
            "wall time",
            format!("{:.2} s ({} events)", self.wall_s, self.events),
        );
        row(
            &mut s,
            "writes converged",
            format!("{} / {}", self.writes_converged, self.writes),
        );
        row(
            &mut s,
            "propagation p50/p99/max",
            format!(
                "{:.1} / {:.1} / {:.1} ms",
                self.propagation_ms[0], self.propagation_ms[1], self.propagation_ms[2]
            ),
        );
        row(
            &mut s,
            "bytes per node per s",
            format!(
                "{:.0} (sync {:.0})",
                self.bytes_per_node_s, self.sync_bytes_per_node_s
            ),
        );
        row(
            &mut s,
            "datagrams per node per s",
            format!("{:.2}", self.datagrams_per_node_s),
        );
        row(&mut s, "conflicts resolved", self.conflicts.to_string());
        row(
            &mut s,
            "rebases, entries dropped",
            format!("{}, {}", self.rebases.0, self.rebases.1),
        );
        row(
            &mut s,
            "copies per update, grafts",
            format!("{:.2}, {}", self.copies_per_update, self.grafts),
        );
        row(
            &mut s,
            "datagrams lost / cut",
            format!("{} / {}", self.lost, self.cut),
        );
        row(
            &mut s,
            "false suspicions / failures",
            format!("{} / {}", self.false_suspicions, self.false_failures),
        );
        if let Some(d) = &self.detection_ms {
            row(
                &mut s,
                "crash detection",
                format!(
                    "{} crashes: first suspicion {:.0} ms, all dead mean {:.0} / p50 {:.0} / p99 {:.0} / max {:.0} ms, {} undetected",
                    d.crashes,
                    d.first_suspicion_ms,
                    d.all_dead_ms,
                    d.all_dead_p50_ms,
                    d.all_dead_p99_ms,
                    d.all_dead_max_ms,
                    d.undetected
                ),
            );
        }
        row(&mut s, "ghosts", self.ghosts.to_string());
        let b = &self.bandwidth;
        row(
            &mut s,
            "peak 1-s egress (node)",
            if b.cap_bytes_s > 0 {
                format!(
                    "{} B (node {}), {:.1}% of the {} B/s cap",
                    b.peak_window_bytes,
                    b.peak_node,
                    b.peak_window_bytes as f64 * 100.0 / b.cap_bytes_s as f64,
                    b.cap_bytes_s
                )
            } else {
                format!("{} B (node {}), no cap", b.peak_window_bytes, b.peak_node)
            },
        );
        row(&mut s, "bytes by class", per_class(&b.bytes_by_class));
        row(
            &mut s,
            "limited (refused sends)",
            per_class(&b.refused_by_class),
        );
        row(
            &mut s,
            "drops",
            format!(
                "queue full {} deltas + {} membership, inbound cap {}, syncs deferred {}, back-off steps {}, governor refusals {}",
                b.queue_dropped[0], b.queue_dropped[1], b.inbound_dropped, b.syncs_deferred, b.backoff_steps, b.governor_refused
            ),
        );
        row(
            &mut s,
            "last write everywhere at",
            format!("{:.1} s", self.last_write_done_s),
        );
        if let Some(w) = &self.wan {
            s.push_str(&w.rows());
        }
        row(&mut s, "trace hash", self.trace_hash.clone());
        for p in &self.properties {
            s.push_str(&format!(
                "  [{}] {:<24} {}\n",
                if p.pass { "pass" } else { "FAIL" },
                p.name,
                p.detail
            ));
        }
        s
    }
}

/// Crash detection over the crashes whose node stayed down to the end.
pub(super) fn detection_summary(sim: &Sim) -> Option<DetectionSummary> {
    let mut first = Vec::new();
    let mut all = Vec::new();
    let mut undetected = 0;
    for d in sim.detections() {
        if sim.engine(d.node).is_some() {
            continue;
        }
        let observers: Vec<usize> = (0..sim.len())
            .filter(|&i| i != d.node && sim.engine(i).is_some())
            .collect();
        if let Some(f) = d.suspected_after_us.values().min() {
            first.push(*f as f64 / 1000.0);
        }
        if observers.iter().all(|o| d.dead_after_us.contains_key(o)) {
            let worst = observers
                .iter()
                .filter_map(|o| d.dead_after_us.get(o))
                .max()
                .copied()
                .unwrap_or(0);
            all.push(worst as f64 / 1000.0);
        } else {
            undetected += 1;
        }
    }
    if first.is_empty() && undetected == 0 {
        return None;
    }
    let mean = |v: &[f64]| {
        if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    let mut sorted = all.clone();
    sorted.sort_by(|a, b| a.total_cmp(b));
    Some(DetectionSummary {
        crashes: all.len() + undetected,
        first_suspicion_ms: mean(&first),
        all_dead_ms: mean(&all),
        all_dead_p50_ms: median(&sorted),
        all_dead_p99_ms: percentile(&sorted, 0.99),
        all_dead_max_ms: sorted.last().copied().unwrap_or(0.0),
        all_dead_each_ms: all,
        undetected,
    })
}

/// The median of sorted values (the mean of the middle two for an even count).
pub(super) fn median(sorted: &[f64]) -> f64 {
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

pub(super) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// The same scenario with and without its bandwidth cap, side by side.
pub fn compare_table(limited: &Report, unlimited: &Report) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "{:<34} {:>16} {:>16}\n",
        "", "with limiter", "without limiter"
    ));
    let mut row = |k: &str, a: String, b: String| s.push_str(&format!("{k:<34} {a:>16} {b:>16}\n"));
    row(
        "cap (B/s per node)",
        limited.bandwidth.cap_bytes_s.to_string(),
        "none".into(),
    );
    row(
        "peak 1-s egress of a node (B)",
        limited.bandwidth.peak_window_bytes.to_string(),
        unlimited.bandwidth.peak_window_bytes.to_string(),
    );
    row(
        "mean bytes per node per s",
        format!("{:.0}", limited.bytes_per_node_s),
        format!("{:.0}", unlimited.bytes_per_node_s),
    );
    row(
        "writes everywhere",
        format!("{}/{}", limited.writes_converged, limited.writes),
        format!("{}/{}", unlimited.writes_converged, unlimited.writes),
    );
    row(
        "last write everywhere at (s)",
        format!("{:.1}", limited.last_write_done_s),
        format!("{:.1}", unlimited.last_write_done_s),
    );
    row(
        "propagation p50 / p99 (ms)",
        format!(
            "{:.0} / {:.0}",
            limited.propagation_ms[0], limited.propagation_ms[1]
        ),
        format!(
            "{:.0} / {:.0}",
            unlimited.propagation_ms[0], unlimited.propagation_ms[1]
        ),
    );
    row(
        "false suspicions / failures",
        format!("{} / {}", limited.false_suspicions, limited.false_failures),
        format!(
            "{} / {}",
            unlimited.false_suspicions, unlimited.false_failures
        ),
    );
    row(
        "all properties pass",
        limited.passed().to_string(),
        unlimited.passed().to_string(),
    );
    s
}

/// Counts per traffic class as `probe N / membership N / ...`.
fn per_class(v: &[u64; TRAFFIC_CLASSES]) -> String {
    Traffic::ALL
        .iter()
        .map(|t| format!("{} {}", t.name().replace('_', "-"), v[*t as usize]))
        .collect::<Vec<_>>()
        .join(" / ")
}
