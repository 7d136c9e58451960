//! Tests of the broadcast tree, its spans and lazy repair (grafts, subtree heal).

use super::*;
use crate::core::engine::{Config, Output};
use crate::core::membership::Membership;
use crate::core::proto::{Datagram, MemberInfo, MemberState, MemberStatus};
use crate::core::Now;

pub(in crate::core::engine) fn id(s: &str) -> NodeId {
    NodeId::new(s).unwrap()
}

fn ring(n: usize) -> Vec<NodeId> {
    let mut r: Vec<NodeId> = (0..n).map(|i| id(&format!("n{i:03}"))).collect();
    r.sort();
    r
}

/// Walks the whole tree from `root`: how often each member is reached, and the depth.
fn walk(r: &[NodeId], root: &NodeId) -> (BTreeMap<NodeId, u32>, u32) {
    let mut got: BTreeMap<NodeId, u32> = BTreeMap::new();
    let mut depth = 0;
    let mut level = vec![(root.clone(), root.clone())];
    while !level.is_empty() {
        let mut next = Vec::new();
        for (node, until) in level {
            for (c, lim) in tree_children(r, &node, &until) {
                *got.entry(c.clone()).or_default() += 1;
                next.push((c, lim));
            }
        }
        if !next.is_empty() {
            depth += 1;
        }
        level = next;
    }
    (got, depth)
}

#[test]
fn the_tree_reaches_every_member_once_in_log2_hops() {
    for n in [1usize, 2, 3, 7, 50, 100, 1000] {
        let r = ring(n);
        for root in [&r[0], &r[n / 2], &r[n - 1]] {
            let (got, depth) = walk(&r, root);
            assert_eq!(got.len(), n - 1, "n={n}: everyone but the root");
            assert!(got.values().all(|&c| c == 1), "n={n}: exactly once");
            assert!(!got.contains_key(root));
            let bound = (n as f64).log2().ceil() as u32;
            assert!(depth <= bound, "n={n}: depth {depth} > {bound}");
        }
    }
}

#[test]
fn spans_bounded_by_ids_cover_members_the_sender_does_not_know() {
    // The root's view lacks m; a child whose view has it covers it.
    let full = ring(20);
    let missing = full[7].clone();
    let partial: Vec<NodeId> = full.iter().filter(|x| **x != missing).cloned().collect();
    let root = full[0].clone();
    let mut reached = BTreeSet::new();
    let mut level = vec![(root.clone(), root.clone(), true)];
    while let Some((node, until, is_root)) = level.pop() {
        let view = if is_root { &partial } else { &full };
        for (c, lim) in tree_children(view, &node, &until) {
            reached.insert(c.clone());
            level.push((c, lim, false));
        }
    }
    assert!(reached.contains(&missing));
    assert_eq!(reached.len(), 19);
}

/// True if `x` lies strictly inside the clockwise ring interval from `a` to `b`.
fn between(a: &NodeId, x: &NodeId, b: &NodeId) -> bool {
    if x == a {
        return false;
    }
    if a < b {
        a < x && x < b
    } else {
        x > a || x < b
    }
}

#[test]
fn spans_match_the_ring_interval() {
    let r = ring(12);
    for me in &r {
        for until in &r {
            let mut covered: Vec<NodeId> = Vec::new();
            let mut level = vec![(me.clone(), until.clone())];
            while let Some((node, lim)) = level.pop() {
                for (c, l) in tree_children(&r, &node, &lim) {
                    covered.push(c.clone());
                    level.push((c, l));
                }
            }
            covered.sort();
            let want: Vec<NodeId> = r
                .iter()
                .filter(|x| between(me, x, until))
                .cloned()
                .collect();
            assert_eq!(covered, want, "span ({me}, {until})");
        }
    }
}

#[test]
fn between_wraps_around_the_ring() {
    let (a, b, c) = (id("a"), id("b"), id("c"));
    assert!(between(&a, &b, &c));
    assert!(!between(&a, &c, &b));
    assert!(between(&c, &a, &b), "wraps");
    assert!(between(&b, &a, &b), "whole ring but b");
    assert!(!between(&b, &b, &b));
}

