//! The flags, validated into what the run does ([`Plan`]), and the test cluster's
//! protocol timing.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gossamer::chaos::Faults;
use gossamer::core::Config;

use super::args::TestArgs;
use super::partition::{parse_partition, PartitionSpec};
use crate::cli::UsageError;

/// Everything the run needs, validated.
#[derive(Debug, Clone)]
pub(super) struct Plan {
    pub(super) nodes: usize,
    pub(super) faults: Faults,
    pub(super) partition: Option<PartitionSpec>,
    pub(super) writes_per_sec: f64,
    pub(super) duration: Duration,
    pub(super) deadline: Duration,
    pub(super) total_writes: usize,
    pub(super) seed: u64,
    pub(super) json: bool,
}

const MAX_WRITES: f64 = 200_000.0;

fn probability(flag: &str, p: f64) -> Result<f64, UsageError> {
    if (0.0..=1.0).contains(&p) {
        Ok(p)
    } else {
        Err(UsageError(format!(
            "{flag} {p}: must be a probability between 0 and 1"
        )))
    }
}

pub(super) fn plan(a: &TestArgs) -> Result<Plan, UsageError> {
    if !(2..=50).contains(&a.nodes) {
        return Err(UsageError(format!(
            "--nodes {}: the test runs 2 to 50 nodes",
            a.nodes
        )));
    }
    let loss = probability("--loss", a.loss)?;
    let duplicate = probability("--duplicate", a.duplicate)?;
    for (flag, v) in [("--latency", a.latency), ("--jitter", a.jitter)] {
        if v > 10_000 {
            return Err(UsageError(format!(
                "{flag} {v}: at most 10000 milliseconds"
            )));
        }
    }
    let partition = a
        .partition
        .as_deref()
        .map(|s| parse_partition(s, a.nodes))
        .transpose()?;
    if !(a.writes_per_sec.is_finite() && a.writes_per_sec > 0.0 && a.writes_per_sec <= 10_000.0) {
        return Err(UsageError(format!(
            "--writes-per-sec {}: must be more than 0 and at most 10000",
            a.writes_per_sec
        )));
    }
    let duration = match a.duration {
        Some(d) => {
            if !(d.is_finite() && d > 0.0 && d <= 3_600.0) {
                return Err(UsageError(format!(
                    "--duration {d}: must be more than 0 and at most 3600 seconds"
                )));
            }
            Duration::from_secs_f64(d)
        }
        None => partition
            .as_ref()
            .map(|p| p.end + Duration::from_secs(10))
            .unwrap_or(Duration::from_secs(10)),
    };
    if let Some(p) = &partition {
        if p.end > duration {
            return Err(UsageError(format!(
                "--duration {:.1}: the run would end before the partition ends at {:.1} s (--partition)",
                duration.as_secs_f64(),
                p.end.as_secs_f64()
            )));
        }
    }
    if !(a.deadline.is_finite() && a.deadline >= 1.0 && a.deadline <= 3_600.0) {
        return Err(UsageError(format!(
            "--deadline {}: must be between 1 and 3600 seconds",
            a.deadline
        )));
    }
    let writes = a.writes_per_sec * duration.as_secs_f64();
    if writes > MAX_WRITES {
        return Err(UsageError(format!(
            "--writes-per-sec {} over {:.0} s makes {writes:.0} writes; at most {MAX_WRITES} per run",
            a.writes_per_sec,
            duration.as_secs_f64()
        )));
    }
    let seed = a.seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    Ok(Plan {
        nodes: a.nodes,
        faults: Faults {
            loss,
            delay: Duration::from_millis(a.latency),
            jitter: Duration::from_millis(a.jitter),
            duplicate,
            ..Faults::none()
        },
        partition,
        writes_per_sec: a.writes_per_sec,
        duration,
        deadline: Duration::from_secs_f64(a.deadline),
        total_writes: writes.floor() as usize,
        seed,
        json: a.json,
    })
}

/// Protocol timing of the test cluster: quick rounds, so that runs take seconds.
pub(super) fn gossip_config() -> Config {
    Config {
        gossip_interval_ms: 100,
        sync_interval_ms: 500,
        seed_backoff_floor_ms: 200,
        seed_backoff_cap_ms: 2_000,
        ..Config::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Wrap {
        #[command(flatten)]
        args: TestArgs,
    }

    fn plan_of(flags: &[&str]) -> Result<Plan, String> {
        let mut argv = vec!["test"];
        argv.extend_from_slice(flags);
        plan(&Wrap::try_parse_from(argv).unwrap().args).map_err(|e| e.0)
    }

    #[test]
    fn flags_are_validated_naming_the_flag() {
        let p = plan_of(&["--partition", "1,2/3,4,5@5s..20s", "--seed", "7"]).unwrap();
        assert_eq!(p.duration, Duration::from_secs(30));
        assert_eq!(p.total_writes, 600);
        assert_eq!(p.seed, 7);
        assert_eq!(plan_of(&[]).unwrap().duration, Duration::from_secs(10));
        for (flags, name) in [
            (&["--loss", "1.5"][..], "--loss"),
            (&["--loss", "-0.1"][..], "--loss"),
            (&["--duplicate", "2"][..], "--duplicate"),
            (&["--nodes", "1"][..], "--nodes"),
            (
                &["--nodes", "3", "--partition", "1/4@1s..2s"][..],
                "--partition",
            ),
            (
                &["--partition", "1/2@1s..20s", "--duration", "10"][..],
                "--duration",
            ),
            (&["--writes-per-sec", "0"][..], "--writes-per-sec"),
            (&["--deadline", "0"][..], "--deadline"),
            (&["--latency", "20000"][..], "--latency"),
        ] {
            let e = plan_of(flags).unwrap_err();
            assert!(e.starts_with(name), "{flags:?}: {e}");
        }
    }
}
