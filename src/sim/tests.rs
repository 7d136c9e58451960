//! Simulation tests. Each prints its seed; a failure prints the command that replays it.

use super::*;

fn run(text: &str, path: &str) -> Report {
    let sc = Scenario::from_toml(text, path).expect("scenario parses");
    let seed = std::env::var("GOSSAMER_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(sc.seed);
    println!("scenario {path}: seed {seed}");
    let r = sc.run(seed);
    println!("{}", r.table());
    assert!(
        r.passed(),
        "scenario {path} failed with seed {seed}; replay: cargo run --release -- sim {path} --seed {seed}\n{}",
        r.table()
    );
    r
}

#[test]
fn smoke_cluster_converges() {
    let r = run(
        include_str!("../../scenarios/smoke.toml"),
        "scenarios/smoke.toml",
    );
    assert!(r.writes > 200);
}

#[test]
fn thousand_nodes_converge_under_ten_percent_loss() {
    let r = run(
        include_str!("../../scenarios/loss-1000.toml"),
        "scenarios/loss-1000.toml",
    );
    assert_eq!(r.nodes, 1000);
    assert!(r.lost > 0, "the loss model dropped nothing");
}

#[test]
#[ignore]
fn profile_scenario_from_env() {
    let path = std::env::var("GOSSAMER_PROFILE_SCENARIO").unwrap();
    let sc = Scenario::load(std::path::Path::new(&path)).unwrap();
    let r = sc.run(sc.seed);
    println!("{}", r.table());
}

#[test]
fn thirty_minute_partition_into_halves_heals_with_every_write_everywhere() {
    let r = run(
        include_str!("../../scenarios/partition-30min.toml"),
        "scenarios/partition-30min.toml",
    );
    assert!(r.cut > 0, "the partition cut nothing");
    assert!(
        r.conflicts > 0,
        "writes on both sides to the same keys must conflict"
    );
}

#[test]
fn crashed_node_that_lost_its_state_catches_up_by_anti_entropy() {
    let sc = Scenario::from_toml(
        include_str!("../../scenarios/crash-restart.toml"),
        "scenarios/crash-restart.toml",
    )
    .unwrap();
    println!("scenario scenarios/crash-restart.toml: seed {}", sc.seed);
    let mut sim = sc.build(sc.seed);
    sim.run_until(59_000_000);
    assert!(sim.engine(7).is_none(), "node 7 is down");
    sim.run_until(60_000_001);
    let e7 = sim.engine(7).expect("node 7 restarted");
    let others = e7.store().iter().filter(|e| e.writer != *e7.id()).count();
    assert_eq!(
        others, 0,
        "node 7 restarted without its state, yet holds others' writes"
    );
    sim.run_until(100_000_000);
    // Within a few sync intervals after the writes stop, it holds everything.
    sim.run_until(130_000_000);
    assert_eq!(
        sim.writes_missing_now(),
        0,
        "seed {}: some write is missing somewhere",
        sc.seed
    );
    assert!(sim.stores_identical(), "seed {}: stores differ", sc.seed);
    let caught_up = sim.engine(7).unwrap().store().len();
    assert!(caught_up > 100, "node 7 holds only {caught_up} entries");
    assert!(sim.engine(7).unwrap().stats().sync_entries_applied > 0);
    let r = run(
        include_str!("../../scenarios/crash-restart.toml"),
        "scenarios/crash-restart.toml",
    );
    assert!(r.writes > 900);
}

#[test]
fn same_seed_same_trace_different_seed_different_trace() {
    let text = include_str!("../../scenarios/crash-restart.toml");
    let sc = Scenario::from_toml(text, "crash-restart").unwrap();
    let seed = 99;
    println!("determinism: seed {seed}");
    let a = sc.run(seed);
    let b = sc.run(seed);
    assert_eq!(a.trace_hash, b.trace_hash, "seed {seed}: two runs diverged");
    assert_eq!(a.events, b.events);
    assert_eq!(a.propagation_ms, b.propagation_ms);
    let c = sc.run(seed + 1);
    assert_ne!(
        a.trace_hash, c.trace_hash,
        "the seed does not reach the run"
    );
}
