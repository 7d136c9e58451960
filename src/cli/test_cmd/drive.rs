//! The run once the nodes are up: join, workload, the partition schedule, the end of the
//! faults, convergence; and the results into the report.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gossamer::chaos::{self, ChaosControl, ChaosStats};
use gossamer::core::NodeId;
use gossamer::node::Node;

use super::plan::Plan;
use super::report::{
    finish_traffic, ms, percentiles, snap, Detection, FaultsReport, PartitionReport, Report,
    TrafficSnap,
};
use super::tracker::{lock, workload, Tracker};

/// True if every node of `side` sees every node in `others` as not alive (or not at all).
fn side_detects(nodes: &[Node], side: &[usize], others: &HashSet<NodeId>) -> bool {
    side.iter().all(|&i| {
        let members = nodes[i].members();
        others.iter().all(|id| {
            members
                .iter()
                .find(|m| &m.id == id)
                .is_none_or(|m| m.status != "alive")
        })
    })
}

fn everyone_alive(nodes: &[Node]) -> bool {
    nodes.iter().all(|x| x.alive_count() == nodes.len())
}

/// Everything after the nodes are up: join, workload, faults schedule, convergence.
pub(super) async fn drive(
    p: &Plan,
    nodes: &[Node],
    controls: &[ChaosControl],
    tracker: Arc<Mutex<Tracker>>,
    t_start: Instant,
) -> Report {
    let n = nodes.len();
    let mut report = Report {
        nodes: n,
        seed: p.seed,
        faults: FaultsReport {
            loss: p.faults.loss,
            latency_ms: p.faults.delay.as_millis() as u64,
            jitter_ms: p.faults.jitter.as_millis() as u64,
            duplicate: p.faults.duplicate,
        },
        partition: p.partition.as_ref().map(|s| PartitionReport {
            groups: s
                .groups
                .iter()
                .map(|g| g.iter().map(|i| i + 1).collect())
                .collect(),
            start_s: s.start.as_secs_f64(),
            end_s: s.end.as_secs_f64(),
        }),
        duration_s: p.duration.as_secs_f64(),
        writes_per_sec: p.writes_per_sec,
        deadline_s: p.deadline.as_secs_f64(),
        join_ms: None,
        writes: 0,
        write_errors: 0,
        writes_everywhere: 0,
        propagation: None,
        propagation_outside_partition: None,
        propagation_during_partition: None,
        arrivals_by_polling: 0,
        partition_detection: Vec::new(),
        heal_ms: None,
        convergence_ms: None,
        measured_s: 0.0,
        traffic: Vec::new(),
        chaos_total: ChaosStats::default(),
        converged: false,
        failure: None,
    };

    // Join.
    let tick = Duration::from_millis(20);
    let join_deadline = Instant::now() + p.deadline;
    let mut joined = everyone_alive(nodes);
    while !joined && Instant::now() < join_deadline {
        tokio::time::sleep(tick).await;
        joined = everyone_alive(nodes);
    }
    if !joined {
        let alive: Vec<String> = nodes
            .iter()
            .map(|x| format!("{} sees {}", x.id(), x.alive_count()))
            .collect();
        report.failure = Some(format!(
            "the {n} nodes did not all see each other alive within {:.0} s of starting ({})",
            p.deadline.as_secs_f64(),
            alive.join(", ")
        ));
        finish_traffic(&mut report, nodes, controls, None, Instant::now());
        return report;
    }
    report.join_ms = Some(ms(t_start.elapsed()));

    // Workload, faults schedule, monitoring.
    let t0 = Instant::now();
    let before: Vec<TrafficSnap> = nodes
        .iter()
        .zip(controls)
        .map(|(x, c)| snap(x, c))
        .collect();
    let errors = Arc::new(AtomicU64::new(0));
    let workload_done = Arc::new(AtomicBool::new(false));
    {
        let (nodes, tracker, errors, done) = (
            nodes.to_vec(),
            tracker.clone(),
            errors.clone(),
            workload_done.clone(),
        );
        let (rate, total) = (p.writes_per_sec, p.total_writes);
        tokio::spawn(async move {
            workload(nodes, tracker, t0, rate, total, errors).await;
            done.store(true, Ordering::Relaxed);
        });
    }

    let sides: Vec<(Vec<usize>, HashSet<NodeId>)> = p
        .partition
        .as_ref()
        .map(|s| {
            s.groups
                .iter()
                .enumerate()
                .map(|(gi, g)| {
                    let others = s
                        .groups
                        .iter()
                        .enumerate()
                        .filter(|(gj, _)| *gj != gi)
                        .flat_map(|(_, o)| o.iter().map(|&i| nodes[i].id()))
                        .collect();
                    (g.clone(), others)
                })
                .collect()
        })
        .unwrap_or_default();
    let mut detected: Vec<Option<Duration>> = vec![None; sides.len()];
    let mut part_start: Option<Instant> = None;
    let mut part_end: Option<Instant> = None;
    let mut faults_end: Option<Instant> = None;
    let mut heal: Option<Duration> = None;
    let mut converged: Option<Duration> = None;
    let mut last_poll = t0;

    // Bounded: ends at the latest `deadline` after the end of the run.
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let hard_stop = t0 + p.duration + p.deadline + Duration::from_secs(1);
    while Instant::now() < hard_stop {
        interval.tick().await;
        let now = Instant::now();
        let t = now.saturating_duration_since(t0);
        if let Some(s) = &p.partition {
            if part_start.is_none() && t >= s.start {
                let groups: Vec<Vec<ChaosControl>> = s
                    .groups
                    .iter()
                    .map(|g| g.iter().map(|&i| controls[i].clone()).collect())
                    .collect();
                let refs: Vec<&[ChaosControl]> = groups.iter().map(|g| g.as_slice()).collect();
                chaos::partition(&refs);
                part_start = Some(now);
            }
            if let (Some(ps), None) = (part_start, part_end) {
                if t >= s.end {
                    chaos::heal_partition(controls);
                    part_end = Some(now);
                } else {
                    for (si, (side, others)) in sides.iter().enumerate() {
                        if detected[si].is_none() && side_detects(nodes, side, others) {
                            detected[si] = Some(now - ps);
                        }
                    }
                }
            }
        }
        if faults_end.is_none() && t >= p.duration {
            for ctl in controls {
                ctl.heal();
            }
            faults_end = Some(now);
        }
        let poll = now.duration_since(last_poll) >= Duration::from_millis(250);
        if poll {
            last_poll = now;
        }
        let (done_before_part_end, all_done) = {
            let mut tr = lock(&tracker);
            if poll {
                tr.poll_fallback(nodes, now);
            }
            (
                part_end.is_some_and(|pe| tr.complete_before(pe)),
                tr.incomplete.is_empty(),
            )
        };
        if let Some(pe) = part_end {
            if heal.is_none() && done_before_part_end && everyone_alive(nodes) {
                heal = Some(now - pe);
            }
        }
        if let Some(fe) = faults_end {
            if converged.is_none()
                && workload_done.load(Ordering::Relaxed)
                && all_done
                && everyone_alive(nodes)
            {
                converged = Some(now - fe);
                break;
            }
            if now.duration_since(fe) > p.deadline {
                break;
            }
        }
    }
    let t_end = Instant::now();

    // Results.
    let tr = lock(&tracker);
    report.writes = tr.writes.len();
    report.write_errors = errors.load(Ordering::Relaxed);
    report.writes_everywhere = tr.writes.len() - tr.incomplete.len();
    report.arrivals_by_polling = tr.polled;
    report.propagation = percentiles(tr.propagation(|_| true));
    if let Some(ps) = part_start {
        let pe = part_end.unwrap_or(t_end);
        let during = |at: Instant| at >= ps && at < pe;
        report.propagation_outside_partition = percentiles(tr.propagation(|at| !during(at)));
        report.propagation_during_partition = percentiles(tr.propagation(during));
    }
    report.partition_detection = sides
        .iter()
        .zip(&detected)
        .map(|((g, _), d)| Detection {
            group: g.iter().map(|i| i + 1).collect(),
            detected_ms: d.map(ms),
        })
        .collect();
    report.heal_ms = heal.map(ms);
    report.convergence_ms = converged.map(ms);
    report.converged = converged.is_some();
    if converged.is_none() {
        let mut why = Vec::new();
        for (i, x) in nodes.iter().enumerate() {
            let missing = tr.missing_on(i);
            let alive = x.alive_count();
            if missing > 0 || alive != n {
                why.push(format!(
                    "{} lacks {missing} writes and sees {alive}/{n} alive",
                    x.id()
                ));
            }
        }
        if !workload_done.load(Ordering::Relaxed) {
            why.push("the workload did not finish".to_string());
        }
        report.failure = Some(format!(
            "the cluster did not converge within {:.0} s after the faults ended: {}",
            p.deadline.as_secs_f64(),
            why.join("; ")
        ));
    }
    drop(tr);
    finish_traffic(&mut report, nodes, controls, Some((&before, t0)), t_end);
    report
}
