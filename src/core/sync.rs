//! One anti-entropy exchange, as a sans-IO state machine.
//!
//! An exchange is three turns over a reliable stream (four after a digest the responder
//! does not share, below; ARCHITECTURE.md, "Anti-entropy"):
//!
//! ```text
//! initiator:  Open, End
//! responder:  Open, Members*, Entries* (what the initiator lacks), End
//! initiator:  Members*, Entries* (what the responder lacks), End
//! ```
//!
//! The responder's `Open` leaves out its context and fence where they equal the
//! initiator's (`SyncFrame::Open::same`), for an initiator that reads such an `Open`
//! (`compact`): in a quiet cluster every node has seen the same, and this halves the
//! bytes of an idle exchange, whose two `Open`s each name every writer (#18).
//!
//! **Digest-first** (#18): to a peer that reads one (its driver knows: the runtime from
//! the connection's ALPN, `identity::ALPN_DIGEST`), a periodic exchange opens with a
//! digest of the initiator's context and fence instead of both. A responder with the same
//! digest reads the `Open` as naming its own context and fence and answers as above (compact: an idle exchange costs a few dozen bytes, however
//! many writers there are); one with another digest answers with its whole `Open`
//! (`again`), and the exchange runs with the roles of the `Open`s swapped:
//!
//! ```text
//! initiator:  Open{digest}, End
//! responder:  Open{ctx, stable, again}, End
//! initiator:  Open{ctx, stable}, Members*, Entries* (what the responder lacks), End
//! responder:  Members*, Entries* (what the initiator lacks), End
//! ```
//!
//! **Held back** (#18): a turn sends at most [`ENTRIES_PER_TURN`] entries to a peer whose
//! `Open` says it reads `Held`, the oldest writes first, and ends with `Held` if it left
//! some out. The peer then does not join our context (it names writes it never got) and
//! starts its next exchange at once, with the context it has by then, and with us if we
//! brought it news (we have the rest). So a node far behind, during a burst or after a
//! partition, pulls in bounded steps what it still lacks, instead of one reply computed
//! at the start that resends, seconds later, what the broadcast tree delivered in the
//! meantime. An exchange that brought at least [`FAR_BEHIND`] entries we lacked, without
//! `Held`, is followed a quarter interval later instead of a whole one: what the tree
//! lost in a burst is not left waiting an interval at a time. A node backed off (bandwidth
//! short) takes whole turns and brings nothing forward, as before.
//!
//! [`Exchange`] owns the sequencing: which frame may come when, what to answer at the end
//! of the peer's turn, the check that the peer's first listed member is the peer itself,
//! and when the exchange is complete. The [`Engine`] only applies what a frame carries.
//! The runtime (QUIC streams) and the simulator (scheduled turns) both drive this type,
//! so the simulator runs the protocol the nodes run; they only move bytes and pace them
//! with [`Exchange::admit`].

use thiserror::Error;

use super::engine::{compact_open, Engine, FenceCheck, Received};
use super::proto::{SyncFrame, SyncKind, OPEN_SAME_CTX, OPEN_SAME_STABLE};
use super::state::{CausalContext, RebaseProbe};
use super::{NodeId, Now};

/// Most entries in one `Entries` frame (frames also stop at about 512 KiB).
pub const ENTRIES_PER_FRAME: usize = 1024;

/// Most entries one turn sends to a peer that reads `SyncFrame::Held`; the rest wait for
/// the exchange the peer starts at once after this one, against its context as it is
/// then (see the module documentation).
pub const ENTRIES_PER_TURN: usize = 1024;

/// An exchange that brought at least this many entries we lacked shows the tree is not
/// keeping up (a burst overran it): the next exchange comes a quarter interval later
/// instead of a whole one. Fewer are ordinary losses, which grafts and the next interval
/// repair (following up on those too made the simulator's worst propagation delays
/// longer under loss: `scenarios/swim-loss-100.toml` 615 → 2,194 ms).
pub const FAR_BEHIND: usize = 64;

