//! Tests of membership claims: through engines, and of the [`Claims`] part alone.

use super::super::Output;
use super::*;
use crate::core::proto::{Datagram, MemberInfo, MemberStatus};
use std::sync::Arc;

fn at(ms: u64) -> Now {
    Now {
        mono_us: ms * 1000,
        wall_ms: 1_000_000 + ms,
    }
}

fn id(s: &str) -> NodeId {
    NodeId::new(s).unwrap()
}

fn engine(name: &str, seed: u64) -> Engine {
    let info = MemberInfo {
        id: id(name),
        addr: format!("{name}:7000"),
        dc: "dc1".into(),
        zone: "z1".into(),
        tags: [("role".to_string(), "kv".to_string())].into(),
    };
    // The timelines below step through a 500 ms probe timeout and 1 s period.
    let cfg = Config {
        probe_interval_ms: 1_000,
        probe_timeout_ms: 500,
        ..Config::local()
    };
    Engine::new(cfg, info, Vec::new(), seed, at(0), None)
}

/// Three engines that know each other first-hand; outputs drained.
fn cluster() -> (Engine, Engine, Engine) {
    let mut es = [engine("y", 1), engine("r", 2), engine("x", 3)];
    let mes: Vec<MemberState> = es.iter().map(|e| e.members().me().clone()).collect();
    for e in es.iter_mut() {
        for m in &mes {
            if &m.info.id != e.id() {
                let dg = Datagram {
                    items: vec![Item::Member(m.clone())],
                };
                e.handle_datagram(at(0), &m.info.id.clone(), dg);
            }
        }
        drain(e);
    }
    let [y, r, x] = es;
    (y, r, x)
}

fn drain(e: &mut Engine) -> Vec<Output> {
    std::iter::from_fn(|| e.poll_output()).collect()
}

/// Claims about `about` sent directly to `to` (datagrams and reliable sends),
/// leaving out piggybacked gossip about others.
fn members_sent(outs: &[Output], to: &NodeId, about: &NodeId) -> Vec<MemberState> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Datagram {
                to: t, datagram, ..
            }
            | Output::Reliable {
                to: t, datagram, ..
            } if t == to => Some(datagram.items.iter()),
            _ => None,
        })
        .flatten()
        .filter_map(|i| match i {
            Item::Member(s) => Some(s.clone()),
            _ => None,
        })
        .filter(|s| &s.info.id == about)
        .collect()
}

fn send(e: &mut Engine, now: Now, from: &NodeId, items: Vec<Item>) -> Vec<Output> {
    e.handle_datagram(now, from, Datagram { items });
    drain(e)
}

fn view(e: &Engine, of: &str) -> MemberState {
    e.members().get(&id(of)).unwrap().state.clone()
}

/// Y answers R's verification first-hand, and R applies the answer.
fn round_trip(y: &mut Engine, r: &mut Engine, now: Now, r_out: &[Output]) -> MemberState {
    let asked = members_sent(r_out, y.id(), y.id());
    assert_eq!(asked.len(), 1, "R verifies with Y once: {asked:?}");
    let r_id = r.id().clone();
    let y_out = send(y, now, &r_id, vec![Item::Member(asked[0].clone())]);
    let mut answer = members_sent(&y_out, &r_id, y.id());
    // The answer, and possibly the same state piggybacked from the broadcast queue.
    answer.dedup();
    assert_eq!(answer.len(), 1, "Y answers R directly: {y_out:?}");
    assert_eq!(answer[0], *y.members().me());
    let y_id = y.id().clone();
    send(r, now, &y_id, vec![Item::Member(answer[0].clone())]);
    answer[0].clone()
}

#[test]
fn a_forged_leave_becomes_a_suspicion_that_the_member_refutes_first_hand() {
    let (mut y, mut r, x) = cluster();
    let genuine = y.members().me().clone();
    let mut forged = genuine.clone();
    forged.incarnation += 1;
    forged.status = MemberStatus::Left;
    let out = send(&mut r, at(10), x.id(), vec![Item::Member(forged)]);
    let held = view(&r, "y");
    assert_eq!(held.status, MemberStatus::Suspect, "not Left: {held:?}");
    assert_eq!(held.info, genuine.info, "metadata untouched");
    assert_eq!(r.stats().claims_refused, 1);
    assert_eq!(r.stats().claims_verified, 1);

    let answer = round_trip(&mut y, &mut r, at(20), &out);
    assert_eq!(answer.status, MemberStatus::Alive);
    assert_eq!(answer.incarnation, genuine.incarnation + 2, "Y refuted");
    assert_eq!(view(&r, "y"), answer, "the refutation arrived first-hand");
}

