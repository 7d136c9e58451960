//! What every gossamer TLS configuration shares: the ALPN id, the server name clients
//! send, and the crypto provider. Its own module so that loading (which verifies a chain
//! with them) and the TLS configurations (which use what loading returns) do not import
//! each other.

use rustls::crypto::CryptoProvider;

/// The ALPN protocol id of gossamer connections, as the previous release speaks it: still
/// offered and accepted, so that nodes of both releases connect during an upgrade.
pub const ALPN: &[u8] = b"gossamer/1";

/// The ALPN protocol id of a node that also reads a digest-first anti-entropy `Open`
/// (`core::sync`, #18); preferred over [`ALPN`]. A connection that negotiated it says the
/// peer reads one: a node of the previous release offers and accepts only [`ALPN`], so it
/// never gets a digest (it would read the `Open`'s empty context as "has seen nothing").
pub const ALPN_DIGEST: &[u8] = b"gossamer/2";

/// The ALPN ids gossamer nodes offer and accept, most preferred first.
pub(crate) fn alpn_protocols() -> Vec<Vec<u8>> {
    vec![ALPN_DIGEST.to_vec(), ALPN.to_vec()]
}

/// The TLS server name every client sends. Peers are dialed by IP address; their identity is
/// checked through the SAN URI, not through this name.
pub const SNI: &str = "gossamer";

/// The ring crypto provider used for every gossamer TLS configuration.
pub(crate) fn crypto_provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}
