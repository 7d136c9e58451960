//! The loss QUIC detected on this node's connections, summed over them and handed to
//! the engine about once a second (`Engine::observe_path_loss`: repair rounds run while
//! there is loss). QUIC declares a packet lost when later ones were acknowledged and it
//! was not, so a copy merely late does not count as loss; a datagram the kernel dropped
//! from a full socket buffer does (the engine pauses repair rounds in a burst).

use std::collections::HashMap;

use quinn::Connection;

use crate::core::NodeId;

/// How often the connections' counters are read (µs).
const SAMPLE_US: u64 = 1_000_000;

/// Each connection's counters at the last sample, to report only what is new.
#[derive(Debug, Default)]
pub(super) struct LossSampler {
    next_us: u64,
    seen: HashMap<usize, (u64, u64)>,
}

impl LossSampler {
    /// Packets sent and declared lost on `conns` since the last sample, once a second
    /// has passed since it (`None` before). A connection closed in between takes its
    /// last second's packets with it.
    pub(super) fn sample(
        &mut self,
        now_us: u64,
        conns: &HashMap<NodeId, Connection>,
    ) -> Option<(u64, u64)> {
        if now_us < self.next_us {
            return None;
        }
        self.next_us = now_us + SAMPLE_US;
        let mut seen = HashMap::with_capacity(conns.len());
        let (mut sent, mut lost) = (0u64, 0u64);
        for conn in conns.values() {
            let path = conn.stats().path;
            let (sent_before, lost_before) =
                self.seen.get(&conn.stable_id()).copied().unwrap_or((0, 0));
            sent = sent.saturating_add(path.sent_packets.saturating_sub(sent_before));
            lost = lost.saturating_add(path.lost_packets.saturating_sub(lost_before));
            seen.insert(conn.stable_id(), (path.sent_packets, path.lost_packets));
        }
        self.seen = seen;
        Some((sent, lost))
    }
}
