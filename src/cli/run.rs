//! `gossamer run`: a node from flags and/or a TOML configuration file.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use gossamer::admin::AdminServer;
use gossamer::core::NodeId;
use gossamer::identity::AdminClients;
use gossamer::node::{Node, NodeConfig, NodeError};

use super::UsageError;

/// Flags of `gossamer run`. Flags override the values of `--config`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// TOML configuration file with the same settings (see ARCHITECTURE.md).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// This node's id (must match its certificate).
    #[arg(long, value_name = "ID")]
    pub node_id: Option<String>,
    /// QUIC listen address, e.g. 127.0.0.1:7946.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Address other nodes dial, if different from --listen.
    #[arg(long, value_name = "HOST:PORT")]
    pub advertise: Option<String>,
    /// Loopback HTTP admin address, e.g. 127.0.0.1:7947.
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<SocketAddr>,
    /// Bearer token for the admin API (off loopback, this or --admin-tls is required).
    #[arg(long, value_name = "TOKEN")]
    pub admin_token: Option<String>,
    /// Serve the admin API over HTTPS, requiring client certificates from the fleet CA:
    /// operators (from `gossamer certs issue --client`) or operators-and-nodes.
    #[arg(long, value_name = "operators|operators-and-nodes")]
    pub admin_tls: Option<AdminClients>,
    /// Folder with ca.pem, ID.pem and ID.key.
    #[arg(long, value_name = "DIR")]
    pub certs: Option<PathBuf>,
    /// The node's certificate instead of ID.pem: a file in --certs or an absolute path
    /// (tls.crt of a Kubernetes TLS volume).
    #[arg(long, value_name = "FILE")]
    pub cert_file: Option<PathBuf>,
    /// The node's private key instead of ID.key (tls.key).
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// The trust bundle instead of ca.pem (ca.crt).
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Seed address (repeatable).
    #[arg(long = "seed", value_name = "HOST:PORT")]
    pub seeds: Vec<String>,
    /// Datacenter name.
    #[arg(long, value_name = "NAME")]
    pub dc: Option<String>,
    /// Zone name.
    #[arg(long, value_name = "NAME")]
    pub zone: Option<String>,
    /// Member tag KEY=VALUE (repeatable).
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    pub tags: Vec<String>,
    /// Folder where state and incarnation survive restarts.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// With --data-dir: sync (a write returns once it is on disk; the default) or
    /// relaxed (committed every --durability-interval-ms).
    #[arg(long, value_name = "sync|relaxed")]
    pub durability: Option<String>,
    /// Relaxed durability: longest time between commits (ms; default 100).
    #[arg(long, value_name = "MS")]
    pub durability_interval_ms: Option<u64>,
    /// Timing profile: lan (default) or wan; `[gossip]` keys of --config override it.
    #[arg(long, value_name = "lan|wan")]
    pub profile: Option<String>,
    /// Only check the configuration: print a summary and exit 0, or name the bad field and
    /// exit 2. Reads no certificate and binds no port.
    #[arg(long)]
    pub check: bool,
}

/// The protocol configuration: the profile's defaults with the file's `[gossip]` keys
/// on top.
fn gossip_config(
    profile: Option<&str>,
    overrides: toml::Table,
) -> Result<gossamer::core::Config, UsageError> {
    let base = match profile.unwrap_or("lan") {
        "lan" => gossamer::core::Config::lan(),
        "wan" => gossamer::core::Config::wan(),
        other => {
            return Err(UsageError(format!(
                "profile {other:?}: expected \"lan\" or \"wan\""
            )))
        }
    };
    let mut table = toml::Table::try_from(&base)
        .map_err(|e| UsageError(format!("gossip: cannot represent the profile: {e}")))?;
    for (k, v) in overrides {
        table.insert(k, v);
    }
    table
        .try_into()
        .map_err(|e| UsageError(format!("[gossip]: {e}")))
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    node_id: Option<String>,
    listen: Option<SocketAddr>,
    advertise: Option<String>,
    admin: Option<SocketAddr>,
    admin_token: Option<String>,
    admin_tls: Option<AdminClients>,
    certs: Option<PathBuf>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    #[serde(default)]
    seeds: Vec<String>,
    dc: Option<String>,
    zone: Option<String>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    data_dir: Option<PathBuf>,
    durability: Option<String>,
    durability_interval_ms: Option<u64>,
    /// "lan" (default) or "wan": the base that `[gossip]` keys override.
    profile: Option<String>,
    #[serde(default)]
    gossip: toml::Table,
    rng_seed: Option<u64>,
    #[serde(default)]
    security: gossamer::node::SecurityConfig,
    #[serde(default)]
    watch: gossamer::node::WatchConfig,
    #[serde(default)]
    handlers: Vec<gossamer::node::handlers::HandlerConfig>,
    handler_concurrency: Option<usize>,
}

