//! QUIC address validation before the per-address handshake budget (ARCHITECTURE.md,
//! "Transport and identity"): Initials whose sender never answers the node's Retry, sent
//! from the same IP address as a real peer, must not spend that peer's budget.
//!
//! The budget is per IP, so on loopback an attacker on 127.0.0.1 with another port stands
//! for an off-path spoofer of the peer's address: like a spoofer, it sends well-formed
//! Initials and never reads what comes back (a spoofer cannot: the Retry goes to the
//! spoofed address).

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gossamer::core::Config;
use gossamer::local::{node_name, wait_for, LocalCluster};

const DEADLINE: Duration = Duration::from_secs(20);
/// Handshakes one address may start in a burst on the node under attack.
const BURST: u32 = 3;
/// Initials in the flood: many times the burst.
const FLOOD: usize = 40;

/// `n` well-formed QUIC Initial datagrams for `server`, each opening a new connection, as a
/// client with no certificate of the fleet would send them (an Initial carries only the
/// ClientHello, so none is needed to reach the node's accept path).
fn initials(server: SocketAddr, roots: Arc<rustls::RootCertStore>, n: usize) -> Vec<Vec<u8>> {
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls.alpn_protocols = vec![gossamer::identity::ALPN.to_vec()];
    let crypto = quinn_proto::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let client = quinn_proto::ClientConfig::new(Arc::new(crypto));
    let mut endpoint = quinn_proto::Endpoint::new(
        Arc::new(quinn_proto::EndpointConfig::default()),
        None,
        false,
        None,
    );
    let now = Instant::now();
    (0..n)
        .map(|_| {
            let (_, mut conn) = endpoint
                .connect(now, client.clone(), server, gossamer::identity::SNI)
                .unwrap();
            let mut buf = Vec::new();
            let t = conn.poll_transmit(now, 1, &mut buf).expect("an Initial");
            buf.truncate(t.size);
            buf
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_initials_do_not_spend_a_real_peers_handshake_budget() {
    let mut c = LocalCluster::start(0, 2, Config::local()).await.unwrap();
    let mut cfg = c.config(1, vec![]);
    // A budget that does not refill within the test: once spent, it stays spent.
    cfg.security.handshakes_per_sec_per_ip = 0.01;
    cfg.security.handshake_burst_per_ip = BURST;
    let n1 = c.start_with(cfg).await.unwrap();
    let server: SocketAddr = n1.advertise_addr().parse().unwrap();
    let stats = n1.handshake_stats();

    // The attacker: 127.0.0.1, like the real peer below, on its own port; never reads.
    let attacker = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (_, trust) = gossamer::identity::load(c.certs_dir(), &node_name(2)).unwrap();
    for datagram in initials(server, trust.roots().clone(), FLOOD) {
        attacker.send_to(&datagram, server).unwrap();
    }
    // Wait until the node has handled the flood, either way: each Initial was answered with
    // a Retry or (without address validation) spent the budget and was then refused.
    let handled = BURST as u64 + 1;
    let (ok, _) = wait_for(DEADLINE, || {
        let s = stats.snapshot();
        s.retries_sent + s.rate_limited + handled > FLOOD as u64
    })
    .await;
    assert!(ok, "the flood was not handled: {:?}", stats.snapshot());

    // The real peer, from the same IP address, still gets in.
    let peer = c.endpoint_as(&node_name(2)).unwrap();
    assert_eq!(peer.local_addr().ip(), attacker.local_addr().unwrap().ip());
    let r = peer.connect(&server.to_string(), Some(&node_name(1))).await;
    assert!(
        r.is_ok(),
        "the real peer was locked out: {:?}; {:?}",
        r.err(),
        stats.snapshot()
    );
    let (ok, _) = wait_for(DEADLINE, || stats.snapshot().accepted >= 1).await;
    assert!(
        ok,
        "the node did not accept the peer: {:?}",
        stats.snapshot()
    );
    let s = stats.snapshot();
    assert_eq!(s.rate_limited, 0, "the flood spent the budget: {s:?}");
    assert_eq!(s.refused(), 0, "{s:?}");
    // Every flood Initial got a Retry, and so did the real peer's first Initial.
    assert!(s.retries_sent > FLOOD as u64, "{s:?}");
    peer.close();
    c.shutdown().await;
}
