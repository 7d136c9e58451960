//! User events in the simulator: sending them, and recording every delivery so tests
//! can check that each event reached every live node exactly once, and how fast.

use std::collections::BTreeMap;

use super::Sim;
use crate::core::events::{EventError, EventId, UserEvent};
use crate::core::proto::{Datagram, Item};

/// Every user event sent in a run and every delivery of one.
#[derive(Debug, Clone, Default)]
pub struct EventLog {
    /// When each event was sent (µs) and by which node.
    sent: BTreeMap<EventId, (u64, usize)>,
    /// Per event, each delivery: node and time (µs). A node twice in a list delivered
    /// the event twice.
    delivered: BTreeMap<EventId, Vec<(usize, u64)>>,
}

impl EventLog {
    pub(super) fn record(&mut self, node: usize, e: &UserEvent, at_us: u64) {
        self.delivered
            .entry(e.id())
            .or_default()
            .push((node, at_us));
    }

    /// Events sent, with their sender and time (µs).
    pub fn sent(&self) -> impl Iterator<Item = (&EventId, usize, u64)> {
        self.sent.iter().map(|(id, (t, n))| (id, *n, *t))
    }

    /// Deliveries of `id`: node and time (µs).
    pub fn deliveries(&self, id: &EventId) -> &[(usize, u64)] {
        self.delivered.get(id).map_or(&[], Vec::as_slice)
    }

    /// How many times `node` delivered `id`.
    pub fn times_delivered(&self, id: &EventId, node: usize) -> usize {
        self.deliveries(id)
            .iter()
            .filter(|(n, _)| *n == node)
            .count()
    }

    /// For every event sent, the time from sending to its delivery at the last of
    /// `nodes` (µs), or `None` if one of them never delivered it.
    pub fn spread_us(&self, nodes: &[usize]) -> Vec<Option<u64>> {
        self.sent
            .iter()
            .map(|(id, (t0, _))| {
                let d = self.deliveries(id);
                nodes
                    .iter()
                    .map(|n| d.iter().find(|(m, _)| m == n).map(|(_, t)| t - t0))
                    .try_fold(0, |acc, t| t.map(|t| acc.max(t)))
            })
            .collect()
    }
}

impl Sim {
    /// Sends a user event from `node` now (its engine checks bounds and rate). Panics
    /// if the node is down: sending from a crashed node is a mistake of the test.
    pub fn send_event(
        &mut self,
        node: usize,
        name: &str,
        payload: Vec<u8>,
    ) -> Result<EventId, EventError> {
        let now = self.now_of(node);
        let at = self.now_us;
        let e = self.nodes[node]
            .engine
            .as_mut()
            .expect("events are sent from a running node");
        let id = e.send_event(now, name, payload)?;
        self.events.sent.insert(id.clone(), (at, node));
        self.drain(node);
        Ok(id)
    }

    /// Sends `items` from node `from` to node `to` as one datagram through the network
    /// model, whatever they hold: what a hostile member can send.
    pub fn inject_datagram(&mut self, from: usize, to: usize, items: Vec<Item>) {
        self.send_datagram(from, to, Datagram { items });
    }

    /// Every user event sent and delivered so far.
    pub fn events(&self) -> &EventLog {
        &self.events
    }
}