#[test]
fn a_forged_refutation_with_forged_metadata_is_refused() {
    let (mut y, mut r, x) = cluster();
    let genuine = y.members().me().clone();
    // R suspects Y (its own probe failed, say).
    let r_id = r.id().clone();
    r.on_suspect(at(5), id("y"), genuine.incarnation, r_id);
    drain(&mut r);
    let suspected = view(&r, "y");
    assert_eq!(suspected.status, MemberStatus::Suspect);

    let mut forged = genuine.clone();
    forged.incarnation += 1;
    Arc::make_mut(&mut forged.info).addr = "evil.example:7000".into();
    Arc::make_mut(&mut forged.info)
        .tags
        .insert("role".into(), "owned".into());
    let out = send(&mut r, at(10), x.id(), vec![Item::Member(forged.clone())]);
    assert_eq!(view(&r, "y"), suspected, "view of Y unchanged");
    assert_eq!(r.stats().claims_refused, 1);

    // The same forgery again within the probe timeout: counted, not re-verified.
    let again = send(&mut r, at(30), x.id(), vec![Item::Member(forged)]);
    assert_eq!(r.stats().claims_refused, 2);
    assert!(members_sent(&again, y.id(), y.id()).is_empty());

    // Y is told the suspicion, refutes it, and R takes that from Y itself.
    let answer = round_trip(&mut y, &mut r, at(40), &out);
    assert_eq!(answer.info, genuine.info);
    assert_eq!(answer.incarnation, genuine.incarnation + 1);
    assert_eq!(view(&r, "y"), answer);
}

#[test]
fn a_genuine_metadata_update_relayed_second_hand_arrives_through_the_member() {
    let (mut y, mut r, x) = cluster();
    let before = view(&r, "y");
    let mut info = MemberInfo::clone(&y.members().me().info);
    info.zone = "z2".into();
    y.update_meta(info.clone()).unwrap();
    drain(&mut y);
    let updated = y.members().me().clone();
    // X honestly relays Y's update: second-hand, so R does not take it...
    let out = send(&mut r, at(10), x.id(), vec![Item::Member(updated.clone())]);
    assert_eq!(view(&r, "y"), before);
    assert_eq!(r.stats().claims_refused, 1);
    // ...but asks Y, whose answer carries the update first-hand.
    round_trip(&mut y, &mut r, at(20), &out);
    assert_eq!(view(&r, "y"), updated);
    // Y sending it directly works without a round trip, too.
    let (_, mut r2, _) = cluster();
    let y_id = y.id().clone();
    send(&mut r2, at(10), &y_id, vec![Item::Member(updated.clone())]);
    assert_eq!(view(&r2, "y"), updated);
    assert_eq!(r2.stats().claims_refused, 0);
}

#[test]
fn forged_metadata_at_the_current_incarnation_changes_nothing() {
    let (mut y, mut r, x) = cluster();
    let genuine = view(&r, "y");
    let mut forged = genuine.clone();
    Arc::make_mut(&mut forged.info).dc = "elsewhere".into();
    let out = send(&mut r, at(10), x.id(), vec![Item::Member(forged)]);
    assert_eq!(view(&r, "y"), genuine);
    assert_eq!(r.stats().claims_refused, 1);
    // R's view matches Y's own state: Y has nothing to answer.
    let asked = members_sent(&out, y.id(), y.id());
    let r_id = r.id().clone();
    let y_out = send(&mut y, at(20), &r_id, vec![Item::Member(asked[0].clone())]);
    assert!(members_sent(&y_out, &r_id, y.id()).is_empty());
    assert_eq!(y.stats().claims_answered, 0);
}

