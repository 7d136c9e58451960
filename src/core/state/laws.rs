//! Property tests: the merge laws of DESIGN.md section 2, on entries produced by real
//! histories of concurrent writers (so every entry obeys the HLC/causality invariant).

use proptest::prelude::*;

use super::*;
use crate::core::NodeId;

#[derive(Debug, Clone)]
enum Op {
    Write {
        node: usize,
        key: u8,
        value: Option<u8>,
    },
    Deliver {
        from: usize,
        to: usize,
        key: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (
            0usize..3,
            0u8..3,
            proptest::option::weighted(0.8, any::<u8>())
        )
            .prop_map(|(node, key, value)| Op::Write { node, key, value }),
        (0usize..3, 0usize..3, 0u8..3).prop_map(|(from, to, key)| Op::Deliver { from, to, key }),
    ]
}

/// Runs a history and returns every entry that was ever sent or written.
fn history(ops: &[Op], clock_skew: [u64; 3]) -> Vec<Entry> {
    let ids: Vec<NodeId> = ["a", "b", "c"]
        .iter()
        .map(|s| NodeId::new(s).unwrap())
        .collect();
    let mut stores: Vec<Store> = ids
        .iter()
        .map(|id| Store::new(id.clone(), Limits::default(), 1_000))
        .collect();
    let mut emitted = Vec::new();
    for (t, op) in ops.iter().enumerate() {
        let t = t as u64;
        match op {
            Op::Write { node, key, value } => {
                let wall = 1_000 + t / 3 + clock_skew[*node];
                let e = stores[*node]
                    .write(&format!("k{key}"), value.map(|v| vec![v]), wall)
                    .unwrap();
                emitted.push(e);
            }
            Op::Deliver { from, to, key } => {
                if let Some(e) = stores[*from].entry(&format!("k{key}")).cloned() {
                    let wall = 1_000 + t / 3 + clock_skew[*to];
                    stores[*to].apply(e.clone(), wall).unwrap();
                    emitted.push(e);
                }
            }
        }
    }
    emitted
}

fn m(a: &Entry, b: &Entry) -> Entry {
    match merge(a, b) {
        Merged::KeepLocal => a.clone(),
        Merged::TakeRemote => b.clone(),
        Merged::Conflict(e) => e,
    }
}

fn replay(entries: impl IntoIterator<Item = Entry>) -> Vec<Entry> {
    let mut s = Store::new(NodeId::new("z").unwrap(), Limits::default(), 5_000);
    for e in entries {
        s.apply(e, 5_000).unwrap();
    }
    s.iter().cloned().collect()
}

