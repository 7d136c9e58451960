//! Loading a node's identity and the fleet's trust bundle, and reading identities out of
//! certificates.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime,
};
use rustls::RootCertStore;

use super::error::IdentityError;
use super::inspect::CertInfo;
use super::parse::{node_uri_of, parse_certs, parse_key, parse_x509, read_required};
use super::protocol::{crypto_provider, SNI};
use super::revocation::RevocationList;
use crate::core::id::{ClusterName, NodeId};

/// A node's own identity: its certificate chain and private key.
///
/// `chain[0]` is the node's certificate; any further certificates are intermediates sent to
/// peers. Cloning copies the key bytes (see also [`Identity::clone_key`]); `Debug` never
/// prints the key.
pub struct Identity {
    /// The cluster named by the certificate's SAN URI.
    pub cluster: ClusterName,
    /// The node id named by the certificate's SAN URI.
    pub node_id: NodeId,
    /// The certificate chain, end-entity certificate first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The private key of `chain[0]`.
    pub key: PrivateKeyDer<'static>,
    /// When the certificate expires (seconds since the Unix epoch).
    pub not_after_unix: i64,
}

impl Identity {
    /// Parses a certificate chain (end-entity first) and its private key from PEM text.
    ///
    /// Checks that the certificate carries a `gossamer://<cluster>/<node-id>` SAN URI and that
    /// the key belongs to it. Does not check the chain against a trust bundle (see
    /// [`TrustBundle::verify`], which [`load`] calls).
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, IdentityError> {
        Self::from_pem_named(cert_pem, key_pem, "certificate PEM", "private key PEM")
    }

    pub(crate) fn from_pem_named(
        cert_pem: &str,
        key_pem: &str,
        cert_source: &str,
        key_source: &str,
    ) -> Result<Self, IdentityError> {
        let chain = parse_certs(cert_pem, cert_source)?;
        let key = parse_key(key_pem, key_source)?;
        let (cluster, node_id, not_after_unix) = {
            let x509 = parse_x509(&chain[0], cert_source)?;
            let (cluster, node) =
                node_uri_of(&x509).map_err(|detail| IdentityError::BadCertificate {
                    source_name: cert_source.to_string(),
                    detail,
                })?;
            (cluster, node, x509.validity().not_after.timestamp())
        };
        match rustls::sign::CertifiedKey::from_der(
            chain.clone(),
            key.clone_key(),
            &crypto_provider(),
        ) {
            Ok(_) => {}
            Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
                return Err(IdentityError::KeyMismatch {
                    cert_source: cert_source.to_string(),
                    key_source: key_source.to_string(),
                })
            }
            Err(e) => {
                return Err(IdentityError::Pem {
                    source_name: key_source.to_string(),
                    what: "private key",
                    detail: e.to_string(),
                })
            }
        }
        Ok(Self {
            cluster,
            node_id,
            chain,
            key,
            not_after_unix,
        })
    }

    /// A copy of the private key (`PrivateKeyDer` is deliberately not `Clone`).
    pub fn clone_key(&self) -> PrivateKeyDer<'static> {
        self.key.clone_key()
    }

    /// The facts of the node's certificate (`chain[0]`): serial, validity, fingerprint, ...
    pub fn info(&self) -> Result<CertInfo, IdentityError> {
        CertInfo::from_der(&self.chain[0])
    }
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Self {
            cluster: self.cluster.clone(),
            node_id: self.node_id.clone(),
            chain: self.chain.clone(),
            key: self.clone_key(),
            not_after_unix: self.not_after_unix,
        }
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("cluster", &self.cluster)
            .field("node_id", &self.node_id)
            .field("chain_len", &self.chain.len())
            .field("key", &"<redacted>")
            .field("not_after_unix", &self.not_after_unix)
            .finish()
    }
}

/// The CA certificates a node trusts (one or more, so the CA can be rotated: put the old and
/// the new CA in the same `ca.pem`), plus optional certificate revocation lists and a plain
/// [`RevocationList`] of serials and node ids.
///
/// Cheap to clone: the root store and the revocation list are shared.
#[derive(Clone)]
pub struct TrustBundle {
    roots: Arc<RootCertStore>,
    certs: Vec<CertificateDer<'static>>,
    crls: Vec<CertificateRevocationListDer<'static>>,
    revoked: Arc<RevocationList>,
    source: String,
}

