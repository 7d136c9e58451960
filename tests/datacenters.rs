//! Two datacenters over real QUIC: in-process nodes on 127.0.0.1, each on a
//! [`ChaosSocket`] that adds 60 ms to every datagram bound for the other datacenter.
//!
//! The probe timeout is set to 100 ms, below the 120 ms round trip between the
//! datacenters: only the RTT-adaptive timeouts keep remote members from being probed
//! indirectly over and over (and suspected when the indirect probes are slow too).
//!
//! Seeds are fixed; set `GOSSAMER_CHAOS_SEED` to try others.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gossamer::chaos::{self, ChaosSocket};
use gossamer::core::membership::Change;
use gossamer::core::proto::MemberStatus;
use gossamer::core::{Config, Event};
use gossamer::local::{wait_for, LocalCluster};

const DEADLINE: Duration = Duration::from_secs(40);
const WAN_DELAY: Duration = Duration::from_millis(60);
const PER_DC: usize = 3;

fn seed(default: u64) -> u64 {
    let s = std::env::var("GOSSAMER_CHAOS_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    println!("chaos seed: {s} (GOSSAMER_CHAOS_SEED={s} reproduces the fault decisions)");
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_datacenters_60ms_apart_converge_and_nobody_is_suspected() {
    let seed = seed(0x5eed_00dc);
    let gossip = Config {
        probe_timeout_ms: 100,
        ..Config::local()
    };
    let mut c = LocalCluster::start(0, 2 * PER_DC, gossip)
        .await
        .expect("certificates");
    // Bind every socket first, so the delays are in place before anyone joins.
    let mut socks = Vec::new();
    let mut controls = Vec::new();
    for i in 1..=2 * PER_DC {
        let (sock, ctl) =
            ChaosSocket::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), seed + i as u64)
                .expect("bind 127.0.0.1");
        socks.push(sock);
        controls.push(ctl);
    }
    let (east, west) = controls.split_at(PER_DC);
    chaos::delay_between(&[east, west], WAN_DELAY);

    // Every suspicion any node hears of, counted from the moment it starts.
    let suspected = Arc::new(AtomicU64::new(0));
    for (i, sock) in socks.into_iter().enumerate() {
        let mut cfg = c.config(i + 1, c.seed_addrs());
        cfg.dc = if i < PER_DC { "east" } else { "west" }.to_string();
        let node = c.start_with_socket(cfg, sock).await.expect("node start");
        let mut events = node.subscribe();
        let suspected = suspected.clone();
        tokio::spawn(async move {
            while let Ok(ev) = events.recv().await {
                if let Event::Member(Change::Updated { new, .. }) = ev {
                    if new.status != MemberStatus::Alive {
                        suspected.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
    }

    let (ok, t) = wait_for(DEADLINE, || c.fully_joined()).await;
    assert!(
        ok,
        "{} nodes in two datacenters did not all see each other alive within {DEADLINE:?} (seed {seed})",
        2 * PER_DC
    );
    println!("joined in {t:?}");

    let mut writes = Vec::new();
    for round in 0..3 {
        for (i, n) in c.nodes.iter().enumerate() {
            let (k, v) = (format!("dc/{i}/{round}"), format!("v{i}.{round}"));
            n.set(&k, v.clone().into_bytes()).unwrap();
            writes.push((k, v));
        }
    }
    let (ok, t) = wait_for(DEADLINE, || {
        writes
            .iter()
            .all(|(k, v)| c.agree_on(k, Some(v.as_bytes())))
    })
    .await;
    assert!(
        ok,
        "{} writes did not reach both datacenters within {DEADLINE:?} (seed {seed})",
        writes.len()
    );
    println!("{} writes everywhere in {t:?}", writes.len());

    // A steady window: remote members are probed at their adapted timeouts, so probes
    // rarely need help (with the 100 ms floor alone, every remote probe would).
    let before: Vec<_> = c.nodes.iter().map(|n| n.engine_stats()).collect();
    let probes_since = || -> u64 {
        c.nodes
            .iter()
            .zip(&before)
            .map(|(n, b)| n.engine_stats().probes - b.probes)
            .sum()
    };
    let (ok, _) = wait_for(DEADLINE, || probes_since() >= 30).await;
    assert!(ok, "fewer than 30 probes within {DEADLINE:?}");
    let after: Vec<_> = c.nodes.iter().map(|n| n.engine_stats()).collect();
    let probes: u64 = after
        .iter()
        .zip(&before)
        .map(|(a, b)| a.probes - b.probes)
        .sum();
    let helped: u64 = after
        .iter()
        .zip(&before)
        .map(|(a, b)| a.ping_reqs - b.ping_reqs)
        .sum::<u64>()
        / Config::local().indirect_checks.min(2 * PER_DC - 2) as u64;
    println!("steady window: {probes} probes, {helped} needed indirect help");
    assert!(probes >= 10, "too few probes to judge: {probes}");
    assert!(
        helped * 4 < probes,
        "{helped} of {probes} probes timed out into indirect probes: timeouts did not adapt to the 120 ms RTT (seed {seed})"
    );

    // Remote members' RTT shows the added delay; nobody was ever suspected.
    for n in &c.nodes {
        let me = n.status().dc;
        for m in n.members().iter().filter(|m| !m.is_self && m.dc != me) {
            if let Some(rtt) = m.rtt_ms {
                assert!(rtt >= 100.0, "{} sees {} at {rtt} ms", n.id(), m.id);
            }
        }
    }
    let raised: u64 = c.nodes.iter().map(|n| n.engine_stats().suspicions).sum();
    let heard = suspected.load(Ordering::Relaxed);
    assert_eq!(
        (raised, heard),
        (0, 0),
        "members were suspected (raised {raised}, heard {heard}) (seed {seed})"
    );
    c.shutdown().await;
}
