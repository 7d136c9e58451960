//! Prometheus text exposition format 0.0.4.

use std::fmt::Write as _;

use crate::node::{Metric, MetricKind};

/// Content type of the text exposition format.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Renders metric families in the Prometheus text exposition format 0.0.4.
///
/// Each family gets one `# HELP` and one `# TYPE` line followed by its samples. Families
/// that share a name are merged (the first one's help and kind win), because the format
/// forbids repeating a family. Help text escapes `\` and newlines; label values escape
/// `\`, `"` and newlines. Non-finite values render as `NaN`, `+Inf` and `-Inf`.
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
        };
        let _ = writeln!(out, "# HELP {} {}", family.name, escape_help(&family.help));
        let _ = writeln!(out, "# TYPE {} {}", family.name, kind);
        for m in std::iter::once(family).chain(more.iter()) {
            for (labels, value) in &m.samples {
                out.push_str(&family.name);
                if !labels.is_empty() {
                    out.push('{');
                    for (i, (k, v)) in labels.iter().enumerate() {
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
