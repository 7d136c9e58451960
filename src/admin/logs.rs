//! `GET /v1/watch/logs?level=L`: the node process's log lines as they are written, as
//! newline-delimited JSON, one [`LogLine`] per line (Serf's `monitor`).
//!
//! The lines come from [`LogLayer`], a `tracing` layer the `gossamer` binary installs
//! beside its stderr writer: what the process logs (its `RUST_LOG` filter, by default
//! `warn,gossamer=info`) is what a watch can see; `level` only narrows it. A process that
//! installed no layer (a library embedder, a test) answers 501.
//!
//! - `{"type":"log","time_ms":..,"level":"info","target":"gossamer::node","message":".."}`
//!   for each line at `level` or more severe (default `info`);
//! - `{"type":"missed","count":N}` when the watch fell more than [`LOG_BUFFER`] lines
//!   behind and `N` lines were skipped (log lines are not state: nothing to re-list);
//! - `{"type":"heartbeat"}` after every [`HEARTBEAT`] of silence.
//!
//! Bounds: a line's message is cut at [`MAX_MESSAGE`] bytes; at most [`MAX_LOG_WATCHES`]
//! watches (429 beyond). Nothing is formatted while nobody watches, and a watcher that
//! stops reading stalls only its own task.

use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, OwnedSemaphorePermit, Semaphore};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

use super::error;
use super::watch::{stream_response, LineSource, HEARTBEAT};

/// Log watches one process serves at once.
pub const MAX_LOG_WATCHES: usize = 16;
/// Lines a watch may fall behind before it is told how many it missed.
pub const LOG_BUFFER: usize = 1_024;
/// Longest message kept (bytes); the rest is cut.
pub const MAX_MESSAGE: usize = 4_096;

/// Severity of a log line, most severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Something failed.
    Error,
    /// Something is wrong but the node goes on.
    Warn,
    /// What an operator wants to know.
    Info,
    /// What a developer wants to know.
    Debug,
    /// Everything.
    Trace,
}

impl LogLevel {
    /// Every level, most severe first.
    pub const ALL: [LogLevel; 5] = [
        LogLevel::Error,
        LogLevel::Warn,
        LogLevel::Info,
        LogLevel::Debug,
        LogLevel::Trace,
    ];

    /// Its name, as in `RUST_LOG` and in the JSON lines.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

impl std::str::FromStr for LogLevel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        LogLevel::ALL
            .into_iter()
            .find(|l| l.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("level {s:?}: use error, warn, info, debug or trace"))
    }
}

impl From<&Level> for LogLevel {
    fn from(l: &Level) -> Self {
        match *l {
            Level::ERROR => LogLevel::Error,
            Level::WARN => LogLevel::Warn,
            Level::INFO => LogLevel::Info,
            Level::DEBUG => LogLevel::Debug,
            _ => LogLevel::Trace,
        }
    }
}

/// One log line as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRecord {
    /// When it was written (Unix milliseconds).
    pub time_ms: u64,
    /// Its severity.
    pub level: LogLevel,
    /// Where it comes from (`gossamer::node::runtime`, ...).
    pub target: String,
    /// The message, then the event's other fields as `name=value`.
    pub message: String,
}

/// One line of a log watch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LogLine {
    /// A log line.
    Log(LogRecord),
    /// The watch fell behind and this many lines were skipped.
    Missed {
        /// Lines skipped.
        count: u64,
    },
    /// Nothing was logged for a while.
    Heartbeat,
}

/// The process's log lines, for watches; set once by [`LogLayer::install`].
static FEED: OnceLock<broadcast::Sender<LogRecord>> = OnceLock::new();

/// A `tracing` layer that hands each event to the log watches of this process.
#[derive(Debug, Clone)]
pub struct LogLayer {
    tx: broadcast::Sender<LogRecord>,
}

impl LogLayer {
    /// The process's layer: add it to the subscriber beside the stderr writer. Every
    /// call returns a layer over the same feed.
    pub fn install() -> Self {
        let tx = FEED
            .get_or_init(|| broadcast::channel(LOG_BUFFER).0)
            .clone();
        Self { tx }
    }
}

impl<S: Subscriber> Layer<S> for LogLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if self.tx.receiver_count() == 0 {
            return;
        }
        let meta = event.metadata();
        let mut text = Text::default();
        event.record(&mut text);
        let time_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let _ = self.tx.send(LogRecord {
            time_ms,
            level: meta.level().into(),
            target: meta.target().to_string(),
            message: text.finish(),
        });
    }
}

/// An event's fields as text: the message first, then `name=value`, cut at
/// [`MAX_MESSAGE`].
#[derive(Default)]
struct Text {
    message: String,
    fields: String,
}

