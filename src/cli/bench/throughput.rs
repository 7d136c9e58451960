//! `--throughput`: the highest write rate a cluster sustains. The doubling of the rate
//! and the pacing of each step are shared; how a write is made and how its arrival on
//! every node is seen is the mode's ([`StepLoad`]).

use std::time::{Duration, Instant};

use gossamer::node::Node;

use super::progress::{wait_until, Progress};

/// Length of one step's writes.
pub(super) const STEP: Duration = Duration::from_secs(2);
/// Time after a step's last write within which every node must hold all its writes.
pub(super) const GRACE: Duration = Duration::from_secs(3);
/// The first step's rate (writes/s); each next step doubles it.
const FIRST_RATE: f64 = 50.0;
/// The last step's rate at most.
const MAX_RATE: f64 = 12_800.0;

/// What one step of writes came to.
pub(super) struct StepOutcome {
    /// Time taken to issue the step's writes.
    pub(super) issued_in: Duration,
    /// Writes that failed, or could not be issued on time.
    pub(super) errors: usize,
    /// The first failure, if the mode knows it.
    pub(super) first_error: Option<String>,
    /// Every node held every write within [`GRACE`] of the last one.
    pub(super) everywhere: bool,
}

/// How a mode makes a step's writes and sees them arrive.
pub(super) trait StepLoad {
    /// Makes `count` writes at `rate` writes/s (with [`pace`]) and waits up to [`GRACE`]
    /// for all of them to be on every node.
    async fn step(&mut self, rate: f64, count: usize, progress: &Progress) -> StepOutcome;
}

/// Calls `issue(k)` for `k` in `0..count` at `rate` per second, in 10 ms ticks (a timer
/// per write would not keep up with thousands per second); returns the time it took.
pub(super) async fn pace(
    rate: f64,
    count: usize,
    mut issue: impl FnMut(usize),
    mut show: impl FnMut(usize),
) -> Duration {
    let start = Instant::now();
    let tick = Duration::from_millis(10);
    let per_tick = (rate * tick.as_secs_f64()).max(1.0);
    let mut made = 0usize;
    let mut t = 0u32;
    while made < count {
        tokio::time::sleep_until((start + tick * t).into()).await;
        t += 1;
        let due = ((t as f64 * per_tick) as usize).min(count);
        while made < due {
            issue(made);
            made += 1;
        }
        show(made);
    }
    start.elapsed()
}

/// Doubles the write rate from 50 writes/s; a step ([`STEP`] of writes) is sustained
/// when every node holds all its writes within [`GRACE`] of its end. Returns the highest
/// sustained rate.
pub(super) async fn max_rate(
    load: &mut impl StepLoad,
    progress: &Progress,
    notes: &mut Vec<String>,
) -> Option<f64> {
    let mut best = None;
    let mut rate = FIRST_RATE;
    while rate <= MAX_RATE {
        let count = (rate * STEP.as_secs_f64()) as usize;
        let out = load.step(rate, count, progress).await;
        // A step whose writes could not even be issued at the rate does not count.
        let on_time = out.issued_in < STEP + STEP / 4;
        if !(out.everywhere && on_time && out.errors == 0) {
            if !on_time {
                notes.push(format!(
                    "throughput: the load generator could not issue {rate} writes/s"
                ));
            }
            if let Some(e) = out.first_error.filter(|_| out.errors > 0) {
                notes.push(format!(
                    "throughput: at {rate} writes/s {} writes failed (first: {e})",
                    out.errors
                ));
            }
            break;
        }
        best = Some(rate);
        rate *= 2.0;
        // Let the next step start from a drained cluster.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    best
}

/// Quic mode's steps: writes on the nodes in turn, counted by each node's key count.
pub(super) struct QuicSteps<'a> {
    n: usize,
    nodes: &'a [Node],
    base: Vec<usize>,
    total: usize,
}

impl<'a> QuicSteps<'a> {
    /// Steps on `nodes`, counting from the keys they hold now.
    pub(super) fn new(nodes: &'a [Node]) -> Self {
        Self {
            n: nodes.len(),
            base: nodes.iter().map(|x| x.status().keys).collect(),
            nodes,
            total: 0,
        }
    }
}

impl StepLoad for QuicSteps<'_> {
    async fn step(&mut self, rate: f64, count: usize, progress: &Progress) -> StepOutcome {
        let (n, nodes) = (self.n, self.nodes);
        let mut errors = 0usize;
        let issued_in = pace(
            rate,
            count,
            |k| {
                let key = format!("bench/tp/{n}/{rate}/{k:06}");
                if nodes[k % n].set(&key, vec![0xcd; 32]).is_err() {
                    errors += 1;
                }
            },
            |made| {
                progress.show(
                    n,
                    "throughput",
                    made as f64 / count as f64,
                    &format!("{rate} w/s"),
                )
            },
        )
        .await;
        self.total += count;
        let (target, base) = (self.total, &self.base);
        let everywhere = wait_until(
            GRACE,
            || {
                nodes
                    .iter()
                    .zip(base)
                    .all(|(x, b)| x.status().keys >= b + target)
            },
            |_| {},
        )
        .await
        .is_some();
        StepOutcome {
            issued_in,
            errors,
            first_error: None,
            everywhere,
        }
    }
}
