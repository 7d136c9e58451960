//! Queries (Serf's queries): what they are, whom they are for, their bounds, the bytes
//! their asker signs, and what comes back.
//!
//! A query is a named, small, signed message with a [`QueryFilter`]: it travels to every
//! live member exactly as a user event does (`engine/events.rs` carries both, see
//! [`Broadcast`]), each member that matches the filter in its own membership data acks
//! it at once and may then answer it, and both the ack and the answer go straight to the
//! asker ([`crate::core::proto::Item::QueryAck`], [`crate::core::proto::Item::QueryResponse`]).
//! The asker's engine (`engine/queries.rs`) accepts one of each per responder, bounded in
//! count and size, and at the deadline reports who matched in its view and did not answer.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::core::events::{check_event, EventError, EventId, UserEvent};
use crate::core::state::Signature;
use crate::core::{ConfigError, NodeId};

/// Most tags a filter may require.
pub const MAX_FILTER_TAGS: usize = 16;
/// Most node ids a filter may list.
pub const MAX_FILTER_NODES: usize = 64;
/// Longest tag key, tag value or datacenter name in a filter (bytes): member metadata
/// is at most 512 bytes in all, so no longer one could match.
pub const MAX_FILTER_FIELD: usize = 512;
/// Largest `max_response_payload` a configuration may set (bytes): an answer travels on
/// one stream and is held until the asker's client takes it.
pub const MAX_RESPONSE_LIMIT: usize = 256 * 1024;
/// Longest query timeout a configuration may allow (ms).
pub const MAX_TIMEOUT_LIMIT_MS: u64 = 3_600_000;

/// Whom a query is for: every condition given must hold; an empty filter matches every
/// member.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryFilter {
    /// Tags the member must carry with exactly these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// The member's datacenter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dc: Option<String>,
    /// The member must be one of these (none listed: any member).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<NodeId>,
}

impl QueryFilter {
    /// Whether the member `id` of datacenter `dc` with `tags` matches (a member's
    /// `MemberInfo` holds all three).
    pub fn matches(&self, id: &NodeId, dc: &str, tags: &BTreeMap<String, String>) -> bool {
        self.tags.iter().all(|(k, v)| tags.get(k) == Some(v))
            && self.dc.as_ref().is_none_or(|want| want == dc)
            && (self.nodes.is_empty() || self.nodes.contains(id))
    }

    /// Checks the filter against the bounds.
    pub fn check(&self) -> Result<(), QueryError> {
        if self.tags.len() > MAX_FILTER_TAGS {
            return Err(QueryError::Filter(format!(
                "{} tags, at most {MAX_FILTER_TAGS}",
                self.tags.len()
            )));
        }
        if self.nodes.len() > MAX_FILTER_NODES {
            return Err(QueryError::Filter(format!(
                "{} node ids, at most {MAX_FILTER_NODES}",
                self.nodes.len()
            )));
        }
        let fields = self.tags.iter().flat_map(|(k, v)| [k, v]);
        for f in fields.chain(self.dc.iter()) {
            if f.len() > MAX_FILTER_FIELD {
                return Err(QueryError::Filter(format!(
                    "a tag or datacenter of {} bytes, at most {MAX_FILTER_FIELD}",
                    f.len()
                )));
            }
        }
        if self.tags.keys().any(String::is_empty) {
            return Err(QueryError::Filter("an empty tag name".into()));
        }
        Ok(())
    }

    /// The filter's bytes in a query's signed bytes: counts and length-prefixed parts.
    fn signed_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.tags.len() as u64).to_be_bytes());
        for (k, v) in &self.tags {
            put(out, k.as_bytes());
            put(out, v.as_bytes());
        }
        match &self.dc {
            None => out.push(0),
            Some(dc) => {
                out.push(1);
                put(out, dc.as_bytes());
            }
        }
        out.extend_from_slice(&(self.nodes.len() as u64).to_be_bytes());
        for n in &self.nodes {
            put(out, n.as_str().as_bytes());
        }
    }
}

fn put(out: &mut Vec<u8>, part: &[u8]) {
    out.extend_from_slice(&(part.len() as u64).to_be_bytes());
    out.extend_from_slice(part);
}

