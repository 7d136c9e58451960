//! Operator certificates: the identity a person or tool presents to a node's admin API
//! over HTTPS, issued by the fleet's CA.
//!
//! An operator certificate names its holder in a SAN URI
//! `gossamer-operator://<cluster>/<name>` and carries the clientAuth extended key usage
//! only. It has no `gossamer://` node URI, so the QUIC transport refuses it as it refuses
//! any certificate that names no node: an operator certificate can administer a node but
//! never join the cluster. Written as `DIR/operator-<name>.pem` and `.key`.

use std::path::Path;

use rcgen::{CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, SanType};
use rustls::pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;

use super::certs::{
    check_days, ia5, load_ca, not_after_of, now_unix, read_ca, sign_leaf, write_file, BACKDATE_SECS,
};
use super::error::IdentityError;
use super::parse::URI_PREFIX;
use super::{PemPair, WrittenFiles};
use crate::core::id::{ClusterName, NodeId};

/// The URI scheme prefix of operator SAN URIs.
pub const OPERATOR_URI_PREFIX: &str = "gossamer-operator://";

/// Who an operator certificate names.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Operator {
    /// The cluster whose CA issued it.
    pub cluster: ClusterName,
    /// The operator's name (same syntax as a node id).
    pub name: String,
}

/// Issues an operator certificate for `name`, signed by the CA, valid from an hour ago for
/// `days` days: SAN URI `gossamer-operator://<cluster>/<name>`, extended key usage
/// clientAuth only, random serial, a fresh ECDSA P-256 key.
pub fn issue_operator(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    name: &str,
    days: u32,
) -> Result<PemPair, IdentityError> {
    check_name(name)?;
    let span = check_days(days)?;
    let now = now_unix();
    let ca = load_ca(ca_cert_pem, ca_key_pem)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, format!("gossamer {}", ca.cluster));
    dn.push(DnType::OrganizationalUnitName, "operator");
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    params.subject_alt_names = vec![SanType::URI(ia5(
        "operator name",
        format!("{OPERATOR_URI_PREFIX}{}/{name}", ca.cluster),
    )?)];
    // Client only: an operator certificate cannot serve TLS, so it cannot pose as a node's
    // admin endpoint either.
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    sign_leaf(params, &ca, now - BACKDATE_SECS, now + span)
}

/// Issues an operator certificate with the CA in `DIR/ca.pem` and the key `ca_key`
/// (default `DIR/ca.key`), and writes `DIR/operator-<name>.pem` and
/// `DIR/operator-<name>.key` (mode 0600), replacing earlier ones.
pub fn write_operator(
    dir: &Path,
    name: &str,
    ca_key: Option<&Path>,
    days: u32,
) -> Result<WrittenFiles, IdentityError> {
    let (ca_pem, ca_key_pem) = read_ca(dir, ca_key)?;
    let pair = issue_operator(&ca_pem, &ca_key_pem, name, days)?;
    let cert = dir.join(format!("operator-{name}.pem"));
    let key = dir.join(format!("operator-{name}.key"));
    write_file(&key, &pair.key_pem, 0o600)?;
    write_file(&cert, &pair.cert_pem, 0o644)?;
    Ok(WrittenFiles {
        cert,
        key,
        not_after_unix: not_after_of(&pair.cert_pem)?,
    })
}

fn check_name(name: &str) -> Result<(), IdentityError> {
    NodeId::new(name)
        .map(drop)
        .map_err(|e| IdentityError::InvalidParameter {
            field: "client",
            detail: format!("{name:?}: {e}"),
        })
}

/// The operator a certificate names: exactly one `gossamer-operator://<cluster>/<name>` SAN
/// URI and no `gossamer://` node URI (a certificate is a node's or an operator's, never
/// both).
pub fn operator_of(cert: &CertificateDer<'_>) -> Result<Operator, String> {
    let (_, x509) = x509_parser::parse_x509_certificate(cert)
        .map_err(|e| format!("unparsable certificate: {e}"))?;
    let san = x509
        .subject_alternative_name()
        .map_err(|e| format!("malformed subjectAltName extension: {e}"))?
        .ok_or_else(|| "no subjectAltName extension".to_string())?;
    let mut operators = Vec::new();
    for n in &san.value.general_names {
        if let GeneralName::URI(u) = n {
            let lower = u.to_ascii_lowercase();
            if lower.starts_with(URI_PREFIX) {
                return Err(format!(
                    "the certificate names a node ({u}), not an operator"
                ));
            }
            if lower.starts_with(OPERATOR_URI_PREFIX) {
                operators.push(*u);
            }
        }
    }
    let uri = match operators.as_slice() {
        [one] => *one,
        [] => return Err(format!("no {OPERATOR_URI_PREFIX} SAN URI")),
        many => {
            return Err(format!(
                "{} operator SAN URIs; exactly one is allowed",
                many.len()
            ))
        }
    };
    let rest = &uri[OPERATOR_URI_PREFIX.len()..];
    let (cluster, name) = rest
        .split_once('/')
        .ok_or_else(|| format!("SAN URI {uri:?} is not {OPERATOR_URI_PREFIX}<cluster>/<name>"))?;
    let cluster = ClusterName::new(cluster).map_err(|e| format!("SAN URI {uri:?}: {e}"))?;
    NodeId::new(name).map_err(|e| format!("SAN URI {uri:?}: {e}"))?;
    Ok(Operator {
        cluster,
        name: name.to_string(),
    })
}
