//! `gossamer certs`: create a fleet CA, issue (one node or a whole inventory), inspect and
//! revoke node certificates.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use gossamer::core::id::{ClusterName, NodeId};
use gossamer::identity::{self, WrittenFiles};

use super::UsageError;

/// `gossamer certs`: manage the fleet's certificates.
#[derive(Debug, Args)]
pub struct CertsArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: CertsCommand,
}

/// The `certs` subcommands.
#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Create the fleet CA: writes DIR/ca.pem (distribute it to every node) and DIR/ca.key
    /// (keep it offline).
    Init(InitArgs),
    /// Issue node certificates signed by the CA: writes DIR/ID.pem and DIR/ID.key for one
    /// node (--node) or for every node of an inventory file (--inventory).
    Issue(IssueArgs),
    /// Show what certificates say: subject, node id, cluster, validity, serial, issuer and
    /// SHA-256 fingerprint (any PEM file: a node's chain, a CA bundle, an external PKI's).
    Inspect(InspectArgs),
    /// Revoke DIR/ID.pem: adds it to DIR/crl.pem (distribute it with ca.pem; running nodes
    /// pick it up within seconds).
    Revoke(RevokeArgs),
}

/// Arguments of `gossamer certs init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Directory to write ca.pem and ca.key to (created if missing).
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// Cluster name (lowercase letters, digits and '-'); every node certificate carries it.
    #[arg(long, value_name = "NAME", value_parser = parse_cluster)]
    pub cluster: ClusterName,
    /// Validity of the CA certificate in days.
    #[arg(long, value_name = "N", default_value_t = identity::DEFAULT_CA_DAYS,
          value_parser = clap::value_parser!(u32).range(1..=36_500))]
    pub days: u32,
    /// Replace an existing CA (invalidates every certificate it issued).
    #[arg(long)]
    pub force: bool,
}

/// Arguments of `gossamer certs issue`.
#[derive(Debug, Args)]
pub struct IssueArgs {
    /// Directory holding ca.pem (and ca.key unless --ca-key is given); ID.pem and ID.key are
    /// written there.
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// Node id (lowercase letters, digits and '-').
    #[arg(long, value_name = "ID", value_parser = parse_node,
          required_unless_present_any = ["inventory", "client"],
          allow_hyphen_values = true, conflicts_with_all = ["inventory", "client"])]
    pub node: Option<NodeId>,
    /// Issue an operator certificate for NAME instead: DIR/operator-NAME.pem and .key, a
    /// client certificate for the admin API over HTTPS (`admin_tls`) that cannot join the
    /// cluster as a node.
    #[arg(long, value_name = "NAME", value_parser = parse_node,
          conflicts_with_all = ["inventory", "ips", "dns", "allow"])]
    pub client: Option<NodeId>,
    /// Issue for every node listed in FILE, one per line:
    /// `node-id [ip=IP]... [dns=NAME]... [days=N] [allow-prefix=P]...` ('#' starts a comment). The whole file is
    /// checked before anything is written.
    #[arg(long, value_name = "FILE")]
    pub inventory: Option<PathBuf>,
    /// IP address to put in the certificate (repeatable). With neither --ip nor --dns,
    /// 127.0.0.1 and localhost are used.
    #[arg(long = "ip", value_name = "IP", conflicts_with = "inventory")]
    pub ips: Vec<IpAddr>,
    /// DNS name to put in the certificate (repeatable).
    #[arg(long = "dns", value_name = "NAME", value_parser = parse_dns,
          conflicts_with = "inventory")]
    pub dns: Vec<String>,
    /// Key prefix the node may write (repeatable; an inventory line's allow-prefix=
    /// sets it there). Without it the node may write every key. Every node refuses the
    /// node's writes outside its prefixes, even signed.
    #[arg(long = "allow-prefix", value_name = "PREFIX", value_parser = parse_prefix,
          conflicts_with = "inventory")]
    pub allow: Vec<String>,
    /// CA private key, if it is not DIR/ca.key (e.g. kept offline).
    #[arg(long, value_name = "FILE")]
    pub ca_key: Option<PathBuf>,
    /// Validity of the node certificate in days (an inventory line's days= overrides it).
    #[arg(long, value_name = "N", default_value_t = identity::DEFAULT_NODE_DAYS,
          value_parser = clap::value_parser!(u32).range(1..=36_500))]
    pub days: u32,
}

