//! Failure-detection scenarios (#18): protocol overrides.

use super::*;

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
