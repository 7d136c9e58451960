//! What each simulated node sends: counters by kind and a sliding window of its egress
//! (for the bandwidth-cap property).

/// Per-node counters kept by the simulator.
#[derive(Debug, Clone, Default)]
pub struct NodeTraffic {
    /// Datagrams sent.
    pub datagrams: u64,
    /// Datagram bytes sent.
    pub datagram_bytes: u64,
    /// Sync (stream) bytes sent.
    pub sync_bytes: u64,
    /// Egress measured over sliding 1-second windows.
    pub egress: EgressWindow,
    /// Datagrams sent that never arrived: lost on the way, cut by a partition, or sent
    /// to a node that is down.
    pub datagrams_lost: u64,
    /// Datagrams sent and lost when the node's engine was last told, and when it is
    /// told next (µs).
    loss_told: (u64, u64),
    next_loss_report_us: u64,
}

/// How often a node's engine is told what its datagrams met (µs): the runtime reads
/// QUIC's loss counters as often.
const LOSS_REPORT_US: u64 = 1_000_000;

impl NodeTraffic {
    /// Datagrams sent and lost since the engine was last told, once a second has
    /// passed (`Engine::observe_path_loss`). QUIC learns of a loss a round trip or
    /// two after it; the simulator knows at once, well inside the second between reports.
    pub fn loss_report(&mut self, now_us: u64) -> Option<(u64, u64)> {
        if now_us < self.next_loss_report_us {
            return None;
        }
        self.next_loss_report_us = now_us + LOSS_REPORT_US;
        let (sent, lost) = self.loss_told;
        self.loss_told = (self.datagrams, self.datagrams_lost);
        Some((self.datagrams - sent, self.datagrams_lost - lost))
    }
}

/// Bytes sent over a sliding 1-second window (100 slots of 10 ms), with the highest
/// window seen: what the bandwidth cap is checked against.
#[derive(Debug, Clone)]
pub struct EgressWindow {
    slots: [u64; EGRESS_SLOTS],
    head: u64,
    sum: u64,
    /// Most bytes sent in any 1-second window so far.
    pub peak: u64,
    /// When (µs) that window ended.
    pub peak_at_us: u64,
}

const EGRESS_SLOTS: usize = 100;
const EGRESS_SLOT_US: u64 = 10_000;

impl Default for EgressWindow {
    fn default() -> Self {
        Self {
            slots: [0; EGRESS_SLOTS],
            head: 0,
            sum: 0,
            peak: 0,
            peak_at_us: 0,
        }
    }
}

impl EgressWindow {
    /// Records `bytes` sent at `now_us`.
    pub fn record(&mut self, now_us: u64, bytes: u64) {
        let slot = now_us / EGRESS_SLOT_US;
        if slot > self.head {
            let steps = (slot - self.head).min(EGRESS_SLOTS as u64);
            for k in 1..=steps {
                let idx = ((self.head + k) % EGRESS_SLOTS as u64) as usize;
                self.sum -= self.slots[idx];
                self.slots[idx] = 0;
            }
            self.head = slot;
        }
        let idx = (slot % EGRESS_SLOTS as u64) as usize;
        self.slots[idx] += bytes;
        self.sum += bytes;
        if self.sum > self.peak {
            self.peak = self.sum;
            self.peak_at_us = now_us;
        }
    }

    /// Forgets the peak (e.g. to measure a phase of the run on its own).
    pub fn reset_peak(&mut self) {
        self.peak = 0;
    }
}
