//! rustls and quinn configurations for mutually authenticated TLS 1.3 between fleet members.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};

use super::error::IdentityError;
use super::load::{peer_from_cert, verify_ignoring_name, Identity, TrustBundle};
use super::protocol::{alpn_protocols, crypto_provider};
use super::refusal::{
    cert_error_label, classify_handshake_error, TAG_BAD_IDENTITY, TAG_WRONG_CLUSTER,
};
use super::revocation::RevocationList;
use crate::core::id::{ClusterName, NodeId};

/// Counters of peer-certificate decisions, shared between the TLS verifiers and the
/// transport. Each refused handshake is counted once, under one reason.
///
/// The verifiers count what they decide (`accepted` and every refusal but `no_certificate`).
/// Refusals that rustls makes before calling them (a client that sent no certificate) are
/// counted by [`HandshakeStats::record_handshake_error`], which the accepting side calls with
/// the error of each failed incoming handshake.
#[derive(Debug, Default)]
pub struct HandshakeStats {
    /// Peer certificates accepted (chain, validity, cluster and expected node id all good).
    pub accepted: AtomicU64,
    /// Clients that presented no certificate.
    pub no_certificate: AtomicU64,
    /// Certificates not issued by a CA of the trust bundle.
    pub unknown_ca: AtomicU64,
    /// Certificates of another cluster (SAN URI cluster differs from ours).
    pub wrong_cluster: AtomicU64,
    /// Certificates without a usable `gossamer://<cluster>/<node-id>` SAN URI, or naming
    /// another node than the one dialed.
    pub bad_identity: AtomicU64,
    /// Certificates expired or not yet valid.
    pub expired_or_not_yet_valid: AtomicU64,
    /// Certificates listed in a revocation list of the trust bundle (a CRL or the plain
    /// revocation list).
    pub revoked: AtomicU64,
    /// Other refusals (bad encoding, bad signature, wrong key usage, ...).
    pub other: AtomicU64,
    /// Incoming connection attempts refused before the handshake because their source
    /// address exceeded its handshake rate. Only attempts from validated addresses (that
    /// echoed a QUIC Retry token) are counted here: the others are answered with a Retry
    /// first, so spoofed sources cannot spend another address's rate.
    pub rate_limited: AtomicU64,
    /// Incoming connection attempts from an unvalidated address that could not be answered
    /// with a Retry (quinn refused to send one) and were dropped without a reply.
    pub retry_failed: AtomicU64,
    /// QUIC Retry packets sent: incoming Initials from addresses that had not yet proven
    /// they receive what is sent to them. Not a refusal: a real client echoes the token and
    /// comes back validated, a spoofed source never does.
    pub retries_sent: AtomicU64,
}

/// A plain copy of [`HandshakeStats`], e.g. for metrics or status output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(missing_docs)] // Same fields as `HandshakeStats`.
pub struct HandshakeCounts {
    pub accepted: u64,
    pub no_certificate: u64,
    pub unknown_ca: u64,
    pub wrong_cluster: u64,
    pub bad_identity: u64,
    pub expired_or_not_yet_valid: u64,
    pub revoked: u64,
    pub other: u64,
    pub rate_limited: u64,
    pub retry_failed: u64,
    pub retries_sent: u64,
}

impl HandshakeCounts {
    /// All refusals (`retries_sent` is not one).
    pub fn refused(&self) -> u64 {
        self.no_certificate
            + self.unknown_ca
            + self.wrong_cluster
            + self.bad_identity
            + self.expired_or_not_yet_valid
            + self.revoked
            + self.other
            + self.rate_limited
            + self.retry_failed
    }

