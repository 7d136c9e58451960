//! Counters read from a node's `/metrics`, and the traffic between two readings: how
//! the processes and cluster modes measure traffic, since they see the nodes only
//! through their admin APIs.

use std::collections::HashMap;
use std::time::Instant;

use super::report::{NodeTraffic, Traffic};

/// The counters read (sample names of the node's OpenMetrics text; see
/// `src/node/admin_backend/sections.rs`). Bytes are the nodes' payload counters, before
/// QUIC: `/metrics` shows no UDP or QUIC overhead.
pub(super) const DATAGRAM_BYTES_SENT: &str = "gossamer_datagram_bytes_sent_total";
/// Anti-entropy stream payload bytes sent.
pub(super) const SYNC_BYTES_SENT: &str = "gossamer_sync_bytes_sent_total";
/// Gossip datagram payload bytes received.
pub(super) const DATAGRAM_BYTES_RECEIVED: &str = "gossamer_datagram_bytes_received_total";
/// Anti-entropy stream payload bytes received.
pub(super) const SYNC_BYTES_RECEIVED: &str = "gossamer_sync_bytes_received_total";
/// Gossip datagrams sent.
pub(super) const DATAGRAMS_SENT: &str = "gossamer_datagrams_sent_total";
/// Updates from peers applied (with duplicates: the copies each node received).
pub(super) const REMOTE_APPLIED: &str = "gossamer_remote_applied_total";
/// Updates from peers already held.
pub(super) const DUPLICATES: &str = "gossamer_duplicate_updates_total";
/// Gossip datagrams dropped on send.
pub(super) const DROPPED: &str = "gossamer_datagrams_dropped_total";
/// Failed connection attempts.
pub(super) const DIAL_FAILURES: &str = "gossamer_dial_failures_total";
/// Suspicions raised.
pub(super) const SUSPICIONS: &str = "gossamer_suspicions_total";
/// Grafts sent (an update the tree did not bring in time).
pub(super) const GRAFTS: &str = "gossamer_grafts_sent_total";

/// Every counter read; a node whose `/metrics` lacks one of the first five is refused
/// (it is not a gossamer node of this protocol, or not the one it claims to be).
const READ: [&str; 11] = [
    DATAGRAM_BYTES_SENT,
    SYNC_BYTES_SENT,
    DATAGRAM_BYTES_RECEIVED,
    SYNC_BYTES_RECEIVED,
    DATAGRAMS_SENT,
    REMOTE_APPLIED,
    DUPLICATES,
    DROPPED,
    DIAL_FAILURES,
    SUSPICIONS,
    GRAFTS,
];

/// One node's counters at one instant.
#[derive(Debug, Clone)]
pub(super) struct NodeSnap {
    /// When they were read (when the answer came).
    pub(super) at: Instant,
    values: HashMap<&'static str, f64>,
    /// The node process's CPU time (s), when it runs on this machine.
    pub(super) cpu_s: Option<f64>,
}

impl NodeSnap {
    /// Reads the counters of an OpenMetrics text (each summed over its label sets).
    pub(super) fn parse(text: &str, at: Instant, cpu_s: Option<f64>) -> Result<Self, String> {
        let mut values: HashMap<&'static str, f64> = HashMap::new();
        for line in text.lines() {
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let name_end = line.find(['{', ' ']).unwrap_or(line.len());
            let Some(name) = READ.iter().find(|n| **n == &line[..name_end]) else {
                continue;
            };
            // The value follows the labels, whose quoted values may hold spaces.
            let rest = match line[name_end..].starts_with('{') {
                true => line.rfind('}').map(|i| &line[i + 1..]).unwrap_or(""),
                false => &line[name_end..],
            };
            let value = rest
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|v| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| format!("/metrics: {name} has no valid value: {line:?}"))?;
            *values.entry(name).or_default() += value;
        }
        if let Some(missing) = READ[..5].iter().find(|n| !values.contains_key(*n)) {
            return Err(format!(
                "/metrics has no {missing} (is this a gossamer node's admin API?)"
            ));
        }
        Ok(Self { at, values, cpu_s })
    }

    /// A counter's value (0 if the node does not export it).
    pub(super) fn get(&self, name: &str) -> f64 {
        self.values.get(name).copied().unwrap_or(0.0)
    }
}

/// How much `name` grew from `a` to `b` (0 if it went back: the node restarted).
pub(super) fn grew(a: &NodeSnap, b: &NodeSnap, name: &str) -> f64 {
    (b.get(name) - a.get(name)).max(0.0)
}

/// Sum over the nodes of how much `name` grew between the two readings.
pub(super) fn grew_all(a: &[NodeSnap], b: &[NodeSnap], name: &str) -> f64 {
    a.iter().zip(b).map(|(x, y)| grew(x, y, name)).sum()
}

