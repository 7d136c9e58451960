//! Protocol messages: what nodes say to each other. Pure data; `crate::wire` encodes
//! them (CBOR with a protocol version) and bounds their decoding.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::core::events::UserEvent;
use crate::core::queries::Query;
use crate::core::state::{CausalContext, Entry, SealedRun};
use crate::core::NodeId;

/// A member's self-description, gossiped with its membership state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// Node id (must match the certificate of whoever speaks first-hand for it).
    pub id: NodeId,
    /// Advertised QUIC address (`host:port`).
    pub addr: String,
    /// Datacenter.
    pub dc: String,
    /// Zone within the datacenter.
    pub zone: String,
    /// Free-form tags.
    pub tags: BTreeMap<String, String>,
}

impl MemberInfo {
    /// Bytes this metadata takes, counted against `MAX_MEMBER_META`.
    pub fn meta_len(&self) -> usize {
        self.addr.len()
            + self.dc.len()
            + self.zone.len()
            + self
                .tags
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
    }
}

/// Upper bound on a member's metadata (address, dc, zone and tags together).
pub const MAX_MEMBER_META: usize = 512;

/// A member's liveness as known by a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum MemberStatus {
    /// Believed alive.
    Alive,
    /// Suspected of having failed; it may refute.
    Suspect,
    /// Confirmed failed.
    Dead,
    /// Left gracefully.
    Left,
}

impl MemberStatus {
    /// Lower-case name used in the API and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Alive => "alive",
            Self::Suspect => "suspect",
            Self::Dead => "dead",
            Self::Left => "left",
        }
    }
}

/// A membership claim: this member, at this incarnation, has this status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberState {
    /// Who and where. Shared: a member's metadata rarely changes, and every table and
    /// queued announcement that holds the state points at one copy.
    pub info: Arc<MemberInfo>,
    /// Incarnation number; only the member itself raises it.
    pub incarnation: u64,
    /// Status at that incarnation.
    pub status: MemberStatus,
}

/// One piece of gossip inside a datagram.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Item {
    /// A key-value update.
    Delta(Entry),
    /// Several key-value updates of one signed batch sharing their signature and path
    /// hashes ([`SealedRun`]); each is handled as an [`Item::Delta`].
    DeltaRun(SealedRun),
    /// A membership update.
    Member(MemberState),
    /// Liveness probe.
    Ping {
        /// Probe sequence number.
        seq: u64,
    },
    /// Answer to a probe.
    Ack {
        /// Sequence number of the probe answered.
        seq: u64,
    },
    /// Ask the receiver to probe `target` on our behalf and relay its `Ack` (SWIM
    /// indirect probe).
    PingReq {
        /// Our probe's sequence number, echoed in the relayed `Ack` or `Nack`.
        seq: u64,
        /// Member to probe.
        target: NodeId,
    },
    /// An indirect prober could not reach the target in time (Lifeguard): tells the
    /// requester its own links work.
    Nack {
        /// Sequence number of the requester's probe.
        seq: u64,
    },
    /// `accuser` suspects `id` at `incarnation` (Lifeguard counts distinct accusers to
    /// shorten the suspicion timeout).
    Suspect {
        /// Suspected member.
        id: NodeId,
        /// Its incarnation as known to the accuser.
        incarnation: u64,
        /// Who suspects it.
        accuser: NodeId,
    },
    /// A key-value update pushed down the broadcast tree: the receiver applies it and
    /// forwards it to the members strictly between itself and `until` in ring order
    /// (its subtree), each with its own part of that span.
    Tree {
        /// The update.
        entry: Entry,
        /// End (exclusive) of the receiver's span of the ring; the receiver's own id
        /// means the whole ring.
        until: NodeId,
    },
    /// Writes of one signed batch pushed down the tree together, sharing their
    /// signature and path hashes ([`SealedRun`]); each is handled as an [`Item::Tree`]
    /// with the same span.
    TreeRun {
        /// The writes.
        run: SealedRun,
        /// End (exclusive) of the receiver's span of the ring, as in [`Item::Tree`].
        until: NodeId,
    },
    /// The sender holds the write `(writer, counter)` (a lazy push: the id, not the
    /// update). A receiver that lacks it asks for it with [`Item::Graft`].
    IHave {
        /// Writer of the update.
        writer: NodeId,
        /// Its dot counter.
        counter: u64,
    },
    /// Asks the receiver for the entry holding the write `(writer, counter)`; answered
    /// with an [`Item::Delta`].
    Graft {
        /// Writer of the update.
        writer: NodeId,
        /// Its dot counter.
        counter: u64,
    },
    /// A user event pushed down its sender's broadcast tree (`until` ends the
    /// receiver's span, as in [`Item::Tree`]), or, without `until`, the answer to an
    /// [`Item::EventPull`]: the receiver forwards it down the span it holds in the
    /// sender's tree.
    Event {
        /// The event, signed by its sender.
        event: UserEvent,
        /// End (exclusive) of the receiver's span; `None` for a repair answer.
        until: Option<NodeId>,
    },
    /// The sender holds the user event `(sender, seq)` (lazy push of its id).
    EventHave {
        /// The event's sender.
        sender: NodeId,
        /// Its sequence number.
        seq: u64,
    },
    /// Asks the receiver for the user event `(sender, seq)`; answered with an
    /// [`Item::Event`] without a span.
    EventPull {
        /// The event's sender.
        sender: NodeId,
        /// Its sequence number.
        seq: u64,
    },
    /// A query, travelling as an [`Item::Event`] does (down its asker's tree, or
    /// without `until` as the answer to an [`Item::EventPull`]: queries and events share
    /// ids, announcements and repair).
    Query {
        /// The query, signed by its asker.
        query: Query,
        /// End (exclusive) of the receiver's span; `None` for a repair answer.
        until: Option<NodeId>,
    },
    /// Sent straight to a query's asker by a member the query reached and matches:
    /// the sender (the authenticated peer) will try to answer.
    QueryAck {
        /// The asker (the receiver).
        asker: NodeId,
        /// The query's sequence number.
        seq: u64,
    },
    /// Sent straight to a query's asker: the sender's (the authenticated peer's)
    /// answer.
    QueryResponse {
        /// The asker (the receiver).
        asker: NodeId,
        /// The query's sequence number.
        seq: u64,
        /// The answer.
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
    },
}

