//! Tests of [`Locality`](super::Locality), directly and through the engine.
use super::*;
use crate::core::proto::{Datagram, MemberInfo, MemberState, MemberStatus};
use crate::core::{Now, Output};
use rand_chacha::ChaCha8Rng;

fn info(id: &str, dc: &str) -> MemberInfo {
    MemberInfo {
        id: NodeId::new(id).unwrap(),
        addr: format!("{id}:1"),
        dc: dc.into(),
        zone: String::new(),
        tags: Default::default(),
    }
}

fn now(ms: u64) -> Now {
    Now::new(ms * 1000, 1_700_000_000_000 + ms)
}

/// Engine `a0` in dc "a", knowing 5 more in "a" and 6 in each of "b" and "c".
fn engine(cfg: Config) -> Engine {
    let mut e = Engine::new(cfg, info("a0", "a"), vec![], 7, now(0), None);
    let mut members = Vec::new();
    for i in 1..6 {
        members.push(info(&format!("a{i}"), "a"));
    }
    for dc in ["b", "c"] {
        for i in 0..6 {
            members.push(info(&format!("{dc}{i}"), dc));
        }
    }
    let states = members
        .into_iter()
        .map(|m| MemberState {
            info: m.into(),
            incarnation: 1,
            status: MemberStatus::Alive,
        })
        .collect();
    let peer = NodeId::new("a1").unwrap();
    e.sync_on_members(now(0), &peer, states);
    assert_eq!(e.members().live_count(), 18);
    while e.poll_output().is_some() {}
    e
}

/// A delta or a tree push: the update itself, not its id.
fn carries_update(i: &Item) -> bool {
    matches!(
        i,
        Item::Delta(_) | Item::DeltaRun(_) | Item::Tree { .. } | Item::TreeRun { .. }
    )
}

fn dc_of(id: &NodeId) -> char {
    id.as_str().chars().next().unwrap()
}

fn sent(e: &mut Engine) -> Vec<(NodeId, Datagram)> {
    let mut v = Vec::new();
    while let Some(o) = e.poll_output() {
        if let Output::Datagram { to, datagram, .. } | Output::Reliable { to, datagram, .. } = o {
            v.push((to, datagram));
        }
    }
    v
}

#[test]
fn gossip_targets_cross_at_the_configured_share() {
    let mut e = engine(Config::default());
    let (mut far, mut all) = (0, 0);
    for _ in 0..2_000 {
        for p in e.pick_peers(3, None) {
            all += 1;
            far += usize::from(dc_of(&p) != 'a');
        }
    }
    let share = far as f64 / all as f64;
    assert!((0.07..0.13).contains(&share), "cross share {share}");
    let local = e.pick_local_peers(3, None);
    assert_eq!(local.len(), 3);
    assert!(local.iter().all(|p| dc_of(p) == 'a'), "{local:?}");
    // Without locality, two thirds of the targets are remote.
    let mut off = engine(Config {
        locality: false,
        ..Config::default()
    });
    let far: usize = (0..1_000)
        .map(|_| {
            off.pick_peers(3, None)
                .iter()
                .filter(|p| dc_of(p) != 'a')
                .count()
        })
        .sum();
    assert!(far > 1_500, "{far} of 3000 remote without locality");
}

#[test]
fn a_write_crosses_a_bounded_number_of_times_per_remote_dc() {
    let mut e = engine(Config::default());
    e.set(now(10), "k", b"v".to_vec()).unwrap();
    let out = sent(&mut e);
    let deltas_to = |dc: char, out: &[(NodeId, Datagram)]| {
        out.iter()
            .filter(|(to, d)| dc_of(to) == dc && d.items.iter().any(carries_update))
            .count()
    };
    assert_eq!(deltas_to('b', &out), 2, "{out:?}");
    assert_eq!(deltas_to('c', &out), 2);
    assert_eq!(deltas_to('a', &out), 3);
    // Gossip rounds: one WAN retransmit per remote dc, then none; what the queue
    // repeats (ids, or deltas with random push) stays in dc "a".
    let mut wan = 0;
    for r in 1..40 {
        e.handle_timeout(now(10 + r * 200));
        let out = sent(&mut e);
        wan += deltas_to('b', &out) + deltas_to('c', &out);
    }
    assert_eq!(wan, 2, "one resend to each of the two remote dcs");
}

