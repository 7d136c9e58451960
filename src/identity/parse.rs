//! Reading certificates, keys and the `gossamer://` SAN URI out of PEM text, DER and
//! files: the parsing that loading, inspecting and issuing certificates share.

use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use super::error::IdentityError;
use crate::core::id::{ClusterName, NodeId};

/// The URI scheme prefix of gossamer SAN URIs.
pub(crate) const URI_PREFIX: &str = "gossamer://";

/// What a `gossamer://` SAN URI names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum GossamerUri {
    /// `gossamer://<cluster>`: a CA.
    Cluster(ClusterName),
    /// `gossamer://<cluster>/<node-id>`: a node.
    Node(ClusterName, NodeId),
}

fn parse_uri(uri: &str) -> Result<GossamerUri, String> {
    let rest = &uri[URI_PREFIX.len()..];
    let mut parts = rest.split('/');
    let cluster = parts.next().unwrap_or("");
    let cluster = ClusterName::new(cluster).map_err(|e| format!("SAN URI {uri:?}: {e}"))?;
    match (parts.next(), parts.next()) {
        (None, _) => Ok(GossamerUri::Cluster(cluster)),
        (Some(node), None) => {
            let node = NodeId::new(node).map_err(|e| format!("SAN URI {uri:?}: {e}"))?;
            Ok(GossamerUri::Node(cluster, node))
        }
        _ => Err(format!(
            "SAN URI {uri:?} is not of the form gossamer://<cluster>/<node-id>"
        )),
    }
}

/// The single `gossamer://` SAN URI of a certificate.
pub(crate) fn gossamer_uri_of(x509: &X509Certificate<'_>) -> Result<GossamerUri, String> {
    let san = x509
        .subject_alternative_name()
        .map_err(|e| format!("malformed subjectAltName extension: {e}"))?
        .ok_or_else(|| {
            "no subjectAltName extension (expected SAN URI gossamer://<cluster>/<node-id>)"
                .to_string()
        })?;
    let uris: Vec<&str> = san
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::URI(u) if u.to_ascii_lowercase().starts_with(URI_PREFIX) => Some(*u),
            _ => None,
        })
        .collect();
    match uris.as_slice() {
        [] => Err("no gossamer:// SAN URI (expected gossamer://<cluster>/<node-id>)".into()),
        [one] => parse_uri(one),
        many => Err(format!(
            "{} gossamer:// SAN URIs ({}); exactly one is allowed",
            many.len(),
            many.join(", ")
        )),
    }
}

pub(super) fn node_uri_of(x509: &X509Certificate<'_>) -> Result<(ClusterName, NodeId), String> {
    match gossamer_uri_of(x509)? {
        GossamerUri::Node(c, n) => Ok((c, n)),
        GossamerUri::Cluster(c) => Err(format!(
            "SAN URI gossamer://{c} names a cluster (a CA certificate), not a node"
        )),
    }
}

pub(crate) fn parse_x509<'a>(
    cert: &'a CertificateDer<'_>,
    source_name: &str,
) -> Result<X509Certificate<'a>, IdentityError> {
    x509_parser::parse_x509_certificate(cert)
        .map(|(_, c)| c)
        .map_err(|e| IdentityError::BadCertificate {
            source_name: source_name.to_string(),
            detail: format!("unparsable certificate: {e}"),
        })
}

pub(crate) fn parse_certs(
    pem: &str,
    source_name: &str,
) -> Result<Vec<CertificateDer<'static>>, IdentityError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| IdentityError::Pem {
            source_name: source_name.to_string(),
            what: "certificate",
            detail: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(IdentityError::Pem {
            source_name: source_name.to_string(),
            what: "certificate",
            detail: "no \"BEGIN CERTIFICATE\" block".into(),
        });
    }
    Ok(certs)
}

pub(crate) fn parse_key(
    pem: &str,
    source_name: &str,
) -> Result<PrivateKeyDer<'static>, IdentityError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes())
        .map(super::keyfmt::normalize_key)
        .map_err(|e| IdentityError::Pem {
            source_name: source_name.to_string(),
            what: "private key",
            detail: match e {
                rustls::pki_types::pem::Error::NoItemsFound => {
                    "no \"BEGIN PRIVATE KEY\" block".into()
                }
                e => e.to_string(),
            },
        })
}

pub(crate) fn read_required(
    path: &Path,
    what: &'static str,
    hint: String,
) -> Result<String, IdentityError> {
    std::fs::read_to_string(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            IdentityError::MissingFile {
                what,
                path: PathBuf::from(path),
                hint,
            }
        } else {
            IdentityError::Io {
                action: "read",
                path: PathBuf::from(path),
                source,
            }
        }
    })
}
