//! Certificates at run time: hot reload of the node's certificate, key, trust bundle and
//! revocation lists (polled file changes, SIGHUP, or [`Node::reload_certificates`]),
//! closing the connections of peers that are no longer admitted, expiry warnings, and the
//! security metrics.
//!
//! Every `cert_poll_interval_ms` the node looks at the modification time, size and inode of
//! `DIR/ca.pem`, `DIR/<id>.pem`, `DIR/<id>.key` (or the `ca_file`, `cert_file`, `key_file`
//! configured instead), `DIR/crl.pem` and `DIR/revoked.txt`, following symlinks (so a
//! Kubernetes volume's `..data` flip counts as a change); when any changed, it loads them all again (the same checks as at start) and swaps them into the
//! transport. A set of files that does not load (a certificate copied before its key, a
//! typo in `revoked.txt`) is logged and counted, and the certificates in force stay; the
//! next change is tried again. On every tick, established connections are judged again, so
//! a peer whose certificate expires or is revoked is disconnected.

use std::sync::atomic::Ordering;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::api::NodeError;
use super::reload::{stamp, CertWatch, Stamp};
use super::runtime::Node;
use crate::core::NodeId;
use crate::identity;
use crate::transport::{self, ConnectionStats, PeerConnection, TransportError};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The node's certificate and trust as currently in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertStatus {
    /// Our node id.
    pub node_id: NodeId,
    /// Our cluster.
    pub cluster: String,
    /// Serial number of our certificate (lowercase hex).
    pub serial: String,
    /// Issuer of our certificate.
    pub issuer: String,
    /// SHA-256 fingerprint of our certificate.
    pub sha256_fingerprint: String,
    /// When our certificate expires (seconds since the Unix epoch).
    pub not_after_unix: i64,
    /// Seconds until our certificate expires (negative once expired).
    pub expires_in_secs: i64,
    /// CA certificates in the trust bundle.
    pub ca_certs: usize,
    /// Certificate revocation lists in force.
    pub crls: usize,
    /// Entries of the plain revocation list (`revoked.txt`) in force.
    pub revoked_entries: usize,
    /// Successful reloads since start.
    pub reloads_ok: u64,
    /// Failed reloads since start.
    pub reloads_failed: u64,
    /// Why the last reload failed, if the last attempt failed.
    pub last_error: Option<String>,
}

/// What [`Node::reload_certificates`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadReport {
    /// Whether our own certificate changed.
    pub certificate_changed: bool,
    /// Serial of the certificate now in force.
    pub serial: String,
    /// Its expiry (seconds since the Unix epoch).
    pub not_after_unix: i64,
    /// Connections closed because their peer is no longer admitted, with the reason.
    pub closed: Vec<(NodeId, &'static str)>,
}

impl CertWatch for Node {
    fn start_cert_watch(&self) {
        start(self);
    }
}

/// Applies the configured limits, reports our certificate's expiry, and starts the watcher
/// task (file polling, SIGHUP, rechecks of established peers).
fn start(node: &Node) {
    let sec = node.config().security.clone();
    node.transport()
        .set_limits(sec.max_conns_per_peer, sec.handshake_rate());
    let paths = node.config().cert_paths();
    *lock(&node.reload_state().stamps) = Some(paths.all().iter().map(|p| stamp(p)).collect());
    node.check_expiry();
    #[cfg(unix)]
    let hup = if sec.reload_on_sighup {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; certificates reload on file changes only");
                None
            }
        }
    } else {
        None
    };
    #[cfg(not(unix))]
    let hup: Option<()> = None;
    tokio::spawn(watch(node.clone(), hup));
}

/// Housekeeping period (peer rechecks, expiry warnings) when file polling is off.
const HOUSEKEEPING: Duration = Duration::from_secs(60);
/// Period of repeated expiry warnings.
const WARN_EVERY: Duration = Duration::from_secs(3_600);

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = Option<()>;

/// Resolves on the next SIGHUP; never, if there is no listener (or it stopped).
async fn hangup(hup: &mut Hangup) {
    #[cfg(unix)]
    if let Some(s) = hup.as_mut() {
        if s.recv().await.is_some() {
            return;
        }
        *hup = None;
    }
    #[cfg(not(unix))]
    let _ = hup;
    std::future::pending::<()>().await
}

async fn watch(node: Node, mut hup: Hangup) {
    let sec = node.config().security.clone();
    let poll = sec.cert_poll_interval_ms > 0;
    let period = if poll {
        Duration::from_millis(sec.cert_poll_interval_ms)
    } else {
        HOUSEKEEPING
    };
    let mut stop = node.stop_signal();
    while !*stop.borrow() {
        tokio::select! {
            _ = tokio::time::sleep(period) => {
                if poll {
                    node.poll_certificates();
                }
                node.housekeeping();
            }
            _ = hangup(&mut hup) => {
                tracing::info!(node = %node.id(), "SIGHUP: reloading certificates");
                let _ = node.reload_certificates();
            }
            _ = stop.wait_for(|s| *s) => break,
        }
    }
}

fn node_error(e: TransportError) -> NodeError {
    match e {
        TransportError::Identity(i) => NodeError::Identity(i),
        other => NodeError::Config(other.to_string()),
    }
}