#[test]
fn a_delta_from_afar_spreads_only_at_home() {
    let mut e = engine(Config::default());
    // A write by b0 (dc "b"), as its relay would deliver it to a0.
    let mut b0 = Engine::new(Config::default(), info("b0", "b"), vec![], 1, now(0), None);
    let entry = b0.set(now(1), "x", b"1".to_vec()).unwrap();
    let b0_id = NodeId::new("b0").unwrap();
    e.handle_datagram(
        now(20),
        &b0_id,
        Datagram {
            items: vec![Item::Delta(entry)],
        },
    );
    let mut out = sent(&mut e);
    for r in 1..40 {
        e.handle_timeout(now(20 + r * 200));
        out.extend(sent(&mut e));
    }
    let home = out
        .iter()
        .filter(|(to, d)| dc_of(to) == 'a' && d.items.iter().any(carries_update))
        .count();
    let away = out
        .iter()
        .filter(|(to, d)| dc_of(to) != 'a' && d.items.iter().any(carries_update))
        .count();
    assert!(home >= 3, "spread at home {home} times");
    assert_eq!(away, 0, "a delta from another dc went back across the WAN");
}

/// The member table of `a0` in dc "a", as [`engine`] builds it: the part's input.
fn table() -> Membership {
    let mut members = Membership::new(info("a0", "a"), 1);
    let mut states = Vec::new();
    for i in 1..6 {
        states.push(info(&format!("a{i}"), "a"));
    }
    for dc in ["b", "c"] {
        for i in 0..6 {
            states.push(info(&format!("{dc}{i}"), dc));
        }
    }
    let added = members.preload(
        0,
        states.into_iter().map(|m| MemberState {
            info: m.into(),
            incarnation: 1,
            status: MemberStatus::Alive,
        }),
    );
    assert_eq!(added.len(), 17);
    members
}

#[test]
fn probe_timeouts_follow_rtt_with_the_configured_floor() {
    // A 500 ms floor and a 1 s period, whatever the defaults.
    let cfg = Config {
        probe_interval_ms: 1_000,
        probe_timeout_ms: 500,
        ..Config::default()
    };
    let mut members = table();
    let mut loc = Locality::default();
    let near = NodeId::new("a1").unwrap();
    let far = NodeId::new("b1").unwrap();
    let far2 = NodeId::new("b2").unwrap();
    loc.note_probe_rtt(&mut members, &near, 2_000);
    loc.note_probe_rtt(&mut members, &far, 300_000);
    assert_eq!(members.get(&far).unwrap().rtt_us, Some(300_000));
    assert_eq!(
        loc.probe_timeout_us(&cfg, &members, &near),
        500_000,
        "the floor"
    );
    assert_eq!(
        loc.probe_timeout_us(&cfg, &members, &far),
        900_000,
        "3 RTTs"
    );
    // b2 is unmeasured: its datacenter's estimate applies.
    assert_eq!(loc.probe_timeout_us(&cfg, &members, &far2), 900_000);
    // The helper's relay wait: one round trip less, 80 % of the floor at least.
    assert_eq!(loc.relay_timeout_us(&cfg, &members, &near), 400_000);
    assert_eq!(loc.relay_timeout_us(&cfg, &members, &far), 600_000);
    // The transport's measurement of the path wins over probe round trips, larger or
    // smaller: those carry both ends' processing and are smoothed over sparse probes.
    loc.observe_rtt(&members, &near, 400_000);
    assert_eq!(loc.probe_timeout_us(&cfg, &members, &near), 1_200_000);
    loc.observe_rtt(&members, &far, 1_000);
    assert_eq!(
        loc.probe_timeout_us(&cfg, &members, &far),
        500_000,
        "the floor"
    );
    assert_eq!(Locality::probe_period_us(&cfg, 500_000), 1_000_000);
    assert_eq!(Locality::probe_period_us(&cfg, 900_000), 1_800_000);
    let off = Config {
        probe_rtt_mult: 0,
        ..cfg
    };
    assert_eq!(loc.probe_timeout_us(&off, &members, &far), 500_000);
}

