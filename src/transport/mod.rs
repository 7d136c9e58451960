//! QUIC transport: the quinn endpoint with mutual TLS, dialing with identity checks,
//! and the framing of sync and reliable streams.
//!
//! Admission limits: QUIC address validation (a Retry for every Initial from an address not
//! yet validated, before any budget is spent), incoming handshakes per source address (token
//! bucket, refused before the handshake), handshakes in progress, connections per peer id,
//! and streams per connection ([`QuicSettings`]; `admission.rs`). The identity and trust bundle can be swapped at run time
//! ([`Transport::reload`]), which also closes the connections of peers no longer admitted.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use quinn::{Connection, Endpoint, RecvStream, SendStream};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::task::JoinSet;

use crate::core::proto::{Datagram, SyncFrame};
use crate::core::NodeId;
use crate::identity::{self, HandshakeStats, Identity, IdentityError, TrustBundle};
use crate::wire::{self, WireError};

mod admission;
mod endpoint_keys;
mod recheck;

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
    /// No randomness for the key of QUIC Retry tokens.
    #[error("cannot draw a random key for QUIC Retry tokens")]
    TokenKey,
    /// A new identity or trust bundle was not applied.
    #[error("reload refused: {0}")]
    Reload(String),
}

/// Binds the UDP socket of an endpoint with `buffer` bytes asked for its kernel receive
/// and send buffers.
///
/// Linux's default receive buffer (208 KiB, about 90 datagrams) overflows when a burst of
/// writes arrives faster than a busy process reads: in a 20,000-write burst into 10 nodes
/// the kernel dropped 500 to 1,400 datagrams, which QUIC then counted as loss (shrinking
/// its congestion window) and grafts and anti-entropy fetched again (#18). The kernel caps
/// the request at `net.core.rmem_max` / `wmem_max`; what it granted is logged.
pub fn udp_socket(listen: SocketAddr, buffer: usize) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(
        Domain::for_address(listen),
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    // A buffer the kernel refuses is not fatal: the socket works with its default.
    let _ = s.set_recv_buffer_size(buffer);
    let _ = s.set_send_buffer_size(buffer);
    tracing::debug!(
        %listen,
        asked = buffer,
        receive = s.recv_buffer_size().unwrap_or(0),
        send = s.send_buffer_size().unwrap_or(0),
        "UDP socket buffers (Linux reports twice what it grants; raise net.core.rmem_max for more)"
    );
    s.bind(&listen.into())?;
    Ok(s.into())
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
    /// Bytes asked of the kernel for the UDP socket's receive and send buffers (capped by
    /// `net.core.rmem_max` and `wmem_max`): the sockets [`Transport::bind`] and the chaos
    /// socket bind, not one handed to [`Transport::bind_socket`].
    pub socket_buffer: usize,
    /// Connections one peer (node id) may hold at once, both directions together. When an
    /// accepted connection goes beyond it, the peer's oldest connections are closed (a
    /// restarted peer's stale ones go first). 0: no limit.
    pub max_conns_per_peer: usize,
    /// Incoming handshakes allowed per source address (IPv4 address, IPv6 /64); excess
    /// attempts are refused before any cryptography. Only attempts whose address was
    /// validated by a QUIC Retry spend it. `None`: no limit.
    pub handshake_rate: Option<HandshakeRate>,
    /// Incoming handshakes in progress at once; more are refused.
    pub max_pending_handshakes: usize,
    /// How long an incoming or outgoing handshake may take.
    pub handshake_timeout: Duration,
}

