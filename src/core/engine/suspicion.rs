//! The Lifeguard suspicion timeout: how long a suspected member has to refute before it
//! is declared dead, and how independent accusers shorten that time.
//!
//! With `N` live members (ourselves included) and probe interval `P`:
//! - the floor is `min = suspicion_mult · max(1, log10 N) · P`;
//! - the ceiling is `max = suspicion_max_mult · min`;
//! - `K = min(suspicion_confirmations, N − 2)` independent confirmations are awaited (the
//!   suspect and the first accuser cannot confirm);
//! - with `C` accusers beyond the first, the timeout is
//!   `max − (max − min) · log(C + 1) / log(K + 1)`, never below `min` (`min` when `K = 0`);
//! - while nobody confirmed the suspicion (`C = 0`), the timeout is stretched by our local
//!   health multiplier at the time the suspicion started (Lifeguard's local health
//!   awareness: a node that itself misses acks is slower to accuse). A confirmed
//!   suspicion is not stretched: other members' failed probes are the evidence.

use std::collections::BTreeSet;

use super::Config;
use crate::core::NodeId;

/// One suspicion held by this node.
#[derive(Debug, Clone)]
pub(super) struct Suspicion {
    /// The suspect's incarnation this suspicion is about.
    pub(super) incarnation: u64,
    /// When (mono µs) it started here.
    pub(super) start_us: u64,
    /// Shortest timeout (µs), reached with `k` confirmations.
    min_us: u64,
    /// Longest timeout (µs) of a healthy node, without confirmations.
    max_us: u64,
    /// Confirmations awaited before the timeout reaches its floor.
    k: u32,
    /// Our local health multiplier when it started (1 = healthy).
    stretch: u64,
    /// Distinct members that accused the suspect (the first one included).
    pub(super) accusers: BTreeSet<NodeId>,
}

impl Suspicion {
    /// A suspicion at `incarnation`, started at `start_us` with `live` members alive or
    /// suspect (ourselves included) and local health multiplier `health` (≥ 1).
    pub(super) fn new(
        cfg: &Config,
        live: usize,
        health: u64,
        incarnation: u64,
        start_us: u64,
        accuser: Option<NodeId>,
    ) -> Self {
        let n = live.max(1) as f64;
        let interval = cfg.probe_interval_ms * 1000;
        let min_us = (cfg.suspicion_mult as f64 * n.log10().max(1.0) * interval as f64) as u64;
        let max_us = min_us * cfg.suspicion_max_mult.max(1) as u64;
        let k = cfg
            .suspicion_confirmations
            .min(live.saturating_sub(2).min(u32::MAX as usize) as u32);
        Self {
            incarnation,
            start_us,
            min_us,
            max_us,
            k,
            stretch: health.max(1),
            accusers: accuser.into_iter().collect(),
        }
    }

    /// Independent confirmations received: accusers beyond the first.
    pub(super) fn confirmations(&self) -> u32 {
        self.accusers.len().saturating_sub(1) as u32
    }

    /// The timeout (µs from the start) with the accusers counted so far.
    pub(super) fn timeout_us(&self) -> u64 {
        let c = self.confirmations();
        let base = if self.k == 0 {
            self.min_us
        } else {
            let frac = (c as f64 + 1.0).ln() / (self.k as f64 + 1.0).ln();
            let raw = self.max_us as f64 - frac * (self.max_us - self.min_us) as f64;
            raw.max(self.min_us as f64) as u64
        };
        if c == 0 {
            base.saturating_mul(self.stretch)
        } else {
            base
        }
    }

