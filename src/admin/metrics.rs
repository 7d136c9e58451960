//! `/metrics`: the backend fills a prometheus-client [`Registry`] once, when the router is
//! built, with collectors that read their values at each scrape; the crate's OpenMetrics
//! text encoder writes it out.

use std::sync::Arc;

use prometheus_client::registry::Registry;

use super::AdminBackend;

/// Content type of `/metrics`: the OpenMetrics text format that prometheus-client's
/// encoder writes (Prometheus asks for it first when it scrapes).
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The registry that `/metrics` encodes: whatever `backend` registers in it.
pub fn metrics_registry(backend: Arc<dyn AdminBackend>) -> Registry {
    let mut registry = Registry::default();
    backend.register_metrics(&mut registry);
    registry
}

/// `registry` in the OpenMetrics text format, ending in `# EOF`, as `/metrics` serves it.
/// Fails only if one of its collectors fails.
pub fn encode_metrics(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::node::{DurationHistogram, DURATION_BUCKETS};
    use prometheus_client::collector::Collector;
    use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
    use prometheus_client::metrics::counter::ConstCounter;

    /// A counter family with one series whose labels need escaping.
    #[derive(Debug)]
    struct Hostile;

    impl Collector for Hostile {
        fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
            let c = ConstCounter::new(3u64);
            let mut family = encoder.encode_descriptor("x", "Help.", None, c.metric_type())?;
            c.encode(family.encode_family(&[("peer", "a\"b\\c\nd"), ("dc", "eu")])?)
        }
    }

    #[test]
    fn admin_metrics_escape_label_values() {
        let mut r = Registry::default();
        r.register_collector(Box::new(Hostile));
        let text = encode_metrics(&r).unwrap();
        assert_eq!(
            text,
            "# HELP x Help.\n\
             # TYPE x counter\n\
             x_total{peer=\"a\\\"b\\\\c\\nd\",dc=\"eu\"} 3\n\
             # EOF\n"
        );
    }

    #[test]
    fn admin_metrics_histogram_buckets_are_cumulative() {
        let h = DurationHistogram::default();
        let mut r = Registry::default();
        r.register("sync_seconds", "Sync time", h.clone());
        for ms in [1, 5, 10, 50, 2_000, 60_000] {
            h.observe(Duration::from_millis(ms));
        }
        let text = encode_metrics(&r).unwrap();
        let bucket = |le: &str| -> u64 {
            let series = format!("sync_seconds_bucket{{le=\"{le}\"}} ");
            let line = text.lines().find_map(|l| l.strip_prefix(series.as_str()));
            line.unwrap_or_else(|| panic!("no {series} in\n{text}"))
                .parse()
                .unwrap()
        };
        // A duration on a bound counts in that bound's bucket.
        assert_eq!(bucket("0.001"), 1);
        assert_eq!(bucket("0.005"), 2);
        assert_eq!(bucket("0.01"), 3);
        assert_eq!(bucket("0.05"), 4);
        assert_eq!(bucket("2.5"), 5);
        assert_eq!(bucket("30.0"), 5);
        assert_eq!(bucket("+Inf"), 6);
        assert!(text.contains("# TYPE sync_seconds histogram\n"), "{text}");
        assert!(text.contains("\nsync_seconds_count 6\n"), "{text}");
        let sum: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("sync_seconds_sum "))
            .unwrap()
            .parse()
            .unwrap();
        assert!((sum - 62.066).abs() < 1e-9, "{sum}");
        let buckets = text.lines().filter(|l| l.contains("_bucket{")).count();
        assert_eq!(buckets, DURATION_BUCKETS.len() + 1);
        assert!(text.ends_with("# EOF\n"));
    }
}
