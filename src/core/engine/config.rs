//! Protocol tuning: every field of the `[gossip]` section, its defaults, the LAN, local
//! and WAN profiles, and validation.

use serde::{Deserialize, Serialize};

use crate::core::events::EventConfig;
use crate::core::queries::QueryConfig;
use crate::core::state::Limits;

/// Largest `awareness_max`: the health multiplier stretches timeouts at most 16 times.
pub const MAX_AWARENESS: u32 = 16;

/// Largest `suspicion_confirmations`: more would rarely arrive within a suspicion.
pub const MAX_SUSPICION_CONFIRMATIONS: u32 = 32;

/// How a fresh update travels from its writer, and from each member that forwards it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PushMode {
    /// Down a broadcast tree: about one copy per member, log₂ N hops. Gossip rounds
    /// repeat only the update's id, and a member missing an id asks for it
    /// (`engine/tree`).
    #[default]
    Tree,
    /// The older random push: `fanout` random peers per hop, and the whole update
    /// repeated in gossip rounds.
    Random,
    /// No push: replication is left to anti-entropy alone.
    Off,
}

/// A protocol setting out of range: the field, and what is wrong with it and how to
/// fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {problem}")]
pub struct ConfigError {
    /// The field, as it is named in the configuration file.
    pub field: &'static str,
    /// What is wrong, and what would fix it (it follows the field's name).
    pub problem: String,
}

/// A [`ConfigError`] for `field`.
pub(super) fn bad(field: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        field,
        problem: problem.into(),
    }
}

