//! `gossamer monitor`: what a node sees happen, as it happens: membership changes, the
//! user events it delivers and its log lines, in one stream of lines, until interrupted.

use std::io::Write;

use anyhow::Context as _;
use clap::Args;

use gossamer::admin::client::{ClientError, LineStream};
use gossamer::admin::events::EventLine;
use gossamer::admin::logs::{LogLevel, LogLine};
use gossamer::admin::watch_members::MemberLine;

use super::admin_conn::AdminConn;

/// `gossamer monitor`: follow a node's membership changes, user events and log lines.
#[derive(Debug, Clone, Args)]
pub struct MonitorArgs {
    /// Print each line as JSON (`{"members": ..}`, `{"events": ..}` or `{"logs": ..}`
    /// around the node's own line) instead of text
    #[arg(long)]
    pub json: bool,
    /// Show the node's log lines at this level or more severe (error, warn, info, debug,
    /// trace; the node's own filter, RUST_LOG, decides what it writes at all), or `off`
    #[arg(long, default_value = "info", value_parser = parse_level)]
    pub log_level: LogsWanted,
    /// Which node to follow.
    #[command(flatten)]
    pub conn: AdminConn,
}

/// Runs `gossamer monitor`; returns 1 when the node ends either stream.
pub async fn run(args: MonitorArgs) -> anyhow::Result<i32> {
    let client = args.conn.client()?;
    let mut members = client
        .watch_members()
        .await
        .context("cannot watch members")?;
    let mut events = client
        .watch_events(None, None)
        .await
        .context("cannot watch events")?;
    let mut logs = match args.log_level.0 {
        Some(level) => log_watch(client.watch_logs(level).await)?,
        None => None,
    };
    loop {
        let text = tokio::select! {
            line = members.next() => match line.context("member watch failed")? {
                None => break,
                Some(l) if args.json => Some(serde_json::json!({ "members": l }).to_string()),
                Some(l) => member_text(&l),
            },
            line = events.next() => match line.context("event watch failed")? {
                None => break,
                Some(l) if args.json => Some(serde_json::json!({ "events": l }).to_string()),
                Some(l) => event_text(&l),
            },
            line = next_log(&mut logs) => match line.context("log watch failed")? {
                None => break,
                Some(l) if args.json => Some(serde_json::json!({ "logs": l }).to_string()),
                Some(l) => log_text(&l),
            },
        };
        if let Some(text) = text {
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            writeln!(out, "{text}")?;
            out.flush()?;
        }
    }
    eprintln!("the node ended the stream (it is shutting down?)");
    Ok(1)
}

fn member_text(l: &MemberLine) -> Option<String> {
    match l {
        MemberLine::Members { members } => {
            let alive = members.iter().filter(|m| m.status == "alive").count();
            Some(format!("member  {} known, {alive} alive", members.len()))
        }
        MemberLine::Change(c) => Some(format!(
            "member  {}",
            super::members_watch::change_text(c).trim_end()
        )),
        MemberLine::Heartbeat => None,
    }
}

fn event_text(l: &EventLine) -> Option<String> {
    match l {
        EventLine::Event(v) => Some(format!("event   {}", super::event_cmds::render(v))),
        EventLine::Missed { count } => Some(format!("event   # missed {count} events")),
        EventLine::Heartbeat { .. } => None,
    }
}

/// The log lines `--log-level` asks for: none (`off`), or those at a level or above.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogsWanted(pub Option<LogLevel>);

fn parse_level(s: &str) -> Result<LogsWanted, String> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(LogsWanted(None));
    }
    s.parse().map(|l| LogsWanted(Some(l)))
}

/// The log watch, or none (said on stderr) when the node cannot serve one: an older
/// release (404) or a process that captures no log lines (501).
fn log_watch(
    watch: Result<LineStream<LogLine>, ClientError>,
) -> anyhow::Result<Option<LineStream<LogLine>>> {
    match watch {
        Ok(w) => Ok(Some(w)),
        Err(ClientError::Status {
            status: 404 | 501,
            message,
        }) => {
            eprintln!("# no log lines from this node: {message}");
            Ok(None)
        }
        Err(e) => Err(e).context("cannot watch logs"),
    }
}

/// The next log line, or never without a log watch.
async fn next_log(logs: &mut Option<LineStream<LogLine>>) -> Result<Option<LogLine>, ClientError> {
    match logs {
        Some(w) => w.next().await,
        None => std::future::pending().await,
    }
}

fn log_text(l: &LogLine) -> Option<String> {
    match l {
        LogLine::Log(r) => Some(format!(
            "log     {:<5} {}: {}",
            r.level.as_str().to_uppercase(),
            r.target,
            r.message
        )),
        LogLine::Missed { count } => Some(format!("log     # missed {count} lines")),
        LogLine::Heartbeat => None,
    }
}
