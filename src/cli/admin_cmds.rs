//! `gossamer kv` and `gossamer members`: commands that talk to a running node through
//! its admin API.

use std::io::Write;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use super::table::members_table;
use gossamer::admin::client::AdminClient;

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
        // Dashes in values after `--`.
        match parse(&["kv", "set", "k", "--", "-v"]) {
            TestCmd::Kv(KvArgs {
                command: KvCommand::Set { value, .. },
                ..
            }) => assert_eq!(value, "-v"),
            other => panic!("{other:?}"),
        }
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
