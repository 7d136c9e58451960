//! Tests of held-back turns in `core::sync` (#18): a node far behind gets at most
//! [`ENTRIES_PER_TURN`] entries per turn, the oldest first, joins nothing it was not
//! sent, exchanges again at once and ends up with everything; a node of the previous
//! release and a rebase always get whole turns.

use super::digest_tests::{run, Wire};
use super::tests::{alone, at, engine, entry, three_with_keys};
use super::*;
use crate::core::engine::Config;

/// `n` writes of the writer `w` (not a member), `k{i}` with counter `i`, as a burst
/// that reached `e` but not its peer.
fn burst(e: &mut Engine, n: u64) {
    let entries = (1..=n)
        .map(|i| entry(&format!("k{i:05}"), "w", &[("w", i)], at(1).wall_ms))
        .collect();
    let got = e.sync_on_entries(at(1), entries, None);
    assert_eq!((got.applied, got.refused), (n as usize, 0));
}

/// Whether a side's turns ended with `Held`.
fn held_by(wire: &Wire, initiator: bool) -> bool {
    wire.turns
        .iter()
        .filter(|(i, _)| *i == initiator)
        .flat_map(|(_, t)| t.iter())
        .any(|f| matches!(f, SyncFrame::Held))
}

/// Two nodes of the default configuration.
fn pair() -> (Engine, Engine) {
    (
        engine("a", Config::default()),
        engine("b", Config::default()),
    )
}

fn writer() -> NodeId {
    NodeId::new("w").unwrap()
}

#[test]
fn a_node_far_behind_pulls_bounded_turns_oldest_first_and_joins_only_when_whole() {
    let n = 2 * ENTRIES_PER_TURN as u64 + 100;
    let (mut a, mut b) = pair();
    burst(&mut b, n);

    let now = at(10);
    let wire = run(&mut a, &mut b, now, true, |_| {}, |_| {});
    assert_eq!(wire.entries_from(false), ENTRIES_PER_TURN);
    assert!(held_by(&wire, false), "b held the rest back");
    assert_eq!(a.store().live_len(), ENTRIES_PER_TURN);
    // The oldest writes came first, and nothing a was not sent counts as seen.
    assert!(a.store().get("k00001").is_some());
    assert!(a.store().get(&format!("k{ENTRIES_PER_TURN:05}")).is_some());
    assert!(!a.store().context().contains(&writer(), n));
    assert_eq!(a.stats().sync_joins_skipped, 1);
    assert_eq!(b.stats().sync_turns_held, 1);
    // a exchanges again at once, not an interval later.
    assert_eq!(a.stats().sync_follow_ups, 1);
    assert!(a.poll_timeout() <= now.mono_us);

    let mut exchanges = 1;
    while a.store().live_len() < n as usize {
        assert!(
            exchanges < 3,
            "three turns of at most {ENTRIES_PER_TURN} bring {n}"
        );
        run(&mut a, &mut b, at(10 + exchanges), true, |_| {}, |_| {});
        exchanges += 1;
    }
    assert_eq!(exchanges, 3);
    assert!(
        a.store().context().contains(&writer(), n),
        "the last one joined"
    );
    assert_eq!(a.store().context(), b.store().context());
}

#[test]
fn a_responder_far_behind_is_sent_a_bounded_turn_and_follows_up() {
    let n = ENTRIES_PER_TURN as u64 + 1;
    let (mut a, mut b) = pair();
    burst(&mut a, n);
    let now = at(10);
    let wire = run(&mut a, &mut b, now, true, |_| {}, |_| {});
    assert_eq!(wire.entries_from(true), ENTRIES_PER_TURN);
    assert!(held_by(&wire, true));
    assert_eq!(b.store().live_len(), ENTRIES_PER_TURN);
    assert!(!b.store().context().contains(&writer(), n));
    assert!(b.poll_timeout() <= now.mono_us, "b exchanges again at once");
}

#[test]
fn a_node_of_the_previous_release_gets_every_entry_in_one_turn() {
    let n = 2 * ENTRIES_PER_TURN as u64 + 100;
    let (mut a, mut b) = pair();
    burst(&mut b, n);
    // What b reads of a's `Open` when a runs the previous release: no `reads_held`.
    let old = |f: &mut SyncFrame| {
        if let SyncFrame::Open { reads_held, .. } = f {
            *reads_held = false;
        }
    };
    let wire = run(&mut a, &mut b, at(10), true, old, |_| {});
    assert!(!held_by(&wire, false));
    assert_eq!(wire.entries_from(false), n as usize);
    assert_eq!(a.store().context(), b.store().context());
}