/// Replicas `x` and `y`, `x` holding the writes before `cut` and `y` the others.
fn two_replicas(all: &[Entry], cut: usize) -> (Store, Store) {
    let mut x = Store::new(NodeId::new("x").unwrap(), Limits::default(), 5_000);
    let mut y = Store::new(NodeId::new("y").unwrap(), Limits::default(), 5_000);
    for e in &all[..cut] {
        x.apply(e.clone(), 5_000).unwrap();
    }
    for e in &all[cut..] {
        y.apply(e.clone(), 5_000).unwrap();
    }
    (x, y)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn merge_is_commutative_associative_idempotent(
        ops in proptest::collection::vec(op(), 1..60),
        skew in proptest::array::uniform3(0u64..5),
        picks in proptest::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>(), any::<prop::sample::Index>()), 1..20),
    ) {
        let all = history(&ops, skew);
        prop_assume!(!all.is_empty());
        for (i, j, k) in picks {
            let a = i.get(&all);
            // Laws are about entries of one key.
            let same: Vec<&Entry> = all.iter().filter(|e| e.key == a.key).collect();
            let b = *j.get(&same);
            let c = *k.get(&same);
            prop_assert_eq!(m(a, a), a.clone());
            prop_assert_eq!(m(a, b), m(b, a));
            prop_assert_eq!(m(&m(a, b), c), m(a, &m(b, c)));
        }
    }

    #[test]
    fn same_writes_any_order_any_multiplicity_same_state(
        ops in proptest::collection::vec(op(), 1..80),
        skew in proptest::array::uniform3(0u64..5),
        perm_seed in any::<u64>(),
        dup in proptest::collection::vec(any::<prop::sample::Index>(), 0..20),
    ) {
        let all = history(&ops, skew);
        let forward = replay(all.clone());
        // A different order with duplicates.
        let mut shuffled = all.clone();
        for d in &dup { if !all.is_empty() { shuffled.push(d.get(&all).clone()); } }
        let mut x = perm_seed | 1;
        for i in (1..shuffled.len()).rev() {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            shuffled.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let other = replay(shuffled);
        prop_assert_eq!(&forward, &other);
        let reversed = replay(all.into_iter().rev());
        prop_assert_eq!(&forward, &reversed);
    }

    #[test]
    fn anti_entropy_diff_converges_two_replicas(
        ops in proptest::collection::vec(op(), 1..80),
        split in any::<prop::sample::Index>(),
    ) {
        // Two replicas each hold a different subset of the writes; one diff exchange
        // in each direction, then a context join, makes them identical, and neither
        // lacks a write the other holds. Their contexts may still differ: a superseded
        // write only one of them saw stays a gap in the other's (its writer closes it).
        let all = history(&ops, [0, 1, 2]);
        prop_assume!(!all.is_empty());
        let cut = split.index(all.len());
        let (mut x, mut y) = two_replicas(&all, cut);
        let (cx, cy) = (x.context().clone(), y.context().clone());
        let to_x = y.missing_for(&cx);
        let to_y = x.missing_for(&cy);
        for e in to_x { x.apply(e, 5_000).unwrap(); }
        for e in to_y { y.apply(e, 5_000).unwrap(); }
        x.join_context(y.node(), &cy);
        y.join_context(x.node(), &cx);
        let xs: Vec<Entry> = x.iter().cloned().collect();
        let ys: Vec<Entry> = y.iter().cloned().collect();
        prop_assert_eq!(&xs, &ys);
        prop_assert!(x.missing_for(y.context()).is_empty());
        prop_assert!(y.missing_for(x.context()).is_empty());
        for e in &xs { prop_assert!(x.has_seen(e) && y.has_seen(e)); }
        prop_assert_eq!(xs, replay(all));
    }
}

proptest! {
    #[test]
    fn bounded_turns_send_part_of_the_diff_and_converge_as_a_whole_one(
        ops in proptest::collection::vec(op(), 1..80),
        split in any::<prop::sample::Index>(),
        limit in 1usize..6,
    ) {
        // A turn of at most `limit` entries sends a part of what a whole one sends, says
        // whether it left some out, and turns repeated against the receiver's context
        // as it grows bring it all (#18).
        let all = history(&ops, [0, 1, 2]);
        prop_assume!(!all.is_empty());
        let cut = split.index(all.len());
        let (mut x, y) = two_replicas(&all, cut);
        let mut turns = 0;
        loop {
            let whole = y.missing_for(x.context());
            let (part, held) = y.missing_for_at_most(x.context(), limit);
            prop_assert_eq!(held, whole.len() > limit);
            prop_assert!(part.len() <= limit);
            prop_assert!(part.iter().all(|e| whole.contains(e)));
            for e in part { x.apply(e, 5_000).unwrap(); }
            turns += 1;
            if !held { break; }
            prop_assert!(turns <= all.len(), "a turn brought nothing new");
        }
        let cy = y.context().clone();
        x.join_context(y.node(), &cy);
        prop_assert!(y.missing_for(x.context()).is_empty());
        let ys: Vec<Entry> = y.iter().cloned().collect();
        for e in &ys { prop_assert!(x.has_seen(e)); }
    }
}

#[test]
fn a_bounded_turn_sends_the_oldest_writes_of_every_writer_in_turn() {
    let id = |s: &str| NodeId::new(s).unwrap();
    let mut s = Store::new(id("s"), Limits::default(), 1);
    // Writer `w` wrote its keys in the opposite key order: sent by age, not by key.
    for (w, keys) in [("v", ["v1", "v2", "v3"]), ("w", ["w3", "w2", "w1"])] {
        for (c, key) in (1..=3u64).zip(keys) {
            let mut vv = VersionVector::new();
            vv.set(id(w), c);
            let write = Write {
                value: Some(vec![0]),
                vv,
                hlc: Hlc {
                    ms: 1,
                    lc: c as u32,
                },
                writer: id(w),
                sig: Signature::default(),
            };
            s.apply(Entry::from_writes(key, vec![write]), 1).unwrap();
        }
    }
    let (sent, held) = s.missing_for_at_most(&CausalContext::new(), 4);
    let keys: Vec<&str> = sent.iter().map(|e| e.key.as_str()).collect();
    assert!(held);
    assert_eq!(keys, ["v1", "w3", "v2", "w2"]);
    let (sent, held) = s.missing_for_at_most(&CausalContext::new(), 6);
    assert!(!held, "everything fits");
    assert_eq!(sent, s.missing_for(&CausalContext::new()));
}

