//! Hybrid logical clock stamps.

use serde::{Deserialize, Serialize};

/// A hybrid logical clock stamp: wall milliseconds plus a logical counter.
///
/// Ordered lexicographically. Used only to pick the winner of concurrent writes
/// (causality itself is tracked by version vectors).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct Hlc {
    /// Physical component, milliseconds since the UNIX epoch.
    pub ms: u64,
    /// Logical component, breaks ties within one millisecond.
    pub lc: u32,
}

/// A node's hybrid logical clock.
#[derive(Debug, Clone, Default)]
pub struct HlcClock {
    last: Hlc,
    /// Largest forward jump (ms) seen from a remote stamp that was accepted.
    max_skew_ms: u64,
}

/// A remote stamp further ahead of our wall clock than the drift bound allows (folded
/// in only up to the bound).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooFarAhead {
    /// How far ahead of our wall clock the stamp was (ms).
    pub ahead_ms: u64,
}

impl HlcClock {
    /// A clock that has observed nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A fresh stamp, larger than every stamp issued or observed before (it saturates at
    /// the largest stamp, which the drift bound keeps out of reach of any real clock).
    pub fn tick(&mut self, wall_ms: u64) -> Hlc {
        let next = if wall_ms > self.last.ms {
            Hlc { ms: wall_ms, lc: 0 }
        } else if self.last.lc == u32::MAX {
            Hlc {
                ms: self.last.ms.saturating_add(1),
                lc: 0,
            }
        } else {
            Hlc {
                ms: self.last.ms,
                lc: self.last.lc + 1,
            }
        };
        self.last = next;
        next
    }

    /// Folds a remote stamp in so that later ticks are larger than it. A stamp more than
    /// `max_drift_ms` ahead of our wall clock is folded in only up to that bound and
    /// reported: one node with a wrong clock cannot drag every node's stamps forward.
    pub fn observe(
        &mut self,
        remote: Hlc,
        wall_ms: u64,
        max_drift_ms: u64,
    ) -> Result<(), TooFarAhead> {
        let ahead_ms = remote.ms.saturating_sub(wall_ms);
        if ahead_ms > max_drift_ms {
            let bound = Hlc {
                ms: wall_ms.saturating_add(max_drift_ms),
                lc: 0,
            };
            self.last = self.last.max(bound);
            return Err(TooFarAhead { ahead_ms });
        }
        self.max_skew_ms = self.max_skew_ms.max(ahead_ms);
        self.last = self.last.max(remote);
        Ok(())
    }

    /// Restores the last stamp from persisted state (our own, so not bounded).
    pub fn restore(&mut self, last: Hlc) {
        self.last = self.last.max(last);
    }

    /// The last stamp issued or observed.
    pub fn last(&self) -> Hlc {
        self.last
    }

    /// The largest amount (ms) by which an accepted remote stamp was ahead of the local
    /// wall clock.
    pub fn max_skew_ms(&self) -> u64 {
        self.max_skew_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_strictly_increasing_even_if_wall_clock_goes_back() {
        let mut c = HlcClock::new();
        let a = c.tick(100);
        let b = c.tick(90);
        let d = c.tick(100);
        assert!(a < b && b < d);
        c.observe(Hlc { ms: 500, lc: 7 }, 100, 1_000).unwrap();
        let e = c.tick(100);
        assert!(e > Hlc { ms: 500, lc: 7 });
        assert_eq!(c.max_skew_ms(), 400);
    }

    /// #16, finding 4: a stamp from a clock a year ahead was folded in, so every later
    /// local stamp was a year ahead too (and persisted).
    #[test]
    fn a_stamp_beyond_the_drift_bound_moves_the_clock_only_up_to_the_bound() {
        let year_ms = 365 * 24 * 3_600_000;
        let mut c = HlcClock::new();
        c.tick(1_000_000);
        let far = Hlc {
            ms: 1_000_000 + year_ms,
            lc: 0,
        };
        assert_eq!(
            c.observe(far, 1_000_000, 60_000),
            Err(TooFarAhead { ahead_ms: year_ms })
        );
        assert!(c.last().ms <= 1_060_000);
        assert!(c.tick(1_000_001).ms <= 1_060_000);
        // Within the bound is folded in as before.
        assert!(c
            .observe(
                Hlc {
                    ms: 1_070_000,
                    lc: 3
                },
                1_020_000,
                60_000
            )
            .is_ok());
        assert!(
            c.tick(1_020_001)
                > Hlc {
                    ms: 1_070_000,
                    lc: 3
                }
        );
    }

    /// #16, finding 4: a stamp near the largest value made `tick` overflow.
    #[test]
    fn ticking_past_the_largest_stamp_does_not_overflow() {
        let mut c = HlcClock::new();
        c.restore(Hlc {
            ms: u64::MAX,
            lc: u32::MAX,
        });
        let t = c.tick(5);
        assert_eq!(t.ms, u64::MAX);
        let _ = c.observe(
            Hlc {
                ms: u64::MAX,
                lc: 0,
            },
            u64::MAX,
            u64::MAX,
        );
    }
}
