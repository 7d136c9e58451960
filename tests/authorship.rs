//! Real QUIC: signed writes and write grants (ARCHITECTURE.md, "Authorship").
//!
//! A compromised member holding a valid certificate, granted only `rogue/`, speaks the
//! sync protocol by hand. It forges an entry in an honest node's name, alters an honest
//! entry it relays, writes outside its grant and sends an unsigned entry: every honest
//! node refuses all of them, counts them by reason, never counts their dots as seen, and
//! keeps replicating; the rogue's own write inside its grant is accepted.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gossamer::core::authority::Authority;
use gossamer::core::state::{signed_bytes, CausalContext, Entry, Hlc, VersionVector};
use gossamer::core::{Config, NodeId};
use gossamer::local::{node_name, wait_for, LocalCluster};
use gossamer::node::{certs_key, NodeAuthority, NodeError};

mod rogue;

use rogue::lying_exchange;

const DEADLINE: Duration = Duration::from_secs(20);

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// An entry of `writer`'s, signed by `signer`.
fn signed(
    signer: &mut NodeAuthority,
    key: &str,
    value: Option<&[u8]>,
    writer: &NodeId,
    counter: u64,
) -> Entry {
    let mut vv = VersionVector::new();
    vv.set(writer.clone(), counter);
    let hlc = Hlc {
        ms: wall_ms(),
        lc: 0,
    };
    let sig = signer.sign(&signed_bytes(key, value, &vv, hlc, writer));
    Entry {
        key: key.into(),
        value: value.map(<[u8]>::to_vec),
        vv,
        hlc,
        writer: writer.clone(),
        sig,
        siblings: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compromised_member_can_neither_forge_alter_nor_write_outside_its_grant() {
    let mut c = LocalCluster::start(3, 1, Config::local()).await.unwrap();
    let (ok, _) = wait_for(DEADLINE, || c.fully_joined()).await;
    assert!(ok, "the honest nodes did not join");
    let (victim, honest) = (c.nodes[0].clone(), c.nodes[1].clone());
    honest.set("app/config", b"honest".to_vec()).unwrap();
    let (ok, _) = wait_for(DEADLINE, || c.agree_on("app/config", Some(b"honest"))).await;
    assert!(ok, "the honest write did not replicate");

    // The rogue: a certificate of the fleet's CA, granted only keys under rogue/.
    let rogue_id = node_name(9);
    gossamer::identity::write_node_granted(
        c.certs_dir(),
        &rogue_id,
        &[IpAddr::V4(Ipv4Addr::LOCALHOST)],
        &[],
        &["rogue/".to_string()],
        None,
        1,
    )
    .unwrap();
    let (id, trust) = gossamer::identity::load(c.certs_dir(), &rogue_id).unwrap();
    let mut keys = NodeAuthority::new(&id, &trust, wall_ms).unwrap();
    let rogue = c.endpoint_as(&rogue_id).unwrap();
    let addr = victim.advertise_addr().to_string();

    // Its certificates, so receivers know its key, and one write within its grant.
    let certs = keys.certs_value(None).unwrap();
    let mut entries = vec![
        signed(&mut keys, &certs_key(&rogue_id), Some(&certs), &rogue_id, 1),
        signed(&mut keys, "rogue/ok", Some(b"mine"), &rogue_id, 2),
    ];
    // 1. An entry in the honest node's name, signed with the rogue's key.
    let forged = signed(
        &mut keys,
        "app/config",
        Some(b"forged"),
        &node_name(2),
        1 << 60,
    );
    entries.push(forged);
    // 2. The honest entry it relays, with the value altered.
    let honest_id = node_name(2);
    let mut altered = Entry {
        key: "app/config".into(),
        ..signed(&mut keys, "x", None, &honest_id, 1)
    };
    {
        let e = honest_entry(&honest, "app/config");
        altered.vv = e.0;
        altered
            .vv
            .set(honest_id.clone(), altered.vv.get(&honest_id) + 1);
        altered.hlc = e.1;
        altered.sig = e.2;
        altered.value = Some(b"altered".to_vec());
    }
    entries.push(altered);
    // 3. In its own name, signed, but outside its grant.
    entries.push(signed(&mut keys, "app/other", Some(b"x"), &rogue_id, 3));
    // 4. Unsigned.
    let mut unsigned = signed(&mut keys, "rogue/unsigned", Some(b"u"), &rogue_id, 4);
    unsigned.sig = Default::default();
    entries.push(unsigned);
    let nothing = (CausalContext::new(), CausalContext::new());
    lying_exchange(&rogue, &addr, &node_name(1), nothing, entries).await;

    // The stream's data is acknowledged before the node has handled it: wait until it
    // has judged all four lies (or the deadline), then check each verdict.
    let judged = || {
        let r = victim.writes_refused();
        r.unknown_writer + r.bad_signature + r.outside_grant + r.unsigned >= 4
    };
    let (_, _) = wait_for(DEADLINE, judged).await;
    let refused = victim.writes_refused();
    println!("victim refused: {refused:?}");
    assert!(
        refused.unknown_writer + refused.bad_signature >= 2,
        "the forged and the altered entries were not both refused: {refused:?}"
    );
    assert_eq!(refused.outside_grant, 1, "{refused:?}");
    assert_eq!(refused.unsigned, 1, "{refused:?}");
    let ctx = victim.context();
    assert!(
        ctx.max(&honest_id) < 1 << 59,
        "a refused dot of the honest writer counts as seen"
    );
    for key in ["rogue/unsigned", "app/other"] {
        assert!(victim.get(key).is_none(), "{key} was applied");
    }
    assert_eq!(victim.get("app/config").unwrap().value, b"honest");
    assert_eq!(
        victim.get("rogue/ok").map(|e| e.value),
        Some(b"mine".to_vec()),
        "the rogue's write within its grant was refused"
    );

    // The honest writer's later writes still replicate, everywhere.
    honest.set("app/config", b"honest-2".to_vec()).unwrap();
    let (ok, t) = wait_for(DEADLINE, || c.agree_on("app/config", Some(b"honest-2"))).await;
    assert!(ok, "honest writes stopped replicating after the forgeries");
    println!("honest write everywhere {t:?} after the forgeries");

    // The grant binds at the writer too: a node started with the rogue's certificate
    // refuses to write outside it, naming the prefixes.
    let cfg = c.config(9, c.seed_addrs());
    let granted = c.start_with(cfg).await.unwrap();
    match granted.set("app/x", b"v".to_vec()) {
        Err(e @ NodeError::State(_)) => {
            let msg = e.to_string();
            assert!(
                msg.contains("rogue/"),
                "the refusal does not name the grant: {msg}"
            );
        }
        other => panic!("a write outside the grant was not refused: {other:?}"),
    }
    granted.set("rogue/y", b"v".to_vec()).unwrap();
    let (ok, _) = wait_for(DEADLINE, || c.agree_on("rogue/y", Some(b"v"))).await;
    assert!(ok, "a write within the grant did not replicate");
    c.shutdown().await;
}

/// The honest node's stored entry for `key`: its vector, stamp and signature.
fn honest_entry(
    node: &gossamer::node::Node,
    key: &str,
) -> (VersionVector, Hlc, gossamer::core::state::Signature) {
    let e = node.entry(key).expect("the honest node holds the key");
    (e.vv, e.hlc, e.sig)
}
