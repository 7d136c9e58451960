//! The admin API over HTTPS with client certificates (`admin_tls`): which certificates a
//! node's admin API accepts (operator certificates of its cluster; node certificates only
//! where configured), how refusals are counted, and the CLI's `--ca/--cert/--key` against
//! a real `gossamer run` process. Every key is generated for the test in a temporary
//! folder.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::{certs, free_tcp, free_udp, gossamer, until, Proc, BIN};
use gossamer::admin::client::AdminClient;
use gossamer::admin::testing::TestServer;
use gossamer::admin::{ServeLimits, TlsSource};
use gossamer::core::id::ClusterName;
use gossamer::identity::{
    self, AdminClients, HandshakeStats, Identity, PemPair, RevocationList, TrustBundle,
};

const DEADLINE: Duration = Duration::from_secs(30);

/// A CA with the files a client needs written into `dir`.
struct Ca {
    pem: PemPair,
    dir: PathBuf,
}

impl Ca {
    fn new(cluster: &str, dir: &Path) -> Self {
        let pem = identity::generate_ca(&ClusterName::new(cluster).unwrap(), 30).unwrap();
        std::fs::write(dir.join("ca.pem"), &pem.cert_pem).unwrap();
        Self {
            pem,
            dir: dir.to_path_buf(),
        }
    }

    fn node(&self, id: &str) -> (Identity, PemPair) {
        let node = id.parse().unwrap();
        let pair = identity::issue_node(&self.pem.cert_pem, &self.pem.key_pem, &node, &[], &[], 30)
            .unwrap();
        (
            Identity::from_pem(&pair.cert_pem, &pair.key_pem).unwrap(),
            pair,
        )
    }

    fn operator(&self, name: &str) -> PemPair {
        identity::issue_operator(&self.pem.cert_pem, &self.pem.key_pem, name, 30).unwrap()
    }

    /// Writes `pair` as `<name>.pem`/`<name>.key` and returns their paths.
    fn write(&self, name: &str, pair: &PemPair) -> (PathBuf, PathBuf) {
        let (c, k) = (
            self.dir.join(format!("{name}.pem")),
            self.dir.join(format!("{name}.key")),
        );
        std::fs::write(&c, &pair.cert_pem).unwrap();
        std::fs::write(&k, &pair.key_pem).unwrap();
        (c, k)
    }

    /// A client trusting this CA's nodes, presenting `pair` if given.
    fn client(&self, addr: String, pair: Option<(&str, &PemPair)>) -> AdminClient {
        let files = pair.map(|(name, p)| self.write(name, p));
        let config = identity::admin_client_config(
            &self.dir.join("ca.pem"),
            files.as_ref().map(|(c, k)| (c.as_path(), k.as_path())),
        )
        .unwrap();
        AdminClient::new(addr, None)
            .with_tls(Arc::new(config))
            .with_timeout(Duration::from_secs(5))
    }
}

/// An admin server (fake backend) serving HTTPS as `node` under `trust`.
async fn https_server(
    node: Identity,
    trust: TrustBundle,
    clients: AdminClients,
) -> (TestServer, Arc<HandshakeStats>) {
    let stats = HandshakeStats::new();
    let s = stats.clone();
    let source = TlsSource::new(
        move || {
            identity::admin_server_config(&node, &trust, clients, s.clone())
                .map(Arc::new)
                .map_err(|e| e.to_string())
        },
        stats.clone(),
    );
    let server = TestServer::start_full(None, Some(source), ServeLimits::default()).await;
    (server, stats)
}

fn refused(stats: &HandshakeStats, reason: &str) -> u64 {
    stats
        .snapshot()
        .refusals()
        .into_iter()
        .find(|(r, _)| *r == reason)
        .map(|(_, n)| n)
        .unwrap()
}

