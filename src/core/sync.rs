//! One anti-entropy exchange, as a sans-IO state machine.
//!
//! An exchange is three turns over a reliable stream (ARCHITECTURE.md, "Anti-entropy"):
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
//! [`Exchange`] owns the sequencing: which frame may come when, what to answer at the end
//! of the peer's turn, the check that the peer's first listed member is the peer itself,
//! and when the exchange is complete. The [`Engine`] only applies what a frame carries.
//! The runtime (QUIC streams) and the simulator (scheduled turns) both drive this type,
//! so the simulator runs the protocol the nodes run; they only move bytes and pace them
//! with [`Exchange::admit`].

use thiserror::Error;

use super::engine::{compact_open, Engine, FenceCheck};
use super::proto::{SyncFrame, SyncKind, OPEN_SAME_CTX, OPEN_SAME_STABLE};
use super::state::{CausalContext, RebaseProbe};
use super::{NodeId, Now};

/// Most entries in one `Entries` frame (frames also stop at about 512 KiB).
pub const ENTRIES_PER_FRAME: usize = 1024;

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
    /// The peer's context and member digest, from its `Open`.
    peer_ctx: Option<CausalContext>,
    peer_digest: u64,
    /// Initiator: the context and fence our `Open` sent, which the responder's `Open` may
    /// name instead of repeating them (`SyncFrame::Open::same`).
    sent: Option<(CausalContext, CausalContext)>,
    /// Responder: the initiator's fence, if it reads a compacted `Open` (we compare ours
    /// with it and with its context).
    peer_compact: Option<CausalContext>,
    /// The peer's first `Members` frame was checked against its identity.
    identity_checked: bool,
    /// Entries of the peer's we refused: their dots must not enter our context, so the
    /// peer's context is not joined.
    refused: usize,
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
    /// Opens an exchange with `peer`: returns it and our first turn.
    pub fn initiate(
        engine: &mut Engine,
        now: Now,
        peer: NodeId,
        kind: SyncKind,
    ) -> (Self, Vec<SyncFrame>) {
        // Our unsigned writes are signed (and sent) before any frame can carry them.
        engine.seal_writes();
        engine.sync_started();
        let mut ex = Self::new(peer, Role::Initiator, Some(kind));
        ex.probe = engine.sync_probe_for(now, &ex.peer);
        let open = engine.sync_open_frame(kind, ex.probe.as_ref());
        if let SyncFrame::Open { ctx, stable, .. } = &open {
            ex.sent = Some((ctx.clone(), stable.clone()));
        }
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
            peer_ctx: None,
            peer_digest: 0,
            sent: None,
            peer_compact: None,
            identity_checked: false,
            refused: 0,
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
                ..
            } => {
                if self.peer_ctx.is_some() {
                    return Err(SyncError::SecondOpen {
                        peer: self.peer.clone(),
                    });
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
                if self.role == Role::Responder && compact {
                    self.peer_compact = Some(stable.clone());
                }
                if self.role == Role::Responder {
                    self.kind = Some(kind);
                    engine.sync_accepted();
                }
                let responder = self.role == Role::Responder;
                match engine.sync_on_open(now, &self.peer, responder, &ctx, &stable) {
                    FenceCheck::Covered => {}
                    // Our Open is built after this, with the rebase's candidates hidden.
                    FenceCheck::Rebase(p) => self.probe = Some(p),
                    // Unless this exchange already runs the rebase its last Open asked for.
                    FenceCheck::RebaseNext => self.rebase_next = self.probe.is_none(),
                }
                self.peer_ctx = Some(ctx);
                self.peer_digest = members_digest;
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
                self.refused += engine.sync_on_entries(now, entries, self.probe.as_mut());
                Ok(Step::Read)
            }
            SyncFrame::Sealed(runs) => {
                self.require_open()?;
                for run in runs {
                    let count = run.entries.len();
                    match run.unpack() {
                        Ok(entries) => {
                            self.refused +=
                                engine.sync_on_entries(now, entries, self.probe.as_mut());
                        }
                        // Malformed: its writes are not applied, so the peer's context
                        // must not be joined either (as for a refused entry).
                        Err(_) => self.refused += engine.sync_refused_run(count),
                    }
                }
                Ok(Step::Read)
            }
            SyncFrame::End => {
                self.require_open()?;
                self.turns_read += 1;
                Ok(self.end_of_peer_turn(engine, now))
            }
        }
    }

    /// The peer's turn is over: answer it, and complete the exchange where it ends here.
    fn end_of_peer_turn(&mut self, engine: &mut Engine, now: Now) -> Step {
        match (self.role, self.turns_read) {
            (Role::Responder, 1) => {
                // Our Open is built after the peer's was handled, so a rebase shows in it.
                let mut open = engine.sync_open_frame(self.kind(), self.probe.as_ref());
                if let (Some(peer_stable), Some(peer_ctx)) = (&self.peer_compact, &self.peer_ctx) {
                    compact_open(&mut open, peer_ctx, peer_stable);
                }
                let mut turn = vec![open];
                turn.extend(self.reply(engine));
                turn.push(SyncFrame::End);
                Step::Send(turn)
            }
            (Role::Initiator, _) => {
                let mut turn = self.reply(engine);
                turn.push(SyncFrame::End);
                self.finish(engine, now);
                Step::Send(turn)
            }
            (Role::Responder, _) => {
                self.finish(engine, now);
                Step::Read
            }
        }
    }

    fn require_open(&self) -> Result<(), SyncError> {
        match self.peer_ctx {
            Some(_) => Ok(()),
            None => Err(SyncError::NoOpen {
                peer: self.peer.clone(),
            }),
        }
    }

    /// Our member list (on a join, or when the digests differ), then what the peer lacks.
    fn reply(&self, engine: &Engine) -> Vec<SyncFrame> {
        let Some(ctx) = &self.peer_ctx else {
            return Vec::new();
        };
        let members =
            self.kind() == SyncKind::Join || self.peer_digest != engine.members().digest();
        engine.sync_reply_frames(ctx, members, ENTRIES_PER_FRAME)
    }

    fn finish(&mut self, engine: &mut Engine, now: Now) {
        self.done = true;
        let join = self
            .peer_ctx
            .as_ref()
            .filter(|_| self.refused == 0 && !self.rebase_next);
        engine.sync_finish(now, &self.peer, join, self.probe.take());
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
