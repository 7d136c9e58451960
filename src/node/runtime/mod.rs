//! The tokio runtime around the sans-IO engine.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use quinn::Connection;
use tokio::sync::{broadcast, watch, Notify};

mod authorship;
mod events;
mod kv;
mod path_sampler;
mod peers;
mod pending;
mod queries;
mod seeds;
#[cfg(all(test, feature = "testing"))]
mod suspect_tests;
mod sync_stream;

pub use peers::QuicFrameStats;

use super::api::*;
use super::config::NodeConfig;
use super::member_events::MemberEvents;
use super::persist::{Committer, Durability, DurableStore, PersistStats};
use super::subscription::Subscription;
use super::watch::ChangeLog;
use super::NodeAuthority;
use crate::core::engine::{Engine, EngineStats, Event, Output, DOT_LEASE_BLOCK};
use crate::core::membership::Change;
use crate::core::proto::{Datagram, MemberInfo, MemberStatus};
use crate::core::{NodeId, Now};
use crate::transport::{self, QuicSettings, Transport, TransportError};
use crate::wire;

/// Transport-level counters of a running node.
#[derive(Debug, Default)]
pub struct RuntimeStats {
    /// Datagrams sent.
    pub datagrams_sent: AtomicU64,
    /// Datagram bytes sent.
    pub datagram_bytes_sent: AtomicU64,
    /// Datagrams received.
    pub datagrams_received: AtomicU64,
    /// Datagram bytes received.
    pub datagram_bytes_received: AtomicU64,
    /// Datagrams dropped because they could not be decoded.
    pub datagrams_malformed: AtomicU64,
    /// Datagrams dropped on send (no connection, send buffer full, ...).
    pub datagrams_dropped: AtomicU64,
    /// Datagrams that reached a connection but were never read because we read too
    /// slowly (quinn dropped them from its receive buffer); counted when the connection
    /// ends.
    pub datagrams_dropped_unread: AtomicU64,
    /// Oversized messages sent on uni streams.
    pub reliable_sent: AtomicU64,
    /// Oversized messages dropped: too many in flight, no connection, or past the
    /// deadline (anti-entropy repairs what they carried).
    pub reliable_dropped: AtomicU64,
    /// Anti-entropy exchanges the engine asked for while two of ours
    /// (`MAX_CONCURRENT_SYNCS`) ran: each waited for one to end (a later one took the
    /// place of one still waiting).
    pub syncs_waited: AtomicU64,
    /// Sync stream bytes sent.
    pub sync_bytes_sent: AtomicU64,
    /// Sync stream bytes received.
    pub sync_bytes_received: AtomicU64,
    /// Sync frames or streams refused as malformed.
    pub frames_malformed: AtomicU64,
    /// Connections refused after the handshake because the peer claimed another id.
    pub identity_mismatch: AtomicU64,
    /// Dial failures.
    pub dial_failures: AtomicU64,
    /// Durations of completed anti-entropy exchanges this node opened.
    pub sync_duration: crate::node::DurationHistogram,
    /// Sync streams refused because the peer already had `inbound_syncs_per_peer` open.
    pub syncs_refused: AtomicU64,
    /// Time sync streams spent waiting for bandwidth tokens (µs).
    pub sync_paced_us: AtomicU64,
    /// Connections to a suspected member kept because packets still arrived on them
    /// (`Node::drop_connection_if_quiet`).
    pub suspect_connections_kept: AtomicU64,
    /// Pooled connections replaced by a member's new one because they no longer answered
    /// (a restarted member's stale path; `Node::keep_the_live_one`).
    pub stale_connections_replaced: AtomicU64,
}

