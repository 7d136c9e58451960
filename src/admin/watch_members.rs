//! `GET /v1/watch/members`: this node's view of membership as newline-delimited JSON,
//! one [`MemberLine`] per line.
//!
//! - `{"type":"members","members":[..]}` first: every member as `GET /v1/members` lists
//!   it; and again whenever the stream fell behind the node's changes (the client
//!   replaces its whole list);
//! - `{"type":"change","kind":"joined"|"updated"|"refuted"|"reaped","member":{..},
//!   "old_status":..}` for each change after it, in the order the node applied them;
//! - `{"type":"heartbeat"}` after every [`HEARTBEAT`] of silence.
//!
//! The subscription starts before the list is read, so no change falls between the two
//! (one may show in both; a change line carries the member's whole state, so applying it
//! again is harmless). Nothing to resume: a reconnecting client gets the list anew, which
//! is as large as one change line per member. At most [`MAX_MEMBER_WATCHES`] at once
//! (429 beyond). A client that stops reading stalls only its own task; its subscription
//! falls behind and the next line it reads is a new list.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use super::watch::{ndjson_response, LineBody, HEARTBEAT, LINES_BUFFERED};
use super::{error, Backend};
use crate::node::{MemberChange, MemberEvent, MemberEvents, MemberView};

/// Member watches one node serves at once.
pub const MAX_MEMBER_WATCHES: usize = 64;

/// One line of a member watch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MemberLine {
    /// Every member this node knows, itself first.
    Members {
        /// The members.
        members: Vec<MemberView>,
    },
    /// A member changed.
    Change(MemberChange),
    /// Nothing changed for a while.
    Heartbeat,
}

/// `GET /v1/watch/members`, with the router's bound on open member watches.
pub(super) async fn watch_members(State(b): State<Backend>, slots: Arc<Semaphore>) -> Response {
    let Ok(slot) = slots.try_acquire_owned() else {
        return error(
            StatusCode::TOO_MANY_REQUESTS,
            format!("this node already serves {MAX_MEMBER_WATCHES} member watches; retry later"),
        );
    };
    let Some(events) = b.member_events() else {
        return error(
            StatusCode::NOT_IMPLEMENTED,
            "this node does not serve member watches",
        );
    };
    let (tx, rx) = mpsc::channel(LINES_BUFFERED);
    tokio::spawn(stream_members(b, events, tx, slot));
    ndjson_response(Body::new(LineBody(rx)))
}

/// Serialises the list, then the changes, into `tx` until the node stops or the client
/// goes.
async fn stream_members(
    b: Backend,
    mut events: MemberEvents,
    tx: mpsc::Sender<Bytes>,
    _slot: OwnedSemaphorePermit,
) {
    let mut line = MemberLine::Members {
        members: b.members(),
    };
    while let Ok(mut bytes) = serde_json::to_vec(&line) {
        bytes.push(b'\n');
        if tx.send(Bytes::from(bytes)).await.is_err() {
            break;
        }
        line = tokio::select! {
            next = tokio::time::timeout(HEARTBEAT, events.next()) => match next {
                Err(_) => MemberLine::Heartbeat,
                Ok(Some(MemberEvent::Changed(c))) => MemberLine::Change(c),
                Ok(Some(MemberEvent::Missed(_))) => MemberLine::Members {
                    members: b.members(),
                },
                Ok(None) => break,
            },
            _ = tx.closed() => break,
        };
    }
}
