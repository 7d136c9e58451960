//! How long the node's anti-entropy exchanges take, kept as a prometheus-client
//! histogram: the runtime observes into it and `/metrics` registers a clone, so the
//! counts are never copied.

use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;

/// Bucket upper bounds, in seconds, of a [`DurationHistogram`]: from 1 ms (a small sync
/// inside one datacenter) to 30 s (the runtime's sync timeout).
pub const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A prometheus-client histogram of durations in seconds over [`DURATION_BUCKETS`].
/// Clones share their counts; register one clone in a [`Registry`](prometheus_client::registry::Registry) and observe through
/// another.
#[derive(Debug, Clone)]
pub struct DurationHistogram(Histogram);

impl Default for DurationHistogram {
    fn default() -> Self {
        Self(Histogram::new(DURATION_BUCKETS.iter().copied()))
    }
}

impl DurationHistogram {
    /// Records one duration.
    pub fn observe(&self, d: Duration) {
        self.0.observe(d.as_secs_f64());
    }
}

impl EncodeMetric for DurationHistogram {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        self.0.metric_type()
    }
}
