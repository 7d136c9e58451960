//! The node's user events API: sending one, the recent ones, and watching them.

use super::*;
use crate::core::events::EventId;
use crate::node::events::{EventView, EventWatch, EventWatchError, RecentEvents};

impl Node {
    /// Sends a user event to every live member (this node's subscribers get it too).
    /// Refused, with the reason, for a name or payload beyond the bounds
    /// (`gossip.events`) or above this node's own event rate.
    pub fn event(&self, name: &str, payload: Vec<u8>) -> Result<EventId, NodeError> {
        self.check_running()?;
        Ok(self.with_engine(|e, now| e.send_event(now, name, payload))?)
    }

    /// The recent events this node delivered with an index above `after` (all it holds:
    /// `None`), oldest first.
    pub fn recent_events(&self, after: Option<u64>) -> Vec<EventView> {
        self.inner.recent.list(after)
    }

    /// Follows the events this node delivers after `index` (none: from now on).
    pub fn watch_events(&self, index: Option<u64>) -> Result<EventWatch, EventWatchError> {
        self.inner.recent.watch(index)
    }

    /// Counters of user events (the engine's).
    pub fn engine_event_stats(&self) -> crate::core::events::EventStats {
        self.inner.engine().event_stats().clone()
    }

    /// What the event handlers did (`[[handlers]]`).
    pub fn handler_stats(&self) -> &crate::node::handlers::HandlerStats {
        self.inner.handlers.stats()
    }

    /// The recent-events ring (its counters).
    pub fn recent_events_ring(&self) -> &RecentEvents {
        &self.inner.recent
    }
}
