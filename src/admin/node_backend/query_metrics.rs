//! The queries section of `/metrics`: asked, answered, accepted and dropped, read from
//! the engine's counters at every scrape.

use std::fmt;

use super::scrape::Scrape;
use crate::node::Node;

/// Queries: asked and answered here, replies accepted and dropped, drops of
/// queries on the way (the events path's counters, for queries).
pub(super) fn query_metrics(node: &Node, out: &mut Scrape<'_>) -> fmt::Result {
    let s = node.query_stats();
    let d = node.query_delivery_stats();
    out.counters(
        "gossamer_queries_total",
        "Queries by what this node did with them: asked (ours), matched (others' delivered here for us, acked), answered (by our handlers), done (ours that reached their deadline).",
        "kind",
        [
            ("asked", s.asked),
            ("matched", s.matched),
            ("answered", s.answered),
            ("done", s.done),
        ],
    )?;
    out.counters(
        "gossamer_query_replies_total",
        "Acks and answers to this node's queries, accepted by kind (ack, response) or dropped by reason: unknown (no such pending query), duplicate (a second one from a responder), refused (beyond max_responses or max_response_payload).",
        "kind",
        [
            ("ack", s.acks),
            ("response", s.responses),
            ("unknown", s.unknown),
            ("duplicate", s.duplicates),
            ("refused", s.refused),
        ],
    )?;
    out.counters(
        "gossamer_queries_dropped_total",
        "Queries not delivered or not asked, by reason: duplicate, stale, rate_limited (the asker's per_sender_per_sec, shared with its events), oversized (name, payload, filter or timeout beyond the bounds), bad_signature, ask_refused (a local query refused: bounds, rate, max_pending), answering_full (a matching query not acked: max_answering waiting).",
        "reason",
        [
            ("duplicate", d.duplicates),
            ("stale", d.stale),
            ("rate_limited", d.rate_limited),
            ("oversized", d.oversized),
            ("bad_signature", d.bad_signature),
            ("ask_refused", s.ask_refused),
            ("answering_full", s.answering_full),
        ],
    )
}
