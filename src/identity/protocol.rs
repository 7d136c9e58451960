//! What every gossamer TLS configuration shares: the ALPN id, the server name clients
//! send, and the crypto provider. Its own module so that loading (which verifies a chain
//! with them) and the TLS configurations (which use what loading returns) do not import
//! each other.

use rustls::crypto::CryptoProvider;

/// The ALPN protocol id of gossamer connections.
pub const ALPN: &[u8] = b"gossamer/1";

/// The TLS server name every client sends. Peers are dialed by IP address; their identity is
/// checked through the SAN URI, not through this name.
pub const SNI: &str = "gossamer";

/// The ring crypto provider used for every gossamer TLS configuration.
pub(crate) fn crypto_provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}