/// Arguments of `gossamer certs inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// PEM file holding one or more certificates.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Print JSON (an array, one object per certificate).
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `gossamer certs revoke`.
#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// Directory holding ca.pem, ID.pem and crl.pem (created if missing).
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// Node whose certificate (DIR/ID.pem) to revoke.
    #[arg(long, value_name = "ID", value_parser = parse_node)]
    pub node: NodeId,
    /// CA private key, if it is not DIR/ca.key.
    #[arg(long, value_name = "FILE")]
    pub ca_key: Option<PathBuf>,
}

fn parse_cluster(s: &str) -> Result<ClusterName, String> {
    ClusterName::new(s).map_err(|e| e.to_string())
}

fn parse_node(s: &str) -> Result<NodeId, String> {
    NodeId::new(s).map_err(|e| e.to_string())
}

fn parse_dns(s: &str) -> Result<String, String> {
    identity::check_dns_name(s)
        .map(|()| s.to_string())
        .map_err(|e| e.to_string())
}

/// One node of an inventory file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryEntry {
    /// Node id.
    pub node: NodeId,
    /// IP addresses for the certificate.
    pub ips: Vec<IpAddr>,
    /// DNS names for the certificate.
    pub dns: Vec<String>,
    /// Validity in days, if the line sets it.
    pub days: Option<u32>,
    /// Key prefixes the node may write (empty: every key).
    pub allow: Vec<String>,
}

/// Parses an inventory: one node per line, `node-id [ip=IP]... [dns=NAME]... [days=N] [allow-prefix=P]...`,
/// `#` comments and blank lines ignored. Errors name the line.
pub fn parse_inventory(text: &str, source: &str) -> Result<Vec<InventoryEntry>, UsageError> {
    let mut out: Vec<InventoryEntry> = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let err = |m: String| UsageError(format!("{source} line {}: {m}", i + 1));
        let mut words = line.split_whitespace();
        let id = words.next().unwrap_or_default();
        let node = NodeId::new(id).map_err(|e| err(e.to_string()))?;
        if !seen.insert(node.clone()) {
            return Err(err(format!("node {node} is listed twice")));
        }
        let mut entry = InventoryEntry {
            node,
            ips: Vec::new(),
            dns: Vec::new(),
            days: None,
            allow: Vec::new(),
        };
        for w in words {
            let (k, v) = w.split_once('=').ok_or_else(|| {
                err(format!(
                    "{w:?}: expected ip=IP, dns=NAME, days=N or allow-prefix=PREFIX"
                ))
            })?;
            match k {
                "ip" => entry.ips.push(
                    v.parse()
                        .map_err(|_| err(format!("ip={v}: not an IP address")))?,
                ),
                "dns" => entry.dns.push(parse_dns(v).map_err(err)?),
                "days" => {
                    let d: u32 = v
                        .parse()
                        .ok()
                        .filter(|d| (1..=36_500).contains(d))
                        .ok_or_else(|| err(format!("days={v}: expected 1 to 36500")))?;
                    entry.days = Some(d);
                }
                "allow-prefix" => entry.allow.push(parse_prefix(v).map_err(err)?),
                _ => {
                    return Err(err(format!(
                        "{w:?}: unknown key {k:?} (expected ip=, dns=, days= or allow-prefix=)"
                    )))
                }
            }
        }
        out.push(entry);
    }
    if out.is_empty() {
        return Err(UsageError(format!("{source}: lists no node")));
    }
    Ok(out)
}

fn parse_prefix(s: &str) -> Result<String, String> {
    if s.is_empty() || s.chars().any(char::is_control) {
        return Err(format!(
            "allow-prefix {s:?}: must be non-empty and free of control characters (leave it out to grant every key)"
        ));
    }
    Ok(s.to_string())
}