/// Why an exchange was abandoned on a peer's frame.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SyncError {
    /// The first member the peer listed is not the peer its certificate names.
    #[error("peer {peer} lists {claimed} as itself")]
    IdentityMismatch {
        /// The authenticated peer.
        peer: NodeId,
        /// Whom its first `Members` entry names.
        claimed: NodeId,
    },
    /// A frame arrived before the peer's `Open`.
    #[error("peer {peer} sent a frame before its Open")]
    NoOpen {
        /// The peer.
        peer: NodeId,
    },
    /// The peer sent a second `Open`.
    #[error("peer {peer} sent a second Open")]
    SecondOpen {
        /// The peer.
        peer: NodeId,
    },
    /// The peer's `Open` says parts of it are ours, but we sent no `Open` before it.
    #[error("peer {peer} sent an Open naming parts of an Open we did not send")]
    BadSame {
        /// The peer.
        peer: NodeId,
    },
    /// A digest `Open` where only an initiator's first `Open` may be one, or one that
    /// also carries a context, a fence or `same`.
    #[error("peer {peer} sent a digest Open out of place")]
    BadDigest {
        /// The peer.
        peer: NodeId,
    },
    /// An `Open` marked `again` that answers no digest `Open` of ours.
    #[error("peer {peer} answered a digest we did not send")]
    BadAgain {
        /// The peer.
        peer: NodeId,
    },
    /// A frame arrived after the exchange was complete.
    #[error("peer {peer} sent a frame after the exchange ended")]
    AfterEnd {
        /// The peer.
        peer: NodeId,
    },
}

/// Which side of the exchange we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// We opened the stream.
    Initiator,
    /// The peer opened it.
    Responder,
}

/// What to do after a frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Keep reading the peer's turn (or, once [`Exchange::is_done`], stop).
    Read,
    /// The peer's turn ended: send this whole turn of ours (it ends with `End`).
    Send(Vec<SyncFrame>),
}

/// What the bandwidth bucket allows for a stream's next bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Send this many bytes now (they are paid for).
    Send(usize),
    /// Nothing before this monotonic instant (µs); ask again then.
    WaitUntil(u64),
}

/// One side of an anti-entropy exchange in progress.
#[derive(Debug, Clone)]
pub struct Exchange {
    peer: NodeId,
    role: Role,
    /// Why it was opened; a responder learns it from the peer's `Open`.
    kind: Option<SyncKind>,
    /// `Open`s of the peer's we have read (two in the four-turn exchange).
    opens_read: u8,
    /// The peer's context and member digest, from its `Open`.
    peer_ctx: Option<CausalContext>,
    peer_digest: u64,
    /// The context and fence our `Open` sent (or, for a digest `Open`, named), which the
    /// peer's later `Open` may name instead of repeating them (`SyncFrame::Open::same`).
    sent: Option<(CausalContext, CausalContext)>,
    /// Initiator: our `Open` was a digest.
    sent_digest: bool,
    /// The digests differed: the exchange takes four turns, the responder's whole `Open`
    /// first (see the module documentation).
    swapped: bool,
    /// The peer's fence, if it reads a compacted `Open` and ours answers its whole one (we
    /// compare ours with it and with its context): the responder's, or in the four-turn
    /// exchange the initiator's.
    peer_compact: Option<CausalContext>,
    /// The peer's first `Members` frame was checked against its identity.
    identity_checked: bool,
    /// Entries of the peer's we refused: their dots must not enter our context, so the
    /// peer's context is not joined.
    refused: usize,
    /// The peer's `Open` says it reads `Held`: our turns to it send at most
    /// [`ENTRIES_PER_TURN`] entries.
    peer_reads_held: bool,
    /// The peer held entries back (`Held`): its context is not joined, and we exchange
    /// again at once.
    peer_held: bool,
    /// Entries of the peer's that changed our state: at least [`FAR_BEHIND`], and the
    /// next exchange comes sooner.
    applied: usize,
    /// The rebase this exchange runs, if we are behind the peer's fence
    /// (`core::state::rebase`).
    probe: Option<RebaseProbe>,
    /// We opened the exchange and found we are behind the peer's fence: the rebase runs
    /// in the next one, and this one does not join the peer's context.
    rebase_next: bool,
    /// Turns of the peer's we have read to their `End`.
    turns_read: u8,
    done: bool,
}

