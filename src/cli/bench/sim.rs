//! Sim mode: N engines in the deterministic simulator, in virtual time; bytes are the
//! engine's messages as encoded. Besides the quic mode's figures, a row measures the heal
//! of a partition into halves and failure detection after crashes.

use std::time::Instant;

use gossamer::core::proto::MemberStatus;
use gossamer::sim::{sim_id, Action, Sim, SimConfig};

use super::host::proc_status_mib;
use super::plan::{Plan, DRAIN_LIMIT, SETTLE, US};
use super::progress::Progress;
use super::report::{CrashTimes, Detection, Load, Row, Traffic};

#[derive(Debug, Clone, Copy)]
struct SimSnap {
    at_us: u64,
    datagrams: u64,
    bytes: u64,
    gossip_bytes: u64,
    sync_bytes: u64,
    copies: u64,
}

fn sim_snap(sim: &Sim) -> SimSnap {
    let mut s = SimSnap {
        at_us: sim.now_us(),
        datagrams: 0,
        bytes: 0,
        gossip_bytes: 0,
        sync_bytes: 0,
        copies: 0,
    };
    for i in 0..sim.len() {
        let t = sim.traffic(i);
        s.datagrams += t.datagrams;
        s.gossip_bytes += t.datagram_bytes;
        s.sync_bytes += t.sync_bytes;
        s.bytes += t.datagram_bytes + t.sync_bytes;
        if let Some(e) = sim.engine(i) {
            let st = e.store().stats();
            s.copies += st.duplicates + st.remote_applied;
        }
    }
    s
}

fn sim_traffic(a: &SimSnap, b: &SimSnap, n: usize) -> Traffic {
    let dt = (b.at_us.saturating_sub(a.at_us) as f64 / US as f64).max(1e-9);
    let per = |x: u64, y: u64| y.saturating_sub(x) as f64 / n as f64 / dt;
    Traffic {
        window_s: dt,
        bytes_per_node_s: per(a.bytes, b.bytes),
        datagrams_per_node_s: per(a.datagrams, b.datagrams),
        gossip_bytes_per_node_s: per(a.gossip_bytes, b.gossip_bytes),
        sync_bytes_per_node_s: per(a.sync_bytes, b.sync_bytes),
        gossip_datagrams_per_node_s: per(a.datagrams, b.datagrams),
        cpu_percent_per_node: None,
    }
}

/// True when every node is up and sees all N members alive or suspect (itself
/// included): O(N), unlike a pairwise check.
fn sim_joined(sim: &Sim) -> bool {
    let n = sim.len();
    (0..n).all(|i| sim.engine(i).is_some_and(|e| e.members().live_count() == n))
}

/// Runs the simulation in `step_us` steps until `cond` holds or `limit_us` passes;
/// returns the virtual time it took (µs), if it held.
fn sim_until(
    sim: &mut Sim,
    step_us: u64,
    limit_us: u64,
    mut cond: impl FnMut(&Sim) -> bool,
    mut show: impl FnMut(f64, &str),
) -> Option<u64> {
    let start = sim.now_us();
    loop {
        if cond(sim) {
            return Some(sim.now_us() - start);
        }
        let e = sim.now_us() - start;
        if e >= limit_us {
            return None;
        }
        show(
            e as f64 / limit_us as f64,
            &format!("virtual time {:.1} s", sim.now_us() as f64 / US as f64),
        );
        let next = sim.now_us() + step_us;
        sim.run_until(next);
    }
}