impl Item {
    /// True for the items that carry or name key-value data (as opposed to membership
    /// and probes): with locality they never cross datacenters on the gossip queue.
    pub fn is_data(&self) -> bool {
        matches!(
            self,
            Item::Delta(_)
                | Item::DeltaRun(_)
                | Item::Tree { .. }
                | Item::TreeRun { .. }
                | Item::IHave { .. }
                | Item::Graft { .. }
        )
    }
}

/// A gossip datagram: several items packed together.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Datagram {
    /// Items, highest priority first.
    pub items: Vec<Item>,
}

/// Why a sync stream was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncKind {
    /// First contact through a seed address.
    Join,
    /// Periodic anti-entropy.
    Periodic,
}

/// [`SyncFrame::Open::same`]: `ctx` is the receiver's own `ctx` of this exchange.
pub const OPEN_SAME_CTX: u8 = 1;
/// [`SyncFrame::Open::same`]: `stable` is the receiver's own `stable` of this exchange.
pub const OPEN_SAME_STABLE: u8 = 2;

/// Digest of a causal context and a fence ([`open_digest`]): 128 bits of SHA-256.
pub type OpenDigest = serde_bytes::ByteArray<OPEN_DIGEST_LEN>;

/// Bytes of an [`OpenDigest`].
pub const OPEN_DIGEST_LEN: usize = 16;

/// The digest an initiator's `Open` carries in place of its context `ctx` and fence
/// `stable`: SHA-256, domain-separated, over a canonical encoding of both (every writer
/// with its ranges, in id order), truncated to 128 bits. Finding two states with one digest
/// takes about 2^64 hashes; what a collision could do is in ARCHITECTURE.md
/// ("Anti-entropy", digest-first opening).
pub fn open_digest(ctx: &CausalContext, stable: &CausalContext) -> OpenDigest {
    let mut h = ring::digest::Context::new(&ring::digest::SHA256);
    h.update(b"gossamer/sync-open-digest/v1\0");
    for part in [ctx, stable] {
        h.update(&(part.0.len() as u64).to_be_bytes());
        for (writer, ranges) in &part.0 {
            let id = writer.as_str().as_bytes();
            h.update(&(id.len() as u64).to_be_bytes());
            h.update(id);
            let ranges = ranges.ranges();
            h.update(&(ranges.len() as u64).to_be_bytes());
            for (lo, hi) in ranges {
                h.update(&lo.to_be_bytes());
                h.update(&hi.to_be_bytes());
            }
        }
    }
    let mut out = [0u8; OPEN_DIGEST_LEN];
    out.copy_from_slice(&h.finish().as_ref()[..OPEN_DIGEST_LEN]);
    serde_bytes::ByteArray::new(out)
}

