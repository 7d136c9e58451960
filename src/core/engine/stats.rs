//! Counters of the engine.

use serde::Serialize;

/// Counters of the engine (the runtime and simulator add transport-level ones).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EngineStats {
    /// Datagrams handed out for sending.
    pub datagrams_out: u64,
    /// Items inside those datagrams.
    pub items_out: u64,
    /// Datagrams received.
    pub datagrams_in: u64,
    /// Items received.
    pub items_in: u64,
    /// Items received that broke a limit or rule, dropped.
    pub items_invalid: u64,
    /// Signatures made over batches of this node's writes (one per batch).
    pub write_signatures: u64,
    /// Anti-entropy exchanges this node opened.
    pub syncs_started: u64,
    /// Anti-entropy exchanges peers opened with this node.
    pub syncs_accepted: u64,
    /// Completed exchanges.
    pub syncs_completed: u64,
    /// Failed exchanges.
    pub syncs_failed: u64,
    /// Exchanges we opened with a digest of our context and fence (#18).
    pub sync_digest_opens: u64,
    /// Digest `Open`s we answered whose digest was ours: the idle exchange.
    pub sync_digests_shared: u64,
    /// Digest `Open`s we answered whose digest was not ours: the four-turn exchange.
    pub sync_digests_differed: u64,
    /// Entries kept although stamped further ahead of our clock than the drift bound;
    /// our clock moved only up to the bound.
    pub stamps_clamped: u64,
    /// Exchanges that did not join the peer's context because they refused one of its
    /// entries (the refused dots must not count as seen), or the peer held entries back.
    pub sync_joins_skipped: u64,
    /// Entries received through anti-entropy that changed the state.
    pub sync_entries_applied: u64,
    /// Our turns of an exchange that held back entries the peer lacked (more than
    /// `core::sync::ENTRIES_PER_TURN`; `SyncFrame::Held`).
    pub sync_turns_held: u64,
    /// Exchanges brought forward because the last one showed we were far behind (the
    /// peer held entries back, or sent `core::sync::FAR_BEHIND` or more we lacked).
    pub sync_follow_ups: u64,
    /// Exchanges brought a quarter interval forward after a known loss: a datagram of
    /// ours that never left (the next goes to its peer), or grafts given up.
    pub sync_known_losses: u64,
    /// Exchanges started a quarter interval after a burst ended (`core::sync::FAR_BEHIND`
    /// or more updates by the tree or grafts since our last exchange began), before the
    /// interval's end.
    pub sync_after_bursts: u64,
    /// Gossip rounds pulled ahead of the interval because the transport reported loss
    /// (`repair_rounds.rs`): a new id's round a quarter graft timeout later, or a graft
    /// timeout after the last round if that is later.
    pub repair_rounds: u64,
    /// Ids sent by repair rounds to the children we had pushed their updates to.
    pub ids_told_children: u64,
    /// Ids owed to tree children but not sent (more than 64 for one child between two
    /// rounds, a child gone, the bucket empty, or the loss over): the random rounds
    /// still tell them.
    pub ids_owed_dropped: u64,
    /// Rebases against a peer that collected deletes we may not have seen (we were
    /// reaped, partitioned off or new when it collected them).
    pub rebases: u64,
    /// Peers' fences ignored because they named dots no writer can have issued yet.
    pub fences_refused: u64,
    /// Collection rounds that held tombstones but could not collect any because a member
    /// had not yet shown us what it has seen.
    pub gc_waiting: u64,
    /// Seed contact attempts.
    pub seed_attempts: u64,
    /// Refutations of suspicion about ourselves.
    pub refutations: u64,
    /// Second-hand membership claims refused because they would speak for another
    /// member (mark it left, revive it, refute its suspicion, change its metadata).
    pub claims_refused: u64,
    /// Members sent our view of them directly to verify a refused claim.
    pub claims_verified: u64,
    /// Peers sent our own state directly because they told us an older or different one.
    pub claims_answered: u64,
    /// Members introduced second-hand and refused because the table held `max_members`.
    pub members_refused_full: u64,
    /// Members introduced second-hand and refused because the relaying peer had spent
    /// its introduction budget (`intro_burst`, `intro_per_sec`).
    pub intros_limited: u64,
    /// Direct probes sent.
    pub probes: u64,
    /// Probes that got no ack, direct or indirect, within the period.
    pub probes_failed: u64,
    /// Indirect probe requests sent.
    pub ping_reqs: u64,
    /// Members we declared suspect.
    pub suspicions: u64,
    /// Members we declared dead.
    pub deaths: u64,
    /// Dead or departed members forgotten after the reap timeout.
    pub reaped: u64,
    /// Datagrams from a peer beyond `inbound_datagrams_per_peer`, dropped.
    pub inbound_dropped: u64,
    /// Gossip datagrams (or reliable sends) not sent for lack of tokens; what they would
    /// have carried stays queued or is repaired by anti-entropy.
    pub sends_limited: u64,
    /// Periodic anti-entropy exchanges put off because the bucket was below the
    /// anti-entropy reserve.
    pub syncs_deferred: u64,
    /// Times the bandwidth back-off stepped up.
    pub backoff_steps: u64,
    /// Direct membership messages (probes, acks, suspicions, answers) that waited for
    /// tokens instead of being dropped.
    pub sends_deferred: u64,
    /// Of those, dropped after all: stale (older than a probe period) or the wait list
    /// was full.
    pub deferred_dropped: u64,
    /// Updates sent down the broadcast tree (one per child).
    pub tree_sent: u64,
    /// Ids announced to us of updates we lacked.
    pub ids_missing: u64,
    /// Graft requests sent (an update asked for by id).
    pub grafts_sent: u64,
    /// Updates sent in answer to grafts.
    pub grafts_answered: u64,
    /// Missing ids given up after every graft try (anti-entropy repairs them).
    pub grafts_abandoned: u64,
    /// Missing ids not tracked because too many were pending (anti-entropy repairs them).
    pub grafts_dropped: u64,
    /// Updates a graft brought us that we forwarded down our own span of the writer's
    /// tree (its tree copy was lost above us, so our subtree lacked it too).
    pub subtrees_healed: u64,
}