impl Exchange {
    /// Opens an exchange with `peer`: returns it and our first turn. `peer_reads_digest`:
    /// the peer runs a release that reads a digest `Open` (see the module documentation);
    /// a node of the previous release must never get one.
    pub fn initiate(
        engine: &mut Engine,
        now: Now,
        peer: NodeId,
        kind: SyncKind,
        peer_reads_digest: bool,
    ) -> (Self, Vec<SyncFrame>) {
        // Our unsigned writes are signed (and sent) before any frame can carry them.
        engine.seal_writes();
        engine.sync_started();
        let mut ex = Self::new(peer, Role::Initiator, Some(kind));
        ex.probe = engine.sync_probe_for(now, &ex.peer);
        // A rebase's `Open` hides its candidates: it is never a digest.
        let digest = match ex.probe {
            None if peer_reads_digest => engine.sync_digest_open(kind),
            _ => None,
        };
        let open = match digest {
            Some(open) => {
                engine.sync_digest_counted(None);
                ex.sent = Some(engine.sync_own());
                ex.sent_digest = true;
                open
            }
            None => {
                let open = engine.sync_open_frame(kind, ex.probe.as_ref());
                if let SyncFrame::Open { ctx, stable, .. } = &open {
                    ex.sent = Some((ctx.clone(), stable.clone()));
                }
                open
            }
        };
        (ex, vec![open, SyncFrame::End])
    }

    /// The responder's side of an exchange `peer` opened; its first frame must be `Open`.
    pub fn accept(peer: NodeId) -> Self {
        Self::new(peer, Role::Responder, None)
    }

    fn new(peer: NodeId, role: Role, kind: Option<SyncKind>) -> Self {
        Self {
            peer,
            role,
            kind,
            opens_read: 0,
            peer_ctx: None,
            peer_digest: 0,
            sent: None,
            sent_digest: false,
            swapped: false,
            peer_compact: None,
            identity_checked: false,
            refused: 0,
            peer_reads_held: false,
            peer_held: false,
            applied: 0,
            probe: None,
            rebase_next: false,
            turns_read: 0,
            done: false,
        }
    }

    /// The peer.
    pub fn peer(&self) -> &NodeId {
        &self.peer
    }

    /// Our side.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Why the exchange runs (a responder treats it as periodic until the `Open`).
    pub fn kind(&self) -> SyncKind {
        self.kind.unwrap_or(SyncKind::Periodic)
    }