impl TrustBundle {
    /// Parses one or more CA certificates from PEM text.
    pub fn from_pem(pem: &str) -> Result<Self, IdentityError> {
        Self::from_pem_named(pem, "trust bundle PEM")
    }

    pub(crate) fn from_pem_named(pem: &str, source_name: &str) -> Result<Self, IdentityError> {
        let certs = parse_certs(pem, source_name)?;
        let mut roots = RootCertStore::empty();
        for (i, cert) in certs.iter().enumerate() {
            let x509 = parse_x509(cert, source_name)?;
            if !x509.is_ca() {
                return Err(IdentityError::BadCertificate {
                    source_name: source_name.to_string(),
                    detail: format!(
                        "certificate #{} ({}) is not a CA certificate (basicConstraints CA:TRUE missing)",
                        i + 1,
                        x509.subject()
                    ),
                });
            }
            roots
                .add(cert.clone())
                .map_err(|e| IdentityError::BadCertificate {
                    source_name: source_name.to_string(),
                    detail: format!("certificate #{} is not a usable trust anchor: {e}", i + 1),
                })?;
        }
        Ok(Self {
            roots: Arc::new(roots),
            certs,
            crls: Vec::new(),
            revoked: Arc::new(RevocationList::new()),
            source: source_name.to_string(),
        })
    }

    /// Adds the certificate revocation lists found in `pem` (one or more `X509 CRL` blocks).
    ///
    /// Peers whose certificate serial is listed by its issuer's CRL are refused. Certificates
    /// whose issuer has no CRL in the bundle are accepted.
    pub fn with_crls_pem(self, pem: &str) -> Result<Self, IdentityError> {
        self.with_crls_pem_named(pem, "revocation list PEM")
    }

    pub(crate) fn with_crls_pem_named(
        mut self,
        pem: &str,
        source_name: &str,
    ) -> Result<Self, IdentityError> {
        let crls = CertificateRevocationListDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| IdentityError::Pem {
                source_name: source_name.to_string(),
                what: "certificate revocation list",
                detail: e.to_string(),
            })?;
        for crl in &crls {
            x509_parser::parse_x509_crl(crl).map_err(|e| IdentityError::Pem {
                source_name: source_name.to_string(),
                what: "certificate revocation list",
                detail: e.to_string(),
            })?;
        }
        self.crls.extend(crls);
        Ok(self)
    }

    /// Replaces the plain revocation list (serials and node ids, see [`RevocationList`]).
    pub fn with_revocation_list(mut self, list: RevocationList) -> Self {
        self.revoked = Arc::new(list);
        self
    }

    /// The plain revocation list (empty unless one was loaded).
    pub fn revocation_list(&self) -> &Arc<RevocationList> {
        &self.revoked
    }

    /// Whether `cert` is listed in the plain revocation list, by serial or by the node id of
    /// its SAN URI. (Revocation by CRL is checked during chain verification.)
    pub fn is_listed_revoked(&self, cert: &CertificateDer<'_>) -> bool {
        if self.revoked.is_empty() {
            return false;
        }
        match x509_parser::parse_x509_certificate(cert) {
            Ok((_, x)) => {
                let node = node_uri_of(&x).ok().map(|(_, n)| n);
                self.revoked.is_revoked(x.raw_serial(), node.as_ref())
            }
            Err(_) => false,
        }
    }

    /// The shared root store (one trust anchor per CA certificate).
    pub fn roots(&self) -> &Arc<RootCertStore> {
        &self.roots
    }

    /// The CA certificates, in file order.
    pub fn ca_certs(&self) -> &[CertificateDer<'static>] {
        &self.certs
    }

    /// The certificate revocation lists.
    pub fn crls(&self) -> &[CertificateRevocationListDer<'static>] {
        &self.crls
    }

    /// Checks that `id`'s chain is signed by a CA of this bundle, is valid now, and is not
    /// revoked.
    pub fn verify(&self, id: &Identity) -> Result<(), IdentityError> {
        self.verify_named(id, "certificate")
    }

    pub(crate) fn verify_named(
        &self,
        id: &Identity,
        source_name: &str,
    ) -> Result<(), IdentityError> {
        let verifier = self.server_verifier()?;
        let untrusted = |detail: String| IdentityError::Untrusted {
            source_name: source_name.to_string(),
            bundle: self.source.clone(),
            detail,
        };
        let (ee, intermediates) = id
            .chain
            .split_first()
            .ok_or_else(|| untrusted("empty certificate chain".into()))?;
        verify_ignoring_name(&verifier, ee, intermediates, UnixTime::now())
            .map_err(|e| untrusted(e.to_string()))?;
        if self.is_listed_revoked(ee) {
            return Err(untrusted(
                "its serial number or node id is listed in the revocation list (revoked.txt)"
                    .into(),
            ));
        }
        Ok(())
    }

    /// A webpki server-certificate verifier over this bundle (ring algorithms, CRLs applied
    /// to end-entity certificates; certificates of issuers without a CRL are accepted).
    pub(crate) fn server_verifier(&self) -> Result<Arc<WebPkiServerVerifier>, IdentityError> {
        let mut b = WebPkiServerVerifier::builder_with_provider(
            self.roots.clone(),
            Arc::new(crypto_provider()),
        );
        if !self.crls.is_empty() {
            b = b
                .with_crls(self.crls.clone())
                .only_check_end_entity_revocation()
                .allow_unknown_revocation_status();
        }
        Ok(b.build()?)
    }
}

