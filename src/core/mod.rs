//! The sans-IO protocol core.
//!
//! Nothing in this module touches a socket, a runtime, the wall clock or a global
//! random number generator: time arrives as [`Now`] on every call, randomness comes
//! from a seeded generator owned by the [`engine::Engine`], and every effect leaves
//! as an [`engine::Output`] that the caller (the async runtime in `crate::node`, or
//! the simulator in `crate::sim`) carries out. This is what lets the same code run
//! over real QUIC and, deterministically, at 10,000 nodes in the simulator.

pub mod authority;
pub mod dissemination;
pub mod engine;
pub mod events;
pub mod id;
pub mod limiter;
pub mod membership;
pub mod proto;
pub mod queries;
pub mod state;
pub mod sync;

pub use engine::{Config, ConfigError, Engine, Event, Output, PushMode};
pub use id::{ClusterName, IdError, NodeId};

/// Current time as seen by the core.
///
/// `mono_us` is a monotonic clock in microseconds (any origin) that drives timers;
/// `wall_ms` is wall-clock milliseconds since the UNIX epoch that feeds the hybrid
/// logical clock and tombstone expiry. The simulator supplies both virtually
/// (including skew); the runtime reads them from the OS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Now {
    /// Monotonic microseconds.
    pub mono_us: u64,
    /// Wall-clock milliseconds since the UNIX epoch.
    pub wall_ms: u64,
}

impl Now {
    /// Builds a time from its two readings.
    pub fn new(mono_us: u64, wall_ms: u64) -> Self {
        Self { mono_us, wall_ms }
    }

    /// This time advanced by `us` microseconds on both clocks.
    pub fn plus_us(self, us: u64) -> Self {
        Self {
            mono_us: self.mono_us + us,
            wall_ms: self.wall_ms + us / 1000,
        }
    }
}