/// A query as it travels and as matching members' handlers receive it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Query {
    /// The member that asks (its certificate verifies `sig`); answers go to it.
    pub asker: NodeId,
    /// The asker's sequence number, from the same sequence as its events: `(asker,
    /// seq)` identifies the query among events and queries alike.
    pub seq: u64,
    /// The query's name (the bounds of an event name).
    pub name: String,
    /// Opaque payload (at most the receiver's `events.max_payload`).
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    /// Whom it is for.
    #[serde(default)]
    pub filter: QueryFilter,
    /// How long the asker waits for answers (ms); a responder gives up on answering
    /// this long after it received the query.
    pub timeout_ms: u64,
    /// The asker's signature over [`Query::signed_bytes`].
    #[serde(default, skip_serializing_if = "Signature::is_default")]
    pub sig: Signature,
}

/// Domain tag of a query's signed bytes: no event's or write's bytes can equal them.
const QUERY_TAG: &[u8] = b"gossamer/query/v1\0";

impl Query {
    /// The query's id.
    pub fn id(&self) -> EventId {
        (self.asker.clone(), self.seq)
    }

    /// What the asker signs: a domain tag, then asker, name, sequence number, timeout,
    /// filter and payload, each part length-prefixed or counted, so no two queries (and
    /// no query and event) share bytes.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(96 + self.name.len() + self.payload.len());
        out.extend_from_slice(QUERY_TAG);
        put(&mut out, self.asker.as_str().as_bytes());
        put(&mut out, self.name.as_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.timeout_ms.to_be_bytes());
        self.filter.signed_into(&mut out);
        put(&mut out, &self.payload);
        out
    }

    /// Checks name, payload (`max_payload` is ours), filter and timeout (`max_timeout_ms`
    /// is ours) against the bounds.
    pub fn check(&self, max_payload: usize, max_timeout_ms: u64) -> Result<(), QueryError> {
        check_query(
            &self.name,
            self.payload.len(),
            &self.filter,
            self.timeout_ms,
            max_payload,
            max_timeout_ms,
        )
    }
}

/// Checks a query's parts against the bounds.
pub fn check_query(
    name: &str,
    payload_len: usize,
    filter: &QueryFilter,
    timeout_ms: u64,
    max_payload: usize,
    max_timeout_ms: u64,
) -> Result<(), QueryError> {
    check_event(name, payload_len, max_payload)?;
    filter.check()?;
    if timeout_ms == 0 || timeout_ms > max_timeout_ms {
        return Err(QueryError::Timeout {
            ms: timeout_ms,
            max: max_timeout_ms,
        });
    }
    Ok(())
}

/// What the events path carries (`engine/events.rs`): a user event or a query. Both
/// share one id space per sender, one dedup set, one rate bucket per sender and one
/// repair mechanism.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Broadcast {
    /// A user event.
    Event(UserEvent),
    /// A query.
    Query(Query),
}

impl Broadcast {
    /// The sender (or asker) and sequence number.
    pub fn id(&self) -> EventId {
        match self {
            Broadcast::Event(e) => e.id(),
            Broadcast::Query(q) => q.id(),
        }
    }

    /// The sender (or asker).
    pub fn sender(&self) -> &NodeId {
        match self {
            Broadcast::Event(e) => &e.sender,
            Broadcast::Query(q) => &q.asker,
        }
    }

    /// The sequence number.
    pub fn seq(&self) -> u64 {
        match self {
            Broadcast::Event(e) => e.seq,
            Broadcast::Query(q) => q.seq,
        }
    }

    /// True for a query.
    pub fn is_query(&self) -> bool {
        matches!(self, Broadcast::Query(_))
    }
}

/// One answer to a query as the asker receives it: from whom, and what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum QueryReply {
    /// `from` received the query and matches its filter.
    Ack {
        /// The responder (the authenticated peer that sent it).
        from: NodeId,
    },
    /// `from` answered.
    Response {
        /// The responder (the authenticated peer that sent it).
        from: NodeId,
        /// Its answer (at most `queries.max_response_payload`).
        payload: Vec<u8>,
    },
}

/// What the asker's engine reports at a query's deadline.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryReport {
    /// Members that acked, in the order their acks came.
    pub acks: Vec<NodeId>,
    /// Members that answered, in the order their answers came.
    pub responders: Vec<NodeId>,
    /// Members that matched the filter in the asker's view when it asked (alive or
    /// suspect, the asker included) and did not answer, sorted.
    pub silent: Vec<NodeId>,
    /// Acks and answers refused for this query (beyond `max_responses`, or an answer
    /// over `max_response_payload`).
    pub refused: u64,
}

