//! Following membership (`GET /v1/watch/members`, see [`crate::admin::watch_members`])
//! for [`AdminClient`].

use super::watch::{LineStream, StreamLine};
use super::{AdminClient, ClientError};
use crate::admin::watch_members::MemberLine;

impl StreamLine for MemberLine {
    fn resume_index(&self) -> Option<u64> {
        // Nothing to resume from: a new stream starts with the whole list.
        None
    }
}

impl AdminClient {
    /// Follows the node's view of membership: the whole member list first (and again
    /// whenever the stream fell behind), then each change, and heartbeats.
    pub async fn watch_members(&self) -> Result<LineStream<MemberLine>, ClientError> {
        self.stream("/v1/watch/members").await
    }
}