    /// `(label, count)` for every refusal reason, labels as returned by
    /// [`classify_handshake_error`].
    pub fn refusals(&self) -> [(&'static str, u64); 9] {
        [
            ("no_certificate", self.no_certificate),
            ("unknown_ca", self.unknown_ca),
            ("wrong_cluster", self.wrong_cluster),
            ("bad_identity", self.bad_identity),
            ("expired_or_not_yet_valid", self.expired_or_not_yet_valid),
            ("revoked", self.revoked),
            ("other", self.other),
            ("rate_limited", self.rate_limited),
            ("retry_failed", self.retry_failed),
        ]
    }
}

impl HandshakeStats {
    /// Fresh zeroed counters, shared.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Increments the refusal counter named `label` (one of the labels of
    /// [`HandshakeCounts::refusals`], `accepted` or `retries_sent`). Returns false, counting
    /// nothing, for any other label.
    pub fn count(&self, label: &str) -> bool {
        let counter = match label {
            "accepted" => &self.accepted,
            "no_certificate" => &self.no_certificate,
            "unknown_ca" => &self.unknown_ca,
            "wrong_cluster" => &self.wrong_cluster,
            "bad_identity" => &self.bad_identity,
            "expired_or_not_yet_valid" => &self.expired_or_not_yet_valid,
            "revoked" => &self.revoked,
            "other" => &self.other,
            "rate_limited" => &self.rate_limited,
            "retry_failed" => &self.retry_failed,
            "retries_sent" => &self.retries_sent,
            _ => return false,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Counts a refused incoming handshake by the label [`classify_handshake_error`] gave it,
    /// but only if it is a refusal that rustls makes before the verifiers run and so is not
    /// counted yet: `no_certificate`, and `alpn_mismatch` (counted as `other`). Every other
    /// label is either counted by the verifiers already or is not our refusal, and is
    /// ignored, so calling this for every failed accept never counts anything twice. Returns
    /// whether something was counted. [`HandshakeStats::record_handshake_error`] is the more
    /// precise alternative when the error itself is at hand.
    pub fn count_refusal(&self, label: &str) -> bool {
        match label {
            "no_certificate" => self.count("no_certificate"),
            "alpn_mismatch" => self.count("other"),
            _ => false,
        }
    }

    /// Counts a failed TLS handshake of a TCP server (the admin API) if rustls refused it
    /// before the verifier decided: a client without a certificate (`no_certificate`), or
    /// another TLS failure such as a client speaking plain HTTP (`other`). Verifier
    /// decisions are counted by the verifier, and failures below TLS (a reset, a close
    /// before the handshake) are not refusals. Returns the label counted.
    pub fn record_tls_accept_error(&self, err: &std::io::Error) -> Option<&'static str> {
        let tls = err.get_ref()?.downcast_ref::<rustls::Error>()?;
        let label = match tls {
            rustls::Error::InvalidCertificate(_) => return None,
            rustls::Error::NoCertificatesPresented => "no_certificate",
            _ => "other",
        };
        self.count(label);
        Some(label)
    }

    /// Classifies a failed handshake and counts it if it is a refusal made locally by rustls
    /// that the verifiers have not already counted: a peer that sent no certificate
    /// (`no_certificate`), or another local TLS failure outside certificate verification
    /// (`other`, e.g. no common ALPN protocol). Refusals by the peer, timeouts and closes are
    /// not counted. Returns the label of [`classify_handshake_error`].
    pub fn record_handshake_error(&self, err: &quinn::ConnectionError) -> &'static str {
        let label = classify_handshake_error(err);
        if let quinn::ConnectionError::TransportError(te) = err {
            let code = u64::from(te.code);
            let tls = (0x100..0x200).contains(&code) || te.reason.starts_with("TLS error");
            // Verifier decisions surface as "invalid peer certificate: ..." and are counted.
            if tls && !te.reason.starts_with("invalid peer certificate") {
                self.count(if label == "no_certificate" {
                    "no_certificate"
                } else {
                    "other"
                });
            }
        }
        label
    }

