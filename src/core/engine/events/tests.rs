//! Tests of the events part alone: bounds, dedup, stale copies, rate limits, repair.

use super::*;
use crate::core::events::MAX_EVENT_NAME;

fn id(s: &str) -> NodeId {
    NodeId::new(s).unwrap()
}

fn cfg() -> EventConfig {
    EventConfig {
        per_sender_per_sec: 10,
        per_sender_burst: 3,
        keep: 4,
        keep_ms: 1_000,
        seen_ms: 2_000,
        ..EventConfig::default()
    }
}

/// A part whose life began at wall ms 0 (no event is from an earlier life).
fn fresh() -> Events {
    Events::new(cfg(), 0, 60_000)
}

fn now(ms: u64) -> Now {
    Now::new(ms * 1000, 1_700_000_000_000 + ms)
}

fn user_event(sender: &str, seq: u64) -> UserEvent {
    UserEvent {
        sender: id(sender),
        seq,
        name: "deploy".into(),
        payload: b"v2".to_vec(),
        sig: Default::default(),
    }
}

/// An event as the events path carries it.
fn event(sender: &str, seq: u64) -> Broadcast {
    Broadcast::Event(user_event(sender, seq))
}

#[test]
fn bounds_are_refused_with_the_field_named() {
    let mut ev = fresh();
    let me = id("a");
    let long = "x".repeat(MAX_EVENT_NAME + 1);
    assert_eq!(
        ev.create(now(0), &me, &long, Vec::new()),
        Err(EventError::NameTooLong { len: 129 })
    );
    assert_eq!(
        ev.create(now(0), &me, "", Vec::new()),
        Err(EventError::EmptyName)
    );
    assert_eq!(
        ev.create(now(0), &me, "a\nb", Vec::new()),
        Err(EventError::NameControl)
    );
    let err = ev
        .create(now(0), &me, "big", vec![0; 8 * 1024 + 1])
        .unwrap_err();
    assert!(
        err.to_string().contains("gossip.events.max_payload"),
        "{err}"
    );
    assert!(ev.create(now(0), &me, "ok", vec![0; 8 * 1024]).is_ok());
}

#[test]
fn sequence_numbers_rise_and_start_above_the_wall_clock() {
    let mut ev = fresh();
    let me = id("a");
    let a = ev.create(now(0), &me, "e", Vec::new()).unwrap();
    let b = ev.create(now(0), &me, "e", Vec::new()).unwrap();
    assert!(a.seq >= now(0).wall_ms << 10);
    assert_eq!(b.seq, a.seq + 1);
    // A restart (a fresh part) a millisecond later starts above both.
    let c = fresh().create(now(1), &me, "e", Vec::new()).unwrap();
    assert!(c.seq > b.seq);
}

#[test]
fn the_local_sender_is_held_to_its_own_rate() {
    let mut ev = fresh();
    let me = id("a");
    for _ in 0..3 {
        ev.create(now(0), &me, "e", Vec::new()).unwrap();
    }
    let err = ev.create(now(0), &me, "e", Vec::new()).unwrap_err();
    assert!(matches!(
        err,
        EventError::RateLimited {
            per_sec: 10,
            burst: 3
        }
    ));
    assert_eq!(ev.stats().send_refused, 1);
    // 10 per second: one token back after 100 ms.
    assert!(ev.create(now(99), &me, "e", Vec::new()).is_err());
    assert!(ev.create(now(100), &me, "e", Vec::new()).is_ok());
}

#[test]
fn an_event_is_delivered_once_and_a_forgery_does_not_hide_the_genuine_copy() {
    let mut ev = fresh();
    let e = event("b", 7);
    assert!(!ev.receive(0, &e, |_| false), "forgery refused");
    assert_eq!(ev.stats().bad_signature, 1);
    assert!(
        ev.receive(1, &e, |_| true),
        "the genuine copy still gets through"
    );
    assert!(!ev.receive(2, &e, |_| panic!("a duplicate is not verified again")));
    assert_eq!(ev.stats().delivered, 1);
    assert_eq!(ev.stats().duplicates, 1);
}

#[test]
fn oversized_events_from_peers_are_refused_before_their_signature_is_checked() {
    let mut ev = fresh();
    let mut e = user_event("b", 1);
    e.payload = vec![0; 8 * 1024 + 1];
    let e = Broadcast::Event(e);
    assert!(!ev.receive(0, &e, |_| panic!("not verified")));
    assert_eq!(ev.stats().oversized, 1);
}

#[test]
fn a_copy_older_than_the_seen_window_is_stale_never_delivered_twice() {
    let mut ev = fresh();
    let e = event("b", 5);
    assert!(ev.receive(0, &e, |_| true));
    ev.expire(2_000_000);
    assert!(!ev.receive(2_000_001, &e, |_| true));
    assert_eq!(ev.stats().stale, 1);
    // Earlier sequence numbers of that sender are below its floor too; later ones pass.
    assert!(!ev.receive(2_000_002, &event("b", 4), |_| true));
    assert!(ev.receive(2_000_003, &event("b", 6), |_| true));
}

#[test]
fn a_peer_flood_is_capped_per_sender_and_counted() {
    let mut ev = fresh();
    let delivered = (1..=20)
        .filter(|&s| ev.receive(0, &event("b", s), |_| true))
        .count();
    assert_eq!(delivered, 3, "the burst");
    assert_eq!(ev.stats().rate_limited, 17);
    // Another sender has its own bucket.
    assert!(ev.receive(0, &event("c", 1), |_| true));
    // A capped event is not asked for again.
    ev.heard(0, &id("c"), (id("b"), 20), 10);
    assert!(ev.due_pulls(1_000).is_empty());
}