/// #16, findings 1 and 3: tombstones went after the grace whoever had seen them, and a
/// node judged stale by its last sync wiped itself. Now a tombstone goes only once
/// stable (every member's context holds its dots) and past the grace; a node that was
/// not asked (it holds the deleted value) finds out from the collector's fence, rebases
/// once, and keeps its own recent writes.
#[test]
fn tombstones_go_only_when_stable_and_a_fenced_replica_rebases_once() {
    let a = NodeId::new("a").unwrap();
    let b = NodeId::new("b").unwrap();
    let mut s = Store::new(a, Limits::default(), 0);
    let set = s.write("k", Some(b"v".to_vec()), 1_000).unwrap();
    s.write("k", None, 2_000).unwrap();
    let mut stale = Store::new(b, Limits::default(), 0);
    stale.apply(set.clone(), 1_000).unwrap();
    // `stale` has not seen the delete: the delete is not stable.
    let mut meet = s.context().clone();
    for (w, r) in meet.0.iter_mut() {
        *r = r.intersection(stale.context().ranges(w).unwrap_or(&RangeSet::new()));
    }
    assert_eq!(s.collect_stable(3_500, 1_000, &meet), 0);
    let everyone = s.context().clone();
    assert_eq!(
        s.collect_stable(2_500, 1_000, &everyone),
        0,
        "within the grace"
    );
    assert_eq!(s.collect_stable(3_500, 1_000, &everyone), 1);
    assert!(s.entry("k").is_none());
    // A late copy of the deleted value brings nothing back.
    assert_eq!(s.apply(set, 3_600).unwrap().changed, None);
    assert!(s.entry("k").is_none());
    // `stale` was not in the table when the delete went (say it was reaped).
    let fence = s.fence().stable.clone();
    assert!(stale.is_behind(&fence));
    stale.write("mine", Some(b"m".to_vec()), 3_600).unwrap();
    // The rebase asks `s` for what its fence covers; `s` sends back what it holds
    // (nothing of `k`), and the candidate it did not send goes.
    let mut probe = stale.probe_rebase(&fence, s.context(), 3_700, 1_000);
    assert_eq!(probe.len(), 1, "only the old value is a candidate");
    for e in s.missing_for(&probe.hide(stale.context())) {
        probe.returned(&e.key);
        stale.apply(e, 3_700).unwrap();
    }
    assert_eq!(stale.finish_rebase(probe, s.context()), 1);
    assert!(stale.get("k").is_none(), "the deleted value is gone");
    assert!(stale.get("mine").is_some(), "its own new write stays");
    assert!(!stale.is_behind(&fence), "one rebase per collection");
}

#[test]
fn limits_reject_oversized_input_without_changing_state() {
    let mut s = Store::new(NodeId::new("a").unwrap(), Limits::default(), 0);
    assert!(s.write("", Some(vec![]), 1).is_err());
    assert!(s.write(&"k".repeat(513), Some(vec![]), 1).is_err());
    assert!(s.write("k", Some(vec![0; 256 * 1024 + 1]), 1).is_err());
    let bogus = Entry {
        key: "k".into(),
        value: Some(vec![1]),
        vv: VersionVector::new(),
        hlc: Hlc::default(),
        writer: NodeId::new("b").unwrap(),
        sig: Default::default(),
        siblings: Vec::new(),
    };
    assert_eq!(s.apply(bogus, 1), Err(StateError::EmptyVersionVector));
    assert!(s.is_empty());
    assert!(s.context().0.is_empty());
    // #20: a key with NUL, CR or LF broke every line-based listing of it.
    for (key, at) in [("a\nb", 1), ("\0", 0), ("x\ry", 1), ("tab\there", 3)] {
        match s.write(key, Some(vec![]), 1) {
            Err(StateError::KeyControl { at: a, .. }) => assert_eq!(a, at, "{key:?}"),
            other => panic!("{key:?} was not refused: {other:?}"),
        }
    }
    assert!(s.write("ünïcode/ok", Some(vec![]), 1).is_ok());
    assert!(s.write("ünïcode/ok", None, 1).is_ok());
}

