//! The admin API's view of a node, and its Prometheus metrics.

use std::sync::atomic::Ordering;

use super::api::{KvEntry, MemberView, Metric, MetricKind, StatusView};
use super::runtime::Node;
use crate::admin::AdminBackend;

fn metric(name: &str, help: &str, kind: MetricKind, value: f64) -> Metric {
    Metric {
        name: name.to_string(),
        help: help.to_string(),
        kind,
        samples: vec![(Vec::new(), value)],
    }
}

impl AdminBackend for Node {
    fn kv_get(&self, key: &str) -> Option<KvEntry> {
        self.get(key)
    }

    fn kv_set(&self, key: &str, value: Vec<u8>) -> Result<(), String> {
        self.set(key, value).map_err(|e| e.to_string())
    }

    fn kv_delete(&self, key: &str) -> Result<bool, String> {
        self.delete(key).map_err(|e| e.to_string())
    }

    fn kv_list(&self, prefix: &str) -> Vec<KvEntry> {
        self.list(prefix)
    }

    fn members(&self) -> Vec<MemberView> {
        Node::members(self)
    }

    fn status(&self) -> StatusView {
        Node::status(self)
    }

    fn metrics(&self) -> Vec<Metric> {
        use MetricKind::{Counter, Gauge};
        let mut out = Vec::new();
        let status = Node::status(self);
        out.push(Metric {
            name: "gossamer_members".into(),
            help: "Members known to this node by status, itself included.".into(),
            kind: Gauge,
            samples: status
                .members
                .iter()
                .map(|(s, n)| (vec![("status".to_string(), s.clone())], *n as f64))
                .collect(),
        });
        out.push(metric(
            "gossamer_keys",
            "Live keys held.",
            Gauge,
            status.keys as f64,
        ));
        out.push(metric(
            "gossamer_tombstones",
            "Tombstones held.",
            Gauge,
            status.tombstones as f64,
        ));
        let e = self.engine_stats();
        let store = self.with_store_stats();
        for (name, help, v) in [
            (
                "gossamer_local_writes_total",
                "Local writes (sets and deletes).",
                store.local_writes,
            ),
            (
                "gossamer_remote_applied_total",
                "Remote updates that changed the state.",
                store.remote_applied,
            ),
            (
                "gossamer_duplicate_updates_total",
                "Remote updates already seen (redundant copies).",
                store.duplicates,
            ),
            (
                "gossamer_conflicts_total",
                "Concurrent writes resolved by (hlc, writer).",
                store.conflicts,
            ),
            (
                "gossamer_tombstones_collected_total",
                "Tombstones removed after the grace period.",
                store.tombstones_collected,
            ),
            (
                "gossamer_items_invalid_total",
                "Received items dropped for breaking a limit.",
                e.items_invalid,
            ),
            (
                "gossamer_syncs_started_total",
                "Anti-entropy exchanges started.",
                e.syncs_started,
            ),
            (
                "gossamer_syncs_completed_total",
                "Anti-entropy exchanges completed.",
                e.syncs_completed,
            ),
            (
                "gossamer_syncs_failed_total",
                "Anti-entropy exchanges failed.",
                e.syncs_failed,
            ),
            (
                "gossamer_sync_entries_applied_total",
                "Entries received by anti-entropy that changed the state.",
                e.sync_entries_applied,
            ),
            (
                "gossamer_resyncs_total",
                "Full resynchronisations after an absence longer than the tombstone grace.",
                e.resyncs,
            ),
            (
                "gossamer_seed_attempts_total",
                "Seed contact attempts.",
                e.seed_attempts,
            ),
            (
                "gossamer_refutations_total",
                "Refutations of suspicion about this node.",
                e.refutations,
            ),
        ] {
            out.push(metric(name, help, Counter, v as f64));
        }
        let r = self.runtime_stats();
        for (name, help, v) in [
            (
                "gossamer_datagrams_sent_total",
                "Gossip datagrams sent.",
                &r.datagrams_sent,
            ),
            (
                "gossamer_datagram_bytes_sent_total",
                "Gossip datagram bytes sent.",
                &r.datagram_bytes_sent,
            ),
            (
                "gossamer_datagrams_received_total",
                "Gossip datagrams received.",
                &r.datagrams_received,
            ),
            (
                "gossamer_datagram_bytes_received_total",
                "Gossip datagram bytes received.",
                &r.datagram_bytes_received,
            ),
            (
                "gossamer_datagrams_malformed_total",
                "Datagrams dropped as malformed.",
                &r.datagrams_malformed,
            ),
            (
                "gossamer_datagrams_dropped_total",
                "Datagrams dropped on send (repaired by anti-entropy).",
                &r.datagrams_dropped,
            ),
            (
                "gossamer_reliable_sent_total",
                "Oversized updates sent on streams.",
                &r.reliable_sent,
            ),
            (
                "gossamer_sync_bytes_sent_total",
                "Anti-entropy stream bytes sent.",
                &r.sync_bytes_sent,
            ),
            (
                "gossamer_sync_bytes_received_total",
                "Anti-entropy stream bytes received.",
                &r.sync_bytes_received,
            ),
            (
                "gossamer_frames_malformed_total",
                "Stream frames refused as malformed.",
                &r.frames_malformed,
            ),
            (
                "gossamer_identity_mismatch_total",
                "Peers refused for claiming another node's identity.",
                &r.identity_mismatch,
            ),
            (
                "gossamer_dial_failures_total",
                "Failed connection attempts.",
                &r.dial_failures,
            ),
        ] {
            out.push(metric(
                name,
                help,
                Counter,
                v.load(Ordering::Relaxed) as f64,
            ));
        }
        let hs = self.handshake_stats();
        out.push(Metric {
            name: "gossamer_handshakes_refused_total".into(),
            help: "TLS handshakes refused, by reason.".into(),
            kind: Counter,
            samples: hs
                .snapshot()
                .refusals()
                .into_iter()
                .map(|(reason, n)| (vec![("reason".to_string(), reason.to_string())], n as f64))
                .collect(),
        });
        out.extend(self.security_metrics());
        out
    }
}
