//! Following a node's log lines (`GET /v1/watch/logs`, see [`crate::admin::logs`]) for
//! [`AdminClient`].

use super::watch::{LineStream, StreamLine};
use super::{AdminClient, ClientError};
use crate::admin::logs::{LogLevel, LogLine};

impl StreamLine for LogLine {
    fn resume_index(&self) -> Option<u64> {
        // Log lines are not state: nothing to resume from.
        None
    }
}

impl AdminClient {
    /// Follows the node process's log lines at `level` or more severe as they are
    /// written, with heartbeats and counts of lines missed by falling behind.
    pub async fn watch_logs(&self, level: LogLevel) -> Result<LineStream<LogLine>, ClientError> {
        self.stream(&format!("/v1/watch/logs?level={}", level.as_str()))
            .await
    }
}
