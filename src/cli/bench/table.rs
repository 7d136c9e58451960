//! The results as the text table `gossamer bench` prints.

use std::fmt::Write as _;

use super::args::Mode;
use super::report::{NodeTraffic, Report};

pub(super) fn opt(v: Option<f64>, digits: usize) -> String {
    v.map(|x| format!("{x:.digits$}"))
        .unwrap_or_else(|| "n/a".into())
}

/// Nodes listed one by one under a row; beyond, the busiest and a summary.
const PER_NODE_LINES: usize = 10;

/// Each node's traffic (processes and cluster modes): the busiest nodes under load, then
/// the smallest, median and largest figure over all nodes when there are more.
fn per_node(s: &mut String, r: &Report) {
    for row in r.rows.iter().filter(|x| !x.per_node.is_empty()) {
        let _ = writeln!(
            s,
            "
N={}: payload bytes per second of each node{}",
            row.nodes,
            if row.per_node.len() > PER_NODE_LINES {
                format!(" (the {PER_NODE_LINES} busiest under load)")
            } else {
                String::new()
            }
        );
        let _ = writeln!(
            s,
            "  {:<20} {:<24} | {:>9} {:>9} | {:>9} {:>9}",
            "node", "admin", "idle sent", "received", "load sent", "received"
        );
        let mut nodes: Vec<_> = row.per_node.iter().collect();
        nodes.sort_by(|a, b| b.load_sent_bytes_s.total_cmp(&a.load_sent_bytes_s));
        for x in nodes.iter().take(PER_NODE_LINES) {
            let _ = writeln!(
                s,
                "  {:<20} {:<24} | {:>9.0} {:>9.0} | {:>9.0} {:>9.0}",
                x.node,
                x.addr,
                x.idle_sent_bytes_s,
                x.idle_received_bytes_s,
                x.load_sent_bytes_s,
                x.load_received_bytes_s
            );
        }
        if nodes.len() > PER_NODE_LINES {
            type Pick = fn(&&NodeTraffic) -> f64;
            let figures: [(&str, Pick); 4] = [
                ("idle sent", |x| x.idle_sent_bytes_s),
                ("idle received", |x| x.idle_received_bytes_s),
                ("load sent", |x| x.load_sent_bytes_s),
                ("load received", |x| x.load_received_bytes_s),
            ];
            for (name, pick) in figures {
                let mut v: Vec<f64> = nodes.iter().map(pick).collect();
                v.sort_by(|a, b| a.total_cmp(b));
                let _ = writeln!(
                    s,
                    "  {name}: min {:.0}, median {:.0}, max {:.0} over {} nodes",
                    v[0],
                    v[v.len() / 2],
                    v[v.len() - 1],
                    v.len()
                );
            }
        }
    }
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
    if r.mode == Mode::Quic {
        // Where the idle bytes go: what the nodes hand to QUIC, and what QUIC adds
        // (packet headers, ACKs, keep-alives), which only a real transport shows.
        let _ = writeln!(
            s,
            "\nidle, per node per s: {:>6} {:>8} {:>8} {:>8} {:>8} | {:>7} {:>7}",
            "N", "UDP B", "sync B", "gossip B", "QUIC B", "UDP d", "gossip d"
        );
        for row in &r.rows {
            let t = &row.idle;
            let quic = t.bytes_per_node_s - t.sync_bytes_per_node_s - t.gossip_bytes_per_node_s;
            let _ = writeln!(
                s,
                "                      {:>6} {:>8.0} {:>8.0} {:>8.0} {:>8.0} | {:>7.2} {:>7.2}",
                row.nodes,
                t.bytes_per_node_s,
                t.sync_bytes_per_node_s,
                t.gossip_bytes_per_node_s,
                quic,
                t.datagrams_per_node_s,
                t.gossip_datagrams_per_node_s,
            );
        }
        let _ = writeln!(
            s,
            "sync/gossip B = anti-entropy stream and gossip datagram payload; QUIC B = the rest of the UDP bytes\n\
             (QUIC headers, ACKs, keep-alives); UDP d / gossip d = all datagrams / gossip datagrams."
        );
    }
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
    per_node(&mut s, r);
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

#[cfg(test)]
mod tests {
    use super::super::args::Mode;
    use super::super::chart::tests::report;
    use super::super::report::NodeTraffic;
    use super::table;

    fn node(i: usize) -> NodeTraffic {
        NodeTraffic {
            node: format!("n{i}"),
            addr: format!("127.0.0.1:{}", 7000 + i),
            idle_sent_bytes_s: 100.0,
            idle_received_bytes_s: 90.0,
            load_sent_bytes_s: 1000.0 + i as f64,
            load_received_bytes_s: 900.0,
        }
    }

    #[test]
    fn each_node_is_listed_up_to_ten_then_summarised() {
        let mut r = report(Mode::Processes, &[3, 12]);
        r.rows[0].per_node = (1..=3).map(node).collect();
        r.rows[1].per_node = (1..=12).map(node).collect();
        let text = table(&r);
        assert!(text.contains("--mode processes"), "{text}");
        assert!(
            text.contains("N=3: payload bytes per second of each node\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "N=12: payload bytes per second of each node (the 10 busiest under load)"
            ),
            "{text}"
        );
        // The busiest first; n1 and n2 (the least busy of 12) only in the summary.
        let twelve = &text[text.find("N=12: payload").unwrap()..];
        assert!(
            twelve.find("n12 ").unwrap() < twelve.find("n3 ").unwrap(),
            "{text}"
        );
        assert!(!twelve.contains("n1 "), "{text}");
        assert!(
            twelve.contains("load sent: min 1001, median 1007, max 1012 over 12 nodes"),
            "{text}"
        );
    }
}
