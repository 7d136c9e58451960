//! Queries (issue #19): the engine's part that asks, answers, and tracks answers.
//!
//! - **Asking.** A query is created, rate-checked and signed as an event is, and sent
//!   down the asker's tree by the events part (`engine/events.rs`): one path for both.
//!   The asker records the members that match the filter in its own view when it asks
//!   (alive or suspect; itself too if it matches) and a deadline (`timeout_ms` after
//!   asking; time is an input).
//! - **Answering.** A member that delivers a query and matches its filter in its own
//!   membership data (its tags, datacenter and id) sends the asker an ack at once
//!   ([`Item::QueryAck`]) and hands the query to its handlers ([`Event::Query`]); an
//!   answer ([`Engine::respond_query`]) goes straight to the asker
//!   ([`Item::QueryResponse`]). Both are sent as reliable messages (a QUIC stream), so
//!   loss does not silence a member that answered. A member waits to answer at most
//!   `max_answering` queries at once, each until its timeout, and answers each once.
//! - **Tracking.** The asker accepts an ack and an answer only from the authenticated
//!   peer they came from (the responder is that peer: nothing in the message names
//!   it), once per responder, at most `max_responses` of each, answers of at most
//!   `max_response_payload` bytes, and only while the query is pending; the rest is
//!   counted and dropped. At the deadline it reports acks, answers, and the members
//!   that matched and did not answer ([`Event::QueryDone`]).

use std::collections::{BTreeMap, BTreeSet};

use super::{Engine, Event, Output};
use crate::core::events::EventId;
use crate::core::limiter::Traffic;
use crate::core::proto::{Item, MemberStatus};
use crate::core::queries::{
    QueryConfig, QueryError, QueryFilter, QueryReply, QueryReport, QueryStats,
};
use crate::core::{NodeId, Now};

/// One of our queries waiting for answers.
#[derive(Debug, Clone)]
struct Pending {
    deadline_us: u64,
    /// Who matched the filter in our view when we asked.
    expected: BTreeSet<NodeId>,
    acked: BTreeSet<NodeId>,
    answered: BTreeSet<NodeId>,
    report: QueryReport,
}

/// The state of queries at one node: ours waiting for answers, and others' waiting for
/// our answer.
#[derive(Debug, Clone)]
pub(super) struct Queries {
    cfg: QueryConfig,
    pending: BTreeMap<u64, Pending>,
    /// Our queries by deadline.
    deadlines: BTreeSet<(u64, u64)>,
    /// Others' queries we acked and may answer, with their deadline (µs).
    answering: BTreeMap<EventId, u64>,
    answering_order: BTreeSet<(u64, EventId)>,
    stats: QueryStats,
}

impl Queries {
    pub(super) fn new(cfg: QueryConfig) -> Self {
        Self {
            cfg,
            pending: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            answering: BTreeMap::new(),
            answering_order: BTreeSet::new(),
            stats: QueryStats::default(),
        }
    }

    /// Records an ack (`payload` none) or answer from `from` for our query `seq`; the
    /// reply to report if it is accepted.
    fn reply(
        &mut self,
        now_us: u64,
        from: &NodeId,
        seq: u64,
        payload: Option<Vec<u8>>,
    ) -> Option<QueryReply> {
        let Some(p) = self
            .pending
            .get_mut(&seq)
            .filter(|p| now_us < p.deadline_us)
        else {
            self.stats.unknown += 1;
            return None;
        };
        let max = self.cfg.max_responses;
        match payload {
            None if p.acked.contains(from) => self.stats.duplicates += 1,
            None if p.acked.len() >= max => {
                self.stats.refused += 1;
                p.report.refused += 1;
            }
            None => {
                p.acked.insert(from.clone());
                p.report.acks.push(from.clone());
                self.stats.acks += 1;
                return Some(QueryReply::Ack { from: from.clone() });
            }
            Some(_) if p.answered.contains(from) => self.stats.duplicates += 1,
            Some(payload)
                if p.answered.len() >= max || payload.len() > self.cfg.max_response_payload =>
            {
                self.stats.refused += 1;
                p.report.refused += 1;
            }
            Some(payload) => {
                p.answered.insert(from.clone());
                p.report.responders.push(from.clone());
                self.stats.responses += 1;
                return Some(QueryReply::Response {
                    from: from.clone(),
                    payload,
                });
            }
        }
        None
    }

