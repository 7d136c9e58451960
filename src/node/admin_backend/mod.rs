//! The admin API's view of a node, and its Prometheus metrics.
//!
//! `/metrics` is assembled from sections (`membership`, `datacenter`, `swim`, `store`,
//! `sync`, `dissemination`, `transport`, then the security section of `super::certs`);
//! a new subsystem adds one section function and one line in [`AdminBackend::metrics`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

mod sections;

use super::api::NodeError;
use super::api::{KvEntry, MemberView, Metric, MetricKind, StatusView};
use super::runtime::Node;
use crate::admin::{AdminBackend, WriteError};
use crate::core::authority::Refusal;
use crate::core::state::StateError;

/// Member statuses, in the order metrics list them.
pub(crate) const STATUSES: [&str; 4] = ["alive", "suspect", "dead", "left"];

/// Label pairs of one sample.
type Labels = Vec<(String, String)>;

/// Metric families under construction, in output order.
#[derive(Default)]
pub(crate) struct Families(Vec<Metric>);

impl Families {
    /// A family with one unlabelled sample.
    fn one(&mut self, name: &str, help: &str, kind: MetricKind, value: f64) {
        self.labelled(name, help, kind, vec![(Vec::new(), value)]);
    }

    /// A counter from an integer.
    fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.one(name, help, MetricKind::Counter, value as f64);
    }

    /// A counter read from an atomic.
    fn counter_atomic(&mut self, name: &str, help: &str, value: &AtomicU64) {
        self.counter(name, help, value.load(Ordering::Relaxed));
    }

    /// A gauge.
    fn gauge(&mut self, name: &str, help: &str, value: f64) {
        self.one(name, help, MetricKind::Gauge, value);
    }

    /// A family with labelled samples.
    fn labelled(&mut self, name: &str, help: &str, kind: MetricKind, samples: Vec<(Labels, f64)>) {
        self.0.push(Metric {
            name: name.to_string(),
            help: help.to_string(),
            kind,
            samples,
        });
    }

    /// A family built elsewhere (a histogram, the security section).
    fn push(&mut self, m: Metric) {
        self.0.push(m);
    }
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// One datacenter as seen by one node.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct DcSummary {
    /// Members by status (every entry of [`STATUSES`] present), the local node included.
    pub(crate) by_status: BTreeMap<&'static str, usize>,
    /// Mean round-trip time (ms) to its alive members with a measurement.
    pub(crate) rtt_mean_ms: Option<f64>,
    /// Largest round-trip time (ms) to its alive members with a measurement.
    pub(crate) rtt_max_ms: Option<f64>,
}

/// Groups a member list by datacenter. Statuses outside [`STATUSES`] are ignored; RTTs
/// count only for alive members other than the local node.
pub(crate) fn datacenters(members: &[MemberView]) -> BTreeMap<String, DcSummary> {
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

    fn members(&self) -> Vec<MemberView> {
        Node::members(self)
    }

    fn status(&self) -> StatusView {
        Node::status(self)
    }

    fn metrics(&self) -> Vec<Metric> {
        let mut f = Families::default();
        self.membership_metrics(&mut f);
        self.swim_metrics(&mut f);
        self.store_metrics(&mut f);
        self.persist_metrics(&mut f);
        self.sync_metrics(&mut f);
        self.dissemination_metrics(&mut f);
        self.bandwidth_metrics(&mut f);
        self.transport_metrics(&mut f);
        for m in self.security_metrics() {
            f.push(m);
        }
        f.0
    }
}

// One test starts a local cluster, which only the `testing` feature builds.
#[cfg(all(test, feature = "testing"))]
mod tests;
