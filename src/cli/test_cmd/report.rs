//! The report of a run, as printed with `--json`, and the traffic figures it ends with.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use gossamer::chaos::{ChaosControl, ChaosStats};
use gossamer::node::Node;
use serde::Serialize;

#[derive(Debug, Serialize)]
pub(super) struct Percentiles {
    pub(super) count: usize,
    pub(super) p50_ms: f64,
    pub(super) p99_ms: f64,
    pub(super) max_ms: f64,
}

pub(super) fn percentiles(mut v: Vec<Duration>) -> Option<Percentiles> {
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

pub(super) fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

#[derive(Debug, Serialize)]
pub(super) struct FaultsReport {
    pub(super) loss: f64,
    pub(super) latency_ms: u64,
    pub(super) jitter_ms: u64,
    pub(super) duplicate: f64,
}

#[derive(Debug, Serialize)]
pub(super) struct PartitionReport {
    /// Groups of 1-based node numbers.
    pub(super) groups: Vec<Vec<usize>>,
    pub(super) start_s: f64,
    pub(super) end_s: f64,
}

#[derive(Debug, Serialize)]
pub(super) struct Detection {
    /// 1-based node numbers of this side.
    pub(super) group: Vec<usize>,
    /// Time from the partition's start until every node of this side saw every node of
    /// the other sides as not alive; None if it never happened during the partition.
    pub(super) detected_ms: Option<f64>,
}

#[derive(Debug, Serialize)]
pub(super) struct NodeTraffic {
    pub(super) node: String,
    pub(super) datagrams_sent_per_s: f64,
    pub(super) datagram_bytes_sent_per_s: f64,
    pub(super) sync_bytes_sent_per_s: f64,
    pub(super) udp_datagrams_sent_per_s: f64,
    pub(super) udp_bytes_sent_per_s: f64,
    pub(super) chaos: ChaosStats,
}

#[derive(Debug, Serialize)]
pub(super) struct Report {
    pub(super) nodes: usize,
    pub(super) seed: u64,
    pub(super) faults: FaultsReport,
    pub(super) partition: Option<PartitionReport>,
    pub(super) duration_s: f64,
    pub(super) writes_per_sec: f64,
    pub(super) deadline_s: f64,
    pub(super) join_ms: Option<f64>,
    pub(super) writes: usize,
    pub(super) write_errors: u64,
    pub(super) writes_everywhere: usize,
    pub(super) propagation: Option<Percentiles>,
    pub(super) propagation_outside_partition: Option<Percentiles>,
    pub(super) propagation_during_partition: Option<Percentiles>,
    pub(super) arrivals_by_polling: u64,
    pub(super) partition_detection: Vec<Detection>,
    pub(super) heal_ms: Option<f64>,
    pub(super) convergence_ms: Option<f64>,
    pub(super) measured_s: f64,
    pub(super) traffic: Vec<NodeTraffic>,
    pub(super) chaos_total: ChaosStats,
    pub(super) converged: bool,
    pub(super) failure: Option<String>,
}

#[derive(Clone, Copy)]
pub(super) struct TrafficSnap {
    dgrams: u64,
    dgram_bytes: u64,
    sync_bytes: u64,
    chaos: ChaosStats,
}

pub(super) fn snap(node: &Node, ctl: &ChaosControl) -> TrafficSnap {
    let s = node.runtime_stats();
    TrafficSnap {
        dgrams: s.datagrams_sent.load(Ordering::Relaxed),
        dgram_bytes: s.datagram_bytes_sent.load(Ordering::Relaxed),
        sync_bytes: s.sync_bytes_sent.load(Ordering::Relaxed),
        chaos: ctl.stats(),
    }
}

pub(super) fn finish_traffic(
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