#[test]
fn the_engine_routes_rtt_to_its_locality() {
    let mut e = engine(Config {
        probe_timeout_ms: 500,
        ..Config::default()
    });
    let far = NodeId::new("b1").unwrap();
    assert_eq!(e.rtt_estimate(&far), None);
    e.observe_rtt(&far, 300_000);
    assert_eq!(e.rtt_estimate(&far), Some(300_000));
    assert_eq!(e.probe_timeout_us(&far), 900_000);
    // Its datacenter's estimate now covers b2 as well.
    assert_eq!(e.rtt_estimate(&NodeId::new("b2").unwrap()), Some(300_000));
}

#[test]
fn the_part_picks_peers_by_datacenter_without_an_engine() {
    use rand::SeedableRng;
    let cfg = Config::default();
    let members = table();
    let mut loc = Locality::default();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    loc.refresh_view(&cfg, &members, 0);
    // The ring: us and our datacenter's live peers, sorted.
    let ring: Vec<&str> = loc.ring().iter().map(NodeId::as_str).collect();
    assert_eq!(ring, ["a0", "a1", "a2", "a3", "a4", "a5"]);
    let local = loc.pick_local_peers(
        &cfg,
        &members,
        &mut rng,
        0,
        4,
        Some(&NodeId::new("a1").unwrap()),
    );
    assert_eq!(local.len(), 4);
    assert!(
        local.iter().all(|p| dc_of(p) == 'a' && p.as_str() != "a1"),
        "{local:?}"
    );
    // Everyone far: every target elsewhere.
    let all_far = Config {
        cross_dc_share: 1.0,
        ..cfg.clone()
    };
    let far = loc.pick_peers(&all_far, &members, &mut rng, 0, 3, None);
    assert_eq!(far.len(), 3);
    assert!(far.iter().all(|p| dc_of(p) != 'a'), "{far:?}");
    assert!(loc
        .sync_candidates(&all_far, &members, &mut rng, 0, 4)
        .iter()
        .all(|p| dc_of(p) != 'a'));
    assert!(Locality::crosses_dc(&cfg, &members, &far[0]));
    assert!(!Locality::crosses_dc(&cfg, &members, &local[0]));
}

#[test]
fn the_part_relays_a_write_then_resends_it_per_remote_dc() {
    use rand::SeedableRng;
    let cfg = Config::default();
    let members = table();
    let mut loc = Locality::default();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut writer = Engine::new(cfg.clone(), info("a0", "a"), vec![], 1, now(0), None);
    let entry = writer.set(now(1), "k", b"v".to_vec()).unwrap();
    let sends = loc.relay_to_other_dcs(&cfg, &members, &mut rng, 0, &entry);
    let dcs: Vec<char> = sends.iter().map(|s| dc_of(&s.to)).collect();
    assert_eq!(dcs, ['b', 'b', 'c', 'c']);
    assert!(sends
        .iter()
        .all(|s| !s.reliable && s.items.iter().all(|(_, t)| *t == Traffic::Fresh)));
    // One retransmit round per configured resend, one node per remote dc, then none.
    for _ in 0..cfg.dc_retransmits {
        let resend = loc.wan_round(&cfg, &members, &mut rng, 0);
        assert_eq!(resend.len(), 2);
        assert!(resend
            .iter()
            .all(|s| s.items.iter().all(|(_, t)| *t == Traffic::Retransmit)));
    }
    assert!(loc.wan_round(&cfg, &members, &mut rng, 0).is_empty());
}

#[test]
fn invalid_locality_settings_are_named() {
    for (cfg, field) in [
        (
            Config {
                cross_dc_share: 0.0,
                ..Config::default()
            },
            "cross_dc_share",
        ),
        (
            Config {
                dc_relays: 0,
                ..Config::default()
            },
            "dc_relays",
        ),
        (
            Config {
                probe_rtt_mult: 99,
                ..Config::default()
            },
            "probe_rtt_mult",
        ),
    ] {
        let err = cfg.validate().unwrap_err();
        assert_eq!(err.field, field, "{err}");
    }
    assert!(Config {
        locality: false,
        dc_relays: 0,
        ..Config::default()
    }
    .validate()
    .is_ok());
}
