//! A fault-injecting UDP socket for quinn: loss, delay and jitter, duplication,
//! reordering and partitions, changed at run time and reproducible from a seed.
//!
//! [`ChaosSocket`] wraps a real UDP socket and implements [`quinn::AsyncUdpSocket`], so a
//! node (or any quinn endpoint) runs unchanged on top of it; see
//! [`crate::node::Node::start_with_socket`]. Every fault is decided per datagram by a
//! ChaCha8 generator seeded at construction, and controlled through a cloneable
//! [`ChaosControl`] handle:
//!
//! - **loss**: each outgoing datagram is dropped with probability `loss`;
//! - **delay and jitter**: each outgoing datagram leaves after `delay` plus a uniform
//!   `0..=jitter` (sends are queued and written by a background task; `try_send` never
//!   waits);
//! - **duplication**: with probability `duplicate` a datagram is sent twice (the copy with
//!   its own delay);
//! - **reordering**: with probability `reorder` a datagram is held back for an extra
//!   `reorder_delay`, so later ones overtake it;
//! - **partitions**: datagrams to and from blocked peer addresses are dropped in both
//!   directions ([`partition`] blocks whole groups of sockets from each other);
//! - **per-destination delay**: datagrams to chosen peer addresses wait that much longer
//!   ([`ChaosControl::set_delay_to`]; [`delay_between`] puts groups of sockets "far"
//!   from each other, like datacenters).
//!
//! Faults apply to the outgoing direction (loss, delay, duplication, reordering) and to
//! both directions (partitions). With chaos sockets on every node, every link therefore
//! sees every fault in both directions. Everything is counted ([`ChaosStats`]).
//!
//! Each transmit is one datagram: the socket reports `max_transmit_segments() == 1`
//! (and splits a multi-segment transmit anyway if it gets one), so every fault applies to
//! single datagrams.
//!
//! ```no_run
//! # async fn f() -> std::io::Result<()> {
//! use gossamer::chaos::{ChaosSocket, Faults};
//! use std::time::Duration;
//! let (socket, control) = ChaosSocket::bind("127.0.0.1:0".parse().unwrap(), 42)?;
//! control.set_faults(Faults { loss: 0.2, delay: Duration::from_millis(5), ..Faults::none() });
//! // hand `socket` to `Node::start_with_socket`, later:
//! control.heal();
//! println!("{:?}", control.stats());
//! # Ok(()) }
//! ```

use std::cmp::Ordering as CmpOrdering;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use quinn::udp::{EcnCodepoint, RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, Runtime, UdpPoller};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use tokio::sync::Notify;
use tokio::time::Instant;

mod control;
#[cfg(test)]
mod tests;

pub use control::{delay_between, heal_partition, partition, ChaosControl};

/// Most datagrams waiting in the delay queue; beyond it new delayed datagrams are
/// dropped (and counted in [`ChaosStats::dropped_error`]).
pub const MAX_DELAYED: usize = 100_000;

/// How long the delay task waits for the real socket to become writable before it
/// counts a due datagram as dropped.
const WRITABLE_WAIT: Duration = Duration::from_millis(200);

/// Rounds of receiving in one `poll_recv` call when everything received was dropped
/// by a partition, before yielding to the runtime.
const MAX_RECV_ROUNDS: usize = 64;

/// The faults a [`ChaosSocket`] injects into its outgoing datagrams.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Faults {
    /// Probability (0..=1) that a datagram is dropped.
    pub loss: f64,
    /// Fixed delay added to every datagram.
    pub delay: Duration,
    /// Upper bound of a uniform random delay added on top of `delay`.
    pub jitter: Duration,
    /// Probability (0..=1) that a datagram is sent twice.
    pub duplicate: f64,
    /// Probability (0..=1) that a datagram is held back by `reorder_delay`.
    pub reorder: f64,
    /// Extra delay of a reordered datagram.
    pub reorder_delay: Duration,
}

impl Default for Faults {
    fn default() -> Self {
        Self::none()
    }
}

impl Faults {
    /// No faults: every datagram passes at once (`reorder_delay` is 20 ms, used only if
    /// `reorder` is raised).
    pub const fn none() -> Self {
        Self {
            loss: 0.0,
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_delay: Duration::from_millis(20),
        }
    }

