//! A certificate-provisioned fleet on 127.0.0.1: CA rotation, certificate hot reload,
//! revocation at handshake and mid-connection, expiry, certificates from an external PKI,
//! admission limits and the admin API's protection.
//!
//! Every node has its own certificate folder in a temporary directory, as on a real fleet,
//! so each can be given new files on its own. Each refusal test asserts the refusal (and
//! its counter) and that the cluster's state is unchanged by the refused party.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gossamer::core::id::{ClusterName, NodeId};
use gossamer::core::Config;
use gossamer::identity::{
    self, classify_handshake_error, CertInfo, Identity, PemPair, TrustBundle,
};
use gossamer::local::{wait_for, wait_for_async};
use gossamer::node::{Node, NodeConfig, NodeError};
use gossamer::transport::{self, QuicSettings, Transport, TransportError};

const DEADLINE: Duration = Duration::from_secs(20);

fn node(s: &str) -> NodeId {
    NodeId::new(s).unwrap()
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Writes a file the way an operator's tooling should: a temporary file in the same folder,
/// then a rename, so a reader never sees half a file.
fn write_atomic(path: &Path, contents: &str) {
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, contents).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    std::fs::rename(&tmp, path).unwrap();
}

/// A fleet CA.
struct Ca {
    pem: PemPair,
}

impl Ca {
    fn new(cluster: &str) -> Self {
        Self {
            pem: identity::generate_ca(&ClusterName::new(cluster).unwrap(), 30).unwrap(),
        }
    }

    fn issue(&self, id: &str) -> PemPair {
        identity::issue_node(
            &self.pem.cert_pem,
            &self.pem.key_pem,
            &node(id),
            &[IpAddr::V4(Ipv4Addr::LOCALHOST)],
            &[],
            30,
        )
        .unwrap()
    }

    fn issue_valid(&self, id: &str, not_before: i64, not_after: i64) -> PemPair {
        identity::issue_node_with_validity(
            &self.pem.cert_pem,
            &self.pem.key_pem,
            &node(id),
            &[],
            &[],
            not_before,
            not_after,
        )
        .unwrap()
    }

    fn subject(&self) -> String {
        identity::inspect_pem(&self.pem.cert_pem, "ca").unwrap()[0]
            .subject
            .clone()
    }
}

fn serial_of(pair: &PemPair) -> String {
    identity::inspect_pem(&pair.cert_pem, "cert").unwrap()[0]
        .serial
        .clone()
}

/// A node's certificate folder.
struct CertDir {
    path: PathBuf,
    id: String,
}

impl CertDir {
    fn new(root: &Path, id: &str) -> Self {
        let path = root.join(id);
        std::fs::create_dir_all(&path).unwrap();
        Self {
            path,
            id: id.to_string(),
        }
    }

    fn set_bundle(&self, cas: &[&Ca]) {
        let pem: String = cas.iter().map(|c| c.pem.cert_pem.clone()).collect();
        write_atomic(&self.path.join("ca.pem"), &pem);
    }

    /// Installs a certificate and its key (key first, then the certificate: a poller may see
    /// the pair half-replaced, which must fail cleanly and be retried).
    fn set_cert(&self, pair: &PemPair) {
        write_atomic(&self.path.join(format!("{}.key", self.id)), &pair.key_pem);
        write_atomic(&self.path.join(format!("{}.pem", self.id)), &pair.cert_pem);
    }

    fn set_revoked(&self, text: &str) {
        write_atomic(&self.path.join("revoked.txt"), text);
    }
}

fn config(id: &str, dir: &Path, seeds: Vec<String>) -> NodeConfig {
    let mut cfg = NodeConfig::new(
        node(id),
        SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        dir.to_path_buf(),
    );
    cfg.seeds = seeds;
    cfg.gossip = Config::local();
    cfg.security.cert_poll_interval_ms = 50;
    cfg.security.reload_on_sighup = false;
    cfg
}

/// Starts nodes `ids` with their own folders (already filled) under `root`; every node after
/// the first seeds from the first. Waits until all see each other alive.
async fn start_cluster(root: &Path, ids: &[&str]) -> Vec<Node> {
    let mut nodes: Vec<Node> = Vec::new();
    for id in ids {
        let seeds = nodes
            .first()
            .map(|n| vec![n.advertise_addr().to_string()])
            .unwrap_or_default();
        let n = Node::start(config(id, &root.join(id), seeds))
            .await
            .unwrap();
        nodes.push(n);
    }
    let (ok, _) = wait_for(DEADLINE, || {
        nodes.iter().all(|n| n.alive_count() == nodes.len())
    })
    .await;
    assert!(ok, "cluster {ids:?} did not form");
    nodes
}

/// Writes `key` at `writer` and waits until every node in `all` holds it.
async fn write_reaches_all(writer: &Node, all: &[Node], key: &str) {
    writer.set(key, key.as_bytes().to_vec()).unwrap();
    let (ok, t) = wait_for(DEADLINE, || {
        all.iter()
            .all(|n| n.get(key).map(|e| e.value).as_deref() == Some(key.as_bytes()))
    })
    .await;
    assert!(
        ok,
        "write {key:?} by {} did not reach every node",
        writer.id()
    );
    println!("{key} replicated in {t:?}");
}

fn keys(n: &Node) -> Vec<String> {
    n.list("").into_iter().map(|e| e.key).collect()
}

fn member_ids(n: &Node) -> Vec<String> {
    n.members().into_iter().map(|m| m.id.to_string()).collect()
}

