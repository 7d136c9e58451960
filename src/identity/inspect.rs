//! Human-readable facts about certificates: what `gossamer certs inspect` prints, what the
//! node reports about its own certificate, and what tests compare.

use rustls::pki_types::CertificateDer;
use serde::Serialize;
use x509_parser::extensions::GeneralName;

use super::error::IdentityError;
use super::parse::{gossamer_uri_of, parse_certs, parse_x509, GossamerUri};
use super::revocation::hex;
use crate::core::id::{ClusterName, NodeId};

/// What a certificate says, in printable form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertInfo {
    /// Subject distinguished name.
    pub subject: String,
    /// Issuer distinguished name.
    pub issuer: String,
    /// Serial number, lowercase hex without separators or leading zero bytes (the form
    /// `revoked.txt` takes after `serial:`).
    pub serial: String,
    /// Start of validity, seconds since the Unix epoch.
    pub not_before_unix: i64,
    /// End of validity, seconds since the Unix epoch.
    pub not_after_unix: i64,
    /// SHA-256 of the DER encoding, uppercase hex octets separated by `:`.
    pub sha256_fingerprint: String,
    /// Whether the certificate is a CA (basicConstraints CA:TRUE).
    pub is_ca: bool,
    /// The cluster named by the `gossamer://` SAN URI, if any.
    #[serde(serialize_with = "ser_display")]
    pub cluster: Option<ClusterName>,
    /// The node id named by the `gossamer://<cluster>/<node-id>` SAN URI, if any.
    #[serde(serialize_with = "ser_display")]
    pub node_id: Option<NodeId>,
    /// Why the `gossamer://` SAN URI is missing or unusable, if it is.
    pub gossamer_uri_problem: Option<String>,
    /// DNS names in the subjectAltName extension.
    pub dns_names: Vec<String>,
    /// IP addresses in the subjectAltName extension.
    pub ip_addresses: Vec<String>,
    /// Key prefixes a node may write (`gossamer-allow:` SAN URIs); `None`: every key.
    pub allow_prefixes: Option<Vec<String>>,
    /// The operator an operator certificate names (`gossamer-operator://`), if it is one.
    pub operator: Option<super::Operator>,
}

impl CertInfo {
    /// Reads the facts of a DER certificate.
    pub fn from_der(cert: &CertificateDer<'_>) -> Result<Self, IdentityError> {
        Self::from_der_named(cert, "certificate")
    }

    pub(crate) fn from_der_named(
        cert: &CertificateDer<'_>,
        source_name: &str,
    ) -> Result<Self, IdentityError> {
        let x = parse_x509(cert, source_name)?;
        let (cluster, node_id, problem) = match gossamer_uri_of(&x) {
            Ok(GossamerUri::Node(c, n)) => (Some(c), Some(n), None),
            Ok(GossamerUri::Cluster(c)) => (Some(c), None, None),
            Err(e) => (None, None, Some(e)),
        };
        let mut dns_names = Vec::new();
        let mut ip_addresses = Vec::new();
        if let Ok(Some(san)) = x.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(d) => dns_names.push(d.to_string()),
                    GeneralName::IPAddress(b) => ip_addresses.push(ip_to_string(b)),
                    _ => {}
                }
            }
        }
        let operator = super::operator_of(cert).ok();
        let digest = ring::digest::digest(&ring::digest::SHA256, cert.as_ref());
        Ok(Self {
            subject: x.subject().to_string(),
            issuer: x.issuer().to_string(),
            serial: serial_hex(x.raw_serial()),
            not_before_unix: x.validity().not_before.timestamp(),
            not_after_unix: x.validity().not_after.timestamp(),
            sha256_fingerprint: digest
                .as_ref()
                .iter()
                .map(|b| format!("{b:02X}"))
                .collect::<Vec<_>>()
                .join(":"),
            is_ca: x.is_ca(),
            cluster,
            node_id,
            gossamer_uri_problem: problem,
            dns_names,
            ip_addresses,
            allow_prefixes: super::Grant::of(&x)
                .map_err(|detail| IdentityError::BadCertificate {
                    source_name: source_name.to_string(),
                    detail,
                })?
                .allowed()
                .map(<[String]>::to_vec),
            operator,
        })
    }

    /// Seconds from `now_unix` until the certificate expires (negative once expired).
    pub fn expires_in_secs(&self, now_unix: i64) -> i64 {
        self.not_after_unix - now_unix
    }
}

fn ser_display<T: std::fmt::Display, S: serde::Serializer>(
    v: &Option<T>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.collect_str(v),
        None => s.serialize_none(),
    }
}

/// Serial number bytes as lowercase hex, without leading zero bytes (at least one octet).
pub(crate) fn serial_hex(raw: &[u8]) -> String {
    let i = raw
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(raw.len().saturating_sub(1));
    hex(&raw[i..])
}

fn ip_to_string(b: &[u8]) -> String {
    match b.len() {
        4 => std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]).to_string(),
        16 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(b);
            std::net::Ipv6Addr::from(a).to_string()
        }
        _ => hex(b),
    }
}

/// The facts of every certificate in PEM text, in order (a node's chain, or a bundle).
pub fn inspect_pem(pem: &str, source_name: &str) -> Result<Vec<CertInfo>, IdentityError> {
    parse_certs(pem, source_name)?
        .iter()
        .map(|c| CertInfo::from_der_named(c, source_name))
        .collect()
}

/// Formats seconds since the Unix epoch as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn format_unix(unix: i64) -> String {
    match x509_parser::time::ASN1Time::from_timestamp(unix) {
        Ok(t) => {
            let d = t.to_datetime();
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
                d.year(),
                u8::from(d.month()),
                d.day(),
                d.hour(),
                d.minute(),
                d.second()
            )
        }
        Err(_) => format!("unix time {unix}"),
    }
}
