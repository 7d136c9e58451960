//! Admission of incoming connection attempts, in the order they are checked: QUIC address
//! validation (a stateless Retry for every Initial from an address that has not yet shown it
//! receives what is sent to it), then the per-address handshake budget, then the bound on
//! handshakes in progress. Retry comes first so that an Initial with a spoofed source
//! address, whose sender never sees the Retry, spends nothing of that address's budget and
//! holds no handshake slot (ARCHITECTURE.md, "Transport and identity").

use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quinn::Connection;

use super::{lock, Handshake, Transport, TransportError, CLOSE_WRONG_PEER};
use crate::core::NodeId;
use crate::identity::{self, HandshakeStats};

/// How long a Retry token stays valid. The client echoes it one round trip after the
/// Retry, so a few seconds would do; this is quinn's default, kept explicit because the
/// design record cites it. The token is bound to the client's IP address and port.
pub(super) const RETRY_TOKEN_LIFETIME: Duration = Duration::from_secs(15);

/// A fresh random key for Retry tokens (as quinn draws one for each server config, but
/// drawn once per transport: see `Shared::token_key`).
pub(super) fn token_key() -> Result<Arc<dyn quinn::crypto::HandshakeTokenKey>, TransportError> {
    use ring::rand::SecureRandom;
    let mut master = [0u8; 64];
    ring::rand::SystemRandom::new()
        .fill(&mut master)
        .map_err(|_| TransportError::TokenKey)?;
    Ok(Arc::new(
        ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, &[]).extract(&master),
    ))
}

/// Source addresses whose handshake buckets are remembered; beyond it, full buckets are
/// forgotten (and, under a flood of distinct addresses, all of them).
const MAX_TRACKED_ADDRS: usize = 16_384;

impl Transport {
    /// Takes a handshake token for `ip`; false when its bucket is empty.
    fn admit(&self, ip: IpAddr) -> bool {
        let Some(rate) = lock(&self.shared.limits).1 else {
            return true;
        };
        let burst = f64::from(rate.burst.max(1));
        let key = match ip {
            IpAddr::V4(_) => ip,
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                // One /64 is one subscriber: key by the prefix.
                None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
            },
        };
        let now = Instant::now();
        let mut buckets = lock(&self.shared.buckets);
        if buckets.len() >= MAX_TRACKED_ADDRS && !buckets.contains_key(&key) {
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * rate.per_sec < burst
            });
            if buckets.len() >= MAX_TRACKED_ADDRS {
                buckets.clear();
            }
        }
        let (tokens, at) = buckets.entry(key).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * rate.per_sec).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Accepts the next authenticated incoming connection.
    ///
    /// An attempt from an address that has not proven reachability is answered with a QUIC
    /// Retry (counted as `retries_sent`) and spends nothing; a validated attempt from an
    /// address over its handshake rate is refused before the handshake and counted as
    /// `rate_limited`. Handshakes run concurrently (at most
    /// [`QuicSettings::max_pending_handshakes`](super::QuicSettings::max_pending_handshakes));
    /// refused handshakes are counted by reason and skipped.
    /// Returns `None` when the endpoint closes. Cancel-safe: handshakes in progress carry on
    /// and are returned by a later call.
    pub async fn accept(&self) -> Option<(NodeId, Connection)> {
        let mut pending = self.shared.pending.lock().await;
        loop {
            tokio::select! {
                biased;
                Some(done) = pending.join_next(), if !pending.is_empty() => {
                    if let Ok(Some((id, conn))) = done {
                        if conn.close_reason().is_none() {
                            self.track(&id, &conn, true);
                            return Some((id, conn));
                        }
                    }
                }
                incoming = self.endpoint.accept() => {
                    let incoming = incoming?;
                    let remote = incoming.remote_address();
                    // Before any budget: the source address may be spoofed until proven.
                    if !incoming.remote_address_validated() {
                        self.retry(incoming);
                        continue;
                    }
                    if !self.admit(remote.ip()) {
                        self.shared.handshakes.count("rate_limited");
                        tracing::debug!(%remote, "refused connection attempt: handshake rate exceeded");
                        incoming.refuse();
                        continue;
                    }
                    if pending.len() >= self.shared.settings.max_pending_handshakes {
                        self.shared
                            .stats
                            .refused_overloaded
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(%remote, "refused connection attempt: too many handshakes in progress");
                        incoming.refuse();
                        continue;
                    }
                    pending.spawn(handshake(
                        incoming,
                        self.shared.handshakes.clone(),
                        self.shared.settings.handshake_timeout,
                    ));
                }
            }
        }
    }

    /// Answers an Initial from an unvalidated address with a stateless Retry: quinn keeps no
    /// state for it, and only a sender that receives at `remote` can echo the token. Should
    /// quinn decline (the Initial already carried a Retry token), the attempt is dropped
    /// without a reply, so nothing is reflected toward an address that may be spoofed.
    fn retry(&self, incoming: quinn::Incoming) {
        let remote = incoming.remote_address();
        match incoming.retry() {
            Ok(()) => {
                self.shared.handshakes.count("retries_sent");
                tracing::trace!(%remote, "sent Retry to an unvalidated address");
            }
            Err(e) => {
                self.shared.handshakes.count("retry_failed");
                tracing::debug!(%remote, "dropped connection attempt: unvalidated and no Retry possible");
                e.into_incoming().ignore();
            }
        }
    }
}

/// Completes one incoming handshake; `None` (after counting and logging) if it fails.
async fn handshake(
    incoming: quinn::Incoming,
    stats: Arc<HandshakeStats>,
    timeout: Duration,
) -> Handshake {
    let remote = incoming.remote_address();
    let connecting = match incoming.accept() {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(%remote, error = %e, "incoming connection failed");
            return None;
        }
    };
    match tokio::time::timeout(timeout, connecting).await {
        Err(_) => {
            tracing::warn!(%remote, "refused handshake: timed out");
            None
        }
        Ok(Err(e)) => {
            let reason = stats.record_handshake_error(&e);
            tracing::warn!(%remote, reason, error = %e, "refused handshake");
            None
        }
        Ok(Ok(conn)) => match identity::peer_identity(&conn) {
            Ok((_, id)) => Some((id, conn)),
            Err(e) => {
                tracing::warn!(%remote, error = %e, "refused connection without a usable identity");
                conn.close(CLOSE_WRONG_PEER, b"identity");
                None
            }
        },
    }
}
