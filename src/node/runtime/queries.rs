//! The node's queries API: asking one, answering those addressed to this node with the
//! registered handlers, and routing the engine's query events.

use super::*;
use crate::core::queries::{Query, QueryFilter};
use crate::node::queries::QueryHandle;

impl Node {
    /// Asks the members that match `filter` (an empty filter: every member, this node
    /// included if it matches). The handle yields each ack and answer as it arrives and,
    /// `timeout` after asking, the report (who matched in this node's view and did not
    /// answer). Refused, with the reason, for a name, payload, filter or timeout beyond
    /// the bounds (`gossip.events`, `gossip.queries`), above this node's own event
    /// rate, or with `gossip.queries.max_pending` of its queries waiting.
    pub fn query(
        &self,
        name: &str,
        payload: Vec<u8>,
        filter: QueryFilter,
        timeout: Duration,
    ) -> Result<QueryHandle, NodeError> {
        self.check_running()?;
        let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let askers = &self.inner.askers;
        // The handle is registered under the engine's lock: the driver cannot dispatch
        // the query's first replies before it exists.
        let handle = self.with_engine(|e, now| {
            let max = e.config().queries.max_responses;
            let seq = e.send_query(now, name, payload, filter, ms)?;
            Ok::<_, NodeError>(askers.open(seq, max.saturating_mul(2)))
        })?;
        Ok(handle)
    }

    /// Registers `handler` to answer the queries addressed to this node whose name
    /// matches `pattern` (a name, a prefix ending in `*`, or `*`): given the query, it
    /// returns this node's answer (at most `gossip.queries.max_response_payload` bytes)
    /// or none. It runs on tokio's blocking pool, within `handler_concurrency` with the
    /// `[[handlers]]` commands, and is asked before them; an answer after the query's
    /// timeout is dropped. Handlers registered earlier are asked first.
    pub fn on_query(
        &self,
        pattern: &str,
        handler: impl Fn(&Query) -> Option<Vec<u8>> + Send + Sync + 'static,
    ) {
        self.inner.handlers.on_query(pattern, Arc::new(handler));
    }

    /// Counters of queries (the engine's: asked, answered, accepted, dropped).
    pub fn query_stats(&self) -> crate::core::queries::QueryStats {
        self.inner.engine().query_stats().clone()
    }

    /// How queries travelled to this node (the events counters, for queries).
    pub fn query_delivery_stats(&self) -> crate::core::events::EventStats {
        self.inner.engine().query_delivery_stats().clone()
    }

    /// Carries out a query event of the engine; false for any other event.
    pub(super) fn on_query_event(&self, ev: &Event) -> bool {
        match ev {
            Event::Query(q) => {
                let node = self.clone();
                let (asker, seq) = (q.asker.clone(), q.seq);
                let max = self.inner.engine().config().queries.max_response_payload;
                let reply = Box::new(move |answer: Vec<u8>| {
                    let r = node.with_engine(|e, now| e.respond_query(now, &asker, seq, answer));
                    if let Err(err) = r {
                        tracing::debug!(%asker, seq, error = %err, "query answer not sent");
                    }
                });
                self.inner.handlers.answer(q, max, reply);
            }
            Event::QueryReply { seq, reply } => self.inner.askers.reply(*seq, reply.clone()),
            Event::QueryDone { seq, report } => self.inner.askers.done(*seq, report.clone()),
            _ => return false,
        }
        true
    }
}
