//! Tests of the queries part: what the asker accepts, and the report at the deadline.

use super::*;
use crate::core::engine::Config;
use crate::core::proto::MemberInfo;
use crate::core::queries::Query;

fn id(s: &str) -> NodeId {
    NodeId::new(s).unwrap()
}

fn pending(expected: &[&str], deadline_us: u64) -> Pending {
    Pending {
        deadline_us,
        expected: expected.iter().map(|s| id(s)).collect(),
        acked: BTreeSet::new(),
        answered: BTreeSet::new(),
        report: QueryReport::default(),
    }
}

fn part(cfg: QueryConfig) -> Queries {
    let mut q = Queries::new(cfg);
    q.pending.insert(7, pending(&["a", "b", "c"], 1_000));
    q.deadlines.insert((1_000, 7));
    q
}

#[test]
fn one_ack_and_one_answer_per_responder_within_the_bounds() {
    let mut q = part(QueryConfig {
        max_responses: 2,
        max_response_payload: 4,
        ..QueryConfig::default()
    });
    assert_eq!(
        q.reply(0, &id("a"), 7, None),
        Some(QueryReply::Ack { from: id("a") })
    );
    assert_eq!(q.reply(1, &id("a"), 7, None), None, "a second ack");
    assert_eq!(q.stats.duplicates, 1);
    assert!(q.reply(1, &id("a"), 7, Some(b"1234".to_vec())).is_some());
    assert_eq!(
        q.reply(2, &id("a"), 7, Some(b"x".to_vec())),
        None,
        "a second answer"
    );
    assert_eq!(q.stats.duplicates, 2);
    // Too large, then one answer too many.
    assert_eq!(q.reply(3, &id("b"), 7, Some(b"12345".to_vec())), None);
    assert!(q.reply(3, &id("b"), 7, Some(b"ok".to_vec())).is_some());
    assert_eq!(q.reply(3, &id("c"), 7, Some(b"ok".to_vec())), None);
    assert_eq!(q.stats.refused, 2);
    // Acks are bounded apart.
    assert!(q.reply(4, &id("b"), 7, None).is_some());
    assert_eq!(q.reply(4, &id("c"), 7, None), None);
    assert_eq!(q.stats.refused, 3);
    // Another query, or one past its deadline: unknown.
    assert_eq!(q.reply(5, &id("a"), 8, None), None);
    assert_eq!(q.reply(1_000, &id("c"), 7, Some(Vec::new())), None);
    assert_eq!(q.stats.unknown, 2);
    assert_eq!((q.stats.acks, q.stats.responses), (2, 2));
}

#[test]
fn the_report_names_the_matching_members_that_did_not_answer() {
    let mut q = part(QueryConfig::default());
    q.reply(0, &id("a"), 7, None);
    q.reply(0, &id("a"), 7, Some(b"x".to_vec()));
    q.reply(0, &id("b"), 7, None);
    // A member outside the expected set may answer; it is not silent either way.
    q.reply(0, &id("z"), 7, Some(b"x".to_vec()));
    assert_eq!(q.deadline(), Some(1_000));
    assert!(q.expire(999).is_empty());
    let done = q.expire(1_000);
    assert_eq!(done.len(), 1);
    let (seq, r) = &done[0];
    assert_eq!(*seq, 7);
    assert_eq!(r.acks, vec![id("a"), id("b")]);
    assert_eq!(r.responders, vec![id("a"), id("z")]);
    assert_eq!(
        r.silent,
        vec![id("b"), id("c")],
        "b acked but did not answer"
    );
    assert_eq!(q.deadline(), None);
    assert_eq!(q.reply(1_001, &id("c"), 7, None), None, "after the report");
}

#[test]
fn a_member_waits_to_answer_a_bounded_number_of_queries_each_once() {
    let mut q = Queries::new(QueryConfig {
        max_answering: 2,
        ..QueryConfig::default()
    });
    assert!(q.start_answering((id("a"), 1), 100));
    assert!(!q.start_answering((id("a"), 1), 100), "once");
    assert!(q.start_answering((id("a"), 2), 50));
    assert!(!q.start_answering((id("a"), 3), 100));
    assert_eq!(q.stats.answering_full, 1);
    assert!(q.finish_answering(10, &(id("a"), 1)));
    assert!(!q.finish_answering(10, &(id("a"), 1)), "answered already");
    assert!(!q.finish_answering(50, &(id("a"), 2)), "past its timeout");
    assert!(q.start_answering((id("a"), 4), 80));
    q.expire(80);
    assert!(q.answering.is_empty());
}

