use std::net::{IpAddr, Ipv4Addr};

use rustls::pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;

use super::*;
use crate::core::id::{ClusterName, NodeId};

fn cluster(s: &str) -> ClusterName {
    ClusterName::new(s).unwrap()
}

fn node(s: &str) -> NodeId {
    NodeId::new(s).unwrap()
}

#[test]
fn ca_has_cluster_uri_and_ca_constraints() {
    let ca = generate_ca(&cluster("prod"), 10).unwrap();
    assert!(
        !format!("{ca:?}").contains("PRIVATE KEY"),
        "Debug leaks the key"
    );
    let bundle = TrustBundle::from_pem(&ca.cert_pem).unwrap();
    assert_eq!(bundle.ca_certs().len(), 1);
    let (_, x) = x509_parser::parse_x509_certificate(&bundle.ca_certs()[0]).unwrap();
    assert!(x.is_ca());
    let subject = x.subject().to_string();
    assert!(subject.starts_with("O=gossamer, OU=ca-"), "{subject}");
    assert!(subject.ends_with(", CN=gossamer CA prod"), "{subject}");
    let bc = x.basic_constraints().unwrap().unwrap().value;
    assert_eq!(bc.path_len_constraint, Some(0));
    let ku = x.key_usage().unwrap().unwrap().value;
    assert!(ku.key_cert_sign() && ku.crl_sign());
    let san = x.subject_alternative_name().unwrap().unwrap().value;
    assert_eq!(san.general_names, vec![GeneralName::URI("gossamer://prod")]);
}

#[test]
fn generate_issue_load_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let ca = write_ca(dir.path(), &cluster("prod"), DEFAULT_CA_DAYS, false).unwrap();
    assert_eq!(ca.cert, dir.path().join("ca.pem"));
    let n1 = node("n1");
    let ip: IpAddr = "10.0.0.7".parse().unwrap();
    let written = write_node(
        dir.path(),
        &n1,
        &[ip],
        &["n1.example.org".to_string()],
        None,
        30,
    )
    .unwrap();
    assert_eq!(written.key, dir.path().join("n1.key"));
    let now = certs::now_unix();
    assert!((written.not_after_unix - (now + 30 * 86_400)).abs() < 60);

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for f in ["ca.key", "n1.key"] {
            let mode = std::fs::metadata(dir.path().join(f))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
    }

    let (id, bundle) = load(dir.path(), &n1).unwrap();
    assert_eq!(id.node_id, n1);
    assert_eq!(id.cluster, cluster("prod"));
    assert_eq!(id.not_after_unix, written.not_after_unix);
    assert_eq!(bundle.ca_certs().len(), 1);
    assert_eq!(
        peer_from_cert(&id.chain[0]).unwrap(),
        (cluster("prod"), n1.clone())
    );
    let dbg = format!("{id:?}");
    assert!(dbg.contains("redacted") && !dbg.contains("PRIVATE"));
    let copy = id.clone();
    assert_eq!(copy.clone_key().secret_der(), id.key.secret_der());

    let (_, x) = x509_parser::parse_x509_certificate(&id.chain[0]).unwrap();
    assert_eq!(x.subject().to_string(), "O=gossamer prod, CN=n1");
    let san = x.subject_alternative_name().unwrap().unwrap().value;
    assert_eq!(
        san.general_names,
        vec![
            GeneralName::URI("gossamer://prod/n1"),
            GeneralName::DNSName("n1.example.org"),
            GeneralName::IPAddress(&[10, 0, 0, 7]),
        ]
    );
    let eku = x.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth);
    assert!(!x.is_ca());
    // Validity starts an hour back (clock skew).
    assert!((x.validity().not_before.timestamp() - (now - 3600)).abs() < 60);
}

