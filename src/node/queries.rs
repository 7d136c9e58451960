//! The node's queries as the asker sees them: a [`QueryHandle`] per query asked with
//! `Node::query`, fed by the driver with the engine's acks, answers and report
//! ([`Askers`]).
//!
//! The engine bounds what a query can bring (one ack and one answer per responder, at
//! most `max_responses` of each, then one report), so each handle's channel holds at
//! most that; the driver never waits on a handle, and a dropped handle is forgotten at
//! its query's report.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::mpsc;

use crate::core::queries::{QueryReply, QueryReport};
use crate::core::NodeId;

/// What a query brings its asker, in the order it comes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryUpdate {
    /// A matching member received the query.
    Ack {
        /// The member.
        from: NodeId,
    },
    /// A member answered.
    Response {
        /// The member.
        from: NodeId,
        /// Its answer.
        payload: Vec<u8>,
    },
    /// The deadline passed: nothing more comes.
    Done(QueryReport),
}

impl From<QueryReply> for QueryUpdate {
    fn from(r: QueryReply) -> Self {
        match r {
            QueryReply::Ack { from } => QueryUpdate::Ack { from },
            QueryReply::Response { from, payload } => QueryUpdate::Response { from, payload },
        }
    }
}

/// A query this node asked: its acks and answers as they arrive, then its report.
#[derive(Debug)]
pub struct QueryHandle {
    seq: u64,
    rx: mpsc::Receiver<QueryUpdate>,
    done: bool,
}

impl QueryHandle {
    /// The query's sequence number (with this node's id, its id).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The next ack or answer, then the report, then `None`. Returns `None` early only
    /// if the node shut down.
    pub async fn next(&mut self) -> Option<QueryUpdate> {
        if self.done {
            return None;
        }
        let u = self.rx.recv().await?;
        self.done = matches!(u, QueryUpdate::Done(_));
        Some(u)
    }

    /// Waits for the end and returns the answers and the report (`None` if the node
    /// shut down first).
    pub async fn collect(mut self) -> Option<(Vec<(NodeId, Vec<u8>)>, QueryReport)> {
        let mut answers = Vec::new();
        while let Some(u) = self.next().await {
            match u {
                QueryUpdate::Response { from, payload } => answers.push((from, payload)),
                QueryUpdate::Ack { .. } => {}
                QueryUpdate::Done(report) => return Some((answers, report)),
            }
        }
        None
    }
}

/// The handles of the node's pending queries, by sequence number.
#[derive(Debug, Default)]
pub struct Askers {
    open: Mutex<HashMap<u64, mpsc::Sender<QueryUpdate>>>,
}

impl Askers {
    /// A handle for query `seq`, which may bring up to `max_replies` acks and answers.
    /// Register it before the engine's outputs for the query can be dispatched (under
    /// the engine's lock).
    pub fn open(&self, seq: u64, max_replies: usize) -> QueryHandle {
        let (tx, rx) = mpsc::channel(max_replies.saturating_add(1));
        if let Ok(mut o) = self.open.lock() {
            o.insert(seq, tx);
        }
        QueryHandle {
            seq,
            rx,
            done: false,
        }
    }

    /// Passes an ack or answer of query `seq` to its handle (never waits).
    pub fn reply(&self, seq: u64, reply: QueryReply) {
        self.send(seq, QueryUpdate::from(reply), false);
    }

    /// Passes the report of query `seq` to its handle and forgets it.
    pub fn done(&self, seq: u64, report: QueryReport) {
        self.send(seq, QueryUpdate::Done(report), true);
    }

    fn send(&self, seq: u64, u: QueryUpdate, last: bool) {
        let Ok(mut o) = self.open.lock() else {
            return;
        };
        let gone = match o.get(&seq) {
            // The engine's bounds keep the channel from filling; a handle dropped by
            // its owner is forgotten.
            Some(tx) => tx.try_send(u).is_err() && tx.is_closed(),
            None => return,
        };
        if last || gone {
            o.remove(&seq);
        }
    }

    /// Drops every handle's sender: their `next` returns `None` (the node shut down).
    pub fn close(&self) {
        if let Ok(mut o) = self.open.lock() {
            o.clear();
        }
    }

    /// Queries with a handle open.
    pub fn len(&self) -> usize {
        self.open.lock().map_or(0, |o| o.len())
    }

    /// True when no query has a handle open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