fn info(name: &str) -> MemberInfo {
    MemberInfo {
        id: id(name),
        addr: format!("{name}:1"),
        dc: "dc1".into(),
        zone: String::new(),
        tags: Default::default(),
    }
}

pub(in crate::core::engine) fn at(ms: u64) -> Now {
    Now {
        mono_us: ms * 1000,
        wall_ms: 1_700_000_000_000 + ms,
    }
}

fn engine(name: &str, peers: &[&str]) -> Engine {
    let mut e = Engine::new(Config::default(), info(name), vec![], 1, at(0), None);
    for p in peers {
        let s = MemberState {
            info: info(p).into(),
            incarnation: 1,
            status: MemberStatus::Alive,
        };
        e.handle_datagram(
            at(1),
            &id(p),
            Datagram {
                items: vec![Item::Member(s)],
            },
        );
    }
    while e.poll_output().is_some() {}
    e
}

pub(in crate::core::engine) fn datagrams(e: &mut Engine) -> Vec<(NodeId, Datagram)> {
    let mut out = Vec::new();
    while let Some(o) = e.poll_output() {
        if let Output::Datagram { to, datagram, .. } = o {
            out.push((to, datagram));
        }
    }
    out
}

/// Engine p00 knowing p01..p15.
pub(in crate::core::engine) fn hub() -> Engine {
    let peers: Vec<String> = (1..16).map(|i| format!("p{i:02}")).collect();
    let refs: Vec<&str> = peers.iter().map(String::as_str).collect();
    engine("p00", &refs)
}

/// Datagrams carrying a tree item.
pub(in crate::core::engine) fn trees(out: &[(NodeId, Datagram)]) -> usize {
    out.iter()
        .filter(|(_, d)| d.items.iter().any(|i| matches!(i, Item::Tree { .. })))
        .count()
}

#[test]
fn a_write_goes_down_the_tree_once_and_its_id_is_queued() {
    let peers: Vec<String> = (1..16).map(|i| format!("p{i:02}")).collect();
    let refs: Vec<&str> = peers.iter().map(String::as_str).collect();
    let mut e = engine("p00", &refs);
    e.set(at(10), "k", b"v".to_vec()).unwrap();
    let out = datagrams(&mut e);
    let trees: Vec<&NodeId> = out
        .iter()
        .filter(|(_, d)| d.items.iter().any(|i| matches!(i, Item::Tree { .. })))
        .map(|(to, _)| to)
        .collect();
    // 16 members: the root's children sit at offsets 7, 3, 1 and 0 of its 15 peers.
    assert_eq!(trees.len(), 4, "{trees:?}");
    let copies: usize = out
        .iter()
        .map(|(_, d)| {
            d.items
                .iter()
                .filter(|i| matches!(i, Item::Tree { .. }))
                .count()
        })
        .sum();
    assert_eq!(copies, 4, "one copy per child");
    let ihaves = |d: &Datagram| {
        d.items
            .iter()
            .filter(|i| matches!(i, Item::IHave { .. }))
            .count()
    };
    // At once, the id goes only where the update goes: no datagram of ids alone.
    assert!(
        out.iter()
            .all(|(to, d)| ihaves(d) == 0 || trees.contains(&to)),
        "an id sent at once outside the tree datagrams"
    );
    // The id rides in the tree datagrams' spare room and in gossip rounds.
    let mut ids: usize = out.iter().map(|(_, d)| ihaves(d)).sum();
    for ms in (300..2_000).step_by(100) {
        e.handle_timeout(at(ms));
        ids += datagrams(&mut e)
            .iter()
            .map(|(_, d)| ihaves(d))
            .sum::<usize>();
    }
    assert_eq!(
        ids as u32,
        e.budget(),
        "the id is announced its budget's worth"
    );
}

#[test]
fn a_replayed_tree_item_is_not_forwarded_again() {
    let mut e = hub();
    let mut w = engine("p05", &["p00"]);
    let entry = w.set(at(5), "k", b"v".to_vec()).unwrap();
    let dg = Datagram {
        items: vec![Item::Tree {
            entry,
            until: id("p00"),
        }],
    };
    e.handle_datagram(at(10), &id("p05"), dg.clone());
    assert_eq!(trees(&datagrams(&mut e)), 4, "news goes down our span");
    e.handle_datagram(at(11), &id("p05"), dg);
    assert_eq!(trees(&datagrams(&mut e)), 0, "a replay is not forwarded");
}

