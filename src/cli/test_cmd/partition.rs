//! The `--partition` flag: which node groups are cut off from each other, and when.

use std::collections::HashSet;
use std::time::Duration;

use crate::cli::UsageError;

/// A parsed `--partition` flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionSpec {
    /// Groups of 0-based node indices that cannot reach each other.
    pub groups: Vec<Vec<usize>>,
    /// Start, from the start of the workload.
    pub start: Duration,
    /// End, from the start of the workload.
    pub end: Duration,
}

const PARTITION_HELP: &str = "expected GROUPS@START..END, e.g. 1,2/3,4,5@5s..20s";

/// Parses `GROUPS@START..END` (node numbers 1-based, groups separated by `/`, times
/// with an `s` or `ms` suffix) for a cluster of `nodes`. The error names the flag.
pub fn parse_partition(s: &str, nodes: usize) -> Result<PartitionSpec, UsageError> {
    let err = |why: String| UsageError(format!("--partition {s:?}: {why}"));
    let (groups_s, times_s) = s
        .split_once('@')
        .ok_or_else(|| err(PARTITION_HELP.to_string()))?;
    let (start_s, end_s) = times_s
        .split_once("..")
        .ok_or_else(|| err(format!("missing START..END; {PARTITION_HELP}")))?;
    let start = parse_time(start_s).map_err(&err)?;
    let end = parse_time(end_s).map_err(&err)?;
    if end <= start {
        return Err(err(format!(
            "the end ({end_s}) must come after the start ({start_s})"
        )));
    }
    let mut seen = HashSet::new();
    let mut groups = Vec::new();
    for g in groups_s.split('/') {
        let mut group = Vec::new();
        for part in g.split(',') {
            let part = part.trim();
            if part.is_empty() {
                return Err(err(format!(
                    "empty node number in group {g:?}; {PARTITION_HELP}"
                )));
            }
            let n: usize = part
                .parse()
                .map_err(|_| err(format!("{part:?} is not a node number")))?;
            if n == 0 || n > nodes {
                return Err(err(format!(
                    "node {n} is out of range: nodes are numbered 1 to {nodes}"
                )));
            }
            if !seen.insert(n) {
                return Err(err(format!("node {n} is in more than one group")));
            }
            group.push(n - 1);
        }
        groups.push(group);
    }
    if groups.len() < 2 {
        return Err(err(format!(
            "a partition needs at least two groups separated by '/'; {PARTITION_HELP}"
        )));
    }
    Ok(PartitionSpec { groups, start, end })
}

/// Parses `5s`, `2.5s` or `500ms`.
pub(crate) fn parse_time(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let (num, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else {
        return Err(format!("time {t:?} needs a unit: s or ms (e.g. 5s, 500ms)"));
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("time {t:?} is not a number of s or ms"))?;
    if !v.is_finite() || v < 0.0 || v * scale > 86_400.0 {
        return Err(format!("time {t:?} must be between 0 and 24 h"));
    }
    Ok(Duration::from_secs_f64(v * scale))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(s: &str, n: usize) -> Result<PartitionSpec, String> {
        parse_partition(s, n).map_err(|e| e.0)
    }

    #[test]
    fn parses_groups_and_times() {
        let p = spec("1,2/3,4,5@5s..20s", 5).unwrap();
        assert_eq!(p.groups, vec![vec![0, 1], vec![2, 3, 4]]);
        assert_eq!(p.start, Duration::from_secs(5));
        assert_eq!(p.end, Duration::from_secs(20));
        let p = spec("1/2/3@0ms..1.5s", 3).unwrap();
        assert_eq!(p.groups, vec![vec![0], vec![1], vec![2]]);
        assert_eq!(p.start, Duration::ZERO);
        assert_eq!(p.end, Duration::from_millis(1500));
        let p = spec(" 1 , 3 /2@250ms..500ms", 4).unwrap();
        assert_eq!(p.groups, vec![vec![0, 2], vec![1]]);
    }

    #[test]
    fn rejects_bad_partitions_naming_the_flag() {
        for (s, why) in [
            ("1,2/3,4,5", "GROUPS@START..END"),
            ("1,2/3@5s", "START..END"),
            ("1,2/3@5..20s", "unit"),
            ("1,2/3@5s..20", "unit"),
            ("1,2/3@20s..5s", "after the start"),
            ("1,2/3@5s..5s", "after the start"),
            ("1,2,3@5s..20s", "two groups"),
            ("1,2/6@5s..20s", "out of range"),
            ("0,2/3@5s..20s", "out of range"),
            ("1,2/2,3@5s..20s", "more than one group"),
            ("1,,2/3@5s..20s", "empty"),
            ("1,2//3@5s..20s", "empty"),
            ("a/3@5s..20s", "not a node number"),
            ("1/3@-1s..20s", "between 0 and 24 h"),
            ("1/3@xs..20s", "not a number"),
        ] {
            let e = spec(s, 5).unwrap_err();
            assert!(e.starts_with("--partition"), "{s}: {e}");
            assert!(e.contains(why), "{s}: {e:?} should mention {why:?}");
        }
    }
}
