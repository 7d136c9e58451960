//! `gossamer bench --mode processes` and `--cluster`: the built binary starts node
//! processes and measures them through their admin APIs; unreachable, hostile and
//! mistyped targets are refused with the address or flag named.

mod common;

use common::{certs, free_tcp, free_udp, gossamer, until, Proc, BIN};

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[test]
fn processes_mode_measures_three_node_processes_and_stops_them() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let writes = 20;
    let out = gossamer(&[
        "bench",
        "--mode",
        "processes",
        "--nodes",
        "3",
        "--writes",
        &writes.to_string(),
        "--rate",
        "40",
        "--duration",
        "1",
        "--warmup",
        "10",
        "--quiet",
        "--json",
        json.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status.code()
    );
    assert!(stdout.contains("--mode processes"), "{stdout}");
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(r["mode"], "processes");
    let row = &r["rows"][0];
    assert_eq!(row["nodes"], 3);
    assert_eq!(row["writes"], writes, "{row}");
    assert_eq!(row["writes_everywhere"], writes, "{row}");
    let positive = |v: &serde_json::Value| v.as_f64().is_some_and(|x| x > 0.0);
    for figure in [
        &row["join_ms"],
        &row["propagation"]["p50_ms"],
        &row["propagation"]["p99_ms"],
        &row["idle"]["bytes_per_node_s"],
        &row["load"]["bytes_per_node_s"],
        &row["load"]["datagrams_per_node_s"],
    ] {
        assert!(positive(figure), "{figure} in {row}");
    }
    // The node processes' memory is read from /proc.
    if cfg!(target_os = "linux") {
        assert!(positive(&row["rss_mib_per_node"]), "{row}");
        assert!(positive(&row["load"]["cpu_percent_per_node"]), "{row}");
    }
    assert_eq!(row["propagation"]["count"], writes);
    let per_node = row["per_node"].as_array().expect("per-node traffic");
    assert_eq!(per_node.len(), 3, "{row}");
    for node in per_node {
        assert!(positive(&node["load_sent_bytes_s"]), "{node}");
        assert!(positive(&node["load_received_bytes_s"]), "{node}");
        // The node processes are gone: nothing answers at their admin addresses.
        let addr = node["addr"].as_str().unwrap();
        assert!(
            TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(2)).is_err(),
            "{addr} still answers after the bench"
        );
    }
}

/// The child processes of `pid` (Linux: /proc/PID/task/*/children).
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|s| {
            s.split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// Whether process `pid` still runs (a zombie does not).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().to_string())
        })
        .is_some_and(|rest| !rest.starts_with('Z') && !rest.starts_with('X'))
}

#[test]
#[cfg(target_os = "linux")]
fn processes_mode_stops_its_nodes_when_interrupted() {
    let mut bench = Command::new(BIN)
        .args([
            "bench",
            "--mode",
            "processes",
            "--nodes",
            "3",
            "--writes",
            "20",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Not a terminal: one plain progress line per phase on stderr.
    let (tx, rx) = mpsc::channel();
    let stderr = bench.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen = Vec::new();
    // Past joining: every node process runs and sees the others.
    while !seen
        .iter()
        .any(|l: &String| l.contains("settling") || l.contains("idle"))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(e) => panic!("no settling phase ({e}): {seen:?}"),
        }
    }
    let kids = children_of(bench.id());
    assert_eq!(kids.len(), 3, "{kids:?}");
    assert!(Command::new("kill")
        .args(["-INT", &bench.id().to_string()])
        .status()
        .unwrap()
        .success());
    let mut rest = String::new();
    while let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        rest.push_str(&line);
        rest.push('\n');
    }
    let status = bench.wait().unwrap();
    assert_eq!(status.code(), Some(1), "{rest}");
    assert!(rest.contains("interrupted"), "{rest}");
    for k in kids {
        assert!(
            !running(k),
            "node process {k} outlived the interrupted bench"
        );
    }
}

/// Node `id` as a `gossamer run` process on the given ports, seeded with `seed`.
fn node(dir: &std::path::Path, id: &str, quic: u16, admin: u16, seed: Option<u16>) -> Proc {
    let mut c = Command::new(BIN);
    c.args(["run", "--node-id", id, "--listen"])
        .arg(format!("127.0.0.1:{quic}"))
        .arg("--admin")
        .arg(format!("127.0.0.1:{admin}"))
        .arg("--certs")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(s) = seed {
        c.arg("--seed").arg(format!("127.0.0.1:{s}"));
    }
    Proc(c.spawn().expect("spawn node"))
}

