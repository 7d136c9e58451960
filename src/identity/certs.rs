//! Generating, writing and revoking CA and node certificates (rcgen, ECDSA P-256).

use std::fmt;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rcgen::string::Ia5String;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    PublicKeyData, RevocationReason, RevokedCertParams, SanType, SerialNumber,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer};
use x509_parser::time::ASN1Time;

use super::error::IdentityError;
use super::parse::{gossamer_uri_of, parse_certs, parse_x509, read_required, GossamerUri};
use crate::core::id::{ClusterName, NodeId};

/// Default validity of a CA certificate, in days (10 years).
pub const DEFAULT_CA_DAYS: u32 = 3650;
/// Default validity of a node certificate, in days.
pub const DEFAULT_NODE_DAYS: u32 = 365;
/// Validity of a revocation list written by [`write_revocation`], in days. gossamer does not
/// refuse peers because a CRL is past its next-update time; this only informs other tools.
pub const DEFAULT_CRL_DAYS: u32 = 365;

const MAX_DAYS: u32 = 36_500;
const DAY: i64 = 86_400;
/// Node certificates start being valid an hour in the past, to tolerate clock skew.
pub(super) const BACKDATE_SECS: i64 = 3_600;

/// A certificate and its private key, both PEM encoded. `Debug` never prints the key.
#[derive(Clone, PartialEq, Eq)]
pub struct PemPair {
    /// The certificate (`BEGIN CERTIFICATE`).
    pub cert_pem: String,
    /// The PKCS#8 private key (`BEGIN PRIVATE KEY`).
    pub key_pem: String,
}

impl fmt::Debug for PemPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PemPair")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// The files written by [`write_ca`] or [`write_node`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenFiles {
    /// The certificate file (mode 0644).
    pub cert: PathBuf,
    /// The private key file (mode 0600).
    pub key: PathBuf,
    /// When the certificate expires (seconds since the Unix epoch).
    pub not_after_unix: i64,
}

pub(crate) fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub(super) fn check_days(days: u32) -> Result<i64, IdentityError> {
    if days == 0 || days > MAX_DAYS {
        return Err(IdentityError::InvalidParameter {
            field: "days",
            detail: format!("{days} is out of range (1 to {MAX_DAYS})"),
        });
    }
    Ok(i64::from(days) * DAY)
}

fn asn1_time(field: &'static str, unix: i64) -> Result<ASN1Time, IdentityError> {
    ASN1Time::from_timestamp(unix).map_err(|_| IdentityError::InvalidParameter {
        field,
        detail: format!("{unix} is not a representable time"),
    })
}

fn random_serial() -> Result<SerialNumber, IdentityError> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| IdentityError::InvalidParameter {
            field: "serial number",
            detail: "system random number generator failed".into(),
        })?;
    // Positive, and minimal in DER (no leading zero byte needed).
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

pub(super) fn ia5(field: &'static str, s: String) -> Result<Ia5String, IdentityError> {
    Ia5String::try_from(s.clone()).map_err(|e| IdentityError::InvalidParameter {
        field,
        detail: format!("{s:?}: {e}"),
    })
}

/// Checks that `name` can go into a certificate as a DNS name (dot-separated labels of
/// letters, digits and `-`, a leading `*` label allowed).
pub fn check_dns_name(name: &str) -> Result<(), IdentityError> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').enumerate().all(|(i, label)| {
            let label = if i == 0 && label == "*" { "a" } else { label };
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if ok {
        Ok(())
    } else {
        Err(IdentityError::InvalidParameter {
            field: "dns name",
            detail: format!("{name:?} is not a valid DNS name"),
        })
    }
}

