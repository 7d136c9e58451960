//! A subscriber's view of everything a node does to its state: key-value changes,
//! membership changes and user events, as a gossamer type rather than the channel
//! that carries them, so the channel can change without breaking embedders.

use tokio::sync::broadcast;

use crate::core::Event;

/// Why [`Subscription::recv`] returned no event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscriptionError {
    /// The subscriber fell behind and this many events were skipped; the next call
    /// goes on from the oldest event still held. Re-read what the events describe
    /// (`Node::list`, `Node::members`) to catch up.
    #[error("the subscriber fell behind: {0} events were skipped")]
    Missed(u64),
    /// The node stopped: no event will come.
    #[error("the node stopped")]
    Closed,
}

/// Every event of one node from the moment of subscribing ([`super::Node::subscribe`]).
#[derive(Debug)]
pub struct Subscription {
    rx: broadcast::Receiver<Event>,
}

impl Subscription {
    pub(super) fn new(rx: broadcast::Receiver<Event>) -> Self {
        Self { rx }
    }

    /// The next event; an error says how many were missed or that the node stopped.
    pub async fn recv(&mut self) -> Result<Event, SubscriptionError> {
        self.rx.recv().await.map_err(|e| match e {
            broadcast::error::RecvError::Lagged(n) => SubscriptionError::Missed(n),
            broadcast::error::RecvError::Closed => SubscriptionError::Closed,
        })
    }

    /// The next event if one is waiting, without waiting; `Ok(None)` when none is.
    pub fn try_recv(&mut self) -> Result<Option<Event>, SubscriptionError> {
        match self.rx.try_recv() {
            Ok(e) => Ok(Some(e)),
            Err(broadcast::error::TryRecvError::Empty) => Ok(None),
            Err(broadcast::error::TryRecvError::Lagged(n)) => Err(SubscriptionError::Missed(n)),
            Err(broadcast::error::TryRecvError::Closed) => Err(SubscriptionError::Closed),
        }
    }
}
