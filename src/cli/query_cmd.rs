//! `gossamer query NAME [PAYLOAD|-] [--tag K=V]... [--dc DC] [--node ID]... [--timeout 2s]`:
//! ask the members that match a filter through a node, print each ack and answer as it
//! arrives, then a summary naming the members that did not answer.
//!
//! Exit code: 0 when every member that matched the filter (in the node's view when it
//! asked) answered before the deadline, 1 when one did not (or the query was refused),
//! 2 for a usage error.

use std::io::Write;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;

use gossamer::admin::queries::QueryLine;
use gossamer::core::queries::QueryFilter;
use gossamer::core::NodeId;

use super::admin_conn::AdminConn;
use super::event_cmds::payload_of;
use super::test_cmd::partition::parse_time;
use super::UsageError;

/// `gossamer query`: ask the matching members and wait for their answers.
#[derive(Debug, Clone, Args)]
pub struct QueryArgs {
    /// The query's name (at most 128 bytes, no control characters)
    pub name: String,
    /// The payload (at most gossip.events.max_payload, 8 KiB by default); read from
    /// standard input when "-" (or absent and standard input is not a terminal)
    pub payload: Option<String>,
    /// Only members with this tag (KEY=VALUE); repeat for several, all must match
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    pub tags: Vec<String>,
    /// Only members of this datacenter
    #[arg(long)]
    pub dc: Option<String>,
    /// Only these members; repeat for several
    #[arg(long = "node", value_name = "ID")]
    pub nodes: Vec<String>,
    /// How long to wait for answers (e.g. 2s, 500ms)
    #[arg(long, default_value = "2s", value_parser = parse_time)]
    pub timeout: Duration,
    /// Print the node's JSON lines instead
    #[arg(long)]
    pub json: bool,
    /// Which node asks.
    #[command(flatten)]
    pub conn: AdminConn,
}

/// The filter the flags describe, or a usage error naming the flag.
fn filter_of(args: &QueryArgs) -> Result<QueryFilter, UsageError> {
    let mut filter = QueryFilter {
        dc: args.dc.clone(),
        ..QueryFilter::default()
    };
    for t in &args.tags {
        let (k, v) = t
            .split_once('=')
            .ok_or_else(|| UsageError(format!("--tag {t:?} must be KEY=VALUE")))?;
        filter.tags.insert(k.to_string(), v.to_string());
    }
    for n in &args.nodes {
        let id = NodeId::new(n).map_err(|e| UsageError(format!("--node {n:?}: {e}")))?;
        filter.nodes.push(id);
    }
    filter
        .check()
        .map_err(|e| UsageError(format!("{e} (--tag, --node)")))?;
    Ok(filter)
}

/// Runs `gossamer query`: 0 if every matching member answered, 1 otherwise.
pub async fn run(args: QueryArgs) -> anyhow::Result<i32> {
    let filter = filter_of(&args)?;
    let client = args.conn.client()?;
    let payload = payload_of(args.payload.as_deref())?;
    let mut stream = client
        .query(&args.name, &payload, &filter, args.timeout)
        .await
        .with_context(|| format!("cannot ask query {:?}", args.name))?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    while let Some(line) = stream.next().await.context("the query's stream failed")? {
        if args.json {
            writeln!(out, "{}", serde_json::to_string(&line)?)?;
            out.flush()?;
        }
        let text = match &line {
            QueryLine::Ack { from } => format!("ack      {from}"),
            QueryLine::Response { from, payload, .. } => {
                format!("response {from} {}", payload.trim_end_matches('\n'))
            }
            QueryLine::Heartbeat => continue,
            QueryLine::Done {
                acks,
                responders,
                silent,
                refused,
            } => {
                let code = i32::from(!silent.is_empty());
                if !args.json {
                    writeln!(
                        out,
                        "done: {} acks, {} responses, {} silent{}",
                        acks.len(),
                        responders.len(),
                        silent.len(),
                        match refused {
                            0 => String::new(),
                            n => format!(", {n} refused"),
                        }
                    )?;
                    for s in silent {
                        writeln!(out, "silent   {s}")?;
                    }
                }
                out.flush()?;
                return Ok(code);
            }
        };
        if !args.json {
            writeln!(out, "{text}")?;
            out.flush()?;
        }
    }
    anyhow::bail!("the node ended the query's stream before its report")
}
