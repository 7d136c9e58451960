//! Peers: one QUIC connection per member (dialed on demand, deduplicated when both
//! sides dial at once), what goes out on it (datagrams, or a bounded uni stream when a
//! message is too large) and the loops that read what comes in.

use super::*;
use crate::transport::DatagramRefused;

/// Counts a sync stream a peer has open with us; the count drops with the guard.
struct StreamSlot(std::sync::Arc<std::sync::atomic::AtomicU32>);

impl StreamSlot {
    /// A slot of `count`, if fewer than `limit` are taken.
    fn take(count: &Arc<std::sync::atomic::AtomicU32>, limit: u32) -> Option<Self> {
        if count.fetch_add(1, Ordering::Relaxed) >= limit {
            count.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(Self(count.clone()))
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How long the connection to a suspected member must receive nothing before it is
/// dropped as stale (`Node::drop_connection_if_quiet`).
const SUSPECT_QUIET: Duration = Duration::from_millis(500);

/// Frames received on `conn` that passed decryption (quinn counts UDP datagrams before
/// it authenticates them, so anyone who sees the connection id could move that count).
pub(super) fn authenticated_frames(conn: &Connection) -> u64 {
    let f = conn.stats().frame_rx;
    f.acks + f.datagram + f.stream + f.ping
}

/// Whether `conn` receives anything within [`SUSPECT_QUIET`] from now. It is sent
/// something a live peer acknowledges first, so that an idle connection answers too: an
/// empty datagram (the engine reads it as a datagram with no items). The count is taken
/// and the datagram sent when this is called, not when the future is first polled.
fn answers_before_quiet(conn: Connection) -> impl std::future::Future<Output = bool> {
    let heard = authenticated_frames(&conn);
    let _ = transport::offer_datagram(&conn, wire::encode_datagram(&Datagram::default()));
    async move {
        tokio::time::sleep(SUSPECT_QUIET).await;
        conn.close_reason().is_none() && authenticated_frames(&conn) != heard
    }
}

/// QUIC's own counters, summed over the connections a node holds now (quinn's
/// per-connection statistics: a closed connection's are gone with it). For the bench's
/// account of idle traffic (#18).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuicFrameStats {
    /// Connections held.
    pub connections: u64,
    /// PING frames sent (keep-alives, and probes of a lost packet's loss detection).
    pub pings: u64,
    /// ACK frames sent.
    pub acks: u64,
    /// UDP datagrams sent.
    pub datagrams: u64,
    /// UDP bytes sent.
    pub bytes: u64,
}

impl Node {
    /// QUIC frames sent on the connections this node holds now ([`QuicFrameStats`]).
    pub fn quic_frame_stats(&self) -> QuicFrameStats {
        let mut s = QuicFrameStats::default();
        for c in self.inner.transport.connections() {
            let st = c.conn.stats();
            s.connections += 1;
            s.pings += st.frame_tx.ping;
            s.acks += st.frame_tx.acks;
            s.datagrams += st.udp_tx.datagrams;
            s.bytes += st.udp_tx.bytes;
        }
        s
    }

    pub(super) fn send_datagram(&self, to: NodeId, addr: String, d: &Datagram) {
        let bytes = wire::encode_datagram(d);
        let conn = self
            .inner
            .conns
            .lock()
            .ok()
            .and_then(|c| c.get(&to).cloned());
        match conn {
            Some(conn) if conn.close_reason().is_none() => self.send_on(&to, &conn, bytes),
            _ => {
                let queued = self
                    .inner
                    .pending
                    .lock()
                    .is_ok_and(|mut p| p.push(&to, bytes));
                if !queued {
                    inc(&self.inner.stats.datagrams_dropped, 1);
                }
                self.ensure_dial(to, addr);
            }
        }
    }

    /// Runs a reliable (uni stream) send with a deadline, at most
    /// [`MAX_RELIABLE_IN_FLIGHT`] at once: beyond that, or past the deadline, the message
    /// is dropped and counted (anti-entropy repairs what it carried), so a slow or silent
    /// peer cannot pile up tasks.
    pub(super) fn spawn_reliable<T>(
        &self,
        send: impl std::future::Future<Output = Result<T, TransportError>> + Send + 'static,
    ) {
        let Ok(permit) = self.inner.reliable_slots.clone().try_acquire_owned() else {
            inc(&self.inner.stats.reliable_dropped, 1);
            return;
        };
        let node = self.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(RELIABLE_TIMEOUT, send).await {
                Ok(Ok(_)) => inc(&node.inner.stats.reliable_sent, 1),
                _ => inc(&node.inner.stats.reliable_dropped, 1),
            }
        });
    }