fn engine(tags: &[(&str, &str)]) -> Engine {
    let info = MemberInfo {
        id: id("a"),
        addr: "a:7000".into(),
        dc: "dc1".into(),
        zone: String::new(),
        tags: tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    Engine::new(
        Config::local(),
        info,
        Vec::new(),
        1,
        Now::new(0, 1_000_000),
        None,
    )
}

fn events(e: &mut Engine) -> Vec<Event> {
    std::iter::from_fn(|| e.poll_output())
        .filter_map(|o| match o {
            Output::Event(ev) => Some(ev),
            _ => None,
        })
        .collect()
}

#[test]
fn an_asker_that_matches_answers_itself_and_is_reported_at_the_deadline() {
    let mut e = engine(&[("role", "db")]);
    let filter = QueryFilter {
        tags: [("role".to_string(), "db".to_string())].into(),
        ..QueryFilter::default()
    };
    let at = |ms: u64| Now::new(ms * 1000, 1_000_000 + ms);
    let seq = e
        .send_query(at(1), "uptime", b"?".to_vec(), filter, 500)
        .unwrap();
    let got = events(&mut e);
    assert!(
        matches!(&got[0], Event::QueryReply { reply: QueryReply::Ack { from }, .. } if *from == id("a"))
    );
    let Some(Event::Query(Query { asker, .. })) = got.get(1) else {
        panic!("the query is handed to our handlers: {got:?}");
    };
    assert_eq!(*asker, id("a"));
    e.respond_query(at(2), &id("a"), seq, b"up 3 days".to_vec())
        .unwrap();
    assert!(matches!(
        e.respond_query(at(2), &id("a"), seq, Vec::new()),
        Err(QueryError::NotWaiting { .. })
    ));
    let got = events(&mut e);
    assert!(
        matches!(&got[0], Event::QueryReply { reply: QueryReply::Response { payload, .. }, .. } if payload == b"up 3 days")
    );
    assert!(e.poll_timeout() <= 501_000);
    e.handle_timeout(at(501));
    let done: Vec<QueryReport> = events(&mut e)
        .into_iter()
        .filter_map(|ev| match ev {
            Event::QueryDone { report, .. } => Some(report),
            _ => None,
        })
        .collect();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].responders, vec![id("a")]);
    assert!(done[0].silent.is_empty());
}

#[test]
fn a_query_for_others_is_not_handed_to_us_and_bad_asks_are_refused() {
    let mut e = engine(&[("role", "web")]);
    let at = Now::new(1000, 1_000_001);
    let db = QueryFilter {
        tags: [("role".to_string(), "db".to_string())].into(),
        ..QueryFilter::default()
    };
    let seq = e.send_query(at, "q", Vec::new(), db, 100).unwrap();
    assert!(events(&mut e).is_empty(), "we do not match");
    assert!(e.respond_query(at, &id("a"), seq, Vec::new()).is_err());
    let big = vec![0; e.config().queries.max_response_payload + 1];
    assert!(matches!(
        e.respond_query(at, &id("a"), seq, big),
        Err(QueryError::ResponseTooLarge { .. })
    ));
    assert!(matches!(
        e.send_query(at, "q", Vec::new(), QueryFilter::default(), 0),
        Err(QueryError::Timeout { .. })
    ));
    let max = e.config().queries.max_pending;
    for _ in 1..max {
        e.send_query(at, "q", Vec::new(), QueryFilter::default(), 100)
            .unwrap();
    }
    assert!(matches!(
        e.send_query(at, "q", Vec::new(), QueryFilter::default(), 100),
        Err(QueryError::TooMany { .. })
    ));
    assert_eq!(e.query_stats().ask_refused, 2);
}
