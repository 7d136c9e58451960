//! Tests of the digest-first opening of `core::sync` (#18): an idle exchange costs the
//! same few bytes whatever the number of writers, a digest the responder does not share
//! runs the four-turn exchange and repairs both sides, the fence checks hold, and a node
//! of the previous release never gets a digest.

use super::tests::{alone, at, engine, entry, id, live, short_gc};
use super::*;
use crate::core::engine::Config;
use crate::core::proto::encoded_len;

/// What went over the wire in one exchange.
#[derive(Default)]
pub(super) struct Wire {
    /// Turns, in order, each with whether the initiator sent it.
    pub(super) turns: Vec<(bool, Vec<SyncFrame>)>,
}

impl Wire {
    /// Bytes of every frame as the runtime writes them (4 length bytes, 1 version byte).
    fn bytes(&self) -> usize {
        self.turns
            .iter()
            .flat_map(|(_, t)| t.iter())
            .map(|f| encoded_len(f) + 5)
            .sum()
    }

    /// The `Open` frames, with whether the initiator sent them.
    fn opens(&self) -> Vec<(bool, &SyncFrame)> {
        self.turns
            .iter()
            .flat_map(|(i, t)| t.iter().map(move |f| (*i, f)))
            .filter(|(_, f)| matches!(f, SyncFrame::Open { .. }))
            .collect()
    }

    /// True if the initiator's first `Open` was a digest.
    fn opened_with_digest(&self) -> bool {
        matches!(
            self.opens().first(),
            Some((
                true,
                SyncFrame::Open {
                    digest: Some(_),
                    ..
                }
            ))
        )
    }

    /// Entries carried by the turns of one side.
    pub(super) fn entries_from(&self, initiator: bool) -> usize {
        self.turns
            .iter()
            .filter(|(i, _)| *i == initiator)
            .flat_map(|(_, t)| t.iter())
            .map(|f| match f {
                SyncFrame::Entries(e) => e.len(),
                SyncFrame::Sealed(r) => r.iter().map(|r| r.entries.len()).sum(),
                _ => 0,
            })
            .sum()
    }
}

/// Runs a whole exchange, `a` initiating, as the runtime and the simulator do (`a` is
/// told whether `b` reads a digest `Open`, as the runtime learns it from the
/// connection's ALPN); every frame `a` sends passes through `into_b` before `b` reads it,
/// and every frame `b` sends through `into_a`. Returns the turns as sent (before those
/// rewrites).
pub(super) fn run(
    a: &mut Engine,
    b: &mut Engine,
    now: Now,
    b_reads_digest: bool,
    mut into_b: impl FnMut(&mut SyncFrame),
    mut into_a: impl FnMut(&mut SyncFrame),
) -> Wire {
    let (mut ea, mut turn) =
        Exchange::initiate(a, now, b.id().clone(), SyncKind::Periodic, b_reads_digest);
    let mut eb = Exchange::accept(a.id().clone());
    let mut wire = Wire::default();
    let mut to_b = true;
    while !(ea.is_done() && eb.is_done()) {
        assert!(wire.turns.len() < 4, "an exchange takes at most four turns");
        wire.turns.push((to_b, turn.clone()));
        let (ex, e) = if to_b {
            turn.iter_mut().for_each(&mut into_b);
            (&mut eb, &mut *b)
        } else {
            turn.iter_mut().for_each(&mut into_a);
            (&mut ea, &mut *a)
        };
        let mut answer = Vec::new();
        for f in std::mem::take(&mut turn) {
            if let Step::Send(t) = ex.on_frame(e, now, f).expect("well-formed frames") {
                answer = t;
            }
        }
        turn = answer;
        to_b = !to_b;
    }
    assert!(turn.is_empty(), "nothing is sent after both sides are done");
    wire
}