#[test]
fn a_dead_member_is_revived_only_by_itself() {
    let (mut y, mut r, x) = cluster();
    let genuine = y.members().me().clone();
    let mut dead = genuine.clone();
    dead.status = MemberStatus::Dead;
    // R suspects Y, and the suspicion runs out elsewhere: Y is dead at R.
    let r_id = r.id().clone();
    r.on_suspect(at(5), id("y"), genuine.incarnation, r_id);
    send(&mut r, at(6), x.id(), vec![Item::Member(dead.clone())]);
    assert_eq!(view(&r, "y").status, MemberStatus::Dead);
    let mut revived = genuine.clone();
    revived.incarnation += 1;
    let out = send(&mut r, at(10), x.id(), vec![Item::Member(revived)]);
    assert_eq!(
        view(&r, "y").status,
        MemberStatus::Dead,
        "X cannot revive Y"
    );
    assert_eq!(r.stats().claims_refused, 1);
    let answer = round_trip(&mut y, &mut r, at(20), &out);
    assert_eq!(
        answer.incarnation,
        genuine.incarnation + 1,
        "Y refuted its death"
    );
    assert_eq!(view(&r, "y").status, MemberStatus::Alive);
}

#[test]
fn second_hand_gossip_still_introduces_members_and_spreads_suspicion() {
    let (_, mut r, x) = cluster();
    let newcomer = engine("n", 9).members().me().clone();
    send(&mut r, at(10), x.id(), vec![Item::Member(newcomer.clone())]);
    assert_eq!(view(&r, "n"), newcomer, "a join spreads second-hand");
    let mut suspect = view(&r, "y");
    suspect.status = MemberStatus::Suspect;
    Arc::make_mut(&mut suspect.info).addr = "evil.example:7000".into();
    send(&mut r, at(20), x.id(), vec![Item::Member(suspect.clone())]);
    let held = view(&r, "y");
    assert_eq!(held.status, MemberStatus::Suspect);
    assert_eq!(held.info.addr, "y:7000", "a suspicion carries no metadata");
    assert_eq!(r.stats().claims_refused, 0);
}

/// #16, finding 7: below the table's cap, one member could still introduce as many
/// invented members as it liked, as fast as it liked. Each peer now has a budget of
/// introductions; past it they are refused and counted, while another peer's
/// introductions and a member speaking for itself still get in.
#[test]
fn a_peer_introduces_members_second_hand_only_within_its_budget() {
    let (_, mut r, x) = cluster();
    r.cfg.intro_burst = 3;
    r.cfg.intro_per_sec = 1;
    let fake = |i: u64| engine(&format!("fake{i}"), 10 + i).members().me().clone();
    r.sync_on_members(at(10), x.id(), (0..10).map(fake).collect());
    assert_eq!(r.members().len(), 2 + 3, "the burst, no more");
    assert_eq!(r.stats().intros_limited, 7);
    // Two seconds later, two more tokens.
    r.sync_on_members(at(2_010), x.id(), (10..20).map(fake).collect());
    assert_eq!(r.members().len(), 2 + 5);
    // Another peer has its own budget; a member speaking for itself needs none.
    r.sync_on_members(at(2_010), &id("y"), vec![fake(30)]);
    let newcomer = engine("n", 99).members().me().clone();
    send(&mut r, at(2_020), &id("n"), vec![Item::Member(newcomer)]);
    assert_eq!(r.members().len(), 2 + 7);
}

/// #16, finding 7: a member could introduce any number of invented members
/// second-hand, growing every node's table without bound.
#[test]
fn a_full_table_refuses_second_hand_introductions_but_not_members_themselves() {
    let (_, mut r, x) = cluster();
    r.cfg.max_members = 4;
    let fakes: Vec<MemberState> = (0..10)
        .map(|i| engine(&format!("fake{i}"), 10 + i).members().me().clone())
        .collect();
    r.sync_on_members(at(10), x.id(), fakes);
    assert_eq!(r.members().len(), 4, "two real members and two fakes");
    assert_eq!(r.stats().members_refused_full, 8);
    let newcomer = engine("n", 99).members().me().clone();
    send(
        &mut r,
        at(20),
        &id("n"),
        vec![Item::Member(newcomer.clone())],
    );
    assert_eq!(
        view(&r, "n"),
        newcomer,
        "a member speaking for itself gets in"
    );
}