/// The bandwidth limiter of a running node (see [`Node::bandwidth`]).
#[derive(Debug, Clone)]
pub struct BandwidthView {
    /// Bytes admitted and sends refused, per traffic class.
    pub stats: crate::core::limiter::LimiterStats,
    /// Tokens in the global bucket now (bytes; 0 when unlimited).
    pub tokens: u64,
    /// The cap (bytes/s; 0 = unlimited).
    pub rate: u64,
    /// The bucket size (bytes).
    pub burst: u64,
    /// Back-off level (0 = none).
    pub backoff_level: u32,
    /// Packets QUIC declared lost per thousand sent, over the last ten seconds.
    pub path_loss_permille: u64,
}

fn inc(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

const MAX_CONCURRENT_SYNCS: usize = 2;
/// Sync streams peers may have open with us at once, all peers together (each peer
/// also has `inbound_syncs_per_peer`): a node that returns after a long absence is not
/// flooded with overlapping exchanges.
const MAX_INBOUND_SYNCS: usize = 16;
const MAX_RELIABLE_IN_FLIGHT: usize = 64;
const RELIABLE_TIMEOUT: Duration = Duration::from_secs(5);
const SYNC_TIMEOUT: Duration = Duration::from_secs(30);
/// With `sync` durability, how often entries from peers are committed (local writes
/// are committed before they return).
const PEER_COMMIT_PERIOD: Duration = Duration::from_millis(100);
const LEAVE_LINGER: Duration = Duration::from_millis(100);
const CLOSE_DRAIN: Duration = Duration::from_millis(250);
const SEED_DIAL_TIMEOUT: Duration = Duration::from_secs(3);

pub(crate) struct Inner {
    engine: Arc<Mutex<Engine>>,
    /// The data directory's committer (none: state in memory only).
    persist: Option<Committer>,
    start: Instant,
    cfg: NodeConfig,
    transport: Transport,
    conns: Mutex<HashMap<NodeId, Connection>>,
    dialing: Mutex<HashSet<NodeId>>,
    pending: Mutex<pending::PendingDatagrams>,
    wake: Notify,
    events: broadcast::Sender<Event>,
    shutdown: watch::Sender<bool>,
    syncs: AtomicUsize,
    /// The exchange the engine asked for last while [`MAX_CONCURRENT_SYNCS`] of ours
    /// ran: it starts when one of them ends (`Node::start_sync`).
    waiting_sync: Mutex<Option<(NodeId, String)>>,
    /// Sync streams peers have open with us, all peers together.
    inbound_syncs: Arc<std::sync::atomic::AtomicU32>,
    /// Permits for reliable sends in flight.
    reliable_slots: Arc<tokio::sync::Semaphore>,
    pub(crate) stats: RuntimeStats,
    advertise: String,
    reload: super::reload::ReloadState,
    /// Signs our writes and verifies peers' (none: `security.signed_writes` off).
    authority: Option<NodeAuthority>,
    /// Why each seed's last attempt failed (cleared when it answers).
    seed_errors: Mutex<HashMap<String, String>>,
    /// Every key-value change applied, indexed, for watches (`super::watch`).
    changes: Arc<ChangeLog>,
    /// Outputs a listing took from the engine (to log the changes it shows), left for
    /// the driver to carry out ahead of those it takes next.
    taken: Mutex<Vec<Output>>,
    /// The driver's emptied output buffer, kept for its next pump: a burst leaves
    /// thousands of outputs, and a fresh vector for each pump grew into fresh pages.
    spare: Mutex<Vec<Output>>,
    /// Peers a datagram to was refused by its full send buffer, told to the engine at
    /// the next pump (`Engine::datagram_refused`: it owes them an exchange).
    refused: Mutex<BTreeSet<NodeId>>,
    /// QUIC's lost packets and minimum RTTs, read about once a second for the engine's
    /// repair rounds and probe timeouts.
    paths: Mutex<path_sampler::PathSampler>,
    /// User events delivered here, for listing and watches (`super::events`).
    recent: super::events::RecentEvents,
    /// Commands run for delivered user events and queries (`[[handlers]]`), and the
    /// query handlers registered in Rust.
    handlers: super::handlers::Handlers,
    /// The handles of this node's pending queries.
    askers: super::queries::Askers,
}

/// A running gossamer node. Cheap to clone; every clone drives the same node.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn lock_engine(engine: &Mutex<Engine>) -> MutexGuard<'_, Engine> {
    // A panic while holding the lock is a bug; keep serving rather than cascade.
    engine.lock().unwrap_or_else(|p| p.into_inner())
}

