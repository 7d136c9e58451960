//! Tests of repair rounds: they wait for reported loss, pull the gossip round ahead for
//! a new id, and tell each tree child the ids of the copies pushed to it.

use super::super::tree::tests::{at, datagrams, hub, id, trees};
use super::*;
use crate::core::engine::Config;
use crate::core::proto::Datagram;

/// Engine p00 knowing p01..p15, a graft timeout after a gossip round (the next is most
/// of an interval away, and a round may be pulled). Returns it and the time (ms).
fn after_a_round() -> (Engine, u64) {
    let mut e = hub();
    let t = e.next_gossip_us / 1000 + 1;
    e.handle_timeout(at(t));
    datagrams(&mut e);
    let t = t + Config::default().graft_timeout_ms;
    e.handle_timeout(at(t));
    datagrams(&mut e);
    (e, t)
}

/// The members that got an id of `writer`'s in `out`.
fn told(out: &[(NodeId, Datagram)], writer: &NodeId) -> Vec<NodeId> {
    let mut to: Vec<NodeId> = out
        .iter()
        .filter(|(_, d)| {
            d.items
                .iter()
                .any(|i| matches!(i, Item::IHave { writer: w, .. } if w == writer))
        })
        .map(|(to, _)| to.clone())
        .collect();
    to.sort();
    to.dedup();
    to
}

#[test]
fn without_reported_loss_ids_wait_for_the_gossip_round() {
    let (mut e, t) = after_a_round();
    // 4 lost in 1,000: below the 5 per thousand repair rounds start at.
    e.observe_path_loss(at(t).mono_us, 1_000, 4);
    assert_eq!(e.path_loss_permille(), 4);
    let next = e.next_gossip_us;
    e.set(at(t), "k", b"v".to_vec()).unwrap();
    datagrams(&mut e);
    assert_eq!(e.next_gossip_us, next, "the round was pulled ahead");
    assert!(e.repair.owed.is_empty());
    e.handle_timeout(at(t + 5));
    assert!(datagrams(&mut e).is_empty());
    assert_eq!(e.stats().ids_told_children, 0);
}

#[test]
fn under_loss_a_new_id_goes_out_within_a_quarter_graft_timeout_and_to_each_tree_child() {
    let (mut e, t) = after_a_round();
    e.observe_path_loss(at(t).mono_us, 1_000, 100);
    assert_eq!(e.path_loss_permille(), 100);
    e.set(at(t), "k", b"v".to_vec()).unwrap();
    let pushed = datagrams(&mut e);
    let children: Vec<NodeId> = {
        let mut c: Vec<NodeId> = pushed.iter().map(|(to, _)| to.clone()).collect();
        c.sort();
        c.dedup();
        c
    };
    assert_eq!(trees(&pushed), 4);
    let quarter_ms = Config::default().graft_timeout_ms / 4;
    assert_eq!(e.next_gossip_us, at(t + quarter_ms).mono_us);
    e.handle_timeout(at(t + quarter_ms - 1));
    assert!(datagrams(&mut e).is_empty(), "nothing before the round");
    e.handle_timeout(at(t + quarter_ms));
    let round = datagrams(&mut e);
    let me = id("p00");
    let got = told(&round, &me);
    for c in &children {
        assert!(got.contains(c), "tree child {c} not told: {got:?}");
    }
    assert_eq!(e.stats().ids_told_children, 4);
    assert_eq!(e.stats().repair_rounds, 1);
    assert!(e.repair.owed.is_empty(), "owed ids are sent once");
    // The round after is a whole interval away again, and the next new id pulls it no
    // sooner than a graft timeout after this one.
    let round = t + quarter_ms;
    assert_eq!(
        e.next_gossip_us,
        at(round + Config::default().gossip_interval_ms).mono_us
    );
    e.set(at(round + 1), "k2", b"v".to_vec()).unwrap();
    datagrams(&mut e);
    let graft_ms = Config::default().graft_timeout_ms;
    assert_eq!(e.next_gossip_us, at(round + graft_ms).mono_us);
}

#[test]
fn loss_counts_only_over_the_last_ten_seconds_and_enough_packets() {
    let (mut e, t) = after_a_round();
    e.observe_path_loss(at(t).mono_us, 40, 40);
    assert_eq!(e.path_loss_permille(), 0, "40 packets say nothing yet");
    e.observe_path_loss(at(t + 1_000).mono_us, 60, 0);
    assert_eq!(e.path_loss_permille(), 400);
    // Ten seconds after the first report it is forgotten, then the second.
    e.observe_path_loss(at(t + 10_000).mono_us, 100, 0);
    assert_eq!(e.path_loss_permille(), 0);
    e.observe_path_loss(at(t + 11_000).mono_us, 0, 0);
    assert_eq!(e.path_loss_permille(), 0);
    // More lost than sent (a bad driver) reads as all lost, no more.
    e.observe_path_loss(at(t + 12_000).mono_us, 100, 500);
    assert_eq!(e.path_loss_permille(), 500);
}

