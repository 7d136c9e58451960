//! Stale connections: the connection to a suspected member is kept while packets still
//! arrive on it and dropped when it is quiet (`Node::drop_connection_if_quiet`); a
//! member's new connection replaces the pooled one only if that one no longer answers
//! (`Node::keep_the_live_one`).

use std::net::{Ipv4Addr, SocketAddr};

use super::*;
use crate::chaos::{ChaosControl, ChaosSocket};
use crate::local::{wait_for, LocalCluster};

const DEADLINE: Duration = Duration::from_secs(20);

/// The connection `n` pools for `peer`.
fn pooled_conn(n: &Node, peer: &NodeId) -> Option<Connection> {
    n.inner.conns.lock().ok()?.get(peer).cloned()
}

/// The stable id of the connection `n` pools for `peer`.
fn pooled(n: &Node, peer: &NodeId) -> Option<usize> {
    pooled_conn(n, peer).map(|c| c.stable_id())
}

fn kept(n: &Node) -> u64 {
    n.runtime_stats()
        .suspect_connections_kept
        .load(Ordering::Relaxed)
}

/// Two joined nodes on chaos sockets, the first holding a connection to the second.
/// SWIM probes and anti-entropy run once in ten minutes: no suspicion or death of their
/// own moves the connection, and an idle connection carries nothing, while a test runs.
async fn two_nodes() -> (LocalCluster, Vec<ChaosControl>, usize) {
    two_nodes_started([1, 2]).await
}

