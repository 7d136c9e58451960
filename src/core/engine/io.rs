//! What leaves the engine: the effects the caller carries out ([`Output`]) and the
//! changes subscribers hear about ([`Event`]).

use crate::core::events::UserEvent;
use crate::core::membership::Change;
use crate::core::proto::Datagram;
use crate::core::queries::{Query, QueryReply, QueryReport};
use crate::core::state::Entry;
use crate::core::NodeId;

/// Something the caller must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Send a datagram to a member.
    Datagram {
        /// Recipient.
        to: NodeId,
        /// Its advertised address.
        addr: String,
        /// Contents.
        datagram: Datagram,
    },
    /// Send items too large for a datagram on a reliable (uni) stream.
    Reliable {
        /// Recipient.
        to: NodeId,
        /// Its advertised address.
        addr: String,
        /// Contents.
        datagram: Datagram,
    },
    /// Run an anti-entropy exchange with a member (see [`crate::core::sync::Exchange`]).
    Sync {
        /// Peer.
        with: NodeId,
        /// Its advertised address.
        addr: String,
    },
    /// Contact a seed address: connect, then run a `Join` exchange with whoever answers,
    /// then report with [`Engine::seed_result`](super::Engine::seed_result).
    Contact {
        /// Index of the seed in the configured list.
        seed: usize,
        /// The address as configured (re-resolve names every time).
        addr: String,
    },
    /// Tell subscribers.
    Event(Event),
}

/// A change subscribers hear about.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A key changed (set or deleted).
    Kv {
        /// The new entry (a tombstone for a delete).
        entry: Entry,
        /// Written by this node.
        local: bool,
        /// The change resolved concurrent writes.
        conflict: bool,
    },
    /// Membership changed.
    Member(Change),
    /// A user event was delivered (once per event; ours too).
    User(UserEvent),
    /// A query that matches this node was delivered (once per query; ours too, when
    /// we match our own filter): answer it with [`super::Engine::respond_query`] within
    /// its timeout, or not at all (the asker then reports us silent).
    Query(Query),
    /// An ack or answer to one of our queries (the query's sequence number), accepted:
    /// at most one of each per responder, within `gossip.queries`' bounds.
    QueryReply {
        /// The query's sequence number.
        seq: u64,
        /// What came, from whom.
        reply: QueryReply,
    },
    /// One of our queries reached its deadline: nothing more is accepted for it.
    QueryDone {
        /// The query's sequence number.
        seq: u64,
        /// Acks, answers and the silent members.
        report: QueryReport,
    },
    /// An entry's stamp was further ahead of our clock than the drift bound: its
    /// writer's clock is wrong (our clock moved only up to the bound). Told once per
    /// writer.
    ClockAhead {
        /// The writer whose stamp it was.
        writer: NodeId,
        /// How far ahead (ms).
        ahead_ms: u64,
    },
}