impl Inner {
    fn now(&self) -> Now {
        Now::new(self.start.elapsed().as_micros() as u64, wall_ms())
    }

    fn engine(&self) -> MutexGuard<'_, Engine> {
        lock_engine(&self.engine)
    }

    fn is_shutdown(&self) -> bool {
        *self.shutdown.borrow()
    }
}

impl Node {
    /// Starts a node: loads certificates, binds QUIC, restores state from the
    /// data directory, and begins contacting seeds. The admin API is not part of the node:
    /// start it beside with [`crate::admin::AdminServer::start`].
    pub async fn start(cfg: NodeConfig) -> Result<Node, NodeError> {
        Self::start_inner(cfg, None).await
    }

    /// Starts a node on a caller-supplied UDP socket (for example a
    /// `crate::chaos::ChaosSocket`); `cfg.listen` is ignored.
    pub async fn start_with_socket(
        cfg: NodeConfig,
        socket: Arc<dyn quinn::AsyncUdpSocket>,
    ) -> Result<Node, NodeError> {
        Self::start_inner(cfg, Some(socket)).await
    }

    async fn start_inner(
        cfg: NodeConfig,
        socket: Option<Arc<dyn quinn::AsyncUdpSocket>>,
    ) -> Result<Node, NodeError> {
        cfg.validate().map_err(NodeError::Config)?;
        if let Some(d) = &cfg.data_dir {
            // Before anything else: a data directory we cannot write stops the start.
            super::persist::prepare_dir(d)?;
        }
        let (identity, trust) = crate::identity::load_paths(&cfg.cert_paths(), &cfg.node_id)?;
        let authority = cfg
            .security
            .signed_writes
            .then(|| NodeAuthority::new(&identity, &trust, wall_ms))
            .transpose()?;
        let opened = match &cfg.data_dir {
            Some(d) => Some(DurableStore::open(
                d,
                &cfg.node_id,
                identity.cluster.as_str(),
                wall_ms(),
            )?),
            None => None,
        };
        let bound = match socket {
            Some(sock) => Transport::bind_socket(sock, identity, trust, QuicSettings::default()),
            None => Transport::bind(cfg.listen, identity, trust, QuicSettings::default()),
        };
        let transport = bound.map_err(|e| match e {
            TransportError::Bind { addr, source } => NodeError::Listen { addr, source },
            TransportError::Identity(i) => NodeError::Identity(i),
            other => NodeError::Config(other.to_string()),
        })?;
        let local = transport.local_addr();
        let advertise = match &cfg.advertise {
            Some(a) => a.clone(),
            None if local.ip().is_unspecified() => {
                return Err(NodeError::Config(format!(
                    "advertise: listen address {local} is a wildcard; set advertise to an address other nodes can reach"
                )))
            }
            None => local.to_string(),
        };
        let (store, persisted) = match opened {
            Some((s, p)) => (Some(s), p),
            None => (None, None),
        };
        let me = MemberInfo {
            id: cfg.node_id.clone(),
            addr: advertise.clone(),
            dc: cfg.dc.clone(),
            zone: cfg.zone.clone(),
            tags: cfg.tags.clone(),
        };
        let start = Instant::now();
        let now = Now::new(0, wall_ms());
        let seed = cfg.rng_seed.unwrap_or_else(|| {
            let mut b = [0u8; 8];
            let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
            u64::from_le_bytes(b)
        });
        let mut engine = Engine::new(
            cfg.gossip.clone(),
            me,
            cfg.seeds.clone(),
            seed,
            now,
            persisted,
        );
        if let Some(a) = &authority {
            authorship::install(&mut engine, a);
        }
        let (engine, persist) = match store {
            Some(mut store) => {
                // The incarnation and the first dot lease are durable before the node
                // sends anything (see ARCHITECTURE.md, "Persistence").
                engine.enable_persistence(DOT_LEASE_BLOCK);
                let first = engine.take_changes();
                store.commit(&first)?;
                if let Some(end) = first.store.lease_end {
                    engine.lease_durable(end);
                }
                let engine = Arc::new(Mutex::new(engine));
                let period = match cfg.durability {
                    Durability::Sync => PEER_COMMIT_PERIOD,
                    Durability::Relaxed => Duration::from_millis(cfg.durability_interval_ms),
                };
                let c = Committer::start(store, Arc::downgrade(&engine), period)?;
                (engine, Some(c))
            }
            None => {
                tracing::info!(
                    node = %cfg.node_id,
                    "no data_dir: this node's state lives in memory only and is lost when it stops"
                );
                (Arc::new(Mutex::new(engine)), None)
            }
        };
        if let Some(a) = &authority {
            authorship::publish(&mut lock_engine(&engine), a, Now::new(0, wall_ms()));
        }
        let (events, _) = broadcast::channel(1024);
        let (shutdown, _) = watch::channel(false);
        let inner = Arc::new(Inner {
            engine,
            persist,
            start,
            transport,
            conns: Mutex::new(HashMap::new()),
            dialing: Mutex::new(HashSet::new()),
            pending: Mutex::new(pending::PendingDatagrams::for_quic(&QuicSettings::default())),
            wake: Notify::new(),
            events,
            shutdown,
            syncs: AtomicUsize::new(0),
            waiting_sync: Mutex::new(None),
            inbound_syncs: Default::default(),
            reliable_slots: Arc::new(tokio::sync::Semaphore::new(MAX_RELIABLE_IN_FLIGHT)),
            stats: RuntimeStats::default(),
            advertise,
            reload: Default::default(),
            authority,
            seed_errors: Mutex::new(HashMap::new()),
            changes: ChangeLog::new(cfg.watch.clone(), wall_ms()),
            taken: Mutex::new(Vec::new()),
            spare: Mutex::new(Vec::new()),
            refused: Mutex::new(BTreeSet::new()),
            paths: Mutex::new(path_sampler::PathSampler::default()),
            recent: super::events::RecentEvents::new(wall_ms()),
            handlers: super::handlers::Handlers::new(
                cfg.node_id.clone(),
                cfg.handlers.clone(),
                cfg.handler_concurrency,
            ),
            askers: Default::default(),
            cfg,
        });
        let node = Node { inner };
        tokio::spawn(node.clone().drive());
        tokio::spawn(node.clone().accept_loop());
        super::reload::start(&node);
        tracing::info!(node = %node.id(), listen = %local, "node started");
        Ok(node)
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.inner.cfg.node_id.clone()
    }