#[test]
fn a_tree_copy_of_an_update_synced_first_is_still_forwarded_once() {
    let mut e = hub();
    let mut w = engine("p05", &["p00"]);
    let entry = w.set(at(5), "k", b"v".to_vec()).unwrap();
    e.sync_on_entries(at(8), vec![entry.clone()], None);
    let dg = Datagram {
        items: vec![Item::Tree {
            entry,
            until: id("p00"),
        }],
    };
    e.handle_datagram(at(10), &id("p05"), dg.clone());
    assert_eq!(trees(&datagrams(&mut e)), 4, "our span still needs it");
    e.handle_datagram(at(11), &id("p05"), dg);
    assert_eq!(trees(&datagrams(&mut e)), 0, "but only once");
}

#[test]
fn the_span_and_parent_computed_from_the_ring_are_the_ones_the_tree_uses() {
    for n in (1..=70).chain([255, 256, 257, 1000]) {
        let r = ring(n);
        let roots: Vec<usize> = if n <= 70 {
            (0..n).collect()
        } else {
            vec![0, 1, n / 3, n - 1]
        };
        for root in roots {
            let root = &r[root];
            // Every member's `until` as the tree hands it down.
            let mut sent: BTreeMap<NodeId, NodeId> = BTreeMap::new();
            let mut parent: BTreeMap<NodeId, NodeId> = BTreeMap::new();
            let mut level = vec![(root.clone(), root.clone())];
            while let Some((node, until)) = level.pop() {
                for (c, lim) in tree_children(&r, &node, &until) {
                    sent.insert(c.clone(), lim.clone());
                    parent.insert(c.clone(), node.clone());
                    level.push((c, lim));
                }
            }
            for me in &r {
                assert_eq!(
                    span_end_in_tree(&r, root, me),
                    sent.get(me).cloned(),
                    "n={n} root={root} me={me}"
                );
                assert_eq!(
                    parent_in_tree(&r, root, me),
                    parent.get(me).cloned(),
                    "parent: n={n} root={root} me={me}"
                );
            }
        }
    }
    let r = ring(10);
    assert_eq!(
        span_end_in_tree(&r, &id("zz"), &r[1]),
        None,
        "root not in the ring"
    );
    assert_eq!(
        span_end_in_tree(&r, &r[0], &id("zz")),
        None,
        "we are not in it"
    );
}

#[test]
fn a_grafted_update_heals_the_subtree_below_us() {
    // p00 writes; in its tree over p00..p15 the child at offset 7 (p08) spans
    // p09..p15. p08 lost its tree copy and grafts the update from someone.
    let peers: Vec<String> = (0..16)
        .filter(|&i| i != 8)
        .map(|i| format!("p{i:02}"))
        .collect();
    let refs: Vec<&str> = peers.iter().map(String::as_str).collect();
    let mut me = engine("p08", &refs);
    let mut w = hub();
    let entry = w.set(at(5), "k", b"v".to_vec()).unwrap();
    let answer = Datagram {
        items: vec![Item::Delta(entry.clone())],
    };
    me.handle_datagram(at(10), &id("p03"), answer.clone());
    let out = datagrams(&mut me);
    let mut children: Vec<(NodeId, NodeId)> = out
        .iter()
        .flat_map(|(to, d)| {
            d.items.iter().filter_map(move |i| match i {
                Item::Tree { until, .. } => Some((to.clone(), until.clone())),
                _ => None,
            })
        })
        .collect();
    children.sort();
    let want: Vec<(NodeId, NodeId)> = [("p09", "p10"), ("p10", "p12"), ("p12", "p00")]
        .iter()
        .map(|(c, u)| (id(c), id(u)))
        .collect();
    assert_eq!(children, want, "our span p09..p15, split as the tree would");
    assert_eq!(me.stats().subtrees_healed, 1);
    // The late tree copy is not news and is not forwarded again.
    let late = Datagram {
        items: vec![Item::Tree {
            entry,
            until: id("p00"),
        }],
    };
    me.handle_datagram(at(12), &id("p00"), late);
    assert_eq!(trees(&datagrams(&mut me)), 0);
    // A graft answer about a writer outside our ring heals nothing.
    let mut far = engine("q1", &["p08"]);
    let other = far.set(at(5), "k2", b"v".to_vec()).unwrap();
    me.handle_datagram(
        at(20),
        &id("p03"),
        Datagram {
            items: vec![Item::Delta(other)],
        },
    );
    assert_eq!(trees(&datagrams(&mut me)), 0);
    assert_eq!(me.stats().subtrees_healed, 1);
}

