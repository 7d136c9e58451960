//! The handle that changes a chaos socket's faults at run time and reads its counters,
//! and the helpers that partition or separate whole groups of sockets.

use super::*;

/// A cloneable handle that changes a [`ChaosSocket`]'s faults and reads its counters.
/// It stays usable after the socket is gone (changes then have no effect).
#[derive(Debug, Clone)]
pub struct ChaosControl {
    pub(super) shared: Arc<Shared>,
}

impl ChaosControl {
    /// The socket's bound address (what peers see as its source address).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local
    }

    /// The seed of the socket's random generator.
    pub fn seed(&self) -> u64 {
        self.shared.seed
    }

    /// Replaces all fault settings (partitions are separate). Probabilities are clamped
    /// into 0..=1; use [`Faults::validate`] first to reject bad input.
    pub fn set_faults(&self, faults: Faults) {
        self.shared.state().faults = faults.sanitized();
    }

    /// The current fault settings.
    pub fn faults(&self) -> Faults {
        self.shared.state().faults
    }

    /// Sets the loss probability (clamped into 0..=1).
    pub fn set_loss(&self, p: f64) {
        self.update(|f| f.loss = p);
    }

    /// Sets the fixed delay and the uniform jitter added to every datagram.
    pub fn set_delay(&self, delay: Duration, jitter: Duration) {
        self.update(|f| {
            f.delay = delay;
            f.jitter = jitter;
        });
    }

    /// Sets the duplication probability (clamped into 0..=1).
    pub fn set_duplicate(&self, p: f64) {
        self.update(|f| f.duplicate = p);
    }

    /// Sets the probability that a datagram is held back by `extra` (clamped into 0..=1).
    pub fn set_reorder(&self, p: f64, extra: Duration) {
        self.update(|f| {
            f.reorder = p;
            f.reorder_delay = extra;
        });
    }

    fn update(&self, change: impl FnOnce(&mut Faults)) {
        let mut st = self.shared.state();
        let mut f = st.faults;
        change(&mut f);
        st.faults = f.sanitized();
    }

    /// Drops everything sent to or received from `peer`.
    pub fn block(&self, peer: SocketAddr) {
        self.block_all([peer]);
    }

    /// Blocks every address in `peers`.
    pub fn block_all(&self, peers: impl IntoIterator<Item = SocketAddr>) {
        let mut st = self.shared.state();
        st.blocked.extend(peers.into_iter().map(normalize));
        self.shared
            .any_blocked
            .store(!st.blocked.is_empty(), Ordering::Relaxed);
    }

    /// Lets traffic to and from `peer` through again.
    pub fn unblock(&self, peer: SocketAddr) {
        let mut st = self.shared.state();
        st.blocked.remove(&normalize(peer));
        self.shared
            .any_blocked
            .store(!st.blocked.is_empty(), Ordering::Relaxed);
    }

    /// Unblocks every address.
    pub fn clear_blocked(&self) {
        let mut st = self.shared.state();
        st.blocked.clear();
        self.shared.any_blocked.store(false, Ordering::Relaxed);
    }

    /// The blocked addresses, sorted.
    pub fn blocked(&self) -> Vec<SocketAddr> {
        let mut v: Vec<_> = self.shared.state().blocked.iter().copied().collect();
        v.sort();
        v
    }

    /// Adds `delay` to every datagram sent to `peer` (on top of [`Faults::delay`] and
    /// jitter); `Duration::ZERO` removes it. Loss, duplication and reordering apply as
    /// to any datagram.
    pub fn set_delay_to(&self, peer: SocketAddr, delay: Duration) {
        let mut st = self.shared.state();
        if delay.is_zero() {
            st.delay_to.remove(&normalize(peer));
        } else {
            st.delay_to.insert(normalize(peer), delay);
        }
    }

    /// The extra delay toward `peer`, if any.
    pub fn delay_to(&self, peer: SocketAddr) -> Duration {
        self.shared
            .state()
            .delay_to
            .get(&normalize(peer))
            .copied()
            .unwrap_or_default()
    }

    /// Removes every per-destination delay.
    pub fn clear_delays_to(&self) {
        self.shared.state().delay_to.clear();
    }

    /// Ends every fault: no loss, delay (per-destination ones included), duplication or
    /// reordering, nothing blocked. Datagrams already in the delay queue still leave when
    /// due.
    pub fn heal(&self) {
        let mut st = self.shared.state();
        st.faults = Faults {
            reorder_delay: st.faults.reorder_delay,
            ..Faults::none()
        };
        st.blocked.clear();
        st.delay_to.clear();
        self.shared.any_blocked.store(false, Ordering::Relaxed);
    }

    /// Datagrams waiting in the delay queue.
    pub fn queued(&self) -> usize {
        self.shared.queue().len()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> ChaosStats {
        self.shared.stats.snapshot()
    }
}

/// Splits sockets into groups that cannot reach each other: every socket blocks the
/// addresses of every socket in the other groups (traffic within a group, and with
/// sockets in no group, is untouched). Undo with [`heal_partition`].
pub fn partition(groups: &[&[ChaosControl]]) {
    for (gi, g) in groups.iter().enumerate() {
        let others: Vec<SocketAddr> = groups
            .iter()
            .enumerate()
            .filter(|(gj, _)| *gj != gi)
            .flat_map(|(_, o)| o.iter().map(|c| c.local_addr()))
            .collect();
        for c in g.iter() {
            c.block_all(others.iter().copied());
        }
    }
}

/// Puts groups of sockets `delay` apart, one way: every socket delays what it sends to
/// the sockets of the other groups by `delay` (so a round trip between groups takes
/// `2 × delay` more). Traffic within a group is untouched. Undo with
/// [`ChaosControl::clear_delays_to`] or [`ChaosControl::heal`].
pub fn delay_between(groups: &[&[ChaosControl]], delay: Duration) {
    for (gi, g) in groups.iter().enumerate() {
        for (gj, o) in groups.iter().enumerate() {
            if gi == gj {
                continue;
            }
            for c in g.iter() {
                for peer in o.iter() {
                    c.set_delay_to(peer.local_addr(), delay);
                }
            }
        }
    }
}

/// Unblocks every address on every socket in `controls`.
pub fn heal_partition(controls: &[ChaosControl]) {
    for c in controls {
        c.clear_blocked();
    }
}