/// Protocol tuning. Every field is settable in the node's configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Peers a fresh update is pushed to at once, and per gossip round.
    pub fanout: usize,
    /// Period of piggyback gossip rounds (ms).
    pub gossip_interval_ms: u64,
    /// Period of anti-entropy exchanges (ms).
    pub sync_interval_ms: u64,
    /// Retransmit multiplier λ: each update is sent about `λ·log10(N+1)` times.
    pub retransmit_mult: u32,
    /// Largest datagram the core packs (bytes); the runtime lowers it per peer to the
    /// connection's `max_datagram_size()`.
    pub max_datagram: usize,
    /// How fresh updates are pushed as datagrams (`"tree"`, `"random"` or `"off"`).
    pub push: PushMode,
    /// With `push = "tree"`: how long a member told of an update it lacks waits for the tree
    /// to bring it before asking the teller (ms; at least twice the round trip to it).
    pub graft_timeout_ms: u64,
    /// How long deletes are remembered (ms) before their tombstones are collected.
    pub tombstone_grace_ms: u64,
    /// Shortest wait between attempts to contact a seed (ms).
    pub seed_backoff_floor_ms: u64,
    /// Longest wait between attempts to contact a seed (ms).
    pub seed_backoff_cap_ms: u64,
    /// Most broadcasts waiting in the queue; beyond it the oldest low-priority ones drop.
    pub queue_max: usize,
    /// Most members the table holds through second-hand introductions (a member that
    /// speaks for itself is always admitted): one member cannot fill every node's
    /// memory with invented members.
    pub max_members: usize,
    /// Members one peer may introduce second-hand at once (its bucket's size); a new
    /// member's own claims are never limited. With `intro_per_sec`, how fast a lying
    /// member can fill tables with invented members (each then has to be found dead and
    /// reaped) while a real join still spreads.
    pub intro_burst: u32,
    /// Members one peer may introduce second-hand per second, once its burst is spent.
    pub intro_per_sec: u32,
    /// Prefer peers in our own datacenter (`dc`) for gossip rounds, eager pushes and
    /// anti-entropy, and let a write cross to another datacenter only through its
    /// writer's bounded relays (see ARCHITECTURE.md, "Locality and WAN"). `false` treats
    /// every member alike, wherever it is.
    pub locality: bool,
    /// With `locality`: the share, in (0, 1], of gossip-round targets and anti-entropy
    /// exchanges that go to other datacenters, so that every datacenter keeps hearing
    /// every other (a share of 0 would make each datacenter an island).
    pub cross_dc_share: f64,
    /// With `locality`: nodes of each other datacenter a write is pushed to at once by
    /// its writer; they spread it inside their datacenter.
    pub dc_relays: usize,
    /// With `locality`: later gossip rounds in which the writer sends a write once more
    /// to one node of each other datacenter (covers WAN loss).
    pub dc_retransmits: u32,
    /// Probe timeouts are at least this multiple of the peer's measured round-trip time,
    /// with `probe_timeout_ms` as the floor, so a far peer is not suspected for being far;
    /// 0 turns the adaptation off.
    pub probe_rtt_mult: u32,
    /// SWIM protocol period: one member is probed per period (ms).
    pub probe_interval_ms: u64,
    /// How long to wait for a direct ack before asking others to probe (ms).
    pub probe_timeout_ms: u64,
    /// Members asked to probe indirectly when a direct probe times out (`k`).
    pub indirect_checks: usize,
    /// Suspicion timeout = `suspicion_mult · max(1, log10 N) · probe_interval` at the
    /// least (the floor, reached once `suspicion_confirmations` members confirmed).
    pub suspicion_mult: u32,
    /// The longest suspicion timeout, as a multiple of the least (Lifeguard): the
    /// timeout of a suspicion nobody confirmed yet.
    pub suspicion_max_mult: u32,
    /// Independent confirmations (accusers beyond the first) that bring the suspicion
    /// timeout down to its floor, each one shortening it on Lifeguard's log scale;
    /// capped at N − 2 in a cluster of N.
    pub suspicion_confirmations: u32,
    /// Ceiling of the local health multiplier (Lifeguard), 1 to 16: a struggling node
    /// stretches its probe interval and timeout, and the timeout of a suspicion nobody
    /// confirmed, by up to this factor (1 turns local health awareness off).
    pub awareness_max: u32,
    /// Dead and departed members are kept (as tombstones) this long before being
    /// forgotten (ms).
    pub reap_timeout_ms: u64,
    /// Cap on this node's gossip egress in bytes per second (datagrams and anti-entropy
    /// stream bytes alike); 0 means unlimited.
    pub gossip_bandwidth: u64,
    /// Token-bucket size in bytes: how far egress may run ahead of `gossip_bandwidth`
    /// (0 = automatic: 40 ms worth, so no 1-second window exceeds the cap by more
    /// than 4 %, and at least two datagrams).
    pub gossip_burst: u64,
    /// Share of `gossip_bandwidth` (and burst) one peer may take, in (0, 1].
    pub per_peer_share: f64,
    /// Datagrams accepted from one peer per second; beyond it they are dropped and
    /// counted (0 = unlimited).
    pub inbound_datagrams_per_peer: u32,
    /// Anti-entropy exchanges one peer may have open with us at once; more are refused.
    pub inbound_syncs_per_peer: u32,
    /// Key and value size limits.
    pub limits: Limits,
    /// User events: payload bound, per-sender rate, repair and dedup windows
    /// (`[gossip.events]`); queries travel as events and share these.
    pub events: EventConfig,
    /// Queries: answer bounds, timeouts, how many wait at once (`[gossip.queries]`).
    pub queries: QueryConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            fanout: 3,
            gossip_interval_ms: 200,
            sync_interval_ms: 2_000,
            retransmit_mult: 4,
            max_datagram: 1_200,
            push: PushMode::Tree,
            graft_timeout_ms: 20,
            tombstone_grace_ms: 24 * 3600 * 1000,
            seed_backoff_floor_ms: 1_000,
            seed_backoff_cap_ms: 30_000,
            queue_max: 4_096,
            max_members: 65_536,
            intro_burst: 1_024,
            intro_per_sec: 64,
            locality: true,
            cross_dc_share: 0.1,
            dc_relays: 2,
            dc_retransmits: 1,
            probe_rtt_mult: 3,
            probe_interval_ms: 500,
            probe_timeout_ms: 250,
            indirect_checks: 5,
            suspicion_mult: 2,
            suspicion_max_mult: 6,
            suspicion_confirmations: 3,
            awareness_max: 8,
            reap_timeout_ms: 3_600_000,
            gossip_bandwidth: 10_000_000,
            gossip_burst: 0,
            per_peer_share: 0.5,
            inbound_datagrams_per_peer: 2_000,
            inbound_syncs_per_peer: 2,
            limits: Limits::default(),
            events: EventConfig::default(),
            queries: QueryConfig::default(),
        }
    }
}

