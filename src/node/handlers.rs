//! Operator handlers for user events (`[[handlers]]`), as Serf's event handlers: a
//! command run for each delivered event whose name matches, with the payload on its
//! standard input and the event's metadata in its environment. Off unless configured.
//!
//! Bounds: at most `handler_concurrency` commands run at once on a node (an event that
//! finds every slot taken is not run for that handler, and is counted); each is killed
//! at its `timeout_ms`. A handler never blocks the node: it is started on its own task,
//! and the node only tries to take a slot.

use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt as _;
use tokio::sync::Semaphore;

use crate::core::events::{UserEvent, MAX_EVENT_NAME};
use crate::core::NodeId;

/// Default `timeout_ms` of a handler.
pub const DEFAULT_HANDLER_TIMEOUT_MS: u64 = 10_000;

/// Default `handler_concurrency`.
pub const DEFAULT_HANDLER_CONCURRENCY: usize = 4;

/// One `[[handlers]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandlerConfig {
    /// The events it runs for: a name, a prefix ending in `*` (`deploy-*`), or `*` for
    /// every event.
    pub event: String,
    /// The program and its arguments, run without a shell (`["sh", "-c", "..."]` for
    /// one). It gets the payload on standard input and `GOSSAMER_EVENT_NAME`,
    /// `GOSSAMER_EVENT_SENDER`, `GOSSAMER_EVENT_SEQ` and `GOSSAMER_NODE` in its
    /// environment.
    pub command: Vec<String>,
    /// Longest run (ms); the process is then killed.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
}

fn default_timeout() -> u64 {
    DEFAULT_HANDLER_TIMEOUT_MS
}

impl HandlerConfig {
    /// Whether this handler runs for an event named `name`.
    pub fn matches(&self, name: &str) -> bool {
        match self.event.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => name == self.event,
        }
    }

    /// Checks the entry; the error names the field (`handlers[i].…`) and the fix.
    pub fn validate(&self, i: usize) -> Result<(), String> {
        if self.event.is_empty() || self.event.len() > MAX_EVENT_NAME {
            return Err(format!(
                "handlers[{i}].event must be 1 to {MAX_EVENT_NAME} bytes: an event name, a \
                 prefix ending in '*', or '*' for every event"
            ));
        }
        if self.command.first().is_none_or(|p| p.is_empty()) {
            return Err(format!(
                "handlers[{i}].command must name a program (a list: [\"/path/to/program\", \
                 \"arg\"], or [\"sh\", \"-c\", \"...\"] for a shell)"
            ));
        }
        if self.timeout_ms == 0 || self.timeout_ms > 3_600_000 {
            return Err(format!(
                "handlers[{i}].timeout_ms must be 1 to 3600000 (got {})",
                self.timeout_ms
            ));
        }
        Ok(())
    }
}

/// What the handlers did.
#[derive(Debug, Default)]
pub struct HandlerStats {
    /// Commands started.
    pub started: AtomicU64,
    /// Commands that exited with status 0.
    pub succeeded: AtomicU64,
    /// Commands that could not start or exited with another status.
    pub failed: AtomicU64,
    /// Commands killed at their timeout.
    pub timed_out: AtomicU64,
    /// Runs skipped because `handler_concurrency` commands were running.
    pub skipped: AtomicU64,
}

/// The configured handlers of one node.
#[derive(Debug)]
pub struct Handlers {
    me: NodeId,
    list: Vec<HandlerConfig>,
    slots: Arc<Semaphore>,
    stats: Arc<HandlerStats>,
}

impl Handlers {
    /// Handlers for node `me`, at most `concurrency` running at once.
    pub fn new(me: NodeId, list: Vec<HandlerConfig>, concurrency: usize) -> Self {
        Self {
            me,
            list,
            slots: Arc::new(Semaphore::new(concurrency)),
            stats: Arc::default(),
        }
    }

    /// The counters.
    pub fn stats(&self) -> &HandlerStats {
        &self.stats
    }

