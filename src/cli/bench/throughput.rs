//! Quic mode's `--throughput`: the highest write rate the cluster sustains.

use std::time::{Duration, Instant};

use gossamer::node::Node;

use super::progress::{wait_until, Progress};

/// Doubles the write rate from 50 writes/s; a step (2 s of writes on the nodes in turn)
/// is sustained when every node holds all its keys within 3 s of its end. Returns the
/// highest sustained rate.
pub(super) async fn quic_throughput(
    n: usize,
    nodes: &[Node],
    progress: &Progress,
    notes: &mut Vec<String>,
) -> Option<f64> {
    const STEP: Duration = Duration::from_secs(2);
    const GRACE: Duration = Duration::from_secs(3);
    let base: Vec<usize> = nodes.iter().map(|x| x.status().keys).collect();
    let mut total = 0usize;
    let mut best = None;
    let mut rate = 50.0f64;
    while rate <= 12_800.0 {
        let count = (rate * STEP.as_secs_f64()) as usize;
        let start = Instant::now();
        let tick = Duration::from_millis(10);
        let per_tick = (rate * tick.as_secs_f64()).max(1.0);
        let mut made = 0usize;
        let mut errors = 0usize;
        let mut t = 0u32;
        while made < count {
            tokio::time::sleep_until((start + tick * t).into()).await;
            t += 1;
            let due = ((t as f64 * per_tick) as usize).min(count);
            while made < due {
                let key = format!("bench/tp/{n}/{rate}/{made:06}");
                if nodes[made % n].set(&key, vec![0xcd; 32]).is_err() {
                    errors += 1;
                }
                made += 1;
            }
            progress.show(
                n,
                "throughput",
                made as f64 / count as f64,
                &format!("{rate} w/s"),
            );
        }
        let wrote_in = start.elapsed();
        total += count;
        let target = total;
        let ok = wait_until(
            GRACE,
            || {
                nodes
                    .iter()
                    .zip(&base)
                    .all(|(x, b)| x.status().keys >= b + target)
            },
            |_| {},
        )
        .await
        .is_some();
        // A step whose writes could not even be issued at the rate does not count.
        let on_time = wrote_in < STEP + STEP / 4;
        if !(ok && on_time && errors == 0) {
            if !on_time {
                notes.push(format!(
                    "throughput: the load generator could not issue {rate} writes/s"
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