impl fmt::Debug for TrustBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustBundle")
            .field("source", &self.source)
            .field("ca_certs", &self.certs.len())
            .field("crls", &self.crls.len())
            .field("revoked_entries", &self.revoked.len())
            .finish()
    }
}

/// Verifies chain, validity and revocation with a webpki server verifier, without checking the
/// server name (gossamer binds identities through the SAN URI instead).
pub(crate) fn verify_ignoring_name(
    verifier: &WebPkiServerVerifier,
    ee: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    now: UnixTime,
) -> Result<(), rustls::Error> {
    use rustls::client::danger::ServerCertVerifier;
    use rustls::CertificateError;
    let name = ServerName::try_from(SNI).expect("SNI is a valid DNS name");
    match verifier.verify_server_cert(ee, intermediates, &name, &[], now) {
        Ok(_) => Ok(()),
        // The name check is the verifier's last step: chain, validity and revocation passed.
        Err(rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        )) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The files of a node's certificate directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPaths {
    /// `DIR/ca.pem`: the trust bundle (one or more CA certificates).
    pub ca: PathBuf,
    /// `DIR/<node>.pem`: the node's certificate chain, its own certificate first.
    pub cert: PathBuf,
    /// `DIR/<node>.key`: the node's private key.
    pub key: PathBuf,
    /// `DIR/crl.pem`: certificate revocation lists (optional).
    pub crl: PathBuf,
    /// `DIR/revoked.txt`: plain revocation list of serials and node ids (optional).
    pub revoked: PathBuf,
}

impl CertPaths {
    /// The paths of `node`'s files in `certs_dir`.
    pub fn new(certs_dir: &Path, node: &NodeId) -> Self {
        Self {
            ca: certs_dir.join("ca.pem"),
            cert: certs_dir.join(format!("{node}.pem")),
            key: certs_dir.join(format!("{node}.key")),
            crl: certs_dir.join("crl.pem"),
            revoked: certs_dir.join("revoked.txt"),
        }
    }

    /// Replaces the certificate, key and trust bundle paths given (a file name is taken
    /// in `certs_dir`, an absolute path as is). Kubernetes TLS volumes (a `kubernetes.io/tls`
    /// Secret, cert-manager's csi-driver) name them `tls.crt`, `tls.key` and `ca.crt`.
    pub fn with_files(
        mut self,
        certs_dir: &Path,
        cert: Option<&Path>,
        key: Option<&Path>,
        ca: Option<&Path>,
    ) -> Self {
        for (slot, file) in [
            (&mut self.cert, cert),
            (&mut self.key, key),
            (&mut self.ca, ca),
        ] {
            if let Some(f) = file {
                *slot = certs_dir.join(f);
            }
        }
        self
    }