    /// A snapshot of the counters.
    pub fn snapshot(&self) -> HandshakeCounts {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        HandshakeCounts {
            accepted: g(&self.accepted),
            no_certificate: g(&self.no_certificate),
            unknown_ca: g(&self.unknown_ca),
            wrong_cluster: g(&self.wrong_cluster),
            bad_identity: g(&self.bad_identity),
            expired_or_not_yet_valid: g(&self.expired_or_not_yet_valid),
            revoked: g(&self.revoked),
            other: g(&self.other),
            rate_limited: g(&self.rate_limited),
            retry_failed: g(&self.retry_failed),
            retries_sent: g(&self.retries_sent),
        }
    }
}

/// Our refusal of a peer's identity, carried inside a rustls error.
struct PeerRejected {
    tag: &'static str,
    detail: String,
}

impl fmt::Display for PeerRejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.tag, self.detail)
    }
}

// rustls prints `CertificateError::Other` with `Debug`; keep it readable.
impl fmt::Debug for PeerRejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for PeerRejected {}

pub(super) fn rejected(tag: &'static str, detail: String) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(
        PeerRejected { tag, detail },
    ))))
}

/// Best-effort description of a certificate for logs.
fn describe(cert: &CertificateDer<'_>) -> String {
    match x509_parser::parse_x509_certificate(cert) {
        Ok((_, x)) => format!(
            "subject {:?}, issuer {:?}",
            x.subject().to_string(),
            x.issuer().to_string()
        ),
        Err(_) => "unparsable certificate".into(),
    }
}

/// Shared post-chain checks and accounting of both verifiers.
#[derive(Debug)]
pub(super) struct Policy {
    pub(super) cluster: ClusterName,
    pub(super) revoked: Arc<RevocationList>,
    pub(super) stats: Arc<HandshakeStats>,
    /// "client", "server" or "admin client": the role of the peer being verified, for logs.
    pub(super) peer_role: &'static str,
}

/// The checks after chain verification, shared by the handshake verifiers and
/// [`recheck_peer`]: a usable SAN URI, not listed as revoked, our cluster, and (if given) the
/// expected node. Returns the refusal label and error on failure.
pub(super) fn judge_identity(
    ee: &CertificateDer<'_>,
    our_cluster: &ClusterName,
    revoked: &RevocationList,
    expected: Option<&NodeId>,
) -> Result<(ClusterName, NodeId), (&'static str, rustls::Error)> {
    let (cluster, node) = match peer_from_cert(ee) {
        Ok(v) => v,
        Err(e) => return Err(("bad_identity", rejected(TAG_BAD_IDENTITY, e.to_string()))),
    };
    if !revoked.is_empty() {
        let serial = x509_parser::parse_x509_certificate(ee)
            .map(|(_, x)| x.raw_serial().to_vec())
            .unwrap_or_default();
        if revoked.is_revoked(&serial, Some(&node)) {
            return Err((
                "revoked",
                rustls::Error::InvalidCertificate(CertificateError::Revoked),
            ));
        }
    }
    if &cluster != our_cluster {
        let err = rejected(
            TAG_WRONG_CLUSTER,
            format!(
                "certificate of node {:?} belongs to cluster {:?}, we are cluster {:?}",
                node.as_str(),
                cluster.as_str(),
                our_cluster.as_str()
            ),
        );
        return Err(("wrong_cluster", err));
    }
    if let Some(expected) = expected {
        if &node != expected {
            let err = rejected(
                TAG_BAD_IDENTITY,
                format!(
                    "peer presented the certificate of node {:?}, expected node {:?}",
                    node.as_str(),
                    expected.as_str()
                ),
            );
            return Err(("bad_identity", err));
        }
    }
    Ok((cluster, node))
}

impl Policy {
    pub(super) fn refuse(
        &self,
        cert: &CertificateDer<'_>,
        label: &'static str,
        err: rustls::Error,
    ) -> rustls::Error {
        self.stats.count(label);
        tracing::warn!(
            peer = self.peer_role,
            reason = label,
            cert = %describe(cert),
            error = %err,
            "refused peer certificate"
        );
        err
    }

    fn check_identity(
        &self,
        ee: &CertificateDer<'_>,
        expected: Option<&NodeId>,
    ) -> Result<(), rustls::Error> {
        let (cluster, node) = judge_identity(ee, &self.cluster, &self.revoked, expected)
            .map_err(|(label, err)| self.refuse(ee, label, err))?;
        self.stats.accepted.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(peer = self.peer_role, %cluster, node = %node, "accepted peer certificate");
        Ok(())
    }

