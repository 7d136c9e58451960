//! Tests of the admin view and `/metrics` of a node.

use std::time::Duration;

use super::*;
use crate::local::{self, LocalCluster};

fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Two nodes in two datacenters: `/metrics` counts members per datacenter, measures the
/// RTT to the other one and times the anti-entropy exchanges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_per_datacenter_and_sync_durations() {
    let mut gossip = crate::core::Config::local();
    gossip.sync_interval_ms = 100;
    let mut c = LocalCluster::start(1, 1, gossip).await.unwrap();
    let mut cfg = c.config(2, c.seed_addrs());
    cfg.dc = "dc-b".into();
    c.start_with(cfg).await.unwrap();
    // One registry for the whole test: its collectors read the node anew at each scrape.
    let registry = crate::admin::metrics_registry(Arc::new(NodeBackend::new(c.nodes[0].clone())));
    let text = || crate::admin::encode_metrics(&registry).unwrap();
    let (ok, _) = local::wait_for(Duration::from_secs(20), || {
        let t = text();
        sample(&t, r#"gossamer_members_by_dc{dc="dc-b",status="alive"}"#) == Some(1.0)
            && sample(&t, r#"gossamer_dc_rtt_mean_seconds{dc="dc-b"}"#).is_some()
            && sample(&t, "gossamer_sync_duration_seconds_count").unwrap_or(0.0) >= 1.0
    })
    .await;
    let t = text();
    assert!(
        ok,
        "metrics never showed dc-b alive, its RTT and a sync:\n{t}"
    );
    let own_dc = &c.nodes[0].status().dc;
    let own = format!(r#"gossamer_members_by_dc{{dc="{own_dc}",status="alive"}}"#);
    assert_eq!(sample(&t, &own), Some(1.0), "{t}");
    assert_eq!(
        sample(&t, r#"gossamer_members_by_dc{dc="dc-b",status="dead"}"#),
        Some(0.0)
    );
    let rtt = sample(&t, r#"gossamer_dc_rtt_max_seconds{dc="dc-b"}"#).unwrap();
    assert!(rtt > 0.0 && rtt < 1.0, "loopback RTT {rtt}");
    assert!(t.contains("# TYPE gossamer_sync_duration_seconds histogram\n"));
    let count = sample(&t, "gossamer_sync_duration_seconds_count").unwrap();
    let inf = sample(&t, r#"gossamer_sync_duration_seconds_bucket{le="+Inf"}"#).unwrap();
    assert_eq!(count, inf);
    assert!(sample(&t, "gossamer_sync_duration_seconds_sum").unwrap() > 0.0);
    for name in [
        "gossamer_health_score",
        "gossamer_suspicions_total",
        "gossamer_deaths_total",
        "gossamer_conflicts_total",
        "gossamer_cert_expiry_seconds",
    ] {
        assert!(t.contains(&format!("\n{name} ")), "{name} missing:\n{t}");
    }
    // Queue drops are one family by class, not also a second unlabelled total.
    for class in ["delta", "membership"] {
        let series = format!(r#"gossamer_broadcasts_dropped_total{{class="{class}"}}"#);
        assert!(sample(&t, &series).is_some(), "{series} missing:\n{t}");
    }
    assert!(!t.contains("dropped_by_class"), "{t}");
    // OpenMetrics text, as a standard parser reads it (families, types, samples, `# EOF`).
    let parse = |text: &str| openmetrics_parser::openmetrics::parse_openmetrics(text);
    let with_samples = without_empty_families(&t);
    let parsed = parse(&with_samples)
        .unwrap_or_else(|e| panic!("/metrics is not valid OpenMetrics: {e:?}\n{t}"));
    assert!(parsed.families.contains_key("gossamer_members_by_dc"));
    assert!(parsed
        .families
        .contains_key("gossamer_sync_duration_seconds"));
    // The check can fail: a sample after `# EOF`, or one with a broken label set.
    assert!(parse(&format!("{with_samples}gossamer_x 1\n")).is_err());
    let broken = with_samples.replacen("{dc=\"dc-b\",", "{dc=\"dc-b,", 1);
    assert!(parse(&broken).is_err());
    // One HELP line per family: sections never repeat a name.
    let helps: Vec<&str> = t.lines().filter(|l| l.starts_with("# HELP ")).collect();
    let mut names: Vec<&str> = helps.iter().map(|l| l.split(' ').nth(2).unwrap()).collect();
    names.sort_unstable();
    let before = names.len();
    names.dedup();
    assert_eq!(before, names.len(), "a family appears twice");
    c.shutdown().await;
}

/// `text` without the metadata of families that have no samples yet (RTTs or clock skew
/// on a node alone). OpenMetrics allows them ("A MetricFamily MAY have zero Metrics"),
/// but openmetrics-parser 0.5 takes their metadata for the next family's and refuses
/// the next family's samples. Only `# HELP`/`# TYPE` lines are ever left out.
fn without_empty_families(text: &str) -> String {
    let mut out = String::new();
    let mut pending: Vec<&str> = Vec::new();
    let family = |l: &str| l.split(' ').nth(2).map(str::to_string);
    for line in text.lines() {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            if pending.first().and_then(|p| family(p)) != family(line) {
                pending.clear();
            }
            pending.push(line);
            continue;
        }
        for p in pending.drain(..) {
            out.push_str(p);
            out.push('\n');
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}