    /// Our queries past their deadline, with their reports; forgets others' queries
    /// past theirs.
    fn expire(&mut self, now_us: u64) -> Vec<(u64, QueryReport)> {
        while let Some((t, id)) = self.answering_order.first().cloned() {
            if t > now_us {
                break;
            }
            self.answering_order.remove(&(t, id.clone()));
            self.answering.remove(&id);
        }
        let mut done = Vec::new();
        while let Some((t, seq)) = self.deadlines.first().copied() {
            if t > now_us {
                break;
            }
            self.deadlines.remove(&(t, seq));
            if let Some(mut p) = self.pending.remove(&seq) {
                p.report.silent = p
                    .expected
                    .iter()
                    .filter(|m| !p.answered.contains(*m))
                    .cloned()
                    .collect();
                self.stats.done += 1;
                done.push((seq, p.report));
            }
        }
        done
    }

    fn deadline(&self) -> Option<u64> {
        let ours = self.deadlines.first().map(|(t, _)| *t);
        let theirs = self.answering_order.first().map(|(t, _)| *t);
        [ours, theirs].into_iter().flatten().min()
    }

    /// Starts waiting to answer `id` until `deadline_us`; false when `max_answering`
    /// queries wait already (counted) or it waits already.
    fn start_answering(&mut self, id: EventId, deadline_us: u64) -> bool {
        if self.answering.len() >= self.cfg.max_answering {
            self.stats.answering_full += 1;
            return false;
        }
        if self.answering.insert(id.clone(), deadline_us).is_some() {
            return false;
        }
        self.answering_order.insert((deadline_us, id));
        self.stats.matched += 1;
        true
    }

    /// Stops waiting to answer `id`; true if we were (and were within its timeout).
    fn finish_answering(&mut self, now_us: u64, id: &EventId) -> bool {
        match self.answering.remove(id) {
            Some(t) => {
                self.answering_order.remove(&(t, id.clone()));
                now_us < t
            }
            None => false,
        }
    }
}

impl Engine {
    /// Asks the members that match `filter` (an empty filter: every member) and
    /// returns the query's sequence number. Acks and answers come as
    /// [`Event::QueryReply`] and, `timeout_ms` from now, the report as
    /// [`Event::QueryDone`]. Refused for a name, payload, filter or timeout beyond the
    /// bounds, above our own event rate, or with `queries.max_pending` of ours waiting.
    pub fn send_query(
        &mut self,
        now: Now,
        name: &str,
        payload: Vec<u8>,
        filter: QueryFilter,
        timeout_ms: u64,
    ) -> Result<u64, QueryError> {
        self.tick(now);
        let max = self.cfg.queries.max_pending;
        if self.queries.pending.len() >= max {
            self.queries.stats.ask_refused += 1;
            return Err(QueryError::TooMany { max });
        }
        let me = self.id().clone();
        let q = self
            .events
            .create_query(now, &me, name, payload, filter, timeout_ms)
            .inspect_err(|_| self.queries.stats.ask_refused += 1)?;
        let expected: BTreeSet<NodeId> = self
            .members
            .others()
            .map(|m| &m.state)
            .filter(|s| matches!(s.status, MemberStatus::Alive | MemberStatus::Suspect))
            .map(|s| &s.info)
            .chain(std::iter::once(&self.members.me().info))
            .filter(|info| q.filter.matches(&info.id, &info.dc, &info.tags))
            .map(|info| info.id.clone())
            .collect();
        let q = self.broadcast_query(now, q);
        let deadline_us = now.mono_us.saturating_add(timeout_ms.saturating_mul(1000));
        let seq = q.seq;
        self.queries.deadlines.insert((deadline_us, seq));
        self.queries.pending.insert(
            seq,
            Pending {
                deadline_us,
                expected,
                acked: BTreeSet::new(),
                answered: BTreeSet::new(),
                report: QueryReport::default(),
            },
        );
        self.queries.stats.asked += 1;
        // We are a member like any other: answer our own query if it is for us.
        self.query_delivered(q);
        Ok(seq)
    }

