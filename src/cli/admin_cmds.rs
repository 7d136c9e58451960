//! `gossamer kv`, `gossamer members` and `gossamer status`: commands that talk to a running
//! node through its admin API.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde::Serialize;

use gossamer::admin::client::AdminClient;
use gossamer::node::{DcSummary, MemberView, SeedStatus, StatusView, STATUSES};

pub use super::admin_conn::AdminConn;

/// `gossamer kv`: read and write the replicated key-value state.
#[derive(Debug, Clone, Args)]
pub struct KvArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: KvCommand,
    /// Which node to ask.
    #[command(flatten)]
    pub conn: AdminConn,
}

/// The `gossamer kv` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum KvCommand {
    /// Write KEY = VALUE (replicated to the whole cluster)
    Set {
        /// The key (UTF-8; may contain '/')
        key: String,
        /// The value
        value: String,
    },
    /// Print the value of KEY and a newline; exit code 1 if absent
    Get {
        /// The key
        key: String,
    },
    /// Delete KEY; exit code 1 if absent
    #[command(visible_alias = "delete", alias = "rm")]
    Del {
        /// The key
        key: String,
    },
    /// Print `key=value` for every live key starting with PREFIX, sorted by key
    #[command(alias = "ls")]
    List {
        /// Only keys starting with this prefix (default: all)
        prefix: Option<String>,
    },
    /// Print one line per change of a key starting with PREFIX as it happens (`set
    /// KEY=VALUE`, `del KEY`), until interrupted; re-lists and resumes by itself when the
    /// node resets the watch
    Watch {
        /// Only keys starting with this prefix (default: all)
        prefix: Option<String>,
        /// Start after this change index (from a listing's x-gossamer-index or an earlier
        /// watch line) instead of now
        #[arg(long)]
        index: Option<u64>,
        /// Print the node's JSON lines (changes, heartbeats, resets) instead
        #[arg(long)]
        json: bool,
    },
}

/// `gossamer members`: the cluster membership as seen by one node.
#[derive(Debug, Clone, Args)]
pub struct MembersArgs {
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
    /// Keep printing membership changes as the node applies them, until interrupted
    #[arg(long)]
    pub watch: bool,
    /// Which node to ask.
    #[command(flatten)]
    pub conn: AdminConn,
}

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

/// Runs `gossamer kv ...`; returns the process exit code (1 when `get`/`del` find no key).
pub async fn run_kv(args: KvArgs) -> anyhow::Result<i32> {
    let client = args.conn.client()?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    kv(&client, &args.command, &mut out).await
}

async fn kv(client: &AdminClient, cmd: &KvCommand, out: &mut impl Write) -> anyhow::Result<i32> {
    match cmd {
        KvCommand::Set { key, value } => {
            client
                .set(key, value.as_bytes())
                .await
                .with_context(|| format!("cannot set {key:?}"))?;
            Ok(0)
        }
        KvCommand::Get { key } => match client
            .get(key)
            .await
            .with_context(|| format!("cannot get {key:?}"))?
        {
            Some(value) => {
                out.write_all(&value)?;
                out.write_all(b"\n")?;
                out.flush()?;
                Ok(0)
            }
            None => {
                eprintln!("key {key:?} not found");
                Ok(1)
            }
        },
        KvCommand::Del { key } => {
            if client
                .delete(key)
                .await
                .with_context(|| format!("cannot delete {key:?}"))?
            {
                Ok(0)
            } else {
                eprintln!("key {key:?} not found");
                Ok(1)
            }
        }
        KvCommand::Watch {
            prefix,
            index,
            json,
        } => {
            super::kv_watch::watch(client, prefix.as_deref().unwrap_or(""), *index, *json, out)
                .await
        }
        KvCommand::List { prefix } => {
            let prefix = prefix.as_deref().unwrap_or("");
            let items = client.list(prefix).await.context("cannot list keys")?;
            for item in items {
                writeln!(out, "{}={}", item.key, item.value)?;
            }
            out.flush()?;
            Ok(0)
        }
    }
}

/// Runs `gossamer members`; returns the process exit code.
pub async fn run_members(args: MembersArgs) -> anyhow::Result<i32> {
    if args.watch {
        return super::members_watch::run(&args.conn.client()?, args.json).await;
    }
    let members = args
        .conn
        .client()?
        .members()
        .await
        .context("cannot list members")?;
    let text = if args.json {
        format!("{}\n", serde_json::to_string_pretty(&members)?)
    } else {
        members_table(&members)
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(0)
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

/// A text, or `-` when it is empty.
fn dash(s: &str) -> String {
    if s.is_empty() {
        "-".to_string()
    } else {
        s.to_string()
    }
}

/// Milliseconds as a short human duration: `850ms`, `1.5s`, `2m05s`, `3h07m`, `2d04h`.
fn human_ms(ms: u64) -> String {
    if ms < 1_000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        human_secs(ms / 1000)
    }
}

/// Seconds as a short human duration.
fn human_secs(s: u64) -> String {
    if s < 60 {
        format!("{s}s")
    } else if s < 3_600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else if s < 86_400 {
        format!("{}h{:02}m", s / 3_600, (s % 3_600) / 60)
    } else {
        format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3_600)
    }
}

