//! Certificates and mutual TLS.
//!
//! Every node holds a certificate issued by its fleet's CA (ECDSA P-256, generated with
//! rcgen). The certificate names the node in a SAN URI `gossamer://<cluster>/<node-id>`; the
//! CA names its cluster in a SAN URI `gossamer://<cluster>`. This module:
//!
//! - generates CA and node certificates and writes them as `DIR/ca.pem`, `DIR/ca.key`,
//!   `DIR/<id>.pem`, `DIR/<id>.key` ([`write_ca`], [`write_node`]), and revokes node
//!   certificates into `DIR/crl.pem` ([`write_revocation`]);
//! - loads a node's [`Identity`] and the fleet's [`TrustBundle`] (one or more CA certificates,
//!   so the CA can be rotated, plus optional CRLs and a plain [`RevocationList`] of serials and
//!   node ids, `DIR/revoked.txt`) with [`load`]; the same call re-reads them on a reload;
//! - describes certificates for people ([`CertInfo`], [`inspect_pem`]);
//! - judges an established peer again after the trust changed ([`recheck_peer`]);
//! - builds rustls and quinn configurations for mutually authenticated TLS 1.3 with ALPN
//!   [`ALPN`] ([`server_config`], [`client_config`], [`quinn_server_config`],
//!   [`quinn_client_config`]). Both sides verify the peer's chain against the bundle, then
//!   require the peer's SAN URI to name our cluster (and, when dialing a known peer, the
//!   expected node id). The TLS server name is not checked: clients dial IP addresses with
//!   the fixed server name [`SNI`];
//! - issues operator certificates (`gossamer-operator://<cluster>/<name>`, client use only,
//!   never admitted by the transport) and builds the admin API's HTTPS configurations that
//!   require them ([`issue_operator`], [`admin_server_config`], [`admin_client_config`]);
//! - maps a verified connection back to the peer's `(cluster, node id)` ([`peer_identity`]),
//!   and counts refused handshakes by reason ([`HandshakeStats`],
//!   [`classify_handshake_error`]).

mod admin_tls;
mod certs;
mod error;
mod grant;
mod inspect;
mod keyfmt;
mod load;
mod operator;
mod parse;
mod protocol;
mod refusal;
mod revocation;
mod tls;

pub use admin_tls::{admin_client_config, admin_server_config, AdminClients};
pub use certs::{
    check_dns_name, generate_ca, issue_node, issue_node_granted, issue_node_with_validity, revoke,
    write_ca, write_node, write_node_granted, write_revocation, PemPair, WrittenFiles,
    DEFAULT_CA_DAYS, DEFAULT_CRL_DAYS, DEFAULT_NODE_DAYS,
};
pub use error::IdentityError;
pub use grant::{grant_uri, Grant, GRANT_URI_SCHEME};
pub use inspect::{format_unix, inspect_pem, CertInfo};
pub use load::{load, load_paths, peer_from_cert, CertPaths, Identity, TrustBundle};
pub use operator::{issue_operator, operator_of, write_operator, Operator, OPERATOR_URI_PREFIX};
pub use protocol::{ALPN, ALPN_DIGEST, SNI};
pub use refusal::classify_handshake_error;
pub use revocation::RevocationList;
pub use tls::{
    chain_expiry_unix, client_config, peer_chain, peer_identity, quinn_client_config,
    quinn_server_config, recheck_peer, server_config, HandshakeCounts, HandshakeStats, PeerRecheck,
    Refusal,
};

#[cfg(test)]
mod tests;