/// Builds the node configuration from the file (if any) and the flags.
pub fn build_config(args: RunArgs) -> Result<NodeConfig, UsageError> {
    let file = match &args.config {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| UsageError(format!("--config {}: cannot read: {e}", p.display())))?;
            toml::from_str::<FileConfig>(&text)
                .map_err(|e| UsageError(format!("--config {}: {e}", p.display())))?
        }
        None => FileConfig::default(),
    };
    let node_id = args.node_id.or(file.node_id).ok_or_else(|| {
        UsageError("node id missing: pass --node-id ID or set node_id in the config file".into())
    })?;
    let node_id = NodeId::new(&node_id).map_err(|e| UsageError(format!("--node-id: {e}")))?;
    let listen = args.listen.or(file.listen).ok_or_else(|| {
        UsageError(
            "listen address missing: pass --listen IP:PORT or set listen in the config file".into(),
        )
    })?;
    let certs = args.certs.or(file.certs).ok_or_else(|| {
        UsageError(
            "certificate folder missing: pass --certs DIR or set certs in the config file".into(),
        )
    })?;
    let mut tags = file.tags;
    for t in &args.tags {
        let (k, v) = t
            .split_once('=')
            .ok_or_else(|| UsageError(format!("--tag {t:?}: expected KEY=VALUE")))?;
        tags.insert(k.to_string(), v.to_string());
    }
    let mut seeds = file.seeds;
    seeds.extend(args.seeds);
    let durability = match (&args.durability, &file.durability) {
        (Some(d), _) => gossamer::node::Durability::parse("--durability", d).map_err(UsageError)?,
        (None, Some(d)) => {
            gossamer::node::Durability::parse("durability", d).map_err(UsageError)?
        }
        (None, None) => Default::default(),
    };
    let cfg = NodeConfig {
        node_id,
        listen,
        advertise: args.advertise.or(file.advertise),
        admin: args.admin.or(file.admin),
        admin_token: args.admin_token.or(file.admin_token),
        admin_tls: args.admin_tls.or(file.admin_tls),
        certs,
        cert_file: args.cert_file.or(file.cert_file),
        key_file: args.key_file.or(file.key_file),
        ca_file: args.ca_file.or(file.ca_file),
        seeds,
        dc: args.dc.or(file.dc).unwrap_or_else(|| "default".into()),
        zone: args.zone.or(file.zone).unwrap_or_default(),
        tags,
        data_dir: args.data_dir.or(file.data_dir),
        durability,
        durability_interval_ms: args
            .durability_interval_ms
            .or(file.durability_interval_ms)
            .unwrap_or(100),
        gossip: gossip_config(
            args.profile.as_deref().or(file.profile.as_deref()),
            file.gossip,
        )?,
        rng_seed: file.rng_seed,
        security: file.security,
        watch: file.watch,
        handlers: file.handlers,
        handler_concurrency: file
            .handler_concurrency
            .unwrap_or(gossamer::node::handlers::DEFAULT_HANDLER_CONCURRENCY),
    };
    cfg.validate().map_err(UsageError)?;
    Ok(cfg)
}

