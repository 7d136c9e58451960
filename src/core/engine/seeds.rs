//! Seeds: the addresses a node contacts until one answers, with back-off, and what an
//! operator sees of them.

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::Engine;
use crate::core::{NodeId, Now};

#[derive(Debug, Clone)]
pub(super) struct Seed {
    pub(super) addr: String,
    pub(super) next_us: u64,
    backoff_ms: u64,
    pub(super) member: Option<NodeId>,
    pub(super) in_flight: bool,
    /// Attempts that failed in a row.
    failures: u32,
}

impl Seed {
    pub(super) fn new(addr: String, now_us: u64, backoff_ms: u64) -> Self {
        Self {
            addr,
            next_us: now_us,
            backoff_ms,
            member: None,
            in_flight: false,
            failures: 0,
        }
    }
}

/// A seed as the operator sees it (`gossamer status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedView {
    /// The configured address.
    pub addr: String,
    /// The member that answered there, once one did.
    pub member: Option<NodeId>,
    /// Whether that member is alive (nothing more to do with this seed).
    pub joined: bool,
    /// Attempts that failed in a row.
    pub failures: u32,
    /// Time until the next attempt (ms); `None` while one runs or when satisfied.
    pub retry_in_ms: Option<u64>,
}

impl Engine {
    /// Reports the outcome of an [`Output::Contact`]: the node that answered, or failure.
    pub fn seed_result(&mut self, now: Now, seed: usize, answered: Option<NodeId>) {
        let floor = self.cfg.seed_backoff_floor_ms;
        let cap = self.cfg.seed_backoff_cap_ms;
        let jitter = self.rng.random_range(0..=floor * 1000 / 2);
        let Some(s) = self.seeds.get_mut(seed) else {
            return;
        };
        s.in_flight = false;
        match answered {
            Some(id) => {
                s.failures = 0;
                s.member = Some(id);
                s.backoff_ms = floor;
                s.next_us = now.mono_us + floor * 1000 + jitter;
            }
            None => {
                s.failures = s.failures.saturating_add(1);
                s.next_us = now.mono_us + s.backoff_ms * 1000 + jitter;
                s.backoff_ms = (s.backoff_ms * 2).min(cap);
            }
        }
    }

    /// Every configured seed and how contacting it goes.
    pub fn seeds(&self, now: Now) -> Vec<SeedView> {
        self.seeds
            .iter()
            .map(|s| {
                let satisfied = self.seed_satisfied(s);
                SeedView {
                    addr: s.addr.clone(),
                    member: s.member.clone(),
                    joined: satisfied,
                    failures: s.failures,
                    retry_in_ms: (!satisfied && !s.in_flight)
                        .then(|| s.next_us.saturating_sub(now.mono_us) / 1000),
                }
            })
            .collect()
    }

    /// Attempts in a row that failed at seed `seed`.
    pub fn seed_failures(&self, seed: usize) -> u32 {
        self.seeds.get(seed).map_or(0, |s| s.failures)
    }

    pub(super) fn seed_satisfied(&self, s: &Seed) -> bool {
        match &s.member {
            Some(id) if id == self.id() => true,
            Some(id) => self.members.is_live(id),
            None => false,
        }
    }
}
