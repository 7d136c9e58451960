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

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::watch::{stream_response, LineSource, HEARTBEAT};
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
    let first = MemberLine::Members {
        members: b.members(),
    };
    stream_response(MemberSource {
        b,
        events,
        first: Some(first),
        _slot: slot,
    })
}

/// A member watch's lines: the list (read after subscribing), then the changes.
struct MemberSource {
    b: Backend,
    events: MemberEvents,
    first: Option<MemberLine>,
    _slot: OwnedSemaphorePermit,
}

impl LineSource for MemberSource {
    type Line = MemberLine;

    async fn next_line(&mut self) -> Option<MemberLine> {
        if let Some(first) = self.first.take() {
            return Some(first);
        }
        match tokio::time::timeout(HEARTBEAT, self.events.next()).await {
            Err(_) => Some(MemberLine::Heartbeat),
            Ok(Some(MemberEvent::Changed(c))) => Some(MemberLine::Change(c)),
            Ok(Some(MemberEvent::Missed(_))) => Some(MemberLine::Members {
                members: self.b.members(),
            }),
            Ok(None) => None,
        }
    }
}
