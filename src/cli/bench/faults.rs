//! Sim mode's faults: the heal time of a partition into halves, and failure detection
//! after crashes.

use gossamer::core::proto::MemberStatus;
use gossamer::sim::{sim_id, Action, Sim};

use super::plan::Plan;
use super::progress::Progress;
use super::report::{CrashTimes, Detection};
use super::sim::{sim_joined, sim_until};
use super::US;

/// Splits the cluster into halves for `p.partition` s with writes on both sides, heals,
/// and returns the time from the heal until every write is everywhere and every node
/// sees every node alive.
pub(super) fn sim_partition(
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
pub(super) fn sim_crash(
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