/// Generates a self-signed CA certificate for `cluster`, valid from an hour ago for `days`
/// days.
///
/// Subject CN `gossamer CA <cluster>` (with OU `ca-<key id>`, unique per CA), SAN URI `gossamer://<cluster>`, basic constraints CA with
/// path length 0 (it signs node certificates only), key usages keyCertSign and cRLSign.
pub fn generate_ca(cluster: &ClusterName, days: u32) -> Result<PemPair, IdentityError> {
    let span = check_days(days)?;
    let now = now_unix();
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    // The key id in the OU makes every CA's subject unique, even across CAs of one cluster
    // (rotation, or a stranger's CA): chain building then matches issuers unambiguously.
    let key_id: String = params.key_identifier(&key)[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "gossamer");
    dn.push(DnType::OrganizationalUnitName, format!("ca-{key_id}"));
    dn.push(DnType::CommonName, format!("gossamer CA {cluster}"));
    params.distinguished_name = dn;
    params.subject_alt_names = vec![SanType::URI(ia5(
        "cluster name",
        format!("gossamer://{cluster}"),
    )?)];
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.serial_number = Some(random_serial()?);
    params.not_before = asn1_time("not_before", now - BACKDATE_SECS)?.to_datetime();
    params.not_after = asn1_time("not_after", now + span)?.to_datetime();
    let cert = params.self_signed(&key)?;
    Ok(PemPair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A CA ready to sign: the issuer, its cluster and its certificate.
pub(super) struct LoadedCa {
    pub(super) issuer: Issuer<'static, KeyPair>,
    pub(super) cluster: ClusterName,
    cert: CertificateDer<'static>,
}

/// Finds, among the CA certificates in `ca_cert_pem` (a bundle may hold several during a CA
/// rotation), the one whose public key is `ca_key_pem`'s.
pub(super) fn load_ca(ca_cert_pem: &str, ca_key_pem: &str) -> Result<LoadedCa, IdentityError> {
    let key = KeyPair::from_pem(ca_key_pem).map_err(|e| IdentityError::Pem {
        source_name: "CA private key".into(),
        what: "private key",
        detail: e.to_string(),
    })?;
    let spki = key.subject_public_key_info();
    let certs = parse_certs(ca_cert_pem, "CA certificate")?;
    for cert in certs {
        let x509 = parse_x509(&cert, "CA certificate")?;
        if x509.public_key().raw != spki.as_slice() {
            continue;
        }
        if !x509.is_ca() {
            return Err(IdentityError::BadCertificate {
                source_name: "CA certificate".into(),
                detail: format!("{} is not a CA certificate", x509.subject()),
            });
        }
        let cluster = match gossamer_uri_of(&x509) {
            Ok(GossamerUri::Cluster(c)) => c,
            Ok(GossamerUri::Node(..)) => return Err(IdentityError::BadCertificate {
                source_name: "CA certificate".into(),
                detail:
                    "its SAN URI names a node; a CA's names only the cluster (gossamer://<cluster>)"
                        .into(),
            }),
            Err(detail) => {
                return Err(IdentityError::BadCertificate {
                    source_name: "CA certificate".into(),
                    detail,
                })
            }
        };
        drop(x509);
        let issuer = Issuer::from_ca_cert_der(&cert, key)?;
        return Ok(LoadedCa {
            issuer,
            cluster,
            cert,
        });
    }
    Err(IdentityError::KeyMismatch {
        cert_source: "CA certificate(s)".into(),
        key_source: "CA private key".into(),
    })
}

/// Issues a node certificate signed by the given CA, valid from an hour ago for `days` days.
///
/// The cluster is taken from the CA's SAN URI. Subject CN = node id; SAN URI
/// `gossamer://<cluster>/<node-id>`, plus `dns` names and `ips` (127.0.0.1 and `localhost` when
/// both are empty); extended key usages serverAuth and clientAuth; random serial.
pub fn issue_node(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    node: &NodeId,
    ips: &[IpAddr],
    dns: &[String],
    days: u32,
) -> Result<PemPair, IdentityError> {
    let span = check_days(days)?;
    let now = now_unix();
    issue_node_with_validity(
        ca_cert_pem,
        ca_key_pem,
        node,
        ips,
        dns,
        now - BACKDATE_SECS,
        now + span,
    )
}

/// Like [`issue_node`], with an explicit validity period in seconds since the Unix epoch.
///
/// Meant for tests (certificates that are expired or not yet valid) and for tooling that
/// needs exact dates.
pub fn issue_node_with_validity(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    node: &NodeId,
    ips: &[IpAddr],
    dns: &[String],
    not_before_unix: i64,
    not_after_unix: i64,
) -> Result<PemPair, IdentityError> {
    issue_node_granted(
        ca_cert_pem,
        ca_key_pem,
        node,
        ips,
        dns,
        &[],
        not_before_unix,
        not_after_unix,
    )
}

/// Like [`issue_node_with_validity`], granting writes only under `allow_prefixes` (SAN
/// URIs `gossamer-allow:<prefix>`, see [`super::Grant`]); empty grants every key.
#[allow(clippy::too_many_arguments)]
pub fn issue_node_granted(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    node: &NodeId,
    ips: &[IpAddr],
    dns: &[String],
    allow_prefixes: &[String],
    not_before_unix: i64,
    not_after_unix: i64,
) -> Result<PemPair, IdentityError> {
    for p in allow_prefixes {
        if p.is_empty() || p.chars().any(char::is_control) {
            return Err(IdentityError::InvalidParameter {
                field: "allow_prefix",
                detail: format!(
                    "{p:?}: a prefix must be non-empty and free of control characters (omit --allow-prefix to grant every key)"
                ),
            });
        }
    }
    if not_after_unix <= not_before_unix {
        return Err(IdentityError::InvalidParameter {
            field: "not_after",
            detail: format!("{not_after_unix} is not after not_before {not_before_unix}"),
        });
    }
    let ca = load_ca(ca_cert_pem, ca_key_pem)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, format!("gossamer {}", ca.cluster));
    dn.push(DnType::CommonName, node.as_str());
    params.distinguished_name = dn;
    let mut sans = vec![SanType::URI(ia5(
        "node id",
        format!("gossamer://{}/{node}", ca.cluster),
    )?)];
    if ips.is_empty() && dns.is_empty() {
        sans.push(SanType::DnsName(ia5("dns name", "localhost".into())?));
        sans.push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    }
    for name in dns {
        check_dns_name(name)?;
        sans.push(SanType::DnsName(ia5("dns name", name.clone())?));
    }
    sans.extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
    for p in allow_prefixes {
        sans.push(SanType::URI(ia5("allow_prefix", super::grant_uri(p))?));
    }
    params.subject_alt_names = sans;
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    sign_leaf(params, &ca, not_before_unix, not_after_unix)
}

/// Signs an end-entity certificate (subject, SANs and extended key usages already in
/// `params`) with `ca`: not a CA, digital signature, authority key id, random serial, the
/// validity given, a fresh ECDSA P-256 key.
pub(super) fn sign_leaf(
    mut params: CertificateParams,
    ca: &LoadedCa,
    not_before_unix: i64,
    not_after_unix: i64,
) -> Result<PemPair, IdentityError> {
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(random_serial()?);
    params.not_before = asn1_time("not_before", not_before_unix)?.to_datetime();
    params.not_after = asn1_time("not_after", not_after_unix)?.to_datetime();
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let cert = params.signed_by(&key, &ca.issuer)?;
    Ok(PemPair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Returns a new revocation list (PEM) for the CA of `ca_key_pem` that lists the serial of
/// `node_cert_pem` in addition to everything `existing_crl_pem` listed.
///
/// `existing_crl_pem` may hold revocation lists of other CAs (from a rotation); they are kept
/// unchanged in the output. The CA's own previous list is replaced, with its CRL number
/// incremented.
pub fn revoke(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    existing_crl_pem: Option<&str>,
    node_cert_pem: &str,
) -> Result<String, IdentityError> {
    let ca = load_ca(ca_cert_pem, ca_key_pem)?;
    let ca_x509 = parse_x509(&ca.cert, "CA certificate")?;
    let ca_subject = ca_x509.subject().as_raw().to_vec();
    let now = now_unix();

    let node_certs = parse_certs(node_cert_pem, "node certificate")?;
    let node_x509 = parse_x509(&node_certs[0], "node certificate")?;
    if node_x509.issuer().as_raw() != ca_subject.as_slice() {
        return Err(IdentityError::BadCertificate {
            source_name: "node certificate".into(),
            detail: format!(
                "was issued by {}, not by the CA of the given key ({})",
                node_x509.issuer(),
                ca_x509.subject()
            ),
        });
    }
    let serial = node_x509.raw_serial().to_vec();

    let mut others = Vec::new();
    let mut revoked: Vec<RevokedCertParams> = Vec::new();
    let mut crl_number: Vec<u8> = vec![0];
    if let Some(pem) = existing_crl_pem {
        let crls = CertificateRevocationListDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| IdentityError::Pem {
                source_name: "revocation list".into(),
                what: "certificate revocation list",
                detail: e.to_string(),
            })?;
        for der in crls {
            let (_, crl) = x509_parser::parse_x509_crl(&der).map_err(|e| IdentityError::Pem {
                source_name: "revocation list".into(),
                what: "certificate revocation list",
                detail: e.to_string(),
            })?;
            if crl.issuer().as_raw() != ca_subject.as_slice() {
                others.push(der.to_vec());
                continue;
            }
            if let Some(n) = crl.crl_number() {
                crl_number = n.to_bytes_be();
            }
            for entry in crl.iter_revoked_certificates() {
                revoked.push(RevokedCertParams {
                    serial_number: SerialNumber::from_slice(entry.raw_serial()),
                    revocation_time: entry.revocation_date.to_datetime(),
                    reason_code: None,
                    invalidity_date: None,
                });
            }
        }
    }
    let already = revoked
        .iter()
        .any(|r| strip_zeros(r.serial_number.as_ref()) == strip_zeros(&serial));
    if !already {
        revoked.push(RevokedCertParams {
            serial_number: SerialNumber::from_slice(&serial),
            revocation_time: asn1_time("revocation time", now)?.to_datetime(),
            reason_code: Some(RevocationReason::Unspecified),
            invalidity_date: None,
        });
    }
    let next_number = increment(&crl_number);
    let params = CertificateRevocationListParams {
        this_update: asn1_time("this_update", now - BACKDATE_SECS)?.to_datetime(),
        next_update: asn1_time("next_update", now + i64::from(DEFAULT_CRL_DAYS) * DAY)?
            .to_datetime(),
        crl_number: SerialNumber::from_slice(&next_number),
        issuing_distribution_point: None,
        revoked_certs: revoked,
        key_identifier_method: KeyIdMethod::Sha256,
    };
    let crl = params.signed_by(&ca.issuer)?;
    let mut out = String::new();
    for other in others {
        out.push_str(&pem_block("X509 CRL", &other));
    }
    out.push_str(&crl.pem()?);
    Ok(out)
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let i = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    &b[i..]
}

fn increment(be: &[u8]) -> Vec<u8> {
    let mut v = be.to_vec();
    for byte in v.iter_mut().rev() {
        let (n, carry) = byte.overflowing_add(1);
        *byte = n;
        if !carry {
            return v;
        }
    }
    v.insert(0, 1);
    v
}

fn pem_block(label: &str, der: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::new();
    for chunk in der.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &b)| acc | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                b64.push('=');
            }
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn create_dir(dir: &Path) -> Result<(), IdentityError> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir).map_err(|source| IdentityError::Io {
        action: "create directory",
        path: dir.to_path_buf(),
        source,
    })
}

