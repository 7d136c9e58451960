//! `--mode processes`: N `gossamer run` processes of this executable on 127.0.0.1, with
//! a temporary CA and node certificates, measured through their admin APIs exactly as
//! `--cluster` measures a running cluster. Each node has a process (and scheduler
//! threads) of its own, so one process's scheduling is not part of the figures.

use std::fs::File;
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use gossamer::admin::client::AdminClient;
use gossamer::local::{generate_certs, node_name};

use super::cluster::{all_see_all, measure, Target};
use super::plan::{Plan, SETTLE};
use super::progress::Progress;
use super::report::Row;
use super::signal::{interrupted, Interrupted};

/// Longest wait for the nodes to see each other alive.
const JOIN_LIMIT: Duration = Duration::from_secs(120);

/// Longest wait for the nodes to leave after SIGTERM, before they are killed.
const STOP_LIMIT: Duration = Duration::from_secs(10);

/// The node processes and their folder (certificates, configurations, logs). Dropping
/// it kills every process that is still running and removes the folder.
struct Children {
    dir: tempfile::TempDir,
    procs: Vec<Child>,
}

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.procs {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Where node `n<i>` writes its log (stderr).
fn log_path(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("n{i}.log"))
}

impl Children {
    /// The first node process that has exited, with the end of its log.
    fn exited(&mut self) -> Option<String> {
        for (k, c) in self.procs.iter_mut().enumerate() {
            if let Ok(Some(status)) = c.try_wait() {
                let log =
                    std::fs::read_to_string(log_path(self.dir.path(), k + 1)).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                return Some(format!(
                    "node process n{} exited ({status}): {}",
                    k + 1,
                    tail.join(" | ")
                ));
            }
        }
        None
    }