#[test]
fn default_sans_are_localhost() {
    let ca = generate_ca(&cluster("c"), 1).unwrap();
    let pair = issue_node(&ca.cert_pem, &ca.key_pem, &node("a"), &[], &[], 1).unwrap();
    let id = Identity::from_pem(&pair.cert_pem, &pair.key_pem).unwrap();
    let (_, x) = x509_parser::parse_x509_certificate(&id.chain[0]).unwrap();
    let san = x.subject_alternative_name().unwrap().unwrap().value;
    assert_eq!(
        san.general_names,
        vec![
            GeneralName::URI("gossamer://c/a"),
            GeneralName::DNSName("localhost"),
            GeneralName::IPAddress(&Ipv4Addr::LOCALHOST.octets()),
        ]
    );
    // Serial numbers are random.
    let other = issue_node(&ca.cert_pem, &ca.key_pem, &node("a"), &[], &[], 1).unwrap();
    let id2 = Identity::from_pem(&other.cert_pem, &other.key_pem).unwrap();
    let (_, x2) = x509_parser::parse_x509_certificate(&id2.chain[0]).unwrap();
    assert_ne!(x.raw_serial(), x2.raw_serial());
}

#[test]
fn wrong_node_id_on_load_fails_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    write_ca(dir.path(), &cluster("prod"), 10, false).unwrap();
    write_node(dir.path(), &node("n1"), &[], &[], None, 10).unwrap();
    // Operator copies n1's files under n2's name.
    std::fs::copy(dir.path().join("n1.pem"), dir.path().join("n2.pem")).unwrap();
    std::fs::copy(dir.path().join("n1.key"), dir.path().join("n2.key")).unwrap();
    let err = load(dir.path(), &node("n2")).unwrap_err();
    assert!(matches!(err, IdentityError::NodeMismatch { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("\"n1\"") && msg.contains("\"n2\"") && msg.contains("n2.pem"),
        "{msg}"
    );
}

#[test]
fn missing_files_name_path_and_fix() {
    let dir = tempfile::tempdir().unwrap();
    let err = load(dir.path(), &node("n1")).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, IdentityError::MissingFile { .. }));
    assert!(
        msg.contains("ca.pem") && msg.contains("gossamer certs init"),
        "{msg}"
    );

    write_ca(dir.path(), &cluster("prod"), 10, false).unwrap();
    let err = load(dir.path(), &node("n1")).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("n1.pem") && msg.contains("gossamer certs issue --dir"),
        "{msg}"
    );
    assert!(msg.contains("--node n1"), "{msg}");

    let err = write_node(
        dir.path(),
        &node("n1"),
        &[],
        &[],
        Some(&dir.path().join("nope.key")),
        1,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("nope.key") && err.to_string().contains("--ca-key"),
        "{err}"
    );
}

#[test]
fn refuses_to_overwrite_ca_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    write_ca(dir.path(), &cluster("prod"), 10, false).unwrap();
    let before = std::fs::read_to_string(dir.path().join("ca.key")).unwrap();
    let err = write_ca(dir.path(), &cluster("prod"), 10, false).unwrap_err();
    assert!(matches!(err, IdentityError::WouldOverwrite { .. }));
    assert!(err.to_string().contains("ca.key") && err.to_string().contains("--force"));
    assert_eq!(
        before,
        std::fs::read_to_string(dir.path().join("ca.key")).unwrap()
    );
    write_ca(dir.path(), &cluster("prod"), 10, true).unwrap();
    assert_ne!(
        before,
        std::fs::read_to_string(dir.path().join("ca.key")).unwrap()
    );
}