/// Review of #17: joined vectors can dominate without any single write superseding
/// the other side's (vectors a hostile writer signs). Merging by the joined vectors
/// alone dropped a write on one replica and kept it on another, for good.
#[test]
fn writes_merge_one_by_one_when_only_the_joined_vectors_dominate() {
    let id = |s: &str| NodeId::new(s).unwrap();
    let write = |dots: &[(&str, u64)], writer: &str, ms: u64| {
        let mut vv = VersionVector::new();
        for (w, c) in dots {
            vv.set(id(w), *c);
        }
        Write {
            value: Some(vec![ms as u8]),
            vv,
            hlc: Hlc { ms, lc: 0 },
            writer: id(writer),
            sig: Signature::default(),
        }
    };
    let x = Entry::from_writes("k", vec![write(&[("a", 1), ("b", 1)], "b", 1)]);
    let y = Entry::from_writes("k", vec![write(&[("a", 1), ("m", 1)], "m", 2)]);
    let z = Entry::from_writes("k", vec![write(&[("b", 1), ("m", 2)], "m", 3)]);
    let yz = m(&y, &z);
    assert_eq!(yz.siblings.len(), 2);
    // P holds x, then gets y and z together; R gets x, y, z one at a time.
    let p = m(&x, &yz);
    let r = m(&m(&x, &y), &z);
    assert_eq!(p, r, "the replicas diverge");
    assert_eq!(p.siblings.len(), 3, "x is superseded by no single write");
}

/// A write of `m` to a key of its own whose vector names `b`'s dot `b_dot` (what any
/// writer may sign: its vector is its word about the key's history).
fn m_naming_b(b_dot: u64) -> Entry {
    let id = |s: &str| NodeId::new(s).unwrap();
    let mut vv = VersionVector::new();
    vv.set(id("m"), 1);
    vv.set(id("b"), b_dot);
    Entry::from_writes(
        "m/k",
        vec![Write {
            value: Some(b"m".to_vec()),
            vv,
            hlc: Hlc { ms: 1, lc: 0 },
            writer: id("m"),
            sig: Signature::default(),
        }],
    )
}

/// #17 review: a writer's signed vector may name another writer's dots, and a receiver
/// counted every named dot as seen; with the context clip taking that dot as evidence, a
/// member's `Open` then claimed the other writer's whole future, and that writer's later
/// writes were dropped as duplicates. Now only a write's own dot is evidence, and only a
/// peer's claims about its own dots are joined.
#[test]
fn a_dot_named_by_another_writer_does_not_silence_its_writer() {
    let id = |s: &str| NodeId::new(s).unwrap();
    let mut a = Store::new(id("a"), Limits::default(), 1);
    let mut b = Store::new(id("b"), Limits::default(), 1);
    // m writes a key of its own, its vector naming b's far future.
    a.apply(m_naming_b(1 << 62), 1).unwrap();
    // ... and claims, in its next Open, every dot of b's up to there.
    let mut claim = CausalContext::new();
    claim
        .0
        .insert(id("b"), RangeSet::from_ranges(vec![(1, 1 << 62)]));
    a.join_context(&id("m"), &claim);
    // b's next write must still reach a.
    let w = b.write("b/x", Some(b"v".to_vec()), 2).unwrap();
    a.apply(w, 2).unwrap();
    assert_eq!(
        a.get("b/x"),
        Some(&b"v"[..]),
        "b's write was dropped as seen"
    );
}

/// #17 review: one named dot is enough to hide one write. A member names, in a key of
/// its own, the dot another writer issues next; the receiver must not count it as seen.
#[test]
fn a_single_dot_named_by_another_writer_does_not_hide_that_write() {
    let id = |s: &str| NodeId::new(s).unwrap();
    let mut a = Store::new(id("a"), Limits::default(), 1);
    let mut b = Store::new(id("b"), Limits::default(), 1);
    a.apply(m_naming_b(b.counter() + 1), 1).unwrap();
    let w = b.write("b/x", Some(b"v".to_vec()), 2).unwrap();
    assert!(!a.has_seen(&w), "b's next write counts as seen at a");
    a.apply(w, 2).unwrap();
    assert_eq!(a.get("b/x"), Some(&b"v"[..]));
}