/// Writes `contents` to `path` atomically (temporary file in the same directory, then
/// rename), with the given Unix mode.
pub(super) fn write_file(path: &Path, contents: &str, mode: u32) -> Result<(), IdentityError> {
    let io = |action: &'static str| {
        move |source| IdentityError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    // NamedTempFile is created with mode 0600.
    let mut tmp = tempfile::Builder::new()
        .prefix(".gossamer-")
        .tempfile_in(dir)
        .map_err(io("create"))?;
    tmp.write_all(contents.as_bytes()).map_err(io("write"))?;
    tmp.as_file().sync_all().map_err(io("write"))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(io("set permissions of"))?;
    }
    #[cfg(not(unix))]
    let _ = mode;
    tmp.persist(path).map_err(|e| IdentityError::Io {
        action: "write",
        path: path.to_path_buf(),
        source: e.error,
    })?;
    Ok(())
}

pub(super) fn not_after_of(cert_pem: &str) -> Result<i64, IdentityError> {
    let certs = parse_certs(cert_pem, "generated certificate")?;
    let x509 = parse_x509(&certs[0], "generated certificate")?;
    Ok(x509.validity().not_after.timestamp())
}

/// Creates a CA for `cluster` and writes `DIR/ca.pem` and `DIR/ca.key` (mode 0600), creating
/// `DIR` (mode 0700) if needed.
///
/// Refuses to replace an existing `ca.key` or `ca.pem` unless `force` is set: replacing the CA
/// invalidates every certificate it issued.
pub fn write_ca(
    dir: &Path,
    cluster: &ClusterName,
    days: u32,
    force: bool,
) -> Result<WrittenFiles, IdentityError> {
    let cert = dir.join("ca.pem");
    let key = dir.join("ca.key");
    if !force {
        for path in [&key, &cert] {
            if path.exists() {
                return Err(IdentityError::WouldOverwrite {
                    path: path.clone(),
                    hint: "a new CA invalidates every certificate the old one issued; pass --force to replace it",
                });
            }
        }
    }
    let pair = generate_ca(cluster, days)?;
    create_dir(dir)?;
    write_file(&key, &pair.key_pem, 0o600)?;
    write_file(&cert, &pair.cert_pem, 0o644)?;
    Ok(WrittenFiles {
        cert,
        key,
        not_after_unix: not_after_of(&pair.cert_pem)?,
    })
}

