//! Tests of `core::sync` (a file of their own: `sync.rs` stays under 800 lines).

use super::*;
use crate::core::engine::Config;
use crate::core::proto::MemberInfo;
use crate::core::state::{Entry, Hlc, RangeSet, VersionVector};

pub(super) fn at(ms: u64) -> Now {
    Now::new(ms * 1000, 1_700_000_000_000 + ms)
}

pub(super) fn id(s: &str) -> NodeId {
    NodeId::new(s).unwrap()
}

/// An entry of `writer` with the dots `vv`, stamped `ms`.
pub(super) fn entry(key: &str, writer: &str, vv: &[(&str, u64)], ms: u64) -> Entry {
    let mut v = VersionVector::default();
    for (w, c) in vv {
        v.set(id(w), *c);
    }
    Entry {
        key: key.into(),
        value: Some(b"v".to_vec()),
        vv: v,
        hlc: Hlc { ms, lc: 0 },
        writer: id(writer),
        sig: Default::default(),
        siblings: Vec::new(),
    }
}

pub(super) fn engine(name: &str, cfg: Config) -> Engine {
    let me = MemberInfo {
        id: id(name),
        addr: format!("{name}:1"),
        dc: String::new(),
        zone: String::new(),
        tags: Default::default(),
    };
    Engine::new(cfg, me, vec![], 1, at(0), None)
}

/// Runs a whole exchange between `a` (initiator) and `b` in memory, as the runtime
/// and the simulator do, and returns both sides.
pub(super) fn exchange(a: &mut Engine, b: &mut Engine, now: Now) -> (Exchange, Exchange) {
    exchange_lying(a, b, now, |_| {})
}

/// Same, with every frame `b` sends passed through `lie` first.
fn exchange_lying(
    a: &mut Engine,
    b: &mut Engine,
    now: Now,
    lie: impl FnMut(&mut SyncFrame),
) -> (Exchange, Exchange) {
    exchange_with(a, b, now, true, lie)
}

