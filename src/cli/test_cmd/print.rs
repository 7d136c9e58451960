//! The report as text, as `gossamer test` prints it without `--json`.

use super::report::{Percentiles, Report};

fn fmt_ms(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.2} s", v / 1000.0)
    } else {
        format!("{v:.1} ms")
    }
}

fn fmt_pct(p: &Option<Percentiles>) -> String {
    match p {
        Some(p) => format!(
            "p50 {:>9}   p99 {:>9}   max {:>9}   ({} writes)",
            fmt_ms(p.p50_ms),
            fmt_ms(p.p99_ms),
            fmt_ms(p.max_ms),
            p.count
        ),
        None => "no complete writes".to_string(),
    }
}

fn group_names(g: &[usize]) -> String {
    g.iter()
        .map(|i| format!("n{i}"))
        .collect::<Vec<_>>()
        .join(",")
}

pub(super) fn print_report(r: &Report) {
    let f = &r.faults;
    println!(
        "  faults      loss {:.1} %, latency {} ms + jitter {} ms, duplicate {:.1} %",
        f.loss * 100.0,
        f.latency_ms,
        f.jitter_ms,
        f.duplicate * 100.0
    );
    if let Some(p) = &r.partition {
        let groups: Vec<String> = p.groups.iter().map(|g| group_names(g)).collect();
        println!(
            "  partition   {} from {:.1} s to {:.1} s",
            groups.join(" | "),
            p.start_s,
            p.end_s
        );
    }
    println!(
        "  workload    {} writes/s for {:.1} s on the nodes in turn; deadline {:.0} s",
        r.writes_per_sec, r.duration_s, r.deadline_s
    );
    println!();
    match r.join_ms {
        Some(j) => println!(
            "  join                    every node sees {} alive after {}",
            r.nodes,
            fmt_ms(j)
        ),
        None => println!("  join                    did not complete"),
    }
    if r.join_ms.is_none() {
        return;
    }
    println!(
        "  writes                  {} made, {} on every node{}",
        r.writes,
        r.writes_everywhere,
        if r.write_errors > 0 {
            format!(", {} refused", r.write_errors)
        } else {
            String::new()
        }
    );
    println!("  propagation (all)       {}", fmt_pct(&r.propagation));
    if r.partition.is_some() {
        println!(
            "    outside partition     {}",
            fmt_pct(&r.propagation_outside_partition)
        );
        println!(
            "    during partition      {}",
            fmt_pct(&r.propagation_during_partition)
        );
        for d in &r.partition_detection {
            println!(
                "  partition detection     {:<14} {}",
                group_names(&d.group),
                match d.detected_ms {
                    Some(v) => format!("sees the other side down after {}", fmt_ms(v)),
                    None => "not detected".to_string(),
                }
            );
        }
        println!(
            "  heal                    {}",
            match r.heal_ms {
                Some(v) => format!(
                    "{} after the partition ended (all alive, earlier writes everywhere)",
                    fmt_ms(v)
                ),
                None => "not healed".to_string(),
            }
        );
    }
    println!(
        "  convergence             {}",
        match r.convergence_ms {
            Some(v) if v < 1.0 => "already there when the faults ended".to_string(),
            Some(v) => format!("{} after the faults ended", fmt_ms(v)),
            None => "not converged".to_string(),
        }
    );
    if r.arrivals_by_polling > 0 {
        println!(
            "  ({} arrivals were timed by polling instead of events)",
            r.arrivals_by_polling
        );
    }
    println!();
    println!(
        "  per node, over {:.1} s   {:>9} {:>11} {:>11} {:>9} {:>11} {:>8} {:>8} {:>6}",
        r.measured_s, "dgram/s", "dgram B/s", "sync B/s", "udp/s", "udp B/s", "lost", "cut", "dup"
    );
    for t in &r.traffic {
        println!(
            "    {:<20} {:>9.1} {:>11.1} {:>11.1} {:>9.1} {:>11.1} {:>8} {:>8} {:>6}",
            t.node,
            t.datagrams_sent_per_s,
            t.datagram_bytes_sent_per_s,
            t.sync_bytes_sent_per_s,
            t.udp_datagrams_sent_per_s,
            t.udp_bytes_sent_per_s,
            t.chaos.dropped_loss,
            t.chaos.dropped_partition(),
            t.chaos.duplicated
        );
    }
    let c = &r.chaos_total;
    println!(
        "  chaos total             {} UDP datagrams sent, {} lost, {} cut by the partition, {} duplicated, {} delayed, {} send errors",
        c.sent,
        c.dropped_loss,
        c.dropped_partition(),
        c.duplicated,
        c.delayed,
        c.dropped_error
    );
    println!();
    if r.converged {
        println!(
            "result: converged — every write on every node and every node alive everywhere, within {} of the faults ending (deadline {:.0} s)",
            fmt_ms(r.convergence_ms.unwrap_or(0.0)),
            r.deadline_s
        );
    } else {
        println!("result: NOT converged");
    }
}
