//! QUIC transport: the quinn endpoint with mutual TLS, dialing with identity checks,
//! and the framing of sync and reliable streams.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::{Connection, Endpoint, RecvStream, SendStream};

use crate::core::proto::{Datagram, SyncFrame};
use crate::core::NodeId;
use crate::identity::{self, HandshakeStats, Identity, IdentityError, TrustBundle};
use crate::wire::{self, WireError};

/// Transport errors.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The UDP socket could not be bound.
    #[error("cannot bind QUIC endpoint on {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// TLS configuration failed.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// A name did not resolve.
    #[error("cannot resolve {addr}: {reason}")]
    Resolve {
        /// The name.
        addr: String,
        /// Why.
        reason: String,
    },
    /// Could not start a connection.
    #[error("cannot connect to {addr}: {reason}")]
    Connect {
        /// Address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// The connection failed or was refused.
    #[error("connection to {addr} failed: {source}")]
    Connection {
        /// Address.
        addr: String,
        /// Cause.
        source: quinn::ConnectionError,
    },
    /// The peer's certificate named a different node than expected, or another cluster.
    #[error("peer at {addr} is {got}, expected {expected}")]
    WrongPeer {
        /// Address.
        addr: String,
        /// Expected id.
        expected: NodeId,
        /// Id in its certificate.
        got: NodeId,
    },
    /// A stream failed.
    #[error("stream error: {0}")]
    Stream(String),
    /// The peer sent something malformed.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// An operation took too long.
    #[error("timed out: {0}")]
    Timeout(&'static str),
}

/// Tunables of the QUIC layer.
#[derive(Debug, Clone)]
pub struct QuicSettings {
    /// Idle timeout of a connection.
    pub idle_timeout: Duration,
    /// Keep-alive interval (must be below the idle timeout).
    pub keep_alive: Duration,
    /// Concurrent bidirectional streams a peer may open (sync exchanges).
    pub max_bi_streams: u32,
    /// Concurrent unidirectional streams a peer may open (oversized updates).
    pub max_uni_streams: u32,
    /// Bytes of datagrams buffered for the application per connection.
    pub datagram_receive_buffer: usize,
}

impl Default for QuicSettings {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(30),
            keep_alive: Duration::from_secs(5),
            max_bi_streams: 8,
            max_uni_streams: 16,
            datagram_receive_buffer: 1024 * 1024,
        }
    }
}

fn transport_config(s: &QuicSettings) -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.max_idle_timeout(quinn::IdleTimeout::try_from(s.idle_timeout).ok());
    t.keep_alive_interval(Some(s.keep_alive));
    t.max_concurrent_bidi_streams(s.max_bi_streams.into());
    t.max_concurrent_uni_streams(s.max_uni_streams.into());
    t.datagram_receive_buffer_size(Some(s.datagram_receive_buffer));
    t.datagram_send_buffer_size(s.datagram_receive_buffer);
    Arc::new(t)
}

/// A node's QUIC endpoint with its identity.
#[derive(Clone)]
pub struct Transport {
    endpoint: Endpoint,
    identity: Arc<Identity>,
    trust: TrustBundle,
    handshakes: Arc<HandshakeStats>,
    settings: QuicSettings,
}

impl Transport {
    /// Binds a QUIC endpoint on `listen` that accepts and dials with mutual TLS.
    pub fn bind(
        listen: SocketAddr,
        identity: Identity,
        trust: TrustBundle,
        settings: QuicSettings,
    ) -> Result<Self, TransportError> {
        let handshakes = Arc::new(HandshakeStats::default());
        let mut server = identity::quinn_server_config(&identity, &trust, handshakes.clone())?;
        server.transport_config(transport_config(&settings));
        let endpoint = Endpoint::server(server, listen).map_err(|source| TransportError::Bind {
            addr: listen,
            source,
        })?;
        Ok(Self {
            endpoint,
            identity: Arc::new(identity),
            trust,
            handshakes,
            settings,
        })
    }

