//! What leaves the engine pays for it first: datagrams and sync stream bytes pass the
//! bandwidth buckets by traffic class, direct membership messages that find no tokens
//! wait in a bounded list, and the back-off steps fanout and budgets down under
//! pressure (ARCHITECTURE.md, "Bandwidth governance").

use std::collections::VecDeque;

use super::{Engine, Output};
use crate::core::dissemination::CAPPED;
use crate::core::limiter::Traffic;
use crate::core::proto::{encoded_len, Datagram, Item, SyncKind, DATAGRAM_OVERHEAD};
use crate::core::{NodeId, Now};

/// A direct message waiting for tokens: recipient, items, expiry (mono µs).
pub(super) type Deferred = (NodeId, Vec<(Item, Traffic)>, u64);

/// Most direct membership messages waiting for tokens at once.
pub(super) const DEFERRED_MAX: usize = 1_024;

/// Bandwidth back-off: under pressure fanout and retransmit budgets halve and the
/// anti-entropy interval doubles per level; calm rounds step it back down.
#[derive(Debug, Clone, Default)]
pub(super) struct Backoff {
    pub(super) level: u32,
    calm_rounds: u32,
    refused_seen: u64,
}

/// Highest back-off level: fanout and budgets divided by 8, anti-entropy interval × 8.
pub const MAX_BACKOFF: u32 = 3;
/// Gossip rounds without pressure before the back-off steps down one level.
const CALM_ROUNDS: u32 = 5;

impl Engine {
    /// Sends `items` (membership traffic) to `to` in one datagram, filling the rest with
    /// queued gossip as far as the bandwidth limiter allows.
    pub(super) fn send_with_piggyback(&mut self, to: &NodeId, items: Vec<Item>) {
        let Some(addr) = self.addr_of(to) else { return };
        let used: usize = items.iter().map(encoded_len).sum();
        let room = self.cfg.max_datagram.saturating_sub(used);
        // Probes (ping, ack, ping-req, nack) ride on the failure detector's tokens;
        // anything else sent directly (a suspicion, a member's state) is membership.
        let mut items: Vec<(Item, Traffic)> = items
            .into_iter()
            .map(|i| {
                let t = match i {
                    Item::Ping { .. }
                    | Item::Ack { .. }
                    | Item::PingReq { .. }
                    | Item::Nack { .. } => Traffic::Probe,
                    _ => Traffic::Membership,
                };
                (i, t)
            })
            .collect();
        let n_direct = items.len();
        if room > DATAGRAM_OVERHEAD + 8 {
            let caps = self.caps(to).map(|c| c.saturating_sub(used));
            // Probes of other datacenters carry no deltas (locality.rs).
            let far = self.crosses_dc(to);
            let more = self.queue.pack_classified(room, caps, &[], |item| {
                (far && item.is_data()) || matches!(item, Item::Member(s) if &s.info.id == to)
            });
            items.extend(more);
        }
        let direct: Vec<(Item, Traffic)> = items[..n_direct].to_vec();
        if !self.emit(to, addr, items, false) {
            // Not lost: direct membership traffic waits for tokens (see `defer`).
            self.defer(to, direct);
        }
    }

    /// The class a sync stream's bytes are charged to: a join (a node entering or
    /// re-entering the cluster) is membership traffic; periodic exchanges are
    /// anti-entropy, the lowest priority.
    pub(super) fn stream_class(kind: SyncKind) -> Traffic {
        match kind {
            SyncKind::Join => Traffic::Membership,
            _ => Traffic::AntiEntropy,
        }
    }

    /// Charges `bytes` of a sync stream of `kind` to `peer`. Returns `Err(at)` (mono
    /// µs) when the tokens are not there yet: wait until then and ask again. Send big
    /// transfers in pieces of at most [`Engine::stream_chunk`] bytes.
    pub(crate) fn stream_admit(
        &mut self,
        now: Now,
        peer: &NodeId,
        kind: SyncKind,
        bytes: usize,
    ) -> Result<(), u64> {
        self.tick(now);
        let class = Self::stream_class(kind);
        if self.limiter.allowance(now.mono_us, peer, class) >= bytes
            && self.limiter.admit(now.mono_us, peer, class, bytes)
        {
            return Ok(());
        }
        let at = self
            .limiter
            .ready_at(now.mono_us, peer, class, bytes as u64)
            .max(now.mono_us + 1_000);
        Err(at)
    }

    /// The largest piece of a sync stream of `kind` to pass to [`Engine::stream_admit`]
    /// at once.
    pub(crate) fn stream_chunk(&self, kind: SyncKind) -> usize {
        self.limiter.max_chunk(Self::stream_class(kind))
    }