/// #17 review, the narrow form: a peer's `Open` claimed a third writer's dots below the
/// highest one we hold, among them a write still in flight to us; joining the claim
/// marked it seen, and nobody would send it to us again.
#[test]
fn a_peers_claim_on_a_third_writers_write_in_flight_does_not_hide_it() {
    let id = |s: &str| NodeId::new(s).unwrap();
    let mut a = Store::new(id("a"), Limits::default(), 1);
    let mut b = Store::new(id("b"), Limits::default(), 1);
    let first = b.write("b/1", Some(b"1".to_vec()), 2).unwrap();
    let in_flight = b.write("b/2", Some(b"2".to_vec()), 3).unwrap();
    let third = b.write("b/3", Some(b"3".to_vec()), 4).unwrap();
    a.apply(first, 5).unwrap();
    a.apply(third, 5).unwrap();
    // m says it has seen all of b's dots so far.
    let mut claim = CausalContext::new();
    claim.0.insert(
        id("b"),
        RangeSet::from_ranges(vec![(1, b.context().max(&id("b")))]),
    );
    a.join_context(&id("m"), &claim);
    assert!(!a.has_seen(&in_flight));
    a.apply(in_flight, 6).unwrap();
    assert_eq!(a.get("b/2"), Some(&b"2"[..]));
}

/// The gap a superseded write leaves closes when its own writer vouches for it: `a` sees
/// only the write of `c` that superseded `b`'s, and learns `b`'s dot from `b` alone.
#[test]
fn a_superseded_writes_gap_closes_with_its_writers_own_claim() {
    let id = |s: &str| NodeId::new(s).unwrap();
    let mut a = Store::new(id("a"), Limits::default(), 1);
    let mut b = Store::new(id("b"), Limits::default(), 1);
    let mut c = Store::new(id("c"), Limits::default(), 1);
    let old = b.write("k", Some(b"b".to_vec()), 2).unwrap();
    let b_dot = old.vv.get(&id("b"));
    c.apply(old, 2).unwrap();
    let newer = c.write("k", Some(b"c".to_vec()), 3).unwrap();
    a.apply(newer, 3).unwrap();
    assert!(!a.context().contains(&id("b"), b_dot), "named, not seen");
    // c's word about b's dot is not enough ...
    a.join_context(&id("c"), c.context());
    assert!(!a.context().contains(&id("b"), b_dot));
    // ... b's is, and the late copy of b's superseded write then changes nothing.
    a.join_context(&id("b"), b.context());
    assert!(a.context().contains(&id("b"), b_dot));
    assert_eq!(a.get("k"), Some(&b"c"[..]));
}

/// The fence path: a rebase joins what the peer vouches for and shows, clipped at our
/// evidence of each writer. Clipped at the dots our entries name instead, a member that
/// named `b`'s far future in a key of its own could, with a plausible fence, make the
/// rebase mark `b`'s next writes as seen.
#[test]
fn a_rebase_against_a_fence_does_not_reach_past_our_evidence() {
    let id = |s: &str| NodeId::new(s).unwrap();
    let mut a = Store::new(id("a"), Limits::default(), 1);
    let mut b = Store::new(id("b"), Limits::default(), 1);
    let seen = b.write("b/0", Some(b"0".to_vec()), 2).unwrap();
    a.apply(seen, 2).unwrap();
    a.apply(m_naming_b(b.counter() + 1_000), 2).unwrap();
    // m vouches for (and shows) every dot of b's up to the one it named.
    let mut fence = CausalContext::new();
    fence.0.insert(
        id("b"),
        RangeSet::from_ranges(vec![(1, b.counter() + 1_000)]),
    );
    let probe = a.probe_rebase(&fence, &fence, 3, 1);
    a.finish_rebase(probe, &fence);
    let w = b.write("b/x", Some(b"v".to_vec()), 4).unwrap();
    assert!(
        !a.has_seen(&w),
        "b's next write counts as seen after the rebase"
    );
    a.apply(w, 4).unwrap();
    assert_eq!(a.get("b/x"), Some(&b"v"[..]));
}