    /// Builds the endpoint on a caller-supplied socket (e.g. the fault-injecting socket
    /// of `crate::chaos`) instead of binding one.
    pub fn bind_socket(
        socket: Arc<dyn quinn::AsyncUdpSocket>,
        identity: Identity,
        trust: TrustBundle,
        settings: QuicSettings,
    ) -> Result<Self, TransportError> {
        let addr = socket
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let handshakes = Arc::new(HandshakeStats::default());
        let mut server = identity::quinn_server_config(&identity, &trust, handshakes.clone())?;
        server.transport_config(transport_config(&settings));
        let endpoint = Endpoint::new_with_abstract_socket(
            quinn::EndpointConfig::default(),
            Some(server),
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(|source| TransportError::Bind { addr, source })?;
        Ok(Self {
            endpoint,
            identity: Arc::new(identity),
            trust,
            handshakes,
            settings,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.endpoint
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Our identity.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Handshake refusal counters (both directions).
    pub fn handshakes(&self) -> &Arc<HandshakeStats> {
        &self.handshakes
    }

    /// The underlying endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Dials `addr` (an `ip:port` or `name:port`, resolved now) and completes the
    /// handshake. With `expected`, a peer whose certificate names another node is refused.
    pub async fn connect(
        &self,
        addr: &str,
        expected: Option<&NodeId>,
    ) -> Result<(NodeId, Connection), TransportError> {
        let sock = resolve(addr).await?;
        let mut client = identity::quinn_client_config(
            &self.identity,
            &self.trust,
            expected,
            self.handshakes.clone(),
        )?;
        client.transport_config(transport_config(&self.settings));
        let connecting = self
            .endpoint
            .connect_with(client, sock, identity::SNI)
            .map_err(|e| TransportError::Connect {
                addr: addr.to_string(),
                reason: e.to_string(),
            })?;
        let conn = tokio::time::timeout(Duration::from_secs(10), connecting)
            .await
            .map_err(|_| TransportError::Timeout("handshake"))?
            .map_err(|source| TransportError::Connection {
                addr: addr.to_string(),
                source,
            })?;
        let (_, id) = identity::peer_identity(&conn)?;
        if let Some(exp) = expected {
            if &id != exp {
                conn.close(CLOSE_WRONG_PEER, b"wrong peer");
                return Err(TransportError::WrongPeer {
                    addr: addr.to_string(),
                    expected: exp.clone(),
                    got: id,
                });
            }
        }
        Ok((id, conn))
    }

    /// Accepts the next authenticated incoming connection. Refused handshakes are
    /// counted (by reason) and skipped. Returns `None` when the endpoint closes.
    pub async fn accept(&self) -> Option<(NodeId, Connection)> {
        loop {
            let incoming = self.endpoint.accept().await?;
            let remote = incoming.remote_address();
            match incoming.await {
                Ok(conn) => match identity::peer_identity(&conn) {
                    Ok((_, id)) => return Some((id, conn)),
                    Err(e) => {
                        tracing::warn!(%remote, error = %e, "refused connection without a usable identity");
                        conn.close(CLOSE_WRONG_PEER, b"identity");
                    }
                },
                Err(e) => {
                    let reason = self.handshakes.record_handshake_error(&e);
                    tracing::warn!(%remote, reason, error = %e, "refused handshake");
                }
            }
        }
    }

    /// Closes the endpoint.
    pub fn close(&self) {
        self.endpoint.close(CLOSE_SHUTDOWN, b"shutdown");
    }
}

/// Application close code: shutting down.
pub const CLOSE_SHUTDOWN: quinn::VarInt = quinn::VarInt::from_u32(0);
/// Application close code: the peer is not who it should be.
pub const CLOSE_WRONG_PEER: quinn::VarInt = quinn::VarInt::from_u32(1);
/// Application close code: protocol violation.
pub const CLOSE_PROTOCOL: quinn::VarInt = quinn::VarInt::from_u32(2);

/// Resolves `host:port` to one socket address (names are looked up every call).
pub async fn resolve(addr: &str) -> Result<SocketAddr, TransportError> {
    if let Ok(a) = addr.parse::<SocketAddr>() {
        return Ok(a);
    }
    let mut it = tokio::net::lookup_host(addr)
        .await
        .map_err(|e| TransportError::Resolve {
            addr: addr.to_string(),
            reason: e.to_string(),
        })?;
    it.next().ok_or_else(|| TransportError::Resolve {
        addr: addr.to_string(),
        reason: "no addresses".into(),
    })
}

/// Writes one sync frame.
pub async fn write_frame(send: &mut SendStream, f: &SyncFrame) -> Result<usize, TransportError> {
    let bytes = wire::encode_frame(f);
    send.write_all(&bytes)
        .await
        .map_err(|e| TransportError::Stream(e.to_string()))?;
    Ok(bytes.len())
}

/// Reads one sync frame; the declared length is checked before anything is allocated.
pub async fn read_frame(recv: &mut RecvStream) -> Result<(SyncFrame, usize), TransportError> {
    let mut hdr = [0u8; 4];
    recv.read_exact(&mut hdr)
        .await
        .map_err(|e| TransportError::Stream(e.to_string()))?;
    let len = wire::frame_len(hdr)?;
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body)
        .await
        .map_err(|e| TransportError::Stream(e.to_string()))?;
    Ok((wire::decode_frame(&body)?, len + 4))
}

/// Sends an oversized datagram on a new uni stream.
pub async fn send_reliable(conn: &Connection, d: &Datagram) -> Result<usize, TransportError> {
    let bytes = wire::encode_reliable(d);
    let mut s = conn
        .open_uni()
        .await
        .map_err(|e| TransportError::Stream(e.to_string()))?;
    s.write_all(&bytes)
        .await
        .map_err(|e| TransportError::Stream(e.to_string()))?;
    s.finish()
        .map_err(|e| TransportError::Stream(e.to_string()))?;
    Ok(bytes.len())
}

/// Reads a reliable message from an accepted uni stream (type byte included).
pub async fn read_reliable(mut recv: RecvStream) -> Result<Datagram, TransportError> {
    let bytes = recv
        .read_to_end(wire::MAX_RELIABLE + 1)
        .await
        .map_err(|e| TransportError::Stream(e.to_string()))?;
    match bytes.first() {
        Some(&wire::STREAM_RELIABLE) => Ok(wire::decode_reliable(&bytes[1..])?),
        Some(&t) => Err(WireError::StreamType(t).into()),
        None => Err(WireError::Empty.into()),
    }
}