    pub(super) fn signature_result(
        &self,
        cert: &CertificateDer<'_>,
        r: Result<HandshakeSignatureValid, rustls::Error>,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        r.map_err(|e| self.refuse(cert, "other", e))
    }
}

/// Decides, after the chain check, whether a client certificate is admitted: the
/// refusal's metric label and error otherwise.
pub(super) type JudgeClient = Arc<
    dyn Fn(&CertificateDer<'_>, &Policy) -> Result<(), (&'static str, rustls::Error)> + Send + Sync,
>;

/// Who a client verifier admits after the chain check.
#[derive(Clone)]
pub(super) enum ClientAdmission {
    /// Members: a node of our cluster (the QUIC transport).
    Nodes,
    /// The admin API's clients, as its own rule decides (that rule lives with the admin
    /// API in `admin_tls.rs`, which builds on this module, not the other way round).
    Admin(JudgeClient),
}

impl std::fmt::Debug for ClientAdmission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ClientAdmission::Nodes => "Nodes",
            ClientAdmission::Admin(_) => "Admin",
        })
    }
}

/// Verifies clients: webpki chain and validity against the bundle, then our cluster and
/// the identity `admit` asks for.
#[derive(Debug)]
pub(super) struct GossamerClientVerifier {
    pub(super) inner: Arc<dyn ClientCertVerifier>,
    pub(super) policy: Policy,
    pub(super) admit: ClientAdmission,
}