    /// Starts every handler matching `e` that finds a free slot; never waits. Must be
    /// called within a tokio runtime.
    pub fn offer(&self, e: &UserEvent) {
        for h in self.list.iter().filter(|h| h.matches(&e.name)) {
            match self.slots.clone().try_acquire_owned() {
                Ok(slot) => {
                    self.stats.started.fetch_add(1, Ordering::Relaxed);
                    let run = run(h.clone(), e.clone(), self.me.clone(), self.stats.clone());
                    tokio::spawn(async move {
                        run.await;
                        drop(slot);
                    });
                }
                Err(_) => {
                    self.stats.skipped.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        event = %e.name,
                        handler = %h.event,
                        "every handler slot is taken (handler_concurrency): not run for this event"
                    );
                }
            }
        }
    }
}

/// Runs handler `h` for `e` to its end or its timeout, and counts how it ended.
async fn run(h: HandlerConfig, e: UserEvent, me: NodeId, stats: Arc<HandlerStats>) {
    let count = |c: &AtomicU64| c.fetch_add(1, Ordering::Relaxed);
    let mut child = match tokio::process::Command::new(&h.command[0])
        .args(&h.command[1..])
        .env("GOSSAMER_EVENT_NAME", &e.name)
        .env("GOSSAMER_EVENT_SENDER", e.sender.as_str())
        .env("GOSSAMER_EVENT_SEQ", e.seq.to_string())
        .env("GOSSAMER_NODE", me.as_str())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(c) => c,
        Err(err) => {
            count(&stats.failed);
            tracing::warn!(handler = %h.event, program = %h.command[0], error = %err, "event handler did not start");
            return;
        }
    };
    let timeout = Duration::from_millis(h.timeout_ms);
    let ran = tokio::time::timeout(timeout, async {
        if let Some(mut stdin) = child.stdin.take() {
            // A handler that does not read its input is not an error.
            let _ = stdin.write_all(&e.payload).await;
        }
        child.wait().await
    })
    .await;
    match ran {
        Ok(Ok(status)) if status.success() => {
            count(&stats.succeeded);
        }
        Ok(Ok(status)) => {
            count(&stats.failed);
            tracing::warn!(handler = %h.event, event = %e.name, %status, "event handler failed");
        }
        Ok(Err(err)) => {
            count(&stats.failed);
            tracing::warn!(handler = %h.event, event = %e.name, error = %err, "event handler failed");
        }
        Err(_) => {
            // Killed (and reaped) before it is counted: whoever reads the count finds
            // the process gone.
            let _ = child.kill().await;
            count(&stats.timed_out);
            tracing::warn!(handler = %h.event, event = %e.name, timeout_ms = h.timeout_ms, "event handler killed at its timeout");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handler(event: &str) -> HandlerConfig {
        HandlerConfig {
            event: event.into(),
            command: vec!["true".into()],
            timeout_ms: 1_000,
        }
    }

    #[test]
    fn names_prefixes_and_every_event_match() {
        assert!(handler("deploy").matches("deploy"));
        assert!(!handler("deploy").matches("deploy-web"));
        assert!(handler("deploy-*").matches("deploy-web"));
        assert!(!handler("deploy-*").matches("build"));
        assert!(handler("*").matches("anything"));
    }

    #[test]
    fn a_bad_entry_is_refused_naming_its_field() {
        let mut h = handler("");
        assert!(h.validate(2).unwrap_err().starts_with("handlers[2].event"));
        h.event = "x".into();
        h.command = Vec::new();
        assert!(h
            .validate(0)
            .unwrap_err()
            .starts_with("handlers[0].command"));
        h.command = vec!["true".into()];
        h.timeout_ms = 0;
        assert!(h
            .validate(0)
            .unwrap_err()
            .starts_with("handlers[0].timeout_ms"));
        h.timeout_ms = 5;
        assert!(h.validate(0).is_ok());
    }
}
