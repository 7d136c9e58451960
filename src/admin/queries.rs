//! Queries over the admin API:
//!
//! `POST /v1/query/{name}?tag=K=V&dc=DC&node=ID&timeout_ms=N` (body = payload; `tag`
//! and `node` may repeat; every condition must hold; none: every member) asks the
//! members that match and streams newline-delimited JSON [`QueryLine`]s: an `ack` per
//! matching member that received it, a `response` per answer as it arrives, a
//! `heartbeat` after [`super::watch::HEARTBEAT`] of silence, and at the deadline
//! (`timeout_ms`, default [`DEFAULT_TIMEOUT_MS`]) one `done` line listing the members
//! that matched in the node's view and did not answer; the stream then ends. 400 for a
//! bad name, filter, timeout or parameter, 413 for a payload over
//! `gossip.events.max_payload`, 429 above the node's event rate or beyond
//! [`MAX_ADMIN_QUERIES`] queries streaming at once, each with a message naming the
//! bound.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::watch::{stream_response, LineSource, HEARTBEAT};
use super::{error, Backend};
use crate::core::events::EventError;
use crate::core::queries::{QueryError, QueryFilter};
use crate::core::NodeId;
use crate::node::queries::{QueryHandle, QueryUpdate};

/// Queries one node streams at once over the admin API; more are answered 429.
pub const MAX_ADMIN_QUERIES: usize = 16;

/// A query's timeout when the request gives none (ms).
pub const DEFAULT_TIMEOUT_MS: u64 = 2_000;

/// Why the backend did not ask a query.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AskError {
    /// The query breaks a bound, our rate, or our count of pending queries.
    #[error(transparent)]
    Refused(#[from] QueryError),
    /// The node cannot ask (shut down, or no queries in this backend).
    #[error("{0}")]
    Unavailable(String),
}

/// One line of a query's stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum QueryLine {
    /// A matching member received the query.
    Ack {
        /// The member.
        from: NodeId,
    },
    /// A member answered.
    Response {
        /// The member.
        from: NodeId,
        /// Its answer as UTF-8 (invalid sequences replaced by U+FFFD).
        payload: String,
        /// Length of the answer in bytes.
        payload_len: usize,
    },
    /// Nothing came for a while; the query is still pending.
    Heartbeat,
    /// The deadline passed; the stream ends.
    Done {
        /// Members that acked.
        acks: Vec<NodeId>,
        /// Members that answered.
        responders: Vec<NodeId>,
        /// Members that matched the filter in the node's view when it asked and did
        /// not answer.
        silent: Vec<NodeId>,
        /// Acks and answers refused (beyond `max_responses`, or over
        /// `max_response_payload`).
        refused: u64,
    },
}

impl From<QueryUpdate> for QueryLine {
    fn from(u: QueryUpdate) -> Self {
        match u {
            QueryUpdate::Ack { from } => QueryLine::Ack { from },
            QueryUpdate::Response { from, payload } => QueryLine::Response {
                from,
                payload_len: payload.len(),
                payload: String::from_utf8_lossy(&payload).into_owned(),
            },
            QueryUpdate::Done(r) => QueryLine::Done {
                acks: r.acks,
                responders: r.responders,
                silent: r.silent,
                refused: r.refused,
            },
        }
    }
}

fn status_of(e: &AskError) -> StatusCode {
    match e {
        AskError::Refused(QueryError::Bounds(EventError::PayloadTooLarge { .. })) => {
            StatusCode::PAYLOAD_TOO_LARGE
        }
        AskError::Refused(QueryError::RateLimited { .. } | QueryError::TooMany { .. }) => {
            StatusCode::TOO_MANY_REQUESTS
        }
        AskError::Refused(_) => StatusCode::BAD_REQUEST,
        AskError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// The filter and timeout of a request's parameters, or a message refusing them.
pub fn parse_params(params: &[(String, String)]) -> Result<(QueryFilter, u64), String> {
    let mut filter = QueryFilter::default();
    let mut timeout_ms = DEFAULT_TIMEOUT_MS;
    for (k, v) in params {
        match k.as_str() {
            "tag" => {
                let Some((tk, tv)) = v.split_once('=') else {
                    return Err(format!("tag {v:?} must be KEY=VALUE"));
                };
                if filter.tags.insert(tk.to_string(), tv.to_string()).is_some() {
                    return Err(format!("tag {tk:?} is given twice"));
                }
            }
            "dc" if filter.dc.is_none() => filter.dc = Some(v.clone()),
            "dc" => return Err("dc is given twice".into()),
            "node" => {
                let id = NodeId::new(v).map_err(|e| format!("node {v:?}: {e}"))?;
                if !filter.nodes.contains(&id) {
                    filter.nodes.push(id);
                }
            }
            "timeout_ms" => {
                timeout_ms = v
                    .parse()
                    .map_err(|_| "timeout_ms must be a whole number of milliseconds")?;
            }
            other => {
                return Err(format!(
                    "unknown parameter {other:?}: the filters are tag=KEY=VALUE, dc=DC and \
                     node=ID, with timeout_ms=N"
                ))
            }
        }
    }
    filter.check().map_err(|e| e.to_string())?;
    Ok((filter, timeout_ms))
}

/// `POST /v1/query/{name}`.
pub(super) async fn ask(
    State(b): State<Backend>,
    slots: Arc<Semaphore>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let name = match path {
        Ok(Path(name)) => name,
        Err(rej) => return error(rej.status(), rej.body_text()),
    };
    let params = match query {
        Ok(Query(p)) => p,
        Err(rej) => return error(rej.status(), rej.body_text()),
    };
    let (filter, timeout_ms) = match parse_params(&params) {
        Ok(p) => p,
        Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
    };
    let body = match super::body_bytes(body) {
        Ok(body) => body,
        Err((status, msg)) => return error(status, msg),
    };
    let Ok(slot) = slots.try_acquire_owned() else {
        return error(
            StatusCode::TOO_MANY_REQUESTS,
            format!("{MAX_ADMIN_QUERIES} queries are streaming on this node already; try again when one ends"),
        );
    };
    let timeout = Duration::from_millis(timeout_ms);
    let handle = match b.query(&name, body.to_vec(), filter, timeout) {
        Ok(h) => h,
        Err(e) => return error(status_of(&e), e.to_string()),
    };
    stream_response(QuerySource {
        handle,
        done: false,
        _slot: slot,
    })
}

/// `POST /v1/query/` without a name.
pub(super) async fn empty_name() -> Response {
    error(
        StatusCode::BAD_REQUEST,
        "empty query name: give the name after /v1/query/",
    )
}

/// A query's lines until its report; the slot is held until then.
struct QuerySource {
    handle: QueryHandle,
    done: bool,
    _slot: OwnedSemaphorePermit,
}

impl LineSource for QuerySource {
    type Line = QueryLine;

    async fn next_line(&mut self) -> Option<QueryLine> {
        if self.done {
            return None;
        }
        let line = match tokio::time::timeout(HEARTBEAT, self.handle.next()).await {
            Err(_) => QueryLine::Heartbeat,
            Ok(None) => return None,
            Ok(Some(u)) => QueryLine::from(u),
        };
        self.done = matches!(line, QueryLine::Done { .. });
        Some(line)
    }
}