/// What `run --check` prints for a valid configuration.
fn check_summary(cfg: &NodeConfig) -> String {
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".to_string());
    let list = |v: Vec<String>| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.join(", ")
        }
    };
    let certs = cfg.certs.display();
    let id = &cfg.node_id;
    let certs_note = if cfg.certs.is_dir() {
        ""
    } else {
        " (not found here; not needed for --check)"
    };
    let g = &cfg.gossip;
    let lines = [
        ("node", id.to_string()),
        ("dc", cfg.dc.clone()),
        (
            "zone",
            if cfg.zone.is_empty() {
                "-".into()
            } else {
                cfg.zone.clone()
            },
        ),
        (
            "tags",
            list(cfg.tags.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        ),
        ("listen", cfg.listen.to_string()),
        ("advertise", opt(cfg.advertise.clone())),
        (
            "admin",
            match (&cfg.admin, &cfg.admin_token, cfg.admin_tls) {
                (None, _, _) => "-".into(),
                (Some(a), token, tls) => {
                    let scheme = if tls.is_some() { "https" } else { "http" };
                    let mut needs = Vec::new();
                    match tls {
                        Some(AdminClients::Operators) => needs.push("operator certificate"),
                        Some(AdminClients::OperatorsAndNodes) => {
                            needs.push("operator or node certificate")
                        }
                        None => {}
                    }
                    if token.is_some() {
                        needs.push("token");
                    }
                    if needs.is_empty() {
                        format!("{scheme}://{a}")
                    } else {
                        format!("{scheme}://{a} ({} required)", needs.join(" + "))
                    }
                }
            },
        ),
        (
            "certs",
            if (&cfg.cert_file, &cfg.key_file, &cfg.ca_file) == (&None, &None, &None) {
                format!("{certs}/{{ca.pem,{id}.pem,{id}.key}}{certs_note}")
            } else {
                let p = cfg.cert_paths();
                format!(
                    "{} (key {}, trust {}){certs_note}",
                    p.cert.display(),
                    p.key.display(),
                    p.ca.display()
                )
            },
        ),
        ("seeds", list(cfg.seeds.clone())),
        (
            "data dir",
            opt(cfg.data_dir.as_ref().map(|d| d.display().to_string())),
        ),
        (
            "durable",
            match (&cfg.data_dir, cfg.durability) {
                (None, _) => "- (no data dir: state in memory only)".to_string(),
                (Some(_), gossamer::node::Durability::Sync) => "sync".to_string(),
                (Some(_), d) => format!("{} ({} ms)", d.as_str(), cfg.durability_interval_ms),
            },
        ),
        (
            "timing",
            format!(
                "gossip {} ms, sync {} ms, probe {} ms (timeout {} ms), fanout {}",
                g.gossip_interval_ms,
                g.sync_interval_ms,
                g.probe_interval_ms,
                g.probe_timeout_ms,
                g.fanout
            ),
        ),
    ];
    let mut out = String::from("configuration OK\n");
    for (k, v) in lines {
        out.push_str(&format!("  {:<10} {v}\n", format!("{k}:")));
    }
    out
}

/// Checks what only `Node::start` would otherwise find out about the addresses.
fn check_addresses(cfg: &NodeConfig) -> Result<(), UsageError> {
    if cfg.listen.ip().is_unspecified() && cfg.advertise.is_none() {
        return Err(UsageError(format!(
            "advertise: listen address {} is a wildcard; set advertise (or --advertise) to an address other nodes can reach",
            cfg.listen
        )));
    }
    Ok(())
}