fn issue_one(
    dir: &Path,
    e: &InventoryEntry,
    ca_key: Option<&Path>,
    days: u32,
) -> anyhow::Result<()> {
    let files = identity::write_node_granted(
        dir,
        &e.node,
        &e.ips,
        &e.dns,
        &e.allow,
        ca_key,
        e.days.unwrap_or(days),
    )?;
    let mut names: Vec<String> = e.dns.clone();
    names.extend(e.ips.iter().map(|ip| ip.to_string()));
    if names.is_empty() {
        names = vec!["localhost".into(), "127.0.0.1".into()];
    }
    println!(
        "wrote {} (certificate of node {}, {}; also valid for {})",
        files.cert.display(),
        e.node,
        expiry(&files),
        names.join(", ")
    );
    if !e.allow.is_empty() {
        println!(
            "  node {} may write only keys under: {}",
            e.node,
            identity::Grant::prefixes(e.allow.clone()).describe()
        );
    }
    println!(
        "wrote {} (node private key, mode 0600)",
        files.key.display()
    );
    Ok(())
}

fn print_inspection(file: &Path, json: bool) -> anyhow::Result<()> {
    let pem = std::fs::read_to_string(file)
        .map_err(|e| UsageError(format!("{}: cannot read: {e}", file.display())))?;
    let infos = identity::inspect_pem(&pem, &file.display().to_string())
        .map_err(|e| UsageError(e.to_string()))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&infos)?);
        return Ok(());
    }
    let now = unix_now();
    for (i, c) in infos.iter().enumerate() {
        if infos.len() > 1 {
            println!(
                "certificate {} of {} in {}",
                i + 1,
                infos.len(),
                file.display()
            );
        } else {
            println!("certificate in {}", file.display());
        }
        let left = c.expires_in_secs(now);
        let state = if c.not_before_unix > now {
            format!(
                "NOT YET VALID (starts in {} days)",
                (c.not_before_unix - now) / 86_400
            )
        } else if left <= 0 {
            format!("EXPIRED {} days ago", -left / 86_400)
        } else {
            format!("expires in {} days", left / 86_400)
        };
        let row = |k: &str, v: &str| println!("  {k:<13} {v}");
        row("subject:", &c.subject);
        row("issuer:", &c.issuer);
        match (&c.node_id, &c.cluster) {
            _ if c.operator.is_some() => {
                let op = c.operator.as_ref().expect("checked");
                row(
                    "operator:",
                    &format!(
                        "{} (admin API client only; cannot join the cluster)",
                        op.name
                    ),
                );
                row("cluster:", op.cluster.as_str());
            }
            (Some(n), Some(cl)) => {
                row("node id:", n.as_str());
                row("cluster:", cl.as_str());
            }
            (None, Some(cl)) => row("cluster:", &format!("{cl} (a gossamer CA)")),
            _ => row(
                "node id:",
                &format!(
                    "none: {}",
                    c.gossamer_uri_problem
                        .as_deref()
                        .unwrap_or("no gossamer:// SAN URI")
                ),
            ),
        }
        row("serial:", &c.serial);
        row("valid from:", &identity::format_unix(c.not_before_unix));
        row(
            "valid until:",
            &format!("{} ({state})", identity::format_unix(c.not_after_unix)),
        );
        row("sha-256:", &c.sha256_fingerprint);
        if !c.dns_names.is_empty() {
            row("dns names:", &c.dns_names.join(", "));
        }
        if !c.ip_addresses.is_empty() {
            row("ip addresses:", &c.ip_addresses.join(", "));
        }
        if c.node_id.is_some() {
            let grant = match &c.allow_prefixes {
                None => identity::Grant::all(),
                Some(p) => identity::Grant::prefixes(p.clone()),
            };
            row("may write:", &grant.describe());
        }
        row("CA:", if c.is_ca { "yes" } else { "no" });
    }
    Ok(())
}

