//! The anti-entropy exchange over a QUIC bi stream: the exchange's sequencing is
//! `core::sync::Exchange`'s; this only opens the stream, reads frames into the exchange,
//! writes the turns it answers with (paced by the bandwidth buckets), and puts the
//! whole exchange under one deadline. Joining through a seed is the same exchange.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use quinn::Connection;

use super::{inc, Node, MAX_CONCURRENT_SYNCS, SEED_DIAL_TIMEOUT, SYNC_TIMEOUT};
use crate::core::proto::{SyncFrame, SyncKind};
use crate::core::sync::{Admit, Exchange, Step, SyncError};
use crate::core::NodeId;
use crate::transport::{self, TransportError};
use crate::wire;

impl Node {
    /// Runs the exchange the engine asked for, or, while [`MAX_CONCURRENT_SYNCS`] of
    /// ours run, starts it when one ends. Only the latest waits: the engine's later pick
    /// replaces an earlier one (each is its choice for the next exchange). Dropping it
    /// instead would lose a follow-up (a peer held entries back) for a whole interval.
    pub(super) fn start_sync(&self, with: NodeId, addr: String) {
        // Checked and taken in one step: the driver and an ending exchange both start
        // exchanges here.
        let admitted = self
            .inner
            .syncs
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_CONCURRENT_SYNCS).then_some(n + 1)
            })
            .is_ok();
        if !admitted {
            inc(&self.inner.stats.syncs_waited, 1);
            if let Ok(mut w) = self.inner.waiting_sync.lock() {
                *w = Some((with, addr));
            }
            return;
        }
        let node = self.clone();
        tokio::spawn(async move {
            match node.connection(&with, &addr).await {
                Ok(conn) => {
                    let started = Instant::now();
                    match node.sync_initiate(&with, &conn, SyncKind::Periodic).await {
                        Ok(()) => node.inner.stats.sync_duration.observe(started.elapsed()),
                        Err(e) => tracing::debug!(peer = %with, error = %e, "anti-entropy failed"),
                    }
                }
                Err(e) => {
                    tracing::debug!(peer = %with, error = %e, "anti-entropy: no connection");
                    let now = node.inner.now();
                    node.inner.engine().sync_failed(now, &with);
                }
            }
            node.inner.syncs.fetch_sub(1, Ordering::AcqRel);
            let waiting = node
                .inner
                .waiting_sync
                .lock()
                .ok()
                .and_then(|mut w| w.take());
            if let Some((with, addr)) = waiting {
                node.start_sync(with, addr);
            }
        });
    }

    /// Dials a seed and joins through it; `Err` says why not, for the log and `status`.
    pub(super) async fn contact_seed(&self, addr: &str) -> Result<NodeId, String> {
        // A silent seed must not hold the next attempt back for the whole handshake
        // timeout: the engine's backoff (floor..cap) paces re-probing, not QUIC.
        let dial =
            tokio::time::timeout(SEED_DIAL_TIMEOUT, self.inner.transport.connect(addr, None));
        let (id, conn) = match dial.await {
            Ok(Ok(x)) => x,
            Ok(Err(e)) => return Err(format!("unreachable: {e}")),
            Err(_) => {
                return Err(format!(
                    "no answer within {} ms",
                    SEED_DIAL_TIMEOUT.as_millis()
                ))
            }
        };
        if id == self.inner.cfg.node_id {
            conn.close(transport::CLOSE_SHUTDOWN, b"self");
            return Ok(id);
        }
        let conn = self.register(id.clone(), conn);
        match self.sync_initiate(&id, &conn, SyncKind::Join).await {
            Ok(()) => {
                tracing::info!(seed = %addr, peer = %id, "joined through seed");
                Ok(id)
            }
            Err(e) => Err(format!("join through {id} failed: {e}")),
        }
    }

    /// Writes one turn of ours to a sync stream, each piece paid for with bandwidth
    /// tokens first ([`Exchange::admit`]), waiting for them when the bucket is short.
    async fn send_turn(
        &self,
        send: &mut quinn::SendStream,
        ex: &Exchange,
        frames: &[SyncFrame],
    ) -> Result<(), TransportError> {
        for f in frames {
            let bytes = wire::encode_frame(f);
            let mut off = 0;
            while off < bytes.len() {
                let now = self.inner.now();
                let admit = ex.admit(&mut self.inner.engine(), now, bytes.len() - off);
                match admit {
                    Admit::Send(chunk) => {
                        send.write_all(&bytes[off..off + chunk])
                            .await
                            .map_err(|e| TransportError::Stream(e.to_string()))?;
                        off += chunk;
                        inc(&self.inner.stats.sync_bytes_sent, chunk as u64);
                    }
                    Admit::WaitUntil(at_us) => {
                        let wait = Duration::from_micros(at_us.saturating_sub(now.mono_us));
                        inc(&self.inner.stats.sync_paced_us, wait.as_micros() as u64);
                        tokio::time::sleep(wait).await;
                    }
                }
            }
        }
        Ok(())
    }

    /// Runs an exchange to its end: reads the peer's turns frame by frame into the
    /// exchange and sends the turns it answers with. The sequencing is the exchange's
    /// (core::sync); this only moves bytes.
    async fn run_exchange(
        &self,
        ex: &mut Exchange,
        conn: &Connection,
        send: &mut quinn::SendStream,
        recv: &mut quinn::RecvStream,
    ) -> Result<(), TransportError> {
        while !ex.is_done() {
            let (f, n) = transport::read_frame(recv).await.inspect_err(|e| {
                if matches!(e, TransportError::Wire(_)) {
                    inc(&self.inner.stats.frames_malformed, 1);
                }
            })?;
            inc(&self.inner.stats.sync_bytes_received, n as u64);
            let now = self.inner.now();
            let step = ex.on_frame(&mut self.inner.engine(), now, f);
            self.inner.wake.notify_one();
            match step {
                Ok(Step::Read) => {}
                Ok(Step::Send(turn)) => self.send_turn(send, ex, &turn).await?,
                Err(e) => {
                    if let SyncError::IdentityMismatch { claimed, .. } = &e {
                        inc(&self.inner.stats.identity_mismatch, 1);
                        tracing::warn!(peer = %ex.peer(), claimed = %claimed, "peer claims another node's identity; closing");
                        conn.close(transport::CLOSE_WRONG_PEER, b"identity mismatch");
                    }
                    return Err(TransportError::Stream(e.to_string()));
                }
            }
        }
        let _ = send.finish();
        Ok(())
    }

    /// Opens an exchange of `kind` with `peer` on a new bi stream and runs it.
    pub(super) async fn sync_initiate(
        &self,
        peer: &NodeId,
        conn: &Connection,
        kind: SyncKind,
    ) -> Result<(), TransportError> {
        let (mut send, mut recv) = conn
            .open_bi()
            .await
            .map_err(|e| TransportError::Stream(e.to_string()))?;
        let now = self.inner.now();
        // A digest `Open` only to a peer whose ALPN says it reads one.
        let reads_digest = transport::reads_digest(conn);
        let (mut ex, first) = Exchange::initiate(
            &mut self.inner.engine(),
            now,
            peer.clone(),
            kind,
            reads_digest,
        );
        let run = async {
            send.write_all(&[wire::STREAM_SYNC])
                .await
                .map_err(|e| TransportError::Stream(e.to_string()))?;
            self.send_turn(&mut send, &ex, &first).await?;
            self.run_exchange(&mut ex, conn, &mut send, &mut recv).await
        };
        let r = within_deadline(run).await;
        self.end_exchange(ex, r)
    }

    /// Answers an exchange the peer opened on `send`/`recv` (its type byte already read).
    pub(super) async fn sync_respond(
        &self,
        from: &NodeId,
        conn: &Connection,
        mut send: quinn::SendStream,
        mut recv: quinn::RecvStream,
    ) -> Result<(), TransportError> {
        let mut ex = Exchange::accept(from.clone());
        let r = within_deadline(self.run_exchange(&mut ex, conn, &mut send, &mut recv)).await;
        self.end_exchange(ex, r)
    }

    /// Records an exchange that ended with an error as failed.
    fn end_exchange(
        &self,
        ex: Exchange,
        r: Result<(), TransportError>,
    ) -> Result<(), TransportError> {
        if r.is_err() {
            let now = self.inner.now();
            ex.fail(&mut self.inner.engine(), now);
        }
        self.inner.wake.notify_one();
        r
    }
}

/// Runs an exchange with the [`SYNC_TIMEOUT`] deadline: a peer that accepts the stream
/// and never answers cannot hold a sync slot for good.
async fn within_deadline(
    run: impl std::future::Future<Output = Result<(), TransportError>>,
) -> Result<(), TransportError> {
    tokio::time::timeout(SYNC_TIMEOUT, run)
        .await
        .unwrap_or_else(|_| Err(TransportError::Stream("anti-entropy timed out".into())))
}