/// Same, telling the initiator whether `b` reads a digest `Open`.
fn exchange_with(
    a: &mut Engine,
    b: &mut Engine,
    now: Now,
    reads_digest: bool,
    mut lie: impl FnMut(&mut SyncFrame),
) -> (Exchange, Exchange) {
    let (mut ea, mut turn) =
        Exchange::initiate(a, now, b.id().clone(), SyncKind::Periodic, reads_digest);
    let mut eb = Exchange::accept(a.id().clone());
    let mut to_b = true;
    while !(ea.is_done() && eb.is_done()) {
        let (ex, e) = if to_b {
            (&mut eb, &mut *b)
        } else {
            turn.iter_mut().for_each(&mut lie);
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
    (ea, eb)
}

/// Replaces the context of an `Open` frame.
fn claim(ctx: CausalContext) -> impl FnMut(&mut SyncFrame) {
    move |f| {
        if let SyncFrame::Open {
            ctx: c,
            same,
            digest,
            ..
        } = f
        {
            // The whole context, not "the same as yours" or a digest.
            *c = ctx.clone();
            *same = 0;
            *digest = None;
        }
    }
}

/// #16, finding 5: a peer's `Open` context `{w: [(1, u64::MAX)]}` was joined whole,
/// so the victim believed it held every write of `w`, no honest peer ever sent it
/// one again, and the belief spread with its own context.
#[test]
fn a_context_claiming_a_writers_future_does_not_hide_its_writes() {
    let mut victim = engine("a", Config::default());
    let mut liar = engine("b", Config::default());
    let mut honest = engine("c", Config::default());
    let mut w = engine("w", Config::default());
    let mut forged = CausalContext::new();
    forged
        .0
        .insert(id("w"), RangeSet::from_ranges(vec![(1, u64::MAX)]));
    exchange_lying(&mut victim, &mut liar, at(1), claim(forged));
    assert!(!victim.store().context().contains(&id("w"), 1));
    let written = w.set(at(2), "k", b"v".to_vec()).unwrap();
    exchange(&mut honest, &mut w, at(3));
    exchange(&mut victim, &mut honest, at(4));
    assert_eq!(
        victim.store().entry("k"),
        Some(&written),
        "w's write still arrives"
    );
}

/// #16, finding 5: a context naming the victim's own id at `u64::MAX` moved its
/// dot counter there, so its next write overflowed.
#[test]
fn a_context_naming_our_own_dots_at_the_top_does_not_move_our_counter() {
    let mut victim = engine("a", Config::default());
    let mut liar = engine("b", Config::default());
    let mut forged = CausalContext::new();
    forged
        .0
        .insert(id("a"), RangeSet::from_ranges(vec![(1, u64::MAX)]));
    exchange_lying(&mut victim, &mut liar, at(1), claim(forged));
    let e = victim
        .set(at(2), "k", b"v".to_vec())
        .expect("writes still work");
    let dot = e.vv.get(&id("a"));
    assert!(dot < u64::MAX / 2, "counter moved to {dot}");
    assert!(!victim.store().context().contains(&id("a"), dot + 1));
}

/// #16, finding 5: an entry naming our own dot at the top of the range moved our
/// counter there too.
#[test]
fn an_entry_naming_a_dot_of_ours_we_cannot_have_issued_is_refused() {
    let mut victim = engine("a", Config::default());
    let forged = entry("k", "b", &[("a", u64::MAX - 1), ("b", 1)], at(1).wall_ms);
    assert_eq!(victim.sync_on_entries(at(1), vec![forged], None).refused, 1);
    assert!(victim.store().get("k").is_none());
    victim
        .set(at(2), "x", b"1".to_vec())
        .expect("writes still work");
}

#[test]
fn an_exchange_brings_each_side_what_it_lacks_and_completes_both() {
    let mut a = engine("a", Config::default());
    let mut b = engine("b", Config::default());
    a.set(at(1), "x", b"1".to_vec()).unwrap();
    b.set(at(1), "y", b"2".to_vec()).unwrap();
    let (ea, eb) = exchange(&mut a, &mut b, at(2));
    assert!(ea.is_done() && eb.is_done());
    for e in [&a, &b] {
        assert_eq!(e.store().get("x"), Some(&b"1"[..]));
        assert_eq!(e.store().get("y"), Some(&b"2"[..]));
    }
    assert_eq!(a.store().context(), b.store().context());
    assert_eq!(a.stats().syncs_completed, 1);
    assert_eq!(b.stats().syncs_completed, 1);
}

#[test]
fn frames_out_of_order_end_the_exchange() {
    let mut b = engine("b", Config::default());
    let mut ex = Exchange::accept(id("a"));
    assert_eq!(
        ex.on_frame(&mut b, at(1), SyncFrame::End),
        Err(SyncError::NoOpen { peer: id("a") })
    );
    let (_, turn) = Exchange::initiate(
        &mut engine("a", Config::default()),
        at(1),
        id("b"),
        SyncKind::Periodic,
        true,
    );
    let mut ex = Exchange::accept(id("a"));
    ex.on_frame(&mut b, at(1), turn[0].clone()).unwrap();
    assert_eq!(
        ex.on_frame(&mut b, at(1), turn[0].clone()),
        Err(SyncError::SecondOpen { peer: id("a") })
    );
}

/// #16, finding 6: an entry refused by the receiver (here its version vector is
/// longer than the receiver's limit) had its dots joined into the receiver's context
/// at the end of the exchange anyway, so they counted as seen and the write never
/// replicated to that node.
#[test]
fn a_refused_entry_never_counts_as_seen() {
    let mut strict = Config::default();
    strict.limits.max_vv_len = 2;
    let mut a = engine("a", strict);
    let mut b = engine("b", Config::default());
    let wide = entry(
        "wide",
        "b",
        &[("b", 1), ("w1", 1), ("w2", 1)],
        at(1).wall_ms,
    );
    b.sync_on_entries(at(1), vec![wide], None);
    assert!(b.store().get("wide").is_some());
    exchange(&mut a, &mut b, at(2));
    assert!(
        a.store().get("wide").is_none(),
        "refused by the stricter limit"
    );
    for w in ["b", "w1", "w2"] {
        assert!(
            !a.store().context().contains(&id(w), 1),
            "the refused write of {w} counts as seen"
        );
    }
    assert_eq!(a.stats().sync_joins_skipped, 1);
}

/// Short grace and reap timeout, so that a test can outlast both.
pub(super) fn short_gc() -> Config {
    Config {
        tombstone_grace_ms: 5_000,
        reap_timeout_ms: 10_000,
        ..Config::default()
    }
}

/// Runs `e`'s timers alone (nothing it sends arrives) from `from` to `to` ms: its
/// peers go suspect, dead, then are reaped; tombstone collection runs.
pub(super) fn alone(e: &mut Engine, from: u64, to: u64) {
    let mut t = from;
    while t <= to {
        e.handle_timeout(at(t));
        while e.poll_output().is_some() {}
        t += 100;
    }
}

/// Three members that know each other, every one holding `k0`..`k3` written by `a`.
pub(super) fn three_with_keys() -> (Engine, Engine, Engine) {
    let (mut a, mut b, mut c) = (
        engine("a", short_gc()),
        engine("b", short_gc()),
        engine("c", short_gc()),
    );
    for k in ["k0", "k1", "k2", "k3"] {
        a.set(at(1), k, b"v".to_vec()).unwrap();
    }
    exchange(&mut b, &mut a, at(2));
    exchange(&mut c, &mut a, at(3));
    exchange(&mut b, &mut c, at(4));
    for e in [&a, &b, &c] {
        assert_eq!(e.members().len(), 2, "{} knows both others", e.id());
        assert_eq!(e.store().live_len(), 4);
    }
    (a, b, c)
}

pub(super) fn live(e: &Engine) -> Vec<(String, Option<Vec<u8>>)> {
    e.store()
        .iter()
        .filter(|x| !x.is_tombstone())
        .map(|x| (x.key.clone(), x.value.clone()))
        .collect()
}

/// #16, finding 1: a node back from an absence longer than the collection horizon
/// was wiped on every later exchange (the resetting exchange never marked it
/// synced, and its own writes kept it from ever being empty), so what it learned
/// kept vanishing. Now `b`, reaped by `a` while away, rebases once: the deleted key
/// is gone, its own write made while away survives and reaches `a`, and what it
/// learns afterwards stays.
#[test]
fn a_node_back_from_beyond_the_grace_rebases_once_and_then_keeps_what_it_learns() {
    let (mut a, mut b, _c) = three_with_keys();
    let old_k0 = b.store().entry("k0").cloned().unwrap();
    a.delete(at(10), "k0").unwrap();
    alone(&mut a, 10, 200_000);
    assert!(a.members().get(b.id()).is_none(), "a reaped b");
    assert!(a.store().entry("k0").is_none(), "a collected the delete");
    b.set(at(200_100), "mine", b"m".to_vec()).unwrap();
    a.set(at(200_100), "later", b"l".to_vec()).unwrap();
    for i in 0..4 {
        let now = at(200_200 + i * 100);
        if i % 2 == 0 {
            exchange(&mut b, &mut a, now);
        } else {
            exchange(&mut a, &mut b, now);
        }
        if i >= 1 {
            assert!(
                b.store().get("later").is_some(),
                "b lost what it learned (exchange {i})"
            );
        }
    }
    assert_eq!(b.stats().rebases, 1);
    assert!(
        b.store().get("k0").is_none(),
        "the deleted key stays deleted"
    );
    assert_eq!(a.store().get("mine"), Some(&b"m"[..]));
    assert_eq!(live(&a), live(&b));
    // The rebase dropped the old value and kept its dot (the write was seen), so a
    // late copy of it brings nothing back.
    b.sync_on_entries(at(201_000), vec![old_k0], None);
    assert!(b.store().get("k0").is_none(), "a replay resurrected k0");
}

/// #16, finding 3: a minority that went on syncing inside itself while the majority
/// collected a delete never looked stale (its last sync was recent), and on heal
/// neither side sent anything for the key: the majority's context covered the live
/// value's dot and the tombstone was gone, so the key stayed live on one side and
/// absent on the other for good. Here `a` is the majority, `b` and `c` the minority,
/// and both sides keep writing and deleting; after the heal every node holds the
/// same live keys.
#[test]
fn a_minority_partitioned_past_the_grace_converges_on_heal() {
    let (mut a, mut b, mut c) = three_with_keys();
    a.delete(at(10), "k0").unwrap();
    a.set(at(10), "majority", b"a".to_vec()).unwrap();
    alone(&mut a, 10, 200_000);
    assert!(a.members().get(b.id()).is_none(), "a reaped b");
    assert!(a.store().entry("k0").is_none(), "a collected the delete");
    // The minority writes, deletes and syncs inside itself up to the heal.
    b.set(at(150_000), "minority", b"b".to_vec()).unwrap();
    c.delete(at(150_000), "k1").unwrap();
    for t in [150_100, 199_000, 199_900] {
        exchange(&mut b, &mut c, at(t));
    }
    // Heal: the minority meets the majority through b, then talks inside itself.
    exchange(&mut b, &mut a, at(200_100));
    exchange(&mut c, &mut b, at(200_200));
    exchange(&mut a, &mut c, at(200_300));
    exchange(&mut b, &mut a, at(200_400));
    for e in [&a, &b, &c] {
        assert!(e.store().get("k0").is_none(), "{}: k0 is alive", e.id());
        assert!(e.store().get("k1").is_none(), "{}: k1 is alive", e.id());
        assert!(
            e.store().get("majority").is_some(),
            "{}: lost a write",
            e.id()
        );
        assert!(
            e.store().get("minority").is_some(),
            "{}: lost a write",
            e.id()
        );
    }
    assert_eq!(live(&a), live(&b));
    assert_eq!(live(&a), live(&c));
}

/// #16, finding 2: a reset in one exchange wiped entries, and another exchange,
/// opened before it, then joined its peer's context: the wiped entries counted as
/// seen and were never sent again (the node ended without keys its peers held).
/// Now a rebase removes nothing before its peer has answered and keeps the dropped
/// writes' dots, so an exchange running across it is not misled; an initiator that
/// finds itself behind joins nothing and rebases in its next exchange with that peer.
#[test]
fn an_exchange_running_across_a_rebase_loses_nothing() {
    let (mut a, mut b, mut c) = three_with_keys();
    a.delete(at(10), "k0").unwrap();
    exchange(&mut c, &mut a, at(11));
    alone(&mut a, 11, 200_000);
    assert!(a.store().entry("k0").is_none(), "a collected the delete");
    // b opens an exchange with c ...
    let now = at(200_100);
    let (mut with_c, turn) =
        Exchange::initiate(&mut b, now, c.id().clone(), SyncKind::Periodic, true);
    let mut at_c = Exchange::accept(b.id().clone());
    let mut reply = Vec::new();
    for f in turn {
        if let Step::Send(t) = at_c.on_frame(&mut c, now, f).unwrap() {
            reply = t;
        }
    }
    // ... meanwhile meets a (the exchange that, in the old design, reset it) ...
    exchange(&mut b, &mut a, now);
    // ... and only then hears c's answer.
    let mut last = Vec::new();
    for f in reply {
        if let Step::Send(t) = with_c.on_frame(&mut b, now, f).unwrap() {
            last = t;
        }
    }
    for f in last {
        at_c.on_frame(&mut c, now, f).unwrap();
    }
    assert!(with_c.is_done() && at_c.is_done());
    exchange(&mut b, &mut c, at(200_200));
    exchange(&mut b, &mut a, at(200_300));
    for k in ["k1", "k2", "k3"] {
        assert!(b.store().get(k).is_some(), "b lost {k} for good");
    }
    assert!(b.store().get("k0").is_none());
    assert_eq!(live(&a), live(&b));
    assert_eq!(
        b.stats().rebases,
        1,
        "b rebased once, in its next exchange with a"
    );
}

/// #16, finding 7: the causal context never forgot a writer, so it grew with every
/// id ever seen (until the `Open` passed its size limit and every peer refused it).
/// A writer that left, whose keys are all gone and whose dots everyone has seen, is
/// compacted out; a late copy of its writes still changes nothing.
#[test]
fn a_departed_writer_whose_keys_are_gone_leaves_the_context() {
    let mut a = engine("a", short_gc());
    let mut w = engine("w", short_gc());
    let eph = w.set(at(1), "eph", b"x".to_vec()).unwrap();
    exchange(&mut a, &mut w, at(2));
    w.delete(at(3), "eph").unwrap();
    exchange(&mut a, &mut w, at(4));
    assert!(a.store().entry("eph").unwrap().is_tombstone());
    assert!(a.store().context().ranges(w.id()).is_some());
    alone(&mut a, 5, 200_000);
    assert!(a.members().get(w.id()).is_none(), "a reaped w");
    assert!(
        a.store().entry("eph").is_none(),
        "the tombstone was collected"
    );
    assert!(
        a.store().context().ranges(w.id()).is_none(),
        "w is still in the context"
    );
    assert_eq!(a.store().stats().writers_compacted, 1);
    a.sync_on_entries(at(200_100), vec![eph], None);
    assert!(a.store().entry("eph").is_none(), "a late copy came back");
    assert!(a.store().context().ranges(w.id()).is_none());
}

/// #16, finding 4: an entry stamped a year ahead dragged our clock a year forward.
/// Now the entry is kept (its write is not lost) and our clock moves only up to the
/// drift bound; the writer is told once.
#[test]
fn an_entry_stamped_beyond_the_drift_bound_does_not_drag_our_clock() {
    let mut a = engine("a", Config::default());
    let year_ms = 365 * 24 * 3_600_000;
    let future = |key: &str, c: u64| entry(key, "w", &[("w", c)], at(1).wall_ms + year_ms);
    assert_eq!(
        a.sync_on_entries(at(1), vec![future("k1", 1), future("k2", 2)], None)
            .refused,
        0
    );
    assert!(a.store().get("k1").is_some(), "the write is kept");
    assert!(a.store().clock().last().ms <= at(1).wall_ms + 60_000);
    let mine = a.set(at(2), "m", b"x".to_vec()).unwrap();
    assert!(
        mine.hlc.ms <= at(2).wall_ms + 60_000,
        "our stamps stay near our clock"
    );
    assert_eq!(a.stats().stamps_clamped, 2);
    let told = std::iter::from_fn(|| a.poll_output())
        .filter(|o| {
            matches!(
                o,
                crate::core::Output::Event(crate::core::Event::ClockAhead { .. })
            )
        })
        .count();
    assert_eq!(told, 1);
    assert_eq!(a.clock_skew().writers()[&id("w")].beyond_bound, 2);
}

/// The `Open` frames of one exchange, initiator's first, as they went over the wire.
fn opens_of(a: &mut Engine, b: &mut Engine, now: Now) -> (SyncFrame, SyncFrame) {
    // What the initiator's `Open` will be (no rebase is due in these tests).
    let first = a.sync_open_frame(SyncKind::Periodic, None);
    let mut seen = None;
    // With a peer that does not read digest `Open`s (else the initiator's is a digest).
    let (ea, eb) = exchange_with(a, b, now, false, |f| {
        if matches!(f, SyncFrame::Open { .. }) {
            seen = Some(f.clone());
        }
    });
    assert!(ea.is_done() && eb.is_done());
    (first, seen.expect("the responder sent an Open"))
}

fn same_of(f: &SyncFrame) -> u8 {
    match f {
        SyncFrame::Open { same, .. } => *same,
        _ => panic!("not an Open"),
    }
}

/// #18: once two nodes have seen the same, the responder's `Open` names the initiator's
/// context and fence instead of repeating them (a few bytes instead of two contexts
/// naming every writer), and the exchange still completes and joins as before; once the
/// responder has seen more, its `Open` is whole again and the initiator learns it.
#[test]
fn a_responder_that_has_seen_what_the_initiator_has_sends_a_compact_open() {
    let mut a = engine("a", Config::default());
    let mut b = engine("b", Config::default());
    for (i, w) in ["p", "q", "r", "s", "t", "u"].into_iter().enumerate() {
        let e = entry(&format!("k{i}"), w, &[(w, 1)], at(1).wall_ms);
        assert_eq!(a.sync_on_entries(at(1), vec![e], None).refused, 0);
    }
    a.set(at(1), "x", b"1".to_vec()).unwrap();
    b.set(at(1), "y", b"2".to_vec()).unwrap();
    let (_, open_b) = opens_of(&mut a, &mut b, at(2));
    assert_eq!(
        same_of(&open_b) & OPEN_SAME_CTX,
        0,
        "b had not seen a's writes"
    );
    assert_eq!(a.store().context(), b.store().context());

    let (open_a, open_b) = opens_of(&mut a, &mut b, at(3));
    assert_eq!(same_of(&open_b), OPEN_SAME_CTX | OPEN_SAME_STABLE);
    let (full, compact) = (
        crate::core::proto::encoded_len(&open_a),
        crate::core::proto::encoded_len(&open_b),
    );
    let ctx = crate::core::proto::encoded_len(a.store().context());
    // All but the few bytes of an empty context and of `same`.
    assert!(
        compact + ctx <= full + 8,
        "compact {compact} B, whole {full} B, context {ctx} B"
    );
    assert_eq!(a.stats().syncs_completed, 2);
    assert_eq!(b.stats().syncs_completed, 2);

    b.set(at(4), "z", b"3".to_vec()).unwrap();
    let (_, open_b) = opens_of(&mut a, &mut b, at(5));
    assert_eq!(same_of(&open_b) & OPEN_SAME_CTX, 0);
    assert_eq!(a.store().get("z"), Some(&b"3"[..]));
    assert_eq!(a.store().context(), b.store().context());
}

/// #18: an initiator of the previous release does not read a compact `Open` (it would
/// take the empty context for "has seen nothing"), so it gets a whole one.
#[test]
fn an_initiator_that_does_not_read_compact_opens_gets_a_whole_one() {
    let mut a = engine("a", Config::default());
    let mut b = engine("b", Config::default());
    let (_, mut turn) = Exchange::initiate(&mut a, at(1), b.id().clone(), SyncKind::Periodic, true);
    if let SyncFrame::Open { compact, .. } = &mut turn[0] {
        *compact = false;
    }
    let mut eb = Exchange::accept(a.id().clone());
    let mut answer = None;
    for f in turn {
        if let Step::Send(t) = eb.on_frame(&mut b, at(1), f).unwrap() {
            answer = Some(t);
        }
    }
    assert_eq!(same_of(&answer.expect("b answers")[0]), 0);
}

/// A responder must not be told that parts of the initiator's `Open` are its own: it
/// sent no `Open` they could name.
#[test]
fn an_initiator_open_naming_the_responders_parts_is_refused() {
    let mut a = engine("a", Config::default());
    let mut b = engine("b", Config::default());
    let (_, mut turn) = Exchange::initiate(&mut a, at(1), b.id().clone(), SyncKind::Periodic, true);
    if let SyncFrame::Open { same, .. } = &mut turn[0] {
        *same = OPEN_SAME_CTX;
    }
    let mut eb = Exchange::accept(a.id().clone());
    assert_eq!(
        eb.on_frame(&mut b, at(1), turn.remove(0)),
        Err(SyncError::BadSame { peer: id("a") })
    );
}