pub(super) fn sim_row(p: &Plan, n: usize, progress: &Progress) -> Row {
    let wall = Instant::now();
    let mut notes = Vec::new();
    let rss_before = proc_status_mib("VmRSS");
    let join_window_us = 2 * US + n as u64 * 1_000;
    let mut sim = Sim::new(SimConfig {
        nodes: n,
        seed: p.seed,
        gossip: p.gossip.clone(),
        net: p.net.clone(),
        join_window_us,
        joined: p.warm,
    });
    if p.warm {
        notes.push("warm start: every node began with the full member table".into());
    }
    // Join: until every node sees all N.
    let join = if p.warm {
        None
    } else {
        sim_until(
            &mut sim,
            US / 2,
            join_window_us + 300 * US,
            sim_joined,
            |f, d| progress.show(n, "joining", f, d),
        )
    };
    if join.is_none() && !p.warm {
        notes.push("membership did not converge within 300 virtual s of the join window".into());
    }
    // Settle: until no node has anything left to gossip (join announcements spent),
    // then a little longer for the last member-list exchanges.
    let quiet = sim_until(
        &mut sim,
        US / 2,
        p.settle_us,
        |s| (0..n).all(|i| s.engine(i).is_none_or(|e| e.queue().is_empty())),
        |f, d| progress.show(n, "settling", f, d),
    );
    if quiet.is_none() {
        let (busy, items) = (0..n)
            .filter_map(|i| sim.engine(i).map(|e| e.queue().len()))
            .filter(|&l| l > 0)
            .fold((0, 0), |(b, t), l| (b + 1, t + l));
        notes.push(format!(
            "{busy} nodes still had {items} broadcasts queued {:.0} virtual s after joining (join announcements)",
            p.settle_us as f64 / US as f64
        ));
    }
    let settle_until = sim.now_us() + SETTLE.as_micros() as u64;
    sim.run_until(settle_until);
    let rss_joined = proc_status_mib("VmRSS");

    // Idle.
    progress.show(n, "idle", 0.0, "virtual");
    let a = sim_snap(&sim);
    let idle_until = sim.now_us() + (p.idle * US as f64) as u64;
    sim.run_until(idle_until);
    let b = sim_snap(&sim);
    let idle = sim_traffic(&a, &b, n);

    // Write load, on random nodes.
    let first_write = sim.writes().len();
    let t0 = sim.now_us() + 1_000;
    for k in 0..p.writes {
        let node = sim.random_live_node(n).unwrap_or(0);
        let at = t0 + (k as f64 * US as f64 / p.rate) as u64;
        sim.schedule_action(
            at,
            Action::Write {
                node,
                key: format!("bench/{k:06}"),
                value: Some(vec![0xab; 32]),
            },
        );
    }
    let before = sim_snap(&sim);
    let last_at = t0 + ((p.writes - 1) as f64 * US as f64 / p.rate) as u64;
    let total_us = last_at - sim.now_us();
    let mut last_shown = sim.now_us();
    while sim.now_us() < last_at {
        let next = (sim.now_us() + US / 2).min(last_at);
        sim.run_until(next);
        if sim.now_us() - last_shown >= US / 2 {
            let done = 1.0 - (last_at - sim.now_us()) as f64 / total_us.max(1) as f64;
            progress.show(n, "writing", done, "virtual");
            last_shown = sim.now_us();
        }
    }
    let drained = sim_until(
        &mut sim,
        US / 20,
        DRAIN_LIMIT.as_micros() as u64 * 4,
        |s| s.pending_writes() == 0,
        |f, d| progress.show(n, "draining", f, d),
    );
    let after = sim_snap(&sim);
    let load = sim_traffic(&before, &after, n);
    let ws = &sim.writes()[first_write..];
    let prop: Vec<f64> = ws
        .iter()
        .filter_map(|w| w.done_us.map(|d| (d - w.at_us) as f64 / 1000.0))
        .collect();
    let complete = prop.len();
    if drained.is_none() {
        notes.push(format!(
            "{} of {} writes had not reached every node 60 virtual s after the last write",
            ws.len() - complete,
            ws.len()
        ));
    }
    let copies = after.copies.saturating_sub(before.copies) as f64;
    let row = Row::measured(
        n,
        &p.gossip,
        Load {
            idle,
            load,
            writes: p.writes,
            writes_everywhere: complete,
            propagation_ms: prop,
            copies,
        },
    );
    let (mut partition_heal_ms, mut detection) = (None, None);
    if p.faults {
        partition_heal_ms = sim_partition(p, n, &mut sim, progress, &mut notes);
        if p.crashes > 0 {
            detection = Some(sim_crash(n, p.crashes, &mut sim, progress, &mut notes));
        }
    }
    let rss = match (rss_before, rss_joined) {
        (Some(a), Some(b)) => Some((b - a).max(0.0) / n as f64),
        _ => None,
    };
    Row {
        join_ms: join.map(|us| us as f64 / 1000.0),
        detection,
        partition_heal_ms,
        rss_mib_per_node: rss,
        wall_s: wall.elapsed().as_secs_f64(),
        sim_events: Some(sim.stats().events),
        notes,
        ..row
    }
}