/// [`two_nodes`] started in `order` (node indexes): the second dials the first, its seed.
async fn two_nodes_started(order: [usize; 2]) -> (LocalCluster, Vec<ChaosControl>, usize) {
    let gossip = crate::core::Config {
        probe_interval_ms: 600_000,
        sync_interval_ms: 600_000,
        ..crate::core::Config::local()
    };
    let mut c = LocalCluster::start(0, 2, gossip)
        .await
        .expect("certificates");
    let mut controls = Vec::new();
    for i in order {
        let (sock, ctl) = ChaosSocket::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), i as u64)
            .expect("bind 127.0.0.1");
        let cfg = c.config(i, c.seed_addrs());
        c.start_with_socket(cfg, sock).await.expect("node start");
        controls.push(ctl);
    }
    let (a, b) = (&c.nodes[0], &c.nodes[1]);
    let (ok, _) = wait_for(DEADLINE, || {
        c.fully_joined() && pooled(a, &b.id()).is_some()
    })
    .await;
    assert!(ok, "two nodes did not join and connect within {DEADLINE:?}");
    let conn = pooled(a, &b.id()).expect("pooled");
    (c, controls, conn)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspected_member_that_still_answers_keeps_its_connection() {
    let (c, _controls, conn) = two_nodes().await;
    let (a, b) = (c.nodes[0].clone(), c.nodes[1].clone());
    // Traffic on the connection while the suspicion is checked: a's writes go to b, whose
    // ACKs come back on it. Bounded: 200 writes, 10 ms apart.
    let load = tokio::spawn({
        let a = a.clone();
        async move {
            for i in 0..200 {
                a.set(&format!("k{i}"), vec![1; 100]).expect("write");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    });
    a.drop_connection_if_quiet(&b.id());
    let (ok, _) = wait_for(DEADLINE, || kept(&a) == 1).await;
    load.abort();
    assert!(
        ok,
        "the connection to a member that still answers was not kept"
    );
    assert_eq!(
        pooled(&a, &b.id()),
        Some(conn),
        "the busy connection was replaced"
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspected_member_whose_connection_is_quiet_loses_it() {
    let (c, controls, conn) = two_nodes().await;
    let (a, b) = (c.nodes[0].clone(), c.nodes[1].clone());
    // b stops hearing and answering a, as a restarted process would on a's old connection.
    controls[1].block(a.advertise_addr().parse().expect("a socket address"));
    // A frame already in flight when the block began may count as heard: ask again (at
    // most 5 times) until the quiet connection leaves the pool. Nothing else drops it
    // here: SWIM does not probe within the test.
    let mut dropped = false;
    for _ in 0..5 {
        a.drop_connection_if_quiet(&b.id());
        let (ok, _) = wait_for(Duration::from_secs(3), || pooled(&a, &b.id()) != Some(conn)).await;
        if ok {
            dropped = true;
            break;
        }
    }
    assert!(dropped, "a connection on which nothing arrives was kept");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspected_member_on_an_idle_connection_is_made_to_answer_and_keeps_it() {
    let (c, _controls, conn) = two_nodes().await;
    let (a, b) = (c.nodes[0].clone(), c.nodes[1].clone());
    // Wait until the join's traffic is over (nothing arrives on the connection for 1 s):
    // then the empty datagram the check sends is all that b can acknowledge.
    let handle = pooled_conn(&a, &b.id()).expect("pooled");
    let mut last = (
        super::peers::authenticated_frames(&handle),
        std::time::Instant::now(),
    );
    let (quiet, _) = wait_for(DEADLINE, || {
        let now = super::peers::authenticated_frames(&handle);
        if now != last.0 {
            last = (now, std::time::Instant::now());
        }
        last.1.elapsed() >= Duration::from_secs(1)
    })
    .await;
    assert!(quiet, "the connection never went quiet for 1 s");
    a.drop_connection_if_quiet(&b.id());
    let (ok, _) = wait_for(DEADLINE, || kept(&a) == 1).await;
    assert!(ok, "an idle connection to a live member was not kept");
    assert_eq!(
        pooled(&a, &b.id()),
        Some(conn),
        "the idle connection was replaced"
    );
    c.shutdown().await;
}

fn replaced(n: &Node) -> u64 {
    n.runtime_stats()
        .stale_connections_replaced
        .load(Ordering::Relaxed)
}

/// n2 started first, then n1 dialing it: n1 (the smaller id, whose dial both sides keep)
/// pools a connection it dialed. n2 is `nodes[0]` and n1 `nodes[1]`.
async fn n1_dialed_n2() -> (LocalCluster, Vec<ChaosControl>, usize) {
    let (c, controls, _) = two_nodes_started([2, 1]).await;
    let (n2, n1) = (&c.nodes[0], &c.nodes[1]);
    assert!(n1.id() < n2.id(), "the test needs n1 to be the smaller id");
    let (ok, _) = wait_for(DEADLINE, || pooled(n1, &n2.id()).is_some()).await;
    assert!(ok, "n1 pooled no connection to n2");
    let conn = pooled_conn(n1, &n2.id()).expect("pooled");
    assert!(
        conn.side().is_client(),
        "n1's pooled connection was not its own dial"
    );
    (c, controls, conn.stable_id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_dials_again_replaces_a_pooled_connection_that_no_longer_answers() {
    let (c, controls, old) = n1_dialed_n2().await;
    let (n2, n1) = (c.nodes[0].clone(), c.nodes[1].clone());
    // n2's first life goes silent towards n1, as a crashed process would; its second life
    // (a fresh endpoint holding n2's certificate) dials n1, as a restarted n2 does.
    controls[0].block(n1.advertise_addr().parse().expect("n1 socket address"));
    let second_life = c.endpoint_as(&n2.id()).expect("n2's certificate");
    let (_, new) = second_life
        .connect(n1.advertise_addr(), Some(&n1.id()))
        .await
        .expect("the second life dials n1");
    let (ok, _) = wait_for(DEADLINE, || replaced(&n1) == 1).await;
    assert!(ok, "the quiet pooled connection was not replaced");
    let now = pooled_conn(&n1, &n2.id()).expect("pooled");
    assert_ne!(now.stable_id(), old, "the old connection is still pooled");
    assert!(
        now.side().is_server() && now.close_reason().is_none(),
        "n1 does not pool the second life's open connection"
    );
    assert!(
        new.close_reason().is_none(),
        "the new connection was closed"
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_connection_beside_a_pooled_one_that_answers_is_closed_as_a_duplicate() {
    let (c, _controls, old) = n1_dialed_n2().await;
    let (n2, n1) = (c.nodes[0].clone(), c.nodes[1].clone());
    let other = c.endpoint_as(&n2.id()).expect("n2's certificate");
    let (_, new) = other
        .connect(n1.advertise_addr(), Some(&n1.id()))
        .await
        .expect("a second dial as n2");
    let closed = tokio::time::timeout(DEADLINE, new.closed()).await;
    assert!(closed.is_ok(), "the duplicate connection was not closed");
    assert_eq!(
        pooled(&n1, &n2.id()),
        Some(old),
        "the live connection was replaced"
    );
    assert_eq!(replaced(&n1), 0);
    c.shutdown().await;
}
