//! Prometheus text exposition format 0.0.4.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::node::{Metric, MetricKind};

/// Reserved label that names a single sample (see [`render_prometheus`]).
pub const NAME_LABEL: &str = "__name__";

/// Content type of the text exposition format.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Renders metric families in the Prometheus text exposition format 0.0.4.
///
/// Each family gets one `# HELP` and one `# TYPE` line followed by its samples. Families
/// that share a name are merged (the first one's help and kind win), because the format
/// forbids repeating a family. Help text escapes `\` and newlines; label values escape
/// `\`, `"` and newlines. Non-finite values render as `NaN`, `+Inf` and `-Inf`.
///
/// A sample whose labels include [`NAME_LABEL`] (`__name__`, as in Prometheus' own data
/// model) is written under that name instead of the family's, without the label: this is
/// how a histogram family carries its `_bucket`, `_sum` and `_count` samples.
pub fn render_prometheus(metrics: &[Metric]) -> String {
    // Group by name, keeping the order of first appearance.
    let mut order: Vec<&Metric> = Vec::new();
    let mut extra: Vec<Vec<&Metric>> = Vec::new();
    for m in metrics {
        match order.iter().position(|o| o.name == m.name) {
            Some(i) => extra[i].push(m),
            None => {
                order.push(m);
                extra.push(Vec::new());
            }
        }
    }

    let mut out = String::new();
    for (family, more) in order.iter().zip(&extra) {
        let kind = match family.kind {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
        };
        let _ = writeln!(out, "# HELP {} {}", family.name, escape_help(&family.help));
        let _ = writeln!(out, "# TYPE {} {}", family.name, kind);
        for m in std::iter::once(family).chain(more.iter()) {
            for (labels, value) in &m.samples {
                let name = labels
                    .iter()
                    .find(|(k, _)| k == NAME_LABEL)
                    .map_or(family.name.as_str(), |(_, v)| v.as_str());
                out.push_str(name);
                let mut labels = labels.iter().filter(|(k, _)| k != NAME_LABEL).peekable();
                if labels.peek().is_some() {
                    out.push('{');
                    for (i, (k, v)) in labels.enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        let _ = write!(out, "{}=\"{}\"", k, escape_label_value(v));
                    }
                    out.push('}');
                }
                out.push(' ');
                out.push_str(&format_value(*value));
                out.push('\n');
            }
        }
    }
    out
}

/// Bucket upper bounds, in seconds, of a [`Histogram`] made with `Histogram::default()`:
/// from 1 ms (a small sync inside one datacenter) to 30 s (the runtime's sync timeout).
pub const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A Prometheus histogram of durations, recorded without locks from any thread.
///
/// Observations are counted in the first bucket whose upper bound (`le`) they do not
/// exceed, or in the implicit `+Inf` bucket; the sum is kept in microseconds.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// One slot per bound, then the `+Inf` slot (not cumulative).
    counts: Vec<AtomicU64>,
    sum_us: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new(DURATION_BUCKETS)
    }
}

impl Histogram {
    /// A histogram with the given bucket upper bounds in seconds (strictly increasing,
    /// finite).
    ///
    /// # Panics
    /// If the bounds are not strictly increasing or not finite: a programming error.
    pub fn new(bounds: &'static [f64]) -> Self {
        assert!(
            bounds.iter().all(|b| b.is_finite()) && bounds.windows(2).all(|w| w[0] < w[1]),
            "histogram bounds must be finite and strictly increasing"
        );
        Self {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_us: AtomicU64::new(0),
        }
    }

    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let slot = self
            .bounds
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(self.bounds.len());
        self.counts[slot].fetch_add(1, Ordering::Relaxed);
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Observations recorded so far.
    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// The `_bucket`, `_sum` and `_count` samples of family `name`, each carrying `labels`
    /// (several labelled histograms can make up one family).
    pub fn samples(
        &self,
        name: &str,
        labels: &[(String, String)],
    ) -> Vec<(Vec<(String, String)>, f64)> {
        let with = |suffix: &str, extra: Option<(String, String)>| {
            let mut l = vec![(NAME_LABEL.to_string(), format!("{name}{suffix}"))];
            l.extend(labels.iter().cloned());
            l.extend(extra);
            l
        };
        let mut out = Vec::with_capacity(self.counts.len() + 2);
        let mut cumulative = 0u64;
        for (i, c) in self.counts.iter().enumerate() {
            cumulative += c.load(Ordering::Relaxed);
            let le = match self.bounds.get(i) {
                Some(b) => format_value(*b),
                None => "+Inf".to_string(),
            };
            out.push((
                with("_bucket", Some(("le".to_string(), le))),
                cumulative as f64,
            ));
        }
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        out.push((with("_sum", None), sum));
        // The count equals the +Inf bucket, as the format requires.
        out.push((with("_count", None), cumulative as f64));
        out
    }

    /// The whole family `name` without further labels.
    pub fn metric(&self, name: &str, help: &str) -> Metric {
        Metric {
            name: name.to_string(),
            help: help.to_string(),
            kind: MetricKind::Histogram,
            samples: self.samples(name, &[]),
        }
    }
}

