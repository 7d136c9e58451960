//! Starting the node's admin API: binding its address and, with `admin_tls`, serving
//! HTTPS with the node's own certificate.

use std::net::SocketAddr;
use std::sync::Arc;

use super::Node;
use crate::admin::{AdminBackend, TlsSource};
use crate::identity::{self, AdminClients, HandshakeStats};
use crate::node::NodeError;

impl Node {
    /// Binds the admin API (if configured) and serves it until the node shuts down.
    pub(super) async fn start_admin(&self) -> Result<(), NodeError> {
        let Some(addr) = self.inner.cfg.admin else {
            return Ok(());
        };
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| NodeError::Listen { addr, source })?;
        if let Ok(bound) = listener.local_addr() {
            let _ = self.inner.admin_addr.set(bound);
        }
        let tls = self
            .inner
            .cfg
            .admin_tls
            .map(|clients| self.admin_tls(clients));
        let backend: Arc<dyn AdminBackend> = Arc::new(self.clone());
        let mut rx = self.inner.shutdown.subscribe();
        let token = self.inner.cfg.admin_token.clone();
        tokio::spawn(async move {
            let stop = async move {
                let _ = rx.wait_for(|s| *s).await;
            };
            if let Err(e) = crate::admin::serve(listener, backend, token, tls, stop).await {
                tracing::error!(error = %e, "admin API stopped");
            }
        });
        Ok(())
    }

    /// The admin API's TLS configuration, built for each connection from the certificate
    /// and trust in force, so that a reload (renewal, a new CRL) applies to the next
    /// connection without further bookkeeping; admin connections are few.
    fn admin_tls(&self, clients: AdminClients) -> TlsSource {
        let node = self.clone();
        let stats = self.inner.admin_handshakes.clone();
        TlsSource::new(
            move || {
                let transport = node.transport();
                identity::admin_server_config(
                    &transport.identity(),
                    &transport.trust(),
                    clients,
                    node.inner.admin_handshakes.clone(),
                )
                .map(Arc::new)
                .map_err(|e| e.to_string())
            },
            stats,
        )
    }

    /// The address the admin API listens on (`None` without one).
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.inner.admin_addr.get().copied()
    }

    /// Client-certificate decisions of the admin API's TLS (zero without `admin_tls`).
    pub fn admin_handshake_stats(&self) -> Arc<HandshakeStats> {
        self.inner.admin_handshakes.clone()
    }
}
