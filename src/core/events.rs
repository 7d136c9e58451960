//! User events: what they are, their bounds and the bytes their sender signs.
//!
//! A user event is a named, small, signed message that every live member delivers once
//! to its subscribers (Serf's user events). How events travel (a broadcast tree with
//! lazy repair), how duplicates are recognised and how floods are capped is the
//! engine's part `engine/events.rs`; this module holds only the data and its checks,
//! shared by the engine, the wire encoding and the node's API.

use serde::{Deserialize, Serialize};

use crate::core::state::Signature;
use crate::core::{ConfigError, NodeId};

/// Longest event name (bytes).
pub const MAX_EVENT_NAME: usize = 128;

/// Largest `max_payload` a configuration may set (bytes): an event is held for repair
/// and in every node's recent buffer, so it must stay small.
pub const MAX_PAYLOAD_LIMIT: usize = 64 * 1024;

/// A user event as it travels and as subscribers receive it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserEvent {
    /// The member that sent it (its certificate verifies `sig`).
    pub sender: NodeId,
    /// The sender's sequence number; `(sender, seq)` identifies the event. Rises with
    /// every event and starts each life of the sender above its wall clock (`ms << 10`),
    /// so a restarted sender never reuses an id.
    pub seq: u64,
    /// The event's name (at most [`MAX_EVENT_NAME`] bytes, no control characters).
    pub name: String,
    /// Opaque payload (at most the receiver's `max_payload`).
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    /// The sender's signature over [`UserEvent::signed_bytes`].
    #[serde(default, skip_serializing_if = "Signature::is_default")]
    pub sig: Signature,
}

/// An event's identity: sender and sequence number.
pub type EventId = (NodeId, u64);

/// Domain tag of the signed bytes: no write's or other message's bytes can equal an
/// event's.
const EVENT_TAG: &[u8] = b"gossamer/event/v1\0";

impl UserEvent {
    /// The event's id.
    pub fn id(&self) -> EventId {
        (self.sender.clone(), self.seq)
    }

    /// What the sender signs: a domain tag, then sender, sequence number, name and
    /// payload, each length-prefixed, so no two events share bytes.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.name.len() + self.payload.len());
        out.extend_from_slice(EVENT_TAG);
        for part in [self.sender.as_str().as_bytes(), self.name.as_bytes()] {
            out.extend_from_slice(&(part.len() as u64).to_be_bytes());
            out.extend_from_slice(part);
        }
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&(self.payload.len() as u64).to_be_bytes());
        out.extend_from_slice(&self.payload);
        out
    }

    /// Checks the name and payload against the bounds (`max_payload` is ours).
    pub fn check(&self, max_payload: usize) -> Result<(), EventError> {
        check_event(&self.name, self.payload.len(), max_payload)
    }
}

/// Checks an event's name and payload size against the bounds.
pub fn check_event(name: &str, payload_len: usize, max_payload: usize) -> Result<(), EventError> {
    if name.is_empty() {
        return Err(EventError::EmptyName);
    }
    if name.len() > MAX_EVENT_NAME {
        return Err(EventError::NameTooLong { len: name.len() });
    }
    if name.chars().any(char::is_control) {
        return Err(EventError::NameControl);
    }
    if payload_len > max_payload {
        return Err(EventError::PayloadTooLarge {
            len: payload_len,
            max: max_payload,
        });
    }
    Ok(())
}

/// Why an event was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// The name is empty.
    #[error("event name is empty")]
    EmptyName,
    /// The name is longer than [`MAX_EVENT_NAME`].
    #[error("event name is {len} bytes, limit {MAX_EVENT_NAME}")]
    NameTooLong {
        /// Its length.
        len: usize,
    },
    /// The name holds a control character.
    #[error("event name holds a control character")]
    NameControl,
    /// The payload is larger than `gossip.events.max_payload`.
    #[error("event payload is {len} bytes, limit {max} (gossip.events.max_payload)")]
    PayloadTooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// This node already sent as many events as its own rate allows.
    #[error("event rate exceeded: at most {per_sec} events per second with a burst of {burst} (gossip.events.per_sender_per_sec, per_sender_burst); try again later")]
    RateLimited {
        /// Sustained rate.
        per_sec: u32,
        /// Burst.
        burst: u32,
    },
}

/// Tuning of user events: the `[gossip.events]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventConfig {
    /// Largest payload accepted, sent or received (bytes).
    pub max_payload: usize,
    /// Events per second one sender may have delivered here (a token bucket per sender;
    /// the local sender refuses above it, receivers drop and count).
    pub per_sender_per_sec: u32,
    /// Events one sender may send at once before the rate applies.
    pub per_sender_burst: u32,
    /// Events held to answer repair requests (the most recent).
    pub keep: usize,
    /// How long an event is held to answer repair requests (ms).
    pub keep_ms: u64,
    /// How long an event's id is remembered to refuse duplicates (ms); a copy that
    /// arrives later than this is dropped as stale (counted), never delivered twice.
    pub seen_ms: u64,
}

impl Default for EventConfig {
    fn default() -> Self {
        Self {
            max_payload: 8 * 1024,
            per_sender_per_sec: 50,
            per_sender_burst: 100,
            keep: 1_024,
            keep_ms: 60_000,
            seen_ms: 600_000,
        }
    }
}

impl EventConfig {
    /// Checks every field; the error names the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field: &'static str, problem: String| ConfigError { field, problem };
        if self.max_payload == 0 || self.max_payload > MAX_PAYLOAD_LIMIT {
            return Err(bad(
                "events.max_payload",
                format!(
                    "must be between 1 and {MAX_PAYLOAD_LIMIT} bytes (got {})",
                    self.max_payload
                ),
            ));
        }
        for (field, v) in [
            ("events.per_sender_per_sec", self.per_sender_per_sec as u64),
            ("events.per_sender_burst", self.per_sender_burst as u64),
            ("events.keep", self.keep as u64),
            ("events.keep_ms", self.keep_ms),
        ] {
            if v == 0 {
                return Err(bad(field, "must be greater than 0".into()));
            }
        }
        if self.seen_ms < self.keep_ms {
            return Err(bad(
                "events.seen_ms",
                format!(
                    "({}) must be at least keep_ms ({}): an event still held for repair \
                     must still be recognised as a duplicate",
                    self.seen_ms, self.keep_ms
                ),
            ));
        }
        Ok(())
    }
}

/// Counters of user events at one node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EventStats {
    /// Events this node sent.
    pub sent: u64,
    /// Local sends refused by our own rate limit.
    pub send_refused: u64,
    /// Events delivered to subscribers (ours included).
    pub delivered: u64,
    /// Copies of events already delivered (dropped).
    pub duplicates: u64,
    /// Events older than the dedup window (dropped, never delivered twice).
    pub stale: u64,
    /// Events dropped by the per-sender rate limit.
    pub rate_limited: u64,
    /// Events refused for their name or payload size.
    pub oversized: u64,
    /// Events refused for their signature (forged, altered, unknown or revoked sender).
    pub bad_signature: u64,
    /// Repair requests sent (an id heard of, the event missing).
    pub pulls_sent: u64,
    /// Repair requests answered.
    pub pulls_answered: u64,
    /// Missing events given up after every retry.
    pub pulls_abandoned: u64,
    /// Ids heard of while too many were missing already (dropped).
    pub pulls_dropped: u64,
}