impl Default for QuicSettings {
    fn default() -> Self {
        Self {
            // Long, so that SWIM's own traffic keeps a connection open: each node probes
            // 2 members a second and opens an exchange every 2 s (the default protocol),
            // so a pair of nodes talks every N / 5 s or so, and a connection needs a
            // keep-alive only where that exceeds the keep-alive interval (N > 300). A
            // keep-alive on every connection unused for 15 s was the one idle cost that
            // grew with N (#18; BENCHMARKS.md 14.5). What the idle timeout bounded before
            // has its own ways out now: a dead or departed member's connection is closed
            // at once, a restarted member resets its previous life's connections (the
            // endpoint's keys survive a restart: `endpoint_keys.rs`), and a stale
            // connection is replaced when the member dials again (`node::runtime::peers`).
            // Failure detection is SWIM's, not QUIC's.
            idle_timeout: Duration::from_secs(180),
            // A third of the idle timeout: a lost PING is resent within the rest, and a
            // stateful firewall's UDP entry (120 s on Linux) outlives it.
            keep_alive: Duration::from_secs(60),
            max_bi_streams: 8,
            max_uni_streams: 16,
            datagram_receive_buffer: 1024 * 1024,
            socket_buffer: 4 * 1024 * 1024,
            max_conns_per_peer: 2,
            handshake_rate: Some(HandshakeRate::default()),
            max_pending_handshakes: 128,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// A token bucket for incoming handshakes of one source address.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HandshakeRate {
    /// Sustained handshakes per second.
    pub per_sec: f64,
    /// Handshakes allowed in a burst.
    pub burst: u32,
}

impl Default for HandshakeRate {
    fn default() -> Self {
        Self {
            per_sec: 20.0,
            burst: 40,
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

/// Counters of connections the transport closed or turned away (besides handshake refusals,
/// which [`HandshakeStats`] counts).
#[derive(Debug, Default)]
pub struct ConnectionStats {
    /// Connections closed because their peer went beyond
    /// [`QuicSettings::max_conns_per_peer`].
    pub closed_over_peer_limit: AtomicU64,
    /// Established connections closed because the peer's certificate was revoked since.
    pub closed_revoked: AtomicU64,
    /// Established connections closed because the peer's certificate is no longer trusted
    /// for another reason (its CA left the bundle, it expired, ...).
    pub closed_untrusted: AtomicU64,
    /// Incoming connections refused because too many handshakes were in progress.
    pub refused_overloaded: AtomicU64,
}

/// One established connection known to the transport.
#[derive(Debug, Clone)]
pub struct PeerConnection {
    /// The peer's node id (from its verified certificate).
    pub peer: NodeId,
    /// The connection.
    pub conn: Connection,
    /// Whether the peer dialed us.
    pub inbound: bool,
}

/// What a reload changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadOutcome {
    /// Established connections closed because their peer is no longer admitted, with the
    /// reason label (`revoked`, `unknown_ca`, `expired_or_not_yet_valid`, ...).
    pub closed: Vec<(NodeId, &'static str)>,
}

/// The identity and trust in force: replaced as a whole by [`Transport::reload`].
struct TlsState {
    identity: Arc<Identity>,
    trust: TrustBundle,
}

struct Tracked {
    conn: Connection,
    inbound: bool,
}

type Handshake = Option<(NodeId, Connection)>;

struct Shared {
    tls: RwLock<Arc<TlsState>>,
    handshakes: Arc<HandshakeStats>,
    settings: QuicSettings,
    limits: Mutex<(usize, Option<HandshakeRate>)>,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
    peers: Mutex<HashMap<NodeId, Vec<Tracked>>>,
    pending: tokio::sync::Mutex<JoinSet<Handshake>>,
    stats: ConnectionStats,
    /// Key of QUIC Retry tokens, the same for the transport's lifetime so that a reload,
    /// which replaces the server config, keeps the tokens issued a round trip earlier valid.
    token_key: Arc<dyn quinn::crypto::HandshakeTokenKey>,
    /// Connections whose peer passed the last recheck, and until when (`recheck.rs`).
    rechecked: Mutex<recheck::Rechecked>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A node's QUIC endpoint with its identity.
///
/// The identity and trust bundle can be replaced while it runs ([`Transport::reload`]):
/// new handshakes, both ways, use the new ones; established connections whose peer is no
/// longer admitted are closed. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Transport {
    endpoint: Endpoint,
    shared: Arc<Shared>,
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
        let token_key = admission::token_key()?;
        let server = server_config(&identity, &trust, &handshakes, &settings, &token_key)?;
        let bind_err = |source| TransportError::Bind {
            addr: listen,
            source,
        };
        // quinn's tokio socket needs a reactor (it would panic without one).
        tokio::runtime::Handle::try_current()
            .map_err(|_| bind_err(std::io::Error::other("no async runtime found")))?;
        let socket = udp_socket(listen, settings.socket_buffer).map_err(bind_err)?;
        let endpoint = Endpoint::new(
            endpoint_keys::endpoint_config(&identity.key),
            Some(server),
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(bind_err)?;
        Ok(Self::with_endpoint(
            endpoint, identity, trust, handshakes, settings, token_key,
        ))
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
        let token_key = admission::token_key()?;
        let server = server_config(&identity, &trust, &handshakes, &settings, &token_key)?;
        let endpoint = Endpoint::new_with_abstract_socket(
            endpoint_keys::endpoint_config(&identity.key),
            Some(server),
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(|source| TransportError::Bind { addr, source })?;
        Ok(Self::with_endpoint(
            endpoint, identity, trust, handshakes, settings, token_key,
        ))
    }

    fn with_endpoint(
        endpoint: Endpoint,
        identity: Identity,
        trust: TrustBundle,
        handshakes: Arc<HandshakeStats>,
        settings: QuicSettings,
        token_key: Arc<dyn quinn::crypto::HandshakeTokenKey>,
    ) -> Self {
        let limits = (settings.max_conns_per_peer, settings.handshake_rate);
        Self {
            endpoint,
            shared: Arc::new(Shared {
                tls: RwLock::new(Arc::new(TlsState {
                    identity: Arc::new(identity),
                    trust,
                })),
                handshakes,
                settings,
                limits: Mutex::new(limits),
                buckets: Mutex::new(HashMap::new()),
                peers: Mutex::new(HashMap::new()),
                pending: tokio::sync::Mutex::new(JoinSet::new()),
                stats: ConnectionStats::default(),
                token_key,
                rechecked: Mutex::new(recheck::Rechecked::default()),
            }),
        }
    }

    fn tls(&self) -> Arc<TlsState> {
        self.shared
            .tls
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.endpoint
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Our identity as currently in force.
    pub fn identity(&self) -> Arc<Identity> {
        self.tls().identity.clone()
    }

    /// The trust bundle currently in force.
    pub fn trust(&self) -> TrustBundle {
        self.tls().trust.clone()
    }

    /// Handshake refusal counters (both directions).
    pub fn handshakes(&self) -> &Arc<HandshakeStats> {
        &self.shared.handshakes
    }

    /// Counters of connections closed or turned away by the transport's limits and by
    /// revocation.
    pub fn connection_stats(&self) -> &ConnectionStats {
        &self.shared.stats
    }

    /// The settings the transport was built with (limits as changed by
    /// [`Transport::set_limits`] are not reflected).
    pub fn settings(&self) -> &QuicSettings {
        &self.shared.settings
    }

    /// Changes the admission limits at run time: connections per peer (0: unlimited) and the
    /// per-address handshake rate (`None`: unlimited).
    pub fn set_limits(&self, max_conns_per_peer: usize, handshake_rate: Option<HandshakeRate>) {
        *lock(&self.shared.limits) = (max_conns_per_peer, handshake_rate);
        lock(&self.shared.buckets).clear();
    }

    /// The underlying endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Replaces our identity and trust bundle without a restart.
    ///
    /// The new identity must name the same node and cluster. New handshakes, incoming and
    /// outgoing, use the new certificate and bundle at once; established connections stay
    /// up unless their peer is no longer admitted under the new bundle (revoked, from a CA
    /// that was removed, expired), in which case they are closed and counted.
    pub fn reload(
        &self,
        identity: Identity,
        trust: TrustBundle,
    ) -> Result<ReloadOutcome, TransportError> {
        let current = self.identity();
        if identity.node_id != current.node_id || identity.cluster != current.cluster {
            return Err(TransportError::Reload(format!(
                "the new certificate names node {:?} of cluster {:?}; this node is {:?} of cluster {:?} (restart to change identity)",
                identity.node_id.as_str(),
                identity.cluster.as_str(),
                current.node_id.as_str(),
                current.cluster.as_str()
            )));
        }
        let server = server_config(
            &identity,
            &trust,
            &self.shared.handshakes,
            &self.shared.settings,
            &self.shared.token_key,
        )?;
        {
            let mut tls = self.shared.tls.write().unwrap_or_else(|p| p.into_inner());
            self.endpoint.set_server_config(Some(server));
            *tls = Arc::new(TlsState {
                identity: Arc::new(identity),
                trust,
            });
        }
        Ok(self.recheck_connections())
    }

    /// Every established connection the transport knows of (dialed or accepted, not yet
    /// closed), oldest first per peer.
    pub fn connections(&self) -> Vec<PeerConnection> {
        let peers = lock(&self.shared.peers);
        peers
            .iter()
            .flat_map(|(id, list)| {
                list.iter()
                    .filter(|t| t.conn.close_reason().is_none())
                    .map(|t| PeerConnection {
                        peer: id.clone(),
                        conn: t.conn.clone(),
                        inbound: t.inbound,
                    })
            })
            .collect()
    }

    /// Closes every connection with `peer` (with `code` and `reason`); returns how many.
    pub fn close_peer(&self, peer: &NodeId, code: quinn::VarInt, reason: &[u8]) -> usize {
        let list = lock(&self.shared.peers).remove(peer).unwrap_or_default();
        let mut n = 0;
        for t in list {
            if t.conn.close_reason().is_none() {
                t.conn.close(code, reason);
                n += 1;
            }
        }
        n
    }

    fn prune(&self) {
        let mut peers = lock(&self.shared.peers);
        peers.retain(|_, list| {
            list.retain(|t| t.conn.close_reason().is_none());
            !list.is_empty()
        });
    }

    /// Records an established connection; for an accepted one, enforces the per-peer limit
    /// by closing the peer's oldest connections.
    fn track(&self, peer: &NodeId, conn: &Connection, inbound: bool) {
        let max = lock(&self.shared.limits).0;
        let mut evicted = Vec::new();
        {
            let mut peers = lock(&self.shared.peers);
            peers.retain(|_, list| {
                list.retain(|t| t.conn.close_reason().is_none());
                !list.is_empty()
            });
            let list = peers.entry(peer.clone()).or_default();
            list.push(Tracked {
                conn: conn.clone(),
                inbound,
            });
            if inbound && max > 0 {
                while list.len() > max {
                    evicted.push(list.remove(0).conn);
                }
            }
        }
        for old in evicted {
            tracing::warn!(
                %peer,
                remote = %old.remote_address(),
                limit = max,
                "closing the oldest connection of a peer over its connection limit"
            );
            old.close(CLOSE_TOO_MANY, b"too many connections");
            self.shared
                .stats
                .closed_over_peer_limit
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Dials `addr` (an `ip:port` or `name:port`, resolved now) and completes the
    /// handshake with the identity and trust in force. With `expected`, a peer whose
    /// certificate names another node is refused.
    pub async fn connect(
        &self,
        addr: &str,
        expected: Option<&NodeId>,
    ) -> Result<(NodeId, Connection), TransportError> {
        let sock = resolve(addr).await?;
        let tls = self.tls();
        let mut client = identity::quinn_client_config(
            &tls.identity,
            &tls.trust,
            expected,
            self.shared.handshakes.clone(),
        )?;
        drop(tls);
        client.transport_config(transport_config(&self.shared.settings));
        let connecting = self
            .endpoint
            .connect_with(client, sock, identity::SNI)
            .map_err(|e| TransportError::Connect {
                addr: addr.to_string(),
                reason: e.to_string(),
            })?;
        let conn = tokio::time::timeout(self.shared.settings.handshake_timeout, connecting)
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
        self.track(&id, &conn, false);
        Ok((id, conn))
    }

    /// Closes the endpoint.
    pub fn close(&self) {
        self.endpoint.close(CLOSE_SHUTDOWN, b"shutdown");
    }
}

fn server_config(
    identity: &Identity,
    trust: &TrustBundle,
    handshakes: &Arc<HandshakeStats>,
    settings: &QuicSettings,
    token_key: &Arc<dyn quinn::crypto::HandshakeTokenKey>,
) -> Result<quinn::ServerConfig, TransportError> {
    let mut server = identity::quinn_server_config(identity, trust, handshakes.clone())?;
    server.transport_config(transport_config(settings));
    server
        .token_key(token_key.clone())
        .retry_token_lifetime(admission::RETRY_TOKEN_LIFETIME);
    Ok(server)
}

/// Application close code: shutting down.
pub const CLOSE_SHUTDOWN: quinn::VarInt = quinn::VarInt::from_u32(0);
/// Application close code: the peer is not who it should be.
pub const CLOSE_WRONG_PEER: quinn::VarInt = quinn::VarInt::from_u32(1);
/// Application close code: protocol violation.
pub const CLOSE_PROTOCOL: quinn::VarInt = quinn::VarInt::from_u32(2);
/// Application close code: the peer's certificate has been revoked.
pub const CLOSE_REVOKED: quinn::VarInt = quinn::VarInt::from_u32(3);
/// Application close code: the peer holds more connections than allowed.
pub const CLOSE_TOO_MANY: quinn::VarInt = quinn::VarInt::from_u32(4);
/// Application close code: the peer's certificate is no longer trusted (CA removed from the
/// bundle, expired, ...).
pub const CLOSE_UNTRUSTED: quinn::VarInt = quinn::VarInt::from_u32(5);

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

/// True if the peer on `conn` reads a digest-first anti-entropy `Open`: the connection
/// negotiated [`identity::ALPN_DIGEST`] (a node of the previous release only speaks
/// [`identity::ALPN`]).
pub fn reads_digest(conn: &Connection) -> bool {
    conn.handshake_data()
        .and_then(|h| h.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|h| h.protocol)
        .is_some_and(|p| p == identity::ALPN_DIGEST)
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
    read_frame_from(recv).await
}

/// Reads one sync frame (`[u32 BE length][body]`) from any byte stream: the sync stream
/// reader, also driven by the fuzz targets over byte slices.
///
/// The declared length is checked against [`wire::MAX_FRAME`] before anything is read, and
/// the body buffer grows with the bytes that actually arrive (a peer that declares 4 MiB and
/// sends 1 byte costs 64 KiB, not 4 MiB). Returns the frame and the bytes consumed.
pub async fn read_frame_from<R: AsyncRead + Unpin>(
    r: &mut R,
) -> Result<(SyncFrame, usize), TransportError> {
    let mut hdr = [0u8; 4];
    r.read_exact(&mut hdr)
        .await
        .map_err(|e| TransportError::Stream(e.to_string()))?;
    let len = wire::frame_len(hdr)?;
    let mut body = Vec::with_capacity(len.min(FRAME_READ_CHUNK));
    let got = (&mut *r)
        .take(len as u64)
        .read_to_end(&mut body)
        .await
        .map_err(|e| TransportError::Stream(e.to_string()))?;
    if got < len {
        return Err(TransportError::Stream(format!(
            "stream ended inside a frame ({got} of {len} bytes)"
        )));
    }
    Ok((wire::decode_frame(&body)?, len + 4))
}

/// Initial body buffer of [`read_frame_from`].
const FRAME_READ_CHUNK: usize = 64 * 1024;

/// Why a datagram was not handed to its connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DatagramRefused {
    /// The connection's datagram send buffer has no room for it.
    #[error("datagram send buffer full")]
    BufferFull,
    /// quinn refused it (connection lost, datagrams unsupported or too large).
    #[error("datagram refused: {0}")]
    Refused(String),
}

/// Queues `bytes` as one datagram on `conn`, or refuses it. quinn makes room in a full
/// send buffer by dropping the oldest queued datagrams without telling anyone; this
/// refuses the new one instead, so the caller can count it (nothing is dropped
/// silently). Two tasks racing for the last room can still make quinn drop one.
pub fn offer_datagram(conn: &Connection, bytes: Vec<u8>) -> Result<(), DatagramRefused> {
    if bytes.len() > conn.datagram_send_buffer_space() {
        return Err(DatagramRefused::BufferFull);
    }
    conn.send_datagram(bytes.into())
        .map_err(|e| DatagramRefused::Refused(e.to_string()))
}

/// Sends an oversized datagram on a new uni stream.
pub async fn send_reliable(conn: &Connection, d: &Datagram) -> Result<usize, TransportError> {
    send_reliable_bytes(conn, &wire::encode_reliable(d)).await
}

/// Sends an encoded reliable message (type byte included) on a new uni stream.
pub async fn send_reliable_bytes(conn: &Connection, bytes: &[u8]) -> Result<usize, TransportError> {
    let mut s = conn
        .open_uni()
        .await
        .map_err(|e| TransportError::Stream(e.to_string()))?;
    s.write_all(bytes)
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
    decode_reliable_stream(&bytes)
}

/// Decodes the complete contents of a reliable uni stream: the stream type byte
/// [`wire::STREAM_RELIABLE`], then the message.
pub fn decode_reliable_stream(bytes: &[u8]) -> Result<Datagram, TransportError> {
    match bytes.first() {
        Some(&wire::STREAM_RELIABLE) => Ok(wire::decode_reliable(&bytes[1..])?),
        Some(&t) => Err(WireError::StreamType(t).into()),
        None => Err(WireError::Empty.into()),
    }
}