/// Waits for the server's verifier to have counted a refusal under `reason` (the client
/// may see its failure before the server has finished counting).
async fn wait_refused(stats: &HandshakeStats, reason: &str, n: u64) {
    let start = std::time::Instant::now();
    while refused(stats, reason) < n {
        assert!(
            start.elapsed() < DEADLINE,
            "{reason} never reached {n}: {:?}",
            stats.snapshot()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_takes_operator_certificates_and_refuses_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("prod", dir.path());
    let (n1, _) = ca.node("n1");
    let (server, stats) = https_server(n1, ca.bundle(), AdminClients::Operators).await;
    let addr = server.addr.to_string();

    // The operator certificate of our CA is let in.
    let alice = ca.operator("alice");
    let status = ca
        .client(addr.clone(), Some(("alice", &alice)))
        .status()
        .await;
    assert!(status.is_ok(), "{status:?}");
    assert_eq!(stats.snapshot().accepted, 1);

    // No client certificate: refused, and counted although rustls refuses it before the
    // verifier runs.
    assert!(ca.client(addr.clone(), None).status().await.is_err());
    wait_refused(&stats, "no_certificate", 1).await;
    // Plain HTTP to the HTTPS port: refused, counted as `other`.
    assert!(AdminClient::new(addr.clone(), None)
        .with_timeout(Duration::from_secs(5))
        .status()
        .await
        .is_err());
    wait_refused(&stats, "other", 1).await;

    // A node's certificate: refused under `operators`, as a bad identity.
    let (_, n2) = ca.node("n2");
    assert!(ca
        .client(addr.clone(), Some(("n2", &n2)))
        .status()
        .await
        .is_err());
    wait_refused(&stats, "bad_identity", 1).await;

    // An operator certificate of another CA (same cluster name): unknown CA.
    let other_dir = tempfile::tempdir().unwrap();
    let stranger = Ca::new("prod", other_dir.path());
    let mallory = stranger.operator("mallory");
    let (c, k) = stranger.write("mallory", &mallory);
    let config = identity::admin_client_config(&dir.path().join("ca.pem"), Some((&c, &k))).unwrap();
    let client = AdminClient::new(addr.clone(), None).with_tls(Arc::new(config));
    assert!(client.status().await.is_err());
    wait_refused(&stats, "unknown_ca", 1).await;

    // Plain HTTP to the HTTPS server gets no answer.
    assert!(AdminClient::new(addr.clone(), None)
        .with_timeout(Duration::from_secs(5))
        .status()
        .await
        .is_err());

    // The one accepted connection stays the only one.
    assert_eq!(stats.snapshot().accepted, 1, "{:?}", stats.snapshot());
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_certificates_are_let_in_only_where_configured() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("prod", dir.path());
    let (n1, _) = ca.node("n1");
    let (server, stats) = https_server(n1, ca.bundle(), AdminClients::OperatorsAndNodes).await;
    let addr = server.addr.to_string();
    let (_, n2) = ca.node("n2");
    let r = ca.client(addr.clone(), Some(("n2", &n2))).status().await;
    assert!(r.is_ok(), "{r:?}");
    let alice = ca.operator("alice");
    let r = ca.client(addr, Some(("alice", &alice))).status().await;
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(stats.snapshot().accepted, 2);
    assert_eq!(stats.snapshot().refused(), 0);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_of_another_cluster_and_revoked_operators_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("prod", dir.path());
    let staging_dir = tempfile::tempdir().unwrap();
    let staging = Ca::new("staging", staging_dir.path());
    let bob = ca.operator("bob");
    let serial = identity::inspect_pem(&bob.cert_pem, "bob").unwrap()[0]
        .serial
        .clone();
    let list = RevocationList::parse(&format!("serial:{serial}\n"), "revoked.txt").unwrap();
    // The server trusts both CAs: only the cluster check keeps staging's operators out.
    let trust = TrustBundle::from_pem(&format!("{}{}", ca.pem.cert_pem, staging.pem.cert_pem))
        .unwrap()
        .with_revocation_list(list);
    let (n1, _) = ca.node("n1");
    let (server, stats) = https_server(n1, trust, AdminClients::Operators).await;
    let addr = server.addr.to_string();

    let eve = staging.operator("eve");
    let (c, k) = staging.write("eve", &eve);
    let config = identity::admin_client_config(&dir.path().join("ca.pem"), Some((&c, &k))).unwrap();
    let client = AdminClient::new(addr.clone(), None).with_tls(Arc::new(config));
    assert!(client.status().await.is_err());
    wait_refused(&stats, "wrong_cluster", 1).await;

    assert!(ca
        .client(addr.clone(), Some(("bob", &bob)))
        .status()
        .await
        .is_err());
    wait_refused(&stats, "revoked", 1).await;

    let carol = ca.operator("carol");
    let r = ca.client(addr, Some(("carol", &carol))).status().await;
    assert!(r.is_ok(), "{r:?}");
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_refuses_a_server_outside_its_fleet() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("prod", dir.path());
    let other_dir = tempfile::tempdir().unwrap();
    let stranger = Ca::new("prod", other_dir.path());
    // A server with a stranger's node certificate that would accept our operator.
    let (imposter, _) = stranger.node("n1");
    let trust =
        TrustBundle::from_pem(&format!("{}{}", ca.pem.cert_pem, stranger.pem.cert_pem)).unwrap();
    let (server, _) = https_server(imposter, trust, AdminClients::Operators).await;
    let alice = ca.operator("alice");
    let err = ca
        .client(server.addr.to_string(), Some(("alice", &alice)))
        .status()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("TLS"), "{err}");
    server.shutdown().await.unwrap();
}

impl Ca {
    fn bundle(&self) -> TrustBundle {
        TrustBundle::from_pem(&self.pem.cert_pem).unwrap()
    }
}

/// The binary: `certs issue --client`, `run --admin-tls operators`, and the CLI's
/// `--ca/--cert/--key`, including the refusals and the usage errors.
#[test]
fn the_cli_reaches_a_node_over_https_with_an_operator_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    certs(d, "tls", &["n1"]);
    let ds = d.to_str().unwrap();
    let out = gossamer(&["certs", "issue", "--dir", ds, "--client", "alice"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let inspect = gossamer(&[
        "certs",
        "inspect",
        d.join("operator-alice.pem").to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&inspect.stdout);
    assert!(
        text.contains("operator:") && text.contains("alice"),
        "{text}"
    );

    let (quic, admin) = (free_udp(), free_tcp());
    let _node = Proc(
        Command::new(BIN)
            .args([
                "run",
                "--node-id",
                "n1",
                "--admin-tls",
                "operators",
                "--listen",
            ])
            .arg(format!("127.0.0.1:{quic}"))
            .arg("--admin")
            .arg(format!("127.0.0.1:{admin}"))
            .arg("--certs")
            .arg(d)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let addr = format!("127.0.0.1:{admin}");
    let path = |f: &str| d.join(f).to_str().unwrap().to_string();
    let (ca, cert, key) = (
        path("ca.pem"),
        path("operator-alice.pem"),
        path("operator-alice.key"),
    );
    let status = |extra: &[&str]| {
        let mut args = vec!["status", "--admin", addr.as_str()];
        args.extend_from_slice(extra);
        gossamer(&args)
    };
    until("the node answers over HTTPS", DEADLINE, || {
        status(&["--ca", &ca, "--cert", &cert, "--key", &key])
            .status
            .success()
    });
    let ok = status(&["--ca", &ca, "--cert", &cert, "--key", &key]);
    assert!(String::from_utf8_lossy(&ok.stdout).contains("n1"));

    // Plain HTTP, no client certificate, a node's certificate: exit 1, saying what to do.
    let (node_cert, node_key) = (path("n1.pem"), path("n1.key"));
    let refusals: [(&[&str], &str); 3] = [
        (&[], "HTTPS"),
        (&["--ca", &ca], "client certificate"),
        (
            &["--ca", &ca, "--cert", &node_cert, "--key", &node_key],
            "client certificate",
        ),
    ];
    for (extra, says) in refusals {
        let out = status(extra);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{extra:?}: {err}");
        assert!(err.contains(says), "{extra:?}: {err}");
    }

    // A certificate without --ca, or half a pair: usage errors (exit 2) naming the flags.
    let out = status(&["--cert", &cert, "--key", &key]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--ca"));
    let out = status(&["--ca", &ca, "--cert", &cert]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--key"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_over_https_takes_operator_certificates_like_every_route() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("prod", dir.path());
    let (n1, _) = ca.node("n1");
    let (server, stats) = https_server(n1, ca.bundle(), AdminClients::Operators).await;
    let addr = server.addr.to_string();
    assert!(ca.client(addr.clone(), None).watch("", None).await.is_err());
    wait_refused(&stats, "no_certificate", 1).await;
    let alice = ca.operator("alice");
    let client = ca.client(addr, Some(("alice", &alice)));
    let mut watch = client.watch("app/", None).await.unwrap();
    client.set("app/x", b"1").await.unwrap();
    let line = tokio::time::timeout(DEADLINE, watch.next())
        .await
        .unwrap()
        .unwrap();
    match line {
        Some(gossamer::admin::watch::WatchLine::Change(c)) => assert_eq!(c.key, "app/x"),
        other => panic!("expected a change, got {other:?}"),
    }
}