#[test]
fn cluster_mode_measures_running_nodes_and_deletes_its_keys() {
    let dir = tempfile::tempdir().unwrap();
    certs(dir.path(), "benched", &["c1", "c2", "c3"]);
    let (q, a): (Vec<u16>, Vec<u16>) = (0..3).map(|_| (free_udp(), free_tcp())).unzip();
    let _nodes = [
        node(dir.path(), "c1", q[0], a[0], None),
        node(dir.path(), "c2", q[1], a[1], Some(q[0])),
        node(dir.path(), "c3", q[2], a[2], Some(q[0])),
    ];
    let admin: Vec<String> = a.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    until(
        "three members alive on every node",
        Duration::from_secs(60),
        || {
            admin.iter().all(|x| {
                let out = gossamer(&["members", "--json", "--admin", x]);
                serde_json::from_slice::<serde_json::Value>(&out.stdout).is_ok_and(|m| {
                    m.as_array()
                        .is_some_and(|v| v.len() == 3 && v.iter().all(|x| x["status"] == "alive"))
                })
            })
        },
    );
    // The same node twice, under two names: refused.
    let twice = format!("{},localhost:{}", admin[0], a[0]);
    let out = gossamer(&["bench", "--quiet", "--cluster", &twice]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("the same node c1"), "{stderr}");

    let json = dir.path().join("cluster.json");
    let out = gossamer(&[
        "bench",
        "--quiet",
        "--cluster",
        &admin.join(","),
        "--writes",
        "10",
        "--rate",
        "50",
        "--duration",
        "1",
        "--json",
        json.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("gossamer bench --cluster"), "{stdout}");
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(r["mode"], "cluster");
    let row = &r["rows"][0];
    assert_eq!(row["nodes"], 3);
    assert_eq!(row["writes_everywhere"], 10, "{row}");
    assert!(row["propagation"]["p50_ms"]
        .as_f64()
        .is_some_and(|x| x > 0.0));
    assert!(row["load"]["bytes_per_node_s"]
        .as_f64()
        .is_some_and(|x| x > 0.0));
    let ids: Vec<&str> = row["per_node"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|x| x["node"].as_str())
        .collect();
    assert_eq!(ids, ["c1", "c2", "c3"]);
    // Its keys were deleted: nothing is left under bench/ on any node, once the
    // deletes have spread.
    for x in &admin {
        until(
            &format!("no bench/ key on {x}"),
            Duration::from_secs(30),
            || {
                let out = gossamer(&["kv", "list", "bench/", "--admin", x]);
                out.status.success() && out.stdout.is_empty()
            },
        );
    }
}

#[test]
fn cluster_mode_names_an_unreachable_address_and_exits_1() {
    // Ports free a moment ago: nothing listens there.
    let (a, b) = (
        format!("127.0.0.1:{}", free_tcp()),
        format!("127.0.0.1:{}", free_tcp()),
    );
    let out = gossamer(&["bench", "--quiet", "--cluster", &format!("{a},{b}")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&a) || stderr.contains(&b), "{stderr}");
    assert!(stderr.contains("cannot connect"), "{stderr}");
}

#[test]
fn cluster_mode_refuses_an_address_that_is_not_a_node() {
    // An HTTP server that answers every request with an empty JSON object.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}",
            );
        }
    });
    let other = format!("127.0.0.1:{}", free_tcp());
    let out = gossamer(&["bench", "--quiet", "--cluster", &format!("{addr},{other}")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&addr) || stderr.contains(&other),
        "{stderr}"
    );
}

#[test]
fn bad_cluster_flags_exit_2_naming_the_flag() {
    for (args, flag) in [
        (vec!["--cluster", "127.0.0.1:1"], "--cluster"),
        (vec!["--cluster", "127.0.0.1:1,127.0.0.1:1"], "--cluster"),
        (vec!["--cluster", "127.0.0.1:1,"], "--cluster"),
        (
            vec!["--cluster", "127.0.0.1:1,127.0.0.1:2", "--mode", "sim"],
            "--cluster",
        ),
        (vec!["--token", "x"], "--token"),
        (
            vec!["--cluster", "127.0.0.1:1,127.0.0.1:2", "--cert", "c.pem"],
            "--ca",
        ),
        (vec!["--mode", "processes", "--nodes", "1"], "--nodes"),
    ] {
        let mut argv = vec!["bench", "--quiet"];
        argv.extend(&args);
        let out = gossamer(&argv);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(flag), "{args:?}: {stderr}");
    }
}
