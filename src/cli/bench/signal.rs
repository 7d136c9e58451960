//! Ctrl-C and SIGTERM during a run of the modes that leave something behind (node
//! processes, keys in a running cluster), so that they can clean up first.

/// The run was interrupted (Ctrl-C or SIGTERM); says how it was cleaned up after.
#[derive(Debug, thiserror::Error)]
#[error("interrupted (Ctrl-C or SIGTERM): {0}")]
pub(super) struct Interrupted(pub(super) String);

/// Resolves on Ctrl-C or SIGTERM. While it is awaited, those signals no longer end the
/// process.
pub(super) async fn interrupted() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