#[test]
fn anti_entropy_lists_are_first_hand_only_for_the_peer_itself() {
    let (y, mut r, x) = cluster();
    let mut x_self = x.members().me().clone();
    Arc::make_mut(&mut x_self.info).zone = "z9".into();
    x_self.incarnation += 1;
    let mut y_left = y.members().me().clone();
    y_left.incarnation += 1;
    y_left.status = MemberStatus::Left;
    r.sync_on_members(at(10), x.id(), vec![x_self.clone(), y_left]);
    assert_eq!(view(&r, "x"), x_self, "the peer speaks for itself");
    assert_ne!(view(&r, "y").status, MemberStatus::Left);
    assert_eq!(r.stats().claims_refused, 1);
}

#[test]
fn a_refutation_is_announced_first_hand_to_every_live_member() {
    let (mut y, r, x) = cluster();
    let mut suspect = y.members().me().clone();
    suspect.status = MemberStatus::Suspect;
    let out = send(&mut y, at(10), r.id(), vec![Item::Member(suspect)]);
    let me = y.members().me().clone();
    assert_eq!(me.incarnation, view(&r, "y").incarnation + 1, "refuted");
    for to in [r.id(), x.id()] {
        assert!(
            members_sent(&out, to, y.id()).contains(&me),
            "{to} not told first-hand: {out:?}"
        );
    }
    assert_eq!(y.stats().refutations, 1);
}

#[test]
fn the_gate_lets_each_key_through_once_per_period_and_holds_a_bounded_number() {
    let mut g = Gate::default();
    let key = |i: usize| NodeId::new(&format!("k{i}")).unwrap();
    assert!(g.admit(&key(0), 1_000, 500));
    assert!(!g.admit(&key(0), 1_400, 500), "within the period");
    assert!(g.admit(&key(0), 1_500, 500), "a period later");
    for i in 1..MAX_TRACKED {
        assert!(g.admit(&key(i), 1_600, 500));
    }
    assert!(
        !g.admit(&key(MAX_TRACKED), 1_700, 500),
        "full of recent keys: waits"
    );
    assert_eq!(g.at.len(), MAX_TRACKED);
    assert!(
        g.admit(&key(MAX_TRACKED), 2_200, 500),
        "expired keys forgotten"
    );
    assert!(g.at.len() <= MAX_TRACKED);
}

#[test]
fn an_unanswered_verification_is_retried_each_probe_timeout() {
    let (y, mut r, x) = cluster();
    let mut refuted = y.members().me().clone();
    refuted.incarnation += 1;
    let first = send(&mut r, at(10), x.id(), vec![Item::Member(refuted)]);
    assert_eq!(members_sent(&first, y.id(), y.id()).len(), 1);
    // Neither the verification nor an answer arrives; it is asked again once per
    // probe timeout (each retry sends Y what R then holds), until the attempts run out.
    let mut counts = Vec::new();
    for t in [300, 600, 1_200, 2_200, 3_300] {
        r.handle_timeout(at(t));
        let o = drain(&mut r);
        assert!(
            r.stats().claims_verified == counts.last().copied().unwrap_or(1)
                || !members_sent(&o, y.id(), y.id()).is_empty(),
            "a retry must send Y our view"
        );
        counts.push(r.stats().claims_verified);
    }
    assert_eq!(counts, [1, 2, 3, 3, 3]);
    assert_eq!(VERIFY_ATTEMPTS, 3);
}

#[test]
fn answers_to_one_peer_are_rate_limited() {
    let (mut y, r, _) = cluster();
    let mut stale = y.members().me().clone();
    stale.incarnation -= 1;
    let r_id = r.id().clone();
    let first = send(&mut y, at(10), &r_id, vec![Item::Member(stale.clone())]);
    assert!(!members_sent(&first, &r_id, y.id()).is_empty());
    let second = send(&mut y, at(500), &r_id, vec![Item::Member(stale.clone())]);
    assert!(members_sent(&second, &r_id, y.id()).is_empty());
    let later = send(&mut y, at(1_500), &r_id, vec![Item::Member(stale)]);
    assert!(!members_sent(&later, &r_id, y.id()).is_empty());
    assert_eq!(y.stats().claims_answered, 2);
}

