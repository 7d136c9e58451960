//! The admin API over a running [`Node`]: the backend the HTTP server talks to, its
//! Prometheus metrics, and starting the server beside the node ([`AdminServer`]).
//!
//! `/metrics` is prometheus-client's encoding of one collector per section
//! (`membership`, `swim`, `store`, `persist`, `sync`, `dissemination`, `bandwidth`,
//! `transport`, `admin_tls`, `security`, `watch`, `events`, `queries`), each reading its
//! subsystem's counters at every scrape; a new subsystem adds one section function and
//! one line in `sections::register`.
//!
//! The node knows nothing of this module: whoever starts a node (the binary, a local
//! cluster, an embedder) starts its admin API with [`AdminServer::start`].

use std::sync::Arc;

mod query_metrics;
mod repair_metrics;
mod scrape;
mod sections;
mod security_metrics;
mod server;

pub use server::{AdminServer, AdminStartError};

use crate::admin::events::{EventSent, SendEventError};
use crate::admin::prometheus_client::registry::Registry;
use crate::admin::{AdminBackend, WriteError};
use crate::core::authority::Refusal;
use crate::core::state::StateError;
use crate::identity::HandshakeStats;
use crate::node::events::{EventView, EventWatch, EventWatchError};
use crate::node::watch::{Watch, WatchError};
use crate::node::{KvEntry, MemberView, Node, NodeError, StatusView};

/// A running node as the admin API serves it: the node, and the decisions of the admin
/// API's own TLS about client certificates (zero without `admin_tls`).
#[derive(Clone)]
pub struct NodeBackend {
    node: Node,
    admin_tls: Arc<HandshakeStats>,
}

impl NodeBackend {
    /// The backend of `node`, with no admin TLS decisions yet.
    pub fn new(node: Node) -> Self {
        Self {
            node,
            admin_tls: HandshakeStats::new(),
        }
    }

    /// Client-certificate decisions of the admin API's TLS.
    pub fn admin_tls_stats(&self) -> Arc<HandshakeStats> {
        self.admin_tls.clone()
    }
}

/// A write outside the grant is forbidden; any other failure is a refusal.
fn write_error(e: NodeError) -> WriteError {
    match e {
        NodeError::State(StateError::Refused(r @ Refusal::OutsideGrant { .. })) => {
            WriteError::Forbidden(format!("{r}"))
        }
        other => WriteError::Refused(other.to_string()),
    }
}

impl AdminBackend for NodeBackend {
    fn kv_get(&self, key: &str) -> Option<KvEntry> {
        self.node.get(key)
    }

    fn kv_set(&self, key: &str, value: Vec<u8>) -> Result<(), WriteError> {
        self.node.set(key, value).map_err(write_error)
    }

    fn kv_delete(&self, key: &str) -> Result<bool, WriteError> {
        self.node.delete(key).map_err(write_error)
    }

    fn store_failure(&self) -> Option<String> {
        self.node.persist_failure()
    }

    fn kv_list(&self, prefix: &str, after: Option<&str>, limit: usize) -> Vec<KvEntry> {
        self.node.list_page(prefix, after, limit)
    }

    fn kv_list_indexed(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> (Vec<KvEntry>, Option<u64>) {
        let (page, index) = self.node.list_page_indexed(prefix, after, limit);
        (page, Some(index))
    }

    fn watch(&self, prefix: &str, index: Option<u64>) -> Result<Watch, WatchError> {
        self.node.watch(prefix, index)
    }

    fn send_event(&self, name: &str, payload: Vec<u8>) -> Result<EventSent, SendEventError> {
        match self.node.event(name, payload) {
            Ok((sender, seq)) => Ok(EventSent {
                sender: sender.to_string(),
                seq,
            }),
            Err(NodeError::Event(e)) => Err(SendEventError::Refused(e)),
            Err(e) => Err(SendEventError::Unavailable(e.to_string())),
        }
    }

    fn query(
        &self,
        name: &str,
        payload: Vec<u8>,
        filter: crate::core::queries::QueryFilter,
        timeout: std::time::Duration,
    ) -> Result<crate::node::queries::QueryHandle, crate::admin::queries::AskError> {
        use crate::admin::queries::AskError;
        self.node
            .query(name, payload, filter, timeout)
            .map_err(|e| match e {
                NodeError::Query(q) => AskError::Refused(q),
                other => AskError::Unavailable(other.to_string()),
            })
    }

    fn recent_events(&self, after: Option<u64>) -> Vec<EventView> {
        self.node.recent_events(after)
    }

    fn watch_events(&self, index: Option<u64>) -> Result<EventWatch, EventWatchError> {
        self.node.watch_events(index)
    }

    fn members(&self) -> Vec<MemberView> {
        self.node.members()
    }

    fn member_events(&self) -> Option<crate::node::MemberEvents> {
        Some(self.node.member_events())
    }

    fn status(&self) -> StatusView {
        self.node.status()
    }

    fn register_metrics(self: Arc<Self>, registry: &mut Registry) {
        sections::register(&self.node, &self.admin_tls, registry);
    }
}

// One test starts a local cluster, which only the `testing` feature builds.
#[cfg(all(test, feature = "testing"))]
mod tests;