    /// Every path, in a fixed order (what a watcher polls).
    pub fn all(&self) -> [&Path; 5] {
        [&self.ca, &self.cert, &self.key, &self.crl, &self.revoked]
    }
}

fn read_optional(path: &Path) -> Result<Option<String>, IdentityError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(IdentityError::Io {
            action: "read",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Loads this node's identity and the fleet's trust bundle from a certificates directory.
///
/// Reads `DIR/ca.pem` (one or more CA certificates), `DIR/<node>.pem`, `DIR/<node>.key` and, if
/// present, `DIR/crl.pem` and `DIR/revoked.txt` (see [`RevocationList`]). Fails if the
/// certificate names another node, if the key does not match, or if the certificate does not
/// chain to the bundle, is not currently valid or is revoked.
pub fn load(certs_dir: &Path, node: &NodeId) -> Result<(Identity, TrustBundle), IdentityError> {
    load_paths(&CertPaths::new(certs_dir, node), node)
}

/// [`load`] from the files `paths` names (see [`CertPaths::with_files`]).
///
/// The certificate file may hold the node's certificate followed by its chain up to and
/// including the root (cert-manager's `tls.crt` may): a root in the chain is harmless,
/// the path ends at the bundle's CA either way.
pub fn load_paths(
    paths: &CertPaths,
    node: &NodeId,
) -> Result<(Identity, TrustBundle), IdentityError> {
    let dir = paths.ca.parent().unwrap_or(Path::new(".")).display();
    let ca_path = paths.ca.clone();
    let cert_path = paths.cert.clone();
    let key_path = paths.key.clone();
    let crl_path = paths.crl.clone();

    let ca_pem = read_required(
        &ca_path,
        "CA certificate (trust bundle)",
        format!("run `gossamer certs init --dir {dir} --cluster NAME`, or copy the fleet's ca.pem there"),
    )?;
    let issue_hint = format!("run `gossamer certs issue --dir {dir} --node {node}`");
    let cert_pem = read_required(&cert_path, "node certificate", issue_hint.clone())?;
    let key_pem = read_required(&key_path, "node private key", issue_hint)?;
    warn_if_key_readable_by_others(&key_path);

    let mut bundle = TrustBundle::from_pem_named(&ca_pem, &ca_path.display().to_string())?;
    if let Some(crl_pem) = read_optional(&crl_path)? {
        bundle = bundle.with_crls_pem_named(&crl_pem, &crl_path.display().to_string())?;
    }
    if let Some(text) = read_optional(&paths.revoked)? {
        let list = RevocationList::parse(&text, &paths.revoked.display().to_string())?;
        bundle = bundle.with_revocation_list(list);
    }

    let cert_source = cert_path.display().to_string();
    let id = Identity::from_pem_named(
        &cert_pem,
        &key_pem,
        &cert_source,
        &key_path.display().to_string(),
    )?;
    if &id.node_id != node {
        return Err(IdentityError::NodeMismatch {
            source_name: cert_source,
            expected: node.to_string(),
            found: id.node_id.to_string(),
        });
    }
    bundle.verify_named(&id, &cert_source)?;
    Ok((id, bundle))
}

/// Reads the `(cluster, node id)` a certificate speaks for from its SAN URI
/// `gossamer://<cluster>/<node-id>`.
///
/// The certificate must carry exactly one `gossamer://` URI, and it must name a node. This does
/// not verify the certificate; the TLS verifiers do that before a connection is established.
pub fn peer_from_cert(cert: &CertificateDer<'_>) -> Result<(ClusterName, NodeId), IdentityError> {
    let (_, x509) = x509_parser::parse_x509_certificate(cert)
        .map_err(|e| IdentityError::PeerIdentity(format!("unparsable certificate: {e}")))?;
    node_uri_of(&x509).map_err(IdentityError::PeerIdentity)
}

fn warn_if_key_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode();
            if mode & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    mode = format!("{:o}", mode & 0o777),
                    "private key file is accessible by group or others; chmod 600 it"
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}
