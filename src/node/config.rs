//! Node configuration: flags and TOML share these fields.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::core::NodeId;

/// Everything a node needs to start.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// This node's id; must match the SAN of its certificate.
    pub node_id: NodeId,
    /// QUIC listen address.
    pub listen: SocketAddr,
    /// Address other nodes should dial (defaults to `listen`, which must then not be a
    /// wildcard address).
    #[serde(default)]
    pub advertise: Option<String>,
    /// Loopback HTTP admin address (none: no admin API).
    #[serde(default)]
    pub admin: Option<SocketAddr>,
    /// Bearer token the admin API requires. Off loopback, a token or `admin_tls` is
    /// mandatory.
    #[serde(default)]
    pub admin_token: Option<String>,
    /// Serve the admin API over HTTPS with the node's certificate, requiring a client
    /// certificate from the fleet's CA: `operators` (certificates from `gossamer certs
    /// issue --client`) or `operators-and-nodes`. None: plain HTTP.
    #[serde(default)]
    pub admin_tls: Option<crate::identity::AdminClients>,
    /// Folder with `ca.pem`, `<node-id>.pem` and `<node-id>.key` (and the optional
    /// `crl.pem`, `revoked.txt`).
    pub certs: PathBuf,
    /// The node's certificate (chain) instead of `<certs>/<node-id>.pem`: a file name in
    /// `certs` or an absolute path, e.g. `tls.crt` of a Kubernetes TLS volume.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// The node's private key instead of `<certs>/<node-id>.key` (e.g. `tls.key`).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// The trust bundle instead of `<certs>/ca.pem` (e.g. `ca.crt`).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Seed addresses (`host:port`), contacted until each is a live member.
    #[serde(default)]
    pub seeds: Vec<String>,
    /// Datacenter.
    #[serde(default = "default_dc")]
    pub dc: String,
    /// Zone.
    #[serde(default)]
    pub zone: String,
    /// Free-form member tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Where state and incarnation survive restarts (none: in memory only).
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    /// When a write is acknowledged with a data directory: `sync` (after its commit is
    /// on disk, the default) or `relaxed` (at once; committed every
    /// `durability_interval_ms`).
    #[serde(default)]
    pub durability: super::persist::Durability,
    /// Relaxed durability: the longest time between commits (ms), so the most a
    /// whole-cluster crash can lose.
    #[serde(default = "default_durability_interval")]
    pub durability_interval_ms: u64,
    /// Protocol tuning.
    #[serde(default)]
    pub gossip: crate::core::Config,
    /// Seed for the protocol's random choices (default: from the OS).
    #[serde(default)]
    pub rng_seed: Option<u64>,
    /// Certificate reload, expiry warnings and admission limits.
    #[serde(default)]
    pub security: super::SecurityConfig,
    /// The change log and its watches (`[watch]`).
    #[serde(default)]
    pub watch: super::WatchConfig,
    /// Commands run for delivered user events (`[[handlers]]`; none by default).
    #[serde(default)]
    pub handlers: Vec<super::handlers::HandlerConfig>,
    /// Handler commands running at once, at most; an event finding every slot taken is
    /// not run (and is counted).
    #[serde(default = "default_handler_concurrency")]
    pub handler_concurrency: usize,
}

fn default_handler_concurrency() -> usize {
    super::handlers::DEFAULT_HANDLER_CONCURRENCY
}

fn default_durability_interval() -> u64 {
    100
}

fn default_dc() -> String {
    "default".to_string()
}

impl NodeConfig {
    /// A configuration with defaults for everything optional.
    pub fn new(node_id: NodeId, listen: SocketAddr, certs: PathBuf) -> Self {
        Self {
            node_id,
            listen,
            advertise: None,
            admin: None,
            admin_token: None,
            admin_tls: None,
            certs,
            cert_file: None,
            key_file: None,
            ca_file: None,
            seeds: Vec::new(),
            dc: default_dc(),
            zone: String::new(),
            tags: BTreeMap::new(),
            data_dir: None,
            durability: Default::default(),
            durability_interval_ms: default_durability_interval(),
            gossip: crate::core::Config::default(),
            rng_seed: None,
            security: super::SecurityConfig::default(),
            watch: super::WatchConfig::default(),
            handlers: Vec::new(),
            handler_concurrency: default_handler_concurrency(),
        }
    }

    /// The certificate files this node reads (and watches for changes).
    pub fn cert_paths(&self) -> crate::identity::CertPaths {
        crate::identity::CertPaths::new(&self.certs, &self.node_id).with_files(
            &self.certs,
            self.cert_file.as_deref(),
            self.key_file.as_deref(),
            self.ca_file.as_deref(),
        )
    }

    /// Checks values that serde cannot; the error names the field and the fix.
    pub fn validate(&self) -> Result<(), String> {
        self.gossip.validate().map_err(|e| format!("gossip.{e}"))?;
        self.security.validate()?;
        self.watch.validate()?;
        for (i, h) in self.handlers.iter().enumerate() {
            h.validate(i)?;
        }
        if self.handler_concurrency == 0 || self.handler_concurrency > 64 {
            return Err(format!(
                "handler_concurrency must be 1 to 64 (got {})",
                self.handler_concurrency
            ));
        }
        if self
            .admin_token
            .as_deref()
            .is_some_and(|t| t.trim().is_empty())
        {
            return Err(
                "admin_token: an empty token would let any `Authorization: Bearer ` in; set a \
                 long random string (e.g. `openssl rand -hex 32`) or remove the setting"
                    .into(),
            );
        }
        if let Some(admin) = self.admin {
            if !admin.ip().is_loopback() && self.admin_token.is_none() && self.admin_tls.is_none() {
                return Err(format!(
                    "admin: {admin} is not a loopback address; set admin_tls = \"operators\" (or --admin-tls operators) to require operator certificates, or admin_token (--admin-token), or bind to 127.0.0.1"
                ));
            }
        }
        if let Some(a) = &self.advertise {
            if !a.contains(':') {
                return Err(format!("advertise: {a:?} must be host:port"));
            }
        }
        for s in &self.seeds {
            if s.rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok())
                .is_none()
            {
                return Err(format!("seeds: {s:?} must be host:port"));
            }
        }
        if !(1..=60_000).contains(&self.durability_interval_ms) {
            return Err(format!(
                "durability_interval_ms: {} is out of range; use 1 to 60000 (the most a whole-cluster crash may lose in relaxed mode)",
                self.durability_interval_ms
            ));
        }
        if self.dc.is_empty() || self.dc.len() > 64 {
            return Err("dc: must be 1 to 64 characters".into());
        }
        Ok(())
    }
}
