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
//!   taken misses nothing the node still holds and repeats nothing.

use std::collections::HashMap;

use axum::body::{Body, Bytes};
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::watch::{LineBody, HEARTBEAT, WATCH_CONTENT_TYPE};
use super::{error, query_params, Backend, INDEX_HEADER, MAX_BODY_BYTES};
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
    let body = match body {
        Ok(body) => body,
        Err(rej) if rej.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body exceeds the limit of {MAX_BODY_BYTES} bytes"),
            )
        }
        Err(rej) => return error(rej.status(), rej.body_text()),
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
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    name: &str,
) -> Result<Option<u64>, (StatusCode, String)> {
    let query = query_params(query)?;
    match query.get(name).map(|i| i.parse::<u64>()) {
        None => Ok(None),
        Some(Ok(i)) => Ok(Some(i)),
        Some(Err(_)) => Err((
            StatusCode::BAD_REQUEST,
            format!("{name} must be a whole number: the index of an event or watch line"),
        )),
    }
}

/// `GET /v1/events`.
pub(super) async fn list(
    State(b): State<Backend>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    match index_param(query, "after") {
        Ok(after) => Json(b.recent_events(after)).into_response(),
        Err((status, msg)) => error(status, msg),
    }
}

/// `GET /v1/watch/events`.
pub(super) async fn watch(
    State(b): State<Backend>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let index = match index_param(query, "index") {
        Ok(i) => i,
        Err((status, msg)) => return error(status, msg),
    };
    let watch = match b.watch_events(index) {
        Ok(w) => w,
        Err(e) => return error(StatusCode::TOO_MANY_REQUESTS, e.to_string()),
    };
    let start = watch.start();
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(stream_lines(watch, tx));
    let mut resp = Response::new(Body::new(LineBody(rx)));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(WATCH_CONTENT_TYPE),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(INDEX_HEADER, HeaderValue::from(start));
    resp
}

/// Serialises the watch's lines into `tx` until the client goes. A client that stops
/// reading stops this task at `tx.send`, never the node (the watch's channel counts
/// what it misses meanwhile).
async fn stream_lines(mut watch: EventWatch, tx: mpsc::Sender<Bytes>) {
    loop {
        let line = tokio::select! {
            next = watch.next(HEARTBEAT) => match next {
                EventWatchNext::Event(v) => EventLine::Event(v),
                EventWatchNext::Missed(count) => EventLine::Missed { count },
                EventWatchNext::Idle { index } => EventLine::Heartbeat { index },
                EventWatchNext::End => break,
            },
            _ = tx.closed() => break,
        };
        let Ok(mut bytes) = serde_json::to_vec(&line) else {
            break;
        };
        bytes.push(b'\n');
        if tx.send(Bytes::from(bytes)).await.is_err() {
            break;
        }
    }
}