#[test]
fn pem_errors() {
    let err = TrustBundle::from_pem("not pem at all").unwrap_err();
    assert!(
        matches!(
            err,
            IdentityError::Pem {
                what: "certificate",
                ..
            }
        ),
        "{err}"
    );
    let ca = generate_ca(&cluster("c"), 1).unwrap();
    let pair = issue_node(&ca.cert_pem, &ca.key_pem, &node("a"), &[], &[], 1).unwrap();
    // Truncated base64.
    let broken = pair.cert_pem.replace("-----END CERTIFICATE-----", "");
    assert!(Identity::from_pem(&broken, &pair.key_pem).is_err());
    // No key.
    let err = Identity::from_pem(&pair.cert_pem, &pair.cert_pem).unwrap_err();
    assert!(
        matches!(
            err,
            IdentityError::Pem {
                what: "private key",
                ..
            }
        ),
        "{err}"
    );
    // Key of another certificate.
    let other = issue_node(&ca.cert_pem, &ca.key_pem, &node("b"), &[], &[], 1).unwrap();
    let err = Identity::from_pem(&pair.cert_pem, &other.key_pem).unwrap_err();
    assert!(matches!(err, IdentityError::KeyMismatch { .. }), "{err}");
    // A node certificate is not a trust anchor.
    let err = TrustBundle::from_pem(&pair.cert_pem).unwrap_err();
    assert!(err.to_string().contains("not a CA"), "{err}");
    // A CA certificate is not a node identity.
    let err = Identity::from_pem(&ca.cert_pem, &ca.key_pem).unwrap_err();
    assert!(err.to_string().contains("names a cluster"), "{err}");
    // The CA key must match the CA certificate.
    let ca2 = generate_ca(&cluster("c"), 1).unwrap();
    let err = issue_node(&ca.cert_pem, &ca2.key_pem, &node("a"), &[], &[], 1).unwrap_err();
    assert!(matches!(err, IdentityError::KeyMismatch { .. }), "{err}");
    // Validity parameters.
    assert!(generate_ca(&cluster("c"), 0).is_err());
    assert!(issue_node(
        &ca.cert_pem,
        &ca.key_pem,
        &node("a"),
        &[],
        &["bad name".into()],
        1
    )
    .is_err());
}

#[test]
fn peer_from_cert_rejects_foreign_certificates() {
    let plain = rcgen::generate_simple_self_signed(vec!["example.org".to_string()]).unwrap();
    let err = peer_from_cert(plain.cert.der()).unwrap_err();
    assert!(err.to_string().contains("gossamer://"), "{err}");
    let err = peer_from_cert(&CertificateDer::from(vec![1, 2, 3])).unwrap_err();
    assert!(matches!(err, IdentityError::PeerIdentity(_)));

    // Two gossamer URIs: ambiguous.
    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names = vec![
        rcgen::SanType::URI("gossamer://c/a".try_into().unwrap()),
        rcgen::SanType::URI("gossamer://c/b".try_into().unwrap()),
    ];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let err = peer_from_cert(cert.der()).unwrap_err();
    assert!(err.to_string().contains("exactly one"), "{err}");

    // Bad node id syntax inside the URI.
    params.subject_alt_names = vec![rcgen::SanType::URI("gossamer://c/A_B".try_into().unwrap())];
    let cert = params.self_signed(&key).unwrap();
    assert!(peer_from_cert(cert.der()).is_err());
}

#[test]
fn rotated_bundle_trusts_both_cas_and_issues_with_the_matching_one() {
    let old = generate_ca(&cluster("prod"), 10).unwrap();
    let new = generate_ca(&cluster("prod"), 10).unwrap();
    let bundle_pem = format!("{}{}", old.cert_pem, new.cert_pem);
    let bundle = TrustBundle::from_pem(&bundle_pem).unwrap();
    assert_eq!(bundle.ca_certs().len(), 2);
    for key in [&old.key_pem, &new.key_pem] {
        let pair = issue_node(&bundle_pem, key, &node("n1"), &[], &[], 1).unwrap();
        let id = Identity::from_pem(&pair.cert_pem, &pair.key_pem).unwrap();
        bundle.verify(&id).unwrap();
    }
    let stranger = generate_ca(&cluster("prod"), 10).unwrap();
    let pair = issue_node(
        &stranger.cert_pem,
        &stranger.key_pem,
        &node("n1"),
        &[],
        &[],
        1,
    )
    .unwrap();
    let id = Identity::from_pem(&pair.cert_pem, &pair.key_pem).unwrap();
    let err = bundle.verify(&id).unwrap_err();
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
}

#[test]
fn expired_certificate_fails_load() {
    let dir = tempfile::tempdir().unwrap();
    write_ca(dir.path(), &cluster("prod"), 10, false).unwrap();
    let ca_pem = std::fs::read_to_string(dir.path().join("ca.pem")).unwrap();
    let ca_key = std::fs::read_to_string(dir.path().join("ca.key")).unwrap();
    let now = certs::now_unix();
    let pair = issue_node_with_validity(
        &ca_pem,
        &ca_key,
        &node("old"),
        &[],
        &[],
        now - 10 * 86_400,
        now - 86_400,
    )
    .unwrap();
    std::fs::write(dir.path().join("old.pem"), &pair.cert_pem).unwrap();
    std::fs::write(dir.path().join("old.key"), &pair.key_pem).unwrap();
    let err = load(dir.path(), &node("old")).unwrap_err();
    assert!(matches!(err, IdentityError::Untrusted { .. }), "{err}");
    assert!(err.to_string().contains("expired"), "{err}");
}

