//! The repair rounds' section of `/metrics`: the loss QUIC reports on this node's
//! connections, and what the repair rounds did about it (ARCHITECTURE.md, "Repair
//! rounds under loss").

use std::fmt;

use super::scrape::{CounterDef, Scrape};
use crate::core::engine::EngineStats;
use crate::node::Node;

/// The repair rounds' counters.
const REPAIR: &[CounterDef<EngineStats>] = &[
    (
        "gossamer_repair_rounds_total",
        "Gossip rounds pulled ahead of the interval because QUIC reported loss (gossamer_path_loss_permille at least 5): a new id's round comes a quarter of the graft timeout later, or a graft timeout after the last round if that is later; none while backed off.",
        |e| e.repair_rounds,
    ),
    (
        "gossamer_ids_told_children_total",
        "Ids sent by repair rounds to the tree children this node had pushed their updates to, so that a lost tree copy is grafted at once.",
        |e| e.ids_told_children,
    ),
    (
        "gossamer_ids_owed_dropped_total",
        "Ids owed to tree children but not sent (more than 64 for one child between two rounds, a child gone, the bandwidth bucket empty, or the loss over or backed off by the round); the random gossip rounds still tell them.",
        |e| e.ids_owed_dropped,
    ),
];

/// The loss QUIC reports, and the repair rounds' counters.
pub(super) fn repair_metrics(node: &Node, out: &mut Scrape<'_>) -> fmt::Result {
    out.gauge(
        "gossamer_path_loss_permille",
        "Packets QUIC declared lost per thousand sent on this node's connections, over the last ten seconds; repair rounds run from 5.",
        node.bandwidth().path_loss_permille,
    )?;
    out.table(&node.engine_stats(), REPAIR)
}
