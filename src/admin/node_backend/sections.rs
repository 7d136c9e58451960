//! The sections of `/metrics`, one collector per subsystem, each reading that
//! subsystem's counters at every scrape. Counters copied from a stats struct are named
//! and explained once, in that section's table.

use std::fmt;
use std::sync::Arc;

use prometheus_client::registry::Registry;

use super::query_metrics::query_metrics;
use super::repair_metrics::repair_metrics;
use super::scrape::{get, CounterDef, Scrape, Section, Write};
use super::security_metrics::security_metrics;
use crate::core::dissemination::QueueStats;
use crate::core::engine::EngineStats;
use crate::core::state::StoreStats;
use crate::identity::HandshakeStats;
use crate::node::datacenters;
use crate::node::persist::PersistStats;
use crate::node::watch::WatchStats;
use crate::node::{Node, RuntimeStats};

/// Registers every section of `node`'s `/metrics` in `registry`, the admin API's own
/// TLS counters (`admin_tls`), and the histogram of sync durations, which the runtime
/// records into directly.
pub(super) fn register(node: &Node, admin_tls: &Arc<HandshakeStats>, registry: &mut Registry) {
    let sections: [(&'static str, Write<Node>); 13] = [
        ("membership", membership_metrics),
        ("swim", swim_metrics),
        ("store", store_metrics),
        ("persist", persist_metrics),
        ("sync", sync_metrics),
        ("dissemination", dissemination_metrics),
        ("bandwidth", bandwidth_metrics),
        ("repair", repair_metrics),
        ("transport", transport_metrics),
        ("security", security_metrics),
        ("watch", watch_metrics),
        ("events", event_metrics),
        ("queries", query_metrics),
    ];
    for (name, write) in sections {
        registry.register_collector(Section::new(name, node, write));
        if name == "transport" {
            registry.register_collector(Section::new("admin_tls", admin_tls, admin_tls_metrics));
        }
    }
    // The registry appends a full stop to the help.
    registry.register(
        "gossamer_sync_duration_seconds",
        "Duration of the anti-entropy exchanges this node opened and completed (stream open to last frame)",
        node.runtime_stats().sync_duration.clone(),
    );
}

/// Failure detection.
const SWIM: &[CounterDef<EngineStats>] = &[
    ("gossamer_probes_total", "Direct probes sent.", |e| e.probes),
    (
        "gossamer_probes_failed_total",
        "Probes answered neither directly nor indirectly within the period.",
        |e| e.probes_failed,
    ),
    (
        "gossamer_ping_reqs_total",
        "Indirect probe requests sent.",
        |e| e.ping_reqs,
    ),
    (
        "gossamer_suspicions_total",
        "Members this node declared suspect.",
        |e| e.suspicions,
    ),
    (
        "gossamer_deaths_total",
        "Members this node declared dead.",
        |e| e.deaths,
    ),
    (
        "gossamer_members_reaped_total",
        "Dead or departed members forgotten after the reap timeout.",
        |e| e.reaped,
    ),
    (
        "gossamer_refutations_total",
        "Refutations of suspicion about this node.",
        |e| e.refutations,
    ),
    (
        "gossamer_seed_attempts_total",
        "Seed contact attempts.",
        |e| e.seed_attempts,
    ),
];

/// The key-value store.
const STORE: &[CounterDef<StoreStats>] = &[
    (
        "gossamer_local_writes_total",
        "Local writes (sets and deletes).",
        |s| s.local_writes,
    ),
    (
        "gossamer_remote_applied_total",
        "Remote updates that changed the state.",
        |s| s.remote_applied,
    ),
    (
        "gossamer_duplicate_updates_total",
        "Remote updates already seen (redundant copies).",
        |s| s.duplicates,
    ),
    (
        "gossamer_conflicts_total",
        "Concurrent writes resolved by (hlc, writer).",
        |s| s.conflicts,
    ),
    (
        "gossamer_tombstones_collected_total",
        "Tombstones removed once every member had seen them and the grace period had passed.",
        |s| s.tombstones_collected,
    ),
    (
        "gossamer_rebase_dropped_total",
        "Entries a rebase dropped because the peer had collected a delete over them.",
        |s| s.rebase_dropped,
    ),
    (
        "gossamer_writers_compacted_total",
        "Departed writers compacted out of the causal context (their keys gone, their dots seen by every member).",
        |s| s.writers_compacted,
    ),
];

/// The data directory's commits.
const PERSIST: &[CounterDef<PersistStats>] = &[
    (
        "gossamer_store_commits_total",
        "Transactions committed to the data directory's store.",
        |p| get(&p.commits),
    ),
    (
        "gossamer_store_fsyncs_total",
        "Durable commits (each forces the store file to disk once).",
        |p| get(&p.fsyncs),
    ),
    (
        "gossamer_store_writes_acked_total",
        "Local writes acknowledged (with sync durability: after their commit).",
        |p| get(&p.writes_acked),
    ),
    (
        "gossamer_store_entries_written_total",
        "Entries written or removed by commits (local and from peers).",
        |p| get(&p.entries_written),
    ),
    (
        "gossamer_store_commit_failures_total",
        "Commits that failed (the node stops persisting after the first).",
        |p| get(&p.failures),
    ),
    (
        "gossamer_store_commit_microseconds_total",
        "Time spent in commits (µs).",
        |p| get(&p.commit_us),
    ),
];

/// Anti-entropy.
const SYNC: &[CounterDef<EngineStats>] = &[
    (
        "gossamer_syncs_started_total",
        "Anti-entropy exchanges started.",
        |e| e.syncs_started,
    ),
    (
        "gossamer_syncs_accepted_total",
        "Anti-entropy exchanges peers opened with this node.",
        |e| e.syncs_accepted,
    ),
    (
        "gossamer_syncs_completed_total",
        "Anti-entropy exchanges completed.",
        |e| e.syncs_completed,
    ),
    (
        "gossamer_syncs_failed_total",
        "Anti-entropy exchanges failed.",
        |e| e.syncs_failed,
    ),
    (
        "gossamer_sync_entries_applied_total",
        "Entries received by anti-entropy that changed the state.",
        |e| e.sync_entries_applied,
    ),
    (
        "gossamer_rebases_total",
        "Rebases against a peer that collected deletes this node may not have seen (it was reaped, partitioned off or new).",
        |e| e.rebases,
    ),
    (
        "gossamer_write_signatures_total",
        "Signatures made over batches of this node's writes (one per batch, up to 64 writes each).",
        |e| e.write_signatures,
    ),
    (
        "gossamer_fences_refused_total",
        "Peers' fences ignored because they named dots no writer can have issued yet.",
        |e| e.fences_refused,
    ),
    (
        "gossamer_sync_digest_opens_total",
        "Anti-entropy exchanges this node opened with a digest of its context and fence.",
        |e| e.sync_digest_opens,
    ),
    (
        "gossamer_sync_digests_shared_total",
        "Digest openings answered whose digest was this node's (an idle exchange).",
        |e| e.sync_digests_shared,
    ),
    (
        "gossamer_sync_digests_differed_total",
        "Digest openings answered whose digest was not this node's (a four-turn exchange).",
        |e| e.sync_digests_differed,
    ),
];

/// Gossip items and what became of them.
const DISSEMINATION: &[CounterDef<EngineStats>] = &[
    (
        "gossamer_gossip_items_sent_total",
        "Gossip items (member updates and key deltas) packed into datagrams.",
        |e| e.items_out,
    ),
    (
        "gossamer_gossip_items_received_total",
        "Gossip items received in datagrams.",
        |e| e.items_in,
    ),
    (
        "gossamer_items_invalid_total",
        "Received items dropped for breaking a limit.",
        |e| e.items_invalid,
    ),
    (
        "gossamer_stamps_beyond_drift_total",
        "Entries stamped further ahead of this node's clock than limits.max_clock_drift_ms (kept; the clock moved only up to the bound).",
        |e| e.stamps_clamped,
    ),
    (
        "gossamer_sync_joins_skipped_total",
        "Anti-entropy exchanges that did not join the peer's context: they refused one of its entries, a rebase happened while they ran, or the peer held entries back.",
        |e| e.sync_joins_skipped,
    ),
    (
        "gossamer_sync_turns_held_total",
        "Anti-entropy turns of ours that held back entries the peer lacked beyond the per-turn limit (it exchanges again at once).",
        |e| e.sync_turns_held,
    ),
    (
        "gossamer_sync_follow_ups_total",
        "Anti-entropy exchanges brought forward because the last one showed this node far behind (the peer held entries back, or sent 64 or more it lacked); none while backed off.",
        |e| e.sync_follow_ups,
    ),
    (
        "gossamer_sync_known_losses_total",
        "Anti-entropy exchanges brought a quarter interval forward after a known loss: a datagram that found its connection's send buffer full (the exchange goes to that peer), or grafts given up after every try; none while backed off.",
        |e| e.sync_known_losses,
    ),
    (
        "gossamer_sync_after_bursts_total",
        "Anti-entropy exchanges started a quarter interval after a burst of updates ended (64 or more by the tree or grafts since this node's last exchange began), before the interval's end; none while backed off.",
        |e| e.sync_after_bursts,
    ),
    (
        "gossamer_gc_waiting_total",
        "Tombstone collection rounds that collected nothing because a member had not yet shown what it has seen.",
        |e| e.gc_waiting,
    ),
];

/// The broadcast queue.
const QUEUE: &[CounterDef<QueueStats>] = &[
    (
        "gossamer_broadcasts_queued_total",
        "Broadcasts queued for gossip.",
        |q| q.queued,
    ),
    (
        "gossamer_broadcasts_superseded_total",
        "Broadcasts replaced by a newer one on the same key or member.",
        |q| q.superseded,
    ),
    (
        "gossamer_broadcasts_oversized_total",
        "Broadcasts too large for a datagram, sent on a stream instead.",
        |q| q.oversized,
    ),
];

/// What bandwidth governance, membership admission and the broadcast tree dropped, put
/// off or repaired.
const BANDWIDTH: &[CounterDef<EngineStats>] = &[
    (
        "gossamer_inbound_datagrams_dropped_total",
        "Datagrams dropped by the per-peer inbound cap.",
        |e| e.inbound_dropped,
    ),
    (
        "gossamer_syncs_deferred_total",
        "Periodic anti-entropy exchanges put off under bandwidth pressure.",
        |e| e.syncs_deferred,
    ),
    (
        "gossamer_sends_deferred_total",
        "Direct membership messages that waited for bandwidth tokens.",
        |e| e.sends_deferred,
    ),
    (
        "gossamer_sends_deferred_dropped_total",
        "Direct membership messages dropped after waiting (stale or wait list full).",
        |e| e.deferred_dropped,
    ),
    (
        "gossamer_bandwidth_backoff_steps_total",
        "Times the bandwidth back-off stepped up.",
        |e| e.backoff_steps,
    ),
    (
        "gossamer_claims_refused_total",
        "Second-hand membership claims refused (a node may speak only for itself).",
        |e| e.claims_refused,
    ),
    (
        "gossamer_members_refused_full_total",
        "Members introduced second-hand and refused because the table held max_members.",
        |e| e.members_refused_full,
    ),
    (
        "gossamer_intros_limited_total",
        "Members introduced second-hand and refused because the relaying peer had spent its introduction budget.",
        |e| e.intros_limited,
    ),
    (
        "gossamer_claims_verified_total",
        "Refused claims verified by asking the member itself.",
        |e| e.claims_verified,
    ),
    (
        "gossamer_claims_answered_total",
        "Stale views of this node corrected first-hand.",
        |e| e.claims_answered,
    ),
    (
        "gossamer_tree_pushes_total",
        "Updates sent down the broadcast tree (one per child).",
        |e| e.tree_sent,
    ),
    (
        "gossamer_ids_missing_total",
        "Update ids announced to this node while it lacked the update.",
        |e| e.ids_missing,
    ),
    (
        "gossamer_grafts_sent_total",
        "Missing updates asked for by id.",
        |e| e.grafts_sent,
    ),
    (
        "gossamer_grafts_answered_total",
        "Updates sent in answer to a peer's graft.",
        |e| e.grafts_answered,
    ),
    (
        "gossamer_grafts_abandoned_total",
        "Missing ids given up after every graft try or not tracked (anti-entropy repairs them).",
        |e| e.grafts_abandoned + e.grafts_dropped,
    ),
    (
        "gossamer_subtrees_healed_total",
        "Grafted updates forwarded down this node's span of the writer's tree.",
        |e| e.subtrees_healed,
    ),
];

/// Sync streams turned away or paced.
const SYNC_STREAMS: &[CounterDef<RuntimeStats>] = &[
    (
        "gossamer_syncs_refused_total",
        "Sync streams refused because the peer had too many open.",
        |r| get(&r.syncs_refused),
    ),
    (
        "gossamer_sync_paced_seconds_total",
        "Time sync streams waited for bandwidth tokens.",
        |r| get(&r.sync_paced_us) / 1_000_000,
    ),
];

/// QUIC datagrams, streams and connections.
const TRANSPORT: &[CounterDef<RuntimeStats>] = &[
    (
        "gossamer_datagrams_sent_total",
        "Gossip datagrams sent.",
        |r| get(&r.datagrams_sent),
    ),
    (
        "gossamer_datagram_bytes_sent_total",
        "Gossip datagram bytes sent.",
        |r| get(&r.datagram_bytes_sent),
    ),
    (
        "gossamer_datagrams_received_total",
        "Gossip datagrams received.",
        |r| get(&r.datagrams_received),
    ),
    (
        "gossamer_datagram_bytes_received_total",
        "Gossip datagram bytes received.",
        |r| get(&r.datagram_bytes_received),
    ),
    (
        "gossamer_datagrams_malformed_total",
        "Datagrams dropped as malformed.",
        |r| get(&r.datagrams_malformed),
    ),
    (
        "gossamer_datagrams_dropped_total",
        "Datagrams dropped on send: no connection, or its send buffer full (repaired by lazy repair and anti-entropy).",
        |r| get(&r.datagrams_dropped),
    ),
    (
        "gossamer_datagrams_dropped_unread_total",
        "Datagrams that reached a connection but were dropped unread because the node read too slowly (counted when the connection ends).",
        |r| get(&r.datagrams_dropped_unread),
    ),
    (
        "gossamer_reliable_sent_total",
        "Oversized updates sent on streams.",
        |r| get(&r.reliable_sent),
    ),
    (
        "gossamer_reliable_dropped_total",
        "Oversized updates dropped: too many in flight, no connection, or past the 5 s deadline (repaired by anti-entropy).",
        |r| get(&r.reliable_dropped),
    ),
    (
        "gossamer_syncs_waited_total",
        "Anti-entropy exchanges asked for while two of this node's ran (the most at once): each waited for one to end, a later one taking the place of one still waiting.",
        |r| get(&r.syncs_waited),
    ),
    (
        "gossamer_sync_bytes_sent_total",
        "Anti-entropy stream bytes sent.",
        |r| get(&r.sync_bytes_sent),
    ),
    (
        "gossamer_sync_bytes_received_total",
        "Anti-entropy stream bytes received.",
        |r| get(&r.sync_bytes_received),
    ),
    (
        "gossamer_frames_malformed_total",
        "Stream frames refused as malformed.",
        |r| get(&r.frames_malformed),
    ),
    (
        "gossamer_identity_mismatch_total",
        "Peers refused for claiming another node's identity.",
        |r| get(&r.identity_mismatch),
    ),
    (
        "gossamer_dial_failures_total",
        "Failed connection attempts.",
        |r| get(&r.dial_failures),
    ),
    (
        "gossamer_suspect_connections_kept_total",
        "Connections to a suspected member kept because it still sent on them (a slow member, not a stale path).",
        |r| get(&r.suspect_connections_kept),
    ),
    (
        "gossamer_stale_connections_replaced_total",
        "Connections replaced by a member's new connection because they no longer answered (a restarted member's stale path).",
        |r| get(&r.stale_connections_replaced),
    ),
];

/// The change log and its watches.
const WATCH: &[CounterDef<WatchStats>] = &[
    (
        "gossamer_watches_opened_total",
        "Watches opened on the admin API.",
        |w| get(&w.opened),
    ),
    (
        "gossamer_watches_refused_total",
        "Watches refused because watch.max_watches were open (HTTP 429).",
        |w| get(&w.refused),
    ),
    (
        "gossamer_changes_logged_total",
        "Key-value changes this node applied and indexed for watches.",
        |w| get(&w.logged),
    ),
];

/// Members by status and by datacenter, RTT per datacenter, and who this node is.
fn membership_metrics(node: &Node, out: &mut Scrape<'_>) -> fmt::Result {
    let status = Node::status(node);
    out.gauges(
        "gossamer_info",
        "Constant 1, labelled with this node's id, datacenter, zone and version.",
        [(
            [
                ("node", status.node_id.as_str()),
                ("dc", status.dc.as_str()),
                ("zone", node.config().zone.as_str()),
                ("version", status.version.as_str()),
            ],
            1i64,
        )],
    )?;
    out.gauges(
        "gossamer_members",
        "Members known to this node by status, itself included.",
        status
            .members
            .iter()
            .map(|(s, n)| ([("status", s.as_str())], *n)),
    )?;
    let skew = node.clock_skew();
    out.gauges(
        "gossamer_peer_clock_ahead_ms",
        "Largest amount a writer's stamps were ahead of this node's clock, per writer.",
        skew.iter()
            .map(|(w, s)| ([("peer", w.as_str())], s.ahead_ms)),
    )?;
    let dcs = datacenters(&Node::members(node));
    out.gauges(
        "gossamer_members_by_dc",
        "Members known to this node by datacenter and status, itself included.",
        dcs.iter().flat_map(|(dc, s)| {
            s.by_status
                .iter()
                .map(move |(st, n)| ([("dc", dc.as_str()), ("status", *st)], *n))
        }),
    )?;
    let rtts = || {
        dcs.iter().filter_map(|(dc, s)| {
            let (mean, max) = (s.rtt_mean_ms?, s.rtt_max_ms?);
            Some(([("dc", dc.as_str())], mean / 1000.0, max / 1000.0))
        })
    };
    out.gauges(
        "gossamer_dc_rtt_mean_seconds",
        "Mean round-trip time to the alive members of each datacenter that have one.",
        rtts().map(|(dc, mean, _)| (dc, mean)),
    )?;
    out.gauges(
        "gossamer_dc_rtt_max_seconds",
        "Largest round-trip time to an alive member of each datacenter.",
        rtts().map(|(dc, _, max)| (dc, max)),
    )?;
    out.gauge(
        "gossamer_health_score",
        "Lifeguard local health score: 0 is healthy; probe timing is stretched by score + 1.",
        node.awareness(),
    )
}

/// Failure detection counters.
fn swim_metrics(node: &Node, out: &mut Scrape<'_>) -> fmt::Result {
    out.table(&node.engine_stats(), SWIM)
}

/// The key-value store.
fn store_metrics(node: &Node, out: &mut Scrape<'_>) -> fmt::Result {
    let status = Node::status(node);
    out.gauge("gossamer_keys", "Live keys held.", status.keys)?;
    out.gauge("gossamer_tombstones", "Tombstones held.", status.tombstones)?;
    out.table(&node.with_store_stats(), STORE)
}

/// The data directory's commits: writes acknowledged over commits is the group-commit
/// factor (absent without a data directory).
fn persist_metrics(node: &Node, out: &mut Scrape<'_>) -> fmt::Result {
    match node.persist_stats() {
        Some(p) => out.table(p, PERSIST),
        None => Ok(()),
    }
}

/// Anti-entropy (its durations are a histogram the runtime records into, registered
/// apart).
fn sync_metrics(node: &Node, out: &mut Scrape<'_>) -> fmt::Result {
    out.table(&node.engine_stats(), SYNC)?;
    out.counters(
        "gossamer_writes_refused_total",
        "Peers' writes refused, by reason: unsigned, unknown_writer (no known certificate of the writer holds the key), bad_signature (forged or altered), outside_grant, revoked.",
        "reason",
        node.writes_refused().by_reason(),
    )
}

/// The broadcast queue: gossip items sent and received, drops.
fn dissemination_metrics(node: &Node, out: &mut Scrape<'_>) -> fmt::Result {
    out.table(&node.engine_stats(), DISSEMINATION)?;
    let (q, len) = node.queue_stats();
    out.table(&q, QUEUE)?;
    // One family, so that each drop is counted once: the total is its sum.
    out.counters(
        "gossamer_broadcasts_dropped_total",
        "Broadcasts dropped because the queue was full, by class (anti-entropy repairs them).",
        "class",
        [
            (
                "delta",
                q.dropped_full.saturating_sub(q.dropped_full_membership),
            ),
            ("membership", q.dropped_full_membership),
        ],
    )?;
    out.gauge(
        "gossamer_broadcast_queue_length",
        "Broadcasts waiting in the queue.",
        len,
    )
}

/// Bandwidth governance: bytes and refusals per traffic class, tokens, back-off,
/// and what was dropped or put off because of it.
fn bandwidth_metrics(node: &Node, out: &mut Scrape<'_>) -> fmt::Result {
    use crate::core::limiter::{Traffic, TRAFFIC_CLASSES};
    let b = node.bandwidth();
    let per_class = |v: &[u64; TRAFFIC_CLASSES]| -> Vec<(&'static str, u64)> {
        Traffic::ALL
            .iter()
            .map(|t| (t.name(), v[*t as usize]))
            .collect()
    };
    out.counters(
        "gossamer_gossip_bytes_total",
        "Gossip bytes sent (datagrams and sync streams), by traffic class.",
        "class",
        per_class(&b.stats.bytes),
    )?;
    out.counters(
        "gossamer_bandwidth_refused_total",
        "Sends refused for lack of bandwidth tokens, by traffic class.",
        "class",
        per_class(&b.stats.refused),
    )?;
    out.gauge(
        "gossamer_bandwidth_cap_bytes_per_second",
        "Configured gossip bandwidth cap (0 = unlimited).",
        b.rate,
    )?;
    out.gauge(
        "gossamer_bandwidth_tokens_bytes",
        "Tokens in the node's bandwidth bucket now.",
        b.tokens,
    )?;
    out.gauge(
        "gossamer_bandwidth_backoff_level",
        "Bandwidth back-off level: fanout and delta budgets halve, the anti-entropy interval doubles, per level.",
        b.backoff_level,
    )?;
    out.table(&node.engine_stats(), BANDWIDTH)?;
    out.table(node.runtime_stats(), SYNC_STREAMS)
}

/// The change log and the watches of the admin API.
fn watch_metrics(node: &Node, out: &mut Scrape<'_>) -> fmt::Result {
    let w = node.watch_stats();
    out.gauge(
        "gossamer_watches_open",
        "Watches open on the admin API.",
        get(&w.open),
    )?;
    out.table(w, WATCH)?;
    out.counters(
        "gossamer_watch_resets_total",
        "Watches reset (told to re-list), by reason: behind (the ring no longer holds the index, or the watcher read too slowly), before_this_life (an index from before the node's restart), ahead (an index beyond the node's).",
        "reason",
        w.resets_by_reason(),
    )
}

/// User events: sent, delivered, every drop by reason, repairs, watches.
fn event_metrics(node: &Node, out: &mut Scrape<'_>) -> fmt::Result {
    let s = node.engine_event_stats();
    out.counter(
        "gossamer_events_sent_total",
        "User events this node sent.",
        s.sent,
    )?;
    out.counter(
        "gossamer_events_delivered_total",
        "User events delivered to this node's subscribers (its own included).",
        s.delivered,
    )?;
    out.counters(
        "gossamer_events_dropped_total",
        "User events not delivered, by reason: duplicate (a copy already delivered), stale (older than events.seen_ms), rate_limited (the sender's per_sender_per_sec), oversized (name or payload beyond the bounds), bad_signature (forged, altered, unknown or revoked sender), send_refused (a local send above our own rate).",
        "reason",
        [
            ("duplicate", s.duplicates),
            ("stale", s.stale),
            ("rate_limited", s.rate_limited),
            ("oversized", s.oversized),
            ("bad_signature", s.bad_signature),
            ("send_refused", s.send_refused),
        ],
    )?;
    out.counters(
        "gossamer_event_repairs_total",
        "Repairs of user events lost on the way: pulls sent and answered, missing events abandoned after every retry, ids dropped while too many were missing.",
        "kind",
        [
            ("sent", s.pulls_sent),
            ("answered", s.pulls_answered),
            ("abandoned", s.pulls_abandoned),
            ("dropped", s.pulls_dropped),
        ],
    )?;
    let w = node.recent_events_ring().stats();
    out.gauge(
        "gossamer_event_watches_open",
        "Event watches open on the admin API.",
        w.watches_open.load(std::sync::atomic::Ordering::Relaxed) as u64,
    )?;
    out.counter(
        "gossamer_event_watches_refused_total",
        "Event watches refused because 64 were open (HTTP 429).",
        get(&w.watches_refused),
    )?;
    out.counter(
        "gossamer_event_watch_missed_total",
        "Events watchers missed (evicted from the recent ring before they reached them, or read too slowly).",
        get(&w.watch_missed),
    )?;
    out.counter(
        "gossamer_events_coalesced_total",
        "Events coalescing watches left out (a later event of the same name came within the window).",
        get(&w.coalesced),
    )?;
    let h = node.handler_stats();
    out.counters(
        "gossamer_event_handler_runs_total",
        "Handlers of events and queries ([[handlers]] commands, and query handlers registered in Rust), by outcome: started, succeeded (exit 0; a query handler with an answer within the bound), failed (did not start, another exit status, an answer over max_response_payload, a panic), timed_out (killed at timeout_ms or the query's timeout), skipped (every handler_concurrency slot taken).",
        "outcome",
        [
            ("started", get(&h.started)),
            ("succeeded", get(&h.succeeded)),
            ("failed", get(&h.failed)),
            ("timed_out", get(&h.timed_out)),
            ("skipped", get(&h.skipped)),
        ],
    )
}

/// QUIC datagrams, streams, connections and handshakes.
fn transport_metrics(node: &Node, out: &mut Scrape<'_>) -> fmt::Result {
    out.table(node.runtime_stats(), TRANSPORT)?;
    let quic = node.handshake_stats();
    out.counters(
        "gossamer_handshakes_refused_total",
        "TLS handshakes refused, by reason.",
        "reason",
        quic.snapshot().refusals(),
    )?;
    out.counter(
        "gossamer_handshake_retries_total",
        "QUIC Retry packets sent to incoming connection attempts from unvalidated addresses.",
        get(&quic.retries_sent),
    )
}

/// The admin API's own TLS: client certificates accepted and refused (`admin_tls`).
fn admin_tls_metrics(stats: &Arc<HandshakeStats>, out: &mut Scrape<'_>) -> fmt::Result {
    let admin = stats.snapshot();
    out.counter(
        "gossamer_admin_tls_accepted_total",
        "Admin API client certificates accepted (admin_tls).",
        admin.accepted,
    )?;
    out.counters(
        "gossamer_admin_tls_refused_total",
        "Admin API client certificates refused, by reason (admin_tls).",
        "reason",
        admin
            .refusals()
            .into_iter()
            // QUIC admission reasons do not apply to the admin API.
            .filter(|(r, _)| !matches!(*r, "rate_limited" | "retry_failed")),
    )
}
