//! TLS for the admin API: the node serves HTTPS with its own certificate and requires a
//! client certificate from the fleet's CA; the CLI verifies the node the way nodes verify
//! each other (chain to the bundle and a node URI of the cluster, not a DNS name).
//!
//! Which client certificates are enough is [`AdminClients`]: operator certificates
//! (`gossamer certs issue --client NAME`, see [`super::operator`]) always, node
//! certificates only where configured, since a node's key sits on every node's disk and
//! an operator's does not.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::CertificateError;
use serde::{Deserialize, Serialize};

use super::error::IdentityError;
use super::load::{peer_from_cert, Identity, TrustBundle};
use super::operator::operator_of;
use super::parse::{
    gossamer_uri_of, parse_certs, parse_key, parse_x509, read_required, GossamerUri,
};
use super::protocol::crypto_provider;
use super::refusal::{TAG_BAD_IDENTITY, TAG_WRONG_CLUSTER};
use super::tls::{
    client_cert_verifier, judge_identity, rejected, ClientAdmission, GossamerClientVerifier,
    GossamerServerVerifier, HandshakeStats, Policy,
};
use crate::core::id::ClusterName;

/// Which client certificates a node's admin API accepts over HTTPS (`admin_tls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AdminClients {
    /// Operator certificates of our cluster only.
    Operators,
    /// Operator certificates and node certificates of our cluster (for tools that run
    /// with a node's identity on the node's host).
    OperatorsAndNodes,
}

impl std::str::FromStr for AdminClients {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "operators" => Ok(Self::Operators),
            "operators-and-nodes" => Ok(Self::OperatorsAndNodes),
            other => Err(format!(
                "{other:?}: use \"operators\" or \"operators-and-nodes\""
            )),
        }
    }
}

/// A rustls server configuration for the admin API: TLS 1.3, presenting the node's
/// certificate, requiring a client certificate that chains to `trust`, is valid and not
/// revoked, names our cluster and is an operator's (or a node's, if `clients` allows).
/// Refusals are counted in `stats` by reason.
pub fn admin_server_config(
    id: &Identity,
    trust: &TrustBundle,
    clients: AdminClients,
    stats: Arc<HandshakeStats>,
) -> Result<rustls::ServerConfig, IdentityError> {
    let verifier = GossamerClientVerifier {
        inner: client_cert_verifier(trust)?,
        policy: Policy {
            cluster: id.cluster.clone(),
            revoked: trust.revocation_list().clone(),
            stats,
            peer_role: "admin client",
        },
        admit: ClientAdmission::Admin(Arc::new(move |ee, policy| {
            judge_admin_client(ee, clients, policy)
        })),
    };
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(crypto_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(id.chain.clone(), id.clone_key())?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// A rustls client configuration for talking to a node's admin API: TLS 1.3, accepting a
/// server certificate that chains to the CA bundle in `ca_file` and names a node of its
/// cluster (the cluster named by the bundle's first CA), presenting the certificate and
/// key in `client` when given.
pub fn admin_client_config(
    ca_file: &Path,
    client: Option<(&Path, &Path)>,
) -> Result<rustls::ClientConfig, IdentityError> {
    let ca_pem = read_required(
        ca_file,
        "CA bundle",
        "pass the fleet's ca.pem with --ca".into(),
    )?;
    let name = ca_file.display().to_string();
    let trust = TrustBundle::from_pem_named(&ca_pem, &name)?;
    let cluster = bundle_cluster(&trust, &name)?;
    let verifier = GossamerServerVerifier {
        inner: trust.server_verifier()?,
        expected: None,
        policy: Policy {
            cluster,
            revoked: trust.revocation_list().clone(),
            stats: HandshakeStats::new(),
            peer_role: "admin server",
        },
    };
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(crypto_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let mut cfg = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let (chain, key) = read_pair(cert, key)?;
            builder.with_client_auth_cert(chain, key)?
        }
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

fn read_pair(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), IdentityError> {
    let hint = || "issue one with `gossamer certs issue --client NAME`".to_string();
    let cert_name = cert.display().to_string();
    let chain = parse_certs(
        &read_required(cert, "client certificate", hint())?,
        &cert_name,
    )?;
    let key = parse_key(
        &read_required(key, "client private key", hint())?,
        &key.display().to_string(),
    )?;
    Ok((chain, key))
}

/// The cluster a bundle's first CA names (`gossamer://<cluster>`).
fn bundle_cluster(trust: &TrustBundle, source: &str) -> Result<ClusterName, IdentityError> {
    let bad = |detail: String| IdentityError::BadCertificate {
        source_name: source.to_string(),
        detail,
    };
    let first = trust
        .ca_certs()
        .first()
        .ok_or_else(|| bad("no CA certificate".into()))?;
    match gossamer_uri_of(&parse_x509(first, source)?) {
        Ok(GossamerUri::Cluster(c)) => Ok(c),
        Ok(GossamerUri::Node(..)) => {
            Err(bad("the first certificate names a node, not a CA".into()))
        }
        Err(e) => Err(bad(e)),
    }
}

/// Whom the admin API admits after the chain check: an operator of our cluster that is
/// not revoked, or, where `clients` allows, a node of our cluster. The refusal label and
/// error on failure.
fn judge_admin_client(
    ee: &CertificateDer<'_>,
    clients: AdminClients,
    policy: &Policy,
) -> Result<(), (&'static str, rustls::Error)> {
    let operator = match operator_of(ee) {
        Ok(op) => op,
        Err(_) if peer_from_cert(ee).is_ok() => {
            if clients == AdminClients::OperatorsAndNodes {
                return judge_identity(ee, &policy.cluster, &policy.revoked, None).map(drop);
            }
            let detail = "a node certificate; this admin API takes operator certificates \
                          (admin_tls = \"operators\")"
                .to_string();
            return Err(("bad_identity", rejected(TAG_BAD_IDENTITY, detail)));
        }
        Err(e) => return Err(("bad_identity", rejected(TAG_BAD_IDENTITY, e))),
    };
    let serial = x509_parser::parse_x509_certificate(ee)
        .map(|(_, x)| x.raw_serial().to_vec())
        .unwrap_or_default();
    if policy.revoked.is_revoked(&serial, None) {
        let err = rustls::Error::InvalidCertificate(CertificateError::Revoked);
        return Err(("revoked", err));
    }
    if operator.cluster != policy.cluster {
        let detail = format!(
            "operator {:?} belongs to cluster {:?}, we are cluster {:?}",
            operator.name,
            operator.cluster.as_str(),
            policy.cluster.as_str()
        );
        return Err(("wrong_cluster", rejected(TAG_WRONG_CLUSTER, detail)));
    }
    tracing::debug!(operator = %operator.name, "admin client certificate accepted");
    Ok(())
}
