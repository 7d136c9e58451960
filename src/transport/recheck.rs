//! Judging established connections' peers again: after a reload of the identity or trust
//! bundle (a revocation, a CA that left), and periodically for certificates that expired
//! while connected.
//!
//! A peer's chain that passed under a trust bundle passes again under the same bundle
//! until the first of its certificates expires: revocations and trust come only with a
//! new bundle. So a connection is verified again only when the bundle changed or that
//! time has come. Before, every connection's chain was verified in full (P-256 signature
//! checks) at every housekeeping tick, every 5 s by default: about 65 µs per connection,
//! so at N = 100 a node spent some 6 ms per tick, and 100 nodes in one process saturated both
//! CPUs for half a second every 5 s (BENCHMARKS.md 14.7).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{lock, ReloadOutcome, TlsState, Transport, CLOSE_REVOKED, CLOSE_UNTRUSTED};
use crate::identity;

/// The connections that passed the last recheck: under which identity and trust, and until
/// when (each chain's earliest expiry, seconds since the Unix epoch), by stable id.
#[derive(Default)]
pub(super) struct Rechecked {
    under: Option<Arc<TlsState>>,
    until: HashMap<usize, i64>,
}

impl Transport {
    /// Judges established connections' peers again against the trust bundle in force
    /// (with [`identity::PeerRecheck`]), and closes those no longer admitted: revoked
    /// peers with [`CLOSE_REVOKED`], others with [`CLOSE_UNTRUSTED`]. A connection that
    /// passed under the same identity and trust is skipped until its chain's first
    /// certificate expires. Returns what it closed.
    pub fn recheck_connections(&self) -> ReloadOutcome {
        let tls = self.tls();
        let now = rustls::pki_types::UnixTime::now();
        let now_unix = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        let mut out = ReloadOutcome::default();
        let mut rechecked = lock(&self.shared.rechecked);
        if !rechecked
            .under
            .as_ref()
            .is_some_and(|u| Arc::ptr_eq(u, &tls))
        {
            rechecked.under = Some(tls.clone());
            rechecked.until.clear();
        }
        let mut until = HashMap::with_capacity(rechecked.until.len());
        let mut due = Vec::new();
        for pc in self.connections() {
            let id = pc.conn.stable_id();
            match rechecked.until.get(&id) {
                Some(&t) if now_unix < t => {
                    until.insert(id, t);
                }
                _ => due.push(pc),
            }
        }
        if !due.is_empty() {
            let judge = match identity::PeerRecheck::new(&tls.trust, &tls.identity.cluster) {
                Ok(j) => j,
                Err(e) => {
                    tracing::error!(error = %e, "cannot judge established peers: trust bundle unusable");
                    return out;
                }
            };
            for pc in due {
                let Ok(chain) = identity::peer_chain(&pc.conn) else {
                    continue;
                };
                match judge.check(&chain, pc.inbound, now) {
                    Ok(_) => {
                        if let Some(t) = identity::chain_expiry_unix(&chain) {
                            until.insert(pc.conn.stable_id(), t);
                        }
                    }
                    Err(refusal) => {
                        let (code, counter) = if refusal.label == "revoked" {
                            (CLOSE_REVOKED, &self.shared.stats.closed_revoked)
                        } else {
                            (CLOSE_UNTRUSTED, &self.shared.stats.closed_untrusted)
                        };
                        tracing::warn!(
                            peer = %pc.peer,
                            remote = %pc.conn.remote_address(),
                            reason = refusal.label,
                            detail = %refusal.detail,
                            "closing connection: peer no longer admitted"
                        );
                        pc.conn.close(code, refusal.label.as_bytes());
                        counter.fetch_add(1, Ordering::Relaxed);
                        out.closed.push((pc.peer, refusal.label));
                    }
                }
            }
        }
        rechecked.until = until;
        drop(rechecked);
        self.prune();
        out
    }
}
