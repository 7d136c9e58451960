//! Starting a node's admin API beside it: binding the configured address and, with
//! `admin_tls`, serving HTTPS with the node's own certificate. The node does not start
//! it; whoever starts the node does, so the runtime never depends on the HTTP server.

use std::net::SocketAddr;
use std::sync::Arc;

use super::NodeBackend;
use crate::admin::{AdminBackend, TlsSource};
use crate::identity::{self, AdminClients, HandshakeStats};
use crate::node::Node;

/// Why the admin API did not start.
#[derive(Debug, thiserror::Error)]
pub enum AdminStartError {
    /// The configured `admin` address could not be bound.
    #[error("admin: cannot listen on {addr}: {source}; pick a free port or another address")]
    Listen {
        /// The configured address.
        addr: SocketAddr,
        /// What the operating system said.
        source: std::io::Error,
    },
}

/// A node's admin API, serving until the node shuts down.
#[derive(Debug, Clone)]
pub struct AdminServer {
    addr: SocketAddr,
    admin_tls: Arc<HandshakeStats>,
}

impl AdminServer {
    /// Binds the admin API that `node`'s configuration asks for (`admin`, `admin_token`,
    /// `admin_tls`) and serves it until the node shuts down; `None` without an `admin`
    /// address.
    pub async fn start(node: &Node) -> Result<Option<AdminServer>, AdminStartError> {
        let cfg = node.config();
        let Some(addr) = cfg.admin else {
            return Ok(None);
        };
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| AdminStartError::Listen { addr, source })?;
        let bound = listener
            .local_addr()
            .map_err(|source| AdminStartError::Listen { addr, source })?;
        let backend = NodeBackend::new(node.clone());
        let admin_tls = backend.admin_tls_stats();
        let tls = cfg
            .admin_tls
            .map(|clients| tls_source(node, clients, admin_tls.clone()));
        let token = cfg.admin_token.clone();
        let backend: Arc<dyn AdminBackend> = Arc::new(backend);
        let mut stop = node.stop_signal();
        tokio::spawn(async move {
            let stopped = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            if let Err(e) = crate::admin::serve(listener, backend, token, tls, stopped).await {
                tracing::error!(error = %e, "admin API stopped");
            }
        });
        Ok(Some(AdminServer {
            addr: bound,
            admin_tls,
        }))
    }

    /// The address the admin API listens on (the configured port may be 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Client-certificate decisions of the admin API's TLS (zero without `admin_tls`).
    pub fn admin_tls_stats(&self) -> Arc<HandshakeStats> {
        self.admin_tls.clone()
    }
}

/// The admin API's TLS configuration, built for each connection from the certificate
/// and trust in force, so that a reload (renewal, a new CRL) applies to the next
/// connection without further bookkeeping; admin connections are few.
fn tls_source(node: &Node, clients: AdminClients, stats: Arc<HandshakeStats>) -> TlsSource {
    let node = node.clone();
    let decisions = stats.clone();
    TlsSource::new(
        move || {
            let transport = node.transport();
            identity::admin_server_config(
                &transport.identity(),
                &transport.trust(),
                clients,
                decisions.clone(),
            )
            .map(Arc::new)
            .map_err(|e| e.to_string())
        },
        stats,
    )
}
