//! Process and machine readings (Linux /proc; None elsewhere).

use super::report::Machine;

/// CPU time (user + system) of this process in seconds.
pub(super) fn cpu_seconds() -> Option<f64> {
    cpu_seconds_of("self")
}

/// CPU time (user + system) of process `pid` (a number, or `self`) in seconds.
pub(super) fn cpu_seconds_of(pid: &str) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start at state (field 3).
    let rest = s.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    // USER_HZ is 100 on every Linux ABI.
    Some((utime + stime) / 100.0)
}

/// Simulator peak memory per N² (bytes), measured with `/usr/bin/time -v`. Joining
/// through gossip: every node's queue fills with announcements of other members (up to
/// `queue_max`) besides its member table: 1.6 GB at N = 2,000. A warm start holds only
/// the tables (and the write load's queues): 3.5 GB at N = 5,000, 13.0 GB at 10,000.
pub(super) fn sim_bytes_per_n2(warm: bool) -> f64 {
    if warm {
        150.0
    } else {
        450.0
    }
}

/// `MemAvailable` of /proc/meminfo in bytes.
pub(super) fn mem_available_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = s.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// A `kB` field of /proc/self/status (e.g. `VmRSS`), in MiB.
pub(super) fn proc_status_mib(field: &str) -> Option<f64> {
    proc_status_mib_of("self", field)
}

/// A `kB` field of /proc/PID/status of process `pid` (a number, or `self`), in MiB.
pub(super) fn proc_status_mib_of(pid: &str, field: &str) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with(&format!("{field}:")))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

pub(super) fn machine() -> Machine {
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let memory_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map(|kb| (kb / 1024.0 / 1024.0 * 10.0).round() / 10.0)
        .unwrap_or(0.0);
    Machine {
        cpus: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        cpu_model,
        memory_gib,
    }
}