    /// True if these settings leave datagrams untouched.
    pub fn is_none(&self) -> bool {
        self.loss <= 0.0
            && self.delay.is_zero()
            && self.jitter.is_zero()
            && self.duplicate <= 0.0
            && self.reorder <= 0.0
    }

    /// Checks that every probability lies in 0..=1; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        for (name, p) in [
            ("loss", self.loss),
            ("duplicate", self.duplicate),
            ("reorder", self.reorder),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!(
                    "{name} must be a probability between 0 and 1 (got {p})"
                ));
            }
        }
        Ok(())
    }

    /// These settings with every probability clamped into 0..=1 (NaN becomes 0).
    fn sanitized(mut self) -> Self {
        let clamp = |p: f64| if p.is_nan() { 0.0 } else { p.clamp(0.0, 1.0) };
        self.loss = clamp(self.loss);
        self.duplicate = clamp(self.duplicate);
        self.reorder = clamp(self.reorder);
        self
    }
}

/// A snapshot of a chaos socket's counters. Datagrams, not bytes, unless named so.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ChaosStats {
    /// Datagrams written to the real socket (duplicates included).
    pub sent: u64,
    /// Bytes written to the real socket.
    pub sent_bytes: u64,
    /// Datagrams handed up to quinn.
    pub received: u64,
    /// Outgoing datagrams dropped by the loss probability.
    pub dropped_loss: u64,
    /// Outgoing datagrams dropped because their destination is blocked.
    pub dropped_partition_out: u64,
    /// Incoming datagrams dropped because their source is blocked.
    pub dropped_partition_in: u64,
    /// Delayed or duplicate datagrams the real socket refused, or that found the delay
    /// queue full.
    pub dropped_error: u64,
    /// Extra copies sent by duplication.
    pub duplicated: u64,
    /// Datagrams (copies included) that went through the delay queue.
    pub delayed: u64,
    /// Datagrams held back to be overtaken.
    pub reordered: u64,
}

impl ChaosStats {
    /// Every datagram dropped, for any reason.
    pub fn dropped(&self) -> u64 {
        self.dropped_loss + self.dropped_partition() + self.dropped_error
    }

    /// Datagrams dropped by partitions, in both directions.
    pub fn dropped_partition(&self) -> u64 {
        self.dropped_partition_out + self.dropped_partition_in
    }

