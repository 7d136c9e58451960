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
//! [`Exchange`] owns the sequencing: which frame may come when, what to answer at the end
//! of the peer's turn, the check that the peer's first listed member is the peer itself,
//! and when the exchange is complete. The [`Engine`] only applies what a frame carries.
//! The runtime (QUIC streams) and the simulator (scheduled turns) both drive this type,
//! so the simulator runs the protocol the nodes run; they only move bytes and pace them
//! with [`Exchange::admit`].

use thiserror::Error;

use super::engine::{Engine, FenceCheck};
use super::proto::{SyncFrame, SyncKind};
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
                ctx,
                stable,
                members_digest,
                ..
            } => {
                if self.peer_ctx.is_some() {
                    return Err(SyncError::SecondOpen {
                        peer: self.peer.clone(),
                    });
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
                let mut turn = vec![engine.sync_open_frame(self.kind(), self.probe.as_ref())];
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
mod tests {
    use super::*;
    use crate::core::engine::Config;
    use crate::core::proto::MemberInfo;
    use crate::core::state::{Entry, Hlc, RangeSet, VersionVector};

    fn at(ms: u64) -> Now {
        Now::new(ms * 1000, 1_700_000_000_000 + ms)
    }

    fn id(s: &str) -> NodeId {
        NodeId::new(s).unwrap()
    }

    /// An entry of `writer` with the dots `vv`, stamped `ms`.
    fn entry(key: &str, writer: &str, vv: &[(&str, u64)], ms: u64) -> Entry {
        let mut v = VersionVector::default();
        for (w, c) in vv {
            v.set(id(w), *c);
        }
        Entry {
            key: key.into(),
            value: Some(b"v".to_vec()),
            vv: v,
            hlc: Hlc { ms, lc: 0 },
            writer: id(writer),
            sig: Default::default(),
            siblings: Vec::new(),
        }
    }

    fn engine(name: &str, cfg: Config) -> Engine {
        let me = MemberInfo {
            id: id(name),
            addr: format!("{name}:1"),
            dc: String::new(),
            zone: String::new(),
            tags: Default::default(),
        };
        Engine::new(cfg, me, vec![], 1, at(0), None)
    }

    /// Runs a whole exchange between `a` (initiator) and `b` in memory, as the runtime
    /// and the simulator do, and returns both sides.
    fn exchange(a: &mut Engine, b: &mut Engine, now: Now) -> (Exchange, Exchange) {
        exchange_lying(a, b, now, |_| {})
    }

    /// Same, with every frame `b` sends passed through `lie` first.
    fn exchange_lying(
        a: &mut Engine,
        b: &mut Engine,
        now: Now,
        mut lie: impl FnMut(&mut SyncFrame),
    ) -> (Exchange, Exchange) {
        let (mut ea, mut turn) = Exchange::initiate(a, now, b.id().clone(), SyncKind::Periodic);
        let mut eb = Exchange::accept(a.id().clone());
        let mut to_b = true;
        while !(ea.is_done() && eb.is_done()) {
            let (ex, e) = if to_b {
                (&mut eb, &mut *b)
            } else {
                turn.iter_mut().for_each(&mut lie);
                (&mut ea, &mut *a)
            };
            let mut answer = Vec::new();
            for f in std::mem::take(&mut turn) {
                if let Step::Send(t) = ex.on_frame(e, now, f).expect("well-formed frames") {
                    answer = t;
                }
            }
            turn = answer;
            to_b = !to_b;
        }
        (ea, eb)
    }

    /// Replaces the context of an `Open` frame.
    fn claim(ctx: CausalContext) -> impl FnMut(&mut SyncFrame) {
        move |f| {
            if let SyncFrame::Open { ctx: c, .. } = f {
                *c = ctx.clone();
            }
        }
    }

    /// #16, finding 5: a peer's `Open` context `{w: [(1, u64::MAX)]}` was joined whole,
    /// so the victim believed it held every write of `w`, no honest peer ever sent it
    /// one again, and the belief spread with its own context.
    #[test]
    fn a_context_claiming_a_writers_future_does_not_hide_its_writes() {
        let mut victim = engine("a", Config::default());
        let mut liar = engine("b", Config::default());
        let mut honest = engine("c", Config::default());
        let mut w = engine("w", Config::default());
        let mut forged = CausalContext::new();
        forged
            .0
            .insert(id("w"), RangeSet::from_ranges(vec![(1, u64::MAX)]));
        exchange_lying(&mut victim, &mut liar, at(1), claim(forged));
        assert!(!victim.store().context().contains(&id("w"), 1));
        let written = w.set(at(2), "k", b"v".to_vec()).unwrap();
        exchange(&mut honest, &mut w, at(3));
        exchange(&mut victim, &mut honest, at(4));
        assert_eq!(
            victim.store().entry("k"),
            Some(&written),
            "w's write still arrives"
        );
    }

    /// #16, finding 5: a context naming the victim's own id at `u64::MAX` moved its
    /// dot counter there, so its next write overflowed.
    #[test]
    fn a_context_naming_our_own_dots_at_the_top_does_not_move_our_counter() {
        let mut victim = engine("a", Config::default());
        let mut liar = engine("b", Config::default());
        let mut forged = CausalContext::new();
        forged
            .0
            .insert(id("a"), RangeSet::from_ranges(vec![(1, u64::MAX)]));
        exchange_lying(&mut victim, &mut liar, at(1), claim(forged));
        let e = victim
            .set(at(2), "k", b"v".to_vec())
            .expect("writes still work");
        let dot = e.vv.get(&id("a"));
        assert!(dot < u64::MAX / 2, "counter moved to {dot}");
        assert!(!victim.store().context().contains(&id("a"), dot + 1));
    }

    /// #16, finding 5: an entry naming our own dot at the top of the range moved our
    /// counter there too.
    #[test]
    fn an_entry_naming_a_dot_of_ours_we_cannot_have_issued_is_refused() {
        let mut victim = engine("a", Config::default());
        let forged = entry("k", "b", &[("a", u64::MAX - 1), ("b", 1)], at(1).wall_ms);
        assert_eq!(victim.sync_on_entries(at(1), vec![forged], None), 1);
        assert!(victim.store().get("k").is_none());
        victim
            .set(at(2), "x", b"1".to_vec())
            .expect("writes still work");
    }

    #[test]
    fn an_exchange_brings_each_side_what_it_lacks_and_completes_both() {
        let mut a = engine("a", Config::default());
        let mut b = engine("b", Config::default());
        a.set(at(1), "x", b"1".to_vec()).unwrap();
        b.set(at(1), "y", b"2".to_vec()).unwrap();
        let (ea, eb) = exchange(&mut a, &mut b, at(2));
        assert!(ea.is_done() && eb.is_done());
        for e in [&a, &b] {
            assert_eq!(e.store().get("x"), Some(&b"1"[..]));
            assert_eq!(e.store().get("y"), Some(&b"2"[..]));
        }
        assert_eq!(a.store().context(), b.store().context());
        assert_eq!(a.stats().syncs_completed, 1);
        assert_eq!(b.stats().syncs_completed, 1);
    }

    #[test]
    fn frames_out_of_order_end_the_exchange() {
        let mut b = engine("b", Config::default());
        let mut ex = Exchange::accept(id("a"));
        assert_eq!(
            ex.on_frame(&mut b, at(1), SyncFrame::End),
            Err(SyncError::NoOpen { peer: id("a") })
        );
        let (_, turn) = Exchange::initiate(
            &mut engine("a", Config::default()),
            at(1),
            id("b"),
            SyncKind::Periodic,
        );
        let mut ex = Exchange::accept(id("a"));
        ex.on_frame(&mut b, at(1), turn[0].clone()).unwrap();
        assert_eq!(
            ex.on_frame(&mut b, at(1), turn[0].clone()),
            Err(SyncError::SecondOpen { peer: id("a") })
        );
    }

    /// #16, finding 6: an entry refused by the receiver (here its version vector is
    /// longer than the receiver's limit) had its dots joined into the receiver's context
    /// at the end of the exchange anyway, so they counted as seen and the write never
    /// replicated to that node.
    #[test]
    fn a_refused_entry_never_counts_as_seen() {
        let mut strict = Config::default();
        strict.limits.max_vv_len = 2;
        let mut a = engine("a", strict);
        let mut b = engine("b", Config::default());
        let wide = entry(
            "wide",
            "b",
            &[("b", 1), ("w1", 1), ("w2", 1)],
            at(1).wall_ms,
        );
        b.sync_on_entries(at(1), vec![wide], None);
        assert!(b.store().get("wide").is_some());
        exchange(&mut a, &mut b, at(2));
        assert!(
            a.store().get("wide").is_none(),
            "refused by the stricter limit"
        );
        for w in ["b", "w1", "w2"] {
            assert!(
                !a.store().context().contains(&id(w), 1),
                "the refused write of {w} counts as seen"
            );
        }
        assert_eq!(a.stats().sync_joins_skipped, 1);
    }

    /// Short grace and reap timeout, so that a test can outlast both.
    fn short_gc() -> Config {
        Config {
            tombstone_grace_ms: 5_000,
            reap_timeout_ms: 10_000,
            ..Config::default()
        }
    }

    /// Runs `e`'s timers alone (nothing it sends arrives) from `from` to `to` ms: its
    /// peers go suspect, dead, then are reaped; tombstone collection runs.
    fn alone(e: &mut Engine, from: u64, to: u64) {
        let mut t = from;
        while t <= to {
            e.handle_timeout(at(t));
            while e.poll_output().is_some() {}
            t += 100;
        }
    }

    /// Three members that know each other, every one holding `k0`..`k3` written by `a`.
    fn three_with_keys() -> (Engine, Engine, Engine) {
        let (mut a, mut b, mut c) = (
            engine("a", short_gc()),
            engine("b", short_gc()),
            engine("c", short_gc()),
        );
        for k in ["k0", "k1", "k2", "k3"] {
            a.set(at(1), k, b"v".to_vec()).unwrap();
        }
        exchange(&mut b, &mut a, at(2));
        exchange(&mut c, &mut a, at(3));
        exchange(&mut b, &mut c, at(4));
        for e in [&a, &b, &c] {
            assert_eq!(e.members().len(), 2, "{} knows both others", e.id());
            assert_eq!(e.store().live_len(), 4);
        }
        (a, b, c)
    }

    fn live(e: &Engine) -> Vec<(String, Option<Vec<u8>>)> {
        e.store()
            .iter()
            .filter(|x| !x.is_tombstone())
            .map(|x| (x.key.clone(), x.value.clone()))
            .collect()
    }

    /// #16, finding 1: a node back from an absence longer than the collection horizon
    /// was wiped on every later exchange (the resetting exchange never marked it
    /// synced, and its own writes kept it from ever being empty), so what it learned
    /// kept vanishing. Now `b`, reaped by `a` while away, rebases once: the deleted key
    /// is gone, its own write made while away survives and reaches `a`, and what it
    /// learns afterwards stays.
    #[test]
    fn a_node_back_from_beyond_the_grace_rebases_once_and_then_keeps_what_it_learns() {
        let (mut a, mut b, _c) = three_with_keys();
        let old_k0 = b.store().entry("k0").cloned().unwrap();
        a.delete(at(10), "k0").unwrap();
        alone(&mut a, 10, 200_000);
        assert!(a.members().get(b.id()).is_none(), "a reaped b");
        assert!(a.store().entry("k0").is_none(), "a collected the delete");
        b.set(at(200_100), "mine", b"m".to_vec()).unwrap();
        a.set(at(200_100), "later", b"l".to_vec()).unwrap();
        for i in 0..4 {
            let now = at(200_200 + i * 100);
            if i % 2 == 0 {
                exchange(&mut b, &mut a, now);
            } else {
                exchange(&mut a, &mut b, now);
            }
            if i >= 1 {
                assert!(
                    b.store().get("later").is_some(),
                    "b lost what it learned (exchange {i})"
                );
            }
        }
        assert_eq!(b.stats().rebases, 1);
        assert!(
            b.store().get("k0").is_none(),
            "the deleted key stays deleted"
        );
        assert_eq!(a.store().get("mine"), Some(&b"m"[..]));
        assert_eq!(live(&a), live(&b));
        // The rebase dropped the old value and kept its dot (the write was seen), so a
        // late copy of it brings nothing back.
        b.sync_on_entries(at(201_000), vec![old_k0], None);
        assert!(b.store().get("k0").is_none(), "a replay resurrected k0");
    }

    /// #16, finding 3: a minority that went on syncing inside itself while the majority
    /// collected a delete never looked stale (its last sync was recent), and on heal
    /// neither side sent anything for the key: the majority's context covered the live
    /// value's dot and the tombstone was gone, so the key stayed live on one side and
    /// absent on the other for good. Here `a` is the majority, `b` and `c` the minority,
    /// and both sides keep writing and deleting; after the heal every node holds the
    /// same live keys.
    #[test]
    fn a_minority_partitioned_past_the_grace_converges_on_heal() {
        let (mut a, mut b, mut c) = three_with_keys();
        a.delete(at(10), "k0").unwrap();
        a.set(at(10), "majority", b"a".to_vec()).unwrap();
        alone(&mut a, 10, 200_000);
        assert!(a.members().get(b.id()).is_none(), "a reaped b");
        assert!(a.store().entry("k0").is_none(), "a collected the delete");
        // The minority writes, deletes and syncs inside itself up to the heal.
        b.set(at(150_000), "minority", b"b".to_vec()).unwrap();
        c.delete(at(150_000), "k1").unwrap();
        for t in [150_100, 199_000, 199_900] {
            exchange(&mut b, &mut c, at(t));
        }
        // Heal: the minority meets the majority through b, then talks inside itself.
        exchange(&mut b, &mut a, at(200_100));
        exchange(&mut c, &mut b, at(200_200));
        exchange(&mut a, &mut c, at(200_300));
        exchange(&mut b, &mut a, at(200_400));
        for e in [&a, &b, &c] {
            assert!(e.store().get("k0").is_none(), "{}: k0 is alive", e.id());
            assert!(e.store().get("k1").is_none(), "{}: k1 is alive", e.id());
            assert!(
                e.store().get("majority").is_some(),
                "{}: lost a write",
                e.id()
            );
            assert!(
                e.store().get("minority").is_some(),
                "{}: lost a write",
                e.id()
            );
        }
        assert_eq!(live(&a), live(&b));
        assert_eq!(live(&a), live(&c));
    }

    /// #16, finding 2: a reset in one exchange wiped entries, and another exchange,
    /// opened before it, then joined its peer's context: the wiped entries counted as
    /// seen and were never sent again (the node ended without keys its peers held).
    /// Now a rebase removes nothing before its peer has answered and keeps the dropped
    /// writes' dots, so an exchange running across it is not misled; an initiator that
    /// finds itself behind joins nothing and rebases in its next exchange with that peer.
    #[test]
    fn an_exchange_running_across_a_rebase_loses_nothing() {
        let (mut a, mut b, mut c) = three_with_keys();
        a.delete(at(10), "k0").unwrap();
        exchange(&mut c, &mut a, at(11));
        alone(&mut a, 11, 200_000);
        assert!(a.store().entry("k0").is_none(), "a collected the delete");
        // b opens an exchange with c ...
        let now = at(200_100);
        let (mut with_c, turn) =
            Exchange::initiate(&mut b, now, c.id().clone(), SyncKind::Periodic);
        let mut at_c = Exchange::accept(b.id().clone());
        let mut reply = Vec::new();
        for f in turn {
            if let Step::Send(t) = at_c.on_frame(&mut c, now, f).unwrap() {
                reply = t;
            }
        }
        // ... meanwhile meets a (the exchange that, in the old design, reset it) ...
        exchange(&mut b, &mut a, now);
        // ... and only then hears c's answer.
        let mut last = Vec::new();
        for f in reply {
            if let Step::Send(t) = with_c.on_frame(&mut b, now, f).unwrap() {
                last = t;
            }
        }
        for f in last {
            at_c.on_frame(&mut c, now, f).unwrap();
        }
        assert!(with_c.is_done() && at_c.is_done());
        exchange(&mut b, &mut c, at(200_200));
        exchange(&mut b, &mut a, at(200_300));
        for k in ["k1", "k2", "k3"] {
            assert!(b.store().get(k).is_some(), "b lost {k} for good");
        }
        assert!(b.store().get("k0").is_none());
        assert_eq!(live(&a), live(&b));
        assert_eq!(
            b.stats().rebases,
            1,
            "b rebased once, in its next exchange with a"
        );
    }

    /// #16, finding 7: the causal context never forgot a writer, so it grew with every
    /// id ever seen (until the `Open` passed its size limit and every peer refused it).
    /// A writer that left, whose keys are all gone and whose dots everyone has seen, is
    /// compacted out; a late copy of its writes still changes nothing.
    #[test]
    fn a_departed_writer_whose_keys_are_gone_leaves_the_context() {
        let mut a = engine("a", short_gc());
        let mut w = engine("w", short_gc());
        let eph = w.set(at(1), "eph", b"x".to_vec()).unwrap();
        exchange(&mut a, &mut w, at(2));
        w.delete(at(3), "eph").unwrap();
        exchange(&mut a, &mut w, at(4));
        assert!(a.store().entry("eph").unwrap().is_tombstone());
        assert!(a.store().context().ranges(w.id()).is_some());
        alone(&mut a, 5, 200_000);
        assert!(a.members().get(w.id()).is_none(), "a reaped w");
        assert!(
            a.store().entry("eph").is_none(),
            "the tombstone was collected"
        );
        assert!(
            a.store().context().ranges(w.id()).is_none(),
            "w is still in the context"
        );
        assert_eq!(a.store().stats().writers_compacted, 1);
        a.sync_on_entries(at(200_100), vec![eph], None);
        assert!(a.store().entry("eph").is_none(), "a late copy came back");
        assert!(a.store().context().ranges(w.id()).is_none());
    }

    /// #16, finding 4: an entry stamped a year ahead dragged our clock a year forward.
    /// Now the entry is kept (its write is not lost) and our clock moves only up to the
    /// drift bound; the writer is told once.
    #[test]
    fn an_entry_stamped_beyond_the_drift_bound_does_not_drag_our_clock() {
        let mut a = engine("a", Config::default());
        let year_ms = 365 * 24 * 3_600_000;
        let future = |key: &str, c: u64| entry(key, "w", &[("w", c)], at(1).wall_ms + year_ms);
        assert_eq!(
            a.sync_on_entries(at(1), vec![future("k1", 1), future("k2", 2)], None),
            0
        );
        assert!(a.store().get("k1").is_some(), "the write is kept");
        assert!(a.store().clock().last().ms <= at(1).wall_ms + 60_000);
        let mine = a.set(at(2), "m", b"x".to_vec()).unwrap();
        assert!(
            mine.hlc.ms <= at(2).wall_ms + 60_000,
            "our stamps stay near our clock"
        );
        assert_eq!(a.stats().stamps_clamped, 2);
        let told = std::iter::from_fn(|| a.poll_output())
            .filter(|o| {
                matches!(
                    o,
                    crate::core::Output::Event(crate::core::Event::ClockAhead { .. })
                )
            })
            .count();
        assert_eq!(told, 1);
        assert_eq!(a.clock_skew().writers()[&id("w")].beyond_bound, 2);
    }
}
