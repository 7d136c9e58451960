//! Real QUIC through the chaos socket: in-process nodes on 127.0.0.1, each on a
//! [`ChaosSocket`], under loss and partitions.
//!
//! Seeds are fixed so runs are reproducible; set `GOSSAMER_CHAOS_SEED` to try others.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use gossamer::chaos::{self, ChaosControl, ChaosSocket, ChaosStats, Faults};
use gossamer::core::engine::LOSSY_PERMILLE;
use gossamer::core::Config;
use gossamer::local::{wait_for, LocalCluster};

const DEADLINE: Duration = Duration::from_secs(30);

fn seed(default: u64) -> u64 {
    let s = std::env::var("GOSSAMER_CHAOS_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    println!("chaos seed: {s} (GOSSAMER_CHAOS_SEED={s} reproduces the fault decisions)");
    s
}

/// Starts `n` nodes, node `i` on a chaos socket seeded `seed + i` with `faults` already
/// applied (so joining happens under them too); every node seeds from the first.
async fn chaos_cluster(n: usize, seed: u64, faults: Faults) -> (LocalCluster, Vec<ChaosControl>) {
    chaos_cluster_with(n, seed, faults, Config::local()).await
}

/// [`chaos_cluster`] with the given protocol timings.
async fn chaos_cluster_with(
    n: usize,
    seed: u64,
    faults: Faults,
    gossip: Config,
) -> (LocalCluster, Vec<ChaosControl>) {
    let mut c = LocalCluster::start(0, n, gossip)
        .await
        .expect("certificates");
    let mut controls = Vec::new();
    for i in 1..=n {
        let (sock, ctl) =
            ChaosSocket::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), seed + i as u64)
                .expect("bind 127.0.0.1");
        ctl.set_faults(faults);
        let cfg = c.config(i, c.seed_addrs());
        c.start_with_socket(cfg, sock).await.expect("node start");
        controls.push(ctl);
    }
    (c, controls)
}

fn total(controls: &[ChaosControl]) -> ChaosStats {
    controls
        .iter()
        .fold(ChaosStats::default(), |a, c| a.add(&c.stats()))
}

