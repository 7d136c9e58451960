//! Seeds: the addresses a node contacts until one answers, with back-off, and what an
//! operator sees of them.

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::{Engine, Output};
use crate::core::{NodeId, Now};

#[derive(Debug, Clone)]
struct Seed {
    addr: String,
    next_us: u64,
    backoff_ms: u64,
    member: Option<NodeId>,
    in_flight: bool,
    /// Attempts that failed in a row.
    failures: u32,
}

/// The configured seeds and how contacting each goes: an attempt at a time per seed,
/// exponential back-off between `floor` and `cap` after failures, and nothing more to do
/// once the member that answered there is alive (`joined`, a test the caller passes).
#[derive(Debug, Clone)]
pub(super) struct Seeds {
    list: Vec<Seed>,
    floor_ms: u64,
    cap_ms: u64,
}

impl Seeds {
    /// Seeds at `addrs`, each due at once.
    pub(super) fn new(addrs: Vec<String>, now_us: u64, floor_ms: u64, cap_ms: u64) -> Self {
        let list = addrs
            .into_iter()
            .map(|addr| Seed {
                addr,
                next_us: now_us,
                backoff_ms: floor_ms,
                member: None,
                in_flight: false,
                failures: 0,
            })
            .collect();
        Self {
            list,
            floor_ms,
            cap_ms,
        }
    }

    /// Records the outcome of an attempt at seed `i`; the next one waits the floor (after
    /// an answer) or the current back-off (after a failure, which doubles it), plus
    /// `jitter_us`.
    pub(super) fn result(
        &mut self,
        now_us: u64,
        i: usize,
        answered: Option<NodeId>,
        jitter_us: u64,
    ) {
        let (floor, cap) = (self.floor_ms, self.cap_ms);
        let Some(s) = self.list.get_mut(i) else {
            return;
        };
        s.in_flight = false;
        match answered {
            Some(id) => {
                s.failures = 0;
                s.member = Some(id);
                s.backoff_ms = floor;
                s.next_us = now_us + floor * 1000 + jitter_us;
            }
            None => {
                s.failures = s.failures.saturating_add(1);
                s.next_us = now_us + s.backoff_ms * 1000 + jitter_us;
                s.backoff_ms = (s.backoff_ms * 2).min(cap);
            }
        }
    }

    /// Seeds no member answered at yet, with their addresses.
    pub(super) fn unanswered(&self) -> impl Iterator<Item = (usize, &str)> {
        self.list
            .iter()
            .enumerate()
            .filter(|(_, s)| s.member.is_none())
            .map(|(i, s)| (i, s.addr.as_str()))
    }

    /// When (mono µs) the next attempt is due, if one is to be made.
    pub(super) fn deadline(&self, joined: impl Fn(&NodeId) -> bool) -> Option<u64> {
        self.list
            .iter()
            .filter(|s| !s.in_flight && !s.member.as_ref().is_some_and(&joined))
            .map(|s| s.next_us)
            .min()
    }

    /// The seeds due at `now_us`, marked in flight: index and address of each.
    pub(super) fn due(
        &mut self,
        now_us: u64,
        joined: impl Fn(&NodeId) -> bool,
    ) -> Vec<(usize, String)> {
        let mut out = Vec::new();
        for (i, s) in self.list.iter_mut().enumerate() {
            if s.in_flight || now_us < s.next_us || s.member.as_ref().is_some_and(&joined) {
                continue;
            }
            s.in_flight = true;
            out.push((i, s.addr.clone()));
        }
        out
    }

    /// Every seed as the operator sees it.
    pub(super) fn views(&self, now_us: u64, joined: impl Fn(&NodeId) -> bool) -> Vec<SeedView> {
        self.list
            .iter()
            .map(|s| {
                let satisfied = s.member.as_ref().is_some_and(&joined);
                SeedView {
                    addr: s.addr.clone(),
                    member: s.member.clone(),
                    joined: satisfied,
                    failures: s.failures,
                    retry_in_ms: (!satisfied && !s.in_flight)
                        .then(|| s.next_us.saturating_sub(now_us) / 1000),
                }
            })
            .collect()
    }