    /// When (mono µs) the suspicion times out into a death.
    pub(super) fn deadline_us(&self) -> u64 {
        self.start_us.saturating_add(self.timeout_us())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> NodeId {
        NodeId::new(s).unwrap()
    }

    fn cfg() -> Config {
        Config {
            probe_interval_ms: 500,
            suspicion_mult: 2,
            suspicion_max_mult: 6,
            suspicion_confirmations: 3,
            ..Config::default()
        }
    }

    fn confirm(s: &mut Suspicion, n: usize) {
        for i in 0..n {
            s.accusers.insert(id(&format!("c{i}")));
        }
    }

    #[test]
    fn floor_is_mult_log10_n_probe_periods_and_max_is_max_mult_times_it() {
        // N = 100: 2 · log10(100) · 500 ms = 2 s; max 6 · 2 s.
        let s = Suspicion::new(&cfg(), 100, 1, 7, 1_000, Some(id("a")));
        assert_eq!(s.min_us, 2_000_000);
        assert_eq!(s.max_us, 12_000_000);
        assert_eq!(
            s.timeout_us(),
            12_000_000,
            "one accuser: the longest timeout"
        );
        assert_eq!(s.deadline_us(), 12_001_000);
        // Below 10 members the floor stays at mult · 1 probe periods.
        let small = Suspicion::new(&cfg(), 5, 1, 7, 0, Some(id("a")));
        assert_eq!(small.min_us, 1_000_000);
    }

    #[test]
    fn each_independent_accuser_shortens_the_timeout_down_to_the_floor() {
        let mut s = Suspicion::new(&cfg(), 100, 1, 7, 0, Some(id("a")));
        let mut last = s.timeout_us();
        for c in 1..=3 {
            confirm(&mut s, c);
            assert_eq!(s.confirmations(), c as u32);
            let t = s.timeout_us();
            assert!(
                t < last,
                "confirmation {c}: {t} µs is not shorter than {last} µs"
            );
            last = t;
        }
        // Lifeguard's log-scaled formula: C = 1 of K = 3 takes half the range off.
        let mut one = Suspicion::new(&cfg(), 100, 1, 7, 0, Some(id("a")));
        confirm(&mut one, 1);
        assert_eq!(one.timeout_us(), 7_000_000);
        assert_eq!(last, 2_000_000, "K confirmations reach the floor");
        confirm(&mut s, 10);
        assert_eq!(s.timeout_us(), 2_000_000, "never below the floor");
    }

    #[test]
    fn confirmations_awaited_are_capped_at_n_minus_2() {
        // Three members: only one other can confirm, so one confirmation reaches the floor.
        let mut s = Suspicion::new(&cfg(), 3, 1, 7, 0, Some(id("a")));
        assert_eq!(s.k, 1);
        confirm(&mut s, 1);
        assert_eq!(s.timeout_us(), s.min_us);
        // Two members: nobody can confirm; the floor applies at once.
        let pair = Suspicion::new(&cfg(), 2, 1, 7, 0, Some(id("a")));
        assert_eq!(pair.k, 0);
        assert_eq!(pair.timeout_us(), pair.min_us);
        // A large cluster keeps the configured K.
        assert_eq!(Suspicion::new(&cfg(), 1_000, 1, 7, 0, None).k, 3);
    }

    #[test]
    fn local_health_stretches_only_unconfirmed_suspicions() {
        let healthy = Suspicion::new(&cfg(), 100, 1, 7, 0, Some(id("a")));
        let mut sick = Suspicion::new(&cfg(), 100, 4, 7, 0, Some(id("a")));
        assert_eq!(sick.timeout_us(), 4 * healthy.timeout_us());
        confirm(&mut sick, 1);
        let mut healthy_confirmed = healthy.clone();
        confirm(&mut healthy_confirmed, 1);
        assert_eq!(
            sick.timeout_us(),
            healthy_confirmed.timeout_us(),
            "a confirmed suspicion is not stretched"
        );
        // No accuser known yet (learned from a member state): unconfirmed as well.
        let none = Suspicion::new(&cfg(), 100, 2, 7, 0, None);
        assert_eq!(none.timeout_us(), 2 * healthy.timeout_us());
        // With nobody able to confirm, the floor is stretched too.
        let pair = Suspicion::new(&cfg(), 2, 3, 7, 0, Some(id("a")));
        assert_eq!(pair.timeout_us(), 3 * pair.min_us);
    }
}
