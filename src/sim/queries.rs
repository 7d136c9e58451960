//! Queries in the simulator: asking them, answering them at every node the query
//! matches (at once, with the node's id, unless the node is made mute), and recording
//! every ack, answer and report so tests can check who answered, and how fast.

use std::collections::{BTreeMap, BTreeSet};

use rand::Rng;

use super::{Ev, Sim};
use crate::core::engine::Event as EngineEvent;
use crate::core::proto::{encoded_len, Datagram, Item, MemberInfo};
use crate::core::queries::{QueryError, QueryFilter, QueryReply, QueryReport};
use crate::core::NodeId;

/// Most retransmissions of a reliable message the model draws before it gives up.
const MAX_RETRANSMITS: u32 = 16;

/// One of a query's replies as its asker's engine accepted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedReply {
    /// When (µs).
    pub at_us: u64,
    /// What, from whom.
    pub reply: QueryReply,
}

/// Every query asked in a run, its replies and its report.
#[derive(Debug, Clone, Default)]
pub struct QueryLog {
    /// Per query (asking node, seq): when it was asked (µs).
    asked: BTreeMap<(usize, u64), u64>,
    replies: BTreeMap<(usize, u64), Vec<LoggedReply>>,
    done: BTreeMap<(usize, u64), (u64, QueryReport)>,
    /// Per node: the queries its engine handed it to answer (asker, seq).
    handed: BTreeMap<usize, Vec<(NodeId, u64)>>,
    /// Nodes that never answer (their handler hangs).
    mute: BTreeSet<usize>,
    /// Queries node `.0` is to answer at the end of its current drain.
    to_answer: Vec<(usize, NodeId, u64)>,
}

impl QueryLog {
    /// When query `(node, seq)` was asked (µs).
    pub fn asked_at(&self, node: usize, seq: u64) -> Option<u64> {
        self.asked.get(&(node, seq)).copied()
    }

    /// The replies to query `(node, seq)` its asker accepted, in order.
    pub fn replies(&self, node: usize, seq: u64) -> &[LoggedReply] {
        self.replies.get(&(node, seq)).map_or(&[], Vec::as_slice)
    }

    /// The report of query `(node, seq)` and when it came (µs), once its deadline passed.
    pub fn report(&self, node: usize, seq: u64) -> Option<&(u64, QueryReport)> {
        self.done.get(&(node, seq))
    }

    /// The queries `node` was handed to answer: (asker, seq).
    pub fn handed(&self, node: usize) -> &[(NodeId, u64)] {
        self.handed.get(&node).map_or(&[], Vec::as_slice)
    }
}

/// True for a message of query acks and answers only.
fn only_query_replies(d: &Datagram) -> bool {
    d.items
        .iter()
        .all(|i| matches!(i, Item::QueryAck { .. } | Item::QueryResponse { .. }))
}

impl Sim {
    /// Asks a query from `node` now (its engine checks bounds, rate and pending count).
    pub fn send_query(
        &mut self,
        node: usize,
        name: &str,
        payload: Vec<u8>,
        filter: QueryFilter,
        timeout_ms: u64,
    ) -> Result<u64, QueryError> {
        let now = self.now_of(node);
        let at = self.now_us;
        let e = self.nodes[node]
            .engine
            .as_mut()
            .expect("queries are asked from a running node");
        let seq = e.send_query(now, name, payload, filter, timeout_ms)?;
        self.queries.asked.insert((node, seq), at);
        self.drain(node);
        Ok(seq)
    }

    /// Replaces `node`'s tags (gossiped as any metadata change).
    pub fn set_tags(&mut self, node: usize, tags: BTreeMap<String, String>) {
        let Some(e) = self.nodes[node].engine.as_mut() else {
            return;
        };
        let info = MemberInfo {
            tags,
            ..MemberInfo::clone(&e.members().me().info)
        };
        // Our own id, within the metadata bound: cannot be refused.
        let _ = e.update_meta(info);
        self.drain(node);
    }

    /// Makes `node` never answer a query (it still acks: its handler hangs).
    pub fn mute_queries(&mut self, node: usize) {
        self.queries.mute.insert(node);
    }

    /// Every query asked so far, with replies and reports.
    pub fn queries(&self) -> &QueryLog {
        &self.queries
    }

    /// Records a query event of node `i`'s engine.
    pub(super) fn on_query_event(&mut self, i: usize, ev: EngineEvent) {
        let at_us = self.now_us;
        let log = &mut self.queries;
        match ev {
            EngineEvent::Query(q) => {
                log.handed
                    .entry(i)
                    .or_default()
                    .push((q.asker.clone(), q.seq));
                if !log.mute.contains(&i) {
                    log.to_answer.push((i, q.asker, q.seq));
                }
            }
            EngineEvent::QueryReply { seq, reply } => log
                .replies
                .entry((i, seq))
                .or_default()
                .push(LoggedReply { at_us, reply }),
            EngineEvent::QueryDone { seq, report } => {
                log.done.insert((i, seq), (at_us, report));
            }
            _ => {}
        }
    }

    /// Answers the queries node `i` was handed in its last drain, with its id.
    pub(super) fn answer_queries(&mut self, i: usize) {
        if self.queries.to_answer.is_empty() {
            return;
        }
        let answers = std::mem::take(&mut self.queries.to_answer);
        let now = self.now_of(i);
        let id = self.nodes[i].id.clone();
        let Some(e) = self.nodes[i].engine.as_mut() else {
            return;
        };
        for (_, asker, seq) in answers.into_iter().filter(|(n, _, _)| *n == i) {
            let _ = e.respond_query(now, &asker, seq, id.as_str().as_bytes().to_vec());
        }
        self.drain(i);
    }

    /// Sends what node `from`'s engine put out for the node at `addr`, as a datagram
    /// or (`reliable`) a message on a stream.
    pub(super) fn send_to(&mut self, from: usize, addr: &str, dg: Datagram, reliable: bool) {
        let Some(to) = super::parse_addr(addr) else {
            return;
        };
        if reliable && only_query_replies(&dg) {
            self.send_reply_message(from, to, dg);
        } else {
            self.send_datagram(from, to, dg);
        }
    }

    /// Sends a reliable message of query replies: a QUIC stream retransmits what the
    /// network loses, so loss delays it (about a round trip per loss) instead of
    /// dropping it; a partition or a down receiver still does. Other reliable messages
    /// keep the datagram model, so runs without queries are unchanged.
    fn send_reply_message(&mut self, from: usize, to: usize, dg: Datagram) {
        let bytes = encoded_len(&dg) + 1;
        if !self.record_send(from, to, bytes) {
            return;
        }
        let mut at =
            self.transit_us(from, bytes) + self.nodes[to].slow_us + self.link_delay_us(from, to);
        let mut tries = 0;
        while tries < MAX_RETRANSMITS
            && ((self.cfg.net.loss > 0.0 && self.rng.random_bool(self.cfg.net.loss.min(1.0)))
                || self.link_lost(from, to))
        {
            // Retransmitted after about a round trip.
            self.stats.lost += 1;
            tries += 1;
            at += 2 * self.cfg.net.latency_us.max(1_000);
        }
        let epoch = self.nodes[to].epoch;
        self.schedule(
            at,
            Ev::Datagram {
                from,
                to,
                epoch,
                dg,
            },
        );
    }
}
