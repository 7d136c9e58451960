//! The admin API's view of a node, and its Prometheus metrics.
//!
//! `/metrics` is prometheus-client's encoding of one collector per section
//! (`membership`, `swim`, `store`, `persist`, `sync`, `dissemination`, `bandwidth`, `watch`,
//! `events`, `transport`, and the security section of `super::certs`), each reading its subsystem's
//! counters at every scrape; a new subsystem adds one section function and one line in
//! `sections::register`.

use std::collections::BTreeMap;
use std::sync::Arc;

mod query_metrics;
pub(super) mod scrape;
mod sections;

use super::api::NodeError;
use super::api::{KvEntry, MemberView, StatusView};
use super::runtime::Node;
use crate::admin::events::{EventSent, SendEventError};
use crate::admin::prometheus_client::registry::Registry;
use crate::admin::{AdminBackend, WriteError};
use crate::core::authority::Refusal;
use crate::core::state::StateError;
use crate::node::events::{EventView, EventWatch, EventWatchError};
use crate::node::watch::{Watch, WatchError};

/// Member statuses, in the order metrics list them.
pub const STATUSES: [&str; 4] = ["alive", "suspect", "dead", "left"];

/// One datacenter as seen by one node (in JSON: a count per status, then
/// `rtt_mean_ms` and `rtt_max_ms`).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct DcSummary {
    /// Members by status (every entry of [`STATUSES`] present), the local node included.
    #[serde(flatten)]
    pub by_status: BTreeMap<&'static str, usize>,
    /// Mean round-trip time (ms) to its alive members with a measurement.
    pub rtt_mean_ms: Option<f64>,
    /// Largest round-trip time (ms) to its alive members with a measurement.
    pub rtt_max_ms: Option<f64>,
}

/// Groups a member list by datacenter. Statuses outside [`STATUSES`] are ignored; RTTs
/// count only for alive members other than the local node.
pub fn datacenters(members: &[MemberView]) -> BTreeMap<String, DcSummary> {
    let mut out: BTreeMap<String, DcSummary> = BTreeMap::new();
    let mut rtts: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for m in members {
        let dc = out.entry(m.dc.clone()).or_insert_with(|| DcSummary {
            by_status: STATUSES.iter().map(|s| (*s, 0)).collect(),
            ..DcSummary::default()
        });
        if let Some(n) = dc.by_status.get_mut(m.status.as_str()) {
            *n += 1;
        }
        if let (false, "alive", Some(rtt)) = (m.is_self, m.status.as_str(), m.rtt_ms) {
            if rtt.is_finite() {
                rtts.entry(&m.dc).or_default().push(rtt);
            }
        }
    }
    for (dc, v) in rtts {
        if let Some(s) = out.get_mut(dc) {
            s.rtt_mean_ms = Some(v.iter().sum::<f64>() / v.len() as f64);
            s.rtt_max_ms = v.iter().copied().reduce(f64::max);
        }
    }
    out
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

impl AdminBackend for Node {
    fn kv_get(&self, key: &str) -> Option<KvEntry> {
        self.get(key)
    }

    fn kv_set(&self, key: &str, value: Vec<u8>) -> Result<(), WriteError> {
        self.set(key, value).map_err(write_error)
    }

    fn kv_delete(&self, key: &str) -> Result<bool, WriteError> {
        self.delete(key).map_err(write_error)
    }

    fn store_failure(&self) -> Option<String> {
        self.persist_failure()
    }

    fn kv_list(&self, prefix: &str, after: Option<&str>, limit: usize) -> Vec<KvEntry> {
        self.list_page(prefix, after, limit)
    }

    fn kv_list_indexed(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> (Vec<KvEntry>, Option<u64>) {
        let (page, index) = self.list_page_indexed(prefix, after, limit);
        (page, Some(index))
    }

    fn watch(&self, prefix: &str, index: Option<u64>) -> Result<Watch, WatchError> {
        Node::watch(self, prefix, index)
    }

    fn send_event(&self, name: &str, payload: Vec<u8>) -> Result<EventSent, SendEventError> {
        match self.event(name, payload) {
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
        Node::query(self, name, payload, filter, timeout).map_err(|e| match e {
            NodeError::Query(q) => AskError::Refused(q),
            other => AskError::Unavailable(other.to_string()),
        })
    }

    fn recent_events(&self, after: Option<u64>) -> Vec<EventView> {
        Node::recent_events(self, after)
    }

    fn watch_events(&self, index: Option<u64>) -> Result<EventWatch, EventWatchError> {
        Node::watch_events(self, index)
    }

    fn members(&self) -> Vec<MemberView> {
        Node::members(self)
    }

    fn member_events(&self) -> Option<crate::node::MemberEvents> {
        Some(Node::member_events(self))
    }

    fn status(&self) -> StatusView {
        Node::status(self)
    }

    fn register_metrics(self: Arc<Self>, registry: &mut Registry) {
        sections::register(&self, registry);
    }
}

// One test starts a local cluster, which only the `testing` feature builds.
#[cfg(all(test, feature = "testing"))]
mod tests;
