//! A local cluster of in-process nodes on 127.0.0.1 with generated certificates: what
//! `gossamer demo`, the integration tests and the benchmarks build on.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::admin::{AdminServer, AdminStartError};
use crate::core::{ClusterName, NodeId};
use crate::identity;
use crate::node::{Durability, Node, NodeConfig, NodeError};
use crate::transport::{QuicSettings, Transport, TransportError};

/// Writes a CA for `cluster` and certificates for `nodes` into `dir`.
pub fn generate_certs(dir: &Path, cluster: &str, nodes: &[NodeId]) -> Result<(), NodeError> {
    let cluster = ClusterName::new(cluster).map_err(|e| NodeError::Config(e.to_string()))?;
    identity::write_ca(dir, &cluster, identity::DEFAULT_CA_DAYS, true)?;
    for n in nodes {
        identity::write_node(
            dir,
            n,
            &[IpAddr::V4(Ipv4Addr::LOCALHOST)],
            &["localhost".to_string()],
            None,
            identity::DEFAULT_NODE_DAYS,
        )?;
    }
    Ok(())
}

/// The id of the `i`-th (1-based) node of a local cluster: `n1`, `n2`, ...
pub fn node_name(i: usize) -> NodeId {
    NodeId::new(&format!("n{i}")).expect("valid generated id")
}

/// In-process nodes sharing one temporary certificate folder.
pub struct LocalCluster {
    dir: tempfile::TempDir,
    /// The running nodes, in start order.
    pub nodes: Vec<Node>,
    gossip: crate::core::Config,
    /// Durability of each node's data directory (`n<i>/` under the temporary folder),
    /// or none: state in memory only.
    durable: Option<Durability>,
    /// Whether each node serves the admin API on an ephemeral loopback port.
    admin_api: bool,
    /// The admin API of each node that serves one, by node id (the latest start's).
    admins: BTreeMap<NodeId, AdminServer>,
}

impl LocalCluster {
    /// Generates certificates for `n` nodes (plus `spare` more for nodes added later)
    /// and starts `n` nodes on 127.0.0.1; every node after the first uses the first as
    /// its seed.
    pub async fn start(
        n: usize,
        spare: usize,
        gossip: crate::core::Config,
    ) -> Result<Self, NodeError> {
        Self::start_durable(n, spare, gossip, None, false).await
    }

    /// Like [`LocalCluster::start`], and with `durable`, every node keeps its state in
    /// a data directory of its own under the temporary folder, with that durability;
    /// with `admin_api`, each node serves its admin API on an ephemeral loopback port
    /// ([`LocalCluster::admin_addr`]).
    pub async fn start_durable(
        n: usize,
        spare: usize,
        gossip: crate::core::Config,
        durable: Option<Durability>,
        admin_api: bool,
    ) -> Result<Self, NodeError> {
        let dir = tempfile::Builder::new()
            .prefix("gossamer-certs-")
            .tempdir()
            .map_err(|source| NodeError::DataDir {
                path: PathBuf::from("temporary folder"),
                source,
            })?;
        let ids: Vec<NodeId> = (1..=n + spare).map(node_name).collect();
        generate_certs(dir.path(), "local", &ids)?;
        let mut c = Self {
            dir,
            nodes: Vec::new(),
            gossip,
            durable,
            admin_api,
            admins: BTreeMap::new(),
        };
        for i in 1..=n {
            let seeds = c.seed_addrs();
            c.add_node(i, seeds).await?;
        }
        Ok(c)
    }

    /// The certificate folder.
    pub fn certs_dir(&self) -> &Path {
        self.dir.path()
    }

    /// A QUIC endpoint on 127.0.0.1 holding `id`'s certificate from this cluster's CA
    /// but no node: for tests that speak the protocol by hand (a spare's certificate
    /// makes a valid member that can lie).
    pub fn endpoint_as(&self, id: &NodeId) -> Result<Transport, TransportError> {
        let (cert, trust) = identity::load(self.certs_dir(), id)?;
        let any = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
        Transport::bind(any, cert, trust, QuicSettings::default())
    }

