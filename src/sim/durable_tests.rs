//! Crash-restart under the durable image: a crash loses exactly what the durability
//! mode allows, no acknowledged write is lost, and no dot is ever issued twice. Each
//! test prints its seed (`GOSSAMER_SIM_SEED` replays another).

use super::*;

fn seed(default: u64) -> u64 {
    let s = std::env::var("GOSSAMER_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    println!(
        "seed {s} (replay: GOSSAMER_SIM_SEED={s} cargo test --release --lib sim::durable_tests)"
    );
    s
}

const S: u64 = 1_000_000;

/// 5 nodes; node 2 takes a third of the writes and crashes at random instants (down
/// 0.2 to 2 s); twice the whole cluster crashes at once. Returns the simulator after a
/// fault-free settle.
fn crash_loop(seed: u64, durability: SimDurability) -> Sim {
    let mut sim = Sim::new(SimConfig {
        nodes: 5,
        seed,
        gossip: Config::default(),
        net: NetModel::default(),
        join_window_us: 500_000,
        joined: false,
    });
    sim.set_durability(durability);
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xd0_7a);
    // Writes every 20 ms from 2 s to 40 s, a third of them on node 2.
    let mut t = 2 * S;
    let mut k = 0u64;
    while t < 40 * S {
        let node = if rng.random_bool(0.34) {
            2
        } else {
            rng.random_range(0..5)
        };
        let key = format!("k{}", rng.random_range(0..50));
        sim.schedule_action(
            t,
            Action::Write {
                node,
                key,
                value: Some(format!("v{k}").into_bytes()),
            },
        );
        k += 1;
        t += 20_000;
    }
    // Node 2 crash-loops at random instants.
    let mut t = 3 * S;
    while t < 38 * S {
        let down = rng.random_range(200_000..2 * S);
        sim.schedule_action(t, Action::Crash(2));
        sim.schedule_action(
            t + down,
            Action::Restart {
                node: 2,
                keep_state: true,
            },
        );
        t += down + rng.random_range(100_000..3 * S);
    }
    // Twice, every node at once (a whole-cluster power cut).
    for at in [15 * S + 7_777, 30 * S + 123] {
        for i in 0..5 {
            sim.schedule_action(at, Action::Crash(i));
            sim.schedule_action(
                at + S,
                Action::Restart {
                    node: i,
                    keep_state: true,
                },
            );
        }
    }
    sim.run_until(40 * S);
    sim.schedule_action(
        40 * S + 1,
        Action::Restart {
            node: 2,
            keep_state: true,
        },
    );
    sim.run_until(100 * S);
    sim
}

#[test]
fn sync_durability_loses_no_acknowledged_write_and_reuses_no_dot() {
    let seed = seed(11);
    let sim = crash_loop(seed, SimDurability::Sync);
    let st = sim.stats();
    println!(
        "writes acked {}, commits {}, dots reused {}, missing now {}",
        st.writes_acked,
        st.commits,
        st.dots_reused,
        sim.writes_missing_now()
    );
    assert!(
        st.writes_acked > 1_000,
        "too few writes: {}",
        st.writes_acked
    );
    assert_eq!(st.dots_reused, 0, "seed {seed}: a dot was issued twice");
    assert_eq!(
        sim.writes_missing_now(),
        0,
        "seed {seed}: an acknowledged write is missing on some node"
    );
    assert_eq!(sim.live_nodes(), 5);
    assert!(sim.stores_identical(), "seed {seed}: replicas differ");
}

#[test]
fn relaxed_durability_loses_only_writes_of_the_last_interval() {
    let seed = seed(12);
    let interval_us = 500_000;
    let sim = crash_loop(seed, SimDurability::Relaxed { interval_us });
    let st = sim.stats();
    assert_eq!(st.dots_reused, 0, "seed {seed}: a dot was issued twice");
    assert!(sim.stores_identical(), "seed {seed}: replicas differ");
    // A lost write is one no live node holds: it died with its writer, which had not
    // committed it, and which crashed within one interval of writing it.
    let crashes: Vec<(usize, u64)> = sim
        .detections()
        .iter()
        .map(|d| (d.node, d.crashed_us))
        .collect();
    let lost: Vec<&TrackedWrite> = sim
        .writes()
        .iter()
        .filter(|w| (0..sim.len()).all(|i| sim.engine(i).is_some_and(|e| !w.held_by(e.store()))))
        .collect();
    println!("writes {}, lost {}", sim.writes().len(), lost.len());
    for w in &lost {
        assert!(
            crashes
                .iter()
                .any(|&(n, at)| n == w.node && at >= w.at_us && at - w.at_us <= interval_us),
            "seed {seed}: write at {} µs on node {} lost without a crash within the interval",
            w.at_us,
            w.node
        );
    }
    assert!(
        !lost.is_empty(),
        "relaxed mode with whole-cluster crashes should lose some writes (the model saves at commits only)"
    );
}

#[test]
fn without_a_data_directory_a_restart_keeps_nothing() {
    let seed = seed(13);
    let mut sim = Sim::new(SimConfig {
        nodes: 1,
        seed,
        gossip: Config::default(),
        net: NetModel::default(),
        join_window_us: 0,
        joined: false,
    });
    sim.set_durability(SimDurability::None);
    sim.run_until(S);
    sim.write(0, "a", Some(b"1".to_vec()));
    sim.schedule_action(2 * S, Action::Crash(0));
    sim.schedule_action(
        3 * S,
        Action::Restart {
            node: 0,
            keep_state: true,
        },
    );
    sim.run_until(4 * S);
    assert_eq!(sim.engine(0).map(|e| e.store().len()), Some(0));
    assert_eq!(sim.stats().commits, 0);
}

#[test]
fn crash_loop_scenario_keeps_every_write_and_reuses_no_dot() {
    let path = "scenarios/crash-loop-durable.toml";
    let sc = Scenario::from_toml(
        include_str!("../../scenarios/crash-loop-durable.toml"),
        path,
    )
    .expect("scenario parses");
    let seed = seed(sc.seed);
    let r = sc.run(seed);
    println!("{}", r.table());
    assert!(
        r.passed(),
        "{path} failed with seed {seed}; replay: cargo run --release -- sim {path} --seed {seed}\n{}",
        r.table()
    );
    assert!(
        r.properties
            .iter()
            .any(|p| p.name == "no_dot_reuse" && p.pass),
        "the dot reuse property was not checked"
    );
    assert!(r.writes > 2_000);
}
