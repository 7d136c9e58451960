//! `gossamer certs`: create a fleet CA, issue and revoke node certificates.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Subcommand};

use gossamer::core::id::{ClusterName, NodeId};
use gossamer::identity::{self, WrittenFiles};

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
    /// Issue a node certificate signed by the CA: writes DIR/ID.pem and DIR/ID.key.
    Issue(IssueArgs),
    /// Revoke DIR/ID.pem: adds it to DIR/crl.pem (distribute it with ca.pem; nodes read it at
    /// start).
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
    #[arg(long, value_name = "ID", value_parser = parse_node)]
    pub node: NodeId,
    /// IP address to put in the certificate (repeatable). With neither --ip nor --dns,
    /// 127.0.0.1 and localhost are used.
    #[arg(long = "ip", value_name = "IP")]
    pub ips: Vec<IpAddr>,
    /// DNS name to put in the certificate (repeatable).
    #[arg(long = "dns", value_name = "NAME", value_parser = parse_dns)]
    pub dns: Vec<String>,
    /// CA private key, if it is not DIR/ca.key (e.g. kept offline).
    #[arg(long, value_name = "FILE")]
    pub ca_key: Option<PathBuf>,
    /// Validity of the node certificate in days.
    #[arg(long, value_name = "N", default_value_t = identity::DEFAULT_NODE_DAYS,
          value_parser = clap::value_parser!(u32).range(1..=36_500))]
    pub days: u32,
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
        CertsCommand::Issue(a) => {
            let files =
                identity::write_node(&a.dir, &a.node, &a.ips, &a.dns, a.ca_key.as_deref(), a.days)?;
            let mut names: Vec<String> = a.dns.clone();
            names.extend(a.ips.iter().map(|ip| ip.to_string()));
            if names.is_empty() {
                names = vec!["localhost".into(), "127.0.0.1".into()];
            }
            println!(
                "wrote {} (certificate of node {}, {}; also valid for {})",
                files.cert.display(),
                a.node,
                expiry(&files),
                names.join(", ")
            );
            println!(
                "wrote {} (node private key, mode 0600)",
                files.key.display()
            );
        }
        CertsCommand::Revoke(a) => {
            let path = identity::write_revocation(&a.dir, &a.node, a.ca_key.as_deref())?;
            println!(
                "wrote {} (revokes the certificate in {}; distribute it with ca.pem and restart nodes)",
                path.display(),
                a.dir.join(format!("{}.pem", a.node)).display()
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

    impl Cli {
        fn certs_ips(&self) -> usize {
            match &self.certs.command {
                CertsCommand::Issue(a) => a.ips.len(),
                _ => 0,
            }
        }
    }
}