#[test]
fn an_id_we_lack_is_grafted_after_the_timeout_and_answered() {
    // In b's tree over a, b, c, d, a's parent is d: b's word is not a lost copy's.
    let mut a = engine("a", &["b", "c", "d"]);
    let mut b = engine("b", &["a", "c", "d"]);
    let e = b.set(at(10), "k", b"v".to_vec()).unwrap();
    while b.poll_output().is_some() {}
    let counter = e.vv.get(&e.writer);
    a.handle_datagram(
        at(20),
        &id("b"),
        Datagram {
            items: vec![Item::IHave {
                writer: id("b"),
                counter,
            }],
        },
    );
    let due = a.graft_due(&id("b"), counter).expect("pending");
    assert_eq!(due, 20_000 + Config::default().graft_timeout_ms * 1000);
    a.handle_timeout(at(20 + Config::default().graft_timeout_ms - 1));
    assert!(datagrams(&mut a)
        .iter()
        .all(|(_, d)| !d.items.iter().any(|i| matches!(i, Item::Graft { .. }))));
    a.handle_timeout(at(20 + Config::default().graft_timeout_ms));
    let asks: Vec<(NodeId, Datagram)> = datagrams(&mut a)
        .into_iter()
        .filter(|(_, d)| d.items.iter().any(|i| matches!(i, Item::Graft { .. })))
        .collect();
    assert_eq!(asks.len(), 1);
    assert_eq!(asks[0].0, id("b"));
    b.handle_datagram(at(100), &id("a"), asks[0].1.clone());
    let answer: Vec<(NodeId, Datagram)> = datagrams(&mut b)
        .into_iter()
        .filter(|(_, d)| d.items.iter().any(|i| matches!(i, Item::Delta(_))))
        .collect();
    assert_eq!(answer.len(), 1);
    a.handle_datagram(at(101), &id("b"), answer[0].1.clone());
    assert_eq!(a.store().get("k"), Some(&b"v"[..]));
    a.handle_timeout(at(2_000));
    assert_eq!(a.grafts_pending(), 0, "a held id is no longer pending");
    assert_eq!(a.stats().grafts_abandoned, 0);
}

#[test]
fn an_unanswered_graft_is_retried_then_left_to_anti_entropy() {
    let mut a = engine("a", &["b"]);
    a.handle_datagram(
        at(10),
        &id("b"),
        Datagram {
            items: vec![Item::IHave {
                writer: id("b"),
                counter: 7,
            }],
        },
    );
    let mut asked = 0;
    for ms in (10..5_000).step_by(10) {
        a.handle_timeout(at(ms));
        asked += datagrams(&mut a)
            .iter()
            .filter(|(_, d)| d.items.iter().any(|i| matches!(i, Item::Graft { .. })))
            .count();
    }
    assert_eq!(asked as u32, GRAFT_TRIES);
    assert_eq!(a.stats().grafts_abandoned, 1);
    assert_eq!(a.grafts_pending(), 0);
}

#[test]
fn a_graft_is_retried_after_a_quarter_of_the_graft_timeout() {
    let mut a = engine("a", &["b", "c", "d"]);
    let item = Item::IHave {
        writer: id("b"),
        counter: 7,
    };
    a.handle_datagram(at(10), &id("b"), Datagram { items: vec![item] });
    let timeout = Config::default().graft_timeout_ms;
    assert_eq!(a.graft_due(&id("b"), 7), Some((10 + timeout) * 1000));
    a.handle_timeout(at(10 + timeout));
    assert_eq!(
        a.graft_due(&id("b"), 7),
        Some((10 + timeout) * 1000 + timeout * 1000 / 4),
        "no round trip measured: a quarter of the timeout"
    );
}