/// An honest exchange between nodes of this release.
fn sync(a: &mut Engine, b: &mut Engine, now: Now) -> Wire {
    run(a, b, now, true, |_| {}, |_| {})
}

/// What a node of the previous release reads of a frame: it ignores the fields it does
/// not know (`digest`, `again`).
fn old_reads(f: &mut SyncFrame) {
    if let SyncFrame::Open { digest, again, .. } = f {
        *digest = None;
        *again = false;
    }
}

/// Gives `e` one write of each of `n` writers that are not members (as a cluster whose
/// every node wrote: the context names them all).
fn writers(e: &mut Engine, n: usize) {
    let entries = (0..n)
        .map(|i| {
            let w = format!("w{i}");
            entry(&format!("k{i}"), &w, &[(&w, 1)], at(1).wall_ms)
        })
        .collect();
    assert_eq!(e.sync_on_entries(at(1), entries, None).refused, 0);
}

/// Two nodes that have exchanged twice (so each knows the other reads digests) and
/// hold the same writes of `n` writers.
fn quiet_pair(n: usize) -> (Engine, Engine) {
    let mut a = engine("a", Config::default());
    let mut b = engine("b", Config::default());
    writers(&mut a, n);
    writers(&mut b, n);
    sync(&mut a, &mut b, at(2));
    sync(&mut b, &mut a, at(3));
    assert_eq!(a.store().context(), b.store().context());
    (a, b)
}

#[test]
fn an_idle_exchange_costs_the_same_few_bytes_whatever_the_number_of_writers() {
    let mut costs = Vec::new();
    for n in [8, 300] {
        let (mut a, mut b) = quiet_pair(n);
        let whole = encoded_len(a.store().context());
        let wire = sync(&mut a, &mut b, at(4));
        assert!(wire.opened_with_digest(), "n = {n}");
        assert_eq!(wire.turns.len(), 3, "n = {n}: three turns");
        let cost = wire.bytes();
        assert!(cost <= 240, "n = {n}: an idle exchange cost {cost} B");
        if n == 300 {
            assert!(cost * 10 < whole, "{cost} B against a context of {whole} B");
        }
        assert_eq!(a.stats().syncs_completed, 3);
        assert_eq!(b.stats().syncs_completed, 3);
        costs.push(cost);
    }
    // Only the digests' values differ (a CBOR integer's length follows its value).
    assert!(costs[0].abs_diff(costs[1]) <= 16, "{costs:?}");
}

#[test]
fn a_digest_the_responder_does_not_share_repairs_both_sides_in_four_turns() {
    for (a_writes, b_writes) in [(true, true), (true, false), (false, true)] {
        let (mut a, mut b) = quiet_pair(8);
        if a_writes {
            a.set(at(4), "x", b"1".to_vec()).unwrap();
        }
        if b_writes {
            b.set(at(4), "y", b"2".to_vec()).unwrap();
        }
        let wire = sync(&mut a, &mut b, at(5));
        assert!(wire.opened_with_digest());
        assert_eq!(wire.turns.len(), 4, "the roles of the Opens swap");
        assert_eq!(wire.entries_from(true), usize::from(a_writes));
        assert_eq!(wire.entries_from(false), usize::from(b_writes));
        for e in [&a, &b] {
            assert_eq!(e.store().get("x").is_some(), a_writes, "{}", e.id());
            assert_eq!(e.store().get("y").is_some(), b_writes, "{}", e.id());
        }
        assert_eq!(a.store().context(), b.store().context());
        assert_eq!(a.stats().syncs_completed, 3);
        assert_eq!(b.stats().syncs_completed, 3);
        // Equal again: the next exchange is idle.
        assert_eq!(sync(&mut b, &mut a, at(6)).turns.len(), 3);
    }
}