/// True once every node holds `value` under `key`.
fn everywhere(c: &LocalCluster, key: &str, value: &[u8]) -> bool {
    c.agree_on(key, Some(value))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_converge_under_twenty_percent_loss() {
    let seed = seed(0x5eed_0001);
    let faults = Faults {
        loss: 0.2,
        ..Faults::none()
    };
    let (c, controls) = chaos_cluster(5, seed, faults).await;
    let (ok, t) = wait_for(DEADLINE, || c.fully_joined()).await;
    assert!(
        ok,
        "5 nodes at 20 % loss did not all see each other alive within {DEADLINE:?} (seed {seed})"
    );
    println!("joined in {t:?}");

    let mut writes = Vec::new();
    for round in 0..3 {
        for (i, n) in c.nodes.iter().enumerate() {
            let (k, v) = (format!("loss/{i}/{round}"), format!("v{i}.{round}"));
            n.set(&k, v.clone().into_bytes()).unwrap();
            writes.push((k, v));
        }
    }
    let (ok, t) = wait_for(DEADLINE, || {
        writes.iter().all(|(k, v)| everywhere(&c, k, v.as_bytes()))
    })
    .await;
    let missing: Vec<_> = writes
        .iter()
        .filter(|(k, v)| !everywhere(&c, k, v.as_bytes()))
        .map(|(k, _)| k.clone())
        .collect();
    assert!(
        ok,
        "{} writes on 5 nodes did not reach every node within {DEADLINE:?} at 20 % loss (seed {seed}); missing somewhere: {missing:?}",
        writes.len()
    );
    let st = total(&controls);
    println!(
        "{} writes everywhere in {t:?}; chaos: {} sent, {} dropped by loss",
        writes.len(),
        st.sent,
        st.dropped_loss
    );
    assert!(
        st.dropped_loss > 0,
        "the chaos sockets dropped nothing: {st:?}"
    );
    // Roughly 20 % of what was offered was dropped.
    let offered = st.sent + st.dropped_loss;
    let rate = st.dropped_loss as f64 / offered as f64;
    assert!((0.1..0.3).contains(&rate), "loss rate {rate:.3} ({st:?})");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_three_partition_heals_and_concurrent_writes_resolve_identically() {
    let seed = seed(0x5eed_0002);
    let (c, controls) = chaos_cluster(5, seed, Faults::none()).await;
    let (ok, t) = wait_for(DEADLINE, || c.fully_joined()).await;
    assert!(ok, "5 nodes did not join within {DEADLINE:?} (seed {seed})");
    println!("joined in {t:?}");

    // Nodes 1,2 | 3,4,5: each side blocks the other's addresses.
    let (left, right) = controls.split_at(2);
    chaos::partition(&[left, right]);
    let (a, b) = c.nodes.split_at(2);

    // Writes on both sides, and the same key written on each side.
    for (i, n) in c.nodes.iter().enumerate() {
        n.set(&format!("part/{i}"), format!("v{i}").into_bytes())
            .unwrap();
    }
    a[0].set("contested", b"left".to_vec()).unwrap();
    b[1].set("contested", b"right".to_vec()).unwrap();

    // Each side converges on its own writes...
    let side_has = |side: &[gossamer::node::Node], range: std::ops::Range<usize>| {
        side.iter().all(|n| {
            range.clone().all(|i| {
                n.get(&format!("part/{i}")).map(|e| e.value) == Some(format!("v{i}").into_bytes())
            })
        })
    };
    let (ok, _) = wait_for(DEADLINE, || {
        side_has(a, 0..2)
            && side_has(b, 2..5)
            && a.iter()
                .all(|n| n.get("contested").map(|e| e.value) == Some(b"left".to_vec()))
            && b.iter()
                .all(|n| n.get("contested").map(|e| e.value) == Some(b"right".to_vec()))
    })
    .await;
    assert!(
        ok,
        "the sides did not converge on their own writes (seed {seed})"
    );
    // ...and sees nothing of the other's: the partition holds.
    for n in a {
        for i in 2..5 {
            assert!(
                n.get(&format!("part/{i}")).is_none(),
                "{} saw part/{i} across the partition",
                n.id()
            );
        }
    }
    for n in b {
        for i in 0..2 {
            assert!(
                n.get(&format!("part/{i}")).is_none(),
                "{} saw part/{i} across the partition",
                n.id()
            );
        }
    }
    let during = total(&controls);
    assert!(
        during.dropped_partition() > 0,
        "nothing crossed the partition line: {during:?}"
    );
    println!(
        "partition held; {} datagrams dropped at the line",
        during.dropped_partition()
    );

    chaos::heal_partition(&controls);
    let (ok, t) = wait_for(DEADLINE, || {
        (0..5).all(|i| everywhere(&c, &format!("part/{i}"), format!("v{i}").as_bytes()))
    })
    .await;
    assert!(ok, "writes from both sides did not reach every node within {DEADLINE:?} of the heal (seed {seed})");
    println!("every write everywhere {t:?} after the heal");

    // Concurrent writes to one key resolve identically everywhere, folding in both writes.
    let (ok, _) = wait_for(DEADLINE, || {
        let first = c.nodes[0].get("contested");
        first.as_ref().is_some_and(|f| f.version.len() == 2)
            && c.nodes.iter().all(|n| n.get("contested") == first)
    })
    .await;
    let views: Vec<_> = c
        .nodes
        .iter()
        .map(|n| n.get("contested").map(|e| (e.value, e.writer, e.version)))
        .collect();
    assert!(
        ok,
        "the contested key did not resolve identically (seed {seed}): {views:?}"
    );
    let winner = c.nodes[0].get("contested").unwrap();
    assert!(
        winner.value == b"left" || winner.value == b"right",
        "winner {:?}",
        winner.value
    );
    println!(
        "contested key resolved to {:?} everywhere",
        String::from_utf8_lossy(&winner.value)
    );

    let (ok, t) = wait_for(DEADLINE, || c.fully_joined()).await;
    let alive: Vec<_> = c
        .nodes
        .iter()
        .map(|n| (n.id().to_string(), n.alive_count()))
        .collect();
    assert!(
        ok,
        "not every node sees every node alive after the heal (seed {seed}): {alive:?}"
    );
    println!("membership whole again {t:?} later");
    c.shutdown().await;
}

/// Node `node`'s view of the members with these ids: `(id, status)` for those it still
/// lists (an empty result means every one of them was reaped).
fn listed(node: &gossamer::node::Node, ids: &[&str]) -> Vec<(String, String)> {
    node.members()
        .into_iter()
        .filter(|m| ids.contains(&m.id.as_str()))
        .map(|m| (m.id.to_string(), m.status))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_outlasting_the_reap_timeout_remerges_through_seed_reprobing() {
    let seed = seed(0x5eed_0003);
    let cfg = Config {
        probe_interval_ms: 200,
        probe_timeout_ms: 100,
        suspicion_mult: 2,
        reap_timeout_ms: 2_000,
        gossip_interval_ms: 100,
        sync_interval_ms: 500,
        seed_backoff_floor_ms: 200,
        seed_backoff_cap_ms: 2_000,
        ..Config::default()
    };
    let cap = Duration::from_millis(cfg.seed_backoff_cap_ms);
    let (c, controls) = chaos_cluster_with(5, seed, Faults::none(), cfg).await;
    // LocalCluster: n1 has no seed, n2..n5 all seed n1's address. After the halves have
    // reaped each other, n3..n5 see their seed (n1) as no live member and keep dialing it
    // (backoff 200 ms .. 2 s); n1 and n2 have no seed across the line. The first dial that
    // gets through after the heal is what re-merges the cluster.
    let n1_addr = c.nodes[0].advertise_addr().to_string();
    println!("seed address of n2..n5: {n1_addr} (n1 has none)");
    let (ok, t) = wait_for(DEADLINE, || c.fully_joined()).await;
    assert!(ok, "5 nodes did not join within {DEADLINE:?} (seed {seed})");
    println!("joined in {t:?}");

    let (left, right) = controls.split_at(2);
    let (a, b) = c.nodes.split_at(2);
    let a_ids = ["n1", "n2"];
    let b_ids = ["n3", "n4", "n5"];
    chaos::partition(&[left, right]);
    let parted = std::time::Instant::now();
    println!("partition {{n1,n2}} | {{n3,n4,n5}}");

    // Both halves declare the other dead and then forget it: reap timeout (2 s) after the
    // death, but the engine only looks every 5 s, so 2..7 s after the death.
    let reap_deadline = Duration::from_secs(30);
    let down = |n: &gossamer::node::Node, ids: &[&str]| {
        listed(n, ids)
            .iter()
            .all(|(_, s)| s != "alive" && s != "suspect")
    };
    let (ok, t_down) = wait_for(reap_deadline, || {
        a.iter().all(|n| down(n, &b_ids)) && b.iter().all(|n| down(n, &a_ids))
    })
    .await;
    assert!(
        ok,
        "the halves did not declare each other dead within {reap_deadline:?} (seed {seed})"
    );
    println!("each half declared the other dead {t_down:?} after the partition began");
    let (ok, _) = wait_for(reap_deadline, || {
        a.iter().all(|n| listed(n, &b_ids).is_empty())
            && b.iter().all(|n| listed(n, &a_ids).is_empty())
    })
    .await;
    let views: Vec<_> = c
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let other: &[&str] = if i < 2 { &b_ids } else { &a_ids };
            (n.id().to_string(), listed(n, other))
        })
        .collect();
    assert!(
        ok,
        "the halves did not reap each other within {reap_deadline:?} (seed {seed}); other side as listed: {views:?}"
    );
    println!(
        "each half reaped the other {:?} after the partition began",
        parted.elapsed()
    );
    for n in &c.nodes {
        let st = n.engine_stats();
        assert!(
            st.reaped >= 2,
            "{} reaped only {} members",
            n.id(),
            st.reaped
        );
    }

    // Writes on both sides, including one key written on each side.
    let mut writes = Vec::new();
    for (i, n) in c.nodes.iter().enumerate() {
        let (k, v) = (format!("reaped/{i}"), format!("v{i}"));
        n.set(&k, v.clone().into_bytes()).unwrap();
        writes.push((k, v));
    }
    a[0].set("contested", b"left".to_vec()).unwrap();
    b[0].set("contested", b"right".to_vec()).unwrap();
    // Let each side take its own writes in; nothing may cross.
    let (ok, _) = wait_for(DEADLINE, || {
        a.iter()
            .all(|n| (0..2).all(|i| n.get(&format!("reaped/{i}")).is_some()))
            && b.iter()
                .all(|n| (2..5).all(|i| n.get(&format!("reaped/{i}")).is_some()))
    })
    .await;
    assert!(
        ok,
        "the halves did not converge on their own writes (seed {seed})"
    );
    assert!(
        a.iter().all(|n| n.get("reaped/2").is_none())
            && b.iter().all(|n| n.get("reaped/0").is_none()),
        "a write crossed the partition"
    );
    let seed_attempts_before: u64 = c.nodes.iter().map(|n| n.engine_stats().seed_attempts).sum();

    // Heal. Only seed re-probing (n3..n5 -> n1) can bring the halves back together: nobody
    // probes, gossips to or syncs with members it has forgotten. A dial across the line
    // stays in flight until the QUIC handshake timeout (10 s), so during the partition the
    // attempts are ~10 s apart whatever the backoff; after the heal the re-merge usually
    // comes from a retransmitted Initial of a dial already in flight.
    chaos::heal_partition(&controls);
    let limit = cap + Duration::from_secs(5);
    let merged = || {
        c.fully_joined() && writes.iter().all(|(k, v)| everywhere(&c, k, v.as_bytes())) && {
            let first = c.nodes[0].get("contested");
            first.as_ref().is_some_and(|f| f.version.len() == 2)
                && c.nodes.iter().all(|n| n.get("contested") == first)
        }
    };
    let (ok, t_merge) = wait_for(Duration::from_secs(60), merged).await;
    let alive: Vec<_> = c
        .nodes
        .iter()
        .map(|n| {
            (
                n.id().to_string(),
                n.alive_count(),
                n.engine_stats().seed_attempts,
            )
        })
        .collect();
    assert!(
        ok,
        "no re-merge within 60 s of the heal (seed {seed}); (node, alive, seed attempts): {alive:?}"
    );
    let seed_attempts_after: u64 = c.nodes.iter().map(|n| n.engine_stats().seed_attempts).sum();
    println!(
        "re-merged {t_merge:?} after the heal (5 alive everywhere, {} keys everywhere, contested = {:?}); \
         seed attempts (all nodes): {seed_attempts_before} at the heal, {seed_attempts_after} at the re-merge",
        writes.len() + 1,
        String::from_utf8_lossy(&c.nodes[0].get("contested").unwrap().value),
    );
    for n in &c.nodes {
        let st = n.engine_stats();
        println!(
            "  {}: suspicions {} deaths {} reaped {} refutations {} seed attempts {}",
            n.id(),
            st.suspicions,
            st.deaths,
            st.reaped,
            st.refutations,
            st.seed_attempts
        );
    }
    assert!(
        t_merge <= limit,
        "re-merge took {t_merge:?}, more than seed_backoff_cap + 5 s = {limit:?} (seed {seed})"
    );

    // And it stays merged: nobody is suspected again for a few probe rounds.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let alive: Vec<_> = c
        .nodes
        .iter()
        .map(|n| (n.id().to_string(), n.alive_count()))
        .collect();
    assert!(
        c.fully_joined(),
        "membership fell apart after the re-merge: {alive:?}"
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loss_quic_counts_reaches_the_engine_and_turns_repair_rounds_on() {
    let seed = seed(0x5eed_0005);
    let faults = Faults {
        loss: 0.2,
        ..Faults::none()
    };
    let (c, controls) = chaos_cluster(4, seed, faults).await;
    let (ok, t) = wait_for(DEADLINE, || c.fully_joined()).await;
    assert!(
        ok,
        "4 nodes at 20 % loss did not join within {DEADLINE:?} (seed {seed})"
    );
    println!("joined in {t:?}");
    // Every poll writes one key, so that there is traffic to lose and ids to tell.
    let mut k = 0u32;
    let (ok, t) = wait_for(DEADLINE, || {
        k += 1;
        c.nodes[0]
            .set(&format!("repair/{k}"), b"v".to_vec())
            .unwrap();
        c.nodes.iter().all(|n| {
            n.bandwidth().path_loss_permille >= LOSSY_PERMILLE && n.engine_stats().repair_rounds > 0
        })
    })
    .await;
    let seen: Vec<(u64, u64)> = c
        .nodes
        .iter()
        .map(|n| {
            (
                n.bandwidth().path_loss_permille,
                n.engine_stats().repair_rounds,
            )
        })
        .collect();
    assert!(
        ok,
        "after {k} writes, not every node saw QUIC's loss and ran repair rounds within {DEADLINE:?} (seed {seed}): (permille, rounds) per node {seen:?}"
    );
    println!("after {k} writes and {t:?}: (permille, rounds) per node {seen:?}");
    assert!(total(&controls).dropped_loss > 0);
    c.shutdown().await;
}