    /// The first node's address, as a seed list (empty before it starts).
    pub fn seed_addrs(&self) -> Vec<String> {
        self.nodes
            .first()
            .map(|n| vec![n.advertise_addr().to_string()])
            .unwrap_or_default()
    }

    /// A configuration for node `n<i>` on an ephemeral loopback port.
    pub fn config(&self, i: usize, seeds: Vec<String>) -> NodeConfig {
        let mut cfg = NodeConfig::new(
            node_name(i),
            SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            self.dir.path().to_path_buf(),
        );
        cfg.seeds = seeds;
        cfg.gossip = self.gossip.clone();
        cfg.rng_seed = Some(i as u64);
        // Every in-process node dials from 127.0.0.1: a per-address handshake limit would
        // throttle the whole cluster as if it were one peer.
        cfg.security.handshakes_per_sec_per_ip = 0.0;
        if self.admin_api {
            cfg.admin = Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
        }
        if let Some(d) = self.durable {
            cfg.data_dir = Some(self.dir.path().join(format!("data-n{i}")));
            cfg.durability = d;
        }
        cfg
    }

    /// Starts node `n<i>` with `seeds` and adds it to the cluster.
    pub async fn add_node(&mut self, i: usize, seeds: Vec<String>) -> Result<Node, NodeError> {
        let cfg = self.config(i, seeds);
        self.start_with(cfg).await
    }

    /// Starts a node from a full configuration and adds it to the cluster.
    pub async fn start_with(&mut self, cfg: NodeConfig) -> Result<Node, NodeError> {
        let node = Node::start(cfg).await?;
        self.adopt(node).await
    }

    /// Starts the admin API the node's configuration asks for, and adds the node.
    async fn adopt(&mut self, node: Node) -> Result<Node, NodeError> {
        match AdminServer::start(&node).await {
            Ok(Some(admin)) => {
                self.admins.insert(node.id(), admin);
            }
            Ok(None) => {}
            Err(AdminStartError::Listen { addr, source }) => {
                node.shutdown().await;
                return Err(NodeError::Listen { addr, source });
            }
        }
        self.nodes.push(node.clone());
        Ok(node)
    }

    /// Where `node`'s admin API listens (`None` unless the cluster serves admin APIs).
    pub fn admin_addr(&self, node: &Node) -> Option<SocketAddr> {
        self.admins.get(&node.id()).map(AdminServer::addr)
    }

    /// True once every node sees every other node alive.
    pub fn fully_joined(&self) -> bool {
        let n = self.nodes.len();
        self.nodes.iter().all(|x| x.alive_count() == n)
    }

    /// True once every node can verify every node's writes (each holds every writer's
    /// certificates): a write load started earlier has writes refused and refetched.
    pub fn writers_known(&self) -> bool {
        self.nodes
            .iter()
            .all(|n| self.nodes.iter().all(|w| n.can_verify(&w.id())))
    }

    /// True once every node holds the same value for `key` (`None`: absent everywhere).
    pub fn agree_on(&self, key: &str, value: Option<&[u8]>) -> bool {
        self.nodes
            .iter()
            .all(|n| n.get(key).map(|e| e.value).as_deref() == value)
    }

    /// Starts a node on a caller-supplied socket and adds it to the cluster.
    pub async fn start_with_socket(
        &mut self,
        cfg: NodeConfig,
        socket: std::sync::Arc<dyn quinn::AsyncUdpSocket>,
    ) -> Result<Node, NodeError> {
        let node = Node::start_with_socket(cfg, socket).await?;
        self.adopt(node).await
    }

    /// Shuts every node down.
    pub async fn shutdown(&self) {
        for n in &self.nodes {
            n.shutdown().await;
        }
    }
}

/// Polls `cond` every few milliseconds until it holds or `timeout` passes; returns
/// whether it held, and how long it took.
pub async fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> (bool, Duration) {
    let start = Instant::now();
    loop {
        if cond() {
            return (true, start.elapsed());
        }
        if start.elapsed() > timeout {
            return (false, start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Like [`wait_for`] with an async condition.
pub async fn wait_for_async<F, Fut>(timeout: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if cond().await {
            return true;
        }
        if start.elapsed() > timeout {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
