//! The engine's timers in one table: what each waits for, when it is due, and what runs
//! when it fires. [`Engine::poll_timeout`] is the earliest deadline of the table, and
//! [`Engine::handle_timeout`] fires every due timer in the table's order.

use rand::Rng;

use super::{Engine, GC_PERIOD_US};
use crate::core::proto::MemberStatus;
use crate::core::Now;

/// One of the engine's timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Timer {
    /// Direct membership messages waiting for bandwidth tokens.
    Deferred,
    /// SWIM: the probe period, probe and relay timeouts, suspicions, reaping.
    Swim,
    /// Lazy repair: grafts due, and their retries.
    Graft,
    /// User events' and queries' pulls and deadlines.
    Events,
    /// The gossip round, with the WAN round and the back-off update.
    Gossip,
    /// The periodic anti-entropy exchange.
    Sync,
    /// Tombstone collection and pruning of per-peer state.
    Gc,
    /// Contacting seeds until joined, with back-off.
    Seeds,
}

/// Every timer, in the order [`Engine::handle_timeout`] fires them.
pub(super) const TIMERS: [Timer; 8] = [
    Timer::Deferred,
    Timer::Swim,
    Timer::Graft,
    Timer::Events,
    Timer::Gossip,
    Timer::Sync,
    Timer::Gc,
    Timer::Seeds,
];

impl Engine {
    /// When `timer` is next due (mono µs); `None` while it waits for nothing.
    pub(super) fn deadline(&self, timer: Timer) -> Option<u64> {
        match timer {
            Timer::Deferred => self.deferred_deadline(),
            Timer::Swim => Some(self.swim.next_deadline()),
            Timer::Graft => self.graft_deadline(),
            Timer::Events => self.event_deadline(),
            Timer::Gossip => Some(self.next_gossip_us),
            Timer::Sync => Some(self.sync_deadline()),
            Timer::Gc => Some(self.next_gc_us),
            Timer::Seeds => self.seeds.deadline(|id| self.seed_joined(id)),
        }
    }

    /// Whether `timer` runs at `t`. Deferred messages are offered at every call while
    /// any wait (tokens may have come back sooner than the bucket predicted); SWIM and
    /// the seeds check their own several deadlines.
    fn due(&self, timer: Timer, t: u64) -> bool {
        match timer {
            Timer::Deferred => !self.deferred.is_empty(),
            Timer::Swim | Timer::Seeds => true,
            _ => self.deadline(timer).is_some_and(|d| d <= t),
        }
    }

    /// Runs `timer`'s work and schedules its next deadline.
    fn fire(&mut self, timer: Timer, now: Now) {
        let t = now.mono_us;
        match timer {
            Timer::Deferred => self.flush_deferred(),
            Timer::Swim => self.swim_timers(now),
            Timer::Graft => self.graft_timers(),
            Timer::Events => self.event_timers(),
            Timer::Gossip => {
                self.next_gossip_us = t + self.cfg.gossip_interval_ms * 1000;
                self.update_backoff();
                self.repair_round();
                self.gossip_round();
                self.wan_round();
            }
            Timer::Sync => {
                if self.next_sync_us > t {
                    self.stats.sync_after_bursts += 1;
                }
                self.news_since_sync = 0;
                // ±10% jitter keeps nodes from synchronising their exchanges.
                let base = (self.cfg.sync_interval_ms * 1000) << self.backoff.level;
                self.next_sync_us = t + base - base / 10 + self.rng.random_range(0..=base / 5);
                self.start_periodic_sync();
            }
            Timer::Gc => {
                self.next_gc_us = t + GC_PERIOD_US;
                self.collect_tombstones(now);
                let members = &self.members;
                self.limiter.prune(t, |id| {
                    members
                        .get(id)
                        .is_some_and(|m| m.state.status == MemberStatus::Alive)
                });
                self.inbound.prune();
                self.event_prune();
            }
            Timer::Seeds => self.seed_timers(now),
        }
    }

    /// Fires every due timer, in the table's order.
    pub(super) fn fire_due(&mut self, now: Now) {
        for timer in TIMERS {
            if self.due(timer, now.mono_us) {
                self.fire(timer, now);
            }
        }
    }

    /// The earliest deadline of the table.
    pub(super) fn earliest_deadline(&self) -> u64 {
        TIMERS
            .iter()
            .filter_map(|&timer| self.deadline(timer))
            .min()
            .unwrap_or(u64::MAX)
    }
}