fn expiry(files: &WrittenFiles) -> String {
    let days = (files.not_after_unix - unix_now()) / 86_400;
    format!("expires in {days} days, unix time {}", files.not_after_unix)
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Runs a `certs` subcommand, printing the files it wrote.
pub fn run(args: CertsArgs) -> anyhow::Result<()> {
    match args.command {
        CertsCommand::Init(a) => {
            let files = identity::write_ca(&a.dir, &a.cluster, a.days, a.force)?;
            println!(
                "wrote {} (CA certificate of cluster {}, {}; distribute it to every node)",
                files.cert.display(),
                a.cluster,
                expiry(&files)
            );
            println!(
                "wrote {} (CA private key, mode 0600; keep it offline)",
                files.key.display()
            );
        }
        CertsCommand::Issue(a) if a.client.is_some() => {
            let name = a.client.as_ref().expect("matched");
            let files =
                identity::write_operator(&a.dir, name.as_str(), a.ca_key.as_deref(), a.days)?;
            println!(
                "wrote {} (operator certificate of {name} for the admin API over HTTPS, {})",
                files.cert.display(),
                expiry(&files)
            );
            println!(
                "wrote {} (its private key, mode 0600); use: gossamer status --admin ADDR --ca {} --cert {} --key {}",
                files.key.display(),
                a.dir.join("ca.pem").display(),
                files.cert.display(),
                files.key.display()
            );
        }
        CertsCommand::Issue(a) => {
            let entries = match (&a.inventory, &a.node) {
                (Some(file), _) => {
                    let text = std::fs::read_to_string(file).map_err(|e| {
                        UsageError(format!("--inventory {}: cannot read: {e}", file.display()))
                    })?;
                    parse_inventory(&text, &file.display().to_string())?
                }
                (None, Some(node)) => vec![InventoryEntry {
                    node: node.clone(),
                    ips: a.ips.clone(),
                    dns: a.dns.clone(),
                    days: None,
                    allow: a.allow.clone(),
                }],
                (None, None) => {
                    return Err(UsageError("pass --node ID or --inventory FILE".into()).into())
                }
            };
            for e in &entries {
                issue_one(&a.dir, e, a.ca_key.as_deref(), a.days)?;
            }
            if entries.len() > 1 {
                println!("issued {} node certificates", entries.len());
            }
        }
        CertsCommand::Inspect(a) => print_inspection(&a.file, a.json)?,
        CertsCommand::Revoke(a) => {
            let path = identity::write_revocation(&a.dir, &a.node, a.ca_key.as_deref())?;
            println!(
                "wrote {} (revokes the certificate in {}; copy it next to ca.pem on every node: running nodes pick it up within seconds and disconnect {})",
                path.display(),
                a.dir.join(format!("{}.pem", a.node)).display(),
                a.node
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        certs: CertsArgs,
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("certs").chain(args.iter().copied()))
    }

    #[test]
    fn invalid_values_name_the_flag() {
        for (args, flag) in [
            (
                vec!["init", "--dir", "d", "--cluster", "Bad_Name"],
                "--cluster",
            ),
            (vec!["issue", "--dir", "d", "--node", "-x"], "--node"),
            (
                vec!["issue", "--dir", "d", "--node", "a", "--ip", "1.2.3"],
                "--ip",
            ),
            (
                vec!["issue", "--dir", "d", "--node", "a", "--days", "0"],
                "--days",
            ),
        ] {
            let err = parse(&args).unwrap_err().to_string();
            assert!(err.contains(flag), "{args:?}: {err}");
        }
    }

    #[test]
    fn init_issue_revoke() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        run(parse(&["init", "--dir", d, "--cluster", "prod"])
            .unwrap()
            .certs)
        .unwrap();
        let err = run(parse(&["init", "--dir", d, "--cluster", "prod"])
            .unwrap()
            .certs)
        .unwrap_err();
        assert!(err.to_string().contains("--force"), "{err}");
        let cli = parse(&[
            "issue", "--dir", d, "--node", "n1", "--ip", "10.1.2.3", "--ip", "::1", "--dns",
            "n1.local", "--days", "7",
        ])
        .unwrap();
        assert_eq!(cli.certs_ips(), 2);
        run(cli.certs).unwrap();
        let (id, _) = identity::load(dir.path(), &NodeId::new("n1").unwrap()).unwrap();
        assert_eq!(id.cluster.as_str(), "prod");
        run(parse(&["revoke", "--dir", d, "--node", "n1"])
            .unwrap()
            .certs)
        .unwrap();
        assert!(identity::load(dir.path(), &NodeId::new("n1").unwrap()).is_err());
    }

    #[test]
    fn inventory_issues_every_node_and_inspect_reads_them() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        run(parse(&["init", "--dir", d, "--cluster", "prod"])
            .unwrap()
            .certs)
        .unwrap();
        let inv = dir.path().join("inventory.txt");
        std::fs::write(
            &inv,
            "# fleet\nweb-1 ip=10.0.0.1 dns=web-1.example.com\n\nweb-2 ip=fd00::2 days=30 # short\ndb-1\n",
        )
        .unwrap();
        let inv_s = inv.to_str().unwrap();
        run(parse(&["issue", "--dir", d, "--inventory", inv_s])
            .unwrap()
            .certs)
        .unwrap();
        for (id, ip) in [
            ("web-1", Some("10.0.0.1")),
            ("web-2", Some("fd00::2")),
            ("db-1", None),
        ] {
            let node = NodeId::new(id).unwrap();
            let (ident, _) = identity::load(dir.path(), &node).unwrap();
            assert_eq!(ident.node_id, node);
            let pem = std::fs::read_to_string(dir.path().join(format!("{id}.pem"))).unwrap();
            let info = &identity::inspect_pem(&pem, id).unwrap()[0];
            assert_eq!(info.node_id.as_ref(), Some(&node));
            assert_eq!(info.cluster.as_ref().unwrap().as_str(), "prod");
            match ip {
                Some(ip) => assert_eq!(info.ip_addresses, vec![ip.to_string()]),
                None => assert_eq!(info.ip_addresses, vec!["127.0.0.1".to_string()]),
            }
            let days = (info.not_after_unix - info.not_before_unix) / 86_400;
            assert_eq!(days, if id == "web-2" { 30 } else { 365 }, "{id}");
        }
        // inspect prints, in text and JSON.
        let f = dir.path().join("web-1.pem");
        run(parse(&["inspect", f.to_str().unwrap()]).unwrap().certs).unwrap();
        run(parse(&["inspect", "--json", f.to_str().unwrap()])
            .unwrap()
            .certs)
        .unwrap();
        // --node and --inventory exclude each other; one is required.
        assert!(parse(&["issue", "--dir", d, "--inventory", inv_s, "--node", "x"]).is_err());
        assert!(parse(&["issue", "--dir", d]).is_err());
    }

    #[test]
    fn a_bad_inventory_writes_nothing_and_names_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        run(parse(&["init", "--dir", d, "--cluster", "prod"])
            .unwrap()
            .certs)
        .unwrap();
        for (text, needle) in [
            ("a\nb ip=300.1.1.1\n", "line 2"),
            ("a\nBad_Id\n", "line 2"),
            ("a\na\n", "listed twice"),
            ("a color=red\n", "unknown key"),
            ("a days=0\n", "days=0"),
            ("# nothing\n", "lists no node"),
        ] {
            let inv = dir.path().join("inv");
            std::fs::write(&inv, text).unwrap();
            let err = run(
                parse(&["issue", "--dir", d, "--inventory", inv.to_str().unwrap()])
                    .unwrap()
                    .certs,
            )
            .unwrap_err();
            assert!(err.to_string().contains(needle), "{text:?}: {err}");
            assert!(
                !dir.path().join("a.pem").exists(),
                "{text:?} wrote a certificate"
            );
        }
    }

    impl Cli {
        fn certs_ips(&self) -> usize {
            match &self.certs.command {
                CertsCommand::Issue(a) => a.ips.len(),
                _ => 0,
            }
        }
    }
}
