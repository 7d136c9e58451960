//! What QUIC measured on this node's connections, read about once a second and handed to
//! the engine:
//!
//! - the loss, summed over the connections (`Engine::observe_path_loss`: repair rounds run
//!   while there is loss). QUIC declares a packet lost when later ones were acknowledged
//!   and it was not, so a copy merely late does not count as loss; a datagram the kernel
//!   dropped from a full socket buffer does (the engine pauses repair rounds in a burst).
//! - each connection's minimum round-trip time (`Engine::observe_rtt`: probe timeouts
//!   adapt to it). The minimum is the path's own delay. quinn's smoothed RTT also carries
//!   whatever queueing its samples met, and a connection that carries a packet only every
//!   N / 5 s or so corrects it slowly: in a 100-node process, the RTTs of the join (when
//!   the processes were saturated) stayed in it for minutes after, p50 141 ms against a
//!   minimum of 0.4 ms, and stretched SWIM's probe period by half (BENCHMARKS.md 14.6).
//!   A node slow to answer is Lifeguard's business, not the path's.

use std::collections::HashMap;

use quinn::Connection;

use crate::core::NodeId;

/// How often the connections' counters are read (µs).
const SAMPLE_US: u64 = 1_000_000;

/// One reading of the connections.
#[derive(Debug, Default)]
pub(super) struct PathSample {
    /// Packets sent since the last reading.
    pub(super) sent: u64,
    /// Packets declared lost since the last reading.
    pub(super) lost: u64,
    /// Each connection's minimum round-trip time (µs).
    pub(super) min_rtts: Vec<(NodeId, u64)>,
}

/// Each connection's counters at the last sample, to report only what is new.
#[derive(Debug, Default)]
pub(super) struct PathSampler {
    next_us: u64,
    seen: HashMap<usize, (u64, u64)>,
}

impl PathSampler {
    /// What `conns` measured since the last sample, once a second has passed since it
    /// (`None` before). A connection closed in between takes its last second's packets
    /// with it.
    pub(super) fn sample(
        &mut self,
        now_us: u64,
        conns: &HashMap<NodeId, Connection>,
    ) -> Option<PathSample> {
        if now_us < self.next_us {
            return None;
        }
        self.next_us = now_us + SAMPLE_US;
        let mut seen = HashMap::with_capacity(conns.len());
        let mut s = PathSample {
            min_rtts: Vec::with_capacity(conns.len()),
            ..PathSample::default()
        };
        for (id, conn) in conns {
            let path = conn.stats().path;
            let (sent_before, lost_before) =
                self.seen.get(&conn.stable_id()).copied().unwrap_or((0, 0));
            s.sent = s
                .sent
                .saturating_add(path.sent_packets.saturating_sub(sent_before));
            s.lost = s
                .lost
                .saturating_add(path.lost_packets.saturating_sub(lost_before));
            seen.insert(conn.stable_id(), (path.sent_packets, path.lost_packets));
            let rtt_us = u64::try_from(path.min_rtt.as_micros()).unwrap_or(u64::MAX);
            s.min_rtts.push((id.clone(), rtt_us));
        }
        self.seen = seen;
        Some(s)
    }
}