    /// Answers the query `seq` of `asker` that this node was handed
    /// ([`Event::Query`]): sent straight to the asker. Refused when the payload is over
    /// `queries.max_response_payload`, or when we are not waiting to answer that query
    /// (never handed to us, answered already, or past its timeout).
    pub fn respond_query(
        &mut self,
        now: Now,
        asker: &NodeId,
        seq: u64,
        payload: Vec<u8>,
    ) -> Result<(), QueryError> {
        self.tick(now);
        let max = self.cfg.queries.max_response_payload;
        if payload.len() > max {
            return Err(QueryError::ResponseTooLarge {
                len: payload.len(),
                max,
            });
        }
        let id = (asker.clone(), seq);
        if !self.queries.finish_answering(now.mono_us, &id) {
            return Err(QueryError::NotWaiting {
                asker: asker.clone(),
                seq,
            });
        }
        self.queries.stats.answered += 1;
        if asker == self.id() {
            let me = self.id().clone();
            self.on_query_reply(&me, seq, Some(payload));
        } else {
            let item = Item::QueryResponse {
                asker: asker.clone(),
                seq,
                payload,
            };
            self.query_reply_send(asker, item);
        }
        Ok(())
    }

    /// Counters of queries (asking and answering; how they travelled is
    /// [`Engine::query_delivery_stats`]).
    pub fn query_stats(&self) -> &QueryStats {
        &self.queries.stats
    }

    /// A query the events part delivered (a peer's, or our own): if we match its
    /// filter, ack it to the asker and hand it to our handlers.
    pub(super) fn query_delivered(&mut self, q: crate::core::queries::Query) {
        let me = &self.members.me().info;
        if !q.filter.matches(&me.id, &me.dc, &me.tags) {
            return;
        }
        let deadline = self
            .clock_us
            .saturating_add(q.timeout_ms.saturating_mul(1000));
        if !self.queries.start_answering(q.id(), deadline) {
            return;
        }
        if q.asker == *self.id() {
            let me = self.id().clone();
            self.on_query_reply(&me, q.seq, None);
        } else {
            let ack = Item::QueryAck {
                asker: q.asker.clone(),
                seq: q.seq,
            };
            self.query_reply_send(&q.asker, ack);
        }
        self.out.push_back(Output::Event(Event::Query(q)));
    }

    /// An ack or answer from the authenticated peer `from`.
    pub(super) fn on_query_item(&mut self, from: &NodeId, item: Item) {
        let (asker, seq, payload) = match item {
            Item::QueryAck { asker, seq } => (asker, seq, None),
            Item::QueryResponse {
                asker,
                seq,
                payload,
            } => (asker, seq, Some(payload)),
            _ => return,
        };
        if asker != *self.id() {
            self.queries.stats.unknown += 1;
            return;
        }
        self.on_query_reply(from, seq, payload);
    }

    fn on_query_reply(&mut self, from: &NodeId, seq: u64, payload: Option<Vec<u8>>) {
        if let Some(reply) = self.queries.reply(self.clock_us, from, seq, payload) {
            self.out
                .push_back(Output::Event(Event::QueryReply { seq, reply }));
        }
    }

    /// An ack or answer to the asker, on a reliable message whatever its size: a
    /// stream retransmits what loss takes, so an answer is not lost to one datagram.
    fn query_reply_send(&mut self, to: &NodeId, item: Item) {
        let Some(addr) = self.addr_of(to) else {
            return;
        };
        self.emit(to, addr, vec![(item, Traffic::Fresh)], true);
    }

    /// Reports our queries past their deadline and forgets others' past theirs.
    pub(super) fn query_timers(&mut self) {
        for (seq, report) in self.queries.expire(self.clock_us) {
            self.out
                .push_back(Output::Event(Event::QueryDone { seq, report }));
        }
    }

    /// When the queries part must next run (µs).
    pub(super) fn query_deadline(&self) -> Option<u64> {
        self.queries.deadline()
    }
}

#[cfg(test)]
#[path = "queries_tests.rs"]
mod tests;
