//! Tests of the [`Swim`] part on its own: a member table, a generator and a clock,
//! no engine.

use rand::SeedableRng;

use super::*;
use crate::core::proto::MemberInfo;

fn id(s: &str) -> NodeId {
    NodeId::new(s).unwrap()
}

fn info(s: &str) -> MemberInfo {
    MemberInfo {
        id: id(s),
        addr: format!("{s}:1"),
        dc: String::new(),
        zone: String::new(),
        tags: Default::default(),
    }
}

/// The table of `me`, knowing `n` live peers `p0..`.
fn table(n: usize) -> Membership {
    let mut members = Membership::new(info("me"), 1);
    members.preload(
        0,
        (0..n).map(|i| MemberState {
            info: info(&format!("p{i}")).into(),
            incarnation: 1,
            status: MemberStatus::Alive,
        }),
    );
    members
}

fn cfg() -> Config {
    Config {
        probe_interval_ms: 1_000,
        probe_timeout_ms: 500,
        ..Config::default()
    }
}

#[test]
fn one_round_probes_every_live_member_once() {
    let (cfg, members, loc) = (cfg(), table(5), Locality::default());
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let mut swim = Swim::new(0);
    let mut seen = BTreeSet::new();
    for round in 0..5u64 {
        let now = round * 1_000_000;
        assert!(swim.period_over(now));
        let (target, seq) = swim
            .start_probe(&cfg, &members, &loc, &mut rng, now)
            .unwrap();
        assert_eq!(seq, round + 1);
        assert!(seen.insert(target));
        // Unacked: the indirect probes are due at the ack timeout, not before.
        assert_eq!(swim.next_deadline(), now + 500_000);
        assert_eq!(swim.indirect_due(now + 499_999), None);
        swim.on_ack(&cfg, now + 1_000, &id("nobody"), seq);
    }
    assert_eq!(seen.len(), 5);
    // Nobody to probe: no probe, the period still runs.
    let mut alone = Swim::new(0);
    assert_eq!(alone.start_probe(&cfg, &table(0), &loc, &mut rng, 0), None);
    assert!(!alone.period_over(999_999));
}

#[test]
fn a_failed_probe_names_its_target_and_raises_awareness() {
    let (cfg, members, loc) = (cfg(), table(3), Locality::default());
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut swim = Swim::new(0);
    let (target, seq) = swim.start_probe(&cfg, &members, &loc, &mut rng, 0).unwrap();
    assert_eq!(swim.indirect_due(500_000), Some((target.clone(), seq)));
    assert_eq!(swim.indirect_due(500_000), None, "sent once");
    swim.expect_nacks(3);
    swim.on_nack(seq);
    // One failure, and two nacks that never came.
    assert_eq!(swim.finish_probe(&cfg), Some(target));
    assert_eq!(swim.awareness(), 3);
    assert_eq!(swim.health_multiplier(), 4);
    // The next period is stretched by the health multiplier; an acked probe heals.
    let (t2, seq2) = swim
        .start_probe(&cfg, &members, &loc, &mut rng, 1_000_000)
        .unwrap();
    assert!(!swim.period_over(4_999_999));
    let outcome = swim.on_ack(&cfg, 1_020_000, &t2, seq2);
    assert_eq!(
        outcome,
        AckOutcome::Measured {
            target: t2,
            rtt_us: 20_000
        }
    );
    assert_eq!(swim.finish_probe(&cfg), None);
    assert_eq!(swim.awareness(), 2);
    // Never above awareness_max - 1.
    swim.adjust_awareness(&cfg, 100);
    assert_eq!(swim.awareness(), cfg.awareness_max - 1);
}

#[test]
fn a_relayed_ping_is_acked_or_nacked_to_its_requester() {
    let cfg = cfg();
    let mut swim = Swim::new(0);
    let a = swim.relay(&id("r1"), 70, 400_000);
    let b = swim.relay(&id("r2"), 80, 300_000);
    assert_ne!(a, b);
    assert_eq!(swim.next_deadline(), 0, "the first probe is due at once");
    assert_eq!(
        swim.on_ack(&cfg, 10, &id("t"), a),
        AckOutcome::Relay {
            requester: id("r1"),
            seq: 70
        }
    );
    assert_eq!(swim.on_ack(&cfg, 20, &id("t"), a), AckOutcome::Stale);
    assert_eq!(swim.expired_relays(299_999), vec![]);
    assert_eq!(swim.expired_relays(300_000), vec![(id("r2"), 80)]);
    assert_eq!(swim.expired_relays(900_000), vec![]);
}

#[test]
fn suspicions_expire_in_id_order_and_accusers_shorten_them() {
    let cfg = cfg();
    let mut swim = Swim::new(0);
    swim.start_suspicion(&cfg, 10, 0, &id("b"), 1, Some(id("x")));
    swim.start_suspicion(&cfg, 10, 0, &id("a"), 1, Some(id("x")));
    let full = swim.suspicions[&id("a")].deadline_us();
    assert!(swim.add_accuser(&id("a"), id("y")));
    assert!(!swim.add_accuser(&id("a"), id("y")), "counted once");
    assert!(!swim.add_accuser(&id("c"), id("y")), "no such suspicion");
    let shorter = swim.suspicions[&id("a")].deadline_us();
    assert!(shorter < full);
    assert_eq!(swim.expired_suspicions(shorter), vec![id("a")]);
    assert_eq!(swim.expired_suspicions(full), vec![id("a"), id("b")]);
    assert!(swim.remove_suspicion(&id("a")).is_some());
    assert_eq!(swim.expired_suspicions(full), vec![id("b")]);
}

#[test]
fn members_joining_and_refuting_update_order_and_timers() {
    let cfg = cfg();
    let mut members = table(2);
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let mut swim = Swim::new(0);
    swim.preload(vec![id("p0"), id("p1")], &mut rng);
    let joined = MemberState {
        info: info("p2").into(),
        incarnation: 1,
        status: MemberStatus::Alive,
    };
    let change = members.apply(0, joined).unwrap();
    swim.on_change(&cfg, &members, &mut rng, 0, &change);
    assert_eq!(swim.order.len(), 3);
    // Suspected through gossip: a timer starts; refuted: it ends.
    let change = members.suspect(0, &id("p2"), 1).unwrap();
    swim.on_change(&cfg, &members, &mut rng, 0, &change);
    assert!(swim.suspicions.contains_key(&id("p2")));
    let alive = MemberState {
        info: info("p2").into(),
        incarnation: 2,
        status: MemberStatus::Alive,
    };
    let change = members.apply(10, alive).unwrap();
    swim.on_change(&cfg, &members, &mut rng, 10, &change);
    assert!(swim.suspicions.is_empty());
    // Telling a member it is down: once per probe period.
    assert!(swim.should_tell(&cfg, 5_000_000, &id("p1")));
    assert!(!swim.should_tell(&cfg, 5_999_999, &id("p1")));
    assert!(swim.should_tell(&cfg, 6_000_001, &id("p1")));
}
