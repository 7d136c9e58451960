//! Real-QUIC integration tests: in-process nodes on 127.0.0.1.

use std::collections::BTreeMap;
use std::time::Duration;

use gossamer::core::proto::{MemberInfo, MemberState, MemberStatus, SyncFrame, SyncKind};
use gossamer::core::state::CausalContext;
use gossamer::core::{Config, NodeId};
use gossamer::local::{node_name, wait_for, LocalCluster};
use gossamer::transport::{self, QuicSettings, Transport};

const DEADLINE: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_converge_after_concurrent_writes() {
    let c = LocalCluster::start(3, 0, Config::local()).await.unwrap();
    let (ok, t) = wait_for(DEADLINE, || c.fully_joined()).await;
    assert!(
        ok,
        "three nodes did not see each other alive within {DEADLINE:?}"
    );
    println!("joined in {t:?}");
    // Distinct keys on each node, then the same key on every node at once.
    for (i, n) in c.nodes.iter().enumerate() {
        n.set(&format!("own/{i}"), format!("v{i}").into_bytes())
            .unwrap();
    }
    for (i, n) in c.nodes.iter().enumerate() {
        n.set("shared", format!("from-{i}").into_bytes()).unwrap();
    }
    let (ok, t) = wait_for(DEADLINE, || {
        (0..3).all(|i| c.agree_on(&format!("own/{i}"), Some(format!("v{i}").as_bytes())))
    })
    .await;
    assert!(ok, "distinct keys did not converge");
    println!("distinct keys converged in {t:?}");
    let (ok, _) = wait_for(DEADLINE, || {
        let vals: Vec<_> = c.nodes.iter().map(|n| n.get("shared")).collect();
        vals.iter().all(|v| {
            v.is_some()
                && v.as_ref().map(|e| &e.version) == vals[0].as_ref().map(|e| &e.version)
                && v.as_ref().map(|e| &e.value) == vals[0].as_ref().map(|e| &e.value)
        })
    })
    .await;
    assert!(ok, "nodes did not agree on the concurrently written key");
    let winner = c.nodes[0].get("shared").unwrap();
    // The winner is the largest (hlc, writer), and every node's version vector names all three writes.
    assert_eq!(
        winner.version.len(),
        3,
        "merged version vector: {:?}",
        winner.version
    );
    for n in &c.nodes {
        let e = n.get("shared").unwrap();
        assert_eq!(
            (e.writer.clone(), e.value.clone()),
            (winner.writer.clone(), winner.value.clone())
        );
    }
    // Deletes converge too.
    c.nodes[1].delete("own/0").unwrap();
    let (ok, _) = wait_for(DEADLINE, || c.agree_on("own/0", None)).await;
    assert!(ok, "delete did not converge");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_joiner_gets_full_state_by_anti_entropy_without_datagrams() {
    let cfg = Config {
        push: gossamer::core::PushMode::Off,
        ..Config::local()
    };
    let mut c = LocalCluster::start(2, 1, cfg).await.unwrap();
    let (ok, _) = wait_for(DEADLINE, || c.fully_joined()).await;
    assert!(ok);
    for i in 0..300 {
        c.nodes[i % 2]
            .set(&format!("k/{i:04}"), vec![i as u8; 100])
            .unwrap();
    }
    // k/0006 was written by node 0 itself, so it holds a live value to delete.
    assert!(c.nodes[0].delete("k/0006").unwrap());
    let seeds = c.seed_addrs();
    let late = c.add_node(3, seeds).await.unwrap();
    let (ok, t) = wait_for(DEADLINE, || {
        late.list("k/").len() == 299 && c.nodes.iter().all(|n| n.list("k/").len() == 299)
    })
    .await;
    assert!(
        ok,
        "late joiner holds {} of 299 keys",
        late.list("k/").len()
    );
    println!("late joiner caught up in {t:?}");
    assert!(late.get("k/0006").is_none(), "deleted key resurrected");
    assert_eq!(
        late.get("k/0299").unwrap().value,
        vec![(299 % 256) as u8; 100]
    );
    // Nothing was written while it joined, so no datagram carried an entry: every key
    // (and the delete) came by anti-entropy. (Its SWIM probes are datagrams, so a count
    // of datagrams sent says nothing here: every 500 ms it probes a member.)
    let applied = late.engine_stats().sync_entries_applied;
    assert!(
        applied >= 300,
        "only {applied} entries came by anti-entropy; 299 keys and a delete were due"
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_claiming_another_identity_is_refused_and_counted() {
    let c = LocalCluster::start(1, 2, Config::local()).await.unwrap();
    let target = &c.nodes[0];
    // A rogue holding a valid certificate for n3 that claims to be n2.
    let rogue = c.endpoint_as(&node_name(3)).unwrap();
    let (peer, conn) = rogue
        .connect(target.advertise_addr(), Some(&node_name(1)))
        .await
        .unwrap();
    assert_eq!(peer, node_name(1));
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(&[gossamer::wire::STREAM_SYNC])
        .await
        .unwrap();
    let claim = MemberState {
        info: MemberInfo {
            id: node_name(2),
            addr: "127.0.0.1:1".into(),
            dc: "default".into(),
            zone: String::new(),
            tags: BTreeMap::new(),
        }
        .into(),
        incarnation: u64::MAX / 2,
        status: MemberStatus::Alive,
    };
    // Follow the protocol: Open, End; read the responder's turn; then our member list,
    // which names us as n2.
    let open = SyncFrame::Open {
        kind: SyncKind::Join,
        ctx: CausalContext::new(),
        gc_horizon_ms: 0,
        stable: Default::default(),
        members_digest: 0,
        compact: false,
        same: 0,
        digest: None,
        again: false,
        reads_held: false,
    };
    for f in [open, SyncFrame::End] {
        transport::write_frame(&mut send, &f).await.unwrap();
    }
    loop {
        let (f, _) = transport::read_frame(&mut recv).await.unwrap();
        if f == SyncFrame::End {
            break;
        }
    }
    // The target closes the connection as soon as it reads the forged claim, so the
    // write of `End` after it may already fail: that is the refusal under test.
    for f in [SyncFrame::Members(vec![claim]), SyncFrame::End] {
        if transport::write_frame(&mut send, &f).await.is_err() {
            break;
        }
    }
    let (closed, _) = wait_for(DEADLINE, || conn.close_reason().is_some()).await;
    assert!(closed, "the impostor's connection was not closed");
    let mismatches = target
        .runtime_stats()
        .identity_mismatch
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(mismatches, 1);
    assert!(
        target.members().iter().all(|m| m.id != node_name(2)),
        "the forged member was accepted"
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_without_cert_or_from_another_ca_are_refused_and_counted() {
    let c = LocalCluster::start(1, 0, Config::local()).await.unwrap();
    let target = &c.nodes[0];
    // Another CA, same cluster name and node name.
    let other = tempfile::tempdir().unwrap();
    gossamer::local::generate_certs(other.path(), "local", &[NodeId::new("n2").unwrap()]).unwrap();
    let (id, _) = gossamer::identity::load(other.path(), &NodeId::new("n2").unwrap()).unwrap();
    // It trusts our CA (so it goes on to present its own certificate) but its
    // certificate comes from the other CA.
    let ours = std::fs::read_to_string(c.certs_dir().join("ca.pem")).unwrap();
    let trust = gossamer::identity::TrustBundle::from_pem(&ours).unwrap();
    let stranger = Transport::bind(
        "127.0.0.1:0".parse().unwrap(),
        id,
        trust,
        QuicSettings::default(),
    )
    .unwrap();
    // In TLS 1.3 the client completes its side before the server judges the client
    // certificate, so the refusal arrives as an immediate close.
    if let Ok((_, conn)) = stranger.connect(target.advertise_addr(), None).await {
        let (closed, _) = wait_for(DEADLINE, || conn.close_reason().is_some()).await;
        assert!(closed, "a certificate from another CA was accepted");
    }
    let hs = target.handshake_stats();
    let (counted, _) = wait_for(DEADLINE, || hs.snapshot().unknown_ca >= 1).await;
    assert!(counted, "refusal not counted: {:?}", hs.snapshot());
    // No client certificate at all.
    let (_, trust) = gossamer::identity::load(c.certs_dir(), &node_name(1)).unwrap();
    let roots = trust.roots().clone();
    let mut tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls.alpn_protocols = vec![gossamer::identity::ALPN.to_vec()];
    let qc = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ep.set_default_client_config(quinn::ClientConfig::new(std::sync::Arc::new(qc)));
    let addr: std::net::SocketAddr = target.advertise_addr().parse().unwrap();
    let r = async {
        ep.connect(addr, "localhost")
            .unwrap()
            .await?
            .accept_uni()
            .await
    }
    .await;
    assert!(
        r.is_err(),
        "a client without certificate got a working connection"
    );
    let (counted, _) = wait_for(DEADLINE, || hs.snapshot().no_certificate >= 1).await;
    assert!(
        counted,
        "missing certificate not counted: {:?}",
        hs.snapshot()
    );
    assert!(target.members().len() == 1, "no stranger became a member");
    c.shutdown().await;
}

fn swim_fast() -> Config {
    Config {
        probe_interval_ms: 200,
        probe_timeout_ms: 100,
        suspicion_mult: 2,
        ..Config::local()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_updates_and_a_graceful_leave_reach_every_member() {
    let c = LocalCluster::start(3, 0, Config::local()).await.unwrap();
    let (ok, _) = wait_for(DEADLINE, || c.fully_joined()).await;
    assert!(ok);
    let mut events = c.nodes[0].subscribe();
    let tags: BTreeMap<String, String> = [("role".to_string(), "db".to_string())].into();
    c.nodes[1]
        .update_meta("dc-east", "z1", tags.clone())
        .unwrap();
    let (ok, t) = wait_for(DEADLINE, || {
        [0, 2].iter().all(|&i| {
            c.nodes[i].members().iter().any(|m| {
                m.id == node_name(2) && m.dc == "dc-east" && m.zone == "z1" && m.tags == tags
            })
        })
    })
    .await;
    assert!(ok, "metadata update did not reach every member");
    println!("metadata reached every member in {t:?}");
    let start = std::time::Instant::now();
    c.nodes[2].leave().await.unwrap();
    let (ok, _) = wait_for(DEADLINE, || {
        [0, 1].iter().all(|&i| {
            c.nodes[i]
                .members()
                .iter()
                .any(|m| m.id == node_name(3) && m.status == "left")
        })
    })
    .await;
    assert!(ok, "the leave was not learned");
    println!("leave learned everywhere in {:?}", start.elapsed());
    // The subscriber heard both changes.
    let mut saw_update = false;
    let mut saw_leave = false;
    while let Ok(Some(ev)) = events.try_recv() {
        if let gossamer::core::Event::Member(gossamer::core::membership::Change::Updated {
            new,
            ..
        }) = ev
        {
            saw_update |= new.info.id == node_name(2) && new.info.dc == "dc-east";
            saw_leave |= new.info.id == node_name(3) && new.status == MemberStatus::Left;
        }
    }
    assert!(
        saw_update && saw_leave,
        "subscriber missed events (update {saw_update}, leave {saw_leave})"
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_node_is_detected_by_every_live_node_over_quic() {
    let c = LocalCluster::start(4, 0, swim_fast()).await.unwrap();
    let (ok, _) = wait_for(DEADLINE, || c.fully_joined()).await;
    assert!(ok);
    // A hard stop: no leave announcement.
    c.nodes[3].shutdown().await;
    let start = std::time::Instant::now();
    let (ok, _) = wait_for(DEADLINE, || {
        (0..3).all(|i| {
            c.nodes[i]
                .members()
                .iter()
                .any(|m| m.id == node_name(4) && m.status == "dead")
        })
    })
    .await;
    assert!(ok, "the crash was not detected everywhere");
    println!("crash detected by every live node in {:?}", start.elapsed());
    // Nobody else was declared failed.
    for i in 0..3 {
        for m in c.nodes[i].members() {
            if m.id != node_name(4) {
                assert_eq!(
                    m.status,
                    "alive",
                    "{} sees {} as {}",
                    node_name(i + 1),
                    m.id,
                    m.status
                );
            }
        }
    }
    c.shutdown().await;
}

/// #18: an idle connection sends no keep-alive for a minute (SWIM's own traffic keeps a
/// connection open in a cluster; keep-alives on every open connection were the idle cost
/// that grew with N), and stays open meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_stays_open_without_keep_alives() {
    let c = LocalCluster::start(1, 1, Config::local()).await.unwrap();
    // A connection nobody sends on: n2 is no member, so the node neither probes it nor
    // syncs with it.
    let peer = c.endpoint_as(&node_name(2)).unwrap();
    let (_, conn) = peer
        .connect(c.nodes[0].advertise_addr(), Some(&node_name(1)))
        .await
        .unwrap();
    // Not synchronisation but the windows the PINGs are counted in. quinn's path MTU
    // discovery probes are PINGs too, a few right after the handshake (round trips of
    // microseconds here): count from 3 s on. Over the next 16 s the 15 s keep-alive of
    // before sent a PING; the 60 s one sends none.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let start = conn.stats().frame_tx.ping + conn.stats().frame_rx.ping;
    tokio::time::sleep(Duration::from_secs(16)).await;
    let stats = conn.stats();
    let pings = stats.frame_tx.ping + stats.frame_rx.ping - start;
    assert!(conn.close_reason().is_none(), "the idle connection closed");
    assert_eq!(pings, 0, "{pings} keep-alive PINGs in 16 s");
    assert!(
        QuicSettings::default().keep_alive * 3 <= QuicSettings::default().idle_timeout,
        "a lost keep-alive must have room to be resent within the idle timeout"
    );
    c.shutdown().await;
}
