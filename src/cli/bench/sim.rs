//! Sim mode: N engines in the deterministic simulator, in virtual time; bytes are the
//! engine's messages as encoded.

use std::time::Instant;

use gossamer::sim::{Action, Sim, SimConfig};

use super::faults::{sim_crash, sim_partition};
use super::host::proc_status_mib;
use super::plan::Plan;
use super::progress::Progress;
use super::report::{percentiles, theory_hops, theory_rounds, Row, Traffic};
use super::{DRAIN_LIMIT, SETTLE, US};

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
        cpu_percent_per_node: None,
    }
}

/// True when every node is up and sees all N members alive or suspect (itself
/// included): O(N), unlike a pairwise check.
pub(super) fn sim_joined(sim: &Sim) -> bool {
    let n = sim.len();
    (0..n).all(|i| sim.engine(i).is_some_and(|e| e.members().live_count() == n))
}

/// Runs the simulation in `step_us` steps until `cond` holds or `limit_us` passes;
/// returns the virtual time it took (µs), if it held.
pub(super) fn sim_until(
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
    let propagation = percentiles(prop);
    let measured_rounds_p99 = propagation
        .as_ref()
        .map(|x| x.p99_ms / p.gossip.gossip_interval_ms as f64);

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
        nodes: n,
        join_ms: join.map(|us| us as f64 / 1000.0),
        idle,
        load,
        writes: p.writes,
        writes_everywhere: complete,
        propagation,
        copies_per_update: Some(copies / (p.writes as f64 * (n - 1) as f64)),
        theory_rounds: theory_rounds(n, p.gossip.fanout),
        theory_hops: theory_hops(
            n,
            p.gossip.fanout,
            p.gossip.tree_push && p.gossip.push_deltas,
        ),
        measured_rounds_p99,
        max_writes_per_s: None,
        detection,
        partition_heal_ms,
        rss_mib_per_node: rss,
        wall_s: wall.elapsed().as_secs_f64(),
        sim_events: Some(sim.stats().events),
        notes,
    }
}
