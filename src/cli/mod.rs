//! The `gossamer` command's subcommands (binary only: errors here are `anyhow`).

pub mod admin_cmds;
pub mod admin_conn;
pub mod bench;
pub mod bench_durable;
pub mod certs;
pub mod demo;
pub mod event_cmds;
pub mod kv_watch;
pub mod members_watch;
pub mod monitor;
pub mod query_cmd;
pub mod run;
pub mod sim_cmd;
pub mod status_cmd;
pub mod table;
pub mod test_cmd;

/// A usage or configuration error: the process exits with code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);