impl ClientCertVerifier for GossamerClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if let Err(e) = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)
        {
            return Err(self.policy.refuse(end_entity, cert_error_label(&e), e));
        }
        match &self.admit {
            ClientAdmission::Nodes => self.policy.check_identity(end_entity, None)?,
            ClientAdmission::Admin(judge) => {
                judge(end_entity, &self.policy)
                    .map_err(|(label, e)| self.policy.refuse(end_entity, label, e))?;
                self.policy.stats.count("accepted");
            }
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let r = self.inner.verify_tls12_signature(message, cert, dss);
        self.policy.signature_result(cert, r)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let r = self.inner.verify_tls13_signature(message, cert, dss);
        self.policy.signature_result(cert, r)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Verifies servers: webpki chain, validity and revocation against the bundle (ignoring the
/// TLS server name), then our cluster and, if given, the expected node id.
#[derive(Debug)]
pub(super) struct GossamerServerVerifier {
    pub(super) inner: Arc<WebPkiServerVerifier>,
    pub(super) expected: Option<NodeId>,
    pub(super) policy: Policy,
}

impl ServerCertVerifier for GossamerServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Err(e) = verify_ignoring_name(&self.inner, end_entity, intermediates, now) {
            return Err(self.policy.refuse(end_entity, cert_error_label(&e), e));
        }
        self.policy
            .check_identity(end_entity, self.expected.as_ref())?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let r = self.inner.verify_tls12_signature(message, cert, dss);
        self.policy.signature_result(cert, r)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let r = self.inner.verify_tls13_signature(message, cert, dss);
        self.policy.signature_result(cert, r)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A rustls server configuration: TLS 1.3 only, ALPN [`ALPN_DIGEST`](super::ALPN_DIGEST) or
/// [`ALPN`](super::ALPN), presenting `id`, requiring a
/// client certificate that chains to `trust`, is valid, is not revoked and names our cluster.
///
/// Session resumption is disabled so that every connection re-verifies the peer certificate.
pub fn server_config(
    id: &Identity,
    trust: &TrustBundle,
    stats: Arc<HandshakeStats>,
) -> Result<rustls::ServerConfig, IdentityError> {
    let provider = Arc::new(crypto_provider());
    let verifier = GossamerClientVerifier {
        inner: client_cert_verifier(trust)?,
        policy: Policy {
            cluster: id.cluster.clone(),
            revoked: trust.revocation_list().clone(),
            stats,
            peer_role: "client",
        },
        admit: ClientAdmission::Nodes,
    };
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(id.chain.clone(), id.clone_key())?;
    cfg.alpn_protocols = alpn_protocols();
    cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    cfg.send_tls13_tickets = 0;
    cfg.max_early_data_size = 0;
    Ok(cfg)
}

/// A rustls client configuration: TLS 1.3 only, ALPN [`ALPN_DIGEST`](super::ALPN_DIGEST) or
/// [`ALPN`](super::ALPN), presenting `id`, accepting a
/// server certificate that chains to `trust`, is valid, is not revoked, names our cluster
/// and, if `expected_peer` is given, names that node. The server name is not checked (dial
/// with [`SNI`](super::SNI)).
pub fn client_config(
    id: &Identity,
    trust: &TrustBundle,
    expected_peer: Option<&NodeId>,
    stats: Arc<HandshakeStats>,
) -> Result<rustls::ClientConfig, IdentityError> {
    let provider = Arc::new(crypto_provider());
    let verifier = GossamerServerVerifier {
        inner: trust.server_verifier()?,
        expected: expected_peer.cloned(),
        policy: Policy {
            cluster: id.cluster.clone(),
            revoked: trust.revocation_list().clone(),
            stats,
            peer_role: "server",
        },
    };
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_auth_cert(id.chain.clone(), id.clone_key())?;
    cfg.alpn_protocols = alpn_protocols();
    cfg.resumption = rustls::client::Resumption::disabled();
    cfg.enable_early_data = false;
    Ok(cfg)
}

/// [`server_config`] wrapped for quinn, with default transport parameters (adjust them with
/// [`quinn::ServerConfig::transport_config`]).
pub fn quinn_server_config(
    id: &Identity,
    trust: &TrustBundle,
    stats: Arc<HandshakeStats>,
) -> Result<quinn::ServerConfig, IdentityError> {
    let tls = server_config(id, trust, stats)?;
    let quic = quinn::crypto::rustls::QuicServerConfig::try_from(tls)?;
    Ok(quinn::ServerConfig::with_crypto(Arc::new(quic)))
}

/// [`client_config`] wrapped for quinn, with default transport parameters. Connect with
/// server name [`SNI`](super::SNI).
pub fn quinn_client_config(
    id: &Identity,
    trust: &TrustBundle,
    expected_peer: Option<&NodeId>,
    stats: Arc<HandshakeStats>,
) -> Result<quinn::ClientConfig, IdentityError> {
    let tls = client_config(id, trust, expected_peer, stats)?;
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
    Ok(quinn::ClientConfig::new(Arc::new(quic)))
}

/// A webpki client-certificate verifier over `trust` (ring algorithms, CRLs applied to
/// end-entity certificates).
pub(super) fn client_cert_verifier(
    trust: &TrustBundle,
) -> Result<Arc<dyn ClientCertVerifier>, IdentityError> {
    let mut inner = WebPkiClientVerifier::builder_with_provider(
        trust.roots().clone(),
        Arc::new(crypto_provider()),
    );
    if !trust.crls().is_empty() {
        inner = inner
            .with_crls(trust.crls().to_vec())
            .only_check_end_entity_revocation()
            .allow_unknown_revocation_status();
    }
    Ok(inner.build()?)
}

/// Why [`recheck_peer`] no longer admits a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The reason label, as in [`HandshakeCounts::refusals`] (`revoked`, `unknown_ca`,
    /// `expired_or_not_yet_valid`, `wrong_cluster`, `bad_identity`, `other`).
    pub label: &'static str,
    /// The verifier's message.
    pub detail: String,
}

/// Judges already established peers again, as a handshake now would: a peer's chain
/// (end-entity first, as presented during the handshake) against a trust bundle at a given
/// time, including CRLs and the plain revocation list, then its SAN URI against the cluster.
///
/// This is how a node closes the connections of peers revoked, expired or no longer trusted
/// after a trust-bundle reload. Build it once per bundle and check every connection with it;
/// it counts nothing.
pub struct PeerRecheck {
    client: Arc<dyn ClientCertVerifier>,
    server: Arc<WebPkiServerVerifier>,
    cluster: ClusterName,
    revoked: Arc<RevocationList>,
}

impl fmt::Debug for PeerRecheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerRecheck")
            .field("cluster", &self.cluster)
            .field("revoked_entries", &self.revoked.len())
            .finish()
    }
}