/// Watches a cluster in the background: the lowest number of alive members any node saw,
/// sampled every few milliseconds until stopped.
struct Monitor {
    stop: Arc<AtomicBool>,
    min_alive: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Monitor {
    fn start(nodes: &[Node]) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let min_alive = Arc::new(AtomicUsize::new(usize::MAX));
        let (s, m, nodes) = (stop.clone(), min_alive.clone(), nodes.to_vec());
        let task = tokio::spawn(async move {
            // Bounded: at most ten minutes of samples.
            for _ in 0..120_000 {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                for n in &nodes {
                    m.fetch_min(n.alive_count(), Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        Self {
            stop,
            min_alive,
            task,
        }
    }

    async fn finish(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
        self.min_alive.load(Ordering::Relaxed)
    }
}

fn refused(n: &Node) -> u64 {
    n.handshake_stats().snapshot().refused()
}

/// Closes every connection of `n` and waits until it has working ones to all others again
/// (proving that new handshakes, under whatever certificates are in force, succeed).
async fn reconnect_all(n: &Node, all: &[Node], key: &str) {
    for pc in n.peer_connections() {
        pc.conn.close(transport::CLOSE_SHUTDOWN, b"test: reconnect");
    }
    write_reaches_all(n, all, key).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_rotation_moves_a_cluster_from_ca1_to_ca2_without_failing_a_node() {
    let root = tempfile::tempdir().unwrap();
    let ids = ["n1", "n2", "n3"];
    let ca1 = Ca::new("prod");
    let ca2 = Ca::new("prod");
    let dirs: Vec<CertDir> = ids.iter().map(|i| CertDir::new(root.path(), i)).collect();
    for d in &dirs {
        d.set_bundle(&[&ca1]);
        d.set_cert(&ca1.issue(&d.id));
    }
    let nodes = start_cluster(root.path(), &ids).await;
    let monitor = Monitor::start(&nodes);
    write_reaches_all(&nodes[0], &nodes, "step0/ca1").await;

    // 1. Every node trusts both CAs.
    for d in &dirs {
        d.set_bundle(&[&ca1, &ca2]);
    }
    let (ok, _) = wait_for(DEADLINE, || {
        nodes.iter().all(|n| n.certificate_status().ca_certs == 2)
    })
    .await;
    assert!(ok, "nodes did not pick up the two-CA bundle");
    write_reaches_all(&nodes[1], &nodes, "step1/both-trusted").await;
    reconnect_all(&nodes[1], &nodes, "step1/reconnected").await;

    // 2. Every node gets a certificate from CA2, one at a time.
    for (d, n) in dirs.iter().zip(&nodes) {
        let pair = ca2.issue(&d.id);
        let serial = serial_of(&pair);
        d.set_cert(&pair);
        let (ok, _) = wait_for(DEADLINE, || n.certificate_status().serial == serial).await;
        assert!(ok, "{} did not pick up its CA2 certificate", d.id);
        assert_eq!(n.certificate_status().issuer, ca2.subject());
        write_reaches_all(n, &nodes, &format!("step2/{}-on-ca2", d.id)).await;
    }
    // New handshakes now present CA2 certificates everywhere.
    reconnect_all(&nodes[2], &nodes, "step2/reconnected").await;

    // 3. CA1 leaves the bundle.
    for d in &dirs {
        d.set_bundle(&[&ca2]);
    }
    let (ok, _) = wait_for(DEADLINE, || {
        nodes.iter().all(|n| n.certificate_status().ca_certs == 1)
    })
    .await;
    assert!(ok, "nodes did not pick up the CA2-only bundle");
    write_reaches_all(&nodes[2], &nodes, "step3/ca2-only").await;
    reconnect_all(&nodes[0], &nodes, "step3/reconnected").await;

    let min_alive = monitor.finish().await;
    assert_eq!(
        min_alive, 3,
        "a node saw fewer than 3 members alive during the rotation"
    );
    for n in &nodes {
        assert_eq!(
            refused(n),
            0,
            "{} refused a handshake during the rotation: {:?}",
            n.id(),
            n.handshake_stats().snapshot()
        );
        let s = n.certificate_status();
        assert_eq!(s.reloads_failed, 0, "{}: {:?}", n.id(), s.last_error);
        assert_eq!(s.issuer, ca2.subject());
        assert_eq!(keys(n).len(), 9, "{}: {:?}", n.id(), keys(n));
        println!(
            "{}: {} reloads, connections closed {:?}",
            n.id(),
            s.reloads_ok,
            (
                n.connection_stats()
                    .closed_untrusted
                    .load(Ordering::Relaxed),
                n.connection_stats().closed_revoked.load(Ordering::Relaxed)
            )
        );
    }
    for n in &nodes {
        n.shutdown().await;
    }
}

/// A client outside the cluster (its own endpoint, a valid certificate of the same CA) that
/// reports what certificate a node presents to new connections.
async fn presented_certificate(ca: &Ca, probe_id: &str, to: &Node) -> CertInfo {
    let pair = ca.issue(probe_id);
    let id = Identity::from_pem(&pair.cert_pem, &pair.key_pem).unwrap();
    let trust = TrustBundle::from_pem(&ca.pem.cert_pem).unwrap();
    let t = Transport::bind(
        "127.0.0.1:0".parse().unwrap(),
        id,
        trust,
        QuicSettings::default(),
    )
    .unwrap();
    let (_, conn) = t
        .connect(to.advertise_addr(), Some(&to.id()))
        .await
        .unwrap();
    let chain = identity::peer_chain(&conn).unwrap();
    conn.close(transport::CLOSE_SHUTDOWN, b"done");
    t.close();
    CertInfo::from_der(&chain[0]).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_is_picked_up_without_restart_or_dropping_out() {
    let root = tempfile::tempdir().unwrap();
    let ids = ["n1", "n2", "n3"];
    let ca = Ca::new("prod");
    let dirs: Vec<CertDir> = ids.iter().map(|i| CertDir::new(root.path(), i)).collect();
    for d in &dirs {
        d.set_bundle(&[&ca]);
        d.set_cert(&ca.issue(&d.id));
    }
    let nodes = start_cluster(root.path(), &ids).await;
    let monitor = Monitor::start(&nodes);
    let n2 = &nodes[1];
    let before = presented_certificate(&ca, "probe-a", n2).await;
    assert_eq!(before.serial, n2.certificate_status().serial);

    // A half-installed renewal (new certificate, old key) is refused and changes nothing.
    let now = unix_now();
    let renewed = ca.issue_valid("n2", now - 60, now + 90 * 86_400);
    write_atomic(&dirs[1].path.join("n2.pem"), &renewed.cert_pem);
    let (ok, _) = wait_for(DEADLINE, || n2.certificate_status().reloads_failed >= 1).await;
    assert!(ok, "a mismatched certificate and key were not reported");
    let status = n2.certificate_status();
    assert_eq!(status.serial, before.serial, "a broken pair was applied");
    assert!(
        status
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("does not match"),
        "{:?}",
        status.last_error
    );
    // The key arrives: the renewal applies.
    write_atomic(&dirs[1].path.join("n2.key"), &renewed.key_pem);
    let new_serial = serial_of(&renewed);
    let (ok, t) = wait_for(DEADLINE, || n2.certificate_status().serial == new_serial).await;
    assert!(ok, "the renewed certificate was not picked up");
    println!("renewal picked up in {t:?}");
    assert_eq!(n2.certificate_status().last_error, None);
    assert!(n2.certificate_status().not_after_unix > before.not_after_unix);

    // New peers see the new certificate.
    let after = presented_certificate(&ca, "probe-b", n2).await;
    assert_eq!(after.serial, new_serial);
    assert_eq!(after.not_after_unix, now + 90 * 86_400);
    assert_ne!(after.sha256_fingerprint, before.sha256_fingerprint);

    // It kept replicating, and its new connections work both ways.
    write_reaches_all(n2, &nodes, "after-renewal").await;
    reconnect_all(n2, &nodes, "after-renewal-reconnected").await;
    write_reaches_all(&nodes[0], &nodes, "from-n1").await;

    // A forced reload (what SIGHUP does) of unchanged files is harmless.
    let report = n2.reload_certificates().unwrap();
    assert!(!report.certificate_changed);
    assert!(report.closed.is_empty());

    assert_eq!(
        monitor.finish().await,
        3,
        "a node saw a member not alive during the renewal"
    );
    for n in &nodes {
        assert_eq!(
            refused(n),
            0,
            "{}: {:?}",
            n.id(),
            n.handshake_stats().snapshot()
        );
    }
    for n in &nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_certificates() {
    // Listen for SIGHUP before anything sends it, so the test process cannot be killed by it.
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).unwrap();
    let root = tempfile::tempdir().unwrap();
    let ca = Ca::new("prod");
    let d = CertDir::new(root.path(), "n1");
    d.set_bundle(&[&ca]);
    d.set_cert(&ca.issue("n1"));
    let mut cfg = config("n1", &d.path, vec![]);
    cfg.security.cert_poll_interval_ms = 0; // no polling: only SIGHUP reloads
    cfg.security.reload_on_sighup = true;
    let n1 = Node::start(cfg).await.unwrap();
    let renewed = ca.issue("n1");
    d.set_cert(&renewed);
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    hup.recv().await;
    let serial = serial_of(&renewed);
    let (ok, _) = wait_for(DEADLINE, || n1.certificate_status().serial == serial).await;
    assert!(ok, "SIGHUP did not reload the certificate");
    n1.shutdown().await;
}

fn revoked_count(n: &Node) -> u64 {
    n.handshake_stats().snapshot().revoked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_nodes_are_refused_at_handshake() {
    let root = tempfile::tempdir().unwrap();
    let ca = Ca::new("prod");
    let ids = ["n1", "n2"];
    let dirs: Vec<CertDir> = ids.iter().map(|i| CertDir::new(root.path(), i)).collect();
    // n3 is revoked by node id in revoked.txt; n4's certificate is revoked by a CRL signed
    // by the CA. Each has a folder of its own that does not know it.
    let n3_dir = CertDir::new(root.path(), "n3");
    let n4_dir = CertDir::new(root.path(), "n4");
    let n4_pair = ca.issue("n4");
    let crl = identity::revoke(&ca.pem.cert_pem, &ca.pem.key_pem, None, &n4_pair.cert_pem).unwrap();
    for d in &dirs {
        d.set_bundle(&[&ca]);
        d.set_cert(&ca.issue(&d.id));
        d.set_revoked("# decommissioned\nnode:n3\n");
        write_atomic(&d.path.join("crl.pem"), &crl);
    }
    for (d, pair) in [(&n3_dir, ca.issue("n3")), (&n4_dir, n4_pair)] {
        d.set_bundle(&[&ca]);
        d.set_cert(&pair);
    }
    let nodes = start_cluster(root.path(), &ids).await;
    write_reaches_all(&nodes[0], &nodes, "before").await;
    let keys_before: Vec<_> = nodes.iter().map(keys).collect();
    let members_before: Vec<_> = nodes.iter().map(member_ids).collect();

    let seed = vec![nodes[0].advertise_addr().to_string()];
    let n3 = Node::start(config("n3", &n3_dir.path, seed.clone()))
        .await
        .unwrap();
    let n4 = Node::start(config("n4", &n4_dir.path, seed)).await.unwrap();
    n3.set("from-n3", b"x".to_vec()).unwrap();
    n4.set("from-n4", b"x".to_vec()).unwrap();
    // Both keep trying (seed contact with backoff); n1 refuses each attempt as revoked.
    let (ok, _) = wait_for(DEADLINE, || revoked_count(&nodes[0]) >= 4).await;
    assert!(
        ok,
        "revoked nodes were not refused as revoked: {:?}",
        nodes[0].handshake_stats().snapshot()
    );
    let s = nodes[0].handshake_stats().snapshot();
    assert_eq!(
        s.refused(),
        s.revoked,
        "every refusal is a revocation: {s:?}"
    );
    // Neither got in: the cluster's state is what it was.
    assert_eq!(nodes.iter().map(keys).collect::<Vec<_>>(), keys_before);
    assert_eq!(
        nodes.iter().map(member_ids).collect::<Vec<_>>(),
        members_before
    );
    assert!(n3.alive_count() == 1 && n4.alive_count() == 1);
    // The servers never admitted them. (On their own side a client handshake completes
    // before the server's verdict arrives, so they see short-lived connections.)
    for n in &nodes {
        assert!(
            n.peer_connections()
                .iter()
                .all(|p| p.peer.as_str() != "n3" && p.peer.as_str() != "n4"),
            "{} holds a connection with a revoked node",
            n.id()
        );
    }
    for n in nodes.iter().chain([&n3, &n4]) {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_revoked_mid_connection_is_disconnected_and_kept_out() {
    let root = tempfile::tempdir().unwrap();
    let ca = Ca::new("prod");
    let ids = ["n1", "n2", "n3"];
    let dirs: Vec<CertDir> = ids.iter().map(|i| CertDir::new(root.path(), i)).collect();
    let mut n3_serial = String::new();
    for d in &dirs {
        d.set_bundle(&[&ca]);
        let pair = ca.issue(&d.id);
        if d.id == "n3" {
            n3_serial = serial_of(&pair);
        }
        d.set_cert(&pair);
    }
    let nodes = start_cluster(root.path(), &ids).await;
    let (n1, n2, n3) = (&nodes[0], &nodes[1], &nodes[2]);
    write_reaches_all(n3, &nodes, "from-n3-before").await;
    let connected_to_n3 = |n: &Node| n.peer_connections().iter().any(|p| p.peer.as_str() == "n3");
    assert!(connected_to_n3(n1) || connected_to_n3(n2));

    // The operator revokes n3's certificate by serial on n1 and n2.
    for d in &dirs[..2] {
        d.set_revoked(&format!("serial:{n3_serial}\n"));
    }
    let (ok, t) = wait_for(DEADLINE, || {
        [n1, n2]
            .iter()
            .all(|n| n.certificate_status().revoked_entries == 1 && !connected_to_n3(n))
    })
    .await;
    assert!(ok, "n3's connections were not closed after its revocation");
    println!("revoked connections closed in {t:?}");
    let closed: u64 = [n1, n2]
        .iter()
        .map(|n| n.connection_stats().closed_revoked.load(Ordering::Relaxed))
        .sum();
    assert!(closed >= 1, "no connection was closed as revoked");
    let keys_after_revocation: Vec<_> = [n1, n2].iter().map(|n| keys(n)).collect();

    // n3 writes again and keeps trying to reach n1 and n2; every attempt, from either side,
    // is refused as revoked. Wait for two more refusals at each after the write.
    let base: Vec<u64> = [n1, n2].iter().map(|n| revoked_count(n)).collect();
    n3.set("from-n3-after", b"x".to_vec()).unwrap();
    let (ok, _) = wait_for(DEADLINE, || {
        [n1, n2]
            .iter()
            .zip(&base)
            .all(|(n, b)| revoked_count(n) >= b + 2)
    })
    .await;
    assert!(ok, "n3's reconnection attempts were not refused as revoked");
    assert!(!connected_to_n3(n1) && !connected_to_n3(n2));
    assert_eq!(
        [n1, n2].iter().map(|n| keys(n)).collect::<Vec<_>>(),
        keys_after_revocation,
        "the revoked node changed the cluster's state"
    );
    assert!(n1.get("from-n3-after").is_none() && n2.get("from-n3-after").is_none());
    // n1 and n2 still work together.
    write_reaches_all(n1, &nodes[..2], "n1-n2-after").await;
    for n in &nodes {
        n.shutdown().await;
    }
}

/// Dials `to` with a plain rustls client (webpki verification of the server for the name
/// "localhost"), presenting `id`: a client that runs none of gossamer's own checks. Returns
/// the reason label if the server refused it.
async fn plain_dial(trust: &TrustBundle, id: &Identity, to: &str) -> Result<(), &'static str> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(trust.roots().clone())
        .with_client_auth_cert(id.chain.clone(), id.clone_key())
        .unwrap();
    tls.alpn_protocols = vec![identity::ALPN.to_vec()];
    let cfg = quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap(),
    ));
    let ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let attempt = async {
        let conn = ep
            .connect_with(cfg, to.parse().unwrap(), "localhost")
            .unwrap()
            .await
            .map_err(|e| classify_handshake_error(&e))?;
        // The server judges our certificate after our side finished: wait for its verdict.
        let e = conn.closed().await;
        Err(classify_handshake_error(&e))
    };
    let r = tokio::time::timeout(Duration::from_secs(3), attempt)
        .await
        .unwrap_or(Ok(()));
    ep.close(0u32.into(), b"");
    r
}

/// A stand-alone endpoint presenting `pair` that dials `to`; returns the reason label of the
/// failure, or `None` if the connection was admitted and stayed up for a round trip.
async fn rogue_dial(ca: &Ca, pair: &PemPair, to: &Node) -> Option<&'static str> {
    let id = Identity::from_pem(&pair.cert_pem, &pair.key_pem).unwrap();
    let trust = TrustBundle::from_pem(&ca.pem.cert_pem).unwrap();
    let t = Transport::bind(
        "127.0.0.1:0".parse().unwrap(),
        id,
        trust,
        QuicSettings::default(),
    )
    .unwrap();
    let r = match t.connect(to.advertise_addr(), Some(&to.id())).await {
        // TLS 1.3: the server judges our certificate after our side completed; a refusal
        // arrives as a close.
        Ok((_, conn)) => match conn.open_uni().await {
            Ok(mut s) => {
                let _ = s.write_all(&[0xff]).await;
                let _ = s.finish();
                match tokio::time::timeout(Duration::from_secs(2), conn.closed()).await {
                    Ok(e) => Some(classify_handshake_error(&e)),
                    Err(_) => None,
                }
            }
            Err(e) => Some(classify_handshake_error(&e)),
        },
        Err(TransportError::Connection { source, .. }) => Some(classify_handshake_error(&source)),
        Err(e) => panic!("unexpected dial error: {e}"),
    };
    t.close();
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_not_yet_valid_certificates_are_refused_by_nodes() {
    let root = tempfile::tempdir().unwrap();
    let ca = Ca::new("prod");
    let ids = ["n1", "n2"];
    for i in ids {
        let d = CertDir::new(root.path(), i);
        d.set_bundle(&[&ca]);
        d.set_cert(&ca.issue(i));
    }
    let nodes = start_cluster(root.path(), &ids).await;
    write_reaches_all(&nodes[0], &nodes, "before").await;
    let keys_before: Vec<_> = nodes.iter().map(keys).collect();
    let now = unix_now();

    // A node cannot even start with an expired certificate.
    let old = CertDir::new(root.path(), "old");
    old.set_bundle(&[&ca]);
    old.set_cert(&ca.issue_valid("old", now - 30 * 86_400, now - 86_400));
    match Node::start(config("old", &old.path, vec![])).await {
        Err(NodeError::Identity(e)) => assert!(e.to_string().contains("xpired"), "{e}"),
        Err(e) => panic!("unexpected error: {e}"),
        Ok(_) => panic!("a node started with an expired certificate"),
    }

    // Peers presenting expired or not-yet-valid certificates are refused and counted.
    let expired = ca.issue_valid("old", now - 30 * 86_400, now - 86_400);
    let early = ca.issue_valid("early", now + 86_400, now + 30 * 86_400);
    assert_eq!(
        rogue_dial(&ca, &expired, &nodes[0]).await,
        Some("expired_or_not_yet_valid")
    );
    assert_eq!(
        rogue_dial(&ca, &early, &nodes[0]).await,
        Some("expired_or_not_yet_valid")
    );
    let (ok, _) = wait_for(DEADLINE, || {
        nodes[0]
            .handshake_stats()
            .snapshot()
            .expired_or_not_yet_valid
            == 2
    })
    .await;
    assert!(ok, "{:?}", nodes[0].handshake_stats().snapshot());
    assert_eq!(nodes[0].handshake_stats().snapshot().refused(), 2);

    // A peer admitted while valid is disconnected once its certificate expires.
    let short = ca.issue_valid("short", now - 60, now + 2);
    let id = Identity::from_pem(&short.cert_pem, &short.key_pem).unwrap();
    let t = Transport::bind(
        "127.0.0.1:0".parse().unwrap(),
        id,
        TrustBundle::from_pem(&ca.pem.cert_pem).unwrap(),
        QuicSettings::default(),
    )
    .unwrap();
    let (_, conn) = t
        .connect(nodes[0].advertise_addr(), Some(&node("n1")))
        .await
        .unwrap();
    let (ok, t_closed) = wait_for(Duration::from_secs(15), || conn.close_reason().is_some()).await;
    assert!(ok, "a connection outlived its peer's certificate");
    println!("expired peer disconnected after {t_closed:?}");
    assert!(
        nodes[0]
            .connection_stats()
            .closed_untrusted
            .load(Ordering::Relaxed)
            >= 1
    );
    t.close();

    assert_eq!(nodes.iter().map(keys).collect::<Vec<_>>(), keys_before);
    for n in &nodes {
        assert_eq!(n.alive_count(), 2);
        assert_eq!(member_ids(n).len(), 2);
    }
    for n in &nodes {
        n.shutdown().await;
    }
}

/// A recheck verifies a connection again only once its peer's certificate expired (or
/// the bundle changed): the verdict of an earlier recheck must not outlive the
/// certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_verified_before_its_certificate_expired_is_judged_again_after() {
    let ca = Ca::new("prod");
    let now = unix_now();
    let server = endpoint_with(&ca, &ca.issue_valid("n1", now - 60, now + 30 * 86_400));
    let accepting = server.clone();
    tokio::spawn(async move { while accepting.accept().await.is_some() {} });
    let expires = now + 3;
    let client = endpoint_with(&ca, &ca.issue_valid("short", now - 60, expires));
    let (_, conn) = client
        .connect(&server.local_addr().to_string(), Some(&node("n1")))
        .await
        .unwrap();
    let (ok, _) = wait_for(DEADLINE, || server.connections().len() == 1).await;
    assert!(ok, "the server never listed the connection");
    // Verified while valid (twice: the second reuses the first's verdict).
    assert!(server.recheck_connections().closed.is_empty());
    assert!(server.recheck_connections().closed.is_empty());
    let (expired, _) = wait_for(Duration::from_secs(10), || unix_now() > expires).await;
    assert!(expired);
    let out = server.recheck_connections();
    assert_eq!(
        out.closed.len(),
        1,
        "the expired peer was not judged again: {out:?}"
    );
    let (ok, _) = wait_for(DEADLINE, || conn.close_reason().is_some()).await;
    assert!(ok, "the expired peer's connection stayed open");
    client.close();
    server.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_expiry_is_a_metric_and_warned_about() {
    let root = tempfile::tempdir().unwrap();
    let ca = Ca::new("prod");
    let d = CertDir::new(root.path(), "n1");
    d.set_bundle(&[&ca]);
    let now = unix_now();
    d.set_cert(&ca.issue_valid("n1", now - 60, now + 3 * 86_400));
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut cfg = config("n1", &d.path, vec![]);
    cfg.admin = Some(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    let n1 = Node::start(cfg).await.unwrap();
    gossamer::admin::AdminServer::start(&n1).await.unwrap();
    let client = gossamer::admin::client::AdminClient::new(format!("127.0.0.1:{port}"), None);
    let up = wait_for_async(DEADLINE, || {
        let c = &client;
        async move { c.metrics().await.is_ok() }
    })
    .await;
    assert!(up, "admin API did not come up");
    let text = client.metrics().await.unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("gossamer_cert_expiry_seconds "))
        .unwrap_or_else(|| panic!("no expiry metric in:\n{text}"));
    let secs: f64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    let expected = (3 * 86_400) as f64;
    assert!(
        (expected - 120.0..=expected).contains(&secs),
        "expiry metric {secs}, expected about {expected}"
    );
    assert!(text.contains("# TYPE gossamer_cert_expiry_seconds gauge"));
    // Three days left is inside the default 14-day warning window.
    let s = n1.certificate_status();
    assert!(s.expires_in_secs < 14 * 86_400 && s.expires_in_secs > 2 * 86_400);
    n1.shutdown().await;
}

/// An external PKI: root CA → intermediate CA → node certificates, made with rcgen as any
/// other tool (cert-manager, Vault, step-ca) would; gossamer only needs the node-id SAN URI.
struct ExternalPki {
    root_pem: String,
    intermediate: rcgen::Issuer<'static, rcgen::KeyPair>,
    intermediate_pem: String,
}

impl ExternalPki {
    fn new() -> Self {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
        let root_key = KeyPair::generate().unwrap();
        let mut root = CertificateParams::new(Vec::<String>::new()).unwrap();
        root.distinguished_name
            .push(DnType::CommonName, "Example Corp Root CA");
        root.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        root.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let root_cert = root.self_signed(&root_key).unwrap();
        let root_issuer = rcgen::Issuer::new(root, root_key);

        let int_key = KeyPair::generate().unwrap();
        let mut int = CertificateParams::new(Vec::<String>::new()).unwrap();
        int.distinguished_name
            .push(DnType::CommonName, "Example Corp Issuing CA 1");
        int.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        int.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let int_cert = int.signed_by(&int_key, &root_issuer).unwrap();
        Self {
            root_pem: root_cert.pem(),
            intermediate: rcgen::Issuer::new(int, int_key),
            intermediate_pem: int_cert.pem(),
        }
    }

    /// A node certificate as an external CA issues it: chain (leaf, intermediate) and key.
    fn issue(&self, uri: &str) -> PemPair {
        use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair, SanType};
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        p.distinguished_name.push(DnType::CommonName, uri);
        p.subject_alt_names
            .push(SanType::URI(uri.to_string().try_into().unwrap()));
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        p.use_authority_key_identifier_extension = true;
        let cert = p.signed_by(&key, &self.intermediate).unwrap();
        PemPair {
            cert_pem: format!("{}{}", cert.pem(), self.intermediate_pem),
            key_pem: key.serialize_pem(),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_from_an_external_ca_chain_form_a_cluster() {
    let pki = ExternalPki::new();
    let root = tempfile::tempdir().unwrap();
    let ids = ["web-1", "web-2"];
    for id in ids {
        let d = CertDir::new(root.path(), id);
        write_atomic(&d.path.join("ca.pem"), &pki.root_pem);
        d.set_cert(&pki.issue(&format!("gossamer://edge/{id}")));
    }
    let (ident, trust) = identity::load(&root.path().join("web-1"), &node("web-1")).unwrap();
    assert_eq!(ident.cluster.as_str(), "edge");
    assert_eq!(
        ident.chain.len(),
        2,
        "the intermediate travels with the leaf"
    );
    assert_eq!(trust.ca_certs().len(), 1);

    let nodes = start_cluster(root.path(), &ids).await;
    write_reaches_all(&nodes[0], &nodes, "external-pki").await;
    for n in &nodes {
        assert_eq!(refused(n), 0);
        assert_eq!(n.status().cluster, "edge");
    }

    // A leaf without its intermediate does not chain to the root: refused at load.
    let d = CertDir::new(root.path(), "web-3");
    write_atomic(&d.path.join("ca.pem"), &pki.root_pem);
    let pair = pki.issue("gossamer://edge/web-3");
    let leaf_only = identity::inspect_pem(&pair.cert_pem, "x").unwrap();
    assert_eq!(leaf_only.len(), 2);
    let leaf_pem = pair
        .cert_pem
        .split_inclusive("-----END CERTIFICATE-----\n")
        .next()
        .unwrap();
    d.set_cert(&PemPair {
        cert_pem: leaf_pem.to_string(),
        key_pem: pair.key_pem.clone(),
    });
    let err = identity::load(&d.path, &node("web-3")).unwrap_err();
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");

    // Another cluster's certificate from the same PKI is refused by the nodes (dialing with
    // a plain TLS client, which does not itself object to the node's cluster).
    let foreign = pki.issue("gossamer://other/web-9");
    let id = Identity::from_pem(&foreign.cert_pem, &foreign.key_pem).unwrap();
    let trust = TrustBundle::from_pem(&pki.root_pem).unwrap();
    let r = plain_dial(&trust, &id, nodes[0].advertise_addr()).await;
    assert_eq!(r, Err("wrong_cluster"));
    let (ok, _) = wait_for(DEADLINE, || {
        nodes[0].handshake_stats().snapshot().wrong_cluster == 1
    })
    .await;
    assert!(ok, "{:?}", nodes[0].handshake_stats().snapshot());
    assert_eq!(nodes[0].alive_count(), 2);
    assert_eq!(member_ids(&nodes[0]).len(), 2);
    for n in &nodes {
        n.shutdown().await;
    }
}

fn endpoint_for(ca: &Ca, id: &str) -> Transport {
    endpoint_with(ca, &ca.issue(id))
}

/// A bare transport holding `pair`, trusting `ca`.
fn endpoint_with(ca: &Ca, pair: &PemPair) -> Transport {
    Transport::bind(
        "127.0.0.1:0".parse().unwrap(),
        Identity::from_pem(&pair.cert_pem, &pair.key_pem).unwrap(),
        TrustBundle::from_pem(&ca.pem.cert_pem).unwrap(),
        QuicSettings::default(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_peer_are_limited() {
    let ca = Ca::new("prod");
    // The transport's own limit, with a server that keeps every connection it accepts.
    let server = endpoint_for(&ca, "n1");
    let accepted = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (srv, acc) = (server.clone(), accepted.clone());
    let acceptor = tokio::spawn(async move {
        while let Some((_, c)) = srv.accept().await {
            acc.lock().unwrap().push(c);
        }
    });
    let client = endpoint_for(&ca, "n2");
    let addr = server.local_addr().to_string();
    let mut conns = Vec::new();
    for _ in 0..3 {
        let (_, c) = client.connect(&addr, Some(&node("n1"))).await.unwrap();
        conns.push(c);
    }
    // The oldest the server admitted goes (normally the first dialed; the server's view of
    // which handshake finished first decides); two stay.
    let closed =
        |conns: &[quinn::Connection]| conns.iter().filter(|c| c.close_reason().is_some()).count();
    let (ok, _) = wait_for(DEADLINE, || {
        closed(&conns) == 1 && accepted.lock().unwrap().len() == 3
    })
    .await;
    assert!(ok, "a third connection from one peer did not close one");
    for c in &conns {
        match c.close_reason() {
            None => {}
            Some(quinn::ConnectionError::ApplicationClosed(a)) => {
                assert_eq!(a.error_code, transport::CLOSE_TOO_MANY)
            }
            other => panic!("unexpected close: {other:?}"),
        }
    }
    assert!(conns[2].close_reason().is_none(), "the newest was closed");
    let stats = server.connection_stats();
    assert_eq!(stats.closed_over_peer_limit.load(Ordering::Relaxed), 1);
    assert_eq!(server.connections().len(), 2);
    acceptor.abort();
    server.close();

    // A node never lets one peer hold more than two connections either (its runtime also
    // closes duplicates on its own), and a bare connection does not make a member.
    let root = tempfile::tempdir().unwrap();
    let d = CertDir::new(root.path(), "n1");
    d.set_bundle(&[&ca]);
    d.set_cert(&ca.issue("n1"));
    let n1 = Node::start(config("n1", &d.path, vec![])).await.unwrap();
    let mut conns = Vec::new();
    for _ in 0..4 {
        let (_, c) = client
            .connect(n1.advertise_addr(), Some(&node("n1")))
            .await
            .unwrap();
        conns.push(c);
    }
    let from_n2 = |n: &Node| {
        n.peer_connections()
            .iter()
            .filter(|p| p.peer.as_str() == "n2")
            .count()
    };
    let (ok, _) = wait_for(DEADLINE, || {
        conns.iter().filter(|c| c.close_reason().is_none()).count() <= 2 && from_n2(&n1) <= 2
    })
    .await;
    assert!(ok, "a peer kept more than two connections to a node");
    assert!(
        conns.iter().any(|c| c.close_reason().is_none()),
        "every connection was closed"
    );
    assert_eq!(
        n1.alive_count(),
        1,
        "a bare connection does not make a member"
    );
    client.close();
    n1.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_per_connection_are_limited() {
    let root = tempfile::tempdir().unwrap();
    let ca = Ca::new("prod");
    let d = CertDir::new(root.path(), "n1");
    d.set_bundle(&[&ca]);
    d.set_cert(&ca.issue("n1"));
    let n1 = Node::start(config("n1", &d.path, vec![])).await.unwrap();
    let pair = ca.issue("n2");
    let t = Transport::bind(
        "127.0.0.1:0".parse().unwrap(),
        Identity::from_pem(&pair.cert_pem, &pair.key_pem).unwrap(),
        TrustBundle::from_pem(&ca.pem.cert_pem).unwrap(),
        QuicSettings::default(),
    )
    .unwrap();
    let (_, conn) = t
        .connect(n1.advertise_addr(), Some(&node("n1")))
        .await
        .unwrap();
    let limits = QuicSettings::default();
    let mut bi = Vec::new();
    for _ in 0..limits.max_bi_streams {
        bi.push(conn.open_bi().await.unwrap());
    }
    let mut uni = Vec::new();
    for _ in 0..limits.max_uni_streams {
        uni.push(conn.open_uni().await.unwrap());
    }
    // The node's credit is spent: one more of either kind is not granted while these are
    // open. (Asserting that something does not happen needs a bounded wait.)
    let wait = Duration::from_millis(300);
    assert!(tokio::time::timeout(wait, conn.open_bi()).await.is_err());
    assert!(tokio::time::timeout(wait, conn.open_uni()).await.is_err());
    t.close();
    n1.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_per_source_address_are_rate_limited() {
    let root = tempfile::tempdir().unwrap();
    let ca = Ca::new("prod");
    let d = CertDir::new(root.path(), "n1");
    d.set_bundle(&[&ca]);
    d.set_cert(&ca.issue("n1"));
    let mut cfg = config("n1", &d.path, vec![]);
    cfg.security.handshakes_per_sec_per_ip = 0.5;
    cfg.security.handshake_burst_per_ip = 3;
    let n1 = Node::start(cfg).await.unwrap();
    n1.set("k", b"v".to_vec()).unwrap();
    let pair = ca.issue("n2");
    let t = Transport::bind(
        "127.0.0.1:0".parse().unwrap(),
        Identity::from_pem(&pair.cert_pem, &pair.key_pem).unwrap(),
        TrustBundle::from_pem(&ca.pem.cert_pem).unwrap(),
        QuicSettings::default(),
    )
    .unwrap();
    let mut outcomes = Vec::new();
    for _ in 0..8 {
        let r = t.connect(n1.advertise_addr(), Some(&node("n1"))).await;
        outcomes.push(match r {
            Ok((_, c)) => {
                c.close(transport::CLOSE_SHUTDOWN, b"");
                "ok"
            }
            Err(TransportError::Connection { source, .. }) => classify_handshake_error(&source),
            Err(e) => panic!("unexpected: {e}"),
        });
    }
    println!("{outcomes:?}");
    assert_eq!(&outcomes[..3], ["ok", "ok", "ok"], "the burst is admitted");
    let refused = outcomes
        .iter()
        .filter(|o| **o == "connection_refused")
        .count();
    assert!(
        refused >= 4,
        "excess attempts were not refused: {outcomes:?}"
    );
    let s = n1.handshake_stats().snapshot();
    assert_eq!(s.rate_limited as usize, refused, "{s:?}");
    assert_eq!(s.refused(), s.rate_limited, "{s:?}");
    // Each attempt's first Initial was answered with a Retry: the budget is spent only by
    // attempts that echoed the token, which these real clients all did.
    assert!(s.retries_sent >= 8, "{s:?}");
    // Nothing else changed.
    assert_eq!(n1.alive_count(), 1);
    assert_eq!(keys(&n1), vec!["k".to_string()]);
    t.close();
    n1.shutdown().await;
}

/// What a node holds about member `of`: (status, incarnation, addr, dc, zone, tags).
fn member_view(n: &Node, of: &NodeId) -> (String, u64, String, String, String, String) {
    let m = n.members().into_iter().find(|m| &m.id == of).unwrap();
    let tags = format!("{:?}", m.tags);
    (m.status, m.incarnation, m.addr, m.dc, m.zone, tags)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_node_cannot_forge_another_nodes_refutation_metadata_or_leave() {
    use gossamer::core::engine::Event;
    use gossamer::core::membership::Change;
    use gossamer::core::proto::{Datagram, Item, MemberState, MemberStatus};

    let root = tempfile::tempdir().unwrap();
    let ca = Ca::new("prod");
    let ids = ["x", "r", "y"];
    for id in ids {
        let d = CertDir::new(root.path(), id);
        d.set_bundle(&[&ca]);
        d.set_cert(&ca.issue(id));
    }
    let nodes = start_cluster(root.path(), &ids).await;
    let (x, r, y) = (&nodes[0], &nodes[1], &nodes[2]);
    let yid = y.id();
    // Let the join gossip settle: every node holds y's own, current state.
    let (ok, _) = wait_for(DEADLINE, || {
        nodes
            .iter()
            .all(|n| member_view(n, &yid).1 == member_view(y, &yid).1)
    })
    .await;
    assert!(ok, "y's state did not settle");
    let before: Vec<_> = nodes.iter().map(|n| member_view(n, &yid)).collect();
    let genuine = y.members().into_iter().find(|m| m.is_self).unwrap();
    let claim = |incarnation: u64, status: MemberStatus, addr: &str, dc: &str| {
        let mut tags = genuine.tags.clone();
        tags.insert("role".into(), "forged".into());
        Item::Member(MemberState {
            info: gossamer::core::proto::MemberInfo {
                id: yid.clone(),
                addr: addr.into(),
                dc: dc.into(),
                zone: genuine.zone.clone(),
                tags,
            }
            .into(),
            incarnation,
            status,
        })
    };
    let mut events = r.subscribe();

    // x, authenticated as itself, forges y's refutation at a higher incarnation with a
    // new address, and new metadata at y's current incarnation.
    let forged = Datagram {
        items: vec![
            claim(
                genuine.incarnation + 1,
                MemberStatus::Alive,
                "203.0.113.9:7000",
                "evil",
            ),
            claim(
                genuine.incarnation,
                MemberStatus::Alive,
                &genuine.addr,
                "evil",
            ),
        ],
    };
    assert!(x.send_raw_datagram(&r.id(), &forged));
    let (ok, _) = wait_for(DEADLINE, || r.engine_stats().claims_refused >= 2).await;
    assert!(ok, "r never saw the forged claims");
    // r asked y, which had nothing to correct: the cluster holds exactly what it held.
    let (ok, _) = wait_for(DEADLINE, || r.engine_stats().claims_verified >= 1).await;
    assert!(ok, "r did not verify with y");
    let after: Vec<_> = nodes.iter().map(|n| member_view(n, &yid)).collect();
    assert_eq!(
        after, before,
        "forged refutation or metadata changed the cluster"
    );

    // x forges y's leave: r does not believe it, and y, asked, refutes first-hand.
    let leave = Datagram {
        items: vec![claim(
            genuine.incarnation + 1,
            MemberStatus::Left,
            &genuine.addr,
            &genuine.dc,
        )],
    };
    let refused = r.engine_stats().claims_refused;
    assert!(x.send_raw_datagram(&r.id(), &leave));
    let (ok, _) = wait_for(DEADLINE, || r.engine_stats().claims_refused > refused).await;
    assert!(ok, "r never saw the forged leave");
    let (ok, t) = wait_for(DEADLINE, || {
        nodes.iter().all(|n| {
            let (status, inc, addr, dc, zone, tags) = member_view(n, &yid);
            let (_, _, addr0, dc0, zone0, tags0) = &before[0];
            status == "alive"
                && inc > genuine.incarnation
                && (&addr, &dc, &zone, &tags) == (addr0, dc0, zone0, tags0)
        })
    })
    .await;
    assert!(ok, "y is not alive with its own metadata everywhere");
    println!("y refuted the forged leave everywhere in {t:?}");
    while let Ok(Some(ev)) = events.try_recv() {
        if let Event::Member(Change::Updated { new, .. }) = ev {
            assert!(
                !(new.info.id == yid && new.status == MemberStatus::Left),
                "r believed the forged leave"
            );
            assert_eq!(new.info.addr, genuine.addr, "r took a forged address");
        }
    }
    assert!(y.engine_stats().refutations >= 1, "y never refuted");
    for n in &nodes {
        assert_eq!(n.alive_count(), 3);
    }
    for n in nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_off_loopback_needs_a_token_and_the_token_is_enforced() {
    let root = tempfile::tempdir().unwrap();
    let ca = Ca::new("prod");
    let d = CertDir::new(root.path(), "n1");
    d.set_bundle(&[&ca]);
    d.set_cert(&ca.issue("n1"));

    // Off loopback without a token: a configuration error, before anything is bound.
    let mut cfg = config("n1", &d.path, vec![]);
    cfg.admin = Some("0.0.0.0:0".parse().unwrap());
    let err = cfg.validate().unwrap_err();
    assert!(err.contains("admin_token"), "{err}");
    match Node::start(cfg).await {
        Err(NodeError::Config(e)) => assert!(e.contains("admin_token"), "{e}"),
        Err(e) => panic!("unexpected error: {e}"),
        Ok(_) => panic!("an unprotected admin API started off loopback"),
    }
    let mut cfg = config("n1", &d.path, vec![]);
    cfg.admin = Some("0.0.0.0:0".parse().unwrap());
    cfg.admin_token = Some("s3cret".into());
    assert!(cfg.validate().is_ok());

    // With a token (on loopback here: tests use 127.0.0.1 only), requests need it.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut cfg = config("n1", &d.path, vec![]);
    cfg.admin = Some(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    cfg.admin_token = Some("s3cret".into());
    let n1 = Node::start(cfg).await.unwrap();
    gossamer::admin::AdminServer::start(&n1).await.unwrap();
    let addr = format!("127.0.0.1:{port}");
    let good = gossamer::admin::client::AdminClient::new(addr.clone(), Some("s3cret".into()));
    let up = wait_for_async(DEADLINE, || {
        let c = &good;
        async move { c.status().await.is_ok() }
    })
    .await;
    assert!(up, "admin API did not come up");
    for token in [None, Some("wrong".to_string())] {
        let c = gossamer::admin::client::AdminClient::new(addr.clone(), token);
        let e = c.status().await.unwrap_err();
        assert!(e.to_string().contains("refused the request"), "{e}");
        assert!(c.metrics().await.is_err());
        assert!(c.set("k", b"v").await.is_err());
    }
    // Raw HTTP without a token: 401.
    let raw = raw_http_get(&addr, "/v1/status").await;
    assert!(raw.starts_with("HTTP/1.1 401"), "{raw}");
    // The refused requests changed nothing.
    assert!(n1.get("k").is_none());
    good.set("k", b"v").await.unwrap();
    assert_eq!(n1.get("k").unwrap().value, b"v");
    n1.shutdown().await;
}

async fn raw_http_get(addr: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(DEADLINE, s.read_to_end(&mut buf))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&buf).into_owned()
}

#[test]
fn security_config_round_trips_through_toml() {
    let text = r#"
        node_id = "n1"
        listen = "127.0.0.1:7000"
        certs = "/etc/gossamer"
        [security]
        cert_poll_interval_ms = 2000
        cert_expiry_warn_days = 30
        max_conns_per_peer = 3
        handshakes_per_sec_per_ip = 5.0
        handshake_burst_per_ip = 10
    "#;
    let cfg: NodeConfig = toml::from_str(text).unwrap();
    assert_eq!(cfg.security.cert_poll_interval_ms, 2000);
    assert_eq!(cfg.security.cert_expiry_warn_days, 30);
    assert!(cfg.security.reload_on_sighup);
    assert!(cfg.validate().is_ok());
    let bad: NodeConfig = toml::from_str(&text.replace("5.0", "-1.0")).unwrap();
    assert!(bad
        .validate()
        .unwrap_err()
        .contains("handshakes_per_sec_per_ip"));
}
