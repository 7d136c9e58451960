//! A member that forges and alters writes in the simulator (#17): everything it makes up
//! in another writer's name or changes in a relayed entry is refused by signature, and the
//! honest members still hold every write, with identical stores, at 10 % loss.

use super::*;
use crate::core::authority::Authority;
use crate::core::state::{signed_bytes, Entry, Hlc, VersionVector};

#[test]
fn a_member_forging_and_altering_writes_is_refused_and_replication_goes_on() {
    let text = "name = \"forger\"\nnodes = 20\nseed = 11\nduration_s = 30\n\
                [network]\nlatency_ms = 5\njitter_ms = 2\nloss = 0.1\n\
                [workload]\nwrites_per_sec = 20\nkeys = 20\nstart_s = 3\ndeletes = 0.2\n";
    let sc = Scenario::from_toml(text, "forger (inline)").unwrap();
    let seed = std::env::var("GOSSAMER_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(sc.seed);
    println!("forging member: seed {seed}");
    let mut sim = sc.build(seed);
    const FORGER: usize = 3;
    let mut keys = sim.authority_of(FORGER);
    sim.tamper_sync_frames(
        FORGER,
        Box::new(move |turn: &mut Vec<SyncFrame>| {
            let mut forged = Vec::new();
            for f in turn.iter_mut() {
                if let SyncFrame::Entries(es) = f {
                    for e in es.iter_mut().filter(|e| e.writer != sim_id(FORGER)) {
                        // Relays every other writer's entry with its value changed.
                        e.value = Some(b"altered".to_vec());
                    }
                }
            }
            // And makes up a write in node 0's name, signed with its own key.
            let mut vv = VersionVector::default();
            vv.set(sim_id(0), 1 << 61);
            let hlc = Hlc { ms: 1 << 42, lc: 0 };
            let bytes = signed_bytes("k0", Some(b"forged"), &vv, hlc, &sim_id(0));
            forged.push(Entry {
                key: "k0".into(),
                value: Some(b"forged".to_vec()),
                vv,
                hlc,
                writer: sim_id(0),
                sig: keys.sign(&bytes),
                siblings: Vec::new(),
            });
            let at = turn.len().saturating_sub(1);
            turn.insert(at, SyncFrame::Entries(forged));
        }),
    );
    sim.run_until(60_000_000);
    let honest: Vec<usize> = (0..sim.len()).filter(|&i| i != FORGER).collect();
    let missing = sim
        .writes()
        .iter()
        .flat_map(|w| honest.iter().map(move |&i| (i, w)))
        .filter(|(i, w)| !w.held_by(sim.engine(*i).unwrap().store()))
        .count();
    assert_eq!(missing, 0, "seed {seed}: writes missing on honest nodes");
    for &i in &honest {
        let e = sim.engine(i).unwrap();
        for entry in e.store().iter() {
            assert!(
                !matches!(entry.value.as_deref(), Some(b"altered" | b"forged")),
                "seed {seed}: node {i} applied {entry:?}"
            );
        }
        assert!(
            e.store().context().max(&sim_id(0)) < 1 << 60,
            "seed {seed}: node {i} counts the forged dot as seen"
        );
    }
    let refused: u64 = honest
        .iter()
        .map(|&i| sim.engine(i).unwrap().writes_refused().bad_signature)
        .sum();
    println!("bad signatures refused on honest nodes: {refused}");
    assert!(
        refused > 0,
        "seed {seed}: no forgery reached an honest node"
    );
    assert!(sim.stores_identical(), "seed {seed}: stores differ");
}