#[test]
fn a_missing_event_is_pulled_from_its_last_teller_then_given_up() {
    let mut ev = fresh();
    let missing = (id("b"), 9);
    ev.heard(0, &id("c"), missing.clone(), 20_000);
    ev.heard(5, &id("d"), missing.clone(), 20_000);
    assert!(ev.due_pulls(19_999).is_empty(), "the tree gets its time");
    assert_eq!(ev.due_pulls(20_000), vec![(id("d"), missing.clone())]);
    for k in 1..PULL_TRIES {
        ev.retry_at(20_000 * (k as u64 + 1), missing.clone());
        assert_eq!(ev.due_pulls(20_000 * (k as u64 + 1)).len(), 1);
    }
    ev.retry_at(1_000_000, missing.clone());
    assert!(ev.due_pulls(1_000_000).is_empty());
    assert_eq!(ev.stats().pulls_sent, PULL_TRIES as u64);
    assert_eq!(ev.stats().pulls_abandoned, 1);
    // An answer cancels the repair.
    let other = event("b", 10);
    ev.heard(0, &id("c"), other.id(), 10);
    assert!(ev.receive(1, &other, |_| true));
    assert!(ev.due_pulls(100).is_empty());
}

#[test]
fn held_events_are_bounded_in_number_and_time() {
    let mut ev = fresh();
    for s in 1..=6 {
        ev.receive(s, &event(&format!("s{s}"), 1), |_| true);
    }
    assert!(ev.answer(&(id("s1"), 1)).is_none(), "beyond `keep`");
    assert!(ev.answer(&(id("s6"), 1)).is_some());
    ev.expire(1_000_006);
    assert!(ev.answer(&(id("s6"), 1)).is_none(), "beyond `keep_ms`");
    assert_eq!(
        ev.deadline(),
        Some(2_000_001),
        "next: the oldest seen id expires"
    );
}

#[test]
fn configuration_errors_name_the_field() {
    let bad = EventConfig {
        max_payload: 0,
        ..EventConfig::default()
    };
    assert_eq!(bad.validate().unwrap_err().field, "events.max_payload");
    let bad = EventConfig {
        max_payload: 1 << 20,
        ..EventConfig::default()
    };
    assert_eq!(bad.validate().unwrap_err().field, "events.max_payload");
    let bad = EventConfig {
        per_sender_per_sec: 0,
        ..EventConfig::default()
    };
    assert_eq!(
        bad.validate().unwrap_err().field,
        "events.per_sender_per_sec"
    );
    EventConfig::default().validate().unwrap();
}

#[test]
fn an_event_sent_before_this_life_began_is_stale() {
    let start = 1_700_000_000_000;
    let mut ev = Events::new(cfg(), start, 60_000);
    // Sent 61 s before the restart (by the sender's clock): an earlier life may have
    // delivered it, and its seen set is gone.
    assert!(!ev.receive(0, &event("b", (start - 61_000) << 10), |_| true));
    assert_eq!(ev.stats().stale, 1);
    // Within the drift bound of the start, or later: delivered.
    assert!(ev.receive(0, &event("b", (start - 59_000) << 10), |_| true));
    assert!(ev.receive(0, &event("c", start << 10), |_| true));
}

fn query(asker: &str, seq: u64) -> Broadcast {
    Broadcast::Query(Query {
        asker: id(asker),
        seq,
        name: "uptime".into(),
        payload: Vec::new(),
        filter: QueryFilter::default(),
        timeout_ms: 1_000,
        sig: Default::default(),
    })
}

#[test]
fn queries_share_the_events_ids_rate_and_checks_and_are_counted_apart() {
    let mut ev = fresh();
    // One id space: a query with an event's id is a duplicate.
    assert!(ev.receive(0, &event("b", 1), |_| true));
    assert!(!ev.receive(0, &query("b", 1), |_| true));
    assert_eq!(ev.query_stats().duplicates, 1);
    // One bucket per sender: the burst of 3 is spent by an event and two queries.
    assert!(ev.receive(0, &query("b", 2), |_| true));
    assert!(ev.receive(0, &query("b", 3), |_| true));
    assert!(!ev.receive(0, &query("b", 4), |_| true));
    assert!(!ev.receive(0, &event("b", 5), |_| true));
    assert_eq!(ev.query_stats().rate_limited, 1);
    assert_eq!(ev.stats().rate_limited, 1);
    // A forged query is refused and counted, and does not hide the genuine copy.
    assert!(!ev.receive(0, &query("c", 1), |_| false));
    assert_eq!(ev.query_stats().bad_signature, 1);
    assert!(ev.receive(0, &query("c", 1), |_| true));
    // A query beyond its bounds (a timeout above the limit) is refused unverified.
    let mut long = query("d", 1);
    if let Broadcast::Query(q) = &mut long {
        q.timeout_ms = QueryConfig::default().max_timeout_ms + 1;
    }
    assert!(!ev.receive(0, &long, |_| panic!("not verified")));
    assert_eq!(ev.query_stats().oversized, 1);
    assert_eq!(ev.query_stats().delivered, 3);
    assert_eq!(ev.stats().delivered, 1);
    // A repair request is answered with the query.
    assert!(matches!(
        ev.answer(&(id("b"), 2)),
        Some(Broadcast::Query(_))
    ));
    // The local asker is held to the same rate as its events.
    let me = id("a");
    for _ in 0..3 {
        ev.create(now(0), &me, "e", Vec::new()).unwrap();
    }
    let refused = ev.create_query(now(0), &me, "q", Vec::new(), QueryFilter::default(), 1_000);
    assert!(matches!(refused, Err(QueryError::RateLimited { .. })));
    assert_eq!(ev.query_stats().send_refused, 1);
}
