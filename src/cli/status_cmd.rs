//! `gossamer status`: a summary of one node, with its seeds and, per datacenter, its
//! members by status and round-trip times.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::Context as _;
use clap::Args;
use serde::Serialize;

use gossamer::admin::client::AdminClient;
use gossamer::node::{DcSummary, SeedStatus, StatusView, STATUSES};

use super::admin_conn::AdminConn;
use super::table::{aligned, dash, human_secs, rtt_text};

/// `gossamer status`: a summary of one node.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
    /// Which node to ask.
    #[command(flatten)]
    pub conn: AdminConn,
}

/// Runs `gossamer status`; returns the process exit code.
pub async fn run_status(args: StatusArgs) -> anyhow::Result<i32> {
    let client = args.conn.client()?;
    let status = status_with_datacenters(&client).await?;
    let text = if args.json {
        format!("{}\n", serde_json::to_string_pretty(&status)?)
    } else {
        status_text(&status)
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(0)
}

/// What `gossamer status` shows: the node's status and, per datacenter, members by
/// status and the mean and largest RTT (ms) to its alive members, from the node's
/// member list.
#[derive(Debug, Serialize)]
struct StatusReport {
    #[serde(flatten)]
    status: StatusView,
    datacenters: BTreeMap<String, DcSummary>,
}

async fn status_with_datacenters(client: &AdminClient) -> anyhow::Result<StatusReport> {
    let status = client.status().await.context("cannot get status")?;
    let members = client.members().await.context("cannot list members")?;
    Ok(StatusReport {
        status,
        datacenters: gossamer::node::datacenters(&members),
    })
}

/// One seed of `status`: joined through whom, or why not and when it is tried again.
fn seed_line(seed: &SeedStatus) -> String {
    let s = &seed.seed;
    let addr = dash(&s.addr);
    if s.joined {
        let member = s.member.as_ref().map_or("-", |m| m.as_str());
        return format!("{addr} joined ({member})");
    }
    if s.failures == 0 {
        return format!("{addr} trying");
    }
    let next = match s.retry_in_ms {
        Some(ms) => format!("next try in {:.1} s", ms as f64 / 1000.0),
        None => "trying now".into(),
    };
    format!(
        "{addr} NOT ANSWERING ({} failed attempt{} in a row, {next}): {}",
        s.failures,
        if s.failures == 1 { "" } else { "s" },
        dash(seed.last_error.as_deref().unwrap_or_default())
    )
}

/// The largest amount a peer's stamps were ahead of this node's clock.
fn clock_skew(ahead_ms: u64) -> String {
    match ahead_ms {
        0 => "none seen".into(),
        ms => format!("a peer's stamps up to {ms} ms ahead of ours"),
    }
}

/// Renders a status report as aligned `name  value` lines, then the seeds and the
/// per-datacenter table.
fn status_text(r: &StatusReport) -> String {
    let s = &r.status;
    let members = if s.members.is_empty() {
        "-".to_string()
    } else {
        let total: usize = s.members.values().sum();
        let parts: Vec<String> = s.members.iter().map(|(k, v)| format!("{k} {v}")).collect();
        format!("{total} ({})", parts.join(", "))
    };
    let lines = [
        ("node", s.node_id.to_string()),
        ("cluster", dash(&s.cluster)),
        ("listen", dash(&s.listen)),
        ("dc", dash(&s.dc)),
        ("members", members),
        ("keys", s.keys.to_string()),
        ("tombstones", s.tombstones.to_string()),
        ("clock skew", clock_skew(s.clock_ahead_ms)),
        ("may write", dash(&s.may_write)),
        ("uptime", human_secs(s.uptime_s)),
        ("version", dash(&s.version)),
    ];
    let mut out = String::new();
    for (k, v) in lines {
        out.push_str(&format!("{:<11} {v}\n", format!("{k}:")));
    }
    for seed in &s.seeds {
        out.push_str(&format!("{:<11} {}\n", "seed:", seed_line(seed)));
    }
    if !r.datacenters.is_empty() {
        out.push_str("datacenters:\n");
        let mut rows = vec![[
            "DC", "ALIVE", "SUSPECT", "DEAD", "LEFT", "RTT MEAN", "RTT MAX",
        ]
        .iter()
        .map(|h| h.to_string())
        .collect::<Vec<_>>()];
        for (dc, d) in &r.datacenters {
            let mut row = vec![dash(dc)];
            row.extend(
                STATUSES
                    .iter()
                    .map(|st| d.by_status.get(st).copied().unwrap_or(0).to_string()),
            );
            row.push(rtt_text(d.rtt_mean_ms));
            row.push(rtt_text(d.rtt_max_ms));
            rows.push(row);
        }
        out.push_str(&aligned(&rows, "  "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use gossamer::admin::testing::TestServer;
    use gossamer::node::MemberView;

    /// A status as an older or newer node might send it: fields it lacks read as empty.
    fn report(status: serde_json::Value) -> StatusReport {
        StatusReport {
            status: serde_json::from_value(status).unwrap(),
            datacenters: BTreeMap::new(),
        }
    }

    #[test]
    fn admin_cmds_status_text() {
        let s = report(serde_json::json!({
            "node_id": "n1", "cluster": "prod", "listen": "0.0.0.0:7946", "dc": "eu",
            "members": {"alive": 3, "suspect": 1}, "keys": 10, "tombstones": 2,
            "uptime_s": 3725, "version": "0.1.0"
        }));
        let text = status_text(&s);
        assert!(text.starts_with("node:       n1\n"), "{text}");
        assert!(
            text.contains("members:    4 (alive 3, suspect 1)\n"),
            "{text}"
        );
        assert!(text.contains("uptime:     1h02m\n"), "{text}");
        assert!(text.contains("tombstones: 2\n"), "{text}");
    }

    #[test]
    fn admin_cmds_status_per_datacenter() {
        let member = |id: &str, status: &str, dc: &str, rtt_ms: Option<f64>| MemberView {
            id: gossamer::NodeId::new(id).unwrap(),
            addr: String::new(),
            status: status.into(),
            incarnation: 0,
            dc: dc.into(),
            zone: String::new(),
            tags: Default::default(),
            last_heard_ms_ago: None,
            rtt_ms,
            is_self: id == "a1",
        };
        let members = [
            member("a1", "alive", "eu", None),
            member("a2", "alive", "eu", Some(1.0)),
            member("a3", "alive", "eu", Some(3.0)),
            member("b1", "alive", "us", Some(80.0)),
            member("b2", "suspect", "us", Some(900.0)),
            member("b3", "dead", "us", None),
            member("c1", "left", "ap", Some(5.0)),
        ];
        let dcs = gossamer::node::datacenters(&members);
        assert_eq!(
            serde_json::to_value(&dcs).unwrap(),
            serde_json::json!({
                "ap": {"alive": 0, "suspect": 0, "dead": 0, "left": 1,
                       "rtt_mean_ms": null, "rtt_max_ms": null},
                "eu": {"alive": 3, "suspect": 0, "dead": 0, "left": 0,
                       "rtt_mean_ms": 2.0, "rtt_max_ms": 3.0},
                "us": {"alive": 1, "suspect": 1, "dead": 1, "left": 0,
                       "rtt_mean_ms": 80.0, "rtt_max_ms": 80.0}
            })
        );
        let mut s = report(serde_json::json!({
            "node_id": "a1", "cluster": "prod", "listen": "10.0.0.1:7946", "dc": "eu",
            "members": {"alive": 4, "suspect": 1, "dead": 1, "left": 1}, "keys": 0,
            "tombstones": 0, "uptime_s": 5, "version": "0.1.0"
        }));
        s.datacenters = dcs;
        let text = status_text(&s);
        let table = text.split_once("datacenters:\n").map(|(_, t)| t).unwrap();
        assert_eq!(
            table,
            "  DC  ALIVE  SUSPECT  DEAD  LEFT  RTT MEAN  RTT MAX
  ap  0      0        0     1     -         -
  eu  3      0        0     0     2.00ms    3.00ms
  us  1      1        1     0     80ms      80ms
"
        );
        // No members listed, no section.
        s.datacenters.clear();
        assert!(!status_text(&s).contains("datacenters"));
    }

    #[tokio::test]
    async fn admin_cmds_status_json_has_datacenters() {
        let server = TestServer::start(None).await;
        let client = AdminClient::new(server.addr.to_string(), None);
        let s = status_with_datacenters(&client).await.unwrap();
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["node_id"], "n1");
        assert_eq!(json["keys"], s.status.keys);
        // The fake knows n1 (self, alive) and n2 (suspect, with an RTT that must not count).
        assert_eq!(
            json["datacenters"],
            serde_json::json!({"eu-west": {"alive": 1, "suspect": 1, "dead": 0, "left": 0,
                                           "rtt_mean_ms": null, "rtt_max_ms": null}})
        );
        assert!(status_text(&s).contains("  eu-west  1      1        0     0     -"));
    }
}