#[test]
fn an_exchange_that_brought_many_entries_we_lacked_is_followed_sooner() {
    let cfg = Config::default();
    let (mut a, mut b) = pair();
    burst(&mut b, FAR_BEHIND as u64);
    let now = at(10);
    run(&mut a, &mut b, now, true, |_| {}, |_| {});
    assert_eq!(a.stats().sync_follow_ups, 1);
    assert!(a.poll_timeout() <= now.mono_us + cfg.sync_interval_ms * 1000 / 4);
    // b learned nothing: its next exchange stays an interval away.
    assert_eq!(b.stats().sync_follow_ups, 0);
}

#[test]
fn an_exchange_that_repaired_a_few_losses_is_not_followed_sooner() {
    let (mut a, mut b) = pair();
    burst(&mut b, FAR_BEHIND as u64 - 1);
    run(&mut a, &mut b, at(10), true, |_| {}, |_| {});
    assert_eq!(a.store().live_len(), FAR_BEHIND - 1);
    assert_eq!(a.stats().sync_follow_ups, 0);
}

#[test]
fn a_rebase_is_never_held_back() {
    // As in `a_node_back_from_beyond_the_grace_rebases_once_...`: `a` collected a
    // delete while `b` was away; `b` learns it must rebase in its first exchange and
    // runs the rebase in the next, whose `Open` must not let `a` hold candidates back.
    let (mut a, mut b, _c) = three_with_keys();
    a.delete(at(10), "k0").unwrap();
    alone(&mut a, 10, 200_000);
    run(&mut b, &mut a, at(200_200), true, |_| {}, |_| {});
    assert_eq!(b.stats().rebases, 0);
    let mut opens = Vec::new();
    let record = |f: &mut SyncFrame| {
        if let SyncFrame::Open { reads_held, .. } = f {
            opens.push(*reads_held);
        }
    };
    run(&mut b, &mut a, at(200_300), true, record, |_| {});
    assert_eq!(b.stats().rebases, 1);
    assert_eq!(opens, vec![false], "b's Open while it rebases");
}

/// Whom `e` opens its next exchange with, once its sync timer is due at `now`.
fn next_sync_with(e: &mut Engine, now: Now) -> Option<NodeId> {
    e.handle_timeout(now);
    let mut with = None;
    while let Some(o) = e.poll_output() {
        if let crate::core::engine::Output::Sync { with: w, .. } = o {
            with = Some(w);
        }
    }
    with
}

#[test]
fn the_rest_is_pulled_from_the_peer_that_held_it_back() {
    let (mut a, mut b, _c) = three_with_keys();
    let n = 3 * ENTRIES_PER_TURN as u64 + 1;
    burst(&mut b, n);
    let mut t = 10;
    run(&mut a, &mut b, at(t), true, |_| {}, |_| {});
    // c is the member a synced with least recently; a goes back to b, which has the rest.
    while a.store().live_len() < 4 + n as usize {
        t += 1;
        assert_eq!(next_sync_with(&mut a, at(t)).as_ref(), Some(b.id()));
        run(&mut a, &mut b, at(t), true, |_| {}, |_| {});
        assert!(t < 14, "four turns bring {n}");
    }
}

#[test]
fn a_peer_saying_held_with_nothing_to_give_does_not_keep_our_exchanges() {
    let (mut a, mut b, c) = three_with_keys();
    let now = at(10);
    let (mut ea, first) = Exchange::initiate(&mut a, now, b.id().clone(), SyncKind::Periodic, true);
    let mut eb = Exchange::accept(a.id().clone());
    let mut answer = Vec::new();
    for f in first {
        if let Step::Send(t) = eb.on_frame(&mut b, now, f).unwrap() {
            answer = t;
        }
    }
    // b has nothing a lacks, and says `Held` all the same.
    let end = answer.pop();
    assert_eq!(end, Some(SyncFrame::End));
    answer.extend([SyncFrame::Held, SyncFrame::End]);
    for f in answer {
        ea.on_frame(&mut a, now, f).unwrap();
    }
    assert!(ea.is_done());
    assert_eq!(a.stats().sync_follow_ups, 1, "a exchanges again at once");
    assert_eq!(next_sync_with(&mut a, now).as_ref(), Some(c.id()));
}
