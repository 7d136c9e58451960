//! `gossamer event NAME [PAYLOAD]` and `gossamer events [--watch]`: send a user event
//! through a node, and show the events a node delivered.

use std::io::{IsTerminal as _, Read as _, Write};

use anyhow::Context as _;
use clap::Args;

use gossamer::admin::events::EventLine;
use gossamer::node::events::EventView;

use super::admin_conn::AdminConn;

/// `gossamer event`: send a user event to every live member.
#[derive(Debug, Clone, Args)]
pub struct EventArgs {
    /// The event's name (at most 128 bytes, no control characters)
    pub name: String,
    /// The payload (at most gossip.events.max_payload, 8 KiB by default); read from
    /// standard input when absent (unless it is a terminal) or "-"
    pub payload: Option<String>,
    /// Which node sends it.
    #[command(flatten)]
    pub conn: AdminConn,
}

/// `gossamer events`: the recent events a node delivered.
#[derive(Debug, Clone, Args)]
pub struct EventsArgs {
    /// Keep printing events as the node delivers them, until interrupted
    #[arg(long)]
    pub watch: bool,
    /// Only events after this index (of an earlier line)
    #[arg(long)]
    pub index: Option<u64>,
    /// With --watch: print only the latest event of each name within this many
    /// milliseconds of the first of a burst (Serf's coalescing)
    #[arg(long, value_name = "MS", requires = "watch")]
    pub coalesce: Option<u64>,
    /// Print the node's JSON instead
    #[arg(long)]
    pub json: bool,
    /// Which node to ask.
    #[command(flatten)]
    pub conn: AdminConn,
}

/// Runs `gossamer event`; a refusal (bounds, rate) is an error: exit code 1.
pub async fn run_event(args: EventArgs) -> anyhow::Result<i32> {
    let client = args.conn.client()?;
    let payload = payload_of(args.payload.as_deref())?;
    let sent = client
        .send_event(&args.name, &payload)
        .await
        .with_context(|| format!("cannot send event {:?}", args.name))?;
    println!("sent event {} as {}/{}", args.name, sent.sender, sent.seq);
    Ok(0)
}

/// The payload an event or query command was given: the argument, or standard input
/// for `-` or when none is given and standard input is not a terminal (else empty).
pub(super) fn payload_of(arg: Option<&str>) -> anyhow::Result<Vec<u8>> {
    Ok(match arg {
        Some("-") => read_stdin()?,
        Some(p) => p.as_bytes().to_vec(),
        None if std::io::stdin().is_terminal() => Vec::new(),
        None => read_stdin()?,
    })
}

fn read_stdin() -> anyhow::Result<Vec<u8>> {
    let mut buf = Vec::new();
    std::io::stdin()
        .read_to_end(&mut buf)
        .context("cannot read the payload from standard input")?;
    Ok(buf)
}

/// One event as the command prints it.
pub(super) fn render(v: &EventView) -> String {
    format!("{} {} {} {}", v.index, v.sender, v.name, v.payload)
}

/// Runs `gossamer events`.
pub async fn run_events(args: EventsArgs) -> anyhow::Result<i32> {
    let client = args.conn.client()?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if !args.watch {
        let events = client
            .events(args.index)
            .await
            .context("cannot list events")?;
        for v in &events {
            let line = match args.json {
                true => serde_json::to_string(v)?,
                false => render(v),
            };
            writeln!(out, "{line}")?;
        }
        out.flush()?;
        return Ok(0);
    }
    let mut stream = client
        .watch_events(args.index, args.coalesce)
        .await
        .context("cannot watch events")?;
    while let Some(line) = stream.next().await.context("event watch failed")? {
        let text = match (&line, args.json) {
            (_, true) => Some(serde_json::to_string(&line)?),
            (EventLine::Event(v), false) => Some(render(v)),
            (EventLine::Missed { count }, false) => Some(format!("# missed {count} events")),
            (EventLine::Heartbeat { .. }, false) => None,
        };
        if let Some(text) = text {
            writeln!(out, "{text}")?;
            out.flush()?;
        }
    }
    Ok(0)
}