/// Splits the cluster into halves for `p.partition` s with writes on both sides, heals,
/// and returns the time from the heal until every write is everywhere and every node
/// sees every node alive.
fn sim_partition(
    p: &Plan,
    n: usize,
    sim: &mut Sim,
    progress: &Progress,
    notes: &mut Vec<String>,
) -> Option<f64> {
    let start = sim.now_us() + US;
    let len = (p.partition * US as f64) as u64;
    let heal_at = start + len;
    let halves = vec![(0..n / 2).collect(), (n / 2..n).collect()];
    sim.schedule_action(start, Action::Partition(halves));
    sim.schedule_action(heal_at, Action::Heal);
    let writes = 20usize;
    for k in 0..writes {
        // Alternate sides, evenly through the partition.
        let node = if k % 2 == 0 {
            k / 2 % (n / 2).max(1)
        } else {
            n / 2 + k / 2 % (n - n / 2)
        };
        let at = start + len / 10 + (k as u64 * len * 8 / 10) / writes as u64;
        sim.schedule_action(
            at,
            Action::Write {
                node,
                key: format!("bench/partition/{k}"),
                value: Some(vec![0xef; 32]),
            },
        );
    }
    progress.show(n, "partition", 0.0, "virtual");
    sim.run_until(heal_at);
    let limit = 120 * US;
    let healed = sim_until(
        sim,
        US / 10,
        limit,
        |s| s.pending_writes() == 0 && sim_joined(s),
        |f, d| progress.show(n, "healing", f, d),
    );
    if healed.is_none() {
        notes.push(format!(
            "partition: not healed {} virtual s after the partition ended",
            limit / US
        ));
    }
    healed.map(|us| us as f64 / 1000.0)
}

/// Crashes the last `crashes` nodes one at a time (each after the previous one was
/// declared dead everywhere, or 60 virtual s) and measures how long the live nodes take
/// to suspect and to declare each dead.
fn sim_crash(
    n: usize,
    crashes: usize,
    sim: &mut Sim,
    progress: &Progress,
    notes: &mut Vec<String>,
) -> Detection {
    let limit = 60 * US;
    let mut d = Detection::default();
    let ms = |us: u64| us as f64 / 1000.0;
    for c in 0..crashes.min(n / 4) {
        let victim = n - 1 - c;
        let id = sim_id(victim);
        let at = sim.now_us() + US;
        sim.schedule_action(at, Action::Crash(victim));
        sim.run_until(at);
        let status = |s: &Sim, i: usize| {
            s.engine(i).map(|e| {
                e.members()
                    .get(&id)
                    .map_or(MemberStatus::Dead, |m| m.state.status)
            })
        };
        let (mut first, mut all) = (None, None);
        let dead = sim_until(
            sim,
            US / 100,
            limit,
            |s| {
                let now = s.now_us() - at;
                let live = (0..n).filter_map(|i| status(s, i));
                let (mut any_down, mut all_down, mut all_dead) = (false, true, true);
                for st in live {
                    let down = st != MemberStatus::Alive;
                    any_down |= down;
                    all_down &= down;
                    all_dead &= matches!(st, MemberStatus::Dead | MemberStatus::Left);
                }
                if any_down && first.is_none() {
                    first = Some(now);
                }
                if all_down && all.is_none() {
                    all = Some(now);
                }
                all_dead
            },
            |f, t| progress.show(n, &format!("crash {}/{crashes}, detecting", c + 1), f, t),
        );
        d.each.push((first.map(ms), all.map(ms), dead.map(ms)));
    }
    d.samples = d.each.len();
    let mean = |f: &dyn Fn(&CrashTimes) -> Option<f64>| {
        let v: Vec<f64> = d.each.iter().filter_map(f).collect();
        (v.len() == d.each.len() && !v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    d.first_ms = mean(&|x| x.0);
    d.all_ms = mean(&|x| x.1);
    d.dead_ms = mean(&|x| x.2);
    let missed = d.each.iter().filter(|x| x.2.is_none()).count();
    if missed > 0 {
        notes.push(format!(
            "failure detection: {missed} of {} crashed nodes were not declared dead everywhere within {} virtual s{}",
            d.samples,
            limit / US,
            if d.each.iter().all(|x| x.0.is_none()) {
                " (no node even suspected them: no failure detector ran)"
            } else {
                ""
            }
        ));
    }
    d
}