/// Why a query was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// The name or payload break an event's bounds (the same bounds apply).
    #[error(transparent)]
    Bounds(#[from] EventError),
    /// The filter breaks its bounds.
    #[error("query filter has {0}")]
    Filter(String),
    /// The timeout is 0 or above `queries.max_timeout_ms`.
    #[error("query timeout {ms} ms must be 1 to {max} (gossip.queries.max_timeout_ms)")]
    Timeout {
        /// The timeout asked for.
        ms: u64,
        /// The limit.
        max: u64,
    },
    /// This node has `queries.max_pending` queries waiting for answers already.
    #[error("{max} queries of this node are waiting for answers already (gossip.queries.max_pending); try again when one ends")]
    TooMany {
        /// The limit.
        max: usize,
    },
    /// This node already sent as many events and queries as its own rate allows.
    #[error("query rate exceeded: at most {per_sec} events and queries per second with a burst of {burst} (gossip.events.per_sender_per_sec, per_sender_burst); try again later")]
    RateLimited {
        /// Sustained rate.
        per_sec: u32,
        /// Burst.
        burst: u32,
    },
    /// An answer is larger than `queries.max_response_payload`.
    #[error("query response is {len} bytes, limit {max} (gossip.queries.max_response_payload)")]
    ResponseTooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// This node has no matching query to answer (never received, already answered, or
    /// past its timeout).
    #[error("no query {seq} of {asker} is waiting for this node's answer")]
    NotWaiting {
        /// The asker.
        asker: NodeId,
        /// The query's sequence number.
        seq: u64,
    },
}

/// Tuning of queries: the `[gossip.queries]` section. A query's name, payload and rate
/// are an event's (`[gossip.events]`): they travel the same path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueryConfig {
    /// Largest answer accepted or sent (bytes).
    pub max_response_payload: usize,
    /// Most answers (and, apart, acks) the asker accepts for one query.
    pub max_responses: usize,
    /// Longest timeout a query may carry, asked or received (ms).
    pub max_timeout_ms: u64,
    /// Queries of this node waiting for answers at once.
    pub max_pending: usize,
    /// Queries of others this node waits to answer at once (what a flood of queries
    /// can make it hold); beyond it a matching query is not acked (counted).
    pub max_answering: usize,
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self {
            max_response_payload: 8 * 1024,
            max_responses: 1_024,
            max_timeout_ms: 300_000,
            max_pending: 64,
            max_answering: 1_024,
        }
    }
}

impl QueryConfig {
    /// Checks every field; the error names the field and the fix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field: &'static str, problem: String| ConfigError { field, problem };
        if self.max_response_payload == 0 || self.max_response_payload > MAX_RESPONSE_LIMIT {
            return Err(bad(
                "queries.max_response_payload",
                format!(
                    "must be between 1 and {MAX_RESPONSE_LIMIT} bytes (got {})",
                    self.max_response_payload
                ),
            ));
        }
        if self.max_timeout_ms == 0 || self.max_timeout_ms > MAX_TIMEOUT_LIMIT_MS {
            return Err(bad(
                "queries.max_timeout_ms",
                format!(
                    "must be between 1 and {MAX_TIMEOUT_LIMIT_MS} ms (got {})",
                    self.max_timeout_ms
                ),
            ));
        }
        for (field, v) in [
            ("queries.max_responses", self.max_responses),
            ("queries.max_pending", self.max_pending),
            ("queries.max_answering", self.max_answering),
        ] {
            if v == 0 || v > 65_536 {
                return Err(bad(field, format!("must be between 1 and 65536 (got {v})")));
            }
        }
        Ok(())
    }
}

/// Counters of queries at one node (how they travel is counted with events, in the
/// engine's query delivery counters).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct QueryStats {
    /// Queries this node asked.
    pub asked: u64,
    /// Local queries refused (bounds, rate, too many pending).
    pub ask_refused: u64,
    /// Queries of others delivered here that matched our filter (acked).
    pub matched: u64,
    /// Matching queries not acked because `max_answering` were waiting already.
    pub answering_full: u64,
    /// Answers this node sent.
    pub answered: u64,
    /// Acks accepted by this node as asker.
    pub acks: u64,
    /// Answers accepted by this node as asker.
    pub responses: u64,
    /// Acks and answers for a query this node has not (or no longer) pending: unknown,
    /// expired, or addressed to another asker.
    pub unknown: u64,
    /// Second acks or answers from one responder.
    pub duplicates: u64,
    /// Acks and answers beyond `max_responses`, or answers over
    /// `max_response_payload`.
    pub refused: u64,
    /// Queries that reached their deadline (a report each).
    pub done: u64,
}

#[cfg(test)]
#[path = "queries_tests.rs"]
mod tests;