impl Text {
    fn finish(mut self) -> String {
        if !self.fields.is_empty() {
            if !self.message.is_empty() {
                self.message.push(' ');
            }
            self.message.push_str(&self.fields);
        }
        if self.message.len() > MAX_MESSAGE {
            let mut end = MAX_MESSAGE;
            while !self.message.is_char_boundary(end) {
                end -= 1;
            }
            self.message.truncate(end);
        }
        self.message
    }
}

impl Visit for Text {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, "{}{}={value}", sep(&self.fields), field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if self.message.len() + self.fields.len() > MAX_MESSAGE {
            return;
        }
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(
                self.fields,
                "{}{}={value:?}",
                sep(&self.fields),
                field.name()
            );
        }
    }
}

fn sep(s: &str) -> &'static str {
    if s.is_empty() {
        ""
    } else {
        " "
    }
}

/// Query of `GET /v1/watch/logs`.
#[derive(Debug, Deserialize)]
pub(super) struct LogQuery {
    level: Option<String>,
}

/// `GET /v1/watch/logs`, with the router's bound on open log watches.
pub(super) async fn watch_logs(q: Query<LogQuery>, slots: Arc<Semaphore>) -> Response {
    let level = match q.level.as_deref().map(str::parse::<LogLevel>) {
        None => LogLevel::Info,
        Some(Ok(level)) => level,
        Some(Err(e)) => return error(StatusCode::BAD_REQUEST, e),
    };
    let Some(feed) = FEED.get() else {
        return error(
            StatusCode::NOT_IMPLEMENTED,
            "this process does not capture its log lines (the gossamer binary does)",
        );
    };
    let Ok(slot) = slots.try_acquire_owned() else {
        return error(
            StatusCode::TOO_MANY_REQUESTS,
            format!("this node already serves {MAX_LOG_WATCHES} log watches; retry later"),
        );
    };
    stream_response(LogSource {
        rx: feed.subscribe(),
        level,
        _slot: slot,
    })
}

/// A log watch's lines: those at `level` or above, and what it missed.
struct LogSource {
    rx: broadcast::Receiver<LogRecord>,
    level: LogLevel,
    _slot: OwnedSemaphorePermit,
}

impl LineSource for LogSource {
    type Line = LogLine;

    async fn next_line(&mut self) -> Option<LogLine> {
        loop {
            return match tokio::time::timeout(HEARTBEAT, self.rx.recv()).await {
                Err(_) => Some(LogLine::Heartbeat),
                Ok(Ok(r)) if r.level <= self.level => Some(LogLine::Log(r)),
                Ok(Ok(_)) => continue,
                Ok(Err(RecvError::Lagged(count))) => Some(LogLine::Missed { count }),
                Ok(Err(RecvError::Closed)) => None,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    #[test]
    fn a_log_event_becomes_one_record_with_its_fields_and_a_cut_message() {
        let layer = LogLayer::install();
        let mut rx = layer.tx.subscribe();
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(peer = "n2", tries = 3, "dial failed");
            tracing::info!("{}", "x".repeat(MAX_MESSAGE + 10));
        });
        let r = rx.try_recv().unwrap();
        assert_eq!(r.level, LogLevel::Warn);
        assert_eq!(r.message, "dial failed peer=n2 tries=3");
        assert!(r.target.contains("logs"), "{}", r.target);
        let long = rx.try_recv().unwrap();
        assert_eq!(long.message.len(), MAX_MESSAGE);
        assert_eq!(
            serde_json::to_value(LogLine::Log(r)).unwrap()["type"],
            "log"
        );
    }

    #[tokio::test]
    async fn a_log_watch_streams_the_lines_at_its_level_and_refuses_an_unknown_level() {
        use crate::admin::client::{AdminClient, ClientError};
        use crate::admin::testing::TestServer;

        let layer = LogLayer::install();
        let server = TestServer::start(None).await;
        let client = AdminClient::new(server.addr.to_string(), None);
        let err = client
            .stream::<LogLine>("/v1/watch/logs?level=loud")
            .await
            .err()
            .unwrap();
        assert!(
            matches!(&err, ClientError::Status { status: 400, message } if message.contains("warn")),
            "{err:?}"
        );
        // Subscribed once the answer's head is here.
        let mut watch = client.watch_logs(LogLevel::Warn).await.unwrap();
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(target: "gossamer::test", "quiet");
            tracing::error!(target: "gossamer::test", "loud");
        });
        // Other tests of this process may log through the same feed meanwhile.
        loop {
            match watch.next().await.unwrap().unwrap() {
                LogLine::Log(r) if r.target == "gossamer::test" => {
                    assert_eq!((r.level, r.message.as_str()), (LogLevel::Error, "loud"));
                    break;
                }
                _ => continue,
            }
        }
    }

    #[test]
    fn levels_order_from_most_severe() {
        assert!(LogLevel::Error < LogLevel::Warn && LogLevel::Info < LogLevel::Debug);
        assert_eq!(LogLevel::from(&Level::DEBUG), LogLevel::Debug);
    }
}
