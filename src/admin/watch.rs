//! `GET /v1/watch?prefix=P&index=I`: the changes under a prefix as newline-delimited JSON,
//! one [`WatchLine`] per line.
//!
//! - `{"type":"change","index":N,"key":..,"value":..,"value_len":..,"deleted":false,"writer":..}`
//!   for each change after `I` (a delete has `"deleted":true` and no value);
//! - `{"type":"heartbeat","index":N}` after every [`HEARTBEAT`] of silence: every change
//!   up to `N` under the prefix was sent, so a client may resume from `N`; a client that
//!   hears nothing for a few heartbeats knows the stream is dead;
//! - `{"type":"reset","index":X,"reason":..}` when the watch cannot go on (`I` older than
//!   the node's ring holds, `behind`; from before the node's restart, `before_this_life`;
//!   beyond its current index, `ahead`; or the client read too slowly, `behind`): the
//!   stream ends; the client re-lists (the listing's `x-gossamer-index` is at least `X`)
//!   and watches again from the listing's index.
//!
//! Without `index` the watch starts at the node's current index, which the response
//! header [`super::INDEX_HEADER`] carries (with `index`, that index). Guarantee: resumed
//! from an index of a line or a listing, a watch misses no change and repeats none,
//! within the node's ring (`watch.log_changes`, `watch.log_bytes`) and within one life of
//! the node's process; otherwise it is reset. Watches of different nodes have unrelated
//! indexes.

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use hyper::body::Frame;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::{error, Backend, INDEX_HEADER};
use crate::node::watch::{ResetReason, Watch, WatchError, WatchItem, WatchNext};

/// Silence after which a watch stream carries a heartbeat line.
pub const HEARTBEAT: Duration = Duration::from_secs(10);

/// Content type of a watch stream.
pub const WATCH_CONTENT_TYPE: &str = "application/x-ndjson";

/// Lines serialised ahead of what the connection has taken.
pub(super) const LINES_BUFFERED: usize = 16;

/// One line of a watch stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WatchLine {
    /// A key under the prefix changed.
    Change(ChangeLine),
    /// Nothing happened under the prefix for a while; every change up to `index` was sent.
    Heartbeat {
        /// Resume from here after a disconnection.
        index: u64,
    },
    /// The watch ended: re-list, then watch from the listing's index.
    Reset {
        /// The node's index when the watch was reset.
        index: u64,
        /// Why.
        reason: ResetReason,
    },
}

impl WatchLine {
    /// The index a client resumes from once it has taken this line.
    pub fn index(&self) -> u64 {
        match self {
            WatchLine::Change(c) => c.index,
            WatchLine::Heartbeat { index } | WatchLine::Reset { index, .. } => *index,
        }
    }
}

/// A change in a watch stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeLine {
    /// The change's index on this node.
    pub index: u64,
    /// The key.
    pub key: String,
    /// The new value as UTF-8 (invalid sequences replaced by U+FFFD); absent for a delete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Length of the new value in bytes (0 for a delete).
    #[serde(default)]
    pub value_len: usize,
    /// True for a delete.
    #[serde(default)]
    pub deleted: bool,
    /// The node whose write won.
    pub writer: String,
}

impl From<WatchItem> for WatchLine {
    fn from(item: WatchItem) -> Self {
        match item {
            WatchItem::Change(c) => WatchLine::Change(ChangeLine {
                index: c.index,
                key: c.key.clone(),
                value: c
                    .value
                    .as_ref()
                    .map(|v| String::from_utf8_lossy(v).into_owned()),
                value_len: c.value.as_ref().map_or(0, Vec::len),
                deleted: c.value.is_none(),
                writer: c.writer.to_string(),
            }),
            WatchItem::Reset { index, reason } => WatchLine::Reset { index, reason },
        }
    }
}

fn refusal_status(e: &WatchError) -> StatusCode {
    match e {
        WatchError::PrefixTooLong { .. } => StatusCode::BAD_REQUEST,
        WatchError::TooMany { .. } => StatusCode::TOO_MANY_REQUESTS,
        WatchError::Closed => StatusCode::SERVICE_UNAVAILABLE,
        WatchError::Unsupported => StatusCode::NOT_IMPLEMENTED,
    }
}

/// `GET /v1/watch`.
pub(super) async fn watch(
    State(b): State<Backend>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let query = match super::query_params(query) {
        Ok(q) => q,
        Err((status, msg)) => return error(status, msg),
    };
    let prefix = query.get("prefix").map(String::as_str).unwrap_or("");
    let index = match query.get("index").map(|i| i.parse::<u64>()) {
        None => None,
        Some(Ok(i)) => Some(i),
        Some(Err(_)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "index must be a whole number: the x-gossamer-index of a listing or the index of a watch line",
            )
        }
    };
    let watch = match b.watch(prefix, index) {
        Ok(w) => w,
        Err(e) => return error(refusal_status(&e), e.to_string()),
    };
    let start = watch.start();
    let mut resp = stream_response(watch);
    if let Some(start) = start {
        resp.headers_mut()
            .insert(INDEX_HEADER, HeaderValue::from(start));
    }
    resp
}

/// A streamed response of newline-delimited JSON lines, never cached.
pub(super) fn ndjson_response(body: Body) -> Response {
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(WATCH_CONTENT_TYPE),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

impl LineSource for Watch {
    type Line = WatchLine;

    async fn next_line(&mut self) -> Option<WatchLine> {
        match self.next(HEARTBEAT).await {
            WatchNext::Item(item) => Some(WatchLine::from(item)),
            WatchNext::Idle { index } => Some(WatchLine::Heartbeat { index }),
            WatchNext::End => None,
        }
    }
}

/// Where the lines of a streamed response come from.
pub(super) trait LineSource: Send + 'static {
    /// What one line is.
    type Line: Serialize + Send;

    /// The next line; `None` ends the stream.
    fn next_line(&mut self) -> impl std::future::Future<Output = Option<Self::Line>> + Send;
}

/// The response that streams `source`'s lines, one JSON object and a newline each,
/// serialised by a task of their own. A client that stops reading stops that task at
/// `send` (the sources count or reset what it misses meanwhile), never the node, until
/// the server's idle timeout closes the connection; a client that goes ends it. The
/// source, and whatever it holds (a slot of a bounded number of watches), lives as long
/// as the task.
pub(super) fn stream_response(mut source: impl LineSource) -> Response {
    let (tx, rx) = mpsc::channel(LINES_BUFFERED);
    tokio::spawn(async move {
        loop {
            let line = tokio::select! {
                line = source.next_line() => match line {
                    Some(line) => line,
                    None => break,
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
    });
    ndjson_response(Body::new(LineBody(rx)))
}

/// A response body made of the lines a task sends; ends when the task does.
pub(super) struct LineBody(pub(super) mpsc::Receiver<Bytes>);

impl hyper::body::Body for LineBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|line| line.map(|b| Ok(Frame::data(b))))
    }
}

#[cfg(all(test, feature = "testing"))]
#[path = "watch_tests.rs"]
mod tests;