#[test]
fn revocation_list_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    write_ca(dir.path(), &cluster("prod"), 10, false).unwrap();
    write_node(dir.path(), &node("n1"), &[], &[], None, 10).unwrap();
    write_node(dir.path(), &node("n2"), &[], &[], None, 10).unwrap();
    write_revocation(dir.path(), &node("n1"), None).unwrap();
    // Revoking twice keeps one entry; revoking another adds it.
    write_revocation(dir.path(), &node("n1"), None).unwrap();
    let err = load(dir.path(), &node("n1")).unwrap_err();
    assert!(err.to_string().contains("Revoked"), "{err}");
    load(dir.path(), &node("n2")).unwrap();
    write_revocation(dir.path(), &node("n2"), None).unwrap();
    assert!(load(dir.path(), &node("n2")).is_err());
    let crl_pem = std::fs::read_to_string(dir.path().join("crl.pem")).unwrap();
    let crls: Vec<_> = rustls::pki_types::pem::PemObject::pem_slice_iter(crl_pem.as_bytes())
        .collect::<Result<Vec<rustls::pki_types::CertificateRevocationListDer>, _>>()
        .unwrap();
    assert_eq!(crls.len(), 1);
    let (_, crl) = x509_parser::parse_x509_crl(&crls[0]).unwrap();
    assert_eq!(crl.iter_revoked_certificates().count(), 2);
    assert_eq!(crl.crl_number().unwrap().to_string(), "3");
}

#[test]
fn classifies_tls_reasons() {
    use quinn::{ConnectionError, TransportErrorCode};
    let local = |code: u8, reason: &str| {
        let close = quinn::ConnectionClose {
            error_code: TransportErrorCode::crypto(code),
            frame_type: None,
            reason: reason.as_bytes().to_vec().into(),
        };
        ConnectionError::ConnectionClosed(close)
    };
    assert_eq!(classify_handshake_error(&local(116, "")), "no_certificate");
    assert_eq!(classify_handshake_error(&local(48, "")), "unknown_ca");
    assert_eq!(
        classify_handshake_error(&local(45, "")),
        "expired_or_not_yet_valid"
    );
    assert_eq!(
        classify_handshake_error(&local(
            46,
            "invalid peer certificate: gossamer-wrong-cluster: x"
        )),
        "wrong_cluster"
    );
    assert_eq!(classify_handshake_error(&local(120, "")), "alpn_mismatch");
    assert_eq!(
        classify_handshake_error(&ConnectionError::TimedOut),
        "timed_out"
    );
    let stats = HandshakeStats::new();
    assert!(stats.count("unknown_ca"));
    assert!(!stats.count("nonsense"));
    assert_eq!(stats.snapshot().unknown_ca, 1);
    assert_eq!(stats.snapshot().refused(), 1);
}

#[test]
fn an_operator_certificate_names_no_node_and_a_node_certificate_no_operator() {
    let ca = generate_ca(&cluster("prod"), 10).unwrap();
    let op = issue_operator(&ca.cert_pem, &ca.key_pem, "alice", 1).unwrap();
    let der = parse::parse_certs(&op.cert_pem, "op").unwrap().remove(0);
    // The transport's identity check: an operator can never pass as a node.
    assert!(peer_from_cert(&der).is_err());
    let who = operator_of(&der).unwrap();
    assert_eq!((who.cluster.as_str(), who.name.as_str()), ("prod", "alice"));
    let n = issue_node(&ca.cert_pem, &ca.key_pem, &node("n1"), &[], &[], 1).unwrap();
    let der = parse::parse_certs(&n.cert_pem, "n1").unwrap().remove(0);
    assert!(operator_of(&der).unwrap_err().contains("names a node"));
    assert!(issue_operator(&ca.cert_pem, &ca.key_pem, "Bad_Name", 1).is_err());
}
