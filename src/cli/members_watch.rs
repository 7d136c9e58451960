//! `gossamer members --watch`: the member table, then each membership change as the node
//! applies it, until interrupted.

use std::io::Write;

use anyhow::Context as _;

use gossamer::admin::client::AdminClient;
use gossamer::admin::watch_members::MemberLine;
use gossamer::node::{MemberChange, MemberChangeKind};

/// Follows `client`'s node; returns the exit code once the stream ends (1: the node
/// closed it or went silent).
pub async fn run(client: &AdminClient, json: bool) -> anyhow::Result<i32> {
    let mut stream = client
        .watch_members()
        .await
        .context("cannot watch members")?;
    loop {
        let line = match stream.next().await {
            Ok(Some(line)) => line,
            Ok(None) => {
                eprintln!("the node ended the member watch (it is shutting down?)");
                return Ok(1);
            }
            Err(e) => {
                eprintln!("member watch failed: {e}");
                return Ok(1);
            }
        };
        let text = if json {
            format!("{}\n", serde_json::to_string(&line)?)
        } else {
            match &line {
                MemberLine::Members { members } => super::table::members_table(members),
                MemberLine::Change(c) => change_text(c),
                MemberLine::Heartbeat => continue,
            }
        };
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        out.write_all(text.as_bytes())?;
        out.flush()?;
    }
}

/// One line per change: who, what, and the status it moved from and to.
pub(super) fn change_text(c: &MemberChange) -> String {
    let m = &c.member;
    let what = match c.kind {
        MemberChangeKind::Joined => "joined",
        MemberChangeKind::Updated => "updated",
        MemberChangeKind::Refuted => "refuted a suspicion",
        MemberChangeKind::Reaped => "forgotten",
    };
    let status = match &c.old_status {
        Some(old) if *old != m.status => format!("{old} -> {}", m.status),
        _ => m.status.clone(),
    };
    format!(
        "{} {what}: {status} (incarnation {}, {}, dc {})\n",
        m.id, m.incarnation, m.addr, m.dc
    )
}
