//! The error type of every identity operation. Its own module so that the modules
//! which return it depend on it, and not on the folder's `mod.rs`, which re-exports them.

use std::path::PathBuf;

/// Errors from certificate generation, loading and TLS configuration.
///
/// Messages name the file or field at fault and, where there is one, the command that fixes it.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// A required file does not exist.
    #[error("{what} {} not found; {hint}", path.display())]
    MissingFile {
        /// What the file is ("CA certificate", "node certificate", ...).
        what: &'static str,
        /// The path looked for.
        path: PathBuf,
        /// How to create it.
        hint: String,
    },
    /// A file exists but could not be read or written.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// "read", "write", "create directory", ...
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Refused to overwrite an existing file.
    #[error("{} already exists; refusing to overwrite it ({hint})", path.display())]
    WouldOverwrite {
        /// The existing file.
        path: PathBuf,
        /// How to proceed.
        hint: &'static str,
    },
    /// PEM input held no usable item of the expected kind, or was malformed.
    #[error("{source_name}: no valid {what} found in PEM data: {detail}")]
    Pem {
        /// The file name, or a description of in-memory input.
        source_name: String,
        /// "certificate", "private key", "certificate revocation list".
        what: &'static str,
        /// Parser detail.
        detail: String,
    },
    /// A certificate could not be parsed or lacks a required field.
    #[error("{source_name}: {detail}")]
    BadCertificate {
        /// The file name, or a description of in-memory input.
        source_name: String,
        /// What is wrong (names the field, e.g. the SAN URI).
        detail: String,
    },
    /// The private key does not belong to the certificate.
    #[error("private key {key_source} does not match certificate {cert_source}")]
    KeyMismatch {
        /// Where the certificate came from.
        cert_source: String,
        /// Where the key came from.
        key_source: String,
    },
    /// The certificate names a different node than requested.
    #[error("{source_name} is the certificate of node {found:?}, not of node {expected:?} (SAN URI gossamer://<cluster>/<node-id>)")]
    NodeMismatch {
        /// Where the certificate came from.
        source_name: String,
        /// The node id asked for.
        expected: String,
        /// The node id in the certificate.
        found: String,
    },
    /// The certificate does not chain to the trust bundle, or is not currently valid.
    #[error("{source_name} is not valid against the trust bundle {bundle}: {detail}")]
    Untrusted {
        /// Where the certificate came from.
        source_name: String,
        /// Where the bundle came from.
        bundle: String,
        /// The verifier's reason (unknown issuer, expired, ...).
        detail: String,
    },
    /// A validity period or other numeric parameter is out of range.
    #[error("invalid {field}: {detail}")]
    InvalidParameter {
        /// The parameter ("days", "not_after", "dns name", ...).
        field: &'static str,
        /// Why it was rejected.
        detail: String,
    },
    /// A line of a plain revocation list (`revoked.txt`) could not be parsed.
    #[error("{source_name} line {line}: {detail}")]
    BadRevocationList {
        /// The file name.
        source_name: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        detail: String,
    },
    /// A peer's certificate is not a gossamer identity (no or malformed SAN URI).
    #[error("peer certificate: {0}")]
    PeerIdentity(String),
    /// The connection carries no peer certificate (handshake not complete, or no client auth).
    #[error("connection has no verified peer certificate")]
    NoPeerCertificate,
    /// Certificate generation failed inside rcgen.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls rejected the configuration (e.g. key and certificate do not match).
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// The trust bundle could not be turned into a certificate verifier.
    #[error("trust bundle: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// The TLS configuration is not usable for QUIC (no TLS 1.3 initial cipher suite).
    #[error("TLS configuration not usable for QUIC: {0}")]
    Quic(#[from] quinn::crypto::rustls::NoInitialCipherSuite),
}