impl Node {
    /// Loads the certificate files again now (what SIGHUP does): our certificate and key,
    /// the trust bundle, `crl.pem` and `revoked.txt`, with the same checks as at start.
    ///
    /// On success new handshakes use them at once, and established connections whose peer
    /// is no longer admitted are closed. On failure nothing changes and the error says why
    /// (it is also logged, counted and shown by [`Node::certificate_status`]).
    pub fn reload_certificates(&self) -> Result<ReloadReport, NodeError> {
        let state = self.reload_state();
        let _one = lock(&state.serial);
        let paths = self.config().cert_paths();
        let stamps: Vec<Stamp> = paths.all().iter().map(|p| stamp(p)).collect();
        *lock(&state.stamps) = Some(stamps);
        let r = self.reload_inner();
        match &r {
            Ok(report) => {
                state.reloads_ok.fetch_add(1, Ordering::Relaxed);
                *lock(&state.last_error) = None;
                tracing::info!(
                    node = %self.id(),
                    serial = %report.serial,
                    not_after = %identity::format_unix(report.not_after_unix),
                    certificate_changed = report.certificate_changed,
                    closed = report.closed.len(),
                    "certificates reloaded"
                );
                // A renewed certificate resets the warning schedule.
                if report.certificate_changed {
                    *lock(&state.last_expiry_warning) = None;
                }
                self.check_expiry();
            }
            Err(e) => {
                state.reloads_failed.fetch_add(1, Ordering::Relaxed);
                *lock(&state.last_error) = Some(e.to_string());
                tracing::warn!(node = %self.id(), error = %e, "certificate reload failed; the certificates in force stay");
            }
        }
        r
    }

    fn reload_inner(&self) -> Result<ReloadReport, NodeError> {
        let cfg = self.config();
        let (id, trust) = identity::load_paths(&cfg.cert_paths(), &cfg.node_id)?;
        let info = id.info()?;
        let transport = self.transport();
        let certificate_changed = transport.identity().chain != id.chain;
        self.renew_authority(&id, &trust)?;
        let outcome = transport.reload(id, trust).map_err(node_error)?;
        Ok(ReloadReport {
            certificate_changed,
            serial: info.serial,
            not_after_unix: info.not_after_unix,
            closed: outcome.closed,
        })
    }

    /// Reloads if any certificate file changed since the last (attempted) load.
    fn poll_certificates(&self) {
        let paths = self.config().cert_paths();
        let now: Vec<Stamp> = paths.all().iter().map(|p| stamp(p)).collect();
        let changed = lock(&self.reload_state().stamps).as_ref() != Some(&now);
        if changed {
            tracing::info!(node = %self.id(), dir = %self.config().certs.display(), "certificate files changed; reloading");
            let _ = self.reload_certificates();
        }
    }

    /// Periodic work: judge established peers again (expiry, revocation), warn about our
    /// own certificate's expiry, and publish our certificates if an earlier attempt could
    /// not (a dot lease not yet durable).
    fn housekeeping(&self) {
        self.transport().recheck_connections();
        self.check_expiry();
        self.republish_certificates();
    }

    /// Logs a warning when our certificate expires within the configured window (at most
    /// hourly), an error once it has expired.
    fn check_expiry(&self) {
        let id = self.transport().identity();
        let left = id.not_after_unix - unix_now();
        let window = i64::from(self.config().security.cert_expiry_warn_days) * 86_400;
        if left > window {
            return;
        }
        let state = self.reload_state();
        let mut last = lock(&state.last_expiry_warning);
        if last.is_some_and(|t| t.elapsed() < WARN_EVERY) {
            return;
        }
        *last = Some(Instant::now());
        let not_after = identity::format_unix(id.not_after_unix);
        if left <= 0 {
            tracing::error!(node = %self.id(), %not_after, "our certificate has EXPIRED: peers refuse this node; install a renewed certificate (it is picked up without a restart)");
        } else {
            tracing::warn!(
                node = %self.id(),
                %not_after,
                days_left = left / 86_400,
                "our certificate expires soon; renew it (gossamer certs issue) and replace the files: it is picked up without a restart"
            );
        }
    }

    /// Our certificate and the trust in force, and the reload counters.
    pub fn certificate_status(&self) -> CertStatus {
        let state = self.reload_state();
        // Read between reloads, not in the middle of one: a reload swaps the certificate
        // in force before it records its outcome, and a status read in between showed the
        // new serial with the last failure's error.
        let _between = lock(&state.serial);
        let t = self.transport();
        let id = t.identity();
        let trust = t.trust();
        let info = id.info().ok();
        CertStatus {
            node_id: id.node_id.clone(),
            cluster: id.cluster.to_string(),
            serial: info.as_ref().map(|i| i.serial.clone()).unwrap_or_default(),
            issuer: info.as_ref().map(|i| i.issuer.clone()).unwrap_or_default(),
            sha256_fingerprint: info
                .as_ref()
                .map(|i| i.sha256_fingerprint.clone())
                .unwrap_or_default(),
            not_after_unix: id.not_after_unix,
            expires_in_secs: id.not_after_unix - unix_now(),
            ca_certs: trust.ca_certs().len(),
            crls: trust.crls().len(),
            revoked_entries: trust.revocation_list().len(),
            reloads_ok: state.reloads_ok.load(Ordering::Relaxed),
            reloads_failed: state.reloads_failed.load(Ordering::Relaxed),
            last_error: lock(&state.last_error).clone(),
        }
    }

    /// Every established connection (dialed or accepted) with its peer's id.
    pub fn peer_connections(&self) -> Vec<PeerConnection> {
        self.transport().connections()
    }

    /// Closes every connection with `peer`; returns how many were open. The peer may
    /// connect again unless it is also revoked.
    pub fn close_peer_connections(&self, peer: &NodeId) -> usize {
        self.transport()
            .close_peer(peer, transport::CLOSE_SHUTDOWN, b"closed by operator")
    }

    /// Counters of connections closed or refused by limits and revocation.
    pub fn connection_stats(&self) -> &ConnectionStats {
        self.transport().connection_stats()
    }
}