    /// The bound QUIC address.
    pub fn listen_addr(&self) -> SocketAddr {
        self.inner.transport.local_addr()
    }

    /// The address other nodes dial.
    pub fn advertise_addr(&self) -> &str {
        &self.inner.advertise
    }

    fn with_engine<R>(&self, f: impl FnOnce(&mut Engine, Now) -> R) -> R {
        let now = self.inner.now();
        let r = {
            let mut e = self.inner.engine();
            f(&mut e, now)
        };
        self.inner.wake.notify_one();
        r
    }

    /// Why writes are no longer made durable, if a commit failed.
    pub fn persist_failure(&self) -> Option<String> {
        self.inner
            .persist
            .as_ref()
            .and_then(Committer::failure)
            .map(|e| e.to_string())
    }

    /// The data directory's commit counters (none without a data directory).
    pub fn persist_stats(&self) -> Option<&PersistStats> {
        self.inner.persist.as_ref().map(Committer::stats)
    }

    fn check_running(&self) -> Result<(), NodeError> {
        if self.inner.is_shutdown() {
            Err(NodeError::Shutdown)
        } else {
            Ok(())
        }
    }

    /// Subscribes to key and membership changes and user events.
    pub fn subscribe(&self) -> Subscription {
        Subscription::new(self.inner.events.subscribe())
    }