    /// SIGTERM to every node (each leaves the cluster), then SIGKILL to those still
    /// running after [`STOP_LIMIT`].
    async fn stop(&mut self) {
        for c in &self.procs {
            terminate(c);
        }
        let start = Instant::now();
        while start.elapsed() < STOP_LIMIT {
            if self
                .procs
                .iter_mut()
                .all(|c| matches!(c.try_wait(), Ok(Some(_))))
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for c in &mut self.procs {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Asks `c` to stop as an operator would: SIGTERM (the node leaves the cluster).
#[cfg(unix)]
fn terminate(c: &Child) {
    // SAFETY: kill(2) with a pid we own and a valid signal number has no memory effects.
    unsafe {
        libc::kill(c.id() as libc::pid_t, libc::SIGTERM);
    }
}

#[cfg(not(unix))]
fn terminate(_: &Child) {}

/// Distinct free ports on 127.0.0.1, a UDP one (QUIC) and a TCP one (admin) per node:
/// all are held until all are chosen, so no two nodes get the same one. Another
/// program may still take one before the node binds it; the node then exits, and the
/// run fails naming it.
fn free_ports(n: usize) -> std::io::Result<Vec<(u16, u16)>> {
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        let u = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
        let t = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        held.push((u, t));
    }
    let mut ports = Vec::with_capacity(n);
    for (u, t) in &held {
        ports.push((u.local_addr()?.port(), t.local_addr()?.port()));
    }
    Ok(ports)
}

/// The configuration of node `n<i>`: the plan's protocol settings, in memory (no data
/// directory, as the quic mode's nodes), admin API on loopback without a token.
fn config(
    p: &Plan,
    certs: &Path,
    i: usize,
    ports: (u16, u16),
    seed: u16,
) -> anyhow::Result<String> {
    let mut t = toml::Table::new();
    let s = |v: String| toml::Value::String(v);
    t.insert("node_id".into(), s(node_name(i).to_string()));
    t.insert("listen".into(), s(format!("127.0.0.1:{}", ports.0)));
    t.insert("admin".into(), s(format!("127.0.0.1:{}", ports.1)));
    t.insert("certs".into(), s(certs.display().to_string()));
    if i > 1 {
        t.insert(
            "seeds".into(),
            toml::Value::Array(vec![s(format!("127.0.0.1:{seed}"))]),
        );
    }
    let rng = p.seed.wrapping_mul(1_000_003).wrapping_add(i as u64) & i64::MAX as u64;
    t.insert("rng_seed".into(), toml::Value::Integer(rng as i64));
    let gossip = toml::Table::try_from(&p.gossip).context("protocol settings as TOML")?;
    t.insert("gossip".into(), toml::Value::Table(gossip));
    // Every node dials from 127.0.0.1: a per-address handshake limit would throttle the
    // whole cluster as if it were one peer.
    let mut security = toml::Table::new();
    security.insert("handshakes_per_sec_per_ip".into(), toml::Value::Float(0.0));
    t.insert("security".into(), toml::Value::Table(security));
    Ok(toml::to_string(&t)?)
}

/// Writes certificates and configurations into a temporary folder and starts the
/// nodes; the first is every other's seed.
fn spawn(p: &Plan, n: usize, progress: &Progress) -> anyhow::Result<(Children, Vec<Target>)> {
    let exe = std::env::current_exe().context("finding this executable")?;
    let dir = tempfile::Builder::new()
        .prefix("gossamer-bench-")
        .tempdir()
        .context("creating a temporary folder")?;
    let ids: Vec<_> = (1..=n).map(node_name).collect();
    generate_certs(dir.path(), "bench", &ids).context("generating certificates")?;
    let ports = free_ports(n).context("finding free ports on 127.0.0.1")?;
    let mut kids = Children {
        dir,
        procs: Vec::with_capacity(n),
    };
    let mut targets = Vec::with_capacity(n);
    for (k, &pp) in ports.iter().enumerate() {
        let i = k + 1;
        progress.show(
            n,
            "starting processes",
            i as f64 / n as f64,
            &format!("{i}/{n}"),
        );
        let cfg_path = kids.dir.path().join(format!("n{i}.toml"));
        std::fs::write(&cfg_path, config(p, kids.dir.path(), i, pp, ports[0].0)?)
            .with_context(|| format!("writing {}", cfg_path.display()))?;
        let log =
            File::create(log_path(kids.dir.path(), i)).context("creating a node's log file")?;
        let mut cmd = Command::new(&exe);
        cmd.arg("run")
            .arg("--config")
            .arg(&cfg_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            // The log's last lines may end up in an error message: no colour codes.
            .env("NO_COLOR", "1");
        die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting node process n{i} ({})", exe.display()))?;
        targets.push(Target {
            client: AdminClient::new(format!("127.0.0.1:{}", pp.1), None),
            id: node_name(i).to_string(),
            pid: Some(child.id()),
        });
        kids.procs.push(child);
    }
    Ok((kids, targets))
}

/// On Linux, the node is killed when the thread that started it ends: if the bench is
/// killed outright (SIGKILL), no `Drop` runs, and the nodes must not outlive it. The
/// thread is a tokio runtime thread (the main thread or a worker), which lives as long as
/// the bench, never a blocking-pool thread, which could end while the nodes run.
#[cfg(target_os = "linux")]
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the child between fork and exec and calls only
    // prctl(2), which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_: &mut Command) {}

/// One row: `n` node processes started, joined, measured and stopped.
pub(super) async fn processes_row(p: &Plan, n: usize, progress: &Progress) -> anyhow::Result<Row> {
    let wall = Instant::now();
    let (mut kids, targets) = spawn(p, n, progress)?;
    let t_start = Instant::now();
    let result = tokio::select! {
        r = join_and_measure(p, n, &mut kids, &targets, t_start, progress) => r,
        _ = interrupted() => Err(Interrupted("the node processes were stopped".into()).into()),
    };
    progress.show(n, "stopping nodes", 1.0, "");
    kids.stop().await;
    drop(kids);
    let mut row = result?;
    row.wall_s = wall.elapsed().as_secs_f64();
    Ok(row)
}

async fn join_and_measure(
    p: &Plan,
    n: usize,
    kids: &mut Children,
    targets: &[Target],
    t_start: Instant,
    progress: &Progress,
) -> anyhow::Result<Row> {
    loop {
        if let Some(why) = kids.exited() {
            bail!("{why}");
        }
        if all_see_all(targets).await {
            break;
        }
        if t_start.elapsed() >= JOIN_LIMIT {
            bail!(
                "the {n} node processes did not all see each other alive within {} s",
                JOIN_LIMIT.as_secs()
            );
        }
        progress.show(
            n,
            "joining",
            t_start.elapsed().as_secs_f64() / JOIN_LIMIT.as_secs_f64(),
            "",
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let join_ms = t_start.elapsed().as_secs_f64() * 1000.0;
    // Interruptions are this function's caller's: it stops the nodes, which takes the
    // run's keys with them.
    let mut row = measure(p, targets, SETTLE, false, progress).await?;
    if let Some(why) = kids.exited() {
        bail!("{why}");
    }
    row.join_ms = Some(join_ms);
    row.notes.push(
        "each node is a `gossamer run` process: cpu% and MiB/n are the node processes' own".into(),
    );
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(unix)]
    fn a_node_that_exits_is_named_with_the_end_of_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let lines: String = (1..=8).map(|k| format!("line {k}\n")).collect();
        std::fs::write(log_path(dir.path(), 1), lines).unwrap();
        let child = Command::new("true").spawn().unwrap();
        let mut kids = Children {
            dir,
            procs: vec![child],
        };
        // Reaped here; `try_wait` then reports the status it keeps.
        kids.procs[0].wait().unwrap();
        let why = kids.exited().expect("n1 exited");
        assert!(why.starts_with("node process n1 exited"), "{why}");
        assert!(
            why.ends_with("line 4 | line 5 | line 6 | line 7 | line 8"),
            "{why}"
        );
    }

    #[test]
    fn free_ports_are_distinct() {
        let ports = free_ports(20).unwrap();
        let udp: std::collections::HashSet<u16> = ports.iter().map(|p| p.0).collect();
        let tcp: std::collections::HashSet<u16> = ports.iter().map(|p| p.1).collect();
        assert_eq!((udp.len(), tcp.len()), (20, 20));
    }
}