pub(super) fn read_ca(
    dir: &Path,
    ca_key: Option<&Path>,
) -> Result<(String, String), IdentityError> {
    let shown = dir.display();
    let ca_pem = read_required(
        &dir.join("ca.pem"),
        "CA certificate",
        format!("run `gossamer certs init --dir {shown} --cluster NAME` first, or copy the fleet's ca.pem there"),
    )?;
    let default_key = dir.join("ca.key");
    let key_path = ca_key.unwrap_or(&default_key);
    let key_pem = read_required(
        key_path,
        "CA private key",
        format!("pass --ca-key FILE if the CA key is kept elsewhere, or run `gossamer certs init --dir {shown} --cluster NAME`"),
    )?;
    Ok((ca_pem, key_pem))
}

/// Issues a certificate for `node` signed by the CA in `DIR/ca.pem` with the key `ca_key`
/// (default `DIR/ca.key`), and writes `DIR/<node>.pem` and `DIR/<node>.key` (mode 0600).
///
/// Existing node files are replaced (that is how a certificate is renewed); a fresh key is
/// generated each time.
pub fn write_node(
    dir: &Path,
    node: &NodeId,
    ips: &[IpAddr],
    dns: &[String],
    ca_key: Option<&Path>,
    days: u32,
) -> Result<WrittenFiles, IdentityError> {
    write_node_granted(dir, node, ips, dns, &[], ca_key, days)
}