#[test]
fn a_backed_off_node_runs_no_repair_rounds() {
    let (mut e, t) = after_a_round();
    e.observe_path_loss(at(t).mono_us, 1_000, 100);
    e.backoff.level = 1;
    let next = e.next_gossip_us;
    e.set(at(t), "k", b"v".to_vec()).unwrap();
    datagrams(&mut e);
    assert_eq!(e.next_gossip_us, next);
    assert!(e.repair.owed.is_empty());
}

#[test]
fn the_thresholds_are_inclusive_and_a_silent_driver_leaves_no_loss() {
    let (mut e, t) = after_a_round();
    // Exactly 50 packets, exactly 5 in 1,000 of them lost: rounds run.
    e.observe_path_loss(at(t).mono_us, 50, 0);
    e.observe_path_loss(at(t).mono_us, 950, 5);
    assert_eq!(e.path_loss_permille(), LOSSY_PERMILLE);
    e.set(at(t), "k", b"v".to_vec()).unwrap();
    datagrams(&mut e);
    assert!(e.repair.pulled, "5 per 1,000 is loss");
    // A driver that stopped reporting ten seconds ago leaves no loss standing.
    let later = t + 10_000;
    e.handle_timeout(at(later));
    datagrams(&mut e);
    assert!(!e.repairing());
}

#[test]
fn at_most_64_ids_are_owed_to_a_child_between_rounds_the_rest_counted() {
    let (mut e, t) = after_a_round();
    e.observe_path_loss(at(t).mono_us, 1_000, 100);
    // 35 new ids, then 35 more two burst windows later (no burst in either), with no
    // round run between them.
    let later = t + 2 * BUSY_WINDOW_US / 1000;
    for (when, keys) in [(t, 0..35), (later, 35..70)] {
        for k in keys {
            e.set(at(when), &format!("k{k}"), b"v".to_vec()).unwrap();
        }
        datagrams(&mut e);
    }
    assert!(e.repairing());
    let owed: Vec<usize> = e.repair.owed.values().map(Vec::len).collect();
    assert_eq!(owed, vec![64; 4], "four tree children, 64 ids each");
    assert_eq!(e.stats().ids_owed_dropped, 4 * 6);
    e.handle_timeout(at(later));
    let round = datagrams(&mut e);
    assert_eq!(e.stats().ids_told_children, 4 * 64);
    // Every datagram fits, so 64 ids to one child may take more than one.
    let max = Config::default().max_datagram;
    assert!(round
        .iter()
        .all(|(_, d)| crate::core::proto::encoded_len(d) <= max));
}

#[test]
fn a_burst_runs_no_repair_rounds_and_they_resume_after_it() {
    let (mut e, t) = after_a_round();
    e.observe_path_loss(at(t).mono_us, 1_000, 100);
    let burst = BUSY_UPDATES as usize;
    for k in 0..burst - 1 {
        e.set(at(t), &format!("k{k}"), b"v".to_vec()).unwrap();
    }
    datagrams(&mut e);
    assert!(e.repairing(), "{} new updates are not a burst", burst - 1);
    e.set(at(t), "last", b"v".to_vec()).unwrap();
    datagrams(&mut e);
    assert!(
        e.repair.busy(e.clock_us),
        "{burst} new updates in a window are a burst"
    );
    assert_eq!(e.backoff.level, 0, "paused by the burst, not backed off");
    assert!(!e.repairing());
    // The ids owed before the burst showed are dropped at the round, counted; none is
    // told.
    let quarter_ms = Config::default().graft_timeout_ms / 4;
    e.handle_timeout(at(t + quarter_ms));
    datagrams(&mut e);
    assert_eq!(e.stats().ids_told_children, 0);
    assert_eq!(e.stats().ids_owed_dropped, 4 * (burst as u64 - 1));
    // A whole window later the burst still counts; a window after that it is over.
    let window_ms = BUSY_WINDOW_US / 1000;
    e.handle_timeout(at(t + window_ms));
    assert!(e.repair.busy(e.clock_us));
    assert!(!e.repairing());
    e.handle_timeout(at(t + 2 * window_ms));
    assert!(e.repairing());
    // (A window later still, so that the next regular round is not as soon as a pull.)
    let after = t + 3 * window_ms;
    e.handle_timeout(at(after));
    datagrams(&mut e);
    assert!(e.repairing());
    e.set(at(after), "k", b"v".to_vec()).unwrap();
    datagrams(&mut e);
    assert!(e.repair.pulled);
    e.handle_timeout(at(after + Config::default().graft_timeout_ms));
    datagrams(&mut e);
    assert_eq!(e.stats().ids_told_children, 4);
}

#[test]
fn random_push_runs_no_repair_rounds() {
    let (mut e, t) = after_a_round();
    e.cfg.push = crate::core::engine::PushMode::Random;
    e.observe_path_loss(at(t).mono_us, 1_000, 100);
    assert!(!e.repairing(), "repair rounds are the tree's");
    e.set(at(t), "k", b"v".to_vec()).unwrap();
    datagrams(&mut e);
    assert!(!e.repair.pulled);
    assert!(e.repair.owed.is_empty());
}
