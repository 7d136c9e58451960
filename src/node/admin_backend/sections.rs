//! The sections of `/metrics`, one function per subsystem, each reading that
//! subsystem's counters.

use super::{datacenters, labels, Families, Labels};
use crate::node::api::MetricKind;
use crate::node::runtime::Node;

impl Node {
    /// Members by status and by datacenter, RTT per datacenter, and who this node is.
    pub(super) fn membership_metrics(&self, f: &mut Families) {
        use MetricKind::Gauge;
        let status = Node::status(self);
        f.labelled(
            "gossamer_info",
            "Constant 1, labelled with this node's id, datacenter, zone and version.",
            Gauge,
            vec![(
                labels(&[
                    ("node", status.node_id.as_str()),
                    ("dc", &status.dc),
                    ("zone", &self.config().zone),
                    ("version", &status.version),
                ]),
                1.0,
            )],
        );
        f.labelled(
            "gossamer_members",
            "Members known to this node by status, itself included.",
            Gauge,
            status
                .members
                .iter()
                .map(|(s, n)| (labels(&[("status", s)]), *n as f64))
                .collect(),
        );
        let skew = self.clock_skew();
        f.labelled(
            "gossamer_peer_clock_ahead_ms",
            "Largest amount a writer's stamps were ahead of this node's clock, per writer.",
            Gauge,
            skew.iter()
                .map(|(w, s)| (labels(&[("peer", w.as_str())]), s.ahead_ms as f64))
                .collect(),
        );
        let dcs = datacenters(&Node::members(self));
        let mut by_dc = Vec::new();
        let (mut mean, mut max) = (Vec::new(), Vec::new());
        for (dc, s) in &dcs {
            for (st, n) in &s.by_status {
                by_dc.push((labels(&[("dc", dc), ("status", st)]), *n as f64));
            }
            if let (Some(a), Some(m)) = (s.rtt_mean_ms, s.rtt_max_ms) {
                mean.push((labels(&[("dc", dc)]), a / 1000.0));
                max.push((labels(&[("dc", dc)]), m / 1000.0));
            }
        }
        f.labelled(
            "gossamer_members_by_dc",
            "Members known to this node by datacenter and status, itself included.",
            Gauge,
            by_dc,
        );
        f.labelled(
            "gossamer_dc_rtt_mean_seconds",
            "Mean round-trip time to the alive members of each datacenter that have one.",
            Gauge,
            mean,
        );
        f.labelled(
            "gossamer_dc_rtt_max_seconds",
            "Largest round-trip time to an alive member of each datacenter.",
            Gauge,
            max,
        );
        f.gauge(
            "gossamer_health_score",
            "Lifeguard local health score: 0 is healthy; probe timing is stretched by score + 1.",
            self.awareness() as f64,
        );
    }

    /// Failure detection counters.
    pub(super) fn swim_metrics(&self, f: &mut Families) {
        let e = self.engine_stats();
        for (name, help, v) in [
            ("gossamer_probes_total", "Direct probes sent.", e.probes),
            (
                "gossamer_probes_failed_total",
                "Probes answered neither directly nor indirectly within the period.",
                e.probes_failed,
            ),
            (
                "gossamer_ping_reqs_total",
                "Indirect probe requests sent.",
                e.ping_reqs,
            ),
            (
                "gossamer_suspicions_total",
                "Members this node declared suspect.",
                e.suspicions,
            ),
            (
                "gossamer_deaths_total",
                "Members this node declared dead.",
                e.deaths,
            ),
            (
                "gossamer_members_reaped_total",
                "Dead or departed members forgotten after the reap timeout.",
                e.reaped,
            ),
            (
                "gossamer_refutations_total",
                "Refutations of suspicion about this node.",
                e.refutations,
            ),
            (
                "gossamer_seed_attempts_total",
                "Seed contact attempts.",
                e.seed_attempts,
            ),
        ] {
            f.counter(name, help, v);
        }
    }

