//! A subscription to this node's view of membership: every change as it is applied, and
//! a mark where changes were missed because the subscriber fell behind. It backs
//! `GET /v1/watch/members` and lets an embedder follow membership without tokio's types.

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use super::MemberView;
use crate::core::membership::Change;
use crate::core::proto::MemberState;
use crate::core::{Event, NodeId};

/// What happened to a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberChangeKind {
    /// Seen for the first time.
    Joined,
    /// Its status or metadata changed.
    Updated,
    /// This node was accused and refuted it with a higher incarnation.
    Refuted,
    /// Dead or departed long enough to be forgotten.
    Reaped,
}

/// One membership change, with the member's state after it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberChange {
    /// What happened.
    pub kind: MemberChangeKind,
    /// The member's state after the change (no RTT or last-heard time: those are not
    /// changes).
    pub member: MemberView,
    /// The status before, for an update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_status: Option<String>,
}

impl MemberChange {
    /// The change `c`, seen by node `me`.
    fn of(c: Change, me: &NodeId) -> Self {
        let view = |s: &MemberState| MemberView::of(s, &s.info.id == me);
        match c {
            Change::Joined(s) => Self::new(MemberChangeKind::Joined, view(&s), None),
            Change::Updated { old, new } => Self::new(
                MemberChangeKind::Updated,
                view(&new),
                Some(old.as_str().to_string()),
            ),
            Change::Refuted(s) => Self::new(MemberChangeKind::Refuted, view(&s), None),
            Change::Reaped(s) => Self::new(MemberChangeKind::Reaped, view(&s), None),
        }
    }

    fn new(kind: MemberChangeKind, member: MemberView, old_status: Option<String>) -> Self {
        Self {
            kind,
            member,
            old_status,
        }
    }
}

/// The next thing a [`MemberEvents`] subscription has.
#[derive(Debug, Clone, PartialEq)]
pub enum MemberEvent {
    /// A change, in the order the node applied it.
    Changed(MemberChange),
    /// The subscriber fell behind and this many events (of every kind) were skipped:
    /// re-read the member list ([`super::Node::members`]) to catch up.
    Missed(u64),
}

/// Membership changes of one node from the moment of subscribing
/// ([`super::Node::member_events`]).
#[derive(Debug)]
pub struct MemberEvents {
    me: NodeId,
    rx: broadcast::Receiver<Event>,
}

impl MemberEvents {
    pub(super) fn new(me: NodeId, rx: broadcast::Receiver<Event>) -> Self {
        Self { me, rx }
    }

    /// The next change, or the mark of missed ones; `None` once the node stopped.
    pub async fn next(&mut self) -> Option<MemberEvent> {
        loop {
            match self.rx.recv().await {
                Ok(Event::Member(c)) => {
                    return Some(MemberEvent::Changed(MemberChange::of(c, &self.me)))
                }
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(n)) => return Some(MemberEvent::Missed(n)),
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}
