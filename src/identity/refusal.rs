//! How refusals are named: the tags our certificate verifiers embed in their errors, and
//! the short labels (metrics, logs) of failed handshakes and certificate errors, read from
//! either side's error text or TLS alert.

use rustls::CertificateError;

/// Text embedded in the error of a refused peer whose certificate names another cluster.
pub(super) const TAG_WRONG_CLUSTER: &str = "gossamer-wrong-cluster";
/// Text embedded in the error of a refused peer whose certificate identity is unusable or not
/// the expected node.
pub(super) const TAG_BAD_IDENTITY: &str = "gossamer-bad-identity";

/// Maps a failed connection attempt to a short reason label.
///
/// Certificate refusals: `no_certificate`, `unknown_ca`, `wrong_cluster`, `bad_identity`,
/// `expired_or_not_yet_valid`, `revoked`, `other` (the [`HandshakeStats`](super::HandshakeStats) counters), and
/// `alpn_mismatch`, and `connection_refused` (turned away before the handshake, e.g. by
/// the server's per-address handshake rate limit). These come from the local error text when we refused, and from the TLS
/// alert (and text, when sent) when the peer refused us; a gossamer peer refusing our
/// identity sends `certificate_unknown`, reported as `bad_identity` unless the text says more.
/// Everything else: `timed_out`, `reset`, `locally_closed`, `application_closed`,
/// `version_mismatch`, `transport`.
pub fn classify_handshake_error(err: &quinn::ConnectionError) -> &'static str {
    use quinn::ConnectionError as E;
    match err {
        E::TransportError(te) => classify_tls(u64::from(te.code), &te.reason),
        E::ConnectionClosed(close) => classify_tls(
            u64::from(close.error_code),
            &String::from_utf8_lossy(&close.reason),
        ),
        E::ApplicationClosed(_) => "application_closed",
        E::TimedOut => "timed_out",
        E::Reset => "reset",
        E::LocallyClosed => "locally_closed",
        E::VersionMismatch => "version_mismatch",
        E::CidsExhausted => "transport",
    }
}

fn classify_tls(code: u64, reason: &str) -> &'static str {
    if reason.contains("peer sent no certificates") || reason.contains("NoCertificatesPresented") {
        return "no_certificate";
    }
    if reason.contains(TAG_WRONG_CLUSTER) {
        return "wrong_cluster";
    }
    if reason.contains(TAG_BAD_IDENTITY) {
        return "bad_identity";
    }
    if reason.contains("UnknownIssuer") || reason.contains("BadSignature") {
        return "unknown_ca";
    }
    if reason.contains("certificate expired")
        || reason.contains("certificate not valid yet")
        || reason.contains("Expired")
        || reason.contains("NotValidYet")
    {
        return "expired_or_not_yet_valid";
    }
    if reason.contains("Revoked") {
        return "revoked";
    }
    if code == 0x2 {
        // CONNECTION_REFUSED: the server turned the attempt away before the handshake
        // (e.g. its per-address handshake rate was exceeded).
        return "connection_refused";
    }
    if !(0x100..0x200).contains(&code) {
        return if reason.starts_with("TLS error") {
            "other"
        } else {
            "transport"
        };
    }
    // TLS alert descriptions (RFC 8446 section 6).
    match code - 0x100 {
        116 => "no_certificate",          // certificate_required
        48 => "unknown_ca",               // unknown_ca
        45 => "expired_or_not_yet_valid", // certificate_expired
        44 => "revoked",                  // certificate_revoked
        46 => "bad_identity",             // certificate_unknown
        120 => "alpn_mismatch",           // no_application_protocol
        _ => "other",
    }
}

/// Label of a chain/validity failure reported by webpki.
pub(super) fn cert_error_label(e: &rustls::Error) -> &'static str {
    match e {
        rustls::Error::InvalidCertificate(ce) => match ce {
            // BadSignature: issued in the name of a trusted CA but not signed by its key.
            CertificateError::UnknownIssuer | CertificateError::BadSignature => "unknown_ca",
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => "expired_or_not_yet_valid",
            CertificateError::Revoked => "revoked",
            _ => "other",
        },
        _ => "other",
    }
}