fn rtt_text(v: Option<f64>) -> String {
    match v {
        Some(ms) if ms < 10.0 => format!("{ms:.2}ms"),
        Some(ms) => format!("{ms:.0}ms"),
        None => "-".to_string(),
    }
}

/// Renders members as an aligned table, the local node first (marked `*`), then by id.
pub(super) fn members_table(members: &[MemberView]) -> String {
    let mut sorted: Vec<&MemberView> = members.iter().collect();
    sorted.sort_by(|a, b| b.is_self.cmp(&a.is_self).then_with(|| a.id.cmp(&b.id)));
    let header = [
        "ID",
        "STATUS",
        "INCARNATION",
        "ADDR",
        "DC",
        "LAST HEARD",
        "RTT",
    ];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    for m in sorted {
        let mut id = m.id.to_string();
        if m.is_self {
            id.push_str(" *");
        }
        let last_heard = match m.last_heard_ms_ago {
            Some(ms) => format!("{} ago", human_ms(ms)),
            None => "-".to_string(),
        };
        rows.push(vec![
            id,
            dash(&m.status),
            m.incarnation.to_string(),
            dash(&m.addr),
            dash(&m.dc),
            last_heard,
            rtt_text(m.rtt_ms),
        ]);
    }
    aligned(&rows, "")
}