/// Runs a node until SIGINT or SIGTERM, then leaves the cluster gracefully. With
/// `--check`, only validates the configuration and prints a summary.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let check = args.check;
    let cfg = build_config(args)?;
    if check {
        check_addresses(&cfg)?;
        print!("{}", check_summary(&cfg));
        return Ok(());
    }
    let node = match Node::start(cfg).await {
        Ok(n) => n,
        Err(
            e @ (NodeError::Config(_)
            | NodeError::Identity(_)
            | NodeError::Listen { .. }
            | NodeError::DataDir { .. }
            | NodeError::Store(_)),
        ) => return Err(UsageError(e.to_string()).into()),
        Err(e) => return Err(e).context("starting node"),
    };
    // The binary wires the admin API to the node; the node knows nothing of it.
    let admin = match AdminServer::start(&node).await {
        Ok(a) => a,
        Err(e) => {
            node.shutdown().await;
            return Err(UsageError(e.to_string()).into());
        }
    };
    eprintln!(
        "gossamer node {} listening on {} (QUIC)",
        node.id(),
        node.listen_addr()
    );
    if let Some(a) = admin {
        eprintln!("admin API on {}", a.addr());
    }
    wait_for_signal().await;
    eprintln!("leaving the cluster");
    node.leave().await.ok();
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct TestCli {
        #[command(flatten)]
        run: RunArgs,
    }

    fn args(argv: &[&str]) -> RunArgs {
        TestCli::try_parse_from(std::iter::once("run").chain(argv.iter().copied()))
            .unwrap()
            .run
    }

    fn config_file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn run_check_summarises_a_valid_file() {
        let f = config_file(
            r#"
node_id = "fra-1"
listen = "0.0.0.0:7946"
advertise = "fra-1.example.net:7946"
admin = "127.0.0.1:7947"
certs = "/etc/gossamer/certs"
seeds = ["fra-2.example.net:7946", "ams-1.example.net:7946"]
dc = "eu-central"
zone = "a"
profile = "wan"
tags = { role = "edge" }

[gossip]
fanout = 4
"#,
        );
        let path = f.path().to_str().unwrap();
        let a = args(&["--config", path, "--check", "--zone", "b"]);
        assert!(a.check);
        let cfg = build_config(a).unwrap();
        check_addresses(&cfg).unwrap();
        let text = check_summary(&cfg);
        assert!(text.starts_with("configuration OK\n"), "{text}");
        assert!(text.contains("  node:      fra-1\n"), "{text}");
        assert!(text.contains("  dc:        eu-central\n"), "{text}");
        // Flags override the file.
        assert!(text.contains("  zone:      b\n"), "{text}");
        assert!(text.contains("  tags:      role=edge\n"), "{text}");
        assert!(
            text.contains("  seeds:     fra-2.example.net:7946, ams-1.example.net:7946\n"),
            "{text}"
        );
        let wan = gossamer::core::Config::wan();
        assert!(
            text.contains(&format!(
                "probe {} ms (timeout {} ms), fanout 4",
                wan.probe_interval_ms, wan.probe_timeout_ms
            )),
            "{text}"
        );
    }

    #[test]
    fn certificate_file_names_come_from_the_file_or_flags() {
        let f = config_file(
            "node_id = \"g-0\"\nlisten = \"127.0.0.1:1\"\ncerts = \"/etc/gossamer/tls\"\nca_file = \"/etc/gossamer/trust/ca.pem\"\n",
        );
        let path = f.path().to_str().unwrap();
        let cfg = build_config(args(&[
            "--config",
            path,
            "--cert-file=tls.crt",
            "--key-file=tls.key",
        ]))
        .unwrap();
        let p = cfg.cert_paths();
        // A file name is taken in the certs folder, an absolute path as is.
        assert_eq!(p.cert, PathBuf::from("/etc/gossamer/tls/tls.crt"));
        assert_eq!(p.key, PathBuf::from("/etc/gossamer/tls/tls.key"));
        assert_eq!(p.ca, PathBuf::from("/etc/gossamer/trust/ca.pem"));
        // Revocation lists stay in the certs folder.
        assert_eq!(p.crl, PathBuf::from("/etc/gossamer/tls/crl.pem"));
        let text = check_summary(&cfg);
        assert!(
            text.contains("  certs:     /etc/gossamer/tls/tls.crt (key /etc/gossamer/tls/tls.key, trust /etc/gossamer/trust/ca.pem)"),
            "{text}"
        );
        let plain = build_config(args(&["--config", path, "--ca-file", "ca.crt"])).unwrap();
        assert_eq!(
            plain.cert_paths().cert,
            PathBuf::from("/etc/gossamer/tls/g-0.pem")
        );
        assert_eq!(
            plain.cert_paths().ca,
            PathBuf::from("/etc/gossamer/tls/ca.crt")
        );
    }

    #[test]
    fn run_check_names_the_bad_field() {
        let cases = [
            (
                "node_id = \"Bad_Id\"\nlisten = \"127.0.0.1:1\"\ncerts = \"c\"\n",
                "--node-id",
            ),
            (
                "node_id = \"a\"\nlisten = \"127.0.0.1:1\"\ncerts = \"c\"\nseedz = []\n",
                "seedz",
            ),
            (
                "node_id = \"a\"\nlisten = \"nowhere\"\ncerts = \"c\"\n",
                "listen",
            ),
            ("node_id = \"a\"\nlisten = \"127.0.0.1:1\"\n", "certs"),
            (
                "node_id = \"a\"\nlisten = \"127.0.0.1:1\"\ncerts = \"c\"\nseeds = [\"x\"]\n",
                "seeds",
            ),
            (
                "node_id = \"a\"\nlisten = \"127.0.0.1:1\"\ncerts = \"c\"\n[gossip]\nfan_out = 1\n",
                "fan_out",
            ),
            (
                "node_id = \"a\"\nlisten = \"127.0.0.1:1\"\ncerts = \"c\"\ndurability = \"fast\"\n",
                "durability: \"fast\" is not a durability mode; use \"sync\"",
            ),
            (
                "node_id = \"a\"\nlisten = \"127.0.0.1:1\"\ncerts = \"c\"\ndurability_interval_ms = 0\n",
                "durability_interval_ms",
            ),
            (
                "node_id = \"a\"\nlisten = \"127.0.0.1:1\"\ncerts = \"c\"\n[watch]\nmax_watches = 0\n",
                "watch.max_watches",
            ),
            (
                "node_id = \"a\"\nlisten = \"127.0.0.1:1\"\ncerts = \"c\"\n[watch]\nlog_size = 5\n",
                "log_size",
            ),
        ];
        for (text, field) in cases {
            let f = config_file(text);
            let e = build_config(args(&["--config", f.path().to_str().unwrap(), "--check"]))
                .unwrap_err();
            assert!(e.0.contains(field), "{field}: {}", e.0);
        }
        let f = config_file(
            "node_id = \"a\"\nlisten = \"127.0.0.1:1\"\ncerts = \"c\"\n[watch]\nlog_changes = 500\n",
        );
        let cfg = build_config(args(&["--config", f.path().to_str().unwrap()])).unwrap();
        assert_eq!(cfg.watch.log_changes, 500);
        assert_eq!(
            cfg.watch.max_watches, 64,
            "the other [watch] keys keep their defaults"
        );
        let f = config_file("node_id = \"a\"\nlisten = \"0.0.0.0:7946\"\ncerts = \"c\"\n");
        let cfg = build_config(args(&["--config", f.path().to_str().unwrap()])).unwrap();
        let e = check_addresses(&cfg).unwrap_err();
        assert!(e.0.starts_with("advertise:"), "{}", e.0);
    }

    #[test]
    fn profile_is_the_base_and_gossip_keys_override_it() {
        let mut t = toml::Table::new();
        t.insert("fanout".into(), toml::Value::Integer(5));
        let c = gossip_config(Some("wan"), t).unwrap();
        assert_eq!(c.fanout, 5);
        assert_eq!(
            c.probe_interval_ms,
            gossamer::core::Config::wan().probe_interval_ms
        );
        let lan = gossip_config(None, toml::Table::new()).unwrap();
        assert_eq!(lan, gossamer::core::Config::lan());
        assert!(gossip_config(Some("moon"), toml::Table::new()).is_err());
        let mut bad = toml::Table::new();
        bad.insert("fan_out".into(), toml::Value::Integer(5));
        let e = gossip_config(None, bad).unwrap_err();
        assert!(e.0.contains("fan_out"), "{}", e.0);
    }
}