    /// Field-wise sum, for totals over several sockets.
    pub fn add(&self, o: &ChaosStats) -> ChaosStats {
        ChaosStats {
            sent: self.sent + o.sent,
            sent_bytes: self.sent_bytes + o.sent_bytes,
            received: self.received + o.received,
            dropped_loss: self.dropped_loss + o.dropped_loss,
            dropped_partition_out: self.dropped_partition_out + o.dropped_partition_out,
            dropped_partition_in: self.dropped_partition_in + o.dropped_partition_in,
            dropped_error: self.dropped_error + o.dropped_error,
            duplicated: self.duplicated + o.duplicated,
            delayed: self.delayed + o.delayed,
            reordered: self.reordered + o.reordered,
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    sent_bytes: AtomicU64,
    received: AtomicU64,
    dropped_loss: AtomicU64,
    dropped_partition_out: AtomicU64,
    dropped_partition_in: AtomicU64,
    dropped_error: AtomicU64,
    duplicated: AtomicU64,
    delayed: AtomicU64,
    reordered: AtomicU64,
}

fn inc(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

impl Counters {
    fn snapshot(&self) -> ChaosStats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ChaosStats {
            sent: g(&self.sent),
            sent_bytes: g(&self.sent_bytes),
            received: g(&self.received),
            dropped_loss: g(&self.dropped_loss),
            dropped_partition_out: g(&self.dropped_partition_out),
            dropped_partition_in: g(&self.dropped_partition_in),
            dropped_error: g(&self.dropped_error),
            duplicated: g(&self.duplicated),
            delayed: g(&self.delayed),
            reordered: g(&self.reordered),
        }
    }
}

/// Fault settings and the generator that rolls the dice.
#[derive(Debug)]
struct State {
    faults: Faults,
    blocked: HashSet<SocketAddr>,
    /// Extra delay toward particular destinations (added to `faults.delay`).
    delay_to: HashMap<SocketAddr, Duration>,
    rng: ChaCha8Rng,
}

/// A datagram waiting in the delay queue.
#[derive(Debug)]
struct Pending {
    due: Instant,
    seq: u64,
    dest: SocketAddr,
    ecn: Option<EcnCodepoint>,
    src_ip: Option<IpAddr>,
    data: Vec<u8>,
}

// Ordered so that `BinaryHeap` (a max-heap) pops the earliest due, then the first queued.
impl Ord for Pending {
    fn cmp(&self, o: &Self) -> CmpOrdering {
        (o.due, o.seq).cmp(&(self.due, self.seq))
    }
}
impl PartialOrd for Pending {
    fn partial_cmp(&self, o: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(o))
    }
}
impl PartialEq for Pending {
    fn eq(&self, o: &Self) -> bool {
        (self.due, self.seq) == (o.due, o.seq)
    }
}
impl Eq for Pending {}

/// State shared by the socket, its delay task and its control handles.
#[derive(Debug)]
struct Shared {
    local: SocketAddr,
    seed: u64,
    state: Mutex<State>,
    /// True while any address is blocked (skips the receive filter otherwise).
    any_blocked: AtomicBool,
    stats: Counters,
    queue: Mutex<BinaryHeap<Pending>>,
    seq: AtomicU64,
    wake: Notify,
    closed: AtomicBool,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn queue(&self) -> MutexGuard<'_, BinaryHeap<Pending>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Rolls the dice for one outgoing datagram.
    fn plan(&self, dest: SocketAddr) -> Plan {
        let mut st = self.state();
        if !st.blocked.is_empty() && st.blocked.contains(&normalize(dest)) {
            return Plan::Partitioned;
        }
        let f = st.faults;
        let extra = if st.delay_to.is_empty() {
            Duration::ZERO
        } else {
            st.delay_to
                .get(&normalize(dest))
                .copied()
                .unwrap_or_default()
        };
        if f.is_none() && extra.is_zero() {
            return Plan::Send {
                copies: [Some(Duration::ZERO), None],
                reordered: 0,
            };
        }
        if f.loss > 0.0 && st.rng.random_bool(f.loss) {
            return Plan::Lost;
        }
        let copies = if f.duplicate > 0.0 && st.rng.random_bool(f.duplicate) {
            2
        } else {
            1
        };
        let mut out = [None, None];
        let mut reordered = 0;
        for slot in out.iter_mut().take(copies) {
            let mut d = f.delay + extra;
            if !f.jitter.is_zero() {
                let j = st.rng.random_range(0..=f.jitter.as_micros() as u64);
                d += Duration::from_micros(j);
            }
            if f.reorder > 0.0 && st.rng.random_bool(f.reorder) {
                d += f.reorder_delay;
                reordered += 1;
            }
            *slot = Some(d);
        }
        Plan::Send {
            copies: out,
            reordered,
        }
    }

    fn enqueue(&self, p: Pending) {
        let mut q = self.queue();
        if q.len() >= MAX_DELAYED {
            inc(&self.stats.dropped_error, 1);
            return;
        }
        q.push(p);
        drop(q);
        self.wake.notify_one();
    }
}

/// What happens to one outgoing datagram.
enum Plan {
    Partitioned,
    Lost,
    /// Up to two copies, each with its delay.
    Send {
        copies: [Option<Duration>; 2],
        reordered: u64,
    },
}

/// IPv4-mapped IPv6 addresses compare as their IPv4 form.
fn normalize(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => a,
        },
        v4 => v4,
    }
}

/// A UDP socket for quinn that injects faults; see the [module docs](self).
///
/// Dropping the socket (quinn drops it when its endpoint is gone) stops its delay task
/// and closes the real socket; datagrams still queued are discarded.
pub struct ChaosSocket {
    inner: Arc<dyn AsyncUdpSocket>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ChaosSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChaosSocket")
            .field("local", &self.shared.local)
            .field("seed", &self.shared.seed)
            .finish_non_exhaustive()
    }
}

