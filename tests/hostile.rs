//! Real QUIC: a member holding a valid certificate of the fleet speaks the sync protocol by
//! hand and lies in it. Its forged contexts, fences, stamps and dots are contained, and the
//! honest members keep replicating between themselves (ARCHITECTURE.md, "Data model").

use std::time::Duration;

use gossamer::core::authority::Authority;
use gossamer::core::state::{signed_bytes, CausalContext, Entry, Hlc, RangeSet, VersionVector};
use gossamer::core::{Config, NodeId};
use gossamer::local::{node_name, wait_for, LocalCluster};
use gossamer::node::{certs_key, NodeAuthority};

mod rogue;

use rogue::lying_exchange;

const DEADLINE: Duration = Duration::from_secs(20);

fn entry(
    keys: &mut NodeAuthority,
    key: &str,
    value: &[u8],
    writer: &NodeId,
    vv: &[(NodeId, u64)],
    ms: u64,
) -> Entry {
    let mut v = VersionVector::default();
    for (w, c) in vv {
        v.set(w.clone(), *c);
    }
    let hlc = Hlc { ms, lc: u32::MAX };
    // Signed with the rogue's own key: the lies are in what it signs.
    let sig = keys.sign(&signed_bytes(key, Some(value), &v, hlc, writer));
    Entry {
        key: key.into(),
        value: Some(value.to_vec()),
        vv: v,
        hlc,
        writer: writer.clone(),
        sig,
        siblings: Vec::new(),
    }
}

fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_member_cannot_poison_contexts_clocks_or_counters() {
    let c = LocalCluster::start(3, 1, Config::local()).await.unwrap();
    let (ok, _) = wait_for(DEADLINE, || c.fully_joined()).await;
    assert!(ok, "the honest nodes did not join");
    let (victim, honest) = (&c.nodes[0], &c.nodes[1]);
    honest.set("before", b"1".to_vec()).unwrap();
    let (ok, _) = wait_for(DEADLINE, || c.agree_on("before", Some(b"1"))).await;
    assert!(ok);

    // The rogue holds a valid certificate (n4, the spare) and speaks for itself: its
    // lies are in what it sends, not in who it is.
    let rogue_id = node_name(4);
    let rogue = c.endpoint_as(&rogue_id).unwrap();
    let (id, trust) = gossamer::identity::load(c.certs_dir(), &rogue_id).unwrap();
    let mut keys = NodeAuthority::new(&id, &trust, wall_ms).unwrap();
    let certs = keys.certs_value(None).unwrap();
    let certs = entry(
        &mut keys,
        &certs_key(&rogue_id),
        &certs,
        &rogue_id,
        &[(rogue_id.clone(), 1)],
        wall_ms(),
    );
    let addr = victim.advertise_addr().to_string();
    let every = |range: (u64, u64)| {
        let mut ctx = CausalContext::new();
        for i in 1..=4 {
            ctx.0
                .insert(node_name(i), RangeSet::from_ranges(vec![range]));
        }
        ctx
    };
    // 1. A context claiming every writer's whole future, and an entry of its own
    //    stamped at the end of time.
    let far = entry(
        &mut keys,
        "rogue/far",
        b"forged",
        &rogue_id,
        &[(rogue_id.clone(), 7)],
        u64::MAX,
    );
    lying_exchange(
        &rogue,
        &addr,
        &node_name(1),
        (every((1, u64::MAX)), CausalContext::new()),
        vec![certs, far],
    )
    .await;
    // 2. An entry naming a dot of the victim's own that it never issued.
    let own = entry(
        &mut keys,
        "rogue/own",
        b"forged",
        &rogue_id,
        &[(node_name(1), u64::MAX - 1), (rogue_id.clone(), 8)],
        1,
    );
    lying_exchange(
        &rogue,
        &addr,
        &node_name(1),
        (CausalContext::new(), CausalContext::new()),
        vec![own],
    )
    .await;
    // 3. A fence claiming it collected deletes over every write there will ever be:
    //    ignored (no writer can have issued those dots yet) ...
    lying_exchange(
        &rogue,
        &addr,
        &node_name(1),
        (CausalContext::new(), every((1, u64::MAX))),
        vec![],
    )
    .await;
    //    ... and one over every write there can be by now: the victim rebases against
    //    it, but drops nothing younger than the grace.
    let now_ms = wall_ms();
    lying_exchange(
        &rogue,
        &addr,
        &node_name(1),
        (CausalContext::new(), every((1, now_ms << 10))),
        vec![],
    )
    .await;
    // 4. Look at the context the victim now opens exchanges with.
    let no_lies = (CausalContext::new(), CausalContext::new());
    let seen = lying_exchange(&rogue, &addr, &node_name(1), no_lies, vec![]).await;
    for i in 1..=3 {
        let max = seen.max(&node_name(i));
        assert!(
            max < u64::MAX / 2,
            "the victim claims n{i}'s dots up to {max}: the forged context was believed"
        );
    }

    // The victim's clock and counter are sane, and it still writes.
    let s = victim.engine_stats();
    assert!(s.stamps_clamped >= 1, "the far stamp was not seen");
    assert!(s.items_invalid >= 1, "the forged own dot was not refused");
    assert!(victim.get("rogue/own").is_none());
    assert_eq!(s.fences_refused, 1, "the impossible fence was not refused");
    assert_eq!(s.rebases, 1, "the plausible fence was not tried");
    assert!(
        victim.get("before").is_some(),
        "the forged fence made the victim drop a recent write"
    );
    victim
        .set("after/victim", b"v".to_vec())
        .expect("the victim still writes");
    let mine = victim.get("after/victim").unwrap();
    assert!(mine.version[node_name(1).as_str()] < u64::MAX / 2);
    assert!(mine.hlc_ms < u64::MAX / 2, "the victim's clock was dragged");

    // The honest members keep replicating between themselves, both ways.
    honest.set("after/honest", b"h".to_vec()).unwrap();
    let (ok, t) = wait_for(DEADLINE, || {
        c.agree_on("after/honest", Some(b"h")) && c.agree_on("after/victim", Some(b"v"))
    })
    .await;
    assert!(ok, "honest writes stopped replicating after the lies");
    println!("honest writes everywhere {t:?} after the lies");
    c.shutdown().await;
}
