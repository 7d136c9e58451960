//! User events over the admin API:
//!
//! - `POST /v1/event/{name}` (body = payload): sends an event to every live member.
//!   200 with JSON [`EventSent`]; 400 for a bad name, 413 for a payload over
//!   `gossip.events.max_payload`, 429 above this node's own event rate, each with a
//!   message naming the bound.
//! - `GET /v1/events?after=I`: JSON array of the recent events this node delivered
//!   ([`EventView`], oldest first), those with an index above `I` if given.
//! - `GET /v1/watch/events?index=I`: newline-delimited JSON [`EventLine`]s: the events
//!   after `I` that the node still holds, then each new one as it is delivered; a
//!   heartbeat after [`super::watch::HEARTBEAT`] of silence; a `missed` line when
//!   events were lost to the watcher (evicted before it reached them, or it read too
//!   slowly), after which the stream goes on. Resuming from the index of the last line
//!   taken misses nothing the node still holds and repeats nothing. With
//!   `coalesce_ms=N` (at most [`MAX_COALESCE_MS`]) only the latest event of each name
//!   within N ms of the first of a burst is sent, as Serf coalesces.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::watch::{stream_response, LineSource, HEARTBEAT};
use super::{error, query_params, Backend, INDEX_HEADER};
use crate::core::events::EventError;
use crate::node::events::{EventView, EventWatch, EventWatchNext};

/// The answer to `POST /v1/event/{name}`: the event's id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventSent {
    /// This node's id.
    pub sender: String,
    /// The event's sequence number.
    pub seq: u64,
}

/// Why the backend did not send an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendEventError {
    /// The event breaks a bound or our rate.
    #[error(transparent)]
    Refused(#[from] EventError),
    /// The node cannot send (shut down, or no events in this backend).
    #[error("{0}")]
    Unavailable(String),
}

/// One line of an event watch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventLine {
    /// An event was delivered.
    Event(EventView),
    /// Nothing happened for a while; every event up to `index` was sent.
    Heartbeat {
        /// Resume from here after a disconnection.
        index: u64,
    },
    /// Events this watch will never see (evicted, or it read too slowly).
    Missed {
        /// How many.
        count: u64,
    },
}

fn status_of(e: &SendEventError) -> StatusCode {
    match e {
        SendEventError::Refused(EventError::PayloadTooLarge { .. }) => {
            StatusCode::PAYLOAD_TOO_LARGE
        }
        SendEventError::Refused(EventError::RateLimited { .. }) => StatusCode::TOO_MANY_REQUESTS,
        SendEventError::Refused(_) => StatusCode::BAD_REQUEST,
        SendEventError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// `POST /v1/event/{name}`.
pub(super) async fn send(
    State(b): State<Backend>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let name = match path {
        Ok(Path(name)) => name,
        Err(rej) => return error(rej.status(), rej.body_text()),
    };
    let body = match super::body_bytes(body) {
        Ok(body) => body,
        Err((status, msg)) => return error(status, msg),
    };
    match b.send_event(&name, body.to_vec()) {
        Ok(sent) => Json(sent).into_response(),
        Err(e) => error(status_of(&e), e.to_string()),
    }
}

/// `POST /v1/event/` without a name.
pub(super) async fn empty_name() -> Response {
    error(
        StatusCode::BAD_REQUEST,
        "empty event name: give the name after /v1/event/",
    )
}

/// The index parameter `name` of a query, or the status and message refusing it.
fn index_param(
    query: &HashMap<String, String>,
    name: &str,
) -> Result<Option<u64>, (StatusCode, String)> {
    match query.get(name).map(|i| i.parse::<u64>()) {
        None => Ok(None),
        Some(Ok(i)) => Ok(Some(i)),
        Some(Err(_)) => Err((
            StatusCode::BAD_REQUEST,
            format!("{name} must be a whole number"),
        )),
    }
}

/// `GET /v1/events`.
pub(super) async fn list(
    State(b): State<Backend>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    match query_params(query).and_then(|q| index_param(&q, "after")) {
        Ok(after) => Json(b.recent_events(after)).into_response(),
        Err((status, msg)) => error(status, msg),
    }
}

/// Longest coalescing window a watch may ask for (ms).
pub const MAX_COALESCE_MS: u64 = 60_000;

/// `GET /v1/watch/events`.
pub(super) async fn watch(
    State(b): State<Backend>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let query = match query_params(query) {
        Ok(q) => q,
        Err((status, msg)) => return error(status, msg),
    };
    let params =
        index_param(&query, "index").and_then(|i| Ok((i, index_param(&query, "coalesce_ms")?)));
    let (index, coalesce_ms) = match params {
        Ok(p) => p,
        Err((status, msg)) => return error(status, msg),
    };
    if coalesce_ms.is_some_and(|ms| ms > MAX_COALESCE_MS) {
        return error(
            StatusCode::BAD_REQUEST,
            format!("coalesce_ms must be at most {MAX_COALESCE_MS}"),
        );
    }
    let watch = match b.watch_events(index) {
        Ok(w) => w.coalesce(Duration::from_millis(coalesce_ms.unwrap_or(0))),
        Err(e) => return error(StatusCode::TOO_MANY_REQUESTS, e.to_string()),
    };
    let start = watch.start();
    let mut resp = stream_response(watch);
    resp.headers_mut()
        .insert(INDEX_HEADER, HeaderValue::from(start));
    resp
}

impl LineSource for EventWatch {
    type Line = EventLine;

    async fn next_line(&mut self) -> Option<EventLine> {
        match self.next(HEARTBEAT).await {
            EventWatchNext::Event(v) => Some(EventLine::Event(v)),
            EventWatchNext::Missed(count) => Some(EventLine::Missed { count }),
            EventWatchNext::Idle { index } => Some(EventLine::Heartbeat { index }),
            EventWatchNext::End => None,
        }
    }
}
