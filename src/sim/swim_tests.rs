//! Failure-detection scenarios (#18): detection time at N = 100, false failures under
//! loss, the idle cost, and protocol overrides. Each prints its seed.

use super::tests::run;
use super::*;

#[test]
fn hundred_nodes_know_a_crashed_node_dead_within_five_seconds_median() {
    let r = run(
        include_str!("../../scenarios/swim-detect-100.toml"),
        "scenarios/swim-detect-100.toml",
    );
    let d = r.detection_ms.expect("detections recorded");
    assert_eq!(d.crashes, 8);
    assert_eq!(d.undetected, 0);
    assert_eq!(d.all_dead_each_ms.len(), 8);
    assert!(
        d.all_dead_p50_ms <= 5_000.0,
        "median {:.0} ms",
        d.all_dead_p50_ms
    );
    assert!(d.all_dead_p50_ms <= d.all_dead_p99_ms && d.all_dead_p99_ms <= d.all_dead_max_ms);
    assert_eq!(r.false_failures, 0);
}

#[test]
fn hundred_nodes_under_ten_percent_loss_declare_no_live_node_dead() {
    let r = run(
        include_str!("../../scenarios/swim-loss-100.toml"),
        "scenarios/swim-loss-100.toml",
    );
    assert!(
        r.lost > 10_000,
        "the loss model must bite ({} lost)",
        r.lost
    );
    assert_eq!(r.false_failures, 0);
    println!("false suspicions (refuted): {}", r.false_suspicions);
}

#[test]
fn an_idle_cluster_of_fifty_sends_at_most_two_kilobytes_per_node_per_second() {
    let r = run(
        include_str!("../../scenarios/swim-idle-50.toml"),
        "scenarios/swim-idle-50.toml",
    );
    assert_eq!(r.writes, 0);
    assert!(
        r.bytes_per_node_s > 0.0 && r.bytes_per_node_s <= 2_000.0,
        "{:.0} B/node/s",
        r.bytes_per_node_s
    );
}

#[test]
fn protocol_profiles_override_the_scenario_and_bad_ones_name_the_field() {
    let sc = Scenario::from_toml(
        include_str!("../../scenarios/swim-detect-100.toml"),
        "swim-detect-100",
    )
    .unwrap();
    let m = sc
        .with_protocol(
            include_str!("../../scenarios/protocols/memberlist-lan.toml"),
            "memberlist-lan",
        )
        .unwrap();
    assert_eq!(m.gossip.probe_interval_ms, 1_000);
    assert_eq!(m.gossip.suspicion_mult, 4);
    assert_eq!(m.gossip.suspicion_confirmations, 2);
    assert_eq!(m.gossip.fanout, sc.gossip.fanout, "other fields stay");
    assert_eq!(m.nodes, 100, "the scenario stays");
    let f = sc
        .with_protocol(
            include_str!("../../scenarios/protocols/foca-lan.toml"),
            "foca-lan",
        )
        .unwrap();
    assert_eq!(
        (f.gossip.suspicion_max_mult, f.gossip.awareness_max),
        (1, 1)
    );
    let e = sc
        .with_protocol("probe_intervall_ms = 5\n", "typo")
        .unwrap_err();
    assert!(e.to_string().contains("probe_intervall_ms"), "{e}");
    let e = sc
        .with_protocol("suspicion_confirmations = 0\n", "zero")
        .unwrap_err();
    assert!(e.to_string().contains("suspicion_confirmations"), "{e}");
}