impl PeerRecheck {
    /// Verifiers over `trust` for peers of `cluster`.
    pub fn new(trust: &TrustBundle, cluster: &ClusterName) -> Result<Self, IdentityError> {
        Ok(Self {
            client: client_cert_verifier(trust)?,
            server: trust.server_verifier()?,
            cluster: cluster.clone(),
            revoked: trust.revocation_list().clone(),
        })
    }

    /// Judges one peer. `peer_is_client` tells which verifier applies (the peer dialed us,
    /// so its certificate is a client certificate; or we dialed it).
    pub fn check(
        &self,
        chain: &[CertificateDer<'_>],
        peer_is_client: bool,
        now: UnixTime,
    ) -> Result<NodeId, Refusal> {
        let refusal = |label: &'static str, e: &dyn fmt::Display| Refusal {
            label,
            detail: e.to_string(),
        };
        let (ee, intermediates) = chain
            .split_first()
            .ok_or_else(|| refusal("bad_identity", &"no certificate"))?;
        let chain_ok = if peer_is_client {
            self.client
                .verify_client_cert(ee, intermediates, now)
                .map(|_| ())
        } else {
            verify_ignoring_name(&self.server, ee, intermediates, now)
        };
        if let Err(e) = chain_ok {
            return Err(refusal(cert_error_label(&e), &e));
        }
        judge_identity(ee, &self.cluster, &self.revoked, None)
            .map(|(_, node)| node)
            .map_err(|(label, e)| refusal(label, &e))
    }
}

/// [`PeerRecheck::check`] with verifiers built for this one call.
pub fn recheck_peer(
    trust: &TrustBundle,
    cluster: &ClusterName,
    chain: &[CertificateDer<'_>],
    peer_is_client: bool,
    now: UnixTime,
) -> Result<NodeId, Refusal> {
    PeerRecheck::new(trust, cluster)
        .map_err(|e| Refusal {
            label: "other",
            detail: e.to_string(),
        })?
        .check(chain, peer_is_client, now)
}

/// The certificate chain a connection's peer presented during the handshake, end-entity
/// first.
pub fn peer_chain(conn: &quinn::Connection) -> Result<Vec<CertificateDer<'static>>, IdentityError> {
    let any = conn
        .peer_identity()
        .ok_or(IdentityError::NoPeerCertificate)?;
    let certs = any
        .downcast::<Vec<CertificateDer<'static>>>()
        .map_err(|_| IdentityError::NoPeerCertificate)?;
    if certs.is_empty() {
        return Err(IdentityError::NoPeerCertificate);
    }
    Ok(*certs)
}

/// When the first certificate of `chain` expires (seconds since the Unix epoch): until
/// then, a chain that passed a check under a trust bundle passes it again under the same
/// bundle (revocations come with a new bundle). `None` if a certificate does not parse.
pub fn chain_expiry_unix(chain: &[CertificateDer<'_>]) -> Option<i64> {
    chain
        .iter()
        .map(|c| {
            x509_parser::parse_x509_certificate(c)
                .ok()
                .map(|(_, x)| x.validity().not_after.timestamp())
        })
        .try_fold(i64::MAX, |earliest, t| Some(earliest.min(t?)))
}

/// The verified `(cluster, node id)` of an established connection's peer.
pub fn peer_identity(conn: &quinn::Connection) -> Result<(ClusterName, NodeId), IdentityError> {
    let any = conn
        .peer_identity()
        .ok_or(IdentityError::NoPeerCertificate)?;
    let certs = any
        .downcast::<Vec<CertificateDer<'static>>>()
        .map_err(|_| IdentityError::NoPeerCertificate)?;
    let ee = certs.first().ok_or(IdentityError::NoPeerCertificate)?;
    peer_from_cert(ee)
}