#[test]
fn under_loss_an_id_told_by_our_parent_in_the_tree_is_grafted_after_a_retry_wait() {
    // In b's tree over a, b, c, d: b pushes to d (span up to b, holding a) and c; d
    // pushes to a. An id of b's told by d means d's copy to us was lost.
    let r = vec![id("a"), id("b"), id("c"), id("d")];
    assert_eq!(parent_in_tree(&r, &id("b"), &id("a")), Some(id("d")));
    let mut a = engine("a", &["b", "c", "d"]);
    let timeout = Config::default().graft_timeout_ms;
    let tell = |counter| Datagram {
        items: vec![Item::IHave {
            writer: id("b"),
            counter,
        }],
    };
    // Without loss reported, the parent's word waits the whole timeout too (a copy too
    // large for a datagram may come on a stream after it).
    a.handle_datagram(at(10), &id("d"), tell(6));
    assert_eq!(a.graft_due(&id("b"), 6), Some((10 + timeout) * 1000));
    a.observe_path_loss(at(10).mono_us, 1_000, 100);
    a.handle_datagram(at(10), &id("d"), tell(7));
    assert_eq!(a.graft_due(&id("b"), 7), Some((10 + timeout / 4) * 1000));
    // Told by anyone else, the copy may still be on its way: the whole timeout.
    a.handle_datagram(at(10), &id("c"), tell(8));
    assert_eq!(a.graft_due(&id("b"), 8), Some((10 + timeout) * 1000));
    // ... until the parent tells it too.
    a.handle_datagram(at(12), &id("d"), tell(8));
    assert_eq!(a.graft_due(&id("b"), 8), Some((12 + timeout / 4) * 1000));
}

// The parts on their own: `Lazy` with a causal context and a clock, the tree's targets
// with a ring and a member table, no engine.

/// A table of `me` with live peers `peers`.
fn table(me: &str, peers: &[&str]) -> Membership {
    let mut members = Membership::new(info(me), 1);
    members.preload(
        0,
        peers.iter().map(|p| MemberState {
            info: info(p).into(),
            incarnation: 1,
            status: MemberStatus::Alive,
        }),
    );
    members
}

#[test]
fn the_lazy_part_grafts_a_missing_id_retries_then_gives_up() {
    let mut lazy = Lazy::default();
    let held = CausalContext::default();
    let delay = |_: &NodeId| 100;
    assert_eq!(
        lazy.on_ihave(&held, 0, &id("b"), (id("w"), 0), delay),
        Told::Held,
        "a void id"
    );
    assert_eq!(
        lazy.on_ihave(&held, 0, &id("b"), (id("w"), 3), delay),
        Told::Missing
    );
    assert_eq!(
        lazy.on_ihave(&held, 50, &id("c"), (id("w"), 3), delay),
        Told::Retold
    );
    assert_eq!(lazy.pending(), 1);
    assert_eq!(lazy.deadline(), Some(100));
    assert_eq!(lazy.due_of(&id("w"), 3), Some(100));
    // Not due yet; then asked of the last teller, GRAFT_TRIES times, then given up.
    assert!(lazy.due_grafts(&held, 99, delay).0.is_empty());
    let mut now = 100;
    for _ in 0..GRAFT_TRIES {
        let (asks, abandoned) = lazy.due_grafts(&held, now, delay);
        assert_eq!(abandoned, 0);
        assert_eq!(asks.get(&id("c")), Some(&vec![(id("w"), 3)]));
        now += 100;
    }
    let (asks, abandoned) = lazy.due_grafts(&held, now, delay);
    assert!(asks.is_empty());
    assert_eq!(abandoned, 1);
    assert_eq!((lazy.pending(), lazy.deadline()), (0, None));
}