impl ChaosSocket {
    /// Binds a UDP socket on `addr` and wraps it. Must be called inside a tokio runtime
    /// (the socket registers with it and spawns its delay task there).
    pub fn bind(addr: SocketAddr, seed: u64) -> io::Result<(Arc<ChaosSocket>, ChaosControl)> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(io::Error::other(
                "ChaosSocket::bind must be called inside a tokio runtime",
            ));
        }
        // The kernel buffers of the transport's own sockets, so that a bench with faults
        // measures the same runtime.
        let sock = crate::transport::udp_socket(
            addr,
            crate::transport::QuicSettings::default().socket_buffer,
        )?;
        let inner = quinn::TokioRuntime.wrap_udp_socket(sock)?;
        Self::wrap(inner, seed)
    }

    /// Wraps an existing quinn socket. Must be called inside a tokio runtime.
    pub fn wrap(
        inner: Arc<dyn AsyncUdpSocket>,
        seed: u64,
    ) -> io::Result<(Arc<ChaosSocket>, ChaosControl)> {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| {
            io::Error::other("ChaosSocket::wrap must be called inside a tokio runtime")
        })?;
        let local = inner.local_addr()?;
        let shared = Arc::new(Shared {
            local,
            seed,
            state: Mutex::new(State {
                faults: Faults::none(),
                blocked: HashSet::new(),
                delay_to: HashMap::new(),
                rng: ChaCha8Rng::seed_from_u64(seed),
            }),
            any_blocked: AtomicBool::new(false),
            stats: Counters::default(),
            queue: Mutex::new(BinaryHeap::new()),
            seq: AtomicU64::new(0),
            wake: Notify::new(),
            closed: AtomicBool::new(false),
        });
        handle.spawn(delay_task(inner.clone(), shared.clone()));
        let control = ChaosControl {
            shared: shared.clone(),
        };
        Ok((Arc::new(ChaosSocket { inner, shared }), control))
    }

    /// A new control handle for this socket.
    pub fn control(&self) -> ChaosControl {
        ChaosControl {
            shared: self.shared.clone(),
        }
    }

    /// Sends one datagram according to its plan. Errors only if the first immediate
    /// copy could not be written (quinn then retries the whole datagram).
    fn send_one(&self, t: &Transmit, data: &[u8]) -> io::Result<()> {
        let s = &self.shared;
        let (copies, reordered) = match s.plan(t.destination) {
            Plan::Partitioned => {
                inc(&s.stats.dropped_partition_out, 1);
                return Ok(());
            }
            Plan::Lost => {
                inc(&s.stats.dropped_loss, 1);
                return Ok(());
            }
            Plan::Send { copies, reordered } => (copies, reordered),
        };
        // Immediate copies first, so that a full socket buffer can still push back.
        let mut first = true;
        for _ in copies.iter().flatten().filter(|d| d.is_zero()) {
            let r = self.inner.try_send(&Transmit {
                destination: t.destination,
                ecn: t.ecn,
                contents: data,
                segment_size: None,
                src_ip: t.src_ip,
            });
            match r {
                Ok(()) => {
                    inc(&s.stats.sent, 1);
                    inc(&s.stats.sent_bytes, data.len() as u64);
                }
                Err(e) if first => return Err(e),
                Err(_) => inc(&s.stats.dropped_error, 1),
            }
            first = false;
        }
        let now = Instant::now();
        for d in copies.iter().flatten().filter(|d| !d.is_zero()) {
            inc(&s.stats.delayed, 1);
            s.enqueue(Pending {
                due: now + *d,
                seq: s.seq.fetch_add(1, Ordering::Relaxed),
                dest: t.destination,
                ecn: t.ecn,
                src_ip: t.src_ip,
                data: data.to_vec(),
            });
        }
        if copies[1].is_some() {
            inc(&s.stats.duplicated, 1);
        }
        inc(&s.stats.reordered, reordered);
        Ok(())
    }

    /// Drops received datagrams whose source is blocked, compacting the survivors to
    /// the front of `bufs`/`meta`; returns how many remain.
    fn filter_received(
        &self,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
        n: usize,
    ) -> usize {
        let s = &self.shared;
        let segments = |m: &RecvMeta| {
            if m.stride == 0 || m.len == 0 {
                1
            } else {
                m.len.div_ceil(m.stride) as u64
            }
        };
        if !s.any_blocked.load(Ordering::Relaxed) {
            inc(&s.stats.received, meta[..n].iter().map(segments).sum());
            return n;
        }
        let st = s.state();
        let mut kept = 0;
        for i in 0..n {
            let segs = segments(&meta[i]);
            if st.blocked.contains(&normalize(meta[i].addr)) {
                inc(&s.stats.dropped_partition_in, segs);
                continue;
            }
            if kept != i {
                let len = meta[i].len;
                let (front, back) = bufs.split_at_mut(i);
                if front[kept].len() < len {
                    inc(&s.stats.dropped_error, segs);
                    continue;
                }
                front[kept][..len].copy_from_slice(&back[0][..len]);
                meta[kept] = meta[i];
            }
            inc(&s.stats.received, segs);
            kept += 1;
        }
        kept
    }
}

