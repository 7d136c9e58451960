//! A node's security settings (`[security]` in TOML): certificate reload, expiry
//! warnings, the transport's admission limits, and whether writes are signed.

use serde::{Deserialize, Serialize};

use crate::transport::{self, HandshakeRate};

/// Security settings of a node: certificate reload and expiry warnings, and the transport's
/// admission limits. Every field has a default; in TOML they go under `[security]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// How often the certificate files are checked for changes, in milliseconds
    /// (0: only on SIGHUP or [`Node::reload_certificates`](super::Node::reload_certificates)).
    pub cert_poll_interval_ms: u64,
    /// Reload the certificates when the process receives SIGHUP (Unix).
    pub reload_on_sighup: bool,
    /// Warn (log level warn, repeated hourly) when our certificate expires within this many
    /// days.
    pub cert_expiry_warn_days: u32,
    /// Connections one peer may hold at once (0: unlimited); beyond it the oldest are closed.
    pub max_conns_per_peer: usize,
    /// Incoming handshakes per second allowed per source address (0: unlimited).
    pub handshakes_per_sec_per_ip: f64,
    /// Burst of incoming handshakes allowed per source address.
    pub handshake_burst_per_ip: u32,
    /// Sign every write with the node's key and refuse every write whose signature does
    /// not verify against its writer's certificate (default). Off: writes are unsigned
    /// and a relay is trusted as to who wrote what; every node of a fleet must agree.
    pub signed_writes: bool,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        let rate = HandshakeRate::default();
        Self {
            cert_poll_interval_ms: 5_000,
            reload_on_sighup: true,
            cert_expiry_warn_days: 14,
            max_conns_per_peer: transport::QuicSettings::default().max_conns_per_peer,
            handshakes_per_sec_per_ip: rate.per_sec,
            handshake_burst_per_ip: rate.burst,
            signed_writes: true,
        }
    }
}

impl SecurityConfig {
    /// Checks the values; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        if !self.handshakes_per_sec_per_ip.is_finite() || self.handshakes_per_sec_per_ip < 0.0 {
            return Err("security.handshakes_per_sec_per_ip: must be 0 or more".into());
        }
        if self.handshakes_per_sec_per_ip > 0.0 && self.handshake_burst_per_ip == 0 {
            return Err("security.handshake_burst_per_ip: must be at least 1".into());
        }
        if self.cert_poll_interval_ms > 0 && self.cert_poll_interval_ms < 10 {
            return Err("security.cert_poll_interval_ms: use 0 (off) or at least 10".into());
        }
        Ok(())
    }

    /// The per-address handshake bucket, `None` when unlimited.
    pub fn handshake_rate(&self) -> Option<HandshakeRate> {
        (self.handshakes_per_sec_per_ip > 0.0).then_some(HandshakeRate {
            per_sec: self.handshakes_per_sec_per_ip,
            burst: self.handshake_burst_per_ip,
        })
    }
}