/// Mixed releases: the runtime tells the exchange the peer does not read digests (its
/// connection negotiated the previous ALPN), so a node of the previous release never
/// gets a digest `Open` (it would read the empty context as "has seen nothing" and send
/// every write), whichever side opens, and both converge as before.
#[test]
fn a_node_of_the_previous_release_never_gets_a_digest_and_converges() {
    let mut new = engine("a", Config::default());
    let mut old = engine("b", Config::default());
    writers(&mut new, 8);
    writers(&mut old, 8);
    for i in 0..6u64 {
        let t = 10 + 10 * i;
        new.set(at(t), &format!("n{i}"), b"n".to_vec()).unwrap();
        old.set(at(t), &format!("o{i}"), b"o".to_vec()).unwrap();
        // The new node opens half the exchanges, the old node (which sends no digest
        // either: it has none) the other half.
        let (wire, new_opened) = if i % 2 == 0 {
            let w = run(&mut new, &mut old, at(t + 1), false, old_reads, |_| {});
            (w, true)
        } else {
            let w = run(&mut old, &mut new, at(t + 1), false, |_| {}, old_reads);
            (w, false)
        };
        for (_, f) in wire.opens() {
            let SyncFrame::Open { digest, again, .. } = f else {
                unreachable!()
            };
            assert!(digest.is_none() && !again, "exchange {i}: {f:?}");
        }
        assert_eq!(wire.turns.len(), 3);
        // Each side sends only the one write the other lacks (a digest read as an empty
        // context would have drawn all 8 + 2i + 1 of the new node's).
        assert_eq!(wire.entries_from(true), 1, "exchange {i} ({new_opened})");
        assert_eq!(wire.entries_from(false), 1, "exchange {i} ({new_opened})");
        assert_eq!(new.store().context(), old.store().context());
    }
    assert_eq!(live(&new), live(&old));
    // The hazard the rule avoids: a digest read by the previous release draws every write.
    let wire = run(&mut new, &mut old, at(100), true, old_reads, |_| {});
    assert!(wire.opened_with_digest());
    assert!(wire.entries_from(false) > 8, "{}", wire.entries_from(false));
}

#[test]
fn a_digest_is_only_an_initiators_first_open_and_again_only_answers_one() {
    let (mut a, mut b) = quiet_pair(8);
    let (_, turn) = Exchange::initiate(&mut a, at(4), b.id().clone(), SyncKind::Periodic, true);
    let digest_open = turn[0].clone();
    assert!(matches!(
        digest_open,
        SyncFrame::Open {
            digest: Some(_),
            ..
        }
    ));
    // A digest `Open` that also carries a context.
    let mut with_ctx = digest_open.clone();
    if let SyncFrame::Open { ctx, .. } = &mut with_ctx {
        *ctx = a.store().context().clone();
    }
    assert_eq!(
        Exchange::accept(id("a")).on_frame(&mut b, at(4), with_ctx),
        Err(SyncError::BadDigest { peer: id("a") })
    );
    // A digest answering our `Open`.
    let (mut eb, _) = Exchange::initiate(&mut b, at(4), id("a"), SyncKind::Periodic, true);
    assert_eq!(
        eb.on_frame(&mut b, at(4), digest_open),
        Err(SyncError::BadDigest { peer: id("a") })
    );
    // A second `Open` in the digest's own turn: the whole one comes after our answer.
    let mut eb = Exchange::accept(id("a"));
    let mut other = engine("b2", Config::default());
    eb.on_frame(&mut other, at(4), turn[0].clone()).unwrap();
    let whole = a.sync_open_frame(SyncKind::Periodic, None);
    assert_eq!(
        eb.on_frame(&mut other, at(4), whole),
        Err(SyncError::SecondOpen { peer: id("a") })
    );
    // `again` answering a whole `Open`.
    let mut c = engine("c", Config::default());
    let (mut ec, _) = Exchange::initiate(&mut c, at(4), id("b"), SyncKind::Periodic, true);
    let mut again_open = b.sync_open_frame(SyncKind::Periodic, None);
    if let SyncFrame::Open { again, .. } = &mut again_open {
        *again = true;
    }
    assert_eq!(
        ec.on_frame(&mut c, at(4), again_open),
        Err(SyncError::BadAgain { peer: id("b") })
    );
}