impl Drop for ChaosSocket {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Relaxed);
        self.shared.wake.notify_one();
    }
}

impl AsyncUdpSocket for ChaosSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        self.inner.clone().create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        if transmit.contents.is_empty() {
            return self.send_one(transmit, transmit.contents);
        }
        let seg = transmit
            .segment_size
            .unwrap_or(transmit.contents.len())
            .max(1);
        for (i, chunk) in transmit.contents.chunks(seg).enumerate() {
            match self.send_one(transmit, chunk) {
                Ok(()) => {}
                Err(e) if i == 0 => return Err(e),
                Err(_) => inc(&self.shared.stats.dropped_error, 1),
            }
        }
        Ok(())
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        for _ in 0..MAX_RECV_ROUNDS {
            let n = match self.inner.poll_recv(cx, bufs, meta) {
                Poll::Ready(Ok(n)) => n,
                other => return other,
            };
            let kept = self.filter_received(bufs, meta, n);
            if kept > 0 {
                return Poll::Ready(Ok(kept));
            }
        }
        // Everything received was dropped: yield, and come back at once.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        1
    }

    fn max_receive_segments(&self) -> usize {
        self.inner.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}

/// Writes queued datagrams when they fall due; ends when the socket is dropped.
async fn delay_task(inner: Arc<dyn AsyncUdpSocket>, shared: Arc<Shared>) {
    let mut poller = inner.clone().create_io_poller();
    while !shared.closed.load(Ordering::Relaxed) {
        let now = Instant::now();
        let (due, next) = {
            let mut q = shared.queue();
            let mut due = Vec::new();
            while q.peek().is_some_and(|p| p.due <= now) {
                due.extend(q.pop());
            }
            (due, q.peek().map(|p| p.due))
        };
        for p in &due {
            let t = Transmit {
                destination: p.dest,
                ecn: p.ecn,
                contents: &p.data,
                segment_size: None,
                src_ip: p.src_ip,
            };
            let mut r = inner.try_send(&t);
            if r.as_ref()
                .is_err_and(|e| e.kind() == io::ErrorKind::WouldBlock)
            {
                // Wait (briefly) until the socket is writable, then try once more.
                let writable = std::future::poll_fn(|cx| poller.as_mut().poll_writable(cx));
                if let Ok(Ok(())) = tokio::time::timeout(WRITABLE_WAIT, writable).await {
                    r = inner.try_send(&t);
                }
            }
            match r {
                Ok(()) => {
                    inc(&shared.stats.sent, 1);
                    inc(&shared.stats.sent_bytes, p.data.len() as u64);
                }
                Err(_) => inc(&shared.stats.dropped_error, 1),
            }
        }
        if !due.is_empty() {
            continue;
        }
        // `notify_one` stores a permit, so a datagram queued since the peek wakes us.
        match next {
            Some(at) => {
                tokio::select! {
                    _ = shared.wake.notified() => {}
                    _ = tokio::time::sleep_until(at) => {}
                }
            }
            None => shared.wake.notified().await,
        }
    }
}