impl Config {
    /// The LAN profile (the default): 500 ms probe periods, 5 indirect checks, a
    /// suspicion floor of `2 · log10 N` periods reached with 3 confirmations (memberlist's
    /// LAN timings were 1 s, 3, 4 and 2; `scenarios/protocols/memberlist-lan.toml`),
    /// 200 ms gossip rounds.
    pub fn lan() -> Self {
        Self::default()
    }

    /// The loopback profile, for in-process clusters (tests, demos, `gossamer test`):
    /// faster gossip rounds, anti-entropy and seed retries than the LAN profile.
    pub fn local() -> Self {
        Self {
            gossip_interval_ms: 100,
            sync_interval_ms: 500,
            seed_backoff_floor_ms: 200,
            seed_backoff_cap_ms: 2_000,
            ..Self::default()
        }
    }

    /// The WAN profile: longer probe period and timeouts, slower gossip and
    /// anti-entropy, and a 1 MB/s gossip cap, for links of tens to hundreds of
    /// milliseconds. Its failure detector keeps memberlist's WAN constants (5 s probes,
    /// 3 s timeout, 3 indirect checks, suspicion multiplier 6, K = 4).
    pub fn wan() -> Self {
        Self {
            gossip_interval_ms: 500,
            sync_interval_ms: 10_000,
            probe_interval_ms: 5_000,
            probe_timeout_ms: 3_000,
            indirect_checks: 3,
            suspicion_mult: 6,
            suspicion_confirmations: 4,
            gossip_bandwidth: 1_000_000,
            ..Self::default()
        }
    }
}

