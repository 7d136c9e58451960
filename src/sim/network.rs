//! The simulated network: latency, jitter, loss, duplication and serialisation per
//! link, and how a datagram crosses it.

use super::*;

/// Network behaviour of every link (per-node overrides may come later).
#[derive(Debug, Clone, PartialEq)]
pub struct NetModel {
    /// One-way latency (µs).
    pub latency_us: u64,
    /// Uniform jitter added to the latency (µs); reorders packets.
    pub jitter_us: u64,
    /// Probability a datagram is lost.
    pub loss: f64,
    /// Probability a datagram is delivered twice.
    pub duplicate: f64,
    /// Egress bandwidth of each node (bytes/s); 0 = unlimited.
    pub bandwidth_bps: u64,
}

impl Default for NetModel {
    fn default() -> Self {
        Self {
            latency_us: 5_000,
            jitter_us: 2_000,
            loss: 0.0,
            duplicate: 0.0,
            bandwidth_bps: 0,
        }
    }
}

impl Sim {
    pub(super) fn transit_us(&mut self, from: usize, bytes: usize) -> u64 {
        let net = &self.cfg.net;
        let jitter = if net.jitter_us > 0 {
            self.rng.random_range(0..=net.jitter_us)
        } else {
            0
        };
        let mut depart = self.now_us;
        if let Some(tx) = (bytes as u64 * 1_000_000).checked_div(net.bandwidth_bps) {
            // Serialisation on the sender's link: packets queue behind each other.
            let n = &mut self.nodes[from];
            let start = n.egress_free_us.max(self.now_us);
            n.egress_free_us = start + tx;
            depart = start + tx;
        }
        depart + self.cfg.net.latency_us + jitter + self.nodes[from].slow_us
    }

    /// Counts a message of `bytes` (encoded) from `from` to `to` as sent: its node's
    /// traffic and the WAN bytes it crosses. False, counted as cut, when it cannot
    /// arrive (a partition, or a receiver that is down).
    pub(super) fn record_send(&mut self, from: usize, to: usize, bytes: usize) -> bool {
        let wire = (bytes + DATAGRAM_OVERHEAD) as u64;
        let now = self.now_us;
        let t = &mut self.nodes[from].traffic;
        t.datagrams += 1;
        t.datagram_bytes += wire;
        t.egress.record(now, wire);
        self.count_wan(from, to, wire, false);
        if !self.reachable(from, to) || self.nodes[to].engine.is_none() {
            self.stats.cut += 1;
            self.nodes[from].traffic.datagrams_lost += 1;
            return false;
        }
        true
    }

    pub(super) fn send_datagram(&mut self, from: usize, to: usize, dg: Datagram) {
        let bytes = encoded_len(&dg) + 1;
        if !self.record_send(from, to, bytes) {
            return;
        }
        if (self.cfg.net.loss > 0.0 && self.rng.random_bool(self.cfg.net.loss.min(1.0)))
            || self.link_lost(from, to)
        {
            self.stats.lost += 1;
            self.nodes[from].traffic.datagrams_lost += 1;
            return;
        }
        let at =
            self.transit_us(from, bytes) + self.nodes[to].slow_us + self.link_delay_us(from, to);
        let epoch = self.nodes[to].epoch;
        if self.cfg.net.duplicate > 0.0 && self.rng.random_bool(self.cfg.net.duplicate.min(1.0)) {
            self.stats.duplicated += 1;
            let again = at + self.rng.random_range(0..=self.cfg.net.jitter_us.max(1));
            self.schedule(
                again,
                Ev::Datagram {
                    from,
                    to,
                    epoch,
                    dg: dg.clone(),
                },
            );
        }
        self.schedule(
            at,
            Ev::Datagram {
                from,
                to,
                epoch,
                dg,
            },
        );
    }
}