#[test]
fn the_lazy_part_forgets_ids_held_by_then_and_remembers_updates_from_elsewhere() {
    let mut lazy = Lazy::default();
    let delay = |_: &NodeId| 10;
    let mut held = CausalContext::default();
    lazy.on_ihave(&held, 0, &id("b"), (id("w"), 1), delay);
    held.insert(&id("w"), 1);
    let (asks, abandoned) = lazy.due_grafts(&held, 10, delay);
    assert!(asks.is_empty() && abandoned == 0);
    assert_eq!(lazy.pending(), 0);
    let mut w = engine("w", &[]);
    let e = w.set(at(1), "k", b"v".to_vec()).unwrap();
    assert!(!lazy.take_elsewhere(&e));
    lazy.learned_elsewhere(&e);
    assert!(lazy.take_elsewhere(&e), "once");
    assert!(!lazy.take_elsewhere(&e));
}

#[test]
fn tree_targets_skip_us_and_split_a_dead_childs_span() {
    let peers: Vec<String> = (1..8).map(|i| format!("n{i:03}")).collect();
    let names: Vec<&str> = peers.iter().map(String::as_str).collect();
    let mut members = table("n000", &names);
    let r = ring(8);
    let me = id("n000");
    let mut all = Vec::new();
    tree_targets(&r, &members, &me, &me, &mut all, 0);
    assert_eq!(all, tree_children(&r, &me, &me));
    // The first child (the far half's root) dies: its own children take its place.
    let dead = all[0].0.clone();
    let lim = all[0].1.clone();
    members.declare_dead(1, &dead);
    let mut out = Vec::new();
    tree_targets(&r, &members, &me, &me, &mut out, 0);
    assert!(out.iter().all(|(c, _)| *c != dead && *c != me));
    for grandchild in tree_children(&r, &dead, &lim) {
        assert!(out.contains(&grandchild), "{grandchild:?} in {out:?}");
    }
}

#[test]
fn graft_requests_pack_into_datagrams_of_at_most_max() {
    let dots: Vec<Dot> = (1..=200).map(|c| (id("writer"), c)).collect();
    let datagrams = graft_datagrams(dots, 1_200);
    assert!(datagrams.len() > 1);
    assert_eq!(datagrams.iter().map(Vec::len).sum::<usize>(), 200);
    for d in &datagrams {
        let len: usize = d.iter().map(encoded_len).sum();
        assert!(len + DATAGRAM_OVERHEAD <= 1_200);
    }
}

/// The exchanges `e` opens from `from_ms` to `to_ms` (timers run every 10 ms): when, and
/// with whom.
fn syncs_between(e: &mut Engine, from_ms: u64, to_ms: u64) -> Vec<(u64, NodeId)> {
    let mut out = Vec::new();
    for ms in (from_ms..to_ms).step_by(10) {
        e.handle_timeout(at(ms));
        while let Some(o) = e.poll_output() {
            if let Output::Sync { with, .. } = o {
                out.push((ms, with));
            }
        }
    }
    out
}

/// Runs `e` past its first periodic exchange (at a random point of the first interval);
/// returns when that was. The next one is an interval (± 10 %) later.
fn past_first_sync(e: &mut Engine) -> u64 {
    (10..3_000)
        .step_by(10)
        .find(|&ms| !syncs_between(e, ms, ms + 10).is_empty())
        .expect("a first exchange within 1.5 intervals")
}

#[test]
fn given_up_grafts_bring_the_next_exchange_a_quarter_interval_forward() {
    let mut a = engine("a", &["b", "c"]);
    let t = past_first_sync(&mut a) + 10;
    a.handle_datagram(
        at(t),
        &id("c"),
        Datagram {
            items: vec![Item::IHave {
                writer: id("b"),
                counter: 7,
            }],
        },
    );
    let mut given_up = None;
    for ms in (t..t + 1_000).step_by(10) {
        a.handle_timeout(at(ms));
        while a.poll_output().is_some() {}
        if a.stats().grafts_abandoned > 0 {
            given_up = Some(ms);
            break;
        }
    }
    let given_up = given_up.expect("the graft is given up");
    assert_eq!(a.stats().sync_known_losses, 1);
    // Otherwise the next exchange would come an interval (± 10 %) after the first.
    let quarter = Config::default().sync_interval_ms / 4;
    let syncs = syncs_between(&mut a, given_up + 10, given_up + quarter + 20);
    assert_eq!(syncs.len(), 1, "{syncs:?}");
    assert_eq!(syncs[0].0, given_up + quarter);
}