    /// The key-value store.
    /// The data directory's commits: writes acknowledged over commits is the group-commit
    /// factor (absent without a data directory).
    pub(super) fn persist_metrics(&self, f: &mut Families) {
        let Some(p) = self.persist_stats() else {
            return;
        };
        for (name, help, v) in [
            (
                "gossamer_store_commits_total",
                "Transactions committed to the data directory's store.",
                &p.commits,
            ),
            (
                "gossamer_store_fsyncs_total",
                "Durable commits (each forces the store file to disk once).",
                &p.fsyncs,
            ),
            (
                "gossamer_store_writes_acked_total",
                "Local writes acknowledged (with sync durability: after their commit).",
                &p.writes_acked,
            ),
            (
                "gossamer_store_entries_written_total",
                "Entries written or removed by commits (local and from peers).",
                &p.entries_written,
            ),
            (
                "gossamer_store_commit_failures_total",
                "Commits that failed (the node stops persisting after the first).",
                &p.failures,
            ),
        ] {
            f.counter_atomic(name, help, v);
        }
        f.counter(
            "gossamer_store_commit_microseconds_total",
            "Time spent in commits (µs).",
            p.commit_us.load(std::sync::atomic::Ordering::Relaxed),
        );
    }

    pub(super) fn store_metrics(&self, f: &mut Families) {
        let status = Node::status(self);
        f.gauge("gossamer_keys", "Live keys held.", status.keys as f64);
        f.gauge(
            "gossamer_tombstones",
            "Tombstones held.",
            status.tombstones as f64,
        );
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
                "Tombstones removed once every member had seen them and the grace period had passed.",
                store.tombstones_collected,
            ),
            (
                "gossamer_rebase_dropped_total",
                "Entries a rebase dropped because the peer had collected a delete over them.",
                store.rebase_dropped,
            ),
            (
                "gossamer_writers_compacted_total",
                "Departed writers compacted out of the causal context (their keys gone, their dots seen by every member).",
                store.writers_compacted,
            ),
        ] {
            f.counter(name, help, v);
        }
    }

    /// Anti-entropy.
    pub(super) fn sync_metrics(&self, f: &mut Families) {
        let e = self.engine_stats();
        for (name, help, v) in [
            (
                "gossamer_syncs_started_total",
                "Anti-entropy exchanges started.",
                e.syncs_started,
            ),
            (
                "gossamer_syncs_accepted_total",
                "Anti-entropy exchanges peers opened with this node.",
                e.syncs_accepted,
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
                "gossamer_rebases_total",
                "Rebases against a peer that collected deletes this node may not have seen (it was reaped, partitioned off or new).",
                e.rebases,
            ),
            (
                "gossamer_fences_refused_total",
                "Peers' fences ignored because they named dots no writer can have issued yet.",
                e.fences_refused,
            ),
        ] {
            f.counter(name, help, v);
        }
        f.labelled(
            "gossamer_writes_refused_total",
            "Peers' writes refused, by reason: unsigned, unknown_writer (no known certificate of the writer holds the key), bad_signature (forged or altered), outside_grant, revoked.",
            MetricKind::Counter,
            self.writes_refused()
                .by_reason()
                .iter()
                .map(|(r, n)| (labels(&[("reason", r)]), *n as f64))
                .collect(),
        );
        f.push(self.runtime_stats().sync_duration.metric(
            "gossamer_sync_duration_seconds",
            "Duration of the anti-entropy exchanges this node opened and completed (stream open to last frame).",
        ));
    }

    /// The broadcast queue: gossip items sent and received, drops.
    pub(super) fn dissemination_metrics(&self, f: &mut Families) {
        let e = self.engine_stats();
        let (q, len) = self.queue_stats();
        for (name, help, v) in [
            (
                "gossamer_gossip_items_sent_total",
                "Gossip items (member updates and key deltas) packed into datagrams.",
                e.items_out,
            ),
            (
                "gossamer_gossip_items_received_total",
                "Gossip items received in datagrams.",
                e.items_in,
            ),
            (
                "gossamer_items_invalid_total",
                "Received items dropped for breaking a limit.",
                e.items_invalid,
            ),
            (
                "gossamer_stamps_beyond_drift_total",
                "Entries stamped further ahead of this node's clock than limits.max_clock_drift_ms (kept; the clock moved only up to the bound).",
                e.stamps_clamped,
            ),
            (
                "gossamer_sync_joins_skipped_total",
                "Anti-entropy exchanges that did not join the peer's context: they refused one of its entries, or a rebase happened while they ran.",
                e.sync_joins_skipped,
            ),
            (
                "gossamer_gc_waiting_total",
                "Tombstone collection rounds that collected nothing because a member had not yet shown what it has seen.",
                e.gc_waiting,
            ),
            (
                "gossamer_broadcasts_queued_total",
                "Broadcasts queued for gossip.",
                q.queued,
            ),
            (
                "gossamer_broadcasts_superseded_total",
                "Broadcasts replaced by a newer one on the same key or member.",
                q.superseded,
            ),
            (
                "gossamer_broadcasts_dropped_total",
                "Broadcasts dropped because the queue was full (anti-entropy repairs them).",
                q.dropped_full,
            ),
            (
                "gossamer_broadcasts_oversized_total",
                "Broadcasts too large for a datagram, sent on a stream instead.",
                q.oversized,
            ),
        ] {
            f.counter(name, help, v);
        }
        f.gauge(
            "gossamer_broadcast_queue_length",
            "Broadcasts waiting in the queue.",
            len as f64,
        );
    }

    /// Bandwidth governance: bytes and refusals per traffic class, tokens, back-off,
    /// and what was dropped or put off because of it.
    pub(super) fn bandwidth_metrics(&self, f: &mut Families) {
        use crate::core::limiter::Traffic;
        let b = self.bandwidth();
        let e = self.engine_stats();
        let (q, _) = self.queue_stats();
        let per_class = |v: &[u64; 5]| -> Vec<(Labels, f64)> {
            Traffic::ALL
                .iter()
                .map(|t| (labels(&[("class", t.name())]), v[*t as usize] as f64))
                .collect()
        };
        f.labelled(
            "gossamer_gossip_bytes_total",
            "Gossip bytes sent (datagrams and sync streams), by traffic class.",
            MetricKind::Counter,
            per_class(&b.stats.bytes),
        );
        f.labelled(
            "gossamer_bandwidth_refused_total",
            "Sends refused for lack of bandwidth tokens, by traffic class.",
            MetricKind::Counter,
            per_class(&b.stats.refused),
        );
        f.labelled(
            "gossamer_broadcasts_dropped_by_class_total",
            "Broadcasts dropped from the full queue, by class (anti-entropy repairs them).",
            MetricKind::Counter,
            vec![
                (
                    labels(&[("class", "delta")]),
                    (q.dropped_full - q.dropped_full_membership) as f64,
                ),
                (
                    labels(&[("class", "membership")]),
                    q.dropped_full_membership as f64,
                ),
            ],
        );
        f.gauge(
            "gossamer_bandwidth_cap_bytes_per_second",
            "Configured gossip bandwidth cap (0 = unlimited).",
            b.rate as f64,
        );
        f.gauge(
            "gossamer_bandwidth_tokens_bytes",
            "Tokens in the node's bandwidth bucket now.",
            b.tokens as f64,
        );
        f.gauge(
            "gossamer_bandwidth_backoff_level",
            "Bandwidth back-off level: fanout and delta budgets halve, the anti-entropy interval doubles, per level.",
            b.backoff_level as f64,
        );
        for (name, help, v) in [
            (
                "gossamer_inbound_datagrams_dropped_total",
                "Datagrams dropped by the per-peer inbound cap.",
                e.inbound_dropped,
            ),
            (
                "gossamer_syncs_deferred_total",
                "Periodic anti-entropy exchanges put off under bandwidth pressure.",
                e.syncs_deferred,
            ),
            (
                "gossamer_sends_deferred_total",
                "Direct membership messages that waited for bandwidth tokens.",
                e.sends_deferred,
            ),
            (
                "gossamer_sends_deferred_dropped_total",
                "Direct membership messages dropped after waiting (stale or wait list full).",
                e.deferred_dropped,
            ),
            (
                "gossamer_bandwidth_backoff_steps_total",
                "Times the bandwidth back-off stepped up.",
                e.backoff_steps,
            ),
            (
                "gossamer_claims_refused_total",
                "Second-hand membership claims refused (a node may speak only for itself).",
                e.claims_refused,
            ),
            (
                "gossamer_members_refused_full_total",
                "Members introduced second-hand and refused because the table held max_members.",
                e.members_refused_full,
            ),
            (
                "gossamer_intros_limited_total",
                "Members introduced second-hand and refused because the relaying peer had spent its introduction budget.",
                e.intros_limited,
            ),
            (
                "gossamer_claims_verified_total",
                "Refused claims verified by asking the member itself.",
                e.claims_verified,
            ),
            (
                "gossamer_claims_answered_total",
                "Stale views of this node corrected first-hand.",
                e.claims_answered,
            ),
            (
                "gossamer_tree_pushes_total",
                "Updates sent down the broadcast tree (one per child).",
                e.tree_sent,
            ),
            (
                "gossamer_ids_missing_total",
                "Update ids announced to this node while it lacked the update.",
                e.ids_missing,
            ),
            (
                "gossamer_grafts_sent_total",
                "Missing updates asked for by id.",
                e.grafts_sent,
            ),
            (
                "gossamer_grafts_answered_total",
                "Updates sent in answer to a peer's graft.",
                e.grafts_answered,
            ),
            (
                "gossamer_grafts_abandoned_total",
                "Missing ids given up after every graft try or not tracked (anti-entropy repairs them).",
                e.grafts_abandoned + e.grafts_dropped,
            ),
            (
                "gossamer_subtrees_healed_total",
                "Grafted updates forwarded down this node's span of the writer's tree.",
                e.subtrees_healed,
            ),
        ] {
            f.counter(name, help, v);
        }
        let r = self.runtime_stats();
        f.counter_atomic(
            "gossamer_syncs_refused_total",
            "Sync streams refused because the peer had too many open.",
            &r.syncs_refused,
        );
        f.counter(
            "gossamer_sync_paced_seconds_total",
            "Time sync streams waited for bandwidth tokens.",
            r.sync_paced_us.load(std::sync::atomic::Ordering::Relaxed) / 1_000_000,
        );
    }

    /// QUIC datagrams, streams, connections and handshakes.
    pub(super) fn transport_metrics(&self, f: &mut Families) {
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
                "gossamer_reliable_dropped_total",
                "Oversized updates dropped: too many in flight, no connection, or past the 5 s deadline (repaired by anti-entropy).",
                &r.reliable_dropped,
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
            f.counter_atomic(name, help, v);
        }
        f.labelled(
            "gossamer_handshakes_refused_total",
            "TLS handshakes refused, by reason.",
            MetricKind::Counter,
            self.handshake_stats()
                .snapshot()
                .refusals()
                .into_iter()
                .map(|(reason, n)| (labels(&[("reason", reason)]), n as f64))
                .collect(),
        );
        f.counter_atomic(
            "gossamer_handshake_retries_total",
            "QUIC Retry packets sent to incoming connection attempts from unvalidated addresses.",
            &self.handshake_stats().retries_sent,
        );
        let admin = self.admin_handshake_stats().snapshot();
        f.counter(
            "gossamer_admin_tls_accepted_total",
            "Admin API client certificates accepted (admin_tls).",
            admin.accepted,
        );
        f.labelled(
            "gossamer_admin_tls_refused_total",
            "Admin API client certificates refused, by reason (admin_tls).",
            MetricKind::Counter,
            admin
                .refusals()
                .into_iter()
                // QUIC admission reasons do not apply to the admin API.
                .filter(|(r, _)| !matches!(*r, "rate_limited" | "retry_failed"))
                .map(|(reason, n)| (labels(&[("reason", reason)]), n as f64))
                .collect(),
        );
    }
}
