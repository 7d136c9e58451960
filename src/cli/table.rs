//! Text rendering shared by the commands that print tables: aligned columns, short
//! human durations, and the member table of `gossamer members` (also the first screen
//! of `gossamer members --watch`).

use gossamer::node::MemberView;

/// A text, or `-` when it is empty.
pub fn dash(s: &str) -> String {
    if s.is_empty() {
        "-".to_string()
    } else {
        s.to_string()
    }
}

/// Milliseconds as a short human duration: `850ms`, `1.5s`, `2m05s`, `3h07m`, `2d04h`.
pub fn human_ms(ms: u64) -> String {
    if ms < 1_000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        human_secs(ms / 1000)
    }
}

/// Seconds as a short human duration.
pub fn human_secs(s: u64) -> String {
    if s < 60 {
        format!("{s}s")
    } else if s < 3_600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else if s < 86_400 {
        format!("{}h{:02}m", s / 3_600, (s % 3_600) / 60)
    } else {
        format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3_600)
    }
}

pub fn rtt_text(v: Option<f64>) -> String {
    match v {
        Some(ms) if ms < 10.0 => format!("{ms:.2}ms"),
        Some(ms) => format!("{ms:.0}ms"),
        None => "-".to_string(),
    }
}

/// Renders members as an aligned table, the local node first (marked `*`), then by id.
pub fn members_table(members: &[MemberView]) -> String {
    let mut sorted: Vec<&MemberView> = members.iter().collect();
    sorted.sort_by(|a, b| b.is_self.cmp(&a.is_self).then_with(|| a.id.cmp(&b.id)));
    let header = [
        "ID",
        "STATUS",
        "INCARNATION",
        "ADDR",
        "DC",
        "LAST HEARD",
        "RTT",
    ];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    for m in sorted {
        let mut id = m.id.to_string();
        if m.is_self {
            id.push_str(" *");
        }
        let last_heard = match m.last_heard_ms_ago {
            Some(ms) => format!("{} ago", human_ms(ms)),
            None => "-".to_string(),
        };
        rows.push(vec![
            id,
            dash(&m.status),
            m.incarnation.to_string(),
            dash(&m.addr),
            dash(&m.dc),
            last_heard,
            rtt_text(m.rtt_ms),
        ]);
    }
    aligned(&rows, "")
}

/// Renders rows as columns separated by two spaces, each line prefixed by `indent`.
pub fn aligned(rows: &[Vec<String>], indent: &str) -> String {
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = indent.to_string();
        for (c, cell) in row.iter().enumerate() {
            if c > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            if c + 1 < row.len() {
                let pad = widths[c] - cell.chars().count();
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_cmds_members_table() {
        let members = serde_json::json!([
            {"id": "node-2", "addr": "127.0.0.1:7002", "status": "suspect", "incarnation": 12,
             "dc": "eu-west", "zone": "", "tags": {}, "last_heard_ms_ago": 1500,
             "rtt_ms": 0.4213, "is_self": false},
            {"id": "n1", "addr": "127.0.0.1:7001", "status": "alive", "incarnation": 1,
             "dc": "", "zone": "", "tags": {}, "last_heard_ms_ago": null,
             "rtt_ms": null, "is_self": true},
            {"id": "a", "addr": "10.0.0.3:7000", "status": "dead", "incarnation": 0,
             "dc": "us", "zone": "", "tags": {}, "last_heard_ms_ago": 190000,
             "rtt_ms": 25.0, "is_self": false}
        ]);
        let members: Vec<MemberView> = serde_json::from_value(members).unwrap();
        let table = members_table(&members);
        let expected = "\
ID      STATUS   INCARNATION  ADDR            DC       LAST HEARD  RTT
n1 *    alive    1            127.0.0.1:7001  -        -           -
a       dead     0            10.0.0.3:7000   us       3m10s ago   25ms
node-2  suspect  12           127.0.0.1:7002  eu-west  1.5s ago    0.42ms
";
        assert_eq!(table, expected);
    }

    #[test]
    fn admin_cmds_human_durations() {
        assert_eq!(human_ms(850), "850ms");
        assert_eq!(human_ms(1500), "1.5s");
        assert_eq!(human_ms(125_000), "2m05s");
        assert_eq!(human_secs(11_220), "3h07m");
        assert_eq!(human_secs(187_200), "2d04h");
    }
}