    /// Charges and emits one datagram (or reliable send) made of `items`, each tagged
    /// with its traffic class. Returns false (and counts it) when the tokens are not
    /// there; the caller's items are then lost for this peer and anti-entropy repairs.
    pub(super) fn emit(
        &mut self,
        to: &NodeId,
        addr: String,
        items: Vec<(Item, Traffic)>,
        reliable: bool,
    ) -> bool {
        if items.is_empty() {
            return false;
        }
        // What the datagram costs on the wire: items, the datagram's own header (at most
        // DATAGRAM_OVERHEAD), the version byte, and DATAGRAM_OVERHEAD for the packet.
        let (bytes, lowest) = Self::wire_cost(&items);
        if !self.limiter.admit(self.clock_us, to, lowest, bytes) {
            self.stats.sends_limited += 1;
            return false;
        }
        let datagram = Datagram {
            items: items.into_iter().map(|(i, _)| i).collect(),
        };
        if reliable {
            self.out.push_back(Output::Reliable {
                to: to.clone(),
                addr,
                datagram,
            });
        } else {
            self.stats.datagrams_out += 1;
            self.stats.items_out += datagram.items.len() as u64;
            self.out.push_back(Output::Datagram {
                to: to.clone(),
                addr,
                datagram,
            });
        }
        true
    }

    /// Keeps direct membership `items` for `to` until tokens allow (bounded; stale ones
    /// expire after a probe period, as a late probe or answer is worthless).
    pub(super) fn defer(&mut self, to: &NodeId, items: Vec<(Item, Traffic)>) {
        if items.is_empty() {
            return;
        }
        self.stats.sends_deferred += 1;
        if self.deferred.len() >= DEFERRED_MAX {
            self.deferred.pop_front();
            self.stats.deferred_dropped += 1;
        }
        let expires = self.clock_us + self.cfg.probe_interval_ms * 1000;
        self.deferred.push_back((to.clone(), items, expires));
    }

    pub(super) fn wire_cost(items: &[(Item, Traffic)]) -> (usize, Traffic) {
        let mut bytes = 2 * DATAGRAM_OVERHEAD + 1;
        let mut lowest = Traffic::Probe;
        for (item, t) in items {
            bytes += encoded_len(item);
            lowest = lowest.max(*t);
        }
        (bytes, lowest)
    }

    /// Sends what waited for tokens, oldest first, as far as the tokens go.
    pub(super) fn flush_deferred(&mut self) {
        let now = self.clock_us;
        let mut keep = VecDeque::new();
        while let Some((to, items, expires)) = self.deferred.pop_front() {
            if expires <= now {
                self.stats.deferred_dropped += 1;
                continue;
            }
            let (bytes, class) = Self::wire_cost(&items);
            let addr = self.addr_of(&to);
            match addr {
                Some(addr) if self.limiter.allowance(now, &to, class) >= bytes => {
                    self.emit(&to, addr, items, false);
                }
                Some(_) => keep.push_back((to, items, expires)),
                None => self.stats.deferred_dropped += 1,
            }
        }
        self.deferred = keep;
    }

    /// When the first deferred message can go (mono µs).
    pub(super) fn deferred_deadline(&self) -> Option<u64> {
        let (to, items, expires) = self.deferred.front()?;
        let (bytes, class) = Self::wire_cost(items);
        let ready = self
            .limiter
            .ready_at(self.clock_us, to, class, bytes as u64)
            .max(self.clock_us + 1_000);
        Some(ready.min(*expires))
    }

    /// Byte caps per queued class (membership, fresh, retransmit, announce) for a
    /// datagram to `peer`.
    pub(super) fn caps(&self, peer: &NodeId) -> [usize; CAPPED] {
        let now = self.clock_us;
        // `pack` counts one DATAGRAM_OVERHEAD; `emit` charges the version byte and the
        // packet overhead on top.
        let extra = DATAGRAM_OVERHEAD + 1;
        [
            Traffic::Membership,
            Traffic::Fresh,
            Traffic::Retransmit,
            Traffic::Announce,
        ]
        .map(|t| self.limiter.allowance(now, peer, t).saturating_sub(extra))
    }

    /// One gossip round's worth of back-off bookkeeping: step up when the limiter
    /// refused something or the bucket sank below the retransmit reserve since the last
    /// round; step down after [`CALM_ROUNDS`] calm rounds.
    pub(super) fn update_backoff(&mut self) {
        if !self.limiter.is_limited() {
            return;
        }
        let refused: u64 = self.limiter.stats().refused.iter().sum();
        let low = self.limiter.tokens(self.clock_us) < self.limiter.burst() * 3 / 10;
        let pressure = refused > self.backoff.refused_seen || low;
        self.backoff.refused_seen = refused;
        if pressure {
            self.backoff.calm_rounds = 0;
            if self.backoff.level < MAX_BACKOFF {
                self.backoff.level += 1;
                self.stats.backoff_steps += 1;
                // Budgets already queued shrink with the level too.
                let cap = self.delta_budget();
                self.queue.cap_delta_budgets(cap);
            }
        } else if self.backoff.level > 0 {
            self.backoff.calm_rounds += 1;
            if self.backoff.calm_rounds >= CALM_ROUNDS {
                self.backoff.level -= 1;
                self.backoff.calm_rounds = 0;
            }
        }
    }
}
