//! User events (`POST /v1/event/{name}`, `GET /v1/events`, `GET /v1/watch/events`, see
//! [`crate::admin::events`]) for [`AdminClient`].

use hyper::Method;

use super::watch::{LineStream, StreamLine};
use super::{decode, percent_encode, AdminClient, ClientError};
use crate::admin::events::{EventLine, EventSent};
use crate::node::events::EventView;

impl StreamLine for EventLine {
    fn resume_index(&self) -> Option<u64> {
        match self {
            EventLine::Event(v) => Some(v.index),
            EventLine::Heartbeat { index } => Some(*index),
            EventLine::Missed { .. } => None,
        }
    }
}

impl AdminClient {
    /// Sends a user event named `name` from the node; its id on success. A refusal
    /// (bad name 400, payload too large 413, rate exceeded 429) is a
    /// [`ClientError::Status`] with the node's message.
    pub async fn send_event(&self, name: &str, payload: &[u8]) -> Result<EventSent, ClientError> {
        if name.is_empty() {
            return Err(ClientError::Invalid("an event needs a name".into()));
        }
        let path = format!("/v1/event/{}", percent_encode(name, false));
        let resp = self
            .request(Method::POST, &path, Some(payload.to_vec()))
            .await?;
        if !resp.status.is_success() {
            return Err(self.error(resp));
        }
        decode(&resp.body)
    }

    /// The recent events the node delivered, oldest first; with `after`, those with
    /// a higher index.
    pub async fn events(&self, after: Option<u64>) -> Result<Vec<EventView>, ClientError> {
        let path = match after {
            Some(a) => format!("/v1/events?after={a}"),
            None => "/v1/events".to_string(),
        };
        self.get_json(&path).await
    }

    /// Follows the events the node delivers after `index` (none: from now on): the
    /// ones it still holds, then each new one, heartbeats and `missed` counts; with
    /// `coalesce_ms`, only the latest event of each name within that window of the
    /// first of a burst.
    pub async fn watch_events(
        &self,
        index: Option<u64>,
        coalesce_ms: Option<u64>,
    ) -> Result<LineStream<EventLine>, ClientError> {
        let mut path = "/v1/watch/events?".to_string();
        if let Some(i) = index {
            path.push_str(&format!("index={i}&"));
        }
        if let Some(ms) = coalesce_ms {
            path.push_str(&format!("coalesce_ms={ms}"));
        }
        self.stream(&path).await
    }
}