    /// Attempts in a row that failed at seed `i`.
    pub(super) fn failures(&self, i: usize) -> u32 {
        self.list.get(i).map_or(0, |s| s.failures)
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
    /// Reports the outcome of an [`Output::Contact`]: the node
    /// that answered, or failure.
    pub fn seed_result(&mut self, now: Now, seed: usize, answered: Option<NodeId>) {
        let jitter = self
            .rng
            .random_range(0..=self.cfg.seed_backoff_floor_ms * 1000 / 2);
        self.seeds.result(now.mono_us, seed, answered, jitter);
    }

    /// Every configured seed and how contacting it goes.
    pub fn seeds(&self, now: Now) -> Vec<SeedView> {
        self.seeds.views(now.mono_us, |id| self.seed_joined(id))
    }

    /// Attempts in a row that failed at seed `seed`.
    pub fn seed_failures(&self, seed: usize) -> u32 {
        self.seeds.failures(seed)
    }

    /// Whether the member that answered at a seed is one we need contact no more: us, or
    /// a live member.
    pub(super) fn seed_joined(&self, id: &NodeId) -> bool {
        id == self.id() || self.members.is_live(id)
    }

    /// Seeds that a member we already know (from a preload) listens at count as answered.
    pub(super) fn seeds_from_members(&mut self, now: Now) {
        let known: Vec<(usize, NodeId)> = self
            .seeds
            .unanswered()
            .filter_map(|(i, addr)| {
                self.members
                    .others()
                    .find(|m| m.state.info.addr == addr)
                    .map(|m| (i, m.state.info.id.clone()))
            })
            .collect();
        for (i, id) in known {
            self.seed_result(now, i, Some(id));
        }
    }

    /// Contacts the seeds that are due.
    pub(super) fn seed_timers(&mut self, now: Now) {
        let members = &self.members;
        let joined = |id: &NodeId| id == members.my_id() || members.is_live(id);
        let due = self.seeds.due(now.mono_us, joined);
        for (seed, addr) in due {
            self.stats.seed_attempts += 1;
            self.out.push_back(Output::Contact { seed, addr });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> NodeId {
        NodeId::new(s).unwrap()
    }

    #[test]
    fn failures_back_off_to_the_cap_and_an_answer_resets_to_the_floor() {
        let mut s = Seeds::new(vec!["a:1".into(), "b:1".into()], 0, 500, 2_000);
        let nobody = |_: &NodeId| false;
        assert_eq!(s.due(0, nobody), vec![(0, "a:1".into()), (1, "b:1".into())]);
        assert!(s.due(0, nobody).is_empty(), "in flight: not due again");
        assert_eq!(
            s.deadline(nobody),
            None,
            "nothing to wait for while both run"
        );
        let mut waits = Vec::new();
        let mut now = 0;
        for _ in 0..4 {
            s.result(now, 0, None, 0);
            let next = s.deadline(nobody).unwrap();
            waits.push((next - now) / 1000);
            now = next;
            assert_eq!(s.due(now, nobody), vec![(0, "a:1".into())]);
        }
        assert_eq!(waits, [500, 1_000, 2_000, 2_000], "doubling up to the cap");
        assert_eq!(s.failures(0), 4);
        s.result(now, 0, Some(id("n1")), 7);
        assert_eq!(s.failures(0), 0);
        assert_eq!(s.deadline(nobody), Some(now + 500_000 + 7));
        // Its member is alive: nothing more to do with that seed, the other still runs.
        let n1_alive = |m: &NodeId| m.as_str() == "n1";
        assert_eq!(s.deadline(n1_alive), None);
        let views = s.views(now, n1_alive);
        assert!(views[0].joined && views[0].retry_in_ms.is_none());
        assert!(
            !views[1].joined && views[1].retry_in_ms.is_none(),
            "b:1 in flight"
        );
        assert_eq!(s.unanswered().collect::<Vec<_>>(), vec![(1, "b:1")]);
    }
}