    /// True once the exchange completed on our side: nothing more to read or send.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Handles one frame of the peer's. At the end of the peer's turn this returns our
    /// answering turn, if any; an error means the exchange must be abandoned
    /// ([`Exchange::fail`]).
    pub fn on_frame(
        &mut self,
        engine: &mut Engine,
        now: Now,
        frame: SyncFrame,
    ) -> Result<Step, SyncError> {
        engine.seal_writes();
        if self.done {
            return Err(SyncError::AfterEnd {
                peer: self.peer.clone(),
            });
        }
        match frame {
            SyncFrame::Open {
                kind,
                mut ctx,
                mut stable,
                members_digest,
                compact,
                same,
                digest,
                again,
                reads_held,
                ..
            } => {
                // One `Open` per side, but for the initiator's whole one after a digest
                // the responder did not share (the four-turn exchange).
                let expected = match self.opens_read {
                    0 => true,
                    1 => {
                        self.role == Role::Responder
                            && self.swapped
                            && self.turns_read == 1
                            && self.peer_ctx.is_none()
                    }
                    _ => false,
                };
                if !expected {
                    return Err(SyncError::SecondOpen {
                        peer: self.peer.clone(),
                    });
                }
                self.opens_read += 1;
                if self.role == Role::Responder && self.opens_read == 1 {
                    self.kind = Some(kind);
                    engine.sync_accepted();
                }
                if let Some(digest) = digest {
                    // Only the initiator's first `Open` may be a digest, in place of both
                    // its context and fence.
                    if self.role != Role::Responder
                        || self.opens_read != 1
                        || again
                        || same != 0
                        || !ctx.0.is_empty()
                        || !stable.0.is_empty()
                    {
                        return Err(SyncError::BadDigest {
                            peer: self.peer.clone(),
                        });
                    }
                    let shared = digest == engine.sync_own_digest();
                    engine.sync_digest_counted(Some(shared));
                    if !shared {
                        // We have seen something it has not, or it has: our whole
                        // `Open` goes first, then its whole one.
                        self.swapped = true;
                        self.peer_digest = members_digest;
                        return Ok(Step::Read);
                    }
                    // It has seen what we have: its `Open` names our context and fence,
                    // and is handled as if it had carried them (the fence check included).
                    (ctx, stable) = engine.sync_own();
                }
                if again {
                    if self.role != Role::Initiator || !self.sent_digest {
                        return Err(SyncError::BadAgain {
                            peer: self.peer.clone(),
                        });
                    }
                    self.swapped = true;
                }
                if same != 0 {
                    // What the peer left out equals what our `Open` sent.
                    let Some((our_ctx, our_stable)) = &self.sent else {
                        return Err(SyncError::BadSame {
                            peer: self.peer.clone(),
                        });
                    };
                    if same & OPEN_SAME_CTX != 0 {
                        ctx = our_ctx.clone();
                    }
                    if same & OPEN_SAME_STABLE != 0 {
                        stable = our_stable.clone();
                    }
                }
                // Whoever sends its `Open` after reading this one answers it: the
                // responder, or the initiator of a four-turn exchange.
                let answering = (self.role == Role::Responder) != self.swapped;
                if answering && compact {
                    self.peer_compact = Some(stable.clone());
                }
                match engine.sync_on_open(now, &self.peer, answering, &ctx, &stable) {
                    FenceCheck::Covered => {}
                    // Our Open is built after this, with the rebase's candidates hidden.
                    FenceCheck::Rebase(p) => self.probe = Some(p),
                    // Unless this exchange already runs the rebase its last Open asked for.
                    FenceCheck::RebaseNext => self.rebase_next = self.probe.is_none(),
                }
                self.peer_ctx = Some(ctx);
                self.peer_digest = members_digest;
                self.peer_reads_held = reads_held;
                Ok(Step::Read)
            }
            SyncFrame::Members(members) => {
                self.require_open()?;
                if !self.identity_checked {
                    // The first member a peer lists is itself: it must be the node its
                    // certificate names, or it could speak for another member.
                    if let Some(first) = members.first() {
                        if first.info.id != self.peer {
                            return Err(SyncError::IdentityMismatch {
                                peer: self.peer.clone(),
                                claimed: first.info.id.clone(),
                            });
                        }
                        self.identity_checked = true;
                    }
                }
                engine.sync_on_members(now, &self.peer, members);
                Ok(Step::Read)
            }
            SyncFrame::Entries(entries) => {
                self.require_open()?;
                let got = engine.sync_on_entries(now, entries, self.probe.as_mut());
                self.received(got);
                Ok(Step::Read)
            }
            SyncFrame::Sealed(runs) => {
                self.require_open()?;
                for run in runs {
                    let count = run.entries.len();
                    match run.unpack() {
                        Ok(entries) => {
                            let got = engine.sync_on_entries(now, entries, self.probe.as_mut());
                            self.received(got);
                        }
                        // Malformed: its writes are not applied, so the peer's context
                        // must not be joined either (as for a refused entry).
                        Err(_) => self.refused += engine.sync_refused_run(count),
                    }
                }
                Ok(Step::Read)
            }
            SyncFrame::Held => {
                self.require_open()?;
                self.peer_held = true;
                Ok(Step::Read)
            }
            SyncFrame::End => {
                // The only turn without a whole `Open`: a digest the responder did not
                // share.
                let digest_turn =
                    self.swapped && self.role == Role::Responder && self.turns_read == 0;
                if !digest_turn {
                    self.require_open()?;
                }
                self.turns_read += 1;
                Ok(self.end_of_peer_turn(engine, now))
            }
        }
    }

    /// The peer's turn is over: answer it, and complete the exchange where it ends here.
    fn end_of_peer_turn(&mut self, engine: &mut Engine, now: Now) -> Step {
        match (self.role, self.swapped, self.turns_read) {
            // The initiator's whole `Open` was read: ours (compact), and what it lacks.
            (Role::Responder, false, 1) => {
                let mut turn = vec![self.answering_open(engine)];
                turn.extend(self.reply(engine));
                turn.push(SyncFrame::End);
                Step::Send(turn)
            }
            // A digest we do not share: our whole `Open`, which the initiator's answers.
            (Role::Responder, true, 1) => {
                let mut open = engine.sync_open_frame(self.kind(), self.probe.as_ref());
                if let SyncFrame::Open {
                    ctx, stable, again, ..
                } = &mut open
                {
                    *again = true;
                    self.sent = Some((ctx.clone(), stable.clone()));
                }
                Step::Send(vec![open, SyncFrame::End])
            }
            // The four-turn exchange: the initiator's whole `Open` and what we lacked
            // were read; what it lacks ends the exchange.
            (Role::Responder, true, _) => {
                let mut turn = self.reply(engine);
                turn.push(SyncFrame::End);
                self.finish(engine, now);
                Step::Send(turn)
            }
            (Role::Responder, false, _) => {
                self.finish(engine, now);
                Step::Read
            }
            // The responder's whole `Open` answered our digest: ours (compact), and
            // what it lacks; it ends the exchange.
            (Role::Initiator, true, 1) => {
                let mut turn = vec![self.answering_open(engine)];
                turn.extend(self.reply(engine));
                turn.push(SyncFrame::End);
                Step::Send(turn)
            }
            (Role::Initiator, true, _) => {
                self.finish(engine, now);
                Step::Read
            }
            (Role::Initiator, false, _) => {
                let mut turn = self.reply(engine);
                turn.push(SyncFrame::End);
                self.finish(engine, now);
                Step::Send(turn)
            }
        }
    }