#[test]
fn a_refused_datagram_sends_the_next_exchange_to_its_peer_soon_unless_backed_off() {
    let mut a = engine("a", &["b", "c"]);
    let t = past_first_sync(&mut a) + 10;
    a.datagram_refused(at(t), &id("b"));
    assert_eq!(a.stats().sync_known_losses, 1);
    let quarter = Config::default().sync_interval_ms / 4;
    let syncs = syncs_between(&mut a, t, t + quarter + 100);
    assert_eq!(syncs, vec![(t + quarter, id("b"))]);
    // Backed off: the next exchange still goes to the peer, but an interval after the
    // last, as a storm's exchanges do.
    let t = t + quarter + 100;
    a.backoff.level = 1;
    a.datagram_refused(at(t), &id("c"));
    assert_eq!(a.stats().sync_known_losses, 1);
    let syncs = syncs_between(&mut a, t, t + 2_500);
    assert_eq!(syncs.len(), 1, "{syncs:?}");
    assert_eq!(syncs[0].1, id("c"));
    assert!(syncs[0].0 >= t + 1_500, "{syncs:?}");
    // A member we do not know owes nothing.
    a.datagram_refused(at(t + 2_500), &id("zz"));
    assert_eq!(a.stats().sync_known_losses, 1);
}

/// `n` updates written by `w`, delivered to `a` as deltas, one every `gap_ms` from
/// `from_ms`, timers running between them; returns when the last came and the exchanges
/// `a` opened meanwhile.
fn deliver_news(
    a: &mut Engine,
    w: &mut Engine,
    n: usize,
    from_ms: u64,
    gap_ms: u64,
) -> (u64, Vec<(u64, NodeId)>) {
    let (mut ms, mut syncs) = (from_ms, Vec::new());
    for i in 0..n {
        ms = from_ms + i as u64 * gap_ms;
        let e = w.set(at(ms), &format!("k{i}"), b"v".to_vec()).unwrap();
        while w.poll_output().is_some() {}
        a.handle_datagram(
            at(ms),
            &id("w"),
            Datagram {
                items: vec![Item::Delta(e)],
            },
        );
        syncs.extend(syncs_between(a, ms, ms + 1));
    }
    (ms, syncs)
}

#[test]
fn an_exchange_follows_a_quarter_interval_after_a_burst_ends() {
    use crate::core::sync::FAR_BEHIND;
    let quarter = Config::default().sync_interval_ms / 4;
    for (n, early) in [(FAR_BEHIND, true), (FAR_BEHIND - 1, false)] {
        let mut a = engine("a", &["b", "w"]);
        let mut w = engine("w", &["a", "b"]);
        let t = past_first_sync(&mut a) + 10;
        let (last, during) = deliver_news(&mut a, &mut w, n, t, 1);
        assert!(during.is_empty());
        let syncs = syncs_between(&mut a, last + 1, t + 1_700);
        if early {
            assert_eq!(syncs.len(), 1, "{syncs:?}");
            assert!(syncs[0].0 >= last + quarter && syncs[0].0 < last + quarter + 10);
            assert_eq!(a.stats().sync_after_bursts, 1);
        } else {
            assert!(syncs.is_empty(), "{n} updates are no burst: {syncs:?}");
            assert_eq!(a.stats().sync_after_bursts, 0);
        }
    }
}

#[test]
fn a_steady_stream_of_updates_adds_no_exchange() {
    let mut a = engine("a", &["b", "w"]);
    let mut w = engine("w", &["a", "b"]);
    let t = past_first_sync(&mut a) + 10;
    // One update every 25 ms for 2 s: a burst's worth (64) within the first 1.6 s, but no
    // quiet quarter interval before the interval ends (at least 1.8 s after the first
    // exchange), so only the periodic exchange comes.
    let (_, syncs) = deliver_news(&mut a, &mut w, 80, t, 25);
    assert_eq!(syncs.len(), 1, "{syncs:?}");
    assert!(syncs[0].0 >= t - 10 + 1_800, "{syncs:?}");
    assert_eq!(a.stats().sync_after_bursts, 0);
}
