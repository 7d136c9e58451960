//! `gossamer monitor`: what a node sees happen, as it happens: membership changes and the
//! user events it delivers, in one stream of lines, until interrupted.

use std::io::Write;

use anyhow::Context as _;
use clap::Args;

use gossamer::admin::events::EventLine;
use gossamer::admin::watch_members::MemberLine;

use super::admin_conn::AdminConn;

/// `gossamer monitor`: follow a node's membership changes and user events.
#[derive(Debug, Clone, Args)]
pub struct MonitorArgs {
    /// Print each line as JSON (`{"members": ..}` or `{"events": ..}` around the node's
    /// own line) instead of text
    #[arg(long)]
    pub json: bool,
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
