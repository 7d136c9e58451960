//! mTLS handshakes between raw quinn endpoints on 127.0.0.1 using the identity module's
//! configurations: who is admitted, who is refused, and how refusals are counted.
//!
//! All keys are generated in memory for each test.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gossamer::core::id::{ClusterName, NodeId};
use gossamer::identity::{
    self, classify_handshake_error, generate_ca, issue_node, issue_node_with_validity,
    peer_identity, HandshakeCounts, HandshakeStats, Identity, PemPair, TrustBundle, ALPN,
    ALPN_DIGEST, SNI,
};
use gossamer::transport::{offer_datagram, DatagramRefused};
use quinn::{Connection, Endpoint};

const DEADLINE: Duration = Duration::from_secs(10);

fn cluster(s: &str) -> ClusterName {
    ClusterName::new(s).unwrap()
}

fn node(s: &str) -> NodeId {
    NodeId::new(s).unwrap()
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A CA and the identities it issues.
struct Ca {
    pem: PemPair,
}

impl Ca {
    fn new(cluster_name: &str) -> Self {
        Self {
            pem: generate_ca(&cluster(cluster_name), 30).unwrap(),
        }
    }

    fn bundle(&self) -> TrustBundle {
        TrustBundle::from_pem(&self.pem.cert_pem).unwrap()
    }

    fn issue(&self, id: &str) -> Identity {
        let pair = issue_node(
            &self.pem.cert_pem,
            &self.pem.key_pem,
            &node(id),
            &[],
            &[],
            30,
        )
        .unwrap();
        Identity::from_pem(&pair.cert_pem, &pair.key_pem).unwrap()
    }

    fn issue_valid(&self, id: &str, not_before: i64, not_after: i64) -> Identity {
        let pair = issue_node_with_validity(
            &self.pem.cert_pem,
            &self.pem.key_pem,
            &node(id),
            &[],
            &[],
            not_before,
            not_after,
        )
        .unwrap();
        Identity::from_pem(&pair.cert_pem, &pair.key_pem).unwrap()
    }
}

/// What the accepting side saw for one incoming handshake.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Accepted(NodeId),
    Refused(&'static str),
}

/// A node: one quinn endpoint that accepts (echoing every bi stream) and dials.
struct Node {
    id: Identity,
    trust: TrustBundle,
    ep: Endpoint,
    addr: SocketAddr,
    /// Server-side handshake counters.
    stats: Arc<HandshakeStats>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Node {
    fn start(id: Identity, trust: TrustBundle) -> Self {
        let stats = HandshakeStats::new();
        let server = identity::quinn_server_config(&id, &trust, stats.clone()).unwrap();
        let ep = Endpoint::server(server, "127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = ep.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (ep2, stats2, seen2) = (ep.clone(), stats.clone(), seen.clone());
        tokio::spawn(async move {
            while let Some(incoming) = ep2.accept().await {
                let (stats, seen) = (stats2.clone(), seen2.clone());
                tokio::spawn(async move {
                    match incoming.await {
                        Ok(conn) => {
                            let (_, peer) = peer_identity(&conn).unwrap();
                            seen.lock().unwrap().push(Seen::Accepted(peer));
                            echo(conn).await;
                        }
                        Err(e) => {
                            let label = stats.record_handshake_error(&e);
                            seen.lock().unwrap().push(Seen::Refused(label));
                        }
                    }
                });
            }
        });
        Self {
            id,
            trust,
            ep,
            addr,
            stats,
            seen,
        }
    }

    /// Dials `to`, expecting `expected` (if any), and proves the connection works with an
    /// echo round trip. Returns the connection, or the failure's reason label.
    async fn dial(
        &self,
        to: SocketAddr,
        expected: Option<&str>,
        stats: Arc<HandshakeStats>,
    ) -> Result<Connection, &'static str> {
        let expected = expected.map(node);
        let cfg =
            identity::quinn_client_config(&self.id, &self.trust, expected.as_ref(), stats).unwrap();
        dial_with(&self.ep, cfg, to, SNI).await
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn counts(&self) -> HandshakeCounts {
        self.stats.snapshot()
    }

    /// Waits until the accepting side has seen `n` handshakes.
    async fn wait_seen(&self, n: usize) -> Vec<Seen> {
        wait_until("handshakes seen by the server", || self.seen().len() >= n).await;
        self.seen()
    }
}

async fn echo(conn: Connection) {
    while let Ok((mut send, mut recv)) = conn.accept_bi().await {
        tokio::spawn(async move {
            if let Ok(buf) = recv.read_to_end(1024).await {
                let _ = send.write_all(&buf).await;
                let _ = send.finish();
            }
        });
    }
}

async fn dial_with(
    ep: &Endpoint,
    cfg: quinn::ClientConfig,
    to: SocketAddr,
    server_name: &str,
) -> Result<Connection, &'static str> {
    let attempt = async {
        let conn = ep
            .connect_with(cfg, to, server_name)
            .unwrap()
            .await
            .map_err(|e| classify_handshake_error(&e))?;
        // In TLS 1.3 the client finishes its handshake before the server has judged the
        // client's certificate: a refusal shows up as the connection being closed.
        let round_trip = async {
            let (mut send, mut recv) = conn.open_bi().await?;
            send.write_all(b"ping").await?;
            send.finish()?;
            let got = recv.read_to_end(16).await?;
            assert_eq!(got, b"ping");
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        };
        match round_trip.await {
            Ok(()) => Ok(conn),
            Err(_) => {
                let reason = conn.closed().await;
                Err(classify_handshake_error(&reason))
            }
        }
    };
    tokio::time::timeout(DEADLINE, attempt)
        .await
        .expect("dial neither succeeded nor failed in time")
}

/// Polls `cond` until it holds, failing the test after [`DEADLINE`].
async fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Dials with a plain rustls client (webpki verification of the server against `trust`
/// for the name "localhost", which default node certificates carry), presenting `id` if
/// given: a client that does not run gossamer's own checks.
async fn plain_dial(
    trust: &TrustBundle,
    id: Option<&Identity>,
    to: SocketAddr,
) -> Result<Connection, &'static str> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(trust.roots().clone());
    let mut tls = match id {
        Some(id) => builder
            .with_client_auth_cert(id.chain.clone(), id.clone_key())
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let cfg = quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap(),
    ));
    let ep = Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    dial_with(&ep, cfg, to, "localhost").await
}

/// #18: a node of the previous release offers only [`ALPN`]: it still connects to a node
/// of this one, and its connection says it does not read digest-first anti-entropy
/// `Open`s; between nodes of this release the connection says they do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_of_the_previous_release_connects_and_is_not_sent_digests() {
    let ca = Ca::new("prod");
    let new = Node::start(ca.issue("n1"), ca.bundle());
    let old_id = ca.issue("n2");
    let mut tls =
        identity::client_config(&old_id, &ca.bundle(), None, HandshakeStats::new()).unwrap();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let cfg = quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap(),
    ));
    let ep = Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let old_conn = dial_with(&ep, cfg, new.addr, SNI).await.unwrap();
    assert!(!gossamer::transport::reads_digest(&old_conn));
    let peer = Node::start(ca.issue("n3"), ca.bundle());
    let new_conn = peer
        .dial(new.addr, Some("n1"), HandshakeStats::new())
        .await
        .unwrap();
    assert!(gossamer::transport::reads_digest(&new_conn));
}

