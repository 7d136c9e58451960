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
    /// Largest forward jump (ms) seen from a remote stamp, for skew reporting.
    max_skew_ms: u64,
}

impl HlcClock {
    /// A clock that has observed nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A fresh stamp, larger than every stamp issued or observed before.
    pub fn tick(&mut self, wall_ms: u64) -> Hlc {
        let next = if wall_ms > self.last.ms {
            Hlc { ms: wall_ms, lc: 0 }
        } else if self.last.lc == u32::MAX {
            Hlc {
                ms: self.last.ms + 1,
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

    /// Folds a remote stamp in so that later ticks are larger than it.
    pub fn observe(&mut self, remote: Hlc, wall_ms: u64) {
        if remote.ms > wall_ms {
            self.max_skew_ms = self.max_skew_ms.max(remote.ms - wall_ms);
        }
        if remote > self.last {
            self.last = remote;
        }
    }

    /// The last stamp issued or observed.
    pub fn last(&self) -> Hlc {
        self.last
    }

    /// The largest amount (ms) by which a remote stamp was ahead of the local wall clock.
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
        c.observe(Hlc { ms: 500, lc: 7 }, 100);
        let e = c.tick(100);
        assert!(e > Hlc { ms: 500, lc: 7 });
        assert_eq!(c.max_skew_ms(), 400);
    }
}