/// Gives each engine the same writes of 8 writers that are not members, so that their
/// contexts are large enough to be sent as digests.
fn padded(mut t: (Engine, Engine, Engine)) -> (Engine, Engine, Engine) {
    for e in [&mut t.0, &mut t.1, &mut t.2] {
        writers(e, 8);
    }
    t
}

/// The fence checks under digest-first: `b`, reaped by `a` while away, is behind the
/// fence `a` collected a delete over. Their digests differ (the fences do), so every
/// exchange between them runs whole `Open`s, and `b` rebases once whichever side opens:
/// as in `a_node_back_from_beyond_the_grace_rebases_once_and_then_keeps_what_it_learns`.
#[test]
fn the_fence_is_checked_as_strongly_after_a_digest() {
    let (mut a, mut b, mut c) = padded((
        engine("a", short_gc()),
        engine("b", short_gc()),
        engine("c", short_gc()),
    ));
    for k in ["k0x", "k1x", "k2x"] {
        a.set(at(1), k, b"v".to_vec()).unwrap();
    }
    sync(&mut b, &mut a, at(2));
    sync(&mut c, &mut a, at(3));
    sync(&mut b, &mut c, at(4));
    sync(&mut a, &mut b, at(5));
    sync(&mut a, &mut c, at(6));
    assert!(
        sync(&mut b, &mut a, at(7)).opened_with_digest(),
        "quiet: digests"
    );
    a.delete(at(10), "k0x").unwrap();
    alone(&mut a, 10, 200_000);
    assert!(a.members().get(b.id()).is_none(), "a reaped b");
    assert!(a.store().entry("k0x").is_none(), "a collected the delete");
    b.set(at(200_100), "mine", b"m".to_vec()).unwrap();
    a.set(at(200_100), "later", b"l".to_vec()).unwrap();
    for i in 0..4 {
        let now = at(200_200 + i * 100);
        if i % 2 == 0 {
            sync(&mut b, &mut a, now);
        } else {
            sync(&mut a, &mut b, now);
        }
        if i >= 1 {
            assert!(b.store().get("later").is_some(), "exchange {i}");
        }
    }
    assert_eq!(b.stats().rebases, 1);
    assert!(b.store().get("k0x").is_none(), "the delete stays");
    assert_eq!(a.store().get("mine"), Some(&b"m"[..]));
    assert_eq!(live(&a), live(&b));
}

/// The same with `b` opening with a digest to `a` right after `a` collected: the four-turn
/// exchange puts `b` in the answering position, so it rebases in that exchange.
#[test]
fn an_initiator_behind_the_responders_fence_rebases_in_the_four_turn_exchange() {
    let (mut a, mut b, _) = padded((
        engine("a", short_gc()),
        engine("b", short_gc()),
        engine("c", short_gc()),
    ));
    a.set(at(1), "gone", b"v".to_vec()).unwrap();
    a.set(at(1), "kept", b"v".to_vec()).unwrap();
    sync(&mut b, &mut a, at(2));
    sync(&mut a, &mut b, at(3));
    a.delete(at(10), "gone").unwrap();
    alone(&mut a, 10, 200_000);
    assert!(a.store().entry("gone").is_none(), "a collected the delete");
    // b still counts a as a member that reads digests (same incarnation).
    let wire = sync(&mut b, &mut a, at(200_100));
    assert!(wire.opened_with_digest());
    assert_eq!(wire.turns.len(), 4);
    assert_eq!(b.stats().rebases, 1, "b rebased in the four-turn exchange");
    assert!(b.store().get("gone").is_none());
    assert!(b.store().get("kept").is_some());
    assert_eq!(live(&a), live(&b));
}