    /// Sends encoded datagrams too large for `conn`'s path as reliable messages, one
    /// after another, in one task holding one reliable slot; each is counted sent, or
    /// dropped if no slot is free or the deadline passes first.
    fn spawn_reliable_in_turn(&self, conn: &Connection, datagrams: Vec<Vec<u8>>) {
        if datagrams.is_empty() {
            return;
        }
        let total = datagrams.len() as u64;
        let Ok(permit) = self.inner.reliable_slots.clone().try_acquire_owned() else {
            inc(&self.inner.stats.reliable_dropped, total);
            return;
        };
        let (node, conn) = (self.clone(), conn.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let mut sent = 0u64;
            let _ = tokio::time::timeout(RELIABLE_TIMEOUT, async {
                for bytes in datagrams {
                    let message = wire::reliable_from_datagram(bytes);
                    if transport::send_reliable_bytes(&conn, &message)
                        .await
                        .is_err()
                    {
                        break;
                    }
                    sent += 1;
                    inc(&node.inner.stats.reliable_sent, 1);
                }
            })
            .await;
            inc(&node.inner.stats.reliable_dropped, total - sent);
        });
    }

    /// Sends an encoded datagram to `to` on `conn`.
    pub(super) fn send_on(&self, to: &NodeId, conn: &Connection, bytes: Vec<u8>) {
        let max = conn.max_datagram_size().unwrap_or(0);
        if bytes.len() > max {
            // Larger than this path allows: use a stream instead of dropping it.
            self.spawn_reliable_in_turn(conn, vec![bytes]);
            return;
        }
        self.put_datagram(to, conn, bytes);
    }

    /// Hands `bytes` to the connection's datagram send buffer, counting it as sent or
    /// dropped (lazy repair and anti-entropy bring what a dropped one carried).
    fn put_datagram(&self, to: &NodeId, conn: &Connection, bytes: Vec<u8>) {
        let n = bytes.len() as u64;
        match transport::offer_datagram(conn, bytes) {
            Ok(()) => {
                inc(&self.inner.stats.datagrams_sent, 1);
                inc(&self.inner.stats.datagram_bytes_sent, n);
            }
            Err(DatagramRefused::BufferFull) => {
                // The path to a connected peer is congested, and it may now lack what
                // this carried: the engine owes it an exchange.
                inc(&self.inner.stats.datagrams_dropped, 1);
                if let Ok(mut r) = self.inner.refused.lock() {
                    r.insert(to.clone());
                }
                self.inner.wake.notify_one();
            }
            Err(DatagramRefused::Refused(_)) => inc(&self.inner.stats.datagrams_dropped, 1),
        }
    }

    pub(super) fn ensure_dial(&self, to: NodeId, addr: String) {
        {
            let Ok(mut d) = self.inner.dialing.lock() else {
                return;
            };
            if !d.insert(to.clone()) {
                return;
            }
        }
        let node = self.clone();
        tokio::spawn(async move {
            let r = node.inner.transport.connect(&addr, Some(&to)).await;
            if let Ok(mut d) = node.inner.dialing.lock() {
                d.remove(&to);
            }
            match r {
                Ok((id, conn)) => {
                    let _ = node.register(id, conn);
                }
                Err(e) => {
                    inc(&node.inner.stats.dial_failures, 1);
                    tracing::debug!(peer = %to, %addr, error = %e, "dial failed");
                    if let Ok(mut p) = node.inner.pending.lock() {
                        let q = p.take(&to);
                        inc(&node.inner.stats.datagrams_dropped, q.len() as u64);
                    }
                }
            }
        });
    }

    /// An open connection to `id`, dialing `addr` if there is none.
    pub(super) async fn connection(
        &self,
        id: &NodeId,
        addr: &str,
    ) -> Result<Connection, TransportError> {
        if let Some(c) = self
            .inner
            .conns
            .lock()
            .ok()
            .and_then(|c| c.get(id).cloned())
        {
            if c.close_reason().is_none() {
                return Ok(c);
            }
        }
        let (got, conn) = self
            .inner
            .transport
            .connect(addr, Some(id))
            .await
            .inspect_err(|_| {
                inc(&self.inner.stats.dial_failures, 1);
            })?;
        Ok(self.register(got, conn))
    }

    /// Adopts an authenticated connection: flushes pending datagrams and starts readers.
    /// Returns the connection to use for this peer from now on.
    pub(super) fn register(&self, id: NodeId, conn: Connection) -> Connection {
        // Two nodes that dial each other at once end up with two connections. Both
        // sides keep the one dialed by the smaller node id and close the other, so
        // connections do not pile up (and run into the per-peer limit).
        let me = &self.inner.cfg.node_id;
        let dialer_of = |c: &Connection| {
            if c.side().is_client() {
                me.clone()
            } else {
                id.clone()
            }
        };
        let preferred = std::cmp::min(me, &id).clone();
        let mut surplus = None;
        let mut contested = None;
        if let Ok(mut c) = self.inner.conns.lock() {
            match c.get(&id) {
                Some(old)
                    if old.stable_id() != conn.stable_id() && old.close_reason().is_none() =>
                {
                    if dialer_of(&conn) == preferred || dialer_of(old) != preferred {
                        surplus = c.insert(id.clone(), conn.clone());
                    } else {
                        contested = Some(old.clone());
                    }
                }
                _ => {
                    c.insert(id.clone(), conn.clone());
                }
            }
        }
        if let Some(extra) = surplus {
            if dialer_of(&extra) != preferred {
                extra.close(transport::CLOSE_SHUTDOWN, b"duplicate connection");
            }
        }
        if let Some(old) = contested {
            self.keep_the_live_one(&id, old, conn.clone());
        }
        // Pending datagrams go out on whichever connection is pooled now.
        let conn_for_pending = self
            .inner
            .conns
            .lock()
            .ok()
            .and_then(|c| c.get(&id).cloned())
            .unwrap_or_else(|| conn.clone());
        let pending = self
            .inner
            .pending
            .lock()
            .map(|mut p| p.take(&id))
            .unwrap_or_default();
        // Encoded before the connection existed, a datagram can exceed what its path takes
        // before MTU discovery: those go on streams, one after another in one task (a
        // queue's worth at once would take every reliable slot and drop the rest).
        let max = conn_for_pending.max_datagram_size().unwrap_or(0);
        let (fits, oversized): (Vec<_>, Vec<_>) = pending.into_iter().partition(|b| b.len() <= max);
        for bytes in fits {
            self.put_datagram(&id, &conn_for_pending, bytes);
        }
        self.spawn_reliable_in_turn(&conn_for_pending, oversized);
        tokio::spawn(self.clone().read_datagrams(id.clone(), conn.clone()));
        tokio::spawn(self.clone().read_uni(id.clone(), conn.clone()));
        tokio::spawn(self.clone().read_bi(id, conn));
        conn_for_pending
    }

    pub(super) async fn accept_loop(self) {
        let mut stop = self.inner.shutdown.subscribe();
        loop {
            let next = tokio::select! {
                c = self.inner.transport.accept() => c,
                _ = stop.changed() => None,
            };
            match next {
                Some((id, conn)) => {
                    if id == self.inner.cfg.node_id {
                        // Our own seed address: nothing to do with ourselves.
                        continue;
                    }
                    let _ = self.register(id, conn);
                }
                None => break,
            }
        }
    }

    /// The pooled connection `old` is the one both sides keep (dialed by the smaller id),
    /// and the member dialed `new` besides it. In a race of simultaneous dials both are
    /// live and `new` is the duplicate; but a member that dials while we hold a connection
    /// to it has usually lost its end of that connection: it restarted, and `old` leads
    /// to a process that no longer exists. Closing `new` then would leave both sides
    /// without a working connection until `old` timed out. So `old` is checked first:
    /// `new` is closed as the duplicate only if `old` still answers.
    fn keep_the_live_one(&self, id: &NodeId, old: Connection, new: Connection) {
        let answered = answers_before_quiet(old.clone());
        let (node, id) = (self.clone(), id.clone());
        tokio::spawn(async move {
            if answered.await {
                new.close(transport::CLOSE_SHUTDOWN, b"duplicate connection");
                return;
            }
            let replaced = node.inner.conns.lock().is_ok_and(|mut c| {
                let pooled_old = c.get(&id).is_some_and(|x| x.stable_id() == old.stable_id());
                if pooled_old && new.close_reason().is_none() {
                    c.insert(id.clone(), new);
                    return true;
                }
                false
            });
            if replaced {
                inc(&node.inner.stats.stale_connections_replaced, 1);
            } else {
                node.forget(&id, &old);
            }
            old.close(transport::CLOSE_SHUTDOWN, b"stale connection");
        });
    }

    /// Closes and forgets the pooled connection to `id`, if any.
    pub(super) fn drop_connection(&self, id: &NodeId) {
        let conn = self.inner.conns.lock().ok().and_then(|mut c| c.remove(id));
        if let Some(conn) = conn {
            conn.close(transport::CLOSE_SHUTDOWN, b"member not alive");
        }
    }

    /// A member's new status: Dead or Left close its connection at once; a suspicion
    /// (ours, or anyone's we heard by gossip) only if the connection is quiet, since the
    /// path may be stale or the member only slow.
    pub(super) fn on_member_status(&self, id: &NodeId, status: MemberStatus) {
        match status {
            MemberStatus::Alive => {}
            MemberStatus::Suspect => self.drop_connection_if_quiet(id),
            MemberStatus::Dead | MemberStatus::Left => self.drop_connection(id),
        }
    }

    /// Drops the pooled connection to a suspected member if it receives nothing for
    /// [`SUSPECT_QUIET`], and keeps it otherwise.
    ///
    /// A restarted member's old connection is stale: its new process cannot read it, so
    /// nothing arrives on it, and dropping it makes the next message dial afresh instead
    /// of waiting out QUIC's idle timeout. But a suspicion is also raised against a member
    /// that is only slow (a process saturated by a burst of writes), and it reaches every
    /// node by gossip, with no evidence about their own paths. Closing a busy connection
    /// throws away the datagrams queued in its send buffer: in a 20,000-write burst into
    /// 10 nodes, 3 to 6 suspicions closed about 30 connections and lost some 4,700
    /// datagrams, which grafts and anti-entropy then fetched again (#18). Any frame the
    /// member sends on the connection keeps it; an empty datagram sent at the start of
    /// the wait makes an idle but live member answer with an ACK.
    pub(super) fn drop_connection_if_quiet(&self, id: &NodeId) {
        let Some(conn) = self
            .inner
            .conns
            .lock()
            .ok()
            .and_then(|c| c.get(id).cloned())
        else {
            return;
        };
        let answered = answers_before_quiet(conn.clone());
        let (node, id) = (self.clone(), id.clone());
        tokio::spawn(async move {
            let answered = answered.await;
            if conn.close_reason().is_some() {
                return;
            }
            if answered {
                let pooled = node.inner.conns.lock().is_ok_and(|c| {
                    c.get(&id)
                        .is_some_and(|x| x.stable_id() == conn.stable_id())
                });
                if pooled {
                    inc(&node.inner.stats.suspect_connections_kept, 1);
                }
                return;
            }
            node.forget(&id, &conn);
            conn.close(transport::CLOSE_SHUTDOWN, b"member not alive");
        });
    }

    pub(super) fn forget(&self, id: &NodeId, conn: &Connection) {
        if let Ok(mut c) = self.inner.conns.lock() {
            if c.get(id).is_some_and(|x| x.stable_id() == conn.stable_id()) {
                c.remove(id);
            }
        }
    }

    pub(super) async fn read_datagrams(self, from: NodeId, conn: Connection) {
        let mut read = 0u64;
        loop {
            let bytes = match conn.read_datagram().await {
                Ok(b) => b,
                Err(_) => break,
            };
            read += 1;
            inc(&self.inner.stats.datagrams_received, 1);
            inc(
                &self.inner.stats.datagram_bytes_received,
                bytes.len() as u64,
            );
            match wire::decode_datagram(&bytes) {
                Ok(d) => self.handle_datagram(&from, d),
                Err(e) => {
                    inc(&self.inner.stats.datagrams_malformed, 1);
                    tracing::debug!(peer = %from, error = %e, "dropped malformed datagram");
                }
            }
        }
        // quinn drops the oldest received datagrams when we read too slowly, uncounted;
        // at the connection's end, what arrived but was never read is known exactly.
        let arrived = conn.stats().frame_rx.datagram;
        inc(
            &self.inner.stats.datagrams_dropped_unread,
            arrived.saturating_sub(read),
        );
        self.forget(&from, &conn);
    }

    pub(super) fn handle_datagram(&self, from: &NodeId, d: Datagram) {
        let now = self.inner.now();
        self.inner.engine().handle_datagram(now, from, d);
        self.inner.wake.notify_one();
    }

    pub(super) async fn read_uni(self, from: NodeId, conn: Connection) {
        while let Ok(recv) = conn.accept_uni().await {
            let node = self.clone();
            let from = from.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(SYNC_TIMEOUT, transport::read_reliable(recv)).await {
                    Ok(Ok(d)) => node.handle_datagram(&from, d),
                    _ => inc(&node.inner.stats.frames_malformed, 1),
                }
            });
        }
    }

    pub(super) async fn read_bi(self, from: NodeId, conn: Connection) {
        // One connection per peer: this counts the sync streams the peer has open.
        let open = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let limit = self.inner.engine().config().inbound_syncs_per_peer.max(1);
        while let Ok((mut send, mut recv)) = conn.accept_bi().await {
            let slots = [
                StreamSlot::take(&open, limit),
                StreamSlot::take(&self.inner.inbound_syncs, MAX_INBOUND_SYNCS as u32),
            ];
            let [Some(slot), Some(global)] = slots else {
                inc(&self.inner.stats.syncs_refused, 1);
                let _ = send.reset(quinn::VarInt::from_u32(1));
                let _ = recv.stop(quinn::VarInt::from_u32(1));
                continue;
            };
            let node = self.clone();
            let from = from.clone();
            let conn = conn.clone();
            tokio::spawn(async move {
                let _slots = (slot, global);
                let mut t = [0u8; 1];
                let ok = recv.read_exact(&mut t).await.is_ok() && t[0] == wire::STREAM_SYNC;
                if !ok {
                    inc(&node.inner.stats.frames_malformed, 1);
                    return;
                }
                if let Err(e) = node.sync_respond(&from, &conn, send, recv).await {
                    tracing::debug!(peer = %from, error = %e, "anti-entropy (responder) failed");
                }
            });
        }
    }
}
