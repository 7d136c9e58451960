//! Datagrams waiting for a connection that is being dialed.
//!
//! A burst of writes can start while the connection to a tree child is still in its
//! handshake (a new member, a restarted peer, or a pair that never talked before). The
//! handshake takes milliseconds on an idle machine and far longer on a saturated one, so a
//! queue of a few datagrams overflowed at once and turned every write of the burst into a
//! graft and an anti-entropy entry (#18: 1,300 to 2,300 of a 20,000-write burst's
//! datagrams). The queue is bounded in bytes like the connection's own datagram send
//! buffer, per peer and over all peers, so a node dialing many unreachable peers cannot
//! grow without limit.

use std::collections::HashMap;

use crate::core::id::NodeId;
use crate::transport::QuicSettings;

/// Datagrams waiting for their handshakes, over all peers: 16 peers' worth of a
/// connection's datagram send buffer.
const MAX_PENDING_PEERS: usize = 16;

/// Encoded datagrams per peer, in the order they were sent.
#[derive(Debug)]
pub(super) struct PendingDatagrams {
    by_peer: HashMap<NodeId, (Vec<Vec<u8>>, usize)>,
    total: usize,
    per_peer_max: usize,
    total_max: usize,
}

impl PendingDatagrams {
    /// A queue holding at most `per_peer_max` bytes for one peer and `total_max` in all.
    pub(super) fn new(per_peer_max: usize, total_max: usize) -> Self {
        Self {
            by_peer: HashMap::new(),
            total: 0,
            per_peer_max,
            total_max,
        }
    }

    /// A queue holding for a connection being dialed what an open one would buffer.
    pub(super) fn for_quic(settings: &QuicSettings) -> Self {
        let per_peer = settings.datagram_receive_buffer;
        Self::new(per_peer, per_peer * MAX_PENDING_PEERS)
    }

    /// Queues `bytes` for `to`; false (the datagram is the caller's to count as dropped)
    /// when either bound would be exceeded.
    pub(super) fn push(&mut self, to: &NodeId, bytes: Vec<u8>) -> bool {
        let n = bytes.len();
        if self.total + n > self.total_max {
            return false;
        }
        let (queue, used) = self.by_peer.entry(to.clone()).or_default();
        if *used + n > self.per_peer_max {
            return false;
        }
        *used += n;
        self.total += n;
        queue.push(bytes);
        true
    }

    /// Everything queued for `to`, oldest first.
    pub(super) fn take(&mut self, to: &NodeId) -> Vec<Vec<u8>> {
        let (queue, used) = self.by_peer.remove(to).unwrap_or_default();
        self.total -= used;
        queue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(s: &str) -> NodeId {
        NodeId::new(s).unwrap()
    }

    #[test]
    fn bounds_each_peer_and_the_total_in_bytes() {
        let mut p = PendingDatagrams::new(10, 15);
        assert!(p.push(&peer("a"), vec![0; 6]));
        assert!(p.push(&peer("a"), vec![1; 4]));
        // a's 10 bytes are full; b still has room until the total of 15.
        assert!(!p.push(&peer("a"), vec![2; 1]));
        assert!(p.push(&peer("b"), vec![3; 5]));
        assert!(!p.push(&peer("b"), vec![4; 1]), "total bound");
        assert_eq!(p.take(&peer("a")), vec![vec![0; 6], vec![1; 4]]);
        // Taking frees a's bytes in the total too.
        assert!(p.push(&peer("b"), vec![5; 5]));
        assert_eq!(p.take(&peer("b")), vec![vec![3; 5], vec![5; 5]]);
        assert!(p.take(&peer("c")).is_empty());
        assert_eq!(p.total, 0);
    }
}
