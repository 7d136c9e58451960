//! Bandwidth governance over real QUIC: five in-process nodes on 127.0.0.1 under a low
//! gossip cap take a write burst far above it. Each node's own byte counters (datagram
//! and sync stream bytes it sent) must stay within the cap over every 1-second window,
//! and the cluster must converge once the burst is over.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gossamer::core::Config;
use gossamer::local::{wait_for, LocalCluster};
use gossamer::node::Node;

const CAP: u64 = 60_000;

/// (when, bytes sent so far) of one node.
type Samples = Vec<(Instant, u64)>;

fn sent_bytes(n: &Node) -> u64 {
    let r = n.runtime_stats();
    r.datagram_bytes_sent.load(Ordering::Relaxed) + r.sync_bytes_sent.load(Ordering::Relaxed)
}

/// The most bytes sent between two samples at most one second apart.
fn peak_window(samples: &[(Instant, u64)]) -> u64 {
    let mut peak = 0;
    for (i, (t0, b0)) in samples.iter().enumerate() {
        for (t1, b1) in &samples[i + 1..] {
            if t1.duration_since(*t0) > Duration::from_secs(1) {
                break;
            }
            peak = peak.max(b1 - b0);
        }
    }
    peak
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_hold_a_low_cap_under_a_write_burst_and_converge_after() {
    let cfg = Config {
        gossip_bandwidth: CAP,
        ..Config::local()
    };
    let c = LocalCluster::start(5, 0, cfg).await.unwrap();
    let (joined, _) = wait_for(Duration::from_secs(20), || {
        c.nodes
            .iter()
            .all(|n| n.members().iter().filter(|m| m.status == "alive").count() == 5)
    })
    .await;
    assert!(joined, "the cluster did not form");

    // Sample every node's own counters every 20 ms while the burst runs and settles.
    let samples: Arc<Mutex<Vec<Samples>>> = Arc::new(Mutex::new(vec![Vec::new(); 5]));
    let nodes: Vec<Node> = c.nodes.clone();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (samples, stop) = (samples.clone(), stop.clone());
        tokio::spawn(async move {
            // Bounded: at most 120 s of sampling.
            for _ in 0..6_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let now = Instant::now();
                {
                    let mut s = samples.lock().unwrap();
                    for (i, n) in nodes.iter().enumerate() {
                        s[i].push((now, sent_bytes(n)));
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    // The burst: 400 writes of 200 bytes on every node within about a second, some
    // 400 kB/s of fresh data against a 60 kB/s cap per node.
    let value = vec![7u8; 200];
    for round in 0..20 {
        for (i, n) in c.nodes.iter().enumerate() {
            for k in 0..20 {
                n.set(&format!("n{i}/k{round}-{k}"), value.clone()).unwrap();
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let burst_end = Instant::now();

    // Convergence: every node holds all 2,000 keys.
    let (converged, took) = wait_for(Duration::from_secs(90), || {
        c.nodes.iter().all(|n| n.list("").len() == 2_000)
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    sampler.await.unwrap();
    let counts: Vec<usize> = c.nodes.iter().map(|n| n.list("").len()).collect();
    assert!(
        converged,
        "not converged after the burst: keys per node {counts:?}"
    );
    println!(
        "converged {:.1} s after the burst ({:.1} s of waiting)",
        burst_end.elapsed().as_secs_f64(),
        took.as_secs_f64()
    );

    let samples: Vec<Samples> = samples.lock().unwrap().clone();
    let mut pressed = 0;
    for (i, n) in c.nodes.iter().enumerate() {
        let peak = peak_window(&samples[i]);
        let b = n.bandwidth();
        let refused: u64 = b.stats.refused.iter().sum();
        let paced = n.runtime_stats().sync_paced_us.load(Ordering::Relaxed);
        println!(
            "node {i}: peak 1-s egress {peak} B ({:.1}% of the cap), bytes by class {:?}, refused {:?}, sync paced {} ms",
            peak as f64 * 100.0 / CAP as f64,
            b.stats.bytes,
            b.stats.refused,
            paced / 1000
        );
        assert!(
            peak <= CAP + CAP / 20,
            "node {i} sent {peak} B in one second against a cap of {CAP} B/s"
        );
        if refused > 0 || paced > 0 {
            pressed += 1;
        }
    }
    assert!(
        pressed >= 3,
        "the burst should have pressed on most nodes' limiters (pressed: {pressed})"
    );
    c.shutdown().await;
}
