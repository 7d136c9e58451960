//! Queries in the simulator (#19): at 10 % loss a query with a tag filter is answered by
//! exactly the matching members and a crashed matching member is reported silent;
//! forged queries, floods and stray answers are refused and counted.

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::core::authority::Authority;
use crate::core::proto::Item;
use crate::core::queries::{Query, QueryFilter, QueryReply};

/// A cluster of `nodes` at `loss`, joined and settled, with the seed printed.
fn cluster(name: &str, nodes: usize, loss: f64) -> (Sim, u64) {
    let text = format!(
        "name = \"{name}\"\nnodes = {nodes}\nseed = 23\nduration_s = 60\n\
         [network]\nlatency_ms = 5\njitter_ms = 2\nloss = {loss}\n"
    );
    let sc = Scenario::from_toml(&text, "queries (inline)").unwrap();
    let seed = std::env::var("GOSSAMER_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(sc.seed);
    println!("{name}: seed {seed} (replay with GOSSAMER_SIM_SEED={seed})");
    let mut sim = sc.build(seed);
    sim.run_until(10_000_000);
    assert!(
        sim.membership_converged(),
        "seed {seed}: membership converged first"
    );
    (sim, seed)
}

fn role(r: &str) -> BTreeMap<String, String> {
    [("role".to_string(), r.to_string())].into()
}

#[test]
fn a_tag_filtered_query_is_answered_by_exactly_the_matching_members_at_ten_percent_loss() {
    let (mut sim, seed) = cluster("query-loss", 10, 0.1);
    let db = [2usize, 4, 6, 8];
    for i in 0..sim.len() {
        sim.set_tags(i, role(if db.contains(&i) { "db" } else { "web" }));
    }
    // The tags spread like any membership change.
    let t = sim.now_us();
    sim.run_until(t + 5_000_000);
    let asker = 1usize;
    for &i in &db {
        let tags = &sim
            .engine(asker)
            .unwrap()
            .members()
            .get(&sim_id(i))
            .unwrap()
            .state
            .info
            .tags;
        assert_eq!(
            tags.get("role").map(String::as_str),
            Some("db"),
            "seed {seed}"
        );
    }
    // A matching member crashes just before the query; the asker still counts it alive.
    let t = sim.now_us();
    sim.schedule_action(t + 1, Action::Crash(8));
    sim.run_until(t + 1);
    let filter = QueryFilter {
        tags: role("db"),
        ..QueryFilter::default()
    };
    let seq = sim
        .send_query(asker, "uptime", b"?".to_vec(), filter, 3_000)
        .unwrap();
    let asked = sim.now_us();
    sim.run_until(asked + 3_000_000);
    let log = sim.queries();
    let (at, report) = log
        .report(asker, seq)
        .expect("the report at the deadline")
        .clone();
    assert_eq!(
        at,
        asked + 3_000_000,
        "seed {seed}: reported at the deadline"
    );
    let answered: BTreeSet<usize> = [2, 4, 6].into();
    let responders: BTreeSet<NodeId> = report.responders.iter().cloned().collect();
    assert_eq!(
        responders,
        answered.iter().map(|&i| sim_id(i)).collect(),
        "seed {seed}: exactly the live matching members answered"
    );
    assert_eq!(report.responders.len(), 3, "seed {seed}: each once");
    assert_eq!(
        report.silent,
        vec![sim_id(8)],
        "seed {seed}: the crashed one is silent"
    );
    assert_eq!(report.acks.len(), 3, "seed {seed}");
    // Each answer is the responder's own (the simulator answers with the node's id).
    for r in log.replies(asker, seq) {
        if let QueryReply::Response { from, payload } = &r.reply {
            assert_eq!(payload.as_slice(), from.as_str().as_bytes());
        }
    }
    // Only matching members were handed the query, once each.
    for i in 0..sim.len() {
        let handed = log
            .handed(i)
            .iter()
            .filter(|(a, s)| *a == sim_id(asker) && *s == seq)
            .count();
        let expect = usize::from(answered.contains(&i));
        assert_eq!(
            handed, expect,
            "seed {seed}: node {i} was handed the query {handed} times"
        );
    }
    // The query travelled as events do: repaired where loss took its tree copy, and
    // delivered once by every live node.
    let delivered: u64 = (0..sim.len())
        .filter_map(|i| sim.engine(i))
        .map(|e| e.query_delivery_stats().delivered)
        .sum();
    assert_eq!(delivered, 9, "seed {seed}: one delivery per live node");
    println!(
        "answers after {:?} µs; datagrams lost {}",
        log.replies(asker, seq)
            .iter()
            .map(|r| r.at_us - asked)
            .collect::<Vec<_>>(),
        sim.stats().lost
    );
}

#[test]
fn a_member_that_does_not_answer_is_reported_silent_and_an_empty_filter_reaches_everyone() {
    let (mut sim, seed) = cluster("query-mute", 6, 0.0);
    sim.mute_queries(3);
    let seq = sim
        .send_query(0, "ping", Vec::new(), QueryFilter::default(), 1_000)
        .unwrap();
    let t = sim.now_us();
    sim.run_until(t + 1_000_000);
    let (_, report) = sim.queries().report(0, seq).unwrap().clone();
    assert_eq!(
        report.acks.len(),
        6,
        "seed {seed}: every member acked, the asker too"
    );
    assert_eq!(report.responders.len(), 5, "seed {seed}");
    assert_eq!(report.silent, vec![sim_id(3)], "seed {seed}");
}

#[test]
fn forged_queries_floods_and_stray_answers_are_refused_and_counted() {
    let (mut sim, seed) = cluster("query-hostile", 8, 0.0);
    const HOSTILE: usize = 5;
    let mut keys = sim.authority_of(HOSTILE);
    let mut sign = |mut q: Query| {
        q.sig = keys.sign(&q.signed_bytes());
        q
    };
    let base = (SIM_EPOCH_MS + 20_000) << 10;
    let query = |asker: usize, seq: u64| Query {
        asker: sim_id(asker),
        seq,
        name: "q".into(),
        payload: Vec::new(),
        filter: QueryFilter::default(),
        timeout_ms: 10_000,
        sig: Default::default(),
    };
    // A query in node 0's name signed with the hostile member's key, then 400 of its
    // own at once.
    let forged = sign(query(0, base));
    let flood: Vec<Query> = (1..=400u64)
        .map(|k| sign(query(HOSTILE, base + k)))
        .collect();
    for to in (0..sim.len()).filter(|&i| i != HOSTILE) {
        let mut items = vec![Item::Query {
            query: forged.clone(),
            until: Some(sim_id(to)),
        }];
        items.extend(flood.iter().map(|q| Item::Query {
            query: q.clone(),
            until: Some(sim_id(to)),
        }));
        for chunk in items.chunks(40) {
            sim.inject_datagram(HOSTILE, to, chunk.to_vec());
        }
    }
    // And answers to a query node 0 never asked.
    sim.inject_datagram(
        HOSTILE,
        0,
        vec![Item::QueryResponse {
            asker: sim_id(0),
            seq: 12345,
            payload: b"lie".to_vec(),
        }],
    );
    let t = sim.now_us();
    sim.run_until(t + 5_000_000);
    let burst = Config::default().events.per_sender_burst as usize;
    let hostile = sim_id(HOSTILE);
    for node in (0..sim.len()).filter(|&i| i != HOSTILE) {
        let e = sim.engine(node).unwrap();
        let s = e.query_delivery_stats();
        assert!(
            s.bad_signature >= 1,
            "seed {seed}: node {node} never refused the forgery"
        );
        assert!(
            s.rate_limited > 0,
            "seed {seed}: node {node} let the flood through"
        );
        let handed = sim.queries().handed(node);
        assert!(
            !handed.iter().any(|(a, s)| *a == sim_id(0) && *s == base),
            "seed {seed}: node {node} was handed the forged query"
        );
        let got = handed.iter().filter(|(a, _)| *a == hostile).count();
        assert!(
            got >= burst && got <= burst + 5,
            "seed {seed}: node {node} was handed {got} of 400 flooded queries (burst {burst})"
        );
        // It acked what it was handed, and holds at most that many waiting to answer.
        assert_eq!(e.query_stats().matched, got as u64, "seed {seed}");
    }
    assert_eq!(
        sim.engine(0).unwrap().query_stats().unknown,
        1,
        "seed {seed}"
    );
    // Queries went on: a later honest one is answered by everyone.
    let seq = sim
        .send_query(1, "after", Vec::new(), QueryFilter::default(), 1_000)
        .unwrap();
    let t = sim.now_us();
    sim.run_until(t + 1_000_000);
    let (_, report) = sim.queries().report(1, seq).unwrap().clone();
    assert!(report.silent.is_empty(), "seed {seed}: {report:?}");
    assert_eq!(report.responders.len(), sim.len(), "seed {seed}");
}

/// BENCHMARKS.md, "Queries": time from asking a query (empty filter: every node answers)
/// to the first and the last answer of another node, N = 10, 50, 100, with and without 10 % loss (5 ± 2 ms links, warm
/// start, 50 queries from random askers, one every 200 ms; seed 19 or
/// `GOSSAMER_SIM_SEED`). Simulated time: answers are made at once.
/// Run with `cargo test --release --lib query_round_trip_time -- --ignored --nocapture`.
#[test]
#[ignore = "a benchmark: prints a table"]
fn query_round_trip_time() {
    println!("| N | loss | queries | first answer p50 ms | last answer p50 ms | p90 ms | max ms | silent |");
    println!("|---|---|---|---|---|---|---|---|");
    for n in [10usize, 50, 100] {
        for loss in [0.0, 0.1] {
            let mut sim = super::event_tests::bench_sim(n, loss, "queries");
            let mut t = sim.now_us();
            let mut asked = Vec::new();
            for _ in 0..50 {
                let asker = (sim.random_u64() % n as u64) as usize;
                let seq = sim
                    .send_query(asker, "bench", vec![7; 64], QueryFilter::default(), 5_000)
                    .unwrap();
                asked.push((asker, seq));
                t += 200_000;
                sim.run_until(t);
            }
            sim.run_until(t + 6_000_000);
            let (mut first, mut last, mut silent) = (Vec::new(), Vec::new(), 0usize);
            for (asker, seq) in asked {
                let log = sim.queries();
                let t0 = log.asked_at(asker, seq).unwrap();
                // Answers of the others (the asker answers itself at once).
                let me = sim_id(asker);
                let answers: Vec<u64> = log
                    .replies(asker, seq)
                    .iter()
                    .filter(
                        |r| matches!(&r.reply, QueryReply::Response { from, .. } if *from != me),
                    )
                    .map(|r| r.at_us - t0)
                    .collect();
                first.push(answers.iter().copied().min().unwrap_or(0));
                last.push(answers.iter().copied().max().unwrap_or(0));
                silent += log.report(asker, seq).map_or(n, |(_, r)| r.silent.len());
            }
            first.sort();
            last.sort();
            let ms = |us: u64| us as f64 / 1000.0;
            println!(
                "| {n} | {:.0} % | 50 | {:.1} | {:.1} | {:.1} | {:.1} | {silent} |",
                loss * 100.0,
                ms(first[25]),
                ms(last[25]),
                ms(last[45]),
                ms(last[49]),
            );
        }
    }
}