fn escape_help(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn escape_label_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v == f64::INFINITY {
        "+Inf".to_string()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_string()
    } else if v == 0.0 || (1e-4..1e15).contains(&v.abs()) {
        format!("{v}")
    } else {
        format!("{v:e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(name: &str, kind: MetricKind, samples: Vec<(Vec<(&str, &str)>, f64)>) -> Metric {
        Metric {
            name: name.to_string(),
            help: format!("Help for {name}."),
            kind,
            samples: samples
                .into_iter()
                .map(|(l, v)| {
                    (
                        l.into_iter()
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .collect(),
                        v,
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn admin_prometheus_format() {
        let metrics = vec![
            metric(
                "gossamer_datagrams_sent_total",
                MetricKind::Counter,
                vec![(vec![], 42.0)],
            ),
            metric(
                "gossamer_members",
                MetricKind::Gauge,
                vec![
                    (vec![("status", "alive")], 3.0),
                    (vec![("status", "suspect")], 0.0),
                ],
            ),
        ];
        let text = render_prometheus(&metrics);
        assert_eq!(
            text,
            "# HELP gossamer_datagrams_sent_total Help for gossamer_datagrams_sent_total.\n\
             # TYPE gossamer_datagrams_sent_total counter\n\
             gossamer_datagrams_sent_total 42\n\
             # HELP gossamer_members Help for gossamer_members.\n\
             # TYPE gossamer_members gauge\n\
             gossamer_members{status=\"alive\"} 3\n\
             gossamer_members{status=\"suspect\"} 0\n"
        );
    }

    #[test]
    fn admin_prometheus_histogram() {
        static BOUNDS: &[f64] = &[0.01, 0.1, 1.0];
        let h = Histogram::new(BOUNDS);
        for ms in [5, 10, 50, 2_000] {
            h.observe(Duration::from_millis(ms));
        }
        assert_eq!(h.count(), 4);
        let mut m = h.metric("sync_seconds", "Sync time.");
        m.samples
            .extend(h.samples("sync_seconds", &[("peer".into(), "a".into())]));
        let text = render_prometheus(&[m]);
        let expected = "# HELP sync_seconds Sync time.\n\
             # TYPE sync_seconds histogram\n\
             sync_seconds_bucket{le=\"0.01\"} 2\n\
             sync_seconds_bucket{le=\"0.1\"} 3\n\
             sync_seconds_bucket{le=\"1\"} 3\n\
             sync_seconds_bucket{le=\"+Inf\"} 4\n\
             sync_seconds_sum 2.065\n\
             sync_seconds_count 4\n";
        assert!(text.starts_with(expected), "{text}");
        // Extra labels come before `le`; `__name__` never shows as a label.
        assert!(text.contains("sync_seconds_bucket{peer=\"a\",le=\"0.1\"} 3\n"));
        assert!(text.contains("sync_seconds_count{peer=\"a\"} 4\n"));
        assert!(!text.contains(NAME_LABEL));
        assert_eq!(Histogram::default().count(), 0);
    }

    #[test]
    #[should_panic(expected = "strictly increasing")]
    fn admin_prometheus_histogram_rejects_unordered_bounds() {
        static BAD: &[f64] = &[1.0, 0.5];
        let _ = Histogram::new(BAD);
    }

    #[test]
    fn admin_prometheus_escaping() {
        let mut m = metric(
            "x_total",
            MetricKind::Counter,
            vec![(vec![("peer", "a\"b\\c\nd"), ("dc", "eu")], 1.5)],
        );
        m.help = "line one\nback\\slash".to_string();
        let text = render_prometheus(&[m]);
        assert_eq!(
            text,
            "# HELP x_total line one\\nback\\\\slash\n\
             # TYPE x_total counter\n\
             x_total{peer=\"a\\\"b\\\\c\\nd\",dc=\"eu\"} 1.5\n"
        );
    }

    #[test]
    fn admin_prometheus_values_and_merging() {
        let a = metric(
            "g",
            MetricKind::Gauge,
            vec![
                (vec![("k", "1")], f64::NAN),
                (vec![("k", "2")], f64::INFINITY),
            ],
        );
        let b = metric(
            "g",
            MetricKind::Gauge,
            vec![
                (vec![("k", "3")], f64::NEG_INFINITY),
                (vec![("k", "4")], 1e300),
            ],
        );
        let empty = metric("e", MetricKind::Counter, vec![]);
        let text = render_prometheus(&[a, empty, b]);
        assert_eq!(text.matches("# TYPE g gauge").count(), 1);
        assert!(text.contains("g{k=\"1\"} NaN\n"));
        assert!(text.contains("g{k=\"2\"} +Inf\n"));
        assert!(text.contains("g{k=\"3\"} -Inf\n"));
        assert!(text.contains("g{k=\"4\"} 1e300\n"));
        assert!(text.contains("# TYPE e counter\n"));
        // Samples of the merged family stay together, before the next family.
        let g4 = text.find("g{k=\"4\"}").unwrap();
        let e = text.find("# HELP e").unwrap();
        assert!(g4 < e);
        for line in text.lines() {
            assert!(!line.is_empty());
        }
        assert_eq!(format_value(0.25), "0.25");
        assert_eq!(format_value(-3.0), "-3");
        assert_eq!(format_value(1.5e-7), "1.5e-7");
    }
}
