//! Anti-entropy exchanges in the simulator: each side is a `core::sync::Exchange`, as
//! in the runtime; the simulator only schedules the turns, paces them through the
//! sender's bandwidth limiter and delivers them after the link's delay (no loss: a
//! stream retransmits), and fails exchanges cut by crashes and partitions.

use super::{fnv, Ev, FrameTamper, Sim, SYNC_FAIL_US};
use crate::core::proto::{encoded_len, SyncFrame, SyncKind};
use crate::core::sync::{Admit, Exchange, Step, SyncError};
use crate::core::{Engine, Now};

/// A sync turn being sent through the sender's bandwidth limiter.
pub(super) struct Pace {
    pub(super) id: u64,
    from: usize,
    to: usize,
    frames: Vec<SyncFrame>,
    /// Bytes of the whole turn.
    total: u64,
    /// Bytes not admitted yet.
    remaining: u64,
}

/// An exchange between initiator `a` and responder `b`, each side driven by its own
/// [`Exchange`] (core::sync), as the runtime drives them over a QUIC stream.
pub(super) struct SyncState {
    a: usize,
    b: usize,
    epochs: (u64, u64),
    seed: Option<usize>,
    ex_a: Exchange,
    ex_b: Exchange,
    step: u8,
}

/// Feeds a turn's frames to one side of an exchange; returns the turn it answers with,
/// if any, or the error that ends the exchange.
fn receive_turn(
    e: &mut Engine,
    now: Now,
    ex: &mut Exchange,
    frames: Vec<SyncFrame>,
) -> Result<Option<Vec<SyncFrame>>, SyncError> {
    let mut answer = None;
    for f in frames {
        if let Step::Send(turn) = ex.on_frame(e, now, f)? {
            answer = Some(turn);
        }
    }
    Ok(answer)
}

impl Sim {
    pub(super) fn start_sync(&mut self, a: usize, b: usize, kind: SyncKind, seed: Option<usize>) {
        self.next_sync += 1;
        let id = self.next_sync;
        let epochs = (self.nodes[a].epoch, self.nodes[b].epoch);
        let (a_id, b_id) = (self.nodes[a].id.clone(), self.nodes[b].id.clone());
        let now = self.now_of(a);
        let Some(ea) = self.nodes[a].engine.as_mut() else {
            return;
        };
        // Every simulated node runs this release: it reads digest `Open`s.
        let (ex_a, first) = Exchange::initiate(ea, now, b_id, kind, true);
        self.syncs.insert(
            id,
            SyncState {
                a,
                b,
                epochs,
                seed,
                ex_a,
                ex_b: Exchange::accept(a_id),
                step: 1,
            },
        );
        if !self.reachable(a, b) || self.nodes[b].engine.is_none() {
            self.schedule(self.now_us + SYNC_FAIL_US, Ev::SyncFail { id });
            return;
        }
        self.send_turn(id, a, b, first);
    }

    /// Makes `node` hostile: every turn of sync frames it sends passes through `f`
    /// first. Its engine stays honest; what its peers receive does not.
    pub fn tamper_sync_frames(&mut self, node: usize, f: FrameTamper) {
        self.tamper.insert(node, f);
    }

    fn send_turn(&mut self, id: u64, from: usize, to: usize, mut frames: Vec<SyncFrame>) {
        if let Some(f) = self.tamper.get_mut(&from) {
            f(&mut frames);
        }
        // Every frame the runtime writes, End included: 4 length bytes, the version byte.
        let bytes: u64 = frames.iter().map(|f| encoded_len(f) as u64 + 5).sum();
        self.count_wan(from, to, bytes, true);
        self.pace_turn(Pace {
            id,
            from,
            to,
            frames,
            total: bytes,
            remaining: bytes,
        });
    }