    /// Membership changes from now on (see [`MemberEvents`]).
    pub fn member_events(&self) -> MemberEvents {
        MemberEvents::new(self.id(), self.inner.events.subscribe())
    }

    /// Members as seen by this node, ourselves first.
    pub fn members(&self) -> Vec<MemberView> {
        let now_us = self.inner.now().mono_us;
        let conns: HashMap<NodeId, f64> = self
            .inner
            .conns
            .lock()
            .map(|c| {
                c.iter()
                    .map(|(k, v)| (k.clone(), v.rtt().as_secs_f64() * 1000.0))
                    .collect()
            })
            .unwrap_or_default();
        let e = self.inner.engine();
        let mut out = Vec::new();
        let me = e.members().me();
        out.push(view(me, None, None, true));
        for m in e.members().others() {
            out.push(view(
                &m.state,
                m.last_heard_us.map(|t| now_us.saturating_sub(t) / 1000),
                conns
                    .get(&m.state.info.id)
                    .copied()
                    .or(m.rtt_us.map(|us| us as f64 / 1000.0)),
                false,
            ));
        }
        out
    }

    /// Summary of this node.
    pub fn status(&self) -> StatusView {
        // Before the engine's lock: `seed_status` takes it too.
        let seeds = self.seed_status();
        let e = self.inner.engine();
        let mut members = std::collections::BTreeMap::new();
        members.insert("alive".to_string(), 0usize);
        *members
            .entry(e.members().me().status.as_str().to_string())
            .or_insert(0) += 1;
        for m in e.members().others() {
            *members
                .entry(m.state.status.as_str().to_string())
                .or_insert(0) += 1;
        }
        // gossamer's own keys (writers' certificates) are not the application's.
        let own_keys = e
            .store()
            .scan_prefix(&crate::core::state::SYSTEM_PREFIX.to_string())
            .count();
        StatusView {
            node_id: self.id(),
            cluster: self.inner.transport.identity().cluster.to_string(),
            listen: self.inner.advertise.clone(),
            dc: e.members().me().info.dc.clone(),
            members,
            keys: e.store().live_len() - own_keys,
            tombstones: e.store().tombstone_len(),
            clock_ahead_ms: e.clock_skew().max_ahead_ms(),
            seeds,
            may_write: self.write_grant().map_or_else(
                || "every key, unsigned (security.signed_writes is off)".into(),
                |g| g.describe(),
            ),
            uptime_s: self.inner.start.elapsed().as_secs(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }

    /// How far ahead of our clock each writer's stamps arrived (beyond the drift bound).
    pub fn clock_skew(
        &self,
    ) -> std::collections::BTreeMap<NodeId, crate::core::engine::WriterSkew> {
        self.inner.engine().clock_skew().writers().clone()
    }

    /// Engine counters.
    pub fn engine_stats(&self) -> EngineStats {
        self.inner.engine().stats().clone()
    }

    /// Lifeguard local health score (0 = healthy).
    pub fn awareness(&self) -> u32 {
        self.inner.engine().awareness()
    }

    /// Transport counters.
    pub fn runtime_stats(&self) -> &RuntimeStats {
        &self.inner.stats
    }

    /// Handshake refusal counters.
    pub fn handshake_stats(&self) -> Arc<crate::identity::HandshakeStats> {
        self.inner.transport.handshakes().clone()
    }

    /// Test hook, not part of the API: sends `d` to member `to` as this node's own
    /// datagram over its authenticated connection, bypassing the engine, so that a test
    /// can play a valid node forging claims about others. False if `to` is unknown.
    #[doc(hidden)]
    pub fn send_raw_datagram(&self, to: &NodeId, d: &Datagram) -> bool {
        let addr = self
            .inner
            .engine()
            .members()
            .addr_of(to)
            .map(str::to_string);
        let Some(addr) = addr else { return false };
        self.send_datagram(to.clone(), addr, d);
        true
    }

    /// Leaves the cluster gracefully (peers learn it at once), then shuts down.
    pub async fn leave(&self) -> Result<(), NodeError> {
        self.check_running()?;
        self.with_engine(|e, now| e.leave(now));
        // Hand the announcement to every connection now, then linger briefly so the
        // datagrams leave before the endpoint closes (closing discards unsent ones).
        self.pump();
        tokio::time::sleep(LEAVE_LINGER).await;
        self.shutdown().await;
        Ok(())
    }

    /// Stops the node: commits what is left, closes connections and the endpoint.
    pub async fn shutdown(&self) {
        if self.inner.shutdown.send_replace(true) {
            return;
        }
        self.inner.changes.close();
        self.inner.askers.close();
        if self.inner.persist.is_some() {
            let inner = self.inner.clone();
            let _ = tokio::task::spawn_blocking(move || {
                if let Some(c) = &inner.persist {
                    c.close();
                }
            })
            .await;
        }
        self.inner.transport.close();
        self.inner.wake.notify_one();
        // CONNECTION_CLOSE leaves at once; waiting for the full drain (3 PTO) only
        // guards against its loss, so bound it.
        let _ =
            tokio::time::timeout(CLOSE_DRAIN, self.inner.transport.endpoint().wait_idle()).await;
    }

    // ----- driver -----

    async fn drive(self) {
        let mut stop = self.inner.shutdown.subscribe();
        loop {
            if self.inner.is_shutdown() {
                break;
            }
            let deadline = self.pump();
            let wait = Duration::from_micros(deadline.saturating_sub(self.inner.now().mono_us));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.inner.wake.notified() => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// Runs due timers and carries out every pending output; returns the next deadline.
    fn pump(&self) -> u64 {
        // When timers are due, and at most once a second, hand what QUIC measured on the
        // connections to the engine first: loss (repair rounds) and minimum RTTs (probe
        // timeouts adapt to them; `path_sampler.rs`). Connections are read before the
        // engine is locked.
        let now_us = self.inner.now().mono_us;
        let due = self.inner.engine().poll_timeout() <= now_us;
        let sample = if due {
            self.inner.conns.lock().ok().and_then(|c| {
                self.inner
                    .paths
                    .lock()
                    .ok()
                    .and_then(|mut sampler| sampler.sample(now_us, &c))
            })
        } else {
            None
        };
        let refused = self
            .inner
            .refused
            .lock()
            .map(|mut r| std::mem::take(&mut *r))
            .unwrap_or_default();
        let (mut outputs, deadline) = {
            let now = self.inner.now();
            let mut e = self.inner.engine();
            for peer in &refused {
                e.datagram_refused(now, peer);
            }
            if let Some(paths) = &sample {
                e.observe_path_loss(now.mono_us, paths.sent, paths.lost);
                for (id, rtt_us) in &paths.min_rtts {
                    e.observe_rtt(id, *rtt_us);
                }
            }
            if e.poll_timeout() <= now.mono_us {
                e.handle_timeout(now);
            }
            (self.inner.take_outputs(&mut e), e.poll_timeout())
        };
        for o in outputs.drain(..) {
            self.dispatch(o);
        }
        self.inner.give_back(outputs);
        deadline
    }

    fn dispatch(&self, o: Output) {
        match o {
            Output::Datagram { to, addr, datagram } => self.send_datagram(to, addr, &datagram),
            Output::Reliable { to, addr, datagram } => {
                let node = self.clone();
                self.spawn_reliable(async move {
                    let conn = node.connection(&to, &addr).await?;
                    transport::send_reliable(&conn, &datagram).await
                });
            }
            Output::Sync { with, addr } => self.start_sync(with, addr),
            Output::Contact { seed, addr } => {
                let node = self.clone();
                tokio::spawn(async move {
                    let answered = node.contact_seed(&addr).await;
                    node.seed_answered(seed, &addr, answered);
                });
            }
            Output::Event(ev) => {
                if self.on_query_event(&ev) {
                    return;
                }
                if let Event::ClockAhead { writer, ahead_ms } = &ev {
                    tracing::warn!(
                        writer = %writer,
                        ahead_ms,
                        "stamps beyond the clock drift bound (limits.max_clock_drift_ms) move our clock only up to it; that node's clock is wrong"
                    );
                }
                if let Event::Member(Change::Updated { new, .. }) = &ev {
                    self.on_member_status(&new.info.id, new.status);
                }
                if let Event::User(e) = &ev {
                    // Into the recent ring and to its watchers, to the handlers, then to
                    // subscribers.
                    self.inner.recent.push(e);
                    self.inner.handlers.offer(e);
                }
                // gossamer's own keys are not the application's business.
                let own = matches!(&ev, Event::Kv { entry, .. } if crate::core::state::is_system_key(&entry.key));
                if !own {
                    let _ = self.inner.events.send(ev);
                }
            }
        }
    }

    /// Replaces this node's datacenter, zone and tags; the change is gossiped (with a
    /// higher incarnation) like any membership change.
    pub fn update_meta(
        &self,
        dc: &str,
        zone: &str,
        tags: std::collections::BTreeMap<String, String>,
    ) -> Result<(), NodeError> {
        self.check_running()?;
        let r = self.with_engine(|e, _| {
            let mut info = MemberInfo::clone(&e.members().me().info);
            info.dc = dc.to_string();
            info.zone = zone.to_string();
            info.tags = tags;
            e.update_meta(info)
        });
        r.map_err(NodeError::Config)
    }
}

fn view(
    s: &crate::core::proto::MemberState,
    heard: Option<u64>,
    rtt: Option<f64>,
    is_self: bool,
) -> MemberView {
    MemberView {
        last_heard_ms_ago: heard,
        rtt_ms: rtt,
        ..MemberView::of(s, is_self)
    }
}

impl Node {
    /// Members currently alive (self included).
    pub fn alive_count(&self) -> usize {
        let e = self.inner.engine();
        1 + e
            .members()
            .others()
            .filter(|m| m.state.status == MemberStatus::Alive)
            .count()
    }
}

impl Node {
    /// Store counters.
    pub fn with_store_stats(&self) -> crate::core::state::StoreStats {
        self.inner.engine().store().stats().clone()
    }
}

impl Node {
    /// The transport (for `super::reload`).
    pub(crate) fn transport(&self) -> &Transport {
        &self.inner.transport
    }

    /// The configuration the node started with.
    pub fn config(&self) -> &NodeConfig {
        &self.inner.cfg
    }

    /// Certificate reload bookkeeping (for `super::reload`).
    pub(crate) fn reload_state(&self) -> &super::reload::ReloadState {
        &self.inner.reload
    }

    /// A receiver that turns true when the node shuts down.
    pub fn stop_signal(&self) -> watch::Receiver<bool> {
        self.inner.shutdown.subscribe()
    }
}

impl Node {
    /// Broadcast queue counters and the number of broadcasts waiting.
    pub fn queue_stats(&self) -> (crate::core::dissemination::QueueStats, usize) {
        let e = self.inner.engine();
        (e.queue().stats().clone(), e.queue().len())
    }

    /// The bandwidth limiter as it stands: counters, tokens now, cap, back-off level.
    pub fn bandwidth(&self) -> BandwidthView {
        let now = self.inner.now();
        let e = self.inner.engine();
        let l = e.limiter();
        BandwidthView {
            stats: l.stats().clone(),
            tokens: if l.is_limited() {
                l.tokens(now.mono_us)
            } else {
                0
            },
            rate: l.rate(),
            burst: l.burst(),
            backoff_level: e.backoff_level(),
            path_loss_permille: e.path_loss_permille(),
        }
    }
}