    /// Our `Open` in answer to the peer's whole one, built after it was handled (so a
    /// rebase shows in it), with what equals the peer's left out if it reads that.
    fn answering_open(&self, engine: &Engine) -> SyncFrame {
        let mut open = engine.sync_open_frame(self.kind(), self.probe.as_ref());
        if let (Some(peer_stable), Some(peer_ctx)) = (&self.peer_compact, &self.peer_ctx) {
            compact_open(&mut open, peer_ctx, peer_stable);
        }
        open
    }

    fn require_open(&self) -> Result<(), SyncError> {
        match self.peer_ctx {
            Some(_) => Ok(()),
            None => Err(SyncError::NoOpen {
                peer: self.peer.clone(),
            }),
        }
    }

    /// Our member list (on a join, or when the digests differ), then what the peer lacks
    /// (at most [`ENTRIES_PER_TURN`] entries and `Held`, to a peer that reads it).
    fn reply(&self, engine: &mut Engine) -> Vec<SyncFrame> {
        let Some(ctx) = &self.peer_ctx else {
            return Vec::new();
        };
        let members =
            self.kind() == SyncKind::Join || self.peer_digest != engine.members().digest();
        let limit = if self.peer_reads_held {
            ENTRIES_PER_TURN
        } else {
            usize::MAX
        };
        engine.sync_reply_frames(ctx, members, ENTRIES_PER_FRAME, limit)
    }

    fn received(&mut self, got: Received) {
        self.applied += got.applied;
        self.refused += got.refused;
    }

    fn finish(&mut self, engine: &mut Engine, now: Now) {
        self.done = true;
        // Nor after a `Held`: the peer's context names writes it did not send (and a
        // rebase must not take a candidate it held back for one it no longer has).
        let join = self
            .peer_ctx
            .as_ref()
            .filter(|_| self.refused == 0 && !self.rebase_next && !self.peer_held);
        engine.sync_finish(now, &self.peer, join, self.probe.take());
        if self.peer_held || self.applied >= FAR_BEHIND {
            // The rest is pulled from the same peer only while it brings news and
            // nothing refused: a peer saying `Held` with nothing to give cannot keep our
            // exchanges to itself.
            let pull = self.peer_held && self.applied > 0 && self.refused == 0;
            engine.sync_follow_up(now, &self.peer, self.peer_held, pull);
        }
    }

    /// Abandons the exchange (transport error, timeout, or a refused frame).
    pub fn fail(self, engine: &mut Engine, now: Now) {
        if !self.done {
            engine.sync_failed(now, &self.peer);
        }
    }

    /// Pays for the next at most `remaining` bytes of our turn from the bandwidth
    /// buckets, one piece at a time, so a stream's egress follows the bucket instead of
    /// bursting a whole frame (a join is membership traffic, a periodic exchange the
    /// lowest priority).
    pub fn admit(&self, engine: &mut Engine, now: Now, remaining: usize) -> Admit {
        let kind = self.kind();
        let chunk = remaining.min(engine.stream_chunk(kind));
        match engine.stream_admit(now, &self.peer, kind, chunk) {
            Ok(()) => Admit::Send(chunk),
            Err(at_us) => Admit::WaitUntil(at_us),
        }
    }
}

#[cfg(test)]
#[path = "sync_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "sync_digest_tests.rs"]
mod digest_tests;

#[cfg(test)]
#[path = "sync_held_tests.rs"]
mod held_tests;
