//! A restarted process and its peers' connections to its previous life: the new process
//! answers a packet of an old connection with a QUIC stateless reset its peer accepts,
//! because the reset key is derived from the node's private key (`transport::reset_key`).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use gossamer::chaos::ChaosSocket;
use gossamer::core::NodeId;
use gossamer::identity;
use gossamer::local::{generate_certs, node_name};
use gossamer::transport::{offer_datagram, QuicSettings, Transport};

const DEADLINE: Duration = Duration::from_secs(10);

/// Accepts connections on `t` until its endpoint closes.
fn accept_all(t: &Transport) {
    let t = t.clone();
    tokio::spawn(async move { while t.accept().await.is_some() {} });
}

/// Binds `addr` again once the previous socket on it is gone (its endpoint drains first).
async fn rebind(addr: SocketAddr, id: &NodeId, certs: &std::path::Path) -> Transport {
    let start = Instant::now();
    loop {
        let (cert, trust) = identity::load(certs, id).expect("certificates");
        match Transport::bind(addr, cert, trust, QuicSettings::default()) {
            Ok(t) => return t,
            Err(_) if start.elapsed() < DEADLINE => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("cannot bind {addr} again within {DEADLINE:?}: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_resets_the_connections_of_its_previous_life() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let (a_id, b_id) = (node_name(1), node_name(2));
    generate_certs(dir.path(), "restart", &[a_id.clone(), b_id.clone()]).expect("certificates");

    // a on a chaos socket, so that b's first life can vanish without a's hearing its
    // CONNECTION_CLOSE, as when its process is killed.
    let (sock, a_ctl) =
        ChaosSocket::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), 1).expect("bind");
    let (cert, trust) = identity::load(dir.path(), &a_id).expect("a's certificate");
    let a = Transport::bind_socket(sock, cert, trust, QuicSettings::default()).expect("a");
    let (cert, trust) = identity::load(dir.path(), &b_id).expect("b's certificate");
    let b = Transport::bind(
        SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        cert,
        trust,
        QuicSettings::default(),
    )
    .expect("b");
    let b_addr = b.local_addr();
    accept_all(&b);
    let (_, conn) = a
        .connect(&b_addr.to_string(), Some(&b_id))
        .await
        .expect("a dials b");

    // A long-lived connection: the handshake is confirmed (until then a resends Handshake
    // packets, which no endpoint answers with a reset).
    let start = Instant::now();
    while conn.stats().frame_rx.handshake_done == 0 {
        assert!(
            start.elapsed() < DEADLINE,
            "the handshake was never confirmed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // b's first life ends unheard by a.
    a_ctl.block(b_addr);
    b.close();
    let _ = tokio::time::timeout(DEADLINE, b.endpoint().wait_idle()).await;
    drop(b);

    // Its second life on the same address, with the same key.
    let b2 = rebind(b_addr, &b_id, dir.path()).await;
    accept_all(&b2);
    a_ctl.unblock(b_addr);
    assert!(
        conn.close_reason().is_none(),
        "a heard b's first life close"
    );

    // a sends on its old connection until the reset closes it.
    let start = Instant::now();
    while conn.close_reason().is_none() && start.elapsed() < DEADLINE {
        let _ = offer_datagram(&conn, vec![0u8; 64]);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    match conn.close_reason() {
        Some(quinn::ConnectionError::Reset) => {}
        other => panic!(
            "a's connection to b's previous life was not reset within {DEADLINE:?}: {other:?}"
        ),
    }
    b2.close();
    a.close();
}
