//! The results as the text table `gossamer bench` prints.

use std::fmt::Write as _;

use super::args::Mode;
use super::report::Report;

pub(super) fn opt(v: Option<f64>, digits: usize) -> String {
    v.map(|x| format!("{x:.digits$}"))
        .unwrap_or_else(|| "n/a".into())
}

/// The results as a text table.
pub fn table(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "gossamer bench {}: fanout {}, gossip {} ms, sync {} ms, retransmit x{}{}; {} writes at {}/s; idle window {} s; seed {}",
        match r.mode {
            Mode::Cluster => "--cluster".to_string(),
            m => format!("--mode {}", m.name()),
        },
        r.settings.fanout,
        r.settings.gossip_interval_ms,
        r.settings.sync_interval_ms,
        r.settings.retransmit_mult,
        r.settings
            .probe_interval_ms
            .map(|p| format!(", probe {p} ms"))
            .unwrap_or_default(),
        r.writes,
        r.rate,
        r.idle_s,
        r.seed
    );
    let _ = writeln!(
        s,
        "machine: {} CPUs ({}), {} GiB",
        r.machine.cpus, r.machine.cpu_model, r.machine.memory_gib
    );
    let bytes = r.mode.traffic_bytes();
    let _ = writeln!(
        s,
        "traffic columns are {bytes} and datagrams sent per node per second\n"
    );
    let _ = writeln!(
        s,
        "{:>6} {:>7} | {:>8} {:>8} {:>8} | {:>7} {:>6} | {:>8} {:>7} | {:>6} {:>6} {:>6} | {:>6} {:>6} | {:>6}",
        "N", "join s", "p50 ms", "p99 ms", "max ms", "idle B", "idle d", "load B", "load d",
        "copies", "rounds", "theory", "cpu% i", "cpu% l", "MiB/n"
    );
    for row in &r.rows {
        let p = row.propagation.as_ref();
        let _ = writeln!(
            s,
            "{:>6} {:>7} | {:>8} {:>8} {:>8} | {:>7.0} {:>6.2} | {:>8.0} {:>7.2} | {:>6} {:>6} {:>6.1} | {:>6} {:>6} | {:>6}",
            row.nodes,
            opt(row.join_ms.map(|x| x / 1000.0), 1),
            opt(p.map(|x| x.p50_ms), 1),
            opt(p.map(|x| x.p99_ms), 1),
            opt(p.map(|x| x.max_ms), 1),
            row.idle.bytes_per_node_s,
            row.idle.datagrams_per_node_s,
            row.load.bytes_per_node_s,
            row.load.datagrams_per_node_s,
            opt(row.copies_per_update, 2),
            opt(row.measured_rounds_p99, 2),
            row.theory_rounds,
            opt(row.idle.cpu_percent_per_node, 2),
            opt(row.load.cpu_percent_per_node, 2),
            opt(row.rss_mib_per_node, 2),
        );
    }
    let _ = writeln!(
        s,
        "\ncolumns: join = until every node sees all N; p50/p99/max = write until the last node has it;\n\
         idle/load B, d = bytes, datagrams sent per node per s; copies = copies of each update received per node;\n\
         rounds = p99 / gossip interval; theory = push-gossip rounds log_(f+1) N + ln N / f;\n\
         cpu% i/l = process CPU per node, idle/under load (% of one core); MiB/n = resident memory per node."
    );
    if r.rows.iter().any(|x| x.detection.is_some()) {
        let theory = r
            .settings
            .probe_interval_ms
            .map(|p| format!("{:.0}", p as f64 * 1.582))
            .unwrap_or_else(|| "n/a".into());
        let _ = writeln!(
            s,
            "\nfaults (virtual time, ms): crash detection (mean of {} crashes) and heal of a {} s partition into halves",
            r.crashes,
            r.partition_s
        );
        let _ = writeln!(
            s,
            "{:>6} | {:>10} {:>10} {:>10} {:>12} | {:>10}",
            "N", "suspect 1", "suspect all", "dead all", "theory first", "heal"
        );
        for row in &r.rows {
            let d = row.detection.clone().unwrap_or_default();
            let _ = writeln!(
                s,
                "{:>6} | {:>10} {:>11} {:>10} {:>12} | {:>10}",
                row.nodes,
                opt(d.first_ms, 0),
                opt(d.all_ms, 0),
                opt(d.dead_ms, 0),
                theory,
                opt(row.partition_heal_ms, 0),
            );
        }
        let _ = writeln!(
            s,
            "suspect 1 = crash until the first node suspects it; suspect all = until every node sees it suspect or dead;\n\
             dead all = until every node declared it dead; theory first = SWIM's expected first detection,\n\
             e/(e-1) = 1.58 probe periods (plus the probe timeout before suspicion);\n\
             heal = partition end until every write made during it is everywhere and every node sees all N alive."
        );
    }
    if r.rows.iter().any(|x| x.max_writes_per_s.is_some()) {
        let _ = writeln!(s);
        for row in &r.rows {
            let _ = writeln!(
                s,
                "N={}: max sustained write rate {} writes/s",
                row.nodes,
                opt(row.max_writes_per_s, 0)
            );
        }
    }
    let notes: Vec<String> = r
        .rows
        .iter()
        .flat_map(|x| x.notes.iter().map(move |m| format!("N={}: {m}", x.nodes)))
        .collect();
    if !notes.is_empty() {
        let _ = writeln!(s, "\nnotes:");
        for m in notes {
            let _ = writeln!(s, "  {m}");
        }
    }
    s
}