/// Traffic per node per second between two readings of every node: each node's rate
/// over its own window, averaged.
pub(super) fn traffic(a: &[NodeSnap], b: &[NodeSnap]) -> Traffic {
    let n = a.len().max(1) as f64;
    let mut t = Traffic::default();
    let mut cpu = Some(0.0);
    for (x, y) in a.iter().zip(b) {
        let dt = y.at.saturating_duration_since(x.at).as_secs_f64().max(1e-9);
        let rate = |name| grew(x, y, name) / dt / n;
        t.window_s += dt / n;
        t.gossip_bytes_per_node_s += rate(DATAGRAM_BYTES_SENT);
        t.sync_bytes_per_node_s += rate(SYNC_BYTES_SENT);
        t.datagrams_per_node_s += rate(DATAGRAMS_SENT);
        t.gossip_datagrams_per_node_s += rate(DATAGRAMS_SENT);
        cpu = match (cpu, x.cpu_s, y.cpu_s) {
            (Some(c), Some(p), Some(q)) => Some(c + (q - p).max(0.0) / dt / n * 100.0),
            _ => None,
        };
    }
    t.bytes_per_node_s = t.gossip_bytes_per_node_s + t.sync_bytes_per_node_s;
    t.cpu_percent_per_node = cpu.filter(|_| !a.is_empty());
    t
}

/// Each node's bytes sent and received per second, idle and under load.
pub(super) fn per_node(
    names: &[(String, String)],
    idle: (&[NodeSnap], &[NodeSnap]),
    load: (&[NodeSnap], &[NodeSnap]),
) -> Vec<NodeTraffic> {
    let rates = |x: &NodeSnap, y: &NodeSnap| {
        let dt = y.at.saturating_duration_since(x.at).as_secs_f64().max(1e-9);
        let sent = grew(x, y, DATAGRAM_BYTES_SENT) + grew(x, y, SYNC_BYTES_SENT);
        let received = grew(x, y, DATAGRAM_BYTES_RECEIVED) + grew(x, y, SYNC_BYTES_RECEIVED);
        (sent / dt, received / dt)
    };
    names
        .iter()
        .enumerate()
        .map(|(i, (node, addr))| {
            let (idle_sent, idle_received) = rates(&idle.0[i], &idle.1[i]);
            let (load_sent, load_received) = rates(&load.0[i], &load.1[i]);
            NodeTraffic {
                node: node.clone(),
                addr: addr.clone(),
                idle_sent_bytes_s: idle_sent,
                idle_received_bytes_s: idle_received,
                load_sent_bytes_s: load_sent,
                load_received_bytes_s: load_received,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP gossamer_datagram_bytes_sent Gossip datagram bytes sent.\n\
        # TYPE gossamer_datagram_bytes_sent counter\n\
        gossamer_datagram_bytes_sent_total 1000\n\
        gossamer_sync_bytes_sent_total 500\n\
        gossamer_datagram_bytes_received_total 900\n\
        gossamer_sync_bytes_received_total 400\n\
        gossamer_datagrams_sent_total 10\n\
        gossamer_suspicions_total{reason=\"a b}\"} 2\n\
        gossamer_suspicions_total{reason=\"c\"} 3\n\
        gossamer_datagram_bytes_sent_totalx 7\n\
        # EOF\n";

    #[test]
    fn counters_are_read_and_summed_over_labels() {
        let s = NodeSnap::parse(TEXT, Instant::now(), None).unwrap();
        assert_eq!(s.get(DATAGRAM_BYTES_SENT), 1000.0);
        assert_eq!(s.get(SUSPICIONS), 5.0);
        assert_eq!(s.get(GRAFTS), 0.0);
    }

    #[test]
    fn a_text_without_the_traffic_counters_is_refused() {
        let err = NodeSnap::parse("hello 1\n", Instant::now(), None).unwrap_err();
        assert!(err.contains(DATAGRAM_BYTES_SENT), "{err}");
        let bad = TEXT.replace(" 1000", " NaN");
        assert!(NodeSnap::parse(&bad, Instant::now(), None).is_err());
    }

    #[test]
    fn traffic_is_per_node_per_second() {
        let t0 = Instant::now();
        let a = NodeSnap::parse(TEXT, t0, Some(1.0)).unwrap();
        let more = TEXT
            .replace("sent_total 1000", "sent_total 3000")
            .replace("sync_bytes_sent_total 500", "sync_bytes_sent_total 1500");
        let b = NodeSnap::parse(&more, t0 + std::time::Duration::from_secs(2), Some(1.5)).unwrap();
        let t = traffic(&[a.clone(), a.clone()], &[b.clone(), a.clone()]);
        // One node sent 3,000 bytes in 2 s, the other nothing (its window is empty).
        assert!((t.bytes_per_node_s - 750.0).abs() < 1e-6, "{t:?}");
        assert!(t.cpu_percent_per_node.is_some());
        let one = traffic(std::slice::from_ref(&a), std::slice::from_ref(&b));
        assert!((one.cpu_percent_per_node.unwrap() - 25.0).abs() < 1e-6);
    }
}