fn only(counts: HandshakeCounts, label: &str) {
    for (l, n) in counts.refusals() {
        let want = u64::from(l == label);
        assert_eq!(n, want, "counter {l} in {counts:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_ca_nodes_connect_both_ways_and_learn_ids() {
    let ca = Ca::new("prod");
    let n1 = Node::start(ca.issue("n1"), ca.bundle());
    let n2 = Node::start(ca.issue("n2"), ca.bundle());
    let client_stats = HandshakeStats::new();

    let c12 = n1
        .dial(n2.addr, Some("n2"), client_stats.clone())
        .await
        .unwrap();
    assert_eq!(peer_identity(&c12).unwrap(), (cluster("prod"), node("n2")));
    let c21 = n2
        .dial(n1.addr, Some("n1"), client_stats.clone())
        .await
        .unwrap();
    assert_eq!(peer_identity(&c21).unwrap(), (cluster("prod"), node("n1")));
    // Without an expected peer, any member of the cluster is admitted.
    let c12b = n1.dial(n2.addr, None, client_stats.clone()).await.unwrap();
    assert_eq!(peer_identity(&c12b).unwrap().1, node("n2"));
    assert_eq!(
        c12.handshake_data()
            .unwrap()
            .downcast::<quinn::crypto::rustls::HandshakeData>()
            .unwrap()
            .protocol
            .as_deref(),
        Some(ALPN_DIGEST),
        "nodes of this release prefer the digest-first protocol"
    );

    assert_eq!(
        n2.wait_seen(2).await,
        vec![Seen::Accepted(node("n1")), Seen::Accepted(node("n1"))]
    );
    assert_eq!(n1.wait_seen(1).await, vec![Seen::Accepted(node("n2"))]);
    assert_eq!(n2.counts().accepted, 2);
    assert_eq!(n2.counts().refused(), 0);
    assert_eq!(client_stats.snapshot().accepted, 3);
    assert_eq!(client_stats.snapshot().refused(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_without_certificate_is_refused_and_counted() {
    let ca = Ca::new("prod");
    let server = Node::start(ca.issue("n1"), ca.bundle());

    // A client that trusts the fleet CA but presents no certificate.
    let err = plain_dial(&ca.bundle(), None, server.addr)
        .await
        .unwrap_err();
    assert_eq!(err, "no_certificate");

    assert_eq!(
        server.wait_seen(1).await,
        vec![Seen::Refused("no_certificate")]
    );
    wait_until("no_certificate counted", || {
        server.counts().no_certificate == 1
    })
    .await;
    only(server.counts(), "no_certificate");
    assert_eq!(server.counts().accepted, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_from_another_ca_is_refused_as_unknown_ca() {
    let ca = Ca::new("prod");
    let stranger_ca = Ca::new("prod"); // same cluster name, different CA
    let server = Node::start(ca.issue("n1"), ca.bundle());
    // The stranger trusts our CA, so only the server's check stands in the way.
    let stranger = Node::start(stranger_ca.issue("n9"), {
        let both = format!("{}{}", ca.pem.cert_pem, stranger_ca.pem.cert_pem);
        TrustBundle::from_pem(&both).unwrap()
    });
    let err = stranger
        .dial(server.addr, Some("n1"), HandshakeStats::new())
        .await
        .unwrap_err();
    assert_eq!(err, "unknown_ca");
    assert_eq!(server.wait_seen(1).await, vec![Seen::Refused("unknown_ca")]);
    wait_until("unknown_ca counted", || server.counts().unknown_ca == 1).await;
    only(server.counts(), "unknown_ca");

    // And the other way round: our node refuses the stranger's server certificate.
    let client_stats = HandshakeStats::new();
    let err = server
        .dial(stranger.addr, None, client_stats.clone())
        .await
        .unwrap_err();
    assert_eq!(err, "unknown_ca");
    only(client_stats.snapshot(), "unknown_ca");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_of_another_cluster_is_refused() {
    let prod = Ca::new("prod");
    let other = Ca::new("other");
    // Even a bundle that (mistakenly) trusts both CAs admits only our cluster.
    let both =
        TrustBundle::from_pem(&format!("{}{}", prod.pem.cert_pem, other.pem.cert_pem)).unwrap();
    let server = Node::start(prod.issue("n1"), both.clone());
    let intruder = Node::start(other.issue("n2"), both.clone());

    // The intruder's own gossamer verifier would refuse our server first; an attacker's
    // client would not.
    let err = plain_dial(&both, Some(&intruder.id), server.addr)
        .await
        .unwrap_err();
    assert_eq!(err, "wrong_cluster");
    assert_eq!(
        server.wait_seen(1).await,
        vec![Seen::Refused("wrong_cluster")]
    );
    wait_until("wrong_cluster counted", || {
        server.counts().wrong_cluster == 1
    })
    .await;
    only(server.counts(), "wrong_cluster");

    // Our node dialing a server of the other cluster refuses it.
    let client_stats = HandshakeStats::new();
    let err = server
        .dial(intruder.addr, None, client_stats.clone())
        .await
        .unwrap_err();
    assert_eq!(err, "wrong_cluster");
    only(client_stats.snapshot(), "wrong_cluster");

    // With a bundle holding only our CA, the other cluster's CA is simply unknown.
    let strict = Node::start(prod.issue("n3"), prod.bundle());
    let err = plain_dial(&both, Some(&intruder.id), strict.addr)
        .await
        .unwrap_err();
    assert_eq!(err, "unknown_ca");
    assert_eq!(strict.wait_seen(1).await, vec![Seen::Refused("unknown_ca")]);
    only(strict.counts(), "unknown_ca");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dialing_the_wrong_node_fails_at_the_client() {
    let ca = Ca::new("prod");
    let n1 = Node::start(ca.issue("n1"), ca.bundle());
    let n3 = Node::start(ca.issue("n3"), ca.bundle());
    let client_stats = HandshakeStats::new();

    // We believe n2 listens at n3's address.
    let err = n1
        .dial(n3.addr, Some("n2"), client_stats.clone())
        .await
        .unwrap_err();
    assert_eq!(err, "bad_identity");
    only(client_stats.snapshot(), "bad_identity");
    assert_eq!(client_stats.snapshot().accepted, 0);

    // n3 did not refuse anyone: it was refused. It records what the peer said.
    let seen = n3.wait_seen(1).await;
    assert_eq!(seen, vec![Seen::Refused("bad_identity")]);
    assert_eq!(n3.counts().refused(), 0);

    // With the right expectation it works.
    let conn = n1
        .dial(n3.addr, Some("n3"), client_stats.clone())
        .await
        .unwrap();
    assert_eq!(peer_identity(&conn).unwrap().1, node("n3"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_not_yet_valid_certificates_are_refused() {
    let ca = Ca::new("prod");
    let now = now_unix();
    let server = Node::start(ca.issue("n1"), ca.bundle());

    let expired = Node::start(
        ca.issue_valid("old", now - 30 * 86_400, now - 86_400),
        ca.bundle(),
    );
    let err = expired
        .dial(server.addr, Some("n1"), HandshakeStats::new())
        .await
        .unwrap_err();
    assert_eq!(err, "expired_or_not_yet_valid");
    assert_eq!(
        server.wait_seen(1).await,
        vec![Seen::Refused("expired_or_not_yet_valid")]
    );

    let early = Node::start(
        ca.issue_valid("new", now + 86_400, now + 30 * 86_400),
        ca.bundle(),
    );
    early
        .dial(server.addr, Some("n1"), HandshakeStats::new())
        .await
        .unwrap_err();
    server.wait_seen(2).await;
    wait_until("both counted", || {
        server.counts().expired_or_not_yet_valid == 2
    })
    .await;
    assert_eq!(server.counts().refused(), 2);

    // A server presenting an expired certificate is refused by the client.
    let client_stats = HandshakeStats::new();
    let err = server
        .dial(expired.addr, None, client_stats.clone())
        .await
        .unwrap_err();
    assert_eq!(err, "expired_or_not_yet_valid");
    only(client_stats.snapshot(), "expired_or_not_yet_valid");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    identity::write_ca(dir.path(), &cluster("prod"), 30, false).unwrap();
    for n in ["n1", "n2", "n3"] {
        identity::write_node(dir.path(), &node(n), &[], &[], None, 30).unwrap();
    }
    identity::write_revocation(dir.path(), &node("n2"), None).unwrap();

    let (id1, trust) = identity::load(dir.path(), &node("n1")).unwrap();
    assert_eq!(trust.crls().len(), 1);
    let server = Node::start(id1, trust.clone());
    // n2 still has its files; load refuses them, but a node could present them anyway.
    assert!(identity::load(dir.path(), &node("n2")).is_err());
    let pem = |f: &str| std::fs::read_to_string(dir.path().join(f)).unwrap();
    let id2 = Identity::from_pem(&pem("n2.pem"), &pem("n2.key")).unwrap();
    let revoked = Node::start(id2, trust.clone());
    let err = revoked
        .dial(server.addr, Some("n1"), HandshakeStats::new())
        .await
        .unwrap_err();
    assert_eq!(err, "revoked");
    assert_eq!(server.wait_seen(1).await, vec![Seen::Refused("revoked")]);
    only(server.counts(), "revoked");

    // n3 is unaffected.
    let (id3, trust3) = identity::load(dir.path(), &node("n3")).unwrap();
    let n3 = Node::start(id3, trust3);
    n3.dial(server.addr, Some("n1"), HandshakeStats::new())
        .await
        .unwrap();
}

/// A full datagram send buffer refuses the new datagram (for the caller to count)
/// instead of letting quinn drop queued ones unseen: every datagram offered and
/// accepted is transmitted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_datagram_send_buffer_refuses_the_new_datagram_and_drops_none_unseen() {
    let ca = Ca::new("prod");
    let n1 = Node::start(ca.issue("n1"), ca.bundle());
    let n2 = Node::start(ca.issue("n2"), ca.bundle());
    let mut cfg =
        identity::quinn_client_config(&n1.id, &n1.trust, None, HandshakeStats::new()).unwrap();
    let mut tc = quinn::TransportConfig::default();
    tc.datagram_send_buffer_size(4 * 1024);
    cfg.transport_config(Arc::new(tc));
    let conn = dial_with(&n1.ep, cfg, n2.addr, SNI).await.unwrap();

    let (mut accepted, mut refused) = (0u64, 0u64);
    for _ in 0..200 {
        match offer_datagram(&conn, vec![0x5a; 1_000]) {
            Ok(()) => accepted += 1,
            Err(DatagramRefused::BufferFull) => refused += 1,
            Err(e) => panic!("unexpected refusal: {e}"),
        }
    }
    assert!(
        refused > 0,
        "a 4 KiB buffer took 200 datagrams of 1 kB at once"
    );
    wait_until("every accepted datagram transmitted", || {
        conn.stats().frame_tx.datagram == accepted
    })
    .await;
    assert_eq!(accepted + refused, 200);
}