    /// Sends a turn through the sender's bandwidth limiter, piece by piece: whatever
    /// the tokens do not cover yet waits (a `SyncPace` event) and goes on later.
    pub(super) fn pace_turn(&mut self, mut p: Pace) {
        let (from, to) = (p.from, p.to);
        let now = self.now_of(from);
        while p.remaining > 0 {
            let Some(s) = self.syncs.get(&p.id) else {
                return;
            };
            let ex = if from == s.a { &s.ex_a } else { &s.ex_b };
            let Some(e) = self.nodes[from].engine.as_mut() else {
                return;
            };
            match ex.admit(e, now, usize::try_from(p.remaining).unwrap_or(usize::MAX)) {
                Admit::Send(chunk) => {
                    let chunk = chunk as u64;
                    p.remaining -= chunk;
                    let t = &mut self.nodes[from].traffic;
                    t.sync_bytes += chunk;
                    t.egress.record(self.now_us, chunk);
                }
                Admit::WaitUntil(at) => {
                    let at = at.max(self.now_us + 1);
                    self.schedule(at, Ev::SyncPace(p));
                    return;
                }
            }
        }
        // A stream turn costs one way latency plus serialisation (no loss: QUIC retransmits).
        let at = self.transit_us(from, p.total as usize)
            + self.nodes[to].slow_us
            + self.link_delay_us(from, to);
        self.schedule(
            at,
            Ev::SyncTurn {
                id: p.id,
                to,
                frames: p.frames,
            },
        );
    }

    pub(super) fn sync_alive(&self, s: &SyncState) -> bool {
        self.nodes[s.a].epoch == s.epochs.0
            && self.nodes[s.b].epoch == s.epochs.1
            && self.nodes[s.a].engine.is_some()
            && self.nodes[s.b].engine.is_some()
            && self.reachable(s.a, s.b)
    }

    pub(super) fn sync_turn(&mut self, id: u64, to: usize, frames: Vec<SyncFrame>) {
        let Some(mut s) = self.syncs.remove(&id) else {
            return;
        };
        if !self.sync_alive(&s) {
            self.syncs.insert(id, s);
            self.sync_fail(id);
            return;
        }
        fnv(&mut self.trace, id << 8 | s.step as u64);
        let (a, b) = (s.a, s.b);
        let now = self.now_of(to);
        let e = self.nodes[to]
            .engine
            .as_mut()
            .expect("alive: checked above");
        let ex = if to == a { &mut s.ex_a } else { &mut s.ex_b };
        let answer = receive_turn(e, now, ex, frames);
        let done = ex.is_done();
        let answer = match answer {
            Ok(answer) => answer,
            Err(e) => {
                self.stats.syncs_refused += 1;
                if matches!(e, SyncError::IdentityMismatch { .. }) {
                    self.stats.identity_mismatches += 1;
                }
                self.syncs.insert(id, s);
                self.sync_fail(id);
                return;
            }
        };
        if to == a && done {
            // The initiator completed on the responder's turn: a contacted seed answered.
            if let Some(seed) = s.seed {
                let now = self.now_of(a);
                let b_id = self.nodes[b].id.clone();
                if let Some(ea) = self.nodes[a].engine.as_mut() {
                    ea.seed_result(now, seed, Some(b_id));
                }
            }
        }
        s.step += 1;
        // Both sides complete, in either order: the responder last in a three-turn
        // exchange, the initiator last in a four-turn one.
        if s.ex_a.is_done() && s.ex_b.is_done() {
            self.stats.syncs += 1;
        } else {
            self.syncs.insert(id, s);
        }
        if done {
            self.mark_node(to);
        }
        self.drain(to);
        if let Some(turn) = answer {
            let other = if to == a { b } else { a };
            self.send_turn(id, to, other, turn);
        }
    }

    pub(super) fn sync_fail(&mut self, id: u64) {
        let Some(s) = self.syncs.remove(&id) else {
            return;
        };
        self.stats.syncs_failed += 1;
        let SyncState {
            a,
            b,
            epochs,
            seed,
            ex_a,
            ex_b,
            ..
        } = s;
        for (node, epoch, ex) in [(a, epochs.0, ex_a), (b, epochs.1, ex_b)] {
            if self.nodes[node].epoch != epoch {
                continue;
            }
            let now = self.now_of(node);
            if let Some(e) = self.nodes[node].engine.as_mut() {
                ex.fail(e, now);
                if node == a {
                    if let Some(seed) = seed {
                        e.seed_result(now, seed, None);
                    }
                }
            }
            self.drain(node);
        }
    }
}
