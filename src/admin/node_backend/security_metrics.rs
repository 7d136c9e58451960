//! The security section of `/metrics`: the certificate in force, the trust bundle,
//! revocations, reloads, and connections the node's own policy closed or shed.

use std::fmt;

use super::scrape::{get, Scrape};
use crate::node::Node;

/// Certificate and admission metrics: the security section of the admin API's
/// `/metrics`.
pub(super) fn security_metrics(node: &Node, out: &mut Scrape<'_>) -> fmt::Result {
    let s = node.certificate_status();
    let c = node.connection_stats();
    out.gauge(
        "gossamer_cert_expiry_seconds",
        "Seconds until this node's certificate expires (negative once expired).",
        s.expires_in_secs,
    )?;
    out.gauge(
        "gossamer_trust_bundle_cas",
        "CA certificates in the trust bundle in force.",
        s.ca_certs,
    )?;
    out.gauge(
        "gossamer_revocations",
        "Revocation entries in force (CRLs plus revoked.txt entries).",
        s.crls + s.revoked_entries,
    )?;
    out.counters(
        "gossamer_cert_reloads_total",
        "Certificate reloads by result.",
        "result",
        [("ok", s.reloads_ok), ("failed", s.reloads_failed)],
    )?;
    out.counters(
        "gossamer_connections_closed_total",
        "Established connections closed by the node's own policy, by reason.",
        "reason",
        [
            ("revoked", get(&c.closed_revoked)),
            ("untrusted", get(&c.closed_untrusted)),
            ("peer_limit", get(&c.closed_over_peer_limit)),
        ],
    )?;
    out.counter(
        "gossamer_handshakes_shed_total",
        "Incoming connections refused because too many handshakes were in progress.",
        get(&c.refused_overloaded),
    )
}