impl Config {
    /// Checks the values; the error names the field and what would fix it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let pos = |field: &'static str, v: u64| {
            if v == 0 {
                Err(bad(field, "must be greater than 0"))
            } else {
                Ok(())
            }
        };
        pos("fanout", self.fanout as u64)?;
        pos("gossip_interval_ms", self.gossip_interval_ms)?;
        pos("sync_interval_ms", self.sync_interval_ms)?;
        pos("retransmit_mult", self.retransmit_mult as u64)?;
        pos("seed_backoff_floor_ms", self.seed_backoff_floor_ms)?;
        pos("queue_max", self.queue_max as u64)?;
        pos("max_members", self.max_members as u64)?;
        pos("intro_burst", self.intro_burst as u64)?;
        pos("intro_per_sec", self.intro_per_sec as u64)?;
        if self.graft_timeout_ms > 60_000 {
            return Err(bad(
                "graft_timeout_ms",
                format!(
                    "must be at most 60000 (got {}): a missing update waits that long \
                     before it is asked for",
                    self.graft_timeout_ms
                ),
            ));
        }
        self.validate_locality()?;
        pos("probe_interval_ms", self.probe_interval_ms)?;
        pos("probe_timeout_ms", self.probe_timeout_ms)?;
        pos("suspicion_mult", self.suspicion_mult as u64)?;
        pos("suspicion_max_mult", self.suspicion_max_mult as u64)?;
        pos("awareness_max", self.awareness_max as u64)?;
        if self.awareness_max > MAX_AWARENESS {
            return Err(bad(
                "awareness_max",
                format!(
                    "must be at most {MAX_AWARENESS} (got {}): a node that misses acks \
                     would wait that many times longer to probe and accuse",
                    self.awareness_max
                ),
            ));
        }
        if self.suspicion_confirmations == 0
            || self.suspicion_confirmations > MAX_SUSPICION_CONFIRMATIONS
        {
            return Err(bad(
                "suspicion_confirmations",
                format!(
                    "must be 1 to {MAX_SUSPICION_CONFIRMATIONS} (got {}); for a fixed \
                     suspicion timeout set suspicion_max_mult = 1 instead",
                    self.suspicion_confirmations
                ),
            ));
        }
        if self.probe_timeout_ms > self.probe_interval_ms {
            return Err(bad(
                "probe_timeout_ms",
                format!(
                    "({}) must not exceed probe_interval_ms ({})",
                    self.probe_timeout_ms, self.probe_interval_ms
                ),
            ));
        }
        if self.max_datagram < 256 || self.max_datagram > 65_000 {
            return Err(bad(
                "max_datagram",
                format!(
                    "must be between 256 and 65000 bytes (got {})",
                    self.max_datagram
                ),
            ));
        }
        if !(self.per_peer_share > 0.0 && self.per_peer_share <= 1.0) {
            return Err(bad(
                "per_peer_share",
                format!(
                    "must be in (0, 1] (got {}); 1 lets one peer use the whole budget",
                    self.per_peer_share
                ),
            ));
        }
        if self.gossip_bandwidth > 0 && self.gossip_bandwidth < 4 * self.max_datagram as u64 {
            return Err(bad(
                "gossip_bandwidth",
                format!(
                    "must be 0 (unlimited) or at least 4 datagrams per second ({} bytes/s) (got {})",
                    4 * self.max_datagram,
                    self.gossip_bandwidth
                ),
            ));
        }
        if self.gossip_burst > 0 && self.gossip_burst < 2 * self.max_datagram as u64 {
            return Err(bad(
                "gossip_burst",
                format!(
                    "must be 0 (automatic) or at least two datagrams ({} bytes) (got {})",
                    2 * self.max_datagram,
                    self.gossip_burst
                ),
            ));
        }
        for (field, v) in [
            ("gossip_bandwidth", self.gossip_bandwidth),
            ("gossip_burst", self.gossip_burst),
        ] {
            if v > u64::from(u32::MAX) {
                return Err(bad(field, "must fit in 32 bits (at most 4 GB/s)"));
            }
        }
        if self.seed_backoff_cap_ms < self.seed_backoff_floor_ms {
            return Err(bad(
                "seed_backoff_cap_ms",
                "must be at least seed_backoff_floor_ms",
            ));
        }
        self.events.validate()?;
        self.queries.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_profile_validates() {
        for c in [Config::lan(), Config::local(), Config::wan()] {
            c.validate().unwrap();
        }
    }

    #[test]
    fn suspicion_confirmations_out_of_range_is_refused_naming_the_field_and_the_fix() {
        for bad in [0, MAX_SUSPICION_CONFIRMATIONS + 1] {
            let c = Config {
                suspicion_confirmations: bad,
                ..Config::default()
            };
            let e = c.validate().unwrap_err();
            assert_eq!(e.field, "suspicion_confirmations");
            let e = e.to_string();
            assert!(
                e.starts_with("suspicion_confirmations must be 1 to 32"),
                "{e}"
            );
            assert!(e.contains(&format!("got {bad}")), "{e}");
            assert!(e.contains("suspicion_max_mult = 1"), "{e}");
        }
        for good in [1, 3, MAX_SUSPICION_CONFIRMATIONS] {
            let c = Config {
                suspicion_confirmations: good,
                ..Config::default()
            };
            assert!(c.validate().is_ok(), "{good} refused");
        }
    }

    #[test]
    fn awareness_max_above_sixteen_is_refused() {
        let c = Config {
            awareness_max: MAX_AWARENESS,
            ..Config::default()
        };
        assert!(c.validate().is_ok());
        let c = Config {
            awareness_max: MAX_AWARENESS + 1,
            ..Config::default()
        };
        let e = c.validate().unwrap_err().to_string();
        assert!(e.starts_with("awareness_max must be at most 16"), "{e}");
    }

    #[test]
    fn a_file_without_the_new_field_gets_its_default() {
        let c: Config =
            toml::from_str("probe_interval_ms = 700\nprobe_timeout_ms = 300\n").unwrap();
        assert_eq!(
            c.suspicion_confirmations,
            Config::default().suspicion_confirmations
        );
        assert_eq!(c.probe_interval_ms, 700);
    }

    #[test]
    fn the_push_mode_is_one_setting_and_the_old_switches_are_named_when_refused() {
        for (text, mode) in [
            ("push = \"tree\"", PushMode::Tree),
            ("push = \"random\"", PushMode::Random),
            ("push = \"off\"", PushMode::Off),
            ("", PushMode::Tree),
        ] {
            let c: Config = toml::from_str(text).unwrap();
            assert_eq!(c.push, mode, "{text}");
        }
        for old in [
            "tree_push = false",
            "push_deltas = false",
            "push = \"eager\"",
        ] {
            let e = toml::from_str::<Config>(old).unwrap_err().to_string();
            // The refused field, and what is accepted instead.
            let named = old.split(' ').next().unwrap();
            assert!(e.contains(named), "{old}: {e}");
            assert!(e.contains("`push`") || e.contains("`random`"), "{old}: {e}");
        }
    }
}
