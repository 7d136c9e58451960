//! The admin API's HTTP server: hyper's HTTP/1 connection driver with the bounds an
//! exposed API needs, which `axum::serve` does not set.
//!
//! - **Connection cap**: at most `max_connections` are open; further clients wait in the
//!   kernel's accept backlog instead of each costing a task and buffers.
//! - **Header timeout**: a client must send a request's whole header within
//!   `header_timeout` (hyper's `header_read_timeout`, which needs a timer to act).
//! - **Idle timeout**: a connection on which nothing is read or written for
//!   `idle_timeout` is closed (idle keep-alive, a stalled body).
//! - **Request timeout** and **bounded concurrency** are router layers
//!   (`super::router_with`): a request that takes longer than `request_timeout`, reading
//!   its body included, is answered 408; beyond `max_in_flight` requests at once, 503.
//! - **TLS** (optional): the handshake must finish within `header_timeout` and holds a
//!   connection slot like any connection; the client certificate is judged by the
//!   configuration's verifier (see [`crate::identity::admin_server_config`]).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsAcceptor;

use crate::identity::HandshakeStats;

use super::{router_with, AdminBackend};

/// Bounds of the admin server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeLimits {
    /// Most connections open at once.
    pub max_connections: usize,
    /// Most requests handled at once; more are answered 503.
    pub max_in_flight: usize,
    /// Longest time to receive a request's header.
    pub header_timeout: Duration,
    /// Longest time a connection may go without reading or writing a byte.
    pub idle_timeout: Duration,
    /// Longest time for one request, reading its body included (then 408).
    pub request_timeout: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        Self {
            max_connections: 256,
            max_in_flight: 64,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// The TLS configuration of each new connection, as a function called per connection.
type ConfigFn = dyn Fn() -> Result<Arc<rustls::ServerConfig>, String> + Send + Sync;

/// Where the admin server takes the TLS configuration of each new connection, and where it
/// counts the handshakes that fail before any verifier decides.
#[derive(Clone)]
pub struct TlsSource {
    config: Arc<ConfigFn>,
    stats: Arc<HandshakeStats>,
}

impl TlsSource {
    /// `config` is called per connection, so a certificate reload applies from the next
    /// one on; an error (the certificate in force cannot be used) closes that connection
    /// and is logged. `stats` are the counters its verifier counts in: a handshake that
    /// rustls refuses before the verifier runs (a client without a certificate, a client
    /// speaking plain HTTP) is counted there too.
    pub fn new(
        config: impl Fn() -> Result<Arc<rustls::ServerConfig>, String> + Send + Sync + 'static,
        stats: Arc<HandshakeStats>,
    ) -> Self {
        Self {
            config: Arc::new(config),
            stats,
        }
    }
}

/// Serves the admin API on `listener` within `limits` until `shutdown` completes, then
/// lets the requests in flight finish (for up to `request_timeout`) and returns. With
/// `tls`, every connection is HTTPS.
pub async fn serve_with(
    listener: TcpListener,
    backend: Arc<dyn AdminBackend>,
    auth_token: Option<String>,
    tls: Option<TlsSource>,
    limits: ServeLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(
            %addr,
            token = auth_token.is_some(),
            tls = tls.is_some(),
            "admin API listening"
        );
    }
    let app = router_with(backend, auth_token, limits);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            _ = &mut shutdown => break,
        };
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "admin API: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let svc = TowerToHyperService::new(app.clone());
        let stop = stop_rx.clone();
        let acceptor = match tls.as_ref().map(|source| (source.config)()) {
            None => None,
            Some(Ok(config)) => Some(TlsAcceptor::from(config)),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "admin API: no usable TLS configuration; connection closed");
                continue;
            }
        };
        let stats = tls.as_ref().map(|source| source.stats.clone());
        tokio::spawn(async move {
            let stream = IdleTimeout::new(stream, limits.idle_timeout);
            match acceptor {
                None => serve_connection(TokioIo::new(stream), svc, limits, stop).await,
                Some(acceptor) => {
                    match tokio::time::timeout(limits.header_timeout, acceptor.accept(stream)).await
                    {
                        Ok(Ok(tls)) => serve_connection(TokioIo::new(tls), svc, limits, stop).await,
                        // The verifier logged and counted a refused certificate; what
                        // rustls refused before it is counted here.
                        Ok(Err(e)) => {
                            if let Some(stats) = &stats {
                                stats.record_tls_accept_error(&e);
                            }
                            tracing::debug!(error = %e, "admin TLS handshake failed")
                        }
                        Err(_) => tracing::debug!("admin TLS handshake timed out"),
                    }
                }
            }
            drop(permit);
        });
    }
    let _ = stop_tx.send(true);
    // Every connection holds a slot: having them all back means every one ended.
    let all = u32::try_from(limits.max_connections.max(1)).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(limits.request_timeout, slots.acquire_many(all)).await;
    Ok(())
}

/// Serves HTTP/1 on one connection until it ends or the server stops (then gracefully).
async fn serve_connection<I, S>(io: I, svc: S, limits: ServeLimits, mut stop: watch::Receiver<bool>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming> + Send,
    S::Future: Send + 'static,
    S::ResBody: Send + 'static,
    <S::ResBody as hyper::body::Body>::Data: Send,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .serve_connection(io, svc);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        // The guard `wait_for` returns is not `Send`: drop it inside.
        _ = async { drop(stop.wait_for(|s| *s).await) } => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// A stream that fails with `TimedOut` once nothing was read or written for `idle`.
struct IdleTimeout<S> {
    inner: S,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl<S> IdleTimeout<S> {
    fn new(inner: S, idle: Duration) -> Self {
        Self {
            inner,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
        }
    }

    fn touched(&mut self) {
        self.deadline.as_mut().reset(Instant::now() + self.idle);
    }

    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.deadline.as_mut().poll(cx).is_ready()
    }

    /// A write's outcome: bytes written reset the deadline; a write that waits past it
    /// fails.
    fn wrote(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match r {
            Poll::Ready(Ok(n)) => {
                self.touched();
                Poll::Ready(Ok(n))
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(timed_out())),
            other => other,
        }
    }
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "admin connection idle")
}

impl<S: AsyncRead + Unpin> AsyncRead for IdleTimeout<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    self.touched();
                }
                Poll::Ready(r)
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for IdleTimeout<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.wrote(cx, r)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.wrote(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