/// Renders rows as columns separated by two spaces, each line prefixed by `indent`.
fn aligned(rows: &[Vec<String>], indent: &str) -> String {
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = indent.to_string();
        for (c, cell) in row.iter().enumerate() {
            if c > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            if c + 1 < row.len() {
                let pad = widths[c] - cell.chars().count();
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
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
    use clap::Parser;

    use super::*;
    use gossamer::admin::testing::TestServer;

    #[derive(Debug, Parser)]
    struct TestCli {
        #[command(subcommand)]
        cmd: TestCmd,
    }

    #[derive(Debug, Subcommand)]
    enum TestCmd {
        Kv(KvArgs),
        Members(MembersArgs),
        Status(StatusArgs),
    }

    fn parse(args: &[&str]) -> TestCmd {
        TestCli::try_parse_from(std::iter::once("gossamer").chain(args.iter().copied()))
            .unwrap()
            .cmd
    }

    #[test]
    fn admin_cmds_parse() {
        match parse(&["kv", "set", "k", "v", "--admin", "127.0.0.1:9"]) {
            TestCmd::Kv(KvArgs {
                command: KvCommand::Set { key, value },
                conn,
            }) => {
                assert_eq!((key.as_str(), value.as_str()), ("k", "v"));
                assert_eq!(conn.addr(), "127.0.0.1:9");
            }
            other => panic!("{other:?}"),
        }
        // `--key` (the client key) beside `kv set KEY`: distinct argument ids.
        match parse(&[
            "kv", "set", "k", "v", "--ca", "a", "--cert", "b", "--key", "c",
        ]) {
            TestCmd::Kv(KvArgs {
                command: KvCommand::Set { key, .. },
                conn,
            }) => {
                assert_eq!(key, "k");
                assert_eq!(conn.key.as_deref(), Some(std::path::Path::new("c")));
            }
            other => panic!("{other:?}"),
        }
        match parse(&["kv", "--admin", "h:1", "get", "k", "--token", "t"]) {
            TestCmd::Kv(KvArgs {
                command: KvCommand::Get { key },
                conn,
            }) => {
                assert_eq!(key, "k");
                assert_eq!(conn.admin.as_deref(), Some("h:1"));
                assert_eq!(conn.token.as_deref(), Some("t"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(&["kv", "del", "k"]),
            TestCmd::Kv(KvArgs {
                command: KvCommand::Del { .. },
                ..
            })
        ));
        assert!(matches!(
            parse(&["kv", "list"]),
            TestCmd::Kv(KvArgs {
                command: KvCommand::List { prefix: None },
                ..
            })
        ));
        assert!(matches!(
            parse(&["kv", "list", "app/", "--admin", "x:1"]),
            TestCmd::Kv(KvArgs {
                command: KvCommand::List { prefix: Some(_) },
                ..
            })
        ));
        assert!(matches!(
            parse(&["kv", "watch", "app/", "--index", "42", "--json"]),
            TestCmd::Kv(KvArgs {
                command: KvCommand::Watch {
                    prefix: Some(_),
                    index: Some(42),
                    json: true
                },
                ..
            })
        ));
        assert!(matches!(
            parse(&["members", "--json", "--admin", "x:1"]),
            TestCmd::Members(MembersArgs { json: true, .. })
        ));
        assert!(matches!(
            parse(&["status"]),
            TestCmd::Status(StatusArgs { json: false, .. })
        ));
        // Dashes in values after `--`.
        match parse(&["kv", "set", "k", "--", "-v"]) {
            TestCmd::Kv(KvArgs {
                command: KvCommand::Set { value, .. },
                ..
            }) => assert_eq!(value, "-v"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn admin_cmds_members_table() {
        let members = serde_json::json!([
            {"id": "node-2", "addr": "127.0.0.1:7002", "status": "suspect", "incarnation": 12,
             "dc": "eu-west", "zone": "", "tags": {}, "last_heard_ms_ago": 1500,
             "rtt_ms": 0.4213, "is_self": false},
            {"id": "n1", "addr": "127.0.0.1:7001", "status": "alive", "incarnation": 1,
             "dc": "", "zone": "", "tags": {}, "last_heard_ms_ago": null,
             "rtt_ms": null, "is_self": true},
            {"id": "a", "addr": "10.0.0.3:7000", "status": "dead", "incarnation": 0,
             "dc": "us", "zone": "", "tags": {}, "last_heard_ms_ago": 190000,
             "rtt_ms": 25.0, "is_self": false}
        ]);
        let members: Vec<MemberView> = serde_json::from_value(members).unwrap();
        let table = members_table(&members);
        let expected = "\
ID      STATUS   INCARNATION  ADDR            DC       LAST HEARD  RTT
n1 *    alive    1            127.0.0.1:7001  -        -           -
a       dead     0            10.0.0.3:7000   us       3m10s ago   25ms
node-2  suspect  12           127.0.0.1:7002  eu-west  1.5s ago    0.42ms
";
        assert_eq!(table, expected);
    }

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

    #[test]
    fn admin_cmds_human_durations() {
        assert_eq!(human_ms(850), "850ms");
        assert_eq!(human_ms(1500), "1.5s");
        assert_eq!(human_ms(125_000), "2m05s");
        assert_eq!(human_secs(11_220), "3h07m");
        assert_eq!(human_secs(187_200), "2d04h");
    }

    #[tokio::test]
    async fn admin_cmds_kv_against_server() {
        let server = TestServer::start(None).await;
        let client = AdminClient::new(server.addr.to_string(), None);
        let run = |cmd: KvCommand| {
            let client = client.clone();
            async move {
                let mut out = Vec::new();
                let code = kv(&client, &cmd, &mut out).await.unwrap();
                (code, String::from_utf8(out).unwrap())
            }
        };
        let set = |k: &str, v: &str| KvCommand::Set {
            key: k.into(),
            value: v.into(),
        };
        assert_eq!(run(set("app/x", "1")).await, (0, String::new()));
        assert_eq!(run(set("app/y", "two words")).await, (0, String::new()));
        assert_eq!(run(set("zzz", "3")).await, (0, String::new()));
        assert_eq!(
            run(KvCommand::Get {
                key: "app/y".into()
            })
            .await,
            (0, "two words\n".into())
        );
        assert_eq!(
            run(KvCommand::Get { key: "nope".into() }).await,
            (1, String::new())
        );
        assert_eq!(
            run(KvCommand::List {
                prefix: Some("app/".into())
            })
            .await,
            (0, "app/x=1\napp/y=two words\n".into())
        );
        assert_eq!(
            run(KvCommand::List { prefix: None })
                .await
                .1
                .lines()
                .count(),
            3
        );
        assert_eq!(
            run(KvCommand::Del {
                key: "app/x".into()
            })
            .await,
            (0, String::new())
        );
        assert_eq!(
            run(KvCommand::Del {
                key: "app/x".into()
            })
            .await,
            (1, String::new())
        );
        assert_eq!(
            run(KvCommand::Get {
                key: "app/x".into()
            })
            .await,
            (1, String::new())
        );
    }

    #[tokio::test]
    async fn admin_cmds_unreachable_node_is_an_error() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let client = AdminClient::new(format!("127.0.0.1:{port}"), None);
        let err = kv(
            &client,
            &KvCommand::Get { key: "k".into() },
            &mut Vec::new(),
        )
        .await
        .unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("--admin"), "{msg}");
        assert!(msg.contains(&port.to_string()), "{msg}");
    }
}
