//! User events in the simulator (#19): every live node delivers each event exactly once
//! at 10 % loss; forged events and floods from one member are refused and counted.

use super::*;
use crate::core::authority::Authority;
use crate::core::events::{EventStats, UserEvent};
use crate::core::proto::Item;

/// A cluster of `nodes` at `loss`, joined and settled, with the seed printed.
fn cluster(name: &str, nodes: usize, loss: f64) -> (Sim, u64) {
    let text = format!(
        "name = \"{name}\"\nnodes = {nodes}\nseed = 19\nduration_s = 60\n\
         [network]\nlatency_ms = 5\njitter_ms = 2\nloss = {loss}\n"
    );
    let sc = Scenario::from_toml(&text, "events (inline)").unwrap();
    let seed = std::env::var("GOSSAMER_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(sc.seed);
    println!("{name}: seed {seed} (replay with GOSSAMER_SIM_SEED={seed})");
    let mut sim = sc.build(seed);
    sim.run_until(10_000_000);
    assert!(sim.membership_converged(), "membership converged first");
    (sim, seed)
}

#[test]
fn every_live_node_delivers_each_event_exactly_once_at_ten_percent_loss() {
    let (mut sim, seed) = cluster("events-loss", 10, 0.1);
    let mut t = sim.now_us();
    // Several senders, several events each, some in bursts, payloads of every size
    // (the largest go on streams).
    for round in 0..6u64 {
        for sender in [0usize, 3, 7] {
            let payload = vec![round as u8; (round as usize * 1_700) % 8_193];
            sim.send_event(sender, &format!("deploy-{round}"), payload)
                .expect("within bounds and rate");
        }
        t += 700_000;
        sim.run_until(t);
    }
    sim.run_until(t + 20_000_000);
    let log = sim.events();
    assert_eq!(log.sent().count(), 18);
    for (id, sender, _) in log.sent() {
        for node in 0..sim.len() {
            assert_eq!(
                log.times_delivered(id, node),
                1,
                "seed {seed}: node {node} delivered {id:?} (from node {sender}) a wrong number of times"
            );
        }
    }
    let stats: Vec<_> = (0..sim.len())
        .map(|i| sim.engine(i).unwrap().event_stats().clone())
        .collect();
    let sum = |f: fn(&EventStats) -> u64| stats.iter().map(f).sum::<u64>();
    let mut spread: Vec<u64> = log
        .spread_us(&(0..sim.len()).collect::<Vec<_>>())
        .into_iter()
        .flatten()
        .collect();
    spread.sort();
    println!(
        "datagrams lost {}, pulls {}, duplicates {}, delivery to all: median {} us, max {} us",
        sim.stats().lost,
        sum(|s| s.pulls_sent),
        sum(|s| s.duplicates),
        spread[spread.len() / 2],
        spread[spread.len() - 1]
    );
    assert!(sim.stats().lost > 0, "the loss model dropped nothing");
    assert!(
        stats.iter().map(|s| s.pulls_sent).sum::<u64>() > 0,
        "seed {seed}: 10 % loss and no event needed a repair"
    );
    assert!(stats
        .iter()
        .all(|s| s.bad_signature == 0 && s.rate_limited == 0));
}

#[test]
fn a_forged_event_is_refused_and_a_flood_from_one_member_is_capped() {
    let (mut sim, seed) = cluster("events-hostile", 8, 0.0);
    const HOSTILE: usize = 5;
    let mut keys = sim.authority_of(HOSTILE);
    let sign = |keys: &mut SimAuthority, mut e: UserEvent| {
        e.sig = keys.sign(&e.signed_bytes());
        e
    };
    let base = (SIM_EPOCH_MS + 20_000) << 10;
    // An event in node 0's name, signed with the hostile member's key.
    let forged = sign(
        &mut keys,
        UserEvent {
            sender: sim_id(0),
            seq: base,
            name: "forged".into(),
            payload: b"x".to_vec(),
            sig: Default::default(),
        },
    );
    // Then a flood in its own name, far above the per-sender rate: 400 events at once.
    let flood: Vec<UserEvent> = (1..=400u64)
        .map(|k| {
            sign(
                &mut keys,
                UserEvent {
                    sender: sim_id(HOSTILE),
                    seq: base + k,
                    name: "flood".into(),
                    payload: Vec::new(),
                    sig: Default::default(),
                },
            )
        })
        .collect();
    for to in (0..sim.len()).filter(|&i| i != HOSTILE) {
        let mut items = vec![Item::Event {
            event: forged.clone(),
            until: Some(sim_id(to)),
        }];
        // `until` = the receiver itself: its span is the whole ring, so an event that
        // got through would be forwarded to everyone.
        items.extend(flood.iter().map(|e| Item::Event {
            event: e.clone(),
            until: Some(sim_id(to)),
        }));
        for chunk in items.chunks(40) {
            sim.inject_datagram(HOSTILE, to, chunk.to_vec());
        }
    }
    let t = sim.now_us();
    sim.run_until(t + 10_000_000);
    let burst = Config::default().events.per_sender_burst as usize;
    let log = sim.events();
    assert!(log.deliveries(&forged.id()).is_empty(), "seed {seed}");
    for node in (0..sim.len()).filter(|&i| i != HOSTILE) {
        let s = sim.engine(node).unwrap().event_stats();
        assert!(
            s.bad_signature >= 1,
            "seed {seed}: node {node} never refused the forgery"
        );
        assert!(
            s.rate_limited > 0,
            "seed {seed}: node {node} let the flood through"
        );
        let got = flood
            .iter()
            .filter(|e| log.times_delivered(&e.id(), node) > 0)
            .count();
        // The bucket starts full and refills at 50/s during the few ms of the flood.
        assert!(
            got >= burst && got <= burst + 5,
            "seed {seed}: node {node} delivered {got} of 400 flooded events (burst {burst})"
        );
        assert!(flood
            .iter()
            .all(|e| log.times_delivered(&e.id(), node) <= 1));
    }
    // Gossip went on: a later honest event still reaches everyone.
    let id = sim.send_event(1, "after", Vec::new()).unwrap();
    let t = sim.now_us();
    sim.run_until(t + 5_000_000);
    for node in 0..sim.len() {
        assert_eq!(sim.events().times_delivered(&id, node), 1, "seed {seed}");
    }
}

/// The simulator the delivery benchmarks run (events, queries): `n` nodes started joined,
/// 5 ± 2 ms links, `loss`, seed 19 or `GOSSAMER_SIM_SEED`, settled for 2 s.
pub(super) fn bench_sim(n: usize, loss: f64, what: &str) -> Sim {
    let text = format!(
        "name = \"{what}-bench\"\nnodes = {n}\nseed = 19\nduration_s = 60\n\
         warm_start = true\n[network]\nlatency_ms = 5\njitter_ms = 2\nloss = {loss}\n"
    );
    let sc = Scenario::from_toml(&text, "delivery bench (inline)").unwrap();
    let seed = std::env::var("GOSSAMER_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(sc.seed);
    let mut sim = sc.build(seed);
    sim.run_until(2_000_000);
    sim
}

/// BENCHMARKS.md, "User events": time from sending an event to its delivery at the last
/// live node, N = 10, 50, 100, with and without 10 % loss (5 ± 2 ms links, warm start,
/// 100 events from random senders, one every 200 ms; seed 19 or `GOSSAMER_SIM_SEED`).
/// Run with `cargo test --release --lib event_delivery_time -- --ignored --nocapture`.
#[test]
#[ignore = "a benchmark: prints a table"]
fn event_delivery_time() {
    println!(
        "| N | loss | events | p50 ms | p99 ms | max ms | copies per node | pulls per event |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for n in [10usize, 50, 100] {
        for loss in [0.0, 0.1] {
            let mut sim = bench_sim(n, loss, "events");
            let mut t = sim.now_us();
            for _ in 0..100 {
                let sender = (sim.random_u64() % n as u64) as usize;
                sim.send_event(sender, "bench", vec![7; 256]).unwrap();
                t += 200_000;
                sim.run_until(t);
            }
            sim.run_until(t + 10_000_000);
            let all: Vec<usize> = (0..n).collect();
            let mut spread: Vec<u64> = sim.events().spread_us(&all).into_iter().flatten().collect();
            for (id, sender, t0) in sim.events().sent() {
                let missing: Vec<usize> = all
                    .iter()
                    .copied()
                    .filter(|&i| sim.events().times_delivered(id, i) == 0)
                    .collect();
                if !missing.is_empty() {
                    println!("{id:?} from node {sender} at {t0} µs: missing at {missing:?}");
                    for m in missing {
                        println!("  {m}: {:?}", sim.engine(m).unwrap().event_stats());
                    }
                }
            }
            assert_eq!(spread.len(), 100, "every event reached every node");
            for (id, _, _) in sim.events().sent() {
                assert!(all
                    .iter()
                    .all(|&i| sim.events().times_delivered(id, i) == 1));
            }
            spread.sort();
            let ms = |us: u64| us as f64 / 1000.0;
            let stats: Vec<EventStats> = (0..n)
                .map(|i| sim.engine(i).unwrap().event_stats().clone())
                .collect();
            let copies = stats
                .iter()
                .map(|s| s.delivered + s.duplicates)
                .sum::<u64>() as f64
                / (100.0 * n as f64);
            let pulls = stats.iter().map(|s| s.pulls_sent).sum::<u64>() as f64 / 100.0;
            println!(
                "| {n} | {:.0} % | 100 | {:.1} | {:.1} | {:.1} | {copies:.2} | {pulls:.2} |",
                loss * 100.0,
                ms(spread[49]),
                ms(spread[98]),
                ms(spread[99]),
            );
        }
    }
}
