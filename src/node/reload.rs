//! What the runtime holds for certificate reloads: the per-node bookkeeping
//! ([`ReloadState`]) and [`start`], which the runtime calls once a node is up.
//!
//! The reload itself (`super::certs`: file polling, SIGHUP, rechecks of peers) works on a
//! [`Node`](super::Node), which the runtime defines; the runtime reaches it through the
//! [`CertWatch`] trait rather than by name, so that neither module imports the other.

use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;
use std::time::{Instant, SystemTime};

/// Modification time, size and inode of a file; `None` if absent.
pub(super) type Stamp = Option<(Option<SystemTime>, u64, u64)>;

pub(super) fn stamp(path: &Path) -> Stamp {
    // `metadata` follows symlinks, and must: a Kubernetes volume (Secret, ConfigMap,
    // cert-manager's csi-driver) updates by flipping a `..data` symlink to a new folder,
    // so the visible path and its own link never change, only the file it resolves to
    // (a new inode). tests/k8s_volume.rs flips one with the old modification times.
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let ino = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let ino = 0;
    Some((meta.modified().ok(), meta.len(), ino))
}

/// Per-node bookkeeping of certificate reloads.
#[derive(Debug, Default)]
pub(crate) struct ReloadState {
    /// Stamps of the files last loaded (or last found unloadable).
    pub(super) stamps: Mutex<Option<Vec<Stamp>>>,
    /// One reload at a time.
    pub(super) serial: Mutex<()>,
    pub(super) last_error: Mutex<Option<String>>,
    pub(super) last_expiry_warning: Mutex<Option<Instant>>,
    pub(super) reloads_ok: AtomicU64,
    pub(super) reloads_failed: AtomicU64,
}

/// Starts a node's certificate watcher (implemented by `Node` in `super::certs`).
pub(crate) trait CertWatch {
    /// Applies the configured limits, reports the certificate's expiry, and starts the
    /// watcher task.
    fn start_cert_watch(&self);
}

/// Starts `node`'s certificate watcher.
pub(crate) fn start(node: &impl CertWatch) {
    node.start_cert_watch();
}