/// Like [`write_node`], granting writes only under `allow_prefixes` (empty: every key).
pub fn write_node_granted(
    dir: &Path,
    node: &NodeId,
    ips: &[IpAddr],
    dns: &[String],
    allow_prefixes: &[String],
    ca_key: Option<&Path>,
    days: u32,
) -> Result<WrittenFiles, IdentityError> {
    let (ca_pem, ca_key_pem) = read_ca(dir, ca_key)?;
    let span = check_days(days)?;
    let now = now_unix();
    let pair = issue_node_granted(
        &ca_pem,
        &ca_key_pem,
        node,
        ips,
        dns,
        allow_prefixes,
        now - BACKDATE_SECS,
        now + span,
    )?;
    let cert = dir.join(format!("{node}.pem"));
    let key = dir.join(format!("{node}.key"));
    write_file(&key, &pair.key_pem, 0o600)?;
    write_file(&cert, &pair.cert_pem, 0o644)?;
    Ok(WrittenFiles {
        cert,
        key,
        not_after_unix: not_after_of(&pair.cert_pem)?,
    })
}

/// Revokes the certificate in `DIR/<node>.pem`: adds its serial to the CA's revocation list in
/// `DIR/crl.pem` (created if absent), signed with `ca_key` (default `DIR/ca.key`). Returns the
/// path written.
///
/// Nodes read `crl.pem` at start ([`super::load`]); distribute it with `ca.pem`.
pub fn write_revocation(
    dir: &Path,
    node: &NodeId,
    ca_key: Option<&Path>,
) -> Result<PathBuf, IdentityError> {
    let (ca_pem, ca_key_pem) = read_ca(dir, ca_key)?;
    let node_pem = read_required(
        &dir.join(format!("{node}.pem")),
        "node certificate",
        "only certificates present in DIR can be revoked".into(),
    )?;
    let crl_path = dir.join("crl.pem");
    let existing = match std::fs::read_to_string(&crl_path) {
        Ok(s) => Some(s),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => {
            return Err(IdentityError::Io {
                action: "read",
                path: crl_path,
                source,
            })
        }
    };
    let crl = revoke(&ca_pem, &ca_key_pem, existing.as_deref(), &node_pem)?;
    write_file(&crl_path, &crl, 0o644)?;
    Ok(crl_path)
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn pem_block_round_trips() {
        for len in 0..10 {
            let data: Vec<u8> = (0..len as u8).map(|b| b.wrapping_mul(37)).collect();
            let pem = pem_block("X509 CRL", &data);
            if len == 0 {
                continue;
            }
            let der = CertificateRevocationListDer::from_pem_slice(pem.as_bytes()).unwrap();
            assert_eq!(der.as_ref(), data.as_slice());
        }
    }

    #[test]
    fn increments_big_endian() {
        assert_eq!(increment(&[0]), vec![1]);
        assert_eq!(increment(&[0xff]), vec![1, 0]);
        assert_eq!(increment(&[1, 0xff]), vec![2, 0]);
    }
}