#[test]
fn absurd_incarnations_are_invalid() {
    let (_, mut r, x) = cluster();
    let mut s = view(&r, "y");
    s.status = MemberStatus::Suspect;
    s.incarnation = u64::MAX;
    send(&mut r, at(10), x.id(), vec![Item::Member(s)]);
    assert_eq!(view(&r, "y").status, MemberStatus::Alive);
    assert_eq!(r.stats().items_invalid, 1);
}

// The part on its own: a member table and a clock, no engine.

/// A table of `me` holding peer `y` alive at incarnation 5.
fn table_with_y() -> Membership {
    let info = |n: &str| MemberInfo {
        id: id(n),
        addr: format!("{n}:7000"),
        dc: "dc1".into(),
        zone: "z1".into(),
        tags: Default::default(),
    };
    let mut members = Membership::new(info("me"), 1);
    members.preload(
        0,
        [MemberState {
            info: Arc::new(info("y")),
            incarnation: 5,
            status: MemberStatus::Alive,
        }],
    );
    members
}

#[test]
fn the_part_retries_a_verification_until_answered_or_out_of_attempts() {
    let cfg = Config {
        probe_timeout_ms: 500,
        ..Config::local()
    };
    let members = table_with_y();
    let mut claims = Claims::default();
    // A claim naming an older or the held life is nothing to chase.
    claims.note_pending(&id("y"), 5, 5);
    assert!(claims.unanswered(&members).is_empty());
    claims.note_pending(&id("y"), 7, 5);
    let start = 10_000_000;
    assert!(claims.admit_verification(&cfg, &id("y"), start));
    assert!(
        !claims.admit_verification(&cfg, &id("y"), start + 400_000),
        "one per timeout"
    );
    let mut sent = 1;
    for t in 1..10u64 {
        for y in claims.unanswered(&members) {
            sent += u32::from(claims.admit_verification(&cfg, &y, start + t * 500_000));
        }
    }
    assert_eq!(sent, VERIFY_ATTEMPTS);
    assert!(claims.unanswered(&members).is_empty(), "given up");
    // Answered: y now holds the life the claim named, and is forgotten.
    let mut answered = table_with_y();
    let mut claims = Claims::default();
    claims.note_pending(&id("y"), 6, 5);
    answered.apply(
        1,
        MemberState {
            incarnation: 6,
            ..answered.get(&id("y")).unwrap().state.clone()
        },
    );
    assert!(claims.unanswered(&answered).is_empty());
}

#[test]
fn the_part_paces_a_refutation_announcement_and_limits_answers() {
    let cfg = Config {
        probe_interval_ms: 1_000,
        probe_timeout_ms: 500,
        ..Config::local()
    };
    let members = table_with_y();
    let mut claims = Claims::default();
    assert!(!claims.announcing());
    let start = 10_000_000;
    assert!(claims.start_announcing(&cfg, &members, start));
    assert!(claims.announcing());
    assert!(
        !claims.start_announcing(&cfg, &members, start + 999_999),
        "once per probe period"
    );
    assert!(claims.next_to_announce(0).is_empty(), "no room yet");
    assert_eq!(claims.next_to_announce(usize::MAX), vec![id("y")]);
    assert!(!claims.announcing());
    assert!(claims.start_announcing(&cfg, &members, start + 1_000_001));
    // Answers to one teller, and introductions by one relayer, are rate-limited.
    assert!(claims.admit_answer(&cfg, &id("r"), start));
    assert!(!claims.admit_answer(&cfg, &id("r"), start + 499_999));
    assert!(claims.admit_answer(&cfg, &id("r"), start + 500_000));
    let intro = Config {
        intro_burst: 2,
        intro_per_sec: 1,
        ..cfg
    };
    assert!(claims.admit_intro(&intro, &id("r"), 0));
    assert!(claims.admit_intro(&intro, &id("r"), 0));
    assert!(!claims.admit_intro(&intro, &id("r"), 0));
    assert!(
        claims.admit_intro(&intro, &id("r"), 1_000_000),
        "one back a second"
    );
}