fn is_zero(x: &u8) -> bool {
    *x == 0
}

/// Frames on an anti-entropy (sync) stream.
///
/// The initiator sends `Open`, `End` (the `Open` may be a digest, and the exchange then
/// takes four turns when the responder does not share it: `core::sync`); the responder
/// answers with `Open`, its `Members`
/// (when the member digests differ, or always on a join), the `Entries` the initiator
/// lacks, `End`; the initiator then sends its `Members` (same rule), the `Entries` the
/// responder lacks and `End`. Each side joins the other's context only after it applied
/// everything the other sent, and only if the other sent everything it lacked (no
/// `Held`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncFrame {
    /// Opening: the sender's causal context and fence.
    Open {
        /// Why.
        kind: SyncKind,
        /// Everything the sender has seen.
        ctx: CausalContext,
        /// Unused since tombstones are collected at causal stability; still sent (as 0)
        /// so that nodes of the previous release decode our `Open` during an upgrade.
        #[serde(default)]
        gc_horizon_ms: u64,
        /// Dots every member had seen when the sender collected tombstones over them
        /// (`core::state::Fence`): a receiver whose context does not cover them rebases.
        #[serde(default)]
        stable: CausalContext,
        /// Digest of the sender's member table: lists are exchanged only if they differ.
        members_digest: u64,
        /// The sender reads an `Open` whose `same` is set. A responder compacts its `Open`
        /// only for an initiator that says so: nodes of the previous release ignore this
        /// field and would read an empty context as "has seen nothing".
        #[serde(default, rename = "cp", skip_serializing_if = "std::ops::Not::not")]
        compact: bool,
        /// Parts sent empty because they equal those of the receiver's `Open` in this
        /// exchange ([`OPEN_SAME_CTX`], [`OPEN_SAME_STABLE`]): in a quiet cluster every node
        /// has seen the same, and the responder's half of the opening shrinks from two
        /// contexts naming every writer to a few bytes.
        #[serde(default, rename = "sm", skip_serializing_if = "is_zero")]
        same: u8,
        /// Initiator only: [`open_digest`] of its context and fence, sent in place of both
        /// (then empty). In a quiet cluster every node has seen the same, and an idle
        /// exchange opens with a few bytes instead of a context naming every writer (#18).
        /// Sent only over a connection whose ALPN says the peer reads it
        /// (`identity::ALPN_DIGEST`): a node of the previous release ignores this field
        /// and would read the empty context as "has seen nothing".
        #[serde(default, rename = "dg", skip_serializing_if = "Option::is_none")]
        digest: Option<OpenDigest>,
        /// Responder only, answering a digest that differs from its own: this `Open` is
        /// whole, and the initiator answers with its own whole `Open` (which may name parts
        /// of this one in `same`), its members and the entries we lack; we end the
        /// exchange with our members and the entries it lacks (four turns instead of
        /// three).
        #[serde(default, rename = "ag", skip_serializing_if = "std::ops::Not::not")]
        again: bool,
        /// The sender reads [`SyncFrame::Held`]: a turn to it may hold entries back
        /// (at most `core::sync::ENTRIES_PER_TURN` are sent). Nodes of the previous release
        /// ignore this field and never get a `Held` (they would join a context naming
        /// entries they never received).
        #[serde(default, rename = "rh", skip_serializing_if = "std::ops::Not::not")]
        reads_held: bool,
    },
    /// Part of the sender's member list.
    Members(Vec<MemberState>),
    /// Entries the receiver lacks.
    Entries(Vec<Entry>),
    /// Entries the receiver lacks, the writes of one signed batch sharing their
    /// signature and path hashes ([`SealedRun`]); handled as `Entries`.
    Sealed(Vec<SealedRun>),
    /// Sent before `End` when this turn held back entries the receiver lacks (it sent
    /// the oldest, at most `core::sync::ENTRIES_PER_TURN`): the receiver must not join
    /// the sender's context after this exchange, and exchanges again soon. Only to a
    /// peer whose `Open` says it `reads_held`.
    Held,
    /// End of the sender's turn.
    End,
}

/// Exact CBOR-encoded size of a value (a pure computation, used for datagram packing).
pub fn encoded_len<T: Serialize>(value: &T) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    // Serialising our own types into a counter cannot fail.
    let _ = ciborium::into_writer(value, &mut c);
    c.0
}

/// Bytes a datagram adds around its items (version byte, struct and array headers).
pub const DATAGRAM_OVERHEAD: usize = 16;
